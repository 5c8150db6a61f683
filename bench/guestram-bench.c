/*
 * guestram-bench.c - guest RAM under a balloon: thpfs_mmap against the two
 * paths a VMM has with the kernel.
 *
 * A mapped file of --size MiB (1 GiB) is filled by stores through the
 * mapping, like a guest touching all its RAM.  A balloon then discards 50%
 * of its 4 KiB pages in the order a balloon driver sends them: messages of
 * 256 PFNs over scattered free memory.  The pattern (fixed seed): 155/512 of
 * the 2 MiB ranges are free whole (the kernel's buddy allocator hands out
 * order-0 pages cut from large free blocks), 203/512 are free in runs of 1 to
 * 32 pages until half of their pages are taken, the rest are not touched -
 * the shape a Linux 6.1 guest produced here (issue 9: 512 messages of 256
 * PFNs touched 358 of 512 ranges, 155 fully).  The runs are shuffled, cut
 * into 256-PFN messages, and every PFN is discarded on its own, as QEMU does
 * with 4 KiB host pages.
 *
 * Backends (each run in a forked child inside its own child memory cgroup):
 *   thpfs-split  thpfs_mmap of a huge=always mount; punch each page
 *                (fallocate PUNCH_HOLE: the default balloon policy)
 *   thpfs-lazy   thpfs_free_lazy each page, then one thpfs_reclaim
 *   tmpfs        kernel tmpfs huge=always (private mount), MAP_SHARED,
 *                fallocate(PUNCH_HOLE|KEEP_SIZE) + MADV_DONTNEED per page
 *                (QEMU memory-backend-file,share=on,align=2M)
 *   anon-thp     anonymous memory, MADV_HUGEPAGE, MADV_DONTNEED per page
 *                (QEMU's default)
 * For each: discards per second, memory returned at once and --settle
 * seconds later (memory cgroup), 2 MiB ranges mapped huge (PAGEMAP_SCAN)
 * before and after; then the guest writes every discarded page again
 * (deflate + rewrite) and we wait up to --restore seconds for huge pages to
 * come back (collapse thread / khugepaged), reporting how many and when the
 * last came; and a random pointer chase through the mapping itself (the
 * chain lives in the kept guest pages, one 8-byte link per page, dependent
 * loads, no side table) before inflate, after inflate and after the rewrite.
 * Prints medians of --runs runs with [min..max], then the headline ratios.
 */
#define _GNU_SOURCE
#include "bench-common.h"
#include "cgroup.h"
#include "pagemap.h"

#include <errno.h>
#include <linux/falloc.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096ULL
#define HPG (2ULL << 20)
#define NPG 512
#define MSG_PFNS 256

/* 2 MiB ranges of [p, p+len) mapped by one (non-zero) huge PMD, by
 * PAGEMAP_SCAN (tools/pagemap.h); -1 if the kernel cannot tell. */
static long huge_ranges(const char *p, size_t len)
{
	int64_t huge = thpfs_pagemap_huge_bytes(p, len);
	return huge < 0 ? -1 : (long)((uint64_t)huge / HPG);
}

/* ---- The balloon's pattern ---- */
struct pattern {
	uint32_t *pfn;     /* discard order */
	uint64_t n;        /* pfns */
	uint8_t *gone;     /* per page: discarded */
	uint64_t full, partial, ranges;
};

static void shuffle_runs(uint64_t (*runs)[2], uint64_t n, uint64_t *seed)
{
	for (uint64_t i = n; i > 1; i--) {
		uint64_t j = bench_rand(seed) % i;
		uint64_t a = runs[i - 1][0], b = runs[i - 1][1];
		runs[i - 1][0] = runs[j][0];
		runs[i - 1][1] = runs[j][1];
		runs[j][0] = a;
		runs[j][1] = b;
	}
}

static int pattern_make(struct pattern *p, uint64_t size, uint64_t seed)
{
	uint64_t nr = size / HPG, npages = size / PG;
	p->ranges = nr;
	p->gone = calloc(npages, 1);
	uint64_t (*runs)[2] = malloc(npages * sizeof(*runs));
	uint32_t *order = bench_permutation((uint32_t)nr, seed);
	if (!p->gone || !runs || !order)
		return -ENOMEM;
	p->full = nr * 155 / 512;
	p->partial = nr * 203 / 512;
	uint64_t nruns = 0, s = seed ^ 0x5eed;
	for (uint64_t k = 0; k < p->full + p->partial; k++) {
		uint64_t r = order[k], base = r * NPG;
		if (k < p->full) {
			for (uint64_t i = 0; i < NPG; i += 64) { /* cut from a free 2 MiB block */
				runs[nruns][0] = base + i;
				runs[nruns++][1] = 64;
			}
			memset(p->gone + base, 1, NPG);
			continue;
		}
		uint64_t taken = 0;
		while (taken < NPG / 2) {
			uint64_t at = bench_rand(&s) % NPG, len = 1 + bench_rand(&s) % 32;
			if (at + len > NPG)
				len = NPG - at;
			uint64_t i = at;
			while (i < at + len && !p->gone[base + i] && taken < NPG / 2) {
				p->gone[base + i] = 1;
				i++;
				taken++;
			}
			if (i > at) {
				runs[nruns][0] = base + at;
				runs[nruns++][1] = i - at;
			}
		}
	}
	shuffle_runs(runs, nruns, &s);
	p->n = 0;
	for (uint64_t i = 0; i < npages; i++)
		p->n += p->gone[i];
	p->pfn = malloc(p->n * sizeof(*p->pfn));
	if (!p->pfn)
		return -ENOMEM;
	uint64_t j = 0;
	for (uint64_t r = 0; r < nruns; r++)
		for (uint64_t i = 0; i < runs[r][1]; i++)
			p->pfn[j++] = (uint32_t)(runs[r][0] + i);
	free(runs);
	free(order);
	return j == p->n ? 0 : -EINVAL;
}

/* ---- Guest memory: contents and the pointer chase ---- */

/* Each kept page holds at offset (page * 64) % 4096 the address of the next
 * kept page's link, in a random cycle; the rest of the page is a pattern. */
static void guest_fill(char *mem, uint64_t size, const struct pattern *p, uint64_t seed)
{
	uint64_t npages = size / PG, nkept = 0;
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t *w = (uint64_t *)(mem + i * PG);
		for (unsigned j = 0; j < PG / 8; j += 8)
			w[j] = i * 4096 + j + 1;
		nkept += !p->gone[i];
	}
	uint32_t *kept = malloc(nkept * sizeof(*kept));
	uint32_t *perm = bench_permutation((uint32_t)nkept, seed);
	uint64_t k = 0;
	for (uint64_t i = 0; i < npages; i++)
		if (!p->gone[i])
			kept[k++] = (uint32_t)i;
	for (uint64_t i = 0; i < nkept; i++) {
		uint64_t a = kept[perm[i]], b = kept[perm[(i + 1) % nkept]];
		char **link = (char **)(mem + a * PG + (a * 64) % PG);
		*link = mem + b * PG + (b * 64) % PG;
	}
	free(kept);
	free(perm);
}

/* The guest writes every discarded page again (deflate + reuse). */
static void guest_rewrite(char *mem, const struct pattern *p)
{
	for (uint64_t i = 0; i < p->n; i++) {
		uint64_t pg = p->pfn[i];
		uint64_t *w = (uint64_t *)(mem + pg * PG);
		for (unsigned j = 0; j < PG / 8; j++)
			w[j] = pg ^ j;
	}
}

/* ns per dependent load over steps links, starting at the first kept page. */
static double chase(char *mem, const struct pattern *p, uint64_t steps)
{
	uint64_t first = 0;
	while (p->gone[first])
		first++;
	char **q = (char **)(mem + first * PG + (first * 64) % PG);
	double t0 = bench_now();
	for (uint64_t i = 0; i < steps; i++)
		q = (char **)*q;
	double t = bench_now() - t0;
	if (!q)
		fprintf(stderr, "chain broken\n");
	return t * 1e9 / (double)steps;
}

/* ---- Backends ---- */
enum kind { K_SPLIT, K_LAZY, K_TMPFS, K_ANON, K_N };
static const char *kind_name[K_N] = { "thpfs-split", "thpfs-lazy", "tmpfs-huge", "anon-thp" };

struct result {
	int err;
	double rate;          /* discards per second (lazy: including the reclaim) */
	double back_now, back_later; /* fraction of discarded bytes back */
	long huge_before, huge_after, huge_restored;
	double restore_s;     /* when the last huge range came back */
	double chase_before, chase_inflated, chase_rewritten; /* ns/load */
	double rewrite_s;
};

struct env {
	uint64_t size, steps;
	double settle, restore;
	const struct pattern *pat;
	const char *tmpfs_dir;
};

struct guest {
	enum kind k;
	char *mem;
	struct thpfs *fs;
	struct thpfs_file *f;
	int fd;
	char path[512];
};

static int guest_map(struct guest *g, const struct env *e)
{
	g->fd = -1;
	if (g->k == K_SPLIT || g->k == K_LAZY) {
		int err = thpfs_mount(&g->fs, "huge=always");
		if (!err)
			err = thpfs_open(g->fs, "/ram", O_RDWR | O_CREAT, 0600, &g->f);
		if (!err)
			err = thpfs_ftruncate(g->f, (off_t)e->size);
		void *a = NULL;
		if (!err)
			err = thpfs_mmap(g->f, 0, e->size, &a);
		g->mem = a;
		return err;
	}
	if (g->k == K_TMPFS) {
		snprintf(g->path, sizeof(g->path), "%s/ram.%d", e->tmpfs_dir, (int)getpid());
		g->fd = open(g->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (g->fd < 0 || ftruncate(g->fd, (off_t)e->size))
			return -errno;
	}
	/* QEMU's align=2M: a 2 MiB aligned mapping */
	char *raw = mmap(NULL, e->size + HPG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	if (raw == MAP_FAILED)
		return -errno;
	char *al = (char *)(((uintptr_t)raw + HPG - 1) & ~(uintptr_t)(HPG - 1));
	int flags = g->k == K_TMPFS ? MAP_SHARED | MAP_FIXED : MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
	g->mem = mmap(al, e->size, PROT_READ | PROT_WRITE, flags, g->k == K_TMPFS ? g->fd : -1, 0);
	if (g->mem == MAP_FAILED)
		return -errno;
	if (g->k == K_ANON && madvise(g->mem, e->size, MADV_HUGEPAGE))
		return -errno;
	return 0;
}

static int discard(struct guest *g, uint64_t pfn)
{
	off_t off = (off_t)(pfn * PG);
	switch (g->k) {
	case K_SPLIT:
		return thpfs_fallocate(g->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, off,
				       (off_t)PG);
	case K_LAZY:
		return thpfs_free_lazy(g->f, off, (off_t)PG);
	case K_TMPFS:
		if (fallocate(g->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)PG))
			return -errno;
		/* QEMU also drops the mapping's PTE */
		__attribute__((fallthrough));
	case K_ANON:
		return madvise(g->mem + off, PG, MADV_DONTNEED) ? -errno : 0;
	default:
		return -EINVAL;
	}
}

static void guest_unmap(struct guest *g, const struct env *e)
{
	if (g->fs) {
		thpfs_munmap(g->f, g->mem, e->size);
		thpfs_close(g->f);
		thpfs_unmount(g->fs);
	} else {
		munmap(g->mem, e->size);
		if (g->fd >= 0) {
			close(g->fd);
			unlink(g->path);
		}
	}
}

/* Waits up to limit seconds for huge ranges to come back; returns the count
 * and when the last one came. */
static long wait_huge(char *mem, uint64_t size, double limit, double *when)
{
	double t0 = bench_now();
	long best = huge_ranges(mem, size);
	*when = 0;
	long want = (long)(size / HPG);
	while (best < want && bench_now() - t0 < limit) {
		usleep(20000);
		long h = huge_ranges(mem, size);
		if (h > best) {
			best = h;
			*when = bench_now() - t0;
		}
	}
	return best;
}

static void run_child(enum kind k, const struct env *e, struct result *r)
{
	struct thpfs_cg cg;
	char label[64];
	snprintf(label, sizeof(label), "guestram-%s", kind_name[k]);
	r->err = thpfs_cg_create(&cg, label);
	if (r->err)
		return;
	r->err = thpfs_cg_enter(&cg);
	if (r->err) {
		thpfs_cg_destroy(&cg);
		return;
	}
	struct guest g = { .k = k };
	const struct pattern *p = e->pat;
	r->err = guest_map(&g, e);
	if (!r->err) {
		guest_fill(g.mem, e->size, p, 7);
		r->chase_before = chase(g.mem, p, e->steps);
		r->huge_before = huge_ranges(g.mem, e->size);
		int64_t u0 = thpfs_cg_usage(&cg);
		double t0 = bench_now();
		for (uint64_t i = 0; i < p->n && !r->err; i++)
			r->err = discard(&g, p->pfn[i]);
		if (k == K_LAZY && !r->err && thpfs_reclaim(g.fs, 0) < 0)
			r->err = -EIO;
		r->rate = (double)p->n / (bench_now() - t0);
		int64_t u1 = thpfs_cg_usage(&cg);
		r->huge_after = huge_ranges(g.mem, e->size);
		r->chase_inflated = chase(g.mem, p, e->steps);
		usleep((useconds_t)(e->settle * 1e6));
		int64_t u2 = thpfs_cg_usage(&cg);
		double bytes = (double)p->n * PG;
		r->back_now = (double)(u0 - u1) / bytes;
		r->back_later = (double)(u0 - u2) / bytes;
		double t1 = bench_now();
		guest_rewrite(g.mem, p);
		r->rewrite_s = bench_now() - t1;
		r->huge_restored = wait_huge(g.mem, e->size, e->restore, &r->restore_s);
		r->chase_rewritten = chase(g.mem, p, e->steps);
	}
	guest_unmap(&g, e);
	thpfs_cg_destroy(&cg);
}

/* Runs one backend in a forked child (its own memory cgroup). */
static void run_one(enum kind k, const struct env *e, struct result *r)
{
	int pfd[2];
	memset(r, 0, sizeof(*r));
	if (pipe(pfd)) {
		r->err = -errno;
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		struct result cr;
		memset(&cr, 0, sizeof(cr));
		run_child(k, e, &cr);
		ssize_t w = write(pfd[1], &cr, sizeof(cr));
		_exit(w == (ssize_t)sizeof(cr) ? 0 : 1);
	}
	close(pfd[1]);
	ssize_t n = pid > 0 ? read(pfd[0], r, sizeof(*r)) : -1;
	close(pfd[0]);
	int st = 0;
	if (pid > 0)
		waitpid(pid, &st, 0);
	if (n != (ssize_t)sizeof(*r))
		r->err = -EIO;
}

/* ---- Report ---- */
#define NF 11
static const char *field_name[NF] = {
	"discards/s", "back at once %", "back after settle %", "huge before", "huge after inflate",
	"huge after rewrite", "restore s", "chase before ns", "chase inflated ns",
	"chase rewritten ns", "rewrite s",
};

static double field(const struct result *r, int i)
{
	switch (i) {
	case 0: return r->rate;
	case 1: return 100 * r->back_now;
	case 2: return 100 * r->back_later;
	case 3: return (double)r->huge_before;
	case 4: return (double)r->huge_after;
	case 5: return (double)r->huge_restored;
	case 6: return r->restore_s;
	case 7: return r->chase_before;
	case 8: return r->chase_inflated;
	case 9: return r->chase_rewritten;
	default: return r->rewrite_s;
	}
}

struct stat3 {
	double med, lo, hi;
};

static struct stat3 stat_of(struct result *rs, int n, int f)
{
	double v[BENCH_MAX_RUNS];
	struct stat3 s = { NAN, NAN, NAN };
	int m = 0;
	for (int i = 0; i < n; i++)
		if (!rs[i].err)
			v[m++] = field(&rs[i], f);
	if (!m)
		return s;
	s.med = bench_median(v, m); /* sorts v */
	s.lo = v[0];
	s.hi = v[m - 1];
	return s;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--size MiB] [--runs N] [--settle S] [--restore S] [--steps N] "
		"[--only thpfs-split,thpfs-lazy,tmpfs-huge,anon-thp]\n",
		argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t size_mib = 1024, runs = 3, settle = 5, restore = 20, steps = 2000000;
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage(argv[0]);
		int err = 0;
		if (!strcmp(a, "--size"))
			err = bench_parse_u64(v, 16, 1 << 20, &size_mib);
		else if (!strcmp(a, "--runs"))
			err = bench_parse_u64(v, 1, BENCH_MAX_RUNS, &runs);
		else if (!strcmp(a, "--settle"))
			err = bench_parse_u64(v, 0, 3600, &settle);
		else if (!strcmp(a, "--restore"))
			err = bench_parse_u64(v, 0, 3600, &restore);
		else if (!strcmp(a, "--steps"))
			err = bench_parse_u64(v, 1000, 1ULL << 32, &steps);
		else if (!strcmp(a, "--only"))
			only = v;
		else
			usage(argv[0]);
		if (err)
			usage(argv[0]);
		i++;
	}
	if (size_mib % 2)
		usage(argv[0]);
	struct pattern pat = { 0 };
	struct env e = { .size = size_mib << 20, .steps = steps, .settle = (double)settle,
			 .restore = (double)restore, .pat = &pat };
	if (pattern_make(&pat, e.size, 20261126)) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	char dir[256];
	bool want_tmpfs = !only || strstr(only, "tmpfs");
	if (want_tmpfs) {
		int err = bench_tmpfs_mount("huge=always", dir, sizeof(dir));
		if (err) {
			fprintf(stderr, "kernel tmpfs: %s (needs root); skipping it\n", strerror(-err));
			want_tmpfs = false;
		}
		e.tmpfs_dir = dir;
	}
	printf("guestram-bench: %llu MiB mapped, %llu pages discarded (%.1f%%) in %llu messages of "
	       "%d PFNs; %llu of %llu 2 MiB ranges whole, %llu half; %llu runs, settle %llu s, "
	       "restore wait %llu s, %llu chase steps\n",
	       (unsigned long long)size_mib, (unsigned long long)pat.n,
	       100.0 * (double)pat.n * PG / (double)e.size,
	       (unsigned long long)((pat.n + MSG_PFNS - 1) / MSG_PFNS), MSG_PFNS,
	       (unsigned long long)pat.full, (unsigned long long)pat.ranges,
	       (unsigned long long)pat.partial, (unsigned long long)runs,
	       (unsigned long long)settle, (unsigned long long)restore,
	       (unsigned long long)steps);
	static struct result res[K_N][BENCH_MAX_RUNS];
	bool ran[K_N] = { false };
	for (uint64_t run = 0; run < runs; run++) {
		for (int k = 0; k < K_N; k++) {
			if (only && !strstr(only, kind_name[k]))
				continue;
			if (k == K_TMPFS && !want_tmpfs)
				continue;
			ran[k] = true;
			run_one((enum kind)k, &e, &res[k][run]);
			struct result *r = &res[k][run];
			if (r->err)
				printf("run %llu %s: error %s\n", (unsigned long long)run + 1,
				       kind_name[k], strerror(-r->err));
			else
				printf("run %llu %-11s %9.0f discards/s  back %.2f%% / %.2f%%  huge %ld -> "
				       "%ld -> %ld (%.2f s)  chase %.0f / %.0f / %.0f ns\n",
				       (unsigned long long)run + 1, kind_name[k], r->rate,
				       100 * r->back_now, 100 * r->back_later, r->huge_before,
				       r->huge_after, r->huge_restored, r->restore_s, r->chase_before,
				       r->chase_inflated, r->chase_rewritten);
			fflush(stdout);
		}
	}
	printf("\n%-22s", "median [min..max]");
	for (int k = 0; k < K_N; k++)
		if (ran[k])
			printf(" | %-26s", kind_name[k]);
	printf("\n");
	struct stat3 s[K_N][NF];
	for (int f = 0; f < NF; f++) {
		printf("%-22s", field_name[f]);
		for (int k = 0; k < K_N; k++) {
			if (!ran[k])
				continue;
			s[k][f] = stat_of(res[k], (int)runs, f);
			char cell[64];
			const char *fmt = f == 0 ? "%.0f [%.0f..%.0f]" : f == 6 || f == 10 ? "%.2f [%.2f..%.2f]" :
					  f >= 3 && f <= 5 ? "%.0f [%.0f..%.0f]" : "%.1f [%.1f..%.1f]";
			if (f == 1 || f == 2)
				fmt = "%.2f [%.2f..%.2f]";
			snprintf(cell, sizeof(cell), fmt, s[k][f].med, s[k][f].lo, s[k][f].hi);
			printf(" | %-26s", cell);
		}
		printf("\n");
	}
	double ranges = (double)pat.ranges;
	printf("\nheadline (medians; thpfs-split vs the kernel paths):\n");
	if (ran[K_SPLIT]) {
		struct stat3 *t = s[K_SPLIT];
		for (int k = K_TMPFS; k <= K_ANON; k++) {
			if (!ran[k])
				continue;
			printf("  vs %-10s discard rate x%.2f; back at once %.2f%% vs %.2f%%; huge after "
			       "rewrite %.1f%% vs %.1f%% of ranges; chase after rewrite %.0f vs %.0f ns "
			       "(x%.2f)\n",
			       kind_name[k], t[0].med / s[k][0].med, t[1].med, s[k][1].med,
			       100 * t[5].med / ranges, 100 * s[k][5].med / ranges, t[9].med,
			       s[k][9].med, s[k][9].med / t[9].med);
		}
		printf("goals: back at once >= 99.5%%: %.2f%% %s; huge after rewrite >= 95%%: %.1f%% %s; "
		       "chase after rewrite within 5%% of before: %+.1f%% %s",
		       t[1].med, t[1].med >= 99.5 ? "met" : "NOT met", 100 * t[5].med / ranges,
		       t[5].med >= 0.95 * ranges ? "met" : "NOT met",
		       100 * (t[9].med / t[7].med - 1), fabs(t[9].med / t[7].med - 1) <= 0.05 ? "met" : "NOT met");
		if (ran[K_TMPFS])
			printf("; discard rate >= 2x tmpfs: x%.2f %s", t[0].med / s[K_TMPFS][0].med,
			       t[0].med >= 2 * s[K_TMPFS][0].med ? "met" : "NOT met");
		printf("\n");
	}
	if (want_tmpfs)
		bench_tmpfs_umount();
	return 0;
}
