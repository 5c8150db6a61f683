/*
 * test_punch.c - punching holes in huge pages, the kernel's own scenarios:
 * 4 KiB at the head, middle and tail of a huge page, a punch across two
 * huge pages, a whole huge page, a punch over a pinned page (deferred
 * split), truncation into a huge page, both split modes, ZERO_RANGE.
 *
 * Every test runs with split=migrate, split=inplace and split=native
 * (collapse=off so nothing folds the base pages back while we count them).
 * The counters are checked against the kernel: thpfs's huge pages against
 * the bytes PAGEMAP_SCAN finds mapped by huge PMDs (check_gauges), and a
 * one-page punch against the page table (check_kernel_after_punch).
 */
#include "testlib.h"

#include <inttypes.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define MIGRATE "huge=always,split=migrate,collapse=off"
#define INPLACE "huge=always,split=inplace,collapse=off"
#define NATIVE "huge=always,split=native,collapse=off"

/* split=inplace only queues the punched pages for release: until the batch
 * is flushed the kernel still maps the THP with its huge PMD. */
static bool lazy_release;

/* The fixture of every test here: a mount with the options given. */
static int punch_setup(void **state)
{
	lazy_release = *state && strstr((const char *)*state, "split=inplace");
	return tl_setup(state);
}
#undef TL_TEST
#define TL_TEST(fn, opts) \
	cmocka_unit_test_prestate_setup_teardown(fn, punch_setup, tl_teardown, (void *)(opts))

static void need_thp(struct thpfs *fs)
{
	if (!tl_stats(fs).thp_available) {
		print_message("transparent huge pages unavailable here: skipping\n");
		skip();
	}
}

static void punch(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	int r = thpfs_fallocate(f, PUNCH, (off_t)off, (off_t)len);
	if (r)
		fail_msg("punch(%" PRIu64 ", %" PRIu64 ") = %d", off, len, r);
}

/* Differences of the counters the punch tests look at. */
struct delta {
	int64_t split, split_failed, huge, base, deferred_q, deferred_page, deferred_done;
	int64_t shmem, zeroed;
};

static struct delta diff(const struct thpfs_stats *a, const struct thpfs_stats *b)
{
	struct delta d = {
		.split = (int64_t)(tl_splits(b) - tl_splits(a)),
		.split_failed = (int64_t)(b->thp_split_page_failed - a->thp_split_page_failed),
		.huge = (int64_t)(b->huge_frames - a->huge_frames),
		.base = (int64_t)(b->base_pages - a->base_pages),
		.deferred_q = (int64_t)(b->deferred_split_queue - a->deferred_split_queue),
		.deferred_page = (int64_t)(b->thp_deferred_split_page - a->thp_deferred_split_page),
		.deferred_done = (int64_t)(b->thp_deferred_split_done - a->thp_deferred_split_done),
		.shmem = (int64_t)(b->shmem_bytes - a->shmem_bytes),
		.zeroed = (int64_t)(b->punch_zeroed_bytes - a->punch_zeroed_bytes),
	};
	return d;
}

/* The gauges agree with each other, with st_blocks of the only file and
 * with the kernel: the bytes it maps with huge PMDs are thpfs's huge pages. */
static void check_gauges(struct thpfs *fs, struct thpfs_file *f)
{
	struct thpfs_stats s = tl_stats(fs);
	if (s.split_verify && !lazy_release)
		assert_int_equal(s.shmem_pmd_mapped, s.shmem_huge_bytes);
	else if (s.split_verify)
		assert_true(s.shmem_pmd_mapped >= s.shmem_huge_bytes);
	assert_int_equal(s.shmem_huge_bytes, s.huge_frames * HPG);
	assert_int_equal(s.shmem_bytes, s.huge_frames * HPG + s.base_pages * PG);
	if (f)
		assert_int_equal(s.shmem_bytes, (uint64_t)tl_blocks(f) * 512);
}

/* The memory behind chunk k of f, found through page pg of it (present). */
static char *chunk_mem(struct thpfs_file *f, unsigned k, unsigned pg)
{
	void *addr;
	size_t len;
	int r = thpfs_map_existing(f, (off_t)(k * HPG + pg * PG), &addr, &len);
	if (r)
		fail_msg("thpfs_map_existing(chunk %u, page %u) = %d", k, pg, r);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	return (char *)addr - (size_t)pg * PG;
}

/* What the kernel says of chunk k after page pg of it was punched: its huge
 * PMD is gone, the punched page is not there, the other chunk is still one
 * huge page.  Skipped without PAGEMAP_SCAN. */
static void check_kernel_after_punch(struct thpfs *fs, struct thpfs_file *f, unsigned pg)
{
	unsigned k = pg / 512, in = pg % 512, other = !k;
	char *m = chunk_mem(f, k, in ? 0 : 1);
	if (tl_kernel_present_bytes(m, PG) < 0) {
		print_message("no PAGEMAP_SCAN: kernel check skipped\n");
		return;
	}
	assert_true(thpfs_reclaim(fs, 0) >= 0); /* release the queued page now */
	assert_int_equal(tl_kernel_huge_bytes(m, HPG), 0);
	assert_int_equal(tl_kernel_present_bytes(m + (size_t)in * PG, PG), 0);
	assert_int_equal(tl_kernel_huge_bytes(chunk_mem(f, other, 0), HPG), HPG);
}

/* One 4 KiB punch at page pg of a 4 MiB file (two huge pages). */
static void punch_one_page(void **state, unsigned pg)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	uint64_t off = (uint64_t)pg * PG;

	tl_write_pat(f, 0, 4 * MIB, 11);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	assert_int_equal(s0.huge_frames, 2);

	punch(f, off, PG);
	s1 = tl_stats(fs);
	struct delta d = diff(&s0, &s1);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG - BLK_PG);
	assert_int_equal(d.split, 1);
	assert_int_equal(d.huge, -1);
	assert_int_equal(d.base, 511);
	assert_int_equal(d.shmem, -(int64_t)PG);
	assert_int_equal(d.split_failed, 0);
	assert_int_equal(s1.deferred_split_queue, 0);
	assert_int_equal(tl_size(f), 4 * MIB);
	/* neighbours intact, the page reads zero */
	if (off)
		tl_check_pat(f, 0, off, 11);
	tl_check_zero(f, off, PG);
	tl_check_pat(f, off + PG, 4 * MIB - off - PG, 11);
	check_gauges(fs, f);
	check_kernel_after_punch(fs, f, pg);

	/* punching the same page again changes nothing */
	punch(f, off, PG);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG - BLK_PG);
	assert_int_equal(tl_splits_now(fs), tl_splits(&s1));
	/* writing it back brings its 8 blocks back */
	tl_write_pat(f, off, PG, 11);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);
	tl_check_pat(f, 0, 4 * MIB, 11);
	check_gauges(fs, f);
	tl_close(f);
}

static void test_punch_head(void **state)
{
	punch_one_page(state, 0);
}

static void test_punch_middle(void **state)
{
	punch_one_page(state, 256 + 512);
}

static void test_punch_tail(void **state)
{
	punch_one_page(state, 511);
}

/* A punch from the tail of huge page 0 to the head of huge page 3 of an
 * 8 MiB file: two partial pages split, two whole pages freed. */
static void test_punch_span(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	const uint64_t start = 2 * MIB - 2 * PG, end = 6 * MIB + 3 * PG;

	tl_write_pat(f, 0, 8 * MIB, 12);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	punch(f, start, end - start);
	s1 = tl_stats(fs);
	struct delta d = diff(&s0, &s1);
	assert_int_equal(tl_blocks(f), 4 * BLK_HPG - (2 + 512 + 512 + 3) * BLK_PG);
	assert_int_equal(d.split, 2);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 510 + 509);
	tl_check_pat(f, 0, start, 12);
	tl_check_zero(f, start, end - start);
	tl_check_pat(f, end, 8 * MIB - end, 12);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), (off_t)start);
	assert_int_equal(thpfs_lseek(f, start, SEEK_DATA), (off_t)end);
	check_gauges(fs, f);
	tl_close(f);
}

/* Unaligned punch edges inside pages: the partial pages are zeroed, not
 * freed. */
static void test_punch_unaligned(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	const uint64_t start = 10 * PG + 100, end = 13 * PG + 50;

	tl_write_pat(f, 0, 2 * MIB, 13);
	punch(f, start, end - start);
	/* pages 11 and 12 are freed; 10 and 13 are zeroed in part */
	assert_int_equal(tl_blocks(f), BLK_HPG - 2 * BLK_PG);
	tl_check_pat(f, 0, start, 13);
	tl_check_zero(f, start, end - start);
	tl_check_pat(f, end, 2 * MIB - end, 13);
	/* a punch inside one page frees nothing */
	punch(f, 100 * PG + 1, PG - 2);
	assert_int_equal(tl_blocks(f), BLK_HPG - 2 * BLK_PG);
	tl_check_zero(f, 100 * PG + 1, PG - 2);
	tl_check_pat(f, 100 * PG, 1, 13);
	tl_check_pat(f, 101 * PG - 1, 1, 13);
	check_gauges(fs, f);
	tl_close(f);
}

static void test_punch_whole_huge(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	tl_write_pat(f, 0, 8 * MIB, 14);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	punch(f, 2 * MIB, 2 * MIB);
	s1 = tl_stats(fs);
	struct delta d = diff(&s0, &s1);
	assert_int_equal(d.split, 0);
	assert_int_equal(d.huge, -1);
	assert_int_equal(d.base, 0);
	assert_int_equal(d.shmem, -(int64_t)HPG);
	assert_int_equal(tl_blocks(f), 3 * BLK_HPG);
	tl_check_pat(f, 0, 2 * MIB, 14);
	tl_check_zero(f, 2 * MIB, 2 * MIB);
	tl_check_pat(f, 4 * MIB, 4 * MIB, 14);
	/* a punch reaching past EOF frees the last page too, size unchanged */
	punch(f, 6 * MIB, 100 * MIB);
	assert_int_equal(tl_size(f), 8 * MIB);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);
	assert_int_equal(tl_splits_now(fs), tl_splits(&s0));
	check_gauges(fs, f);
	tl_close(f);
}

/* Punch over a pinned huge page: zeroed in place, memory kept, queued; the
 * memory goes when the pin does. */
static void test_punch_pinned(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	void *addr = NULL;
	size_t len = 0;

	tl_write_pat(f, 0, 4 * MIB, 15);
	assert_int_equal(thpfs_map(f, (off_t)(MIB + 100), &addr, &len), 0);
	assert_non_null(addr);
	assert_true(len >= PG - 100);
	assert_true(len <= HPG - MIB - 100);
	uint8_t *p = addr;
	assert_int_equal(p[0], tl_pat(MIB + 100, 15));
	assert_int_equal(p[len - 1], tl_pat(MIB + 100 + len - 1, 15));
	struct thpfs_stats s0 = tl_stats(fs), s1;
	assert_int_equal(s0.pinned_pages, 1);

	punch(f, MIB, PG);
	s1 = tl_stats(fs);
	struct delta d = diff(&s0, &s1);
	tl_check_zero(f, MIB, PG);
	tl_check_pat(f, 0, MIB, 15);
	tl_check_pat(f, MIB + PG, 3 * MIB - PG, 15);
	/* the bytes behind the pointer are the file's: zero now */
	for (size_t i = 0; i < PG - 100; i++)
		if (p[i])
			fail_msg("pinned byte %zu reads %#x after the punch", i, p[i]);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);
	assert_int_equal(d.split, 0);
	assert_int_equal(d.split_failed, 1);
	assert_int_equal(s1.deferred_split_queue, 1);
	assert_int_equal(d.deferred_page, 1);
	assert_int_equal(d.zeroed, (int64_t)PG);
	assert_int_equal(d.huge, 0);

	/* a second punch into the same pinned page stays queued once */
	punch(f, MIB + 10 * PG, PG);
	s1 = tl_stats(fs);
	assert_int_equal(s1.deferred_split_queue, 1);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);
	tl_check_zero(f, MIB + 10 * PG, PG);

	assert_int_equal(thpfs_unmap(f, addr), 0);
	s1 = tl_stats(fs);
	d = diff(&s0, &s1);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG - 2 * BLK_PG);
	assert_int_equal(s1.deferred_split_queue, 0);
	assert_int_equal(d.deferred_done, 1);
	assert_int_equal(d.split, 1);
	assert_int_equal(s1.pinned_pages, 0);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, 510);
	tl_check_pat(f, 0, MIB, 15);
	tl_check_zero(f, MIB, PG);
	tl_check_pat(f, MIB + PG, 9 * PG, 15);
	tl_check_zero(f, MIB + 10 * PG, PG);
	tl_check_pat(f, MIB + 11 * PG, 3 * MIB - 11 * PG, 15);
	assert_true(thpfs_unmap(f, addr) < 0); /* no pin left at addr */
	check_gauges(fs, f);
	tl_close(f);
}

/* A page punched while pinned and then written again must keep the new
 * bytes when the pin drops. */
static void test_punch_pinned_rewrite(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	void *addr;
	size_t len;

	tl_write_pat(f, 0, 2 * MIB, 16);
	assert_int_equal(thpfs_map(f, 0, &addr, &len), 0);
	punch(f, 4 * PG, 4 * PG);
	tl_write_pat(f, 5 * PG, PG, 17);
	/* a write through the pin reaches the file */
	((uint8_t *)addr)[1] = 0x77;
	uint8_t b = 0;
	assert_int_equal(thpfs_pread(f, &b, 1, 1), 1);
	assert_int_equal(b, 0x77);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	assert_int_equal(tl_size(f), 2 * MIB);
	assert_int_equal(thpfs_pread(f, &b, 1, 1), 1);
	assert_int_equal(b, 0x77);
	tl_check_pat(f, 0, 1, 16);
	tl_check_pat(f, 2, 4 * PG - 2, 16);
	tl_check_zero(f, 4 * PG, PG);
	tl_check_pat(f, 5 * PG, PG, 17);
	tl_check_zero(f, 6 * PG, 2 * PG);
	tl_check_pat(f, 8 * PG, 2 * MIB - 8 * PG, 16);
	/* pages 4, 6 and 7 were freed; 5 was written again */
	assert_int_equal(tl_blocks(f), BLK_HPG - 3 * BLK_PG);
	assert_int_equal(tl_stats(fs).deferred_split_queue, 0);
	check_gauges(fs, f);
	tl_close(f);
}

/* thpfs_map_existing pins only what holds memory: never allocates, never
 * makes a fallocated page data; the pin behaves like thpfs_map's. */
static void test_map_existing(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	bool huge = !strstr(TL_FX(state)->opts, "never");
	void *a;
	size_t l;

	assert_int_equal(thpfs_map_existing(f, 0, &a, &l), -ENXIO);
	assert_int_equal(thpfs_ftruncate(f, 8 * MIB), 0);
	struct thpfs_stats s0 = tl_stats(fs);
	assert_int_equal(thpfs_map_existing(f, MIB, &a, &l), -ENODATA);
	struct thpfs_stats s1 = tl_stats(fs);
	assert_int_equal(s1.shmem_bytes, s0.shmem_bytes);
	assert_int_equal(tl_blocks(f), 0);

	/* a fallocated page maps (reads zero) and stays a hole to SEEK_DATA */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 4 * MIB, PG), 0);
	assert_int_equal(thpfs_map_existing(f, 4 * MIB, &a, &l), 0);
	assert_int_equal(((uint8_t *)a)[0], 0);
	assert_int_equal(thpfs_unmap(f, a), 0);
	assert_int_equal(thpfs_lseek(f, 4 * MIB, SEEK_DATA), -ENXIO);

	/* data: the pointer shows the file's bytes, len stops at the page
	 * (the huge page) and at EOF */
	tl_write_pat(f, 0, 2 * MIB, 30);
	assert_int_equal(thpfs_map_existing(f, 100, &a, &l), 0);
	assert_int_equal(l, huge ? 2 * MIB - 100 : PG - 100);
	uint8_t expect[64];
	tl_fill(expect, sizeof(expect), 100, 30);
	assert_memory_equal(a, expect, sizeof(expect));
	assert_int_equal(tl_stats(fs).pinned_pages, 1);
	/* a punch under the pin zeroes in place and frees at unmap */
	int64_t blocks = tl_blocks(f);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, 0, PG), 0);
	assert_int_equal(((uint8_t *)a)[0], 0);
	assert_int_equal(tl_blocks(f), blocks);
	assert_int_equal(thpfs_unmap(f, a), 0);
	assert_int_equal(tl_blocks(f), blocks - (int64_t)(PG / 512));
	assert_int_equal(tl_stats(fs).pinned_pages, 0);
	tl_check_zero(f, 0, PG);
	tl_check_pat(f, PG, 2 * MIB - PG, 30);
	tl_close(f);
}

/* Pins on base pages and holes: thpfs_map allocates a hole like a write
 * fault would; pins nest. */
static void test_map_hole(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	void *a1, *a2;
	size_t l1, l2;

	assert_int_equal(thpfs_map(f, 0, &a1, &l1), -ENXIO);
	assert_int_equal(thpfs_ftruncate(f, 4 * MIB), 0);
	assert_int_equal(tl_blocks(f), 0);
	assert_int_equal(thpfs_map(f, 3 * MIB + 5, &a1, &l1), 0);
	assert_true(tl_blocks(f) > 0);
	assert_int_equal(((uint8_t *)a1)[0], 0);
	assert_int_equal(thpfs_map(f, 3 * MIB + 5, &a2, &l2), 0);
	assert_ptr_equal(a1, a2);
	memcpy(a1, "pin", 3);
	assert_int_equal(tl_size(f), 4 * MIB);
	char buf[3];
	assert_int_equal(thpfs_pread(f, buf, 3, 3 * MIB + 5), 3);
	assert_memory_equal(buf, "pin", 3);
	/* a mapped page is data (with a huge page, the whole of it may be) */
	off_t d = thpfs_lseek(f, 0, SEEK_DATA);
	assert_true(d >= (off_t)(2 * MIB) && d <= (off_t)(3 * MIB));
	tl_check_zero(f, 0, 3 * MIB);
	/* truncate below the pinned page: zeroed, freed when both pins go */
	assert_int_equal(thpfs_ftruncate(f, MIB), 0);
	assert_true(tl_blocks(f) > 0);
	assert_int_equal(((uint8_t *)a1)[0], 0);
	assert_int_equal(thpfs_unmap(f, a1), 0);
	assert_true(tl_blocks(f) > 0);
	assert_int_equal(thpfs_unmap(f, a2), 0);
	assert_int_equal(tl_blocks(f), 0);
	assert_int_equal(tl_stats(fs).deferred_split_queue, 0);
	assert_int_equal(thpfs_ftruncate(f, 4 * MIB), 0);
	tl_check_zero(f, 0, 4 * MIB);
	check_gauges(fs, f);
	tl_close(f);
}

/* Truncate into the middle of a huge page: the tail goes with a split, and
 * bytes past the new EOF read zero when the file grows again. */
static void test_truncate_split(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	const uint64_t cut = 3 * MIB + 5000;

	tl_write_pat(f, 0, 4 * MIB, 18);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	assert_int_equal(thpfs_ftruncate(f, (off_t)cut), 0);
	s1 = tl_stats(fs);
	struct delta d = diff(&s0, &s1);
	/* huge page 0 untouched; of huge page 1 the pages up to EOF remain */
	uint64_t keep = (cut - 2 * MIB + PG - 1) / PG;
	assert_int_equal(tl_blocks(f), BLK_HPG + keep * BLK_PG);
	assert_int_equal(d.split, 1);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, keep);
	assert_int_equal(tl_size(f), cut);
	tl_check_pat(f, 0, cut, 18);
	check_gauges(fs, f);
	/* growing again: everything past the old cut reads zero */
	assert_int_equal(thpfs_ftruncate(f, 4 * MIB), 0);
	tl_check_pat(f, 0, cut, 18);
	tl_check_zero(f, cut, 4 * MIB - cut);
	assert_int_equal(tl_blocks(f), BLK_HPG + keep * BLK_PG);
	/* and a write there does not resurrect old bytes around it */
	tl_write_pat(f, 3 * MIB + 8 * PG, 10, 19);
	tl_check_zero(f, cut, 3 * MIB + 8 * PG - cut);
	tl_check_pat(f, 3 * MIB + 8 * PG, 10, 19);
	tl_check_zero(f, 3 * MIB + 8 * PG + 10, MIB - 8 * PG - 10);
	/* truncate to a huge page boundary frees whole pages without a split */
	s0 = tl_stats(fs);
	assert_int_equal(thpfs_ftruncate(f, 2 * MIB), 0);
	s1 = tl_stats(fs);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0));
	assert_int_equal(tl_blocks(f), BLK_HPG);
	tl_check_pat(f, 0, 2 * MIB, 18);
	check_gauges(fs, f);
	tl_close(f);
}

/* The same punches under both split modes read back the same bytes. */
static void punch_script(struct thpfs *fs, uint8_t **out, uint64_t *blocks)
{
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	static const uint64_t ops[][2] = {
		{ 0, PG },
		{ 5 * PG + 17, 3 * PG },
		{ 2 * MIB - 100, 200 },
		{ 3 * MIB, 64 * PG },
		{ 4 * MIB + PG, 2 * MIB },
		{ 7 * MIB + 4000, 10 },
		{ 9 * MIB, 5 * MIB },
	};
	tl_write_pat(f, 0, 12 * MIB, 20);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		punch(f, ops[i][0], ops[i][1]);
	tl_write_pat(f, 3 * MIB + 10 * PG, 3, 21);
	assert_int_equal(thpfs_ftruncate(f, 11 * MIB + 123), 0);
	assert_int_equal(thpfs_ftruncate(f, 12 * MIB), 0);
	*out = malloc(12 * MIB);
	assert_non_null(*out);
	assert_int_equal(thpfs_pread(f, *out, 12 * MIB, 0), (ssize_t)(12 * MIB));
	*blocks = (uint64_t)tl_blocks(f);
	check_gauges(fs, f);
	tl_close(f);
}

static void test_split_modes_agree(void **state)
{
	struct thpfs *m = tl_mount(MIGRATE), *p = tl_mount(INPLACE), *n = tl_mount(NATIVE);
	uint8_t *a, *b, *c;
	uint64_t ba, bb, bc;

	(void)state;
	punch_script(m, &a, &ba);
	punch_script(p, &b, &bb);
	punch_script(n, &c, &bc);
	for (uint64_t i = 0; i < 12 * MIB; i++)
		if (a[i] != c[i])
			fail_msg("byte %" PRIu64 ": migrate %#x, native %#x", i, a[i], c[i]);
	assert_int_equal(ba, bc);
	print_message("st_blocks after the script: migrate %" PRIu64 ", inplace %" PRIu64 "\n", ba, bb);
	for (uint64_t i = 0; i < 12 * MIB; i++)
		if (a[i] != b[i])
			fail_msg("byte %" PRIu64 ": migrate %#x, inplace %#x", i, a[i], b[i]);
	assert_int_equal(ba, bb);
	/* spot-check against what the script means */
	assert_int_equal(a[0], 0);
	assert_int_equal(a[PG], tl_pat(PG, 20));
	assert_int_equal(a[3 * MIB + 10 * PG], tl_pat(3 * MIB + 10 * PG, 21));
	assert_int_equal(a[11 * MIB + 123], 0);
	free(a);
	free(b);
	free(c);
	tl_unmount(m);
	tl_unmount(p);
	tl_unmount(n);
}

static void test_zero_range(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	tl_write_pat(f, 0, 4 * MIB, 22);
	int64_t b0 = tl_blocks(f);
	/* inside the file: zeros, memory stays, size stays */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE, PG + 10, 3 * PG), 0);
	tl_check_pat(f, 0, PG + 10, 22);
	tl_check_zero(f, PG + 10, 3 * PG);
	tl_check_pat(f, 4 * PG + 10, 4 * MIB - 4 * PG - 10, 22);
	assert_int_equal(tl_blocks(f), b0);
	assert_int_equal(tl_size(f), 4 * MIB);
	/* over a hole made by a punch: allocated again */
	punch(f, 3 * MIB, 8 * PG);
	assert_int_equal(tl_blocks(f), b0 - 8 * BLK_PG);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE, 3 * MIB, 8 * PG), 0);
	assert_int_equal(tl_blocks(f), b0);
	tl_check_zero(f, 3 * MIB, 8 * PG);
	/* past EOF without KEEP_SIZE: grows the file */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE, 4 * MIB + 100, 1000), 0);
	assert_int_equal(tl_size(f), 4 * MIB + 1100);
	tl_check_zero(f, 4 * MIB, 1100);
	assert_true(tl_blocks(f) > b0);
	/* past EOF with KEEP_SIZE: memory, no size */
	int64_t b1 = tl_blocks(f);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE | THPFS_FALLOC_KEEP_SIZE,
					 6 * MIB, 2 * MIB),
			 0);
	assert_int_equal(tl_size(f), 4 * MIB + 1100);
	assert_int_equal(tl_blocks(f), b1 + BLK_HPG);
	/* straddling EOF with KEEP_SIZE: zeros up to EOF, size unchanged */
	tl_write_pat(f, 4 * MIB, 1100, 23);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE | THPFS_FALLOC_KEEP_SIZE,
					 4 * MIB + 1000, MIB),
			 0);
	assert_int_equal(tl_size(f), 4 * MIB + 1100);
	tl_check_pat(f, 4 * MIB, 1000, 23);
	tl_check_zero(f, 4 * MIB + 1000, 100);
	check_gauges(fs, f);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_punch_head, MIGRATE),
		TL_TEST(test_punch_middle, MIGRATE),
		TL_TEST(test_punch_tail, MIGRATE),
		TL_TEST(test_punch_head, INPLACE),
		TL_TEST(test_punch_head, NATIVE),
		TL_TEST(test_punch_middle, INPLACE),
		TL_TEST(test_punch_middle, NATIVE),
		TL_TEST(test_punch_tail, INPLACE),
		TL_TEST(test_punch_tail, NATIVE),
		TL_TEST(test_punch_span, MIGRATE),
		TL_TEST(test_punch_span, INPLACE),
		TL_TEST(test_punch_span, NATIVE),
		TL_TEST(test_punch_unaligned, MIGRATE),
		TL_TEST(test_punch_unaligned, INPLACE),
		TL_TEST(test_punch_unaligned, NATIVE),
		TL_TEST(test_punch_whole_huge, MIGRATE),
		TL_TEST(test_punch_whole_huge, INPLACE),
		TL_TEST(test_punch_whole_huge, NATIVE),
		TL_TEST(test_punch_pinned, MIGRATE),
		TL_TEST(test_punch_pinned, INPLACE),
		TL_TEST(test_punch_pinned, NATIVE),
		TL_TEST(test_punch_pinned_rewrite, MIGRATE),
		TL_TEST(test_punch_pinned_rewrite, INPLACE),
		TL_TEST(test_punch_pinned_rewrite, NATIVE),
		TL_TEST(test_map_existing, NATIVE),
		TL_TEST(test_map_existing, "huge=never,collapse=off"),
		TL_TEST(test_map_hole, MIGRATE),
		TL_TEST(test_map_hole, "huge=never"),
		TL_TEST(test_truncate_split, MIGRATE),
		TL_TEST(test_truncate_split, INPLACE),
		TL_TEST(test_truncate_split, NATIVE),
		cmocka_unit_test(test_split_modes_agree),
		TL_TEST(test_zero_range, MIGRATE),
		TL_TEST(test_zero_range, INPLACE),
		TL_TEST(test_zero_range, NATIVE),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
