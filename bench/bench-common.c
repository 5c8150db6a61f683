/*
 * bench-common.c - clock, random order, tmpfs mount and the two-back-end file
 * API of the benchmarks; see bench-common.h.
 */
#define _GNU_SOURCE
#include "bench-common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
	if (n <= 0)
		return NAN;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	if (n & 1)
		return v[n / 2];
	return (v[n / 2 - 1] + v[n / 2]) / 2;
}

double bench_percentile(double *v, int n, double p)
{
	if (n <= 0)
		return NAN;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	int k = (int)ceil(p * n) - 1;
	return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

int bench_paired_ratios(const double *a, const double *b, int n, double m[3])
{
	double r[BENCH_MAX_RUNS];
	int k = 0;

	m[0] = m[1] = m[2] = NAN;
	if (n > BENCH_MAX_RUNS)
		n = BENCH_MAX_RUNS;
	/* NAN has no order: in qsort's comparison it would scramble the
	 * median, so runs without a ratio are left out */
	for (int i = 0; i < n; i++)
		if (b[i] > 0 && isfinite(a[i] / b[i]))
			r[k++] = a[i] / b[i];
	n = k;
	if (!n)
		return 0;
	m[0] = bench_median(r, n);
	m[1] = m[2] = r[0];
	for (int i = 1; i < n; i++) {
		m[1] = r[i] < m[1] ? r[i] : m[1];
		m[2] = r[i] > m[2] ? r[i] : m[2];
	}
	return n;
}

uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint32_t *bench_permutation(uint32_t n, uint64_t seed)
{
	uint32_t *p = malloc((size_t)n * sizeof(*p) + 1);
	uint64_t st = seed;

	if (!p)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		p[i] = i;
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = (uint32_t)(bench_rand(&st) % i);
		uint32_t t = p[i - 1];

		p[i - 1] = p[j];
		p[j] = t;
	}
	return p;
}

int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	char *end;
	unsigned long long x;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end || x < min || x > max)
		return -EINVAL;
	*v = x;
	return 0;
}

/* ---- Kernel tmpfs ---- */

static char tmpfs_dir[PATH_MAX];
static pid_t tmpfs_owner;
static bool tmpfs_mounted;

/* Takes the mount down; safe in a signal handler (syscalls only). */
static void tmpfs_teardown(void)
{
	if (!tmpfs_dir[0] || getpid() != tmpfs_owner)
		return;
	if (tmpfs_mounted) {
		if (umount2(tmpfs_dir, 0) && umount2(tmpfs_dir, MNT_DETACH))
			return;
		tmpfs_mounted = false;
	}
	rmdir(tmpfs_dir);
	tmpfs_dir[0] = 0;
}

static void tmpfs_on_signal(int sig)
{
	tmpfs_teardown();
	signal(sig, SIG_DFL);
	raise(sig);
}

int bench_tmpfs_mount(const char *opts, char *dir, size_t len)
{
	static bool hooks;
	struct sigaction sa;

	if (tmpfs_dir[0])
		return -EBUSY;
	if (geteuid() != 0)
		return -EPERM;
	/* A private namespace: the kernel drops the mount when we die. */
	if (unshare(CLONE_NEWNS))
		return -errno;
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return -errno;
	snprintf(tmpfs_dir, sizeof(tmpfs_dir), "/tmp/thpfs-bench.XXXXXX");
	if (!mkdtemp(tmpfs_dir)) {
		int err = -errno;

		tmpfs_dir[0] = 0;
		return err;
	}
	tmpfs_owner = getpid();
	if (mount("thpfs-bench", tmpfs_dir, "tmpfs", MS_NOSUID | MS_NODEV, opts)) {
		int err = -errno;

		rmdir(tmpfs_dir);
		tmpfs_dir[0] = 0;
		return err;
	}
	tmpfs_mounted = true;
	if (!hooks) {
		hooks = true;
		atexit(tmpfs_teardown);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = tmpfs_on_signal;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	}
	snprintf(dir, len, "%s", tmpfs_dir);
	return 0;
}

void bench_tmpfs_umount(void)
{
	tmpfs_teardown();
}

/* ---- Back ends ---- */

int bench_backend_start(struct bench_backend *b, char *err, size_t errlen)
{
	struct stat st;

	if (err && errlen)
		err[0] = 0;
	if (b->kind == BENCH_KERNEL)
		return (b->dir && stat(b->dir, &st) == 0) ? 0 : -ENOENT;
	return thpfs_mount_ex(&b->fs, b->options, err, errlen);
}

void bench_backend_stop(struct bench_backend *b)
{
	if (b->kind == BENCH_THPFS && b->fs) {
		int err = thpfs_unmount(b->fs);

		if (err)
			fprintf(stderr, "thpfs_unmount(%s): %s\n", b->name, strerror(-err));
		b->fs = NULL;
	}
}

static void kernel_path(const struct bench_backend *b, const char *name, char *p, size_t len)
{
	snprintf(p, len, "%s/%s", b->dir, name);
}

static void thpfs_path(const char *name, char *p, size_t len)
{
	snprintf(p, len, "/%s", name);
}

int bench_open(struct bench_backend *b, const char *name, int flags, struct bench_file *f)
{
	char p[PATH_MAX];

	memset(f, 0, sizeof(*f));
	f->b = b;
	f->fd = -1;
	if (b->kind == BENCH_KERNEL) {
		kernel_path(b, name, p, sizeof(p));
		f->fd = open(p, flags | O_CLOEXEC, 0600);
		return f->fd < 0 ? -errno : 0;
	}
	thpfs_path(name, p, sizeof(p));
	return thpfs_open(b->fs, p, flags, 0600, &f->tf);
}

int bench_close(struct bench_file *f)
{
	int err = 0;

	if (f->b->kind == BENCH_KERNEL) {
		if (f->fd >= 0 && close(f->fd))
			err = -errno;
		f->fd = -1;
	} else if (f->tf) {
		err = thpfs_close(f->tf);
		f->tf = NULL;
	}
	return err;
}

int bench_unlink(struct bench_backend *b, const char *name)
{
	char p[PATH_MAX];

	if (b->kind == BENCH_KERNEL) {
		kernel_path(b, name, p, sizeof(p));
		return unlink(p) ? -errno : 0;
	}
	thpfs_path(name, p, sizeof(p));
	return thpfs_unlink(b->fs, p);
}

ssize_t bench_pwrite(struct bench_file *f, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n;

		if (f->b->kind == BENCH_KERNEL) {
			n = pwrite(f->fd, (const char *)buf + done, len - done, off + (off_t)done);
			if (n < 0)
				n = -errno;
		} else {
			n = thpfs_pwrite(f->tf, (const char *)buf + done, len - done, off + (off_t)done);
		}
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t bench_pread(struct bench_file *f, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n;

		if (f->b->kind == BENCH_KERNEL) {
			n = pread(f->fd, (char *)buf + done, len - done, off + (off_t)done);
			if (n < 0)
				n = -errno;
		} else {
			n = thpfs_pread(f->tf, (char *)buf + done, len - done, off + (off_t)done);
		}
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO; /* past EOF: the benchmarks never read there */
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int bench_punch(struct bench_file *f, off_t off, off_t len)
{
	if (f->b->kind == BENCH_KERNEL)
		return fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) ? -errno : 0;
	return thpfs_fallocate(f->tf, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, off, len);
}

int bench_fill(struct bench_file *f, uint64_t size, size_t bs, const void *buf)
{
	for (uint64_t off = 0; off < size; off += bs) {
		size_t n = size - off < bs ? (size_t)(size - off) : bs;
		ssize_t r = bench_pwrite(f, buf, n, (off_t)off);

		if (r < 0)
			return (int)r;
	}
	return 0;
}

/* ---- Counters ---- */

/* The number after "key<sep>" on a line of a /proc file, or -1. */
static int64_t proc_field(const char *file, const char *key, char sep)
{
	FILE *fp = fopen(file, "r");
	char line[256];
	size_t klen = strlen(key);
	int64_t v = -1;

	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp)) {
		if (!strncmp(line, key, klen) && line[klen] == sep) {
			v = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(fp);
	return v;
}

int64_t bench_proc_kb(const char *file, const char *key)
{
	return proc_field(file, key, ':');
}

int64_t bench_vmstat(const char *key)
{
	return proc_field("/proc/vmstat", key, ' ');
}

int64_t bench_read_u64(const char *path)
{
	FILE *fp = fopen(path, "r");
	long long v;

	if (!fp)
		return -1;
	if (fscanf(fp, "%lld", &v) != 1)
		v = -1;
	fclose(fp);
	return v;
}

void bench_stamp_page(void *page, uint64_t tag)
{
	uint64_t *w = page;
	uint64_t st = tag;

	w[0] = tag;
	/* a cheap pattern: 8 words from the tag, repeated over the page */
	for (unsigned i = 1; i < 8; i++)
		w[i] = bench_rand(&st);
	for (unsigned i = 8; i < BENCH_PAGE / 8; i++)
		w[i] = w[i & 7] ^ i;
}

bool bench_check_page(const void *page, uint64_t tag)
{
	uint64_t want[BENCH_PAGE / 8];

	bench_stamp_page(want, tag);
	return memcmp(page, want, BENCH_PAGE) == 0;
}
