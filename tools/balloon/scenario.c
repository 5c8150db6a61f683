/*
 * scenario.c - one run of the model (one backend, one policy) in a child
 * process:
 *
 *   the child makes and enters its own memory cgroup, creates guest RAM on
 *   the backend and writes every page with its stamp; the guest workload
 *   fragments free memory; then: speed before, inflate, the free page
 *   reporting worker's pass, check every page, the host asks for memory,
 *   speed while inflated, deflate, the worker's next pass, the guest writes
 *   every page it gave away again, explicit collapse, check every page,
 *   speed after.  With --trace the recorded requests replace the workload
 *   and the driver's inflate.  Memory is the cgroup's usage (or the
 *   process's RSS when no cgroup can be made), read after each step and
 *   sampled over time for the plot; the time samples take (they ask the
 *   kernel for coverage) is kept out of every timed phase, on both backends.
 *   The result goes back to the parent through a pipe.
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
#include <time.h>
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
	uint32_t *perm;		/* the chase's order */
	double sample_s;	/* time spent sampling, kept out of timings */
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

/* Share of guest RAM the kernel maps with huge pages, or -1 if the kernel
 * cannot say (then r->cov_ok turns false). */
static double coverage(struct run_ctx *c)
{
	int64_t huge = c->be.ops->huge_bytes(&c->be);
	uint64_t whole = (c->be.size + BL_HUGE_SIZE - 1) & ~(uint64_t)(BL_HUGE_SIZE - 1);

	if (huge < 0) {
		c->r->cov_ok = false;
		return -1.0;
	}
	return (double)huge / (double)whole;
}

/* One point of the plot.  Its cost is added to c->sample_s, which every
 * timed phase subtracts. */
static void sample(struct run_ctx *c)
{
	struct bl_result *r = c->r;
	double t0 = bl_now();

	if (r->nsamples >= BL_MAX_SAMPLES)
		return;
	struct bl_sample *s = &r->samples[r->nsamples++];

	s->t = (float)(t0 - c->t0);
	s->mem_mib = (float)((double)mem_now(c) / BL_MIB);
	s->cov_pct = (float)(100.0 * coverage(c));
	c->sample_s += bl_now() - t0;
}

/* Wall time of a phase that started at t with samples taken at sample_s0,
 * less the time those samples took. */
static double phase_time(struct run_ctx *c, double t, double sample_s0)
{
	double d = bl_now() - t - (c->sample_s - sample_s0);

	return d > 0 ? d : 0;
}

static void progress(struct run_ctx *c, const char *phase, uint64_t done, uint64_t total)
{
	double now = bl_now();

	if (!c->tty || c->cfg->quiet || (now - c->last_progress < 0.1 && done < total))
		return;
	c->last_progress = now;
	if (done > total)
		done = total;
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
 * ns per load of a pointer chase through the pages in c->rd_pfns[0..n):
 * the guest writes, into BL_CHASE_PER_PAGE words of every page
 * (bl_chase_word: lines that depend on the page), the address of the next
 * word of a random cycle over all of them (Sattolo's shuffle), through the
 * pointers
 * the backend gives (map_pages: the guest's mapping; thpfs without one: its
 * thpfs_map pins).  The timed loop is then only dependent loads, p = *p:
 * no side table, no arithmetic, so what it measures is the latency of a
 * random access, TLB misses included.  Writing the chain also faults every
 * page in before the timing.  READ_BATCHES batches of --reads / READ_BATCHES
 * loads each, continuing along the cycle; the fastest counts (other load on
 * the machine only slows batches down).
 */
#define READ_BATCHES 4
/* Element e of the chase: link e % BL_CHASE_PER_PAGE of read page
 * e / BL_CHASE_PER_PAGE. */
static void **chase_slot(struct run_ctx *c, uint64_t e)
{
	uint64_t i = e / BL_CHASE_PER_PAGE;

	return (void **)(c->rd_ptrs[i] +
			 bl_chase_word(c->rd_pfns[i], (unsigned)(e % BL_CHASE_PER_PAGE)) * 8);
}

static double measure_reads(struct run_ctx *c, uint64_t n, int *errp)
{
	uint64_t rs = c->cfg->seed ^ 0x243f6a8885a308d3ULL, per = c->cfg->reads / READ_BATCHES;
	uint64_t ne = n * BL_CHASE_PER_PAGE;
	double best = 0.0;
	int err;

	*errp = 0;
	if (n < 2 || !per)
		return 0.0;
	err = c->be.ops->map_pages(&c->be, c->rd_pfns, n, c->rd_ptrs);
	if (err) {
		c->be.ops->unmap_pages(&c->be);
		*errp = err;
		return 0.0;
	}
	for (uint64_t i = 0; i < ne; i++)
		c->perm[i] = (uint32_t)i;
	for (uint64_t i = ne - 1; i > 0; i--) { /* Sattolo: one cycle over all */
		uint64_t j = bl_rand(&rs) % i;
		uint32_t t = c->perm[i];

		c->perm[i] = c->perm[j];
		c->perm[j] = t;
	}
	for (uint64_t k = 0; k < ne; k++) {
		void **slot = chase_slot(c, c->perm[k]);

		*slot = chase_slot(c, c->perm[(k + 1) % ne]);
	}
	void *const *p = chase_slot(c, c->perm[0]);

	for (int b = 0; b < READ_BATCHES; b++) {
		double t = bl_now();

		for (uint64_t i = 0; i < per; i++)
			p = (void *const *)*p;
		t = (bl_now() - t) * 1e9 / (double)per;
		if (b == 0 || t < best)
			best = t;
	}
	c->be.ops->unmap_pages(&c->be);
	if (!p) /* keep the chase alive */
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

static int on_deflate_msg(void *ctx, const uint32_t *pfns, unsigned n)
{
	struct run_ctx *c = ctx;

	(void)pfns;
	(void)n;
	c->msgs++;
	if (c->msgs % c->sample_every == 0)
		sample(c);
	progress(c, "deflate", c->msgs, c->msgs_total);
	return 0;
}

/* The guest takes every page it gave away (ballooned or reported) back into
 * use and writes it (generation 1), in runs of at most 2 MiB. */
static int rewrite_given(struct run_ctx *c)
{
	uint64_t done = 0, every = c->npages / 32 ? c->npages / 32 : 1, next = every;

	for (uint64_t pfn = 0; pfn < c->npages;) {
		uint64_t end = pfn;

		while (end < c->npages && c->bl.given[end] && end - pfn < BL_PAGES_PER_HUGE)
			end++;
		if (end == pfn) {
			pfn++;
			continue;
		}
		int err = write_pages(c, pfn, end - pfn, 1);

		if (err)
			return err;
		done += end - pfn;
		pfn = end;
		if (pfn >= next) {
			next += every;
			sample(c);
			progress(c, "rewrite", pfn, c->npages);
		}
	}
	return 0;
}

/*
 * The free page reporting worker, when the guest is idle: Linux runs it
 * PAGE_REPORTING_DELAY (2 s) after the first free of a block of order >= 9
 * since its last pass; the model waits what is left of --report-delay
 * (untimed: the guest does nothing meanwhile) and runs one pass.  Returns
 * pages reported (0 when nothing asked for a pass).
 */
static int64_t report_when_idle(struct run_ctx *c)
{
	if (!c->cfg->report || !c->g.report_requested)
		return 0;
	double left = c->g.report_requested_at + c->cfg->report_delay - bl_now();

	if (left > 0) {
		struct timespec ts = { (time_t)left, (long)((left - (double)(time_t)left) * 1e9) };

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
	}
	progress(c, "report", 0, 1);
	return bl_balloon_report(&c->bl, &c->g, &c->h);
}

/* The host asks for bytes back; asked in about 60 steps so that the plot
 * shows the lazy queue draining. */
static int host_asks(struct run_ctx *c, uint64_t bytes)
{
	uint64_t queued = (c->h.q_tail - c->h.q_head) << BL_PAGE_SHIFT;
	uint64_t step = queued / 60 > BL_PAGE_SIZE ? queued / 60 : BL_PAGE_SIZE, done = 0;
	uint64_t want_total = queued < bytes ? queued : bytes;

	if (!c->h.queue)
		return (int)bl_host_ask(&c->h, bytes);
	while (done < bytes) {
		uint64_t want = bytes - done < step ? bytes - done : step;
		int64_t got = bl_host_ask(&c->h, want);

		if (got < 0)
			return (int)got;
		done += (uint64_t)got;
		sample(c);
		progress(c, "ask", done, want_total);
		if ((uint64_t)got < want)
			break; /* the queue is empty */
	}
	return 0;
}

/* ---- A recorded request stream (--trace) ---- */

static int trace_flush(struct run_ctx *c, uint32_t *msg, unsigned *n)
{
	if (!*n)
		return 0;
	for (unsigned i = 0; i < *n; i++) {
		c->bl.pages[c->bl.n++] = msg[i];
		c->bl.given[msg[i]] = BL_GIVEN_BALLOON;
	}
	if (*n > c->bl.max_msg)
		c->bl.max_msg = *n;
	c->bl.inflate_msgs++;
	int err = bl_host_inflate(&c->h, msg, *n);

	if (!err)
		err = on_inflate_msg(c, msg, *n);
	*n = 0;
	return err;
}

/* A reported block of the trace, as aligned blocks of order 9..10 in
 * reports of at most BL_REPORT_MAX. */
static int trace_report(struct run_ctx *c, uint32_t pfn, uint32_t npages)
{
	struct bl_block blk[BL_REPORT_MAX];
	unsigned k = 0;
	int err = 0;

	while (npages && !err) {
		unsigned o = BL_MAX_ORDER;

		while (o > BL_REPORT_ORDER && ((pfn & ((1u << o) - 1)) || (1u << o) > npages))
			o--;
		blk[k++] = (struct bl_block){ .pfn = pfn, .order = (uint8_t)o };
		for (uint32_t p = pfn; p < pfn + (1u << o); p++)
			if (!c->bl.given[p])
				c->bl.given[p] = BL_GIVEN_REPORT;
		c->bl.reported_pages += 1u << o;
		pfn += 1u << o;
		npages -= 1u << o;
		if (k == BL_REPORT_MAX || !npages) {
			c->bl.report_msgs++;
			if (k > c->bl.max_report)
				c->bl.max_report = k;
			err = bl_host_report(&c->h, blk, k);
			k = 0;
		}
	}
	return err;
}

/* Sends the trace's requests as the driver would have: a "req" starts a
 * message, a message holds at most BL_MSG_MAX frames, a page already in the
 * balloon is not sent again.  Returns pages ballooned. */
static int64_t trace_inflate(struct run_ctx *c)
{
	const struct bl_trace *t = c->cfg->tr;
	uint32_t msg[BL_MSG_MAX];
	unsigned n = 0;
	int err = 0;

	for (uint64_t i = 0; i < t->nev && !err; i++) {
		const struct bl_trace_ev *e = &t->ev[i];

		switch (e->kind) {
		case BL_TR_REQ:
			err = trace_flush(c, msg, &n);
			break;
		case BL_TR_PAGE:
			if (c->bl.given[e->pfn] == BL_GIVEN_BALLOON)
				break;
			for (unsigned k = 0; k < n; k++)
				if (msg[k] == e->pfn)
					goto next;
			msg[n++] = e->pfn;
			if (n == BL_MSG_MAX)
				err = trace_flush(c, msg, &n);
			break;
		case BL_TR_BLOCK:
			err = trace_flush(c, msg, &n);
			if (!err)
				err = trace_report(c, e->pfn, e->npages);
			break;
		default:
			break;
		}
next:;
	}
	if (!err)
		err = trace_flush(c, msg, &n);
	return err ? err : (int64_t)c->bl.n;
}

/* Deflate without the model guest's allocator: every ballooned page back,
 * newest first, in messages of at most BL_MSG_MAX. */
static int trace_deflate(struct run_ctx *c)
{
	uint32_t msg[BL_MSG_MAX];

	while (c->bl.n) {
		unsigned n = 0;

		while (n < BL_MSG_MAX && c->bl.n)
			msg[n++] = c->bl.pages[--c->bl.n];
		if (n > c->bl.max_msg)
			c->bl.max_msg = n;
		c->bl.deflate_msgs++;
		int err = bl_host_deflate(&c->h, msg, n);

		if (!err)
			err = on_deflate_msg(c, msg, n);
		if (err)
			return err;
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
	touch_bytes(c->perm, sizeof(uint32_t) * n * BL_CHASE_PER_PAGE);
	touch_bytes(c->g.reported, n);
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
	snprintf(r->guest_path, sizeof(r->guest_path), "%s", c->be.ops->guest_path(&c->be));
	c->npages = cfg->size >> BL_PAGE_SHIFT;
	c->buf = aligned_alloc(BL_HUGE_SIZE, BL_HUGE_SIZE);
	c->rd_pfns = malloc(sizeof(uint32_t) * c->npages);
	c->rd_ptrs = malloc(sizeof(char *) * c->npages);
	c->perm = malloc(sizeof(uint32_t) * c->npages * BL_CHASE_PER_PAGE);
	if (!c->buf || !c->rd_pfns || !c->rd_ptrs || !c->perm)
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
	free(c->perm);
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
	double t, s0;
	int64_t got;
	int err = 0;

	c->t0 = bl_now();
	r->cov_ok = true;
	sample(c);
	TRY(fill(c));
	r->fill_s = bl_now() - c->t0;
	if (!cfg->tr) {
		step = "workload";
		TRY(bl_workload_run(&c->w, &c->g, cfg->free_frac, cfg->frag, cfg->seed));
		r->free_bytes = c->g.free_pages << BL_PAGE_SHIFT;
		r->free_huge_bytes = bl_buddy_free_in_order(&c->g, BL_HUGE_ORDER) << BL_PAGE_SHIFT;
	}
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
	c->msgs_total = cfg->tr ? cfg->tr->reqs + cfg->tr->pages / BL_MSG_MAX + 1
				: (want + BL_MSG_MAX - 1) / BL_MSG_MAX;
	c->sample_every = c->msgs_total / 60 ? c->msgs_total / 60 : 1;
	r->t_inflate = bl_now() - c->t0;
	t = bl_now();
	s0 = c->sample_s;
	got = cfg->tr ? trace_inflate(c) : bl_balloon_inflate(&c->bl, &c->g, &c->h, want,
								on_inflate_msg, c);
	TRY(got < 0 ? (int)got : 0);
	r->inflate_s = phase_time(c, t, s0);
	r->host_s = c->h.busy_s;
	r->inflate_ops = c->h.punches + c->h.zeroes;
	r->huge_discards = c->h.huge_discards;
	r->ballooned = (uint64_t)got << BL_PAGE_SHIFT;
	r->mem_inflate = mem_now(c);
	sample(c);

	step = "report";
	t = bl_now();
	got = report_when_idle(c);
	TRY(got < 0 ? (int)got : 0);
	r->report_s = bl_now() - t;
	r->reported = c->bl.reported_pages << BL_PAGE_SHIFT;
	sample(c);
	r->mem_report = mem_now(c);
	r->cov_inflate = coverage(c);
	step = "check after inflate";
	TRY(check_pages(c, false));

	step = "ask";
	r->t_ask = bl_now() - c->t0;
	t = bl_now();
	s0 = c->sample_s;
	TRY(host_asks(c, cfg->ask));
	r->ask_s = phase_time(c, t, s0);
	r->ask_host_s = c->h.ask_busy_s;
	r->ask_ops = c->h.ask_ops;
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
	r->t_deflate = bl_now() - c->t0;
	t = bl_now();
	s0 = c->sample_s;
	if (cfg->tr)
		TRY(trace_deflate(c));
	else
		TRY(bl_balloon_deflate(&c->bl, &c->g, &c->h, on_deflate_msg, c));
	r->deflate_s = phase_time(c, t, s0);
	/* the worker's next pass: blocks the deflate made whole are new, the
	 * ones reported after inflate are skipped */
	uint64_t rep0 = c->bl.reported_pages, skip0 = c->bl.skipped_pages;

	step = "report after deflate";
	got = report_when_idle(c);
	TRY(got < 0 ? (int)got : 0);
	r->reported_deflate = (c->bl.reported_pages - rep0) << BL_PAGE_SHIFT;
	r->report_skipped = (c->bl.skipped_pages - skip0) << BL_PAGE_SHIFT;
	r->report_passes = c->bl.report_passes;
	step = "rewrite";
	t = bl_now();
	s0 = c->sample_s;
	TRY(rewrite_given(c));
	r->deflate_s += phase_time(c, t, s0);
	r->mem_deflate = mem_now(c);
	r->cov_deflate = coverage(c);
	ops->counters(&c->be, &r->c_deflate);
	sample(c);

	r->collapse_rc = 0;
	r->t_collapse = bl_now() - c->t0;
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
	r->t_end = bl_now() - c->t0;
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
