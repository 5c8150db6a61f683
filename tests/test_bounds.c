/*
 * test_bounds.c - size= and nr_inodes= bound metadata too (issue 8, item 9).
 *
 * Counted as the kernel's tmpfs counts them (mm/shmem.c), checked against a
 * real tmpfs mount on Linux 6.18 (size=64m,nr_inodes=100):
 *  - every hard link past an inode's first takes an inode from nr_inodes=
 *    (shmem_link reserves one; shmem_unlink gives it back while links
 *    remain): with the root and one file, 98 links fit and the 99th fails
 *    with ENOSPC; removing two links lets one more in.
 *  - a symlink target of 128 bytes or more (129 with its NUL; tmpfs keeps
 *    up to SHORT_SYMLINK_LEN = 128 inline) takes a 4 KiB page from size=:
 *    30,000 targets of 4095 bytes on size=64m stop at 16,384.
 *  - a base block (2 MiB of address space with some 4 KiB pages) costs the
 *    kernel a 4 KiB page-table page; that is charged to size= too, so a file
 *    of one 4 KiB page in each of many 2 MiB ranges cannot make the daemon
 *    hold twice size=.  Judged by a child memory cgroup (tools/cgroup.h),
 *    skipped when none can be made.
 */
#include "testlib.h"
#include "internal.h"
#include "cgroup.h"

#include <inttypes.h>

static uint64_t statfs_ffree(struct thpfs *fs)
{
	struct thpfs_statfs sf;
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	return sf.ffree;
}

static uint64_t statfs_bfree(struct thpfs *fs)
{
	struct thpfs_statfs sf;
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	return sf.bfree;
}

/* ---- hard links and nr_inodes= ---- */

static void test_links_take_inodes(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char name[32];
	int n = 0, r;

	tl_close(tl_open(fs, "/f", O_RDWR | O_CREAT));
	assert_int_equal(statfs_ffree(fs), 98); /* the root and /f */
	for (;;) {
		snprintf(name, sizeof(name), "/l%d", n);
		r = thpfs_link(fs, "/f", name);
		if (r)
			break;
		n++;
		if (n > 1000)
			fail_msg("1000 links on nr_inodes=100");
	}
	print_message("%d links fit (tmpfs: 98)\n", n);
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(n, 98);
	assert_int_equal(statfs_ffree(fs), 0);
	/* a new inode does not fit either */
	struct thpfs_file *g;
	assert_int_equal(thpfs_open(fs, "/g", O_RDWR | O_CREAT, 0644, &g), -ENOSPC);
	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), -ENOSPC);
	assert_int_equal(thpfs_symlink(fs, "f", "/s"), -ENOSPC);

	/* unlinking gives the link's inode back */
	assert_int_equal(thpfs_unlink(fs, "/l0"), 0);
	assert_int_equal(thpfs_unlink(fs, "/l1"), 0);
	assert_int_equal(statfs_ffree(fs), 2);
	assert_int_equal(thpfs_link(fs, "/f", "/again"), 0);
	assert_int_equal(statfs_ffree(fs), 1);
	/* rename over another name of the same inode changes nothing */
	assert_int_equal(thpfs_rename(fs, "/l2", "/l3", 0), 0);
	assert_int_equal(statfs_ffree(fs), 1);
	/* rename of another file over a hard link gives that link back */
	tl_close(tl_open(fs, "/g", O_RDWR | O_CREAT));
	assert_int_equal(statfs_ffree(fs), 0);
	assert_int_equal(thpfs_rename(fs, "/g", "/l3", 0), 0);
	assert_int_equal(statfs_ffree(fs), 1);

	struct stat st;
	assert_int_equal(thpfs_stat(fs, "/f", &st), 0);
	for (int i = 0; i < n; i++) {
		if (i == 3)
			continue; /* now the former /g */
		snprintf(name, sizeof(name), "/l%d", i);
		r = thpfs_unlink(fs, name);
		assert_true(r == 0 || r == -ENOENT);
	}
	assert_int_equal(thpfs_unlink(fs, "/again"), 0);
	assert_int_equal(thpfs_stat(fs, "/f", &st), 0);
	assert_int_equal(st.st_nlink, 1);
	assert_int_equal(statfs_ffree(fs), 97); /* the root, /f and /l3 (was /g) */
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	assert_int_equal(statfs_ffree(fs), 98);
}

/* The inode-addressed calls the daemon uses count the same way. */
static void test_link_at_takes_inodes(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f;
	struct stat st;
	char name[32];
	int n = 0, r;

	assert_int_equal(thpfs_create_at(fs, THPFS_ROOT_INO, "f", O_RDWR, 0644, 0, 0, &f, &st), 0);
	tl_close(f);
	while ((r = thpfs_link_at(fs, st.st_ino, THPFS_ROOT_INO,
				  (snprintf(name, sizeof(name), "l%d", n), name), NULL)) == 0)
		if (++n > 1000)
			fail_msg("1000 links on nr_inodes=10");
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(n, 8);
	assert_int_equal(thpfs_unlink_at(fs, THPFS_ROOT_INO, "l0"), 0);
	assert_int_equal(thpfs_link_at(fs, st.st_ino, THPFS_ROOT_INO, "x", NULL), 0);
	/* the create and the links were lookups (FUSE counts the replies) */
	thpfs_forget(fs, st.st_ino, (uint64_t)n + 2);
}

/* ---- symlink targets and size= ---- */

static int symlink_n(struct thpfs *fs, const char *target, int i)
{
	char name[32];
	snprintf(name, sizeof(name), "/s%d", i);
	return thpfs_symlink(fs, target, name);
}

static void test_long_symlinks_take_pages(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *t = malloc(THPFS_PATH_MAX);
	assert_non_null(t);
	uint64_t free0 = statfs_bfree(fs);
	assert_int_equal(free0, 64 * MIB / PG);

	/* 127 bytes stay inline, 128 take a page (as on tmpfs) */
	memset(t, 'a', 127);
	t[127] = 0;
	assert_int_equal(symlink_n(fs, t, 0), 0);
	assert_int_equal(statfs_bfree(fs), free0);
	memset(t, 'b', 128);
	t[128] = 0;
	assert_int_equal(symlink_n(fs, t, 1), 0);
	assert_int_equal(statfs_bfree(fs), free0 - 1);
	assert_int_equal(thpfs_unlink(fs, "/s0"), 0);
	assert_int_equal(thpfs_unlink(fs, "/s1"), 0);
	assert_int_equal(statfs_bfree(fs), free0);

	memset(t, 'c', THPFS_PATH_MAX - 1);
	t[THPFS_PATH_MAX - 1] = 0;
	int n = 0, r = 0;
	for (; n < 30000; n++) {
		r = symlink_n(fs, t, n);
		if (r)
			break;
	}
	print_message("%d symlinks of %d bytes fit in size=64m (tmpfs: 16384)\n", n,
		      THPFS_PATH_MAX - 1);
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(n, 16384);
	assert_int_equal(statfs_bfree(fs), 0);
	/* no room for data either */
	struct thpfs_file *f = tl_open(fs, "/data", O_RDWR | O_CREAT);
	char c = 'x';
	assert_int_equal(thpfs_pwrite(f, &c, 1, 0), -ENOSPC);
	/* removing one makes room for one page */
	assert_int_equal(thpfs_unlink(fs, "/s7"), 0);
	assert_int_equal(thpfs_pwrite(f, &c, 1, 0), 1);
	assert_int_equal(symlink_n(fs, t, 7), -ENOSPC);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/data"), 0);
	assert_int_equal(symlink_n(fs, t, 7), 0);
	/* a short target needs no page */
	assert_int_equal(thpfs_symlink(fs, "short", "/short"), 0);
	free(t);
}

/* ---- page tables of sparse base blocks ---- */

/* A file of exactly size= bytes in base pages still fits: the page tables
 * of densely filled blocks are allowed for on top of size=. */
static void test_dense_base_file_fits(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/dense", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 8 * MIB, 1);
	char c = 'x';
	assert_int_equal(thpfs_pwrite(f, &c, 1, (off_t)(8 * MIB)), -ENOSPC);
	tl_check_pat(f, 0, 8 * MIB, 1);
	tl_close(f);
}

/* One page in each 2 MiB range: the daemon's page tables would match the
 * data; they are charged, so at most about half the pages fit. */
static void test_sparse_blocks_charged(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/sparse", O_RDWR | O_CREAT);
	char c = 'x';
	uint64_t n = 0;
	ssize_t r;
	while ((r = thpfs_pwrite(f, &c, 1, (off_t)(n * HPG))) == 1)
		n++;
	assert_int_equal(r, -ENOSPC);
	print_message("size=8m: %" PRIu64 " sparse pages fit (data alone: 2048)\n", n);
	/* 8 KiB each (page + page table), within the page-table allowance */
	assert_true(n * 2 * PG <= 8 * MIB + 4 * PG);
	assert_true(n * 2 * PG >= 8 * MIB - 2 * PG);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/sparse"), 0);
	_thpfs_release_flush(fs);
	assert_int_equal(statfs_bfree(fs), 8 * MIB / PG);
	/* the blocks' page-table charges went with them */
	f = tl_open(fs, "/dense", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 8 * MIB, 2);
	tl_close(f);
}

#define SPARSE_SIZE (64 * MIB)
/* Memory the daemon may hold past size= for this file: the chunk structs
 * and the index (about 300 bytes per 2 MiB range, not charged, as tmpfs
 * does not charge its struct pages) and the allocator's slack; under
 * AddressSanitizer also the redzones and shadow of those.  Without the
 * page-table charge the file holds twice size= (128 MiB measured). */
#ifdef TL_ASAN
#define SPARSE_SLACK (16 * MIB)
#else
#define SPARSE_SLACK (8 * MIB)
#endif

/*
 * Judged by the kernel: a file of one 4 KiB page in each of many 2 MiB ranges
 * hits ENOSPC while the cgroup's usage is still below size= plus a small
 * constant; after unlink the page tables are gone from the cgroup too.
 */
static void test_sparse_blocks_cgroup(void **state)
{
	struct tl_cg_fx *fx = *state;
	tl_cg_start(fx, "thpfs-bounds", true);
	fx->fs = tl_mount("huge=never,collapse=off,size=64m");
	struct thpfs_file *f = tl_open(fx->fs, "/sparse", O_RDWR | O_CREAT);
	int64_t before = thpfs_cg_usage(&fx->cg);
	assert_true(before > 0);
	char c = 'x';
	uint64_t n = 0;
	ssize_t w;
	while ((w = thpfs_pwrite(f, &c, 1, (off_t)(n * HPG))) == 1)
		if (++n > 2 * SPARSE_SIZE / PG)
			fail_msg("no ENOSPC");
	assert_int_equal(w, -ENOSPC);
	int64_t full = thpfs_cg_usage(&fx->cg);
	print_message("%" PRIu64 " sparse pages on size=64m: cgroup usage grew by %.1f MiB\n", n,
		      (full - before) / (double)MIB);
	assert_true(full - before <= (int64_t)(SPARSE_SIZE + SPARSE_SLACK));
	tl_close(f);
	assert_int_equal(thpfs_unlink(fx->fs, "/sparse"), 0);
	_thpfs_release_flush(fx->fs);
	/* the kernel frees page tables after an RCU grace period: give the
	 * uncharge a moment */
	int64_t after = thpfs_cg_usage(&fx->cg);
	for (int i = 0; i < 200 && after - before > (int64_t)SPARSE_SLACK; i++) {
		usleep(10000);
		after = thpfs_cg_usage(&fx->cg);
	}
	print_message("after unlink: %.1f MiB above the start\n", (after - before) / (double)MIB);
	/* free slots keep no page tables */
	assert_true(after - before <= (int64_t)SPARSE_SLACK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* first, before the other tests leave heap charged elsewhere */
		cmocka_unit_test_setup_teardown(test_sparse_blocks_cgroup, tl_cg_setup, tl_cg_teardown),
		TL_TEST(test_links_take_inodes, "nr_inodes=100"),
		TL_TEST(test_link_at_takes_inodes, "nr_inodes=10"),
		TL_TEST(test_long_symlinks_take_pages, "size=64m"),
		TL_TEST(test_dense_base_file_fits, "huge=never,collapse=off,size=8m"),
		TL_TEST(test_sparse_blocks_charged, "huge=never,collapse=off,size=8m"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
