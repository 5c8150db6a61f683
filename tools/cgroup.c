/*
 * cgroup.c - child memory cgroups for measurement; see cgroup.h.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CG_V1_ROOT "/sys/fs/cgroup/memory"
#define CG_V2_ROOT "/sys/fs/cgroup"

static int cg_write(const char *dir, const char *file, const char *val)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	int fd = open(p, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, val, strlen(val));
	int err = n < 0 ? -errno : 0;
	close(fd);
	return err;
}

/* The cgroup (relative to the hierarchy root) the process is in now. */
static int cg_current(int v2, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/cgroup", "r");
	if (!f)
		return -errno;
	char line[1024];
	int err = -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c2 = 0;
		int match = v2 ? (line[0] == '0' && c1[1] == 0) : (strstr(c1 + 1, "memory") != NULL);
		if (match) {
			c2[1 + strcspn(c2 + 1, "\n")] = 0;
			snprintf(out, len, "%s", c2 + 1);
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

int thpfs_cg_create(struct thpfs_cg *cg, const char *name)
{
	struct stat st;
	memset(cg, 0, sizeof(*cg));
	const char *root;
	if (stat(CG_V1_ROOT "/memory.usage_in_bytes", &st) == 0) {
		root = CG_V1_ROOT;
	} else if (stat(CG_V2_ROOT "/cgroup.controllers", &st) == 0) {
		root = CG_V2_ROOT;
		cg->v2 = 1;
		cg_write(root, "cgroup.subtree_control", "+memory");
	} else {
		return -ENOENT;
	}
	char cur[400];
	int err = cg_current(cg->v2, cur, sizeof(cur));
	if (err)
		return err;
	snprintf(cg->parent, sizeof(cg->parent), "%s%s", root, cur);
	snprintf(cg->dir, sizeof(cg->dir), "%s/%s-%d", root, name, (int)getpid());
	if (mkdir(cg->dir, 0755) && errno != EEXIST)
		return -errno;
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", cg->dir, cg->v2 ? "memory.current" : "memory.usage_in_bytes");
	if (stat(p, &st))
		return -errno;
	return 0;
}

int thpfs_cg_enter(struct thpfs_cg *cg)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	return cg_write(cg->dir, "cgroup.procs", pid);
}

int64_t thpfs_cg_usage(const struct thpfs_cg *cg)
{
	char p[600], buf[64];
	snprintf(p, sizeof(p), "%s/%s", cg->dir, cg->v2 ? "memory.current" : "memory.usage_in_bytes");
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	return strtoll(buf, NULL, 10);
}

int thpfs_cg_destroy(struct thpfs_cg *cg)
{
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	cg_write(cg->parent, "cgroup.procs", pid);
	if (cg->dir[0] && rmdir(cg->dir))
		return -errno;
	return 0;
}
