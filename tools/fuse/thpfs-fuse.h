/*
 * thpfs-fuse.h - state shared by the thpfs FUSE daemon's files.
 *
 * tools/thpfs-fuse.c parses the command line, mounts and runs the session;
 * tools/fuse/ops.c holds the low-level operations, a thin adapter from
 * libfuse's inode-addressed requests onto libthpfs's *_at / *_ino functions.
 */
#ifndef THPFS_FUSE_H
#define THPFS_FUSE_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "thpfs.h"

/* The extended attribute on the root directory that holds the meminfo text. */
#define THPFS_XATTR_MEMINFO "user.thpfs.meminfo"

/* Largest read or write the daemon asks the kernel for (FUSE_MAX_MAX_PAGES). */
#define THPFS_FUSE_MAX_IO (1U << 20)

/* Reads at least this large are answered straight from a pinned huge page
 * when they lie in one; below it the pin costs more than the copy saves. */
#define THPFS_FUSE_ZERO_COPY_MIN (32U << 10)

struct thpfs_fuse {
	struct thpfs *fs;       /* set before the session loop starts */
	struct fuse_session *se; /* for notifications to the kernel */
	double attr_timeout;    /* seconds the kernel may cache attributes */
	double entry_timeout;   /* seconds the kernel may cache names */
	unsigned max_write;     /* bytes asked for in FUSE_INIT */
	int splice_read;        /* ask for FUSE_CAP_SPLICE_READ */
	int splice_write;       /* ask for FUSE_CAP_SPLICE_WRITE */
	int debug;
	int allow_mmap;         /* the kernel took FUSE_DIRECT_IO_ALLOW_MMAP (io.c) */
};

extern const struct fuse_lowlevel_ops thpfs_fuse_ops;

/* io.c: /dev/fuse I/O that adds FUSE_DIRECT_IO_ALLOW_MMAP to the INIT
 * reply, so that files opened with direct I/O can be mapped shared. */
int thpfs_fuse_io_install(struct fuse_session *se, struct thpfs_fuse *tf);

#endif /* THPFS_FUSE_H */
