/*
 * test_seek.c - lseek with Linux semantics, and SEEK_DATA / SEEK_HOLE /
 * st_blocks mirroring what Linux tmpfs (huge=always) does on this machine:
 *
 *   fallocate(0, 0, 8 MiB) on an empty file: st_blocks 16384, SEEK_DATA(0)
 *     -ENXIO, SEEK_HOLE(0) 0 (fallocated pages are holes, but count);
 *   1 byte written at 4096 of an empty file: st_blocks 4096 (a whole huge
 *     page), SEEK_DATA(0) 0, SEEK_HOLE(0) 4097 (EOF);
 *   then truncate up to 3 MiB: SEEK_HOLE(0) 2 MiB;
 *   punching 4 KiB at 4096 drops st_blocks by 8;
 *   fallocate(KEEP_SIZE, 0, 4 MiB) on size 0: st_blocks 8192, size 0.
 */
#include "testlib.h"

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)

/* Skips a test whose numbers assume 2 MiB pages when the OS gives none. */
static void need_thp(struct thpfs *fs)
{
	if (!tl_stats(fs).thp_available) {
		print_message("transparent huge pages unavailable here: skipping\n");
		skip();
	}
}

static void test_seek_basic(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	/* empty file: nothing to find, position moves freely */
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_END), 0);
	assert_int_equal(thpfs_lseek(f, 100, SEEK_SET), 100);
	assert_int_equal(thpfs_lseek(f, 50, SEEK_CUR), 150);
	assert_int_equal(thpfs_lseek(f, -150, SEEK_CUR), 0);
	assert_int_equal(thpfs_lseek(f, -1, SEEK_CUR), -EINVAL);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 0);
	assert_int_equal(thpfs_lseek(f, 7, 99), -EINVAL);

	tl_write_pat(f, 0, 10000, 1);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_END), 10000);
	assert_int_equal(thpfs_lseek(f, -10000, SEEK_END), 0);
	assert_int_equal(thpfs_lseek(f, 5, SEEK_END), 10005);
	/* data everywhere below EOF, the virtual hole at EOF */
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), 0);
	assert_int_equal(thpfs_lseek(f, 9999, SEEK_DATA), 9999);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), 10000);
	assert_int_equal(thpfs_lseek(f, 9999, SEEK_HOLE), 10000);
	/* at or past EOF: -ENXIO; negative: -ENXIO as in shmem_file_llseek */
	assert_int_equal(thpfs_lseek(f, 10000, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 10000, SEEK_HOLE), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 1 << 30, SEEK_HOLE), -ENXIO);
	assert_int_equal(thpfs_lseek(f, -1, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, -1, SEEK_HOLE), -ENXIO);
	/* SEEK_DATA / SEEK_HOLE move the position */
	assert_int_equal(thpfs_lseek(f, 123, SEEK_DATA), 123);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 123);
	assert_int_equal(thpfs_lseek(f, 123, SEEK_HOLE), 10000);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 10000);
	/* a failed seek leaves it alone */
	assert_int_equal(thpfs_lseek(f, 20000, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 10000);
	tl_close(f);
}

static void test_fallocate_is_hole(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	assert_int_equal(thpfs_fallocate(f, 0, 0, 8 * MIB), 0);
	struct stat st = tl_fstat(f);
	assert_int_equal(st.st_size, 8 * MIB);
	assert_int_equal(st.st_blocks, 16384);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), 0);
	assert_int_equal(thpfs_lseek(f, 5 * MIB + 7, SEEK_HOLE), (off_t)(5 * MIB + 7));
	tl_check_zero(f, 0, 8 * MIB);

	/* writing into the third huge page makes that whole page data */
	tl_write_pat(f, 4 * MIB + 4096, 1, 2);
	assert_int_equal(tl_blocks(f), 16384);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), (off_t)(4 * MIB));
	assert_int_equal(thpfs_lseek(f, 4 * MIB, SEEK_HOLE), (off_t)(6 * MIB));
	assert_int_equal(thpfs_lseek(f, 6 * MIB, SEEK_DATA), -ENXIO);
	tl_check_zero(f, 4 * MIB, 4096);
	tl_check_zero(f, 4 * MIB + 4097, 2 * MIB - 4097);
	tl_close(f);
}

static void test_one_byte_huge(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_stats s0 = tl_stats(fs), s;

	tl_write_pat(f, 4096, 1, 3);
	struct stat st = tl_fstat(f);
	assert_int_equal(st.st_size, 4097);
	assert_int_equal(st.st_blocks, 4096);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), 0);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), 4097);
	s = tl_stats(fs);
	assert_int_equal(s.huge_frames, s0.huge_frames + 1);
	assert_int_equal(s.thp_file_alloc, s0.thp_file_alloc + 1);
	tl_check_zero(f, 0, 4096);
	tl_check_pat(f, 4096, 1, 3);

	/* grow without writing: the rest is a hole */
	assert_int_equal(thpfs_ftruncate(f, 3 * MIB), 0);
	assert_int_equal(tl_blocks(f), 4096);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), (off_t)(2 * MIB));
	assert_int_equal(thpfs_lseek(f, 2 * MIB, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 2 * MIB + 1, SEEK_HOLE), (off_t)(2 * MIB + 1));
	assert_int_equal(thpfs_lseek(f, 1 * MIB, SEEK_DATA), (off_t)(1 * MIB));

	/* punch the written page: 8 blocks fewer, a hole at 4096 */
	assert_int_equal(thpfs_fallocate(f, PUNCH, 4096, 4096), 0);
	assert_int_equal(tl_blocks(f), 4096 - 8);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), 0);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), 4096);
	assert_int_equal(thpfs_lseek(f, 4096, SEEK_DATA), 8192);
	tl_check_zero(f, 0, 3 * MIB);
	tl_close(f);
}

static void test_keep_size(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_thp(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 0, 4 * MIB), 0);
	struct stat st = tl_fstat(f);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_blocks, 8192);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), -ENXIO);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), -ENXIO);
	/* truncating to the same size 0 drops what lies beyond EOF (as
	 * shmem_setattr does for newsize <= oldsize) */
	assert_int_equal(thpfs_ftruncate(f, 0), 0);
	assert_int_equal(tl_blocks(f), 0);
	/* again, then extend over it with a write */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 0, 4 * MIB), 0);
	tl_write_pat(f, 0, 10, 4);
	st = tl_fstat(f);
	assert_int_equal(st.st_size, 10);
	assert_int_equal(st.st_blocks, 8192);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), 10);
	/* reads stop at EOF even though memory lies beyond */
	char buf[64];
	assert_int_equal(thpfs_pread(f, buf, sizeof(buf), 0), 10);
	assert_int_equal(thpfs_ftruncate(f, 3 * MIB), 0);
	tl_check_pat(f, 0, 10, 4);
	tl_check_zero(f, 10, 3 * MIB - 10);
	assert_int_equal(tl_blocks(f), 8192);
	tl_close(f);
}

/* With base pages, SEEK_DATA / SEEK_HOLE work page by page. */
static void test_seek_never(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	tl_write_pat(f, 4096 + 100, 1, 5);
	struct stat st = tl_fstat(f);
	assert_int_equal(st.st_blocks, 8);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), 4096);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), 0);
	assert_int_equal(thpfs_lseek(f, 4096, SEEK_HOLE), 4197);
	tl_write_pat(f, 5 * PG, 2 * PG, 5);
	assert_int_equal(thpfs_lseek(f, 4096, SEEK_HOLE), 8192);
	assert_int_equal(thpfs_lseek(f, 8192, SEEK_DATA), (off_t)(5 * PG));
	assert_int_equal(thpfs_lseek(f, 5 * PG, SEEK_HOLE), (off_t)(7 * PG));
	assert_int_equal(tl_blocks(f), 3 * 8);
	/* fallocated pages count but are holes */
	assert_int_equal(thpfs_fallocate(f, 0, 7 * PG, 3 * PG), 0);
	assert_int_equal(tl_blocks(f), 6 * 8);
	assert_int_equal(thpfs_lseek(f, 5 * PG, SEEK_HOLE), (off_t)(7 * PG));
	assert_int_equal(thpfs_lseek(f, 7 * PG, SEEK_DATA), -ENXIO);
	/* a write into a fallocated page makes it data */
	tl_write_pat(f, 8 * PG + 1, 1, 6);
	assert_int_equal(tl_blocks(f), 6 * 8);
	assert_int_equal(thpfs_lseek(f, 7 * PG, SEEK_DATA), (off_t)(8 * PG));
	assert_int_equal(thpfs_lseek(f, 8 * PG, SEEK_HOLE), (off_t)(9 * PG));
	/* data across a 2 MiB boundary */
	tl_write_pat(f, 2 * MIB - PG, 2 * PG, 7);
	assert_int_equal(thpfs_lseek(f, 9 * PG, SEEK_DATA), (off_t)(2 * MIB - PG));
	assert_int_equal(thpfs_lseek(f, 2 * MIB - PG, SEEK_HOLE), (off_t)(2 * MIB + PG));
	/* punching a page in the middle of data */
	assert_int_equal(thpfs_fallocate(f, PUNCH, 5 * PG, PG), 0);
	assert_int_equal(thpfs_lseek(f, 4 * PG, SEEK_DATA), (off_t)(6 * PG));
	assert_int_equal(thpfs_lseek(f, 6 * PG, SEEK_HOLE), (off_t)(7 * PG));
	assert_int_equal(tl_blocks(f), 7 * 8);
	assert_int_equal(tl_stats(fs).huge_frames, 0);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_seek_basic, "huge=always,collapse=off"),
		TL_TEST(test_fallocate_is_hole, "huge=always,collapse=off"),
		TL_TEST(test_one_byte_huge, "huge=always,collapse=off"),
		TL_TEST(test_keep_size, "huge=always,collapse=off"),
		TL_TEST(test_seek_never, "huge=never"),
		TL_TEST(test_seek_basic, "huge=never"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
