/*
 * fuse-null.c - a FUSE daemon that does no file-system work: the ceiling
 * any FUSE daemon can reach on this kernel with this libfuse, for
 * bench/fuse-bench.sh (which runs it next to thpfs and kernel tmpfs).
 *
 *   fuse-null [-f] [-s] [-o OPTIONS] MOUNTPOINT
 *
 * It serves one directory (the root) that can hold one regular file, of
 * any name, at a time: enough for fuse-bench (create, write, truncate,
 * read, unlink).  The file has a size and no contents: a read replies the
 * bytes of one static 1 MiB buffer (fuse_reply_buf, one writev), a write
 * is accepted and its payload discarded (through a pipe with splice_read:
 * libfuse drops the pipe after the request).  Session set-up is thpfs's:
 * the same low-level libfuse API, the same multi-threaded loop with
 * libfuse's default thread settings (-s: one thread), direct_io on every
 * open, default_permissions, max_write 1 MiB, FUSE_CAP_ASYNC_DIO and
 * FUSE_CAP_PARALLEL_DIROPS, no splice unless -o splice_read/splice_write;
 * thpfs's max_write=, attr_timeout= and entry_timeout= are honoured too.
 * thpfs's library options (size=, prealloc=, ...) are accepted and ignored,
 * so fuse-bench.sh can hand both daemons the same -o string.
 *
 * FUSE_NULL_COPY=1 (environment) makes writes copy their payload into one
 * 1 MiB buffer instead of dropping it: the cost of the copy into a frame.
 *
 * One lock serialises the few metadata requests; read and write take it
 * only to read or move the size.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include "fuse/session.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define NULL_MAX_IO (1U << 20)
#define FILE_INO 2

/* What every read returns: 1 MiB in one transparent huge page when the
 * kernel gives one (thpfs replies from its huge frames: the same case). */
static char *reply_data;

/* FUSE_NULL_COPY=1 in the environment: a write's payload is copied into
 * write_sink (a 2 MiB huge page, like one thpfs frame) instead of dropped,
 * to measure what the copy into a frame costs on each transport. */
static char *write_sink;
static int dev_null = -1; /* where a spliced payload is drained */

static double attr_timeout = 1.0, entry_timeout = 1.0;

static struct {
	pthread_mutex_t lock;
	int exists;                  /* the root holds the file */
	char name[NAME_MAX + 1];
	off_t size;
} nf = { .lock = PTHREAD_MUTEX_INITIALIZER };

struct cli {
	int splice_read;
	int splice_write;
	unsigned max_write; /* as thpfs's max_write= (default 1 MiB) */
	double attr_timeout, entry_timeout; /* as thpfs's (default 1.0) */
};

#define CLI_OPT(t, field, v) { t, offsetof(struct cli, field), v }

/* thpfs's own options: accepted, so that both daemons take one -o string */
static const struct fuse_opt cli_opts[] = {
	CLI_OPT("splice_read", splice_read, 1),
	CLI_OPT("no_splice_read", splice_read, 0),
	CLI_OPT("splice_write", splice_write, 1),
	CLI_OPT("no_splice_write", splice_write, 0),
	THPFS_FUSE_LIB_OPTS(FUSE_OPT_KEY_DISCARD),
	/* these change the requests the kernel sends: honoured, as thpfs
	 * does, so that the ceiling is measured with the same ones */
	CLI_OPT("max_write=%u", max_write, 0),
	CLI_OPT("attr_timeout=%lf", attr_timeout, 0),
	CLI_OPT("entry_timeout=%lf", entry_timeout, 0),
	FUSE_OPT_KEY("ignore_memcg_limit", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END
};

static void null_init(void *userdata, struct fuse_conn_info *conn)
{
	const struct cli *cli = userdata;

	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_HANDLE_KILLPRIV);
	conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	if (cli->splice_read && (conn->capable & FUSE_CAP_SPLICE_READ))
		conn->want |= FUSE_CAP_SPLICE_READ;
	if (cli->splice_write && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	conn->max_write = cli->max_write;
	conn->max_read = 0;
}

/* The attributes of ino (nf.lock held); -ENOENT when it does not exist. */
static int stat_locked(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 01777;
		st->st_nlink = 2;
		return 0;
	}
	if (ino != FILE_INO || !nf.exists)
		return -ENOENT;
	st->st_mode = S_IFREG | 0644;
	st->st_nlink = 1;
	st->st_size = nf.size;
	st->st_blocks = (nf.size + 511) / 512;
	return 0;
}

static void reply_entry_locked(fuse_req_t req, struct fuse_file_info *fi)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = FILE_INO;
	e.generation = 1;
	e.attr_timeout = attr_timeout;
	e.entry_timeout = entry_timeout;
	stat_locked(FILE_INO, &e.attr);
	if (fi) {
		fi->direct_io = 1;
		fi->keep_cache = 0;
		fuse_reply_create(req, &e, fi);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void null_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	pthread_mutex_lock(&nf.lock);
	if (parent == FUSE_ROOT_ID && nf.exists && !strcmp(name, nf.name))
		reply_entry_locked(req, NULL);
	else
		fuse_reply_err(req, ENOENT);
	pthread_mutex_unlock(&nf.lock);
}

static void null_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			struct fuse_file_info *fi)
{
	(void)mode;
	pthread_mutex_lock(&nf.lock);
	if (parent != FUSE_ROOT_ID || strlen(name) > NAME_MAX) {
		fuse_reply_err(req, EINVAL);
	} else if (nf.exists && strcmp(name, nf.name)) {
		fuse_reply_err(req, ENOSPC); /* one file only */
	} else {
		if (!nf.exists)
			nf.size = 0;
		nf.exists = 1;
		strcpy(nf.name, name);
		reply_entry_locked(req, fi);
	}
	pthread_mutex_unlock(&nf.lock);
}

static void null_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int err = ENOENT;

	pthread_mutex_lock(&nf.lock);
	if (parent == FUSE_ROOT_ID && nf.exists && !strcmp(name, nf.name)) {
		nf.exists = 0;
		err = 0;
	}
	pthread_mutex_unlock(&nf.lock);
	fuse_reply_err(req, err);
}

static void null_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int ret;

	(void)fi;
	pthread_mutex_lock(&nf.lock);
	ret = stat_locked(ino, &st);
	pthread_mutex_unlock(&nf.lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, attr_timeout);
}

static void null_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			 struct fuse_file_info *fi)
{
	struct stat st;
	int ret;

	(void)fi;
	pthread_mutex_lock(&nf.lock);
	ret = stat_locked(ino, &st);
	if (ret == 0 && (to_set & FUSE_SET_ATTR_SIZE) && ino == FILE_INO) {
		nf.size = attr->st_size;
		ret = stat_locked(ino, &st);
	}
	pthread_mutex_unlock(&nf.lock);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, attr_timeout);
}

static void null_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int exists;

	pthread_mutex_lock(&nf.lock);
	exists = ino == FILE_INO && nf.exists;
	if (exists && (fi->flags & O_TRUNC))
		nf.size = 0;
	pthread_mutex_unlock(&nf.lock);
	if (!exists) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

static void null_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	off_t end;

	(void)ino;
	(void)fi;
	pthread_mutex_lock(&nf.lock);
	end = nf.size;
	pthread_mutex_unlock(&nf.lock);
	if (off >= end)
		size = 0;
	else if ((off_t)size > end - off)
		size = (size_t)(end - off);
	if (size > NULL_MAX_IO)
		size = NULL_MAX_IO;
	/* one writev, as thpfs's zero-copy reply (fuse_reply_data with
	 * splice_write measured the same: vmsplice + splice) */
	fuse_reply_buf(req, reply_data, size);
}

/* A write moves the size like a real one and drops the payload. */
static void accept_write(fuse_req_t req, size_t size, off_t off)
{
	pthread_mutex_lock(&nf.lock);
	if (off + (off_t)size > nf.size)
		nf.size = off + (off_t)size;
	pthread_mutex_unlock(&nf.lock);
	fuse_reply_write(req, size);
}

/* Where in write_sink the payload of a write at off goes: at the same
 * offset in a 1 MiB frame when it fits, else at its start. */
static char *sink_at(off_t off, size_t size)
{
	size_t at = (size_t)off & (NULL_MAX_IO - 1);

	return write_sink + (at + size <= NULL_MAX_IO ? at : 0);
}

static void null_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	if (write_sink)
		memcpy(sink_at(off, size), buf, size);
	accept_write(req, size, off);
}

/*
 * With splice_read a large payload is still in libfuse's pipe, which must
 * be emptied before the thread reads the next request: drained into
 * /dev/null (no copy) or, with FUSE_NULL_COPY, read into write_sink.
 */
static void null_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off,
			   struct fuse_file_info *fi)
{
	const struct fuse_buf *b = &in->buf[0];
	size_t size = fuse_buf_size(in), done = 0;

	if (in->count != 1 || !(b->flags & FUSE_BUF_IS_FD)) {
		null_write(req, ino, (const char *)b->mem + in->off, size, off, fi);
		return;
	}
	while (done < size) {
		ssize_t n = write_sink ? read(b->fd, sink_at(off, size) + done, size - done)
				       : splice(b->fd, NULL, dev_null, NULL, size - done, 0);

		if (n <= 0) {
			fuse_reply_err(req, n < 0 ? errno : EIO);
			return;
		}
		done += (size_t)n;
	}
	accept_write(req, size, off);
}

static void null_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void null_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void null_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static const struct fuse_lowlevel_ops null_ops = {
	.init = null_init,
	.lookup = null_lookup,
	.forget = null_forget,
	.getattr = null_getattr,
	.setattr = null_setattr,
	.unlink = null_unlink,
	.open = null_open,
	.create = null_create,
	.read = null_read,
	.write = null_write,
	.write_buf = null_write_buf,
	.flush = null_flush,
	.release = null_release,
};

/* Maps the reply buffer, 2 MiB aligned and asked to be a huge page, and
 * fills it (real pages, not the shared zero page).  Returns 0 or -1. */
static int map_reply_data(void)
{
	size_t huge = 2U << 20;
	char *p = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("fuse-null: mmap");
		return -1;
	}
	reply_data = (char *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	if (madvise(reply_data, huge, MADV_HUGEPAGE) < 0)
		perror("fuse-null: madvise(MADV_HUGEPAGE)"); /* works, in base pages */
	memset(reply_data, 0x5a, huge);
	dev_null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (dev_null < 0) {
		perror("fuse-null: /dev/null");
		return -1;
	}
	if (getenv("FUSE_NULL_COPY") && !strcmp(getenv("FUSE_NULL_COPY"), "1")) {
		write_sink = reply_data + NULL_MAX_IO; /* the other half of the huge page */
		memset(write_sink, 0, NULL_MAX_IO);
	}
	return 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts = { 0 };
	struct fuse_session *se = NULL;
	struct cli cli = { .max_write = NULL_MAX_IO, .attr_timeout = 1.0, .entry_timeout = 1.0 };
	int ret = 1;

	if (map_reply_data() < 0)
		return 1;
	if (fuse_opt_parse(&args, &cli, cli_opts, NULL) < 0 ||
	    fuse_opt_insert_arg(&args, 1, "-odefault_permissions,fsname=fuse-null,subtype=null") < 0 ||
	    fuse_parse_cmdline(&args, &opts) != 0)
		goto out;
	if (cli.max_write < 4096 || cli.max_write > NULL_MAX_IO) {
		fprintf(stderr, "%s: max_write=%u: must be 4096..%u\n", argv[0], cli.max_write,
			NULL_MAX_IO);
		goto out;
	}
	if (cli.attr_timeout < 0 || cli.entry_timeout < 0) {
		fprintf(stderr, "%s: attr_timeout and entry_timeout must be >= 0\n", argv[0]);
		goto out;
	}
	attr_timeout = cli.attr_timeout;
	entry_timeout = cli.entry_timeout;
	if (!opts.mountpoint) {
		fprintf(stderr, "usage: %s [-f] [-s] [-o OPTIONS] MOUNTPOINT\n", argv[0]);
		goto out;
	}
	se = fuse_session_new(&args, &null_ops, sizeof(null_ops), &cli);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	if (fuse_daemonize(opts.foreground) == 0)
		ret = thpfs_fuse_run_session(se, &opts) < 0; /* a signal number is a normal end */
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
