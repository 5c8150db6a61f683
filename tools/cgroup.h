/*
 * cgroup.h - a child memory cgroup to measure what memory really costs.
 *
 * Shared by the tests, the benchmarks and the balloon model (not part of
 * libthpfs).  The child is made inside the caller's own memory cgroup (read
 * from /proc/self/cgroup), so the caller's limits still hold for what is
 * measured and the memory shows in the caller's usage too.  Uses cgroup v1's
 * memory controller where it is mounted, else cgroup v2 (found in
 * /proc/self/mountinfo).  Memory is charged to the cgroup of the process
 * that faults it in, so enter the cgroup before allocating what you want to
 * measure.
 *
 * cgroup v2 only lets a cgroup enable a controller for its children while
 * no process lives in it ("no internal processes"; the root is exempt).  If
 * the caller's cgroup does not enable the memory controller for its children
 * yet, thpfs_cg_create enables it; if the caller itself is in the way, it
 * first moves the caller into a leaf of its own (<name>-<pid>-home) next to
 * the child; if other processes are in the way it fails with -EBUSY and says
 * why in cg->why.  thpfs_cg_destroy undoes all of it.
 */
#ifndef THPFS_TOOLS_CGROUP_H
#define THPFS_TOOLS_CGROUP_H
#include <stddef.h>
#include <stdint.h>

struct thpfs_cg {
	char dir[512];    /* the child cgroup's directory */
	char parent[512]; /* where the process was before cg_enter */
	int v2;
	char home[512];   /* the caller's own cgroup (the child's parent) */
	char leaf[512];   /* v2: leaf made for the caller, or "" */
	char ctl[16];     /* the controller measured ("memory") */
	int enabled;      /* v2: we enabled ctl in home's cgroup.subtree_control */
	int entered;      /* the process is in dir (thpfs_cg_enter) */
	char why[256];    /* after a failure: what went wrong, for a message */
};

/* Creates a child memory cgroup named name (with the pid appended) inside
 * the caller's memory cgroup.  Returns 0 or a negative errno (no memory
 * controller: -ENOENT; not root: -EACCES; v2 internal processes: -EBUSY);
 * cg->why then explains. */
int thpfs_cg_create(struct thpfs_cg *cg, const char *name);
/* The same on the cgroup v2 hierarchy mounted at root, with controller ctl
 * ("memory"; tests use another where memory is bound to cgroup v1). */
int thpfs_cg_create_v2(struct thpfs_cg *cg, const char *root, const char *name,
		       const char *ctl);
/* Moves the whole calling process into the cgroup. */
int thpfs_cg_enter(struct thpfs_cg *cg);
/* Bytes charged to the cgroup now (memory.usage_in_bytes / memory.current). */
int64_t thpfs_cg_usage(const struct thpfs_cg *cg);
/* The cgroup's own memory limit (memory.limit_in_bytes / memory.max);
 * INT64_MAX for none.  Limits of the cgroups above it apply too. */
int64_t thpfs_cg_limit(const struct thpfs_cg *cg);
/* Sets the cgroup's memory limit (bytes; INT64_MAX for none). */
int thpfs_cg_set_limit(const struct thpfs_cg *cg, int64_t bytes);
/* The value of key in the cgroup's memory.stat (v1 and v2 name their keys
 * differently: "rss"/"anon", "cache"/"file"); -ENOENT if absent. */
int64_t thpfs_cg_stat(const struct thpfs_cg *cg, const char *key);
/* Moves the process back to its previous cgroup and removes the child (and
 * on v2 what thpfs_cg_create set up for it). */
int thpfs_cg_destroy(struct thpfs_cg *cg);
/* The caller's own cgroup directory for controller ctl on the hierarchy the
 * library would use (v1 memory, else v2), into out. */
int thpfs_cg_self(const char *ctl, char *out, size_t len, int *v2);
#endif
