/*
 * backend_thpfs.c - guest RAM as one libthpfs file in an in-process mount
 * ("huge=always" with the default split mode, plus --thpfs-options).
 *
 * Paths: the checks read with thpfs_pread (holes stay holes), the host
 * discards with thpfs_fallocate(PUNCH_HOLE|KEEP_SIZE) and zeroes with
 * pwrite.  How the guest itself reaches its RAM is one small layer below
 * ("the guest's access"): through the library's guest-RAM mapping
 * (thpfs_mmap) when include/thpfs.h has it, as the kernel backend's guest
 * writes through its shared mapping; else with thpfs_pwrite, and its
 * pointer chase through thpfs_map pins.
 *
 * Huge-page coverage is asked from the kernel (PAGEMAP_SCAN, pagemap.c); see
 * tb_huge_bytes.
 */
#define _GNU_SOURCE
#include "balloon.h"
#include "pagemap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thpfs.h"

#define THPFS_BASE_OPTS "huge=always,size=0"
#define ZERO_CHUNK (64UL << 10)

struct thpfs_be {
	struct thpfs *fs;
	struct thpfs_file *f;
	char *map;		/* the guest-RAM mapping (thpfs_mmap), or NULL */
	size_t map_len;
	void **pins;		/* addresses returned by thpfs_map */
	uint64_t npins, pins_cap;
	char *zeros;
};

static struct thpfs_be *tb(struct bl_backend *be)
{
	return be->priv;
}

static void tb_free(struct thpfs_be *t)
{
#ifdef THPFS_MMAP_ALIGN
	if (t->map)
		thpfs_munmap(t->f, t->map, t->map_len);
#endif
	if (t->f)
		thpfs_close(t->f);
	if (t->fs)
		thpfs_unmount(t->fs);
	free(t->pins);
	free(t->zeros);
	free(t);
}

/* ---- The guest's access to its RAM ---- */

/*
 * Maps guest RAM for the guest when the library can: one contiguous
 * mapping that is the file's storage (needs a size in whole 2 MiB; a guest
 * of another size, or a kernel without PAGEMAP_SCAN (-EOPNOTSUPP), writes
 * with pwrite instead).
 */
static int tb_guest_map(struct thpfs_be *t, uint64_t size, char *err, size_t errlen)
{
#ifdef THPFS_MMAP_ALIGN
	void *addr = NULL;
	int rc;

	if (size % THPFS_MMAP_ALIGN)
		return 0;
	rc = thpfs_mmap(t->f, 0, size, &addr);
	if (rc == -EOPNOTSUPP)
		return 0;
	if (rc) {
		snprintf(err, errlen, "thpfs_mmap of guest RAM: %s", strerror(-rc));
		return rc;
	}
	t->map = addr;
	t->map_len = size;
#else
	(void)t;
	(void)size;
	(void)err;
	(void)errlen;
#endif
	return 0;
}

static const char *tb_guest_path(struct bl_backend *be)
{
	return tb(be)->map ? "mapping" : "pwrite";
}

static int tb_open(struct bl_backend *be, uint64_t size, const char *opts, char *err,
		   size_t errlen)
{
	struct thpfs_be *t = calloc(1, sizeof(*t));
	char o[512], merr[256] = "";
	int rc;

	if (!t)
		return -ENOMEM;
	t->zeros = calloc(1, ZERO_CHUNK);
	if (!t->zeros) {
		tb_free(t);
		return -ENOMEM;
	}
	snprintf(o, sizeof(o), "%s%s%s", THPFS_BASE_OPTS, opts && *opts ? "," : "",
		 opts ? opts : "");
	rc = thpfs_mount_ex(&t->fs, o, merr, sizeof(merr));
	if (rc) {
		t->fs = NULL;
		snprintf(err, errlen, "thpfs_mount(\"%s\"): %s%s%s", o, strerror(-rc),
			 *merr ? ": " : "", merr);
		tb_free(t);
		return rc;
	}
	rc = thpfs_open(t->fs, "/guest-ram", O_RDWR | O_CREAT | O_EXCL, 0600, &t->f);
	if (!rc)
		rc = thpfs_ftruncate(t->f, (off_t)size);
	if (rc) {
		snprintf(err, errlen, "thpfs: creating guest RAM: %s", strerror(-rc));
		tb_free(t);
		return rc;
	}
	rc = tb_guest_map(t, size, err, errlen);
	if (rc) {
		tb_free(t);
		return rc;
	}
	be->priv = t;
	be->size = size;
	be->npages = size >> BL_PAGE_SHIFT;
	return 0;
}

static void tb_unmap_pages(struct bl_backend *be)
{
	struct thpfs_be *t = tb(be);

	for (uint64_t i = 0; i < t->npins; i++)
		thpfs_unmap(t->f, t->pins[i]);
	t->npins = 0;
}

static void tb_close(struct bl_backend *be)
{
	if (!be->priv)
		return;
	tb_unmap_pages(be);
	tb_free(tb(be));
	be->priv = NULL;
}

/* Writes or reads all of [off, off+len), short transfers retried. */
static int tb_io(struct bl_backend *be, uint64_t off, void *buf, size_t len, bool write)
{
	char *p = buf;

	while (len) {
		ssize_t n = write ? thpfs_pwrite(tb(be)->f, p, len, (off_t)off)
				  : thpfs_pread(tb(be)->f, p, len, (off_t)off);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* The guest stores to its RAM. */
static int tb_write(struct bl_backend *be, uint64_t off, const void *buf, size_t len)
{
	struct thpfs_be *t = tb(be);

	if (t->map) {
		if (off + len > be->size)
			return -EINVAL;
		memcpy(t->map + off, buf, len);
		return 0;
	}
	return tb_io(be, off, (void *)buf, len, true);
}

static int tb_read(struct bl_backend *be, uint64_t off, void *buf, size_t len)
{
	return tb_io(be, off, buf, len, false);
}

static int tb_punch(struct bl_backend *be, uint64_t off, uint64_t len)
{
	return thpfs_fallocate(tb(be)->f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
			       (off_t)off, (off_t)len);
}

/* The host zeroes (legacy): with pwrite, as on the kernel side. */
static int tb_zero(struct bl_backend *be, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < ZERO_CHUNK ? len : ZERO_CHUNK;
		int err = tb_io(be, off, tb(be)->zeros, n, true);

		if (err)
			return err;
		off += n;
		len -= n;
	}
	return 0;
}

static int tb_lazy_free(struct bl_backend *be, uint64_t off, uint64_t len)
{
	return thpfs_free_lazy(tb(be)->f, (off_t)off, (off_t)len);
}

static int64_t tb_reclaim(struct bl_backend *be, uint64_t bytes)
{
	return thpfs_reclaim(tb(be)->fs, bytes);
}

static int tb_pin(struct thpfs_be *t, void *addr)
{
	if (t->npins == t->pins_cap) {
		uint64_t cap = t->pins_cap ? t->pins_cap * 2 : 1024;
		void **p = realloc(t->pins, sizeof(void *) * cap);

		if (!p)
			return -ENOMEM;
		t->pins = p;
		t->pins_cap = cap;
	}
	t->pins[t->npins++] = addr;
	return 0;
}

/*
 * Pins the pages to read.  thpfs_map pins the page (huge or base) holding
 * off and says how far the pointer is valid, so one pin serves every later
 * frame inside that range; pfns must be ascending for that to work.  The
 * pins are held until tb_unmap_pages.
 */
static int tb_map_pages(struct bl_backend *be, const uint32_t *pfns, uint64_t n, char **ptrs)
{
	struct thpfs_be *t = tb(be);
	uint64_t moff = 0, mlen = 0;
	char *maddr = NULL;

	if (t->map) {
		for (uint64_t i = 0; i < n; i++)
			ptrs[i] = t->map + ((uint64_t)pfns[i] << BL_PAGE_SHIFT);
		return 0;
	}

	for (uint64_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)pfns[i] << BL_PAGE_SHIFT;

		if (!maddr || off < moff || off + BL_PAGE_SIZE > moff + mlen) {
			void *addr;
			size_t len;
			int err = thpfs_map(t->f, (off_t)off, &addr, &len);

			if (err)
				return err;
			err = tb_pin(t, addr);
			if (err) {
				thpfs_unmap(t->f, addr);
				return err;
			}
			maddr = addr;
			moff = off;
			mlen = len;
		}
		ptrs[i] = maddr + (off - moff);
	}
	return 0;
}

/*
 * Bytes of guest RAM the kernel maps with huge pages: PAGEMAP_SCAN over the
 * guest's mapping, the same question as on the kernel side.  Without a
 * mapping (a guest size that is no multiple of 2 MiB), the library's
 * shmem_pmd_mapped: its own PAGEMAP_SCAN over the file system's frames
 * (-ENOSYS when the kernel cannot be asked, Linux < 6.7).  Never a pin per
 * frame: dropping one settles lazily freed pages, which would change what
 * is measured.
 */
static int64_t tb_huge_bytes(struct bl_backend *be)
{
	struct thpfs_be *t = tb(be);
	struct thpfs_stats st;
	int err;

	if (t->map)
		return thpfs_pagemap_huge_bytes(t->map, t->map_len);
	err = thpfs_get_stats(t->fs, &st);
	if (err)
		return err;
	return st.split_verify ? (int64_t)st.shmem_pmd_mapped : -ENOSYS;
}

static void tb_counters(struct bl_backend *be, struct bl_thp_counters *c)
{
	struct thpfs_stats st;

	memset(c, 0, sizeof(*c));
	if (thpfs_get_stats(tb(be)->fs, &st))
		return;
	/* Huge pages broken up however thpfs did it: the kernel's own splits
	 * (thp_split_page, split=native), copies (thp_split_migrate) and
	 * in-place drops (thp_split_inplace). */
	c->split = st.thp_split_page + st.thp_split_migrate + st.thp_split_inplace;
	c->split_failed = st.thp_split_page_failed;
	c->deferred = st.thp_deferred_split_page;
	c->collapse_alloc = st.thp_collapse_alloc;
	c->pages_collapsed = st.base_pages_collapsed;
	c->file_alloc = st.thp_file_alloc;
}

static int tb_collapse(struct bl_backend *be)
{
	return thpfs_collapse(tb(be)->f, 0, (off_t)be->size);
}

const struct bl_backend_ops bl_thpfs_ops = {
	.name = "thpfs",
	.open = tb_open,
	.close = tb_close,
	.write = tb_write,
	.read = tb_read,
	.punch = tb_punch,
	.zero = tb_zero,
	.lazy_free = tb_lazy_free,
	.reclaim = tb_reclaim,
	.map_pages = tb_map_pages,
	.unmap_pages = tb_unmap_pages,
	.huge_bytes = tb_huge_bytes,
	.guest_path = tb_guest_path,
	.counters = tb_counters,
	.collapse = tb_collapse,
};
