/*
 * punch-mem.c - does punching 4 KiB holes through a thpfs mount give the
 * memory back?  Runs the daemon in a child memory cgroup (tools/cgroup.c),
 * writes a file in huge pages through the mount, punches every other 4 KiB
 * page of its first huge pages, and compares the cgroup's usage before and
 * after with the punched amount.
 *
 *   punch-mem [-o OPTIONS] [-t TOLERANCE_PCT] [-i] THPFS_BINARY MOUNTPOINT
 *
 * -i only reports (for split=inplace, where the kernel keeps the huge page
 * charged until it splits it later).
 *
 * -m: the file is written through a shared mapping instead, by a child
 * process in a second child cgroup that keeps the mapping while the parent
 * punches; then both cgroups must fall by the punched amount: the daemon's
 * (thpfs frames) and the mapper's (the kernel's page cache of the mapped
 * file), and the mapping must read the punched pages as zero.  Exit status 0 when the usage fell by
 * the punched amount within TOLERANCE_PCT (default 10) and the data read
 * back right; 1 otherwise; 2 when it could not run (no cgroup, no mount).
 * Needs root (cgroup, mount).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"

#define MIB (1024 * 1024)
#define HUGE (2 * MIB)
#define PAGE 4096
#define FILE_HUGE 32          /* huge pages written */
#define PUNCH_HUGE 16         /* huge pages punched, every other 4 KiB page */
#define FUSE_SUPER_MAGIC 0x65735546

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Waits until mp is a FUSE mount (or the daemon died).  Returns 0 or -1. */
static int wait_mounted(const char *mp, pid_t daemon)
{
	for (int i = 0; i < 500; i++) {
		struct statfs sf;
		int status;

		if (statfs(mp, &sf) == 0 && sf.f_type == FUSE_SUPER_MAGIC)
			return 0;
		if (waitpid(daemon, &status, WNOHANG) == daemon)
			return -1;
		msleep(10);
	}
	return -1;
}

/* Unmounts and reaps the daemon; returns its exit status or -1. */
static int stop_daemon(const char *mp, pid_t daemon)
{
	pid_t um = fork();
	int status;

	if (um == 0) {
		execlp("fusermount3", "fusermount3", "-u", mp, (char *)NULL);
		_exit(127);
	}
	if (um > 0)
		waitpid(um, &status, 0);
	for (int i = 0; i < 500; i++) {
		pid_t r = waitpid(daemon, &status, WNOHANG);

		if (r == daemon)
			return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
		msleep(10);
	}
	kill(daemon, SIGKILL);
	waitpid(daemon, &status, 0);
	return -1;
}

/* Fills buf with a pattern that differs for every 4 KiB page. */
static void fill_pattern(unsigned char *buf, size_t len)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
}

/* Settled cgroup usage: the median of a few reads a little apart. */
static int64_t usage(const struct thpfs_cg *cg)
{
	int64_t v[5];

	for (int i = 0; i < 5; i++) {
		v[i] = thpfs_cg_usage(cg);
		msleep(20);
	}
	for (int i = 0; i < 5; i++)
		for (int j = i + 1; j < 5; j++)
			if (v[j] < v[i]) {
				int64_t t = v[i];
				v[i] = v[j];
				v[j] = t;
			}
	return v[2];
}

static int run(const char *mp, const struct thpfs_cg *cg, int tol, int report_only)
{
	size_t len = (size_t)FILE_HUGE * HUGE, punched = 0;
	unsigned char *want, *got;
	char path[4200];
	int64_t before, after;
	struct stat st0, st1;
	int fd, ret = 1;

	want = malloc(len);
	got = malloc(len);
	if (!want || !got)
		return 2;
	fill_pattern(want, len);
	snprintf(path, sizeof(path), "%s/punched", mp);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror("punch-mem: open");
		return 1;
	}
	for (size_t off = 0; off < len; off += MIB)
		if (pwrite(fd, want + off, MIB, (off_t)off) != MIB) {
			perror("punch-mem: pwrite");
			goto out;
		}
	/* one punch outside the measured range first, so that any session
	 * thread or buffer a punch needs exists before the first reading */
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)len - PAGE, PAGE) < 0) {
		perror("punch-mem: fallocate");
		goto out;
	}
	memset(want + len - PAGE, 0, PAGE);
	fstat(fd, &st0);
	before = usage(cg);
	for (size_t h = 0; h < PUNCH_HUGE; h++) {
		for (size_t p = 0; p < HUGE / PAGE; p += 2) {
			off_t off = (off_t)(h * HUGE + p * PAGE);

			if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
				      PAGE) < 0) {
				perror("punch-mem: fallocate");
				goto out;
			}
			memset(want + off, 0, PAGE);
			punched += PAGE;
		}
	}
	after = usage(cg);
	fstat(fd, &st1);

	double drop = (double)(before - after) / MIB, expect = (double)punched / MIB;

	printf("cgroup usage before %.1f MiB, after %.1f MiB: fell %.2f MiB; punched %.2f MiB\n",
	       (double)before / MIB, (double)after / MIB, drop, expect);
	printf("st_blocks before %lld, after %lld: fell %lld (punched %zu)\n",
	       (long long)st0.st_blocks, (long long)st1.st_blocks,
	       (long long)(st0.st_blocks - st1.st_blocks), punched / 512);
	if (pread(fd, got, len, 0) != (ssize_t)len || memcmp(got, want, len)) {
		printf("FAIL: data read back differs from what was written and punched\n");
		goto out;
	}
	if (report_only) {
		ret = 0;
		goto out;
	}
	if (st0.st_blocks - st1.st_blocks != (blkcnt_t)(punched / 512)) {
		printf("FAIL: st_blocks did not fall by the punched amount\n");
		goto out;
	}
	if (drop < expect * (100 - tol) / 100 || drop > expect * (100 + tol) / 100) {
		printf("FAIL: usage fell %.2f MiB, want %.2f MiB +-%d%%\n", drop, expect, tol);
		goto out;
	}
	ret = 0;
out:
	close(fd);
	unlink(path);
	free(want);
	free(got);
	return ret;
}

/* One byte through a pipe; returns 0 or -1. */
static int pipe_send(int fd)
{
	return write(fd, "x", 1) == 1 ? 0 : -1;
}

static int pipe_wait(int fd)
{
	char c;

	return read(fd, &c, 1) == 1 ? 0 : -1;
}

/*
 * The mapper (child, in cg2): maps the file shared, writes the pattern
 * through the mapping, msyncs, reports, waits for the punches, then checks
 * that the mapping reads what it should.  Exit status 0 when it does.
 */
static int mapper(const char *path, unsigned char *want, size_t len, int to_parent,
		  int from_parent)
{
	unsigned char *p;
	int fd = open(path, O_RDWR);

	if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
		perror("punch-mem: mapper open");
		return 1;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("punch-mem: mmap");
		return 1;
	}
	memcpy(p, want, len);
	if (msync(p, len, MS_SYNC) < 0) {
		perror("punch-mem: msync");
		return 1;
	}
	/* the kernel may have dropped the written-back pages (a changed mtime
	 * invalidates the cache): read them all back in, through the mapping */
	if (memcmp(p, want, len) != 0) {
		printf("FAIL: the mapping does not read what was written\n");
		return 1;
	}
	if (pipe_send(to_parent) < 0 || pipe_wait(from_parent) < 0)
		return 1;
	/* what the parent punched: the last page, every other page of the
	 * first PUNCH_HUGE huge pages */
	memset(want + len - PAGE, 0, PAGE);
	for (size_t h = 0; h < PUNCH_HUGE; h++)
		for (size_t i = 0; i < HUGE / PAGE; i += 2)
			memset(want + h * HUGE + i * PAGE, 0, PAGE);
	if (memcmp(p, want, len) != 0) {
		printf("FAIL: the mapping does not read what was written and punched\n");
		return 1;
	}
	munmap(p, len);
	close(fd);
	return 0;
}

/* -m: see the top of the file. */
static int run_mapped(const char *mp, const struct thpfs_cg *cg, int tol)
{
	size_t len = (size_t)FILE_HUGE * HUGE, punched = 0;
	int up[2], down[2], fd = -1, ret = 1, status;
	int64_t d0, d1, m0, m1;
	struct thpfs_cg cg2;
	unsigned char *want;
	char path[4200];
	pid_t child = -1;

	want = malloc(len);
	if (!want || pipe(up) < 0 || pipe(down) < 0)
		return 2;
	fill_pattern(want, len);
	snprintf(path, sizeof(path), "%s/mapped", mp);
	if (thpfs_cg_create(&cg2, "thpfs-fuse-map") < 0) {
		fprintf(stderr, "punch-mem: no second child cgroup\n");
		return 2;
	}
	/* the parent opens first: an open without keep_cache drops the
	 * file's page cache, mapped pages too */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror("punch-mem: open");
		goto out;
	}
	child = fork();
	if (child == 0) {
		if (thpfs_cg_enter(&cg2) < 0)
			_exit(126);
		_exit(mapper(path, want, len, up[1], down[0]));
	}
	if (child < 0 || pipe_wait(up[0]) < 0) {
		fprintf(stderr, "punch-mem: the mapper failed\n");
		goto out;
	}
	/* as in run(): a first punch outside the measured range */
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)len - PAGE,
		      PAGE) < 0) {
		perror("punch-mem: fallocate");
		goto out;
	}
	memset(want + len - PAGE, 0, PAGE);
	d0 = usage(cg);
	m0 = usage(&cg2);
	for (size_t h = 0; h < PUNCH_HUGE; h++) {
		for (size_t p = 0; p < HUGE / PAGE; p += 2) {
			off_t off = (off_t)(h * HUGE + p * PAGE);

			if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
				      PAGE) < 0) {
				perror("punch-mem: fallocate");
				goto out;
			}
			punched += PAGE;
		}
	}
	d1 = usage(cg);
	m1 = usage(&cg2);
	{
		double dd = (double)(d0 - d1) / MIB, dm = (double)(m0 - m1) / MIB;
		double expect = (double)punched / MIB;

		printf("daemon cgroup %.1f -> %.1f MiB: fell %.2f MiB; mapper cgroup (page cache) "
		       "%.1f -> %.1f MiB: fell %.2f MiB; punched %.2f MiB\n",
		       (double)d0 / MIB, (double)d1 / MIB, dd, (double)m0 / MIB,
		       (double)m1 / MIB, dm, expect);
		ret = 0;
		if (dd < expect * (100 - tol) / 100 || dd > expect * (100 + tol) / 100) {
			printf("FAIL: the daemon's usage fell %.2f MiB, want %.2f +-%d%%\n", dd,
			       expect, tol);
			ret = 1;
		}
		if (dm < expect * (100 - tol) / 100 || dm > expect * (100 + tol) / 100) {
			printf("FAIL: the mapper's usage fell %.2f MiB, want %.2f +-%d%%\n", dm,
			       expect, tol);
			ret = 1;
		}
	}
out:
	/* the mapper checks that its mapping reads the punched file */
	if (child > 0) {
		pipe_send(down[1]);
		if (waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			printf("FAIL: the mapper exited with status %d\n", status);
			ret = 1;
		}
	}
	if (fd >= 0)
		close(fd);
	unlink(path);
	free(want);
	if (thpfs_cg_destroy(&cg2) < 0)
		fprintf(stderr, "punch-mem: could not remove %s\n", cg2.dir);
	return ret;
}

int main(int argc, char *argv[])
{
	const char *opts = "size=1g";
	int tol = 10, report_only = 0, mapped = 0, c, ret, st;
	struct thpfs_cg cg;
	pid_t daemon;

	while ((c = getopt(argc, argv, "o:t:im")) != -1) {
		switch (c) {
		case 'o':
			opts = optarg;
			break;
		case 't':
			tol = atoi(optarg);
			break;
		case 'i':
			report_only = 1;
			break;
		case 'm':
			mapped = 1;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: punch-mem [-o OPTIONS] [-t PCT] [-i] [-m] THPFS MOUNTPOINT\n");
		return 2;
	}
	ret = thpfs_cg_create(&cg, "thpfs-fuse-test");
	if (ret < 0) {
		fprintf(stderr, "punch-mem: no child memory cgroup: %s\n", strerror(-ret));
		return 2;
	}
	daemon = fork();
	if (daemon == 0) {
		/* the daemon, and so every frame it faults in, is charged to cg */
		if (thpfs_cg_enter(&cg) < 0)
			_exit(126);
		execl(argv[optind], "thpfs", "-f", "-o", opts, argv[optind + 1], (char *)NULL);
		_exit(127);
	}
	if (daemon < 0 || wait_mounted(argv[optind + 1], daemon) < 0) {
		fprintf(stderr, "punch-mem: the daemon did not mount %s\n", argv[optind + 1]);
		if (daemon > 0) {
			kill(daemon, SIGKILL);
			waitpid(daemon, NULL, 0);
		}
		thpfs_cg_destroy(&cg);
		return 2;
	}
	ret = mapped ? run_mapped(argv[optind + 1], &cg, tol) :
		       run(argv[optind + 1], &cg, tol, report_only);
	st = stop_daemon(argv[optind + 1], daemon);
	if (st != 0) {
		fprintf(stderr, "punch-mem: the daemon exited with status %d\n", st);
		ret = 1;
	}
	if (thpfs_cg_destroy(&cg) < 0)
		fprintf(stderr, "punch-mem: could not remove %s\n", cg.dir);
	return ret;
}
