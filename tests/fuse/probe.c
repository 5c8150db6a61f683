/*
 * probe.c - small system-call probes for tests/fuse/run.sh, for the calls
 * that no everyday tool makes on its own.  Each prints what happened and
 * exits 0 when the call behaved as the subcommand's description says.
 *
 *   probe mmap FILE                shared mmap: prints "shared: ok" or
 *                                  "shared: ERRNAME"; private read-only mmap:
 *                                  "private: ok" when it reads what pread
 *                                  reads, else "private: ERRNAME|mismatch"
 *   probe segments FILE            data segments by SEEK_DATA/SEEK_HOLE,
 *                                  one "START END" line each
 *   probe rename2 OLD NEW FLAG     renameat2 with FLAG noreplace|exchange;
 *                                  prints "ok" or the errno name
 *   probe dirty FILE OFF           pwrite one byte 'x' at OFF (no truncate)
 *   probe handle PATH MNTDIR [unlink]  name_to_handle_at(PATH), the
 *                                  kernel's dentry and inode caches dropped
 *                                  (vm.drop_caches=2; root), then
 *                                  open_by_handle_at on MNTDIR: prints "ok"
 *                                  when it opens the same inode (and a file
 *                                  reads the same first bytes), else the
 *                                  errno name; with "unlink", PATH is
 *                                  removed first (ESTALE is right then)
 *   probe shared FILE              coherence of a shared mapping of FILE (4 MiB
 *                                  of it is rewritten) with I/O through other
 *                                  descriptors; one line per step, "ok" or
 *                                  what went wrong; exit 1 on any failure
 *   probe torn FILE SECONDS        one process rewrites the first MiB of FILE
 *                                  with all 'A' then all 'B', others pread
 *                                  it whole; prints "torn N of M reads" and
 *                                  exits 1 when a read mixed the two
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "unknown";
}

static int drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd < 0 || write(fd, "2", 1) != 1) {
		fprintf(stderr, "probe: drop_caches: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int handle_roundtrip(struct file_handle *fh, const char *path, const char *mnt,
			    int do_unlink)
{
	char before[64] = "", after[64] = "";
	struct stat st0, st1;
	ssize_t n0 = 0, n1;
	int mount_id, fd, mfd;

	if (!fh)
		return 1;
	fh->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(AT_FDCWD, path, fh, &mount_id, 0) < 0) {
		printf("name_to_handle_at: %s\n", errname(errno));
		return 1;
	}
	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st0) < 0) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (S_ISREG(st0.st_mode))
		n0 = pread(fd, before, sizeof(before), 0);
	close(fd);
	if (do_unlink && (S_ISDIR(st0.st_mode) ? rmdir(path) : unlink(path)) < 0) {
		fprintf(stderr, "probe: remove %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (drop_caches() < 0)
		return 1;
	mfd = open(mnt, O_RDONLY | O_DIRECTORY);
	if (mfd < 0) {
		fprintf(stderr, "probe: %s: %s\n", mnt, strerror(errno));
		return 1;
	}
	fd = open_by_handle_at(mfd, fh, O_RDONLY);
	if (fd < 0) {
		printf("%s\n", errname(errno));
		close(mfd);
		return 0;
	}
	if (fstat(fd, &st1) < 0 || st1.st_ino != st0.st_ino) {
		printf("other inode\n");
		return 1;
	}
	if (S_ISREG(st0.st_mode)) {
		n1 = pread(fd, after, sizeof(after), 0);
		if (n1 != n0 || memcmp(before, after, sizeof(before)) != 0) {
			printf("other data\n");
			return 1;
		}
	}
	close(fd);
	close(mfd);
	printf("ok\n");
	return 0;
}

static int shared_fail;

static void shared_step(const char *what, int good)
{
	printf("%s: %s\n", what, good ? "ok" : "FAILED");
	if (!good)
		shared_fail = 1;
}

static sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* Whether reading the byte at p raises SIGBUS (a page past EOF). */
static int faults(volatile const char *p)
{
	struct sigaction sa = { .sa_handler = on_bus }, old;
	int bus = 0;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)*p;
	else
		bus = 1;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

static int probe_shared(const char *path)
{
	const size_t len = 4 << 20;
	char *p, buf[4096];
	int fd, fd2;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	fd2 = open(path, O_RDWR);
	if (fd < 0 || fd2 < 0 || ftruncate(fd, (off_t)len) < 0) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("mmap: %s\n", errname(errno));
		return 1;
	}
	/* stores through the mapping reach the file: read through another fd */
	memset(p + 4096, 'm', 4096);
	shared_step("store seen by pread (no msync)",
		    pread(fd2, buf, 4096, 4096) == 4096 && buf[0] == 'm' && buf[4095] == 'm');
	memset(p + (3 << 20), 'n', 100);
	shared_step("msync", msync(p, len, MS_SYNC) == 0);
	shared_step("store seen by pread after msync",
		    pread(fd2, buf, 100, 3 << 20) == 100 && buf[0] == 'n' && buf[99] == 'n');
	/* writes through another fd are seen through the mapping */
	memset(buf, 'w', sizeof(buf));
	shared_step("pwrite seen through the mapping",
		    pwrite(fd2, buf, 4096, 8192) == 4096 && p[8192] == 'w' && p[8192 + 4095] == 'w');
	/* a punch drops the mapped pages: they read zero */
	shared_step("punch", fallocate(fd2, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096,
				       8192) == 0);
	shared_step("punched pages read zero through the mapping",
		    p[4096] == 0 && p[8192] == 0 && p[8192 + 4095] == 0);
	shared_step("punched pages read zero by pread",
		    pread(fd2, buf, 4096, 4096) == 4096 && buf[0] == 0);
	/* a truncate drops them too: past EOF the mapping faults */
	shared_step("truncate", ftruncate(fd2, 1 << 20) == 0);
	shared_step("SIGBUS past the new EOF", faults(p + (3 << 20)));
	shared_step("data before EOF kept", p[0] == 0 && faults(p + (1 << 20)) &&
		    !faults(p + (1 << 20) - 1));
	/* data written through the mapping survives munmap and close */
	memset(p, 'z', 4096);
	munmap(p, len);
	close(fd);
	shared_step("store kept after munmap and close",
		    pread(fd2, buf, 4096, 0) == 4096 && buf[0] == 'z' && buf[4095] == 'z');
	close(fd2);
	return shared_fail;
}

static int probe_handle(const char *path, const char *mnt, int do_unlink)
{
	struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
	int ret = handle_roundtrip(fh, path, mnt, do_unlink);

	free(fh);
	return ret;
}

static int probe_mmap(const char *path)
{
	struct stat st;
	char *buf, *p;
	int fd, ret = 0;

	fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
		fprintf(stderr, "probe: %s: need a non-empty file (%s)\n", path, strerror(errno));
		return 1;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("shared: %s\n", errname(errno));
	} else {
		printf("shared: ok\n");
		munmap(p, (size_t)st.st_size);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	buf = malloc((size_t)st.st_size);
	if (p == MAP_FAILED) {
		printf("private: %s\n", errname(errno));
		ret = 1;
	} else if (!buf || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		printf("private: pread failed\n");
		ret = 1;
	} else {
		int same = memcmp(p, buf, (size_t)st.st_size) == 0;

		printf("private: %s\n", same ? "ok" : "mismatch");
		ret = !same;
	}
	if (p != MAP_FAILED)
		munmap(p, (size_t)st.st_size);
	free(buf);
	close(fd);
	return ret;
}

static int probe_segments(const char *path)
{
	off_t pos = 0, data, hole;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		data = lseek(fd, pos, SEEK_DATA);
		if (data < 0)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			fprintf(stderr, "probe: SEEK_HOLE: %s\n", strerror(errno));
			close(fd);
			return 1;
		}
		printf("%lld %lld\n", (long long)data, (long long)hole);
		pos = hole;
	}
	close(fd);
	if (errno != ENXIO) {
		fprintf(stderr, "probe: SEEK_DATA: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

static int probe_rename2(const char *from, const char *to, const char *flag)
{
	unsigned flags;

	if (!strcmp(flag, "noreplace"))
		flags = RENAME_NOREPLACE;
	else if (!strcmp(flag, "exchange"))
		flags = RENAME_EXCHANGE;
	else if (!strcmp(flag, "none"))
		flags = 0;
	else {
		fprintf(stderr, "probe: rename2 flag must be none, noreplace or exchange\n");
		return 2;
	}
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) < 0) {
		printf("%s\n", errname(errno));
		return 1;
	}
	printf("ok\n");
	return 0;
}

static int probe_dirty(const char *path, const char *off)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || pwrite(fd, "x", 1, strtoll(off, NULL, 0)) != 1) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}

#define TORN_LEN (1U << 20)
#define TORN_READERS 3
/* buffers are page aligned: an unaligned MiB spans 257 pages, which the
 * kernel sends as two FUSE requests, and two requests may tear */

/* Writer of probe torn: alternates whole-MiB writes of 'A' and 'B' until
 * the deadline. */
static int torn_writer(int fd, time_t deadline)
{
	char *buf = aligned_alloc(4096, TORN_LEN);

	if (!buf)
		return 1;
	for (unsigned i = 0; time(NULL) < deadline; i++) {
		memset(buf, i & 1 ? 'B' : 'A', TORN_LEN);
		if (pwrite(fd, buf, TORN_LEN, 0) != TORN_LEN) {
			fprintf(stderr, "probe: torn: pwrite: %s\n", strerror(errno));
			return 1;
		}
	}
	free(buf);
	return 0;
}

/* Reader of probe torn: counts reads whose bytes are not all one value;
 * reports "reads torn" on the pipe. */
static int torn_reader(int fd, time_t deadline, int out)
{
	unsigned long counts[2] = { 0, 0 };
	char *buf = aligned_alloc(4096, TORN_LEN);

	if (!buf)
		return 1;
	while (time(NULL) < deadline) {
		if (pread(fd, buf, TORN_LEN, 0) != TORN_LEN) {
			fprintf(stderr, "probe: torn: pread: %s\n", strerror(errno));
			return 1;
		}
		counts[0]++;
		for (size_t i = 1; i < TORN_LEN; i++) {
			if (buf[i] != buf[0]) {
				counts[1]++;
				break;
			}
		}
	}
	free(buf);
	return write(out, counts, sizeof(counts)) == sizeof(counts) ? 0 : 1;
}

static int probe_torn(const char *path, const char *seconds)
{
	time_t deadline = time(NULL) + strtol(seconds, NULL, 0);
	unsigned long reads = 0, torn = 0, counts[2];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	int pfd[2], bad = 0;
	pid_t pids[TORN_READERS + 1];

	if (fd < 0 || pipe(pfd) < 0) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 2;
	}
	/* the file starts as one huge page: 1 MiB of 'A', then 1 MiB of zeros */
	{
		char *a = aligned_alloc(4096, TORN_LEN);
		int ok = a && (memset(a, 'A', TORN_LEN), pwrite(fd, a, TORN_LEN, 0) == TORN_LEN) &&
			 ftruncate(fd, 2 * TORN_LEN) == 0;

		free(a);
		if (!ok) {
			fprintf(stderr, "probe: %s: cannot fill it\n", path);
			return 2;
		}
	}
	for (int i = 0; i <= TORN_READERS; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			return 2;
		if (pids[i] == 0)
			_exit(i == 0 ? torn_writer(fd, deadline) : torn_reader(fd, deadline, pfd[1]));
	}
	close(pfd[1]);
	for (int i = 0; i < TORN_READERS; i++) {
		if (read(pfd[0], counts, sizeof(counts)) != sizeof(counts)) {
			bad = 1;
			break;
		}
		reads += counts[0];
		torn += counts[1];
	}
	for (int i = 0; i <= TORN_READERS; i++) {
		int status;

		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			bad = 1;
	}
	close(fd);
	printf("torn %lu of %lu reads\n", torn, reads);
	if (bad)
		return 2;
	return torn ? 1 : 0;
}

int main(int argc, char *argv[])
{
	if (argc == 3 && !strcmp(argv[1], "mmap"))
		return probe_mmap(argv[2]);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "handle"))
		return probe_handle(argv[2], argv[3], argc == 5 && !strcmp(argv[4], "unlink"));
	if (argc == 3 && !strcmp(argv[1], "shared"))
		return probe_shared(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "segments"))
		return probe_segments(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "rename2"))
		return probe_rename2(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "dirty"))
		return probe_dirty(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "torn"))
		return probe_torn(argv[2], argv[3]);
	fprintf(stderr, "usage: probe mmap FILE | segments FILE | rename2 OLD NEW FLAG | "
		"dirty FILE OFF | torn FILE SECONDS\n");
	return 2;
}
