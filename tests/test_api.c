/*
 * test_api.c - the POSIX-like API of libthpfs: open flags, I/O positions,
 * bad descriptors, unlink while open, the namespace calls, stat fields, bad
 * input, mount options and the size= / nr_inodes= limits.
 */
#include "testlib.h"
#include "internal.h"

#include <pthread.h>
#include <sys/wait.h>
#include <time.h>

static const char *thp_opts(void)
{
	return "huge=always,collapse=off";
}

/* True when the mount really hands out 2 MiB pages. */
static bool has_thp(struct thpfs *fs)
{
	return tl_stats(fs).thp_available != 0;
}

static void write_str(struct thpfs_file *f, const char *s, off_t off)
{
	assert_int_equal(thpfs_pwrite(f, s, strlen(s), off), (ssize_t)strlen(s));
}

static void check_str(struct thpfs_file *f, const char *s, off_t off)
{
	char buf[256] = "";
	size_t n = strlen(s);
	assert_true(n < sizeof(buf));
	assert_int_equal(thpfs_pread(f, buf, n, off), (ssize_t)n);
	buf[n] = 0;
	assert_string_equal(buf, s);
}

static void test_open_flags(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = NULL, *g = NULL;
	struct stat st;
	char buf[16];

	assert_int_equal(thpfs_open(fs, "/a", O_RDWR, 0644, &f), -ENOENT);
	assert_int_equal(thpfs_open(fs, "/a", O_RDWR | O_CREAT, 0640, &f), 0);
	st = tl_fstat(f);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_blocks, 0);
	write_str(f, "hello", 0);
	tl_close(f);

	/* O_EXCL on an existing name, with and without O_CREAT semantics */
	assert_int_equal(thpfs_open(fs, "/a", O_RDWR | O_CREAT | O_EXCL, 0644, &f), -EEXIST);
	assert_int_equal(thpfs_open(fs, "/b", O_RDWR | O_CREAT | O_EXCL, 0644, &g), 0);
	tl_close(g);

	/* O_CREAT on an existing file opens it without truncating */
	f = tl_open(fs, "/a", O_RDWR | O_CREAT);
	check_str(f, "hello", 0);
	assert_int_equal(tl_size(f), 5);
	tl_close(f);

	/* O_TRUNC empties it and frees its memory */
	f = tl_open(fs, "/a", O_RDWR | O_TRUNC);
	st = tl_fstat(f);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_blocks, 0);
	write_str(f, "abc", 0);
	tl_close(f);

	/* O_APPEND: every write lands at EOF whatever the offset */
	f = tl_open(fs, "/a", O_WRONLY | O_APPEND);
	write_str(f, "XY", 0);
	assert_int_equal(thpfs_write(f, "Z", 1), 1);
	tl_close(f);
	f = tl_open(fs, "/a", O_RDONLY);
	check_str(f, "abcXYZ", 0);
	assert_int_equal(tl_size(f), 6);

	/* O_RDONLY: no writes of any kind */
	assert_int_equal(thpfs_pwrite(f, "q", 1, 0), -EBADF);
	assert_int_equal(thpfs_write(f, "q", 1), -EBADF);
	assert_int_equal(thpfs_fallocate(f, 0, 0, 4096), -EBADF);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, 0, 4096),
			 -EBADF);
	check_str(f, "abcXYZ", 0);
	tl_close(f);

	/* O_WRONLY: no reads */
	f = tl_open(fs, "/a", O_WRONLY);
	assert_int_equal(thpfs_pread(f, buf, sizeof(buf), 0), -EBADF);
	assert_int_equal(thpfs_read(f, buf, sizeof(buf)), -EBADF);
	tl_close(f);

	/* directories */
	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	assert_int_equal(thpfs_open(fs, "/a", O_RDONLY | O_DIRECTORY, 0, &f), -ENOTDIR);
	assert_int_equal(thpfs_open(fs, "/d", O_WRONLY, 0, &f), -EISDIR);
	assert_int_equal(thpfs_open(fs, "/d", O_RDWR, 0, &f), -EISDIR);
	assert_int_equal(thpfs_open(fs, "/d", O_RDONLY | O_DIRECTORY, 0, &f), 0);
	tl_close(f);
	assert_int_equal(thpfs_open(fs, "/", O_RDONLY | O_DIRECTORY, 0, &f), 0);
	tl_close(f);

	/* O_NOFOLLOW on a symbolic link */
	assert_int_equal(thpfs_symlink(fs, "/a", "/s"), 0);
	assert_int_equal(thpfs_open(fs, "/s", O_RDONLY | O_NOFOLLOW, 0, &f), -ELOOP);
}

static void test_positions(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/p", O_RDWR | O_CREAT);
	char buf[32];

	assert_int_equal(thpfs_write(f, "0123456789", 10), 10);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 10);
	assert_int_equal(thpfs_write(f, "abc", 3), 3);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 13);
	assert_int_equal(thpfs_lseek(f, 2, SEEK_SET), 2);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(thpfs_read(f, buf, 4), 4);
	assert_string_equal(buf, "2345");
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 6);
	assert_int_equal(thpfs_lseek(f, -3, SEEK_END), 10);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(thpfs_read(f, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "abc");
	/* at EOF */
	assert_int_equal(thpfs_read(f, buf, sizeof(buf)), 0);
	assert_int_equal(thpfs_pread(f, buf, sizeof(buf), 13), 0);
	assert_int_equal(thpfs_pread(f, buf, sizeof(buf), 1 << 30), 0);
	/* pread/pwrite do not move the position */
	assert_int_equal(thpfs_lseek(f, 5, SEEK_SET), 5);
	assert_int_equal(thpfs_pwrite(f, "Q", 1, 0), 1);
	assert_int_equal(thpfs_pread(f, buf, 1, 1), 1);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), 5);
	/* lseek past EOF then write leaves a zero gap */
	assert_int_equal(thpfs_lseek(f, 5 * MIB, SEEK_SET), (off_t)(5 * MIB));
	assert_int_equal(thpfs_write(f, "end", 3), 3);
	assert_int_equal(tl_size(f), (int64_t)(5 * MIB + 3));
	tl_check_zero(f, 13, 5 * MIB - 13);
	check_str(f, "Q123456789abc", 0);
	/* bad whence, negative results */
	assert_int_equal(thpfs_lseek(f, 0, 42), -EINVAL);
	assert_int_equal(thpfs_lseek(f, -1, SEEK_SET), -EINVAL);
	assert_int_equal(thpfs_lseek(f, -(off_t)(6 * MIB), SEEK_END), -EINVAL);
	assert_int_equal(thpfs_lseek(f, 0, SEEK_CUR), (off_t)(5 * MIB + 3));
	assert_int_equal(thpfs_fsync(f), 0);
	tl_close(f);
}

/* Closing a file description and using it again, in a child process: the
 * use must fail with -EBADF (the struct may be gone, so a sanitizer would
 * flag it as a use after free; the child keeps that from killing the whole
 * test binary and the test fails with its exit status instead). */
static void test_close_then_use(void **state)
{
	struct thpfs *fs = tl_mount("huge=always,collapse=off");
	char buf[8];
	uint64_t fake[64];

	(void)state;
	assert_true(sizeof(fake) >= sizeof(struct thpfs_file));
	memset(fake, 0, sizeof(fake));
	assert_int_equal(thpfs_pread(NULL, buf, 1, 0), -EBADF);
	assert_int_equal(thpfs_pwrite(NULL, buf, 1, 0), -EBADF);
	assert_int_equal(thpfs_close(NULL), -EBADF);
	assert_int_equal(thpfs_fsync(NULL), -EBADF);
	assert_int_equal(thpfs_pread((struct thpfs_file *)fake, buf, 1, 0), -EBADF);
	assert_int_equal(thpfs_fstat((struct thpfs_file *)fake, &(struct stat){0}), -EBADF);
	assert_int_equal(thpfs_ftruncate((struct thpfs_file *)fake, 0), -EBADF);

	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct thpfs_file *f = NULL;
		struct stat st;
		if (thpfs_open(fs, "/c", O_RDWR | O_CREAT, 0644, &f) || thpfs_close(f))
			_exit(10);
		if (thpfs_pread(f, buf, 1, 0) != -EBADF)
			_exit(11);
		if (thpfs_pwrite(f, "x", 1, 0) != -EBADF)
			_exit(12);
		if (thpfs_fstat(f, &st) != -EBADF)
			_exit(13);
		if (thpfs_close(f) != -EBADF)
			_exit(14);
		_exit(0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("child using a closed file: %s %d (10 open/close failed, 11 pread, 12 pwrite, "
			 "13 fstat, 14 double close did not return -EBADF; a signal or 23 is a "
			 "sanitizer report)",
			 WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	tl_unmount(fs);
}

static void test_unlink_while_open(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_stats s0 = tl_stats(fs), s;
	struct thpfs_file *f = tl_open(fs, "/u", O_RDWR | O_CREAT);
	struct stat st;

	tl_write_pat(f, 0, 4 * MIB, 7);
	s = tl_stats(fs);
	assert_int_equal(s.shmem_bytes, 4 * MIB);
	assert_int_equal(s.inodes, s0.inodes + 1);
	assert_int_equal(thpfs_unlink(fs, "/u"), 0);
	assert_int_equal(thpfs_stat(fs, "/u", &st), -ENOENT);
	assert_int_equal(thpfs_unlink(fs, "/u"), -ENOENT);
	st = tl_fstat(f);
	assert_int_equal(st.st_nlink, 0);
	assert_int_equal(st.st_size, 4 * MIB);
	tl_check_pat(f, 0, 4 * MIB, 7);
	/* still writable, memory still held */
	tl_write_pat(f, 4 * MIB, 4096, 7);
	s = tl_stats(fs);
	assert_true(s.shmem_bytes >= 4 * MIB + 4096);
	assert_int_equal(s.inodes, s0.inodes + 1);
	/* a new file of the same name is another inode */
	struct thpfs_file *g = tl_open(fs, "/u", O_RDWR | O_CREAT | O_EXCL);
	assert_int_equal(tl_size(g), 0);
	assert_int_not_equal(tl_fstat(g).st_ino, st.st_ino);
	tl_close(g);
	assert_int_equal(thpfs_unlink(fs, "/u"), 0);
	tl_close(f);
	s = tl_stats(fs);
	assert_int_equal(s.shmem_bytes, 0);
	assert_int_equal(s.huge_frames, 0);
	assert_int_equal(s.base_pages, 0);
	assert_int_equal(s.inodes, s0.inodes);
}

static void test_dirs(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct stat st, st2;
	struct thpfs_file *f;

	assert_int_equal(thpfs_stat(fs, "/", &st), 0);
	assert_int_equal(st.st_ino, THPFS_ROOT_INO);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_nlink, 2);

	assert_int_equal(thpfs_mkdir(fs, "/d", 0750), 0);
	assert_int_equal(thpfs_mkdir(fs, "/d", 0750), -EEXIST);
	assert_int_equal(thpfs_mkdir(fs, "/nope/x", 0750), -ENOENT);
	assert_int_equal(thpfs_stat(fs, "/d", &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(thpfs_stat(fs, "/", &st), 0);
	assert_int_equal(st.st_nlink, 3);

	assert_int_equal(thpfs_mkdir(fs, "/d/e", 0755), 0);
	assert_int_equal(thpfs_stat(fs, "/d", &st), 0);
	assert_int_equal(st.st_nlink, 3);
	/* "." and ".." and trailing slashes resolve */
	assert_int_equal(thpfs_stat(fs, "/d/e/../../d/./e/", &st2), 0);
	assert_int_equal(thpfs_stat(fs, "/d/e", &st), 0);
	assert_int_equal(st.st_ino, st2.st_ino);
	assert_int_equal(thpfs_stat(fs, "/d/", &st), 0);
	assert_true(S_ISDIR(st.st_mode));

	f = tl_open(fs, "/d/file", O_RDWR | O_CREAT);
	tl_close(f);
	assert_int_equal(thpfs_stat(fs, "/d/file/", &st), -ENOTDIR);
	assert_int_equal(thpfs_stat(fs, "/d/file/x", &st), -ENOTDIR);
	assert_int_equal(thpfs_mkdir(fs, "/d/file/x", 0755), -ENOTDIR);
	assert_int_equal(thpfs_open(fs, "/d/file/x", O_RDWR | O_CREAT, 0644, &f), -ENOTDIR);

	assert_int_equal(thpfs_rmdir(fs, "/d"), -ENOTEMPTY);
	assert_int_equal(thpfs_rmdir(fs, "/d/file"), -ENOTDIR);
	assert_int_equal(thpfs_unlink(fs, "/d/e"), -EISDIR);
	assert_int_equal(thpfs_rmdir(fs, "/d/missing"), -ENOENT);
	assert_int_equal(thpfs_rmdir(fs, "/d/e"), 0);
	assert_int_equal(thpfs_stat(fs, "/d/e", &st), -ENOENT);
	assert_int_equal(thpfs_stat(fs, "/d", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(thpfs_unlink(fs, "/d/file"), 0);
	assert_int_equal(thpfs_rmdir(fs, "/d"), 0);
	assert_int_equal(thpfs_stat(fs, "/", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(tl_stats(fs).inodes, 1);
}

static void test_rename(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f;
	struct stat st, sa, sb;

	f = tl_open(fs, "/a", O_RDWR | O_CREAT);
	write_str(f, "AAAA", 0);
	tl_close(f);
	f = tl_open(fs, "/b", O_RDWR | O_CREAT);
	write_str(f, "BB", 0);
	tl_close(f);
	assert_int_equal(thpfs_stat(fs, "/a", &sa), 0);
	assert_int_equal(thpfs_stat(fs, "/b", &sb), 0);
	uint64_t inodes = tl_stats(fs).inodes;

	assert_int_equal(thpfs_rename(fs, "/missing", "/x", 0), -ENOENT);
	assert_int_equal(thpfs_rename(fs, "/a", "/b", THPFS_RENAME_NOREPLACE), -EEXIST);
	assert_int_equal(thpfs_rename(fs, "/a", "/missing", THPFS_RENAME_EXCHANGE), -ENOENT);
	assert_int_equal(thpfs_rename(fs, "/a", "/b", THPFS_RENAME_NOREPLACE | THPFS_RENAME_EXCHANGE),
			 -EINVAL);

	/* exchange swaps the two names */
	assert_int_equal(thpfs_rename(fs, "/a", "/b", THPFS_RENAME_EXCHANGE), 0);
	assert_int_equal(thpfs_stat(fs, "/a", &st), 0);
	assert_int_equal(st.st_ino, sb.st_ino);
	assert_int_equal(thpfs_stat(fs, "/b", &st), 0);
	assert_int_equal(st.st_ino, sa.st_ino);

	/* plain rename replaces the target; the replaced inode is freed */
	assert_int_equal(thpfs_rename(fs, "/b", "/a", 0), 0);
	assert_int_equal(thpfs_stat(fs, "/b", &st), -ENOENT);
	f = tl_open(fs, "/a", O_RDONLY);
	check_str(f, "AAAA", 0);
	assert_int_equal(tl_fstat(f).st_ino, sa.st_ino);
	tl_close(f);
	assert_int_equal(tl_stats(fs).inodes, inodes - 1);
	/* rename onto itself changes nothing */
	assert_int_equal(thpfs_rename(fs, "/a", "/a", 0), 0);
	assert_int_equal(thpfs_stat(fs, "/a", &st), 0);

	/* directories */
	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	assert_int_equal(thpfs_mkdir(fs, "/d/sub", 0755), 0);
	assert_int_equal(thpfs_mkdir(fs, "/e", 0755), 0);
	assert_int_equal(thpfs_mkdir(fs, "/full", 0755), 0);
	assert_int_equal(thpfs_mkdir(fs, "/full/x", 0755), 0);
	assert_int_equal(thpfs_rename(fs, "/d", "/d/sub/in", 0), -EINVAL);
	assert_int_equal(thpfs_rename(fs, "/d", "/full", 0), -ENOTEMPTY);
	assert_int_equal(thpfs_rename(fs, "/a", "/e", 0), -EISDIR);
	assert_int_equal(thpfs_rename(fs, "/e", "/a", 0), -ENOTDIR);
	assert_int_equal(thpfs_rename(fs, "/a", "/nodir/a", 0), -ENOENT);
	/* a directory over an empty directory */
	assert_int_equal(thpfs_rename(fs, "/d", "/e", 0), 0);
	assert_int_equal(thpfs_stat(fs, "/d", &st), -ENOENT);
	assert_int_equal(thpfs_stat(fs, "/e/sub", &st), 0);
	/* moving a directory moves its ".." link */
	assert_int_equal(thpfs_rename(fs, "/e/sub", "/full/sub", 0), 0);
	assert_int_equal(thpfs_stat(fs, "/e", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(thpfs_stat(fs, "/full", &st), 0);
	assert_int_equal(st.st_nlink, 4);
	assert_int_equal(thpfs_stat(fs, "/full/sub/..", &st), 0);
	assert_int_equal(thpfs_stat(fs, "/full", &sb), 0);
	assert_int_equal(st.st_ino, sb.st_ino);
	/* a file into a directory */
	assert_int_equal(thpfs_rename(fs, "/a", "/full/sub/a", 0), 0);
	f = tl_open(fs, "/full/sub/a", O_RDONLY);
	check_str(f, "AAAA", 0);
	tl_close(f);
}

struct dirlist {
	int n;
	int stop_after; /* return 1 once n reaches this (0: never) */
	char names[64][64];
	uint64_t inos[64];
	uint64_t cookies[64];
	mode_t types[64];
};

static int collect(void *ctx, const struct thpfs_dirent *de)
{
	struct dirlist *dl = ctx;
	if (dl->n >= 64)
		return 1;
	snprintf(dl->names[dl->n], sizeof(dl->names[0]), "%s", de->name);
	dl->inos[dl->n] = de->ino;
	dl->cookies[dl->n] = de->cookie;
	dl->types[dl->n] = de->type;
	dl->n++;
	return dl->stop_after && dl->n >= dl->stop_after;
}

static int find_name(const struct dirlist *dl, const char *name)
{
	int hits = 0;
	for (int i = 0; i < dl->n; i++)
		hits += !strcmp(dl->names[i], name);
	return hits;
}

static void test_readdir(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct dirlist all = { 0 }, one = { 0 };
	struct thpfs_file *f;
	struct stat st;
	uint64_t cookie = 0;
	char name[96];

	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	for (int i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "/d/f%d", i);
		f = tl_open(fs, name, O_RDWR | O_CREAT);
		tl_close(f);
	}
	assert_int_equal(thpfs_mkdir(fs, "/d/sub", 0755), 0);
	assert_int_equal(thpfs_symlink(fs, "f0", "/d/ln"), 0);

	assert_true(thpfs_readdir(fs, "/d", &cookie, collect, &all) >= 0);
	assert_int_equal(all.n, 14);
	assert_int_equal(find_name(&all, "."), 1);
	assert_int_equal(find_name(&all, ".."), 1);
	for (int i = 0; i < all.n; i++) {
		if (i)
			assert_true(all.cookies[i] > all.cookies[i - 1]);
		if (!strcmp(all.names[i], ".") || !strcmp(all.names[i], ".."))
			continue;
		assert_int_equal(find_name(&all, all.names[i]), 1);
		snprintf(name, sizeof(name), "/d/%s", all.names[i]);
		assert_int_equal(thpfs_stat(fs, name, &st), 0);
		assert_int_equal(all.inos[i], st.st_ino);
		assert_int_equal(all.types[i], st.st_mode & S_IFMT);
	}
	assert_int_equal(find_name(&all, "sub"), 1);
	assert_int_equal(find_name(&all, "ln"), 1);

	/* one entry per call gives the same sequence */
	cookie = 0;
	one.stop_after = 1;
	for (int calls = 0; calls < 40; calls++) {
		int before = one.n;
		one.stop_after = one.n + 1;
		assert_true(thpfs_readdir(fs, "/d", &cookie, collect, &one) >= 0);
		if (one.n == before)
			break;
		assert_int_equal(cookie, one.cookies[one.n - 1]);
	}
	assert_int_equal(one.n, all.n);
	for (int i = 0; i < all.n; i++)
		assert_string_equal(one.names[i], all.names[i]);

	/* cookies survive removals and insertions of other entries: read half,
	 * remove one seen and one unseen name, add a new one, read on */
	struct dirlist part = { 0 };
	cookie = 0;
	part.stop_after = 7;
	assert_true(thpfs_readdir(fs, "/d", &cookie, collect, &part) >= 0);
	assert_int_equal(part.n, 7);
	char seen[96], unseen[96];
	int si = -1, ui = -1;
	for (int i = 0; i < 7; i++)
		if (part.types[i] == S_IFREG && strcmp(part.names[i], ".") && strcmp(part.names[i], ".."))
			si = i;
	for (int i = all.n - 1; i > 7; i--)
		if (all.types[i] == S_IFREG)
			ui = i;
	assert_true(si >= 0 && ui >= 0);
	snprintf(seen, sizeof(seen), "/d/%s", part.names[si]);
	snprintf(unseen, sizeof(unseen), "/d/%s", all.names[ui]);
	assert_int_equal(thpfs_unlink(fs, seen), 0);
	assert_int_equal(thpfs_unlink(fs, unseen), 0);
	f = tl_open(fs, "/d/new", O_RDWR | O_CREAT);
	tl_close(f);
	part.stop_after = 0;
	assert_true(thpfs_readdir(fs, "/d", &cookie, collect, &part) >= 0);
	for (int i = 7; i < all.n; i++) {
		if (i == ui)
			assert_int_equal(find_name(&part, all.names[i]), 0);
		else
			assert_int_equal(find_name(&part, all.names[i]), 1);
	}
	assert_int_equal(find_name(&part, "new"), 1);
	assert_int_equal(part.n, all.n - 1 + 1);

	assert_int_equal(thpfs_readdir(fs, "/d/f1", &cookie, collect, &part), -ENOTDIR);
	cookie = 0;
	assert_int_equal(thpfs_readdir(fs, "/nope", &cookie, collect, &part), -ENOENT);
}

static void test_links(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f;
	struct stat st, st2;
	char buf[64];

	f = tl_open(fs, "/a", O_RDWR | O_CREAT);
	write_str(f, "linked", 0);
	tl_close(f);
	assert_int_equal(thpfs_link(fs, "/a", "/b"), 0);
	assert_int_equal(thpfs_link(fs, "/a", "/b"), -EEXIST);
	assert_int_equal(thpfs_link(fs, "/missing", "/c"), -ENOENT);
	assert_int_equal(thpfs_mkdir(fs, "/d", 0755), 0);
	assert_int_equal(thpfs_link(fs, "/d", "/d2"), -EPERM);
	assert_int_equal(thpfs_stat(fs, "/a", &st), 0);
	assert_int_equal(thpfs_stat(fs, "/b", &st2), 0);
	assert_int_equal(st.st_ino, st2.st_ino);
	assert_int_equal(st.st_nlink, 2);
	f = tl_open(fs, "/b", O_RDWR);
	write_str(f, "LI", 0);
	tl_close(f);
	f = tl_open(fs, "/a", O_RDONLY);
	check_str(f, "LInked", 0);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/a"), 0);
	assert_int_equal(thpfs_stat(fs, "/b", &st), 0);
	assert_int_equal(st.st_nlink, 1);
	f = tl_open(fs, "/b", O_RDONLY);
	check_str(f, "LInked", 0);
	tl_close(f);

	assert_int_equal(thpfs_symlink(fs, "some/where/else", "/s"), 0);
	assert_int_equal(thpfs_symlink(fs, "x", "/s"), -EEXIST);
	assert_int_equal(thpfs_symlink(fs, "x", "/nodir/s"), -ENOENT);
	assert_int_equal(thpfs_stat(fs, "/s", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(st.st_size, 15);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(thpfs_readlink(fs, "/s", buf, sizeof(buf)), 15);
	assert_memory_equal(buf, "some/where/else", 15);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(thpfs_readlink(fs, "/s", buf, 4), 4);
	assert_memory_equal(buf, "some", 4);
	assert_int_equal(buf[4], 0);
	assert_int_equal(thpfs_readlink(fs, "/b", buf, sizeof(buf)), -EINVAL);
	assert_int_equal(thpfs_readlink(fs, "/nope", buf, sizeof(buf)), -ENOENT);
	assert_int_equal(thpfs_unlink(fs, "/s"), 0);
	assert_int_equal(thpfs_stat(fs, "/s", &st), -ENOENT);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

static int ts_cmp(struct timespec a, struct timespec b)
{
	if (a.tv_sec != b.tv_sec)
		return a.tv_sec < b.tv_sec ? -1 : 1;
	if (a.tv_nsec != b.tv_nsec)
		return a.tv_nsec < b.tv_nsec ? -1 : 1;
	return 0;
}

static void test_stat_fields(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f;
	struct stat st, st0;

	assert_int_equal(thpfs_stat(fs, "/", &st), 0);
	assert_int_equal(st.st_ino, THPFS_ROOT_INO);
	assert_int_equal(st.st_mode, S_IFDIR | 0755);
	assert_int_equal(st.st_uid, 12);
	assert_int_equal(st.st_gid, 34);

	f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	st0 = tl_fstat(f);
	assert_int_equal(st0.st_mode, S_IFREG | 0644);
	assert_int_equal(st0.st_nlink, 1);
	assert_int_equal(st0.st_size, 0);
	assert_int_equal(st0.st_blocks, 0);
	bool thp = has_thp(fs);
	assert_int_equal(st0.st_blksize, thp ? (blksize_t)HPG : 4096);

	sleep_ms(20);
	write_str(f, "x", 0);
	st = tl_fstat(f);
	assert_int_equal(st.st_size, 1);
	/* a huge page when THP works, else one 4 KiB page */
	assert_int_equal(st.st_blocks, thp ? BLK_HPG : BLK_PG);
	assert_true(ts_cmp(st.st_mtim, st0.st_mtim) > 0);
	assert_true(ts_cmp(st.st_ctim, st0.st_ctim) > 0);

	sleep_ms(20);
	st0 = st;
	assert_int_equal(thpfs_ftruncate(f, 3 * MIB), 0);
	st = tl_fstat(f);
	assert_int_equal(st.st_size, 3 * MIB);
	assert_int_equal(st.st_blocks, thp ? BLK_HPG : BLK_PG);
	assert_true(ts_cmp(st.st_mtim, st0.st_mtim) > 0);
	tl_write_pat(f, 2 * MIB, 4096, 1);
	assert_int_equal(tl_blocks(f), thp ? 2 * BLK_HPG : 2 * BLK_PG);

	/* setattr: mode change keeps the type and moves ctime only */
	sleep_ms(20);
	st0 = tl_fstat(f);
	struct stat attr = { .st_mode = 0600 }, out;
	assert_int_equal(thpfs_setattr(fs, st0.st_ino, &attr, THPFS_SET_MODE, &out), 0);
	assert_int_equal(out.st_mode, S_IFREG | 0600);
	st = tl_fstat(f);
	assert_int_equal(st.st_mode, S_IFREG | 0600);
	assert_true(ts_cmp(st.st_ctim, st0.st_ctim) > 0);
	assert_int_equal(ts_cmp(st.st_mtim, st0.st_mtim), 0);
	/* explicit times */
	attr.st_mtim.tv_sec = 1000000000;
	attr.st_mtim.tv_nsec = 5;
	attr.st_atim.tv_sec = 1000000001;
	assert_int_equal(thpfs_setattr(fs, st0.st_ino, &attr, THPFS_SET_MTIME | THPFS_SET_ATIME, &out), 0);
	st = tl_fstat(f);
	assert_int_equal(st.st_mtim.tv_sec, 1000000000);
	assert_int_equal(st.st_mtim.tv_nsec, 5);
	assert_int_equal(st.st_atim.tv_sec, 1000000001);
	tl_close(f);

	/* a directory's nlink and mode */
	assert_int_equal(thpfs_mkdir(fs, "/d", 0700), 0);
	assert_int_equal(thpfs_stat(fs, "/d", &st), 0);
	assert_int_equal(st.st_mode, S_IFDIR | 0700);
	assert_int_equal(st.st_nlink, 2);
}

static void test_stat_never(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct stat st;

	write_str(f, "x", 5000);
	st = tl_fstat(f);
	assert_int_equal(st.st_blksize, 4096);
	assert_int_equal(st.st_size, 5001);
	assert_int_equal(st.st_blocks, BLK_PG);
	tl_write_pat(f, 0, 3 * PG, 2);
	assert_int_equal(tl_blocks(f), 3 * BLK_PG);
	tl_close(f);
	assert_int_equal(tl_stats(fs).huge_frames, 0);
}

/* "Punch to the end": fallocate(PUNCH_HOLE | KEEP_SIZE, off, INT64_MAX - off)
 * and ranges past the largest file succeed as on tmpfs (whose limit is
 * LLONG_MAX): a punch or a lazy free is clamped to THPFS_MAX_FILE_SIZE;
 * only offset + length overflowing LLONG_MAX is -EFBIG, as vfs_fallocate
 * says. */
static void test_punch_to_the_end(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	const int punch = THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE;
	const off_t max = (off_t)THPFS_MAX_FILE_SIZE;
	char zero[4096] = { 0 }, buf[4096];

	tl_write_pat(f, 0, 3 << 20, 5);
	assert_int_equal(thpfs_fallocate(f, punch, 4096, INT64_MAX - 4096), 0);
	assert_int_equal(tl_size(f), 3 << 20);
	tl_check_pat(f, 0, 4096, 5);
	for (off_t off = 4096; off < (3 << 20); off += 4096) {
		assert_int_equal(thpfs_pread(f, buf, sizeof(buf), off), sizeof(buf));
		assert_memory_equal(buf, zero, sizeof(buf));
	}
	assert_int_equal(tl_stats(fs).shmem_bytes, 4096);
	assert_int_equal(thpfs_fallocate(f, punch, 0, INT64_MAX), 0);
	assert_int_equal(tl_stats(fs).shmem_bytes, 0);
	/* wholly past the largest file: nothing there to punch */
	assert_int_equal(thpfs_fallocate(f, punch, max + 4096, 4096), 0);
	assert_int_equal(thpfs_fallocate(f, punch, INT64_MAX - 1, 1), 0);
	assert_int_equal(thpfs_free_lazy(f, 0, INT64_MAX), 0);
	assert_int_equal(thpfs_free_lazy(f, max, 4096), 0);
	/* offset + length past LLONG_MAX */
	assert_int_equal(thpfs_fallocate(f, punch, INT64_MAX, 1), -EFBIG);
	assert_int_equal(thpfs_fallocate(f, punch, 1, INT64_MAX), -EFBIG);
	assert_int_equal(thpfs_free_lazy(f, 1, INT64_MAX), -EFBIG);
	assert_int_equal(tl_size(f), 3 << 20);
	tl_close(f);
}

static void test_bad_input(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	const off_t max = (off_t)THPFS_MAX_FILE_SIZE;
	char buf[16] = "0123456789abcdef";

	tl_write_pat(f, 0, 8192, 3);
	struct thpfs_stats s0 = tl_stats(fs);

	assert_int_equal(thpfs_pread(f, buf, 1, -1), -EINVAL);
	assert_int_equal(thpfs_pwrite(f, buf, 1, -1), -EINVAL);
	assert_int_equal(thpfs_ftruncate(f, -1), -EINVAL);
	assert_int_equal(thpfs_fallocate(f, 0, -1, 4096), -EINVAL);
	assert_int_equal(thpfs_fallocate(f, 0, 0, -4096), -EINVAL);
	assert_int_equal(thpfs_fallocate(f, 0, 0, 0), -EINVAL);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE, 0, 0),
			 -EINVAL);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE, 0, 0), -EINVAL);

	/* past the largest file, and offset + length overflowing */
	assert_int_equal(thpfs_ftruncate(f, max + 1), -EFBIG);
	assert_int_equal(thpfs_pwrite(f, buf, 1, max), -EFBIG);
	assert_int_equal(thpfs_pwrite(f, buf, 1, INT64_MAX), -EFBIG);
	assert_int_equal(thpfs_fallocate(f, 0, max - 4096, 8192), -EFBIG);
	assert_int_equal(thpfs_fallocate(f, 0, INT64_MAX - 10, 100), -EFBIG);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, INT64_MAX - 10, 100), -EFBIG);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
					 INT64_MAX - 10, 100),
			 -EFBIG);
	/* reading far past EOF is just EOF */
	assert_int_equal(thpfs_pread(f, buf, 1, INT64_MAX - 1), 0);

	/* unsupported fallocate modes */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE, 0, 4096), -EOPNOTSUPP);
	assert_int_equal(thpfs_fallocate(f, 0x04, 0, 4096), -EOPNOTSUPP);  /* NO_HIDE_STALE */
	assert_int_equal(thpfs_fallocate(f, 0x08, 0, 4096), -EOPNOTSUPP);  /* COLLAPSE_RANGE */
	assert_int_equal(thpfs_fallocate(f, 0x20, 0, 4096), -EOPNOTSUPP);  /* INSERT_RANGE */
	assert_int_equal(thpfs_fallocate(f, 0x40, 0, 4096), -EOPNOTSUPP);  /* UNSHARE_RANGE */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_ZERO_RANGE |
					 THPFS_FALLOC_KEEP_SIZE, 0, 4096),
			 -EOPNOTSUPP);
	assert_int_equal(thpfs_fadvise(f, 12345), -EINVAL);

	/* nothing above changed the file or the mount */
	assert_int_equal(tl_size(f), 8192);
	tl_check_pat(f, 0, 8192, 3);
	struct thpfs_stats s1 = tl_stats(fs);
	assert_int_equal(s1.shmem_bytes, s0.shmem_bytes);
	assert_int_equal(s1.huge_frames, s0.huge_frames);
	assert_int_equal(s1.base_pages, s0.base_pages);

	/* the largest size itself is fine for a sparse file */
	assert_int_equal(thpfs_ftruncate(f, max), 0);
	assert_int_equal(tl_size(f), max);
	assert_int_equal(thpfs_pwrite(f, "z", 1, max - 1), 1);
	assert_int_equal(thpfs_pread(f, buf, 2, max - 1), 1);
	assert_int_equal(buf[0], 'z');
	assert_int_equal(thpfs_ftruncate(f, 8192), 0);
	tl_check_pat(f, 0, 8192, 3);
	tl_close(f);
}

static void test_names(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char name[THPFS_NAME_MAX + 2 + 8], name2[THPFS_NAME_MAX + 2 + 8];
	struct thpfs_file *f = NULL;
	struct stat st;

	/* 255 characters is fine, 256 is too long */
	name[0] = '/';
	memset(name + 1, 'n', THPFS_NAME_MAX);
	name[THPFS_NAME_MAX + 1] = 0;
	f = tl_open(fs, name, O_RDWR | O_CREAT);
	tl_close(f);
	assert_int_equal(thpfs_stat(fs, name, &st), 0);
	memcpy(name2, name, sizeof(name));
	name2[THPFS_NAME_MAX + 1] = 'm';
	name2[THPFS_NAME_MAX + 2] = 0;
	assert_int_equal(thpfs_open(fs, name2, O_RDWR | O_CREAT, 0644, &f), -ENAMETOOLONG);
	assert_int_equal(thpfs_stat(fs, name2, &st), -ENAMETOOLONG);
	assert_int_equal(thpfs_mkdir(fs, name2, 0755), -ENAMETOOLONG);
	assert_int_equal(thpfs_symlink(fs, "t", name2), -ENAMETOOLONG);
	assert_int_equal(thpfs_link(fs, name, name2), -ENAMETOOLONG);
	assert_int_equal(thpfs_rename(fs, name, name2, 0), -ENAMETOOLONG);
	assert_int_equal(thpfs_stat(fs, name, &st), 0);

	/* a path longer than THPFS_PATH_MAX */
	size_t plen = THPFS_PATH_MAX + 100;
	char *p = malloc(plen + 1);
	assert_non_null(p);
	for (size_t i = 0; i < plen; i += 2) {
		p[i] = '/';
		p[i + 1] = 'a';
	}
	p[plen] = 0;
	assert_int_equal(thpfs_stat(fs, p, &st), -ENAMETOOLONG);
	free(p);

	/* missing components */
	assert_int_equal(thpfs_open(fs, "/x/y/z", O_RDWR | O_CREAT, 0644, &f), -ENOENT);
	assert_int_equal(thpfs_stat(fs, "/x", &st), -ENOENT);
	assert_int_equal(thpfs_unlink(fs, "/x/y"), -ENOENT);
	assert_int_equal(thpfs_symlink(fs, "t", "/x/y"), -ENOENT);
	assert_int_equal(thpfs_rmdir(fs, "/x"), -ENOENT);
	assert_int_equal(tl_stats(fs).inodes, 2);
}

/* Each bad option string must fail with -EINVAL and name the option. */
/* tmpfs accepts size=200% (more than RAM) and a t suffix; a message names
 * the option without a program name of its own (the caller adds one: the
 * daemon printed "thpfs: thpfs: ..."). */
static void test_mount_options_tmpfs_like(void **state)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	struct thpfs_statfs sf;
	struct thpfs *fs;
	char err[256] = "";

	(void)state;
	int r = thpfs_mount_ex(&fs, "size=200%", err, sizeof(err));

	if (r)
		fail_msg("size=200%%: %d (%s)", r, err);
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.blocks * sf.bsize, (ram * 2 + 4095) & ~4095ULL);
	tl_unmount(fs);
	fs = tl_mount("size=2t,nr_inodes=1t");
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.blocks * sf.bsize, 2ULL << 40);
	tl_unmount(fs);
	assert_int_equal(thpfs_mount_ex(&fs, "size=0%", err, sizeof(err)), -EINVAL);
	assert_int_equal(thpfs_mount_ex(&fs, "bogus=1", err, sizeof(err)), -EINVAL);
	if (strncmp(err, "thpfs:", 6) == 0)
		fail_msg("message \"%s\" carries a program name", err);
	assert_non_null(strstr(err, "bogus"));
}

static void test_mount_options(void **state)
{
	static const struct {
		const char *opts, *names;
	} bad[] = {
		{ "bogus=1", "bogus" },
		{ "huge=sometimes", "huge" },
		{ "huge", "huge" },
		{ "split=half", "split" },
		{ "size=12q", "size" },
		{ "size=abc", "size" },
		{ "size=", "size" },
		{ "size=-5m", "size" },
		{ "nr_inodes=x", "nr_inodes" },
		{ "max_ptes_none=512", "max_ptes_none" },
		{ "max_ptes_none=-1", "max_ptes_none" },
		{ "collapse=maybe", "collapse" },
		{ "mode=9", "mode" },
		{ "scan_sleep_ms=soon", "scan_sleep_ms" },
		{ "uid=abc", "uid" },
		{ "gid=1x", "gid" },
		{ "huge=always,frobnicate", "frobnicate" },
	};
	static const char *good[] = {
		"",
		"huge=never",
		"huge=within_size,split=inplace",
		"huge=advise,split=migrate",
		"size=1g,nr_inodes=1000,huge=always,split=inplace,max_ptes_none=511,collapse=off,"
		"scan_sleep_ms=5,mode=700,uid=1,gid=2",
		"size=50%,nr_inodes=10k",
		"size=64k,max_ptes_none=0,collapse=on",
		"size=0,nr_inodes=0",
	};
	struct thpfs *fs;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fs = NULL;
		memset(err, 0, sizeof(err));
		int r = thpfs_mount_ex(&fs, bad[i].opts, err, sizeof(err));
		if (r != -EINVAL) {
			if (r == 0)
				thpfs_unmount(fs);
			fail_msg("mount \"%s\" = %d, expected -EINVAL", bad[i].opts, r);
		}
		if (!strstr(err, bad[i].names))
			fail_msg("mount \"%s\": message \"%s\" does not name \"%s\"", bad[i].opts, err,
				 bad[i].names);
		assert_int_equal(thpfs_mount(&fs, bad[i].opts), -EINVAL);
	}
	/* a short message buffer is still NUL-terminated */
	memset(err, 'X', sizeof(err));
	assert_int_equal(thpfs_mount_ex(&fs, "bogus=1", err, 6), -EINVAL);
	assert_true(memchr(err, 0, 6) != NULL);
	assert_int_equal(err[6], 'X');
	assert_int_equal(thpfs_mount_ex(&fs, "bogus=1", NULL, 0), -EINVAL);

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		fs = NULL;
		memset(err, 0, sizeof(err));
		int r = thpfs_mount_ex(&fs, good[i], err, sizeof(err));
		if (r)
			fail_msg("mount \"%s\" = %d (%s)", good[i], r, err);
		tl_unmount(fs);
	}
	assert_int_equal(thpfs_mount(&fs, NULL), 0);
	tl_unmount(fs);

	/* the values are applied */
	fs = tl_mount("size=64k,nr_inodes=10,mode=700,uid=1,gid=2");
	struct thpfs_statfs sf;
	struct stat st;
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.bsize, 4096);
	assert_int_equal(sf.blocks, 16);
	assert_int_equal(sf.files, 10);
	assert_int_equal(sf.namemax, THPFS_NAME_MAX);
	assert_int_equal(tl_stats(fs).size_limit, 64 * KIB);
	assert_int_equal(thpfs_stat(fs, "/", &st), 0);
	assert_int_equal(st.st_mode, S_IFDIR | 0700);
	assert_int_equal(st.st_uid, 1);
	assert_int_equal(st.st_gid, 2);
	tl_unmount(fs);
	fs = tl_mount("size=3m");
	assert_int_equal(tl_stats(fs).size_limit, 3 * MIB);
	tl_unmount(fs);
}

static void test_size_limit(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT), *g;
	struct thpfs_statfs sf;

	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.blocks, 1024);
	assert_int_equal(sf.bfree, 1024);

	tl_write_pat(f, 0, 4 * MIB, 9);
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.bfree, 0);
	char c = 1;
	assert_int_equal(thpfs_pwrite(f, &c, 1, 4 * MIB), -ENOSPC);
	assert_int_equal(thpfs_fallocate(f, 0, 4 * MIB, 4096), -ENOSPC);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 4 * MIB, 4096), -ENOSPC);
	g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_pwrite(g, &c, 1, 0), -ENOSPC);
	assert_int_equal(tl_size(g), 0);
	/* a sparse size change needs no memory */
	assert_int_equal(thpfs_ftruncate(g, 100 * MIB), 0);
	assert_int_equal(thpfs_ftruncate(g, 0), 0);
	/* what is stored is intact */
	assert_int_equal(tl_size(f), 4 * MIB);
	tl_check_pat(f, 0, 4 * MIB, 9);
	assert_int_equal(tl_stats(fs).shmem_bytes, 4 * MIB);

	/* freeing a huge page makes room again */
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
					 2 * MIB, 2 * MIB),
			 0);
	assert_int_equal(thpfs_pwrite(g, &c, 1, 0), 1);
	tl_close(g);
	assert_int_equal(thpfs_unlink(fs, "/g"), 0);

	/* a write larger than the room left is short, then -ENOSPC */
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	assert_int_equal(tl_stats(fs).shmem_bytes, 0);
	f = tl_open(fs, "/h", O_RDWR | O_CREAT);
	size_t len = 8 * MIB;
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	tl_fill(buf, len, 0, 4);
	assert_int_equal(thpfs_pwrite(f, buf, len, 0), (ssize_t)(4 * MIB));
	assert_int_equal(tl_size(f), 4 * MIB);
	assert_int_equal(thpfs_pwrite(f, buf, len, 4 * MIB), -ENOSPC);
	assert_int_equal(tl_size(f), 4 * MIB);
	free(buf);
	tl_check_pat(f, 0, 4 * MIB, 4);
	tl_close(f);
}

static void test_nr_inodes(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_statfs sf;
	struct thpfs_file *f, *keep;
	char name[96];

	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.files, 8);
	assert_int_equal(sf.ffree, sf.files - tl_stats(fs).inodes);
	uint64_t room = sf.ffree;
	assert_true(room >= 2);

	keep = tl_open(fs, "/keep", O_RDWR | O_CREAT);
	tl_write_pat(keep, 0, 3 * MIB, 5);
	int made = 1;
	int r;
	for (;;) {
		snprintf(name, sizeof(name), "/f%d", made);
		r = thpfs_open(fs, name, O_RDWR | O_CREAT, 0644, &f);
		if (r)
			break;
		tl_close(f);
		made++;
		assert_true(made <= 100);
	}
	assert_int_equal(r, -ENOSPC);
	assert_int_equal(made, (int)room);
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.ffree, 0);
	assert_int_equal(thpfs_mkdir(fs, "/dir", 0755), -ENOSPC);
	assert_int_equal(thpfs_symlink(fs, "t", "/sym"), -ENOSPC);
	assert_int_equal(thpfs_stat(fs, "/dir", &(struct stat){0}), -ENOENT);
	tl_check_pat(keep, 0, 3 * MIB, 5);
	/* unlinking one makes room for one */
	assert_int_equal(thpfs_unlink(fs, "/f1"), 0);
	assert_int_equal(thpfs_mkdir(fs, "/dir", 0755), 0);
	assert_int_equal(thpfs_mkdir(fs, "/dir2", 0755), -ENOSPC);
	tl_close(keep);
}

static void test_inode_api(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = NULL;
	struct stat st, st2;
	char buf[64];

	/* create_at / mkdir_at / symlink_at with owners */
	assert_int_equal(thpfs_mkdir_at(fs, THPFS_ROOT_INO, "d", 0755, 5, 6, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_uid, 5);
	assert_int_equal(st.st_gid, 6);
	uint64_t dino = st.st_ino;
	assert_int_equal(thpfs_create_at(fs, dino, "f", O_RDWR, 0600, 7, 8, &f, &st), 0);
	assert_int_equal(st.st_mode, S_IFREG | 0600);
	assert_int_equal(st.st_uid, 7);
	uint64_t fino = st.st_ino;
	tl_write_pat(f, 0, 2 * MIB + 5, 6);
	tl_close(f);
	assert_int_equal(thpfs_create_at(fs, dino, "f", O_RDWR | O_EXCL, 0600, 7, 8, &f, &st), -EEXIST);
	assert_int_equal(thpfs_symlink_at(fs, dino, "s", "target", 1, 1, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(thpfs_readlink_ino(fs, st.st_ino, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "target", 6);
	assert_int_equal(thpfs_link_at(fs, fino, THPFS_ROOT_INO, "hard", &st), 0);
	assert_int_equal(st.st_nlink, 2);
	assert_int_equal(thpfs_unlink_at(fs, THPFS_ROOT_INO, "hard"), 0);
	assert_int_equal(thpfs_rename_at(fs, dino, "f", THPFS_ROOT_INO, "g", 0), 0);
	assert_int_equal(thpfs_lookup(fs, dino, "f", &st), -ENOENT);

	assert_int_equal(thpfs_unlink_at(fs, THPFS_ROOT_INO, "g"), 0);

	/* a lookup reference keeps an unlinked inode and its data alive (the
	 * file is made through the path API, which takes no reference) */
	f = tl_open(fs, "/g2", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB + 5, 6);
	tl_close(f);
	uint64_t before = tl_stats(fs).shmem_bytes;
	assert_int_equal(thpfs_lookup(fs, THPFS_ROOT_INO, "g2", &st), 0);
	fino = st.st_ino;
	assert_int_equal(thpfs_unlink_at(fs, THPFS_ROOT_INO, "g2"), 0);
	assert_int_equal(thpfs_getattr(fs, fino, &st2), 0);
	assert_int_equal(st2.st_nlink, 0);
	assert_int_equal(st2.st_size, 2 * MIB + 5);
	assert_int_equal(thpfs_open_ino(fs, fino, O_RDWR, &f), 0);
	tl_check_pat(f, 0, 2 * MIB + 5, 6);
	/* setattr size is a truncate */
	struct stat attr = { .st_size = 4096 + 10 }, out;
	assert_int_equal(thpfs_setattr(fs, fino, &attr, THPFS_SET_SIZE, &out), 0);
	assert_int_equal(out.st_size, 4096 + 10);
	assert_int_equal(tl_size(f), 4096 + 10);
	tl_check_pat(f, 0, 4096 + 10, 6);
	tl_check_zero(f, 4096 + 10, 0);
	tl_close(f);
	assert_true(tl_stats(fs).shmem_bytes > 0);
	thpfs_forget(fs, fino, 1);
	assert_true(thpfs_getattr(fs, fino, &st2) < 0);
	assert_true(tl_stats(fs).shmem_bytes < before);

	/* readdir_ino and rmdir_at */
	uint64_t cookie = 0;
	struct dirlist dl = { 0 };
	assert_true(thpfs_readdir_ino(fs, dino, &cookie, collect, &dl) >= 0);
	assert_int_equal(dl.n, 3);
	assert_int_equal(find_name(&dl, "s"), 1);
	assert_int_equal(thpfs_rmdir_at(fs, THPFS_ROOT_INO, "d"), -ENOTEMPTY);
	assert_int_equal(thpfs_unlink_at(fs, dino, "s"), 0);
	assert_int_equal(thpfs_rmdir_at(fs, THPFS_ROOT_INO, "d"), 0);
	assert_int_equal(thpfs_lookup(fs, THPFS_ROOT_INO, "d", &st), -ENOENT);
}

static void test_meminfo_statfs(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 1);

	int n = thpfs_meminfo(fs, NULL, 0);
	assert_true(n > 0);
	char *buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(thpfs_meminfo(fs, buf, (size_t)n + 1), n);
	assert_int_equal(strlen(buf), (size_t)n);
	assert_non_null(strstr(buf, "Shmem:"));
	assert_non_null(strstr(buf, "ShmemHugePages:"));
	assert_non_null(strstr(buf, "thp_split_page"));
	/* Shmem: 2048 kB */
	char *p = strstr(buf, "Shmem:");
	assert_int_equal(strtoull(p + 6, NULL, 10), 2048);
	/* a short buffer is truncated and terminated, the length is the same */
	memset(buf, 'X', (size_t)n + 1);
	assert_int_equal(thpfs_meminfo(fs, buf, 10), n);
	assert_int_equal(strlen(buf), 9);
	free(buf);

	struct thpfs_statfs sf;
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	assert_int_equal(sf.bsize, 4096);
	assert_true(sf.blocks > 0);
	assert_int_equal(sf.blocks - sf.bfree, 2 * MIB / 4096);
	assert_int_equal(sf.namemax, 255);
	tl_close(f);
}

static void test_unmount_busy(void **state)
{
	struct thpfs *fs = tl_mount("huge=always,collapse=off");
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	void *addr;
	size_t len;

	(void)state;
	tl_write_pat(f, 0, 8192, 1);
	assert_int_equal(thpfs_map(f, 8192, &addr, &len), -ENXIO);
	assert_int_equal(thpfs_map(f, 100, &addr, &len), 0);
	assert_int_equal(thpfs_unmount(fs), -EBUSY);
	/* the mount is still usable */
	tl_check_pat(f, 0, 8192, 1);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	tl_close(f);
	tl_unmount(fs);
}

/*
 * Pointers follow mmap's access rules: thpfs_map (writable) needs a handle
 * open for reading and writing, as Linux refuses a shared writable mapping
 * of a read-only descriptor with EACCES; thpfs_map_existing and
 * thpfs_collapse (a mapping, and MADV_COLLAPSE on it) need one open for
 * reading.  A refused call pins nothing and allocates nothing.
 */
static void test_map_access(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *rw = tl_open(fs, "/m", O_RDWR | O_CREAT);
	struct thpfs_file *ro = tl_open(fs, "/m", O_RDONLY);
	struct thpfs_file *wo = tl_open(fs, "/m", O_WRONLY);
	struct thpfs_stats st;
	void *addr;
	size_t len;

	tl_write_pat(rw, 0, 4096, 3);
	assert_int_equal(thpfs_ftruncate(rw, 4 * MIB), 0);
	/* a hole that a writable map would allocate */
	assert_int_equal(thpfs_map(ro, 3 * MIB, &addr, &len), -EACCES);
	assert_int_equal(thpfs_map(ro, 0, &addr, &len), -EACCES);
	assert_int_equal(thpfs_map(wo, 0, &addr, &len), -EACCES);
	assert_int_equal(thpfs_map_existing(wo, 0, &addr, &len), -EACCES);
	assert_int_equal(thpfs_collapse(wo, 0, 4 * MIB), -EACCES);
	assert_int_equal(thpfs_get_stats(fs, &st), 0);
	assert_int_equal(st.pinned_pages, 0);
	assert_int_equal(tl_fstat(rw).st_blocks, 2 * MIB / 512); /* the one huge page */
	/* what each handle may do */
	assert_int_equal(thpfs_map_existing(ro, 0, &addr, &len), 0);
	for (unsigned i = 0; i < 16; i++)
		assert_int_equal(((const uint8_t *)addr)[i], tl_pat(i, 3));
	assert_int_equal(thpfs_unmap(ro, addr), 0);
	assert_true(thpfs_collapse(ro, 0, 4 * MIB) >= 0);
	assert_int_equal(thpfs_map(rw, 3 * MIB, &addr, &len), 0);
	assert_int_equal(thpfs_unmap(rw, addr), 0);
	assert_int_equal(thpfs_get_stats(fs, &st), 0);
	assert_int_equal(st.pinned_pages, 0);
	tl_close(wo);
	tl_close(ro);
	tl_close(rw);
}

struct direct_ctx {
	struct thpfs *fs;
	struct thpfs_file *close_me; /* closed by another thread inside fn */
	uint8_t copy[64];
	size_t len;
	int calls;
};

static void *close_thread(void *arg)
{
	struct direct_ctx *dc = arg;

	assert_int_equal(thpfs_close(dc->close_me), 0);
	return NULL;
}

/* thpfs_pread_direct actor: optionally lets another thread close the only
 * handle of an unlinked file (what a FUSE release does after the reply),
 * then reads the bytes: they must still be there (ASan sees a free). */
static int direct_actor(void *ctx, const void *data, size_t len)
{
	struct direct_ctx *dc = ctx;

	dc->calls++;
	dc->len = len;
	if (dc->close_me) {
		pthread_t t;

		assert_int_equal(pthread_create(&t, NULL, close_thread, dc), 0);
		assert_int_equal(pthread_join(t, NULL), 0);
		assert_int_equal(tl_stats(dc->fs).inodes, 2); /* root and the file */
	}
	memcpy(dc->copy, data, len < sizeof(dc->copy) ? len : sizeof(dc->copy));
	return 0;
}

/* thpfs_pread_direct: the bytes pread returns, straight from the file's
 * memory; -ENODATA where they are not one run of memory; the inode lives
 * through fn even when its last handle is closed meanwhile. */
static void test_pread_direct(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/d", O_RDWR | O_CREAT);
	struct thpfs_file *wo = tl_open(fs, "/d", O_WRONLY);
	struct direct_ctx dc = { .fs = fs };

	tl_write_pat(f, 0, 3 * MIB, 5);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
					 (off_t)(2 * MIB + 8192), 4096), 0);
	assert_int_equal(thpfs_pread_direct(f, 64, 100, direct_actor, &dc), 64);
	assert_int_equal(dc.len, 64);
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(dc.copy[i], tl_pat(100 + i, 5));
	/* short at EOF, like pread */
	assert_int_equal(thpfs_pread_direct(f, MIB, (off_t)(3 * MIB - 10), direct_actor, &dc), 10);
	assert_int_equal(dc.len, 10);
	/* across two chunks, over a punched page, at EOF: not one run */
	dc.calls = 0;
	assert_int_equal(thpfs_pread_direct(f, 8192, (off_t)(2 * MIB - 4096), direct_actor, &dc),
			 -ENODATA);
	assert_int_equal(thpfs_pread_direct(f, 8192, (off_t)(2 * MIB + 4096), direct_actor, &dc),
			 -ENODATA);
	assert_int_equal(thpfs_pread_direct(f, 10, (off_t)(3 * MIB), direct_actor, &dc), -ENODATA);
	assert_int_equal(dc.calls, 0);
	assert_int_equal(thpfs_pread_direct(wo, 10, 0, direct_actor, &dc), -EBADF);
	assert_int_equal(thpfs_pread_direct(f, 10, -1, direct_actor, &dc), -EINVAL);
	assert_int_equal(thpfs_pread_direct(f, 10, 0, NULL, &dc), -EINVAL);
	tl_close(wo);
	/* the last handle of an unlinked file closed while fn runs */
	assert_int_equal(thpfs_unlink(fs, "/d"), 0);
	dc.close_me = f;
	assert_int_equal(thpfs_pread_direct(f, 64, 4096, direct_actor, &dc), 64);
	for (unsigned i = 0; i < 64; i++)
		assert_int_equal(dc.copy[i], tl_pat(4096 + i, 5));
	assert_int_equal(tl_stats(fs).inodes, 1); /* freed once the call returned */
	assert_int_equal(tl_stats(fs).shmem_bytes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_open_flags, thp_opts()),
		TL_TEST(test_positions, thp_opts()),
		cmocka_unit_test(test_close_then_use),
		TL_TEST(test_unlink_while_open, thp_opts()),
		TL_TEST(test_dirs, thp_opts()),
		TL_TEST(test_rename, thp_opts()),
		TL_TEST(test_readdir, thp_opts()),
		TL_TEST(test_links, thp_opts()),
		TL_TEST(test_stat_fields, "huge=always,collapse=off,mode=755,uid=12,gid=34"),
		TL_TEST(test_stat_never, "huge=never"),
		TL_TEST(test_bad_input, thp_opts()),
		TL_TEST(test_punch_to_the_end, thp_opts()),
		TL_TEST(test_names, thp_opts()),
		cmocka_unit_test(test_mount_options),
		cmocka_unit_test(test_mount_options_tmpfs_like),
		TL_TEST(test_size_limit, "size=4m,huge=always,collapse=off"),
		TL_TEST(test_nr_inodes, "nr_inodes=8,huge=always,collapse=off"),
		TL_TEST(test_inode_api, thp_opts()),
		TL_TEST(test_meminfo_statfs, thp_opts()),
		cmocka_unit_test(test_unmount_busy),
		TL_TEST(test_map_access, "huge=always,collapse=off"),
		TL_TEST(test_pread_direct, "huge=always,collapse=off"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
