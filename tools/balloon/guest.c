/*
 * guest.c - the guest side of the model: a buddy allocator over guest frame
 * numbers, a workload that leaves its free memory fragmented on purpose, and
 * the stamps every guest page carries.
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* splitmix64 */
uint64_t bl_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* ---- Buddy allocator ---- */

static void buddy_list_add(struct bl_buddy *b, uint32_t pfn, unsigned order, bool tail)
{
	b->free_order[pfn] = (uint8_t)order;
	if (b->head[order] == BL_NIL) {
		b->head[order] = pfn;
		b->next[pfn] = b->prev[pfn] = pfn;
	} else {
		uint32_t h = b->head[order], last = b->prev[h];

		b->next[pfn] = h;
		b->prev[pfn] = last;
		b->next[last] = pfn;
		b->prev[h] = pfn;
		if (!tail)
			b->head[order] = pfn;
	}
	b->nr_blocks[order]++;
	b->free_pages += 1ULL << order;
}

static void buddy_list_del(struct bl_buddy *b, uint32_t pfn)
{
	unsigned order = b->free_order[pfn];

	if (b->next[pfn] == pfn) {
		b->head[order] = BL_NIL;
	} else {
		b->next[b->prev[pfn]] = b->next[pfn];
		b->prev[b->next[pfn]] = b->prev[pfn];
		if (b->head[order] == pfn)
			b->head[order] = b->next[pfn];
	}
	b->free_order[pfn] = BL_ORDER_NONE;
	b->reported[pfn] = 0;
	b->nr_blocks[order]--;
	b->free_pages -= 1ULL << order;
}

/* All frames start free, in the largest aligned blocks that fit, lowest
 * address first on each list (as Linux frees boot memory to the tail). */
int bl_buddy_init(struct bl_buddy *b, uint32_t npages)
{
	memset(b, 0, sizeof(*b));
	if (!npages)
		return -EINVAL;
	b->npages = npages;
	b->next = malloc(sizeof(uint32_t) * npages);
	b->prev = malloc(sizeof(uint32_t) * npages);
	b->free_order = malloc(npages);
	b->reported = calloc(npages, 1);
	if (!b->next || !b->prev || !b->free_order || !b->reported) {
		bl_buddy_destroy(b);
		return -ENOMEM;
	}
	memset(b->free_order, BL_ORDER_NONE, npages);
	for (unsigned o = 0; o <= BL_MAX_ORDER; o++)
		b->head[o] = BL_NIL;
	for (uint32_t pfn = 0; pfn < npages;) {
		unsigned o = BL_MAX_ORDER;

		while (o && ((pfn & ((1u << o) - 1)) || (uint64_t)pfn + (1u << o) > npages))
			o--;
		buddy_list_add(b, pfn, o, true);
		pfn += 1u << o;
	}
	return 0;
}

void bl_buddy_destroy(struct bl_buddy *b)
{
	free(b->next);
	free(b->prev);
	free(b->free_order);
	free(b->reported);
	b->next = b->prev = NULL;
	b->free_order = NULL;
	b->reported = NULL;
}

int64_t bl_buddy_alloc(struct bl_buddy *b, unsigned order)
{
	unsigned o = order;

	if (order > BL_MAX_ORDER)
		return -EINVAL;
	while (o <= BL_MAX_ORDER && b->head[o] == BL_NIL)
		o++;
	if (o > BL_MAX_ORDER)
		return -ENOMEM;
	uint32_t pfn = b->head[o];

	buddy_list_del(b, pfn);
	/* keep the lower half, give the upper halves back (expand()) */
	while (o > order) {
		o--;
		buddy_list_add(b, pfn + (1u << o), o, false);
	}
	return pfn;
}

/* Frees and merges; returns the first frame of the block it ended in and
 * its order in *orderp. */
static uint32_t buddy_free_merge(struct bl_buddy *b, uint32_t pfn, unsigned *orderp)
{
	unsigned order = *orderp;

	while (order < BL_MAX_ORDER) {
		uint32_t buddy = pfn ^ (1u << order);

		if ((uint64_t)buddy + (1u << order) > b->npages || b->free_order[buddy] != order)
			break;
		buddy_list_del(b, buddy);
		if (buddy < pfn)
			pfn = buddy;
		order++;
	}
	buddy_list_add(b, pfn, order, false);
	*orderp = order;
	return pfn;
}

/* A block of order >= BL_REPORT_ORDER after the merge asks for the
 * reporting worker (Linux: page_reporting_notify_free from
 * __free_one_page); the first request since the last pass starts the
 * delay. */
void bl_buddy_free(struct bl_buddy *b, uint32_t pfn, unsigned order)
{
	buddy_free_merge(b, pfn, &order);
	if (order >= BL_REPORT_ORDER && !b->report_requested) {
		b->report_requested = true;
		b->report_requested_at = bl_now();
	}
}

void bl_buddy_putback_reported(struct bl_buddy *b, uint32_t pfn, unsigned order)
{
	unsigned o = order;
	uint32_t head = buddy_free_merge(b, pfn, &o);

	if (head == pfn && o == order)
		b->reported[pfn] = 1;
}

void bl_buddy_isolate(struct bl_buddy *b, uint32_t pfn)
{
	if (b->free_order[pfn] != BL_ORDER_NONE)
		buddy_list_del(b, pfn);
}

uint64_t bl_buddy_free_in_order(const struct bl_buddy *b, unsigned order)
{
	uint64_t n = 0;

	for (unsigned o = order; o <= BL_MAX_ORDER; o++)
		n += b->nr_blocks[o] << o;
	return n;
}

/* ---- Workload ---- */

/* Order of the next workload allocation: mostly single pages, as a guest's
 * anonymous memory and page cache are, with some small higher orders. */
static unsigned workload_order(uint64_t *rs)
{
	unsigned r = (unsigned)(bl_rand(rs) % 100);

	if (r < 55)
		return 0;
	if (r < 75)
		return 1;
	if (r < 87)
		return 2;
	if (r < 95)
		return 3;
	return 4;
}

/* Allocates until the guest is full; returns the allocations in w. */
static int workload_fill(struct bl_workload *w, struct bl_buddy *b, uint64_t *rs)
{
	uint64_t cap = b->npages;

	w->pfn = malloc(sizeof(uint32_t) * cap);
	w->order = malloc(cap);
	if (!w->pfn || !w->order)
		return -ENOMEM;
	w->nalloc = 0;
	while (b->free_pages) {
		int order = (int)workload_order(rs);
		int64_t pfn;

		while ((pfn = bl_buddy_alloc(b, (unsigned)order)) < 0 && order > 0)
			order--;
		if (pfn < 0)
			break;
		w->pfn[w->nalloc] = (uint32_t)pfn;
		w->order[w->nalloc] = (uint8_t)order;
		w->nalloc++;
	}
	return 0;
}

/* Frees allocation i (and forgets it: its pfn becomes BL_NIL). */
static void workload_put(struct bl_workload *w, struct bl_buddy *b, uint32_t i)
{
	bl_buddy_free(b, w->pfn[i], w->order[i]);
	w->pfn[i] = BL_NIL;
}

static void workload_compact(struct bl_workload *w)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < w->nalloc; i++) {
		if (w->pfn[i] == BL_NIL)
			continue;
		w->pfn[k] = w->pfn[i];
		w->order[k] = w->order[i];
		k++;
	}
	w->nalloc = k;
}

/*
 * Leaves free_frac of guest RAM free: first whole 2 MiB ranges, chosen at
 * random, for (1 - frag) of it; then single allocations, in random order,
 * from ranges that keep at least one allocated frame afterwards, for the
 * rest.  Allocations never cross a 2 MiB range (order <= 4).
 */
int bl_workload_run(struct bl_workload *w, struct bl_buddy *b, double free_frac,
		    double frag, uint64_t seed)
{
	uint64_t rs = seed ^ 0x6a09e667f3bcc908ULL;
	uint64_t want = (uint64_t)(free_frac * b->npages);
	uint32_t nhuge = b->npages / BL_PAGES_PER_HUGE;
	uint32_t *perm = NULL, *used = NULL;
	uint8_t *whole = NULL;
	int err;

	memset(w, 0, sizeof(*w));
	err = workload_fill(w, b, &rs);
	if (err)
		goto out;
	err = -ENOMEM;
	used = calloc(nhuge + 1, sizeof(*used));
	whole = calloc(nhuge + 1, 1);
	perm = malloc(sizeof(uint32_t) * (w->nalloc > nhuge ? w->nalloc : nhuge + 1));
	if (!used || !whole || !perm)
		goto out;
	for (uint32_t i = 0; i < w->nalloc; i++)
		used[w->pfn[i] / BL_PAGES_PER_HUGE] += 1u << w->order[i];

	/* whole 2 MiB ranges */
	uint64_t nwhole = (uint64_t)((double)want * (1.0 - frag)) / BL_PAGES_PER_HUGE;

	if (nwhole > nhuge)
		nwhole = nhuge;
	for (uint32_t i = 0; i < nhuge; i++)
		perm[i] = i;
	for (uint64_t i = 0; i < nwhole; i++) {
		uint64_t j = i + bl_rand(&rs) % (nhuge - i);
		uint32_t t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
		whole[perm[i]] = 1;
	}
	for (uint32_t i = 0; i < w->nalloc; i++) {
		uint32_t h = w->pfn[i] / BL_PAGES_PER_HUGE;

		if (h < nhuge && whole[h]) {
			used[h] -= 1u << w->order[i];
			workload_put(w, b, i);
		}
	}

	/* the rest scattered, keeping one allocation in each range */
	for (uint32_t i = 0; i < w->nalloc; i++)
		perm[i] = i;
	for (uint32_t i = w->nalloc; i > 1; i--) {
		uint32_t j = (uint32_t)(bl_rand(&rs) % i), t = perm[i - 1];

		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	for (uint32_t k = 0; k < w->nalloc && b->free_pages < want; k++) {
		uint32_t i = perm[k];

		if (w->pfn[i] == BL_NIL)
			continue;
		uint32_t h = w->pfn[i] / BL_PAGES_PER_HUGE, sz = 1u << w->order[i];

		if (used[h] <= sz)
			continue;
		used[h] -= sz;
		workload_put(w, b, i);
	}
	workload_compact(w);
	err = 0;
out:
	free(perm);
	free(used);
	free(whole);
	if (err)
		bl_workload_destroy(w);
	return err;
}

void bl_workload_destroy(struct bl_workload *w)
{
	free(w->pfn);
	free(w->order);
	w->pfn = NULL;
	w->order = NULL;
	w->nalloc = 0;
}

/* ---- Stamps ---- */

static uint64_t stamp_word0(uint64_t pfn, uint64_t gen)
{
	uint64_t s = (pfn << 1 | (gen & 1)) ^ 0x5bd1e995c0ffee00ULL;

	return bl_rand(&s);
}

void bl_stamp(void *page, uint64_t pfn, uint64_t gen)
{
	uint64_t *w = page, x = stamp_word0(pfn, gen);

	w[0] = pfn;
	w[1] = gen;
	for (unsigned i = 2; i < BL_PAGE_SIZE / 8; i++)
		w[i] = x + i * 0x9e3779b97f4a7c15ULL;
}

unsigned bl_chase_word(uint64_t pfn, unsigned k)
{
	/* lines 1..63; 8 is prime to 63, so k = 0..7 give 8 different lines */
	return (unsigned)(1 + (pfn * 37 + k * 8) % 63) * 8;
}

int bl_stamp_check(const void *page, uint64_t pfn, uint64_t gen)
{
	const uint64_t *w = page;
	uint64_t x = stamp_word0(pfn, gen);
	uint64_t skip = 0; /* bit l: line l holds a chase link */

	for (unsigned k = 0; k < BL_CHASE_PER_PAGE; k++)
		skip |= 1ULL << (bl_chase_word(pfn, k) / 8);
	if (w[0] != pfn || w[1] != gen)
		return 0;
	for (unsigned i = 2; i < BL_PAGE_SIZE / 8; i++) {
		if (i % 8 == 0 && (skip >> (i / 8) & 1))
			continue;
		if (w[i] != x + i * 0x9e3779b97f4a7c15ULL)
			return 0;
	}
	return 1;
}

int bl_page_is_zero(const void *page)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < BL_PAGE_SIZE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}
