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

#include <fcntl.h>
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
	/* MADV_COLLAPSE needs a mapping, and mmap a readable descriptor */
	if ((f->flags & O_ACCMODE) == O_WRONLY)
		return -EACCES;
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
	_thpfs_mmap_sync_range(f->fs, inode, first << THPFS_HUGE_SHIFT, end);
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

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Waits on collapse_cv until the monotonic time deadline (ns), a wakeup or a
 * stop; collapse_mu held.  The condition variable runs on CLOCK_MONOTONIC. */
static void background_wait_until(struct thpfs *fs, uint64_t deadline)
{
	struct timespec ts = { (time_t)(deadline / 1000000000ULL), (long)(deadline % 1000000000ULL) };
	pthread_cond_timedwait(&fs->collapse_cv, &fs->collapse_mu, &ts);
}

/* Whether the background thread has a pass to make: the collapse scan, a
 * queued release batch, or a prealloc pool to watch for idleness.
 * collapse_mu held (pool_n is read without frame_lock: a hint). */
static bool background_has_pass(struct thpfs *fs)
{
	return fs->opt.collapse_thread || fs->release_kicked ||
	       __atomic_load_n(&fs->pool_n, __ATOMIC_RELAXED);
}

/*
 * The background thread (khugepaged's place), one pass every scan_sleep_ms
 * while it has one to make.  A pass: collapse=on, a collapse scan (which
 * flushes the release batch first); collapse=off, a flush of the release
 * batch; either way the prealloc pool is emptied if no frame was taken
 * since the last pass.  With nothing to do (collapse=off, nothing queued,
 * empty pool) it sleeps without wakeups until a kick.  So pages released by
 * a punch are back with the OS within scan_sleep_ms either way.  Between
 * passes, a pool kick (a frame was taken) refills the pool at once, and a
 * flush kick (collapse retired a block) frees the retired blocks and
 * flushes the release batch.
 */
static void *background_thread(void *arg)
{
	struct thpfs *fs = arg;
	uint64_t period = (uint64_t)fs->opt.scan_sleep_ms * 1000000ULL;
	uint64_t next = mono_ns() + period;
	pthread_mutex_lock(&fs->collapse_mu);
	while (!fs->collapse_stop) {
		if (fs->flush_kicked) {
			fs->flush_kicked = false;
			pthread_mutex_unlock(&fs->collapse_mu);
			_thpfs_release_flush(fs);
			pthread_mutex_lock(&fs->collapse_mu);
			continue;
		}
		if (fs->pool_kicked) {
			fs->pool_kicked = false;
			pthread_mutex_unlock(&fs->collapse_mu);
			_thpfs_pool_refill(fs);
			pthread_mutex_lock(&fs->collapse_mu);
			continue;
		}
		if (!background_has_pass(fs)) {
			pthread_cond_wait(&fs->collapse_cv, &fs->collapse_mu);
			next = mono_ns() + period; /* the clock starts at the kick */
			continue;
		}
		if (mono_ns() < next) {
			background_wait_until(fs, next);
			continue;
		}
		fs->release_kicked = false;
		pthread_mutex_unlock(&fs->collapse_mu);
		if (fs->opt.collapse_thread)
			collapse_scan(fs);
		else
			_thpfs_release_flush(fs);
		_thpfs_pool_trim_idle(fs);
		pthread_mutex_lock(&fs->collapse_mu);
		next = mono_ns() + period;
	}
	pthread_mutex_unlock(&fs->collapse_mu);
	return NULL;
}

void _thpfs_release_kick(struct thpfs *fs)
{
	/* collapse=on: the next pass flushes anyway.  At mount and unmount
	 * the thread is not running (and collapse_mu may not exist). */
	if (fs->opt.collapse_thread || !__atomic_load_n(&fs->collapse_running, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&fs->collapse_mu);
	if (!fs->release_kicked) {
		fs->release_kicked = true;
		pthread_cond_signal(&fs->collapse_cv);
	}
	pthread_mutex_unlock(&fs->collapse_mu);
}

/* Sets *flag and wakes the background thread (if running). */
static void background_kick(struct thpfs *fs, bool *flag)
{
	if (!__atomic_load_n(&fs->collapse_running, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&fs->collapse_mu);
	if (!*flag) {
		*flag = true;
		pthread_cond_signal(&fs->collapse_cv);
	}
	pthread_mutex_unlock(&fs->collapse_mu);
}

void _thpfs_pool_kick(struct thpfs *fs)
{
	background_kick(fs, &fs->pool_kicked);
}

void _thpfs_flush_kick(struct thpfs *fs)
{
	background_kick(fs, &fs->flush_kicked);
}

int _thpfs_collapse_start(struct thpfs *fs)
{
	pthread_mutex_init(&fs->collapse_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->collapse_cv, &ca);
	pthread_condattr_destroy(&ca);
	fs->collapse_stop = false;
	fs->release_kicked = false;
	fs->pool_kicked = false;
	fs->flush_kicked = false;
	/* A small stack: under mlockall(MCL_FUTURE) all of it is locked. */
	pthread_attr_t attr;
	int err = pthread_attr_init(&attr);
	if (err)
		return -err;
	err = pthread_attr_setstacksize(&attr, 512 * 1024);
	if (!err)
		err = pthread_create(&fs->collapse_tid, &attr, background_thread, fs);
	pthread_attr_destroy(&attr);
	if (err)
		return -err;
	__atomic_store_n(&fs->collapse_running, true, __ATOMIC_RELEASE);
	return 0;
}

void _thpfs_collapse_stop(struct thpfs *fs)
{
	if (__atomic_load_n(&fs->collapse_running, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&fs->collapse_running, false, __ATOMIC_RELEASE);
		pthread_mutex_lock(&fs->collapse_mu);
		fs->collapse_stop = true;
		pthread_cond_signal(&fs->collapse_cv);
		pthread_mutex_unlock(&fs->collapse_mu);
		pthread_join(fs->collapse_tid, NULL);
	}
	pthread_cond_destroy(&fs->collapse_cv);
	pthread_mutex_destroy(&fs->collapse_mu);
}
