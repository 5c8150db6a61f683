/*
 * kernel.c - asking the kernel what it really did with our memory.
 *
 * thpfs must never claim a huge page the kernel did not give, nor a split
 * (and the memory it frees) that the kernel did not do.  Two sources:
 *
 *  - the PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+, any user):
 *    PAGE_IS_HUGE is reported for a range mapped by a huge PMD (a THP mapped
 *    whole; hugetlb never lives in our arenas).  A range whose THP was split,
 *    or is only mapped by 4 KiB page table entries, is not PAGE_IS_HUGE.
 *  - /proc/self/pagemap page frame numbers and /proc/kpageflags (both need
 *    CAP_SYS_ADMIN): KPF_THP / KPF_COMPOUND_HEAD / KPF_COMPOUND_TAIL tell
 *    whether a page is still part of a large folio.  This catches a THP that
 *    lost its PMD mapping but was not split (a split that failed after the
 *    PMD was split, or a kernel that queues a deferred split instead of
 *    splitting at once), which PAGEMAP_SCAN cannot see.
 *
 * fs->verify records what this process can ask (THPFS_VERIFY_*), and
 * fs->verify_why why it cannot ask more.  Nothing can be verified on Linux
 * older than 6.7 (no PAGEMAP_SCAN), and also on any kernel when the process
 * may not open /proc/self/pagemap at mount: no /proc, or a process that is
 * not dumpable (one that dropped root with setresuid and did not set
 * PR_SET_DUMPABLE again: the open is refused with EACCES).  split=native
 * then migrates instead and huge frames are counted as the kernel was asked
 * for them (see docs/design.md).  The descriptor is opened at mount: a
 * daemon that mounts before dropping root keeps it.
 *
 * PAGEMAP_SCAN alone can tell a split from no split only for a THP that a
 * huge PMD maps before the split is asked for: "no huge PMD" afterwards
 * then means the kernel split the PMD, and with it the page (MADV_FREE
 * splits both or neither).  A THP already mapped by 4 KiB entries (the
 * caller mprotected, mlocked or madvised part of a thpfs_map pointer) shows
 * no huge PMD whether or not it is split: _thpfs_kernel_split_checkable
 * says so first and the caller migrates instead.  kpageflags (root) reads
 * the page itself and can always tell.  Nothing here takes a thpfs lock;
 * the file descriptors are set at mount and closed at unmount.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>

#define THPFS_PAGEMAP_SCAN _IOWR('f', 16, struct thpfs_pm_scan_arg)

long _thpfs_kernel_scan(int fd, struct thpfs_pm_scan_arg *a)
{
	a->size = sizeof(*a);
	long n = ioctl(fd, THPFS_PAGEMAP_SCAN, a);
	return n < 0 ? -errno : n;
}

/* /proc/self/pagemap entries and /proc/kpageflags bits
 * (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT (1ULL << 63)
#define PM_PFN_MASK ((1ULL << 55) - 1)
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_THP 22
#define KPF_LARGE ((1ULL << KPF_COMPOUND_HEAD) | (1ULL << KPF_COMPOUND_TAIL) | (1ULL << KPF_THP))

#define SCAN_VEC 64

/* One PAGEMAP_SCAN call over [start, end) for pages both present and huge;
 * adds the bytes found to *bytes and returns where the walk stopped, or 0
 * with errno set. */
static uint64_t scan_huge(int fd, uint64_t start, uint64_t end, uint64_t *bytes)
{
	struct thpfs_pm_region vec[SCAN_VEC];
	struct thpfs_pm_scan_arg arg = {
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = SCAN_VEC,
		.category_mask = THPFS_PM_IS_PRESENT | THPFS_PM_IS_HUGE,
		.return_mask = THPFS_PM_IS_HUGE,
	};
	long n = _thpfs_kernel_scan(fd, &arg);
	if (n < 0) {
		errno = (int)-n;
		return 0;
	}
	for (long i = 0; i < n; i++)
		*bytes += vec[i].end - vec[i].start;
	/* A full vector may have stopped the walk early: walk_end says where. */
	return arg.walk_end > start ? arg.walk_end : end;
}

int64_t _thpfs_kernel_pmd_bytes(struct thpfs *fs, const char *p, size_t len)
{
	if (fs->verify == THPFS_VERIFY_NONE)
		return -EOPNOTSUPP;
	uint64_t start = (uintptr_t)p, end = start + len, bytes = 0;
	while (start < end) {
		uint64_t next = scan_huge(fs->pagemap_fd, start, end, &bytes);
		if (!next)
			return -errno;
		start = next;
	}
	return (int64_t)bytes;
}

/* Whether a page set in pages of the 2 MiB at p is still part of a large
 * folio: 1 yes, 0 no (or not present), negative errno when it cannot tell.
 * After a split the page frames are those of the huge page, so one read of
 * kpageflags covers them; scattered frames are read one by one. */
static int pages_in_large_folio(struct thpfs *fs, const char *p, const uint64_t *pages)
{
	uint64_t pm[THPFS_PAGES_PER_HUGE], fl[THPFS_PAGES_PER_HUGE];
	off_t at = (off_t)((uintptr_t)p >> THPFS_PAGE_SHIFT) * 8;
	if (pread(fs->pagemap_fd, pm, sizeof(pm), at) != (ssize_t)sizeof(pm))
		return -EIO;
	uint64_t lo = UINT64_MAX, hi = 0;
	thpfs_for_each_run(pages, i, end) {
		for (unsigned k = i; k < end; k++) {
			if (!(pm[k] & PM_PRESENT))
				continue;
			uint64_t pfn = pm[k] & PM_PFN_MASK;
			if (!pfn)
				return -EPERM; /* frame numbers hidden from us */
			lo = thpfs_min(lo, pfn);
			hi = thpfs_max(hi, pfn);
		}
	}
	if (lo > hi)
		return 0;
	bool one_read = hi - lo < THPFS_PAGES_PER_HUGE;
	if (one_read) {
		ssize_t want = (ssize_t)((hi - lo + 1) * 8);
		if (pread(fs->kpageflags_fd, fl, (size_t)want, (off_t)(lo * 8)) != want)
			return -EIO;
	}
	thpfs_for_each_run(pages, i, end) {
		for (unsigned k = i; k < end; k++) {
			if (!(pm[k] & PM_PRESENT))
				continue;
			uint64_t pfn = pm[k] & PM_PFN_MASK, f;
			if (one_read)
				f = fl[pfn - lo];
			else if (pread(fs->kpageflags_fd, &f, 8, (off_t)(pfn * 8)) != 8)
				return -EIO;
			if (f & KPF_LARGE)
				return 1;
		}
	}
	return 0;
}

bool _thpfs_kernel_split_checkable(struct thpfs *fs, const char *p)
{
	if (fs->verify == THPFS_VERIFY_FOLIO)
		return true;
	if (fs->verify == THPFS_VERIFY_NONE)
		return false;
	return _thpfs_kernel_pmd_bytes(fs, p, THPFS_HUGE_SIZE) == (int64_t)THPFS_HUGE_SIZE;
}

int _thpfs_kernel_split_done(struct thpfs *fs, const char *p, const uint64_t *pages)
{
	int64_t huge = _thpfs_kernel_pmd_bytes(fs, p, THPFS_HUGE_SIZE);
	if (huge < 0)
		return (int)huge;
	if (huge)
		return 0; /* still mapped by a huge PMD: not split */
	if (fs->verify < THPFS_VERIFY_FOLIO)
		return 1; /* the caller checked it was PMD-mapped before */
	int large = pages_in_large_folio(fs, p, pages);
	if (large < 0)
		return large; /* cannot tell: not proof of a split */
	return !large;
}

/* Whether this process sees page frame numbers in /proc/self/pagemap (it
 * does with CAP_SYS_ADMIN): looks up a page it has just written. */
static bool pfns_visible(int pagemap_fd)
{
	volatile char here = 1; /* on a stack page, present */
	uint64_t e;
	off_t at = (off_t)((uintptr_t)&here >> THPFS_PAGE_SHIFT) * 8;
	return pread(pagemap_fd, &e, 8, at) == 8 && (e & PM_PRESENT) && (e & PM_PFN_MASK);
}

/* Records in fs->verify_why what stopped verification at the level reached:
 * "what: ERRNAME". */
static void verify_stopped(struct thpfs *fs, const char *what, int err)
{
	const char *name = strerrorname_np(err);
	if (name)
		snprintf(fs->verify_why, sizeof(fs->verify_why), "%s: %s", what, name);
	else
		snprintf(fs->verify_why, sizeof(fs->verify_why), "%s: errno %d", what, err);
}

void _thpfs_kernel_init(struct thpfs *fs)
{
	fs->verify = THPFS_VERIFY_NONE;
	fs->verify_why[0] = 0;
	fs->kpageflags_fd = -1;
	fs->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fs->pagemap_fd < 0) {
		/* EACCES: not dumpable (after setresuid); ENOENT: no /proc */
		verify_stopped(fs, "pagemap", errno);
		return;
	}
	/* Probe PAGEMAP_SCAN on one page of our own stack. */
	char here;
	uint64_t bytes = 0, page = (uintptr_t)&here & ~(uint64_t)(THPFS_PAGE_SIZE - 1);
	if (!scan_huge(fs->pagemap_fd, page, page + THPFS_PAGE_SIZE, &bytes)) {
		verify_stopped(fs, "PAGEMAP_SCAN", errno); /* ENOTTY: Linux < 6.7 */
		return;
	}
	fs->verify = THPFS_VERIFY_PMD;
	if (!pfns_visible(fs->pagemap_fd)) {
		verify_stopped(fs, "pagemap frame numbers", EPERM); /* no CAP_SYS_ADMIN */
		return;
	}
	fs->kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	if (fs->kpageflags_fd >= 0)
		fs->verify = THPFS_VERIFY_FOLIO;
	else
		verify_stopped(fs, "kpageflags", errno);
}

void _thpfs_kernel_destroy(struct thpfs *fs)
{
	if (fs->kpageflags_fd >= 0)
		close(fs->kpageflags_fd);
	if (fs->pagemap_fd >= 0)
		close(fs->pagemap_fd);
	fs->kpageflags_fd = fs->pagemap_fd = -1;
}
