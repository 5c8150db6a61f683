/*
 * session.h - the session loop of the FUSE daemons built on libfuse here:
 * thpfs (tools/thpfs-fuse.c) and the benchmark's do-nothing daemon
 * (bench/fuse-null.c), which must run requests the same way for its
 * figures to be a ceiling of thpfs's.  Include after defining
 * FUSE_USE_VERSION (fuse_lowlevel.h).
 */
#ifndef THPFS_FUSE_SESSION_H
#define THPFS_FUSE_SESSION_H

#include <fuse_lowlevel.h>

/* Runs se until unmount or a signal: libfuse's multi-threaded loop (with
 * the command line's clone_fd, max_idle_threads and max_threads), or the
 * single-threaded one with -s.  Returns what the loop returns, or -ENOMEM. */
int thpfs_fuse_run_session(struct fuse_session *se, const struct fuse_cmdline_opts *opts);

#endif
