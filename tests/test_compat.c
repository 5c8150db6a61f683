/*
 * test_compat.c - what a tmpfs user expects besides file data: special
 * files (FIFOs, sockets, device nodes), extended attributes with tmpfs's
 * limits, POSIX ACLs stored as xattrs (inheritance, chmod), and the lookups
 * and generation numbers that file handles need.
 */
#include "testlib.h"
#include "internal.h"

#include <sys/sysmacros.h>

/* Which special files a readdir reported with the right type. */
struct seen {
	int fifo, sock, chr, blk;
};

static int seen_fill(void *ctx, const struct thpfs_dirent *de)
{
	struct seen *s = ctx;

	if (!strcmp(de->name, "fifo"))
		s->fifo = de->type == S_IFIFO;
	if (!strcmp(de->name, "sock2"))
		s->sock = de->type == S_IFSOCK;
	if (!strcmp(de->name, "chr"))
		s->chr = de->type == S_IFCHR;
	if (!strcmp(de->name, "blk"))
		s->blk = de->type == S_IFBLK;
	return 0;
}

static void test_mknod(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f;
	struct stat st;
	uint64_t cookie = 0;

	assert_int_equal(thpfs_mknod(fs, "/fifo", S_IFIFO | 0640, 0), 0);
	assert_int_equal(thpfs_mknod(fs, "/sock", S_IFSOCK | 0755, 0), 0);
	assert_int_equal(thpfs_mknod(fs, "/chr", S_IFCHR | 0600, makedev(1, 3)), 0);
	assert_int_equal(thpfs_mknod(fs, "/blk", S_IFBLK | 0600, makedev(8, 1)), 0);
	assert_int_equal(thpfs_mknod(fs, "/reg", S_IFREG | 0644, makedev(9, 9)), 0);
	assert_int_equal(thpfs_mknod(fs, "/dir", S_IFDIR | 0755, 0), -EPERM);
	assert_int_equal(thpfs_mknod(fs, "/lnk", S_IFLNK | 0777, 0), -EINVAL);
	assert_int_equal(thpfs_mknod(fs, "/fifo", S_IFIFO | 0640, 0), -EEXIST);
	assert_int_equal(thpfs_mknod(fs, "/nodir/x", S_IFIFO | 0640, 0), -ENOENT);

	assert_int_equal(thpfs_stat(fs, "/fifo", &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_rdev, 0);
	assert_int_equal(thpfs_stat(fs, "/sock", &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(thpfs_stat(fs, "/chr", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(1, 3));
	assert_int_equal(thpfs_stat(fs, "/blk", &st), 0);
	assert_true(S_ISBLK(st.st_mode));
	assert_int_equal(st.st_rdev, makedev(8, 1));
	assert_int_equal(thpfs_stat(fs, "/reg", &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_rdev, 0);

	/* nothing of thpfs's to open; a regular file made by mknod opens */
	assert_int_equal(thpfs_open(fs, "/fifo", O_RDONLY, 0, &f), -ENXIO);
	assert_int_equal(thpfs_open(fs, "/chr", O_RDWR, 0, &f), -ENXIO);
	f = tl_open(fs, "/reg", O_RDWR);
	tl_close(f);

	/* links, renames, chmod work on them; readdir reports their type */
	assert_int_equal(thpfs_link(fs, "/chr", "/chr2"), 0);
	assert_int_equal(thpfs_rename(fs, "/sock", "/sock2", 0), 0);
	assert_int_equal(thpfs_stat(fs, "/chr2", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(st.st_rdev, makedev(1, 3));
	struct seen seen = { 0 };

	assert_int_equal(thpfs_readdir(fs, "/", &cookie, seen_fill, &seen), 0);
	assert_true(seen.fifo && seen.sock && seen.chr && seen.blk);

	/* inode-addressed form: owner and lookup reference */
	assert_int_equal(thpfs_mknod_at(fs, THPFS_ROOT_INO, "at", S_IFCHR | 0620, makedev(4, 5),
					 12, 34, &st), 0);
	assert_int_equal(st.st_uid, 12);
	assert_int_equal(st.st_gid, 34);
	assert_int_equal(st.st_rdev, makedev(4, 5));
	assert_int_equal(thpfs_unlink(fs, "/at"), 0);
	assert_int_equal(thpfs_getattr(fs, st.st_ino, &st), 0); /* the lookup holds it */
	thpfs_forget(fs, st.st_ino, 1);
	assert_int_equal(thpfs_getattr(fs, st.st_ino, &st), -ENOENT);

	/* nr_inodes= counts them like any inode */
	assert_int_equal(thpfs_unlink(fs, "/fifo"), 0);
	assert_int_equal(thpfs_unlink(fs, "/chr"), 0);
	assert_int_equal(thpfs_unlink(fs, "/chr2"), 0);
	assert_int_equal(thpfs_unlink(fs, "/blk"), 0);
	assert_int_equal(thpfs_unlink(fs, "/sock2"), 0);
	assert_int_equal(thpfs_unlink(fs, "/reg"), 0);
	assert_int_equal(tl_stats(fs).inodes, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_mknod, "nr_inodes=16"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
