/*
 * cgroup.c - child memory cgroups for measurement; see cgroup.h.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATHLEN 512

static void set_why(struct thpfs_cg *cg, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cg->why, sizeof(cg->why), fmt, ap);
	va_end(ap);
}

static int cg_write(const char *dir, const char *file, const char *val)
{
	char p[PATHLEN + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int fd = open(p, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, val, strlen(val));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

/* Reads a small cgroup file into buf (NUL-terminated). */
static int cg_read(const char *dir, const char *file, char *buf, size_t len)
{
	char p[PATHLEN + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, len - 1);
	int err = n < 0 ? -errno : 0;
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	return err;
}

/* Whether the comma- or space-separated list s holds the word w. */
static bool has_word(const char *s, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = s; (p = strstr(p, w)); p += n) {
		bool start = p == s || p[-1] == ',' || p[-1] == ' ';
		bool end = p[n] == 0 || p[n] == ',' || p[n] == ' ' || p[n] == '\n';
		if (start && end)
			return true;
	}
	return false;
}

/* Where the hierarchy is mounted (mnt) and which of its cgroups the mount
 * shows at mnt (mroot): v1 with controller ctl, or v2. */
static int find_mount(bool v2, const char *ctl, char *mnt, char *mroot)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return -errno;
	char line[2048];
	int err = -ENOENT;
	while (err && fgets(line, sizeof(line), f)) {
		char root[PATHLEN], point[PATHLEN], fstype[64], super[512];
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %511s %511s", root, point) != 2 ||
		    sscanf(dash + 3, "%63s %*s %511s", fstype, super) != 2)
			continue;
		if (v2 ? strcmp(fstype, "cgroup2") != 0
		       : strcmp(fstype, "cgroup") != 0 || !has_word(super, ctl))
			continue;
		snprintf(mnt, PATHLEN, "%s", point);
		snprintf(mroot, PATHLEN, "%s", root);
		err = 0;
	}
	fclose(f);
	return err;
}

/* The caller's cgroup path on the hierarchy (/proc/self/cgroup): the v2
 * line "0::path", or the v1 line whose controller list holds ctl. */
static int self_path(bool v2, const char *ctl, char *out)
{
	FILE *f = fopen("/proc/self/cgroup", "r");
	if (!f)
		return -errno;
	char line[1024];
	int err = -ENOENT;
	while (err && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = *c2 = 0;
		bool match = v2 ? (!strcmp(line, "0") && c1[1] == 0) : has_word(c1 + 1, ctl);
		if (!match)
			continue;
		c2[1 + strcspn(c2 + 1, "\n")] = 0;
		snprintf(out, PATHLEN, "%s", c2 + 1);
		err = 0;
	}
	fclose(f);
	return err;
}

/* The caller's own cgroup directory on one hierarchy. */
static int self_dir(bool v2, const char *ctl, char *out, size_t len)
{
	char mnt[PATHLEN], mroot[PATHLEN], path[PATHLEN];
	int err = find_mount(v2, ctl, mnt, mroot);
	if (!err)
		err = self_path(v2, ctl, path);
	if (err)
		return err;
	/* a mount of a subtree shows path below its root */
	const char *rel = path;
	size_t rl = strlen(mroot);
	if (strcmp(mroot, "/") && !strncmp(path, mroot, rl) && (path[rl] == '/' || !path[rl]))
		rel = path + rl;
	if (!strcmp(rel, "/"))
		rel = "";
	if ((size_t)snprintf(out, len, "%s%s", mnt, rel) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int thpfs_cg_self(const char *ctl, char *out, size_t len, int *v2)
{
	char mnt[PATHLEN], mroot[PATHLEN];
	*v2 = find_mount(false, ctl, mnt, mroot) != 0;
	return self_dir(*v2, ctl, out, len);
}

/* Moves the calling process into dir. */
static int move_self(const char *dir)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	return cg_write(dir, "cgroup.procs", pid);
}

/* Makes the child directory and checks it has the controller's files. */
static int make_child(struct thpfs_cg *cg, const char *name)
{
	if ((size_t)snprintf(cg->dir, sizeof(cg->dir), "%s/%s-%d", cg->home, name,
			     (int)getpid()) >= sizeof(cg->dir))
		return -ENAMETOOLONG;
	if (mkdir(cg->dir, 0755) && errno != EEXIST) {
		int err = -errno;
		set_why(cg, "cannot make %s: %s", cg->dir, strerror(-err));
		cg->dir[0] = 0;
		return err;
	}
	if (!strcmp(cg->ctl, "memory")) {
		char p[PATHLEN + 32];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", cg->dir,
			 cg->v2 ? "memory.current" : "memory.usage_in_bytes");
		if (stat(p, &st)) {
			int err = -errno;
			set_why(cg, "%s has no memory controller", cg->dir);
			rmdir(cg->dir);
			cg->dir[0] = 0;
			return err;
		}
	}
	return 0;
}

int thpfs_cg_create(struct thpfs_cg *cg, const char *name)
{
	char mnt[PATHLEN], mroot[PATHLEN];
	if (find_mount(false, "memory", mnt, mroot) == 0) {
		memset(cg, 0, sizeof(*cg));
		snprintf(cg->ctl, sizeof(cg->ctl), "memory");
		int err = self_dir(false, "memory", cg->home, sizeof(cg->home));
		if (err) {
			set_why(cg, "cannot find our memory cgroup: %s", strerror(-err));
			return err;
		}
		snprintf(cg->parent, sizeof(cg->parent), "%s", cg->home);
		return make_child(cg, name);
	}
	if (find_mount(true, NULL, mnt, mroot) == 0)
		return thpfs_cg_create_v2(cg, mnt, name, "memory");
	memset(cg, 0, sizeof(*cg));
	set_why(cg, "no cgroup v1 memory controller and no cgroup v2 hierarchy mounted");
	return -ENOENT;
}

/*
 * v2: makes sure home enables ctl for its children.  If the caller lives in
 * home (and home is not the root), it moves to a leaf of its own first (the
 * "no internal processes" rule); other processes there make it fail.
 */
static int v2_enable(struct thpfs_cg *cg, const char *root, const char *name)
{
	char buf[512], plus[32];
	int err = cg_read(cg->home, "cgroup.controllers", buf, sizeof(buf));
	if (err || !has_word(buf, cg->ctl)) {
		set_why(cg, "the %s controller is not available in %s (bound to a cgroup v1 "
			"hierarchy, or not enabled in its parent's cgroup.subtree_control)",
			cg->ctl, cg->home);
		return -ENOENT;
	}
	err = cg_read(cg->home, "cgroup.subtree_control", buf, sizeof(buf));
	if (err)
		return err;
	if (has_word(buf, cg->ctl))
		return 0;
	snprintf(plus, sizeof(plus), "+%s", cg->ctl);
	err = cg_write(cg->home, "cgroup.subtree_control", plus);
	if (err == -EBUSY && strcmp(cg->home, root)) {
		/* we are an internal process: move into a leaf and retry */
		if ((size_t)snprintf(cg->leaf, sizeof(cg->leaf), "%s/%s-%d-home", cg->home, name,
				     (int)getpid()) >= sizeof(cg->leaf)) {
			cg->leaf[0] = 0;
			return -ENAMETOOLONG;
		}
		if (mkdir(cg->leaf, 0755) && errno != EEXIST) {
			err = -errno;
			cg->leaf[0] = 0;
			set_why(cg, "cannot make a leaf for the caller in %s: %s", cg->home,
				strerror(-err));
			return err;
		}
		err = move_self(cg->leaf);
		if (!err) {
			snprintf(cg->parent, sizeof(cg->parent), "%s", cg->leaf);
			err = cg_write(cg->home, "cgroup.subtree_control", plus);
		}
		/* on failure thpfs_cg_destroy moves the caller back */
	}
	if (err == -EBUSY)
		set_why(cg, "other processes live in %s: cgroup v2 lets no cgroup with processes "
			"enable %s for its children (\"no internal processes\"); run the caller "
			"in a cgroup of its own", cg->home, cg->ctl);
	else if (err)
		set_why(cg, "cannot enable %s in %s/cgroup.subtree_control: %s", cg->ctl,
			cg->home, strerror(-err));
	else
		cg->enabled = 1;
	return err;
}

int thpfs_cg_create_v2(struct thpfs_cg *cg, const char *root, const char *name,
		       const char *ctl)
{
	memset(cg, 0, sizeof(*cg));
	cg->v2 = 1;
	snprintf(cg->ctl, sizeof(cg->ctl), "%s", ctl);
	char mnt[PATHLEN], mroot[PATHLEN], path[PATHLEN];
	int err = self_path(true, NULL, path);
	if (err) {
		set_why(cg, "no cgroup v2 line in /proc/self/cgroup");
		return err;
	}
	/* the path is relative to the hierarchy root; the caller gave its
	 * mount point (a mount of a subtree is not supported here) */
	if (find_mount(true, NULL, mnt, mroot) == 0 && !strcmp(mnt, root) &&
	    strcmp(mroot, "/")) {
		set_why(cg, "%s shows only a subtree of the cgroup v2 hierarchy", root);
		return -EINVAL;
	}
	if ((size_t)snprintf(cg->home, sizeof(cg->home), "%s%s", root,
			     strcmp(path, "/") ? path : "") >= sizeof(cg->home))
		return -ENAMETOOLONG;
	snprintf(cg->parent, sizeof(cg->parent), "%s", cg->home);
	err = v2_enable(cg, root, name);
	if (!err)
		err = make_child(cg, name);
	if (err) {
		char keep[sizeof(cg->why)];
		snprintf(keep, sizeof(keep), "%s", cg->why);
		thpfs_cg_destroy(cg);
		snprintf(cg->why, sizeof(cg->why), "%s", keep);
	}
	return err;
}

int thpfs_cg_enter(struct thpfs_cg *cg)
{
	int err = move_self(cg->dir);
	if (!err)
		cg->entered = 1;
	return err;
}

static int64_t read_value(const struct thpfs_cg *cg, const char *file)
{
	char buf[64];
	int err = cg_read(cg->dir, file, buf, sizeof(buf));
	if (err)
		return err;
	if (!strncmp(buf, "max", 3))
		return INT64_MAX;
	if (buf[0] < '0' || buf[0] > '9')
		return -EIO;
	return strtoll(buf, NULL, 10);
}

int64_t thpfs_cg_usage(const struct thpfs_cg *cg)
{
	return read_value(cg, cg->v2 ? "memory.current" : "memory.usage_in_bytes");
}

int64_t thpfs_cg_limit(const struct thpfs_cg *cg)
{
	int64_t v = read_value(cg, cg->v2 ? "memory.max" : "memory.limit_in_bytes");
	/* v1 writes "no limit" as the largest page-aligned value */
	if (!cg->v2 && v >= (INT64_MAX & ~(int64_t)0xfff))
		return INT64_MAX;
	return v;
}

int thpfs_cg_set_limit(const struct thpfs_cg *cg, int64_t bytes)
{
	char val[32];
	if (bytes == INT64_MAX)
		snprintf(val, sizeof(val), cg->v2 ? "max" : "-1");
	else
		snprintf(val, sizeof(val), "%lld", (long long)bytes);
	return cg_write(cg->dir, cg->v2 ? "memory.max" : "memory.limit_in_bytes", val);
}

int64_t thpfs_cg_stat(const struct thpfs_cg *cg, const char *key)
{
	char p[PATHLEN + 32], line[256];
	snprintf(p, sizeof(p), "%s/memory.stat", cg->dir);
	FILE *f = fopen(p, "r");
	if (!f)
		return -errno;
	int64_t v = -ENOENT;
	size_t n = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ' ') {
			v = strtoll(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

int thpfs_cg_destroy(struct thpfs_cg *cg)
{
	int err = 0;
	if (cg->entered) {
		err = move_self(cg->parent);
		if (!err)
			cg->entered = 0;
	}
	if (cg->dir[0] && rmdir(cg->dir) && !err)
		err = -errno;
	if (cg->enabled) {
		char minus[32];
		snprintf(minus, sizeof(minus), "-%s", cg->ctl);
		/* fails (EBUSY) while other children use it: then leave it */
		if (!cg_write(cg->home, "cgroup.subtree_control", minus))
			cg->enabled = 0;
	}
	if (cg->leaf[0]) {
		/* back home once home enables no controller for children */
		int e = cg->enabled ? -EBUSY : move_self(cg->home);
		if (!e && rmdir(cg->leaf))
			e = -errno;
		if (!e)
			cg->leaf[0] = 0;
		else if (!err)
			err = e;
	}
	return err;
}
