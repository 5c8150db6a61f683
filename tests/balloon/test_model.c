/*
 * test_model.c - unit tests of thpfs-balloon's model (no backend, no
 * cgroup): the buddy allocator, the workload's fragmentation, the balloon
 * driver's messages and each host policy, against a fake backend that
 * records what the host asked of it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "balloon.h"

/* The model's own files call these; main.c is not linked here. */
const char *bl_policy_name(int p)
{
	static const char *const n[] = { "legacy", "split", "qemu-pbp", "huge-bitmap", "lazy",
					      "whole-lazy" };

	return p >= 0 && p < BL_NR_POLICIES ? n[p] : "?";
}

const char *bl_backend_name(int b)
{
	return b == BL_THPFS ? "thpfs" : "kernel";
}

/* ---- A backend that records ---- */
#define FAKE_MAX 100000
struct fake_op {
	uint64_t off, len;
	int punch; /* 1 punch, 0 zero */
};
static struct fake_op ops_log[FAKE_MAX];
static unsigned nops;

static int fake_punch(struct bl_backend *be, uint64_t off, uint64_t len)
{
	(void)be;
	assert_true(nops < FAKE_MAX);
	ops_log[nops++] = (struct fake_op){ off, len, 1 };
	return 0;
}

static int fake_zero(struct bl_backend *be, uint64_t off, uint64_t len)
{
	(void)be;
	assert_true(nops < FAKE_MAX);
	ops_log[nops++] = (struct fake_op){ off, len, 0 };
	return 0;
}

static const struct bl_backend_ops fake_ops = {
	.name = "fake",
	.punch = fake_punch,
	.zero = fake_zero,
};
static struct bl_backend fake_be = { .ops = &fake_ops };

static int reset(void **state)
{
	(void)state;
	nops = 0;
	return 0;
}

static unsigned count_ops(int punch, uint64_t len)
{
	unsigned n = 0;

	for (unsigned i = 0; i < nops; i++)
		if (ops_log[i].punch == punch && (!len || ops_log[i].len == len))
			n++;
	return n;
}

/* ---- Buddy allocator ---- */

static void test_buddy_init_and_merge(void **state)
{
	struct bl_buddy b;
	int64_t p[64];

	(void)state;
	assert_int_equal(bl_buddy_init(&b, 4096), 0);
	assert_int_equal(b.free_pages, 4096);
	assert_int_equal(b.nr_blocks[BL_MAX_ORDER], 4);
	for (int i = 0; i < 64; i++) {
		p[i] = bl_buddy_alloc(&b, (unsigned)(i % 4));
		assert_true(p[i] >= 0);
		assert_int_equal(p[i] % (1 << (i % 4)), 0);
	}
	for (int i = 63; i >= 0; i -= 2)
		bl_buddy_free(&b, (uint32_t)p[i], (unsigned)(i % 4));
	for (int i = 62; i >= 0; i -= 2)
		bl_buddy_free(&b, (uint32_t)p[i], (unsigned)(i % 4));
	/* everything merged back into the four largest blocks */
	assert_int_equal(b.free_pages, 4096);
	assert_int_equal(b.nr_blocks[BL_MAX_ORDER], 4);
	for (unsigned o = 0; o < BL_MAX_ORDER; o++)
		assert_int_equal(b.nr_blocks[o], 0);
	assert_int_equal(bl_buddy_alloc(&b, BL_MAX_ORDER + 1), -EINVAL);
	bl_buddy_destroy(&b);
}

/* Single pages from a fresh allocator come in address order, as Linux's
 * expand() keeps the lower half; smaller blocks go first, and a partial
 * last block is used too. */
static void test_buddy_sequential_and_exhaustion(void **state)
{
	struct bl_buddy b;
	uint8_t seen[1124] = { 0 };

	(void)state;
	assert_int_equal(bl_buddy_init(&b, 2048), 0);
	for (int64_t i = 0; i < 2048; i++)
		assert_int_equal(bl_buddy_alloc(&b, 0), i);
	assert_int_equal(bl_buddy_alloc(&b, 0), -ENOMEM);
	bl_buddy_destroy(&b);

	assert_int_equal(bl_buddy_init(&b, 1024 + 100), 0);
	/* blocks: 1024 @0, 64 @1024, 32 @1088, 4 @1120: the 4 go first */
	assert_int_equal(bl_buddy_alloc(&b, 0), 1120);
	for (int i = 1; i < 1124; i++) {
		int64_t p = bl_buddy_alloc(&b, 0);

		assert_true(p >= 0 && p < 1124);
		assert_false(seen[p]);
		seen[p] = 1;
	}
	assert_int_equal(bl_buddy_alloc(&b, 0), -ENOMEM);
	assert_int_equal(b.free_pages, 0);
	bl_buddy_destroy(&b);
}

/* ---- Workload ---- */

static void check_ranges_used(struct bl_workload *w, uint32_t npages, bool want_all_used)
{
	uint32_t nhuge = npages / BL_PAGES_PER_HUGE;
	uint32_t *used = calloc(nhuge + 1, sizeof(*used));

	assert_non_null(used);
	for (uint32_t i = 0; i < w->nalloc; i++)
		used[w->pfn[i] / BL_PAGES_PER_HUGE] += 1u << w->order[i];
	for (uint32_t h = 0; h < nhuge && want_all_used; h++)
		assert_true(used[h] > 0);
	free(used);
}

static void test_workload_scattered(void **state)
{
	struct bl_buddy b;
	struct bl_workload w;
	uint32_t npages = 64 << 8; /* 64 MiB */

	(void)state;
	assert_int_equal(bl_buddy_init(&b, npages), 0);
	assert_int_equal(bl_workload_run(&w, &b, 0.5, 1.0, 7), 0);
	assert_true(b.free_pages >= npages / 2 && b.free_pages < npages / 2 + 16);
	/* no free 2 MiB block at all: every range keeps a used frame */
	assert_int_equal(bl_buddy_free_in_order(&b, BL_HUGE_ORDER), 0);
	check_ranges_used(&w, npages, true);
	bl_workload_destroy(&w);
	bl_buddy_destroy(&b);
}

static void test_workload_whole_blocks(void **state)
{
	struct bl_buddy b;
	struct bl_workload w;
	uint32_t npages = 64 << 8;

	(void)state;
	assert_int_equal(bl_buddy_init(&b, npages), 0);
	assert_int_equal(bl_workload_run(&w, &b, 0.5, 0.0, 7), 0);
	assert_int_equal(b.free_pages, npages / 2);
	assert_int_equal(bl_buddy_free_in_order(&b, BL_HUGE_ORDER), npages / 2);
	bl_workload_destroy(&w);
	bl_buddy_destroy(&b);
}

static void test_workload_half(void **state)
{
	struct bl_buddy b;
	struct bl_workload w;
	uint32_t npages = 64 << 8;

	(void)state;
	assert_int_equal(bl_buddy_init(&b, npages), 0);
	assert_int_equal(bl_workload_run(&w, &b, 0.5, 0.5, 3), 0);
	uint64_t whole = bl_buddy_free_in_order(&b, BL_HUGE_ORDER);

	/* half of the free memory in whole 2 MiB blocks (rounded down to a
	 * whole block), the rest scattered */
	assert_int_equal(whole, 8 * BL_PAGES_PER_HUGE);
	assert_true(b.free_pages >= npages / 2);
	bl_workload_destroy(&w);
	bl_buddy_destroy(&b);
}

/* ---- Stamps ---- */

static void test_stamps(void **state)
{
	static char page[BL_PAGE_SIZE], zero[BL_PAGE_SIZE];

	(void)state;
	bl_stamp(page, 12345, 0);
	assert_true(bl_stamp_check(page, 12345, 0));
	assert_false(bl_stamp_check(page, 12346, 0));
	assert_false(bl_stamp_check(page, 12345, 1));
	page[BL_PAGE_SIZE - 1] ^= 1; /* a change at the very end is seen */
	assert_false(bl_stamp_check(page, 12345, 0));
	assert_false(bl_page_is_zero(page));
	assert_true(bl_page_is_zero(zero));
	assert_false(bl_stamp_check(zero, 0, 0));
}

/* ---- Host policies ---- */

static void fill_msg(uint32_t *m, unsigned n, uint32_t first, uint32_t stride)
{
	for (unsigned i = 0; i < n; i++)
		m[i] = first + i * stride;
}

static void test_host_bad_messages(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX + 1];
	struct bl_block blk = { .pfn = 0, .order = 8 };

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_SPLIT, &fake_be, 2048), 0);
	fill_msg(m, BL_MSG_MAX + 1, 0, 1);
	assert_int_equal(bl_host_inflate(&h, m, BL_MSG_MAX + 1), -EMSGSIZE);
	m[0] = 2048;
	assert_int_equal(bl_host_inflate(&h, m, 1), -ERANGE);
	assert_int_equal(bl_host_report(&h, &blk, 1), -ERANGE); /* order < 9 */
	blk = (struct bl_block){ .pfn = 1, .order = 9 };
	assert_int_equal(bl_host_report(&h, &blk, 1), -ERANGE); /* misaligned */
	assert_int_equal(nops, 0);
	assert_int_equal(h.msgs, 0);
	bl_host_destroy(&h);
	assert_int_equal(bl_host_init(&h, BL_NR_POLICIES, &fake_be, 2048), -EINVAL);
	assert_int_equal(bl_host_init(&h, BL_SPLIT, &fake_be, 0), -EINVAL);
}

static void test_host_legacy(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX];

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_LEGACY, &fake_be, 2048), 0);
	fill_msg(m, 256, 0, 1);
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	fill_msg(m, 256, 256, 1);
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	assert_int_equal(count_ops(1, 0), 0);
	assert_int_equal(count_ops(0, BL_PAGE_SIZE), 512);
	assert_int_equal(h.state[0], BL_H_ZEROED);
	assert_int_equal(bl_host_ask(&h, UINT64_MAX), 0);
	bl_host_destroy(&h);
}

static void test_host_split(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX];

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_SPLIT, &fake_be, 2048), 0);
	fill_msg(m, 100, 3, 7);
	assert_int_equal(bl_host_inflate(&h, m, 100), 0);
	assert_int_equal(count_ops(1, BL_PAGE_SIZE), 100);
	assert_int_equal(ops_log[1].off, 10 * BL_PAGE_SIZE);
	assert_int_equal(h.state[10], BL_H_DISCARDED);
	assert_int_equal(h.state[11], BL_H_UNTOUCHED);
	assert_int_equal(h.max_msg_pfns, 100);
	bl_host_destroy(&h);
}

/* QEMU's PBP: a huge page is discarded only if all its pieces come in one
 * message; two messages of 256 never complete one. */
static void test_host_qemu_pbp(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX];

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_QEMU_PBP, &fake_be, 2048 + 100), 0);
	fill_msg(m, 256, 0, 1);
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	fill_msg(m, 256, 256, 1);
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	assert_int_equal(nops, 0);
	/* pieces of two huge pages interleaved: each switch drops the bitmap */
	for (unsigned i = 0; i < 256; i++)
		m[i] = (i % 2 ? 512 : 1024) + i / 2;
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	assert_int_equal(nops, 0);
	/* the last huge page of this guest has 100 frames: all of them in one
	 * message complete it */
	fill_msg(m, 100, 2048, 1);
	assert_int_equal(bl_host_inflate(&h, m, 100), 0);
	assert_int_equal(nops, 1);
	assert_int_equal(ops_log[0].punch, 1);
	assert_int_equal(ops_log[0].off, 2048 * BL_PAGE_SIZE);
	assert_int_equal(ops_log[0].len, 100 * BL_PAGE_SIZE);
	assert_int_equal(h.huge_discards, 1);
	/* but split over two messages it is not */
	bl_host_destroy(&h);
	nops = 0;
	assert_int_equal(bl_host_init(&h, BL_QEMU_PBP, &fake_be, 2048 + 100), 0);
	fill_msg(m, 50, 2048, 1);
	assert_int_equal(bl_host_inflate(&h, m, 50), 0);
	fill_msg(m, 50, 2098, 1);
	assert_int_equal(bl_host_inflate(&h, m, 50), 0);
	assert_int_equal(nops, 0);
	bl_host_destroy(&h);
}

/* huge-bitmap: the bitmap persists across messages; deflate clears bits. */
static void test_host_huge_bitmap(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX];

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_HUGE_BITMAP, &fake_be, 2048), 0);
	fill_msg(m, 256, 512, 1);
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	assert_int_equal(nops, 0);
	/* a page sent twice counts once */
	assert_int_equal(bl_host_inflate(&h, m, 1), 0);
	fill_msg(m, 255, 768, 1);
	assert_int_equal(bl_host_inflate(&h, m, 255), 0);
	assert_int_equal(nops, 0);
	/* deflate one page back: the last inflate does not complete it */
	m[0] = 600;
	assert_int_equal(bl_host_deflate(&h, m, 1), 0);
	m[0] = 1023;
	assert_int_equal(bl_host_inflate(&h, m, 1), 0);
	assert_int_equal(nops, 0);
	m[0] = 600;
	assert_int_equal(bl_host_inflate(&h, m, 1), 0);
	assert_int_equal(nops, 1);
	assert_int_equal(ops_log[0].off, 512 * BL_PAGE_SIZE);
	assert_int_equal(ops_log[0].len, BL_HUGE_SIZE);
	assert_int_equal(h.state[700], BL_H_DISCARDED);
	assert_int_equal(h.state[1024], BL_H_UNTOUCHED);
	bl_host_destroy(&h);
}

/* lazy: zero and queue; ask releases oldest first, skipping pages the
 * guest took back. */
static void test_host_lazy(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX];

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_LAZY, &fake_be, 2048), 0);
	fill_msg(m, 10, 100, 1);
	assert_int_equal(bl_host_inflate(&h, m, 10), 0);
	assert_int_equal(count_ops(0, BL_PAGE_SIZE), 10);
	assert_int_equal(count_ops(1, 0), 0);
	assert_int_equal(h.state[100], BL_H_QUEUED);
	m[0] = 101;
	assert_int_equal(bl_host_deflate(&h, m, 1), 0);
	assert_int_equal(bl_host_ask(&h, 3 * BL_PAGE_SIZE), 3 * BL_PAGE_SIZE);
	assert_int_equal(count_ops(1, BL_PAGE_SIZE), 3);
	assert_int_equal(ops_log[10].off, 100 * BL_PAGE_SIZE);
	assert_int_equal(ops_log[11].off, 102 * BL_PAGE_SIZE);
	assert_int_equal(h.state[101], BL_H_UNTOUCHED);
	assert_int_equal(bl_host_ask(&h, UINT64_MAX), 6 * BL_PAGE_SIZE);
	assert_int_equal(bl_host_ask(&h, UINT64_MAX), 0);
	bl_host_destroy(&h);
}

/* whole-lazy: a 2 MiB page whose last piece arrives is punched whole (the
 * pieces queued before it are not punched again when the host asks); the
 * pieces of a partly ballooned 2 MiB page are only zeroed until asked. */
static void test_host_whole_lazy(void **state)
{
	struct bl_host h;
	uint32_t m[BL_MSG_MAX];

	(void)state;
	assert_int_equal(bl_host_init(&h, BL_WHOLE_LAZY, &fake_be, 2048), 0);
	fill_msg(m, 256, 0, 1);
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	assert_int_equal(count_ops(0, BL_PAGE_SIZE), 256); /* zeroed, queued */
	assert_int_equal(count_ops(1, 0), 0);
	fill_msg(m, 10, 600, 1); /* 10 pieces of 2 MiB page 1 */
	assert_int_equal(bl_host_inflate(&h, m, 10), 0);
	fill_msg(m, 256, 256, 1); /* the rest of 2 MiB page 0 */
	assert_int_equal(bl_host_inflate(&h, m, 256), 0);
	assert_int_equal(count_ops(1, BL_HUGE_SIZE), 1);
	assert_int_equal(count_ops(0, BL_PAGE_SIZE), 256 + 10 + 255);
	assert_int_equal(h.huge_discards, 1);
	assert_int_equal(h.state[0], BL_H_DISCARDED);
	assert_int_equal(h.state[600], BL_H_QUEUED);
	/* asked: only the 10 pieces of page 1 are left to free */
	assert_int_equal(bl_host_ask(&h, UINT64_MAX), 10 * BL_PAGE_SIZE);
	assert_int_equal(count_ops(1, BL_PAGE_SIZE), 10);
	assert_int_equal(h.state[605], BL_H_DISCARDED);
	assert_int_equal(bl_host_ask(&h, UINT64_MAX), 0);
	bl_host_destroy(&h);
}

/* ---- Balloon driver ---- */

static void test_balloon_messages(void **state)
{
	struct bl_buddy g;
	struct bl_host h;
	struct bl_balloon bl;

	(void)state;
	assert_int_equal(bl_buddy_init(&g, 4096), 0);
	assert_int_equal(bl_host_init(&h, BL_SPLIT, &fake_be, 4096), 0);
	assert_int_equal(bl_balloon_init(&bl, 4096), 0);
	assert_int_equal(bl_balloon_inflate(&bl, &g, &h, 1000, NULL, NULL), 1000);
	assert_int_equal(bl.inflate_msgs, 4); /* 256 + 256 + 256 + 232 */
	assert_int_equal(bl.max_msg, BL_MSG_MAX);
	assert_int_equal(h.max_msg_pfns, BL_MSG_MAX);
	assert_int_equal(count_ops(1, BL_PAGE_SIZE), 1000);
	assert_int_equal(g.free_pages, 4096 - 1000);
	assert_int_equal(bl.given[999], BL_GIVEN_BALLOON);
	assert_int_equal(bl.given[1000], 0);
	/* deflate: newest first, all back to the guest */
	assert_int_equal(bl_balloon_deflate(&bl, &g, &h, NULL, NULL), 0);
	assert_int_equal(bl.deflate_msgs, 4);
	assert_int_equal(bl.n, 0);
	assert_int_equal(g.free_pages, 4096);
	assert_int_equal(g.nr_blocks[BL_MAX_ORDER], 4);
	/* more than the guest has: stops when it runs out */
	assert_int_equal(bl_balloon_inflate(&bl, &g, &h, 5000, NULL, NULL), 4096);
	assert_true(bl.max_msg <= BL_MSG_MAX);
	bl_balloon_destroy(&bl);
	bl_host_destroy(&h);
	bl_buddy_destroy(&g);
}

static void test_balloon_report(void **state)
{
	struct bl_buddy g;
	struct bl_host h;
	struct bl_balloon bl;
	uint32_t npages = 512 * 80; /* 80 huge pages */

	(void)state;
	assert_int_equal(bl_buddy_init(&g, npages), 0);
	assert_int_equal(bl_host_init(&h, BL_HUGE_BITMAP, &fake_be, npages), 0);
	assert_int_equal(bl_balloon_init(&bl, npages), 0);
	/* keep one page of every other huge page: 40 whole 2 MiB free ranges,
	 * 40 broken ones */
	int64_t all[512 * 80];

	for (uint32_t i = 0; i < npages; i++)
		all[i] = bl_buddy_alloc(&g, 0);
	for (uint32_t i = 0; i < npages; i++)
		if ((all[i] / 512) % 2 == 0 || all[i] % 512 != 0)
			bl_buddy_free(&g, (uint32_t)all[i], 0);
	uint64_t whole = bl_buddy_free_in_order(&g, BL_REPORT_ORDER);

	assert_int_equal(whole, 40 * 512);
	assert_int_equal(bl_balloon_report(&bl, &g, &h), 40 * 512);
	assert_true(bl.max_report <= BL_REPORT_MAX);
	assert_true(h.max_report_blocks <= BL_REPORT_MAX);
	assert_int_equal(count_ops(1, 0) > 0, 1);
	uint64_t punched = 0;

	for (unsigned i = 0; i < nops; i++)
		punched += ops_log[i].len;
	assert_int_equal(punched, 40 * BL_HUGE_SIZE);
	/* the blocks are free again afterwards */
	assert_int_equal(g.free_pages, npages - 40);
	assert_int_equal(bl.given[0], BL_GIVEN_REPORT);
	assert_int_equal(bl.given[512], 0);
	bl_balloon_destroy(&bl);
	bl_host_destroy(&h);
	bl_buddy_destroy(&g);
}

/* The reporting worker as Linux's: a free of a block of order >= 9 asks for
 * a pass; a pass marks what it reported and the next one skips it; a
 * reported block that is allocated from and freed again is reported anew. */
static void test_report_worker_remembers(void **state)
{
	struct bl_buddy g;
	struct bl_host h;
	struct bl_balloon bl;
	uint32_t npages = 512 * 8;

	(void)state;
	assert_int_equal(bl_buddy_init(&g, npages), 0);
	assert_int_equal(bl_host_init(&h, BL_SPLIT, &fake_be, npages), 0);
	assert_int_equal(bl_balloon_init(&bl, npages), 0);
	assert_false(g.report_requested); /* boot memory asks for nothing */
	int64_t pfn = bl_buddy_alloc(&g, 0);

	assert_int_equal(pfn, 0);
	bl_buddy_free(&g, (uint32_t)pfn, 0);
	assert_true(g.report_requested); /* merged back into a 4 MiB block */
	assert_int_equal(bl_balloon_report(&bl, &g, &h), npages);
	assert_false(g.report_requested);
	assert_int_equal(bl.skipped_pages, 0);
	/* nothing new: the next pass skips everything */
	assert_int_equal(bl_balloon_report(&bl, &g, &h), 0);
	assert_int_equal(bl.skipped_pages, npages);
	/* take a page out of one block and give it back */
	pfn = bl_buddy_alloc(&g, 0);
	assert_true(pfn >= 0);
	/* the halves split off it are not marked (the model does not carry
	 * the mark through a split): its 2 MiB half is reported again */
	assert_int_equal(bl_balloon_report(&bl, &g, &h), 512);
	bl_buddy_free(&g, (uint32_t)pfn, 0);
	assert_true(g.report_requested);
	unsigned before = nops;

	assert_int_equal(bl_balloon_report(&bl, &g, &h), 1024);
	assert_int_equal(nops, before + 1); /* only that block, merged again */
	assert_int_equal(ops_log[before].len, 1024 * BL_PAGE_SIZE);
	assert_int_equal(bl.report_passes, 4);
	bl_balloon_destroy(&bl);
	bl_host_destroy(&h);
	bl_buddy_destroy(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_buddy_init_and_merge, reset),
		cmocka_unit_test_setup(test_buddy_sequential_and_exhaustion, reset),
		cmocka_unit_test_setup(test_workload_scattered, reset),
		cmocka_unit_test_setup(test_workload_whole_blocks, reset),
		cmocka_unit_test_setup(test_workload_half, reset),
		cmocka_unit_test_setup(test_stamps, reset),
		cmocka_unit_test_setup(test_host_bad_messages, reset),
		cmocka_unit_test_setup(test_host_legacy, reset),
		cmocka_unit_test_setup(test_host_split, reset),
		cmocka_unit_test_setup(test_host_qemu_pbp, reset),
		cmocka_unit_test_setup(test_host_huge_bitmap, reset),
		cmocka_unit_test_setup(test_host_lazy, reset),
		cmocka_unit_test_setup(test_balloon_messages, reset),
		cmocka_unit_test_setup(test_balloon_report, reset),
		cmocka_unit_test_setup(test_report_worker_remembers, reset),
		cmocka_unit_test_setup(test_host_whole_lazy, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
