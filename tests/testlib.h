/*
 * testlib.h - helpers shared by the libthpfs cmocka tests.
 *
 * Every helper that can fail asserts (cmocka fail_msg), so a test reads as a
 * list of steps.  Content checks use a position-dependent pattern that is
 * never zero, so a byte that reads zero where the pattern is expected (or
 * the other way round) is always caught.
 */
#ifndef THPFS_TESTLIB_H
#define THPFS_TESTLIB_H

#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "thpfs.h"
#include "cgroup.h" /* tools/: the child memory cgroup that judges memory */

/* TL_ASAN / TL_TSAN: built with AddressSanitizer / ThreadSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define TL_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define TL_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(TL_ASAN)
#define TL_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(TL_TSAN)
#define TL_TSAN 1
#endif
#endif

#define KIB 1024ULL
#define MIB (1024ULL * 1024)
#define PG 4096ULL
#define HPG (2 * MIB)
/* st_blocks units in one 4 KiB page and one 2 MiB huge page */
#define BLK_PG 8
#define BLK_HPG 4096

/* Mounts with options, asserting success. */
struct thpfs *tl_mount(const char *options);
/* Unmounts, asserting success. */
void tl_unmount(struct thpfs *fs);
/* Opens path with flags (mode 0644), asserting success. */
struct thpfs_file *tl_open(struct thpfs *fs, const char *path, int flags);
void tl_close(struct thpfs_file *f);
struct thpfs_stats tl_stats(struct thpfs *fs);
struct stat tl_fstat(struct thpfs_file *f);
/* Asserts that the memory gauges of a and b are equal (memory held, huge and
 * base pages, the deferred split queue). */
void tl_same_memory(const struct thpfs_stats *a, const struct thpfs_stats *b);
/* st_blocks / st_size of an open file */
int64_t tl_blocks(struct thpfs_file *f);
int64_t tl_size(struct thpfs_file *f);

/* The pattern byte stored at file offset off for a given seed (never 0). */
static inline uint8_t tl_pat(uint64_t off, unsigned seed)
{
	uint64_t x = (off >> 12) * 0x9e3779b97f4a7c15ULL + (off & 4095) * 31 + seed;
	return (uint8_t)((x ^ (x >> 29)) | 1);
}
void tl_fill(uint8_t *buf, size_t len, uint64_t off, unsigned seed);
/* pwrite the pattern over [off, off+len), asserting a full write. */
void tl_write_pat(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed);
/* Reads [off, off+len) and asserts it holds the pattern / zeros; the
 * message names the first bad offset. */
void tl_check_pat(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed);
void tl_check_zero(struct thpfs_file *f, uint64_t off, uint64_t len);

/* 1 unless /sys/kernel/mm/transparent_hugepage/enabled says [never]
 * (or cannot be read: then -1). */
int tl_thp_sysfs(void);
/* Sum of a "Field:  N kB" line over /proc/self/smaps_rollup, in bytes. */
int64_t tl_smaps_rollup(const char *field);
/* The "Field:  N kB" value of the /proc/self/smaps entry holding addr. */
int64_t tl_smaps_at(const void *addr, const char *field);

/* The kernel's view of our memory.  PAGEMAP_SCAN (Linux 6.7+): bytes of
 * [p, p + len) mapped by huge PMDs / present; -1 if it cannot be asked. */
int64_t tl_kernel_huge_bytes(const void *p, size_t len);
int64_t tl_kernel_present_bytes(const void *p, size_t len);
/* Bytes a memory cgroup's usage may lag what was really freed: the kernel
 * charges and uncharges in per-CPU stocks of 64 pages (one per CPU). */
int64_t tl_cg_stock(void);
/* /proc/kpageflags (root): 1 if the page at p is part of a large folio (a
 * THP, PMD- or PTE-mapped), 0 if not, -1 if it cannot be told. */
int tl_kernel_large_folio(const void *p);
/* A /proc/vmstat counter, or -1. */
int64_t tl_vmstat(const char *name);

/* Seconds since an arbitrary point (CLOCK_MONOTONIC). */
double tl_now(void);
/* Seed from env THPFS_SEED, else from the clock; printed either way. */
uint64_t tl_seed(const char *what);
/* xorshift64* */
static inline uint64_t tl_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}
static inline uint64_t tl_rand_below(uint64_t *s, uint64_t n)
{
	return n ? tl_rand(s) % n : 0;
}
/* A test that passes but could not make one of its kernel checks (no
 * PFNs in pagemap without root, no THP, no cgroup) says so with this: it
 * prints "[  SKIPPED ] check: WHY", which tests/run-tests.sh counts as a
 * skipped test, so the summary shows it.  A test that can check nothing
 * calls cmocka's skip() instead. */
void tl_skip_check(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Non-negative integer from the environment, or def. */
uint64_t tl_env_u64(const char *name, uint64_t def);

/* Huge pages broken up by any split mode: the kernel's own splits
 * (thp_split_page: split=native) plus migrations (thp_split_migrate) and
 * in-place drops (thp_split_inplace). */
static inline uint64_t tl_splits(const struct thpfs_stats *s)
{
	return s->thp_split_page + s->thp_split_migrate + s->thp_split_inplace;
}
static inline uint64_t tl_splits_now(struct thpfs *fs)
{
	struct thpfs_stats s = tl_stats(fs);
	return tl_splits(&s);
}

/* Per-test fixture: a fresh mount.  Pass the mount options as the cmocka
 * initial state (cmocka_unit_test_prestate_setup_teardown); NULL means
 * "huge=always".  Teardown unmounts. */
struct tl_fx {
	struct thpfs *fs;
	const char *opts;
};
int tl_setup(void **state);
int tl_teardown(void **state);
#define TL_FX(state) ((struct tl_fx *)*(state))
#define TL_FS(state) (TL_FX(state)->fs)
#define TL_TEST(fn, opts) \
	cmocka_unit_test_prestate_setup_teardown(fn, tl_setup, tl_teardown, (void *)(opts))

/* ---- A child memory cgroup as the judge of memory (tools/cgroup.h) ---- */

/* Creates a child memory cgroup named name; if none can be made, prints
 * "cannot create a child memory cgroup (why): then" and returns false. */
bool tl_cg_create(struct thpfs_cg *cg, const char *name, const char *then);
/* Moves the process into cg, failing the test if it cannot. */
void tl_cg_enter(struct thpfs_cg *cg);
/* The cgroup's usage now, asserting the kernel reports one (> 0). */
int64_t tl_cg_usage(const struct thpfs_cg *cg);
/* Sets the cgroup's memory limit, asserting success. */
void tl_cg_set_limit(const struct thpfs_cg *cg, int64_t bytes);

/* Per-test fixture of a cgroup test: the cgroup (removed by the teardown
 * if made) and a mount (unmounted by the teardown if set).  The state is
 * the struct tl_cg_fx itself. */
struct tl_cg_fx {
	struct thpfs_cg cg;
	bool made;
	struct thpfs *fs;
};
int tl_cg_setup(void **state);
int tl_cg_teardown(void **state);
/* Creates fx's cgroup named name (the test skips without one) and enters
 * it unless enter is false (a forked child will). */
void tl_cg_start(struct tl_cg_fx *fx, const char *name, bool enter);

/* Bytes of AddressSanitizer shadow memory resident now (0 without ASan).
 * The shadow is charged to the cgroup too, so a test can take its growth
 * out of a measurement. */
int64_t tl_asan_shadow_rss(void);

/* ---- Forked children ---- */

/* A check in a forked child (no cmocka there): print and exit 1. */
#define TL_CCHECK(cond, ...)                                                     \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "child: line %d: ", __LINE__);            \
			fprintf(stderr, __VA_ARGS__);                             \
			fprintf(stderr, "\n");                                   \
			_exit(1);                                                 \
		}                                                                \
	} while (0)
/* Forks (flushing stdio first, so nothing is printed twice); returns the
 * pid, 0 in the child. */
pid_t tl_fork(void);
/* Waits for child pid: fails if it was killed or exited non-zero; exit
 * status 77 means the child could not check: the test skips. */
void tl_wait_child(pid_t pid);

#endif
