/*
 * thpfs-qemu.c - build/libthpfs-qemu.so, an LD_PRELOAD library that keeps a
 * VMM's file-backed guest RAM in thpfs (docs/vm.md).
 *
 *   THPFS_QEMU_PREFIX=/thpfs/ THPFS_QEMU_OPTIONS=size=2g,policy=whole-lazy \
 *   THPFS_QEMU_STATS=/run/vm1.stats LD_PRELOAD=build/libthpfs-qemu.so \
 *   qemu-system-x86_64 ... -object memory-backend-file,id=ram0,size=1G,\
 *       mem-path=/thpfs/ram,share=on,align=2M -machine memory-backend=ram0
 *
 * A path under THPFS_QEMU_PREFIX (default /thpfs/) names a file of a thpfs
 * mounted inside the process (THPFS_QEMU_OPTIONS: thpfs_mount options plus
 * policy=, below).  The calls QEMU 7.2 makes on such a file and its mapping
 * (strace and its imports: open64/__open64_2/openat64, fstat64, fstatfs64,
 * lseek64, ftruncate64, fallocate64, mmap64 MAP_FIXED into its own
 * reservation, madvise, munmap, close; plus the other spellings of these,
 * pread/pwrite, posix_fallocate, fsync/fdatasync, stat and unlink of the
 * path) go to libthpfs; every other call passes to the C library untouched.
 * The file descriptor QEMU holds is a real descriptor (an O_PATH one on "/",
 * so a call we do not serve fails with EBADF instead of acting on something
 * else); mmap of it is thpfs_mmap at QEMU's address.
 *
 * Discard.  QEMU's balloon discards file-backed RAM with one
 * fallocate(PUNCH_HOLE|KEEP_SIZE) per 4 KiB page, then MADV_DONTNEED of the
 * same page on the mapping; free page reporting does the same with ranges of
 * 2 MiB and more.  The fallocate is the discard, done by the policy:
 *   split       thpfs punches each page (splitting the huge page) at once;
 *   lazy        thpfs_free_lazy: the page reads zero, its huge page stays,
 *               memory comes back when the host asks (reclaim);
 *   whole-lazy  (default) a 2 MiB range is punched whole, without a split,
 *               the moment its last 4 KiB page has been discarded (a bitmap
 *               per range; the range must read all zero then, so a page the
 *               guest wrote again is never lost) and ranges discarded whole
 *               at once; a partly discarded range is freed lazily, staying
 *               huge and zeroed until the host asks; once the guest has
 *               every page of such a range back (deflate), the range is
 *               backed whole again and collapsed into a huge page.
 * The MADV_DONTNEED after it never reaches the kernel: on a MAP_SHARED file
 * mapping it does not discard data anyway, and inside a THP it would only
 * queue the page for the kernel's deferred split.  Advice that would undo
 * thpfs's own (MADV_HUGEPAGE over ranges it keeps NOHUGEPAGE, MERGEABLE,
 * DONTFORK, WILLNEED, COLD, PAGEOUT) is absorbed too; MADV_WILLNEED is how
 * QEMU reports a deflated page, which clears its bit.  MADV_REMOVE is a
 * discard.  Other advice passes through.
 *
 * The host asks for memory by writing a byte count (0 = all) into the file
 * STATS.reclaim: thpfs_reclaim runs within a second and the file is removed.
 *
 * Stats: THPFS_QEMU_STATS names a file rewritten every second and at exit
 * (write to a temporary, then rename): "name value" lines of this library's
 * counters (map_addr, map_len, policy, discards, ...) followed by
 * thpfs_meminfo's text: cat it, or build/thpfs-stat STATS [NAME...].
 *
 * Errors: a bad THPFS_QEMU_OPTIONS, or a mount that fails, stops the process
 * at load with a message; an open or mmap under the prefix that thpfs cannot
 * serve fails with its errno and a message on stderr, so QEMU refuses to
 * start instead of running on other memory.
 *
 * Not handled: dup/dup2/fcntl(F_DUPFD) of a served descriptor (QEMU does
 * not), MAP_PRIVATE mappings (-ENODEV), several mappings of one file.
 *
 * libthpfs is linked in with -Wl,--wrap for the calls it makes itself that
 * are also wrapped here (mk/vm.mk checks the list), so its own madvise and
 * mmap reach the kernel.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "thpfs.h"

#define HUGE (2UL << 20)
#define PAGE 4096UL
#define PAGES_PER_HUGE (HUGE / PAGE)
#define MAX_FILES 16
#define THPFS_QEMU_MAGIC 0x74687066 /* "thpf": not hugetlbfs, so QEMU thinks in 4 KiB */

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

enum policy { POLICY_SPLIT, POLICY_LAZY, POLICY_WHOLE_LAZY };
static const char *const policy_names[] = { "split", "lazy", "whole-lazy" };

/* One file served under the prefix.  map/map_len: its thpfs_mmap view (at
 * most one); discarded: per 2 MiB range of the file, a 512-bit map of the
 * 4 KiB pages discarded and not given back (whole-lazy). */
struct served {
	int fd;               /* the O_PATH placeholder QEMU holds; -1 = free */
	struct thpfs_file *f; /* NULL once closed (the mapping may outlive it) */
	char path[PATH_MAX];
	char *map;
	size_t map_len;
	off_t map_off;
	uint64_t (*discarded)[PAGES_PER_HUGE / 64];
	unsigned char *partial; /* per range: partly discarded since its last refill */
	size_t nranges;
};

/* Counters of this library (events, since load). */
struct counters {
	uint64_t opens, discards, discard_bytes, whole_punches, lazy_bytes, split_bytes,
		completed_ranges, zero_check_failed, dontneed_absorbed, advice_absorbed,
		willneed_pages, refilled_ranges, refill_collapsed, reclaims, reclaim_bytes, errors;
};

static struct {
	struct thpfs *fs;
	char prefix[PATH_MAX];
	size_t prefix_len;
	enum policy policy;
	char stats_path[PATH_MAX];
	pthread_mutex_t lock; /* files[], counters, bitmaps; taken before libthpfs's locks */
	struct served files[MAX_FILES];
	struct counters c;
	pthread_t stats_thread;
	int stats_started;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* The C library's functions (RTLD_NEXT), resolved on first use: another
 * library's constructor (the sanitizers', say) may call open or mmap before
 * ours has run.  mmap, munmap and madvise are plain system calls (sys_*
 * below), needing no lookup at all: dlsym itself may map memory. */
static struct {
	int (*open)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*close)(int);
	int (*fstat)(int, struct stat *);
	int (*fstatat)(int, const char *, struct stat *, int);
	int (*stat)(const char *, struct stat *);
	int (*lstat)(const char *, struct stat *);
	int (*fstatfs)(int, struct statfs *);
	off_t (*lseek)(int, off_t, int);
	int (*ftruncate)(int, off_t);
	int (*fallocate)(int, int, off_t, off_t);
	int (*posix_fallocate)(int, off_t, off_t);
	ssize_t (*pread)(int, void *, size_t, off_t);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	int (*fsync)(int);
	int (*fdatasync)(int);
	int (*unlink)(const char *);
} next;

static void *resolve(void **slot, const char *name);
#define NEXT(name) ((__typeof__(next.name))resolve((void **)&next.name, #name))

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("thpfs-qemu: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	_exit(1);
}

static void complain(const char *what, const char *path, int err)
{
	fprintf(stderr, "thpfs-qemu: %s %s: %s\n", what, path, strerror(-err));
}

static void *must_next(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p)
		fatal("dlsym(%s): %s", name, dlerror());
	return p;
}

/* The C library's function name, looked up once into *slot. */
static void *resolve(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (!p) {
		p = must_next(name);
		__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	}
	return p;
}

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);

	return r < 0 && r > -4096 ? MAP_FAILED : (void *)r;
}

static int sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

static int sys_madvise(void *addr, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, addr, len, advice);
}

/* The --wrap targets: libthpfs's own calls go straight to the C library. */
int __wrap_open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = va_arg(ap, mode_t);
	va_end(ap);
	return NEXT(open)(path, flags, mode);
}
int __wrap_close(int fd) { return NEXT(close)(fd); }
ssize_t __wrap_pread(int fd, void *buf, size_t len, off_t off) { return NEXT(pread)(fd, buf, len, off); }
void *__wrap_mmap(void *a, size_t l, int p, int fl, int fd, off_t o) { return sys_mmap(a, l, p, fl, fd, o); }
int __wrap_munmap(void *a, size_t l) { return sys_munmap(a, l); }
int __wrap_madvise(void *a, size_t l, int adv) { return sys_madvise(a, l, adv); }

/* ---- options, mount, stats ------------------------------------------------ */

/* Splits policy= out of opts (into g.policy); the rest goes to thpfs_mount. */
static void parse_options(const char *opts, char *mount_opts, size_t len)
{
	char *copy = strdup(opts ? opts : ""), *save = NULL;
	size_t used = 0;

	if (!copy)
		fatal("out of memory");
	mount_opts[0] = '\0';
	g.policy = POLICY_WHOLE_LAZY;
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		if (!strncmp(o, "policy=", 7)) {
			size_t i;

			for (i = 0; i < sizeof(policy_names) / sizeof(*policy_names); i++)
				if (!strcmp(o + 7, policy_names[i]))
					break;
			if (i == sizeof(policy_names) / sizeof(*policy_names))
				fatal("THPFS_QEMU_OPTIONS: unknown policy '%s' (split, lazy, whole-lazy)", o + 7);
			g.policy = (enum policy)i;
			continue;
		}
		used += (size_t)snprintf(mount_opts + used, len - used, "%s%s", used ? "," : "", o);
		if (used >= len)
			fatal("THPFS_QEMU_OPTIONS too long");
	}
	free(copy);
}

/* Writes the stats file (temporary + rename).  Takes stats_lock, then
 * g.lock: one writer at a time, so a snapshot never replaces a newer one
 * (the stats thread still runs while the destructor writes at exit). */
static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;

static void write_stats_locked(void);
static void write_stats(void)
{
	pthread_mutex_lock(&stats_lock);
	write_stats_locked();
	pthread_mutex_unlock(&stats_lock);
}

static void write_stats_locked(void)
{
	char tmp[PATH_MAX + 8], meminfo[8192];
	struct counters c;
	uintptr_t map = 0;
	size_t map_len = 0;
	FILE *out;

	if (!g.stats_path[0] || !g.fs)
		return;
	pthread_mutex_lock(&g.lock);
	c = g.c;
	for (int i = 0; i < MAX_FILES; i++)
		if (g.files[i].map) {
			map = (uintptr_t)g.files[i].map;
			map_len = g.files[i].map_len;
			break;
		}
	pthread_mutex_unlock(&g.lock);
	if (thpfs_meminfo(g.fs, meminfo, sizeof(meminfo)) < 0)
		meminfo[0] = '\0';
	snprintf(tmp, sizeof(tmp), "%s.tmp", g.stats_path);
	out = fopen(tmp, "w");
	if (!out)
		return;
	fprintf(out, "policy %s\nmap_addr %#" PRIxPTR "\nmap_len %zu\n", policy_names[g.policy], map, map_len);
	fprintf(out, "opens %" PRIu64 "\ndiscards %" PRIu64 "\ndiscard_bytes %" PRIu64 "\n"
		"whole_punches %" PRIu64 "\ncompleted_ranges %" PRIu64 "\nlazy_bytes %" PRIu64 "\n"
		"split_bytes %" PRIu64 "\nzero_check_failed %" PRIu64 "\ndontneed_absorbed %" PRIu64 "\n"
		"advice_absorbed %" PRIu64 "\nwillneed_pages %" PRIu64 "\nrefilled_ranges %" PRIu64 "\n"
		"refill_collapsed %" PRIu64 "\nreclaims %" PRIu64 "\n"
		"reclaim_bytes %" PRIu64 "\nerrors %" PRIu64 "\n",
		c.opens, c.discards, c.discard_bytes, c.whole_punches, c.completed_ranges, c.lazy_bytes,
		c.split_bytes, c.zero_check_failed, c.dontneed_absorbed, c.advice_absorbed,
		c.willneed_pages, c.refilled_ranges, c.refill_collapsed, c.reclaims, c.reclaim_bytes,
		c.errors);
	fputs(meminfo, out);
	if (fclose(out) == 0)
		rename(tmp, g.stats_path);
}

/* A request in STATS.reclaim: a byte count, 0 = all. */
static void serve_reclaim_request(void)
{
	char path[PATH_MAX + 16], buf[64] = "";
	int fd;
	ssize_t n;
	int64_t freed;

	snprintf(path, sizeof(path), "%s.reclaim", g.stats_path);
	fd = NEXT(open)(path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	NEXT(close)(fd);
	buf[n > 0 ? n : 0] = '\0';
	freed = thpfs_reclaim(g.fs, strtoull(buf, NULL, 0));
	pthread_mutex_lock(&g.lock);
	g.c.reclaims++;
	if (freed > 0)
		g.c.reclaim_bytes += (uint64_t)freed;
	pthread_mutex_unlock(&g.lock);
	write_stats();
	NEXT(unlink)(path);
}

static void *stats_main(void *arg)
{
	for (;;) {
		struct timespec ts = { 1, 0 };

		serve_reclaim_request();
		write_stats();
		nanosleep(&ts, NULL);
	}
	return NULL;
}

__attribute__((constructor)) static void thpfs_qemu_init(void)
{
	const char *prefix = getenv("THPFS_QEMU_PREFIX");
	const char *stats = getenv("THPFS_QEMU_STATS");
	char mount_opts[1024], err[256] = "";
	int r;

	for (int i = 0; i < MAX_FILES; i++)
		g.files[i].fd = -1;

	if (!prefix || !*prefix)
		prefix = "/thpfs/";
	if (prefix[0] != '/' || strlen(prefix) >= sizeof(g.prefix) - 1)
		fatal("THPFS_QEMU_PREFIX must be an absolute path: '%s'", prefix);
	snprintf(g.prefix, sizeof(g.prefix), "%s%s", prefix,
		 prefix[strlen(prefix) - 1] == '/' ? "" : "/");
	g.prefix_len = strlen(g.prefix);
	parse_options(getenv("THPFS_QEMU_OPTIONS"), mount_opts, sizeof(mount_opts));
	r = thpfs_mount_ex(&g.fs, mount_opts, err, sizeof(err));
	if (r < 0)
		fatal("THPFS_QEMU_OPTIONS '%s': %s%s%s", mount_opts, strerror(-r), err[0] ? ": " : "", err);
	if (stats && *stats) {
		if (strlen(stats) >= sizeof(g.stats_path) - 16)
			fatal("THPFS_QEMU_STATS too long");
		strcpy(g.stats_path, stats);
	}
}

/* At exit, the last stats - from the process that served a file only: a
 * child that inherited LD_PRELOAD (timeout(1), a helper QEMU runs) must not
 * overwrite them with its empty ones. */
__attribute__((destructor)) static void thpfs_qemu_fini(void)
{
	if (__atomic_load_n(&g.c.opens, __ATOMIC_RELAXED))
		write_stats();
}

static void start_stats_thread(void)
{
	if (g.stats_started || !g.stats_path[0])
		return;
	if (pthread_create(&g.stats_thread, NULL, stats_main, NULL) == 0) {
		pthread_detach(g.stats_thread);
		g.stats_started = 1;
	}
}

/* ---- the descriptor table -------------------------------------------------- */

/* The path inside the mount for a path under the prefix, or NULL. */
static const char *served_path(const char *path)
{
	if (!g.fs || !path || strncmp(path, g.prefix, g.prefix_len))
		return NULL; /* (nothing is served before the constructor has run) */
	return path + g.prefix_len - 1; /* keeps the '/' */
}

/* The served file behind fd (with g.lock held), or NULL. */
static struct served *lookup_fd(int fd)
{
	if (fd < 0)
		return NULL;
	for (int i = 0; i < MAX_FILES; i++)
		if (g.files[i].fd == fd && g.files[i].f)
			return &g.files[i];
	return NULL;
}

/* The mapping that [addr, addr+len) overlaps (with g.lock held), or NULL. */
static struct served *lookup_map(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	for (int i = 0; i < MAX_FILES; i++) {
		struct served *s = &g.files[i];
		uintptr_t m = (uintptr_t)s->map;

		if (s->map && a < m + s->map_len && a + len > m)
			return s;
	}
	return NULL;
}

static int set_errno(int neg)
{
	errno = -neg;
	return -1;
}

/* Opens a served path: returns the placeholder descriptor or -1/errno. */
static int served_open(const char *path, const char *inner, int flags, mode_t mode)
{
	struct thpfs_file *f;
	int r, fd;

	r = thpfs_open(g.fs, inner, flags, mode, &f);
	if (r < 0) {
		if (r != -ENOENT || (flags & O_CREAT))
			complain("open", path, r);
		return set_errno(r);
	}
	fd = NEXT(open)("/", O_PATH | O_CLOEXEC, 0);
	if (fd < 0) {
		thpfs_close(f);
		return -1;
	}
	pthread_mutex_lock(&g.lock);
	for (int i = 0; i < MAX_FILES; i++)
		if (g.files[i].fd < 0 && !g.files[i].map) {
			g.files[i] = (struct served){ .fd = fd, .f = f };
			snprintf(g.files[i].path, sizeof(g.files[i].path), "%s", path);
			g.c.opens++;
			pthread_mutex_unlock(&g.lock);
			start_stats_thread();
			return fd;
		}
	pthread_mutex_unlock(&g.lock);
	thpfs_close(f);
	NEXT(close)(fd);
	complain("open", path, -EMFILE);
	return set_errno(-EMFILE);
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | __O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
	const char *inner = served_path(path);
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return inner ? served_open(path, inner, flags, mode) : NEXT(open)(path, flags, mode);
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int __open_2(const char *path, int flags)
{
	return open(path, flags);
}
int __open64_2(const char *path, int flags) __attribute__((alias("__open_2")));

int openat(int dirfd, const char *path, int flags, ...)
{
	const char *inner = served_path(path);
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return inner ? served_open(path, inner, flags, mode) : NEXT(openat)(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int __openat_2(int dirfd, const char *path, int flags)
{
	return openat(dirfd, path, flags);
}
int __openat64_2(int dirfd, const char *path, int flags) __attribute__((alias("__openat_2")));

int close(int fd)
{
	struct served *s;
	struct thpfs_file *f = NULL;

	pthread_mutex_lock(&g.lock);
	s = lookup_fd(fd);
	if (s) {
		f = s->f;
		s->f = NULL;
		s->fd = -1; /* the mapping, if any, keeps the slot */
	}
	pthread_mutex_unlock(&g.lock);
	if (f)
		thpfs_close(f);
	return NEXT(close)(fd);
}

/* ---- metadata -------------------------------------------------------------- */

/* Runs fn on the served file behind fd (unlocked: thpfs is thread-safe and
 * QEMU does not close a descriptor while using it); 1 if served. */
static struct thpfs_file *file_of(int fd)
{
	struct served *s;

	pthread_mutex_lock(&g.lock);
	s = lookup_fd(fd);
	pthread_mutex_unlock(&g.lock);
	return s ? s->f : NULL;
}

int fstat(int fd, struct stat *st)
{
	struct thpfs_file *f = file_of(fd);
	int r;

	if (!f)
		return NEXT(fstat)(fd, st);
	r = thpfs_fstat(f, st);
	return r < 0 ? set_errno(r) : 0;
}
int fstat64(int fd, struct stat64 *st) __attribute__((alias("fstat")));

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	const char *inner = served_path(path);
	int r;

	if (!path[0] && (flags & AT_EMPTY_PATH) && file_of(dirfd))
		return fstat(dirfd, st);
	if (!inner)
		return NEXT(fstatat)(dirfd, path, st, flags);
	r = thpfs_stat(g.fs, inner, st);
	return r < 0 ? set_errno(r) : 0;
}
int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) __attribute__((alias("fstatat")));

int stat(const char *path, struct stat *st)
{
	const char *inner = served_path(path);
	int r;

	if (!inner)
		return NEXT(stat)(path, st);
	r = thpfs_stat(g.fs, inner, st);
	return r < 0 ? set_errno(r) : 0;
}
int stat64(const char *path, struct stat64 *st) __attribute__((alias("stat")));

int lstat(const char *path, struct stat *st)
{
	const char *inner = served_path(path);
	int r;

	if (!inner)
		return NEXT(lstat)(path, st);
	r = thpfs_stat(g.fs, inner, st);
	return r < 0 ? set_errno(r) : 0;
}
int lstat64(const char *path, struct stat64 *st) __attribute__((alias("lstat")));

int fstatfs(int fd, struct statfs *sf)
{
	struct thpfs_statfs ts;
	int r;

	if (!file_of(fd))
		return NEXT(fstatfs)(fd, sf);
	r = thpfs_statfs(g.fs, &ts);
	if (r < 0)
		return set_errno(r);
	memset(sf, 0, sizeof(*sf));
	sf->f_type = THPFS_QEMU_MAGIC;
	sf->f_bsize = (long)ts.bsize;
	sf->f_frsize = (long)ts.bsize;
	sf->f_blocks = ts.blocks;
	sf->f_bfree = ts.bfree;
	sf->f_bavail = ts.bfree;
	sf->f_files = ts.files;
	sf->f_ffree = ts.ffree;
	sf->f_namelen = (long)ts.namemax;
	return 0;
}
int fstatfs64(int fd, struct statfs64 *sf) __attribute__((alias("fstatfs")));

off_t lseek(int fd, off_t off, int whence)
{
	struct thpfs_file *f = file_of(fd);
	off_t r;

	if (!f)
		return NEXT(lseek)(fd, off, whence);
	r = thpfs_lseek(f, off, whence);
	return r < 0 ? set_errno((int)r) : r;
}
off_t lseek64(int fd, off_t off, int whence) __attribute__((alias("lseek")));

int ftruncate(int fd, off_t size)
{
	struct thpfs_file *f = file_of(fd);
	int r;

	if (!f)
		return NEXT(ftruncate)(fd, size);
	r = thpfs_ftruncate(f, size);
	return r < 0 ? set_errno(r) : 0;
}
int ftruncate64(int fd, off_t size) __attribute__((alias("ftruncate")));

int unlink(const char *path)
{
	const char *inner = served_path(path);
	int r;

	if (!inner)
		return NEXT(unlink)(path);
	r = thpfs_unlink(g.fs, inner);
	return r < 0 ? set_errno(r) : 0;
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
	struct thpfs_file *f = file_of(fd);
	ssize_t r;

	if (!f)
		return NEXT(pread)(fd, buf, len, off);
	r = thpfs_pread(f, buf, len, off);
	return r < 0 ? set_errno((int)r) : r;
}
ssize_t pread64(int fd, void *buf, size_t len, off_t off) __attribute__((alias("pread")));

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	struct thpfs_file *f = file_of(fd);
	ssize_t r;

	if (!f)
		return NEXT(pwrite)(fd, buf, len, off);
	r = thpfs_pwrite(f, buf, len, off);
	return r < 0 ? set_errno((int)r) : r;
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) __attribute__((alias("pwrite")));

int fsync(int fd)
{
	struct thpfs_file *f = file_of(fd);

	return f ? 0 : NEXT(fsync)(fd);
}

int fdatasync(int fd)
{
	struct thpfs_file *f = file_of(fd);

	return f ? 0 : NEXT(fdatasync)(fd);
}

/* ---- discard ----------------------------------------------------------------- */

/* Whether all of [p, p+len) reads zero. */
static int all_zero(const char *p, size_t len)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < len / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

/* whole-lazy, one 2 MiB range r of s's file: [off, off+len) inside it was
 * discarded.  A whole range is punched at once; a part is freed lazily and
 * marked, and once every page of the range is marked and the range reads
 * zero (through the mapping) it is punched whole.  A marked page that does
 * not read zero was written again: its mark goes.  With g.lock held. */
static int discard_whole_lazy_range(struct served *s, size_t r, off_t off, off_t len)
{
	off_t base = (off_t)(r * HUGE);
	uint64_t *bits = s->discarded[r];
	int full = 1, err;

	if (len == (off_t)HUGE) {
		memset(bits, 0, sizeof(s->discarded[r]));
		s->partial[r] = 0;
		g.c.whole_punches++;
		return thpfs_fallocate(s->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, base, HUGE);
	}
	err = thpfs_free_lazy(s->f, off, len);
	if (err < 0)
		return err;
	g.c.lazy_bytes += (uint64_t)len;
	s->partial[r] = 1;
	for (off_t o = off; o < off + len; o += PAGE) {
		size_t pg = (size_t)(o - base) / PAGE;

		bits[pg / 64] |= 1ULL << (pg % 64);
	}
	for (size_t i = 0; i < PAGES_PER_HUGE / 64; i++)
		full &= bits[i] == ~0ULL;
	if (!full)
		return 0;
	if (!s->map || base < s->map_off || base + (off_t)HUGE > s->map_off + (off_t)s->map_len) {
		memset(bits, 0, sizeof(s->discarded[r]));
		return 0; /* not mapped: nothing to check it against; keep it lazy */
	}
	const char *range = s->map + (base - s->map_off);
	if (!all_zero(range, HUGE)) {
		g.c.zero_check_failed++;
		for (size_t pg = 0; pg < PAGES_PER_HUGE; pg++)
			if (!all_zero(range + pg * PAGE, PAGE))
				bits[pg / 64] &= ~(1ULL << (pg % 64));
		return 0;
	}
	memset(bits, 0, sizeof(s->discarded[r]));
	s->partial[r] = 0;
	g.c.completed_ranges++;
	return thpfs_fallocate(s->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, base, HUGE);
}

/* The policy's discard of [off, off+len) of s's file.  With g.lock held. */
static int discard(struct served *s, off_t off, off_t len)
{
	int err = 0;

	g.c.discards++;
	g.c.discard_bytes += (uint64_t)len;
	switch (g.policy) {
	case POLICY_SPLIT:
		g.c.split_bytes += (uint64_t)len;
		return thpfs_fallocate(s->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, off, len);
	case POLICY_LAZY:
		g.c.lazy_bytes += (uint64_t)len;
		return thpfs_free_lazy(s->f, off, len);
	case POLICY_WHOLE_LAZY:
		break;
	}
	if ((off | len) & (off_t)(PAGE - 1) || !s->discarded)
		return thpfs_fallocate(s->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, off, len);
	for (off_t o = off; o < off + len && !err; ) {
		size_t r = (size_t)o / HUGE;
		off_t end = (off_t)((r + 1) * HUGE);

		if (end > off + len)
			end = off + len;
		if (r >= s->nranges)
			return thpfs_fallocate(s->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, o, off + len - o);
		err = discard_whole_lazy_range(s, r, o, end - o);
		o = end;
	}
	return err;
}

/* whole-lazy: every page of range r, once partly discarded, is the guest's
 * again.  The guest owns all of the range now, so back it whole: allocate
 * its holes (zero, as the holes read) and collapse it into a huge page, as
 * khugepaged would with max_ptes_none=511 - but only here, never over a
 * page still in the balloon.  With g.lock held. */
static void refill_range(struct served *s, size_t r)
{
	off_t base = (off_t)(r * HUGE);
	int n;

	s->partial[r] = 0;
	if (!s->f || thpfs_fallocate(s->f, THPFS_FALLOC_KEEP_SIZE, base, HUGE) < 0) {
		g.c.errors++;
		return;
	}
	g.c.refilled_ranges++;
	n = thpfs_collapse(s->f, base, HUGE);
	if (n > 0)
		g.c.refill_collapsed += (uint64_t)n;
}

/* Pages [off, off+len) of s's file are the guest's again (deflate: QEMU's
 * MADV_WILLNEED).  With g.lock held. */
static void undiscard(struct served *s, off_t off, off_t len)
{
	if (!s->discarded)
		return;
	for (off_t o = off & ~(off_t)(PAGE - 1); o < off + len; o += PAGE) {
		size_t pg = (size_t)o / PAGE, r = pg / PAGES_PER_HUGE;
		uint64_t *bits;
		int empty = 1;

		if (r >= s->nranges)
			break;
		bits = s->discarded[r];
		bits[(pg % PAGES_PER_HUGE) / 64] &= ~(1ULL << (pg % 64));
		g.c.willneed_pages++;
		if (!s->partial[r])
			continue;
		for (size_t i = 0; i < PAGES_PER_HUGE / 64; i++)
			empty &= bits[i] == 0;
		if (empty)
			refill_range(s, r);
	}
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
	struct served *s;
	int r;

	pthread_mutex_lock(&g.lock);
	s = lookup_fd(fd);
	if (!s) {
		pthread_mutex_unlock(&g.lock);
		return NEXT(fallocate)(fd, mode, off, len);
	}
	if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
		r = off < 0 || len <= 0 ? -EINVAL : discard(s, off, len);
	else
		r = thpfs_fallocate(s->f, mode, off, len);
	if (r < 0)
		g.c.errors++;
	pthread_mutex_unlock(&g.lock);
	return r < 0 ? set_errno(r) : 0;
}
int fallocate64(int fd, int mode, off_t off, off_t len) __attribute__((alias("fallocate")));

int posix_fallocate(int fd, off_t off, off_t len)
{
	struct thpfs_file *f = file_of(fd);
	int r;

	if (!f)
		return NEXT(posix_fallocate)(fd, off, len);
	r = thpfs_fallocate(f, 0, off, len);
	return r < 0 ? -r : 0;
}
int posix_fallocate64(int fd, off_t off, off_t len) __attribute__((alias("posix_fallocate")));

/* ---- the mapping ------------------------------------------------------------- */

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct served *s;
	void *where = (flags & MAP_FIXED) ? addr : NULL;
	int r;

	pthread_mutex_lock(&g.lock);
	s = lookup_fd(fd);
	if (!s) {
		pthread_mutex_unlock(&g.lock);
		return sys_mmap(addr, len, prot, flags, fd, off);
	}
	if ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE) {
		r = -ENODEV; /* a private copy of thpfs memory cannot be had */
	} else if (s->map) {
		r = -EBUSY;
	} else {
		r = thpfs_mmap(s->f, off, len, &where);
	}
	if (r == 0) {
		s->map = where;
		s->map_len = len;
		s->map_off = off;
		if (g.policy == POLICY_WHOLE_LAZY) {
			s->nranges = (size_t)(off + (off_t)len) / HUGE;
			s->discarded = calloc(s->nranges, sizeof(*s->discarded));
			s->partial = calloc(s->nranges, 1);
			if (!s->discarded || !s->partial) {
				free(s->discarded);
				free(s->partial);
				s->discarded = NULL;
				s->partial = NULL;
				thpfs_munmap(s->f, where, len);
				s->map = NULL;
				r = -ENOMEM;
			}
		}
	}
	pthread_mutex_unlock(&g.lock);
	if (r < 0) {
		fprintf(stderr, "thpfs-qemu: mmap %s (%zu bytes at %p, offset %lld): %s%s\n", s->path, len,
			addr, (long long)off, strerror(-r),
			r == -EINVAL ? " (offset and length must be multiples of 2 MiB, the address 2 MiB "
				       "aligned: QEMU needs align=2M)" : r == -ENODEV ? " (needs share=on)" : "");
		errno = -r;
		return MAP_FAILED;
	}
	write_stats();
	return where;
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));

int munmap(void *addr, size_t len)
{
	struct served *s;
	uintptr_t a = (uintptr_t)addr, m;
	struct thpfs_file *f;
	int r;

	pthread_mutex_lock(&g.lock);
	s = lookup_map(addr, len);
	if (!s) {
		pthread_mutex_unlock(&g.lock);
		return sys_munmap(addr, len);
	}
	m = (uintptr_t)s->map;
	if (a > m || a + len < m + s->map_len) {
		pthread_mutex_unlock(&g.lock);
		fprintf(stderr, "thpfs-qemu: munmap of part of %s's mapping refused\n", s->path);
		errno = EINVAL;
		return -1;
	}
	/* thpfs_munmap needs an open handle of the file. */
	f = s->f;
	if (!f) {
		r = thpfs_open(g.fs, s->path + g.prefix_len - 1, O_RDWR, 0, &f);
		if (r < 0) {
			pthread_mutex_unlock(&g.lock);
			return set_errno(r);
		}
	}
	r = thpfs_munmap(f, s->map, s->map_len);
	if (!s->f)
		thpfs_close(f);
	if (r == 0) {
		free(s->discarded);
		free(s->partial);
		s->discarded = NULL;
		s->partial = NULL;
		s->map = NULL;
		s->map_len = 0;
	}
	pthread_mutex_unlock(&g.lock);
	if (r < 0)
		return set_errno(r);
	/* the rest of the range (QEMU adds its guard page) */
	if (a < m && sys_munmap(addr, m - a))
		return -1;
	if (a + len > m + s->map_len && sys_munmap((void *)(m + s->map_len), a + len - m - s->map_len))
		return -1;
	return 0;
}

/* What madvise does on part [a, a+len) of s's mapping; with g.lock held. */
static int advise_mapping(struct served *s, uintptr_t a, size_t len, int advice)
{
	off_t off = s->map_off + (off_t)(a - (uintptr_t)s->map);

	switch (advice) {
	case MADV_DONTNEED:
	case MADV_FREE:
		g.c.dontneed_absorbed++;
		return 0;
	case MADV_REMOVE:
		if (!s->f)
			return -EBADF;
		return discard(s, off, (off_t)len);
	case MADV_WILLNEED:
		undiscard(s, off, (off_t)len);
		g.c.advice_absorbed++;
		return 0;
	case MADV_HUGEPAGE:
	case MADV_NOHUGEPAGE:
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_COLD:
	case MADV_PAGEOUT:
		g.c.advice_absorbed++;
		return 0;
	default:
		return sys_madvise((void *)a, len, advice) ? -errno : 0;
	}
}

int madvise(void *addr, size_t len, int advice)
{
	uintptr_t a = (uintptr_t)addr, m, e;
	struct served *s;
	int r;

	pthread_mutex_lock(&g.lock);
	s = lookup_map(addr, len);
	if (!s) {
		pthread_mutex_unlock(&g.lock);
		return sys_madvise(addr, len, advice);
	}
	m = (uintptr_t)s->map;
	e = m + s->map_len;
	r = advise_mapping(s, a < m ? m : a, (a + len > e ? e : a + len) - (a < m ? m : a), advice);
	if (r < 0)
		g.c.errors++;
	pthread_mutex_unlock(&g.lock);
	if (r < 0)
		return set_errno(r);
	if (a < m && sys_madvise(addr, m - a, advice))
		return -1;
	if (a + len > e && sys_madvise((void *)e, a + len - e, advice))
		return -1;
	return 0;
}
