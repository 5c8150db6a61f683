/*
 * io.c - the daemon's /dev/fuse I/O, through libfuse's custom I/O hooks
 * (fuse_session_custom_io), for one reason: to ask the kernel for
 * FUSE_DIRECT_IO_ALLOW_MMAP.
 *
 * Every file is opened with direct I/O (no page-cache copy of thpfs data),
 * and the kernel refuses a shared mmap of a direct-I/O file (ENODEV)
 * unless the daemon's FUSE_INIT reply carries FUSE_DIRECT_IO_ALLOW_MMAP
 * (flags2 bit 4 = 1 << 36, protocol 7.39, Linux 6.6).  libfuse 3.14 knows
 * no such capability (it appeared in 3.16) and builds the reply itself.
 * So reads note the INIT request (its unique id, and whether the kernel
 * offers the flag in its flags2), and the write of the reply to that
 * request gets the flag added before it goes to the kernel.  Every other
 * message passes through unchanged; splice goes through too, so libfuse
 * keeps offering splice_read/splice_write.
 */
#define _GNU_SOURCE
#include "thpfs-fuse.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Not in this system's <linux/fuse.h> (protocol 7.38). */
#define INIT_FLAGS2_DIRECT_IO_ALLOW_MMAP (1u << (36 - 32))

/* The layout of fuse_init_in/_out up to flags2, as protocol 7.36+ has it. */
struct init_in_ext {
	uint32_t major, minor, max_readahead, flags, flags2;
};
struct init_out_ext {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2;
};

/* The INIT exchange: written by the thread that reads INIT, read by the
 * one that replies (the same thread: libfuse answers INIT synchronously). */
static struct {
	bool done;          /* the INIT reply has gone out */
	bool seen;          /* an INIT request was read */
	bool offered;       /* the kernel offered DIRECT_IO_ALLOW_MMAP */
	uint64_t unique;    /* its request id */
} init_state;

static int *allow_mmap_out; /* where to report the outcome (struct thpfs_fuse) */

static void note_init_request(const void *buf, ssize_t n)
{
	const struct fuse_in_header *in = buf;
	struct init_in_ext arg;

	if (n < (ssize_t)sizeof(*in) || in->opcode != FUSE_INIT)
		return;
	init_state.seen = true;
	init_state.unique = in->unique;
	memset(&arg, 0, sizeof(arg));
	memcpy(&arg, (const char *)buf + sizeof(*in),
	       (size_t)n - sizeof(*in) < sizeof(arg) ? (size_t)n - sizeof(*in) : sizeof(arg));
	init_state.offered = (arg.flags & FUSE_INIT_EXT) &&
			     (arg.flags2 & INIT_FLAGS2_DIRECT_IO_ALLOW_MMAP);
}

/* Adds the flag to libfuse's INIT reply (iov[1] is the fuse_init_out). */
static void patch_init_reply(struct iovec *iov, int count)
{
	const struct fuse_out_header *out = iov[0].iov_base;
	struct init_out_ext *arg;

	if (count < 2 || iov[0].iov_len < sizeof(*out) || out->unique != init_state.unique)
		return;
	init_state.done = true;
	if (out->error || !init_state.offered || iov[1].iov_len < sizeof(*arg))
		return;
	arg = iov[1].iov_base;
	if (!(arg->flags & FUSE_INIT_EXT))
		return; /* libfuse sets it when the kernel did: flags2 is read */
	arg->flags2 |= INIT_FLAGS2_DIRECT_IO_ALLOW_MMAP;
	if (allow_mmap_out)
		*allow_mmap_out = 1;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	(void)userdata;
	if (!init_state.seen && n > 0)
		note_init_request(buf, n);
	return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	if (init_state.seen && !init_state.done)
		patch_init_reply(iov, count);
	return writev(fd, iov, count);
}

static ssize_t io_splice_receive(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				 unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			      unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

/*
 * Installs the I/O hooks on a mounted session (before its loop runs: the
 * kernel's INIT request is still waiting).  tf->allow_mmap becomes 1 once
 * the kernel has been given the flag.  Returns 0 or a negative errno.
 */
int thpfs_fuse_io_install(struct fuse_session *se, struct thpfs_fuse *tf)
{
	static const struct fuse_custom_io io = {
		.writev = io_writev,
		.read = io_read,
		.splice_receive = io_splice_receive,
		.splice_send = io_splice_send,
	};

	allow_mmap_out = &tf->allow_mmap;
	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
