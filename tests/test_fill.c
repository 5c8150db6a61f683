/*
 * test_fill.c - filling pages while size= reclaim runs (issue 8, item 1).
 *
 * A write, fallocate or ZERO_RANGE that needs memory past size= runs reclaim
 * with the file's own lock held.  Reclaim frees pending pages (punched while
 * pinned, or given to thpfs_free_lazy) - also those of the very file being
 * filled.  It must never take a page the call has already counted as there:
 * a page it is about to write, a page it fallocates, a page of an earlier
 * chunk of the same call, nor free the chunk under the call's feet.
 *
 * Every case runs on a tiny budget (huge=never, collapse=off, size= a few
 * MiB) so the exact page counts are known.  The budget (src/frame.c,
 * budget_charge): data alone may hold size=, and data plus page tables may
 * hold size= plus one page table per 2 MiB of size=; every 2 MiB slot mapped
 * with 4 KiB entries (each file's base block here) charges one 4 KiB page
 * table while it is mapped.  So on size=1m (256 pages) data + page tables
 * may hold 257 pages: two files each with a base block leave 255 pages for
 * data, and each case sizes its files so that the mount is exactly full
 * (data + page tables = the limit, no page to spare).  The cases:
 *   "same chunk": the only memory reclaim could find is the file's own
 *     lazily freed pages inside the range being filled - the call must get
 *     ENOSPC (a write: short, after the pages that were there), not succeed
 *     over pages that are gone;
 *   "elsewhere": another file has lazily freed pages queued after ours -
 *     reclaim must take those, and the call succeeds with all of its pages;
 *   "chunk all lazy": every present page of the chunk being filled is lazily
 *     freed and outside the range - reclaim may free the chunk, and the fill
 *     must start over on a new one.
 * THPFS_TEST_FILTER (a cmocka pattern) runs only the cases it matches.
 * Memory claims are checked with the kernel too: the pages of the file's
 * base block that are resident (/proc/self/pagemap) must be exactly the
 * pages st_blocks counts.
 */
#include "testlib.h"
#include "internal.h"

#include <inttypes.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define OPTS_1M "huge=never,collapse=off,size=1m"

static struct thpfs_file *file_with_pages(struct thpfs *fs, const char *path, uint64_t npages,
					  unsigned seed)
{
	struct thpfs_file *f = tl_open(fs, path, O_RDWR | O_CREAT);
	tl_write_pat(f, 0, npages * PG, seed);
	return f;
}

static void punch_pages(struct thpfs_file *f, uint64_t first, uint64_t n)
{
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(first * PG), (off_t)(n * PG)), 0);
}

static void lazy_pages(struct thpfs_file *f, uint64_t first, uint64_t n)
{
	assert_int_equal(thpfs_free_lazy(f, (off_t)(first * PG), (off_t)(n * PG)), 0);
}

static uint64_t blocks_pages(struct thpfs_file *f)
{
	return (uint64_t)tl_blocks(f) / BLK_PG;
}

/* The address of the base block holding chunk 0 of f (pins and unpins page
 * 0, which must be present; do it before anything is queued, since the last
 * unpin settles a queued chunk). */
static char *chunk0_mem(struct thpfs_file *f)
{
	void *addr;
	size_t len;
	assert_int_equal(thpfs_map_existing(f, 0, &addr, &len), 0);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	return addr;
}

/* Pages of the 2 MiB block at mem the kernel has resident (pagemap bit 63),
 * after thpfs's batch of pages to release is flushed. */
static uint64_t kernel_resident(struct thpfs *fs, const char *mem)
{
	_thpfs_release_flush(fs);
	int fd = open("/proc/self/pagemap", O_RDONLY);
	assert_true(fd >= 0);
	uint64_t ent[HPG / PG], n = 0;
	ssize_t r = pread(fd, ent, sizeof(ent), (off_t)((uintptr_t)mem / PG * 8));
	close(fd);
	assert_int_equal(r, (ssize_t)sizeof(ent));
	for (size_t i = 0; i < HPG / PG; i++)
		n += ent[i] >> 63;
	return n;
}

/* What the budget holds once the release batch is flushed. */
static uint64_t held_pages(struct thpfs *fs)
{
	_thpfs_release_flush(fs);
	return _thpfs_held_bytes(fs) / PG;
}

/* The page tables charged against size= (frame.c, fs->pt_bytes). */
static uint64_t pt_pages(struct thpfs *fs)
{
	return __atomic_load_n(&fs->pt_bytes, __ATOMIC_RELAXED) / PG;
}

/*
 * The reproducer on size=1m: /a fills the mount, pages 5-7 are
 * punched and /b takes them, /a's pages 0-3 are freed lazily.  Writing /a's
 * pages 0-7 needs 3 new pages; the only reclaimable memory is pages 0-3,
 * which this very write overwrites.  So the write stores pages 0-4 (they are
 * there) and stops short with the rest untouched.
 *
 * Budget (limit 257 pages of data + page tables, 256 of data): /a has 255
 * pages (not 256) because /b's base block costs a page table too.  /a: 255
 * data + 1 page table = 256; the punch leaves 252 + 1; /b's 3 pages and its
 * page table bring it to 255 + 2 = 257, the limit.  Pages 5-7 need 3 more,
 * and /a's pending pages 0-3 are all that reclaim could free.
 */
struct same_chunk {
	struct thpfs_file *a, *b;
	char *mem;
};

static void setup_same_chunk(struct thpfs *fs, struct same_chunk *s)
{
	s->a = file_with_pages(fs, "/a", 255, 1);
	s->mem = chunk0_mem(s->a);
	punch_pages(s->a, 5, 3);
	s->b = file_with_pages(fs, "/b", 3, 2);
	lazy_pages(s->a, 0, 4);
	/* 255 pages of data + 2 page tables: full */
	assert_int_equal(held_pages(fs), 255);
	assert_int_equal(pt_pages(fs), 2);
	assert_int_equal(blocks_pages(s->a), 252);
}

static void test_write_same_chunk(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct same_chunk s;
	setup_same_chunk(fs, &s);
	uint8_t *buf = malloc(8 * PG);
	assert_non_null(buf);
	tl_fill(buf, 8 * PG, 0, 3);
	ssize_t n = thpfs_pwrite(s.a, buf, 8 * PG, 0);
	free(buf);
	print_message("pwrite of 8 pages = %zd, st_blocks %" PRIu64 " pages\n", n,
		      blocks_pages(s.a));
	/* every byte the write reports is stored */
	assert_true(n >= 0 && n % (ssize_t)PG == 0);
	tl_check_pat(s.a, 0, (uint64_t)n, 3);
	assert_int_equal(n, (ssize_t)(5 * PG));
	tl_check_zero(s.a, 5 * PG, 3 * PG);
	tl_check_pat(s.a, 8 * PG, 247 * PG, 1);
	tl_check_pat(s.b, 0, 3 * PG, 2);
	assert_int_equal(blocks_pages(s.a), 252);
	assert_int_equal(kernel_resident(fs, s.mem), 252);
	assert_true(held_pages(fs) <= 255);
	tl_close(s.a);
	tl_close(s.b);
}

/* fallocate of /a's pages 0-7 in the same state: no memory for pages 5-7, so
 * -ENOSPC with nothing changed - pages 0-3 still lazily freed (reclaim then
 * gives exactly them back). */
static void test_fallocate_same_chunk(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct same_chunk s;
	setup_same_chunk(fs, &s);
	int r = thpfs_fallocate(s.a, 0, 0, (off_t)(8 * PG));
	print_message("fallocate of 8 pages = %d, st_blocks %" PRIu64 " pages, resident %" PRIu64
		      "\n", r, blocks_pages(s.a), kernel_resident(fs, s.mem));
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(blocks_pages(s.a), 252);
	assert_int_equal(kernel_resident(fs, s.mem), 252);
	tl_check_zero(s.a, 0, 4 * PG);
	tl_check_pat(s.a, 4 * PG, PG, 1);
	tl_check_zero(s.a, 5 * PG, 3 * PG);
	tl_check_pat(s.a, 8 * PG, 247 * PG, 1);
	assert_int_equal(thpfs_reclaim(fs, 0), (int64_t)(4 * PG));
	assert_int_equal(blocks_pages(s.a), 248);
	assert_int_equal(kernel_resident(fs, s.mem), 248);
	tl_close(s.a);
	tl_close(s.b);
}

/* ZERO_RANGE of /a's pages 0-7 in the same state: as fallocate, -ENOSPC and
 * nothing changed; above all no byte is written into a page that is gone. */
static void test_zero_range_same_chunk(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct same_chunk s;
	setup_same_chunk(fs, &s);
	int r = thpfs_fallocate(s.a, THPFS_FALLOC_ZERO_RANGE, 0, (off_t)(8 * PG));
	uint64_t res = kernel_resident(fs, s.mem);
	print_message("zero-range of 8 pages = %d, st_blocks %" PRIu64 " pages, resident %" PRIu64
		      "\n", r, blocks_pages(s.a), res);
	assert_int_equal(res, blocks_pages(s.a));
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(blocks_pages(s.a), 252);
	tl_check_zero(s.a, 0, 4 * PG);
	tl_check_pat(s.a, 4 * PG, PG, 1);
	tl_check_pat(s.a, 8 * PG, 247 * PG, 1);
	tl_close(s.a);
	tl_close(s.b);
}

/*
 * As above, but /b's 3 pages are freed lazily too, after /a's: now reclaim
 * can make room without touching the range being filled, and the call
 * succeeds with every page of it present.  (Reclaiming /b frees its 3 pages
 * and, its block now empty, its page table: 4 pages for the 3 needed.)
 */
static void setup_elsewhere(struct thpfs *fs, struct same_chunk *s)
{
	setup_same_chunk(fs, s);
	lazy_pages(s->b, 0, 3);
}

static void test_write_elsewhere(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct same_chunk s;
	setup_elsewhere(fs, &s);
	uint8_t *buf = malloc(8 * PG);
	assert_non_null(buf);
	tl_fill(buf, 8 * PG, 0, 3);
	ssize_t n = thpfs_pwrite(s.a, buf, 8 * PG, 0);
	free(buf);
	print_message("pwrite of 8 pages = %zd, st_blocks %" PRIu64 " pages\n", n,
		      blocks_pages(s.a));
	assert_true(n >= 0);
	tl_check_pat(s.a, 0, (uint64_t)n, 3); /* what it reports is stored */
	assert_int_equal(n, (ssize_t)(8 * PG));
	tl_check_pat(s.a, 8 * PG, 247 * PG, 1);
	tl_check_zero(s.b, 0, 3 * PG);
	assert_int_equal(blocks_pages(s.a), 255);
	assert_int_equal(blocks_pages(s.b), 0);
	assert_int_equal(kernel_resident(fs, s.mem), 255);
	tl_close(s.a);
	tl_close(s.b);
}

static void test_fallocate_elsewhere(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct same_chunk s;
	setup_elsewhere(fs, &s);
	int r = thpfs_fallocate(s.a, 0, 0, (off_t)(8 * PG));
	print_message("fallocate of 8 pages = %d, st_blocks %" PRIu64 " pages, resident %" PRIu64
		      "\n", r, blocks_pages(s.a), kernel_resident(fs, s.mem));
	assert_int_equal(r, 0);
	assert_int_equal(blocks_pages(s.a), 255); /* fallocate's promise */
	assert_int_equal(kernel_resident(fs, s.mem), 255);
	assert_int_equal(blocks_pages(s.b), 0);
	tl_check_zero(s.a, 0, 4 * PG);
	tl_check_pat(s.a, 4 * PG, PG, 1);
	tl_check_zero(s.a, 5 * PG, 3 * PG);
	tl_check_pat(s.a, 8 * PG, 247 * PG, 1);
	/* the promise holds: the pages are written without new memory */
	tl_write_pat(s.a, 0, 8 * PG, 4);
	tl_check_pat(s.a, 0, 8 * PG, 4);
	tl_close(s.a);
	tl_close(s.b);
}

static void test_zero_range_elsewhere(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct same_chunk s;
	setup_elsewhere(fs, &s);
	int r = thpfs_fallocate(s.a, THPFS_FALLOC_ZERO_RANGE, 0, (off_t)(8 * PG));
	uint64_t res = kernel_resident(fs, s.mem);
	print_message("zero-range of 8 pages = %d, st_blocks %" PRIu64 " pages, resident %" PRIu64
		      "\n", r, blocks_pages(s.a), res);
	assert_int_equal(res, blocks_pages(s.a)); /* no memory thpfs does not count */
	assert_int_equal(r, 0);
	assert_int_equal(blocks_pages(s.a), 255);
	tl_check_zero(s.a, 0, 8 * PG);
	tl_check_pat(s.a, 8 * PG, 247 * PG, 1);
	tl_close(s.a);
	tl_close(s.b);
}

/*
 * The chunk being filled has nothing but lazily freed pages outside the
 * range: reclaim frees the whole chunk (that is memory the mount may take),
 * and the write of page 10 must go on with a new one - not fail, and not
 * look at the freed chunk.
 *
 * Budget (size=1m: 257 pages of data + page tables): /a's 4 pages and /b's
 * 251 pages (not 252: each base block costs a page table) hold 255 + 2 =
 * 257, the limit, so page 10 needs reclaim, and /a's pages are all it has.
 */
static void test_write_chunk_all_lazy(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = file_with_pages(fs, "/a", 4, 1);
	struct thpfs_file *b = file_with_pages(fs, "/b", 251, 2);
	lazy_pages(a, 0, 4);
	assert_int_equal(held_pages(fs), 255);
	assert_int_equal(pt_pages(fs), 2);
	tl_write_pat(a, 10 * PG, PG, 3);
	tl_check_zero(a, 0, 10 * PG);
	tl_check_pat(a, 10 * PG, PG, 3);
	tl_check_pat(b, 0, 251 * PG, 2);
	assert_int_equal(blocks_pages(a), 1);
	assert_true(held_pages(fs) <= 255);
	tl_close(a);
	tl_close(b);
}

/*
 * One fallocate over two chunks: chunk 0 is all there but its pages 0-3 are
 * lazily freed; chunk 1 needs 3 new pages, and /b's lazily freed pages
 * (queued after /a's) are the memory for them.  Reclaim run for chunk 1 must
 * not take chunk 0's pages that this call already counted.
 *
 * Budget (size=3m: 768 pages of data; 2 slots of size=, so 770 of data +
 * page tables): /a has 764 pages in two base blocks (2 page tables), /b 3
 * pages in one: 767 + 3 = 770, the limit.  Chunk 1 needs 4 new pages; /b
 * gives back 3 pages and its page table, exactly 4, and at the end /a has
 * 768 pages + 2 page tables = 770 again.
 */
static void test_fallocate_earlier_chunk(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = file_with_pages(fs, "/a", 764, 1);
	struct thpfs_file *b = file_with_pages(fs, "/b", 3, 2);
	lazy_pages(a, 0, 4);
	lazy_pages(b, 0, 3);
	assert_int_equal(held_pages(fs), 767);
	assert_int_equal(pt_pages(fs), 3);
	int r = thpfs_fallocate(a, 0, 0, (off_t)(768 * PG));
	print_message("fallocate of 768 pages = %d, st_blocks %" PRIu64 " pages\n", r,
		      blocks_pages(a));
	assert_int_equal(r, 0);
	assert_int_equal(blocks_pages(a), 768);
	assert_int_equal(blocks_pages(b), 0);
	tl_check_zero(a, 0, 4 * PG);
	tl_check_pat(a, 4 * PG, 760 * PG, 1);
	tl_check_zero(a, 764 * PG, 4 * PG);
	assert_true(held_pages(fs) <= 768);
	tl_close(a);
	tl_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_write_same_chunk, OPTS_1M),
		TL_TEST(test_fallocate_same_chunk, OPTS_1M),
		TL_TEST(test_zero_range_same_chunk, OPTS_1M),
		TL_TEST(test_write_elsewhere, OPTS_1M),
		TL_TEST(test_fallocate_elsewhere, OPTS_1M),
		TL_TEST(test_zero_range_elsewhere, OPTS_1M),
		TL_TEST(test_write_chunk_all_lazy, OPTS_1M),
		TL_TEST(test_fallocate_earlier_chunk, "huge=never,collapse=off,size=3m"),
	};
	/* THPFS_TEST_FILTER=name runs only the matching cases (a case that
	 * aborts - THPFS_DEBUG's chunk check - ends the binary) */
	const char *only = getenv("THPFS_TEST_FILTER");
	if (only && *only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
