/*
 * collapse.c - getting huge pages back: eager collapse when a write fills a
 * 2 MiB range, thpfs_collapse on request (like MADV_COLLAPSE), and a
 * background thread (like khugepaged) for ranges that max_ptes_none allows
 * to collapse with holes.
 *
 * max_ptes_none defaults to 0, so only fully present ranges collapse and a
 * punched hole is never refilled behind the punch's back.  The kernel's 511
 * refills holes, which is why a balloon and khugepaged fight.
 */
#include "internal.h"

#include <stdlib.h>

/* Whether c may become a huge page now: policy allows one there, it is not
 * pinned and nothing in it is waiting to be freed. */
static bool collapse_allowed(struct thpfs *fs, struct thpfs_chunk *c)
{
	return !c->huge && !c->pins && thpfs_bitmap_empty(c->pending) &&
	       _thpfs_want_huge(fs, c->inode, c->index);
}

void _thpfs_collapse_eager(struct thpfs *fs, struct thpfs_chunk *c)
{
	if (c->nr_present == THPFS_PAGES_PER_HUGE && collapse_allowed(fs, c))
		_thpfs_collapse_chunk(fs, c, false);
}

int thpfs_collapse(struct thpfs_file *f, off_t off, off_t len)
{
	int err = thpfs_file_check(f);
	if (err)
		return err;
	if (off < 0 || len <= 0)
		return -EINVAL;
	struct thpfs_inode *inode = f->inode;
	if (!S_ISREG(inode->mode))
		return -EINVAL;
	if (inode->advice == THPFS_ADV_NOHUGEPAGE)
		return 0; /* like MADV_COLLAPSE on a MADV_NOHUGEPAGE range */
	uint64_t first = (uint64_t)off >> THPFS_HUGE_SHIFT;
	uint64_t end = (uint64_t)off + (uint64_t)len;
	if (end < (uint64_t)off || end > THPFS_MAX_FILE_SIZE)
		end = THPFS_MAX_FILE_SIZE;
	uint64_t last = (end - 1) >> THPFS_HUGE_SHIFT;
	int made = 0;
	err = 0;
	pthread_rwlock_wrlock(&inode->lock);
	_thpfs_mmap_sync(f->fs, inode);
	for (struct thpfs_chunk *c = _thpfs_index_next(&inode->pages, first); c && c->index <= last;
	     c = _thpfs_index_next(&inode->pages, c->index + 1)) {
		if (c->huge || c->nr_present < THPFS_PAGES_PER_HUGE)
			continue; /* MADV_COLLAPSE-like: whole ranges only */
		int r = _thpfs_collapse_chunk(f->fs, c, true);
		if (!r)
			made++;
		else if (r != -EBUSY && !err)
			err = r;
	}
	pthread_rwlock_unlock(&inode->lock);
	return made ? made : err;
}

/* One pass over every file: collapse ranges with at most max_ptes_none holes.
 * Holds ns_lock for reading (inodes stay alive) and trylocks each inode, so a
 * busy file is left for the next pass. */
static void collapse_scan(struct thpfs *fs)
{
	_thpfs_release_flush(fs); /* bounds how long released pages linger */
	pthread_rwlock_rdlock(&fs->ns_lock);
	for (struct thpfs_list *l = fs->inodes.next; l != &fs->inodes; l = l->next) {
		struct thpfs_inode *inode = thpfs_container_of(l, struct thpfs_inode, all);
		if (!S_ISREG(inode->mode) || pthread_rwlock_trywrlock(&inode->lock))
			continue;
		_thpfs_mmap_sync(fs, inode); /* ranges rewritten through a mapping */
		for (struct thpfs_chunk *c = _thpfs_index_next(&inode->pages, 0); c;
		     c = _thpfs_index_next(&inode->pages, c->index + 1)) {
			if (c->huge)
				continue;
			if (c->pins) {
				THPFS_STAT_ADD(fs, collapse_skipped_pinned, 1);
				continue;
			}
			if (collapse_allowed(fs, c))
				_thpfs_collapse_chunk(fs, c, false);
		}
		pthread_rwlock_unlock(&inode->lock);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	THPFS_STAT_ADD(fs, collapse_full_scans, 1);
}

static void *collapse_thread(void *arg)
{
	struct thpfs *fs = arg;
	pthread_mutex_lock(&fs->collapse_mu);
	while (!fs->collapse_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)fs->opt.scan_sleep_ms * 1000000ULL;
		ts.tv_sec += (time_t)(ns / 1000000000ULL);
		ts.tv_nsec = (long)(ns % 1000000000ULL);
		pthread_cond_timedwait(&fs->collapse_cv, &fs->collapse_mu, &ts);
		if (fs->collapse_stop)
			break;
		pthread_mutex_unlock(&fs->collapse_mu);
		collapse_scan(fs);
		pthread_mutex_lock(&fs->collapse_mu);
	}
	pthread_mutex_unlock(&fs->collapse_mu);
	return NULL;
}

int _thpfs_collapse_start(struct thpfs *fs)
{
	pthread_mutex_init(&fs->collapse_mu, NULL);
	pthread_cond_init(&fs->collapse_cv, NULL);
	fs->collapse_stop = false;
	if (!fs->opt.collapse_thread)
		return 0;
	int err = pthread_create(&fs->collapse_tid, NULL, collapse_thread, fs);
	if (err)
		return -err;
	fs->collapse_running = true;
	return 0;
}

void _thpfs_collapse_stop(struct thpfs *fs)
{
	if (fs->collapse_running) {
		pthread_mutex_lock(&fs->collapse_mu);
		fs->collapse_stop = true;
		pthread_cond_signal(&fs->collapse_cv);
		pthread_mutex_unlock(&fs->collapse_mu);
		pthread_join(fs->collapse_tid, NULL);
		fs->collapse_running = false;
	}
	pthread_cond_destroy(&fs->collapse_cv);
	pthread_mutex_destroy(&fs->collapse_mu);
}
