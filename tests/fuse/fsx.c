/*
 * fsx.c - random file-operation exerciser: runs the same random sequence of
 * system calls in two directories (a thpfs mount and a directory on the
 * kernel's tmpfs) and compares every result: return values, errno, bytes
 * read, sizes, types, modes, link counts, directory listings, symlink
 * targets, and at the end the whole tree.
 *
 *   fsx [-n OPS] [-s SEED] [-v] DIR_UNDER_TEST DIR_REFERENCE
 *
 * The operations work on a small pool of names (files, directories, names
 * inside them) so that they often collide: create over existing, rename
 * over a non-empty directory, unlink of an open file, and so on.  Files are
 * held open across renames and unlinks.  SEEK_DATA/SEEK_HOLE answers may
 * differ between file systems (tmpfs reports a whole huge page as data), so
 * each side's answer is checked against its own contents instead.
 *
 * Exit status 0 when everything matched, 1 on the first mismatch (printed
 * with the operation number and seed), 2 on a usage error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NSLOTS 8
#define MAX_FILE (24LL << 20) /* offsets stay below this (plus a write) */
#define MAX_IO (3 << 20)

static const char *pool[] = {
	"f0", "f1", "f2", "f3", "d0", "d1", "d0/f0", "d0/f1", "d1/f0", "d1/d2", "d1/d2/f0", "s0",
};
#define NPOOL (sizeof(pool) / sizeof(pool[0]))

struct slot {
	int fd[2];  /* [0] under test, [1] reference; -1 when free */
	int flags;
	char path[64];
};

static const char *dirs[2];
static struct slot slots[NSLOTS];
static uint64_t rng_state, seed;
static unsigned long opno;
static int verbose;
static unsigned long nr_ops[32];
static unsigned char *buf[2], *wbuf;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void logop(const char *fmt, ...)
{
	va_list ap;

	if (!verbose)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "%6lu: ", opno);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void __attribute__((noreturn)) fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("fsx: MISMATCH at op %lu (seed %" PRIu64 "): ", opno, seed);
	vprintf(fmt, ap);
	putchar('\n');
	va_end(ap);
	exit(1);
}

/* Compares two results given as "return value or -errno". */
static void same_result(const char *what, long long a, long long b)
{
	if (a != b)
		fail("%s: %s returned %lld (%s), %s returned %lld (%s)", what, dirs[0], a,
		     a < 0 ? strerror((int)-a) : "ok", dirs[1], b, b < 0 ? strerror((int)-b) : "ok");
}

static long long res(long long r)
{
	return r < 0 ? -errno : r;
}

static void full_path(char *out, size_t len, int side, const char *name)
{
	snprintf(out, len, "%s/%s", dirs[side], name);
}

static const char *pick_name(void)
{
	return pool[rnd_below(NPOOL)];
}

/* An offset: often small, often near a 2 MiB boundary, sometimes far. */
static off_t pick_off(void)
{
	switch (rnd_below(4)) {
	case 0:
		return (off_t)rnd_below(64 << 10);
	case 1: {
		off_t b = (off_t)rnd_below(MAX_FILE >> 21) << 21;
		off_t d = (off_t)rnd_below(16384) - 8192;

		return b + d > 0 ? b + d : 0;
	}
	case 2:
		return (off_t)(rnd_below(MAX_FILE >> 12) << 12);
	default:
		return (off_t)rnd_below(MAX_FILE);
	}
}

static size_t pick_len(void)
{
	switch (rnd_below(4)) {
	case 0:
		return (size_t)rnd_below(4096) + 1;
	case 1:
		return (size_t)(rnd_below(64) + 1) << 12;
	case 2:
		return (size_t)rnd_below(256 << 10) + 1;
	default:
		return (size_t)rnd_below(MAX_IO) + 1;
	}
}

static struct slot *pick_open_slot(void)
{
	unsigned start = (unsigned)rnd_below(NSLOTS);

	for (unsigned i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[(start + i) % NSLOTS];

		if (s->fd[0] >= 0)
			return s;
	}
	return NULL;
}

/* ---- Operations.  Each does the same call on both sides and compares. ---- */

static void op_open(void)
{
	static const int flag_set[] = {
		O_RDWR, O_RDWR | O_CREAT, O_RDWR | O_CREAT | O_EXCL, O_RDWR | O_TRUNC,
		O_RDONLY, O_WRONLY | O_APPEND | O_CREAT, O_RDONLY | O_DIRECTORY,
		O_RDWR | O_CREAT | O_TRUNC,
	};
	struct slot *s = NULL;
	const char *name = pick_name();
	int flags = flag_set[rnd_below(sizeof(flag_set) / sizeof(flag_set[0]))];
	mode_t mode = rnd_below(2) ? 0644 : 0600;
	long long r[2];

	for (unsigned i = 0; i < NSLOTS; i++)
		if (slots[i].fd[0] < 0) {
			s = &slots[i];
			break;
		}
	if (!s)
		return;
	logop("open %s 0%o", name, flags);
	for (int side = 0; side < 2; side++) {
		char p[4200];

		full_path(p, sizeof(p), side, name);
		r[side] = res(open(p, flags, mode));
	}
	if ((r[0] < 0) != (r[1] < 0) || (r[0] < 0 && r[0] != r[1])) {
		for (int side = 0; side < 2; side++)
			if (r[side] >= 0)
				close((int)r[side]);
		same_result("open", r[0] < 0 ? r[0] : 0, r[1] < 0 ? r[1] : 0);
	}
	if (r[0] < 0)
		return;
	s->fd[0] = (int)r[0];
	s->fd[1] = (int)r[1];
	s->flags = flags;
	snprintf(s->path, sizeof(s->path), "%s", name);
}

static void op_close(void)
{
	struct slot *s = pick_open_slot();

	if (!s)
		return;
	logop("close %s", s->path);
	same_result("close", res(close(s->fd[0])), res(close(s->fd[1])));
	s->fd[0] = s->fd[1] = -1;
}

static void op_write(void)
{
	struct slot *s = pick_open_slot();
	off_t off = pick_off();
	size_t len = pick_len();
	long long r[2];

	if (!s)
		return;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd();

		memcpy(wbuf + i, &v, len - i < 8 ? len - i : 8);
	}
	logop("pwrite %s off %lld len %zu", s->path, (long long)off, len);
	for (int side = 0; side < 2; side++)
		r[side] = res(pwrite(s->fd[side], wbuf, len, off));
	same_result("pwrite", r[0], r[1]);
}

static void op_read(void)
{
	struct slot *s = pick_open_slot();
	off_t off = pick_off();
	size_t len = pick_len();
	long long r[2];

	if (!s)
		return;
	logop("pread %s off %lld len %zu", s->path, (long long)off, len);
	for (int side = 0; side < 2; side++)
		r[side] = res(pread(s->fd[side], buf[side], len, off));
	same_result("pread", r[0], r[1]);
	if (r[0] > 0 && memcmp(buf[0], buf[1], (size_t)r[0])) {
		size_t i = 0;

		while (buf[0][i] == buf[1][i])
			i++;
		fail("pread %s off %lld: bytes differ first at offset %lld", s->path,
		     (long long)off, (long long)(off + (off_t)i));
	}
}

static void op_ftruncate(void)
{
	struct slot *s = pick_open_slot();
	off_t size = pick_off();

	if (!s)
		return;
	logop("ftruncate %s %lld", s->path, (long long)size);
	same_result("ftruncate", res(ftruncate(s->fd[0], size)), res(ftruncate(s->fd[1], size)));
}

/*
 * The kernel's tmpfs has no FALLOC_FL_ZERO_RANGE: when the reference side
 * refuses it (after the VFS's own checks passed), do what it means there:
 * punch the range and, without KEEP_SIZE, extend the size over it.
 */
static long long zero_range_emulated(int fd, int mode, off_t off, off_t len)
{
	struct stat st;

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) < 0)
		return -errno;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && fstat(fd, &st) == 0 && st.st_size < off + len &&
	    ftruncate(fd, off + len) < 0)
		return -errno;
	return 0;
}

static void op_fallocate(void)
{
	static const int modes[] = {
		0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE,
		FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
	};
	struct slot *s = pick_open_slot();
	int mode = modes[rnd_below(sizeof(modes) / sizeof(modes[0]))];
	off_t off = pick_off();
	off_t len = (off_t)pick_len();
	long long r[2];

	if (!s)
		return;
	if (rnd_below(2)) {
		off &= ~(off_t)4095;
		len = (len + 4095) & ~(off_t)4095;
	}
	logop("fallocate %s mode %#x off %lld len %lld", s->path, mode, (long long)off,
	      (long long)len);
	r[0] = res(fallocate(s->fd[0], mode, off, len));
	r[1] = res(fallocate(s->fd[1], mode, off, len));
	if ((mode & FALLOC_FL_ZERO_RANGE) && r[1] == -EOPNOTSUPP)
		r[1] = zero_range_emulated(s->fd[1], mode, off, len);
	same_result("fallocate", r[0], r[1]);
}

/* Fails unless fd reads zeros in [from, to). */
static int seek_side; /* which directory seek_check is looking at */

static void expect_zeros(int fd, off_t from, off_t to, unsigned char *b, const char *what,
			 off_t off)
{
	while (from < to) {
		size_t n = (size_t)(to - from) < MAX_IO ? (size_t)(to - from) : MAX_IO;
		ssize_t got = pread(fd, b, n, from);

		if (got <= 0)
			return;
		for (ssize_t i = 0; i < got; i++)
			if (b[i])
				fail("%s: lseek %s at %lld: byte %lld in the reported hole is not zero",
				     dirs[seek_side], what, (long long)off, (long long)(from + i));
		from += got;
	}
}

/*
 * Checks one side's SEEK_DATA/SEEK_HOLE answer at off against its own bytes
 * (a reported hole must read as zeros; the answer never goes backwards or
 * past EOF) and returns what both sides must agree on: -ENXIO when off is
 * at or past EOF, else 0.  Where data ends is up to the file system: tmpfs
 * counts a whole written huge page as data, thpfs each written 4 KiB page.
 */
static long long seek_check(int fd, off_t off, int whence, unsigned char *b)
{
	const char *what = whence == SEEK_DATA ? "SEEK_DATA" : "SEEK_HOLE";
	off_t r = lseek(fd, off, whence);
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (r < 0) {
		if (errno != ENXIO)
			return -errno;
		if (off < st.st_size && whence == SEEK_HOLE)
			fail("lseek SEEK_HOLE at %lld < size %lld: ENXIO", (long long)off,
			     (long long)st.st_size);
		if (off < st.st_size) /* no data up to EOF: all of it a hole */
			expect_zeros(fd, off, st.st_size, b, what, off);
		return off < st.st_size ? 0 : -ENXIO;
	}
	if (r < off || r > st.st_size)
		fail("lseek %s at %lld answered %lld (size %lld)", what, (long long)off,
		     (long long)r, (long long)st.st_size);
	if (whence == SEEK_DATA) {
		expect_zeros(fd, off, r, b, what, off);
	} else if (r < st.st_size) {
		/* the hole at r lasts until the next data */
		off_t d = lseek(fd, r, SEEK_DATA);

		if (d < 0)
			d = st.st_size;
		expect_zeros(fd, r, d < r + MAX_IO ? d : r + MAX_IO, b, what, off);
	}
	return 0;
}

static void op_seek(void)
{
	struct slot *s = pick_open_slot();
	int whence = rnd_below(2) ? SEEK_DATA : SEEK_HOLE;
	off_t off = pick_off();

	/* directories: the kernel's FUSE answers lseek on a directory itself
	 * (ENXIO past its size) where tmpfs says EINVAL; not the daemon's call */
	struct stat st;

	if (!s || (s->flags & O_ACCMODE) == O_WRONLY || fstat(s->fd[1], &st) < 0 ||
	    S_ISDIR(st.st_mode))
		return;
	logop("lseek %s %lld %s", s->path, (long long)off, whence == SEEK_DATA ? "DATA" : "HOLE");
	long long r[2];

	for (seek_side = 0; seek_side < 2; seek_side++)
		r[seek_side] = seek_check(s->fd[seek_side], off, whence, buf[seek_side]);
	same_result(whence == SEEK_DATA ? "lseek SEEK_DATA" : "lseek SEEK_HOLE", r[0], r[1]);
}

/* The parts of struct stat both file systems must agree on. */
static void same_stat(const char *what, const struct stat *a, const struct stat *b)
{
	if (a->st_mode != b->st_mode)
		fail("%s: mode %o vs %o", what, a->st_mode, b->st_mode);
	if (a->st_nlink != b->st_nlink)
		fail("%s: nlink %lu vs %lu", what, (unsigned long)a->st_nlink,
		     (unsigned long)b->st_nlink);
	if (S_ISREG(a->st_mode) && a->st_size != b->st_size)
		fail("%s: size %lld vs %lld", what, (long long)a->st_size, (long long)b->st_size);
	if (S_ISLNK(a->st_mode) && a->st_size != b->st_size)
		fail("%s: symlink size %lld vs %lld", what, (long long)a->st_size,
		     (long long)b->st_size);
	if (a->st_uid != b->st_uid || a->st_gid != b->st_gid)
		fail("%s: owner %u:%u vs %u:%u", what, a->st_uid, a->st_gid, b->st_uid, b->st_gid);
}

static void op_fstat(void)
{
	struct slot *s = pick_open_slot();
	struct stat st[2];
	long long r[2];

	if (!s)
		return;
	logop("fstat %s", s->path);
	for (int side = 0; side < 2; side++)
		r[side] = res(fstat(s->fd[side], &st[side]));
	same_result("fstat", r[0], r[1]);
	if (r[0] == 0)
		same_stat("fstat", &st[0], &st[1]);
}

static void op_stat(void)
{
	const char *name = pick_name();
	struct stat st[2];
	long long r[2];
	int nofollow = (int)rnd_below(2);

	logop("%s %s", nofollow ? "lstat" : "stat", name);
	for (int side = 0; side < 2; side++) {
		char p[4200];

		full_path(p, sizeof(p), side, name);
		r[side] = res(nofollow ? lstat(p, &st[side]) : stat(p, &st[side]));
	}
	same_result("stat", r[0], r[1]);
	if (r[0] == 0)
		same_stat(name, &st[0], &st[1]);
}

/* Runs a one-path call on both sides and compares. */
#define PATH_OP(label, call)                                              \
	do {                                                              \
		long long r_[2];                                          \
		for (int side = 0; side < 2; side++) {                    \
			char p[4200];                                     \
			full_path(p, sizeof(p), side, name);              \
			r_[side] = res(call);                             \
		}                                                         \
		same_result(label, r_[0], r_[1]);                         \
	} while (0)

/* Runs a two-path call on both sides and compares. */
#define PATH2_OP(label, call)                                             \
	do {                                                              \
		long long r_[2];                                          \
		for (int side = 0; side < 2; side++) {                    \
			char p[4200], q[4200];                            \
			full_path(p, sizeof(p), side, name);              \
			full_path(q, sizeof(q), side, name2);             \
			r_[side] = res(call);                             \
		}                                                         \
		same_result(label, r_[0], r_[1]);                         \
	} while (0)

static void op_unlink(void)
{
	const char *name = pick_name();

	logop("unlink %s", name);
	PATH_OP("unlink", unlink(p));
}

static void op_mkdir(void)
{
	const char *name = pick_name();
	mode_t mode = rnd_below(2) ? 0755 : 0700;

	logop("mkdir %s", name);
	PATH_OP("mkdir", mkdir(p, mode));
}

static void op_rmdir(void)
{
	const char *name = pick_name();

	logop("rmdir %s", name);
	PATH_OP("rmdir", rmdir(p));
}

static void op_rename(void)
{
	static const unsigned flag_set[] = { 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE };
	const char *name = pick_name(), *name2 = pick_name();
	unsigned flags = flag_set[rnd_below(4)];

	logop("rename %s %s flags %u", name, name2, flags);
	PATH2_OP("rename", renameat2(AT_FDCWD, p, AT_FDCWD, q, flags));
}

static void op_link(void)
{
	const char *name = pick_name(), *name2 = pick_name();

	logop("link %s %s", name, name2);
	PATH2_OP("link", link(p, q));
}

static void op_symlink(void)
{
	/* targets never leave the tested directory: no "..", nothing absolute
	 * (the links are followed by the other operations) */
	static const char *targets[] = { "f0", "f1", "d0", "nowhere", "d2", "f0/x" };
	const char *name = pick_name(), *target = targets[rnd_below(6)];

	logop("symlink %s -> %s", name, target);
	PATH_OP("symlink", symlink(target, p));
}

static void op_readlink(void)
{
	const char *name = pick_name();
	char t[2][256];
	long long r[2];

	logop("readlink %s", name);
	for (int side = 0; side < 2; side++) {
		char p[4200];

		full_path(p, sizeof(p), side, name);
		r[side] = res(readlink(p, t[side], sizeof(t[side])));
	}
	same_result("readlink", r[0], r[1]);
	if (r[0] > 0 && memcmp(t[0], t[1], (size_t)r[0]))
		fail("readlink %s: targets differ", name);
}

static void op_chmod(void)
{
	const char *name = pick_name();
	mode_t mode = (mode_t)rnd_below(01000);

	logop("chmod %s %o", name, mode);
	PATH_OP("chmod", chmod(p, mode | 0700));
}

static void op_truncate(void)
{
	const char *name = pick_name();
	off_t size = pick_off();

	logop("truncate %s %lld", name, (long long)size);
	PATH_OP("truncate", truncate(p, size));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads a directory's names (without . and ..), sorted, joined by '/'. */
static long long list_dir(const char *path, char *out, size_t len)
{
	char *names[256];
	size_t n = 0, used = 0;
	struct dirent *de;
	DIR *d = opendir(path);

	if (!d)
		return -errno;
	out[0] = '\0';
	while ((de = readdir(d)) && n < 256) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		used += (size_t)snprintf(out + used, used < len ? len - used : 0, "%s/", names[i]);
		free(names[i]);
	}
	return (long long)n;
}

static void op_readdir(void)
{
	static const char *dnames[] = { ".", "d0", "d1", "d1/d2", "f0", "s0" };
	const char *name = dnames[rnd_below(6)];
	char l[2][4096];
	long long r[2];

	logop("readdir %s", name);
	for (int side = 0; side < 2; side++) {
		char p[4200];

		full_path(p, sizeof(p), side, name);
		r[side] = list_dir(p, l[side], sizeof(l[side]));
	}
	same_result("readdir", r[0], r[1]);
	if (r[0] >= 0 && strcmp(l[0], l[1]))
		fail("readdir %s: [%s] vs [%s]", name, l[0], l[1]);
}

/* Compares every pool name: type, size, mode, and a regular file's bytes. */
static void compare_tree(void)
{
	opno++;
	for (size_t i = 0; i < NPOOL; i++) {
		struct stat st[2];
		long long r[2];
		char p[2][4200];

		for (int side = 0; side < 2; side++) {
			full_path(p[side], sizeof(p[side]), side, pool[i]);
			r[side] = res(lstat(p[side], &st[side]));
		}
		same_result(pool[i], r[0], r[1]);
		if (r[0] < 0)
			continue;
		same_stat(pool[i], &st[0], &st[1]);
		if (!S_ISREG(st[0].st_mode))
			continue;
		int fd0 = open(p[0], O_RDONLY), fd1 = open(p[1], O_RDONLY);

		if (fd0 < 0 || fd1 < 0)
			fail("%s: cannot open for the final compare", pool[i]);
		for (off_t off = 0; off < st[0].st_size; off += MAX_IO) {
			ssize_t a = pread(fd0, buf[0], MAX_IO, off);
			ssize_t b = pread(fd1, buf[1], MAX_IO, off);

			if (a != b || (a > 0 && memcmp(buf[0], buf[1], (size_t)a)))
				fail("%s: contents differ in [%lld, +%d)", pool[i], (long long)off,
				     MAX_IO);
		}
		close(fd0);
		close(fd1);
	}
}

struct op {
	const char *name;
	void (*fn)(void);
	unsigned weight;
};

static const struct op ops[] = {
	{ "open", op_open, 10 },        { "close", op_close, 5 },
	{ "write", op_write, 20 },      { "read", op_read, 15 },
	{ "ftruncate", op_ftruncate, 4 }, { "fallocate", op_fallocate, 10 },
	{ "lseek", op_seek, 6 },        { "fstat", op_fstat, 4 },
	{ "stat", op_stat, 4 },         { "unlink", op_unlink, 3 },
	{ "mkdir", op_mkdir, 3 },       { "rmdir", op_rmdir, 2 },
	{ "rename", op_rename, 4 },     { "link", op_link, 2 },
	{ "symlink", op_symlink, 2 },   { "readlink", op_readlink, 2 },
	{ "chmod", op_chmod, 2 },       { "truncate", op_truncate, 2 },
	{ "readdir", op_readdir, 3 },
};
#define NOPS_KINDS (sizeof(ops) / sizeof(ops[0]))

int main(int argc, char *argv[])
{
	unsigned long nops = 2000;
	unsigned total = 0;
	int c;

	seed = (uint64_t)time(NULL);
	while ((c = getopt(argc, argv, "n:s:v")) != -1) {
		switch (c) {
		case 'n':
			nops = strtoul(optarg, NULL, 0);
			break;
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: fsx [-n OPS] [-s SEED] [-v] DIR_UNDER_TEST DIR_REFERENCE\n");
		return 2;
	}
	dirs[0] = argv[optind];
	dirs[1] = argv[optind + 1];
	buf[0] = malloc(MAX_IO);
	buf[1] = malloc(MAX_IO);
	wbuf = malloc(MAX_IO + 8);
	if (!buf[0] || !buf[1] || !wbuf)
		return 2;
	for (unsigned i = 0; i < NSLOTS; i++)
		slots[i].fd[0] = slots[i].fd[1] = -1;
	for (size_t i = 0; i < NOPS_KINDS; i++)
		total += ops[i].weight;
	umask(022);
	printf("fsx: seed %" PRIu64 ", %lu operations, %s vs %s\n", seed, nops, dirs[0], dirs[1]);
	rng_state = seed ? seed : 1;
	for (opno = 1; opno <= nops; opno++) {
		unsigned w = (unsigned)rnd_below(total);
		size_t k = 0;

		while (w >= ops[k].weight)
			w -= ops[k++].weight;
		nr_ops[k]++;
		ops[k].fn();
		if (opno % 500 == 0)
			compare_tree();
	}
	for (unsigned i = 0; i < NSLOTS; i++)
		if (slots[i].fd[0] >= 0) {
			close(slots[i].fd[0]);
			close(slots[i].fd[1]);
		}
	compare_tree();
	printf("fsx: %lu operations matched:", nops);
	for (size_t i = 0; i < NOPS_KINDS; i++)
		printf(" %s %lu", ops[i].name, nr_ops[i]);
	printf("\n");
	return 0;
}
