/*
 * xattr.c - extended attributes of libthpfs, kept per inode as tmpfs keeps
 * them (its simple_xattr lists), with tmpfs's limits:
 *
 *   - namespaces user., trusted., security. and the two POSIX ACL names
 *     system.posix_acl_access / system.posix_acl_default (acl.c gives those
 *     their meaning); any other name is -EOPNOTSUPP.  user. attributes only
 *     on regular files and directories (-EPERM to set, -ENODATA to get on
 *     others), as the kernel's xattr_permission says.
 *   - a name of 1..XATTR_NAME_MAX (255) bytes (-ERANGE otherwise), a value
 *     of at most XATTR_SIZE_MAX (65536) bytes (-E2BIG).
 *   - space: as tmpfs since Linux 6.6, an attribute takes its value, its
 *     name and 40 bytes (simple_xattr_space) from the mount's inode space,
 *     nr_inodes= times 1024 bytes (an inode or an extra hard link takes
 *     1024), and -ENOSPC when that is used up; with nr_inodes=0 there is
 *     no limit.  Replacing a value charges the new one before the old one
 *     is given back, as tmpfs does.
 *
 * The list of an inode is kept sorted by name (listxattr's order on tmpfs).
 * Locking: fs->ns_lock guards every inode's list and fs->xattr_bytes: held
 * for reading by get and list, for writing by set and remove.  The ctime of
 * a regular file belongs to inode->lock, taken (after ns_lock) to update it.
 */
#include "internal.h"

#include <stdlib.h>

struct thpfs_xattr {
	struct thpfs_xattr *next; /* sorted by name */
	size_t size;              /* bytes of value */
	char *value;              /* points into the same allocation */
	char name[];
};

#define XATTR_NAME_MAX_LEN 255
#define XATTR_SIZE_MAX_LEN 65536
#define XATTR_OVERHEAD 40 /* what simple_xattr_space adds per attribute */

static const char *const xattr_prefixes[] = { "user.", "trusted.", "security." };

/* Bytes of inode space an attribute takes (tmpfs's simple_xattr_space). */
static uint64_t xattr_space(const char *name, size_t size)
{
	return XATTR_OVERHEAD + size + strlen(name);
}

bool _thpfs_xattr_is_acl(const char *name)
{
	return !strcmp(name, THPFS_XATTR_ACL_ACCESS) || !strcmp(name, THPFS_XATTR_ACL_DEFAULT);
}

/*
 * Checks a name: its length, then its namespace.  For a user. name, is_user
 * is set (the caller checks the inode type).
 */
static int check_name(const char *name, bool *is_user)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strnlen(name, XATTR_NAME_MAX_LEN + 1);
	if (len == 0 || len > XATTR_NAME_MAX_LEN)
		return -ERANGE;
	*is_user = false;
	if (_thpfs_xattr_is_acl(name))
		return 0;
	for (size_t i = 0; i < sizeof(xattr_prefixes) / sizeof(xattr_prefixes[0]); i++) {
		size_t plen = strlen(xattr_prefixes[i]);

		if (!strncmp(name, xattr_prefixes[i], plen)) {
			if (len == plen)
				return -EINVAL; /* the prefix alone names nothing */
			*is_user = i == 0;
			return 0;
		}
	}
	return -EOPNOTSUPP;
}

static bool user_allowed(const struct thpfs_inode *inode)
{
	return S_ISREG(inode->mode) || S_ISDIR(inode->mode);
}

/* The attribute named name, and the link pointing at it (for removal). */
static struct thpfs_xattr *xattr_find(struct thpfs_inode *inode, const char *name,
				      struct thpfs_xattr ***linkp)
{
	struct thpfs_xattr **pp = &inode->xattrs;

	for (; *pp; pp = &(*pp)->next) {
		int c = strcmp((*pp)->name, name);

		if (c == 0)
			break;
		if (c > 0) {
			if (linkp)
				*linkp = pp;
			return NULL;
		}
	}
	if (linkp)
		*linkp = pp;
	return *pp;
}

/* Bytes of inode space left; ns_lock held.  UINT64_MAX without a limit. */
static uint64_t ispace_free(struct thpfs *fs)
{
	uint64_t total, used;

	if (!fs->opt.nr_inodes)
		return UINT64_MAX;
	total = fs->opt.nr_inodes * THPFS_BOGO_INODE_SIZE;
	used = _thpfs_ispace_used(fs);
	return used < total ? total - used : 0;
}

/* Updates an inode's ctime after an attribute change; ns_lock held for
 * writing; a regular file's inode->lock is taken here. */
static void xattr_touch(struct thpfs_inode *inode)
{
	struct timespec now;

	_thpfs_now(&now);
	if (S_ISREG(inode->mode)) {
		pthread_rwlock_wrlock(&inode->lock);
		inode->ctime = now;
		pthread_rwlock_unlock(&inode->lock);
	} else {
		inode->ctime = now;
	}
}

/* A new attribute holding a copy of value, not on any list, or NULL. */
static struct thpfs_xattr *xattr_alloc(const char *name, const void *value, size_t size)
{
	size_t nlen = strlen(name);
	struct thpfs_xattr *x = malloc(sizeof(*x) + nlen + 1 + size);

	if (!x)
		return NULL;
	memcpy(x->name, name, nlen + 1);
	x->value = x->name + nlen + 1;
	x->size = size;
	if (size)
		memcpy(x->value, value, size);
	x->next = NULL;
	return x;
}

/*
 * Stores name = value on inode, or with value NULL removes it.  The caller
 * checked the name and the value (acl.c hands in already converted ACLs).
 * flags: THPFS_XATTR_CREATE (-EEXIST if present), THPFS_XATTR_REPLACE
 * (-ENODATA if absent).  Charges the inode space.  ns_lock held for
 * writing.
 */
int _thpfs_xattr_store(struct thpfs *fs, struct thpfs_inode *inode, const char *name,
		       const void *value, size_t size, int flags)
{
	struct thpfs_xattr **link, *old, *x;
	uint64_t space;

	old = xattr_find(inode, name, &link);
	if (old && (flags & THPFS_XATTR_CREATE))
		return -EEXIST;
	if (!old && (flags & THPFS_XATTR_REPLACE))
		return -ENODATA;
	if (!value) {
		if (!old)
			return -ENODATA;
		*link = old->next;
		__atomic_sub_fetch(&fs->xattr_bytes, xattr_space(old->name, old->size), __ATOMIC_RELAXED);
		free(old);
		return 0;
	}
	space = xattr_space(name, size);
	if (space > ispace_free(fs))
		return -ENOSPC;
	x = xattr_alloc(name, value, size);
	if (!x)
		return -ENOMEM;
	__atomic_add_fetch(&fs->xattr_bytes, space, __ATOMIC_RELAXED);
	if (old) {
		x->next = old->next;
		__atomic_sub_fetch(&fs->xattr_bytes, xattr_space(old->name, old->size), __ATOMIC_RELAXED);
		free(old);
	} else {
		x->next = *link;
	}
	*link = x;
	return 0;
}

/* The stored value of name (NULL if none) and its size; ns_lock held. */
const void *_thpfs_xattr_peek(struct thpfs_inode *inode, const char *name, size_t *size)
{
	struct thpfs_xattr *x = xattr_find(inode, name, NULL);

	if (!x)
		return NULL;
	*size = x->size;
	return x->value;
}

/* Frees every attribute of a dying inode and gives its space back. */
void _thpfs_xattr_free_all(struct thpfs *fs, struct thpfs_inode *inode)
{
	while (inode->xattrs) {
		struct thpfs_xattr *x = inode->xattrs;

		inode->xattrs = x->next;
		__atomic_sub_fetch(&fs->xattr_bytes, xattr_space(x->name, x->size), __ATOMIC_RELAXED);
		free(x);
	}
}

/* ---- The calls: by inode number or by path ---- */

/*
 * Finds the inode for a call: by path when path is set, else by ino.
 * Caller holds ns_lock.
 */
static int xattr_inode(struct thpfs *fs, const char *path, uint64_t ino,
		       struct thpfs_inode **out)
{
	if (path)
		return _thpfs_path_inode(fs, path, out);
	*out = _thpfs_inode_find(fs, ino);
	return *out ? 0 : -ENOENT;
}

static ssize_t do_get(struct thpfs *fs, const char *path, uint64_t ino, const char *name,
		      void *buf, size_t size)
{
	struct thpfs_inode *inode;
	struct thpfs_xattr *x;
	bool is_user;
	ssize_t ret;

	if (!fs || (size && !buf))
		return -EINVAL;
	ret = check_name(name, &is_user);
	if (ret)
		return ret;
	pthread_rwlock_rdlock(&fs->ns_lock);
	ret = xattr_inode(fs, path, ino, &inode);
	if (!ret && is_user && !user_allowed(inode))
		ret = -ENODATA;
	if (!ret) {
		x = xattr_find(inode, name, NULL);
		if (!x)
			ret = -ENODATA;
		else if (size && size < x->size)
			ret = -ERANGE;
		else {
			if (size)
				memcpy(buf, x->value, x->size);
			ret = (ssize_t)x->size;
		}
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

static int do_set(struct thpfs *fs, const char *path, uint64_t ino, const char *name,
		  const void *value, size_t size, int flags)
{
	struct thpfs_inode *inode;
	bool is_user;
	int ret;

	if (!fs || (size && !value) ||
	    (flags & ~(THPFS_XATTR_CREATE | THPFS_XATTR_REPLACE | THPFS_XATTR_KILL_SGID)) ||
	    ((flags & THPFS_XATTR_CREATE) && (flags & THPFS_XATTR_REPLACE)))
		return -EINVAL;
	ret = check_name(name, &is_user);
	if (ret)
		return ret;
	if (size > XATTR_SIZE_MAX_LEN)
		return -E2BIG;
	if (!value)
		value = ""; /* an empty value is a value, not a removal */
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = xattr_inode(fs, path, ino, &inode);
	if (!ret && is_user && !user_allowed(inode))
		ret = -EPERM;
	if (!ret) {
		if (_thpfs_xattr_is_acl(name))
			ret = _thpfs_acl_set(fs, inode, name, value, size, flags);
		else
			ret = _thpfs_xattr_store(fs, inode, name, value, size, flags);
	}
	if (!ret)
		xattr_touch(inode);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

static int do_remove(struct thpfs *fs, const char *path, uint64_t ino, const char *name)
{
	struct thpfs_inode *inode;
	bool is_user;
	int ret;

	if (!fs)
		return -EINVAL;
	ret = check_name(name, &is_user);
	if (ret)
		return ret;
	pthread_rwlock_wrlock(&fs->ns_lock);
	ret = xattr_inode(fs, path, ino, &inode);
	if (!ret && is_user && !user_allowed(inode))
		ret = -EPERM;
	if (!ret)
		ret = _thpfs_xattr_store(fs, inode, name, NULL, 0, 0);
	if (!ret)
		xattr_touch(inode);
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

static ssize_t do_list(struct thpfs *fs, const char *path, uint64_t ino, char *buf,
		       size_t size)
{
	struct thpfs_inode *inode;
	struct thpfs_xattr *x;
	size_t need = 0;
	ssize_t ret;

	if (!fs || (size && !buf))
		return -EINVAL;
	pthread_rwlock_rdlock(&fs->ns_lock);
	ret = xattr_inode(fs, path, ino, &inode);
	if (!ret) {
		for (x = inode->xattrs; x; x = x->next)
			need += strlen(x->name) + 1;
		if (size && size < need) {
			ret = -ERANGE;
		} else {
			if (size) {
				char *p = buf;

				for (x = inode->xattrs; x; x = x->next) {
					size_t n = strlen(x->name) + 1;

					memcpy(p, x->name, n);
					p += n;
				}
			}
			ret = (ssize_t)need;
		}
	}
	pthread_rwlock_unlock(&fs->ns_lock);
	return ret;
}

ssize_t thpfs_getxattr_ino(struct thpfs *fs, uint64_t ino, const char *name, void *buf,
			   size_t size)
{
	return do_get(fs, NULL, ino, name, buf, size);
}

int thpfs_setxattr_ino(struct thpfs *fs, uint64_t ino, const char *name, const void *value,
		       size_t size, int flags)
{
	return do_set(fs, NULL, ino, name, value, size, flags);
}

ssize_t thpfs_listxattr_ino(struct thpfs *fs, uint64_t ino, char *buf, size_t size)
{
	return do_list(fs, NULL, ino, buf, size);
}

int thpfs_removexattr_ino(struct thpfs *fs, uint64_t ino, const char *name)
{
	return do_remove(fs, NULL, ino, name);
}

ssize_t thpfs_getxattr(struct thpfs *fs, const char *path, const char *name, void *buf,
		       size_t size)
{
	return path ? do_get(fs, path, 0, name, buf, size) : -EINVAL;
}

int thpfs_setxattr(struct thpfs *fs, const char *path, const char *name, const void *value,
		   size_t size, int flags)
{
	return path ? do_set(fs, path, 0, name, value, size, flags) : -EINVAL;
}

ssize_t thpfs_listxattr(struct thpfs *fs, const char *path, char *buf, size_t size)
{
	return path ? do_list(fs, path, 0, buf, size) : -EINVAL;
}

int thpfs_removexattr(struct thpfs *fs, const char *path, const char *name)
{
	return path ? do_remove(fs, path, 0, name) : -EINVAL;
}
