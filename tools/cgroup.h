/*
 * cgroup.h - a child memory cgroup to measure what memory really costs.
 *
 * Shared by the tests, the benchmarks and the balloon model (not part of
 * libthpfs).  Uses cgroup v1's memory controller at /sys/fs/cgroup/memory
 * when it is there, else cgroup v2 (memory.current).  Memory is charged to
 * the cgroup of the process that faults it in, so enter the cgroup before
 * allocating what you want to measure.
 */
#ifndef THPFS_TOOLS_CGROUP_H
#define THPFS_TOOLS_CGROUP_H
#include <stdint.h>

struct thpfs_cg {
	char dir[512];    /* the child cgroup's directory */
	char parent[512]; /* where the process was before cg_enter */
	int v2;
};

/* Creates a child memory cgroup named name (with the pid appended).
 * Returns 0 or a negative errno (no memory controller, not root...). */
int thpfs_cg_create(struct thpfs_cg *cg, const char *name);
/* Moves the whole calling process into the cgroup. */
int thpfs_cg_enter(struct thpfs_cg *cg);
/* Bytes charged to the cgroup now (memory.usage_in_bytes / memory.current). */
int64_t thpfs_cg_usage(const struct thpfs_cg *cg);
/* Moves the process back to its previous cgroup and removes the child. */
int thpfs_cg_destroy(struct thpfs_cg *cg);
#endif
