/*
 * inode.c - inodes of libthpfs: the inode table, inode life and death,
 * attributes (stat, setattr) and the mount-wide statfs.
 *
 * Which lock guards which inode field (see also internal.h):
 *   nlink, opens, lookups, the table and fs->inodes     fs->ns_lock
 *   mode, uid, gid                  changed with ns_lock held for writing
 *                                   (and inode->lock too for a regular file)
 *   size, data, advice, times of a regular file         inode->lock
 *   times of a directory or symlink                     fs->ns_lock
 * opens and lookups may also be raised with an atomic add while ns_lock is
 * held for reading (open and lookup are namespace reads); they are only
 * lowered, and only tested for zero, with ns_lock held for writing.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>

#define ITABLE_MIN 64
#define BOGO_DIRENT_SIZE 20 /* what tmpfs adds to a directory's size per entry */
/* What statfs reports for size=0 / nr_inodes=0 (unlimited). */
#define UNLIMITED_BLOCKS (THPFS_MAX_FILE_SIZE >> THPFS_PAGE_SHIFT)
#define UNLIMITED_FILES (1ULL << 32)

void _thpfs_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

static uint64_t inodes_in_use(struct thpfs *fs)
{
	return __atomic_load_n(&fs->stats.inodes, __ATOMIC_RELAXED);
}

/* ---- The inode table: ino -> inode.  Caller holds ns_lock. ---- */

static unsigned itable_slot(unsigned size, uint64_t ino)
{
	/* inode numbers are handed out in order, so the low bits spread well */
	return (unsigned)(ino & (size - 1));
}

struct thpfs_inode *_thpfs_inode_find(struct thpfs *fs, uint64_t ino)
{
	struct thpfs_inode *inode;

	if (!fs->itable)
		return NULL;
	for (inode = fs->itable[itable_slot(fs->itable_size, ino)]; inode; inode = inode->hnext)
		if (inode->ino == ino)
			return inode;
	return NULL;
}

/*
 * Doubles the table when it holds more inodes than slots.  A failed
 * allocation leaves the old table, which still works (only slower).
 * Caller holds ns_lock for writing.
 */
static void itable_grow(struct thpfs *fs)
{
	unsigned nsize = fs->itable_size * 2;
	struct thpfs_inode **nt;

	if (inodes_in_use(fs) <= fs->itable_size || nsize < fs->itable_size)
		return;
	nt = calloc(nsize, sizeof(*nt));
	if (!nt)
		return;
	for (unsigned i = 0; i < fs->itable_size; i++) {
		struct thpfs_inode *inode = fs->itable[i], *next;

		for (; inode; inode = next) {
			unsigned s = itable_slot(nsize, inode->ino);

			next = inode->hnext;
			inode->hnext = nt[s];
			nt[s] = inode;
		}
	}
	free(fs->itable);
	fs->itable = nt;
	fs->itable_size = nsize;
}

static void itable_insert(struct thpfs *fs, struct thpfs_inode *inode)
{
	unsigned s = itable_slot(fs->itable_size, inode->ino);

	inode->hnext = fs->itable[s];
	fs->itable[s] = inode;
}

static void itable_remove(struct thpfs *fs, struct thpfs_inode *inode)
{
	struct thpfs_inode **pp = &fs->itable[itable_slot(fs->itable_size, inode->ino)];

	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == inode) {
			*pp = inode->hnext;
			inode->hnext = NULL;
			return;
		}
	}
}

/* ---- Inode life ---- */

/*
 * A new inode of the given type and permissions, with nlink 0, in the table
 * and on fs->inodes.  The caller links it into a directory.  Caller holds
 * ns_lock for writing.  NULL with *err = -ENOSPC when nr_inodes are in use,
 * -ENOMEM when out of memory.
 */
struct thpfs_inode *_thpfs_inode_new(struct thpfs *fs, mode_t mode, uid_t uid, gid_t gid,
				     int *err)
{
	struct thpfs_inode *inode;

	if (fs->opt.nr_inodes && inodes_in_use(fs) >= fs->opt.nr_inodes) {
		*err = -ENOSPC;
		return NULL;
	}
	inode = calloc(1, sizeof(*inode));
	if (!inode) {
		*err = -ENOMEM;
		return NULL;
	}
	/* Writers first: a punch or write must not wait behind an endless
	 * stream of readers.  No path takes inode->lock twice for reading. */
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	int rc = pthread_rwlock_init(&inode->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (rc) {
		free(inode);
		*err = -ENOMEM;
		return NULL;
	}
	inode->ino = fs->next_ino++;
	inode->mode = mode;
	inode->uid = uid;
	inode->gid = gid;
	_thpfs_now(&inode->btime);
	inode->atime = inode->mtime = inode->ctime = inode->btime;
	inode->advice = THPFS_ADV_NORMAL;
	_thpfs_inode_data_init(inode);
	thpfs_list_init(&inode->dentries);
	inode->next_cookie = 3; /* 1 is ".", 2 is ".." */
	thpfs_list_add_tail(&inode->all, &fs->inodes);
	THPFS_STAT_ADD(fs, inodes, 1);
	itable_grow(fs);
	itable_insert(fs, inode);
	return inode;
}

/*
 * Frees everything an inode owns, and the inode.  Nobody else may reach it:
 * it is off the table (or the whole mount is going away).  A directory's
 * remaining entries are freed too (only at unmount can there be any).
 */
static void inode_free(struct thpfs *fs, struct thpfs_inode *inode)
{
	if (S_ISREG(inode->mode))
		_thpfs_inode_free_data(fs, inode);
	while (!thpfs_list_empty(&inode->dentries)) {
		struct thpfs_list *l = inode->dentries.next;

		thpfs_list_del(l);
		free(thpfs_container_of(l, struct thpfs_dentry, link));
	}
	free(inode->dhash);
	free(inode->target);
	pthread_rwlock_destroy(&inode->lock);
	free(inode);
}

/* Caller holds ns_lock for writing. */
void _thpfs_inode_maybe_destroy(struct thpfs *fs, struct thpfs_inode *inode)
{
	if (inode == fs->root || inode->nlink || inode->opens || inode->lookups)
		return;
	itable_remove(fs, inode);
	thpfs_list_del(&inode->all);
	THPFS_STAT_SUB(fs, inodes, 1);
	inode_free(fs, inode);
}

/* Takes ns_lock for writing; the caller holds no thpfs lock. */
void _thpfs_inode_put_open(struct thpfs *fs, struct thpfs_inode *inode)
{
	pthread_rwlock_wrlock(&fs->ns_lock);
	if (inode->opens)
		inode->opens--;
	_thpfs_inode_maybe_destroy(fs, inode);
	pthread_rwlock_unlock(&fs->ns_lock);
}

/* Sets up an empty namespace: the table, the inode list and the root. */
int _thpfs_ns_init(struct thpfs *fs)
{
	struct thpfs_inode *root;
	int err = 0;

	if (pthread_rwlock_init(&fs->ns_lock, NULL))
		return -ENOMEM;
	thpfs_list_init(&fs->inodes);
	fs->itable_size = ITABLE_MIN;
	fs->itable = calloc(fs->itable_size, sizeof(*fs->itable));
	fs->next_ino = THPFS_ROOT_INO;
	fs->stats.inodes = 0;
	if (!fs->itable) {
		pthread_rwlock_destroy(&fs->ns_lock);
		return -ENOMEM;
	}
	root = _thpfs_inode_new(fs, S_IFDIR | (fs->opt.mode & 07777), fs->opt.uid,
				fs->opt.gid, &err);
	if (!root) {
		free(fs->itable);
		fs->itable = NULL;
		pthread_rwlock_destroy(&fs->ns_lock);
		return err;
	}
	root->nlink = 2;
	root->parent = root;
	fs->root = root;
	return 0;
}

/*
 * Frees every inode (with its data and entries) and the table.  Called at
 * unmount once no other thread (the collapse thread included) runs.
 */
void _thpfs_ns_destroy(struct thpfs *fs)
{
	while (!thpfs_list_empty(&fs->inodes)) {
		struct thpfs_list *l = fs->inodes.next;

		thpfs_list_del(l);
		inode_free(fs, thpfs_container_of(l, struct thpfs_inode, all));
	}
	free(fs->itable);
	fs->itable = NULL;
	fs->itable_size = 0;
	fs->root = NULL;
	fs->stats.inodes = 0;
	pthread_rwlock_destroy(&fs->ns_lock);
}

/* ---- Attributes ---- */

/*
 * Fills *st from the inode.  Caller holds ns_lock (nlink, directory sizes)
 * and, for a regular file, inode->lock at least for reading.
 */
void _thpfs_fill_stat(struct thpfs *fs, struct thpfs_inode *inode, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = inode->ino;
	st->st_mode = inode->mode;
	st->st_nlink = inode->nlink;
	st->st_uid = inode->uid;
	st->st_gid = inode->gid;
	st->st_blksize = fs->opt.huge != THPFS_HUGE_NEVER ? THPFS_HUGE_SIZE : THPFS_PAGE_SIZE;
	if (S_ISREG(inode->mode)) {
		st->st_size = (off_t)inode->size;
		st->st_blocks = (blkcnt_t)_thpfs_inode_blocks(inode);
	} else if (S_ISDIR(inode->mode)) {
		st->st_size = (off_t)(inode->nentries + 2) * BOGO_DIRENT_SIZE;
	} else if (S_ISLNK(inode->mode)) {
		st->st_size = inode->target ? (off_t)strlen(inode->target) : 0;
	}
	st->st_atim = inode->atime;
	st->st_mtim = inode->mtime;
	st->st_ctim = inode->ctime;
}

/* Caller holds ns_lock; takes inode->lock for reading on a regular file. */
void _thpfs_inode_stat(struct thpfs *fs, struct thpfs_inode *inode, struct stat *st)
{
	bool reg = S_ISREG(inode->mode);

	if (reg)
		_thpfs_inode_lock_synced(fs, inode); /* st_blocks counts mapped pages */
	_thpfs_fill_stat(fs, inode, st);
	if (reg)
		pthread_rwlock_unlock(&inode->lock);
}

int thpfs_getattr(struct thpfs *fs, uint64_t ino, struct stat *st)
{
	struct thpfs_inode *inode;

	if (!fs || !st)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = _thpfs_inode_find(fs, ino);
	if (inode)
		_thpfs_inode_stat(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return inode ? 0 : -ENOENT;
}

static bool timespec_valid(const struct timespec *ts)
{
	return ts->tv_nsec >= 0 && ts->tv_nsec < 1000000000L;
}

#define SETATTR_KNOWN (THPFS_SET_MODE | THPFS_SET_UID | THPFS_SET_GID | THPFS_SET_SIZE | \
		       THPFS_SET_ATIME | THPFS_SET_MTIME | THPFS_SET_ATIME_NOW |     \
		       THPFS_SET_MTIME_NOW | THPFS_SET_CTIME)

/* Everything a setattr may refuse, checked before anything changes. */
static int setattr_check(const struct thpfs_inode *inode, const struct stat *attr, int to_set)
{
	if (to_set & THPFS_SET_SIZE) {
		if (S_ISDIR(inode->mode))
			return -EISDIR;
		if (!S_ISREG(inode->mode) || attr->st_size < 0)
			return -EINVAL;
		if ((uint64_t)attr->st_size > THPFS_MAX_FILE_SIZE)
			return -EFBIG;
	}
	if ((to_set & THPFS_SET_ATIME) && !(to_set & THPFS_SET_ATIME_NOW) &&
	    !timespec_valid(&attr->st_atim))
		return -EINVAL;
	if ((to_set & THPFS_SET_MTIME) && !(to_set & THPFS_SET_MTIME_NOW) &&
	    !timespec_valid(&attr->st_mtim))
		return -EINVAL;
	if ((to_set & THPFS_SET_CTIME) && !timespec_valid(&attr->st_ctim))
		return -EINVAL;
	return 0;
}

/*
 * Applies a checked setattr.  Caller holds ns_lock (for writing when mode,
 * uid or gid change, or the inode is not a regular file) and, for a regular
 * file, inode->lock for writing.  Only the size change can fail, and then
 * nothing has changed.
 */
static int setattr_apply(struct thpfs *fs, struct thpfs_inode *inode, const struct stat *attr,
			 int to_set)
{
	struct timespec now;

	_thpfs_now(&now);
	if ((to_set & THPFS_SET_SIZE) && (uint64_t)attr->st_size != inode->size) {
		int ret = _thpfs_truncate_locked(fs, inode, (uint64_t)attr->st_size);

		if (ret)
			return ret;
		inode->mtime = now;
	}
	if (to_set & THPFS_SET_MODE)
		inode->mode = (inode->mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & THPFS_SET_UID)
		inode->uid = attr->st_uid;
	if (to_set & THPFS_SET_GID)
		inode->gid = attr->st_gid;
	if (to_set & THPFS_SET_ATIME_NOW)
		inode->atime = now;
	else if (to_set & THPFS_SET_ATIME)
		inode->atime = attr->st_atim;
	if (to_set & THPFS_SET_MTIME_NOW)
		inode->mtime = now;
	else if (to_set & THPFS_SET_MTIME)
		inode->mtime = attr->st_mtim;
	if (to_set & THPFS_SET_CTIME)
		inode->ctime = attr->st_ctim;
	else if (to_set & SETATTR_KNOWN)
		inode->ctime = now;
	return 0;
}

/*
 * Looks ino up with ns_lock for reading, or for writing when want_write or
 * the inode is not a regular file (whose attributes ns_lock guards).  Returns
 * the inode with ns_lock held, or NULL with it released.
 */
static struct thpfs_inode *setattr_lock(struct thpfs *fs, uint64_t ino, bool want_write)
{
	struct thpfs_inode *inode;

	if (!want_write) {
		pthread_rwlock_rdlock(&fs->ns_lock);
		inode = _thpfs_inode_find(fs, ino);
		if (inode && S_ISREG(inode->mode))
			return inode;
		pthread_rwlock_unlock(&fs->ns_lock);
		if (!inode)
			return NULL;
	}
	pthread_rwlock_wrlock(&fs->ns_lock);
	inode = _thpfs_inode_find(fs, ino);
	if (!inode) {
		pthread_rwlock_unlock(&fs->ns_lock);
		return NULL;
	}
	return inode;
}

int thpfs_setattr(struct thpfs *fs, uint64_t ino, const struct stat *attr, int to_set,
		  struct stat *out)
{
	struct thpfs_inode *inode;
	bool reg;
	int ret;

	if (!fs || (!attr && (to_set & SETATTR_KNOWN)))
		return -EINVAL;
	inode = setattr_lock(fs, ino,
			     to_set & (THPFS_SET_MODE | THPFS_SET_UID | THPFS_SET_GID));
	if (!inode)
		return -ENOENT;
	reg = S_ISREG(inode->mode);
	ret = attr ? setattr_check(inode, attr, to_set) : 0;
	if (!ret) {
		if (reg)
			pthread_rwlock_wrlock(&inode->lock);
		if (attr)
			ret = setattr_apply(fs, inode, attr, to_set);
		if (!ret && out)
			_thpfs_fill_stat(fs, inode, out);
		if (reg)
			pthread_rwlock_unlock(&inode->lock);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_fstat(struct thpfs_file *f, struct stat *st)
{
	int ret = thpfs_file_check(f);

	if (ret)
		return ret;
	if (!st)
		return -EINVAL;
	pthread_rwlock_rdlock(&f->fs->ns_lock);
	_thpfs_inode_stat(f->fs, f->inode, st);
	pthread_rwlock_unlock(&f->fs->ns_lock);
	return 0;
}

int thpfs_fsync(struct thpfs_file *f)
{
	return thpfs_file_check(f);
}

int thpfs_fadvise(struct thpfs_file *f, int advice)
{
	int ret = thpfs_file_check(f);

	if (ret)
		return ret;
	if (advice != THPFS_ADV_NORMAL && advice != THPFS_ADV_HUGEPAGE &&
	    advice != THPFS_ADV_NOHUGEPAGE)
		return -EINVAL;
	if (!S_ISREG(f->inode->mode))
		return 0; /* like fadvise on a tmpfs directory: accepted, no effect */
	pthread_rwlock_wrlock(&f->inode->lock);
	f->inode->advice = advice;
	pthread_rwlock_unlock(&f->inode->lock);
	return 0;
}

int thpfs_statfs(struct thpfs *fs, struct thpfs_statfs *st)
{
	uint64_t used, in_use;

	if (!fs || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->bsize = THPFS_PAGE_SIZE;
	st->namemax = THPFS_NAME_MAX;
	st->blocks = fs->opt.size ? fs->opt.size >> THPFS_PAGE_SHIFT : UNLIMITED_BLOCKS;
	used = (_thpfs_held_bytes(fs) + THPFS_PAGE_SIZE - 1) >> THPFS_PAGE_SHIFT;
	st->bfree = used < st->blocks ? st->blocks - used : 0;
	st->files = fs->opt.nr_inodes ? fs->opt.nr_inodes : UNLIMITED_FILES;
	in_use = inodes_in_use(fs);
	st->ffree = in_use < st->files ? st->files - in_use : 0;
	return 0;
}
