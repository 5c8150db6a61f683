/*
 * internal.h - structures and cross-file functions of libthpfs.
 *
 * Glossary
 *   frame     memory taken from the OS.  A huge frame is 2 MiB, aligned,
 *             from an arena marked MADV_HUGEPAGE, populated at allocation so
 *             that it is one transparent huge page.  A base block is 2 MiB of
 *             address space from an arena marked MADV_NOHUGEPAGE whose 4 KiB
 *             base pages are populated one by one (a base frame is one such
 *             page).
 *   chunk     one 2 MiB-aligned range of a file that holds memory: either a
 *             huge page (mem is a huge frame) or base pages (mem is a base
 *             block; page i of the range lives at mem + i * 4 KiB).
 *   present   a page holds memory (always all 512 in a huge chunk).
 *   uptodate  a page was written (or mapped); a present page that is not
 *             uptodate was only fallocated: it reads zero and SEEK_DATA treats
 *             it as a hole, as tmpfs does.
 *   pending   a page that was punched or truncated while its chunk could not
 *             be split (pinned, or no memory for the split): its bytes are
 *             zero, it still holds memory, and it is freed by the deferred
 *             split queue once the chunk can be split.
 *
 * Invariants (checked by _thpfs_chunk_check when built with THPFS_DEBUG, as
 * the ASan build is)
 *   huge  => present == all, nr_present == 512, pending may be any subset.
 *   !huge => nr_present == popcount(present) > 0, pending  is a subset of present.
 *   uptodate is a subset of present.
 *   pending not empty => queued (a pinned chunk may be queued with none).
 *   Bytes at or past i_size in present pages are zero.
 *   A chunk with pins > 0 is never split, collapsed, moved or freed.
 *   queued <=> the chunk is on fs->deferred.
 *
 * Lock order (each lock may be taken while holding the ones above it):
 *   fs->ns_lock            (rwlock)  namespace: directories, names, nlink,
 *                                    the inode table, inode lookup counts
 *     inode->lock          (rwlock)  one file's data: index, chunks, size,
 *                                    pins; read for reads, write for changes
 *       fs->deferred_lock  (mutex)   the deferred split list
 *         fs->release_lock (mutex)   the batch of pages waiting to be released
 *           fs->frame_lock (mutex)   arenas, free slots, the size= budget
 * fs->retire_flush_lock (mutex) serializes flushes of collapse's retired
 * blocks: it may be taken under inode->lock and deferred_lock, never with
 * release_lock or frame_lock held, and release_lock (a block's pages still
 * queued) and frame_lock are taken inside it.
 * fs->retire_lock (mutex, the retired list itself) nests inside any lock
 * and is held only to add or take entries.
 * fs->file_lock (mutex) guards the file-handle lists and nests inside any of
 * these; so does fs->collapse_mu (the background thread's sleep).
 * inode->lock of two different inodes is never held at once, except through
 * pthread_rwlock_trywrlock (reclaim and the collapse thread skip busy inodes).
 * Counters in fs->stats are updated with atomic adds and need no lock.
 */
#ifndef THPFS_INTERNAL_H
#define THPFS_INTERNAL_H

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "thpfs.h"

/* ---- Sizes ---- */
#define THPFS_PAGE_SHIFT 12
#define THPFS_PAGE_SIZE (1UL << THPFS_PAGE_SHIFT)
#define THPFS_HUGE_SHIFT 21
#define THPFS_HUGE_SIZE (1UL << THPFS_HUGE_SHIFT)
#define THPFS_PAGES_PER_HUGE (THPFS_HUGE_SIZE / THPFS_PAGE_SIZE) /* 512 */
#define THPFS_BITMAP_WORDS (THPFS_PAGES_PER_HUGE / 64)          /* 8 */

/* ---- Small helpers ---- */
#define thpfs_min(a, b) ((a) < (b) ? (a) : (b))
#define thpfs_max(a, b) ((a) > (b) ? (a) : (b))
#define THPFS_STAT_ADD(fs, field, n) \
	__atomic_add_fetch(&(fs)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)
#define THPFS_STAT_SUB(fs, field, n) \
	__atomic_sub_fetch(&(fs)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

struct thpfs_list {
	struct thpfs_list *next, *prev;
};
static inline void thpfs_list_init(struct thpfs_list *l) { l->next = l->prev = l; }
static inline bool thpfs_list_empty(const struct thpfs_list *l) { return l->next == l; }
static inline void thpfs_list_add_tail(struct thpfs_list *n, struct thpfs_list *head)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}
static inline void thpfs_list_del(struct thpfs_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}
#define thpfs_container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* 512-bit page bitmaps */
typedef uint64_t thpfs_bitmap_t[THPFS_BITMAP_WORDS];
static inline bool thpfs_bit_test(const uint64_t *b, unsigned i) { return (b[i >> 6] >> (i & 63)) & 1; }
static inline void thpfs_bit_set(uint64_t *b, unsigned i) { b[i >> 6] |= 1ULL << (i & 63); }
static inline void thpfs_bit_clear(uint64_t *b, unsigned i) { b[i >> 6] &= ~(1ULL << (i & 63)); }
static inline void thpfs_bitmap_fill(uint64_t *b) { memset(b, 0xff, sizeof(thpfs_bitmap_t)); }
static inline void thpfs_bitmap_zero(uint64_t *b) { memset(b, 0, sizeof(thpfs_bitmap_t)); }
static inline unsigned thpfs_bitmap_weight(const uint64_t *b)
{
	unsigned n = 0;
	for (unsigned i = 0; i < THPFS_BITMAP_WORDS; i++)
		n += (unsigned)__builtin_popcountll(b[i]);
	return n;
}
static inline bool thpfs_bitmap_empty(const uint64_t *b)
{
	for (unsigned i = 0; i < THPFS_BITMAP_WORDS; i++)
		if (b[i])
			return false;
	return true;
}
/* Set or clear bits [from, to). */
void _thpfs_bitmap_set_range(uint64_t *b, unsigned from, unsigned to);
void _thpfs_bitmap_clear_range(uint64_t *b, unsigned from, unsigned to);
/* First bit >= from that is set (want = true) or clear; 512 if none. */
unsigned _thpfs_bitmap_find(const uint64_t *b, unsigned from, bool want);
/* Walks the runs of set bits of b: pages [i, end) for each run. */
#define thpfs_for_each_run(b, i, end)                                              \
	for (unsigned i = _thpfs_bitmap_find((b), 0, true), end = 0;               \
	     i < THPFS_PAGES_PER_HUGE && ((end = _thpfs_bitmap_find((b), i, false)), 1); \
	     i = _thpfs_bitmap_find((b), end, true))

/* ---- Mount options (options.c) ---- */
enum thpfs_huge_policy {
	THPFS_HUGE_NEVER,       /* base pages only */
	THPFS_HUGE_ALWAYS,      /* a huge page for every new 2 MiB range */
	THPFS_HUGE_WITHIN_SIZE, /* only where the aligned 2 MiB fits in size/write */
	THPFS_HUGE_ADVISE,      /* only files marked THPFS_ADV_HUGEPAGE */
};
enum thpfs_split_mode {
	THPFS_SPLIT_NATIVE,  /* have the kernel split the THP in place, then release */
	THPFS_SPLIT_MIGRATE, /* copy live pages to base frames, free the huge frame */
	THPFS_SPLIT_INPLACE, /* MADV_DONTNEED the punched pages inside the THP */
};
#define THPFS_PREALLOC_DEFAULT 0 /* opt-in: see include/thpfs.h */
#define THPFS_PREALLOC_MAX 64
struct thpfs_options {
	uint64_t size;       /* bytes of data the mount may hold; 0 = unlimited */
	uint64_t nr_inodes;  /* 0 = unlimited */
	enum thpfs_huge_policy huge;
	enum thpfs_split_mode split;
	unsigned max_ptes_none; /* 0..511 */
	bool collapse_thread;
	unsigned scan_sleep_ms;
	unsigned prealloc;   /* huge frames kept populated ahead (frame.c pool) */
	mode_t mode;
	uid_t uid;
	gid_t gid;
};
/* Parses a tmpfs-style option string into *o (defaults first).  On a bad
 * option returns -EINVAL and writes a message naming it into err. */
int _thpfs_parse_options(struct thpfs_options *o, const char *s, char *err, size_t errlen);
const char *_thpfs_huge_name(enum thpfs_huge_policy p);

/* ---- Page-cache index (index.c) ----
 * A radix tree, 64 slots a node, from chunk index (offset >> 21) to chunk.
 * The caller holds inode->lock (read for lookups, write for changes). */
struct thpfs_index {
	void *root;
	unsigned height; /* 0: empty; root covers 64^height keys */
	uint64_t count;  /* chunks */
	uint64_t nodes;  /* tree nodes */
};
void _thpfs_index_init(struct thpfs_index *ix);
struct thpfs_chunk *_thpfs_index_lookup(const struct thpfs_index *ix, uint64_t key);
int _thpfs_index_insert(struct thpfs_index *ix, uint64_t key, struct thpfs_chunk *c);
void _thpfs_index_remove(struct thpfs_index *ix, uint64_t key);
/* First chunk with index >= key, or NULL. */
struct thpfs_chunk *_thpfs_index_next(const struct thpfs_index *ix, uint64_t key);
/* Frees the tree's nodes (not the chunks). */
void _thpfs_index_destroy(struct thpfs_index *ix);
/* Bytes of metadata the tree uses. */
uint64_t _thpfs_index_bytes(const struct thpfs_index *ix);

/* ---- Chunks ---- */
struct thpfs_inode;
struct thpfs_chunk {
	uint64_t index;             /* file offset >> THPFS_HUGE_SHIFT */
	struct thpfs_inode *inode;  /* owner */
	char *mem;                  /* huge frame or base block */
	bool huge;                  /* mem is a huge frame */
	bool queued;                /* on fs->deferred */
	bool mapped;                /* mem lies in the inode's thpfs_mmap view */
	bool fresh;                 /* a huge frame the writing thread just
				     * faulted in, not yet written to its
				     * end: likely in its cache (copy_in) */
	uint32_t pins;              /* thpfs_map pins; protected by inode->lock */
	uint32_t nr_present;        /* pages holding memory */
	thpfs_bitmap_t present;
	thpfs_bitmap_t uptodate;
	thpfs_bitmap_t pending;
	struct thpfs_list deferred; /* link in fs->deferred; fs->deferred_lock */
	struct thpfs_list pinlink;  /* link in inode->pinned while pins > 0 */
};

/* Sets a chunk's present-page count, keeping the inode's total in step.
 * inode->lock held for writing. */
static inline void thpfs_chunk_set_present(struct thpfs_chunk *c, unsigned n);

/* ---- Inodes ---- */
struct thpfs_dentry {
	struct thpfs_dentry *hnext;  /* hash chain in the parent */
	struct thpfs_list link;      /* in the parent's cookie order */
	struct thpfs_inode *inode;
	uint64_t cookie;
	char name[];
};
struct thpfs_inode {
	uint64_t ino;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	uint32_t nlink;          /* ns_lock */
	uint64_t lookups;        /* thpfs_lookup references; ns_lock */
	uint32_t opens;          /* open files; ns_lock */
	struct timespec atime, mtime, ctime, btime;
	struct thpfs_inode *hnext; /* inode table chain; ns_lock */
	struct thpfs_list all;     /* fs->inodes; ns_lock */
	pthread_rwlock_t lock;
	/* regular files (inode->lock) */
	uint64_t size;
	struct thpfs_index pages;
	int advice;              /* THPFS_ADV_* */
	uint64_t falloc_end;     /* end of KEEP_SIZE fallocations past size */
	uint64_t nr_pages;       /* present pages in all chunks (st_blocks / 8) */
	struct thpfs_list pinned; /* chunks with pins > 0 */
	struct thpfs_mapping *map; /* thpfs_mmap view or NULL; set and cleared
				    * with inode->lock held for writing, read
				    * with __atomic_load to pick a lock mode */
	/* directories (ns_lock) */
	struct thpfs_inode *parent;
	struct thpfs_dentry **dhash;
	unsigned dhash_size, nentries;
	struct thpfs_list dentries;
	uint64_t next_cookie;
	struct thpfs_dentry *readdir_hint; /* namei.c: last entry readdir passed */
	/* symlinks */
	char *target;
	/* device nodes: the device number (0 for fifos, sockets, others) */
	dev_t rdev;
	/* extended attributes, sorted by name (xattr.c); ns_lock */
	struct thpfs_xattr *xattrs;
	uint32_t generation; /* set at birth, never changed (file handles) */
};

struct thpfs_file {
	struct thpfs *fs;
	struct thpfs_inode *inode;
	int flags;
	pthread_mutex_t pos_lock;
	off_t pos;
	uint32_t magic; /* THPFS_FILE_MAGIC while open */
	struct thpfs_list link; /* fs->files; fs->file_lock */
};
#define THPFS_FILE_MAGIC 0x74687066u

static inline void thpfs_chunk_set_present(struct thpfs_chunk *c, unsigned n)
{
	c->inode->nr_pages += (uint64_t)n - c->nr_present;
	c->nr_present = n;
}

/* ---- The mount ---- */
struct thpfs_arena; /* frame.c */
struct thpfs {
	struct thpfs_options opt;
	pthread_rwlock_t ns_lock;
	struct thpfs_inode *root;
	struct thpfs_inode **itable;
	unsigned itable_size;
	uint64_t next_ino;
	uint64_t links_charged; /* hard links past each inode's first, charged
				 * to nr_inodes= as tmpfs does; written under
				 * ns_lock (write), read atomically */
	struct thpfs_list inodes;
	uint32_t next_generation; /* random at mount, +1 per inode; ns_lock */
	uint64_t xattr_bytes;   /* inode space extended attributes take, as
				 * tmpfs counts it (xattr.c); changed under
				 * ns_lock (write), read atomically */

	pthread_mutex_t deferred_lock;
	struct thpfs_list deferred;

	/* frame layer (frame.c), frame_lock */
	pthread_mutex_t frame_lock;
	struct thpfs_arena *huge_arenas, *base_arenas;
	char **huge_free, **base_free; /* stacks of free 2 MiB slots */
	size_t nhuge_free, nbase_free, huge_free_cap, base_free_cap;
	uint64_t held_bytes;  /* frames held, counted against opt.size */
	struct thpfs_unreleased *unreleased; /* blocks with pages whose release
					      * failed, still held (frame.c) */
	uint64_t pt_bytes;    /* page tables of base blocks (frame.c); atomic */
	uint64_t fault_nth, fault_count;
	/* release batch (frame.c), release_lock: base pages waiting for one
	 * process_madvise(MADV_DONTNEED) call */
	pthread_mutex_t release_lock;
	struct iovec *release_iov;
	unsigned release_n;
	uint64_t release_pages;
	int pidfd;
	int fault_repeat;
	/* retired blocks (frame.c), retire_lock: base blocks collapse left
	 * behind, with the pages they hold; the background thread releases
	 * them (off the collapse's path, outside release_lock) and puts their
	 * slots back on the free stack */
	pthread_mutex_t retire_lock, retire_flush_lock;
	struct thpfs_retired *retired;
	unsigned nretired;
	/* prealloc pool (frame.c), frame_lock: populated huge frames, charged,
	 * verified huge when made and again when handed out */
	char **pool;
	unsigned pool_n;
	uint64_t pool_takes, pool_takes_seen;
	/* release fault switch (frame.c, atomics): thpfs_fault_inject_release */
	uint64_t release_fault_nth, release_fault_count;
	int release_fault_repeat;

	/* collapse thread (collapse.c) */
	pthread_t collapse_tid;
	bool collapse_running;
	pthread_mutex_t collapse_mu;
	pthread_cond_t collapse_cv;
	bool collapse_stop;
	bool release_kicked; /* pages queued since the last flush; collapse_mu */
	bool pool_kicked;    /* the prealloc pool wants frames; collapse_mu */
	bool flush_kicked;   /* a block was retired: flush now; collapse_mu */

	/* File handles are never freed before unmount: a closed one waits on
	 * a free list for reuse, so a stale pointer still reads as closed
	 * (-EBADF) instead of touching freed memory.  file_lock (a leaf lock)
	 * guards the lists. */
	pthread_mutex_t file_lock;
	struct thpfs_list files, free_files;

	/* mappings (mmap.c): atomic */
	uint64_t nr_mappings;
	/* test hook (atomic): from the nth mremap of a chunk between an arena
	 * slot and a view on, every one fails with ENOMEM (0 = off) */
	uint64_t move_fault_nth;
	/* every thpfs_mapping of the mount (its link), under frame_lock, so
	 * that a fixed address is checked against them and the arenas */
	struct thpfs_list views;

	struct thpfs_stats stats;

	/* asking the kernel (kernel.c); set at mount */
	int pagemap_fd;    /* /proc/self/pagemap, or -1 */
	int kpageflags_fd; /* /proc/kpageflags when readable (root), or -1 */
	int verify;        /* THPFS_VERIFY_*: what can be asked */
	char verify_why[48]; /* what stopped it at that level ("pagemap:
			      * EACCES"), or "" */
	/* frame.c: until when (CLOCK_MONOTONIC ns) collapse does not ask for a
	 * huge page, after the kernel gave one as 4 KiB pages */
	uint64_t thp_backoff_until;
};

/* ---- Frames from the OS (frame.c) ----
 * All take fs->frame_lock themselves; callers must not hold it. */
int _thpfs_frames_init(struct thpfs *fs);
void _thpfs_frames_destroy(struct thpfs *fs);
/* A populated huge frame, or NULL (-ENOMEM, -ENOSPC past size=, injected
 * fault, or the kernel gave 4 KiB pages) with *err set.  Charges 2 MiB to
 * the budget. */
char *_thpfs_huge_alloc(struct thpfs *fs, int *err);
/* Returns the frame's memory to the OS at once and uncharges 2 MiB. */
void _thpfs_huge_free(struct thpfs *fs, char *mem);
/* 2 MiB of address space for base pages; nothing populated, nothing charged. */
char *_thpfs_block_alloc(struct thpfs *fs, int *err);
/* Returns a block with no present pages to the free list. */
void _thpfs_block_free(struct thpfs *fs, char *mem);
/* Charges and populates pages [from, to) of a block (zero-filled).  Fails
 * with -ENOSPC or -ENOMEM (fault injection counts one allocation per call)
 * and then populates nothing. */
int _thpfs_pages_populate(struct thpfs *fs, char *mem, unsigned from, unsigned to);
/* Returns pages [from, to) of a block to the OS and uncharges them.  The
 * pages are queued and released in batches (one process_madvise call, one
 * TLB flush, for up to THPFS_RELEASE_BATCH pages); the queue is flushed when
 * full, before a page of a block with queued pages is populated or a block
 * is reused, by reclaim and by the background thread every scan_sleep_ms. */
void _thpfs_pages_release(struct thpfs *fs, char *mem, unsigned from, unsigned to);
/* Turns a huge frame into a base block in place (MADV_NOHUGEPAGE on it); the
 * 2 MiB stay charged as 512 base pages.  After this the slot is freed with
 * _thpfs_pages_release + _thpfs_block_free.  Returns 0, or the madvise
 * error with nothing changed (the frame is still a huge frame). */
int _thpfs_huge_to_block(struct thpfs *fs, char *mem);
/* Gives [p, p+len) back to the OS (MADV_DONTNEED, or _LOCKED on mlocked
 * memory), else zeroes it; counts bytes_released or release_failed_bytes.
 * Returns whether the memory went back.  No lock needed. */
bool _thpfs_release_counted(struct thpfs *fs, char *p, size_t len);
/* The same without counting (for ranges that may hold no memory). */
bool _thpfs_release(char *p, size_t len);
/* Charges or uncharges the page table of one 2 MiB range mapped by 4 KiB
 * entries (fs->pt_bytes, see frame.c).  No lock needed. */
void _thpfs_pt_charge(struct thpfs *fs);
void _thpfs_pt_uncharge(struct thpfs *fs);
/* As above, for a split or collapse that is about to give credit bytes back:
 * the budget may be passed by up to credit bytes for that moment. */
char *_thpfs_huge_alloc_credit(struct thpfs *fs, uint64_t credit, int *err);
int _thpfs_pages_populate_credit(struct thpfs *fs, char *mem, unsigned from, unsigned to,
				 uint64_t credit);
#define THPFS_RELEASE_BATCH 64
#define THPFS_RETIRED_MAX 8 /* retired blocks waiting for a flush (16 MiB) */
struct thpfs_retired {
	char *mem;
	unsigned pages; /* how many pages it still holds */
};
/* Releases every queued page and every retired block now.  Takes
 * retire_flush_lock, then release_lock, each with frame_lock inside.
 * Returns the bytes that really went back to the OS. */
uint64_t _thpfs_release_flush(struct thpfs *fs);
/* Asks the kernel to split the THP of a huge frame now (MADV_FREE on part of
 * a THP splits it; the first page set in drop, about to be released, is the
 * one marked) and checks with the kernel that it did (kernel.c).  Returns 0
 * with the frame turned into base pages in place; -EAGAIN when the kernel
 * kept the huge page (extra references on it: a pipe, a GUP pin, I/O in
 * flight; or its lock was busy), the frame unchanged and still huge; or
 * another error with nothing changed when it cannot be done or verified
 * (the caller then migrates). */
int _thpfs_huge_split_native(struct thpfs *fs, char *mem, const uint64_t *drop);
/* For a new chunk: a populated huge frame (*huge = true), or, when the
 * kernel gave those 2 MiB as 4 KiB pages, the same memory as a base block
 * with all 512 pages populated and counted as base pages (*huge = false;
 * MADV_NOHUGEPAGE so khugepaged never collapses it behind us).  *hot: the
 * calling thread populated it just now (false for a prealloc pool frame). */
char *_thpfs_huge_alloc_or_base(struct thpfs *fs, bool *huge, bool *hot, int *err);
/* Bytes of huge arenas the kernel maps with huge PMDs now (PAGEMAP_SCAN, one
 * call per arena), or -EOPNOTSUPP when it cannot be asked. */
int64_t _thpfs_frames_pmd_mapped(struct thpfs *fs);
/* The prealloc pool (prealloc=N): up to N populated huge frames made by the
 * background thread, so that a new chunk's frame costs no fault and no
 * zeroing on the write path.  Pool frames are charged to size= and counted
 * in stats.prealloc_bytes.  _thpfs_pool_refill (background thread) fills it;
 * _thpfs_pool_drain gives every pool frame back to the OS and returns the
 * bytes that went back (thpfs_reclaim, size= pressure, unmount);
 * _thpfs_pool_trim_idle drains it when no frame was taken since the last
 * call (each background pass).  All take frame_lock themselves. */
void _thpfs_pool_refill(struct thpfs *fs);
uint64_t _thpfs_pool_drain(struct thpfs *fs);
void _thpfs_pool_trim_idle(struct thpfs *fs);
/* Base block mem, whose present pages (set in pages) are no file's any more,
 * goes back to the OS off the caller's path: it joins the retired list and
 * the background thread, woken at once, releases its pages and puts its slot
 * back on the free stack.  When THPFS_RETIRED_MAX blocks already wait (the
 * thread is behind), the caller frees the oldest one itself.  Takes
 * retire_lock (and then retire_flush_lock when the list is full), then
 * fs->collapse_mu for the kick. */
void _thpfs_block_retire(struct thpfs *fs, char *mem, const uint64_t *pages);
/* What the calling thread's frame-layer calls have really given back to the
 * OS and populated since it started (monotonic; a failed release and the
 * reuse of a page still held count neither).  thpfs_reclaim's result is the
 * difference over its call. */
void _thpfs_mem_ledger(uint64_t *released, uint64_t *populated);
/* Counts len bytes the kernel was seen to free (bytes_released and the
 * ledger), for a release made outside frame.c (mmap.c's MADV_PAGEOUT). */
void _thpfs_count_released(struct thpfs *fs, uint64_t len);
/* Bytes of frames held now for data (the size= budget's use, less the
 * prealloc pool, which gives way to data: statfs counts it as free). */
uint64_t _thpfs_held_bytes(struct thpfs *fs);
/* Charges n bytes of metadata that tmpfs counts against size= (a long
 * symlink target's page) as if they were file data; -ENOSPC past size=.
 * Takes frame_lock. */
int _thpfs_budget_charge(struct thpfs *fs, uint64_t n);
void _thpfs_budget_uncharge(struct thpfs *fs, uint64_t n);

/* ---- Asking the kernel (kernel.c) ----
 * No thpfs lock is needed or taken. */
enum {
	THPFS_VERIFY_NONE,  /* no PAGEMAP_SCAN (Linux < 6.7): nothing verified */
	THPFS_VERIFY_PMD,   /* PAGEMAP_SCAN: whether a huge PMD maps a range */
	THPFS_VERIFY_FOLIO, /* and kpageflags: whether pages are in a large folio */
};
void _thpfs_kernel_init(struct thpfs *fs);
void _thpfs_kernel_destroy(struct thpfs *fs);
/* The PAGEMAP_SCAN interface (include/uapi/linux/fs.h, Linux 6.7) under
 * names of our own, so that neither older headers (Debian 12's lack it) nor
 * newer ones matter.  One definition for the library: kernel.c and mmap.c. */
struct thpfs_pm_region {
	uint64_t start, end, categories;
};
struct thpfs_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define THPFS_PM_IS_PRESENT (1ULL << 3)
#define THPFS_PM_IS_SWAPPED (1ULL << 4)
#define THPFS_PM_IS_PFNZERO (1ULL << 5)
#define THPFS_PM_IS_HUGE (1ULL << 6)
/* One PAGEMAP_SCAN ioctl on fd (the mount's /proc/self/pagemap, or one being
 * probed); a->size is filled in.  Returns the number of regions written to
 * a->vec, or -errno. */
long _thpfs_kernel_scan(int fd, struct thpfs_pm_scan_arg *a);
/* Bytes of [p, p + len) mapped by huge PMDs now (one PAGEMAP_SCAN call per
 * 64 separate huge ranges), or -EOPNOTSUPP without PAGEMAP_SCAN. */
int64_t _thpfs_kernel_pmd_bytes(struct thpfs *fs, const char *p, size_t len);
/* Whether a split of the THP at p (2 MiB) asked for now could be told from
 * no split: with kpageflags always; with PAGEMAP_SCAN only when a huge PMD
 * maps all of it now (see kernel.c); never without PAGEMAP_SCAN. */
bool _thpfs_kernel_split_checkable(struct thpfs *fs, const char *p);
/* Whether the THP at p (2 MiB), checkable before the split was asked for,
 * has really been split: 1 when no huge PMD maps it and (when kpageflags
 * can be read) no page set in pages is still part of a large folio; 0 when
 * it is not split; a negative errno when it cannot tell. */
int _thpfs_kernel_split_done(struct thpfs *fs, const char *p, const uint64_t *pages);

/* ---- Chunk operations (split.c) ----
 * Caller holds inode->lock for writing. */
struct thpfs_chunk *_thpfs_chunk_new(struct thpfs_inode *inode, uint64_t index);
/* Frees a chunk's memory and the struct, removing it from the index and the
 * deferred list.  The chunk must not be pinned. */
void _thpfs_chunk_destroy(struct thpfs *fs, struct thpfs_chunk *c);
/* Splits a huge chunk, dropping the pages set in drop (see split.c). */
int _thpfs_split_chunk(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *drop);
/* Collapses a base chunk into a huge frame.  Returns 0, -EBUSY (pinned or
 * pending), -EAGAIN (too many holes for max_ptes_none unless force), or the
 * frame allocation's error; the chunk is unchanged on failure. */
int _thpfs_collapse_chunk(struct thpfs *fs, struct thpfs_chunk *c, bool force);
void _thpfs_chunk_check(const struct thpfs_chunk *c);
/* Gives back the base pages set in pages (all present) of a base chunk that
 * keeps at least one other page, and forgets them. */
void _thpfs_chunk_release(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages);

/* ---- Truncation core (truncate.c) ----
 * Caller holds inode->lock for writing. */
/* Removes bytes [start, end) of the file's data (end = UINT64_MAX for "to the
 * end"): whole chunks inside are freed, partly covered huge chunks are zeroed
 * then split, partly covered base pages are zeroed; pinned or unsplittable
 * chunks keep their memory with the range zeroed and go on the deferred
 * queue. */
void _thpfs_undo_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start, uint64_t end);
/* Zeroes [start, end) and marks its whole present pages pending, keeping
 * their memory (and huge pages) until reclaim: thpfs_free_lazy. */
void _thpfs_lazy_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start, uint64_t end);
/* Frees a chunk's pending pages now if it can (not pinned, memory for the
 * split); dequeues it when nothing is pending.  Returns bytes freed. */
uint64_t _thpfs_chunk_settle(struct thpfs *fs, struct thpfs_chunk *c);
void _thpfs_deferred_add(struct thpfs *fs, struct thpfs_chunk *c);
void _thpfs_deferred_del(struct thpfs *fs, struct thpfs_chunk *c);
/* Reclaim for size= and thpfs_reclaim.  self is an inode whose lock the
 * caller already holds for writing (or NULL); others are only trylocked.
 * It takes only pending pages and huge-page tails past EOF (and past
 * falloc_end), but of self too: it may release any pending page of self,
 * split self's huge chunks and free a chunk whose present pages were all
 * pending.  So a caller that runs it while filling self (data.c chunk_fill)
 * first takes the pages it counts on off pending (claims them), extends
 * size/falloc_end over what it filled, and looks a chunk up again by index
 * after it instead of trusting a pointer. */
uint64_t _thpfs_reclaim(struct thpfs *fs, struct thpfs_inode *self, uint64_t want);

/* ---- File data (data.c) ----
 * Free all data of an inode that is being destroyed (no lock needed: no one
 * else can reach it). */
void _thpfs_inode_free_data(struct thpfs *fs, struct thpfs_inode *inode);
/* Changes the size of a regular file; caller holds inode->lock for writing. */
int _thpfs_truncate_locked(struct thpfs *fs, struct thpfs_inode *inode, uint64_t size);
/* Sets up the data side of a new regular-file inode (index, pin list). */
void _thpfs_inode_data_init(struct thpfs_inode *inode);

/* Whether policy gives chunk idx of inode a huge page (for collapse). */
bool _thpfs_want_huge(struct thpfs *fs, struct thpfs_inode *inode, uint64_t idx);
/* st_blocks of a file in 512-byte units; caller holds inode->lock. */
uint64_t _thpfs_inode_blocks(const struct thpfs_inode *inode);

/* ---- Inodes and namespace (inode.c, namei.c) ---- */
void _thpfs_fill_stat(struct thpfs *fs, struct thpfs_inode *inode, struct stat *st);
void _thpfs_now(struct timespec *ts);
/* Drops an open-file reference (ns_lock taken inside) and destroys the
 * inode if it has no links, opens or lookups left. */
void _thpfs_inode_put_open(struct thpfs *fs, struct thpfs_inode *inode);
int _thpfs_ns_init(struct thpfs *fs);
/* File handles (namei.c): a zeroed handle with pos_lock ready, or NULL. */
struct thpfs_file *_thpfs_file_alloc(struct thpfs *fs);
void _thpfs_file_free(struct thpfs *fs, struct thpfs_file *f);
void _thpfs_files_destroy(struct thpfs *fs);
void _thpfs_ns_destroy(struct thpfs *fs);
/* namei.c uses these from inode.c; all need fs->ns_lock held for writing,
 * except _thpfs_inode_find (read is enough).  _thpfs_inode_new gives an
 * inode with nlink 0 in the table (-ENOSPC past nr_inodes, -ENOMEM). */
struct thpfs_inode *_thpfs_inode_new(struct thpfs *fs, mode_t mode, uid_t uid, gid_t gid,
				     int *err);
struct thpfs_inode *_thpfs_inode_find(struct thpfs *fs, uint64_t ino);
/* nr_inodes= counts hard links past an inode's first too (as tmpfs does):
 * charge one before adding such a link (-ENOSPC), give it back when one is
 * removed and others remain.  ns_lock held for writing. */
int _thpfs_link_charge(struct thpfs *fs);
void _thpfs_link_uncharge(struct thpfs *fs);
/* Bytes of size= a symlink target of len bytes takes (a page past tmpfs's
 * inline limit, else 0); charged by namei.c, given back when the inode dies. */
uint64_t _thpfs_symlink_charge_bytes(size_t len);
/* Destroys the inode if nlink, opens and lookups are all 0 (never the root). */
void _thpfs_inode_maybe_destroy(struct thpfs *fs, struct thpfs_inode *inode);
/* _thpfs_fill_stat taking inode->lock for a regular file; caller holds
 * ns_lock (read is enough). */
void _thpfs_inode_stat(struct thpfs *fs, struct thpfs_inode *inode, struct stat *st);

/* ---- Extended attributes and ACLs (xattr.c, acl.c) ----
 * All need fs->ns_lock held for writing (peek: reading is enough). */
#define THPFS_BOGO_INODE_SIZE 1024 /* inode space an inode takes, as tmpfs */
/* Bytes of inode space in use: 1024 per inode and extra hard link, plus
 * the attributes (inode.c). */
uint64_t _thpfs_ispace_used(struct thpfs *fs);
/* The inode a path names (namei.c); ns_lock held. */
int _thpfs_path_inode(struct thpfs *fs, const char *path, struct thpfs_inode **out);
bool _thpfs_xattr_is_acl(const char *name);
/* Stores (value NULL: removes) an attribute whose name and value are
 * already checked, charging the inode space; THPFS_XATTR_CREATE/REPLACE. */
int _thpfs_xattr_store(struct thpfs *fs, struct thpfs_inode *inode, const char *name,
		       const void *value, size_t size, int flags);
const void *_thpfs_xattr_peek(struct thpfs_inode *inode, const char *name, size_t *size);
void _thpfs_xattr_free_all(struct thpfs *fs, struct thpfs_inode *inode);
/* Sets an ACL attribute: validates it and keeps the mode in step. */
int _thpfs_acl_set(struct thpfs *fs, struct thpfs_inode *inode, const char *name,
		   const void *value, size_t size, int flags);
/* After a chmod: the stored access ACL follows the new mode. */
void _thpfs_acl_chmod(struct thpfs_inode *inode);
bool _thpfs_acl_has_default(struct thpfs_inode *dir);
/* A new inode of dir takes the ACLs dir's default ACL passes on. */
int _thpfs_acl_inherit(struct thpfs *fs, struct thpfs_inode *dir, struct thpfs_inode *inode);

/* ---- Collapse thread (collapse.c) ----
 * The background thread runs with collapse=off too: then it only flushes the
 * release batch, scan_sleep_ms after _thpfs_release_kick. */
int _thpfs_collapse_start(struct thpfs *fs);
void _thpfs_collapse_stop(struct thpfs *fs);
/* The release batch went from empty to not empty: the background thread
 * flushes it within scan_sleep_ms.  Takes fs->collapse_mu, a leaf lock (the
 * thread never holds it while taking another lock). */
void _thpfs_release_kick(struct thpfs *fs);
/* The prealloc pool lost a frame: the background thread refills it now.
 * Takes fs->collapse_mu (leaf). */
void _thpfs_pool_kick(struct thpfs *fs);
/* The retired blocks (and the release batch) should be freed now, not at
 * the next pass: collapse retired a block.  Takes fs->collapse_mu (leaf). */
void _thpfs_flush_kick(struct thpfs *fs);
/* Copies n bytes with "rep movsb" where the CPU has ERMS, else memcpy.
 * Used where it measured faster than glibc memcpy (data.c): a large copy
 * into memory the caller just populated (likely in this CPU's cache), and
 * a read's copy of whole pages out of file memory.  No lock. */
void _thpfs_copy_erms(char *dst, const char *src, size_t n);
/* After a write made pages present: collapse the chunk if it is now full
 * (eager trigger).  Caller holds inode->lock for writing. */
void _thpfs_collapse_eager(struct thpfs *fs, struct thpfs_chunk *c);

/* ---- Mappings (mmap.c) ----
 * A view: file range [start, start+len) lives at addr.  Chunks inside it
 * have mapped set and mem = addr + (index << 21) - start: their memory is
 * the view itself, moved there with mremap and never copied.  What the
 * program touches through the view is learned with PAGEMAP_SCAN
 * (_thpfs_mmap_sync).  Every function below needs inode->lock held for
 * writing unless it says otherwise. */
struct thpfs_mapping {
	char *addr;
	uint64_t start, len;
	/* Per 2 MiB range of the view, bit set: an madvise (readvise) or a
	 * re-mlock (relock) failed there and the next sync applies it again. */
	uint64_t *readvise, *relock;
	bool fix;                   /* some bit above is set */
	struct thpfs_list link;     /* on fs->views, under frame_lock */
};
/* Brings the present/uptodate bitmaps and the charges of the inode's mapped
 * chunks in line with the kernel's page tables; creates chunks for ranges
 * the program touched.  No-op without a mapping. */
void _thpfs_mmap_sync(struct thpfs *fs, struct thpfs_inode *inode);
/* The same for the 2 MiB ranges overlapping file range [start, end). */
void _thpfs_mmap_sync_range(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start,
			    uint64_t end);
/* Syncs only the 2 MiB ranges of [start, end) that have no chunk: a chunk's
 * pages stored since the last sync are handled by _thpfs_mmap_zap_absent. */
void _thpfs_mmap_sync_missing(struct thpfs *fs, struct thpfs_inode *inode, uint64_t start,
			      uint64_t end);
/* Drops pages [pf, pl) of mapped chunk c that c does not count as present
 * (stored through the view since the last sync: never charged). */
void _thpfs_mmap_zap_absent(struct thpfs_chunk *c, unsigned pf, unsigned pl);
/* Locks inode for reading, or when it has a mapping for writing after a
 * sync; unlock with pthread_rwlock_unlock. */
void _thpfs_inode_lock_synced(struct thpfs *fs, struct thpfs_inode *inode);
/* Syncs every mapped inode of the mount (no lock held by the caller). */
void _thpfs_mmap_sync_all(struct thpfs *fs);
/* The view address of file offset off, or NULL if off is not mapped
 * (inode->lock held, read is enough). */
char *_thpfs_mmap_addr(const struct thpfs_inode *inode, uint64_t off);
/* Gives new chunk c (index inside the view) its memory in place: a huge
 * page if want_huge and the kernel gives one (verified), else base pages
 * populated later.  -ENOSPC/-ENOMEM with nothing charged. */
int _thpfs_mmap_chunk_memory(struct thpfs *fs, struct thpfs_chunk *c, bool want_huge);
/* Frees a mapped chunk's memory in place (MADV_DONTNEED of its 2 MiB, which
 * frees a huge page at once) and uncharges it; does not touch nr_present or
 * the index. */
void _thpfs_mmap_chunk_free(struct thpfs *fs, struct thpfs_chunk *c);
/* Frees the pages set in pages (present) of a mapped base chunk now, and
 * uncharges them.  Returns the number of pages freed. */
unsigned _thpfs_mmap_release(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *pages);
/* Splits mapped huge chunk c in place (kernel split, verified), dropping the
 * pages set in drop.  -EBUSY if the kernel did not split it (nothing
 * changed).  Never copies: another thread may be writing to it. */
int _thpfs_mmap_split(struct thpfs *fs, struct thpfs_chunk *c, const uint64_t *drop);
/* Collapses mapped base chunk c in place (MADV_HUGEPAGE + MADV_COLLAPSE,
 * verified) if all 512 pages are present; -EAGAIN with holes. */
int _thpfs_mmap_collapse(struct thpfs *fs, struct thpfs_chunk *c);
/* Frees c's pending pages that the program has not written since they were
 * zeroed (MADV_FREE + MADV_PAGEOUT, then asks the kernel); the others become
 * data again.  c is not pinned.  Returns bytes freed; c may be left with no
 * present page (the caller destroys it). */
uint64_t _thpfs_mmap_drop_pending(struct thpfs *fs, struct thpfs_chunk *c);
/* frame.c, for mmap.c: an empty arena slot of the given kind (nothing
 * charged or populated), and giving back a slot whose memory was moved away
 * with mremap (the hole is mapped afresh, then the slot is free again). */
char *_thpfs_slot_take(struct thpfs *fs, bool huge, int *err);
/* Whether [p, p+len) overlaps an arena of the mount (slots in use, free,
 * pooled or retired alike); frame_lock held. */
bool _thpfs_arena_overlaps(struct thpfs *fs, const char *p, size_t len);
void _thpfs_slot_refill(struct thpfs *fs, char *mem);
/* After a slot's memory moved to dst in a view: its pages whose release had
 * failed come off the unreleased record and are released at dst if they can
 * be (frame.c). */
void _thpfs_slot_unreleased_moved(struct thpfs *fs, char *src, char *dst);
/* Whether the file may shrink to size (not below a mapping). */
bool _thpfs_mmap_may_truncate(const struct thpfs_inode *inode, uint64_t size);

/* ---- Files ---- */
/* Validates f (open, from this library); returns -EBADF otherwise. */
static inline int thpfs_file_check(const struct thpfs_file *f)
{
	return (f && f->magic == THPFS_FILE_MAGIC) ? 0 : -EBADF;
}

#endif /* THPFS_INTERNAL_H */
