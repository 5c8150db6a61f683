/*
 * acl.c - POSIX ACLs, stored as the extended attributes
 * system.posix_acl_access and system.posix_acl_default in the kernel's
 * xattr form (posix_acl_xattr: a little-endian 32-bit version 2, then
 * entries of a 16-bit tag, a 16-bit perm and a 32-bit id).
 *
 * libthpfs keeps them and their bond with the mode, as a file system with
 * ACLs does under Linux's VFS (the kernel checks access itself: on a FUSE
 * mount with FUSE_CAP_POSIX_ACL it reads the ACLs with getxattr):
 *   - setting an access ACL sets the mode's permission bits from it (owner
 *     from USER_OBJ, group from MASK or else GROUP_OBJ, other from OTHER);
 *     an ACL the mode says all of (three entries) is not stored
 *     (posix_acl_update_mode).  With THPFS_XATTR_KILL_SGID the set-group-ID
 *     bit goes too (a setter outside the group without CAP_FSETID).
 *   - chmod rewrites a stored access ACL's USER_OBJ, MASK (or GROUP_OBJ)
 *     and OTHER from the new mode (posix_acl_chmod).
 *   - a new entry of a directory with a default ACL gets it as its access
 *     ACL, masked by the mode it was created with (no umask), and a new
 *     directory also as its own default ACL (posix_acl_create).
 * A default ACL only on directories (-EACCES elsewhere, -EACCES like
 * set_posix_acl).  Every function here runs with fs->ns_lock held for
 * writing; a regular file's mode is changed under inode->lock too.
 */
#include "internal.h"

#include <endian.h>
#include <stdlib.h>

#define ACL_VERSION 2
#define ACL_USER_OBJ 0x01
#define ACL_USER 0x02
#define ACL_GROUP_OBJ 0x04
#define ACL_GROUP 0x08
#define ACL_MASK 0x10
#define ACL_OTHER 0x20
#define ACL_UNDEFINED_ID 0xffffffffu

#define ACL_HEADER 4
#define ACL_ENTRY 8
#define ACL_MAX_ENTRIES 8191 /* what fits the largest xattr value */

struct acl_entry {
	uint16_t tag, perm;
	uint32_t id;
};

static uint16_t get16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static void put16(unsigned char *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

/* Entry i of an ACL in xattr form (bounds checked by the caller). */
static struct acl_entry acl_get(const unsigned char *acl, size_t i)
{
	const unsigned char *p = acl + ACL_HEADER + i * ACL_ENTRY;
	struct acl_entry e = { get16(p), get16(p + 2), get32(p + 4) };

	return e;
}

static void acl_set_perm(unsigned char *acl, size_t i, uint16_t perm)
{
	put16(acl + ACL_HEADER + i * ACL_ENTRY + 2, perm);
}

static size_t acl_count(size_t size)
{
	return (size - ACL_HEADER) / ACL_ENTRY;
}

/*
 * Checks an ACL in xattr form as the kernel's posix_acl_from_xattr and
 * posix_acl_valid do: version 2, whole entries, tags in order, one each of
 * USER_OBJ, GROUP_OBJ and OTHER, named entries with ascending ids, a MASK
 * when there are named entries.  *equiv is set when the three base entries
 * are all there is.  -EINVAL when invalid; -ENODATA when it has no entries
 * (the kernel's "no ACL", a removal).
 */
static int acl_check(const unsigned char *acl, size_t size, bool *equiv)
{
	unsigned seen = 0, named = 0, last_tag = 0;
	uint32_t last_id = 0;
	size_t n;

	if (size < ACL_HEADER || (size - ACL_HEADER) % ACL_ENTRY || get32(acl) != ACL_VERSION)
		return -EINVAL;
	n = acl_count(size);
	if (n == 0)
		return -ENODATA;
	if (n > ACL_MAX_ENTRIES)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		struct acl_entry e = acl_get(acl, i);

		if (e.perm & ~7u)
			return -EINVAL;
		if (e.tag < last_tag)
			return -EINVAL;
		switch (e.tag) {
		case ACL_USER_OBJ:
		case ACL_GROUP_OBJ:
		case ACL_MASK:
		case ACL_OTHER:
			if (seen & e.tag)
				return -EINVAL;
			seen |= e.tag;
			break;
		case ACL_USER:
		case ACL_GROUP:
			if (e.id == ACL_UNDEFINED_ID)
				return -EINVAL;
			if (e.tag == last_tag && e.id <= last_id)
				return -EINVAL;
			last_id = e.id;
			named++;
			break;
		default:
			return -EINVAL;
		}
		if (e.tag != last_tag && (e.tag == ACL_USER || e.tag == ACL_GROUP))
			last_id = e.id;
		last_tag = e.tag;
	}
	if ((seen & (ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_OTHER)) !=
	    (ACL_USER_OBJ | ACL_GROUP_OBJ | ACL_OTHER))
		return -EINVAL;
	if (named && !(seen & ACL_MASK))
		return -EINVAL;
	*equiv = !named && !(seen & ACL_MASK);
	return 0;
}

/* The permission bits an access ACL stands for. */
static mode_t acl_mode_bits(const unsigned char *acl, size_t size)
{
	mode_t user = 0, group = 0, mask = 0, other = 0;
	bool has_mask = false;

	for (size_t i = 0; i < acl_count(size); i++) {
		struct acl_entry e = acl_get(acl, i);

		switch (e.tag) {
		case ACL_USER_OBJ:
			user = e.perm;
			break;
		case ACL_GROUP_OBJ:
			group = e.perm;
			break;
		case ACL_MASK:
			mask = e.perm;
			has_mask = true;
			break;
		case ACL_OTHER:
			other = e.perm;
			break;
		}
	}
	return (user << 6) | ((has_mask ? mask : group) << 3) | other;
}

/* Sets an inode's mode (its type kept); a regular file's under its lock. */
static void set_mode(struct thpfs_inode *inode, mode_t mode)
{
	mode = (inode->mode & S_IFMT) | (mode & 07777);
	if (S_ISREG(inode->mode)) {
		pthread_rwlock_wrlock(&inode->lock);
		inode->mode = mode;
		pthread_rwlock_unlock(&inode->lock);
	} else {
		inode->mode = mode;
	}
}

int _thpfs_acl_set(struct thpfs *fs, struct thpfs_inode *inode, const char *name,
		   const void *value, size_t size, int flags)
{
	bool access = !strcmp(name, THPFS_XATTR_ACL_ACCESS), equiv = false;
	int ret = acl_check(value, size, &equiv);
	mode_t mode;

	if (ret == -ENODATA) {
		/* no entries: "no ACL", as the kernel turns it into a removal */
		ret = _thpfs_xattr_store(fs, inode, name, NULL, 0, flags);
		return ret == -ENODATA && !(flags & THPFS_XATTR_REPLACE) ? 0 : ret;
	}
	if (ret)
		return ret;
	if (S_ISLNK(inode->mode))
		return -EOPNOTSUPP;
	if (!access) {
		if (!S_ISDIR(inode->mode))
			return -EACCES;
		return _thpfs_xattr_store(fs, inode, name, value, size, flags);
	}
	if (equiv) {
		ret = _thpfs_xattr_store(fs, inode, name, NULL, 0, flags & ~THPFS_XATTR_REPLACE);
		if (ret == -ENODATA)
			ret = (flags & THPFS_XATTR_REPLACE) ? -ENODATA : 0;
	} else {
		ret = _thpfs_xattr_store(fs, inode, name, value, size, flags);
	}
	if (ret)
		return ret;
	mode = (inode->mode & ~(mode_t)0777) | acl_mode_bits(value, size);
	if (flags & THPFS_XATTR_KILL_SGID)
		mode &= ~(mode_t)S_ISGID;
	set_mode(inode, mode);
	return 0;
}

/*
 * chmod of an inode with a stored access ACL: its USER_OBJ, MASK (or
 * GROUP_OBJ when there is no mask) and OTHER entries take the new mode's
 * bits.  inode->mode is already the new mode.
 */
void _thpfs_acl_chmod(struct thpfs_inode *inode)
{
	size_t size;
	unsigned char *acl = (unsigned char *)_thpfs_xattr_peek(inode, THPFS_XATTR_ACL_ACCESS,
								&size);
	bool has_mask = false;
	size_t n;

	if (!acl)
		return;
	n = acl_count(size);
	for (size_t i = 0; i < n; i++)
		if (acl_get(acl, i).tag == ACL_MASK)
			has_mask = true;
	for (size_t i = 0; i < n; i++) {
		struct acl_entry e = acl_get(acl, i);

		if (e.tag == ACL_USER_OBJ)
			acl_set_perm(acl, i, (inode->mode >> 6) & 7);
		else if (e.tag == ACL_MASK || (e.tag == ACL_GROUP_OBJ && !has_mask))
			acl_set_perm(acl, i, (inode->mode >> 3) & 7);
		else if (e.tag == ACL_OTHER)
			acl_set_perm(acl, i, inode->mode & 7);
	}
}

bool _thpfs_acl_has_default(struct thpfs_inode *dir)
{
	size_t size;

	return _thpfs_xattr_peek(dir, THPFS_XATTR_ACL_DEFAULT, &size) != NULL;
}

/*
 * Masks a copy of a default ACL with the mode a new inode was created with
 * (posix_acl_create_masq) and gives the mode that results in *mode.
 * Returns whether the result says more than the mode (must be stored).
 */
static bool acl_create_masq(unsigned char *acl, size_t size, mode_t *mode)
{
	mode_t m = *mode;
	size_t n = acl_count(size), group_obj = SIZE_MAX, mask = SIZE_MAX;
	bool more = false;

	for (size_t i = 0; i < n; i++) {
		struct acl_entry e = acl_get(acl, i);

		switch (e.tag) {
		case ACL_USER_OBJ:
			e.perm &= (m >> 6) & 7;
			acl_set_perm(acl, i, e.perm);
			m &= ((mode_t)e.perm << 6) | ~(mode_t)S_IRWXU;
			break;
		case ACL_USER:
		case ACL_GROUP:
			more = true;
			break;
		case ACL_GROUP_OBJ:
			group_obj = i;
			break;
		case ACL_OTHER:
			e.perm &= m & 7;
			acl_set_perm(acl, i, e.perm);
			m &= (mode_t)e.perm | ~(mode_t)S_IRWXO;
			break;
		case ACL_MASK:
			mask = i;
			more = true;
			break;
		}
	}
	{
		/* a stored default ACL was checked: it has a GROUP_OBJ */
		size_t g = mask != SIZE_MAX ? mask : group_obj;

		if (g < n) {
			uint16_t perm = acl_get(acl, g).perm & ((m >> 3) & 7);

			acl_set_perm(acl, g, perm);
			m &= ((mode_t)perm << 3) | ~(mode_t)S_IRWXG;
		}
	}
	*mode = m;
	return more;
}

/*
 * Gives a new inode (not a symlink) of directory dir the ACLs dir's default
 * ACL passes on, and the mode that follows from it.  Nothing is done when
 * dir has no default ACL.  The inode is new: nobody else sees it yet.
 * -ENOSPC/-ENOMEM with the inode's attributes possibly half set (the
 * caller destroys it).
 */
int _thpfs_acl_inherit(struct thpfs *fs, struct thpfs_inode *dir, struct thpfs_inode *inode)
{
	size_t size;
	const void *def = _thpfs_xattr_peek(dir, THPFS_XATTR_ACL_DEFAULT, &size);
	unsigned char *copy;
	mode_t mode = inode->mode;
	int ret = 0;

	if (!def || S_ISLNK(inode->mode))
		return 0;
	if (S_ISDIR(inode->mode)) {
		ret = _thpfs_xattr_store(fs, inode, THPFS_XATTR_ACL_DEFAULT, def, size, 0);
		if (ret)
			return ret;
	}
	copy = malloc(size);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, def, size);
	if (acl_create_masq(copy, size, &mode))
		ret = _thpfs_xattr_store(fs, inode, THPFS_XATTR_ACL_ACCESS, copy, size, 0);
	free(copy);
	if (!ret)
		inode->mode = (inode->mode & S_IFMT) | (mode & 07777);
	return ret;
}
