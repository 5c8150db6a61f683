/*
 * session.h - what the FUSE daemons built on libfuse here share: thpfs
 * (tools/thpfs-fuse.c) and the benchmark's do-nothing daemon
 * (bench/fuse-null.c), which must take the same command line and run
 * requests the same way for its figures to be a ceiling of thpfs's.
 * Include after defining FUSE_USE_VERSION (fuse_lowlevel.h, fuse_opt.h).
 */
#ifndef THPFS_FUSE_SESSION_H
#define THPFS_FUSE_SESSION_H

#include <fuse_lowlevel.h>
#include <fuse_opt.h>

/* fuse_opt entries for the library's mount options (include/thpfs.h),
 * each reported with key: thpfs hands them to thpfs_mount, fuse-null
 * discards them (FUSE_OPT_KEY_DISCARD). */
#define THPFS_FUSE_LIB_OPTS(key) \
	FUSE_OPT_KEY("size=", key), FUSE_OPT_KEY("nr_inodes=", key), \
	FUSE_OPT_KEY("huge=", key), FUSE_OPT_KEY("split=", key), \
	FUSE_OPT_KEY("max_ptes_none=", key), FUSE_OPT_KEY("collapse=", key), \
	FUSE_OPT_KEY("scan_sleep_ms=", key), FUSE_OPT_KEY("prealloc=", key), \
	FUSE_OPT_KEY("mode=", key), FUSE_OPT_KEY("uid=", key), FUSE_OPT_KEY("gid=", key)

/* Runs se until unmount or a signal: libfuse's multi-threaded loop (with
 * the command line's clone_fd, max_idle_threads and max_threads), or the
 * single-threaded one with -s.  Returns what the loop returns, or -ENOMEM. */
int thpfs_fuse_run_session(struct fuse_session *se, const struct fuse_cmdline_opts *opts);

#endif
