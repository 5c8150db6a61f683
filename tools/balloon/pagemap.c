/*
 * pagemap.c - huge-page coverage as the kernel sees it: the PAGEMAP_SCAN
 * ioctl on /proc/self/pagemap (Linux 6.7+) lists the ranges of an address
 * range that are mapped with huge pages (PAGE_IS_HUGE: a PMD-mapped
 * transparent huge page, shmem or anonymous; the huge zero page is left out).
 * Both backends ask it the same question over the guest's RAM, so coverage
 * never comes from thpfs's own counters.
 *
 * The uapi structures are declared here because the C library's kernel
 * headers on the build machine may predate them.
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct bl_pm_region {
	uint64_t start, end, categories;
};

struct bl_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define BL_PAGEMAP_SCAN _IOWR('f', 16, struct bl_pm_scan_arg)
#define BL_PAGE_IS_PFNZERO (1ULL << 5)
#define BL_PAGE_IS_HUGE (1ULL << 6)
#define BL_PM_VEC 256

int64_t bl_pagemap_huge_bytes(const void *addr, size_t len)
{
	struct bl_pm_region vec[BL_PM_VEC];
	uint64_t start = (uint64_t)(uintptr_t)addr, end = start + len, huge = 0;
	/* opened per call: /proc/self is resolved at open, and a descriptor
	 * kept across fork() would scan the parent */
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int64_t ret;

	if (fd < 0)
		return -errno;
	while (start < end) {
		struct bl_pm_scan_arg a = {
			.size = sizeof(a),
			.start = start,
			.end = end,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = BL_PM_VEC,
			/* huge, and not the huge zero page (a read fault on an
			 * empty 2 MiB range maps it: no memory, no data) */
			.category_mask = BL_PAGE_IS_HUGE | BL_PAGE_IS_PFNZERO,
			.category_inverted = BL_PAGE_IS_PFNZERO,
			.return_mask = BL_PAGE_IS_HUGE,
		};
		int n = ioctl(fd, BL_PAGEMAP_SCAN, &a);

		if (n < 0) {
			ret = errno == EINVAL || errno == ENOTTY ? -ENOSYS : -errno;
			goto out;
		}
		for (int i = 0; i < n; i++)
			huge += vec[i].end - vec[i].start;
		if (a.walk_end <= start) {
			ret = -EIO;
			goto out;
		}
		start = a.walk_end;
	}
	ret = (int64_t)huge;
out:
	close(fd);
	return ret;
}
