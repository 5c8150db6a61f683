/*
 * test_lazy.c - thpfs_free_lazy: a range that reads as zeros at once but
 * gives its memory back only when the mount needs it (thpfs_reclaim, or a
 * write that would pass size=).
 */

#include "testlib.h"

#define MIB (1024ULL * 1024)
#define PG 4096ULL

/* Scattered 4 KiB pages freed lazily: zeros at once, memory and huge pages
 * kept; thpfs_reclaim gives exactly those pages back and splits then. */
static void test_lazy_then_reclaim(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/ram", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 4 * MIB, 1);
	int64_t blocks = tl_blocks(f);
	struct thpfs_stats s0 = tl_stats(fs);

	for (uint64_t off = 0; off < 4 * MIB; off += 64 * PG)
		assert_int_equal(thpfs_free_lazy(f, (off_t)off, PG), 0);
	/* reads zeros at once, everything else intact */
	for (uint64_t off = 0; off < 4 * MIB; off += 64 * PG) {
		tl_check_zero(f, off, PG);
		tl_check_pat(f, off + PG, 63 * PG, 1);
	}
	struct thpfs_stats s1 = tl_stats(fs);
	assert_int_equal(tl_blocks(f), blocks);
	assert_int_equal(s1.huge_frames, s0.huge_frames);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0));
	assert_int_equal(s1.deferred_split_queue, 2);

	int64_t freed = thpfs_reclaim(fs, 0);
	assert_true(freed >= (int64_t)(16 * PG));
	struct thpfs_stats s2 = tl_stats(fs);
	assert_int_equal(tl_blocks(f), blocks - 16 * (PG / 512));
	assert_int_equal(s2.huge_frames, s0.huge_frames - 2);
	assert_int_equal(tl_splits(&s2), tl_splits(&s0) + 2);
	assert_int_equal(s2.deferred_split_queue, 0);
	assert_int_equal(s2.shmem_bytes, s0.shmem_bytes - 16 * PG);
	for (uint64_t off = 0; off < 4 * MIB; off += 64 * PG) {
		tl_check_zero(f, off, PG);
		tl_check_pat(f, off + PG, 63 * PG, 1);
	}
	tl_close(f);
}

/* A page written again before reclaim is data again and stays. */
static void test_lazy_rewrite_keeps(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/ram", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 2);
	assert_int_equal(thpfs_free_lazy(f, 0, 8 * PG), 0);
	tl_write_pat(f, 3 * PG, PG, 3);
	thpfs_reclaim(fs, 0);
	tl_check_zero(f, 0, 3 * PG);
	tl_check_pat(f, 3 * PG, PG, 3);
	tl_check_zero(f, 4 * PG, 4 * PG);
	tl_check_pat(f, 8 * PG, 2 * MIB - 8 * PG, 2);
	assert_int_equal(tl_blocks(f), (int64_t)((2 * MIB - 7 * PG) / 512));
	tl_close(f);
}

/* size= pressure frees lazily freed memory before failing a write. */
static void test_lazy_under_pressure(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = tl_open(fs, "/a", O_RDWR | O_CREAT);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	tl_write_pat(a, 0, 4 * MIB, 4);
	assert_int_equal(thpfs_free_lazy(a, (off_t)MIB, (off_t)MIB), 0);
	/* the mount is full (4 MiB): the write must reclaim the lazy MiB */
	tl_write_pat(b, 0, MIB, 5);
	tl_check_pat(a, 0, MIB, 4);
	tl_check_zero(a, MIB, MIB);
	tl_check_pat(a, 2 * MIB, 2 * MIB, 4);
	tl_check_pat(b, 0, MIB, 5);
	struct thpfs_statfs sf;
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_true(sf.bfree <= sf.blocks);
	tl_close(a);
	tl_close(b);
}

static void test_lazy_bad_args(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_free_lazy(f, -1, PG), -EINVAL);
	assert_int_equal(thpfs_free_lazy(f, 0, 0), -EINVAL);
	/* as a punch: clamped to the largest file; EFBIG past LLONG_MAX */
	assert_int_equal(thpfs_free_lazy(f, 0, (off_t)(1ULL << 62)), 0);
	assert_int_equal(thpfs_free_lazy(f, 1, INT64_MAX), -EFBIG);
	assert_int_equal(thpfs_free_lazy(NULL, 0, PG), -EBADF);
	tl_close(f);
	struct thpfs_file *r = tl_open(fs, "/f", O_RDONLY);
	assert_int_equal(thpfs_free_lazy(r, 0, PG), -EBADF);
	tl_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_lazy_then_reclaim, "huge=always,collapse=off"),
		TL_TEST(test_lazy_then_reclaim, "huge=always,collapse=off,split=migrate"),
		TL_TEST(test_lazy_rewrite_keeps, "huge=always,collapse=off"),
		TL_TEST(test_lazy_rewrite_keeps, "huge=never,collapse=off"),
		TL_TEST(test_lazy_under_pressure, "huge=always,collapse=off,size=4m"),
		TL_TEST(test_lazy_bad_args, NULL),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
