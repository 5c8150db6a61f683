/*
 * pagemap.c - huge-page coverage as the kernel sees it (see pagemap.h).
 *
 * The uapi structures are declared here because the C library's kernel
 * headers on the build machine may predate them.
 */
#define _GNU_SOURCE
#include "pagemap.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct pm_region {
	uint64_t start, end, categories;
};

struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define PM_PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PM_PAGE_IS_PFNZERO (1ULL << 5)
#define PM_PAGE_IS_HUGE (1ULL << 6)
#define PM_VEC 256

int64_t thpfs_pagemap_huge_bytes(const void *addr, size_t len)
{
	struct pm_region vec[PM_VEC];
	uint64_t start = (uint64_t)(uintptr_t)addr, end = start + len, huge = 0;
	/* opened per call: /proc/self is resolved at open, and a descriptor
	 * kept across fork() would scan the parent */
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int64_t ret;

	if (fd < 0)
		return -errno;
	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.start = start,
			.end = end,
			.vec = (uint64_t)(uintptr_t)vec,
			.vec_len = PM_VEC,
			/* huge, and not the huge zero page (a read fault on an
			 * empty 2 MiB range maps it: no memory, no data) */
			.category_mask = PM_PAGE_IS_HUGE | PM_PAGE_IS_PFNZERO,
			.category_inverted = PM_PAGE_IS_PFNZERO,
			.return_mask = PM_PAGE_IS_HUGE,
		};
		int n = ioctl(fd, PM_PAGEMAP_SCAN, &a);

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
