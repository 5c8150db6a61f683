/*
 * split.c - chunks: making, destroying, splitting a huge page into base pages
 * and collapsing base pages back into a huge page.
 *
 * Every function here is called with inode->lock held for writing and never
 * sleeps on another inode.  None of them moves or frees a pinned chunk.
 */
#include "internal.h"

#include <stdlib.h>

/* ---- Page bitmaps ---- */

void _thpfs_bitmap_set_range(uint64_t *b, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		if ((i & 63) == 0 && i + 64 <= to) {
			b[i >> 6] = ~0ULL;
			i += 63;
			continue;
		}
		thpfs_bit_set(b, i);
	}
}

void _thpfs_bitmap_clear_range(uint64_t *b, unsigned from, unsigned to)
{
	for (unsigned i = from; i < to; i++) {
		if ((i & 63) == 0 && i + 64 <= to) {
			b[i >> 6] = 0;
			i += 63;
			continue;
		}
		thpfs_bit_clear(b, i);
	}
}

unsigned _thpfs_bitmap_find(const uint64_t *b, unsigned from, bool want)
{
	while (from < THPFS_PAGES_PER_HUGE) {
		uint64_t w = want ? b[from >> 6] : ~b[from >> 6];
		w &= ~0ULL << (from & 63);
		if (w)
			return (from & ~63u) + (unsigned)__builtin_ctzll(w);
		from = (from & ~63u) + 64;
	}
	return THPFS_PAGES_PER_HUGE;
}

/* ---- Chunks ---- */

void _thpfs_chunk_check(const struct thpfs_chunk *c)
{
#ifdef THPFS_DEBUG
	unsigned n = thpfs_bitmap_weight(c->present);
	if (c->huge && n != THPFS_PAGES_PER_HUGE)
		abort();
	if (c->fresh && !c->huge)
		abort(); /* fresh: a huge frame (copy_in) */
	if (n != c->nr_present || (!c->huge && n == 0))
		abort();
	for (unsigned i = 0; i < THPFS_BITMAP_WORDS; i++)
		if ((c->uptodate[i] | c->pending[i]) & ~c->present[i])
			abort();
	if (!thpfs_bitmap_empty(c->pending) && !c->queued)
		abort(); /* pending pages are always on the deferred queue */
#else
	(void)c;
#endif
}

struct thpfs_chunk *_thpfs_chunk_new(struct thpfs_inode *inode, uint64_t index)
{
	struct thpfs_chunk *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->index = index;
	c->inode = inode;
	thpfs_list_init(&c->deferred);
	thpfs_list_init(&c->pinlink);
	return c;
}

/* Releases the base pages of a block whose bits are set in pages. */
static void release_pages(struct thpfs *fs, char *mem, const uint64_t *pages)
{
	thpfs_for_each_run(pages, i, end)
		_thpfs_pages_release(fs, mem, i, end);
}

void _thpfs_chunk_release(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages)
{
	if (c->mapped)
		_thpfs_mmap_release(fs, c, pages); /* at once, never batched */
	else
		release_pages(fs, c->mem, pages);
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++) {
		c->present[k] &= ~pages[k];
		c->uptodate[k] &= ~pages[k];
		c->pending[k] &= ~pages[k];
	}
	thpfs_chunk_set_present(c, thpfs_bitmap_weight(c->present));
}

void _thpfs_chunk_destroy(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (c->queued)
		_thpfs_deferred_del(fs, c);
	if (c->pins)
		thpfs_list_del(&c->pinlink); /* only when the inode itself dies */
	if (c->mapped) {
		_thpfs_mmap_chunk_free(fs, c);
	} else if (c->mem) {
		if (c->huge) {
			_thpfs_huge_free(fs, c->mem);
		} else {
			release_pages(fs, c->mem, c->present);
			_thpfs_block_free(fs, c->mem);
		}
	}
	thpfs_chunk_set_present(c, 0);
	_thpfs_index_remove(&c->inode->pages, c->index);
	free(c);
}

/* Copies the pages set in keep from one 2 MiB area to another, run by run;
 * dst was populated just now (_thpfs_copy_erms). */
static void copy_pages(char *dst, const char *src, const uint64_t *keep)
{
	thpfs_for_each_run(keep, i, end)
		_thpfs_copy_erms(dst + (size_t)i * THPFS_PAGE_SIZE, src + (size_t)i * THPFS_PAGE_SIZE,
		       (size_t)(end - i) * THPFS_PAGE_SIZE);
}

/* Populates the pages set in want in block mem; on failure releases what it
 * populated and returns the error. */
static int populate_pages(struct thpfs *fs, char *mem, const uint64_t *want, uint64_t credit)
{
	thpfs_for_each_run(want, i, end) {
		int err = _thpfs_pages_populate_credit(fs, mem, i, end, credit);
		if (err) {
			thpfs_bitmap_t done;
			memcpy(done, want, sizeof(done));
			_thpfs_bitmap_clear_range(done, i, THPFS_PAGES_PER_HUGE);
			release_pages(fs, mem, done);
			return err;
		}
	}
	return 0;
}

/*
 * Splits huge chunk c, dropping the pages set in drop (which must not be all
 * of them: a chunk wholly dropped is destroyed instead).  native: the kernel
 * splits the THP in place (see _thpfs_huge_split_native), we check with the
 * kernel that it did, and the dropped pages are released, no copy; when the
 * kernel kept the huge page (extra references on it) we return -EAGAIN and
 * the caller zeroes the pages and defers them (migrating would hold a copy of
 * the kept pages on top of a THP the references keep alive); when the split
 * cannot be done or checked (no PAGEMAP_SCAN, or only PAGEMAP_SCAN and the
 * THP is already mapped by 4 KiB entries: kernel.c), we migrate.  Counted as
 * thp_split_page (native, verified), thp_split_migrate or thp_split_inplace.
 * migrate: the pages
 * kept are copied into a new base block and the huge frame is freed whole,
 * so the memory of the dropped pages is back with the OS when this returns.
 * inplace: the huge frame becomes a base block and the dropped pages are
 * MADV_DONTNEED'd inside it; the kernel frees them only when its deferred
 * split shrinker gets to the THP.  If the range cannot be marked
 * MADV_NOHUGEPAGE (out of VMAs), inplace migrates instead.
 * Returns 0, -EBUSY if pinned, -EAGAIN if the kernel would not split, or
 * -ENOMEM/-ENOSPC (chunk unchanged).
 */
int _thpfs_split_chunk(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *drop)
{
	if (c->pins)
		return -EBUSY;
	if (c->mapped) /* in place only: a copy would lose concurrent stores */
		return _thpfs_mmap_split(fs, c, drop);
	thpfs_bitmap_t keep;
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++)
		keep[k] = ~drop[k];
	enum thpfs_split_mode mode = fs->opt.split;
	if (mode == THPFS_SPLIT_NATIVE) {
		int err = _thpfs_huge_split_native(fs, c->mem, drop);
		if (err == -EAGAIN)
			return err; /* the kernel kept the huge page */
		if (err)
			mode = THPFS_SPLIT_MIGRATE;
	} else if (mode == THPFS_SPLIT_INPLACE && _thpfs_huge_to_block(fs, c->mem)) {
		mode = THPFS_SPLIT_MIGRATE; /* no MADV_NOHUGEPAGE: khugepaged
					     * would fill the released pages */
	}
	if (mode == THPFS_SPLIT_MIGRATE) {
		int err;
		char *block = _thpfs_block_alloc(fs, &err);
		if (!block)
			return err;
		err = populate_pages(fs, block, keep, THPFS_HUGE_SIZE);
		if (err) {
			_thpfs_block_free(fs, block);
			return err;
		}
		copy_pages(block, c->mem, keep);
		_thpfs_huge_free(fs, c->mem);
		c->mem = block;
	} else {
		release_pages(fs, c->mem, drop);
	}
	c->huge = false;
	c->fresh = false; /* not the frame its first write faulted in any more */
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++) {
		c->present[k] = keep[k];
		c->uptodate[k] &= keep[k];
		c->pending[k] &= keep[k];
	}
	thpfs_chunk_set_present(c, thpfs_bitmap_weight(c->present));
	/* Only a native split is one the kernel made (and checked): the
	 * kernel's thp_split_page counts it too.  A migration frees the THP
	 * whole; in place, the kernel splits it later from its deferred
	 * queue (its thp_deferred_split_page). */
	if (mode == THPFS_SPLIT_NATIVE)
		THPFS_STAT_ADD(fs, thp_split_page, 1);
	else if (mode == THPFS_SPLIT_MIGRATE)
		THPFS_STAT_ADD(fs, thp_split_migrate, 1);
	else
		THPFS_STAT_ADD(fs, thp_split_inplace, 1);
	_thpfs_chunk_check(c);
	return 0;
}

/*
 * Collapses base chunk c into a huge page: a new huge frame (a prealloc pool
 * frame when there is one) gets a copy of the present pages (holes stay
 * zero), then the old block is retired: the background thread, woken at
 * once, gives it back (_thpfs_block_retire).  (The
 * kernel's MADV_COLLAPSE on a range split in place avoids our copy, but it
 * drains every CPU's LRU lists on each call; measured here it was slower and
 * far less predictable, so we copy.)  Skips
 * (with -EBUSY) a pinned chunk or one with pending pages (those are on their
 * way out), and (with -EAGAIN) one with more holes than max_ptes_none allows
 * unless force.  The collapsed page is uptodate if any of its pages was.
 */
int _thpfs_collapse_chunk(struct thpfs *fs, struct thpfs_chunk *c, bool force)
{
	if (c->huge)
		return 0;
	if (c->mapped) /* in place only: MADV_COLLAPSE */
		return _thpfs_mmap_collapse(fs, c);
	if (c->pins) {
		THPFS_STAT_ADD(fs, collapse_skipped_pinned, 1);
		return -EBUSY;
	}
	if (!thpfs_bitmap_empty(c->pending))
		return -EBUSY;
	if (!force && c->nr_present + fs->opt.max_ptes_none < THPFS_PAGES_PER_HUGE) {
		THPFS_STAT_ADD(fs, collapse_skipped_holes, 1);
		return -EAGAIN;
	}
	int err;
	uint64_t credit = (uint64_t)c->nr_present * THPFS_PAGE_SIZE;
	char *huge = _thpfs_huge_alloc_credit(fs, credit, &err);
	if (!huge) {
		THPFS_STAT_ADD(fs, thp_collapse_alloc_failed, 1);
		return err;
	}
	copy_pages(huge, c->mem, c->present);
	/* the old pages go back on the background thread, off this path */
	_thpfs_block_retire(fs, c->mem, c->present);
	bool uptodate = !thpfs_bitmap_empty(c->uptodate);
	THPFS_STAT_ADD(fs, thp_collapse_alloc, 1);
	THPFS_STAT_ADD(fs, base_pages_collapsed, c->nr_present);
	c->mem = huge;
	c->huge = true;
	c->fresh = false; /* written by the copy, not by its first write */
	thpfs_chunk_set_present(c, THPFS_PAGES_PER_HUGE);
	thpfs_bitmap_fill(c->present);
	if (uptodate)
		thpfs_bitmap_fill(c->uptodate);
	_thpfs_chunk_check(c);
	return 0;
}
