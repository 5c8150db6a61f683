/*
 * mmap.c - thpfs_mmap: a file's storage as one contiguous, stable mapping
 * (guest RAM for a virtual-machine monitor).
 *
 * A chunk's memory is private anonymous memory, and the kernel can move such
 * memory to another address without copying it (mremap with MREMAP_FIXED; an
 * aligned 2 MiB move keeps a huge page mapped by one PMD).  thpfs_mmap makes
 * the view - a 2 MiB aligned anonymous range - and moves every chunk of the
 * range into it; the vacated arena slot is mapped afresh and goes back on
 * its free list.  From then on the view IS the storage: chunk->mem points
 * into it (chunk->mapped), and chunks made later inside the range get their
 * memory in place.  thpfs_munmap moves the memory back into arena slots.
 *
 * The program stores into the view without telling us, so what is present
 * is learned from the kernel: one PAGEMAP_SCAN ioctl over the view returns
 * coalesced regions with PAGE_IS_PRESENT / PAGE_IS_HUGE / PAGE_IS_PFNZERO
 * (the zero page is not data) / PAGE_IS_SWAPPED (data, in swap).
 * _thpfs_mmap_sync applies them before every call that depends on presence
 * and charges new pages to size= after the fact: a fault is never refused.
 *
 * Other threads read and write the view while we work on it, so nothing here
 * ever copies a chunk's memory to another place (a store between the copy and
 * the switch would be lost):
 *  - free:     MADV_DONTNEED of the pages the chunk counts as present and
 *              no others (a page stored since the last sync is not known
 *              to be dropped; of the whole 2 MiB for a huge or full chunk,
 *              which zaps the PMD and frees a huge page at once), at once -
 *              never through frame.c's batch, whose late DONTNEED would
 *              wipe a page the program wrote after our punch returned;
 *              MADV_DONTNEED_LOCKED on mlocked memory (release_counted).
 *  - split:    the kernel's, in place: MADV_NOHUGEPAGE on the 2 MiB, then
 *              MADV_FREE of one dropped page makes the kernel split the THP;
 *              PAGEMAP_SCAN must then show no PAGE_IS_HUGE, else the caller
 *              zeroes and defers.  The range stays MADV_NOHUGEPAGE so
 *              khugepaged never fills the holes back in.
 *  - collapse: MADV_HUGEPAGE + MADV_COLLAPSE of a range with all 512 pages
 *              present (the kernel copies under its own locks; no store is
 *              lost), verified with PAGEMAP_SCAN.
 *  - lazy:     pages zeroed by thpfs_free_lazy may be written again through
 *              the view before reclaim comes; MADV_FREE + MADV_PAGEOUT frees
 *              only the pages not written since (the kernel checks the dirty
 *              bit under its page table lock), then we ask which went.
 * mlock: MADV_FREE refuses VM_LOCKED ranges, so a split or lazy free of a
 * locked range unlocks its 2 MiB for the moment and locks it again with
 * MLOCK_ONFAULT (so the holes are not populated back).
 *
 * Locking: every function runs with inode->lock held for writing (except
 * where a comment says otherwise).  Lock order as in internal.h.  The
 * pagemap file is kernel.c's (fs->pagemap_fd); presence needs more
 * categories than kernel.c's PMD question, so the scan is here.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

#define MM_VEC 512 /* regions asked of one PAGEMAP_SCAN call (kernel.c) */

/* What the kernel holds for one 2 MiB range of a view. */
struct range_state {
	thpfs_bitmap_t present; /* pages holding data */
	unsigned huge;          /* pages mapped by a (non-zero) PMD */
};

/* Whether the kernel answers PAGEMAP_SCAN (Linux 6.7+; kernel.c checked at
 * mount). */
static int pagemap_open(struct thpfs *fs)
{
	return fs->verify >= THPFS_VERIFY_PMD && fs->pagemap_fd >= 0 ? 0 : -EOPNOTSUPP;
}

/* Asks the kernel what [addr, addr + n * 2 MiB) holds: fills st[0..n). */
static int scan_ranges(struct thpfs *fs, const char *addr, size_t n, struct range_state *st)
{
	struct thpfs_pm_region vec[MM_VEC];
	uint64_t base = (uint64_t)(uintptr_t)addr, end = base + (uint64_t)n * THPFS_HUGE_SIZE;
	uint64_t start = base;
	memset(st, 0, n * sizeof(*st));
	while (start < end) {
		struct thpfs_pm_scan_arg a = {
			.start = start,
			.end = end,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = MM_VEC,
			.category_anyof_mask = THPFS_PM_IS_PRESENT | THPFS_PM_IS_SWAPPED,
			.return_mask = THPFS_PM_IS_PRESENT | THPFS_PM_IS_SWAPPED | THPFS_PM_IS_PFNZERO | THPFS_PM_IS_HUGE,
		};
		long r = _thpfs_kernel_scan(fs->pagemap_fd, &a);
		if (r < 0)
			return (int)r;
		for (long i = 0; i < r; i++) {
			uint64_t cat = vec[i].categories;
			bool data = (cat & THPFS_PM_IS_SWAPPED) ||
				    ((cat & THPFS_PM_IS_PRESENT) && !(cat & THPFS_PM_IS_PFNZERO));
			bool huge = data && (cat & THPFS_PM_IS_HUGE);
			if (!data)
				continue;
			for (uint64_t p = vec[i].start; p < vec[i].end;) {
				size_t k = (size_t)((p - base) >> THPFS_HUGE_SHIFT);
				uint64_t rend = base + ((uint64_t)(k + 1) << THPFS_HUGE_SHIFT);
				uint64_t q = thpfs_min(vec[i].end, rend);
				unsigned from = (unsigned)(((p - base) & (THPFS_HUGE_SIZE - 1)) >> THPFS_PAGE_SHIFT);
				unsigned to = from + (unsigned)((q - p) >> THPFS_PAGE_SHIFT);
				_thpfs_bitmap_set_range(st[k].present, from, to);
				if (huge)
					st[k].huge += to - from;
				p = q;
			}
		}
		if (r < MM_VEC || a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	return 0;
}

/* Whether the kernel maps the 2 MiB at mem with one huge page.  A failed
 * scan answers no (callers then take the safe path). */
static bool range_is_huge(struct thpfs *fs, const char *mem)
{
	return _thpfs_kernel_pmd_bytes(fs, mem, THPFS_HUGE_SIZE) == (int64_t)THPFS_HUGE_SIZE;
}

/* ---- Accounting: pages that are in the view already ---- */

/* Charges (n > 0) or uncharges (n < 0) n bytes to size= without a limit. */
static void budget_adjust(struct thpfs *fs, int64_t n)
{
	pthread_mutex_lock(&fs->frame_lock);
	fs->held_bytes += (uint64_t)n;
	pthread_mutex_unlock(&fs->frame_lock);
}

/* The memory gauges for dh more huge frames and db more base pages. */
static void gauges_adjust(struct thpfs *fs, int64_t dh, int64_t db)
{
	THPFS_STAT_ADD(fs, huge_frames, (uint64_t)dh);
	THPFS_STAT_ADD(fs, shmem_huge_bytes, (uint64_t)(dh * (int64_t)THPFS_HUGE_SIZE));
	THPFS_STAT_ADD(fs, base_pages, (uint64_t)db);
	THPFS_STAT_ADD(fs, shmem_bytes,
		       (uint64_t)(dh * (int64_t)THPFS_HUGE_SIZE + db * (int64_t)THPFS_PAGE_SIZE));
}

/* ---- Freeing and advising in place ---- */

/* ---- Advice and locks that must hold: recorded and retried ---- */

/* The 2 MiB range of the view at mem, as an index into m's bitmaps. */
static unsigned view_range(const struct thpfs_mapping *m, const char *mem)
{
	return (unsigned)((size_t)(mem - m->addr) >> THPFS_HUGE_SHIFT);
}

/* Gives the 2 MiB at mem (a range of inode's view) advice.  If the kernel
 * refuses, the range is recorded and the next sync applies the advice its
 * state calls for then (mapping_fix); until then a range meant to be
 * MADV_NOHUGEPAGE may be collapsed by khugepaged (no data is lost, holes
 * may fill) and one meant to be MADV_HUGEPAGE faults in 4 KiB pages.
 * Returns whether the advice holds.  inode->lock held for writing. */
static bool advise_range(struct thpfs_inode *inode, char *mem, int advice)
{
	if (madvise(mem, THPFS_HUGE_SIZE, advice) == 0)
		return true;
	struct thpfs_mapping *m = inode->map;
	if (m) {
		thpfs_bit_set(m->readvise, view_range(m, mem));
		m->fix = true;
	}
	return false;
}

/* Locks the 2 MiB at mem again after lazyfree_runs unlocked it (when
 * relock), on fault only, so the holes just made stay holes.  If the kernel
 * refuses, the range is recorded and the next sync locks it again.
 * inode->lock held for writing. */
static void relock_range(struct thpfs_inode *inode, char *mem, bool relock)
{
	if (!relock || mlock2(mem, THPFS_HUGE_SIZE, MLOCK_ONFAULT) == 0)
		return;
	struct thpfs_mapping *m = inode->map;
	if (m) {
		thpfs_bit_set(m->relock, view_range(m, mem));
		m->fix = true;
	}
}

/* Applies again what advise_range and relock_range could not: each recorded
 * range gets the advice its chunk calls for (MADV_HUGEPAGE for a huge
 * chunk, MADV_NOHUGEPAGE for base pages; policy's for a range without one)
 * and its lock.  Runs after a sync, so that a range without a chunk is
 * empty.  inode->lock held for writing. */
static void mapping_fix(struct thpfs *fs, struct thpfs_inode *inode)
{
	struct thpfs_mapping *m = inode->map;
	if (!m || !m->fix)
		return;
	unsigned n = (unsigned)(m->len >> THPFS_HUGE_SHIFT);
	bool left = false;
	for (unsigned k = 0; k < n; k++) {
		char *mem = m->addr + ((size_t)k << THPFS_HUGE_SHIFT);
		if (thpfs_bit_test(m->readvise, k)) {
			uint64_t idx = (m->start >> THPFS_HUGE_SHIFT) + k;
			struct thpfs_chunk *c = _thpfs_index_lookup(&inode->pages, idx);
			bool huge = c ? c->huge : _thpfs_want_huge(fs, inode, idx);
			if (madvise(mem, THPFS_HUGE_SIZE, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0)
				thpfs_bit_clear(m->readvise, k);
			else
				left = true;
		}
		if (thpfs_bit_test(m->relock, k)) {
			if (mlock2(mem, THPFS_HUGE_SIZE, MLOCK_ONFAULT) == 0)
				thpfs_bit_clear(m->relock, k);
			else
				left = true;
		}
	}
	m->fix = left;
}

/* Frees [p, p+len) of a view now, mlocked memory too (frame.c's
 * release_counted: counts bytes_released only for memory that went back,
 * and zeroes what did not, so the page reads zero and stays present for
 * the next sync to find).  Returns whether it went back. */
static bool zap(struct thpfs *fs, char *p, size_t len)
{
	return _thpfs_release_counted(fs, p, len);
}

/* madvise(advice) on every run of pages set in b; the first error. */
static int advise_runs(char *mem, const uint64_t *b, int advice)
{
	thpfs_for_each_run(b, i, end) {
		if (madvise(mem + (size_t)i * THPFS_PAGE_SIZE, (size_t)(end - i) * THPFS_PAGE_SIZE,
			    advice))
			return -errno;
	}
	return 0;
}

/* MADV_FREE of the runs in b; on a mlocked range (EINVAL) unlocks the 2 MiB
 * and tries again, setting *relock.  Returns 0 or the error. */
static int lazyfree_runs(char *mem, const uint64_t *b, bool *relock)
{
	int err = advise_runs(mem, b, MADV_FREE);
	if (err == -EINVAL && !*relock && munlock(mem, THPFS_HUGE_SIZE) == 0) {
		*relock = true;
		err = advise_runs(mem, b, MADV_FREE);
	}
	return err;
}

/* The advice a chunk-less or huge range of the view gets: MADV_HUGEPAGE
 * where policy gives the file huge pages, so the next fault takes one. */
static void advise_empty(struct thpfs *fs, struct thpfs_chunk *c)
{
	bool huge = _thpfs_want_huge(fs, c->inode, c->index);
	advise_range(c->inode, c->mem, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

/*
 * Frees chunk c's memory in the view: the pages the chunk holds, and only
 * those.  The program may have stored to other pages of the 2 MiB since the
 * last sync; the chunk does not know them, so they are not ours to drop -
 * they stay, and the next sync adopts them as a new chunk.  A huge or full
 * chunk is zapped as one 2 MiB range (which also frees its page table).
 */
void _thpfs_mmap_chunk_free(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (!c->mem)
		return;
	if (!c->huge)
		_thpfs_pt_uncharge(fs);
	if (c->huge || c->nr_present == THPFS_PAGES_PER_HUGE) {
		/* zeroed where it could not go: a later sync finds it again */
		zap(fs, c->mem, THPFS_HUGE_SIZE);
		if (c->huge)
			gauges_adjust(fs, -1, 0);
		else
			gauges_adjust(fs, 0, -(int64_t)THPFS_PAGES_PER_HUGE);
		budget_adjust(fs, -(int64_t)THPFS_HUGE_SIZE);
		advise_empty(fs, c);
		return;
	}
	_thpfs_mmap_release(fs, c, c->present);
	/* A range given MADV_HUGEPAGE again gets a huge page at its next
	 * write fault once its page table is gone (Linux 6.14+ frees an
	 * emptied one) - but only a range the kernel says is empty now:
	 * with unseen pages left, khugepaged would fill the holes around
	 * them, so it keeps MADV_NOHUGEPAGE. */
	struct range_state st;
	if (scan_ranges(fs, c->mem, 1, &st) == 0 && thpfs_bitmap_empty(st.present))
		advise_empty(fs, c);
}

unsigned _thpfs_mmap_release(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages)
{
	unsigned n = 0, freed = 0;
	thpfs_for_each_run(pages, i, end) {
		char *p = c->mem + (size_t)i * THPFS_PAGE_SIZE;
		size_t len = (size_t)(end - i) * THPFS_PAGE_SIZE;
		n += end - i;
		if (zap(fs, p, len)) /* else zeroed, still present: a later sync finds it */
			freed += end - i;
	}
	gauges_adjust(fs, 0, -(int64_t)n);
	budget_adjust(fs, -(int64_t)n * (int64_t)THPFS_PAGE_SIZE);
	return freed;
}

/* ---- Chunk memory in place ---- */

char *_thpfs_mmap_addr(const struct thpfs_inode *inode, uint64_t off)
{
	const struct thpfs_mapping *m = inode->map;
	if (!m || off < m->start || off - m->start >= m->len)
		return NULL;
	return m->addr + (off - m->start);
}

int _thpfs_mmap_chunk_memory(struct thpfs *fs, struct thpfs_chunk *c, bool want_huge)
{
	if (!c->mapped)
		_thpfs_pt_charge(fs); /* base pages until it is huge (a retry comes here again) */
	c->mem = _thpfs_mmap_addr(c->inode, c->index << THPFS_HUGE_SHIFT);
	c->mapped = true;
	if (!want_huge) {
		advise_range(c->inode, c->mem, MADV_NOHUGEPAGE);
		return 0; /* base pages, populated by the caller */
	}
	/* if refused, the kernel gives 4 KiB pages: the check below sees it */
	advise_range(c->inode, c->mem, MADV_HUGEPAGE);
	int err = _thpfs_pages_populate(fs, c->mem, 0, THPFS_PAGES_PER_HUGE);
	if (err)
		return err;
	thpfs_bitmap_fill(c->present);
	thpfs_chunk_set_present(c, THPFS_PAGES_PER_HUGE);
	if (range_is_huge(fs, c->mem)) {
		c->huge = true;
		_thpfs_pt_uncharge(fs);
		gauges_adjust(fs, 1, -(int64_t)THPFS_PAGES_PER_HUGE);
		THPFS_STAT_ADD(fs, thp_file_alloc, 1);
	} else {
		/* The kernel gave 4 KiB pages (no huge page free, or a page
		 * table left there): a full base chunk, collapsed later. */
		advise_range(c->inode, c->mem, MADV_NOHUGEPAGE);
		THPFS_STAT_ADD(fs, thp_file_fallback, 1);
	}
	return 0;
}

/* ---- Split, collapse, lazy free in place ---- */

int _thpfs_mmap_split(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *drop)
{
	char *mem = c->mem;
	unsigned first = _thpfs_bitmap_find(drop, 0, true);
	bool relock = false;
	if (madvise(mem, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE))
		return -ENOMEM;
	thpfs_bitmap_t one;
	thpfs_bitmap_zero(one);
	thpfs_bit_set(one, first);
	/* MADV_FREE on part of a PMD-mapped THP splits it now.  The kernel
	 * may refuse (extra references) and still return 0: ask it. */
	bool split = lazyfree_runs(mem, one, &relock) == 0 && !range_is_huge(fs, mem);
	if (!split) {
		advise_range(c->inode, mem, MADV_HUGEPAGE);
		relock_range(c->inode, mem, relock);
		return -EBUSY;
	}
	c->huge = false;
	c->fresh = false;
	_thpfs_pt_charge(fs);
	gauges_adjust(fs, -1, THPFS_PAGES_PER_HUGE);
	_thpfs_mmap_release(fs, c, drop);
	relock_range(c->inode, mem, relock);
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++) {
		c->present[k] = ~drop[k];
		c->uptodate[k] &= ~drop[k];
		c->pending[k] &= ~drop[k];
	}
	thpfs_chunk_set_present(c, thpfs_bitmap_weight(c->present));
	THPFS_STAT_ADD(fs, thp_split_page, 1);
	_thpfs_chunk_check(c);
	return 0;
}

int _thpfs_mmap_collapse(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (c->huge)
		return 0;
	if (c->pins) {
		THPFS_STAT_ADD(fs, collapse_skipped_pinned, 1);
		return -EBUSY;
	}
	if (!thpfs_bitmap_empty(c->pending))
		return -EBUSY;
	if (c->nr_present < THPFS_PAGES_PER_HUGE) {
		/* never: MADV_COLLAPSE would fill the holes */
		THPFS_STAT_ADD(fs, collapse_skipped_holes, 1);
		return -EAGAIN;
	}
	if (madvise(c->mem, THPFS_HUGE_SIZE, MADV_HUGEPAGE))
		return -ENOMEM;
	int err = madvise(c->mem, THPFS_HUGE_SIZE, MADV_COLLAPSE) ? -errno : 0;
	if (!err && !range_is_huge(fs, c->mem))
		err = -EAGAIN;
	if (err) {
		/* base pages again; khugepaged must not fill the range */
		advise_range(c->inode, c->mem, MADV_NOHUGEPAGE);
		THPFS_STAT_ADD(fs, thp_collapse_alloc_failed, 1);
		return err;
	}
	c->huge = true;
	_thpfs_pt_uncharge(fs);
	gauges_adjust(fs, 1, -(int64_t)THPFS_PAGES_PER_HUGE);
	if (!thpfs_bitmap_empty(c->uptodate))
		thpfs_bitmap_fill(c->uptodate);
	THPFS_STAT_ADD(fs, thp_collapse_alloc, 1);
	THPFS_STAT_ADD(fs, base_pages_collapsed, THPFS_PAGES_PER_HUGE);
	_thpfs_chunk_check(c);
	return 0;
}

uint64_t _thpfs_mmap_drop_pending(struct thpfs *fs, struct thpfs_chunk *c)
{
	char *mem = c->mem;
	thpfs_bitmap_t p;
	bool relock = false;
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++)
		p[k] = c->pending[k] & c->present[k];
	if (c->huge && madvise(mem, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE))
		return 0;
	/* MADV_FREE of one page inside a huge page splits it (of all of it,
	 * would not); then the rest. */
	thpfs_bitmap_t one;
	thpfs_bitmap_zero(one);
	thpfs_bit_set(one, _thpfs_bitmap_find(p, 0, true));
	int err = lazyfree_runs(mem, one, &relock);
	if (!err)
		err = lazyfree_runs(mem, p, &relock);
	if (c->huge) {
		if (err || range_is_huge(fs, mem)) {
			advise_range(c->inode, mem, MADV_HUGEPAGE);
			relock_range(c->inode, mem, relock);
			THPFS_STAT_ADD(fs, thp_split_page_failed, 1);
			return 0; /* stays pending, retried by the next reclaim */
		}
		c->huge = false;
		c->fresh = false;
		_thpfs_pt_charge(fs);
		gauges_adjust(fs, -1, THPFS_PAGES_PER_HUGE);
		THPFS_STAT_ADD(fs, thp_split_page, 1);
	} else if (err) {
		relock_range(c->inode, mem, relock);
		return 0; /* stays pending, retried by the next reclaim */
	}
	/* The pages were zeroed when they became pending.  One that is not
	 * zero now was written again through the view before our MADV_FREE:
	 * store to it so it is dirty and reclaim (ours now, the kernel's
	 * later) keeps it.  The store is a compare-and-swap of the word with
	 * itself: it writes nothing new, so it cannot undo a store the program
	 * makes meanwhile; if the program's store comes first the CAS fails,
	 * and that store came after our MADV_FREE, so it dirtied the page
	 * already.  (A no-op atomic add does not do: clang compiles an
	 * idempotent read-modify-write to a plain load, and the page stayed
	 * clean.)  One written after our MADV_FREE is dirty already.  Reclaim
	 * (MADV_PAGEOUT) then discards only clean lazily freed pages; one it
	 * cannot take now stays as data (zero). */
	for (unsigned i = 0; i < THPFS_PAGES_PER_HUGE; i++) {
		if (!thpfs_bit_test(p, i))
			continue;
		uint64_t *w = (uint64_t *)(mem + (size_t)i * THPFS_PAGE_SIZE);
		for (unsigned j = 0; j < THPFS_PAGE_SIZE / sizeof(*w); j++) {
			if (__atomic_load_n(&w[j], __ATOMIC_RELAXED)) {
				uint64_t v = __atomic_load_n(&w[0], __ATOMIC_RELAXED);
				(void)__atomic_compare_exchange_n(&w[0], &v, v, false,
								  __ATOMIC_RELAXED,
								  __ATOMIC_RELAXED);
				thpfs_bit_clear(p, i);
				break;
			}
		}
	}
	/* A refused MADV_PAGEOUT leaves pages present; the scan below is what
	 * counts, so its result needs no other handling.  A failed scan
	 * counts none gone: they stay as (zero) data until a sync. */
	(void)advise_runs(mem, p, MADV_PAGEOUT);
	struct range_state st;
	unsigned gone = 0;
	if (scan_ranges(fs, mem, 1, &st) == 0) {
		for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++) {
			uint64_t g = p[k] & ~st.present[k];
			gone += (unsigned)__builtin_popcountll(g);
			c->present[k] &= ~g;
			c->uptodate[k] &= ~g;
		}
	}
	relock_range(c->inode, mem, relock);
	thpfs_bitmap_zero(c->pending);
	gauges_adjust(fs, 0, -(int64_t)gone);
	budget_adjust(fs, -(int64_t)gone * (int64_t)THPFS_PAGE_SIZE);
	_thpfs_count_released(fs, (uint64_t)gone * THPFS_PAGE_SIZE); /* seen gone */
	thpfs_chunk_set_present(c, thpfs_bitmap_weight(c->present));
	return (uint64_t)gone * THPFS_PAGE_SIZE;
}

/* ---- Presence from the kernel ---- */

/* A chunk for a range the program touched: its memory is already there. */
static void adopt_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t idx, char *mem,
			const struct range_state *st, unsigned n)
{
	struct thpfs_chunk *c = _thpfs_chunk_new(inode, idx);
	if (!c)
		return; /* found again by the next sync */
	c->mem = mem;
	c->mapped = true;
	if (_thpfs_index_insert(&inode->pages, idx, c)) {
		free(c);
		return;
	}
	if (st->huge == THPFS_PAGES_PER_HUGE) {
		c->huge = true;
		thpfs_bitmap_fill(c->present);
		n = THPFS_PAGES_PER_HUGE;
		gauges_adjust(fs, 1, 0);
	} else {
		memcpy(c->present, st->present, sizeof(c->present));
		gauges_adjust(fs, 0, n);
		_thpfs_pt_charge(fs);
		/* keep khugepaged from filling its holes */
		advise_range(inode, mem, MADV_NOHUGEPAGE);
	}
	memcpy(c->uptodate, c->present, sizeof(c->uptodate));
	thpfs_chunk_set_present(c, n);
	budget_adjust(fs, (int64_t)n * (int64_t)THPFS_PAGE_SIZE);
	THPFS_STAT_ADD(fs, mmap_faulted_pages, n);
	_thpfs_chunk_check(c);
}

/* Brings chunk idx (at mem in the view) in line with what the kernel holds. */
static void sync_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t idx, char *mem,
		       const struct range_state *st)
{
	struct thpfs_chunk *c = _thpfs_index_lookup(&inode->pages, idx);
	unsigned n = thpfs_bitmap_weight(st->present);
	bool khuge = st->huge == THPFS_PAGES_PER_HUGE;
	if (!c) {
		if (n)
			adopt_range(fs, inode, idx, mem, st, n);
		return;
	}
	if (c->huge && khuge) {
		thpfs_bitmap_fill(c->uptodate);
		return;
	}
	if (c->huge) {
		/* split by the kernel itself: base pages from now on */
		c->huge = false;
		c->fresh = false;
		_thpfs_pt_charge(fs);
		gauges_adjust(fs, -1, THPFS_PAGES_PER_HUGE);
		advise_range(inode, mem, MADV_NOHUGEPAGE);
	}
	unsigned nadd = 0, ngone = 0;
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++) {
		uint64_t add = st->present[k] & ~c->present[k];
		uint64_t gone = c->present[k] & ~st->present[k];
		nadd += (unsigned)__builtin_popcountll(add);
		ngone += (unsigned)__builtin_popcountll(gone);
		c->present[k] = st->present[k];
		c->uptodate[k] = st->present[k]; /* stores through the view are unseen */
		c->pending[k] &= st->present[k];
	}
	gauges_adjust(fs, 0, (int64_t)nadd - (int64_t)ngone);
	budget_adjust(fs, ((int64_t)nadd - (int64_t)ngone) * (int64_t)THPFS_PAGE_SIZE);
	THPFS_STAT_ADD(fs, mmap_faulted_pages, nadd);
	THPFS_STAT_ADD(fs, mmap_vanished_pages, ngone);
	thpfs_chunk_set_present(c, n);
	if (thpfs_bitmap_empty(c->pending))
		_thpfs_deferred_del(fs, c);
	if (!n) {
		_thpfs_chunk_destroy(fs, c); /* nothing left to free: zaps nothing */
		return;
	}
	if (khuge) {
		/* collapsed behind our back (khugepaged on a VM_HUGEPAGE range) */
		c->huge = true;
		_thpfs_pt_uncharge(fs);
		gauges_adjust(fs, 1, -(int64_t)THPFS_PAGES_PER_HUGE);
	}
	_thpfs_chunk_check(c);
}

/* 2 MiB ranges scanned at a time: the state lives on the stack (18 KiB),
 * so a sync takes no memory in proportion to the view and cannot fail to
 * allocate (a 64 TiB view once took 2.3 GiB per call, and a failed malloc
 * skipped the sync). */
#define SYNC_BATCH 256

void _thpfs_mmap_sync_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start,
			    uint64_t end)
{
	struct thpfs_mapping *m = inode->map;
	if (!m || start >= end || end <= m->start || start >= m->start + m->len)
		return;
	start = thpfs_max(start, m->start) & ~(uint64_t)(THPFS_HUGE_SIZE - 1);
	end = thpfs_min(end, m->start + m->len);
	size_t n = (size_t)((end - start + THPFS_HUGE_SIZE - 1) >> THPFS_HUGE_SHIFT);
	struct range_state st[SYNC_BATCH];
	char *addr = m->addr + (start - m->start);
	uint64_t first = start >> THPFS_HUGE_SHIFT;
	for (size_t done = 0; done < n; done += SYNC_BATCH) {
		size_t k = thpfs_min(n - done, (size_t)SYNC_BATCH);
		char *batch = addr + done * THPFS_HUGE_SIZE;
		if (scan_ranges(fs, batch, k, st))
			break;
		for (size_t i = 0; i < k; i++)
			sync_range(fs, inode, first + done + i, batch + i * THPFS_HUGE_SIZE, &st[i]);
	}
	mapping_fix(fs, inode);
}

void _thpfs_mmap_sync_missing(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start,
			      uint64_t end)
{
	struct thpfs_mapping *m = inode->map;
	if (!m || start >= end)
		return;
	uint64_t first = thpfs_max(start, m->start) >> THPFS_HUGE_SHIFT;
	uint64_t stop = thpfs_min(end, m->start + m->len);
	for (uint64_t idx = first; (idx << THPFS_HUGE_SHIFT) < stop; idx++)
		if (!_thpfs_index_lookup(&inode->pages, idx))
			_thpfs_mmap_sync_range(fs, inode, idx << THPFS_HUGE_SHIFT,
					       (idx + 1) << THPFS_HUGE_SHIFT);
}

void _thpfs_mmap_zap_absent(struct thpfs_chunk *c, unsigned pf, unsigned pl)
{
	thpfs_bitmap_t absent;
	thpfs_bitmap_zero(absent);
	_thpfs_bitmap_set_range(absent, pf, pl);
	for (unsigned k = 0; k < THPFS_BITMAP_WORDS; k++)
		absent[k] &= ~c->present[k];
	/* pages stored to unseen; one that cannot go (mlocked, old kernel)
	 * is zeroed and stays, for the next sync to find
	 * (holes among them hold nothing: not counted as released) */
	thpfs_for_each_run(absent, i, end)
		_thpfs_release(c->mem + (size_t)i * THPFS_PAGE_SIZE, (size_t)(end - i) * THPFS_PAGE_SIZE);
}

void _thpfs_mmap_sync(struct thpfs *fs, struct thpfs_inode *inode)
{
	_thpfs_mmap_sync_range(fs, inode, 0, UINT64_MAX);
}

void _thpfs_inode_lock_synced(struct thpfs *fs, struct thpfs_inode *inode)
{
	pthread_rwlock_rdlock(&inode->lock);
	if (!inode->map)
		return;
	pthread_rwlock_unlock(&inode->lock);
	pthread_rwlock_wrlock(&inode->lock);
	_thpfs_mmap_sync(fs, inode);
}

void _thpfs_mmap_sync_all(struct thpfs *fs)
{
	if (!__atomic_load_n(&fs->nr_mappings, __ATOMIC_ACQUIRE))
		return;
	pthread_rwlock_rdlock(&fs->ns_lock);
	for (struct thpfs_list *l = fs->inodes.next; l != &fs->inodes; l = l->next) {
		struct thpfs_inode *inode = thpfs_container_of(l, struct thpfs_inode, all);
		if (!S_ISREG(inode->mode))
			continue;
		_thpfs_inode_lock_synced(fs, inode);
		pthread_rwlock_unlock(&inode->lock);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
}

bool _thpfs_mmap_may_truncate(const struct thpfs_inode *inode, uint64_t size)
{
	const struct thpfs_mapping *m = inode->map;
	return !m || size >= m->start + m->len;
}

/* ---- Making and removing views ---- */

/* Whether a chunk in file range [start, start+len) is pinned. */
static bool range_pinned(struct thpfs_inode *inode, uint64_t start, uint64_t len)
{
	for (struct thpfs_list *l = inode->pinned.next; l != &inode->pinned; l = l->next) {
		struct thpfs_chunk *c = thpfs_container_of(l, struct thpfs_chunk, pinlink);
		uint64_t off = c->index << THPFS_HUGE_SHIFT;
		if (off >= start && off - start < len)
			return true;
	}
	return false;
}

/* Whether [p, p+len) overlaps memory of the mount: an arena or another
 * file's view.  A fixed address there would replace file data under the
 * library (and then crash it); frame_lock held. */
static bool range_in_use(struct thpfs *fs, const char *p, size_t len)
{
	if (_thpfs_arena_overlaps(fs, p, len))
		return true;
	for (struct thpfs_list *l = fs->views.next; l != &fs->views; l = l->next) {
		const struct thpfs_mapping *v = thpfs_container_of(l, struct thpfs_mapping, link);
		if (p < v->addr + v->len && v->addr < p + len)
			return true;
	}
	return false;
}

/* Forgets view m once its range no longer holds file memory. */
static void view_forget(struct thpfs *fs, struct thpfs_mapping *m)
{
	pthread_mutex_lock(&fs->frame_lock);
	thpfs_list_del(&m->link);
	pthread_mutex_unlock(&fs->frame_lock);
}

/*
 * Makes view range [p, p+len), mapped PROT_NONE and already advised,
 * readable and writable without populating it.  Under mlockall(MCL_FUTURE)
 * the range came out VM_LOCKED, and making a locked range writable (or
 * mapping it writable in the first place) faults all of it in at once, with
 * 4 KiB pages, before a first write could get a huge page.  So a locked range
 * is made lock-on-fault first: each page, huge or not, is locked as it is
 * faulted in, which is what mlockall's caller asked for.  MADV_DONTNEED is
 * refused (EINVAL) only on locked memory, and the range holds nothing yet,
 * so asking it loses nothing.  Linux has mlock2 wherever PAGEMAP_SCAN
 * exists (6.7), so its failure is an error, not a reason to unlock.
 */
static int view_make_writable(char *p, size_t len)
{
	if (madvise(p, len, MADV_DONTNEED)) {
		if (errno != EINVAL)
			return -errno;
		if (mlock2(p, len, MLOCK_ONFAULT))
			return -errno;
	}
	return mprotect(p, len, PROT_READ | PROT_WRITE) ? -errno : 0;
}

/* Maps the view, PROT_NONE, at want (MAP_FIXED) or at a 2 MiB aligned
 * address of our choosing, gives it its advice and then makes it writable
 * (view_make_writable: in that order, so mlockall cannot populate it with
 * 4 KiB pages).  Returns it, or NULL with *err set. */
static char *view_create(size_t len, void *want, bool huge, int *err)
{
	const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	char *p;
	if (want) {
		p = mmap(want, len, PROT_NONE, flags | MAP_FIXED, -1, 0);
		if (p == MAP_FAILED) {
			*err = -errno;
			return NULL;
		}
	} else {
		char *raw = mmap(NULL, len + THPFS_HUGE_SIZE, PROT_NONE, flags, -1, 0);
		if (raw == MAP_FAILED) {
			*err = -errno;
			return NULL;
		}
		p = (char *)(((uintptr_t)raw + THPFS_HUGE_SIZE - 1) & ~(uintptr_t)(THPFS_HUGE_SIZE - 1));
		size_t head = (size_t)(p - raw);
		/* Trimming the alignment slack: a refusal (out of VMAs) only
		 * leaves some PROT_NONE address space reserved; the view is
		 * what matters, and its own calls below are checked. */
		if (head)
			(void)munmap(raw, head);
		if (THPFS_HUGE_SIZE - head)
			(void)munmap(p + len, THPFS_HUGE_SIZE - head);
	}
	int e = 0;
	if (madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) ||
	    madvise(p, len, MADV_DONTFORK))
		e = -errno;
	else
		e = view_make_writable(p, len);
	if (e) {
		*err = e;
		/* holds nothing yet; the caller's range is reserved again */
		if (!want || mmap(p, len, PROT_NONE, flags | MAP_FIXED, -1, 0) == MAP_FAILED)
			(void)munmap(p, len);
		return NULL;
	}
	return p;
}

/* mremap of one chunk's 2 MiB from src to dst, or -errno; the test hook
 * fs->move_fault_nth makes the nth from now and every later one fail as the
 * kernel does when it is out of VMAs (ENOMEM, nothing moved). */
static int chunk_remap(struct thpfs *fs, char *src, char *dst)
{
	uint64_t nth = __atomic_load_n(&fs->move_fault_nth, __ATOMIC_RELAXED);
	if (nth == 1)
		return -ENOMEM;
	if (nth)
		__atomic_store_n(&fs->move_fault_nth, nth - 1, __ATOMIC_RELAXED);
	if (mremap(src, THPFS_HUGE_SIZE, THPFS_HUGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, dst) ==
	    MAP_FAILED)
		return -errno;
	return 0;
}

/* Moves chunk c's memory (an arena slot) to dst in the view, no copy, and
 * gives the slot back.  c is not pinned.  On failure nothing changed. */
static int move_in(struct thpfs *fs, struct thpfs_chunk *c, char *dst)
{
	char *src = c->mem;
	int err = chunk_remap(fs, src, dst);
	if (err)
		return err;
	c->mem = dst;
	c->mapped = true;
	_thpfs_slot_unreleased_moved(fs, src, dst);
	_thpfs_slot_refill(fs, src);
	/* The moved range keeps the arena's MADV_DONTFORK and advice, which
	 * already fit the chunk; this only makes sure (a refusal is retried
	 * by the next sync). */
	advise_range(c->inode, dst, c->huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	/* stores through the view are not seen: count every page written */
	memcpy(c->uptodate, c->present, sizeof(c->uptodate));
	return 0;
}

/*
 * Moves chunk c's memory from the view to slot, an empty arena slot of its
 * kind taken beforehand, and gives it the advice such a slot must have
 * (khugepaged must not fill a base block, fork must not copy file memory).
 * Cannot fail, so that a view is never unmapped with file memory in it: if
 * the kernel will not move the memory (mremap: out of VMAs), the chunk's
 * present pages are copied into the slot instead and dropped from the view
 * (best effort: the caller unmaps or replaces the view next).  A huge
 * chunk copied so gets a huge page if the kernel has one at the copy's
 * first fault (the slot is MADV_HUGEPAGE); if not, its data is whole but
 * the kernel maps it with 4 KiB pages until it is split or freed.  Needs
 * the sync that makes c->present cover every page stored through the view.
 */
static void move_out(struct thpfs *fs, struct thpfs_chunk *c, char *slot)
{
	char *view = c->mem;
	if (chunk_remap(fs, view, slot) == 0) {
		/* a refused madvise only leaves the advice off (as in
		 * _thpfs_slot_refill); the data is in place */
		(void)madvise(slot, THPFS_HUGE_SIZE, c->huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		(void)madvise(slot, THPFS_HUGE_SIZE, MADV_DONTFORK);
	} else {
		for (unsigned i = 0; i < THPFS_PAGES_PER_HUGE; i++)
			if (c->huge || (c->present[i / 64] >> (i % 64) & 1))
				memcpy(slot + ((size_t)i << THPFS_PAGE_SHIFT),
				       view + ((size_t)i << THPFS_PAGE_SHIFT), THPFS_PAGE_SIZE);
		(void)madvise(view, THPFS_HUGE_SIZE, MADV_DONTNEED);
	}
	c->mem = slot;
	c->mapped = false;
}

/* The chunks of m's file range, first to last. */
#define for_each_view_chunk(c, inode, m)                                                      \
	for (struct thpfs_chunk *c = _thpfs_index_next(&(inode)->pages, (m)->start >> THPFS_HUGE_SHIFT); \
	     c && c->index < ((m)->start + (m)->len) >> THPFS_HUGE_SHIFT;                      \
	     c = _thpfs_index_next(&(inode)->pages, c->index + 1))

/* Takes one empty arena slot of the right kind for every chunk of m's range
 * (those with mapped == want_mapped), in index order.  All or nothing:
 * returns the array (free it) or NULL with *err set and nothing taken. */
static char **slots_take_for(struct thpfs *fs, struct thpfs_inode *inode,
			     const struct thpfs_mapping *m, bool want_mapped, size_t *nr, int *err)
{
	size_t n = 0, k = 0;
	for_each_view_chunk(c, inode, m)
		n += c->mapped == want_mapped;
	char **slots = calloc(n ? n : 1, sizeof(char *));
	if (!slots) {
		*err = -ENOMEM;
		return NULL;
	}
	for_each_view_chunk(c, inode, m) {
		if (c->mapped != want_mapped)
			continue;
		slots[k] = _thpfs_slot_take(fs, c->huge, err);
		if (!slots[k]) {
			while (k)
				_thpfs_slot_refill(fs, slots[--k]);
			free(slots);
			return NULL;
		}
		k++;
	}
	*nr = n;
	*err = 0;
	return slots;
}

/* Moves every mapped chunk of the view, the k-th to slots[k] (taken by
 * slots_take_for); cannot fail.  The view keeps holes where chunks were. */
static void move_all_out(struct thpfs *fs, struct thpfs_inode *inode, struct thpfs_mapping *m,
			 char **slots)
{
	size_t k = 0;
	for_each_view_chunk(c, inode, m)
		if (c->mapped)
			move_out(fs, c, slots[k++]);
}

/* Gives back n slots taken by slots_take_for and not used. */
static void slots_put_back(struct thpfs *fs, char **slots, size_t n)
{
	for (size_t k = 0; k < n; k++)
		_thpfs_slot_refill(fs, slots[k]);
}

int thpfs_mmap(struct thpfs_file *f, off_t off, size_t len, void **addr)
{
	int err = thpfs_file_check(f);
	if (err)
		return err;
	if (!addr)
		return -EINVAL;
	struct thpfs *fs = f->fs;
	struct thpfs_inode *inode = f->inode;
	if (!S_ISREG(inode->mode))
		return -ENODEV;
	/* the view is the storage, and thpfs writes to it too (pwrite,
	 * punch): it needs a read-write handle */
	if ((f->flags & O_ACCMODE) != O_RDWR)
		return -EACCES;
	if (off < 0 || !len || ((uint64_t)off | len | (uintptr_t)*addr) & (THPFS_HUGE_SIZE - 1) ||
	    (uintptr_t)*addr > UINTPTR_MAX - len)
		return -EINVAL;
	if (len > THPFS_MAX_FILE_SIZE || (uint64_t)off > THPFS_MAX_FILE_SIZE - len)
		return -ENXIO;
	err = pagemap_open(fs);
	if (err)
		return err;
	struct thpfs_mapping *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->start = (uint64_t)off;
	m->len = len;
	size_t words = ((len >> THPFS_HUGE_SHIFT) + 63) / 64;
	m->readvise = calloc(2 * words, sizeof(uint64_t));
	if (!m->readvise) {
		free(m);
		return -ENOMEM;
	}
	m->relock = m->readvise + words;
	/* the mapping holds the file open (raised under ns_lock, as open does) */
	pthread_rwlock_rdlock(&fs->ns_lock);
	__atomic_add_fetch(&inode->opens, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&fs->ns_lock);

	pthread_rwlock_wrlock(&inode->lock);
	if (inode->map)
		err = -EBUSY;
	else if (m->start + len > inode->size)
		err = -ENXIO;
	else if (range_pinned(inode, m->start, len))
		err = -EBUSY;
	if (!err) {
		/* checked and mapped under frame_lock: no arena or other view
		 * can take the range in between */
		pthread_mutex_lock(&fs->frame_lock);
		if (*addr && range_in_use(fs, *addr, len))
			err = -EEXIST;
		else
			m->addr = view_create(len, *addr,
					      _thpfs_want_huge(fs, inode, m->start >> THPFS_HUGE_SHIFT),
					      &err);
		if (!err)
			thpfs_list_add_tail(&m->link, &fs->views);
		pthread_mutex_unlock(&fs->frame_lock);
	}
	if (!err) {
		/* queued releases point at arena slots we are about to move */
		_thpfs_release_flush(fs);
		/* Slots to move the chunks back to if a move fails part way,
		 * taken first: undoing must not fail, or the view would be
		 * unmapped below with file memory in it. */
		size_t total = 0, n = 0;
		char **undo = slots_take_for(fs, inode, m, false, &total, &err);
		if (undo) {
			inode->map = m;
			uint64_t first = m->start >> THPFS_HUGE_SHIFT;
			for_each_view_chunk(c, inode, m) {
				err = move_in(fs, c, m->addr + ((c->index - first) << THPFS_HUGE_SHIFT));
				if (err)
					break;
				n++;
			}
			/* the k-th chunk moved in goes back to undo[k] */
			if (err)
				move_all_out(fs, inode, m, undo);
			slots_put_back(fs, undo + (err ? n : 0), total - (err ? n : 0));
			free(undo);
		}
		if (err) {
			inode->map = NULL;
			/* give the caller a reservation back; if that cannot
			 * be had, the range is left empty and unmapped */
			if (!*addr || mmap(m->addr, len, PROT_NONE,
					   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
					   -1, 0) == MAP_FAILED)
				(void)munmap(m->addr, len); /* only address space if it fails */
			view_forget(fs, m);
		}
	}
	pthread_rwlock_unlock(&inode->lock);
	if (err) {
		free(m->readvise);
		free(m);
		_thpfs_inode_put_open(fs, inode);
		return err;
	}
	__atomic_add_fetch(&fs->nr_mappings, 1, __ATOMIC_RELEASE);
	THPFS_STAT_ADD(fs, mapped_bytes, len);
	*addr = m->addr;
	return 0;
}

int thpfs_munmap(struct thpfs_file *f, void *addr, size_t len)
{
	int err = thpfs_file_check(f);
	if (err)
		return err;
	struct thpfs *fs = f->fs;
	struct thpfs_inode *inode = f->inode;
	if (!S_ISREG(inode->mode))
		return -EINVAL;
	pthread_rwlock_wrlock(&inode->lock);
	struct thpfs_mapping *m = inode->map;
	if (!m || m->addr != addr || m->len != len)
		err = -EINVAL;
	else if (range_pinned(inode, m->start, m->len))
		err = -EBUSY;
	/* Every slot first (all or nothing), then the unlock: after those,
	 * moving out cannot fail, so the view is never unmapped with file
	 * memory in it, and a refusal changes nothing. */
	size_t nslots = 0;
	char **slots = NULL;
	if (!err) {
		_thpfs_mmap_sync(fs, inode); /* adopt what was touched last */
		slots = slots_take_for(fs, inode, m, true, &nslots, &err);
	}
	/* arena slots are never locked: refuse rather than move locked
	 * memory into them */
	if (!err && munlock(m->addr, m->len)) {
		err = -errno;
		slots_put_back(fs, slots, nslots);
	}
	if (!err)
		move_all_out(fs, inode, m, slots);
	free(slots);
	int unmap_err = 0;
	if (!err) {
		inode->map = NULL;
		/* The view holds nothing of the file now; if the kernel will
		 * not unmap it (out of VMAs), the range stays mapped, empty,
		 * and the caller is told. */
		if (munmap(m->addr, m->len))
			unmap_err = -errno;
		view_forget(fs, m);
	}
	pthread_rwlock_unlock(&inode->lock);
	if (err)
		return err;
	free(m->readvise);
	free(m);
	__atomic_sub_fetch(&fs->nr_mappings, 1, __ATOMIC_RELEASE);
	THPFS_STAT_SUB(fs, mapped_bytes, len);
	_thpfs_inode_put_open(fs, inode);
	return unmap_err;
}
