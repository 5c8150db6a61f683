/*
 * truncate.c - removing a range of a file (punch hole, truncate), the
 * deferred split queue, and reclaim.
 *
 * _thpfs_undo_range is the heart of thpfs (the kernel's shmem_undo_range):
 *  1. a chunk wholly inside the range is freed whole;
 *  2. a huge page partly inside is split and the base pages wholly inside the
 *     range are freed; bytes of a page only partly inside are zeroed;
 *  3. a chunk that cannot give memory back now (pinned, or no memory to split
 *     into) has the range zeroed instead - every other byte intact - and its
 *     pages inside the range are marked pending and queued on fs->deferred;
 *     they are freed when the last pin drops (thpfs_unmap), or by reclaim.
 * The kernel retries only anonymous memory this way; we do it for files.
 * thpfs_free_lazy uses the same queue on purpose: its pages are zeroed and
 * marked pending at once, and freed only by reclaim.
 *
 * Locking: callers hold inode->lock for writing; the deferred list has its
 * own fs->deferred_lock (below inode->lock in the lock order).
 */
#include "internal.h"

#include <stdlib.h>

void _thpfs_deferred_add(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (c->queued)
		return;
	pthread_mutex_lock(&fs->deferred_lock);
	thpfs_list_add_tail(&c->deferred, &fs->deferred);
	c->queued = true;
	pthread_mutex_unlock(&fs->deferred_lock);
	THPFS_STAT_ADD(fs, deferred_split_queue, 1);
	/* The kernel's event counts huge pages queued for a split. */
	if (c->huge)
		THPFS_STAT_ADD(fs, thp_deferred_split_page, 1);
}

void _thpfs_deferred_del(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (!c->queued)
		return;
	pthread_mutex_lock(&fs->deferred_lock);
	thpfs_list_del(&c->deferred);
	c->queued = false;
	pthread_mutex_unlock(&fs->deferred_lock);
	THPFS_STAT_SUB(fs, deferred_split_queue, 1);
}

/* Zeroes bytes [lo, hi) of chunk c (offsets within the chunk), skipping
 * pages that are not present. */
static void zero_bytes(struct thpfs_chunk *c, uint64_t lo, uint64_t hi)
{
	if (lo >= hi)
		return;
	if (c->huge || c->mapped) { /* a mapped page may be stored to unseen */
		memset(c->mem + lo, 0, hi - lo);
		return;
	}
	while (lo < hi) {
		unsigned pg = (unsigned)(lo >> THPFS_PAGE_SHIFT);
		uint64_t end = thpfs_min(hi, ((uint64_t)pg + 1) << THPFS_PAGE_SHIFT);
		if (thpfs_bit_test(c->present, pg))
			memset(c->mem + lo, 0, end - lo);
		lo = end;
	}
}

/* Zeroes the pages set in pages and marks them pending; the chunk could not
 * give them back now.  They stay present (and count in st_blocks). */
static void mark_pending(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages)
{
	thpfs_for_each_run(pages, i, end) {
		memset(c->mem + (size_t)i * THPFS_PAGE_SIZE, 0, (size_t)(end - i) * THPFS_PAGE_SIZE);
		THPFS_STAT_ADD(fs, punch_zeroed_bytes, (uint64_t)(end - i) * THPFS_PAGE_SIZE);
	}
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++)
		c->pending[k] |= pages[k];
	_thpfs_deferred_add(fs, c);
	_thpfs_chunk_check(c);
}

/*
 * Drops the pages set in drop (all present) from chunk c, together with any
 * pages already pending, giving their memory back now if possible, else
 * zeroing them and queueing the chunk.  May free c.  Returns bytes given back.
 */
static uint64_t chunk_drop_pages(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *drop)
{
	thpfs_bitmap_t all;
	unsigned ndrop = 0;
	uint64_t lazy = 0;
	if (c->mapped && !c->pins && !thpfs_bitmap_empty(c->pending)) {
		/* A pending page of a mapping may have been written again
		 * through it: only the kernel can free it safely. */
		lazy = _thpfs_mmap_drop_pending(fs, c);
		if (thpfs_bitmap_empty(c->pending)) {
			_thpfs_deferred_del(fs, c);
			THPFS_STAT_ADD(fs, thp_deferred_split_done, 1);
		}
		if (!c->nr_present) {
			_thpfs_chunk_destroy(fs, c);
			return lazy;
		}
	}
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++) {
		all[k] = (drop[k] & c->present[k]) | (c->mapped ? 0 : c->pending[k]);
		ndrop += (unsigned)__builtin_popcountll(all[k]);
	}
	if (!ndrop)
		return lazy;
	bool was_queued = c->queued, mapped = c->mapped;
	uint64_t freed = (uint64_t)ndrop * THPFS_PAGE_SIZE;
	if (c->pins) {
		if (c->huge && thpfs_bitmap_weight(drop) < THPFS_PAGES_PER_HUGE)
			THPFS_STAT_ADD(fs, thp_split_page_failed, 1);
		mark_pending(fs, c, drop);
		return lazy;
	}
	if (ndrop == c->nr_present) {
		_thpfs_chunk_destroy(fs, c); /* also takes it off the queue */
	} else {
		if (c->huge) {
			if (_thpfs_split_chunk(fs, c, all)) {
				THPFS_STAT_ADD(fs, thp_split_page_failed, 1);
				mark_pending(fs, c, drop);
				return lazy;
			}
		} else {
			_thpfs_chunk_release(fs, c, all);
		}
		if (thpfs_bitmap_empty(c->pending)) /* only a mapping's may stay */
			_thpfs_deferred_del(fs, c);
		_thpfs_chunk_check(c);
	}
	if (was_queued && !mapped)
		THPFS_STAT_ADD(fs, thp_deferred_split_done, 1);
	return freed + lazy;
}

/*
 * Walks the chunks overlapping [start, end): zeroes the bytes of pages that
 * are only partly inside, and hands each chunk that has pages wholly inside
 * to fn with those of them that are present (fn may free the chunk).
 */
static void range_walk(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start, uint64_t end,
		       void (*fn)(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages))
{
	if (start >= end)
		return;
	uint64_t idx = start >> THPFS_HUGE_SHIFT;
	uint64_t last = (end - 1) >> THPFS_HUGE_SHIFT;
	struct thpfs_chunk *c;
	while (idx <= last && (c = _thpfs_index_next(&inode->pages, idx)) && c->index <= last) {
		idx = c->index + 1;
		uint64_t cs = c->index << THPFS_HUGE_SHIFT;
		uint64_t lo = start > cs ? start - cs : 0;
		uint64_t hi = end - cs < THPFS_HUGE_SIZE ? end - cs : THPFS_HUGE_SIZE;
		/* Whole pages inside [lo, hi), and the partial edges. */
		unsigned pf = (unsigned)((lo + THPFS_PAGE_SIZE - 1) >> THPFS_PAGE_SHIFT);
		unsigned pl = (unsigned)(hi >> THPFS_PAGE_SHIFT);
		if (pf >= pl) {
			zero_bytes(c, lo, hi); /* inside one page */
			continue;
		}
		zero_bytes(c, lo, (uint64_t)pf << THPFS_PAGE_SHIFT);
		zero_bytes(c, (uint64_t)pl << THPFS_PAGE_SHIFT, hi);
		if (c->mapped && !c->huge)
			_thpfs_mmap_zap_absent(c, pf, pl);
		thpfs_bitmap_t pages;
		thpfs_bitmap_zero(pages);
		_thpfs_bitmap_set_range(pages, pf, pl);
		for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++)
			pages[k] &= c->present[k];
		fn(fs, c, pages);
	}
}

static void undo_pages(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages)
{
	chunk_drop_pages(fs, c, pages);
}

void _thpfs_undo_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start, uint64_t end)
{
	range_walk(fs, inode, start, end, undo_pages);
}

static void lazy_pages(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages)
{
	if (!thpfs_bitmap_empty(pages))
		mark_pending(fs, c, pages);
}

void _thpfs_lazy_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start, uint64_t end)
{
	range_walk(fs, inode, start, end, lazy_pages);
}

uint64_t _thpfs_chunk_settle(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (c->pins)
		return 0;
	if (thpfs_bitmap_empty(c->pending)) {
		_thpfs_deferred_del(fs, c);
		return 0;
	}
	thpfs_bitmap_t none;
	thpfs_bitmap_zero(none);
	return chunk_drop_pages(fs, c, none);
}

/* A chunk on the deferred queue, remembered by position so that it can be
 * found again once its inode's lock is held. */
struct deferred_ref {
	struct thpfs_inode *inode;
	uint64_t index;
};

/* Copies the deferred queue (only self's chunks unless all) into an array. */
static size_t deferred_snapshot(struct thpfs *fs, struct thpfs_inode *self, bool all,
				struct deferred_ref **out)
{
	pthread_mutex_lock(&fs->deferred_lock);
	size_t n = 0, cap = 0;
	struct deferred_ref *v = NULL;
	for (struct thpfs_list *l = fs->deferred.next; l != &fs->deferred; l = l->next) {
		struct thpfs_chunk *c = thpfs_container_of(l, struct thpfs_chunk, deferred);
		if (!all && c->inode != self)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			struct deferred_ref *nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[n].inode = c->inode;
		v[n].index = c->index;
		n++;
	}
	pthread_mutex_unlock(&fs->deferred_lock);
	*out = v;
	return n;
}

/* Locks another inode for writing: blocking when the caller holds no inode
 * lock, else only by trylock (two inode locks have no order). */
static bool lock_other(struct thpfs_inode *inode, bool holding)
{
	if (!holding)
		return pthread_rwlock_wrlock(&inode->lock) == 0;
	return pthread_rwlock_trywrlock(&inode->lock) == 0;
}

/* Splits the huge page holding EOF so that the pages wholly past EOF (and
 * past KEEP_SIZE fallocations) are freed: the kernel's EOF shrinker.
 * inode->lock held for writing. */
static uint64_t shrink_eof_huge(struct thpfs *fs, struct thpfs_inode *inode)
{
	uint64_t end = thpfs_max(inode->size, inode->falloc_end);
	struct thpfs_chunk *c = _thpfs_index_lookup(&inode->pages, end >> THPFS_HUGE_SHIFT);
	if (!c || !c->huge || c->pins)
		return 0;
	uint64_t in = end & (THPFS_HUGE_SIZE - 1);
	unsigned first = (unsigned)((in + THPFS_PAGE_SIZE - 1) >> THPFS_PAGE_SHIFT);
	if (!in || first >= THPFS_PAGES_PER_HUGE)
		return 0;
	thpfs_bitmap_t drop;
	thpfs_bitmap_zero(drop);
	_thpfs_bitmap_set_range(drop, first, THPFS_PAGES_PER_HUGE);
	return chunk_drop_pages(fs, c, drop);
}

/*
 * Frees up to want bytes without losing data: first the release batch and
 * the prealloc pool, then the deferred split queue, then huge pages that reach past EOF.  self is an inode the caller
 * holds for writing (or NULL).  Other inodes are reached under fs->ns_lock
 * (which keeps them alive), taken by trylock when self is held since ns_lock
 * comes before inode locks; if it is busy, only self is reclaimed from.
 * Returns what the kernel really freed during the call through this
 * thread's own system calls: the bytes its madvise/process_madvise/remap
 * calls gave back less the bytes it populated (a split=migrate copy), from
 * the thread's ledger (_thpfs_mem_ledger) - not what it asked for (a release
 * the OS refuses frees nothing: those pages stay held and charged, see
 * frame.c), and not a difference of fs->held_bytes, which other threads
 * change meanwhile.  Pages another thread's flush takes are not counted;
 * queued pages of other threads that this call's flush releases are.  The
 * pages this queued are flushed before it returns, so the memory is back
 * when the caller looks.  (want is compared with the bytes dropped, which
 * is what the loop can know before the flush.)
 */
uint64_t _thpfs_reclaim(struct thpfs *fs, struct thpfs_inode *self, uint64_t want)
{
	uint64_t released0, populated0, released1, populated1;
	_thpfs_mem_ledger(&released0, &populated0);
	/* the prealloc pool is no one's data: it goes first */
	uint64_t freed = _thpfs_release_flush(fs) + _thpfs_pool_drain(fs);
	bool ns = self ? pthread_rwlock_tryrdlock(&fs->ns_lock) == 0
		       : pthread_rwlock_rdlock(&fs->ns_lock) == 0;
	struct deferred_ref *v;
	size_t n = deferred_snapshot(fs, self, ns, &v);
	for (size_t i = 0; i < n && freed < want; i++) {
		struct thpfs_inode *inode = v[i].inode;
		if (inode != self && !lock_other(inode, self != NULL))
			continue;
		struct thpfs_chunk *c = _thpfs_index_lookup(&inode->pages, v[i].index);
		if (c && c->queued)
			freed += _thpfs_chunk_settle(fs, c);
		if (inode != self)
			pthread_rwlock_unlock(&inode->lock);
	}
	free(v);
	if (self && freed < want)
		freed += shrink_eof_huge(fs, self);
	if (ns) {
		for (struct thpfs_list *l = fs->inodes.next; l != &fs->inodes && freed < want;
		     l = l->next) {
			struct thpfs_inode *inode = thpfs_container_of(l, struct thpfs_inode, all);
			if (inode == self || !S_ISREG(inode->mode) || !lock_other(inode, self != NULL))
				continue;
			freed += shrink_eof_huge(fs, inode);
			pthread_rwlock_unlock(&inode->lock);
		}
		pthread_rwlock_unlock(&fs->ns_lock);
	}
	_thpfs_release_flush(fs);
	_thpfs_mem_ledger(&released1, &populated1);
	uint64_t back = released1 - released0, made = populated1 - populated0;
	back = back > made ? back - made : 0;
	THPFS_STAT_ADD(fs, reclaim_bytes, back);
	return back;
}

int64_t thpfs_reclaim(struct thpfs *fs, uint64_t bytes)
{
	if (!fs)
		return -EINVAL;
	uint64_t freed = _thpfs_reclaim(fs, NULL, bytes ? bytes : UINT64_MAX);
	return (int64_t)thpfs_min(freed, (uint64_t)INT64_MAX);
}
