/*
 * thpfs-bench - the same file work on libthpfs and on the kernel's tmpfs
 * (huge=always, mounted privately in a temp dir), in one run:
 *
 *   (a) 4 KiB punch rate into a filled file (half of its pages, random order)
 *   (b) memory returned per punch, from a child memory cgroup per back end
 *   (c) sequential pwrite (new file, overwrite) and pread at 4 KiB, 64 KiB, 1 MiB
 *   (d) fill rate: a new file written with 1 MiB writes
 *
 * thpfs runs with its default split mode (native), and (a)/(b) again with split=migrate and split=inplace to show
 * the deferred-split trap (RSS drops, memory does not come back).  Numbers
 * are printed with the thpfs/kernel ratio; this is a benchmark, it never
 * fails on timing.  Exit status: 0, 1 when a measurement failed with an
 * error, 2 for bad options.
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
#include <sys/wait.h>
#include <unistd.h>

#include "bench-common.h"
#include "cgroup.h"

#define DO_PUNCH 0x1
#define DO_IO 0x2
#define DO_FILL 0x4

struct bench_opts {
	uint64_t size; /* bytes */
	uint64_t seed;
	unsigned runs;
	unsigned what; /* DO_* */
	bool json;
	unsigned prealloc; /* prealloc= of the thpfs mount of (c)/(d) */
};

/* ---- (a)/(b): punch rate and memory returned ---- */

struct punch_result {
	int err;                /* first error, negative errno */
	char what[200];         /* what failed */
	int cg_err;             /* no cgroup: memory columns are missing */
	int runs;
	uint64_t punches;
	double rate[BENCH_MAX_RUNS];     /* punches/s */
	double returned[BENCH_MAX_RUNS]; /* cgroup drop / punched bytes */
	double rss_drop[BENCH_MAX_RUNS]; /* RssAnon drop / punched bytes */
	double thp_fill[BENCH_MAX_RUNS]; /* share of the filled file in THPs */
	/* last run */
	int64_t cg_fill, cg_after;       /* bytes */
	int64_t rss_fill, rss_after;     /* RssAnon kB */
	int64_t ahp_fill, ahp_after;     /* AnonHugePages kB (smaps_rollup) */
	int64_t shp_fill, shp_after;     /* ShmemHugePages kB (meminfo, global) */
	int64_t vm_split, vm_deferred;   /* /proc/vmstat deltas over the punch */
	int have_stats;
	struct thpfs_stats st_fill, st_after;
};

struct punch_row {
	struct bench_backend *b;
	struct punch_result r;
	double rate, returned, rss_drop; /* medians */
};

static void fail(struct punch_result *r, int err, const char *fmt, const char *arg)
{
	if (r->err)
		return;
	r->err = err;
	snprintf(r->what, sizeof(r->what), fmt, arg);
}

/* Snapshot of the memory figures a punch run compares. */
struct mem_snap {
	int64_t cg, rss, ahp, shp, vm_split, vm_deferred;
	struct thpfs_stats st;
	int have_stats;
};

static void mem_snap(struct bench_backend *b, const struct thpfs_cg *cg, struct mem_snap *s)
{
	memset(s, 0, sizeof(*s));
	s->cg = cg ? thpfs_cg_usage(cg) : -1;
	s->rss = bench_proc_kb("/proc/self/status", "RssAnon");
	s->ahp = bench_proc_kb("/proc/self/smaps_rollup", "AnonHugePages");
	s->shp = bench_proc_kb("/proc/meminfo", "ShmemHugePages");
	s->vm_split = bench_vmstat("thp_split_page");
	s->vm_deferred = bench_vmstat("thp_deferred_split_page");
	if (b->kind == BENCH_THPFS && b->fs)
		s->have_stats = thpfs_get_stats(b->fs, &s->st) == 0;
}

/*
 * One run in the child: fill a new file, punch npunch random pages, record
 * rate and memory.  The file is removed afterwards.
 */
static void punch_run(struct bench_backend *b, const struct bench_opts *o, const uint32_t *order,
		      const char *buf, const struct thpfs_cg *cg, struct punch_result *r)
{
	struct bench_file f;
	struct mem_snap s0, s1;
	int64_t ahp_pre = bench_proc_kb("/proc/self/smaps_rollup", "AnonHugePages");
	int64_t shp_pre = bench_proc_kb("/proc/meminfo", "ShmemHugePages");
	uint64_t npunch = o->size / BENCH_PAGE / 2;
	double punched = (double)npunch * BENCH_PAGE, t0, t1;
	int run = r->runs, err;

	err = bench_open(b, "punch", O_CREAT | O_TRUNC | O_RDWR, &f);
	if (err) {
		fail(r, err, "open %s", "punch");
		return;
	}
	err = bench_fill(&f, o->size, BENCH_MIB, buf);
	if (err) {
		fail(r, err, "fill %s", "punch");
		goto out;
	}
	mem_snap(b, cg, &s0);
	t0 = bench_now();
	for (uint64_t i = 0; i < npunch; i++) {
		err = bench_punch(&f, (off_t)order[i] * (off_t)BENCH_PAGE, BENCH_PAGE);
		if (err) {
			fail(r, err, "punch %s", "4 KiB");
			goto out;
		}
	}
	t1 = bench_now();
	mem_snap(b, cg, &s1);

	r->punches = npunch;
	/* kernel: ShmemHugePages is system-wide, so other users add noise */
	if (b->kind == BENCH_KERNEL)
		r->thp_fill[run] = (s0.shp >= 0 && shp_pre >= 0)
					   ? (double)(s0.shp - shp_pre) * 1024 / (double)o->size : NAN;
	else
		r->thp_fill[run] = (s0.ahp >= 0 && ahp_pre >= 0)
					   ? (double)(s0.ahp - ahp_pre) * 1024 / (double)o->size : NAN;
	r->rate[run] = (double)npunch / (t1 - t0);
	r->returned[run] = (cg && s0.cg >= 0 && s1.cg >= 0) ? (double)(s0.cg - s1.cg) / punched : NAN;
	r->rss_drop[run] = (b->kind == BENCH_THPFS && s0.rss >= 0 && s1.rss >= 0)
				   ? (double)(s0.rss - s1.rss) * 1024 / punched
				   : NAN;
	r->cg_fill = s0.cg;
	r->cg_after = s1.cg;
	r->rss_fill = s0.rss;
	r->rss_after = s1.rss;
	r->ahp_fill = s0.ahp;
	r->ahp_after = s1.ahp;
	r->shp_fill = s0.shp;
	r->shp_after = s1.shp;
	r->vm_split = s1.vm_split - s0.vm_split;
	r->vm_deferred = s1.vm_deferred - s0.vm_deferred;
	r->have_stats = s0.have_stats && s1.have_stats;
	r->st_fill = s0.st;
	r->st_after = s1.st;
	r->runs++;
out:
	bench_close(&f);
	err = bench_unlink(b, "punch");
	if (err)
		fail(r, err, "unlink %s", "punch");
}

/*
 * Child process body: enter a fresh memory cgroup (so that every page the
 * back end takes is charged there), then do o->runs punch runs.  thpfs is
 * mounted inside the child, after entering the cgroup.
 */
static void punch_child(struct bench_backend *b, const struct bench_opts *o, const uint32_t *order,
			struct punch_result *r)
{
	struct thpfs_cg cg;
	bool in_cg = false;
	char label[64], msg[160];
	char *buf;
	int err;

	snprintf(label, sizeof(label), "thpfs-bench-%s", b->name);
	r->cg_err = thpfs_cg_create(&cg, label);
	if (!r->cg_err) {
		r->cg_err = thpfs_cg_enter(&cg);
		if (r->cg_err)
			thpfs_cg_destroy(&cg);
		else
			in_cg = true;
	}
	buf = malloc(BENCH_MIB);
	if (!buf) {
		fail(r, -ENOMEM, "%s", "malloc");
		goto out_cg;
	}
	memset(buf, 0x5a, BENCH_MIB);
	err = bench_backend_start(b, msg, sizeof(msg));
	if (err) {
		fail(r, err, "mount: %s", msg[0] ? msg : b->options);
		goto out_buf;
	}
	for (unsigned i = 0; i < o->runs && !r->err; i++)
		punch_run(b, o, order, buf, in_cg ? &cg : NULL, r);
	bench_backend_stop(b);
out_buf:
	free(buf);
out_cg:
	if (in_cg)
		thpfs_cg_destroy(&cg);
}

/* Runs punch_child in a forked child and collects its result over a pipe. */
static void punch_measure(struct punch_row *row, const struct bench_opts *o, const uint32_t *order)
{
	struct punch_result *r = &row->r;
	int p[2], status;
	pid_t pid;
	size_t got = 0;

	memset(r, 0, sizeof(*r));
	if (pipe(p)) {
		fail(r, -errno, "%s", "pipe");
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		fail(r, -errno, "%s", "fork");
		return;
	}
	if (pid == 0) {
		close(p[0]);
		punch_child(row->b, o, order, r);
		ssize_t n = write(p[1], r, sizeof(*r));
		_exit(n == (ssize_t)sizeof(*r) ? 0 : 1);
	}
	close(p[1]);
	while (got < sizeof(*r)) {
		ssize_t n = read(p[0], (char *)r + got, sizeof(*r) - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got < sizeof(*r)) {
		memset(r, 0, sizeof(*r));
		if (WIFSIGNALED(status))
			fail(r, -EIO, "child killed by signal %s", strsignal(WTERMSIG(status)));
		else
			fail(r, -EIO, "%s", "child exited without a result");
	}
	row->rate = bench_median(r->rate, r->runs);
	row->returned = bench_median(r->returned, r->runs);
	row->rss_drop = bench_median(r->rss_drop, r->runs);
}

/* ---- (c)/(d): throughput ---- */

enum io_op { IO_WRITE_NEW, IO_OVERWRITE, IO_READ, IO_NR };
static const char *const io_name[IO_NR] = { "pwrite-new", "pwrite-over", "pread" };
static const size_t io_bs[] = { 4096, 65536, 1 << 20 };
#define IO_NBS (sizeof(io_bs) / sizeof(io_bs[0]))

struct io_cell {
	double gibs; /* median GiB/s, NAN if not measured */
	int err;
};

/*
 * One timed sequential pass over o->size bytes in bs pieces.  IO_WRITE_NEW
 * creates "io-new" (the allocation is part of what is timed) and removes it
 * afterwards; the others use the filled file "io-data".  Returns seconds, or
 * a negative errno.
 */
static double io_pass(struct bench_backend *b, enum io_op op, size_t bs, uint64_t size, char *buf)
{
	struct bench_file f;
	const char *name = op == IO_WRITE_NEW ? "io-new" : "io-data";
	int flags = op == IO_WRITE_NEW ? O_CREAT | O_TRUNC | O_RDWR : O_RDWR;
	double t0, t1;
	ssize_t n = 0;
	int err;

	err = bench_open(b, name, flags, &f);
	if (err)
		return err;
	t0 = bench_now();
	for (uint64_t off = 0; off < size && n >= 0; off += bs) {
		if (op == IO_READ)
			n = bench_pread(&f, buf, bs, (off_t)off);
		else
			n = bench_pwrite(&f, buf, bs, (off_t)off);
	}
	t1 = bench_now();
	err = bench_close(&f);
	if (op == IO_WRITE_NEW) {
		int e = bench_unlink(b, name);

		if (!err)
			err = e;
	}
	if (n < 0)
		return (double)n;
	if (err)
		return err;
	return t1 - t0;
}

/* (d): create, write size bytes with 1 MiB writes, close; seconds or -errno. */
static double fill_pass(struct bench_backend *b, uint64_t size, char *buf)
{
	struct bench_file f;
	double t0, t1;
	int err, e;

	t0 = bench_now();
	err = bench_open(b, "fill", O_CREAT | O_TRUNC | O_WRONLY, &f);
	if (err)
		return err;
	err = bench_fill(&f, size, BENCH_MIB, buf);
	e = bench_close(&f);
	t1 = bench_now();
	if (!err)
		err = e;
	e = bench_unlink(b, "fill");
	if (!err)
		err = e;
	return err ? err : t1 - t0;
}

struct io_results {
	struct io_cell cell[IO_NR][IO_NBS][2]; /* [op][bs][backend] */
	struct io_cell fill[2];
	double fill_s[2];
	/* every run's GiB/s, for the spread of the paired ratios */
	double run_gibs[IO_NR][IO_NBS][2][BENCH_MAX_RUNS];
	int nrun[IO_NR][IO_NBS][2];
	double fill_gibs[2][BENCH_MAX_RUNS];
	int nfill[2];
};

/* The ratios a[i] / b[i] of runs made in the same round (paired, so slow
 * drift on the machine hits both): median, min and max into m[3]; NAN
 * when there are none. */
static void paired_ratios(const double *a, int na, const double *b, int nb, double m[3])
{
	bench_paired_ratios(a, b, na < nb ? na : nb, m);
}

/*
 * Runs (c) and (d) on the started back ends be[0..nb).  Each run of a cell
 * goes to every back end in turn, so slow drift on the machine hits both.
 */
static void io_measure(struct bench_backend **be, int nb, const struct bench_opts *o,
		       struct io_results *res)
{
	double v[2][BENCH_MAX_RUNS];
	char *buf;
	double gib = (double)o->size / (double)BENCH_GIB;

	for (unsigned op = 0; op < IO_NR; op++)
		for (unsigned s = 0; s < IO_NBS; s++)
			for (int k = 0; k < 2; k++)
				res->cell[op][s][k] = (struct io_cell){ NAN, 0 };
	res->fill[0] = res->fill[1] = (struct io_cell){ NAN, 0 };
	buf = mmap(NULL, BENCH_MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		for (int k = 0; k < nb; k++)
			res->fill[k].err = -ENOMEM;
		return;
	}
	memset(buf, 0xa5, BENCH_MIB);

	if (o->what & DO_IO) {
		/* the file that overwrite and read work on */
		for (int k = 0; k < nb; k++) {
			struct bench_file f;
			int err = bench_open(be[k], "io-data", O_CREAT | O_TRUNC | O_RDWR, &f);

			if (!err) {
				err = bench_fill(&f, o->size, BENCH_MIB, buf);
				bench_close(&f);
			}
			for (unsigned op = 0; op < IO_NR; op++)
				for (unsigned s = 0; s < IO_NBS; s++)
					res->cell[op][s][k].err = err;
		}
		for (unsigned s = 0; s < IO_NBS; s++) {
			for (unsigned op = 0; op < IO_NR; op++) {
				int n[2] = { 0, 0 };

				fprintf(stderr, "  %s %zu KiB...\n", io_name[op], io_bs[s] / 1024);
				for (unsigned run = 0; run < o->runs; run++) {
					for (int k = 0; k < nb; k++) {
						struct io_cell *c = &res->cell[op][s][k];
						double t;

						if (c->err)
							continue;
						t = io_pass(be[k], op, io_bs[s], o->size, buf);
						if (t < 0)
							c->err = (int)t;
						else
							v[k][n[k]++] = gib / t;
						if (t >= 0)
							res->run_gibs[op][s][k][res->nrun[op][s][k]++] = gib / t;
					}
				}
				for (int k = 0; k < nb; k++)
					if (!res->cell[op][s][k].err)
						res->cell[op][s][k].gibs = bench_median(v[k], n[k]);
			}
		}
		for (int k = 0; k < nb; k++)
			bench_unlink(be[k], "io-data");
	}

	if (o->what & DO_FILL) {
		int n[2] = { 0, 0 };

		fprintf(stderr, "  fill...\n");
		for (unsigned run = 0; run < o->runs; run++) {
			for (int k = 0; k < nb; k++) {
				double t;

				if (res->fill[k].err)
					continue;
				t = fill_pass(be[k], o->size, buf);
				if (t < 0)
					res->fill[k].err = (int)t;
				else
					v[k][n[k]++] = t;
				if (t > 0)
					res->fill_gibs[k][res->nfill[k]++] = gib / t;
			}
		}
		for (int k = 0; k < nb; k++) {
			if (res->fill[k].err)
				continue;
			res->fill_s[k] = bench_median(v[k], n[k]);
			res->fill[k].gibs = gib / res->fill_s[k];
		}
	}
	munmap(buf, BENCH_MIB);
}

/* ---- Output ---- */

struct report {
	const struct bench_opts *o;
	const char *kdir;          /* NULL: no kernel comparison */
	const char *kernel_why;    /* why there is none */
	struct punch_row punch[4]; /* kernel, thpfs native, migrate, inplace */
	int npunch;
	struct io_results io;
	struct bench_backend *io_be[2];
	int nio;
};

static double ratio(double a, double b)
{
	return (isnan(a) || isnan(b) || b <= 0) ? NAN : a / b;
}

static const struct punch_row *punch_row_of(const struct report *rp, enum bench_kind kind,
					    const char *opt_part)
{
	for (int i = 0; i < rp->npunch; i++) {
		const struct punch_row *row = &rp->punch[i];

		if (row->b->kind == kind && (!opt_part || strstr(row->b->options, opt_part)))
			return row;
	}
	return NULL;
}

static int io_index(const struct report *rp, enum bench_kind kind)
{
	for (int k = 0; k < rp->nio; k++)
		if (rp->io_be[k]->kind == kind)
			return k;
	return -1;
}

static void fmt_num(char *s, size_t len, double v, const char *fmt)
{
	if (isnan(v))
		snprintf(s, len, "-");
	else
		snprintf(s, len, fmt, v);
}

static void print_punch_text(const struct report *rp)
{
	const struct punch_row *k = punch_row_of(rp, BENCH_KERNEL, NULL);
	char a[32], b[32], c[32], d[32], e[48];

	printf("\n(a) 4 KiB punches into a filled %llu MiB file: 50%% of its pages, random order\n",
	       (unsigned long long)(rp->o->size >> 20));
	printf("(b) memory returned = drop of the child memory cgroup's usage / punched bytes\n");
	printf("    RSS drop = drop of the process's RssAnon / punched bytes (thpfs only)\n\n");
	printf("%-15s %12s %7s %9s %9s %12s %8s %9s\n", "backend", "punches/s", "ratio", "returned",
	       "RSS drop", "THP MiB", "k-split", "k-deferr");
	for (int i = 0; i < rp->npunch; i++) {
		const struct punch_row *row = &rp->punch[i];
		const struct punch_result *r = &row->r;

		if (r->err) {
			printf("%-15s error: %s: %s\n", row->b->name, r->what, strerror(-r->err));
			continue;
		}
		fmt_num(a, sizeof(a), row->rate, "%.0f");
		fmt_num(b, sizeof(b), k ? ratio(row->rate, k->rate) : NAN, "%.2f");
		fmt_num(c, sizeof(c), row->returned * 100, "%.2f%%");
		fmt_num(d, sizeof(d), row->rss_drop * 100, "%.2f%%");
		if (row->b->kind == BENCH_KERNEL)
			snprintf(e, sizeof(e), "%lld>%lld", (long long)r->shp_fill / 1024,
				 (long long)r->shp_after / 1024);
		else
			snprintf(e, sizeof(e), "%lld>%lld", (long long)r->ahp_fill / 1024,
				 (long long)r->ahp_after / 1024);
		printf("%-15s %12s %7s %9s %9s %12s %8lld %9lld\n", row->b->name, a, b, c, d, e,
		       (long long)r->vm_split, (long long)r->vm_deferred);
	}
	for (int i = 0; i < rp->npunch; i++) {
		const struct punch_result *r = &rp->punch[i].r;

		if (r->err)
			continue;
		printf("    %s runs: punches/s", rp->punch[i].b->name);
		for (int j = 0; j < r->runs; j++)
			printf(" %.0f", r->rate[j]);
		printf("; returned %%");
		for (int j = 0; j < r->runs; j++) {
			fmt_num(a, sizeof(a), r->returned[j] * 100, "%.2f");
			printf(" %s", a);
		}
		printf("; file in THPs after fill %%");
		for (int j = 0; j < r->runs; j++) {
			fmt_num(a, sizeof(a), r->thp_fill[j] * 100, "%.1f");
			printf(" %s", a);
		}
		printf("\n");
		for (int j = 0; j < r->runs; j++)
			if (r->thp_fill[j] < 0.99)
				printf("    WARNING: %s run %d: only %.1f%% of the file was in huge pages "
				       "before the punches\n", rp->punch[i].b->name, j + 1, r->thp_fill[j] * 100);
	}
	printf("\n    THP MiB: before>after the punches; kernel: ShmemHugePages (system-wide),\n"
	       "    thpfs: AnonHugePages of the process.  k-split/k-deferr: the kernel's\n"
	       "    thp_split_page / thp_deferred_split_page during the punches (system-wide).\n");
	for (int i = 0; i < rp->npunch; i++) {
		const struct punch_result *r = &rp->punch[i].r;

		if (r->err || !r->have_stats)
			continue;
		printf("    %s: library says shmem %llu>%llu MiB, huge %llu>%llu MiB, "
		       "split %llu (migrated %llu, in place %llu), released %llu MiB, "
		       "deferred queue %llu\n",
		       rp->punch[i].b->name, (unsigned long long)r->st_fill.shmem_bytes >> 20,
		       (unsigned long long)r->st_after.shmem_bytes >> 20,
		       (unsigned long long)r->st_fill.shmem_huge_bytes >> 20,
		       (unsigned long long)r->st_after.shmem_huge_bytes >> 20,
		       (unsigned long long)(r->st_after.thp_split_page - r->st_fill.thp_split_page),
		       (unsigned long long)(r->st_after.thp_split_migrate - r->st_fill.thp_split_migrate),
		       (unsigned long long)(r->st_after.thp_split_inplace - r->st_fill.thp_split_inplace),
		       (unsigned long long)(r->st_after.bytes_released - r->st_fill.bytes_released) >> 20,
		       (unsigned long long)r->st_after.deferred_split_queue);
	}
	if (rp->npunch && rp->punch[0].r.cg_err)
		printf("    no memory cgroup (%s): memory columns are empty\n",
		       strerror(-rp->punch[0].r.cg_err));
}

static void print_io_text(const struct report *rp)
{
	int k = io_index(rp, BENCH_KERNEL), t = io_index(rp, BENCH_THPFS);
	char a[32], b[32], c[32];

	if (rp->o->what & DO_IO) {
		printf("\n(c) sequential I/O over a %llu MiB file, GiB/s (median of %u)\n\n",
		       (unsigned long long)(rp->o->size >> 20), rp->o->runs);
		printf("%-12s %8s %10s %10s %7s  %s\n", "op", "bs", "kernel", "thpfs", "ratio",
		       "(median of the runs' paired ratios [min-max])");
		for (unsigned s = 0; s < IO_NBS; s++) {
			for (unsigned op = 0; op < IO_NR; op++) {
				const struct io_cell *kc = k >= 0 ? &rp->io.cell[op][s][k] : NULL;
				const struct io_cell *tc = t >= 0 ? &rp->io.cell[op][s][t] : NULL;

				if (kc && kc->err)
					snprintf(a, sizeof(a), "%s", strerror(-kc->err));
				else
					fmt_num(a, sizeof(a), kc ? kc->gibs : NAN, "%.2f");
				if (tc && tc->err)
					snprintf(b, sizeof(b), "%s", strerror(-tc->err));
				else
					fmt_num(b, sizeof(b), tc ? tc->gibs : NAN, "%.2f");
				fmt_num(c, sizeof(c), ratio(tc ? tc->gibs : NAN, kc ? kc->gibs : NAN),
					"%.2f");
				double pr[3] = { NAN, NAN, NAN };
				if (k >= 0 && t >= 0)
					paired_ratios(rp->io.run_gibs[op][s][t], rp->io.nrun[op][s][t],
						      rp->io.run_gibs[op][s][k], rp->io.nrun[op][s][k], pr);
				printf("%-12s %5zu KiB %10s %10s %7s  %.2f [%.2f-%.2f]\n", io_name[op],
				       io_bs[s] / 1024, a, b, c, pr[0], pr[1], pr[2]);
			}
		}
	}
	if (rp->o->what & DO_FILL) {
		printf("\n(d) fill: open, write a new %llu MiB file with 1 MiB writes, close "
		       "(median of %u)\n\n",
		       (unsigned long long)(rp->o->size >> 20), rp->o->runs);
		for (int i = 0; i < rp->nio; i++) {
			const struct io_cell *c = &rp->io.fill[i];

			if (c->err)
				printf("%-15s error: %s\n", rp->io_be[i]->name, strerror(-c->err));
			else
				printf("%-15s %6.2f GiB/s  (%.0f ms)\n", rp->io_be[i]->name, c->gibs,
				       rp->io.fill_s[i] * 1000);
		}
		double pr[3] = { NAN, NAN, NAN };
		if (k >= 0 && t >= 0) {
			fmt_num(a, sizeof(a), ratio(rp->io.fill[t].gibs, rp->io.fill[k].gibs), "%.2f");
			paired_ratios(rp->io.fill_gibs[t], rp->io.nfill[t], rp->io.fill_gibs[k],
				      rp->io.nfill[k], pr);
		} else {
			snprintf(a, sizeof(a), "-");
		}
		printf("%-15s %s  (paired runs: median %.2f [min %.2f - max %.2f])\n", "ratio", a,
		       pr[0], pr[1], pr[2]);
	}
}

struct target {
	const char *name;
	double value, goal;
	const char *unit; /* "x" (ratio) or "%" */
};

static int collect_targets(const struct report *rp, struct target *tg)
{
	const struct punch_row *k = punch_row_of(rp, BENCH_KERNEL, NULL);
	const struct punch_row *m = punch_row_of(rp, BENCH_THPFS, "native");
	int ki = io_index(rp, BENCH_KERNEL), ti = io_index(rp, BENCH_THPFS), n = 0;

	if (rp->o->what & DO_PUNCH) {
		tg[n++] = (struct target){ "punches/s vs kernel", (k && m && !k->r.err && !m->r.err)
								? ratio(m->rate, k->rate) : NAN, 2, "x" };
		tg[n++] = (struct target){ "memory returned (default)",
					   (m && !m->r.err) ? m->returned * 100 : NAN, 99.5, "%" };
	}
	if (rp->o->what & DO_IO) {
		for (unsigned op = 0; op < IO_NR; op++) {
			static const char *const nm[IO_NR] = { "pwrite-new 4 KiB vs kernel",
							       "pwrite-over 4 KiB vs kernel",
							       "pread 4 KiB vs kernel" };
			double v = NAN;

			if (ki >= 0 && ti >= 0 && !rp->io.cell[op][0][ki].err && !rp->io.cell[op][0][ti].err)
				v = ratio(rp->io.cell[op][0][ti].gibs, rp->io.cell[op][0][ki].gibs);
			tg[n++] = (struct target){ nm[op], v, 2, "x" };
		}
	}
	return n;
}

static void print_targets_text(const struct report *rp)
{
	struct target tg[8];
	int n = collect_targets(rp, tg);

	if (!n)
		return;
	printf("\ntargets (informative; a benchmark does not fail on them)\n");
	for (int i = 0; i < n; i++) {
		if (isnan(tg[i].value))
			printf("  %-30s >= %g%s: not measured\n", tg[i].name, tg[i].goal, tg[i].unit);
		else
			printf("  %-30s >= %g%s: %.2f%s  %s\n", tg[i].name, tg[i].goal, tg[i].unit,
			       tg[i].value, tg[i].unit, tg[i].value >= tg[i].goal ? "met" : "NOT met");
	}
}

static void print_text(const struct report *rp)
{
	const struct bench_opts *o = rp->o;

	printf("thpfs-bench: %llu MiB file, seed %llu, %u run(s), medians\n",
	       (unsigned long long)(o->size >> 20), (unsigned long long)o->seed, o->runs);
	if (rp->kdir)
		printf("kernel: tmpfs huge=always, private mount at %s\n", rp->kdir);
	else
		printf("kernel: not measured (%s); thpfs only\n", rp->kernel_why);
	printf("thpfs:  thpfs_mount(\"huge=always\") (default split=native); (a)/(b) also split=migrate, "
	       "split=inplace; (c)/(d) with prealloc=%u\n", o->prealloc);
	if (o->what & DO_PUNCH)
		print_punch_text(rp);
	if (o->what & (DO_IO | DO_FILL))
		print_io_text(rp);
	print_targets_text(rp);
}

/* JSON numbers: NaN becomes null. */
static void json_num(const char *key, double v, const char *sep)
{
	if (isnan(v))
		printf("\"%s\": null%s", key, sep);
	else
		printf("\"%s\": %.6g%s", key, v, sep);
}

static void json_runs(const char *key, const double *v, int n, double scale)
{
	printf("\"%s\": [", key);
	for (int i = 0; i < n; i++) {
		if (isnan(v[i]))
			printf("null%s", i + 1 < n ? ", " : "");
		else
			printf("%.6g%s", v[i] * scale, i + 1 < n ? ", " : "");
	}
	printf("], ");
}

static void print_json(const struct report *rp)
{
	const struct bench_opts *o = rp->o;
	const struct punch_row *kr = punch_row_of(rp, BENCH_KERNEL, NULL);
	int ki = io_index(rp, BENCH_KERNEL), ti = io_index(rp, BENCH_THPFS);
	struct target tg[8];
	int ntg = collect_targets(rp, tg);

	printf("{\"size_mib\": %llu, \"seed\": %llu, \"runs\": %u, \"kernel\": %s,\n",
	       (unsigned long long)(o->size >> 20), (unsigned long long)o->seed, o->runs,
	       rp->kdir ? "\"tmpfs huge=always\"" : "null");
	printf(" \"punch\": [");
	for (int i = 0; i < rp->npunch; i++) {
		const struct punch_row *row = &rp->punch[i];
		const struct punch_result *r = &row->r;

		printf("%s\n  {\"backend\": \"%s\", ", i ? "," : "", row->b->name);
		if (r->err) {
			printf("\"error\": \"%s: %s\"}", r->what, strerror(-r->err));
			continue;
		}
		printf("\"punches\": %llu, ", (unsigned long long)r->punches);
		json_num("punches_per_s", row->rate, ", ");
		json_num("ratio", kr && !kr->r.err ? ratio(row->rate, kr->rate) : NAN, ", ");
		json_num("returned_pct", row->returned * 100, ", ");
		json_num("rss_drop_pct", row->rss_drop * 100, ", ");
		json_runs("runs_punches_per_s", r->rate, r->runs, 1);
		json_runs("runs_returned_pct", r->returned, r->runs, 100);
		json_runs("runs_thp_at_fill_pct", r->thp_fill, r->runs, 100);
		printf("\"cgroup_bytes\": [%lld, %lld], ", (long long)r->cg_fill, (long long)r->cg_after);
		printf("\"rss_anon_kb\": [%lld, %lld], ", (long long)r->rss_fill, (long long)r->rss_after);
		printf("\"anon_huge_kb\": [%lld, %lld], ", (long long)r->ahp_fill, (long long)r->ahp_after);
		printf("\"shmem_huge_kb\": [%lld, %lld], ", (long long)r->shp_fill, (long long)r->shp_after);
		printf("\"vm_thp_split_page\": %lld, \"vm_thp_deferred_split_page\": %lld",
		       (long long)r->vm_split, (long long)r->vm_deferred);
		if (r->have_stats)
			printf(", \"lib\": {\"shmem_bytes\": [%llu, %llu], \"shmem_huge_bytes\": [%llu, %llu], "
			       "\"thp_split_page\": %llu, \"thp_split_migrate\": %llu, "
			       "\"thp_split_inplace\": %llu, \"bytes_released\": %llu, "
			       "\"deferred_split_queue\": %llu}",
			       (unsigned long long)r->st_fill.shmem_bytes,
			       (unsigned long long)r->st_after.shmem_bytes,
			       (unsigned long long)r->st_fill.shmem_huge_bytes,
			       (unsigned long long)r->st_after.shmem_huge_bytes,
			       (unsigned long long)(r->st_after.thp_split_page - r->st_fill.thp_split_page),
			       (unsigned long long)(r->st_after.thp_split_migrate - r->st_fill.thp_split_migrate),
			       (unsigned long long)(r->st_after.thp_split_inplace - r->st_fill.thp_split_inplace),
			       (unsigned long long)(r->st_after.bytes_released - r->st_fill.bytes_released),
			       (unsigned long long)r->st_after.deferred_split_queue);
		printf("}");
	}
	printf("],\n \"io\": [");
	for (unsigned s = 0, first = 1; (o->what & DO_IO) && s < IO_NBS; s++) {
		for (unsigned op = 0; op < IO_NR; op++, first = 0) {
			double kg = ki >= 0 && !rp->io.cell[op][s][ki].err ? rp->io.cell[op][s][ki].gibs : NAN;
			double tgb = ti >= 0 && !rp->io.cell[op][s][ti].err ? rp->io.cell[op][s][ti].gibs : NAN;

			printf("%s\n  {\"op\": \"%s\", \"bs\": %zu, ", first ? "" : ",", io_name[op], io_bs[s]);
			json_num("kernel_gibs", kg, ", ");
			json_num("thpfs_gibs", tgb, ", ");
			json_num("ratio", ratio(tgb, kg), "}");
		}
	}
	printf("],\n \"fill\": ");
	if (o->what & DO_FILL) {
		double kg = ki >= 0 && !rp->io.fill[ki].err ? rp->io.fill[ki].gibs : NAN;
		double tgb = ti >= 0 && !rp->io.fill[ti].err ? rp->io.fill[ti].gibs : NAN;

		printf("{");
		json_num("kernel_gibs", kg, ", ");
		json_num("thpfs_gibs", tgb, ", ");
		json_num("ratio", ratio(tgb, kg), "}");
	} else {
		printf("null");
	}
	printf(",\n \"targets\": [");
	for (int i = 0; i < ntg; i++) {
		printf("%s\n  {\"name\": \"%s\", \"goal\": %g, \"unit\": \"%s\", ", i ? "," : "",
		       tg[i].name, tg[i].goal, tg[i].unit);
		json_num("value", tg[i].value, ", ");
		printf("\"met\": %s}", isnan(tg[i].value) ? "null" : tg[i].value >= tg[i].goal ? "true" : "false");
	}
	printf("]}\n");
}

/* ---- Main ---- */

static void usage(FILE *fp, const char *argv0)
{
	fprintf(fp,
		"usage: %s [options]\n"
		"  --size MiB     file size, a multiple of 2 (default 1024)\n"
		"  --seed N       seed of the random punch order (default 42)\n"
		"  --runs N       runs per measurement, median printed (1..%d, default 3)\n"
		"  --only LIST    comma-separated: punch, io, fill (default all)\n"
		"  --json         print JSON instead of tables\n"
		"  --prealloc N   prealloc= of the thpfs mount of io and fill (default 0)\n"
		"Compares libthpfs with the kernel's tmpfs huge=always (needs root).\n",
		argv0, BENCH_MAX_RUNS);
}

static int parse_only(const char *s, unsigned *what)
{
	char tmp[128], *save = NULL;

	if (strlen(s) >= sizeof(tmp))
		return -EINVAL;
	strcpy(tmp, s);
	*what = 0;
	for (char *w = strtok_r(tmp, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (!strcmp(w, "punch"))
			*what |= DO_PUNCH;
		else if (!strcmp(w, "io"))
			*what |= DO_IO;
		else if (!strcmp(w, "fill"))
			*what |= DO_FILL;
		else
			return -EINVAL;
	}
	return *what ? 0 : -EINVAL;
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	static const struct option lo[] = {
		{ "size", required_argument, NULL, 's' }, { "seed", required_argument, NULL, 'S' },
		{ "runs", required_argument, NULL, 'r' }, { "only", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },       { "help", no_argument, NULL, 'h' },
		{ "prealloc", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	*o = (struct bench_opts){ 1024ULL << 20, 42, 3, DO_PUNCH | DO_IO | DO_FILL, false, 0 };
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			/* the punch order is a uint32_t permutation of pages */
			if (bench_parse_u64(optarg, 2, 1 << 20, &v) || (v & 1)) {
				fprintf(stderr, "%s: --size: want an even number of MiB, 2..1048576: '%s'\n",
					argv[0], optarg);
				return 2;
			}
			o->size = v << 20;
			break;
		case 'S':
			if (bench_parse_u64(optarg, 0, UINT64_MAX, &o->seed)) {
				fprintf(stderr, "%s: --seed: not a number: '%s'\n", argv[0], optarg);
				return 2;
			}
			break;
		case 'r':
			if (bench_parse_u64(optarg, 1, BENCH_MAX_RUNS, &v)) {
				fprintf(stderr, "%s: --runs: want 1..%d: '%s'\n", argv[0], BENCH_MAX_RUNS, optarg);
				return 2;
			}
			o->runs = (unsigned)v;
			break;
		case 'o':
			if (parse_only(optarg, &o->what)) {
				fprintf(stderr, "%s: --only: want punch, io, fill (comma-separated): '%s'\n",
					argv[0], optarg);
				return 2;
			}
			break;
		case 'j':
			o->json = true;
			break;
		case 'p':
			if (bench_parse_u64(optarg, 0, 64, &v)) {
				fprintf(stderr, "%s: --prealloc: want 0..64: '%s'\n", argv[0], optarg);
				return 2;
			}
			o->prealloc = (unsigned)v;
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

static bool report_has_error(const struct report *rp)
{
	for (int i = 0; i < rp->npunch; i++)
		if (rp->punch[i].r.err)
			return true;
	for (int k = 0; k < rp->nio; k++) {
		if (rp->io.fill[k].err)
			return true;
		for (unsigned op = 0; op < IO_NR; op++)
			for (unsigned s = 0; s < IO_NBS; s++)
				if (rp->io.cell[op][s][k].err)
					return true;
	}
	return false;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct report rp;
	char kdir[256], msg[160];
	struct bench_backend kernel = { "kernel", BENCH_KERNEL, NULL, NULL, NULL };
	struct bench_backend migrate = { "thpfs-migrate", BENCH_THPFS, "huge=always,split=migrate", NULL, NULL };
	struct bench_backend inplace = { "thpfs-inplace", BENCH_THPFS, "huge=always,split=inplace", NULL, NULL };
	struct bench_backend native = { "thpfs-native", BENCH_THPFS, "huge=always,split=native", NULL, NULL };
	char deflt_opts[64];
	struct bench_backend deflt = { "thpfs", BENCH_THPFS, deflt_opts, NULL, NULL };
	uint32_t *order = NULL;
	int err, ret;

	ret = parse_args(argc, argv, &o);
	if (ret)
		return ret;
	snprintf(deflt_opts, sizeof(deflt_opts), "huge=always,prealloc=%u", o.prealloc);
	memset(&rp, 0, sizeof(rp));
	rp.o = &o;
	signal(SIGPIPE, SIG_IGN);

	err = bench_tmpfs_mount("huge=always,size=90%,mode=0700", kdir, sizeof(kdir));
	if (!err) {
		rp.kdir = kdir;
		kernel.dir = kdir;
	} else {
		rp.kernel_why = err == -EPERM ? "not root" : strerror(-err);
		fprintf(stderr, "thpfs-bench: kernel tmpfs not mounted (%s): running thpfs only\n",
			rp.kernel_why);
	}

	if (o.what & DO_PUNCH) {
		order = bench_permutation((uint32_t)(o.size / BENCH_PAGE), o.seed);
		if (!order) {
			fprintf(stderr, "thpfs-bench: out of memory\n");
			bench_tmpfs_umount();
			return 1;
		}
		if (rp.kdir)
			rp.punch[rp.npunch++].b = &kernel;
		rp.punch[rp.npunch++].b = &native;
		rp.punch[rp.npunch++].b = &migrate;
		rp.punch[rp.npunch++].b = &inplace;
		for (int i = 0; i < rp.npunch; i++) {
			fprintf(stderr, "punch: %s...\n", rp.punch[i].b->name);
			punch_measure(&rp.punch[i], &o, order);
		}
		free(order);
	}

	if (o.what & (DO_IO | DO_FILL)) {
		if (rp.kdir)
			rp.io_be[rp.nio++] = &kernel;
		rp.io_be[rp.nio++] = &deflt;
		fprintf(stderr, "io/fill...\n");
		err = bench_backend_start(&deflt, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "thpfs-bench: thpfs_mount(%s): %s %s\n", deflt.options,
				strerror(-err), msg);
			for (int k = 0; k < rp.nio; k++) {
				rp.io.fill[k] = (struct io_cell){ NAN, 0 };
				for (unsigned op = 0; op < IO_NR; op++)
					for (unsigned s = 0; s < IO_NBS; s++)
						rp.io.cell[op][s][k] = (struct io_cell){ NAN, 0 };
			}
			int t = io_index(&rp, BENCH_THPFS);

			rp.io.fill[t].err = err;
			for (unsigned op = 0; op < IO_NR; op++)
				for (unsigned s = 0; s < IO_NBS; s++)
					rp.io.cell[op][s][t].err = err;
			/* still measure the kernel alone */
			if (rp.kdir) {
				struct io_results kr;

				io_measure(rp.io_be, 1, &o, &kr);
				for (unsigned op = 0; op < IO_NR; op++)
					for (unsigned s = 0; s < IO_NBS; s++)
						rp.io.cell[op][s][0] = kr.cell[op][s][0];
				rp.io.fill[0] = kr.fill[0];
				rp.io.fill_s[0] = kr.fill_s[0];
			}
		} else {
			io_measure(rp.io_be, rp.nio, &o, &rp.io);
			bench_backend_stop(&deflt);
		}
	}

	bench_tmpfs_umount();
	if (o.json)
		print_json(&rp);
	else
		print_text(&rp);
	return report_has_error(&rp) ? 1 : 0;
}
