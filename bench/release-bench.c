/*
 * release-bench.c - what it costs to give 4 KiB pages back to the OS, one
 * madvise(MADV_DONTNEED) per page against one process_madvise call per
 * batch of 64 pages (the release batch of src/frame.c, THPFS_RELEASE_BATCH).
 *
 * A 2 MiB-aligned region marked MADV_NOHUGEPAGE (like thpfs's base arenas)
 * is populated, then every other 4 KiB page is released (so that no two
 * released pages touch, as after a punch of scattered pages), timed.  Each
 * round repopulates the region; the median of the rounds is printed, in
 * microseconds per released page.  Most of the cost is the TLB flush, which
 * needs an IPI to every other CPU the process runs on: --threads N keeps N
 * extra threads of this process spinning, as a busy multi-threaded daemon
 * would.
 *
 *   release-bench [--mib N] [--rounds N] [--threads N] [--batch N]
 *
 * Exit status 0, or 1 with a message when a system call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench-common.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static atomic_bool stop;

static void *spin(void *arg)
{
	(void)arg;
	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		;
	return NULL;
}

static void die(const char *what)
{
	fprintf(stderr, "release-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void populate(char *p, size_t len)
{
	if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
		return;
	if (errno != EINVAL)
		die("madvise(MADV_POPULATE_WRITE)");
	for (size_t off = 0; off < len; off += BENCH_PAGE)
		p[off] = 1;
}

/* Releases every other page of [p, p+len) with one madvise each. */
static double release_single(char *p, size_t len)
{
	double t0 = bench_now();
	for (size_t off = 0; off < len; off += 2 * BENCH_PAGE)
		if (madvise(p + off, BENCH_PAGE, MADV_DONTNEED))
			die("madvise(MADV_DONTNEED)");
	return bench_now() - t0;
}

/* The same pages with one process_madvise call per batch of iovecs. */
static double release_batched(int pidfd, char *p, size_t len, struct iovec *iov, unsigned batch)
{
	double t0 = bench_now();
	unsigned n = 0;
	size_t want = 0;
	for (size_t off = 0; off < len; off += 2 * BENCH_PAGE) {
		iov[n].iov_base = p + off;
		iov[n].iov_len = BENCH_PAGE;
		want += BENCH_PAGE;
		if (++n == batch || off + 2 * BENCH_PAGE >= len) {
			ssize_t r = syscall(SYS_process_madvise, pidfd, iov, (size_t)n,
					    MADV_DONTNEED, 0);
			if (r < 0)
				die("process_madvise(MADV_DONTNEED)");
			if ((size_t)r != want) {
				fprintf(stderr, "release-bench: process_madvise released %zd of %zu "
					"bytes\n", r, want);
				exit(1);
			}
			n = 0;
			want = 0;
		}
	}
	return bench_now() - t0;
}

static void usage(void)
{
	fprintf(stderr, "usage: release-bench [--mib N] [--rounds N] [--threads N] "
		"[--batch N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t mib = 64, rounds = 9, threads = 0, batch = 64;
	for (int i = 1; i < argc; i++) {
		uint64_t *v = !strcmp(argv[i], "--mib")       ? &mib
			      : !strcmp(argv[i], "--rounds")  ? &rounds
			      : !strcmp(argv[i], "--threads") ? &threads
			      : !strcmp(argv[i], "--batch")   ? &batch
							      : NULL;
		uint64_t max = v == &mib ? 4096 : v == &rounds ? BENCH_MAX_RUNS
				  : v == &threads ? 64 : 1024; /* UIO_MAXIOV */
		uint64_t min = v == &threads ? 0 : 1;
		if (!v || i + 1 >= argc || bench_parse_u64(argv[++i], min, max, v))
			usage();
	}
	size_t len = (size_t)mib * BENCH_MIB;
	char *raw = mmap(NULL, len + BENCH_HUGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		die("mmap");
	char *p = (char *)(((uintptr_t)raw + BENCH_HUGE - 1) & ~(uintptr_t)(BENCH_HUGE - 1));
	if (madvise(p, len, MADV_NOHUGEPAGE))
		die("madvise(MADV_NOHUGEPAGE)");
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0)
		die("pidfd_open");
	struct iovec *iov = calloc(batch, sizeof(*iov));
	if (!iov)
		die("calloc");

	pthread_t tid[64];
	for (uint64_t i = 0; i < threads; i++)
		if ((errno = pthread_create(&tid[i], NULL, spin, NULL)))
			die("pthread_create");

	double single[BENCH_MAX_RUNS], batched[BENCH_MAX_RUNS];
	size_t pages = len / BENCH_PAGE / 2;
	for (uint64_t r = 0; r < rounds; r++) {
		populate(p, len);
		single[r] = release_single(p, len) / (double)pages * 1e6;
		populate(p, len);
		batched[r] = release_batched(pidfd, p, len, iov, (unsigned)batch) / (double)pages * 1e6;
	}
	atomic_store(&stop, true);
	for (uint64_t i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);

	double s = bench_median(single, (int)rounds), b = bench_median(batched, (int)rounds);
	printf("release of %zu scattered 4 KiB pages, %llu extra spinning threads, "
	       "median of %llu rounds:\n", pages, (unsigned long long)threads,
	       (unsigned long long)rounds);
	printf("  madvise(MADV_DONTNEED) per page:          %6.2f us/page\n", s);
	printf("  process_madvise, batches of %3llu pages:    %6.2f us/page (ratio %.2f)\n",
	       (unsigned long long)batch, b, s / b);
	munmap(raw, len + BENCH_HUGE);
	close(pidfd);
	free(iov);
	return 0;
}
