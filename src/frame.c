/*
 * frame.c - memory from the OS.
 *
 * Address space is reserved in arenas of THPFS_ARENA_SIZE bytes, 2 MiB
 * aligned, MAP_NORESERVE.  Huge arenas are marked MADV_HUGEPAGE and hand out
 * huge frames; base arenas are marked MADV_NOHUGEPAGE (so khugepaged never
 * refills a punched hole behind our back) and hand out base blocks.  Both are
 * cut into 2 MiB slots.  A free slot holds no memory: every path that frees
 * memory does MADV_DONTNEED at once, so what the cgroup sees is what we hold.
 *
 * A huge frame is populated with MADV_POPULATE_WRITE when it is allocated: a
 * write fault on an aligned, empty 2 MiB range of a MADV_HUGEPAGE mapping gets
 * one transparent huge page.  Freeing it zaps the whole PMD, which frees the
 * huge page immediately (unlike a partial zap, which only queues it for the
 * kernel's deferred split).
 *
 * The size= budget is counted here (fs->held_bytes), as is the fault
 * injection switch.  Everything here runs under fs->frame_lock, except the
 * madvise calls that touch memory, which run outside it.
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

#define THPFS_ARENA_SIZE (1UL << 30)

struct thpfs_arena {
	struct thpfs_arena *next;
	char *base;
	size_t used; /* bytes handed out from the start */
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
	pthread_mutex_init(&fs->release_lock, NULL);
	fs->release_iov = calloc(THPFS_RELEASE_BATCH, sizeof(struct iovec));
	if (!fs->release_iov)
		return -ENOMEM;
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
	free(fs->release_iov);
	if (fs->pidfd >= 0)
		close(fs->pidfd);
	pthread_mutex_destroy(&fs->release_lock);
	arenas_unmap(fs->huge_arenas);
	arenas_unmap(fs->base_arenas);
	free(fs->huge_free);
	free(fs->base_free);
	pthread_mutex_destroy(&fs->frame_lock);
}

/* Reserves a new arena; frame_lock held. */
static struct thpfs_arena *arena_new(bool huge)
{
	struct thpfs_arena *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	size_t len = THPFS_ARENA_SIZE + THPFS_HUGE_SIZE;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		free(a);
		return NULL;
	}
	uintptr_t start = ((uintptr_t)p + THPFS_HUGE_SIZE - 1) & ~(uintptr_t)(THPFS_HUGE_SIZE - 1);
	size_t head = start - (uintptr_t)p, tail = len - head - THPFS_ARENA_SIZE;
	if (head)
		munmap(p, head);
	if (tail)
		munmap((char *)start + THPFS_ARENA_SIZE, tail);
	a->base = (char *)start;
	madvise(a->base, THPFS_ARENA_SIZE, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	/* A child of fork() must not share file data copy-on-write: that would
	 * make every page shared, and a shared THP cannot be split. */
	madvise(a->base, THPFS_ARENA_SIZE, MADV_DONTFORK);
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

/* Charges n bytes to size= unless that would pass it; frame_lock held.
 * credit is memory the caller is about to give back (a split or collapse
 * holds both copies for a moment). */
static int budget_charge(struct thpfs *fs, uint64_t n, uint64_t credit)
{
	if (fs->opt.size && fs->held_bytes + n > fs->opt.size + credit)
		return -ENOSPC;
	fs->held_bytes += n;
	return 0;
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

static void release(char *p, size_t len)
{
	madvise(p, len, MADV_DONTNEED);
}

char *_thpfs_huge_alloc_credit(struct thpfs *fs, uint64_t credit, int *err)
{
	pthread_mutex_lock(&fs->frame_lock);
	char *p = NULL;
	*err = fault_hit(fs) ? -ENOMEM : 0;
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
		release(p, THPFS_HUGE_SIZE);
		pthread_mutex_lock(&fs->frame_lock);
		fs->held_bytes -= THPFS_HUGE_SIZE;
		slot_put(fs, p, true);
		pthread_mutex_unlock(&fs->frame_lock);
		return NULL;
	}
	THPFS_STAT_ADD(fs, huge_frames, 1);
	THPFS_STAT_ADD(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
	THPFS_STAT_ADD(fs, shmem_bytes, THPFS_HUGE_SIZE);
	return p;
}

char *_thpfs_huge_alloc(struct thpfs *fs, int *err)
{
	return _thpfs_huge_alloc_credit(fs, 0, err);
}

void _thpfs_huge_free(struct thpfs *fs, char *mem)
{
	release(mem, THPFS_HUGE_SIZE);
	pthread_mutex_lock(&fs->frame_lock);
	fs->held_bytes -= THPFS_HUGE_SIZE;
	slot_put(fs, mem, true);
	pthread_mutex_unlock(&fs->frame_lock);
	THPFS_STAT_SUB(fs, huge_frames, 1);
	THPFS_STAT_SUB(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
	THPFS_STAT_SUB(fs, shmem_bytes, THPFS_HUGE_SIZE);
	THPFS_STAT_ADD(fs, bytes_released, THPFS_HUGE_SIZE);
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
	return p;
}

void _thpfs_block_free(struct thpfs *fs, char *mem)
{
	if (__atomic_load_n(&fs->release_pages, __ATOMIC_ACQUIRE))
		_thpfs_release_flush(fs); /* its pages must be gone before reuse */
	pthread_mutex_lock(&fs->frame_lock);
	bool huge = in_huge_arena(fs, mem);
	pthread_mutex_unlock(&fs->frame_lock);
	/* A block made from a huge frame in place goes back to the huge
	 * arena.  Its 2 MiB are mapped by a page table of 4 KiB entries now,
	 * and a later fault would fill that table with 4 KiB pages instead of
	 * installing a huge page: map the slot afresh (which frees the page
	 * table) and give it its MADV_HUGEPAGE back (the VMAs merge). */
	if (huge) {
		void *p = mmap(mem, THPFS_HUGE_SIZE, PROT_READ | PROT_WRITE,
			       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			madvise(mem, THPFS_HUGE_SIZE, MADV_DONTNEED);
		madvise(mem, THPFS_HUGE_SIZE, MADV_HUGEPAGE);
		madvise(mem, THPFS_HUGE_SIZE, MADV_DONTFORK);
	}
	pthread_mutex_lock(&fs->frame_lock);
	slot_put(fs, mem, huge);
	pthread_mutex_unlock(&fs->frame_lock);
}

int _thpfs_pages_populate_credit(struct thpfs *fs, char *mem, unsigned from, unsigned to,
				 uint64_t credit)
{
	uint64_t n = (uint64_t)(to - from) * THPFS_PAGE_SIZE;
	if (!n)
		return 0;
	/* A queued page of this block must be gone before it comes back, or
	 * it would come back with its old bytes. */
	if (__atomic_load_n(&fs->release_pages, __ATOMIC_ACQUIRE))
		_thpfs_release_flush(fs);
	pthread_mutex_lock(&fs->frame_lock);
	int err = fault_hit(fs) ? -ENOMEM : budget_charge(fs, n, credit);
	pthread_mutex_unlock(&fs->frame_lock);
	if (err)
		return err;
	err = populate(mem + (size_t)from * THPFS_PAGE_SIZE, n);
	if (err) {
		release(mem + (size_t)from * THPFS_PAGE_SIZE, n);
		pthread_mutex_lock(&fs->frame_lock);
		fs->held_bytes -= n;
		pthread_mutex_unlock(&fs->frame_lock);
		return err;
	}
	THPFS_STAT_ADD(fs, base_pages, to - from);
	THPFS_STAT_ADD(fs, shmem_bytes, n);
	return 0;
}

int _thpfs_pages_populate(struct thpfs *fs, char *mem, unsigned from, unsigned to)
{
	return _thpfs_pages_populate_credit(fs, mem, from, to, 0);
}

/* Releases the queued batch; release_lock held.  The madvise runs under the
 * lock so that nobody sees the queue empty while its pages are still live. */
static void release_flush_locked(struct thpfs *fs)
{
	if (!fs->release_n)
		return;
	ssize_t r = -1;
	if (fs->pidfd >= 0)
		r = syscall(SYS_process_madvise, fs->pidfd, fs->release_iov,
			    (size_t)fs->release_n, MADV_DONTNEED, 0);
	if (r < 0)
		for (unsigned i = 0; i < fs->release_n; i++)
			release(fs->release_iov[i].iov_base, fs->release_iov[i].iov_len);
	pthread_mutex_lock(&fs->frame_lock);
	fs->held_bytes -= fs->release_pages * THPFS_PAGE_SIZE;
	pthread_mutex_unlock(&fs->frame_lock);
	fs->release_n = 0;
	__atomic_store_n(&fs->release_pages, 0, __ATOMIC_RELEASE);
}

void _thpfs_release_flush(struct thpfs *fs)
{
	pthread_mutex_lock(&fs->release_lock);
	release_flush_locked(fs);
	pthread_mutex_unlock(&fs->release_lock);
}

void _thpfs_pages_release(struct thpfs *fs, char *mem, unsigned from, unsigned to)
{
	uint64_t n = (uint64_t)(to - from) * THPFS_PAGE_SIZE;
	if (!n)
		return;
	pthread_mutex_lock(&fs->release_lock);
	if (fs->release_n == THPFS_RELEASE_BATCH)
		release_flush_locked(fs);
	fs->release_iov[fs->release_n].iov_base = mem + (size_t)from * THPFS_PAGE_SIZE;
	fs->release_iov[fs->release_n].iov_len = n;
	fs->release_n++;
	__atomic_store_n(&fs->release_pages, fs->release_pages + (to - from), __ATOMIC_RELEASE);
	if (fs->release_pages >= THPFS_RELEASE_BATCH)
		release_flush_locked(fs);
	pthread_mutex_unlock(&fs->release_lock);
	THPFS_STAT_SUB(fs, base_pages, to - from);
	THPFS_STAT_SUB(fs, shmem_bytes, n);
	THPFS_STAT_ADD(fs, bytes_released, n);
}

/* A huge frame now counts as 512 base pages (its memory is unchanged). */
static void account_huge_as_base(struct thpfs *fs)
{
	THPFS_STAT_SUB(fs, huge_frames, 1);
	THPFS_STAT_SUB(fs, shmem_huge_bytes, THPFS_HUGE_SIZE);
	THPFS_STAT_ADD(fs, base_pages, THPFS_PAGES_PER_HUGE);
}

void _thpfs_huge_to_block(struct thpfs *fs, char *mem)
{
	madvise(mem, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE);
	account_huge_as_base(fs);
}

int _thpfs_huge_split_native(struct thpfs *fs, char *mem, unsigned first)
{
	/* Out of VMAs (vm.max_map_count) or an old kernel: let the caller
	 * migrate instead. */
	if (madvise(mem, THPFS_HUGE_SIZE, MADV_NOHUGEPAGE))
		return -ENOMEM;
	/* MADV_FREE on part of a PMD-mapped THP makes the kernel split the
	 * huge page at once (the THP must be mapped only here: arenas are
	 * MADV_DONTFORK); the page it marks lazily free is one we drop. */
	if (madvise(mem + (size_t)first * THPFS_PAGE_SIZE, THPFS_PAGE_SIZE, MADV_FREE)) {
		madvise(mem, THPFS_HUGE_SIZE, MADV_HUGEPAGE);
		return -EINVAL;
	}
	account_huge_as_base(fs);
	return 0;
}

uint64_t _thpfs_held_bytes(struct thpfs *fs)
{
	pthread_mutex_lock(&fs->frame_lock);
	uint64_t n = fs->held_bytes;
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

void _thpfs_slot_refill(struct thpfs *fs, char *mem)
{
	pthread_mutex_lock(&fs->frame_lock);
	bool huge = in_huge_arena(fs, mem);
	pthread_mutex_unlock(&fs->frame_lock);
	if (mmap(mem, THPFS_HUGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) == MAP_FAILED)
		return; /* out of VMAs: the 2 MiB of address space stay unused */
	madvise(mem, THPFS_HUGE_SIZE, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	madvise(mem, THPFS_HUGE_SIZE, MADV_DONTFORK);
	pthread_mutex_lock(&fs->frame_lock);
	slot_put(fs, mem, huge);
	pthread_mutex_unlock(&fs->frame_lock);
}
