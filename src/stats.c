/*
 * stats.c - counters, as a struct and as /proc/meminfo-style text.
 */
#include "internal.h"

#include <stdio.h>

/*
 * Bytes of memory that pins hold now: a pinned chunk cannot be split, freed
 * or collapsed, so all it holds is pinned - 2 MiB for a huge page, its
 * present 4 KiB pages for a base chunk.  Walks the pinned lists under
 * ns_lock (read: the inodes stay) and each inode's lock (read).
 */
static uint64_t pinned_bytes(struct thpfs *fs)
{
	uint64_t n = 0;
	pthread_rwlock_rdlock(&fs->ns_lock);
	for (struct thpfs_list *l = fs->inodes.next; l != &fs->inodes; l = l->next) {
		struct thpfs_inode *inode = thpfs_container_of(l, struct thpfs_inode, all);
		if (!S_ISREG(inode->mode))
			continue;
		pthread_rwlock_rdlock(&inode->lock);
		for (struct thpfs_list *p = inode->pinned.next; p != &inode->pinned; p = p->next) {
			struct thpfs_chunk *c = thpfs_container_of(p, struct thpfs_chunk, pinlink);
			n += c->huge ? THPFS_HUGE_SIZE : (uint64_t)c->nr_present * THPFS_PAGE_SIZE;
		}
		pthread_rwlock_unlock(&inode->lock);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return n;
}

/*
 * Bytes of thpfs_mmap views the kernel maps with huge PMDs now: the chunks
 * moved into a view are in no arena, so _thpfs_frames_pmd_mapped does not
 * see them.  One PAGEMAP_SCAN per view, under ns_lock (read: the inodes
 * stay) and the inode's lock (read: a view is made and removed with it held
 * for writing).  -EOPNOTSUPP without PAGEMAP_SCAN.
 */
static int64_t mapped_pmd_bytes(struct thpfs *fs)
{
	int64_t sum = 0;
	if (!__atomic_load_n(&fs->nr_mappings, __ATOMIC_ACQUIRE))
		return 0;
	pthread_rwlock_rdlock(&fs->ns_lock);
	for (struct thpfs_list *l = fs->inodes.next; l != &fs->inodes && sum >= 0; l = l->next) {
		struct thpfs_inode *inode = thpfs_container_of(l, struct thpfs_inode, all);
		if (!S_ISREG(inode->mode) || !__atomic_load_n(&inode->map, __ATOMIC_ACQUIRE))
			continue;
		pthread_rwlock_rdlock(&inode->lock);
		const struct thpfs_mapping *m = inode->map;
		int64_t n = m ? _thpfs_kernel_pmd_bytes(fs, m->addr, m->len) : 0;
		sum = n < 0 ? n : sum + n;
		pthread_rwlock_unlock(&inode->lock);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return sum;
}

/* Takes ns_lock and inode locks (for pinned_bytes): not to be called with
 * any of the library's locks held. */
int thpfs_get_stats(struct thpfs *fs, struct thpfs_stats *st)
{
	if (!fs || !st)
		return -EINVAL;
	_thpfs_mmap_sync_all(fs); /* pages touched through mappings count */
	/* Field by field: each is exact, the set is a near-instant snapshot. */
	uint64_t *dst = (uint64_t *)st;
	const uint64_t *src = (const uint64_t *)&fs->stats;
	for (size_t i = 0; i < sizeof(*st) / sizeof(uint64_t); i++)
		dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	/* The kernel's view, asked now. */
	int64_t pmd = _thpfs_frames_pmd_mapped(fs), view = mapped_pmd_bytes(fs);
	st->shmem_pmd_mapped = pmd >= 0 && view >= 0 ? (uint64_t)(pmd + view) : 0;
	st->split_verify = (uint64_t)fs->verify;
	st->pinned_bytes = st->pinned_pages ? pinned_bytes(fs) : 0;
	return 0;
}

static const char *verify_name(uint64_t v)
{
	return v == THPFS_VERIFY_FOLIO ? "kpageflags" : v == THPFS_VERIFY_PMD ? "pagemap_scan" : "none";
}

int thpfs_meminfo(struct thpfs *fs, char *buf, size_t len)
{
	struct thpfs_stats s;
	int err = thpfs_get_stats(fs, &s);
	if (err)
		return err;
	if (!buf)
		len = 0;
	return snprintf(buf, len,
			"Shmem:          %12llu kB\n"
			"ShmemHugePages: %12llu kB\n"
			"ShmemPmdMapped: %12llu kB\n"
			"ShmemBasePages: %12llu kB\n"
			"ShmemPinned:    %12llu kB\n"
			"SizeLimit:      %12llu kB\n"
			"Prealloc:       %12llu kB\n"
			"HugePagesAvailable: %s\n"
			"SplitVerify: %s%s%s%s\n"
			"huge_frames %llu\n"
			"base_pages %llu\n"
			"pinned_pages %llu\n"
			"deferred_split_queue %llu\n"
			"inodes %llu\n"
			"thp_file_alloc %llu\n"
			"thp_file_fallback %llu\n"
			"thp_split_page %llu\n"
			"thp_split_page_failed %llu\n"
			"thp_split_migrate %llu\n"
			"thp_split_inplace %llu\n"
			"thp_deferred_split_page %llu\n"
			"thp_deferred_split_done %llu\n"
			"thp_collapse_alloc %llu\n"
			"thp_collapse_alloc_failed %llu\n"
			"base_pages_collapsed %llu\n"
			"collapse_skipped_pinned %llu\n"
			"collapse_skipped_holes %llu\n"
			"collapse_full_scans %llu\n"
			"bytes_released %llu\n"
			"release_failed_bytes %llu\n"
			"punch_zeroed_bytes %llu\n"
			"reclaim_bytes %llu\n"
			"Unreleased:     %12llu kB\n"
			"MappedBytes:    %12llu kB\n"
			"mmap_faulted_pages %llu\n"
			"mmap_vanished_pages %llu\n"
			"prealloc_used %llu\n",
			(unsigned long long)s.shmem_bytes >> 10,
			(unsigned long long)s.shmem_huge_bytes >> 10,
			(unsigned long long)s.shmem_pmd_mapped >> 10,
			(unsigned long long)s.base_pages * 4,
			(unsigned long long)s.pinned_bytes >> 10,
			(unsigned long long)s.size_limit >> 10,
			(unsigned long long)s.prealloc_bytes >> 10,
			s.thp_available ? "yes" : "no", verify_name(s.split_verify),
			fs->verify_why[0] ? " (" : "", fs->verify_why, fs->verify_why[0] ? ")" : "",
			(unsigned long long)s.huge_frames, (unsigned long long)s.base_pages,
			(unsigned long long)s.pinned_pages,
			(unsigned long long)s.deferred_split_queue, (unsigned long long)s.inodes,
			(unsigned long long)s.thp_file_alloc, (unsigned long long)s.thp_file_fallback,
			(unsigned long long)s.thp_split_page,
			(unsigned long long)s.thp_split_page_failed,
			(unsigned long long)s.thp_split_migrate,
			(unsigned long long)s.thp_split_inplace,
			(unsigned long long)s.thp_deferred_split_page,
			(unsigned long long)s.thp_deferred_split_done,
			(unsigned long long)s.thp_collapse_alloc,
			(unsigned long long)s.thp_collapse_alloc_failed,
			(unsigned long long)s.base_pages_collapsed,
			(unsigned long long)s.collapse_skipped_pinned,
			(unsigned long long)s.collapse_skipped_holes,
			(unsigned long long)s.collapse_full_scans,
			(unsigned long long)s.bytes_released,
			(unsigned long long)s.release_failed_bytes,
			(unsigned long long)s.punch_zeroed_bytes,
			(unsigned long long)s.reclaim_bytes,
			(unsigned long long)s.unreleased_bytes >> 10,
			(unsigned long long)s.mapped_bytes >> 10,
			(unsigned long long)s.mmap_faulted_pages,
			(unsigned long long)s.mmap_vanished_pages,
			(unsigned long long)s.prealloc_used);
}
