/*
 * ops.c - the thpfs FUSE daemon's low-level operations.
 *
 * Each operation maps one FUSE request onto one libthpfs call and replies
 * with its result.  FUSE node ids are thpfs inode numbers (the root is
 * FUSE_ROOT_ID == THPFS_ROOT_INO == 1) and fi->fh holds the struct
 * thpfs_file * of an open file.  Every reply that hands the kernel a new
 * name -> inode entry (lookup, create, mkdir, symlink, link) is backed by one
 * thpfs lookup reference, which the kernel gives back with forget; that keeps
 * an unlinked inode alive while the kernel still knows it.
 *
 * The kernel checks permissions itself (the daemon always mounts with
 * default_permissions), so the operations here only carry out requests.
 * libthpfs is thread safe, so requests run on many session threads at once
 * without locks in the daemon.
 */
#define _GNU_SOURCE
#include "thpfs-fuse.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#define min_size(a, b) ((a) < (b) ? (a) : (b))

static struct thpfs_fuse *req_ctx(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct thpfs *req_fs(fuse_req_t req)
{
	return req_ctx(req)->fs;
}

static struct thpfs_file *fi_file(const struct fuse_file_info *fi)
{
	return (struct thpfs_file *)(uintptr_t)fi->fh;
}

/* ---- Replies ---- */

/* fuse_reply_err wants a positive errno; the library returns negative ones. */
static void reply_status(fuse_req_t req, int ret)
{
	fuse_reply_err(req, ret < 0 ? -ret : 0);
}

static void fill_entry(fuse_req_t req, const struct stat *st, struct fuse_entry_param *e)
{
	struct thpfs_fuse *tf = req_ctx(req);

	uint32_t gen = 0;

	memset(e, 0, sizeof(*e));
	/* the inode is held by the lookup reference this entry stands for */
	thpfs_generation(tf->fs, st->st_ino, &gen);
	e->generation = gen;
	e->ino = st->st_ino;
	e->attr = *st;
	e->attr_timeout = tf->attr_timeout;
	e->entry_timeout = tf->entry_timeout;
}

/*
 * Replies with the entry of an inode a *_at call just made (mkdir, symlink,
 * link, mknod).  Those calls take a lookup reference for the kernel, as
 * thpfs_lookup does; if the reply cannot be delivered (the request was
 * interrupted) the kernel never learns the entry, so the reference is
 * dropped here.
 */
static void reply_new_entry(fuse_req_t req, const struct stat *st)
{
	struct fuse_entry_param e;

	fill_entry(req, st, &e);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		thpfs_forget(req_fs(req), st->st_ino, 1);
}

/*
 * Owner and mode of a new inode: the creating process's fsuid/fsgid, its
 * umask applied (the daemon asks for FUSE_CAP_DONT_MASK, so the kernel
 * leaves that to us), and a set-group-ID parent's group inherited as
 * System V file systems do.  *mode is updated in place.
 */
static int new_owner(fuse_req_t req, fuse_ino_t parent, mode_t *mode, uid_t *uid,
		     gid_t *gid, int is_dir)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat pst;
	int ret;

	ret = thpfs_getattr(req_fs(req), parent, &pst);
	if (ret < 0)
		return ret;
	if (!S_ISDIR(pst.st_mode))
		return -ENOTDIR;
	*uid = ctx->uid;
	*gid = ctx->gid;
	/* a default ACL on the parent replaces the umask (the library masks
	 * the inherited ACL with the mode as given) */
	if (thpfs_has_default_acl(req_fs(req), parent) != 1)
		*mode &= ~ctx->umask;
	if (pst.st_mode & S_ISGID) {
		*gid = pst.st_gid;
		if (is_dir)
			*mode |= S_ISGID;
	}
	return 0;
}

/* ---- Session set-up ---- */

/* FUSE_INIT: what the daemon asks of the kernel (runs once, before any
 * other request). */
static void tf_init(void *userdata, struct fuse_conn_info *conn)
{
	struct thpfs_fuse *tf = userdata;

	/* the daemon applies the umask itself, from the request context */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	/* POSIX ACLs: the kernel enforces them and reads them with getxattr;
	 * the library keeps them, the mode in step, and their inheritance */
	if (conn->capable & FUSE_CAP_POSIX_ACL)
		conn->want |= FUSE_CAP_POSIX_ACL;
	/* file handles: lookups of "." and ".." and generations are served,
	 * so the kernel may decode a handle whose inode it has forgotten */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	/* the kernel clears set-user-ID bits on chown and truncate; writes are
	 * direct I/O, which it leaves to us (kill_suid) */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	/* data lives in thpfs frames only: no page cache, no writeback cache */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	if (tf->splice_read && (conn->capable & FUSE_CAP_SPLICE_READ))
		conn->want |= FUSE_CAP_SPLICE_READ;
	if (tf->splice_write && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	/* several requests of one large direct I/O may be in flight at once */
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->max_write = tf->max_write;
	conn->max_read = 0;
}

/* ---- Names and attributes ---- */

static void tf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct stat st;
	int ret;

	ret = thpfs_lookup(req_fs(req), parent, name, &st);
	if (ret == -ENOENT) {
		/* a negative entry the kernel may cache for entry_timeout */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = req_ctx(req)->entry_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (ret < 0) {
		reply_status(req, ret);
		return;
	}
	fill_entry(req, &st, &e);
	if (fuse_reply_entry(req, &e) == -ENOENT)
		thpfs_forget(req_fs(req), st.st_ino, 1);
}

static void tf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	thpfs_forget(req_fs(req), ino, nlookup);
	fuse_reply_none(req);
}

static void tf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		thpfs_forget(req_fs(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void tf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int ret;

	ret = thpfs_getattr(req_fs(req), ino, &st);
	if (ret < 0)
		reply_status(req, ret);
	else
		fuse_reply_attr(req, &st, req_ctx(req)->attr_timeout);
}

/* FUSE_SET_ATTR_* -> THPFS_SET_* (spelled out; the values happen to agree). */
static int setattr_mask(int to_set)
{
	static const struct {
		int fuse, thpfs;
	} map[] = {
		{ FUSE_SET_ATTR_MODE, THPFS_SET_MODE },
		{ FUSE_SET_ATTR_UID, THPFS_SET_UID },
		{ FUSE_SET_ATTR_GID, THPFS_SET_GID },
		{ FUSE_SET_ATTR_SIZE, THPFS_SET_SIZE },
		{ FUSE_SET_ATTR_ATIME, THPFS_SET_ATIME },
		{ FUSE_SET_ATTR_MTIME, THPFS_SET_MTIME },
		{ FUSE_SET_ATTR_ATIME_NOW, THPFS_SET_ATIME_NOW },
		{ FUSE_SET_ATTR_MTIME_NOW, THPFS_SET_MTIME_NOW },
		{ FUSE_SET_ATTR_CTIME, THPFS_SET_CTIME },
	};
	int out = 0;

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (to_set & map[i].fuse)
			out |= map[i].thpfs;
	return out;
}

static void tf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct stat st;
	int ret;

	ret = thpfs_setattr(req_fs(req), ino, attr, setattr_mask(to_set), &st);
	if (ret < 0)
		reply_status(req, ret);
	else
		fuse_reply_attr(req, &st, req_ctx(req)->attr_timeout);
}

static void tf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[THPFS_PATH_MAX + 1];
	ssize_t n;

	n = thpfs_readlink_ino(req_fs(req), ino, buf, sizeof(buf) - 1);
	if (n < 0) {
		reply_status(req, (int)n);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

/*
 * mknod: FIFOs, sockets (bind(2) makes one), device nodes and empty regular
 * files.  The kernel gives special files their behaviour (a FIFO or device
 * opened on the mount never reaches the daemon); thpfs only stores them.
 * Device nodes work only where the mount allows them: FUSE mounts are
 * nodev unless root mounts with -o dev.
 */
static void tf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct stat st;
	uid_t uid;
	gid_t gid;
	int ret;

	ret = new_owner(req, parent, &mode, &uid, &gid, 0);
	if (ret == 0)
		ret = thpfs_mknod_at(req_fs(req), parent, name, mode, rdev, uid, gid, &st);
	if (ret < 0)
		reply_status(req, ret);
	else
		reply_new_entry(req, &st);
}

static void tf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct stat st;
	uid_t uid;
	gid_t gid;
	int ret;

	ret = new_owner(req, parent, &mode, &uid, &gid, 1);
	if (ret == 0)
		ret = thpfs_mkdir_at(req_fs(req), parent, name, mode & 07777, uid, gid, &st);
	if (ret < 0)
		reply_status(req, ret);
	else
		reply_new_entry(req, &st);
}

static void tf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_status(req, thpfs_unlink_at(req_fs(req), parent, name));
}

static void tf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_status(req, thpfs_rmdir_at(req_fs(req), parent, name));
}

static void tf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct stat st;
	mode_t mode = 0777; /* unused: a symlink is always 0777 */
	uid_t uid;
	gid_t gid;
	int ret;

	ret = new_owner(req, parent, &mode, &uid, &gid, 0);
	if (ret == 0)
		ret = thpfs_symlink_at(req_fs(req), parent, name, link, uid, gid, &st);
	if (ret < 0)
		reply_status(req, ret);
	else
		reply_new_entry(req, &st);
}

static void tf_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	if (flags & ~(unsigned)(THPFS_RENAME_NOREPLACE | THPFS_RENAME_EXCHANGE)) {
		/* RENAME_WHITEOUT is for overlay file systems */
		fuse_reply_err(req, EINVAL);
		return;
	}
	reply_status(req, thpfs_rename_at(req_fs(req), parent, name, newparent, newname, flags));
}

static void tf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct stat st;
	int ret;

	ret = thpfs_link_at(req_fs(req), ino, newparent, newname, &st);
	if (ret < 0)
		reply_status(req, ret);
	else
		reply_new_entry(req, &st);
}

/* ---- Open files ---- */

/* What the kernel's set-ID rules need to know about the writer. */
struct writer_cred {
	bool fsetid;   /* CAP_FSETID in its effective set */
	bool in_group; /* the file's group is its fsgid or a supplementary group */
};

/*
 * Fills *wc for the process that sent req, from /proc/PID/status (the
 * request's pid is the writer's thread id).  When that cannot be read (the
 * writer has exited, or lives in another pid namespace) the request's
 * fsuid/fsgid decide: root is taken to have CAP_FSETID, others not.
 */
static void writer_cred(fuse_req_t req, gid_t file_gid, struct writer_cred *wc)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char path[64], *line = NULL;
	size_t cap = 0;
	bool have_caps = false;
	FILE *f;

	wc->fsetid = ctx->uid == 0;
	wc->in_group = ctx->gid == file_gid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)ctx->pid);
	f = ctx->pid > 0 ? fopen(path, "re") : NULL;
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		unsigned long long caps;

		if (sscanf(line, "CapEff: %llx", &caps) == 1) {
			wc->fsetid = (caps >> 4) & 1; /* CAP_FSETID is 4 */
			have_caps = true;
		} else if (!strncmp(line, "Groups:", 7)) {
			char *p = line + 7, *end;

			for (;;) {
				unsigned long g = strtoul(p, &end, 10);

				if (end == p)
					break;
				if ((gid_t)g == file_gid)
					wc->in_group = true;
				p = end;
			}
		}
	}
	if (!have_caps)
		wc->fsetid = ctx->uid == 0;
	free(line);
	fclose(f);
}

/*
 * Clears set-user-ID and set-group-ID as a write or an O_TRUNC open does on
 * Linux (file_remove_privs), and before the data lands, as the kernel
 * does: the caller runs this first.  With direct I/O (and atomic O_TRUNC)
 * the kernel leaves it to the daemon.  Linux 6.x rules: a writer without
 * CAP_FSETID loses set-user-ID, and set-group-ID when the file is
 * group-executable or the writer is not in the file's group.  The kernel
 * flags such writes with FUSE_WRITE_KILL_SUIDGID, but libfuse 3.14 does
 * not pass write_flags on (struct fuse_file_info has no field for it), so
 * the daemon asks /proc about the writer itself.  The kernel's cached
 * attributes are invalidated before the reply, so that the writer's next
 * stat sees the new mode.
 */
static void kill_suid(fuse_req_t req, fuse_ino_t ino)
{
	struct thpfs_fuse *tf = req_ctx(req);
	struct writer_cred wc;
	struct stat st;
	mode_t kill = 0;

	if (thpfs_getattr(tf->fs, ino, &st) < 0 || !S_ISREG(st.st_mode) ||
	    !(st.st_mode & (S_ISUID | S_ISGID)))
		return;
	writer_cred(req, st.st_gid, &wc);
	if (wc.fsetid)
		return;
	if (st.st_mode & S_ISUID)
		kill |= S_ISUID;
	if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !wc.in_group))
		kill |= S_ISGID;
	if (!kill)
		return;
	st.st_mode &= ~kill;
	if (thpfs_setattr(tf->fs, ino, &st, THPFS_SET_MODE, NULL) == 0 && tf->se)
		/* offset < 0: attributes only, no page-cache lock taken */
		fuse_lowlevel_notify_inval_inode(tf->se, ino, -1, 0);
}

/*
 * Every open file uses direct I/O: reads and writes go straight to the
 * daemon and the kernel keeps no page-cache copy of thpfs data.
 */
static void set_open_flags(struct fuse_file_info *fi, struct thpfs_file *f)
{
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->direct_io = 1;
	fi->keep_cache = 0;
}

static void tf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct thpfs_file *f;
	int ret;

	/* the kernel sends O_TRUNC only with write access, checked already */
	if (fi->flags & O_TRUNC)
		kill_suid(req, ino);
	ret = thpfs_open_ino(req_fs(req), ino, fi->flags, &f);
	if (ret < 0) {
		reply_status(req, ret);
		return;
	}
	set_open_flags(fi, f);
	if (fuse_reply_open(req, fi) == -ENOENT)
		thpfs_close(f); /* interrupted: no release will come */
}

static void tf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fuse_entry_param e;
	struct thpfs_file *f;
	struct stat st;
	uid_t uid;
	gid_t gid;
	int ret;

	ret = new_owner(req, parent, &mode, &uid, &gid, 0);
	if (ret == 0)
		ret = thpfs_create_at(req_fs(req), parent, name, fi->flags | O_CREAT,
				      mode & 07777, uid, gid, &f, &st);
	if (ret < 0) {
		reply_status(req, ret);
		return;
	}
	/* thpfs_create_at took the entry's lookup reference */
	fill_entry(req, &st, &e);
	set_open_flags(fi, f);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		thpfs_close(f);
		thpfs_forget(req_fs(req), st.st_ino, 1);
	}
}

/*
 * Read buffers: one per session thread, kept for the thread's life, so a
 * read costs no allocation (a fresh 1 MiB malloc would be an mmap and 256
 * page faults every time).
 */
static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

struct read_buf {
	size_t size;
	char data[];
};

static void read_buf_key_init(void)
{
	pthread_key_create(&read_buf_key, free);
}

static char *read_buf_get(size_t size)
{
	struct read_buf *rb;

	pthread_once(&read_buf_once, read_buf_key_init);
	rb = pthread_getspecific(read_buf_key);
	if (rb && rb->size >= size)
		return rb->data;
	free(rb);
	pthread_setspecific(read_buf_key, NULL);
	if (size < THPFS_FUSE_MAX_IO)
		size = THPFS_FUSE_MAX_IO;
	rb = malloc(sizeof(*rb) + size);
	if (!rb)
		return NULL;
	rb->size = size;
	pthread_setspecific(read_buf_key, rb);
	return rb->data;
}

/* thpfs_pread_direct actor: the reply, made while the library holds the
 * file's lock shared, so the kernel copies bytes no writer can change. */
static int reply_read_actor(void *ctx, const void *data, size_t len)
{
	fuse_req_t req = ctx;

	/* an interrupted request is finished either way: never reply twice */
	fuse_reply_buf(req, data, len);
	return 0;
}

/*
 * Replies to a read straight from thpfs's memory when the range lies in one
 * run of it (a huge page): the kernel copies it out during the reply,
 * saving the copy into a buffer.  Nothing is pinned and the reply never
 * mixes old and new bytes (see thpfs_pread_direct).  Returns false
 * (nothing replied) when the range is not one run of memory.
 */
static bool read_zero_copy(fuse_req_t req, struct thpfs_file *f, size_t size, off_t off)
{
	return thpfs_pread_direct(f, size, off, reply_read_actor, req) >= 0;
}

static void tf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char *buf;
	ssize_t n;

	if (size >= THPFS_FUSE_ZERO_COPY_MIN && read_zero_copy(req, fi_file(fi), size, off))
		return;
	buf = read_buf_get(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = thpfs_pread(fi_file(fi), buf, size, off);
	if (n < 0) {
		reply_status(req, (int)n);
	} else {
		/* fuse_reply_data splices the buffer to the kernel when
		 * splice_write was negotiated, else it is one writev */
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT((size_t)n);

		bv.buf[0].mem = buf;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	}
}

static void tf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	ssize_t n;

	/* set-ID bits go before the data lands (and even if it cannot) */
	if (size)
		kill_suid(req, ino);
	n = thpfs_pwrite(fi_file(fi), buf, size, off);
	if (n < 0)
		reply_status(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

/*
 * Writes arriving through a pipe (splice_read): the payload is copied from
 * the pipe into the session thread's buffer, then into thpfs.  Small
 * in-memory payloads go straight to thpfs_pwrite.
 */
static void tf_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			 struct fuse_file_info *fi)
{
	size_t size = fuse_buf_size(in);
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(size);
	ssize_t n;
	char *buf;

	if (in->count == 1 && !(in->buf[0].flags & FUSE_BUF_IS_FD)) {
		tf_write(req, ino, (const char *)in->buf[0].mem + in->off, size, off, fi);
		return;
	}
	buf = read_buf_get(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	out.buf[0].mem = buf;
	n = fuse_buf_copy(&out, in, 0);
	if (n < 0) {
		reply_status(req, (int)n);
		return;
	}
	tf_write(req, ino, buf, (size_t)n, off, fi);
}

static void tf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* nothing is buffered between the kernel and thpfs */
	fuse_reply_err(req, 0);
}

static void tf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	reply_status(req, thpfs_close(fi_file(fi)));
}

static void tf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	reply_status(req, thpfs_fsync(fi_file(fi)));
}

static void tf_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	/* libthpfs returns -EOPNOTSUPP for the modes it does not support */
	reply_status(req, thpfs_fallocate(fi_file(fi), mode, off, len));
}

static void tf_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	off_t ret;

	ret = thpfs_lseek(fi_file(fi), off, whence);
	if (ret < 0)
		reply_status(req, (int)ret);
	else
		fuse_reply_lseek(req, ret);
}

/*
 * copy_file_range inside the mount: the data moves from one thpfs file to
 * the other through the session thread's buffer without crossing into the
 * kernel.  Holes of the source (SEEK_HOLE) stay holes: the destination
 * range is punched instead of written with zeros.  Returns bytes copied,
 * bounded by the source's end of file.
 */
static ssize_t copy_range(struct thpfs_file *in, off_t off_in, struct thpfs_file *out,
			  off_t off_out, size_t len)
{
	size_t done = 0;
	struct stat st;
	int ret;

	ret = thpfs_fstat(in, &st);
	if (ret < 0)
		return ret;
	if (off_in >= st.st_size)
		return 0;
	if (len > (size_t)(st.st_size - off_in))
		len = (size_t)(st.st_size - off_in);
	while (done < len) {
		off_t pos = off_in + (off_t)done;
		off_t data = thpfs_lseek(in, pos, SEEK_DATA);
		size_t step;

		if (data == -ENXIO)
			data = off_in + (off_t)len; /* only a hole remains */
		else if (data < 0)
			return done ? (ssize_t)done : data;
		if (data > pos) {
			/* a hole in the source: make the destination read zero */
			step = min_size((size_t)(data - pos), len - done);
			ret = thpfs_fallocate(out, THPFS_FALLOC_PUNCH_HOLE |
					      THPFS_FALLOC_KEEP_SIZE,
					      off_out + (off_t)done, (off_t)step);
			if (ret < 0)
				return done ? (ssize_t)done : ret;
			done += step;
			continue;
		}
		{
			off_t hole = thpfs_lseek(in, pos, SEEK_HOLE);
			char *buf = read_buf_get(THPFS_FUSE_MAX_IO);
			ssize_t n, w;

			if (hole < 0)
				return done ? (ssize_t)done : hole;
			if (!buf)
				return done ? (ssize_t)done : -ENOMEM;
			step = min_size((size_t)(hole - pos), len - done);
			step = min_size(step, (size_t)THPFS_FUSE_MAX_IO);
			n = thpfs_pread(in, buf, step, pos);
			if (n <= 0)
				return done ? (ssize_t)done : n;
			w = thpfs_pwrite(out, buf, (size_t)n, off_out + (off_t)done);
			if (w < 0)
				return done ? (ssize_t)done : w;
			done += (size_t)w;
			if (w < n)
				break;
		}
	}
	/* a trailing hole leaves the destination's size short: extend it */
	ret = thpfs_fstat(out, &st);
	if (ret == 0 && st.st_size < off_out + (off_t)done)
		ret = thpfs_ftruncate(out, off_out + (off_t)done);
	if (ret < 0)
		return done ? (ssize_t)done : ret;
	return (ssize_t)done;
}

static void tf_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out, size_t len,
			       int flags)
{
	ssize_t n;

	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	n = copy_range(fi_file(fi_in), off_in, fi_file(fi_out), off_out, len);
	if (n < 0)
		reply_status(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* ---- Directories ---- */

struct dir_fill {
	fuse_req_t req;
	char *buf;
	size_t size, used;
};

/* Adds one entry to the reply; returns 1 (stop) when it does not fit.  The
 * entry's cookie is the offset the kernel passes back to continue after it. */
static int dir_fill_one(void *ctx, const struct thpfs_dirent *de)
{
	struct dir_fill *df = ctx;
	struct stat st;
	size_t need;

	memset(&st, 0, sizeof(st));
	st.st_ino = de->ino;
	st.st_mode = de->type;
	need = fuse_add_direntry(df->req, df->buf + df->used, df->size - df->used, de->name,
				 &st, (off_t)de->cookie);
	if (need > df->size - df->used)
		return 1;
	df->used += need;
	return 0;
}

static void tf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dir_fill df = { .req = req, .size = size };
	uint64_t cookie = (uint64_t)off;
	int ret;

	df.buf = malloc(size);
	if (!df.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ret = thpfs_readdir_ino(req_fs(req), ino, &cookie, dir_fill_one, &df);
	if (ret < 0)
		reply_status(req, ret);
	else
		fuse_reply_buf(req, df.buf, df.used);
	free(df.buf);
}

static void tf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

/* ---- The mount ---- */

static void tf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct thpfs_statfs ts;
	struct statvfs sv;
	int ret;

	ret = thpfs_statfs(req_fs(req), &ts);
	if (ret < 0) {
		reply_status(req, ret);
		return;
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = ts.bsize;
	sv.f_frsize = ts.bsize;
	sv.f_blocks = ts.blocks;
	sv.f_bfree = ts.bfree;
	sv.f_bavail = ts.bfree;
	sv.f_files = ts.files;
	sv.f_ffree = ts.ffree;
	sv.f_favail = ts.ffree;
	sv.f_namemax = ts.namemax;
	fuse_reply_statfs(req, &sv);
}

/*
 * The meminfo text as a malloc'd buffer; *len receives its length without
 * the NUL.  Counters keep moving, so the text is sized, then written, and
 * written again if it grew in between.
 */
static char *meminfo_text(struct thpfs *fs, size_t *len)
{
	size_t cap = 4096;

	for (int tries = 0; tries < 4; tries++) {
		char *buf = malloc(cap);
		int n;

		if (!buf)
			return NULL;
		n = thpfs_meminfo(fs, buf, cap);
		if (n >= 0 && (size_t)n < cap) {
			*len = (size_t)n;
			return buf;
		}
		free(buf);
		if (n < 0)
			return NULL;
		cap = (size_t)n + 256;
	}
	return NULL;
}

/* ---- Extended attributes ----
 * Stored ones are libthpfs's (user., trusted., security., POSIX ACLs);
 * the root directory also shows the virtual, read-only THPFS_XATTR_MEMINFO
 * with the statistics. */

static bool is_meminfo(fuse_ino_t ino, const char *name)
{
	return ino == FUSE_ROOT_ID && !strcmp(name, THPFS_XATTR_MEMINFO);
}

/* Replies to a getxattr or listxattr with the len bytes of data: the
 * length when the caller asked for it (size 0), else the bytes or ERANGE. */
static void reply_xattr_data(fuse_req_t req, const void *data, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, data, len);
}

static void tf_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	size_t len;
	ssize_t n;
	char *buf;

	if (is_meminfo(ino, name)) {
		buf = meminfo_text(req_fs(req), &len);
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		reply_xattr_data(req, buf, len, size);
		free(buf);
		return;
	}
	if (size == 0) {
		n = thpfs_getxattr_ino(req_fs(req), ino, name, NULL, 0);
		if (n < 0)
			reply_status(req, (int)n);
		else
			fuse_reply_xattr(req, (size_t)n);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = thpfs_getxattr_ino(req_fs(req), ino, name, buf, size);
	if (n < 0)
		reply_status(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

/* The stored names, after the meminfo name on the root.  The list is read
 * whole (its length can change between two calls), then answered. */
static void tf_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char meminfo[] = THPFS_XATTR_MEMINFO; /* with its NUL */
	size_t pre = ino == FUSE_ROOT_ID ? sizeof(meminfo) : 0;
	char *buf = NULL;
	ssize_t n;

	for (int tries = 0; tries < 4; tries++) {
		n = thpfs_listxattr_ino(req_fs(req), ino, NULL, 0);
		if (n < 0)
			break;
		free(buf);
		buf = malloc(pre + (size_t)n + 1);
		if (!buf) {
			n = -ENOMEM;
			break;
		}
		n = thpfs_listxattr_ino(req_fs(req), ino, buf + pre, (size_t)n + 1);
		if (n != -ERANGE)
			break;
	}
	if (n < 0) {
		reply_status(req, (int)n);
	} else {
		memcpy(buf, meminfo, pre);
		reply_xattr_data(req, buf, pre + (size_t)n, size);
	}
	free(buf);
}

/*
 * Whether setting an access ACL must clear set-group-ID: the kernel asks
 * for it (FUSE_SETXATTR_ACL_KILL_SGID) only through FUSE_SETXATTR_EXT,
 * which libfuse 3.14 does not negotiate, so the daemon applies the rule
 * itself: a setter outside the file's group without CAP_FSETID.
 */
static int acl_kill_sgid(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct writer_cred wc;
	struct stat st;

	if (strcmp(name, THPFS_XATTR_ACL_ACCESS) != 0 ||
	    thpfs_getattr(req_fs(req), ino, &st) < 0 || !(st.st_mode & S_ISGID))
		return 0;
	writer_cred(req, st.st_gid, &wc);
	return wc.fsetid || wc.in_group ? 0 : THPFS_XATTR_KILL_SGID;
}

static void tf_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	if (is_meminfo(ino, name)) {
		fuse_reply_err(req, EPERM); /* the statistics are read-only */
		return;
	}
	flags &= THPFS_XATTR_CREATE | THPFS_XATTR_REPLACE;
	flags |= acl_kill_sgid(req, ino, name);
	reply_status(req, thpfs_setxattr_ino(req_fs(req), ino, name, value, size, flags));
}

static void tf_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	if (is_meminfo(ino, name))
		fuse_reply_err(req, EPERM);
	else
		reply_status(req, thpfs_removexattr_ino(req_fs(req), ino, name));
}

const struct fuse_lowlevel_ops thpfs_fuse_ops = {
	.init = tf_init,
	.lookup = tf_lookup,
	.forget = tf_forget,
	.forget_multi = tf_forget_multi,
	.getattr = tf_getattr,
	.setattr = tf_setattr,
	.readlink = tf_readlink,
	.mknod = tf_mknod,
	.mkdir = tf_mkdir,
	.unlink = tf_unlink,
	.rmdir = tf_rmdir,
	.symlink = tf_symlink,
	.rename = tf_rename,
	.link = tf_link,
	.open = tf_open,
	.create = tf_create,
	.read = tf_read,
	.write = tf_write,
	.write_buf = tf_write_buf,
	.flush = tf_flush,
	.release = tf_release,
	.fsync = tf_fsync,
	.fallocate = tf_fallocate,
	.lseek = tf_lseek,
	.copy_file_range = tf_copy_file_range,
	.readdir = tf_readdir,
	.fsyncdir = tf_fsyncdir,
	.statfs = tf_statfs,
	.getxattr = tf_getxattr,
	.listxattr = tf_listxattr,
	.setxattr = tf_setxattr,
	.removexattr = tf_removexattr,
};
