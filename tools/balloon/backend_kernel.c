/*
 * backend_kernel.c - guest RAM as a file on the kernel's tmpfs, mounted with
 * huge=always on be->dir inside a private mount namespace of the run's
 * process (so the mount disappears with the process whatever happens).
 *
 * Paths: the guest writes and reads its RAM through a shared mapping of the
 * file, as a VMM's guest does; the checks read with pread (a read fault on
 * a tmpfs hole would allocate a page, pread does not); the host discards
 * with fallocate(PUNCH_HOLE|KEEP_SIZE) and zeroes with pwrite.
 *
 * Huge-page coverage is what PAGEMAP_SCAN reports mapped with huge pages
 * over the mapping (pagemap.c, as on the thpfs side), read after touching
 * one present page of every 2 MiB range (khugepaged unmaps what it
 * collapses until the next fault).  Split and collapse
 * counters are deltas of the global /proc/vmstat: other activity on the
 * machine shows up in them.
 */
#define _GNU_SOURCE
#include "balloon.h"
#include "pagemap.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define ZERO_CHUNK (64UL << 10)

struct kernel_be {
	int fd;
	char *map;
	bool mounted;
	char path[300];
	uint64_t *present;	/* pages the file holds, as far as we changed them */
	char *zeros;
};

static struct kernel_be *kb(struct bl_backend *be)
{
	return be->priv;
}

static void kb_set_present(struct kernel_be *k, uint64_t pfn, uint64_t n, bool on)
{
	for (uint64_t p = pfn; p < pfn + n; p++) {
		if (on)
			k->present[p / 64] |= 1ULL << (p % 64);
		else
			k->present[p / 64] &= ~(1ULL << (p % 64));
	}
}

static void kb_teardown(struct bl_backend *be, struct kernel_be *k)
{
	if (k->map && k->map != MAP_FAILED)
		munmap(k->map, be->size);
	if (k->fd >= 0) {
		close(k->fd);
		unlink(k->path);
	}
	if (k->mounted && umount2(be->dir, 0))
		umount2(be->dir, MNT_DETACH);
	free(k->present);
	free(k->zeros);
	free(k);
}

/* A private tmpfs huge=always on be->dir.  -EPERM / -ENOSYS: the backend
 * cannot run here (skip); other errors are failures. */
static int kb_mount(struct bl_backend *be, uint64_t size, char *err, size_t errlen)
{
	char opts[128];

	if (unshare(CLONE_NEWNS)) {
		int e = errno;

		snprintf(err, errlen, "kernel backend skipped: cannot make a private mount "
			 "namespace (%s; needs root)", strerror(e));
		return e == EPERM ? -EPERM : -e;
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		snprintf(err, errlen, "kernel backend: making / private: %s", strerror(errno));
		return -errno;
	}
	snprintf(opts, sizeof(opts), "huge=always,size=%llu,mode=0700",
		 (unsigned long long)(size + 64 * BL_MIB));
	if (mount("thpfs-balloon", be->dir, "tmpfs", MS_NOSUID | MS_NODEV, opts)) {
		int e = errno;

		snprintf(err, errlen, "kernel backend skipped: cannot mount tmpfs -o %s on %s: %s",
			 opts, be->dir, strerror(e));
		if (e == EPERM)
			return -EPERM;
		return e == EINVAL ? -ENOSYS : -e; /* EINVAL: no huge= (no THP) */
	}
	return 0;
}

static int kb_open(struct bl_backend *be, uint64_t size, const char *opts, char *err,
		   size_t errlen)
{
	struct kernel_be *k = calloc(1, sizeof(*k));
	int rc;

	if (!k)
		return -ENOMEM;
	k->fd = -1;
	be->size = size;
	be->npages = size >> BL_PAGE_SHIFT;
	k->present = calloc((be->npages + 63) / 64, sizeof(uint64_t));
	k->zeros = calloc(1, ZERO_CHUNK);
	if (!k->present || !k->zeros) {
		kb_teardown(be, k);
		return -ENOMEM;
	}
	rc = kb_mount(be, size, err, errlen);
	if (rc) {
		kb_teardown(be, k);
		return rc;
	}
	k->mounted = true;
	snprintf(k->path, sizeof(k->path), "%s/guest-ram", be->dir);
	k->fd = open(k->path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (k->fd < 0 || ftruncate(k->fd, (off_t)size)) {
		rc = -errno;
		snprintf(err, errlen, "kernel backend: creating %s: %s", k->path, strerror(errno));
		kb_teardown(be, k);
		return rc;
	}
	k->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, k->fd, 0);
	if (k->map == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "kernel backend: mmap: %s", strerror(errno));
		kb_teardown(be, k);
		return rc;
	}
	be->priv = k;
	return 0;
}

static void kb_close(struct bl_backend *be)
{
	if (be->priv)
		kb_teardown(be, kb(be));
	be->priv = NULL;
}

static int kb_write(struct bl_backend *be, uint64_t off, const void *buf, size_t len)
{
	if (off + len > be->size)
		return -EINVAL;
	memcpy(kb(be)->map + off, buf, len);
	kb_set_present(kb(be), off >> BL_PAGE_SHIFT, (len + BL_PAGE_SIZE - 1) >> BL_PAGE_SHIFT,
		       true);
	return 0;
}

static int kb_read(struct bl_backend *be, uint64_t off, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(kb(be)->fd, p, len, (off_t)off);

		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int kb_punch(struct bl_backend *be, uint64_t off, uint64_t len)
{
	if (fallocate(kb(be)->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len))
		return -errno;
	kb_set_present(kb(be), off >> BL_PAGE_SHIFT, len >> BL_PAGE_SHIFT, false);
	return 0;
}

static int kb_zero(struct bl_backend *be, uint64_t off, uint64_t len)
{
	struct kernel_be *k = kb(be);
	uint64_t pfn = off >> BL_PAGE_SHIFT, n = len >> BL_PAGE_SHIFT;

	while (len) {
		size_t c = len < ZERO_CHUNK ? len : ZERO_CHUNK;
		ssize_t w = pwrite(k->fd, k->zeros, c, (off_t)off);

		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	kb_set_present(k, pfn, n, true);
	return 0;
}

static int kb_map_pages(struct bl_backend *be, const uint32_t *pfns, uint64_t n, char **ptrs)
{
	for (uint64_t i = 0; i < n; i++)
		ptrs[i] = kb(be)->map + ((uint64_t)pfns[i] << BL_PAGE_SHIFT);
	return 0;
}

static void kb_unmap_pages(struct bl_backend *be)
{
	(void)be;
}

/* Reads one byte of a present page in every 2 MiB range, so that a huge
 * page khugepaged made is mapped again (never touches a hole: a read fault
 * there would allocate). */
static void kb_touch_present(struct bl_backend *be)
{
	struct kernel_be *k = kb(be);
	volatile char sink;

	for (uint64_t hp = 0; hp * BL_PAGES_PER_HUGE < be->npages; hp++) {
		uint64_t w0 = hp * (BL_PAGES_PER_HUGE / 64);

		for (uint64_t w = w0; w < w0 + BL_PAGES_PER_HUGE / 64 && w * 64 < be->npages; w++) {
			if (!k->present[w])
				continue;
			uint64_t pfn = w * 64 + (uint64_t)__builtin_ctzll(k->present[w]);

			sink = k->map[pfn << BL_PAGE_SHIFT];
			break;
		}
	}
	(void)sink;
}

static int64_t kb_huge_bytes(struct bl_backend *be)
{
	kb_touch_present(be);
	return thpfs_pagemap_huge_bytes(kb(be)->map, be->size);
}

static const char *kb_guest_path(struct bl_backend *be)
{
	(void)be;
	return "mapping";
}

static uint64_t read_u64_file(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

static void kb_counters(struct bl_backend *be, struct bl_thp_counters *c)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char name[64];
	unsigned long long v;

	(void)be;
	memset(c, 0, sizeof(*c));
	if (f) {
		while (fscanf(f, "%63s %llu", name, &v) == 2) {
			if (!strcmp(name, "thp_split_page"))
				c->split = v;
			else if (!strcmp(name, "thp_split_page_failed"))
				c->split_failed = v;
			else if (!strcmp(name, "thp_deferred_split_page"))
				c->deferred = v;
			else if (!strcmp(name, "thp_collapse_alloc"))
				c->collapse_alloc = v;
			else if (!strcmp(name, "thp_file_alloc"))
				c->file_alloc = v;
		}
		fclose(f);
	}
	c->pages_collapsed =
		read_u64_file("/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed");
}

static int kb_collapse(struct bl_backend *be)
{
	if (madvise(kb(be)->map, be->size, MADV_COLLAPSE))
		return -errno;
	return 0;
}

const struct bl_backend_ops bl_kernel_ops = {
	.name = "kernel",
	.open = kb_open,
	.close = kb_close,
	.write = kb_write,
	.read = kb_read,
	.punch = kb_punch,
	.zero = kb_zero,
	.map_pages = kb_map_pages,
	.unmap_pages = kb_unmap_pages,
	.huge_bytes = kb_huge_bytes,
	.guest_path = kb_guest_path,
	.counters = kb_counters,
	.collapse = kb_collapse,
};
