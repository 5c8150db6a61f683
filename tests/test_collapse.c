/*
 * test_collapse.c - getting huge pages back (issue 3): eager collapse when a
 * write refills a split huge page, the background collapse thread and its
 * max_ptes_none limit, thpfs_collapse on request, pinned ranges being
 * skipped, and a collapse that cannot get a frame changing nothing.
 *
 * Waits on the background thread poll the counters with a deadline; a
 * deadline that passes is a failure, not a skip.
 */
#include "testlib.h"
#include "internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <time.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
/* How long a test waits for the background thread before failing. */
#define WAIT_S 10.0

/* ---- helpers ---- */

static void punch(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	int r = thpfs_fallocate(f, PUNCH, (off_t)off, (off_t)len);
	if (r)
		fail_msg("punch(%" PRIu64 ", %" PRIu64 ") = %d", off, len, r);
}

/* Reads [off, off+len) into a new buffer, asserting a full read. */
static uint8_t *read_copy(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	ssize_t n = thpfs_pread(f, buf, len, (off_t)off);
	if (n != (ssize_t)len)
		fail_msg("pread(%" PRIu64 ", %" PRIu64 ") = %zd", off, len, n);
	return buf;
}

/* Asserts that the file's [off, off+len) equals want byte for byte. */
static void check_same(struct thpfs_file *f, uint64_t off, const uint8_t *want, uint64_t len)
{
	uint8_t *got = read_copy(f, off, len);
	for (uint64_t i = 0; i < len; i++) {
		if (got[i] != want[i]) {
			uint8_t g = got[i];
			free(got);
			fail_msg("offset %" PRIu64 ": read %#x, expected %#x", off + i, g, want[i]);
		}
	}
	free(got);
}

static uint64_t stat_field(const struct thpfs_stats *s, size_t field)
{
	return *(const uint64_t *)((const char *)s + field);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Polls the counter at byte offset field of struct thpfs_stats until it is
 * at least target; fails the test after WAIT_S seconds.  Returns the stats
 * seen when it got there. */
#define WAIT_STAT(fs, name, target) wait_stat(fs, offsetof(struct thpfs_stats, name), target, #name)
static struct thpfs_stats wait_stat(struct thpfs *fs, size_t field, uint64_t target,
				    const char *name)
{
	double end = tl_now() + WAIT_S;
	struct thpfs_stats s = tl_stats(fs);
	while (stat_field(&s, field) < target) {
		if (tl_now() > end)
			fail_msg("%s stayed at %" PRIu64 " (< %" PRIu64 ") for %.0f s", name,
				 stat_field(&s, field), target, WAIT_S);
		sleep_ms(2);
		s = tl_stats(fs);
	}
	return s;
}

/*
 * Whether the 4 KiB page at addr is part of a transparent huge page, from
 * /proc/self/pagemap (the PFN, root only) and /proc/kpageflags (KPF_THP).
 * Returns 1 or 0, or -1 when the system will not tell (no access, page not
 * present).
 */
#define KPF_THP_BIT 22
static int page_is_thp(const void *addr)
{
	uint64_t ent = 0, flags = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return -1;
	off_t pos = (off_t)((uintptr_t)addr / PG * sizeof(ent));
	ssize_t n = pread(fd, &ent, sizeof(ent), pos);
	close(fd);
	uint64_t pfn = ent & ((1ULL << 55) - 1);
	if (n != sizeof(ent) || !(ent >> 63) || !pfn)
		return -1;
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0)
		return -1;
	n = pread(fd, &flags, sizeof(flags), (off_t)(pfn * sizeof(flags)));
	close(fd);
	if (n != sizeof(flags))
		return -1;
	return (int)((flags >> KPF_THP_BIT) & 1);
}

/*
 * Checks that the kernel backs the 2 MiB chunk holding file offset off with
 * one THP (every one of its 512 pages has KPF_THP).  Pins the chunk with
 * thpfs_map for the look.  Only when the OS gives THPs and pagemap tells
 * PFNs; otherwise says so and checks nothing.
 */
static void check_chunk_is_thp(struct thpfs *fs, struct thpfs_file *f, uint64_t off)
{
	void *addr;
	size_t len;
	if (!tl_stats(fs).thp_available) {
		tl_skip_check("THP unavailable: kpageflags not checked");
		return;
	}
	off &= ~(HPG - 1);
	assert_int_equal(thpfs_map(f, (off_t)off, &addr, &len), 0);
	assert_int_equal(len, HPG);
	int first = page_is_thp(addr);
	if (first < 0) {
		tl_skip_check("pagemap gives no PFNs (not root): kpageflags not checked");
	} else {
		for (unsigned i = 0; i < 512; i++) {
			int t = page_is_thp((const char *)addr + i * PG);
			if (t != 1) {
				thpfs_unmap(f, addr);
				fail_msg("page %u of the collapsed chunk is not part of a THP (%d)", i, t);
			}
		}
	}
	assert_int_equal(thpfs_unmap(f, addr), 0);
}

/* Checks that the kernel backs the page at file offset off with a base page
 * (not part of a THP), when pagemap tells; pins it for the look. */
static void check_page_not_thp(struct thpfs_file *f, uint64_t off)
{
	void *addr;
	size_t len;
	assert_int_equal(thpfs_map(f, (off_t)off, &addr, &len), 0);
	int t = page_is_thp(addr);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	if (t < 0)
		tl_skip_check("pagemap gives no PFNs (not root): kpageflags not checked");
	else
		assert_int_equal(t, 0);
}

/* ---- eager collapse after a refill ---- */

/*
 * Punching pages out of a huge page splits it; writing them back makes the
 * range fully present again and the write collapses it at once into a new
 * huge page holding exactly the old bytes (runs for each split= mode).
 */
static void test_refill_restores_huge(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	const uint64_t pgs[3] = { 0, 200, 511 }; /* punched pages of chunk 0 */

	tl_write_pat(f, 0, 4 * MIB, 7);
	uint8_t *orig = read_copy(f, 0, 4 * MIB);
	struct thpfs_stats s0 = tl_stats(fs), s1, s2;
	assert_int_equal(s0.huge_frames, 2);
	assert_int_equal(s0.base_pages, 0);

	for (int i = 0; i < 3; i++)
		punch(f, pgs[i] * PG, PG);
	s1 = tl_stats(fs);
	print_message("%s: after 3 punches split %" PRIu64 " huge %" PRIu64 " base %" PRIu64 "\n",
		      TL_FX(state)->opts, tl_splits(&s1) - tl_splits(&s0), s1.huge_frames,
		      s1.base_pages);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0) + 1);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, 509);
	assert_int_equal(s1.shmem_bytes, 4 * MIB - 3 * PG);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG - 3 * BLK_PG);
	for (int i = 0; i < 3; i++)
		tl_check_zero(f, pgs[i] * PG, PG);
	check_same(f, PG, orig + PG, 199 * PG);
	check_same(f, 2 * MIB, orig + 2 * MIB, 2 * MIB);
	if (strstr(TL_FX(state)->opts, "split=migrate"))
		check_page_not_thp(f, PG); /* copied into base pages */

	/* refilling two of the three holes is not enough */
	tl_write_pat(f, pgs[0] * PG, PG, 7);
	tl_write_pat(f, pgs[1] * PG, PG, 7);
	s2 = tl_stats(fs);
	assert_int_equal(s2.thp_collapse_alloc, s0.thp_collapse_alloc);
	assert_int_equal(s2.huge_frames, 1);
	assert_int_equal(s2.base_pages, 511);

	/* the last one makes the range full: collapsed by this very write */
	tl_write_pat(f, pgs[2] * PG, PG, 7);
	s2 = tl_stats(fs);
	assert_int_equal(s2.thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s2.base_pages_collapsed, s0.base_pages_collapsed + 512);
	assert_int_equal(s2.thp_collapse_alloc_failed, s0.thp_collapse_alloc_failed);
	assert_int_equal(s2.huge_frames, 2);
	assert_int_equal(s2.base_pages, 0);
	assert_int_equal(s2.shmem_bytes, 4 * MIB);
	assert_int_equal(s2.shmem_huge_bytes, 4 * MIB);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);
	check_same(f, 0, orig, 4 * MIB);
	/* the base pages went back: after the release batch is flushed the
	 * budget holds exactly the two huge frames */
	_thpfs_release_flush(fs);
	assert_int_equal(_thpfs_held_bytes(fs), 4 * MIB);
	check_chunk_is_thp(fs, f, 0);
	free(orig);
	tl_close(f);
}

/* ---- the background thread and max_ptes_none ---- */

/* Writes 2 MiB of pattern seed at 0 of path and punches the pages of
 * holes[0..n) (page numbers), asserting the huge page was split. */
static struct thpfs_file *split_with_holes(struct thpfs *fs, const char *path, unsigned seed,
					   const unsigned *holes, unsigned n)
{
	struct thpfs_file *f = tl_open(fs, path, O_RDWR | O_CREAT);
	uint64_t splits = tl_splits_now(fs);
	tl_write_pat(f, 0, 2 * MIB, seed);
	for (unsigned i = 0; i < n; i++)
		punch(f, holes[i] * PG, PG);
	assert_int_equal(tl_splits_now(fs), splits + 1);
	return f;
}

/* Asserts that the 2 MiB at 0 hold pattern seed except the pages in holes,
 * which read zero. */
static void check_holes(struct thpfs_file *f, unsigned seed, const unsigned *holes, unsigned n)
{
	uint64_t pos = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t h = holes[i] * PG;
		if (h > pos)
			tl_check_pat(f, pos, h - pos, seed);
		tl_check_zero(f, h, PG);
		pos = h + PG;
	}
	if (pos < 2 * MIB)
		tl_check_pat(f, pos, 2 * MIB - pos, seed);
}

/* max_ptes_none=0: a range with one hole is left alone by the thread. */
static void test_bg_max_ptes_none_0(void **state)
{
	struct thpfs *fs = TL_FS(state);
	const unsigned holes[1] = { 100 };
	struct thpfs_file *f = split_with_holes(fs, "/f", 3, holes, 1);
	struct thpfs_stats s1 = tl_stats(fs), s2;

	/* +3: a pass that was running during the punch counts once */
	s2 = WAIT_STAT(fs, collapse_full_scans, s1.collapse_full_scans + 3);
	print_message("%" PRIu64 " passes, skipped for holes %" PRIu64 " -> %" PRIu64 "\n",
		      s2.collapse_full_scans - s1.collapse_full_scans, s1.collapse_skipped_holes,
		      s2.collapse_skipped_holes);
	assert_int_equal(s2.thp_collapse_alloc, s1.thp_collapse_alloc);
	assert_int_equal(s2.base_pages_collapsed, s1.base_pages_collapsed);
	assert_true(s2.collapse_skipped_holes > s1.collapse_skipped_holes);
	assert_int_equal(s2.huge_frames, 0);
	assert_int_equal(s2.base_pages, 511);
	assert_int_equal(tl_blocks(f), BLK_HPG - BLK_PG);
	check_holes(f, 3, holes, 1);
	/* on request only whole ranges collapse: this one is not */
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(2 * MIB)), 0);
	s2 = tl_stats(fs);
	assert_int_equal(s2.thp_collapse_alloc, s1.thp_collapse_alloc);
	assert_int_equal(tl_blocks(f), BLK_HPG - BLK_PG);
	tl_close(f);
}

/* max_ptes_none=511: the same kind of range (here with 65 holes) is
 * collapsed by the thread; the holes read zero and take memory again. */
static void test_bg_max_ptes_none_511(void **state)
{
	struct thpfs *fs = TL_FS(state);
	unsigned holes[65];
	holes[0] = 100;
	for (unsigned i = 1; i < 65; i++)
		holes[i] = 199 + i; /* 200..263 */
	struct thpfs_stats s0 = tl_stats(fs), s2;
	/* the thread may collapse as soon as the punches return, so only
	 * event counters (not gauges) are read before it does */
	struct thpfs_file *f = split_with_holes(fs, "/f", 4, holes, 65);
	s2 = WAIT_STAT(fs, thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s2.thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s2.base_pages_collapsed, s0.base_pages_collapsed + 512 - 65);
	assert_true(s2.collapse_full_scans >= s0.collapse_full_scans);
	assert_int_equal(s2.huge_frames, 1);
	assert_int_equal(s2.base_pages, 0);
	assert_int_equal(tl_blocks(f), BLK_HPG);
	check_holes(f, 4, holes, 65);
	check_chunk_is_thp(fs, f, 0);
	tl_close(f);
}

/* max_ptes_none=8: 8 holes collapse, 9 do not. */
static void test_bg_max_ptes_none_edge(void **state)
{
	struct thpfs *fs = TL_FS(state);
	const unsigned h8[8] = { 1, 2, 3, 50, 51, 300, 400, 511 };
	const unsigned h9[9] = { 0, 1, 2, 3, 50, 51, 300, 400, 511 };
	struct thpfs_stats s0 = tl_stats(fs), s2;
	struct thpfs_file *a = split_with_holes(fs, "/a", 5, h8, 8);
	struct thpfs_file *b = split_with_holes(fs, "/b", 6, h9, 9);

	s2 = WAIT_STAT(fs, thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	uint64_t scans = s2.collapse_full_scans;
	s2 = WAIT_STAT(fs, collapse_full_scans, scans + 3);
	assert_int_equal(s2.thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s2.base_pages_collapsed, s0.base_pages_collapsed + 504);
	assert_int_equal(tl_blocks(a), BLK_HPG);
	assert_int_equal(tl_blocks(b), BLK_HPG - 9 * BLK_PG);
	assert_int_equal(s2.huge_frames, 1);
	assert_int_equal(s2.base_pages, 503);
	check_holes(a, 5, h8, 8);
	check_holes(b, 6, h9, 9);
	tl_close(a);
	tl_close(b);
}

/* ---- pins ---- */

/*
 * Splits chunk 0 of a new file by punching page 7, pins page 300 with
 * thpfs_map, writes a byte through the pin and refills page 7, so that the
 * range is fully present but pinned.  want receives the file's 2 MiB as
 * they must read; *pin the mapped address.
 */
static struct thpfs_file *pinned_full_range(struct thpfs *fs, uint8_t *want, void **pin)
{
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	size_t len;
	tl_write_pat(f, 0, 2 * MIB, 8);
	punch(f, 7 * PG, PG);
	assert_int_equal(thpfs_map(f, (off_t)(300 * PG + 5), pin, &len), 0);
	assert_int_equal(len, PG - 5);
	*(uint8_t *)*pin = 0;
	tl_write_pat(f, 7 * PG, PG, 8);
	tl_fill(want, 2 * MIB, 0, 8);
	want[300 * PG + 5] = 0;
	check_same(f, 0, want, 2 * MIB);
	struct thpfs_stats s = tl_stats(fs);
	assert_int_equal(s.pinned_pages, 1);
	assert_int_equal(s.base_pages, 512);
	assert_int_equal(s.huge_frames, 0);
	return f;
}

/* The thread skips a pinned range (and counts it); after the unmap, its
 * next pass collapses the range. */
static void test_pinned_skipped_bg(void **state)
{
	struct thpfs *fs = TL_FS(state);
	uint8_t *want = malloc(2 * MIB);
	void *pin;
	assert_non_null(want);
	uint64_t collapsed0 = tl_stats(fs).thp_collapse_alloc;
	struct thpfs_file *f = pinned_full_range(fs, want, &pin);
	struct thpfs_stats s1 = tl_stats(fs), s2;

	s2 = WAIT_STAT(fs, collapse_skipped_pinned, s1.collapse_skipped_pinned + 3);
	assert_int_equal(s2.thp_collapse_alloc, collapsed0);
	assert_int_equal(s2.huge_frames, 0);
	assert_int_equal(s2.base_pages, 512);
	assert_int_equal(s2.pinned_pages, 1);
	/* the pin still points at the file's bytes */
	*((uint8_t *)pin + 1) = 0x77;
	want[300 * PG + 6] = 0x77;
	check_same(f, 0, want, 2 * MIB);

	assert_int_equal(thpfs_unmap(f, pin), 0);
	s2 = WAIT_STAT(fs, thp_collapse_alloc, collapsed0 + 1);
	assert_int_equal(s2.huge_frames, 1);
	assert_int_equal(s2.base_pages, 0);
	assert_int_equal(s2.pinned_pages, 0);
	assert_int_equal(tl_blocks(f), BLK_HPG);
	check_same(f, 0, want, 2 * MIB);
	free(want);
	tl_close(f);
}

/* thpfs_collapse skips a pinned range (counting it) and collapses it once
 * the pin is gone. */
static void test_pinned_skipped_request(void **state)
{
	struct thpfs *fs = TL_FS(state);
	uint8_t *want = malloc(2 * MIB);
	void *pin;
	assert_non_null(want);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	struct thpfs_file *f = pinned_full_range(fs, want, &pin);

	assert_int_equal(thpfs_collapse(f, 0, (off_t)(2 * MIB)), 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.collapse_skipped_pinned, s0.collapse_skipped_pinned + 1);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc);
	assert_int_equal(s1.base_pages, 512);
	check_same(f, 0, want, 2 * MIB);

	assert_int_equal(thpfs_unmap(f, pin), 0);
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(2 * MIB)), 1);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, 0);
	check_same(f, 0, want, 2 * MIB);
	check_chunk_is_thp(fs, f, 0);
	free(want);
	tl_close(f);
}

/* ---- thpfs_collapse ---- */

/* Under huge=advise a file without advice gets base pages; thpfs_collapse
 * (like MADV_COLLAPSE) makes huge pages of whole ranges anyway, counts
 * them, and leaves a partly present range alone. */
static void test_collapse_request(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_stats s0 = tl_stats(fs), s1;

	tl_write_pat(f, 0, 7 * MIB, 9);
	s1 = tl_stats(fs);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 7 * MIB / PG);
	/* only the chunk holding [2 MiB + 4 KiB, +1) */
	assert_int_equal(thpfs_collapse(f, (off_t)(2 * MIB + PG), 1), 1);
	s1 = tl_stats(fs);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages_collapsed, s0.base_pages_collapsed + 512);
	/* the rest: chunks 0 and 2; chunk 3 is half present */
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(8 * MIB)), 2);
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(8 * MIB)), 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc + 3);
	assert_int_equal(s1.base_pages_collapsed, s0.base_pages_collapsed + 3 * 512);
	assert_int_equal(s1.huge_frames, 3);
	assert_int_equal(s1.base_pages, 256);
	assert_int_equal(tl_blocks(f), 3 * BLK_HPG + 256 * BLK_PG);
	tl_check_pat(f, 0, 7 * MIB, 9);
	for (int i = 0; i < 3; i++)
		check_chunk_is_thp(fs, f, (uint64_t)i * HPG);

	/* bad arguments */
	assert_int_equal(thpfs_collapse(f, -1, (off_t)HPG), -EINVAL);
	assert_int_equal(thpfs_collapse(f, 0, 0), -EINVAL);
	assert_int_equal(thpfs_collapse(f, 0, -5), -EINVAL);
	assert_int_equal(thpfs_collapse(NULL, 0, (off_t)HPG), -EBADF);
	struct thpfs_file *d = tl_open(fs, "/", O_RDONLY | O_DIRECTORY);
	assert_int_equal(thpfs_collapse(d, 0, (off_t)HPG), -EINVAL);
	tl_close(d);
	tl_check_pat(f, 0, 7 * MIB, 9);
	tl_close(f);
}

/* THPFS_ADV_NOHUGEPAGE means "never huge pages, whatever the mount says"
 * (thpfs.h): no trigger may collapse such a file, not even on request
 * (MADV_COLLAPSE refuses VM_NOHUGEPAGE ranges too). */
static void test_collapse_nohugepage(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_fadvise(f, THPFS_ADV_NOHUGEPAGE), 0);
	tl_write_pat(f, 0, 2 * MIB, 10);
	struct thpfs_stats s = tl_stats(fs);
	assert_int_equal(s.huge_frames, 0);
	assert_int_equal(s.base_pages, 512);
	int r = thpfs_collapse(f, 0, (off_t)(2 * MIB));
	s = tl_stats(fs);
	print_message("thpfs_collapse on a NOHUGEPAGE file = %d, huge_frames %" PRIu64 "\n", r,
		      s.huge_frames);
	assert_true(r <= 0);
	assert_int_equal(s.huge_frames, 0);
	assert_int_equal(s.thp_collapse_alloc, 0);
	tl_check_pat(f, 0, 2 * MIB, 10);
	tl_close(f);
}

/* ---- a collapse that cannot get a frame ---- */

/* Eager and requested collapses whose huge frame allocation fails leave
 * the base pages, the bytes and the gauges as they were. */
static void test_collapse_no_frame(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 11);
	punch(f, 33 * PG, PG);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	assert_int_equal(s0.base_pages, 511);

	/* allocation 1 is the refilled page, 2 the eager collapse's frame */
	thpfs_fault_inject(fs, 2, 0);
	tl_write_pat(f, 33 * PG, PG, 11);
	thpfs_fault_inject(fs, 0, 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_collapse_alloc_failed, s0.thp_collapse_alloc_failed + 1);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 512);
	assert_int_equal(tl_blocks(f), BLK_HPG);
	tl_check_pat(f, 0, 2 * MIB, 11);
	_thpfs_release_flush(fs);
	uint64_t held = _thpfs_held_bytes(fs);
	assert_int_equal(held, 2 * MIB);

	/* on request: the error comes back, nothing changes */
	s0 = tl_stats(fs);
	thpfs_fault_inject(fs, 1, 1);
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(2 * MIB)), -ENOMEM);
	thpfs_fault_inject(fs, 0, 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_collapse_alloc_failed, s0.thp_collapse_alloc_failed + 1);
	tl_same_memory(&s0, &s1);
	_thpfs_release_flush(fs);
	assert_int_equal(_thpfs_held_bytes(fs), held);
	tl_check_pat(f, 0, 2 * MIB, 11);

	/* and with memory it works */
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(2 * MIB)), 1);
	s1 = tl_stats(fs);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, 0);
	tl_check_pat(f, 0, 2 * MIB, 11);
	tl_close(f);
}

/* The background thread failing to get frames (max_ptes_none=511, every
 * allocation failing) changes nothing; once allocations work it collapses. */
static void test_collapse_no_frame_bg(void **state)
{
	struct thpfs *fs = TL_FS(state);
	const unsigned holes[2] = { 10, 11 };
	struct thpfs_stats s0 = tl_stats(fs), s1;
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 12);
	/* from now on every allocation fails, the thread's included */
	thpfs_fault_inject(fs, 1, 1);
	punch(f, holes[0] * PG, 2 * PG); /* split=inplace: needs no allocation */
	s1 = WAIT_STAT(fs, thp_collapse_alloc_failed, s0.thp_collapse_alloc_failed + 2);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0) + 1);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 510);
	assert_int_equal(tl_blocks(f), BLK_HPG - 2 * BLK_PG);
	check_holes(f, 12, holes, 2);
	thpfs_fault_inject(fs, 0, 0);
	s1 = WAIT_STAT(fs, thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, 0);
	assert_int_equal(tl_blocks(f), BLK_HPG);
	check_holes(f, 12, holes, 2);
	tl_close(f);
}

/* ---- retired blocks and the release batch ---- */

/* Waits up to ms for the retired list to be empty and no retired block to be
 * in the middle of being freed; returns whether it got there. */
static bool retired_all_freed(struct thpfs *fs, unsigned ms)
{
	double end = tl_now() + ms / 1000.0;
	do {
		pthread_mutex_lock(&fs->retire_lock);
		unsigned n = fs->nretired;
		pthread_mutex_unlock(&fs->retire_lock);
		if (!n && pthread_mutex_trylock(&fs->retire_flush_lock) == 0) {
			pthread_mutex_unlock(&fs->retire_flush_lock);
			return true;
		}
		sleep_ms(2);
	} while (tl_now() < end);
	return false;
}

/*
 * A collapsed range whose old block still has a page in the release batch
 * (punched after the last flush: the background scan with max_ptes_none > 0
 * meets this when a punch lands between its flush and its collapse): the
 * old block's slot must not be handed out again before that page is
 * released, or the batch's MADV_DONTNEED later zeroes a page of the slot's
 * next owner.  split=inplace leaves the block in a huge arena slot, which a
 * new huge frame takes without looking at the batch.  release_lock is held
 * by the test meanwhile, as a flush running on another thread holds it.
 */
static void test_retired_slot_queued_page(void **state)
{
	struct thpfs *fs = TL_FS(state);
	const unsigned holes[1] = { 100 };
	struct thpfs_file *a = split_with_holes(fs, "/a", 21, holes, 1);
	struct thpfs_inode *inode = a->inode;
	pthread_rwlock_wrlock(&inode->lock); /* inode->lock before release_lock */
	pthread_mutex_lock(&fs->release_lock);
	assert_true(fs->release_n > 0); /* page 100 is queued */
	struct thpfs_chunk *c = _thpfs_index_lookup(&inode->pages, 0);
	assert_non_null(c);
	assert_false(c->huge);
	char *old = c->mem;
	assert_int_equal(_thpfs_collapse_chunk(fs, c, true), 0);
	pthread_rwlock_unlock(&inode->lock);
	bool freed = retired_all_freed(fs, 1000);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	tl_write_pat(b, 0, 2 * MIB, 22);
	pthread_rwlock_rdlock(&b->inode->lock);
	bool reused = _thpfs_index_lookup(&b->inode->pages, 0)->mem == old;
	pthread_rwlock_unlock(&b->inode->lock);
	print_message("retired block freed before the batch: %d, its slot reused: %d\n", freed,
		      reused);
	pthread_mutex_unlock(&fs->release_lock);
	_thpfs_release_flush(fs);
	tl_check_pat(b, 0, 2 * MIB, 22);
	check_holes(a, 21, holes, 1);
	tl_close(b);
	tl_close(a);
}

/*
 * A retired block with a page still in the release batch, while every
 * release fails (locked memory; injected here): the flush of the batch and
 * the retired block's free each leave their pages zeroed on the unreleased
 * record, and the slot's remap then frees them.  Each page must be charged
 * once: with the file gone, nothing may be held, and Shmem is back to 0.
 */
static void test_retired_queued_page_release_fails(void **state)
{
	struct thpfs *fs = TL_FS(state);
	const unsigned holes[1] = { 100 };
	struct thpfs_file *a = split_with_holes(fs, "/a", 23, holes, 1);
	struct thpfs_inode *inode = a->inode;
	thpfs_fault_inject_release(fs, 1, 1); /* every release from now on */
	pthread_rwlock_wrlock(&inode->lock);
	pthread_mutex_lock(&fs->release_lock);
	unsigned queued = fs->release_n;
	pthread_mutex_unlock(&fs->release_lock);
	struct thpfs_chunk *c = _thpfs_index_lookup(&inode->pages, 0);
	int r = c && !c->huge ? _thpfs_collapse_chunk(fs, c, true) : -1;
	pthread_rwlock_unlock(&inode->lock);
	assert_true(queued > 0); /* page 100 is queued */
	assert_int_equal(r, 0);
	assert_true(retired_all_freed(fs, 2000));
	_thpfs_release_flush(fs);
	thpfs_fault_inject_release(fs, 0, 0);
	check_holes(a, 23, holes, 1);
	tl_close(a);
	assert_int_equal(thpfs_unlink(fs, "/a"), 0);
	_thpfs_release_flush(fs);
	assert_true(retired_all_freed(fs, 2000));
	assert_int_equal(_thpfs_held_bytes(fs), 0);
	assert_int_equal(tl_stats(fs).shmem_bytes, 0);
}

/*
 * Collapse, punch, reclaim and the background thread at once: three threads
 * each write (unaligned, small and large: the fresh-frame copy too), punch,
 * collapse and read back their own 8 MiB file against a model, one thread
 * calls thpfs_reclaim, and the background thread collapses ranges with holes
 * (max_ptes_none=511) and frees the retired blocks.  Every read must match
 * the model; at the end, with the files gone, nothing may be held.
 * THPFS_RETIRE_STRESS_MS sets the duration (default 1500).
 */
#define RS_FILE (8 * MIB)
struct rs_worker {
	struct thpfs *fs;
	struct thpfs_file *f;
	uint8_t *model, *buf;
	uint64_t seed, ops;
	double end;
	char err[160];
};
static volatile int rs_stop;

static void *rs_work(void *arg)
{
	struct rs_worker *w = arg;
	uint64_t *s = &w->seed;
	while (tl_now() < w->end && !rs_stop && !w->err[0]) {
		unsigned op = (unsigned)tl_rand_below(s, 10);
		uint64_t off = tl_rand_below(s, RS_FILE);
		uint64_t len = 1 + tl_rand_below(s, op < 2 ? 3 * MIB : 64 * KIB);
		if (off + len > RS_FILE)
			len = RS_FILE - off;
		if (op < 4) { /* write */
			unsigned seed = (unsigned)tl_rand(s);
			tl_fill(w->buf, len, off, seed);
			ssize_t n = thpfs_pwrite(w->f, w->buf, len, (off_t)off);
			if (n != (ssize_t)len) {
				snprintf(w->err, sizeof(w->err), "pwrite(%" PRIu64 ", %" PRIu64 ") = %zd",
					 off, len, n);
				break;
			}
			memcpy(w->model + off, w->buf, len);
		} else if (op < 6) { /* punch whole pages */
			off &= ~(PG - 1);
			len = (len + PG - 1) & ~(PG - 1);
			if (off + len > RS_FILE)
				len = RS_FILE - off;
			int r = thpfs_fallocate(w->f, PUNCH, (off_t)off, (off_t)len);
			if (r) {
				snprintf(w->err, sizeof(w->err), "punch = %d", r);
				break;
			}
			memset(w->model + off, 0, len);
		} else if (op < 7) {
			int r = thpfs_collapse(w->f, 0, (off_t)RS_FILE);
			if (r < 0 && r != -ENOMEM) {
				snprintf(w->err, sizeof(w->err), "collapse = %d", r);
				break;
			}
		} else { /* read back */
			ssize_t n = thpfs_pread(w->f, w->buf, len, (off_t)off);
			if (n != (ssize_t)len) {
				snprintf(w->err, sizeof(w->err), "pread = %zd", n);
				break;
			}
			for (uint64_t i = 0; i < len; i++)
				if (w->buf[i] != w->model[off + i]) {
					snprintf(w->err, sizeof(w->err),
						 "offset %" PRIu64 ": read %#x, model %#x", off + i,
						 w->buf[i], w->model[off + i]);
					break;
				}
		}
		w->ops++;
	}
	return NULL;
}

static void *rs_reclaim(void *arg)
{
	struct rs_worker *w = arg;
	while (tl_now() < w->end && !rs_stop) {
		if (thpfs_reclaim(w->fs, 0) < 0)
			snprintf(w->err, sizeof(w->err), "thpfs_reclaim failed");
		w->ops++;
		sleep_ms(1);
	}
	return NULL;
}

static void test_retire_stress(void **state)
{
	struct thpfs *fs = TL_FS(state);
	enum { NW = 3 };
	struct rs_worker w[NW + 1];
	pthread_t t[NW + 1];
	double end = tl_now() + tl_env_u64("THPFS_RETIRE_STRESS_MS", 1500) / 1000.0;
	uint64_t seed = tl_seed("retire stress");
	rs_stop = 0;
	memset(w, 0, sizeof(w));
	for (int i = 0; i <= NW; i++) {
		w[i].fs = fs;
		w[i].end = end;
		w[i].seed = seed + (uint64_t)i * 7919;
		if (i == NW)
			break;
		char path[16];
		snprintf(path, sizeof(path), "/rs%d", i);
		w[i].f = tl_open(fs, path, O_RDWR | O_CREAT);
		assert_int_equal(thpfs_ftruncate(w[i].f, (off_t)RS_FILE), 0);
		w[i].model = calloc(1, RS_FILE);
		w[i].buf = malloc(3 * MIB);
		assert_non_null(w[i].model);
		assert_non_null(w[i].buf);
	}
	for (int i = 0; i <= NW; i++)
		assert_int_equal(pthread_create(&t[i], NULL, i < NW ? rs_work : rs_reclaim, &w[i]), 0);
	for (int i = 0; i <= NW; i++)
		pthread_join(t[i], NULL);
	struct thpfs_stats st = tl_stats(fs);
	print_message("ops %" PRIu64 " %" PRIu64 " %" PRIu64 ", reclaims %" PRIu64
		      ", collapses %" PRIu64 ", splits %" PRIu64 "\n",
		      w[0].ops, w[1].ops, w[2].ops, w[NW].ops, st.thp_collapse_alloc, tl_splits(&st));
	for (int i = 0; i <= NW; i++)
		if (w[i].err[0])
			fail_msg("thread %d: %s", i, w[i].err);
	for (int i = 0; i < NW; i++) {
		uint8_t *got = w[i].buf;
		for (uint64_t off = 0; off < RS_FILE; off += 2 * MIB) {
			assert_int_equal(thpfs_pread(w[i].f, got, 2 * MIB, (off_t)off),
					 (ssize_t)(2 * MIB));
			if (memcmp(got, w[i].model + off, 2 * MIB))
				fail_msg("file %d differs from its model in [%" PRIu64 ", +2 MiB)", i,
					 off);
		}
		tl_close(w[i].f);
		char path[16];
		snprintf(path, sizeof(path), "/rs%d", i);
		assert_int_equal(thpfs_unlink(fs, path), 0);
		free(w[i].model);
		free(w[i].buf);
	}
	_thpfs_release_flush(fs);
	assert_true(retired_all_freed(fs, 2000));
	assert_int_equal(_thpfs_held_bytes(fs), 0);
	st = tl_stats(fs);
	assert_int_equal(st.huge_frames, 0);
	assert_int_equal(st.base_pages, 0);
}

/*
 * A run of collapses (thpfs_collapse over 64 MiB of full base ranges, 32
 * collapses back to back) must leave no retired block behind once the
 * background thread has had its turn: the 32 old blocks (64 MiB) go back to
 * the OS, so the memory cgroup ends where it started (the same data, in
 * huge pages now, and no page tables).  Polls for up to 2 s.
 */
static void test_retire_run_all_freed(void **state)
{
	struct tl_cg_fx *fx = *state;
#if defined(__SANITIZE_THREAD__)
	print_message("ThreadSanitizer build: no cgroup measurement, skipping\n");
	skip();
#endif
	tl_cg_start(fx, "thpfs-collapse", true);
	fx->fs = tl_mount("huge=advise,collapse=off");
	struct thpfs *fs = fx->fs;
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 64 * MIB, 31);
	int64_t shadow0 = tl_asan_shadow_rss();
	int64_t u0 = tl_cg_usage(&fx->cg);
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(64 * MIB)), 32);
	double end = tl_now() + 2.0;
	int64_t extra;
	unsigned left;
	do {
		sleep_ms(10);
		extra = tl_cg_usage(&fx->cg) - u0 - (tl_asan_shadow_rss() - shadow0);
		pthread_mutex_lock(&fs->retire_lock);
		left = fs->nretired;
		pthread_mutex_unlock(&fs->retire_lock);
	} while ((left || extra > (int64_t)MIB + tl_cg_stock()) && tl_now() < end);
	print_message("2 s after 32 collapses: %u retired blocks wait, cgroup %+.2f MiB\n", left,
		      extra / (double)MIB);
	assert_int_equal(left, 0);
	assert_true(extra <= (int64_t)MIB + tl_cg_stock());
	tl_check_pat(f, 0, 64 * MIB, 31);
	tl_close(f);
}

/* Whether the chunk at file offset 0 of f is marked fresh (copy_in's hot
 * path: a huge frame this writer just faulted in). */
static bool chunk0_fresh(struct thpfs_file *f)
{
	pthread_rwlock_rdlock(&f->inode->lock);
	struct thpfs_chunk *c = _thpfs_index_lookup(&f->inode->pages, 0);
	bool fresh = c && c->fresh;
	pthread_rwlock_unlock(&f->inode->lock);
	return fresh;
}

/* A chunk is fresh only while it is the huge frame its first write faulted
 * in: a split (the memory is a base block now, or migrated to another) and
 * a collapse (another frame, already written by the collapse's copy) end
 * it, so later large writes take the path for memory not in the cache. */
static void test_fresh_ends_at_split_and_collapse(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, MIB, 41); /* half of a new huge frame */
	struct thpfs_stats s = tl_stats(fs);
	if (s.prealloc_used)
		print_message("a pool frame: not fresh to begin with\n");
	else
		assert_true(chunk0_fresh(f));
	punch(f, 10 * PG, PG);
	assert_int_equal(tl_stats(fs).huge_frames, 0);
	assert_false(chunk0_fresh(f));
	tl_write_pat(f, 0, 2 * MIB, 42); /* full again: eager collapse */
	assert_int_equal(tl_stats(fs).huge_frames, 1);
	assert_false(chunk0_fresh(f));
	tl_check_pat(f, 0, 2 * MIB, 42);
	tl_close(f);
}

/* _thpfs_copy_erms (rep movsb where the CPU has ERMS) copies exactly n
 * bytes at any alignment and size, tiny ones included: the bytes before
 * and after stay as they were. */
static void test_copy_fresh_exact(void **state)
{
	(void)state;
	enum { CAP = 512 * 1024 + 256 };
	uint8_t *src = malloc(CAP), *dst = malloc(CAP);
	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < CAP; i++)
		src[i] = (uint8_t)(i * 131 + 7);
	const size_t sizes[] = { 0, 1, 2, 3, 7, 15, 16, 31, 63, 64, 65, 4095, 4096, 4097,
				 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 65, 512 * 1024 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
		for (size_t so = 0; so < 64; so += 13)
			for (size_t d = 0; d < 64; d += 9) {
				size_t n = sizes[k];
				memset(dst, 0xa5, CAP);
				_thpfs_copy_erms((char *)dst + 64 + d, (const char *)src + so, n);
				for (size_t i = 0; i < 64 + d; i++)
					if (dst[i] != 0xa5)
						fail_msg("n %zu: byte %zu before the copy changed", n, i);
				if (memcmp(dst + 64 + d, src + so, n))
					fail_msg("n %zu, src +%zu, dst +%zu: wrong bytes", n, so, d);
				for (size_t i = 64 + d + n; i < 64 + d + n + 64 && i < CAP; i++)
					if (dst[i] != 0xa5)
						fail_msg("n %zu: byte %zu after the copy changed", n, i);
			}
	free(src);
	free(dst);
}

#ifdef TL_ASAN
#include <sanitizer/asan_interface.h>
#include <sys/wait.h>
#endif
/* In an AddressSanitizer build (GCC or clang), _thpfs_copy_erms copies with
 * memcpy, which ASan checks: a copy that reads a poisoned byte must be
 * reported (the child process dies).  "rep movsb" in inline asm is not
 * seen by ASan, so a copy_out or copy_in past the end would go unnoticed
 * (the fuzz target is built with clang).  Skipped in other builds. */
static void test_copy_erms_asan_checked(void **state)
{
	(void)state;
#ifndef TL_ASAN
	skip();
#else
	/* The child's report goes into a pipe, not into this test's output:
	 * tests/run-tests.sh fails a binary whose output holds a sanitizer
	 * report.  The parent checks the report is there instead. */
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		static char src[3 * 4096], dst[3 * 4096];
		close(fds[0]);
		if (dup2(fds[1], STDERR_FILENO) < 0)
			_exit(2);
		memset(src, 1, sizeof(src));
		__asan_poison_memory_region(src + 2 * 4096, 64);
		_thpfs_copy_erms(dst, src, sizeof(src)); /* reads the poison */
		_exit(0);
	}
	close(fds[1]);
	static char report[65536];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(report) - 1 &&
	       (n = read(fds[0], report + got, sizeof(report) - 1 - got)) > 0)
		got += (size_t)n;
	report[got] = 0;
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	print_message("child: %s, %zu bytes on stderr, use-after-poison reported: %s\n",
		      WIFEXITED(status) ? "exited" : "killed", got,
		      strstr(report, "use-after-poison") ? "yes" : "no");
	assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_non_null(strstr(report, "use-after-poison"));
#endif
}

/* Unmount right after a run of collapses, while the background thread may be
 * freeing the retired blocks: 16 mounts later the memory cgroup is back
 * where it started (nothing leaked, nothing freed twice: ASan). */
static void test_retire_unmount_race(void **state)
{
	struct tl_cg_fx *fx = *state;
#if defined(__SANITIZE_THREAD__)
	print_message("ThreadSanitizer build: no cgroup measurement, skipping\n");
	skip();
#endif
	tl_cg_start(fx, "thpfs-collapse", true);
	/* one buffer for every round, made before the first measurement
	 * (malloc would keep freed 16 MiB buffers in its heap) */
	uint8_t *buf = malloc(16 * MIB);
	assert_non_null(buf);
	tl_fill(buf, 16 * MIB, 0, 51);
	int rounds = (int)tl_env_u64("THPFS_UNMOUNT_ROUNDS", 16);
	int64_t shadow0 = tl_asan_shadow_rss();
	int64_t u0 = tl_cg_usage(&fx->cg);
	for (int round = 0; round < rounds; round++) {
		struct thpfs *fs = tl_mount("huge=advise,collapse=off");
		struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
		assert_int_equal(thpfs_pwrite(f, buf, 16 * MIB, 0), (ssize_t)(16 * MIB));
		assert_int_equal(thpfs_collapse(f, 0, (off_t)(16 * MIB)), 8);
		tl_close(f);
		tl_unmount(fs);
	}
	int64_t extra = tl_cg_usage(&fx->cg) - u0 - (tl_asan_shadow_rss() - shadow0);
	print_message("%d x (collapse 8 ranges, unmount): cgroup %+.2f MiB\n", rounds,
		      extra / (double)MIB);
	free(buf);
	assert_true(extra <= (int64_t)MIB + tl_cg_stock());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_refill_restores_huge, "huge=always,collapse=off,split=migrate"),
		TL_TEST(test_refill_restores_huge, "huge=always,collapse=off,split=inplace"),
		TL_TEST(test_refill_restores_huge, "huge=always,collapse=off,split=native"),
		TL_TEST(test_bg_max_ptes_none_0,
			"huge=always,collapse=on,scan_sleep_ms=5,max_ptes_none=0"),
		TL_TEST(test_bg_max_ptes_none_511,
			"huge=always,collapse=on,scan_sleep_ms=5,max_ptes_none=511"),
		TL_TEST(test_bg_max_ptes_none_edge,
			"huge=always,collapse=on,scan_sleep_ms=5,max_ptes_none=8"),
		TL_TEST(test_pinned_skipped_bg, "huge=always,collapse=on,scan_sleep_ms=5"),
		TL_TEST(test_pinned_skipped_request, "huge=always,collapse=off"),
		TL_TEST(test_collapse_request, "huge=advise,collapse=off"),
		TL_TEST(test_collapse_nohugepage, "huge=always,collapse=off"),
		TL_TEST(test_collapse_no_frame, "huge=always,collapse=off,split=migrate"),
		TL_TEST(test_collapse_no_frame_bg,
			"huge=always,collapse=on,scan_sleep_ms=5,max_ptes_none=511,split=inplace"),
		TL_TEST(test_retired_slot_queued_page, "huge=always,collapse=off,split=inplace"),
		TL_TEST(test_retired_queued_page_release_fails, "huge=always,collapse=off,split=inplace"),
		cmocka_unit_test(test_copy_fresh_exact),
		cmocka_unit_test(test_copy_erms_asan_checked),
		TL_TEST(test_fresh_ends_at_split_and_collapse, "huge=always,collapse=off,split=native"),
		TL_TEST(test_fresh_ends_at_split_and_collapse, "huge=always,collapse=off,split=migrate"),
		TL_TEST(test_retire_stress,
			"huge=always,collapse=on,scan_sleep_ms=1,max_ptes_none=511,split=inplace"),
		cmocka_unit_test_setup_teardown(test_retire_run_all_freed, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_retire_unmount_race, tl_cg_setup, tl_cg_teardown),
		TL_TEST(test_retire_stress,
			"huge=always,collapse=on,scan_sleep_ms=1,max_ptes_none=511,split=native"),
	};
	if (getenv("CMOCKA_FILTER"))
		cmocka_set_test_filter(getenv("CMOCKA_FILTER"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
