/*
 * frame.c - memory from the OS.
 *
 * Address space is reserved in arenas of THPFS_ARENA_SIZE bytes, 2 MiB
 * aligned, MAP_NORESERVE.  Huge arenas are marked MADV_HUGEPAGE and hand out
 * huge frames; base arenas are marked MADV_NOHUGEPAGE (so khugepaged never
 * refills a punched hole behind our back) and hand out base blocks.  Both are
 * cut into 2 MiB slots.  A free slot holds no memory: every path that frees
 * memory does MADV_DONTNEED at once, so what the cgroup sees is what we hold
 * (unless the OS refused: see locked memory below).
 *
 * A huge frame is populated with MADV_POPULATE_WRITE when it is allocated: a
 * write fault on an aligned, empty 2 MiB range of a MADV_HUGEPAGE mapping gets
 * one transparent huge page.  Freeing it zaps the whole PMD, which frees the
 * huge page immediately (unlike a partial zap, which only queues it for the
 * kernel's deferred split).
 *
 * The size= budget is counted here (fs->held_bytes), as are the fault
 * injection switches.  Page tables count too: a 2 MiB slot mapped by 4 KiB
 * entries (a base block, or a huge frame split in place) costs the kernel a
 * 4 KiB page-table page however few of its pages are present, so a file of
 * one page in each of many 2 MiB ranges would otherwise make us hold twice
 * size=.  Each such slot charges THPFS_PT_BYTES (fs->pt_bytes) from when it
 * is handed out (or split) until _thpfs_block_free, which maps the slot
 * afresh so that its page table really goes.  Data alone may fill size=;
 * data and page tables together may fill size= plus the page tables that
 * size= bytes of dense base blocks need (one per 2 MiB), so a file of exactly
 * size= bytes in base pages still fits.  Everything here runs under fs->frame_lock, except the
 * madvise calls that touch memory, which run outside it.
 *
 * Locked memory (mlock of a range thpfs_map returned, mlockall as a VMM with
 * QEMU's mem-lock=on does): MADV_DONTNEED refuses a VM_LOCKED range with
 * EINVAL, so release() retries with MADV_DONTNEED_LOCKED (Linux 5.18+), which
 * frees the pages and leaves the range locked.  Where both fail, release()
 * zeroes the range instead: MADV_POPULATE_WRITE leaves a page that is still
 * there as it is, so a slot or page handed out again must never hold old
 * bytes.  A counter says only what the kernel did: such pages are counted in
 * release_failed_bytes, never in bytes_released, and they stay charged -
 * to size= (held_bytes) and in Shmem, and shown in unreleased_bytes - until
 * they are really released or reused.  Really released: a whole slot whose
 * release fails is mapped afresh at once (mmap MAP_FIXED frees even locked
 * pages; slot_release), and a block with such pages is mapped afresh when it
 * is freed (block_free_flushed).  Reused: the block they are in populates
 * them again (zero, no new charge).  fs->unreleased lists, per block, the
 * pages held that way.  A slot that cannot be mapped afresh either (out of
 * VMAs) keeps its charge and is never reused.  What a thread really gave
 * back and populated is also kept per thread (_thpfs_mem_ledger), so that
 * thpfs_reclaim can return what the kernel freed rather than what it asked.
 * Under mlockall(MCL_FUTURE) every new mapping would be populated at once; an
 * arena is therefore mapped PROT_NONE (never populated) and, if it came out
 * locked, turned into lock-on-fault (mlock2(MLOCK_ONFAULT)) before it is made
 * writable, so a 1 GiB reservation costs nothing until a frame is used.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24 /* Linux 5.18 */
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

#define THPFS_ARENA_SIZE (1UL << 30)
#define THPFS_PT_BYTES THPFS_PAGE_SIZE /* one page-table page maps 2 MiB */

struct thpfs_arena {
	struct thpfs_arena *next;
	char *base;
	size_t used; /* bytes handed out from the start */
};

/* Blocks holding pages whose release failed (see the top). */
struct thpfs_unreleased {
	struct thpfs_unreleased *next;
	char *slot;
	thpfs_bitmap_t pages;
};

static bool thp_enabled_in_sysfs(void)
{
	char buf[256];
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	bool ok = fgets(buf, sizeof(buf), f) && !strstr(buf, "[never]");
	fclose(f);
	f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "r");
	if (f) {
		unsigned long sz = 0;
		if (fscanf(f, "%lu", &sz) == 1 && sz != THPFS_HUGE_SIZE)
			ok = false; /* our 2 MiB frames would not be THPs */
		fclose(f);
	}
	return ok;
}

int _thpfs_frames_init(struct thpfs *fs)
{
	pthread_mutex_init(&fs->frame_lock, NULL);
	thpfs_list_init(&fs->views);
	pthread_mutex_init(&fs->release_lock, NULL);
	fs->release_iov = calloc(THPFS_RELEASE_BATCH, sizeof(struct iovec));
	pthread_mutex_init(&fs->retire_lock, NULL);
	pthread_mutex_init(&fs->retire_flush_lock, NULL);
	fs->retired = calloc(THPFS_RETIRED_MAX, sizeof(*fs->retired));
	fs->pool = calloc(THPFS_PREALLOC_MAX, sizeof(char *));
	if (!fs->release_iov || !fs->retired || !fs->pool) {
		free(fs->release_iov);
		free(fs->retired);
		free(fs->pool);
		return -ENOMEM;
	}
	/* process_madvise on ourselves batches the TLB flushes of many
	 * MADV_DONTNEEDs; without it we fall back to one madvise per run. */
	fs->pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	fs->stats.thp_available = thp_enabled_in_sysfs();
	fs->stats.size_limit = fs->opt.size;
	return 0;
}

static void arenas_unmap(struct thpfs_arena *a)
{
	while (a) {
		struct thpfs_arena *next = a->next;
		munmap(a->base, THPFS_ARENA_SIZE);
		free(a);
		a = next;
	}
}

void _thpfs_frames_destroy(struct thpfs *fs)
{
	_thpfs_release_flush(fs);
	_thpfs_pool_drain(fs);
	free(fs->release_iov);
	free(fs->retired);
	free(fs->pool);
	if (fs->pidfd >= 0)
		close(fs->pidfd);
	pthread_mutex_destroy(&fs->release_lock);
	pthread_mutex_destroy(&fs->retire_lock);
	pthread_mutex_destroy(&fs->retire_flush_lock);
	arenas_unmap(fs->huge_arenas);
	arenas_unmap(fs->base_arenas);
	free(fs->huge_free);
	free(fs->base_free);
	while (fs->unreleased) {
		struct thpfs_unreleased *u = fs->unreleased;
		fs->unreleased = u->next;
		free(u);
	}
	pthread_mutex_destroy(&fs->frame_lock);
}

/* Whether the mapping holding p is VM_LOCKED: MADV_DONTNEED refuses only
 * locked memory with EINVAL (a PROT_NONE range holds no pages, so nothing is
 * lost by asking). */
static bool range_locked(char *p)
{
	return madvise(p, THPFS_PAGE_SIZE, MADV_DONTNEED) && errno == EINVAL;
}

/*
 * Makes [p, p+len), mapped PROT_NONE, readable and writable without faulting
 * it in.  A range that came out VM_LOCKED (mlockall(MCL_FUTURE)) would be
 * populated whole by mprotect; it is made lock-on-fault first, so each page
 * is locked when it is populated, as the caller of mlockall wants.  Without
 * mlock2 (Linux < 4.4) the range is unlocked instead.  No lock needed.
 */
static int range_make_writable(char *p, size_t len)
{
	if (range_locked(p) && syscall(SYS_mlock2, p, len, MLOCK_ONFAULT) && munlock(p, len))
		return -errno;
	return mprotect(p, len, PROT_READ | PROT_WRITE) ? -errno : 0;
}

/* The madvise flags every slot of an arena carries. */
static int range_advise(char *p, size_t len, bool huge)
{
	if (madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		return -errno;
	/* A child of fork() must not share file data copy-on-write: that would
	 * make every page shared, and a shared THP cannot be split. */
	if (madvise(p, len, MADV_DONTFORK))
		return -errno;
	return 0;
}

/* Reserves a new arena; frame_lock held.  It is mapped PROT_NONE first so
 * that mlockall(MCL_FUTURE) does not fault in its 1 GiB (see the top). */
static struct thpfs_arena *arena_new(bool huge)
{
	struct thpfs_arena *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	size_t len = THPFS_ARENA_SIZE + THPFS_HUGE_SIZE;
	char *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		free(a);
		return NULL;
	}
	uintptr_t start = ((uintptr_t)p + THPFS_HUGE_SIZE - 1) & ~(uintptr_t)(THPFS_HUGE_SIZE - 1);
	size_t head = start - (uintptr_t)p, tail = len - head - THPFS_ARENA_SIZE;
	if ((head && munmap(p, head)) || (tail && munmap((char *)start + THPFS_ARENA_SIZE, tail)) ||
	    range_make_writable((char *)start, THPFS_ARENA_SIZE) ||
	    range_advise((char *)start, THPFS_ARENA_SIZE, huge)) {
		munmap(p, len); /* whatever of it is still mapped */
		free(a);
		return NULL;
	}
	a->base = (char *)start;
	return a;
}

/* Takes a free 2 MiB slot of the given kind; frame_lock held. */
static char *slot_get(struct thpfs *fs, bool huge)
{
	char ***stack = huge ? &fs->huge_free : &fs->base_free;
	size_t *n = huge ? &fs->nhuge_free : &fs->nbase_free;
	if (*n)
		return (*stack)[--*n];
	struct thpfs_arena **list = huge ? &fs->huge_arenas : &fs->base_arenas;
	struct thpfs_arena *a = *list;
	if (!a || a->used == THPFS_ARENA_SIZE) {
		a = arena_new(huge);
		if (!a)
			return NULL;
		a->next = *list;
		*list = a;
	}
	char *p = a->base + a->used;
	a->used += THPFS_HUGE_SIZE;
	return p;
}

/* Returns a slot (holding no memory) to its free stack; frame_lock held.
 * Cannot fail: the stacks are grown before a slot is handed out. */
static void slot_put(struct thpfs *fs, char *p, bool huge)
{
	char **stack = huge ? fs->huge_free : fs->base_free;
	size_t *n = huge ? &fs->nhuge_free : &fs->nbase_free;
	stack[(*n)++] = p;
}

/* Makes room in a free stack for one more slot than are handed out, so that
 * slot_put never needs memory; frame_lock held. */
static int slot_reserve(struct thpfs *fs, bool huge)
{
	struct thpfs_arena *a;
	size_t total = 0;
	for (a = huge ? fs->huge_arenas : fs->base_arenas; a; a = a->next)
		total += THPFS_ARENA_SIZE / THPFS_HUGE_SIZE;
	total += THPFS_ARENA_SIZE / THPFS_HUGE_SIZE; /* a new arena may come */
	size_t *cap = huge ? &fs->huge_free_cap : &fs->base_free_cap;
	char ***stack = huge ? &fs->huge_free : &fs->base_free;
	if (*cap >= total)
		return 0;
	char **s = realloc(*stack, total * sizeof(char *));
	if (!s)
		return -ENOMEM;
	*stack = s;
	*cap = total;
	return 0;
}

static bool arenas_overlap(const struct thpfs_arena *a, const char *p, size_t len)
{
	for (; a; a = a->next)
		if (p < a->base + THPFS_ARENA_SIZE && a->base < p + len)
			return true;
	return false;
}

bool _thpfs_arena_overlaps(struct thpfs *fs, const char *p, size_t len)
{
	return arenas_overlap(fs->huge_arenas, p, len) || arenas_overlap(fs->base_arenas, p, len);
}

static bool in_huge_arena(struct thpfs *fs, const char *p)
{
	for (struct thpfs_arena *a = fs->huge_arenas; a; a = a->next)
		if (p >= a->base && p < a->base + THPFS_ARENA_SIZE)
			return true;
	return false;
}

/* Counts one allocation against the fault-injection switch; frame_lock held.
 * Returns true if this allocation must fail. */
static bool fault_hit(struct thpfs *fs)
{
	if (!fs->fault_nth)
		return false;
	fs->fault_count++;
	if (fs->fault_count == fs->fault_nth)
		return true;
	return fs->fault_repeat && fs->fault_count > fs->fault_nth;
}

void thpfs_fault_inject(struct thpfs *fs, uint64_t nth, int repeat)
{
	pthread_mutex_lock(&fs->frame_lock);
	fs->fault_nth = nth;
	fs->fault_count = 0;
	fs->fault_repeat = repeat;
	pthread_mutex_unlock(&fs->frame_lock);
}

/* What data and page tables together may hold: size= plus the page tables
 * of size= bytes of dense base blocks. */
static uint64_t budget_total_limit(const struct thpfs *fs)
{
	uint64_t slots = (fs->opt.size + THPFS_HUGE_SIZE - 1) / THPFS_HUGE_SIZE;
	return fs->opt.size + slots * THPFS_PT_BYTES;
}

/* Whether n more bytes fit in size= (see budget_charge); frame_lock held. */
static bool budget_fits(const struct thpfs *fs, uint64_t n, uint64_t credit)
{
	uint64_t pt = __atomic_load_n(&fs->pt_bytes, __ATOMIC_RELAXED);
	return !fs->opt.size || (fs->held_bytes + n <= fs->opt.size + credit &&
				 fs->held_bytes + pt + n <= budget_total_limit(fs) + credit);
}

static uint64_t pool_drain_locked(struct thpfs *fs);

/* Charges n bytes to size= unless that would pass it; frame_lock held.
 * credit is memory the caller is about to give back (a split or collapse
 * holds both copies for a moment).  The prealloc pool gives way to data:
 * when the charge does not fit, the pool's frames go back first. */
static int budget_charge(struct thpfs *fs, uint64_t n, uint64_t credit)
{
	if (!budget_fits(fs, n, credit)) {
		if (!fs->pool_n)
			return -ENOSPC;
		pool_drain_locked(fs);
		if (!budget_fits(fs, n, credit))
			return -ENOSPC;
	}
	fs->held_bytes += n;
	return 0;
}

/* A slot's page table is charged when the slot starts being mapped by 4 KiB
 * entries and uncharged when _thpfs_block_free has dropped it.  The charge
 * never fails: the pages that follow are charged with the check. */
static void pt_charge(struct thpfs *fs)
{
	__atomic_add_fetch(&fs->pt_bytes, THPFS_PT_BYTES, __ATOMIC_RELAXED);
}

static void pt_uncharge(struct thpfs *fs)
{
	__atomic_sub_fetch(&fs->pt_bytes, THPFS_PT_BYTES, __ATOMIC_RELAXED);
}

int _thpfs_budget_charge(struct thpfs *fs, uint64_t n)
{
	pthread_mutex_lock(&fs->frame_lock);
	int err = budget_charge(fs, n, 0);
	pthread_mutex_unlock(&fs->frame_lock);
	if (!err)
		THPFS_STAT_ADD(fs, shmem_bytes, n);
	return err;
}

void _thpfs_budget_uncharge(struct thpfs *fs, uint64_t n)
{
	pthread_mutex_lock(&fs->frame_lock);
	fs->held_bytes -= n;
	pthread_mutex_unlock(&fs->frame_lock);
	THPFS_STAT_SUB(fs, shmem_bytes, n);
}

/* Faults in [p, p+len) for writing.  Falls back to touching each page on
 * kernels without MADV_POPULATE_WRITE. */
static int populate(char *p, size_t len)
{
	if (madvise(p, len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -ENOMEM;
	for (size_t off = 0; off < len; off += THPFS_PAGE_SIZE)
		*(volatile char *)(p + off) = 0;
	return 0;
}

/*
 * Gives [p, p+len) back to the OS: MADV_DONTNEED, or MADV_DONTNEED_LOCKED
 * when the range is mlocked.  If neither works the range is zeroed in place,
 * so that nothing handed out from it later shows its old bytes, and false is
 * returned: the memory is still the process's.  No lock needed.
 */
static bool release(char *p, size_t len)
{
	if (madvise(p, len, MADV_DONTNEED) == 0)
		return true;
	if (errno == EINVAL && madvise(p, len, MADV_DONTNEED_LOCKED) == 0)
		return true;
	memset(p, 0, len);
	return false;
}

/* Counts one release system call against the release fault switch; returns
 * true if this one must fail.  Lock-free (atomics). */
static bool release_fault_hit(struct thpfs *fs)
{
	uint64_t nth = __atomic_load_n(&fs->release_fault_nth, __ATOMIC_RELAXED);
	if (!nth)
		return false;
	uint64_t n = __atomic_add_fetch(&fs->release_fault_count, 1, __ATOMIC_RELAXED);
	return n == nth ||
	       (__atomic_load_n(&fs->release_fault_repeat, __ATOMIC_RELAXED) && n > nth);
}

void thpfs_fault_inject_release(struct thpfs *fs, uint64_t nth, int repeat)
{
	__atomic_store_n(&fs->release_fault_nth, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fs->release_fault_count, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&fs->release_fault_repeat, repeat, __ATOMIC_RELAXED);
	__atomic_store_n(&fs->release_fault_nth, nth, __ATOMIC_RELAXED);
}

/* Bytes this thread's calls really gave back to the OS and populated, since
 * it started (see _thpfs_mem_ledger). */
static __thread uint64_t ledger_released, ledger_populated;

void _thpfs_mem_ledger(uint64_t *released, uint64_t *populated)
{
	*released = ledger_released;
	*populated = ledger_populated;
}

/* Counts len bytes really given back to the OS. */
static void count_released(struct thpfs *fs, uint64_t len)
{
	THPFS_STAT_ADD(fs, bytes_released, len);
	ledger_released += len;
}

void _thpfs_count_released(struct thpfs *fs, uint64_t len)
{
	count_released(fs, len);
}

static char *slot_of(const char *p)
{
	return (char *)((uintptr_t)p & ~(uintptr_t)(THPFS_HUGE_SIZE - 1));
}

/* The entry of the slot holding p, or where it would go; frame_lock held. */
static struct thpfs_unreleased **unreleased_find(struct thpfs *fs, const char *p)
{
	struct thpfs_unreleased **u = &fs->unreleased;
	while (*u && (*u)->slot != slot_of(p))
		u = &(*u)->next;
	return u;
}

/* Records [p, p + len), whole pages inside one slot, as still held after a
 * failed release: they stay charged to size=.  Returns false when there is
 * no memory for the record; the caller then uncharges them as before (they
 * are zero, and their block reuses them).  frame_lock held. */
static bool unreleased_note(struct thpfs *fs, char *p, size_t len)
{
	struct thpfs_unreleased **u = unreleased_find(fs, p);
	if (!*u) {
		*u = calloc(1, sizeof(**u));
		if (!*u)
			return false;
		(*u)->slot = slot_of(p);
	}
	unsigned from = (unsigned)((p - (*u)->slot) >> THPFS_PAGE_SHIFT);
	unsigned to = from + (unsigned)(len >> THPFS_PAGE_SHIFT);
	for (unsigned i = from; i < to; i++) {
		if (thpfs_bit_test((*u)->pages, i))
			continue;
		thpfs_bit_set((*u)->pages, i);
		THPFS_STAT_ADD(fs, unreleased_bytes, THPFS_PAGE_SIZE);
	}
	return true;
}

/* Takes pages [from, to) of the block at mem off the unreleased record
 * (they are being reused, or were released for real); returns how many were
 * on it.  Their charge is the caller's to keep or drop.  frame_lock held. */
static unsigned unreleased_take(struct thpfs *fs, char *mem, unsigned from, unsigned to)
{
	struct thpfs_unreleased **u = unreleased_find(fs, mem);
	if (!*u)
		return 0;
	unsigned n = 0;
	for (unsigned i = from; i < to; i++) {
		if (thpfs_bit_test((*u)->pages, i)) {
			thpfs_bit_clear((*u)->pages, i);
			n++;
		}
	}
	THPFS_STAT_SUB(fs, unreleased_bytes, (uint64_t)n * THPFS_PAGE_SIZE);
	if (thpfs_bitmap_empty((*u)->pages)) {
		struct thpfs_unreleased *dead = *u;
		*u = dead->next;
		free(dead);
	}
	return n;
}

/* How many of pages [from, to) of the block at mem are on the record;
 * frame_lock held. */
static unsigned unreleased_count(struct thpfs *fs, char *mem, unsigned from, unsigned to)
{
	struct thpfs_unreleased *u = *unreleased_find(fs, mem);
	unsigned n = 0;
	for (unsigned i = from; u && i < to; i++)
		n += thpfs_bit_test(u->pages, i);
	return n;
}

/* release(), or under the release fault switch the zeroing a kernel that
 * refuses (mlocked memory) leaves us with.  Counts nothing; no lock. */
static bool release_or_fault(struct thpfs *fs, char *p, size_t len)
{
	if (release_fault_hit(fs)) {
		memset(p, 0, len);
		return false;
	}
	return release(p, len);
}

/*
 * release() for the frame layer's own frees: counts what really went back
 * (bytes_released) and what could only be zeroed (release_failed_bytes), and
 * obeys the release fault switch (an injected failure zeroes the range as a
 * kernel without MADV_DONTNEED_LOCKED would make us).  Returns whether the
 * memory went back.  No lock needed.
 */
static bool release_counted(struct thpfs *fs, char *p, size_t len)
{
	bool gone = release_or_fault(fs, p, len);
	if (gone)
		count_released(fs, len);
	else
		THPFS_STAT_ADD(fs, release_failed_bytes, len);
	return gone;
}

static bool slot_remap(char *mem, bool huge);

/*
 * Gives a whole 2 MiB slot's memory back: MADV_DONTNEED (release_counted);
 * if the OS refuses, the slot is mapped afresh, which frees its pages even
 * when they are locked.  Returns true when the slot holds nothing and may be
 * reused; false when it could not be remapped either: its 2 MiB (zeroed)
 * stay with the process, and the caller records them (unreleased_note),
 * keeps them charged and never reuses the slot.  Takes no lock.
 */
static bool slot_release(struct thpfs *fs, char *p, bool huge)
{
	if (release_counted(fs, p, THPFS_HUGE_SIZE))
		return true;
	if (!slot_remap(p, huge))
		return false;
	count_released(fs, THPFS_HUGE_SIZE);
	return true;
}

bool _thpfs_release(char *p, size_t len)
{
	return release(p, len);
}

bool _thpfs_release_counted(struct thpfs *fs, char *p, size_t len)
{
	return release_counted(fs, p, len);
}

void _thpfs_pt_charge(struct thpfs *fs)
{
	pt_charge(fs);
}

void _thpfs_pt_uncharge(struct thpfs *fs)
{
	pt_uncharge(fs);
}

/* ---- The prealloc pool ----
 * A new huge frame costs the kernel's fault, which zeroes 2 MiB, and then
 * the caller's copy: every byte written twice.  The background thread makes
 * up to opt.prealloc frames ahead (populated and checked huge with
 * PAGEMAP_SCAN), so the write path only copies.  Pool frames are charged to
 * held_bytes (size=) and counted in stats.prealloc_bytes; they are not file
 * data.  They hold memory: at most prealloc * 2 MiB, only while frames are
 * being used (the pool starts empty and a background pass with no take
 * empties it), and they go back first when size= is short, on reclaim and at
 * unmount.  frame_lock guards pool, pool_n and the take counters. */

/* pool_n changes under frame_lock; the background thread reads it without
 * (a hint, see collapse.c), so it is stored atomically. */
static void pool_set_n(struct thpfs *fs, unsigned n)
{
	__atomic_store_n(&fs->pool_n, n, __ATOMIC_RELAXED);
}

/* Pops a pool frame (NULL if empty) and counts the demand; frame_lock held. */
static char *pool_take(struct thpfs *fs)
{
	fs->pool_takes++; /* demand, met or not: the pool is not idle */
	if (!fs->pool_n)
		return NULL;
	pool_set_n(fs, fs->pool_n - 1);
	return fs->pool[fs->pool_n];
}

/* Gives every pool frame back to the OS; frame_lock held (the madvise calls
 * run under it: this is the rare path, under size= pressure, reclaim, idle
 * or unmount).  Returns the bytes that really went back. */
static uint64_t pool_drain_locked(struct thpfs *fs)
{
	uint64_t back = 0;
	while (fs->pool_n) {
		pool_set_n(fs, fs->pool_n - 1);
		char *p = fs->pool[fs->pool_n];
		if (slot_release(fs, p, true) || !unreleased_note(fs, p, THPFS_HUGE_SIZE)) {
			back += THPFS_HUGE_SIZE;
			fs->held_bytes -= THPFS_HUGE_SIZE;
			slot_put(fs, p, true);
		}
		THPFS_STAT_SUB(fs, prealloc_bytes, THPFS_HUGE_SIZE);
	}
	return back;
}

uint64_t _thpfs_pool_drain(struct thpfs *fs)
{
	pthread_mutex_lock(&fs->frame_lock);
	uint64_t back = pool_drain_locked(fs);
	pthread_mutex_unlock(&fs->frame_lock);
	return back;
}

void _thpfs_pool_trim_idle(struct thpfs *fs)
{
	pthread_mutex_lock(&fs->frame_lock);
	if (fs->pool_takes == fs->pool_takes_seen)
		pool_drain_locked(fs);
	fs->pool_takes_seen = fs->pool_takes;
	pthread_mutex_unlock(&fs->frame_lock);
}

static bool frame_is_huge(struct thpfs *fs, char *p);
static uint64_t now_ns(void);

/* One more pool frame: false when the pool is full, size= has no room for
 * it and one more frame besides (the pool never takes the last 2 MiB from
 * data), the kernel gave 4 KiB pages a moment ago, or memory ran out.
 * Takes frame_lock; populates outside it. */
static bool pool_grow_one(struct thpfs *fs)
{
	if (now_ns() < __atomic_load_n(&fs->thp_backoff_until, __ATOMIC_RELAXED))
		return false;
	pthread_mutex_lock(&fs->frame_lock);
	char *p = NULL;
	if (fs->pool_n < fs->opt.prealloc && budget_fits(fs, 2 * THPFS_HUGE_SIZE, 0) &&
	    !slot_reserve(fs, true) && (p = slot_get(fs, true)))
		fs->held_bytes += THPFS_HUGE_SIZE;
	pthread_mutex_unlock(&fs->frame_lock);
	if (!p)
		return false;
	/* frame_is_huge starts the backoff when the kernel gave 4 KiB pages */
	bool ok = populate(p, THPFS_HUGE_SIZE) == 0 && frame_is_huge(fs, p);
	if (ok)
		ledger_populated += THPFS_HUGE_SIZE;
	bool empty = !ok && slot_release(fs, p, true);
	pthread_mutex_lock(&fs->frame_lock);
	if (ok && fs->pool_n < fs->opt.prealloc) {
		fs->pool[fs->pool_n] = p;
		pool_set_n(fs, fs->pool_n + 1);
		THPFS_STAT_ADD(fs, prealloc_bytes, THPFS_HUGE_SIZE);
	} else {
		if (ok) /* the pool filled meanwhile (prealloc is per mount) */
			empty = slot_release(fs, p, true);
		if (empty || !unreleased_note(fs, p, THPFS_HUGE_SIZE)) {
			fs->held_bytes -= THPFS_HUGE_SIZE;
			slot_put(fs, p, true);
		}
		ok = false;
	}
	pthread_mutex_unlock(&fs->frame_lock);
	return ok;
}

void _thpfs_pool_refill(struct thpfs *fs)
{
	while (pool_grow_one(fs))
		;
}

/* A populated 2 MiB frame of a huge arena, charged and counted as a huge
 * page, whatever the kernel made of it; NULL with *err set on failure.  A
 * pool frame is taken first when there is one (*pooled tells). */
static char *huge_frame_take(struct thpfs *fs, uint64_t credit, bool *pooled, int *err)
{
	*pooled = false;
	pthread_mutex_lock(&fs->frame_lock);
	char *p = NULL;
	*err = fault_hit(fs) ? -ENOMEM : 0;
	if (!*err && fs->opt.prealloc) {
		p = pool_take(fs);
		pthread_mutex_unlock(&fs->frame_lock);
		if (p) {
			_thpfs_pool_kick(fs); /* refill off this path */
			THPFS_STAT_SUB(fs, prealloc_bytes, THPFS_HUGE_SIZE);
			THPFS_STAT_ADD(fs, prealloc_used, 1);
			*pooled = true;
			THPFS_STAT_ADD(fs, huge_frames, 1);
			THPFS_STAT_ADD(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
			THPFS_STAT_ADD(fs, shmem_bytes, THPFS_HUGE_SIZE);
			return p; /* charged when it was made */
		}
		pthread_mutex_lock(&fs->frame_lock);
	}
	if (!*err)
		*err = slot_reserve(fs, true);
	if (!*err)
		*err = budget_charge(fs, THPFS_HUGE_SIZE, credit);
	if (!*err) {
		p = slot_get(fs, true);
		if (!p) {
			fs->held_bytes -= THPFS_HUGE_SIZE;
			*err = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&fs->frame_lock);
	if (!p)
		return NULL;
	*err = populate(p, THPFS_HUGE_SIZE);
	if (*err) {
		bool empty = slot_release(fs, p, true);
		pthread_mutex_lock(&fs->frame_lock);
		if (empty || !unreleased_note(fs, p, THPFS_HUGE_SIZE)) {
			fs->held_bytes -= THPFS_HUGE_SIZE;
			slot_put(fs, p, true);
		}
		pthread_mutex_unlock(&fs->frame_lock);
		return NULL;
	}
	ledger_populated += THPFS_HUGE_SIZE;
	THPFS_STAT_ADD(fs, huge_frames, 1);
	THPFS_STAT_ADD(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
	THPFS_STAT_ADD(fs, shmem_bytes, THPFS_HUGE_SIZE);
	if (fs->opt.prealloc)
		_thpfs_pool_kick(fs); /* a miss: start filling, after our charge */
	return p;
}

static void account_huge_as_base(struct thpfs *fs);

/* How long collapse leaves huge pages alone after the kernel gave one as
 * 4 KiB pages (khugepaged's alloc_sleep_millisecs, 60 s, is the model; a
 * shorter pause suits a file system that collapses eagerly). */
#define THP_BACKOFF_NS (10ULL * 1000000000ULL)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Whether the kernel maps the frame at p with a huge PMD.  Without
 * PAGEMAP_SCAN it cannot be asked and the frame is taken as huge.  When it is
 * not, collapse stops asking for huge pages for a while. */
static bool frame_is_huge(struct thpfs *fs, char *p)
{
	int64_t huge = _thpfs_kernel_pmd_bytes(fs, p, THPFS_HUGE_SIZE);
	if (huge < 0 || huge == (int64_t)THPFS_HUGE_SIZE)
		return true;
	__atomic_store_n(&fs->thp_backoff_until, now_ns() + THP_BACKOFF_NS, __ATOMIC_RELAXED);
	return false;
}

char *_thpfs_huge_alloc_credit(struct thpfs *fs, uint64_t credit, int *err)
{
	if (now_ns() < __atomic_load_n(&fs->thp_backoff_until, __ATOMIC_RELAXED)) {
		*err = -ENOMEM; /* the kernel gave 4 KiB pages a moment ago */
		return NULL;
	}
	bool pooled;
	char *p = huge_frame_take(fs, credit, &pooled, err);
	if (p && !frame_is_huge(fs, p)) {
		_thpfs_huge_free(fs, p);
		*err = -ENOMEM;
		return NULL;
	}
	return p;
}

char *_thpfs_huge_alloc(struct thpfs *fs, int *err)
{
	return _thpfs_huge_alloc_credit(fs, 0, err);
}

char *_thpfs_huge_alloc_or_base(struct thpfs *fs, bool *huge, bool *hot, int *err)
{
	bool pooled;
	char *p = huge_frame_take(fs, 0, &pooled, err);
	*hot = !pooled; /* zeroed by this thread just now */
	*huge = p && frame_is_huge(fs, p);
	if (p && !*huge) {
		/* Without MADV_NOHUGEPAGE khugepaged could make these pages a
		 * THP behind our back, and releasing one page would then free
		 * nothing: give the frame up instead. */
		if (madvise(p, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE)) {
			_thpfs_huge_free(fs, p);
			*err = -ENOMEM;
			return NULL;
		}
		account_huge_as_base(fs);
	}
	return p;
}

/* The slot is empty when it goes back on the free stack (slot_release); one
 * that could not be emptied stays charged (and in Shmem) and is not reused. */
void _thpfs_huge_free(struct thpfs *fs, char *mem)
{
	bool empty = slot_release(fs, mem, true);
	pthread_mutex_lock(&fs->frame_lock);
	if (!empty)
		empty = !unreleased_note(fs, mem, THPFS_HUGE_SIZE);
	if (empty) {
		fs->held_bytes -= THPFS_HUGE_SIZE;
		slot_put(fs, mem, true);
	}
	pthread_mutex_unlock(&fs->frame_lock);
	THPFS_STAT_SUB(fs, huge_frames, 1);
	THPFS_STAT_SUB(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
	if (empty)
		THPFS_STAT_SUB(fs, shmem_bytes, THPFS_HUGE_SIZE);
}

char *_thpfs_block_alloc(struct thpfs *fs, int *err)
{
	pthread_mutex_lock(&fs->frame_lock);
	char *p = NULL;
	*err = slot_reserve(fs, false);
	if (!*err) {
		p = slot_get(fs, false);
		if (!p)
			*err = -ENOMEM;
	}
	pthread_mutex_unlock(&fs->frame_lock);
	if (p)
		pt_charge(fs);
	return p;
}

/*
 * Maps a free slot afresh, which frees the page table its 4 KiB pages left
 * behind (MADV_DONTNEED of a few pages keeps it), and gives it its arena's
 * advice back (the VMAs merge again).  PROT_NONE first, so that
 * mlockall(MCL_FUTURE) does not populate it (see range_make_writable).
 * Returns false if the slot may still hold a page table, be unmapped or lack
 * its advice: it must not be reused then.
 */
static bool slot_remap(char *mem, bool huge)
{
	void *p = mmap(mem, THPFS_HUGE_SIZE, PROT_NONE,
		       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return false;
	return range_make_writable(mem, THPFS_HUGE_SIZE) == 0 &&
	       range_advise(mem, THPFS_HUGE_SIZE, huge) == 0;
}

static uint64_t batch_flush(struct thpfs *fs);

/* _thpfs_block_free once none of the block's pages is queued any more. */
static void block_free_flushed(struct thpfs *fs, char *mem)
{
	pthread_mutex_lock(&fs->frame_lock);
	bool huge = in_huge_arena(fs, mem);
	pthread_mutex_unlock(&fs->frame_lock);
	/* The slot's 2 MiB are mapped by a page table of 4 KiB entries; free
	 * it.  (A block made from a huge frame in place goes back to the huge
	 * arena, where a later fault would otherwise fill that table with
	 * 4 KiB pages instead of installing a huge page.)  A slot that could
	 * not be remapped (out of VMAs) holds no pages but is never reused,
	 * and its page table stays charged. */
	if (!slot_remap(mem, huge))
		return;
	pt_uncharge(fs);
	pthread_mutex_lock(&fs->frame_lock);
	/* pages whose release failed went with the old mapping */
	uint64_t held = (uint64_t)unreleased_take(fs, mem, 0, THPFS_PAGES_PER_HUGE) *
			THPFS_PAGE_SIZE;
	fs->held_bytes -= held;
	slot_put(fs, mem, huge);
	pthread_mutex_unlock(&fs->frame_lock);
	if (held) {
		count_released(fs, held);
		THPFS_STAT_SUB(fs, shmem_bytes, held);
	}
}

void _thpfs_block_free(struct thpfs *fs, char *mem)
{
	if (__atomic_load_n(&fs->release_pages, __ATOMIC_ACQUIRE))
		batch_flush(fs); /* its pages must be gone before reuse */
	block_free_flushed(fs, mem);
}

/* Whether the release batch holds a page of the block at mem.  Pages of a
 * block are queued under its inode's lock, which the caller holds (or the
 * block is a retired one, which nobody queues pages of any more), so the
 * answer stays true until the caller acts on it.  Takes release_lock. */
static bool release_queued_in(struct thpfs *fs, const char *mem)
{
	bool hit = false;
	pthread_mutex_lock(&fs->release_lock);
	for (unsigned i = 0; i < fs->release_n && !hit; i++) {
		const char *p = fs->release_iov[i].iov_base;
		hit = p >= mem && p < mem + THPFS_HUGE_SIZE;
	}
	pthread_mutex_unlock(&fs->release_lock);
	return hit;
}

int _thpfs_pages_populate_credit(struct thpfs *fs, char *mem, unsigned from, unsigned to,
				 uint64_t credit)
{
	uint64_t n = (uint64_t)(to - from) * THPFS_PAGE_SIZE;
	if (!n)
		return 0;
	/* A queued page of this block must be gone before it comes back, or
	 * it would come back with its old bytes.  Pages of other blocks (a
	 * collapse's retired block) may stay queued. */
	if (__atomic_load_n(&fs->release_pages, __ATOMIC_ACQUIRE) && release_queued_in(fs, mem))
		batch_flush(fs);
	/* Pages of this block whose release failed are still held and
	 * charged (zero): reusing them costs nothing new. */
	pthread_mutex_lock(&fs->frame_lock);
	uint64_t had = (uint64_t)unreleased_count(fs, mem, from, to) * THPFS_PAGE_SIZE;
	int err = fault_hit(fs) ? -ENOMEM : budget_charge(fs, n - had, credit);
	if (!err && had)
		unreleased_take(fs, mem, from, to);
	pthread_mutex_unlock(&fs->frame_lock);
	if (err)
		return err;
	char *p = mem + (size_t)from * THPFS_PAGE_SIZE;
	err = populate(p, n);
	if (err) {
		bool gone = release_counted(fs, p, n);
		pthread_mutex_lock(&fs->frame_lock);
		if (gone || !unreleased_note(fs, p, n))
			fs->held_bytes -= n;
		pthread_mutex_unlock(&fs->frame_lock);
		if (gone)
			THPFS_STAT_SUB(fs, shmem_bytes, had);
		else
			THPFS_STAT_ADD(fs, shmem_bytes, n - had);
		return err;
	}
	ledger_populated += n - had;
	THPFS_STAT_ADD(fs, base_pages, to - from);
	THPFS_STAT_ADD(fs, shmem_bytes, n - had);
	return 0;
}

int _thpfs_pages_populate(struct thpfs *fs, char *mem, unsigned from, unsigned to)
{
	return _thpfs_pages_populate_credit(fs, mem, from, to, 0);
}

/* process_madvise(MADV_DONTNEED) of the first n queued runs; release_lock
 * held.  Returns the bytes advised (it stops at the first run that fails,
 * e.g. an mlocked one) or -1.  An injected fault advises only the first half
 * of the runs, as a partial return would. */
static ssize_t release_batch_syscall(struct thpfs *fs, unsigned n)
{
	if (fs->pidfd < 0)
		return -1;
	if (release_fault_hit(fs)) {
		n /= 2;
		if (!n) {
			errno = EINVAL;
			return -1;
		}
	}
	return syscall(SYS_process_madvise, fs->pidfd, fs->release_iov, (size_t)n, MADV_DONTNEED, 0);
}

/*
 * Releases the queued batch; release_lock held.  The madvise runs under the
 * lock so that nobody sees the queue empty while its pages are still live.
 * One process_madvise call does as much as it can; whatever it did not
 * advise (a partial return counts bytes from the first run) is released run
 * by run with release_counted, which zeroes what cannot be released.  Pages
 * that went back are uncharged; pages that could not stay charged (and in
 * Shmem) on the unreleased record until their block reuses or frees them.
 * Returns the bytes that really went back to the OS.
 */
static uint64_t release_flush_locked(struct thpfs *fs)
{
	if (!fs->release_n)
		return 0;
	ssize_t r = !fs->release_n ? 0 : release_batch_syscall(fs, fs->release_n);
	uint64_t done = r > 0 ? (uint64_t)r : 0, back = done, kept = 0;
	count_released(fs, done);
	for (unsigned i = 0; i < fs->release_n; i++) {
		char *base = fs->release_iov[i].iov_base;
		size_t len = fs->release_iov[i].iov_len;
		if (done >= len) {
			done -= len;
			continue;
		}
		if (release_counted(fs, base + done, len - done)) {
			back += len - done;
		} else {
			pthread_mutex_lock(&fs->frame_lock);
			if (unreleased_note(fs, base + done, len - done))
				kept += len - done;
			pthread_mutex_unlock(&fs->frame_lock);
		}
		done = 0;
	}
	pthread_mutex_lock(&fs->frame_lock);
	fs->held_bytes -= fs->release_pages * THPFS_PAGE_SIZE - kept;
	pthread_mutex_unlock(&fs->frame_lock);
	THPFS_STAT_ADD(fs, shmem_bytes, kept); /* taken out when queued */
	fs->release_n = 0;
	__atomic_store_n(&fs->release_pages, 0, __ATOMIC_RELEASE);
	return back;
}

/*
 * Gives a retired block back: a flush of the release batch if it still
 * holds a page of the block, MADV_DONTNEED of its slot (holes cost
 * nothing), then the slot, mapped afresh, to the free stack
 * (block_free_flushed).  Where MADV_DONTNEED is refused (locked memory) the
 * remap frees the pages; a slot that cannot be remapped either keeps them
 * (zeroed) on the unreleased record, charged, and is never reused.  The
 * block is nobody's: no lock needed but the frame_lock taken here.
 * Returns the bytes that went back.
 */
static uint64_t retired_free(struct thpfs *fs, const struct thpfs_retired *r)
{
	uint64_t n = (uint64_t)r->pages * THPFS_PAGE_SIZE;
	/* Pages the block's file punched before the collapse may still be
	 * queued: they go first, so that each page of the slot is either
	 * released or on the unreleased record (charged once) before the
	 * whole slot is; and the slot must not be handed out again before
	 * they are released, or the batch would drop a page of its next
	 * owner.  (No page of a retired block is queued any more after
	 * this.) */
	if (__atomic_load_n(&fs->release_pages, __ATOMIC_ACQUIRE) && release_queued_in(fs, r->mem))
		batch_flush(fs);
	bool gone = release_or_fault(fs, r->mem, THPFS_HUGE_SIZE);
	if (!gone) {
		/* the remap in block_free_flushed frees them; record them
		 * (zero, charged) until it does (the whole slot: release()
		 * zeroed its holes too) */
		THPFS_STAT_ADD(fs, release_failed_bytes, n);
		pthread_mutex_lock(&fs->frame_lock);
		/* holes already on the record (a failed release of the batch)
		 * are held and in Shmem already */
		uint64_t had = (uint64_t)unreleased_count(fs, r->mem, 0, THPFS_PAGES_PER_HUGE) *
			       THPFS_PAGE_SIZE;
		gone = !unreleased_note(fs, r->mem, THPFS_HUGE_SIZE);
		if (!gone)
			fs->held_bytes += THPFS_HUGE_SIZE - n - had; /* the holes, zeroed */
		pthread_mutex_unlock(&fs->frame_lock);
		if (!gone)
			THPFS_STAT_ADD(fs, shmem_bytes, THPFS_HUGE_SIZE - had);
	}
	if (gone) {
		count_released(fs, n);
		pthread_mutex_lock(&fs->frame_lock);
		fs->held_bytes -= n;
		pthread_mutex_unlock(&fs->frame_lock);
	}
	block_free_flushed(fs, r->mem); /* frees (and counts) what is noted */
	return gone ? n : 0;
}

/*
 * Frees up to max retired blocks, oldest first, one at a time; with
 * only_if_full, only while the list is full.  Each block is taken and freed
 * under retire_flush_lock, so that when a flush finds the list empty, every
 * block taken before is back with the OS; retire_lock is held only to take
 * the entry, so a collapse can retire its block meanwhile.  Returns the
 * bytes that went back.
 */
static uint64_t retired_flush(struct thpfs *fs, unsigned max, bool only_if_full)
{
	uint64_t back = 0;
	for (unsigned k = 0; k < max; k++) {
		struct thpfs_retired r;
		pthread_mutex_lock(&fs->retire_flush_lock);
		pthread_mutex_lock(&fs->retire_lock);
		bool take = fs->nretired && (!only_if_full || fs->nretired == THPFS_RETIRED_MAX);
		if (take) {
			r = fs->retired[0];
			fs->nretired--;
			memmove(fs->retired, fs->retired + 1, fs->nretired * sizeof(r));
		}
		pthread_mutex_unlock(&fs->retire_lock);
		if (take)
			back += retired_free(fs, &r);
		pthread_mutex_unlock(&fs->retire_flush_lock);
		if (!take)
			break;
	}
	return back;
}

/* Releases the queued batch (not the retired blocks); takes release_lock. */
static uint64_t batch_flush(struct thpfs *fs)
{
	pthread_mutex_lock(&fs->release_lock);
	uint64_t back = release_flush_locked(fs);
	pthread_mutex_unlock(&fs->release_lock);
	return back;
}

uint64_t _thpfs_release_flush(struct thpfs *fs)
{
	return retired_flush(fs, THPFS_RETIRED_MAX, false) + batch_flush(fs);
}

void _thpfs_pages_release(struct thpfs *fs, char *mem, unsigned from, unsigned to)
{
	uint64_t n = (uint64_t)(to - from) * THPFS_PAGE_SIZE;
	if (!n)
		return;
	pthread_mutex_lock(&fs->release_lock);
	if (fs->release_n == THPFS_RELEASE_BATCH)
		release_flush_locked(fs);
	bool was_empty = fs->release_n == 0;
	fs->release_iov[fs->release_n].iov_base = mem + (size_t)from * THPFS_PAGE_SIZE;
	fs->release_iov[fs->release_n].iov_len = n;
	fs->release_n++;
	__atomic_store_n(&fs->release_pages, fs->release_pages + (to - from), __ATOMIC_RELEASE);
	if (fs->release_pages >= THPFS_RELEASE_BATCH)
		release_flush_locked(fs);
	bool queued = fs->release_n != 0;
	pthread_mutex_unlock(&fs->release_lock);
	THPFS_STAT_SUB(fs, base_pages, to - from);
	THPFS_STAT_SUB(fs, shmem_bytes, n);
	/* The first page of a batch starts the scan_sleep_ms clock. */
	if (was_empty && queued)
		_thpfs_release_kick(fs);
}

void _thpfs_block_retire(struct thpfs *fs, char *mem, const uint64_t *pages)
{
	unsigned n = thpfs_bitmap_weight(pages);
	pthread_mutex_lock(&fs->retire_lock);
	while (fs->nretired == THPFS_RETIRED_MAX) {
		/* the background thread is behind: free the oldest here */
		pthread_mutex_unlock(&fs->retire_lock);
		retired_flush(fs, 1, true);
		pthread_mutex_lock(&fs->retire_lock);
	}
	fs->retired[fs->nretired++] = (struct thpfs_retired){ mem, n };
	pthread_mutex_unlock(&fs->retire_lock);
	THPFS_STAT_SUB(fs, base_pages, n);
	THPFS_STAT_SUB(fs, shmem_bytes, (uint64_t)n * THPFS_PAGE_SIZE);
	/* On the other CPU, now.  Every time, not only when the list was
	 * empty: a flush the thread has already started takes at most
	 * THPFS_RETIRED_MAX blocks, so a block added behind it would
	 * otherwise wait for the next collapse, reclaim or unmount. */
	_thpfs_flush_kick(fs);
}

/* A huge frame now counts as 512 base pages (its memory is unchanged, but
 * it needs a page table now). */
static void account_huge_as_base(struct thpfs *fs)
{
	pt_charge(fs);
	THPFS_STAT_SUB(fs, huge_frames, 1);
	THPFS_STAT_SUB(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
	THPFS_STAT_ADD(fs, base_pages, THPFS_PAGES_PER_HUGE);
}

int _thpfs_huge_to_block(struct thpfs *fs, char *mem)
{
	/* Without MADV_NOHUGEPAGE khugepaged could collapse the range again
	 * over the pages we are about to release, filling them back in. */
	if (madvise(mem, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE))
		return -errno; /* e.g. ENOMEM: out of VMAs */
	account_huge_as_base(fs);
	return 0;
}

int _thpfs_huge_split_native(struct thpfs *fs, char *mem, const uint64_t *drop)
{
	/* A split we cannot check is not trusted: the caller migrates.  That
	 * is every split without PAGEMAP_SCAN, and, with PAGEMAP_SCAN alone,
	 * one of a THP already mapped by 4 KiB entries (see kernel.c). */
	if (!_thpfs_kernel_split_checkable(fs, mem))
		return -EOPNOTSUPP;
	/* Out of VMAs (vm.max_map_count): let the caller migrate instead. */
	if (madvise(mem, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE))
		return -ENOMEM;
	/* MADV_FREE on part of a PMD-mapped THP makes the kernel split the
	 * huge page at once (the THP must be mapped only here: arenas are
	 * MADV_DONTFORK); the page it marks lazily free is one we drop.  The
	 * kernel skips the split, and still returns 0, when the page has
	 * references besides our mapping (a pipe holding a page through
	 * vmsplice, a GUP pin, I/O in flight) or its lock is busy: ask it. */
	unsigned first = _thpfs_bitmap_find(drop, 0, true);
	int done = -EINVAL;
	if (!madvise(mem + (size_t)first * THPFS_PAGE_SIZE, THPFS_PAGE_SIZE, MADV_FREE))
		done = _thpfs_kernel_split_done(fs, mem, drop);
	if (done <= 0) {
		/* Still one huge page (or unknown): give the range its
		 * MADV_HUGEPAGE back so the VMAs merge again.  If that fails
		 * the range only stays NOHUGEPAGE, which khugepaged respects. */
		(void)madvise(mem, THPFS_HUGE_SIZE, MADV_HUGEPAGE);
		return done == 0 ? -EAGAIN : done;
	}
	account_huge_as_base(fs);
	return 0;
}

/* Bytes of huge arenas the kernel maps with huge PMDs now: one PAGEMAP_SCAN
 * per arena, under frame_lock so the arena list and sizes hold still.
 * -EOPNOTSUPP without PAGEMAP_SCAN. */
int64_t _thpfs_frames_pmd_mapped(struct thpfs *fs)
{
	int64_t sum = 0;
	pthread_mutex_lock(&fs->frame_lock);
	for (struct thpfs_arena *a = fs->huge_arenas; a && sum >= 0; a = a->next) {
		int64_t n = a->used ? _thpfs_kernel_pmd_bytes(fs, a->base, a->used) : 0;
		sum = n < 0 ? n : sum + n;
	}
	pthread_mutex_unlock(&fs->frame_lock);
	if (fs->verify == THPFS_VERIFY_NONE)
		return -EOPNOTSUPP;
	return sum;
}

uint64_t _thpfs_held_bytes(struct thpfs *fs)
{
	pthread_mutex_lock(&fs->frame_lock);
	uint64_t n = fs->held_bytes - (uint64_t)fs->pool_n * THPFS_HUGE_SIZE;
	pthread_mutex_unlock(&fs->frame_lock);
	return n;
}

char *_thpfs_slot_take(struct thpfs *fs, bool huge, int *err)
{
	pthread_mutex_lock(&fs->frame_lock);
	char *p = NULL;
	*err = slot_reserve(fs, huge);
	if (!*err) {
		p = slot_get(fs, huge);
		if (!p)
			*err = -ENOMEM;
	}
	pthread_mutex_unlock(&fs->frame_lock);
	return p;
}

/*
 * The memory of the slot at src was just moved (mremap) to dst in a view.
 * Pages of the slot whose release had failed (zeroed, still charged: see
 * unreleased_note) moved with it: they come off the record and are released
 * at dst now if the kernel lets us; either way they stop being charged here
 * (a page still present at dst is adopted as file data by the view's next
 * sync, and charged there, like any page stored through the view).  Takes
 * frame_lock; the caller holds the chunk's inode->lock.
 */
void _thpfs_slot_unreleased_moved(struct thpfs *fs, char *src, char *dst)
{
	thpfs_bitmap_t pages;
	thpfs_bitmap_zero(pages);
	pthread_mutex_lock(&fs->frame_lock);
	struct thpfs_unreleased *u = *unreleased_find(fs, src);
	if (u)
		memcpy(pages, u->pages, sizeof(pages));
	unsigned n = unreleased_take(fs, src, 0, THPFS_PAGES_PER_HUGE);
	fs->held_bytes -= (uint64_t)n * THPFS_PAGE_SIZE;
	pthread_mutex_unlock(&fs->frame_lock);
	if (!n)
		return;
	THPFS_STAT_SUB(fs, shmem_bytes, (uint64_t)n * THPFS_PAGE_SIZE);
	thpfs_for_each_run(pages, i, end) {
		size_t len = (size_t)(end - i) * THPFS_PAGE_SIZE;
		if (release(dst + (size_t)i * THPFS_PAGE_SIZE, len))
			count_released(fs, len);
	}
}

void _thpfs_slot_refill(struct thpfs *fs, char *mem)
{
	pthread_mutex_lock(&fs->frame_lock);
	bool huge = in_huge_arena(fs, mem);
	pthread_mutex_unlock(&fs->frame_lock);
	/* As any slot mapped afresh: PROT_NONE first, so that
	 * mlockall(MCL_FUTURE) does not populate it, then writable and its
	 * arena's advice.  A slot that did not get all of that (out of VMAs)
	 * is never reused: its 2 MiB of address space stay unused. */
	if (!slot_remap(mem, huge))
		return;
	pthread_mutex_lock(&fs->frame_lock);
	slot_put(fs, mem, huge);
	pthread_mutex_unlock(&fs->frame_lock);
}
