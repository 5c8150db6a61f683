/*
 * bench-common.h - shared pieces of the library benchmarks (thpfs-bench,
 * collapse-bench): a clock, a seeded random order, medians, a private kernel
 * tmpfs mount that is always taken down again, and one small file API that
 * runs the same work on the kernel's tmpfs or on libthpfs.
 *
 * Not part of libthpfs.  Functions return 0 (or a count) on success and a
 * negative errno on failure, like the library.
 */
#ifndef THPFS_BENCH_COMMON_H
#define THPFS_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "thpfs.h"

#define BENCH_PAGE (4096UL)
#define BENCH_HUGE (2UL << 20)
#define BENCH_MIB (1UL << 20)
#define BENCH_GIB (1ULL << 30)
#define BENCH_MAX_RUNS 15

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);
/* Median of v[0..n) (sorts v); NAN when n is 0. */
double bench_median(double *v, int n);
/* The value below which a fraction p (0..1) of v[0..n) lies, nearest rank
 * (sorts v); NAN when n is 0. */
double bench_percentile(double *v, int n, double p);
/* Ratios a[i] / b[i] of paired runs i < n into m: median, min, max; a run
 * whose ratio is not a number (b[i] <= 0, a failed run) is left out.
 * Returns how many runs count; m is NAN when none. */
int bench_paired_ratios(const double *a, const double *b, int n, double m[3]);
/* splitmix64: the next number of the sequence kept in *state. */
uint64_t bench_rand(uint64_t *state);
/* A random permutation of 0..n-1 from seed (Fisher-Yates); NULL on ENOMEM. */
uint32_t *bench_permutation(uint32_t n, uint64_t seed);
/* Parses a decimal number into *v; -EINVAL unless all of s is a number in
 * [min, max]. */
int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *v);

/* ---- The kernel's tmpfs ----
 * bench_tmpfs_mount moves the process into a private mount namespace (so the
 * mount dies with the process whatever happens), creates a temp directory
 * and mounts tmpfs with opts there.  The mount is taken down by
 * bench_tmpfs_umount, at exit, and on SIGINT/SIGTERM/SIGHUP.  Needs root.
 * Children forked afterwards see the mount; only the process that mounted
 * it takes it down. */
int bench_tmpfs_mount(const char *opts, char *dir, size_t len);
void bench_tmpfs_umount(void);

/* ---- One file API over both back ends ---- */
enum bench_kind {
	BENCH_KERNEL, /* files in a kernel tmpfs directory */
	BENCH_THPFS,  /* files in a libthpfs mount */
};

struct bench_backend {
	const char *name;    /* label in tables */
	enum bench_kind kind;
	const char *options; /* thpfs mount options */
	const char *dir;     /* kernel: the tmpfs mount point */
	struct thpfs *fs;    /* thpfs: the mount, between start and stop */
};

struct bench_file {
	struct bench_backend *b;
	int fd;                /* kernel */
	struct thpfs_file *tf; /* thpfs */
};

/* thpfs: mounts b->options (on failure writes the library's message to err).
 * kernel: checks that the directory is there. */
int bench_backend_start(struct bench_backend *b, char *err, size_t errlen);
void bench_backend_stop(struct bench_backend *b);
/* name is a single component ("punch"); flags as open(2). */
int bench_open(struct bench_backend *b, const char *name, int flags, struct bench_file *f);
int bench_close(struct bench_file *f);
int bench_unlink(struct bench_backend *b, const char *name);
/* Whole-buffer I/O: retries short transfers; returns len or a negative
 * errno (-EIO for a transfer that makes no progress). */
ssize_t bench_pwrite(struct bench_file *f, const void *buf, size_t len, off_t off);
ssize_t bench_pread(struct bench_file *f, void *buf, size_t len, off_t off);
/* fallocate(PUNCH_HOLE | KEEP_SIZE). */
int bench_punch(struct bench_file *f, off_t off, off_t len);
/* Writes size bytes from off 0 in bs-sized pwrites of buf. */
int bench_fill(struct bench_file *f, uint64_t size, size_t bs, const void *buf);

/* ---- System counters (all -1 when unreadable) ---- */
/* "key:  N kB" from a /proc file such as /proc/meminfo or
 * /proc/self/smaps_rollup; the value in kB. */
int64_t bench_proc_kb(const char *file, const char *key);
/* "key N" from /proc/vmstat. */
int64_t bench_vmstat(const char *key);
/* A file holding one number (sysfs knobs and counters). */
int64_t bench_read_u64(const char *path);

/* Fills a 4 KiB page image whose first 8 bytes are tag and whose other bytes
 * are derived from it, so that a misplaced page is noticed. */
void bench_stamp_page(void *page, uint64_t tag);
/* Whether page holds bench_stamp_page(tag). */
bool bench_check_page(const void *page, uint64_t tag);

#endif /* THPFS_BENCH_COMMON_H */
