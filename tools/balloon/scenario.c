/*
 * scenario.c - one run of the model (one backend, one policy) in a child
 * process:
 *
 *   the child makes and enters its own memory cgroup, creates guest RAM on
 *   the backend and writes every page with its stamp; the guest workload
 *   fragments free memory; then: speed before, inflate, free page
 *   reporting, check every page, the host asks for memory, speed while
 *   inflated, deflate with the guest writing its pages again, explicit
 *   collapse, check every page, speed after.  Memory is the cgroup's usage
 *   (or the process's RSS when no cgroup can be made), read after each step
 *   and sampled over time for the plot.  The result goes back to the parent
 *   through a pipe.
 *
 * Memory is charged to the cgroup of the process that faults it in, which is
 * why every run is its own process: nothing another run allocated, and
 * nothing the parent holds, is counted.
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"

struct run_ctx {
	const struct bl_config *cfg;
	struct bl_result *r;
	struct bl_backend be;
	struct bl_buddy g;
	struct bl_workload w;
	struct bl_balloon bl;
	struct bl_host h;
	struct thpfs_cg cg;
	bool have_cg;
	uint64_t npages;
	double t0;
	char *buf;		/* BL_HUGE_SIZE bytes of I/O buffer */
	uint32_t *rd_pfns;	/* pages the speed test reads */
	char **rd_ptrs;
	uint64_t msgs, msgs_total, sample_every;
	int idx, total;
	bool tty;
	double last_progress;
};

/* ---- Measuring ---- */

static int64_t mem_now(struct run_ctx *c)
{
	if (c->have_cg)
		return thpfs_cg_usage(&c->cg);
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long long size, res = 0;

	if (!f)
		return -errno;
	if (fscanf(f, "%llu %llu", &size, &res) != 2)
		res = 0;
	fclose(f);
	return (int64_t)(res * (unsigned long long)sysconf(_SC_PAGESIZE));
}

static double coverage(struct run_ctx *c)
{
	int64_t huge = c->be.ops->huge_bytes(&c->be);
	uint64_t whole = (c->be.size + BL_HUGE_SIZE - 1) & ~(uint64_t)(BL_HUGE_SIZE - 1);

	return huge < 0 ? 0.0 : (double)huge / (double)whole;
}

static void sample(struct run_ctx *c)
{
	struct bl_result *r = c->r;

	if (r->nsamples >= BL_MAX_SAMPLES)
		return;
	struct bl_sample *s = &r->samples[r->nsamples++];

	s->t = (float)(bl_now() - c->t0);
	s->mem_mib = (float)((double)mem_now(c) / BL_MIB);
	s->cov_pct = (float)(100.0 * coverage(c));
}

static void progress(struct run_ctx *c, const char *phase, uint64_t done, uint64_t total)
{
	double now = bl_now();

	if (!c->tty || c->cfg->quiet || (now - c->last_progress < 0.1 && done < total))
		return;
	c->last_progress = now;
	fprintf(stderr, "\rthpfs-balloon [%d/%d] %s %s: %-8s %3d%%   ", c->idx, c->total,
		bl_backend_name(c->r->backend), bl_policy_name(c->r->policy), phase,
		total ? (int)(100 * done / total) : 100);
}

/* ---- Guest RAM contents ---- */

/* Writes pages [pfn, pfn + n) with stamps of generation gen, at most 2 MiB
 * per backend write. */
static int write_pages(struct run_ctx *c, uint64_t pfn, uint64_t n, uint64_t gen)
{
	while (n) {
		uint64_t k = n < BL_PAGES_PER_HUGE ? n : BL_PAGES_PER_HUGE;

		for (uint64_t i = 0; i < k; i++)
			bl_stamp(c->buf + i * BL_PAGE_SIZE, pfn + i, gen);
		int err = c->be.ops->write(&c->be, pfn << BL_PAGE_SHIFT, c->buf, k << BL_PAGE_SHIFT);

		if (err)
			return err;
		pfn += k;
		n -= k;
	}
	return 0;
}

static int fill(struct run_ctx *c)
{
	uint64_t nhuge = (c->npages + BL_PAGES_PER_HUGE - 1) / BL_PAGES_PER_HUGE;
	uint64_t every = nhuge / 16 ? nhuge / 16 : 1;

	for (uint64_t hp = 0; hp < nhuge; hp++) {
		uint64_t pfn = hp * BL_PAGES_PER_HUGE;
		uint64_t n = c->npages - pfn < BL_PAGES_PER_HUGE ? c->npages - pfn : BL_PAGES_PER_HUGE;
		int err = write_pages(c, pfn, n, 0);

		if (err)
			return err;
		if ((hp + 1) % every == 0) {
			sample(c);
			progress(c, "fill", hp + 1, nhuge);
		}
	}
	return 0;
}

/*
 * Reads every page and compares it with what it must hold.  after_deflate:
 * pages the guest gave away hold generation 1, the others generation 0.
 * Before deflate: a page the host zeroed or discarded reads zero, every
 * other page (given away or not) still holds generation 0.
 */
static int check_pages(struct run_ctx *c, bool after_deflate)
{
	struct bl_result *r = c->r;

	for (uint64_t pfn0 = 0; pfn0 < c->npages; pfn0 += BL_PAGES_PER_HUGE) {
		uint64_t n = c->npages - pfn0 < BL_PAGES_PER_HUGE ? c->npages - pfn0 : BL_PAGES_PER_HUGE;
		int err = c->be.ops->read(&c->be, pfn0 << BL_PAGE_SHIFT, c->buf, n << BL_PAGE_SHIFT);

		if (err)
			return err;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t pfn = pfn0 + i;
			const char *p = c->buf + i * BL_PAGE_SIZE;
			bool given = c->bl.given[pfn] != 0;
			bool ok;
			uint64_t *bad;

			if (after_deflate) {
				ok = bl_stamp_check(p, pfn, given ? 1 : 0);
				bad = given ? &r->bad_rewrite : &r->bad_kept;
			} else if (c->h.state[pfn] != BL_H_UNTOUCHED) {
				ok = bl_page_is_zero(p);
				bad = &r->bad_zero;
			} else {
				ok = bl_stamp_check(p, pfn, 0);
				bad = &r->bad_kept;
			}
			r->pages_checked++;
			if (ok)
				continue;
			if (r->bad_kept + r->bad_zero + r->bad_rewrite < 5)
				fprintf(stderr, "thpfs-balloon: %s %s: page %llu (given %d, host %d) "
					"holds %llu/%llu: %s\n", bl_backend_name(r->backend),
					bl_policy_name(r->policy), (unsigned long long)pfn,
					c->bl.given[pfn], c->h.state[pfn],
					(unsigned long long)((const uint64_t *)p)[0],
					(unsigned long long)((const uint64_t *)p)[1],
					after_deflate ? "wrong stamp after deflate" :
					"wrong contents after inflate");
			(*bad)++;
		}
	}
	return 0;
}

/* ---- Guest memory speed ---- */

/*
 * ns per random 64-byte read over the pages in c->rd_pfns[0..n): pointers
 * from the backend's map_pages, one untimed read of every page first (so
 * page faults are not timed), then a dependent chain of reads: each read's
 * value picks the next page and line, so the loop measures latency,
 * including TLB misses.  The reads run in READ_BATCHES batches and the
 * fastest batch counts (other load on the machine only slows batches down).
 */
#define READ_BATCHES 4
static double measure_reads(struct run_ctx *c, uint64_t n, int *errp)
{
	uint64_t x = c->cfg->seed | 1, sum = 0, per = c->cfg->reads / READ_BATCHES;
	double best = 0.0;
	int err;

	*errp = 0;
	if (!n || !per)
		return 0.0;
	err = c->be.ops->map_pages(&c->be, c->rd_pfns, n, c->rd_ptrs);
	if (err) {
		c->be.ops->unmap_pages(&c->be);
		*errp = err;
		return 0.0;
	}
	for (uint64_t i = 0; i < n; i++)
		sum += *(volatile uint64_t *)c->rd_ptrs[i];
	for (int b = 0; b < READ_BATCHES; b++) {
		double t = bl_now();

		for (uint64_t i = 0; i < per; i++) {
			uint64_t line = (x >> 58) & 63;
			const char *p = c->rd_ptrs[(x >> 16) % n] + line * 64;
			uint64_t v = *(volatile const uint64_t *)p;

			sum += v;
			x = (x ^ v ^ (v >> 29)) * 0x5851f42d4c957f2dULL + 0x14057b7ef767814fULL;
		}
		t = (bl_now() - t) * 1e9 / (double)per;
		if (b == 0 || t < best)
			best = t;
	}
	c->be.ops->unmap_pages(&c->be);
	if (sum == 42) /* keep sum alive */
		fputc('\0', stderr);
	return best;
}

/* Pages the guest reads: all (want_given = true) or those it kept. */
static uint64_t read_set(struct run_ctx *c, bool all)
{
	uint64_t n = 0;

	for (uint64_t pfn = 0; pfn < c->npages; pfn++)
		if (all || !c->bl.given[pfn])
			c->rd_pfns[n++] = (uint32_t)pfn;
	return n;
}

/* ---- Balloon callbacks ---- */

static int on_inflate_msg(void *ctx, const uint32_t *pfns, unsigned n)
{
	struct run_ctx *c = ctx;

	(void)pfns;
	(void)n;
	c->msgs++;
	if (c->msgs % c->sample_every == 0)
		sample(c);
	progress(c, "inflate", c->msgs, c->msgs_total);
	return 0;
}

/* The guest has these frames back and writes them again (generation 1). */
static int on_deflate_msg(void *ctx, const uint32_t *pfns, unsigned n)
{
	struct run_ctx *c = ctx;

	for (unsigned i = 0; i < n; i++) {
		bl_stamp(c->buf, pfns[i], 1);
		int err = c->be.ops->write(&c->be, (uint64_t)pfns[i] << BL_PAGE_SHIFT, c->buf,
					   BL_PAGE_SIZE);

		if (err)
			return err;
	}
	c->msgs++;
	if (c->msgs % c->sample_every == 0)
		sample(c);
	progress(c, "deflate", c->msgs, c->msgs_total);
	return 0;
}

/* The guest uses its reported free blocks again: writes them (gen 1). */
static int rewrite_reported(struct run_ctx *c)
{
	for (uint64_t pfn = 0; pfn < c->npages;) {
		uint64_t end = pfn;

		while (end < c->npages && c->bl.given[end] == BL_GIVEN_REPORT)
			end++;
		if (end == pfn) {
			pfn++;
			continue;
		}
		int err = write_pages(c, pfn, end - pfn, 1);

		if (err)
			return err;
		pfn = end;
	}
	return 0;
}

/* The host asks for bytes back; asked in about 60 steps so that the plot
 * shows the lazy queue draining. */
static int host_asks(struct run_ctx *c, uint64_t bytes)
{
	uint64_t queued = (c->h.q_tail - c->h.q_head) << BL_PAGE_SHIFT;
	uint64_t step = queued / 60 > BL_PAGE_SIZE ? queued / 60 : BL_PAGE_SIZE, done = 0;

	if (c->h.policy != BL_LAZY)
		return (int)bl_host_ask(&c->h, bytes);
	while (done < bytes) {
		uint64_t want = bytes - done < step ? bytes - done : step;
		int64_t got = bl_host_ask(&c->h, want);

		if (got < 0)
			return (int)got;
		done += (uint64_t)got;
		sample(c);
		progress(c, "ask", done, queued < bytes ? queued : bytes);
		if ((uint64_t)got < want)
			break; /* the queue is empty */
	}
	return 0;
}

/* ---- The run ---- */

/* Rewrites one byte of every page of [p, p + len) with its own value, so
 * that the page is charged now. */
static void touch_bytes(void *p, size_t len)
{
	volatile char *v = p;

	for (size_t off = 0; off < len; off += BL_PAGE_SIZE)
		v[off] = v[off];
}

/* Charges the model's own arrays before the baseline, so that they never
 * show up as memory the balloon moved (a memset after malloc would not do:
 * the compiler may turn the pair into calloc, which touches nothing). */
static void touch_model(struct run_ctx *c)
{
	uint64_t n = c->npages, nhuge = (n + BL_PAGES_PER_HUGE - 1) / BL_PAGES_PER_HUGE;

	touch_bytes(c->buf, BL_HUGE_SIZE);
	touch_bytes(c->rd_pfns, sizeof(uint32_t) * n);
	touch_bytes(c->rd_ptrs, sizeof(char *) * n);
	touch_bytes(c->g.next, sizeof(uint32_t) * n);
	touch_bytes(c->g.prev, sizeof(uint32_t) * n);
	touch_bytes(c->bl.pages, sizeof(uint32_t) * n);
	touch_bytes(c->bl.given, n);
	touch_bytes(c->h.state, n);
	if (c->h.hb_bits) {
		touch_bytes(c->h.hb_bits, sizeof(*c->h.hb_bits) * nhuge);
		touch_bytes(c->h.hb_count, sizeof(*c->h.hb_count) * nhuge);
	}
	if (c->h.queue)
		touch_bytes(c->h.queue, sizeof(uint32_t) * n * 2);
}

static int setup(struct run_ctx *c, const char *dir)
{
	const struct bl_config *cfg = c->cfg;
	struct bl_result *r = c->r;
	int err;

	err = thpfs_cg_create(&c->cg, "thpfs-balloon");
	if (!err)
		err = thpfs_cg_enter(&c->cg);
	if (err) {
		if (c->cg.dir[0])
			thpfs_cg_destroy(&c->cg);
		c->have_cg = false;
		snprintf(r->mem_source, sizeof(r->mem_source), "rss");
	} else {
		c->have_cg = true;
		snprintf(r->mem_source, sizeof(r->mem_source), "cgroup");
	}
	c->be.ops = r->backend == BL_THPFS ? &bl_thpfs_ops : &bl_kernel_ops;
	snprintf(c->be.dir, sizeof(c->be.dir), "%s", dir ? dir : "");
	err = c->be.ops->open(&c->be, cfg->size, cfg->thpfs_opts, r->msg, sizeof(r->msg));
	if (err) {
		r->status = (err == -EPERM || err == -ENOSYS) ? BL_RUN_SKIPPED : BL_RUN_FAILED;
		c->be.ops = NULL;
		return err;
	}
	c->npages = cfg->size >> BL_PAGE_SHIFT;
	c->buf = aligned_alloc(BL_HUGE_SIZE, BL_HUGE_SIZE);
	c->rd_pfns = malloc(sizeof(uint32_t) * c->npages);
	c->rd_ptrs = malloc(sizeof(char *) * c->npages);
	if (!c->buf || !c->rd_pfns || !c->rd_ptrs)
		return -ENOMEM;
	err = bl_buddy_init(&c->g, (uint32_t)c->npages);
	if (!err)
		err = bl_balloon_init(&c->bl, c->npages);
	if (!err)
		err = bl_host_init(&c->h, r->policy, &c->be, c->npages);
	if (!err)
		touch_model(c);
	return err;
}

static void teardown(struct run_ctx *c)
{
	if (c->be.ops)
		c->be.ops->close(&c->be);
	bl_host_destroy(&c->h);
	bl_balloon_destroy(&c->bl);
	bl_workload_destroy(&c->w);
	bl_buddy_destroy(&c->g);
	free(c->buf);
	free(c->rd_pfns);
	free(c->rd_ptrs);
	if (c->have_cg)
		thpfs_cg_destroy(&c->cg);
}

#define TRY(e)                   \
	do {                     \
		err = (e);       \
		if (err < 0)     \
			goto out; \
	} while (0)

static int run_steps(struct run_ctx *c)
{
	const struct bl_config *cfg = c->cfg;
	struct bl_result *r = c->r;
	const struct bl_backend_ops *ops = c->be.ops;
	const char *step = "fill";
	double t;
	int err = 0;

	c->t0 = bl_now();
	sample(c);
	TRY(fill(c));
	r->fill_s = bl_now() - c->t0;
	step = "workload";
	TRY(bl_workload_run(&c->w, &c->g, cfg->free_frac, cfg->frag, cfg->seed));
	r->free_bytes = c->g.free_pages << BL_PAGE_SHIFT;
	r->free_huge_bytes = bl_buddy_free_in_order(&c->g, BL_HUGE_ORDER) << BL_PAGE_SHIFT;
	r->mem_fill = mem_now(c);
	r->cov_fill = coverage(c);
	ops->counters(&c->be, &r->c_fill);
	sample(c);

	step = "reads before";
	r->read_ns_before = measure_reads(c, read_set(c, true), &err);
	TRY(err);

	step = "inflate";
	uint64_t want = cfg->target >> BL_PAGE_SHIFT;

	c->msgs = 0;
	c->msgs_total = (want + BL_MSG_MAX - 1) / BL_MSG_MAX;
	c->sample_every = c->msgs_total / 60 ? c->msgs_total / 60 : 1;
	t = bl_now();
	int64_t got = bl_balloon_inflate(&c->bl, &c->g, &c->h, want, on_inflate_msg, c);

	TRY(got < 0 ? (int)got : 0);
	r->inflate_s = bl_now() - t;
	r->host_s = c->h.busy_s;
	r->inflate_ops = c->h.punches + c->h.zeroes;
	r->huge_discards = c->h.huge_discards;
	r->ballooned = (uint64_t)got << BL_PAGE_SHIFT;
	r->mem_inflate = mem_now(c);
	sample(c);

	if (cfg->report) {
		step = "report";
		t = bl_now();
		int64_t rep = bl_balloon_report(&c->bl, &c->g, &c->h);

		TRY(rep < 0 ? (int)rep : 0);
		r->report_s = bl_now() - t;
		r->reported = (uint64_t)rep << BL_PAGE_SHIFT;
		sample(c);
	}
	r->mem_report = mem_now(c);
	r->cov_inflate = coverage(c);
	step = "check after inflate";
	TRY(check_pages(c, false));

	step = "ask";
	t = bl_now();
	TRY(host_asks(c, cfg->ask));
	r->ask_s = bl_now() - t;
	r->mem_ask = mem_now(c);
	r->cov_ask = coverage(c);
	ops->counters(&c->be, &r->c_ask);
	sample(c);

	step = "reads inflated";
	r->read_ns_inflated = measure_reads(c, read_set(c, false), &err);
	TRY(err);

	step = "deflate";
	c->msgs = 0;
	c->msgs_total = (c->bl.n + BL_MSG_MAX - 1) / BL_MSG_MAX;
	c->sample_every = c->msgs_total / 60 ? c->msgs_total / 60 : 1;
	t = bl_now();
	TRY(bl_balloon_deflate(&c->bl, &c->g, &c->h, on_deflate_msg, c));
	TRY(rewrite_reported(c));
	r->deflate_s = bl_now() - t;
	r->mem_deflate = mem_now(c);
	r->cov_deflate = coverage(c);
	ops->counters(&c->be, &r->c_deflate);
	sample(c);

	r->collapse_rc = 0;
	if (cfg->collapse) {
		step = "collapse";
		progress(c, "collapse", 0, 1);
		t = bl_now();
		r->collapse_rc = ops->collapse(&c->be);
		r->collapse_s = bl_now() - t;
	}
	r->mem_collapse = mem_now(c);
	r->cov_collapse = coverage(c);
	ops->counters(&c->be, &r->c_collapse);
	sample(c);

	step = "check after deflate";
	progress(c, "check", 0, 1);
	TRY(check_pages(c, true));
	step = "reads after";
	r->read_ns_after = measure_reads(c, read_set(c, true), &err);
	TRY(err);

	/* what the host received */
	r->inflate_msgs = c->bl.inflate_msgs;
	r->deflate_msgs = c->bl.deflate_msgs;
	r->report_msgs = c->h.report_msgs;
	r->max_msg_pfns = c->h.max_msg_pfns;
	r->max_report_blocks = c->h.max_report_blocks;
	r->punches = c->h.punches;
	r->zeroes = c->h.zeroes;
	r->total_s = bl_now() - c->t0;
	sample(c);
	return 0;
out:
	snprintf(r->msg, sizeof(r->msg), "%s: %s", step, strerror(-err));
	return err;
}

/* The child's whole life: returns the exit status. */
static int run_child(const struct bl_config *cfg, struct bl_result *r, const char *dir, int idx,
		     int total)
{
	struct run_ctx c;
	int err;

	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	c.r = r;
	c.idx = idx;
	c.total = total;
	c.tty = isatty(STDERR_FILENO);
	err = setup(&c, dir);
	if (!err)
		err = run_steps(&c);
	else if (!r->msg[0])
		snprintf(r->msg, sizeof(r->msg), "setup: %s", strerror(-err));
	if (err && r->status == BL_RUN_OK)
		r->status = BL_RUN_FAILED;
	teardown(&c);
	if (c.tty && !cfg->quiet)
		fprintf(stderr, "\r%-70s\r", "");
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static ssize_t read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int bl_run(const struct bl_config *cfg, int backend, int policy, int idx, int total,
	   struct bl_result *r)
{
	char dir[64] = "";
	int pfd[2], status, err = 0;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	r->backend = backend;
	r->policy = policy;
	r->size = cfg->size;
	if (backend == BL_KERNEL) {
		const char *tmp = getenv("TMPDIR");

		snprintf(dir, sizeof(dir), "%s/thpfs-balloon.XXXXXX",
			 tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
		if (!mkdtemp(dir))
			return -errno;
	}
	if (pipe(pfd)) {
		err = -errno;
		goto out;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(pfd[0]);
		close(pfd[1]);
		goto out;
	}
	if (pid == 0) {
		static struct bl_result cr;

		close(pfd[0]);
		cr = *r;
		run_child(cfg, &cr, dir, idx, total);
		_exit(write_all(pfd[1], &cr, sizeof(cr)) ? 3 : 0);
	}
	close(pfd[1]);
	ssize_t n = read_all(pfd[0], r, sizeof(*r));

	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(*r)) {
		memset(r, 0, sizeof(*r));
		r->backend = backend;
		r->policy = policy;
		r->size = cfg->size;
		r->status = BL_RUN_FAILED;
		if (WIFSIGNALED(status))
			snprintf(r->msg, sizeof(r->msg), "the run died of signal %d (%s)",
				 WTERMSIG(status), strsignal(WTERMSIG(status)));
		else
			snprintf(r->msg, sizeof(r->msg), "the run exited with status %d before "
				 "reporting", WEXITSTATUS(status));
	}
out:
	if (dir[0])
		rmdir(dir);
	return err;
}
