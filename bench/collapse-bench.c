/*
 * collapse-bench - how fast huge-page coverage comes back after a file was
 * punched full of 4 KiB holes and the holes were written again:
 *
 *   restore   a file is filled (all huge pages), half of its 4 KiB pages are
 *             punched in random order, then the same pages are rewritten
 *             with 4 KiB pwrites.  thpfs (eager collapse when a write
 *             completes a 2 MiB range, plus its collapse thread) against the
 *             kernel's tmpfs huge=always with khugepaged at its current
 *             settings; the file is mmapped MAP_SHARED with MADV_HUGEPAGE
 *             and kept mapped, since khugepaged only scans mapped ranges.
 *             Coverage = bytes in huge pages / file size, over time.
 *   latency   thpfs_collapse of one fully present 2 MiB base-page range,
 *             per range, against a 2 MiB memcpy (and, for reference, the
 *             kernel's MADV_COLLAPSE of such a range of a tmpfs file).
 *
 * A benchmark: it prints numbers and never fails on timing.  Exit status:
 * 0, 1 when a measurement failed with an error or the data read back was
 * wrong, 2 for bad options.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench-common.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define DO_RESTORE 0x1
#define DO_LATENCY 0x2
#define MAX_SAMPLES 4096
#define KHUGEPAGED "/sys/kernel/mm/transparent_hugepage/khugepaged/"

struct cbench_opts {
	uint64_t size;        /* restore file, bytes */
	uint64_t lat_size;    /* latency file, bytes */
	uint64_t seed;
	double extra;         /* seconds to keep watching after the rewrite */
	double interval;      /* seconds between coverage samples */
	unsigned what;
	bool json;
	unsigned prealloc;    /* prealloc= of the latency mounts */
};

struct sample {
	double t;   /* seconds since the rewrite started */
	double cov; /* 0..1 */
};

struct restore_result {
	const char *name;
	int err;
	char what[160];
	double cov_fill, cov_punch, cov_rw;
	double t_rw;          /* rewrite time */
	double t_full;        /* first time coverage was complete; NAN if never */
	double cov_window;    /* coverage at the thpfs window (kernel only) */
	double t_window;
	double cov_end, t_end;
	int nsamples;
	struct sample s[MAX_SAMPLES];
	bool verified;
	uint64_t bad_page;    /* first wrong page when !verified */
	/* kernel */
	int64_t kh_collapsed, kh_scans;   /* khugepaged counter deltas */
	int64_t pmd_mapped_kb;            /* ShmemPmdMapped of the mapping */
	double cov_unlink;                /* huge bytes that left on unlink / size */
	double madv_collapse_s, cov_madv; /* MADV_COLLAPSE of the whole file */
	int madv_err;
	/* thpfs */
	struct thpfs_stats st0, st1;
	bool have_stats;
};

static void rfail(struct restore_result *r, int err, const char *what)
{
	if (r->err)
		return;
	r->err = err;
	snprintf(r->what, sizeof(r->what), "%s", what);
}

/* Where the coverage of the file under test is read from. */
struct cov_src {
	struct bench_backend *b;
	uint64_t size;
	int64_t shp0_kb; /* kernel: ShmemHugePages before the file existed */
};

static double coverage(const struct cov_src *c)
{
	if (c->b->kind == BENCH_THPFS) {
		struct thpfs_stats st;

		/* the kernel's view (PAGEMAP_SCAN), not thpfs's own count */
		if (thpfs_get_stats(c->b->fs, &st) || !st.split_verify)
			return NAN;
		return (double)st.shmem_pmd_mapped / (double)c->size;
	}
	int64_t kb = bench_proc_kb("/proc/meminfo", "ShmemHugePages");

	if (kb < 0 || c->shp0_kb < 0)
		return NAN;
	return (double)(kb - c->shp0_kb) * 1024 / (double)c->size;
}

static void add_sample(struct restore_result *r, double t, double cov)
{
	if (r->nsamples < MAX_SAMPLES)
		r->s[r->nsamples++] = (struct sample){ t, cov };
	if (isnan(r->t_full) && cov >= 1.0)
		r->t_full = t;
}

/* Writes size bytes of pages stamped with their page index, 1 MiB at a time. */
static int fill_stamped(struct bench_file *f, uint64_t size, char *buf)
{
	for (uint64_t off = 0; off < size; off += BENCH_MIB) {
		size_t n = size - off < BENCH_MIB ? (size_t)(size - off) : BENCH_MIB;

		for (size_t p = 0; p < n; p += BENCH_PAGE)
			bench_stamp_page(buf + p, (off + p) / BENCH_PAGE);
		ssize_t w = bench_pwrite(f, buf, n, (off_t)off);

		if (w < 0)
			return (int)w;
	}
	return 0;
}

/* Reads the whole file back; first page whose stamp is wrong, or UINT64_MAX. */
static uint64_t verify_stamped(struct bench_file *f, uint64_t size, char *buf, int *err)
{
	*err = 0;
	for (uint64_t off = 0; off < size; off += BENCH_MIB) {
		size_t n = size - off < BENCH_MIB ? (size_t)(size - off) : BENCH_MIB;
		ssize_t r = bench_pread(f, buf, n, (off_t)off);

		if (r < 0) {
			*err = (int)r;
			return off / BENCH_PAGE;
		}
		for (size_t p = 0; p < n; p += BENCH_PAGE)
			if (!bench_check_page(buf + p, (off + p) / BENCH_PAGE))
				return (off + p) / BENCH_PAGE;
	}
	return UINT64_MAX;
}

/*
 * The restore run on one back end.  window: for the kernel, the time thpfs
 * needed (coverage is reported at that point too) - NAN for thpfs itself.
 * thpfs must be started (mounted); the kernel file is mapped here.
 */
static void restore_run(struct bench_backend *b, const struct cbench_opts *o, const uint32_t *order,
			double window, struct restore_result *r)
{
	struct cov_src cs = { b, o->size, -1 };
	struct bench_file f;
	uint32_t npages = (uint32_t)(o->size / BENCH_PAGE), npunch = npages / 2;
	uint32_t every = npunch / 20 ? npunch / 20 : 1;
	char *buf = malloc(BENCH_MIB), page[BENCH_PAGE] __attribute__((aligned(64)));
	void *map = MAP_FAILED;
	int64_t kc0 = 0, ks0 = 0;
	double t0, t, next, stop;
	int err;

	r->name = b->name;
	r->t_full = r->cov_window = r->t_window = r->cov_unlink = r->madv_collapse_s = r->cov_madv = NAN;
	if (!buf) {
		rfail(r, -ENOMEM, "malloc");
		return;
	}
	if (b->kind == BENCH_KERNEL)
		cs.shp0_kb = bench_proc_kb("/proc/meminfo", "ShmemHugePages");
	err = bench_open(b, "restore", O_CREAT | O_TRUNC | O_RDWR, &f);
	if (err) {
		rfail(r, err, "open");
		free(buf);
		return;
	}
	err = fill_stamped(&f, o->size, buf);
	if (err) {
		rfail(r, err, "fill");
		goto out;
	}
	if (b->kind == BENCH_KERNEL) {
		map = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
		if (map == MAP_FAILED) {
			rfail(r, -errno, "mmap");
			goto out;
		}
		/* registers the mm with khugepaged */
		if (madvise(map, o->size, MADV_HUGEPAGE)) {
			rfail(r, -errno, "madvise(MADV_HUGEPAGE)");
			goto out;
		}
	}
	r->cov_fill = coverage(&cs);
	for (uint32_t i = 0; i < npunch; i++) {
		err = bench_punch(&f, (off_t)order[i] * (off_t)BENCH_PAGE, BENCH_PAGE);
		if (err) {
			rfail(r, err, "punch");
			goto out;
		}
	}
	r->cov_punch = coverage(&cs);
	if (b->kind == BENCH_THPFS)
		r->have_stats = thpfs_get_stats(b->fs, &r->st0) == 0;
	kc0 = bench_read_u64(KHUGEPAGED "pages_collapsed");
	ks0 = bench_read_u64(KHUGEPAGED "full_scans");

	/* the rewrite, sampled 20 times */
	t0 = bench_now();
	add_sample(r, 0, r->cov_punch);
	for (uint32_t i = 0; i < npunch; i++) {
		bench_stamp_page(page, order[i]);
		ssize_t w = bench_pwrite(&f, page, BENCH_PAGE, (off_t)order[i] * (off_t)BENCH_PAGE);

		if (w < 0) {
			rfail(r, (int)w, "rewrite");
			goto out;
		}
		if ((i + 1) % every == 0 && i + 1 < npunch)
			add_sample(r, bench_now() - t0, coverage(&cs));
	}
	r->t_rw = bench_now() - t0;
	r->cov_rw = coverage(&cs);
	add_sample(r, r->t_rw, r->cov_rw);

	/* then watch: thpfs until complete, the kernel for the whole window */
	stop = fmax(r->t_rw, isnan(window) ? 0 : window) + o->extra;
	next = r->t_rw + o->interval;
	for (;;) {
		double cov;

		t = bench_now() - t0;
		if (t >= stop || (b->kind == BENCH_THPFS && !isnan(r->t_full)))
			break;
		usleep(10000);
		t = bench_now() - t0;
		cov = coverage(&cs);
		if (!isnan(window) && isnan(r->t_window) && t >= window) {
			r->t_window = t;
			r->cov_window = cov;
		}
		if (t >= next || cov >= 1.0) {
			add_sample(r, t, cov);
			next = t + o->interval;
		}
	}
	r->t_end = bench_now() - t0;
	r->cov_end = coverage(&cs);
	if (!isnan(window) && isnan(r->t_window)) {
		/* the kernel's rewrite alone took longer than thpfs's window */
		r->t_window = r->t_rw;
		r->cov_window = r->cov_rw;
	}
	if (b->kind == BENCH_THPFS)
		r->have_stats = r->have_stats && thpfs_get_stats(b->fs, &r->st1) == 0;
	r->kh_collapsed = bench_read_u64(KHUGEPAGED "pages_collapsed") - kc0;
	r->kh_scans = bench_read_u64(KHUGEPAGED "full_scans") - ks0;
	r->pmd_mapped_kb = b->kind == BENCH_KERNEL
				   ? bench_proc_kb("/proc/self/smaps_rollup", "ShmemPmdMapped")
				   : -1;

	r->bad_page = verify_stamped(&f, o->size, buf, &err);
	if (err) {
		rfail(r, err, "read back");
		goto out;
	}
	r->verified = r->bad_page == UINT64_MAX;

	if (b->kind == BENCH_KERNEL) {
		/* for reference: the kernel's synchronous collapse of the rest */
		double m0 = bench_now();

		r->madv_err = madvise(map, o->size, MADV_COLLAPSE) ? -errno : 0;
		r->madv_collapse_s = bench_now() - m0;
		r->cov_madv = coverage(&cs);
	}
out:
	if (map != MAP_FAILED)
		munmap(map, o->size);
	bench_close(&f);
	if (b->kind == BENCH_KERNEL) {
		int64_t before = bench_proc_kb("/proc/meminfo", "ShmemHugePages");

		err = bench_unlink(b, "restore");
		int64_t after = bench_proc_kb("/proc/meminfo", "ShmemHugePages");

		if (before >= 0 && after >= 0)
			r->cov_unlink = (double)(before - after) * 1024 / (double)o->size;
	} else {
		err = bench_unlink(b, "restore");
	}
	if (err)
		rfail(r, err, "unlink");
	free(buf);
}

/* ---- Collapse latency ---- */

struct latency_result {
	int err;
	char what[160];
	const char *setup;     /* how the base-page ranges were made */
	uint64_t ranges;
	double collapse_med, collapse_mean, collapse_p90; /* seconds per 2 MiB */
	double memcpy_med;     /* 2 MiB memcpy, populated destination */
	double memcpy_hot;     /* same two 2 MiB buffers again and again */
	double memcpy_fresh;   /* new THP destination each time (fault + copy) */
	double kernel_med;     /* MADV_COLLAPSE per 2 MiB of a tmpfs file */
	double refill_med;     /* 4 KiB rewrite that completes a split range and collapses it */
	double write4k_med;    /* the same 4 KiB rewrite into a huge page (no collapse) */
	int refill_err;
	bool refill_verified;
	int kernel_err;
	uint64_t kernel_ranges;
	bool verified;
	struct thpfs_stats st;
};

static void lfail(struct latency_result *r, int err, const char *what)
{
	if (r->err)
		return;
	r->err = err;
	snprintf(r->what, sizeof(r->what), "%s", what);
}

static void *map_aligned(size_t len, int advice)
{
	size_t span = len + BENCH_HUGE;
	char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + BENCH_HUGE - 1) & ~(uintptr_t)(BENCH_HUGE - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + span)
		munmap(a + len, (size_t)(p + span - (a + len)));
	madvise(a, len, advice);
	return a;
}

/* memcpy baselines over n ranges of 2 MiB: median seconds. */
static void memcpy_baseline(uint64_t n, struct latency_result *r)
{
	size_t len = (size_t)n * BENCH_HUGE;
	char *src = map_aligned(len, MADV_NOHUGEPAGE), *dst = map_aligned(len, MADV_HUGEPAGE);
	double *v = calloc(n, sizeof(double));
	double t0;

	r->memcpy_med = r->memcpy_hot = r->memcpy_fresh = NAN;
	if (!src || !dst || !v) {
		lfail(r, -ENOMEM, "memcpy buffers");
		goto out;
	}
	memset(src, 0x3c, len);
	memset(dst, 0xc3, len);
	memcpy(dst, src, len); /* warm-up: every page is populated and used once */
	for (uint64_t i = 0; i < n; i++) {
		t0 = bench_now();
		memcpy(dst + i * BENCH_HUGE, src + i * BENCH_HUGE, BENCH_HUGE);
		v[i] = bench_now() - t0;
	}
	r->memcpy_med = bench_median(v, (int)n);
	for (uint64_t i = 0; i < n; i++) {
		t0 = bench_now();
		memcpy(dst, src, BENCH_HUGE);
		v[i] = bench_now() - t0;
	}
	r->memcpy_hot = bench_median(v, (int)n);
	for (uint64_t i = 0; i < n; i++) {
		char *d = map_aligned(BENCH_HUGE, MADV_HUGEPAGE);

		if (!d) {
			lfail(r, -ENOMEM, "fresh THP");
			goto out;
		}
		t0 = bench_now();
		memcpy(d, src + i * BENCH_HUGE, BENCH_HUGE);
		v[i] = bench_now() - t0;
		munmap(d, BENCH_HUGE);
	}
	r->memcpy_fresh = bench_median(v, (int)n);
out:
	if (src)
		munmap(src, len);
	if (dst)
		munmap(dst, len);
	free(v);
}

/*
 * Makes every 2 MiB range of a filled file a fully present base-page range
 * without a huge page: punch its last 4 KiB page (which splits the huge
 * page) and write that page again.  Returns 0 or a negative errno.
 */
static int split_every_range(struct bench_file *f, uint64_t size)
{
	char page[BENCH_PAGE] __attribute__((aligned(64)));

	for (uint64_t off = 0; off < size; off += BENCH_HUGE) {
		uint64_t last = off + BENCH_HUGE - BENCH_PAGE;
		int err = bench_punch(f, (off_t)last, BENCH_PAGE);

		if (err)
			return err;
		bench_stamp_page(page, last / BENCH_PAGE);
		ssize_t w = bench_pwrite(f, page, BENCH_PAGE, (off_t)last);

		if (w < 0)
			return (int)w;
	}
	return 0;
}

/*
 * Sets up a thpfs file of o->lat_size bytes made of base pages only, fully
 * present.  Tries huge=never first (writes make base pages), then
 * huge=always with the split trick, both with collapse=off so that nothing
 * collapses behind our back.  Leaves b mounted and f open on success.
 */
static int latency_setup(struct bench_backend *b, const struct cbench_opts *o, struct bench_file *f,
			 char *buf, struct latency_result *r)
{
	static char how[2][64];
	snprintf(how[0], sizeof(how[0]), "huge=never,collapse=off,prealloc=%u", o->prealloc);
	snprintf(how[1], sizeof(how[1]), "huge=always,collapse=off,prealloc=%u", o->prealloc);
	uint64_t npages = o->lat_size / BENCH_PAGE;
	char msg[160];
	int err = 0;

	for (unsigned i = 0; i < 2; i++) {
		struct thpfs_stats st;

		b->options = how[i];
		err = bench_backend_start(b, msg, sizeof(msg));
		if (err)
			continue;
		err = bench_open(b, "lat", O_CREAT | O_TRUNC | O_RDWR, f);
		if (!err)
			err = fill_stamped(f, o->lat_size, buf);
		if (!err && i == 1)
			err = split_every_range(f, o->lat_size);
		if (!err)
			err = thpfs_get_stats(b->fs, &st);
		if (!err && st.huge_frames == 0 && st.base_pages == npages) {
			r->setup = how[i];
			return 0;
		}
		if (!err)
			fprintf(stderr, "collapse-bench: %s gave %llu huge frames, %llu base pages: "
				"not a base-page file\n", how[i], (unsigned long long)st.huge_frames,
				(unsigned long long)st.base_pages);
		bench_close(f);
		bench_backend_stop(b);
		if (!err)
			err = -EAGAIN;
	}
	return err;
}

static void latency_thpfs(const struct cbench_opts *o, struct latency_result *r)
{
	struct bench_backend b = { "thpfs", BENCH_THPFS, NULL, NULL, NULL };
	struct bench_file f;
	uint64_t n = o->lat_size / BENCH_HUGE;
	double *v = calloc(n, sizeof(double)), sum = 0, t0;
	char *buf = malloc(BENCH_MIB);
	int err;

	r->collapse_med = r->collapse_mean = r->collapse_p90 = NAN;
	if (!v || !buf) {
		lfail(r, -ENOMEM, "malloc");
		goto out;
	}
	err = latency_setup(&b, o, &f, buf, r);
	if (err) {
		lfail(r, err, "making a base-page file");
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		t0 = bench_now();
		int made = thpfs_collapse(f.tf, (off_t)(i * BENCH_HUGE), BENCH_HUGE);

		v[i] = bench_now() - t0;
		if (made != 1) {
			lfail(r, made < 0 ? made : -EAGAIN, made < 0 ? "thpfs_collapse" :
			      "thpfs_collapse made no huge page of a full range");
			break;
		}
		sum += v[i];
		r->ranges++;
	}
	if (!r->err) {
		r->collapse_mean = sum / (double)n;
		r->collapse_med = bench_median(v, (int)n);
		r->collapse_p90 = bench_percentile(v, (int)n, 0.9);
		thpfs_get_stats(b.fs, &r->st);
		r->verified = verify_stamped(&f, o->lat_size, buf, &err) == UINT64_MAX && !err;
	}
	bench_close(&f);
	bench_unlink(&b, "lat");
	bench_backend_stop(&b);
out:
	free(v);
	free(buf);
}

/*
 * The balloon-deflate path: a file of huge pages (huge=always, default split
 * mode), one 4 KiB page punched out of every 2 MiB range (the huge page is
 * split in place), then each punched page written again; that write makes
 * the range fully present, and the eager collapse turns it back into a huge
 * page inside the write.  Times each such write, and the same write into a
 * range that is a huge page (no collapse), so the difference is the collapse.
 */
static void latency_refill(const struct cbench_opts *o, struct latency_result *r)
{
	static char opts[64];
	snprintf(opts, sizeof(opts), "huge=always,collapse=off,prealloc=%u", o->prealloc);
	struct bench_backend b = { "thpfs", BENCH_THPFS, opts, NULL, NULL };
	struct bench_file f;
	uint64_t n = o->lat_size / BENCH_HUGE;
	double *v = calloc(n, sizeof(double)), *w = calloc(n, sizeof(double));
	char *buf = malloc(BENCH_MIB), msg[160];
	char page[BENCH_PAGE] __attribute__((aligned(64)));
	struct thpfs_stats st;
	int err = -ENOMEM;

	r->refill_med = r->write4k_med = NAN;
	if (!v || !w || !buf || (err = bench_backend_start(&b, msg, sizeof(msg))))
		goto out;
	err = bench_open(&b, "refill", O_CREAT | O_TRUNC | O_RDWR, &f);
	if (err)
		goto out_stop;
	err = fill_stamped(&f, o->lat_size, buf);
	for (uint64_t i = 0; !err && i < n; i++)
		err = bench_punch(&f, (off_t)(i * BENCH_HUGE + BENCH_HUGE - BENCH_PAGE), BENCH_PAGE);
	for (uint64_t i = 0; !err && i < n; i++) {
		uint64_t last = i * BENCH_HUGE + BENCH_HUGE - BENCH_PAGE;
		bench_stamp_page(page, last / BENCH_PAGE);
		double t0 = bench_now();
		ssize_t x = bench_pwrite(&f, page, BENCH_PAGE, (off_t)last);
		v[i] = bench_now() - t0;
		if (x != BENCH_PAGE)
			err = x < 0 ? (int)x : -EIO;
	}
	for (uint64_t i = 0; !err && i < n; i++) {
		uint64_t last = i * BENCH_HUGE + BENCH_HUGE - BENCH_PAGE;
		bench_stamp_page(page, last / BENCH_PAGE);
		double t0 = bench_now();
		ssize_t x = bench_pwrite(&f, page, BENCH_PAGE, (off_t)last);
		w[i] = bench_now() - t0;
		if (x != BENCH_PAGE)
			err = x < 0 ? (int)x : -EIO;
	}
	if (!err && !thpfs_get_stats(b.fs, &st) && st.huge_frames != n)
		err = -EAGAIN; /* not every range came back as a huge page */
	if (!err) {
		r->refill_med = bench_median(v, (int)n);
		r->write4k_med = bench_median(w, (int)n);
		r->refill_verified = verify_stamped(&f, o->lat_size, buf, &err) == UINT64_MAX && !err;
	}
	bench_close(&f);
	bench_unlink(&b, "refill");
out_stop:
	bench_backend_stop(&b);
out:
	r->refill_err = err;
	free(v);
	free(w);
	free(buf);
}

/* MADV_COLLAPSE per 2 MiB of a tmpfs file made of base pages (reference). */
static void latency_kernel(struct bench_backend *k, const struct cbench_opts *o,
			   struct latency_result *r)
{
	struct bench_file f;
	uint64_t n = o->lat_size / BENCH_HUGE;
	double *v = calloc(n, sizeof(double)), t0;
	char *buf = malloc(BENCH_MIB), *map = MAP_FAILED;
	int err;

	r->kernel_med = NAN;
	if (!v || !buf) {
		r->kernel_err = -ENOMEM;
		goto out;
	}
	err = bench_open(k, "lat", O_CREAT | O_TRUNC | O_RDWR, &f);
	if (err) {
		r->kernel_err = err;
		goto out;
	}
	err = fill_stamped(&f, o->lat_size, buf);
	if (!err)
		err = split_every_range(&f, o->lat_size);
	if (!err) {
		map = mmap(NULL, o->lat_size, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
		if (map == MAP_FAILED)
			err = -errno;
	}
	for (uint64_t i = 0; !err && i < n; i++) {
		t0 = bench_now();
		if (madvise(map + i * BENCH_HUGE, BENCH_HUGE, MADV_COLLAPSE))
			err = -errno;
		v[i] = bench_now() - t0;
		if (!err)
			r->kernel_ranges++;
	}
	if (!err)
		r->kernel_med = bench_median(v, (int)n);
	r->kernel_err = err;
	if (map != MAP_FAILED)
		munmap(map, o->lat_size);
	bench_close(&f);
	bench_unlink(k, "lat");
out:
	free(v);
	free(buf);
}

/* ---- Output ---- */

static void print_series(const struct restore_result *r)
{
	printf("    coverage over time (s: %%):");
	for (int i = 0; i < r->nsamples; i++)
		printf("%s %.2f: %.1f", i % 8 ? "," : "\n     ", r->s[i].t, r->s[i].cov * 100);
	printf("\n");
}

static void pct(char *s, size_t len, double v)
{
	if (isnan(v))
		snprintf(s, len, "-");
	else
		snprintf(s, len, "%.1f%%", v * 100);
}

static void print_restore_text(const struct cbench_opts *o, const struct restore_result *rr, int n)
{
	char a[16], b[16], c[16], d[16], e[16];

	printf("\nrestore: %llu MiB file, 50%% of its 4 KiB pages punched then rewritten "
	       "(random order, seed %llu)\n\n", (unsigned long long)(o->size >> 20),
	       (unsigned long long)o->seed);
	printf("%-8s %8s %8s %9s %10s %9s %12s %9s %8s\n", "backend", "filled", "punched", "rewrite s",
	       "rewritten", "full at s", "at window", "+extra", "data");
	for (int i = 0; i < n; i++) {
		const struct restore_result *r = &rr[i];
		char full[16], win[24];

		if (r->err) {
			printf("%-8s error: %s: %s\n", r->name, r->what, strerror(-r->err));
			continue;
		}
		pct(a, sizeof(a), r->cov_fill);
		pct(b, sizeof(b), r->cov_punch);
		pct(c, sizeof(c), r->cov_rw);
		pct(d, sizeof(d), r->cov_window);
		pct(e, sizeof(e), r->cov_end);
		if (isnan(r->t_full))
			snprintf(full, sizeof(full), "never");
		else
			snprintf(full, sizeof(full), "%.3f", r->t_full);
		if (isnan(r->t_window))
			snprintf(win, sizeof(win), "-");
		else
			snprintf(win, sizeof(win), "%s@%.2fs", d, r->t_window);
		printf("%-8s %8s %8s %9.3f %10s %9s %12s %9s %8s\n", r->name, a, b, r->t_rw, c, full, win,
		       r->name[0] == 'k' ? e : "-", r->verified ? "ok" : "WRONG");
	}
	printf("\n    coverage = bytes in huge pages / file size; thpfs: thpfs_get_stats "
	       "shmem_pmd_mapped\n    (bytes the kernel maps with huge PMDs, PAGEMAP_SCAN);\n"
	       "    kernel: /proc/meminfo ShmemHugePages minus its value "
	       "before the file (system-wide).\n    'at window' = kernel coverage when as much time "
	       "had passed as thpfs needed;\n    '+extra' = %.0f s later.\n", o->extra);
	for (int i = 0; i < n; i++) {
		const struct restore_result *r = &rr[i];

		if (r->err)
			continue;
		printf("  %s:\n", r->name);
		print_series(r);
		if (r->name[0] == 'k') {
			printf("    khugepaged during the watch: pages_collapsed +%lld, full_scans +%lld "
			       "(scan_sleep_millisecs %lld, pages_to_scan %lld, max_ptes_none %lld)\n",
			       (long long)r->kh_collapsed, (long long)r->kh_scans,
			       (long long)bench_read_u64(KHUGEPAGED "scan_sleep_millisecs"),
			       (long long)bench_read_u64(KHUGEPAGED "pages_to_scan"),
			       (long long)bench_read_u64(KHUGEPAGED "max_ptes_none"));
			printf("    ShmemPmdMapped of the mapping at the end of the watch: %lld kB\n",
			       (long long)r->pmd_mapped_kb);
			pct(a, sizeof(a), r->cov_unlink);
			if (r->madv_err)
				printf("    MADV_COLLAPSE afterwards: %s\n", strerror(-r->madv_err));
			else
				printf("    MADV_COLLAPSE of the whole mapping afterwards: %.3f s, coverage %.1f%%\n",
				       r->madv_collapse_s, r->cov_madv * 100);
			printf("    check: ShmemHugePages fell by %s of the file size on unlink\n", a);
		} else if (r->have_stats) {
			printf("    library: collapses +%llu (pages +%llu), collapse thread passes +%llu, "
			       "skipped(holes) +%llu\n",
			       (unsigned long long)(r->st1.thp_collapse_alloc - r->st0.thp_collapse_alloc),
			       (unsigned long long)(r->st1.base_pages_collapsed - r->st0.base_pages_collapsed),
			       (unsigned long long)(r->st1.collapse_full_scans - r->st0.collapse_full_scans),
			       (unsigned long long)(r->st1.collapse_skipped_holes - r->st0.collapse_skipped_holes));
		}
		if (!r->verified)
			printf("    DATA WRONG: page %llu does not hold what was written\n",
			       (unsigned long long)r->bad_page);
	}
}

static void print_latency_text(const struct cbench_opts *o, const struct latency_result *l)
{
	printf("\nlatency: collapse of one fully present 2 MiB base-page range (%llu ranges, medians)\n\n",
	       (unsigned long long)(o->lat_size / BENCH_HUGE));
	if (l->err) {
		printf("  thpfs_collapse: error: %s: %s\n", l->what, strerror(-l->err));
	} else {
		printf("  thpfs_collapse          %8.1f us  (p90 %.1f us, mean %.1f us; setup %s; data %s)\n",
		       l->collapse_med * 1e6, l->collapse_p90 * 1e6, l->collapse_mean * 1e6, l->setup,
		       l->verified ? "ok" : "WRONG");
	}
	printf("  memcpy 2 MiB            %8.1f us  (source and destination populated, streamed)\n",
	       l->memcpy_med * 1e6);
	printf("  memcpy 2 MiB, hot       %8.1f us  (the same two buffers)\n", l->memcpy_hot * 1e6);
	printf("  fault THP + memcpy      %8.1f us  (fresh MADV_HUGEPAGE destination)\n",
	       l->memcpy_fresh * 1e6);
	if (l->refill_err)
		printf("  refill collapse         error: %s\n", strerror(-l->refill_err));
	else
		printf("  refill collapse         %8.1f us  (4 KiB write completing a range split in place, "
		       "collapsed in the write; same write into a huge page %.1f us; data %s)\n",
		       l->refill_med * 1e6, l->write4k_med * 1e6, l->refill_verified ? "ok" : "WRONG");
	if (l->kernel_err)
		printf("  kernel MADV_COLLAPSE    error: %s\n", strerror(-l->kernel_err));
	else if (!isnan(l->kernel_med))
		printf("  kernel MADV_COLLAPSE    %8.1f us  (tmpfs file, base pages)\n", l->kernel_med * 1e6);
	if (!l->err) {
		double x = l->collapse_med / l->memcpy_med;

		printf("\n  thpfs_collapse / memcpy = %.2fx (target <= 1.5x: %s); / hot memcpy = %.2fx; "
		       "/ fault+memcpy = %.2fx\n", x, x <= 1.5 ? "met" : "NOT met",
		       l->collapse_med / l->memcpy_hot, l->collapse_med / l->memcpy_fresh);
		if (!isnan(l->kernel_med))
			printf("  thpfs_collapse / kernel MADV_COLLAPSE = %.2fx\n", l->collapse_med / l->kernel_med);
	}
	if (!l->refill_err) {
		double x = (l->refill_med - l->write4k_med) / l->memcpy_med;
		printf("  refill collapse (minus the 4 KiB write) / memcpy = %.2fx (target <= 1.5x: %s)\n",
		       x, x <= 1.5 ? "met" : "NOT met");
	}
}

static void json_num(const char *key, double v, const char *sep)
{
	if (isnan(v))
		printf("\"%s\": null%s", key, sep);
	else
		printf("\"%s\": %.6g%s", key, v, sep);
}

static void print_json(const struct cbench_opts *o, const struct restore_result *rr, int n,
		       const struct latency_result *l)
{
	printf("{\"size_mib\": %llu, \"seed\": %llu, \"extra_s\": %g,\n \"restore\": [",
	       (unsigned long long)(o->size >> 20), (unsigned long long)o->seed, o->extra);
	for (int i = 0; (o->what & DO_RESTORE) && i < n; i++) {
		const struct restore_result *r = &rr[i];

		printf("%s\n  {\"backend\": \"%s\", ", i ? "," : "", r->name);
		if (r->err) {
			printf("\"error\": \"%s: %s\"}", r->what, strerror(-r->err));
			continue;
		}
		json_num("cov_fill", r->cov_fill, ", ");
		json_num("cov_punch", r->cov_punch, ", ");
		json_num("rewrite_s", r->t_rw, ", ");
		json_num("cov_rewritten", r->cov_rw, ", ");
		json_num("full_at_s", r->t_full, ", ");
		json_num("window_s", r->t_window, ", ");
		json_num("cov_window", r->cov_window, ", ");
		json_num("end_s", r->t_end, ", ");
		json_num("cov_end", r->cov_end, ", ");
		printf("\"data_ok\": %s, ", r->verified ? "true" : "false");
		if (r->name[0] == 'k') {
			printf("\"khugepaged_pages_collapsed\": %lld, \"khugepaged_full_scans\": %lld, ",
			       (long long)r->kh_collapsed, (long long)r->kh_scans);
			json_num("cov_freed_on_unlink", r->cov_unlink, ", ");
			json_num("madv_collapse_s", r->madv_err ? NAN : r->madv_collapse_s, ", ");
			json_num("cov_after_madv_collapse", r->madv_err ? NAN : r->cov_madv, ", ");
		}
		printf("\"series\": [");
		for (int j = 0; j < r->nsamples; j++)
			printf("%s[%.4g, %.4g]", j ? ", " : "", r->s[j].t, r->s[j].cov);
		printf("]}");
	}
	printf("],\n \"latency\": ");
	if (o->what & DO_LATENCY) {
		printf("{\"ranges\": %llu, ", (unsigned long long)(o->lat_size / BENCH_HUGE));
		if (l->err)
			printf("\"error\": \"%s: %s\", ", l->what, strerror(-l->err));
		else
			printf("\"setup\": \"%s\", \"data_ok\": %s, ", l->setup, l->verified ? "true" : "false");
		json_num("collapse_us", l->err ? NAN : l->collapse_med * 1e6, ", ");
		json_num("collapse_p90_us", l->err ? NAN : l->collapse_p90 * 1e6, ", ");
		json_num("collapse_mean_us", l->err ? NAN : l->collapse_mean * 1e6, ", ");
		json_num("memcpy_us", l->memcpy_med * 1e6, ", ");
		json_num("memcpy_hot_us", l->memcpy_hot * 1e6, ", ");
		json_num("fault_memcpy_us", l->memcpy_fresh * 1e6, ", ");
		json_num("kernel_madv_collapse_us", l->kernel_err ? NAN : l->kernel_med * 1e6, ", ");
		json_num("ratio_vs_memcpy", l->err ? NAN : l->collapse_med / l->memcpy_med, "}");
	} else {
		printf("null");
	}
	printf("}\n");
}

/* ---- Main ---- */

static void usage(FILE *fp, const char *argv0)
{
	fprintf(fp,
		"usage: %s [options]\n"
		"  --size MiB          restore file size, a multiple of 2 (default 1024)\n"
		"  --latency-size MiB  latency file size, a multiple of 2 (default 256)\n"
		"  --seed N            seed of the random punch order (default 42)\n"
		"  --extra S           seconds to keep watching the kernel after thpfs (default 10)\n"
		"  --interval MS       coverage sample interval (default 500)\n"
		"  --only LIST         comma-separated: restore, latency (default both)\n"
		"  --prealloc N        prealloc= of the thpfs latency mounts (default 0)\n"
		"  --json              print JSON instead of tables\n",
		argv0);
}

static int parse_args(int argc, char **argv, struct cbench_opts *o)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' },   { "latency-size", required_argument, NULL, 'l' },
		{ "seed", required_argument, NULL, 'S' },   { "extra", required_argument, NULL, 'e' },
		{ "interval", required_argument, NULL, 'i' }, { "only", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },         { "help", no_argument, NULL, 'h' },
		{ "prealloc", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	*o = (struct cbench_opts){ 1024ULL << 20, 256ULL << 20, 42, 10, 0.5, DO_RESTORE | DO_LATENCY, false, 0 };
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
		case 'l':
			if (bench_parse_u64(optarg, 2, 1 << 20, &v) || (v & 1)) {
				fprintf(stderr, "%s: want an even number of MiB, 2..1048576: '%s'\n", argv[0], optarg);
				return 2;
			}
			if (c == 's')
				o->size = v << 20;
			else
				o->lat_size = v << 20;
			break;
		case 'p':
			if (bench_parse_u64(optarg, 0, 64, &v)) {
				fprintf(stderr, "%s: --prealloc: want 0..64: '%s'\n", argv[0], optarg);
				return 2;
			}
			o->prealloc = (unsigned)v;
			break;
		case 'S':
			if (bench_parse_u64(optarg, 0, UINT64_MAX, &o->seed)) {
				fprintf(stderr, "%s: --seed: not a number: '%s'\n", argv[0], optarg);
				return 2;
			}
			break;
		case 'e':
			if (bench_parse_u64(optarg, 0, 3600, &v)) {
				fprintf(stderr, "%s: --extra: want 0..3600 seconds: '%s'\n", argv[0], optarg);
				return 2;
			}
			o->extra = (double)v;
			break;
		case 'i':
			if (bench_parse_u64(optarg, 10, 60000, &v)) {
				fprintf(stderr, "%s: --interval: want 10..60000 ms: '%s'\n", argv[0], optarg);
				return 2;
			}
			o->interval = (double)v / 1000;
			break;
		case 'o': {
			char tmp[64], *save = NULL;

			o->what = 0;
			snprintf(tmp, sizeof(tmp), "%s", optarg);
			for (char *w = strtok_r(tmp, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
				if (!strcmp(w, "restore"))
					o->what |= DO_RESTORE;
				else if (!strcmp(w, "latency"))
					o->what |= DO_LATENCY;
				else
					o->what = 0x100;
			}
			if (!o->what || o->what & 0x100 || strlen(optarg) >= sizeof(tmp)) {
				fprintf(stderr, "%s: --only: want restore, latency: '%s'\n", argv[0], optarg);
				return 2;
			}
			break;
		}
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout, argv[0]);
			exit(0);
		default:
			usage(stderr, argv[0]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct cbench_opts o;
	struct bench_backend kernel = { "kernel", BENCH_KERNEL, NULL, NULL, NULL };
	struct bench_backend thp = { "thpfs", BENCH_THPFS, "huge=always", NULL, NULL };
	static struct restore_result rr[2];
	static struct latency_result lat;
	char kdir[256], msg[160];
	const char *why = NULL;
	int nr = 0, err, ret, bad = 0;

	ret = parse_args(argc, argv, &o);
	if (ret)
		return ret;
	signal(SIGPIPE, SIG_IGN);
	err = bench_tmpfs_mount("huge=always,size=90%,mode=0700", kdir, sizeof(kdir));
	if (err) {
		why = err == -EPERM ? "not root" : strerror(-err);
		fprintf(stderr, "collapse-bench: kernel tmpfs not mounted (%s): running thpfs only\n", why);
	} else {
		kernel.dir = kdir;
	}

	if (o.what & DO_RESTORE) {
		uint32_t *order = bench_permutation((uint32_t)(o.size / BENCH_PAGE), o.seed);

		if (!order) {
			fprintf(stderr, "collapse-bench: out of memory\n");
			bench_tmpfs_umount();
			return 1;
		}
		fprintf(stderr, "restore: thpfs...\n");
		rr[nr].name = thp.name;
		err = bench_backend_start(&thp, msg, sizeof(msg));
		if (err) {
			rfail(&rr[nr], err, "thpfs_mount");
		} else {
			restore_run(&thp, &o, order, NAN, &rr[nr]);
			bench_backend_stop(&thp);
		}
		nr++;
		if (kernel.dir) {
			double window = rr[0].err ? 0 : isnan(rr[0].t_full) ? rr[0].t_end : rr[0].t_full;

			fprintf(stderr, "restore: kernel (watching %.0f s)...\n", window + o.extra);
			restore_run(&kernel, &o, order, window, &rr[nr++]);
		}
		free(order);
		for (int i = 0; i < nr; i++)
			bad |= rr[i].err || !rr[i].verified;
	}

	if (o.what & DO_LATENCY) {
		fprintf(stderr, "latency...\n");
		memcpy_baseline(o.lat_size / BENCH_HUGE, &lat);
		latency_thpfs(&o, &lat);
		latency_refill(&o, &lat);
		if (kernel.dir)
			latency_kernel(&kernel, &o, &lat);
		else
			lat.kernel_med = NAN;
		bad |= lat.err || !lat.verified;
	}

	bench_tmpfs_umount();
	if (o.json) {
		print_json(&o, rr, nr, &lat);
	} else {
		printf("collapse-bench: seed %llu\n", (unsigned long long)o.seed);
		if (why)
			printf("kernel: not measured (%s); thpfs only\n", why);
		else
			printf("kernel: tmpfs huge=always, private mount; THP enabled=madvise, khugepaged "
			       "at its current settings\n");
		if (o.what & DO_RESTORE)
			print_restore_text(&o, rr, nr);
		if (o.what & DO_LATENCY)
			print_latency_text(&o, &lat);
	}
	return bad ? 1 : 0;
}
