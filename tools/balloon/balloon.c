/*
 * balloon.c - the guest's balloon driver, done as Linux's virtio_balloon
 * does it: inflate allocates 4 KiB pages one at a time and sends their frame
 * numbers in arrays of at most 256 (VIRTIO_BALLOON_ARRAY_PFNS_MAX); deflate
 * sends the newest pages first and frees them after the host was told
 * (VIRTIO_BALLOON_F_MUST_TELL_HOST); free page reporting sends free blocks of
 * order >= 9 in reports of at most 32 (PAGE_REPORTING_CAPACITY).
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bl_balloon_init(struct bl_balloon *bl, uint64_t npages)
{
	memset(bl, 0, sizeof(*bl));
	bl->npages = npages;
	bl->pages = malloc(sizeof(uint32_t) * npages);
	bl->given = calloc(npages, 1);
	if (!bl->pages || !bl->given) {
		bl_balloon_destroy(bl);
		return -ENOMEM;
	}
	return 0;
}

void bl_balloon_destroy(struct bl_balloon *bl)
{
	free(bl->pages);
	free(bl->given);
	bl->pages = NULL;
	bl->given = NULL;
}

static void balloon_count_msg(struct bl_balloon *bl, unsigned n)
{
	if (n > bl->max_msg)
		bl->max_msg = n;
}

int64_t bl_balloon_inflate(struct bl_balloon *bl, struct bl_buddy *g, struct bl_host *h,
			   uint64_t npages, bl_pages_fn sent, void *ctx)
{
	uint32_t msg[BL_MSG_MAX];
	uint64_t done = 0;

	while (done < npages) {
		unsigned n = 0;

		while (n < BL_MSG_MAX && done + n < npages) {
			int64_t pfn = bl_buddy_alloc(g, 0);

			if (pfn < 0)
				break;
			msg[n++] = (uint32_t)pfn;
		}
		if (!n)
			break; /* the guest has no free memory left */
		for (unsigned i = 0; i < n; i++) {
			bl->pages[bl->n++] = msg[i];
			bl->given[msg[i]] = BL_GIVEN_BALLOON;
		}
		balloon_count_msg(bl, n);
		bl->inflate_msgs++;
		int err = bl_host_inflate(h, msg, n);

		if (!err && sent)
			err = sent(ctx, msg, n);
		if (err)
			return err;
		done += n;
	}
	return (int64_t)done;
}

int bl_balloon_deflate(struct bl_balloon *bl, struct bl_buddy *g, struct bl_host *h,
		       bl_pages_fn reuse, void *ctx)
{
	uint32_t msg[BL_MSG_MAX];

	while (bl->n) {
		unsigned n = 0;

		while (n < BL_MSG_MAX && bl->n)
			msg[n++] = bl->pages[--bl->n];
		balloon_count_msg(bl, n);
		bl->deflate_msgs++;
		int err = bl_host_deflate(h, msg, n);

		if (err)
			return err;
		for (unsigned i = 0; i < n; i++)
			bl_buddy_free(g, msg[i], 0);
		if (reuse) {
			err = reuse(ctx, msg, n);
			if (err)
				return err;
		}
	}
	return 0;
}

/* Free blocks of order >= BL_REPORT_ORDER not yet reported, taken off the
 * free lists (Linux isolates a block while its report is out); *skipped
 * gets the pages of free blocks passed over because they were reported. */
static struct bl_block *report_isolate(struct bl_buddy *g, uint64_t *count, uint64_t *skipped)
{
	uint64_t n = 0, cap = 0;

	*skipped = 0;
	for (unsigned o = BL_REPORT_ORDER; o <= BL_MAX_ORDER; o++)
		cap += g->nr_blocks[o];
	struct bl_block *blk = malloc(sizeof(*blk) * (cap ? cap : 1));

	if (!blk)
		return NULL;
	for (unsigned o = BL_REPORT_ORDER; o <= BL_MAX_ORDER; o++) {
		uint32_t head = g->head[o];

		if (head == BL_NIL)
			continue;
		/* walk the list once; isolating unlinks, so collect first */
		uint32_t pfn = head;

		do {
			if (g->reported[pfn])
				*skipped += 1ULL << o;
			else
				blk[n++] = (struct bl_block){ .pfn = pfn, .order = (uint8_t)o };
			pfn = g->next[pfn];
		} while (pfn != head);
	}
	for (uint64_t i = 0; i < n; i++)
		bl_buddy_isolate(g, blk[i].pfn);
	*count = n;
	return blk;
}

int64_t bl_balloon_report(struct bl_balloon *bl, struct bl_buddy *g, struct bl_host *h)
{
	uint64_t n, skipped, pages = 0;
	struct bl_block *blk;
	int err = 0;

	g->report_requested = false;
	blk = report_isolate(g, &n, &skipped);
	if (!blk)
		return -ENOMEM;
	bl->report_passes++;
	for (uint64_t i = 0; i < n && !err; i += BL_REPORT_MAX) {
		unsigned k = (unsigned)(n - i < BL_REPORT_MAX ? n - i : BL_REPORT_MAX);

		bl->report_msgs++;
		if (k > bl->max_report)
			bl->max_report = k;
		err = bl_host_report(h, blk + i, k);
		for (unsigned j = 0; j < k && !err; j++) {
			uint64_t len = 1ULL << blk[i + j].order;

			for (uint64_t p = blk[i + j].pfn; p < blk[i + j].pfn + len; p++)
				if (!bl->given[p])
					bl->given[p] = BL_GIVEN_REPORT;
			pages += len;
		}
	}
	for (uint64_t i = 0; i < n; i++) {
		if (err)
			bl_buddy_free(g, blk[i].pfn, blk[i].order);
		else
			bl_buddy_putback_reported(g, blk[i].pfn, blk[i].order);
	}
	free(blk);
	bl->reported_pages += pages;
	bl->skipped_pages += skipped;
	return err ? err : (int64_t)pages;
}
