/*
 * test_frames.c - the frame layer: huge frames are 2 MiB aligned, zeroed and
 * really transparent huge pages (AnonHugePages in /proc/self/smaps), the
 * THP availability the mount reports matches sysfs, and fault injection
 * fails the nth allocation cleanly (-ENOMEM, nothing leaked).
 */
#include "testlib.h"
#include "internal.h"

#include <inttypes.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)

static bool all_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void test_huge_alloc(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *m[3];
	int err = 0;

	for (int i = 0; i < 3; i++) {
		m[i] = _thpfs_huge_alloc(fs, &err);
		if (!m[i])
			fail_msg("_thpfs_huge_alloc failed: %d (%s)", err, strerror(-err));
		assert_int_equal((uintptr_t)m[i] & (HPG - 1), 0);
		assert_true(all_zero(m[i], HPG));
		for (int j = 0; j < i; j++)
			assert_true(m[i] + HPG <= m[j] || m[j] + HPG <= m[i]);
		memset(m[i], 0x100 - i - 1, HPG);
	}
	if (tl_stats(fs).thp_available) {
		int64_t ahp = tl_smaps_at(m[0], "AnonHugePages");
		print_message("AnonHugePages of the mapping holding the first frame: %" PRId64 " kB\n",
			      ahp / 1024);
		assert_true(ahp >= (int64_t)HPG);
	}
	/* a freed frame comes back zeroed */
	_thpfs_huge_free(fs, m[1]);
	m[1] = _thpfs_huge_alloc(fs, &err);
	assert_non_null(m[1]);
	assert_true(all_zero(m[1], HPG));
	assert_int_equal((uintptr_t)m[1] & (HPG - 1), 0);
	for (int i = 0; i < 3; i++)
		_thpfs_huge_free(fs, m[i]);

	/* base blocks: 2 MiB of address space, pages populated one range at a time */
	char *b = _thpfs_block_alloc(fs, &err);
	assert_non_null(b);
	assert_int_equal((uintptr_t)b & (HPG - 1), 0);
	assert_int_equal(_thpfs_pages_populate(fs, b, 3, 5), 0);
	assert_true(all_zero(b + 3 * PG, 2 * PG));
	memset(b + 3 * PG, 7, 2 * PG);
	_thpfs_pages_release(fs, b, 3, 5);
	assert_int_equal(_thpfs_pages_populate(fs, b, 3, 5), 0);
	assert_true(all_zero(b + 3 * PG, 2 * PG));
	_thpfs_pages_release(fs, b, 3, 5);
	_thpfs_block_free(fs, b);
}

static void test_thp_available(void **state)
{
	struct thpfs *fs = TL_FS(state);
	int sys = tl_thp_sysfs();

	print_message("sysfs THP enabled: %d, mount thp_available: %" PRIu64 "\n", sys,
		      tl_stats(fs).thp_available);
	if (sys < 0)
		skip();
	assert_int_equal(tl_stats(fs).thp_available, (uint64_t)sys);
}

/* Writing 8 MiB with huge=always makes >= 8 MiB more AnonHugePages. */
static void test_smaps_huge(void **state)
{
	struct thpfs *fs = TL_FS(state);
	if (tl_thp_sysfs() != 1) {
		print_message("THP disabled in sysfs: nothing to measure\n");
		skip();
	}
	int64_t before = tl_smaps_rollup("AnonHugePages");
	assert_true(before >= 0);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 8 * MIB, 1);
	int64_t after = tl_smaps_rollup("AnonHugePages");
	struct thpfs_stats s = tl_stats(fs);
	print_message("AnonHugePages %" PRId64 " kB -> %" PRId64 " kB, huge_frames %" PRIu64 "\n",
		      before / 1024, after / 1024, s.huge_frames);
	assert_int_equal(s.huge_frames, 4);
	assert_int_equal(s.shmem_huge_bytes, 8 * MIB);
	assert_true(after - before >= (int64_t)(8 * MIB));
	tl_check_pat(f, 0, 8 * MIB, 1);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	/* and they go back */
	int64_t gone = tl_smaps_rollup("AnonHugePages");
	print_message("after unlink: %" PRId64 " kB\n", gone / 1024);
	assert_true(gone <= after - (int64_t)(8 * MIB));
}

/* Whether new chunks of this mount get huge pages. */
static bool mount_is_huge(void **state)
{
	return strstr(TL_FX(state)->opts, "huge=always") && tl_stats(TL_FS(state)).thp_available;
}

static void test_fault_inject(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_stats s0, s1;
	bool huge = mount_is_huge(state);
	char c = 'x';

	tl_write_pat(f, 0, 4 * MIB, 1);
	s0 = tl_stats(fs);

	if (huge) {
		/* a failed huge page falls back to base pages, as in the kernel */
		thpfs_fault_inject(fs, 1, 0);
		assert_int_equal(thpfs_pwrite(f, &c, 1, 6 * MIB), 1);
		s1 = tl_stats(fs);
		assert_int_equal(s1.thp_file_fallback, s0.thp_file_fallback + 1);
		assert_int_equal(s1.huge_frames, s0.huge_frames);
		assert_int_equal(s1.base_pages, s0.base_pages + 1);
		assert_int_equal(tl_blocks(f), 2 * BLK_HPG + BLK_PG);
		assert_int_equal(thpfs_ftruncate(f, 4 * MIB), 0);
		s1 = tl_stats(fs);
		tl_same_memory(&s0, &s1);
		/* failing the fallback too: -ENOMEM, nothing changed */
		thpfs_fault_inject(fs, 1, 1);
		assert_int_equal(thpfs_pwrite(f, &c, 1, 6 * MIB), -ENOMEM);
		thpfs_fault_inject(fs, 0, 0);
	} else {
		/* the next allocation fails: a write into a new chunk */
		thpfs_fault_inject(fs, 1, 0);
		assert_int_equal(thpfs_pwrite(f, &c, 1, 6 * MIB), -ENOMEM);
	}
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	assert_int_equal(tl_size(f), 4 * MIB);
	/* the switch is off (or one-shot and spent): the next one works */
	assert_int_equal(thpfs_pwrite(f, &c, 1, 6 * MIB), 1);
	assert_int_equal(thpfs_ftruncate(f, 4 * MIB), 0);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);

	/* fallocate is all or nothing: allocations from the 3rd one on fail
	 * (8 MiB = 4 chunks, so the first two are taken back) */
	thpfs_fault_inject(fs, 3, 1);
	assert_int_equal(thpfs_fallocate(f, 0, 8 * MIB, 8 * MIB), -ENOMEM);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 8 * MIB, 8 * MIB), -ENOMEM);
	thpfs_fault_inject(fs, 0, 0);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	assert_int_equal(tl_size(f), 4 * MIB);
	if (!huge) {
		/* one-shot on the 3rd of 4 chunks */
		thpfs_fault_inject(fs, 3, 0);
		assert_int_equal(thpfs_fallocate(f, 0, 8 * MIB, 8 * MIB), -ENOMEM);
		s1 = tl_stats(fs);
		tl_same_memory(&s0, &s1);
		assert_int_equal(tl_size(f), 4 * MIB);
	}
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 8 * MIB, 8 * MIB), 0);
	assert_int_equal(thpfs_ftruncate(f, 4 * MIB), 0);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);

	/* every allocation fails until switched off */
	thpfs_fault_inject(fs, 1, 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(thpfs_pwrite(f, &c, 1, (off_t)(10 * MIB + i * HPG)), -ENOMEM);
	struct thpfs_file *g = NULL;
	assert_int_equal(thpfs_open(fs, "/g", O_RDWR | O_CREAT, 0644, &g), 0);
	assert_int_equal(thpfs_pwrite(g, &c, 1, 0), -ENOMEM);
	assert_int_equal(thpfs_fallocate(g, 0, 0, 4096), -ENOMEM);
	assert_int_equal(tl_size(g), 0);
	/* reads and writes into memory already held need no allocation */
	tl_check_pat(f, 0, 4 * MIB, 1);
	assert_int_equal(thpfs_pwrite(f, &c, 1, 5), 1);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	thpfs_fault_inject(fs, 0, 0);
	assert_int_equal(thpfs_pwrite(g, &c, 1, 0), 1);
	tl_close(g);
	assert_int_equal(thpfs_unlink(fs, "/g"), 0);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.shmem_bytes, 0);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 0);
}

/* A multi-chunk write whose allocations fail from the 3rd one on.  The
 * header allows a short count only when the mount is full, so -ENOMEM with
 * nothing changed is the strict reading; a short write of what was stored
 * is also accepted as long as it is self-consistent, and which one happened
 * is printed. */
static void test_fault_inject_long_write(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	size_t len = 8 * MIB;
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	tl_fill(buf, len, 0, 2);
	thpfs_fault_inject(fs, 3, 1);
	ssize_t n = thpfs_pwrite(f, buf, len, 0);
	thpfs_fault_inject(fs, 0, 0);
	free(buf);
	s1 = tl_stats(fs);
	print_message("8 MiB write with allocations failing from the 3rd on returned %zd\n", n);
	if (n < 0) {
		assert_int_equal(n, -ENOMEM);
		assert_int_equal(tl_size(f), 0);
		tl_same_memory(&s0, &s1);
	} else {
		assert_true(n > 0 && (size_t)n < len);
		assert_int_equal(tl_size(f), n);
		tl_check_pat(f, 0, (uint64_t)n, 2);
		assert_int_equal(s1.shmem_bytes, (uint64_t)tl_blocks(f) * 512);
	}
	tl_close(f);
}

/* A migrate split needs memory; when it cannot get it, the punched range
 * is zeroed, the page waits on the deferred queue, and thpfs_reclaim frees
 * it once memory is there. */
static void test_fault_inject_split(void **state)
{
	struct thpfs *fs = TL_FS(state);
	if (!tl_stats(fs).thp_available)
		skip();
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 3);
	struct thpfs_stats s0 = tl_stats(fs), s1;

	thpfs_fault_inject(fs, 1, 1);
	assert_int_equal(thpfs_fallocate(f, PUNCH, 8192, 4096), 0);
	s1 = tl_stats(fs);
	tl_check_pat(f, 0, 8192, 3);
	tl_check_zero(f, 8192, 4096);
	tl_check_pat(f, 12288, 2 * MIB - 12288, 3);
	assert_int_equal(tl_blocks(f), BLK_HPG);
	assert_int_equal(s1.thp_split_page_failed, s0.thp_split_page_failed + 1);
	assert_int_equal(s1.deferred_split_queue, 1);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(thpfs_reclaim(fs, UINT64_MAX), 0);
	thpfs_fault_inject(fs, 0, 0);
	int64_t freed = thpfs_reclaim(fs, UINT64_MAX);
	s1 = tl_stats(fs);
	print_message("reclaim after the fault cleared freed %" PRId64 " bytes\n", freed);
	assert_true(freed >= 4096);
	assert_int_equal(s1.deferred_split_queue, 0);
	assert_int_equal(s1.thp_deferred_split_done, s0.thp_deferred_split_done + 1);
	assert_int_equal(tl_blocks(f), BLK_HPG - BLK_PG);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 511);
	tl_check_pat(f, 0, 8192, 3);
	tl_check_zero(f, 8192, 4096);
	tl_check_pat(f, 12288, 2 * MIB - 12288, 3);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_huge_alloc, "huge=always,collapse=off"),
		TL_TEST(test_thp_available, "huge=always,collapse=off"),
		TL_TEST(test_smaps_huge, "huge=always,collapse=off"),
		TL_TEST(test_fault_inject, "huge=always,collapse=off"),
		TL_TEST(test_fault_inject, "huge=never,collapse=off"),
		TL_TEST(test_fault_inject_long_write, "huge=always,collapse=off"),
		TL_TEST(test_fault_inject_split, "huge=always,split=migrate,collapse=off"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
