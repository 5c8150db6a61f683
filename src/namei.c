/*
 * namei.c - the namespace of libthpfs: directory entries, path resolution,
 * open/close, and every call that adds, removes or renames a name.
 *
 * Directories: each directory keeps its entries twice, in a hash table of
 * chains (dir->dhash, for lookups by name) and in a list in cookie order
 * (dir->dentries, for readdir).  Cookies grow by one per new entry and are
 * never reused, so a readdir can always resume "after cookie c" even when
 * entries were added or removed since; "." is cookie 1, ".." is cookie 2.
 *
 * Paths are absolute; empty components and "." are skipped, ".." goes to the
 * parent (the root is its own parent).  Symbolic links are never followed:
 * a symlink in the middle of a path fails with -ENOTDIR and opening one fails
 * with -ELOOP (the FUSE daemon lets the kernel follow links).
 *
 * Locking: fs->ns_lock guards everything here.  Lookups, stat and readdir
 * hold it for reading; anything that changes a name holds it for writing.
 * Each public function takes it itself; the static helpers below expect the
 * caller to hold it (for writing when the helper changes anything).  The
 * times of a regular file belong to inode->lock, which is taken (after
 * ns_lock, never before) to update them.
 *
 * Lookup references: thpfs_lookup takes one, and so do the inode-addressed
 * calls that hand back a new entry (thpfs_create_at, thpfs_mkdir_at,
 * thpfs_symlink_at, thpfs_link_at), because the kernel counts a FUSE
 * create/mkdir/symlink/link reply as a lookup and later forgets it.  The
 * path-based calls take none.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define DHASH_MIN 16

enum name_type {
	NAME_NORMAL,
	NAME_DOT,    /* "." */
	NAME_DOTDOT, /* ".." */
	NAME_ROOT,   /* the path was "/" (no last component) */
};

/*
 * A parent directory and the last component of a path, as resolved by
 * walk_parent() or built from an inode-addressed call.  name is not
 * NUL-terminated.
 */
struct nd {
	struct thpfs_inode *dir;
	const char *name;
	size_t len;
	enum name_type type;
	bool slash; /* the path ended in '/' */
};

/* ---- Small helpers ---- */

static inline void atomic_inc64(uint64_t *p)
{
	__atomic_add_fetch(p, 1, __ATOMIC_RELAXED);
}

static inline void atomic_inc32(uint32_t *p)
{
	__atomic_add_fetch(p, 1, __ATOMIC_RELAXED);
}

static bool dir_dead(const struct thpfs_inode *dir)
{
	return dir->nlink == 0;
}

/* Marks a directory changed (an entry came or went).  ns_lock held (write). */
static void dir_touch(struct thpfs_inode *dir, const struct timespec *now)
{
	dir->mtime = *now;
	dir->ctime = *now;
}

/*
 * Updates an inode's ctime after a link count or name change.  Caller holds
 * ns_lock for writing; a regular file's inode->lock is taken here.
 */
static void inode_touch_ctime(struct thpfs_inode *inode, const struct timespec *now)
{
	if (S_ISREG(inode->mode)) {
		pthread_rwlock_wrlock(&inode->lock);
		inode->ctime = *now;
		pthread_rwlock_unlock(&inode->lock);
	} else {
		inode->ctime = *now;
	}
}

static enum name_type classify(const char *s, size_t len)
{
	if (len == 1 && s[0] == '.')
		return NAME_DOT;
	if (len == 2 && s[0] == '.' && s[1] == '.')
		return NAME_DOTDOT;
	return NAME_NORMAL;
}

/* ---- Directory entries (caller holds ns_lock) ---- */

/* FNV-1a over the name's bytes. */
static uint32_t name_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

/* s has no NUL in its len bytes, so strncmp stops at a shorter name's end. */
static bool dentry_is(const struct thpfs_dentry *d, const char *s, size_t len)
{
	return strncmp(d->name, s, len) == 0 && d->name[len] == '\0';
}

static struct thpfs_dentry *d_lookup(const struct thpfs_inode *dir, const char *s, size_t len)
{
	struct thpfs_dentry *d;

	if (!dir->dhash)
		return NULL;
	d = dir->dhash[name_hash(s, len) & (dir->dhash_size - 1)];
	for (; d; d = d->hnext)
		if (dentry_is(d, s, len))
			return d;
	return NULL;
}

/*
 * A new entry named s, not yet in any directory, and a hash table in dir to
 * put it in.  Everything that can fail when adding a name fails here, before
 * anything changes.  Caller holds ns_lock for writing.
 */
static struct thpfs_dentry *d_alloc(struct thpfs_inode *dir, const char *s, size_t len)
{
	struct thpfs_dentry *d;

	if (!dir->dhash) {
		dir->dhash = calloc(DHASH_MIN, sizeof(*dir->dhash));
		if (!dir->dhash)
			return NULL;
		dir->dhash_size = DHASH_MIN;
	}
	d = malloc(sizeof(*d) + len + 1);
	if (!d)
		return NULL;
	memcpy(d->name, s, len);
	d->name[len] = '\0';
	d->hnext = NULL;
	d->inode = NULL;
	d->cookie = 0;
	thpfs_list_init(&d->link);
	return d;
}

static void dhash_insert(struct thpfs_dentry **table, unsigned size, struct thpfs_dentry *d)
{
	unsigned s = name_hash(d->name, strlen(d->name)) & (size - 1);

	d->hnext = table[s];
	table[s] = d;
}

/* Doubles dir's hash table once it holds more entries than chains; keeps the
 * old one if memory is short.  Caller holds ns_lock for writing. */
static void dhash_grow(struct thpfs_inode *dir)
{
	unsigned nsize = dir->dhash_size * 2;
	struct thpfs_dentry **nt;

	if (dir->nentries <= dir->dhash_size || nsize < dir->dhash_size)
		return;
	nt = calloc(nsize, sizeof(*nt));
	if (!nt)
		return;
	for (unsigned i = 0; i < dir->dhash_size; i++) {
		struct thpfs_dentry *d = dir->dhash[i], *next;

		for (; d; d = next) {
			next = d->hnext;
			dhash_insert(nt, nsize, d);
		}
	}
	free(dir->dhash);
	dir->dhash = nt;
	dir->dhash_size = nsize;
}

/* Puts an entry from d_alloc into dir, pointing at inode, with the next
 * cookie.  Cannot fail.  Caller holds ns_lock for writing. */
static void d_insert(struct thpfs_inode *dir, struct thpfs_dentry *d, struct thpfs_inode *inode)
{
	d->inode = inode;
	d->cookie = dir->next_cookie++;
	dhash_insert(dir->dhash, dir->dhash_size, d);
	thpfs_list_add_tail(&d->link, &dir->dentries);
	dir->nentries++;
	dhash_grow(dir);
}

/* Takes an entry out of dir and frees it (not its inode).  Caller holds
 * ns_lock for writing. */
static void d_delete(struct thpfs_inode *dir, struct thpfs_dentry *d)
{
	struct thpfs_dentry **pp;

	pp = &dir->dhash[name_hash(d->name, strlen(d->name)) & (dir->dhash_size - 1)];
	for (; *pp; pp = &(*pp)->hnext) {
		if (*pp == d) {
			*pp = d->hnext;
			break;
		}
	}
	thpfs_list_del(&d->link);
	dir->nentries--;
	if (__atomic_load_n(&dir->readdir_hint, __ATOMIC_RELAXED) == d)
		__atomic_store_n(&dir->readdir_hint, NULL, __ATOMIC_RELAXED);
	free(d);
}

/* ---- Path resolution (caller holds ns_lock) ---- */

/* One step down from dir by a name that is not the last: only directories
 * can be walked through. */
static int walk_step(struct thpfs_inode **dir, const char *s, size_t len)
{
	struct thpfs_dentry *d;

	if (len > THPFS_NAME_MAX)
		return -ENAMETOOLONG;
	switch (classify(s, len)) {
	case NAME_DOT:
		return 0;
	case NAME_DOTDOT:
		*dir = (*dir)->parent;
		return 0;
	default:
		break;
	}
	d = d_lookup(*dir, s, len);
	if (!d)
		return -ENOENT;
	if (!S_ISDIR(d->inode->mode))
		return -ENOTDIR; /* a file, or a symlink we do not follow */
	*dir = d->inode;
	return 0;
}

/*
 * Resolves every component of path but the last; fills nd with the parent
 * directory and the last name.  "/" gives NAME_ROOT with the root as dir.
 */
static int walk_parent(struct thpfs *fs, const char *path, struct nd *nd)
{
	const char *p;
	struct thpfs_inode *dir = fs->root;

	if (!path)
		return -EINVAL;
	if (strnlen(path, THPFS_PATH_MAX) >= THPFS_PATH_MAX)
		return -ENAMETOOLONG;
	if (path[0] == '\0')
		return -ENOENT;
	if (path[0] != '/')
		return -EINVAL;
	memset(nd, 0, sizeof(*nd));
	p = path;
	for (;;) {
		const char *s, *e;
		int ret;

		while (*p == '/')
			p++;
		if (*p == '\0') {
			/* only slashes: the path names the root */
			nd->dir = dir;
			nd->type = NAME_ROOT;
			nd->slash = true;
			return 0;
		}
		s = p;
		e = strchrnul(s, '/');
		p = e;
		while (*p == '/')
			p++;
		if (*p == '\0') {
			if ((size_t)(e - s) > THPFS_NAME_MAX)
				return -ENAMETOOLONG;
			nd->dir = dir;
			nd->name = s;
			nd->len = (size_t)(e - s);
			nd->type = classify(s, nd->len);
			nd->slash = *e == '/';
			return 0;
		}
		ret = walk_step(&dir, s, (size_t)(e - s));
		if (ret)
			return ret;
	}
}

/* Checks a single name given to an inode-addressed call and fills nd. */
static int nd_from_name(struct thpfs_inode *dir, const char *name, struct nd *nd)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strnlen(name, THPFS_NAME_MAX + 1);
	if (len == 0)
		return -ENOENT;
	if (len > THPFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len))
		return -EINVAL;
	memset(nd, 0, sizeof(*nd));
	nd->dir = dir;
	nd->name = name;
	nd->len = len;
	nd->type = classify(name, len);
	return 0;
}

/* The directory with inode number ino. */
static int find_dir(struct thpfs *fs, uint64_t ino, struct thpfs_inode **dir)
{
	struct thpfs_inode *inode = _thpfs_inode_find(fs, ino);

	if (!inode)
		return -ENOENT;
	if (!S_ISDIR(inode->mode))
		return -ENOTDIR;
	*dir = inode;
	return 0;
}

/* Resolves directory ino and the single name in it into nd. */
static int nd_at(struct thpfs *fs, uint64_t parent, const char *name, struct nd *nd)
{
	struct thpfs_inode *dir;
	int ret = find_dir(fs, parent, &dir);

	return ret ? ret : nd_from_name(dir, name, nd);
}

/*
 * The inode nd names, or -ENOENT.  A trailing '/' on something that is not
 * a directory is -ENOTDIR, as in Linux.
 */
static int nd_target(const struct nd *nd, struct thpfs_inode **out)
{
	struct thpfs_inode *inode;
	struct thpfs_dentry *d;

	switch (nd->type) {
	case NAME_ROOT:
	case NAME_DOT:
		inode = nd->dir;
		break;
	case NAME_DOTDOT:
		inode = nd->dir->parent;
		break;
	default:
		if (dir_dead(nd->dir))
			return -ENOENT;
		d = d_lookup(nd->dir, nd->name, nd->len);
		if (!d)
			return -ENOENT;
		inode = d->inode;
		break;
	}
	if (!inode)
		return -ENOENT;
	if (nd->slash && !S_ISDIR(inode->mode))
		return -ENOTDIR;
	*out = inode;
	return 0;
}

/* ---- Creating names (ns_lock held for writing) ---- */

/*
 * Checks that nd names a new entry that can be created: -EEXIST if it (or a
 * "."/".."/"/" name) exists, -ENOENT in a removed directory.
 */
static int may_create(const struct nd *nd)
{
	if (nd->type != NAME_NORMAL)
		return -EEXIST;
	if (dir_dead(nd->dir))
		return -ENOENT;
	if (d_lookup(nd->dir, nd->name, nd->len))
		return -EEXIST;
	return 0;
}

/*
 * Creates a new inode of the given mode under the name nd (already checked
 * with may_create) and links it in with nlink 1 (2 for a directory).  New
 * entries of a set-group-ID directory take its group, and new directories
 * its set-group-ID bit, as in Linux.
 */
static int create_child(struct thpfs *fs, const struct nd *nd, mode_t mode, uid_t uid,
			gid_t gid, struct thpfs_inode **out)
{
	struct thpfs_inode *dir = nd->dir, *inode;
	struct thpfs_dentry *d;
	struct timespec now;
	int err = 0;

	if (S_ISDIR(mode) && dir->nlink >= UINT32_MAX - 1)
		return -EMLINK;
	d = d_alloc(dir, nd->name, nd->len);
	if (!d)
		return -ENOMEM;
	if (dir->mode & S_ISGID) {
		gid = dir->gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	inode = _thpfs_inode_new(fs, mode, uid, gid, &err);
	if (!inode) {
		free(d);
		return err;
	}
	err = _thpfs_acl_inherit(fs, dir, inode);
	if (err) {
		_thpfs_inode_maybe_destroy(fs, inode); /* nlink 0: it goes */
		free(d);
		return err;
	}
	if (S_ISDIR(mode)) {
		inode->nlink = 2;
		inode->parent = dir;
		dir->nlink++;
	} else {
		inode->nlink = 1;
	}
	d_insert(dir, d, inode);
	_thpfs_now(&now);
	dir_touch(dir, &now);
	*out = inode;
	return 0;
}

static int do_mkdir(struct thpfs *fs, const struct nd *nd, mode_t mode, uid_t uid, gid_t gid,
		    struct thpfs_inode **out)
{
	int ret = may_create(nd);

	if (ret)
		return ret;
	return create_child(fs, nd, S_IFDIR | (mode & 07777), uid, gid, out);
}

static int check_symlink_target(const char *target)
{
	size_t len;

	if (!target)
		return -EINVAL;
	len = strnlen(target, THPFS_PATH_MAX);
	if (len == 0)
		return -ENOENT;
	if (len >= THPFS_PATH_MAX)
		return -ENAMETOOLONG;
	return 0;
}

static int do_symlink(struct thpfs *fs, const struct nd *nd, const char *target, uid_t uid,
		      gid_t gid, struct thpfs_inode **out)
{
	struct thpfs_inode *inode;
	uint64_t charge;
	char *copy;
	int ret = check_symlink_target(target);

	if (!ret)
		ret = may_create(nd);
	if (ret)
		return ret;
	if (nd->slash)
		return -ENOENT; /* "new/" asks for a directory */
	copy = strdup(target);
	if (!copy)
		return -ENOMEM;
	charge = _thpfs_symlink_charge_bytes(strlen(copy));
	ret = charge ? _thpfs_budget_charge(fs, charge) : 0;
	if (!ret) {
		ret = create_child(fs, nd, S_IFLNK | 0777, uid, gid, &inode);
		if (ret && charge)
			_thpfs_budget_uncharge(fs, charge);
	}
	if (ret) {
		free(copy);
		return ret;
	}
	inode->target = copy; /* its charge goes when the inode dies */
	*out = inode;
	return 0;
}

/* Which file types mknod makes: -EPERM for a directory, as Linux says. */
static int check_mknod_mode(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		return 0;
	case S_IFDIR:
		return -EPERM;
	default:
		return -EINVAL;
	}
}

/* A special file (or an empty regular file) at nd. */
static int do_mknod(struct thpfs *fs, const struct nd *nd, mode_t mode, dev_t rdev,
		    uid_t uid, gid_t gid, struct thpfs_inode **out)
{
	int ret = check_mknod_mode(mode);

	if (!ret)
		ret = may_create(nd);
	if (ret)
		return ret;
	if (nd->slash)
		return -ENOENT;
	ret = create_child(fs, nd, (mode & S_IFMT) | (mode & 07777), uid, gid, out);
	if (!ret && (S_ISCHR(mode) || S_ISBLK(mode)))
		(*out)->rdev = rdev;
	return ret;
}

/* Adds the name nd for the existing inode (not a directory); the new link
 * takes an inode from nr_inodes=, as on tmpfs. */
static int do_link(struct thpfs *fs, struct thpfs_inode *inode, const struct nd *nd)
{
	struct thpfs_dentry *d;
	struct timespec now;
	int ret = may_create(nd);

	if (ret)
		return ret;
	if (nd->slash)
		return -ENOENT;
	if (S_ISDIR(inode->mode))
		return -EPERM;
	if (inode->nlink == 0)
		return -ENOENT; /* unlinked: cannot come back */
	if (inode->nlink >= UINT32_MAX - 1)
		return -EMLINK;
	ret = _thpfs_link_charge(fs);
	if (ret)
		return ret;
	d = d_alloc(nd->dir, nd->name, nd->len);
	if (!d) {
		_thpfs_link_uncharge(fs);
		return -ENOMEM;
	}
	d_insert(nd->dir, d, inode);
	inode->nlink++;
	_thpfs_now(&now);
	dir_touch(nd->dir, &now);
	inode_touch_ctime(inode, &now);
	return 0;
}

/* ---- Removing names (ns_lock held for writing) ---- */

/* Drops the link a removed entry held on its inode; a directory loses its
 * "." link too.  The inode dies here if nothing else holds it. */
static void drop_link(struct thpfs *fs, struct thpfs_inode *dir, struct thpfs_inode *victim,
		      const struct timespec *now)
{
	if (S_ISDIR(victim->mode)) {
		victim->nlink = 0;
		victim->parent = NULL;
		dir->nlink--;
	} else {
		if (victim->nlink > 1)
			_thpfs_link_uncharge(fs);
		victim->nlink--;
	}
	inode_touch_ctime(victim, now);
	_thpfs_inode_maybe_destroy(fs, victim);
}

static int do_unlink(struct thpfs *fs, const struct nd *nd)
{
	struct thpfs_dentry *d;
	struct thpfs_inode *victim;
	struct timespec now;

	if (nd->type != NAME_NORMAL)
		return -EISDIR;
	if (dir_dead(nd->dir))
		return -ENOENT;
	d = d_lookup(nd->dir, nd->name, nd->len);
	if (!d)
		return -ENOENT;
	victim = d->inode;
	if (S_ISDIR(victim->mode))
		return -EISDIR;
	if (nd->slash)
		return -ENOTDIR;
	d_delete(nd->dir, d);
	_thpfs_now(&now);
	dir_touch(nd->dir, &now);
	drop_link(fs, nd->dir, victim, &now);
	return 0;
}

static int do_rmdir(struct thpfs *fs, const struct nd *nd)
{
	struct thpfs_dentry *d;
	struct thpfs_inode *victim;
	struct timespec now;

	switch (nd->type) {
	case NAME_ROOT:
		return -EBUSY;
	case NAME_DOT:
		return -EINVAL;
	case NAME_DOTDOT:
		return -ENOTEMPTY;
	default:
		break;
	}
	if (dir_dead(nd->dir))
		return -ENOENT;
	d = d_lookup(nd->dir, nd->name, nd->len);
	if (!d)
		return -ENOENT;
	victim = d->inode;
	if (!S_ISDIR(victim->mode))
		return -ENOTDIR;
	if (victim->nentries)
		return -ENOTEMPTY;
	d_delete(nd->dir, d);
	_thpfs_now(&now);
	dir_touch(nd->dir, &now);
	drop_link(fs, nd->dir, victim, &now);
	return 0;
}

/* ---- Rename (ns_lock held for writing) ---- */

/* Whether dir is anc or lies below it. */
static bool is_in_subtree(const struct thpfs_inode *dir, const struct thpfs_inode *anc)
{
	for (;;) {
		if (dir == anc)
			return true;
		if (!dir || dir->parent == dir)
			return false;
		dir = dir->parent;
	}
}

/* Moves a directory's ".." (and the link count it stands for) to newdir. */
static void move_dir_parent(struct thpfs_inode *inode, struct thpfs_inode *olddir,
			    struct thpfs_inode *newdir)
{
	if (!S_ISDIR(inode->mode) || olddir == newdir)
		return;
	olddir->nlink--;
	newdir->nlink++;
	inode->parent = newdir;
}

/* The checks of Linux's rename that come before anything changes, in its
 * order.  old (and new, when it exists) are the entries found. */
static int rename_check(const struct nd *from, const struct nd *to, struct thpfs_dentry *old,
			struct thpfs_dentry *new, unsigned flags)
{
	struct thpfs_inode *src = old->inode, *dst = new ? new->inode : NULL;

	if ((flags & THPFS_RENAME_NOREPLACE) && dst)
		return -EEXIST;
	if (flags & THPFS_RENAME_EXCHANGE) {
		if (!dst)
			return -ENOENT;
		if (!S_ISDIR(dst->mode) && to->slash)
			return -ENOTDIR;
	}
	if (!S_ISDIR(src->mode)) {
		if (from->slash)
			return -ENOTDIR;
		if (!(flags & THPFS_RENAME_EXCHANGE) && to->slash)
			return -ENOTDIR;
	}
	/* the source may not be an ancestor of the target */
	if (S_ISDIR(src->mode) && is_in_subtree(to->dir, src))
		return -EINVAL;
	/* nor the target an ancestor of the source */
	if (dst && S_ISDIR(dst->mode) && is_in_subtree(from->dir, dst))
		return (flags & THPFS_RENAME_EXCHANGE) ? -EINVAL : -ENOTEMPTY;
	if (src == dst)
		return 0;
	if (dst && !(flags & THPFS_RENAME_EXCHANGE)) {
		if (S_ISDIR(src->mode) && !S_ISDIR(dst->mode))
			return -ENOTDIR;
		if (!S_ISDIR(src->mode) && S_ISDIR(dst->mode))
			return -EISDIR;
		if (S_ISDIR(dst->mode) && dst->nentries)
			return -ENOTEMPTY;
	}
	if (S_ISDIR(src->mode) && from->dir != to->dir && !dst &&
	    to->dir->nlink >= UINT32_MAX - 1)
		return -EMLINK;
	return 0;
}

/* Swaps the inodes of two entries (RENAME_EXCHANGE). */
static void rename_exchange(struct nd *from, struct nd *to, struct thpfs_dentry *old,
			    struct thpfs_dentry *new, const struct timespec *now)
{
	struct thpfs_inode *src = old->inode, *dst = new->inode;

	old->inode = dst;
	new->inode = src;
	move_dir_parent(src, from->dir, to->dir);
	move_dir_parent(dst, to->dir, from->dir);
	dir_touch(from->dir, now);
	dir_touch(to->dir, now);
	inode_touch_ctime(src, now);
	inode_touch_ctime(dst, now);
}

/*
 * Moves old's inode to the name to: into the existing entry new (whose inode
 * loses that link) or into the fresh entry fresh.
 */
static void rename_move(struct thpfs *fs, struct nd *from, struct nd *to,
			struct thpfs_dentry *old, struct thpfs_dentry *new,
			struct thpfs_dentry *fresh, const struct timespec *now)
{
	struct thpfs_inode *src = old->inode, *victim = NULL;

	d_delete(from->dir, old);
	if (new) {
		victim = new->inode;
		new->inode = src;
	} else {
		d_insert(to->dir, fresh, src);
	}
	move_dir_parent(src, from->dir, to->dir);
	dir_touch(from->dir, now);
	dir_touch(to->dir, now);
	inode_touch_ctime(src, now);
	if (victim)
		drop_link(fs, to->dir, victim, now);
}

static int do_rename(struct thpfs *fs, struct nd *from, struct nd *to, unsigned flags)
{
	struct thpfs_dentry *old, *new, *fresh = NULL;
	struct timespec now;
	int ret;

	if (flags & ~(unsigned)(THPFS_RENAME_NOREPLACE | THPFS_RENAME_EXCHANGE))
		return -EINVAL;
	if ((flags & THPFS_RENAME_NOREPLACE) && (flags & THPFS_RENAME_EXCHANGE))
		return -EINVAL;
	if (from->type != NAME_NORMAL)
		return -EBUSY;
	if (to->type != NAME_NORMAL)
		return (flags & THPFS_RENAME_NOREPLACE) ? -EEXIST : -EBUSY;
	if (dir_dead(from->dir) || dir_dead(to->dir))
		return -ENOENT;
	old = d_lookup(from->dir, from->name, from->len);
	if (!old)
		return -ENOENT;
	new = d_lookup(to->dir, to->name, to->len);
	ret = rename_check(from, to, old, new, flags);
	if (ret || (new && new->inode == old->inode))
		return ret;
	if (!new) {
		fresh = d_alloc(to->dir, to->name, to->len);
		if (!fresh)
			return -ENOMEM;
	}
	_thpfs_now(&now);
	if (flags & THPFS_RENAME_EXCHANGE)
		rename_exchange(from, to, old, new, &now);
	else
		rename_move(fs, from, to, old, new, fresh, &now);
	return 0;
}

/* ---- Open and close ---- */

/* After an inode-addressed call made a new entry: the kernel now holds a
 * lookup reference on it.  Caller holds ns_lock for writing. */
static void entry_reply(struct thpfs *fs, struct thpfs_inode *inode, struct stat *st)
{
	inode->lookups++;
	if (st)
		_thpfs_inode_stat(fs, inode, st);
}

static int check_open_flags(int flags)
{
	if ((flags & O_ACCMODE) == O_ACCMODE)
		return -EINVAL;
	if ((flags & O_CREAT) && (flags & O_DIRECTORY))
		return -EINVAL; /* as Linux since 6.4 */
	return 0;
}

/*
 * Opens an inode the caller found.  A freshly created file is not
 * truncated.  Caller holds ns_lock (reading is enough: opens is raised
 * atomically); inode->lock is taken for O_TRUNC.
 */
static int open_inode(struct thpfs *fs, struct thpfs_inode *inode, int flags, bool created,
		      struct thpfs_file **out)
{
	struct thpfs_file *f;

	if (S_ISLNK(inode->mode))
		return -ELOOP; /* links are not followed, with or without O_NOFOLLOW */
	if (!S_ISREG(inode->mode) && !S_ISDIR(inode->mode))
		return -ENXIO; /* a FIFO, socket or device: nothing here to open */
	if ((flags & O_DIRECTORY) && !S_ISDIR(inode->mode))
		return -ENOTDIR;
	if (S_ISDIR(inode->mode) && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
		return -EISDIR;
	f = _thpfs_file_alloc(fs);
	if (!f)
		return -ENOMEM;
	if ((flags & O_TRUNC) && !created && S_ISREG(inode->mode)) {
		struct timespec now;
		int ret = 0;

		pthread_rwlock_wrlock(&inode->lock);
		if (inode->size)
			ret = _thpfs_truncate_locked(fs, inode, 0);
		if (!ret) {
			_thpfs_now(&now);
			inode->mtime = inode->ctime = now;
		}
		pthread_rwlock_unlock(&inode->lock);
		if (ret) {
			_thpfs_file_free(fs, f);
			return ret;
		}
	}
	f->fs = fs;
	f->inode = inode;
	f->flags = flags;
	f->pos = 0;
	f->magic = THPFS_FILE_MAGIC;
	atomic_inc32(&inode->opens);
	*out = f;
	return 0;
}

/*
 * open(2) with O_CREAT on nd: creates a regular file, or opens the existing
 * one (unless O_EXCL).  Caller holds ns_lock for writing.  *inode_out gets
 * the inode opened.
 */
static int open_create(struct thpfs *fs, const struct nd *nd, int flags, mode_t mode,
		       uid_t uid, gid_t gid, struct thpfs_file **f,
		       struct thpfs_inode **inode_out)
{
	struct thpfs_inode *inode;
	bool created = false;
	int ret;

	if (nd->type != NAME_NORMAL)
		return (flags & O_EXCL) ? -EEXIST : -EISDIR;
	if (nd->slash)
		return -EISDIR;
	ret = nd_target(nd, &inode);
	if (ret == -ENOENT) {
		ret = may_create(nd);
		if (!ret)
			ret = create_child(fs, nd, S_IFREG | (mode & 07777), uid, gid, &inode);
		created = !ret;
	} else if (!ret && (flags & O_EXCL)) {
		ret = -EEXIST;
	} else if (!ret && S_ISDIR(inode->mode)) {
		ret = -EISDIR;
	}
	if (ret)
		return ret;
	ret = open_inode(fs, inode, flags, created, f);
	if (ret && created) {
		/* give the new name back: the file never existed for anyone */
		struct thpfs_dentry *d = d_lookup(nd->dir, nd->name, nd->len);

		d_delete(nd->dir, d);
		inode->nlink = 0;
		_thpfs_inode_maybe_destroy(fs, inode);
		return ret;
	}
	if (!ret)
		*inode_out = inode;
	return ret;
}

int thpfs_open(struct thpfs *fs, const char *path, int flags, mode_t mode,
	       struct thpfs_file **f)
{
	struct thpfs_inode *inode;
	struct nd nd;
	bool creat = flags & O_CREAT;
	int ret;

	if (!fs || !f)
		return -EINVAL;
	ret = check_open_flags(flags);
	if (ret)
		return ret;
	if (creat)
		pthread_rwlock_wrlock(&fs->ns_lock);
	else
		pthread_rwlock_rdlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret && creat) {
		ret = open_create(fs, &nd, flags, mode, getuid(), getgid(), f, &inode);
	} else if (!ret) {
		ret = nd_target(&nd, &inode);
		if (!ret)
			ret = open_inode(fs, inode, flags, false, f);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_open_ino(struct thpfs *fs, uint64_t ino, int flags, struct thpfs_file **f)
{
	struct thpfs_inode *inode;
	int ret;

	if (!fs || !f)
		return -EINVAL;
	ret = check_open_flags(flags & ~O_CREAT);
	if (ret)
		return ret;
	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = _thpfs_inode_find(fs, ino);
	ret = inode ? open_inode(fs, inode, flags & ~(O_CREAT | O_EXCL), false, f) : -ENOENT;
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_create_at(struct thpfs *fs, uint64_t parent, const char *name, int flags,
		    mode_t mode, uid_t uid, gid_t gid, struct thpfs_file **f,
		    struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs || !f)
		return -EINVAL;
	flags |= O_CREAT;
	ret = check_open_flags(flags);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = nd_at(fs, parent, name, &nd);
	if (!ret)
		ret = open_create(fs, &nd, flags, mode, uid, gid, f, &inode);
	if (!ret)
		entry_reply(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/*
 * Marks f closed if it is open: the test and the clear are one step under
 * fs->file_lock, so of two threads closing the same handle at once exactly
 * one wins.  Returns 0 for the winner, -EBADF otherwise.  f->fs of a handle
 * is set before its first open and never changes (handles are not freed
 * before unmount).
 */
static int file_mark_closed(struct thpfs_file *f)
{
	if (!f || !f->fs)
		return -EBADF;
	struct thpfs *fs = f->fs;
	int ret = -EBADF;

	pthread_mutex_lock(&fs->file_lock);
	if (f->magic == THPFS_FILE_MAGIC) {
		f->magic = 0;
		ret = 0;
	}
	pthread_mutex_unlock(&fs->file_lock);
	return ret;
}

/* Closes f; the inode may die here (last close of an unlinked file).  A
 * second close of f, concurrent or later, returns -EBADF and drops nothing
 * (until a later open reuses the handle: see include/thpfs.h). */
int thpfs_close(struct thpfs_file *f)
{
	int ret = file_mark_closed(f);

	if (ret)
		return ret;
	_thpfs_inode_put_open(f->fs, f->inode);
	_thpfs_file_free(f->fs, f);
	return 0;
}

/* ---- File handles ---- */

struct thpfs_file *_thpfs_file_alloc(struct thpfs *fs)
{
	struct thpfs_file *f = NULL;

	pthread_mutex_lock(&fs->file_lock);
	if (!thpfs_list_empty(&fs->free_files)) {
		f = thpfs_container_of(fs->free_files.next, struct thpfs_file, link);
		thpfs_list_del(&f->link);
		thpfs_list_add_tail(&f->link, &fs->files);
	}
	pthread_mutex_unlock(&fs->file_lock);
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return NULL;
		if (pthread_mutex_init(&f->pos_lock, NULL)) {
			free(f);
			return NULL;
		}
		pthread_mutex_lock(&fs->file_lock);
		thpfs_list_add_tail(&f->link, &fs->files);
		pthread_mutex_unlock(&fs->file_lock);
	}
	f->fs = fs;
	f->inode = NULL;
	f->flags = 0;
	f->pos = 0;
	return f;
}

/* Puts a closed handle (magic already cleared) on the free list. */
void _thpfs_file_free(struct thpfs *fs, struct thpfs_file *f)
{
	pthread_mutex_lock(&fs->file_lock);
	thpfs_list_del(&f->link);
	thpfs_list_add_tail(&f->link, &fs->free_files);
	pthread_mutex_unlock(&fs->file_lock);
}

/* Frees every handle, open or not; the mount is going away. */
void _thpfs_files_destroy(struct thpfs *fs)
{
	struct thpfs_list *lists[2] = { &fs->files, &fs->free_files };

	for (int i = 0; i < 2; i++) {
		while (!thpfs_list_empty(lists[i])) {
			struct thpfs_file *f = thpfs_container_of(lists[i]->next, struct thpfs_file, link);

			thpfs_list_del(&f->link);
			pthread_mutex_destroy(&f->pos_lock);
			free(f);
		}
	}
	pthread_mutex_destroy(&fs->file_lock);
}

/* ---- Path-based namespace calls ---- */

int _thpfs_path_inode(struct thpfs *fs, const char *path, struct thpfs_inode **out)
{
	struct nd nd;
	int ret = walk_parent(fs, path, &nd);

	return ret ? ret : nd_target(&nd, out);
}

int thpfs_stat(struct thpfs *fs, const char *path, struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs || !st)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret)
		ret = nd_target(&nd, &inode);
	if (!ret)
		_thpfs_inode_stat(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/*
 * Removes one name: resolves the parent and the name (from a path, or from a
 * directory inode and a name) under ns_lock held for writing, then runs op.
 */
static int remove_name(struct thpfs *fs, const char *path, uint64_t parent, const char *name,
		       int (*op)(struct thpfs *fs, const struct nd *nd))
{
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = path ? walk_parent(fs, path, &nd) : nd_at(fs, parent, name, &nd);
	if (!ret)
		ret = op(fs, &nd);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_unlink(struct thpfs *fs, const char *path)
{
	return remove_name(fs, path, 0, NULL, do_unlink);
}

int thpfs_mkdir(struct thpfs *fs, const char *path, mode_t mode)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret)
		ret = do_mkdir(fs, &nd, mode, getuid(), getgid(), &inode);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_rmdir(struct thpfs *fs, const char *path)
{
	return remove_name(fs, path, 0, NULL, do_rmdir);
}

int thpfs_rename(struct thpfs *fs, const char *from, const char *to, unsigned flags)
{
	struct nd ofrom, oto;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = walk_parent(fs, from, &ofrom);
	if (!ret)
		ret = walk_parent(fs, to, &oto);
	if (!ret)
		ret = do_rename(fs, &ofrom, &oto, flags);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_symlink(struct thpfs *fs, const char *target, const char *path)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret)
		ret = do_symlink(fs, &nd, target, getuid(), getgid(), &inode);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_mknod(struct thpfs *fs, const char *path, mode_t mode, dev_t rdev)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret)
		ret = do_mknod(fs, &nd, mode, rdev, getuid(), getgid(), &inode);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_link(struct thpfs *fs, const char *oldpath, const char *newpath)
{
	struct thpfs_inode *inode;
	struct nd ond, nnd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = walk_parent(fs, oldpath, &ond);
	if (!ret)
		ret = nd_target(&ond, &inode);
	if (!ret)
		ret = walk_parent(fs, newpath, &nnd);
	if (!ret)
		ret = do_link(fs, inode, &nnd);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/* Copies a symlink's target like readlink(2): no NUL, cut to len. */
static ssize_t copy_link(const struct thpfs_inode *inode, char *buf, size_t len)
{
	size_t n;

	if (!S_ISLNK(inode->mode))
		return -EINVAL;
	n = thpfs_min(strlen(inode->target), len);
	memcpy(buf, inode->target, n);
	return (ssize_t)n;
}

ssize_t thpfs_readlink(struct thpfs *fs, const char *path, char *buf, size_t len)
{
	struct thpfs_inode *inode;
	struct nd nd;
	ssize_t ret;

	if (!fs || !buf || len == 0)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret)
		ret = nd_target(&nd, &inode);
	if (!ret)
		ret = copy_link(inode, buf, len);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/* ---- Readdir ---- */

static int emit(thpfs_filldir_t fn, void *ctx, uint64_t ino, uint64_t cookie, mode_t type,
		const char *name, uint64_t *pos)
{
	struct thpfs_dirent de = { .ino = ino, .cookie = cookie, .type = type, .name = name };

	*pos = cookie;
	return fn(ctx, &de);
}

/*
 * The first entry of dir with a cookie above c.  The entry the last readdir
 * stopped at (the hint) answers without a scan when the caller resumes
 * after it, or after the entry before it (fn refused the hint itself).
 */
static struct thpfs_list *first_after(struct thpfs_inode *dir, uint64_t c)
{
	struct thpfs_dentry *hint = __atomic_load_n(&dir->readdir_hint, __ATOMIC_RELAXED);
	struct thpfs_list *l;

	if (hint && hint->cookie == c)
		return hint->link.next;
	if (hint && hint->cookie > c) {
		l = hint->link.prev;
		if (l == &dir->dentries ||
		    thpfs_container_of(l, struct thpfs_dentry, link)->cookie <= c)
			return &hint->link;
	}
	for (l = dir->dentries.next; l != &dir->dentries; l = l->next)
		if (thpfs_container_of(l, struct thpfs_dentry, link)->cookie > c)
			break;
	return l;
}

/*
 * Calls fn for each entry after *cookie.  Caller holds ns_lock for reading,
 * so fn may call thpfs functions that only read the namespace (lookup,
 * getattr) but none that change it.
 */
static int dir_iterate(struct thpfs_inode *dir, uint64_t *cookie, thpfs_filldir_t fn,
		       void *ctx)
{
	struct thpfs_list *l;
	uint64_t c = *cookie;

	if (!S_ISDIR(dir->mode))
		return -ENOTDIR;
	if (dir_dead(dir))
		return -ENOENT;
	if (c < 1 && emit(fn, ctx, dir->ino, 1, S_IFDIR, ".", cookie))
		return 0;
	if (c < 2 && emit(fn, ctx, dir->parent->ino, 2, S_IFDIR, "..", cookie))
		return 0;
	for (l = first_after(dir, c); l != &dir->dentries; l = l->next) {
		struct thpfs_dentry *d = thpfs_container_of(l, struct thpfs_dentry, link);

		__atomic_store_n(&dir->readdir_hint, d, __ATOMIC_RELAXED);
		if (emit(fn, ctx, d->inode->ino, d->cookie, d->inode->mode & S_IFMT, d->name,
			 cookie))
			break;
	}
	return 0;
}

int thpfs_readdir(struct thpfs *fs, const char *path, uint64_t *cookie,
		  thpfs_filldir_t fn, void *ctx)
{
	struct thpfs_inode *dir;
	struct nd nd;
	int ret;

	if (!fs || !cookie || !fn)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	ret = walk_parent(fs, path, &nd);
	if (!ret)
		ret = nd_target(&nd, &dir);
	if (!ret)
		ret = dir_iterate(dir, cookie, fn, ctx);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_readdir_ino(struct thpfs *fs, uint64_t ino, uint64_t *cookie,
		      thpfs_filldir_t fn, void *ctx)
{
	struct thpfs_inode *dir;
	int ret;

	if (!fs || !cookie || !fn)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	dir = _thpfs_inode_find(fs, ino);
	ret = dir ? dir_iterate(dir, cookie, fn, ctx) : -ENOENT;
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

/* ---- Inode-addressed calls (FUSE) ---- */

int thpfs_lookup(struct thpfs *fs, uint64_t parent, const char *name, struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	if (name && !strcmp(name, ".")) {
		/* any inode by number: what the kernel asks when it decodes a
		 * file handle after dropping its cached inode */
		inode = _thpfs_inode_find(fs, parent);
		ret = inode ? 0 : -ENOENT;
	} else {
		ret = nd_at(fs, parent, name, &nd);
		if (!ret && dir_dead(nd.dir))
			ret = -ENOENT;
		if (!ret)
			ret = nd_target(&nd, &inode);
	}
	if (!ret) {
		atomic_inc64(&inode->lookups);
		if (st)
			_thpfs_inode_stat(fs, inode, st);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

void thpfs_forget(struct thpfs *fs, uint64_t ino, uint64_t nlookup)
{
	struct thpfs_inode *inode;

	if (!fs)
		return;
	pthread_rwlock_wrlock(&fs->ns_lock);
	inode = _thpfs_inode_find(fs, ino);
	if (inode) {
		inode->lookups -= thpfs_min(nlookup, inode->lookups);
		_thpfs_inode_maybe_destroy(fs, inode);
	}
	pthread_rwlock_unlock(&fs->ns_lock);
}

int thpfs_mkdir_at(struct thpfs *fs, uint64_t parent, const char *name, mode_t mode,
		   uid_t uid, gid_t gid, struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = nd_at(fs, parent, name, &nd);
	if (!ret)
		ret = do_mkdir(fs, &nd, mode, uid, gid, &inode);
	if (!ret)
		entry_reply(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_symlink_at(struct thpfs *fs, uint64_t parent, const char *name,
		     const char *target, uid_t uid, gid_t gid, struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = nd_at(fs, parent, name, &nd);
	if (!ret)
		ret = do_symlink(fs, &nd, target, uid, gid, &inode);
	if (!ret)
		entry_reply(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_mknod_at(struct thpfs *fs, uint64_t parent, const char *name, mode_t mode,
		   dev_t rdev, uid_t uid, gid_t gid, struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = nd_at(fs, parent, name, &nd);
	if (!ret)
		ret = do_mknod(fs, &nd, mode, rdev, uid, gid, &inode);
	if (!ret)
		entry_reply(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_link_at(struct thpfs *fs, uint64_t ino, uint64_t newparent, const char *newname,
		  struct stat *st)
{
	struct thpfs_inode *inode;
	struct nd nd;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	inode = _thpfs_inode_find(fs, ino);
	ret = inode ? nd_at(fs, newparent, newname, &nd) : -ENOENT;
	if (!ret)
		ret = do_link(fs, inode, &nd);
	if (!ret)
		entry_reply(fs, inode, st);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

int thpfs_unlink_at(struct thpfs *fs, uint64_t parent, const char *name)
{
	return remove_name(fs, NULL, parent, name, do_unlink);
}

int thpfs_rmdir_at(struct thpfs *fs, uint64_t parent, const char *name)
{
	return remove_name(fs, NULL, parent, name, do_rmdir);
}

int thpfs_rename_at(struct thpfs *fs, uint64_t parent, const char *name,
		    uint64_t newparent, const char *newname, unsigned flags)
{
	struct nd from, to;
	int ret;

	if (!fs)
		return -EINVAL;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = nd_at(fs, parent, name, &from);
	if (!ret)
		ret = nd_at(fs, newparent, newname, &to);
	if (!ret)
		ret = do_rename(fs, &from, &to, flags);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

ssize_t thpfs_readlink_ino(struct thpfs *fs, uint64_t ino, char *buf, size_t len)
{
	struct thpfs_inode *inode;
	ssize_t ret;

	if (!fs || !buf || len == 0)
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	inode = _thpfs_inode_find(fs, ino);
	ret = inode ? copy_link(inode, buf, len) : -ENOENT;
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}
