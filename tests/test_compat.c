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


static void test_xattr_basic(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	char buf[256], big[65537];
	struct stat st0, st1;

	tl_close(f);
	assert_int_equal(thpfs_stat(fs, "/f", &st0), 0);
	usleep(2000);
	assert_int_equal(thpfs_getxattr(fs, "/f", "user.a", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.b", "two", 3, 0), 0);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.a", "one", 3, THPFS_XATTR_CREATE), 0);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.a", "x", 1, THPFS_XATTR_CREATE), -EEXIST);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.c", "x", 1, THPFS_XATTR_REPLACE), -ENODATA);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.a", "uno!", 4, THPFS_XATTR_REPLACE), 0);
	assert_int_equal(thpfs_setxattr(fs, "/f", "trusted.t", "", 0, 0), 0);
	assert_int_equal(thpfs_setxattr(fs, "/f", "security.s", "sec", 3, 0), 0);
	assert_int_equal(thpfs_stat(fs, "/f", &st1), 0);
	assert_true(st1.st_ctim.tv_sec > st0.st_ctim.tv_sec ||
		    st1.st_ctim.tv_nsec > st0.st_ctim.tv_nsec);

	assert_int_equal(thpfs_getxattr(fs, "/f", "user.a", NULL, 0), 4);
	assert_int_equal(thpfs_getxattr(fs, "/f", "user.a", buf, 3), -ERANGE);
	assert_int_equal(thpfs_getxattr(fs, "/f", "user.a", buf, 4), 4);
	assert_memory_equal(buf, "uno!", 4);
	assert_int_equal(thpfs_getxattr(fs, "/f", "trusted.t", buf, sizeof(buf)), 0);

	/* sorted, each name with its NUL */
	static const char names[] = "security.s\0trusted.t\0user.a\0user.b";
	assert_int_equal(thpfs_listxattr(fs, "/f", NULL, 0), (ssize_t)sizeof(names));
	assert_int_equal(thpfs_listxattr(fs, "/f", buf, sizeof(names) - 1), -ERANGE);
	assert_int_equal(thpfs_listxattr(fs, "/f", buf, sizeof(buf)), (ssize_t)sizeof(names));
	assert_memory_equal(buf, names, sizeof(names));

	assert_int_equal(thpfs_removexattr(fs, "/f", "user.b"), 0);
	assert_int_equal(thpfs_removexattr(fs, "/f", "user.b"), -ENODATA);
	assert_int_equal(thpfs_getxattr(fs, "/f", "user.b", buf, sizeof(buf)), -ENODATA);

	/* limits and namespaces */
	memset(big, 'v', sizeof(big));
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.big", big, 65537, 0), -E2BIG);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.big", big, 65536, 0), 0);
	assert_int_equal(thpfs_getxattr(fs, "/f", "user.big", NULL, 0), 65536);
	char name[300];
	memset(name, 'n', sizeof(name));
	memcpy(name, "user.", 5);
	name[255] = 0;
	assert_int_equal(thpfs_setxattr(fs, "/f", name, "", 0, 0), 0);
	name[255] = 'n';
	name[256] = 0;
	assert_int_equal(thpfs_setxattr(fs, "/f", name, "", 0, 0), -ERANGE);
	assert_int_equal(thpfs_setxattr(fs, "/f", "", "", 0, 0), -ERANGE);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.", "x", 1, 0), -EINVAL);
	assert_int_equal(thpfs_setxattr(fs, "/f", "os2.x", "x", 1, 0), -EOPNOTSUPP);
	assert_int_equal(thpfs_setxattr(fs, "/f", "system.foo", "x", 1, 0), -EOPNOTSUPP);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.x", "x", 1, 3), -EINVAL);
	assert_int_equal(thpfs_setxattr(fs, "/nope", "user.x", "x", 1, 0), -ENOENT);

	/* user. only on regular files and directories; others on anything */
	assert_int_equal(thpfs_symlink(fs, "f", "/l"), 0);
	assert_int_equal(thpfs_mknod(fs, "/p", S_IFIFO | 0600, 0), 0);
	assert_int_equal(thpfs_setxattr(fs, "/l", "user.x", "x", 1, 0), -EPERM);
	assert_int_equal(thpfs_setxattr(fs, "/p", "user.x", "x", 1, 0), -EPERM);
	assert_int_equal(thpfs_getxattr(fs, "/p", "user.x", buf, sizeof(buf)), -ENODATA);
	assert_int_equal(thpfs_setxattr(fs, "/l", "trusted.x", "x", 1, 0), 0);
	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	assert_int_equal(thpfs_setxattr(fs, "/d", "user.x", "dir", 3, 0), 0);

	/* inode-addressed forms */
	assert_int_equal(thpfs_stat(fs, "/d", &st0), 0);
	assert_int_equal(thpfs_getxattr_ino(fs, st0.st_ino, "user.x", buf, sizeof(buf)), 3);
	assert_int_equal(thpfs_setxattr_ino(fs, st0.st_ino, "user.y", "y", 1, 0), 0);
	assert_int_equal(thpfs_listxattr_ino(fs, st0.st_ino, buf, sizeof(buf)), 14);
	assert_int_equal(thpfs_removexattr_ino(fs, st0.st_ino, "user.y"), 0);
	assert_int_equal(thpfs_getxattr_ino(fs, 999999, "user.x", buf, sizeof(buf)), -ENOENT);

	/* everything is freed with the inodes (ASan checks for leaks) */
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	assert_int_equal(thpfs_unlink(fs, "/l"), 0);
}

/* tmpfs's inode space: nr_inodes= x 1024 bytes; an inode takes 1024, an
 * attribute 40 + name + value.  Figures seen on Linux 6.18 tmpfs with
 * nr_inodes=100: a 30000-byte user.b moves df -i from 4 to 33 used. */
static void test_xattr_space(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_statfs sf;
	static char v[65536];
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);

	tl_close(f);
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.files - sf.ffree, 2);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.b", v, 30000, 0), 0);
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.files - sf.ffree, 2 + 30); /* 30046 bytes: 30 inodes' worth */
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.c", v, 65536, 0), 0);
	/* 97 inodes' worth used: a second 64 KiB does not fit */
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.d", v, 65536, 0), -ENOSPC);
	/* replacing charges the new value before the old one goes */
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.c", v, 65536, 0), -ENOSPC);
	assert_int_equal(thpfs_getxattr(fs, "/f", "user.c", NULL, 0), 65536);
	assert_int_equal(thpfs_setxattr(fs, "/f", "user.c", v, 100, 0), 0);
	assert_int_equal(thpfs_removexattr(fs, "/f", "user.b"), 0);
	/* and new inodes see the space: fill it with files */
	int made = 0;
	char name[32];
	for (;;) {
		snprintf(name, sizeof(name), "/g%d", made);
		int ret = thpfs_open(fs, name, O_RDWR | O_CREAT, 0644, &f);
		if (ret)
			break;
		tl_close(f);
		made++;
	}
	assert_int_equal(made, 100 - 2 - 1); /* root, /f, and 146 bytes of user.c */
	assert_int_equal(thpfs_removexattr(fs, "/f", "user.c"), 0);
	assert_int_equal(thpfs_open(fs, "/last", O_RDWR | O_CREAT, 0644, &f), 0);
	tl_close(f);
}

/* An ACL in xattr form from (tag, perm, id) triples. */
static size_t mk_acl(unsigned char *buf, const uint32_t *e, size_t n)
{
	uint32_t v = 2;

	memcpy(buf, &v, 4);
	for (size_t i = 0; i < n; i++) {
		uint16_t tag = (uint16_t)e[3 * i], perm = (uint16_t)e[3 * i + 1];
		uint32_t id = e[3 * i + 2];

		memcpy(buf + 4 + 8 * i, &tag, 2);
		memcpy(buf + 6 + 8 * i, &perm, 2);
		memcpy(buf + 8 + 8 * i, &id, 4);
	}
	return 4 + 8 * n;
}

#define U_OBJ 1, 0xffffffff
#define G_OBJ 4, 0xffffffff
#define MASK 0x10, 0xffffffff
#define OTH 0x20, 0xffffffff

static mode_t mode_of(struct thpfs *fs, const char *path)
{
	struct stat st;

	assert_int_equal(thpfs_stat(fs, path, &st), 0);
	return st.st_mode & 07777;
}

static void test_acl(void **state)
{
	struct thpfs *fs = TL_FS(state);
	unsigned char acl[128], got[128];
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct stat st;
	size_t n;

	tl_close(f);
	/* user::rw- user:1000:r-x group::r-- mask::rwx other::--- */
	const uint32_t a1[] = { 1, 6, 0xffffffff, 2, 5, 1000, 4, 4, 0xffffffff, 0x10, 7, 0xffffffff,
				0x20, 0, 0xffffffff };
	n = mk_acl(acl, a1, 5);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, n, 0), 0);
	assert_int_equal(mode_of(fs, "/f"), 0670); /* group bits from the mask */
	assert_int_equal(thpfs_getxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, got, sizeof(got)),
			 (ssize_t)n);
	assert_memory_equal(got, acl, n);
	/* chmod rewrites user::, mask:: and other:: */
	assert_int_equal(thpfs_stat(fs, "/f", &st), 0);
	st.st_mode = 0741;
	assert_int_equal(thpfs_setattr(fs, st.st_ino, &st, THPFS_SET_MODE, NULL), 0);
	assert_int_equal(thpfs_getxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, got, sizeof(got)),
			 (ssize_t)n);
	const uint32_t a2[] = { 1, 7, 0xffffffff, 2, 5, 1000, 4, 4, 0xffffffff, 0x10, 4, 0xffffffff,
				0x20, 1, 0xffffffff };
	n = mk_acl(acl, a2, 5);
	assert_memory_equal(got, acl, n);
	/* an ACL the mode says all of is not stored; it sets the mode */
	const uint32_t a3[] = { 1, 6, 0xffffffff, 4, 4, 0xffffffff, 0x20, 4, 0xffffffff };
	n = mk_acl(acl, a3, 3);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, n, 0), 0);
	assert_int_equal(mode_of(fs, "/f"), 0644);
	assert_int_equal(thpfs_getxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, got, sizeof(got)),
			 -ENODATA);
	/* invalid ones: named entry without a mask, out of order, bad version */
	const uint32_t b1[] = { 1, 6, 0xffffffff, 2, 5, 1000, 4, 4, 0xffffffff, 0x20, 0, 0xffffffff };
	n = mk_acl(acl, b1, 4);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, n, 0), -EINVAL);
	const uint32_t b2[] = { 4, 4, 0xffffffff, 1, 6, 0xffffffff, 0x20, 0, 0xffffffff };
	n = mk_acl(acl, b2, 3);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, n, 0), -EINVAL);
	acl[0] = 1;
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, n, 0), -EINVAL);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, 7, 0), -EINVAL);
	/* a default ACL only on directories */
	n = mk_acl(acl, a1, 5);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_DEFAULT, acl, n, 0), -EACCES);
	/* KILL_SGID */
	assert_int_equal(thpfs_stat(fs, "/f", &st), 0);
	st.st_mode = 02755;
	assert_int_equal(thpfs_setattr(fs, st.st_ino, &st, THPFS_SET_MODE, NULL), 0);
	assert_int_equal(thpfs_setxattr(fs, "/f", THPFS_XATTR_ACL_ACCESS, acl, n,
					THPFS_XATTR_KILL_SGID), 0);
	assert_int_equal(mode_of(fs, "/f"), 0670);

	/* inheritance: default user::rwx user:1000:rwx group::r-x mask::rwx other::r-x */
	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	assert_int_equal(thpfs_stat(fs, "/d", &st), 0);
	assert_int_equal(thpfs_has_default_acl(fs, st.st_ino), 0);
	const uint32_t d1[] = { 1, 7, 0xffffffff, 2, 7, 1000, 4, 5, 0xffffffff, 0x10, 7, 0xffffffff,
				0x20, 5, 0xffffffff };
	n = mk_acl(acl, d1, 5);
	assert_int_equal(thpfs_setxattr(fs, "/d", THPFS_XATTR_ACL_DEFAULT, acl, n, 0), 0);
	assert_int_equal(thpfs_has_default_acl(fs, st.st_ino), 1);
	assert_int_equal(mode_of(fs, "/d"), 0755); /* a default ACL leaves the mode */
	/* a file created with 0666 (no umask): access ACL masked by the mode */
	assert_int_equal(thpfs_create_at(fs, st.st_ino, "child", O_RDWR, 0666, 0, 0, &f, NULL), 0);
	tl_close(f);
	assert_int_equal(mode_of(fs, "/d/child"), 0664);
	const uint32_t c1[] = { 1, 6, 0xffffffff, 2, 7, 1000, 4, 5, 0xffffffff, 0x10, 6, 0xffffffff,
				0x20, 4, 0xffffffff };
	n = mk_acl(acl, c1, 5);
	assert_int_equal(thpfs_getxattr(fs, "/d/child", THPFS_XATTR_ACL_ACCESS, got, sizeof(got)),
			 (ssize_t)n);
	assert_memory_equal(got, acl, n);
	assert_int_equal(thpfs_getxattr(fs, "/d/child", THPFS_XATTR_ACL_DEFAULT, got, sizeof(got)),
			 -ENODATA);
	/* a subdirectory keeps the default and gets the access ACL */
	assert_int_equal(thpfs_mkdir(fs, "/d/sub", 0777), 0);
	assert_int_equal(mode_of(fs, "/d/sub"), 0775);
	n = mk_acl(acl, d1, 5);
	assert_int_equal(thpfs_getxattr(fs, "/d/sub", THPFS_XATTR_ACL_DEFAULT, got, sizeof(got)),
			 (ssize_t)n);
	assert_memory_equal(got, acl, n);
	assert_int_equal(thpfs_getxattr(fs, "/d/sub", THPFS_XATTR_ACL_ACCESS, NULL, 0), (ssize_t)n);
	/* symlinks get none */
	assert_int_equal(thpfs_symlink(fs, "x", "/d/l"), 0);
	assert_int_equal(thpfs_getxattr(fs, "/d/l", THPFS_XATTR_ACL_ACCESS, NULL, 0), -ENODATA);
	/* a minimal default ACL gives a child an equivalent ACL: none stored */
	n = mk_acl(acl, a3, 3);
	assert_int_equal(thpfs_setxattr(fs, "/d", THPFS_XATTR_ACL_DEFAULT, acl, n, 0), 0);
	assert_int_equal(thpfs_mknod(fs, "/d/p", S_IFIFO | 0666, 0), 0);
	assert_int_equal(mode_of(fs, "/d/p"), 0644);
	assert_int_equal(thpfs_getxattr(fs, "/d/p", THPFS_XATTR_ACL_ACCESS, NULL, 0), -ENODATA);
	/* an empty ACL (header only) removes */
	assert_int_equal(thpfs_setxattr(fs, "/d", THPFS_XATTR_ACL_DEFAULT, acl, 4, 0), 0);
	assert_int_equal(thpfs_getxattr(fs, "/d", THPFS_XATTR_ACL_DEFAULT, NULL, 0), -ENODATA);
}

/* What the kernel asks to reconnect a file handle: "." of any inode, ".."
 * of a directory; and generations that tell inodes apart. */
static void test_handles(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = NULL;
	struct stat st, dir, got;
	uint32_t g1, g2, groot;

	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	assert_int_equal(thpfs_stat(fs, "/d", &dir), 0);
	assert_int_equal(thpfs_create_at(fs, dir.st_ino, "f", O_RDWR, 0644, 0, 0, &f, &st), 0);
	tl_close(f);
	assert_int_equal(thpfs_lookup(fs, st.st_ino, ".", &got), 0); /* a file */
	assert_int_equal(got.st_ino, st.st_ino);
	assert_int_equal(thpfs_lookup(fs, dir.st_ino, ".", &got), 0);
	assert_int_equal(got.st_ino, dir.st_ino);
	assert_int_equal(thpfs_lookup(fs, dir.st_ino, "..", &got), 0);
	assert_int_equal(got.st_ino, THPFS_ROOT_INO);
	assert_int_equal(thpfs_lookup(fs, THPFS_ROOT_INO, "..", &got), 0);
	assert_int_equal(got.st_ino, THPFS_ROOT_INO);
	assert_int_equal(thpfs_lookup(fs, st.st_ino, "..", &got), -ENOTDIR);
	assert_int_equal(thpfs_lookup(fs, 424242, ".", &got), -ENOENT);

	assert_int_equal(thpfs_generation(fs, st.st_ino, &g1), 0);
	assert_int_equal(thpfs_generation(fs, dir.st_ino, &g2), 0);
	assert_int_equal(thpfs_generation(fs, THPFS_ROOT_INO, &groot), 0);
	assert_true(g1 != g2 && g2 != groot);
	assert_int_equal(thpfs_generation(fs, st.st_ino, &g2), 0);
	assert_int_equal(g1, g2); /* fixed for the inode's life */
	/* the file's lookups (create + 3 "." lookups = 2 here) keep it after
	 * unlink; once forgotten it is gone for good */
	assert_int_equal(thpfs_unlink(fs, "/d/f"), 0);
	assert_int_equal(thpfs_lookup(fs, st.st_ino, ".", &got), 0);
	thpfs_forget(fs, st.st_ino, 3);
	assert_int_equal(thpfs_lookup(fs, st.st_ino, ".", &got), -ENOENT);
	assert_int_equal(thpfs_generation(fs, st.st_ino, &g2), -ENOENT);
	/* another mount starts elsewhere: its root's generation differs */
	struct thpfs *fs2 = tl_mount("huge=never");
	assert_int_equal(thpfs_generation(fs2, THPFS_ROOT_INO, &g2), 0);
	assert_true(g2 != groot);
	tl_unmount(fs2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_mknod, "nr_inodes=16"),
		TL_TEST(test_xattr_basic, "huge=always"),
		TL_TEST(test_xattr_space, "nr_inodes=100"),
		TL_TEST(test_acl, "huge=always"),
		TL_TEST(test_handles, "huge=always"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
