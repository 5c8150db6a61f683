/*
 * host.c - the host's side of the balloon: what it does with each message,
 * one policy each (see docs/balloon.md):
 *
 *   legacy       zero the 4 KiB, keep the huge page (tmpfs before Linux 5.7)
 *   split        punch the 4 KiB; the backend splits the huge page
 *   qemu-pbp     QEMU's PartiallyBalloonedPage: one bitmap of the 4 KiB
 *                pieces of one huge page, dropped when a message names a
 *                frame of another huge page and at the end of every message;
 *                a huge page is discarded only if completed within it
 *   huge-bitmap  a bitmap per 2 MiB page kept across messages; the whole
 *                2 MiB page is discarded once all its pieces are ballooned
 *   lazy         zero the 4 KiB at once and queue it; punch the queue when
 *                the host asks for memory (bl_host_ask)
 *   whole-lazy   huge-bitmap and lazy together: punch a 2 MiB page whole
 *                the moment its last 4 KiB piece arrives (no split), zero
 *                and queue the pieces of partly ballooned 2 MiB pages (they
 *                stay huge) and free those only when the host asks
 *
 * Free page reports name free blocks of at least 2 MiB.  The guest may use a
 * reported block again as soon as the report is acknowledged, without
 * telling the host, so the host must be done with it before it returns:
 * legacy zeroes it, every other policy punches it at once (as QEMU's
 * handler discards reported ranges directly, without the PBP).
 *
 * Single-threaded: the host handles one message at a time.
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HB_WORDS (BL_PAGES_PER_HUGE / 64)

int bl_host_init(struct bl_host *h, int policy, struct bl_backend *be, uint64_t npages)
{
	uint64_t nhuge = (npages + BL_PAGES_PER_HUGE - 1) / BL_PAGES_PER_HUGE;

	memset(h, 0, sizeof(*h));
	if (policy < 0 || policy >= BL_NR_POLICIES || !npages)
		return -EINVAL;
	h->policy = policy;
	h->be = be;
	h->npages = npages;
	h->pbp_huge = -1;
	h->state = calloc(npages, 1);
	if (!h->state)
		goto nomem;
	if (policy == BL_HUGE_BITMAP || policy == BL_WHOLE_LAZY) {
		h->hb_bits = calloc(nhuge, sizeof(*h->hb_bits));
		h->hb_count = calloc(nhuge, sizeof(*h->hb_count));
		if (!h->hb_bits || !h->hb_count)
			goto nomem;
	}
	if (policy == BL_LAZY || policy == BL_WHOLE_LAZY) {
		/* a frame is queued at most once per inflate; deflated frames
		 * leave holes, so allow two passes over guest RAM */
		h->queue = malloc(sizeof(uint32_t) * npages * 2);
		if (!h->queue)
			goto nomem;
	}
	return 0;
nomem:
	bl_host_destroy(h);
	return -ENOMEM;
}

void bl_host_destroy(struct bl_host *h)
{
	free(h->state);
	free(h->hb_bits);
	free(h->hb_count);
	free(h->queue);
	h->state = NULL;
	h->hb_bits = NULL;
	h->hb_count = NULL;
	h->queue = NULL;
}

/* Frames of huge page hp that exist (fewer than 512 only for a last,
 * partial huge page of guest RAM). */
static unsigned host_huge_frames(const struct bl_host *h, uint64_t hp)
{
	uint64_t left = h->npages - hp * BL_PAGES_PER_HUGE;

	return left < BL_PAGES_PER_HUGE ? (unsigned)left : BL_PAGES_PER_HUGE;
}

static int host_punch(struct bl_host *h, uint64_t pfn, uint64_t npages)
{
	int err = h->be->ops->punch(h->be, pfn << BL_PAGE_SHIFT, npages << BL_PAGE_SHIFT);

	if (err)
		return err;
	h->punches++;
	h->punched_bytes += npages << BL_PAGE_SHIFT;
	memset(h->state + pfn, BL_H_DISCARDED, npages);
	return 0;
}

static int host_zero(struct bl_host *h, uint64_t pfn, uint64_t npages, uint8_t state)
{
	int err = h->be->ops->zero(h->be, pfn << BL_PAGE_SHIFT, npages << BL_PAGE_SHIFT);

	if (err)
		return err;
	h->zeroes++;
	h->zeroed_bytes += npages << BL_PAGE_SHIFT;
	memset(h->state + pfn, state, npages);
	return 0;
}

static int host_check_msg(struct bl_host *h, const uint32_t *pfns, unsigned n)
{
	if (n > BL_MSG_MAX)
		return -EMSGSIZE;
	for (unsigned i = 0; i < n; i++)
		if (pfns[i] >= h->npages)
			return -ERANGE;
	h->msgs++;
	if (n > h->max_msg_pfns)
		h->max_msg_pfns = n;
	return 0;
}

static void bitmap_clear_all(uint64_t *b)
{
	memset(b, 0, HB_WORDS * sizeof(uint64_t));
}

static unsigned bitmap_weight(const uint64_t *b)
{
	unsigned n = 0;

	for (unsigned i = 0; i < HB_WORDS; i++)
		n += (unsigned)__builtin_popcountll(b[i]);
	return n;
}

/* QEMU's balloon_inflate_page() for a backing page larger than 4 KiB. */
static int host_pbp_page(struct bl_host *h, uint32_t pfn)
{
	int64_t hp = pfn / BL_PAGES_PER_HUGE;
	unsigned bit = pfn % BL_PAGES_PER_HUGE;

	if (h->pbp_huge != hp) {
		/* another huge page: give up on the partial one */
		bitmap_clear_all(h->pbp_bits);
		h->pbp_huge = hp;
	}
	h->pbp_bits[bit / 64] |= 1ULL << (bit % 64);
	if (bitmap_weight(h->pbp_bits) < host_huge_frames(h, (uint64_t)hp))
		return 0;
	h->pbp_huge = -1;
	bitmap_clear_all(h->pbp_bits);
	h->huge_discards++;
	return host_punch(h, (uint64_t)hp * BL_PAGES_PER_HUGE, host_huge_frames(h, (uint64_t)hp));
}

/* Marks pfn in its 2 MiB page's bitmap.  Returns 1 when that completed
 * the 2 MiB page (the bitmap is then cleared), 0 if not, -1 if the frame was
 * marked already. */
static int host_hb_mark(struct bl_host *h, uint32_t pfn)
{
	uint64_t hp = pfn / BL_PAGES_PER_HUGE;
	unsigned bit = pfn % BL_PAGES_PER_HUGE;
	uint64_t *b = h->hb_bits[hp];

	if (b[bit / 64] & (1ULL << (bit % 64)))
		return -1;
	b[bit / 64] |= 1ULL << (bit % 64);
	if (++h->hb_count[hp] < host_huge_frames(h, hp))
		return 0;
	bitmap_clear_all(b);
	h->hb_count[hp] = 0;
	return 1;
}

static int host_punch_huge(struct bl_host *h, uint64_t hp)
{
	h->huge_discards++;
	return host_punch(h, hp * BL_PAGES_PER_HUGE, host_huge_frames(h, hp));
}

static int host_hb_page(struct bl_host *h, uint32_t pfn)
{
	if (host_hb_mark(h, pfn) != 1)
		return 0;
	return host_punch_huge(h, pfn / BL_PAGES_PER_HUGE);
}

static int host_lazy_page(struct bl_host *h, uint32_t pfn)
{
	int err;

	if (h->be->ops->lazy_free) {
		/* the file system keeps the page (and its huge page) until
		 * memory is asked for */
		err = h->be->ops->lazy_free(h->be, (uint64_t)pfn << BL_PAGE_SHIFT, BL_PAGE_SIZE);
		if (!err) {
			h->zeroes++;
			h->zeroed_bytes += BL_PAGE_SIZE;
			h->state[pfn] = BL_H_QUEUED;
		}
	} else {
		err = host_zero(h, pfn, 1, BL_H_QUEUED);
	}
	if (err)
		return err;
	h->queue[h->q_tail++] = pfn;
	return 0;
}

/* whole-lazy: the last piece of a 2 MiB page punches it whole (pieces
 * queued before are covered by that punch: their state says so and the
 * ask skips them); any other piece is freed lazily. */
static int host_whole_lazy_page(struct bl_host *h, uint32_t pfn)
{
	int done = host_hb_mark(h, pfn);

	if (done < 0)
		return 0;
	if (done)
		return host_punch_huge(h, pfn / BL_PAGES_PER_HUGE);
	return host_lazy_page(h, pfn);
}

static int host_inflate_page(struct bl_host *h, uint32_t pfn)
{
	switch (h->policy) {
	case BL_LEGACY:
		return host_zero(h, pfn, 1, BL_H_ZEROED);
	case BL_SPLIT:
		return host_punch(h, pfn, 1);
	case BL_QEMU_PBP:
		return host_pbp_page(h, pfn);
	case BL_HUGE_BITMAP:
		return host_hb_page(h, pfn);
	case BL_LAZY:
		return host_lazy_page(h, pfn);
	case BL_WHOLE_LAZY:
		return host_whole_lazy_page(h, pfn);
	}
	return -EINVAL;
}

int bl_host_inflate(struct bl_host *h, const uint32_t *pfns, unsigned n)
{
	double t0 = bl_now();
	int err = host_check_msg(h, pfns, n);

	if (err)
		return err;
	if (h->queue && h->q_tail + n > h->npages * 2)
		return -ENOSPC;
	h->pbp_huge = -1; /* QEMU: a new PartiallyBalloonedPage per message */
	bitmap_clear_all(h->pbp_bits);
	for (unsigned i = 0; i < n && !err; i++)
		err = host_inflate_page(h, pfns[i]);
	h->pbp_huge = -1;
	bitmap_clear_all(h->pbp_bits);
	h->busy_s += bl_now() - t0;
	return err;
}

int bl_host_deflate(struct bl_host *h, const uint32_t *pfns, unsigned n)
{
	double t0 = bl_now();
	int err = host_check_msg(h, pfns, n);

	if (err)
		return err;
	for (unsigned i = 0; i < n; i++) {
		uint32_t pfn = pfns[i];

		if (h->hb_bits) {
			uint64_t hp = pfn / BL_PAGES_PER_HUGE;
			unsigned bit = pfn % BL_PAGES_PER_HUGE;
			uint64_t *b = h->hb_bits[hp];

			if (b[bit / 64] & (1ULL << (bit % 64))) {
				b[bit / 64] &= ~(1ULL << (bit % 64));
				h->hb_count[hp]--;
			}
		}
		/* the guest owns the frame again (a lazy frame leaves the queue) */
		h->state[pfn] = BL_H_UNTOUCHED;
	}
	h->busy_s += bl_now() - t0;
	return 0;
}

int bl_host_report(struct bl_host *h, const struct bl_block *blk, unsigned n)
{
	double t0 = bl_now();
	int err = 0;

	if (n > BL_REPORT_MAX)
		return -EMSGSIZE;
	for (unsigned i = 0; i < n; i++) {
		if (blk[i].order < BL_REPORT_ORDER || blk[i].order > BL_MAX_ORDER ||
		    (blk[i].pfn & ((1u << blk[i].order) - 1)) ||
		    (uint64_t)blk[i].pfn + (1u << blk[i].order) > h->npages)
			return -ERANGE;
	}
	h->report_msgs++;
	if (n > h->max_report_blocks)
		h->max_report_blocks = n;
	for (unsigned i = 0; i < n && !err; i++) {
		uint64_t len = 1ULL << blk[i].order;

		if (h->policy == BL_LEGACY)
			err = host_zero(h, blk[i].pfn, len, BL_H_ZEROED);
		else
			err = host_punch(h, blk[i].pfn, len);
	}
	h->busy_s += bl_now() - t0;
	return err;
}

/* The queue's side of an ask; see bl_host_ask. */
static int64_t host_ask_queue(struct bl_host *h, uint64_t bytes)
{
	uint64_t freed = 0;

	if (h->be->ops->reclaim) {
		/* the file system frees what was given to it lazily */
		int64_t got = h->be->ops->reclaim(h->be, bytes);

		if (got < 0)
			return got;
		h->ask_ops++;
		/* it frees whole 2 MiB ranges' worth at a time, oldest first
		 * as queued; account for as many queued pages as it freed */
		while (h->q_head < h->q_tail && freed < (uint64_t)got) {
			uint32_t pfn = h->queue[h->q_head++];

			if (h->state[pfn] != BL_H_QUEUED)
				continue;
			h->state[pfn] = BL_H_DISCARDED;
			h->punches++;
			h->punched_bytes += BL_PAGE_SIZE;
			freed += BL_PAGE_SIZE;
		}
		return got;
	}
	while (h->q_head < h->q_tail && freed < bytes) {
		uint32_t pfn = h->queue[h->q_head++];
		int err;

		if (h->state[pfn] != BL_H_QUEUED)
			continue;
		err = host_punch(h, pfn, 1);
		if (err)
			return err;
		h->ask_ops++;
		freed += BL_PAGE_SIZE;
	}
	return (int64_t)freed;
}

int64_t bl_host_ask(struct bl_host *h, uint64_t bytes)
{
	double t0;
	int64_t got;

	if (!h->queue)
		return 0;
	t0 = bl_now();
	got = host_ask_queue(h, bytes);
	h->ask_busy_s += bl_now() - t0;
	return got;
}
