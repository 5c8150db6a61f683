/*
 * test_kernel.c - what thpfs says about huge pages and released memory is
 * checked against the kernel, never only against thpfs's own counters:
 *
 *  - a split=native split is seen by PAGEMAP_SCAN (no huge PMD left, the
 *    punched page not present) and, as root, by /proc/kpageflags (no page of
 *    the range left in a large folio);
 *  - a THP the kernel cannot split because a pipe holds one of its pages
 *    (vmsplice without SPLICE_F_GIFT: an extra reference; the kernel then
 *    skips the split and MADV_FREE still returns 0) is judged by a child
 *    memory cgroup: thpfs must not claim the memory as released, must count
 *    thp_split_page_failed as the kernel does, and must give the memory back
 *    once the pipe is drained and the deferred queue runs (thpfs_reclaim);
 *    split=migrate in the same case is measured too: it holds a copy on top
 *    of the THPs the pipe keeps alive, which is why native does not fall
 *    back to it here;
 *  - a "huge frame" the kernel gave as 4 KiB pages (PR_SET_THP_DISABLE) is
 *    not counted as a huge page;
 *  - thp_split_page never rises by more than the kernel's own (/proc/vmstat)
 *    in any split mode; migrations and in-place drops have their own names;
 *  - split=inplace when MADV_NOHUGEPAGE fails (no VMA left): it migrates,
 *    judged by the VmFlags of the memory the chunk ends up in;
 *  - an unprivileged process (uid 65534, in a forked child): not dumpable,
 *    nothing can be verified and SplitVerify says why; dumpable, a THP the
 *    caller made PTE-mapped (mprotect) and a pipe holds is migrated, not
 *    counted as a kernel split, and the cgroup gets the memory back.
 * Tests skip (and say why) without PAGEMAP_SCAN (Linux < 6.7), without
 * transparent huge pages or without a memory cgroup.
 */
#include "testlib.h"
#include "cgroup.h"

#include <inttypes.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define NATIVE "huge=always,split=native,collapse=off"
#define NTHP 16 /* huge pages with a page held by the pipe */
/* What a cgroup reading may be off by: the memory controller charges in
 * per-CPU batches of 64 pages (0.5 MiB on 2 CPUs), and the test itself
 * allocates a little (page tables, stdio). */
#define CG_SLACK MIB

static void need_kernel_view(struct thpfs *fs)
{
	if (!tl_stats(fs).thp_available) {
		print_message("transparent huge pages unavailable here: skipping\n");
		skip();
	}
	char probe = 0;
	if (tl_kernel_present_bytes(&probe, 1) < 0) {
		print_message("no PAGEMAP_SCAN ioctl (Linux < 6.7): skipping\n");
		skip();
	}
}

/* The address of the 2 MiB of memory behind chunk k of f (pinned for a
 * moment through thpfs_map_existing). */
static char *chunk_addr(struct thpfs_file *f, unsigned k)
{
	void *addr;
	size_t len;
	int r = thpfs_map_existing(f, (off_t)k * (off_t)HPG, &addr, &len);
	if (r)
		fail_msg("thpfs_map_existing(chunk %u) = %d", k, r);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	return addr;
}

/* A native split is one the kernel did: PAGEMAP_SCAN sees no huge PMD over
 * the split range (and still one over its neighbour), the punched page is
 * gone from the page table, and no page of the range is in a large folio. */
static void test_native_split_seen_by_kernel(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_kernel_view(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * HPG, 21);
	char *m0 = chunk_addr(f, 0), *m1 = chunk_addr(f, 1);
	print_message("before: kernel maps %" PRId64 " + %" PRId64 " bytes with huge PMDs\n",
		      tl_kernel_huge_bytes(m0, HPG), tl_kernel_huge_bytes(m1, HPG));
	assert_int_equal(tl_kernel_huge_bytes(m0, HPG), HPG);
	assert_int_equal(tl_kernel_huge_bytes(m1, HPG), HPG);
	int large = tl_kernel_large_folio(m0 + 5 * PG);
	if (large >= 0)
		assert_int_equal(large, 1);

	struct thpfs_stats s0 = tl_stats(fs);
	assert_true(s0.split_verify >= 1);
	assert_int_equal(s0.shmem_pmd_mapped, 2 * HPG); /* thpfs's gauge of the kernel's view */
	assert_int_equal(thpfs_fallocate(f, PUNCH, 100 * PG, PG), 0);
	assert_true(thpfs_reclaim(fs, 0) >= 0); /* release the queued page now */
	struct thpfs_stats s1 = tl_stats(fs);
	assert_int_equal(s1.thp_split_page - s0.thp_split_page, 1);
	assert_int_equal(s1.shmem_pmd_mapped, HPG);
	assert_ptr_equal(chunk_addr(f, 0), m0); /* split in place: no copy */
	print_message("after: huge PMD bytes %" PRId64 " + %" PRId64 ", present %" PRId64
		      " of chunk 0, page 5 in a large folio: %d (-1: cannot tell)\n",
		      tl_kernel_huge_bytes(m0, HPG), tl_kernel_huge_bytes(m1, HPG),
		      tl_kernel_present_bytes(m0, HPG), tl_kernel_large_folio(m0 + 5 * PG));
	assert_int_equal(tl_kernel_huge_bytes(m0, HPG), 0);
	assert_int_equal(tl_kernel_huge_bytes(m1, HPG), HPG);
	assert_int_equal(tl_kernel_present_bytes(m0 + 100 * PG, PG), 0);
	assert_int_equal(tl_kernel_present_bytes(m0, HPG), HPG - PG);
	large = tl_kernel_large_folio(m0 + 5 * PG);
	if (large >= 0) {
		assert_int_equal(large, 0);
		assert_int_equal(tl_kernel_large_folio(m1 + 5 * PG), 1);
	} else {
		print_message("/proc/kpageflags unreadable (not root): folio check skipped\n");
	}
	tl_check_pat(f, 0, 100 * PG, 21);
	tl_check_zero(f, 100 * PG, PG);
	tl_check_pat(f, 101 * PG, 2 * HPG - 101 * PG, 21);
	tl_close(f);
}

/* ---- A pipe holds a page of each huge page ---- */

struct pipe_fx {
	struct thpfs_cg cg;
	bool made;
	struct thpfs *fs;
	struct thpfs_file *f;
	int pfd[2];
};

static int pipe_setup(void **state)
{
	struct pipe_fx *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	fx->pfd[0] = fx->pfd[1] = -1;
	*state = fx;
	return 0;
}

static int pipe_teardown(void **state)
{
	struct pipe_fx *fx = *state;
	int ret = 0;
	if (fx->pfd[0] >= 0)
		close(fx->pfd[0]);
	if (fx->pfd[1] >= 0)
		close(fx->pfd[1]);
	if (fx->f)
		thpfs_close(fx->f);
	if (fx->fs && thpfs_unmount(fx->fs))
		ret = -1;
	if (fx->made && thpfs_cg_destroy(&fx->cg))
		ret = -1;
	free(fx);
	return ret;
}

static double mib(int64_t b)
{
	return (double)b / (double)MIB;
}

/* Enters a child memory cgroup, mounts opts, fills NTHP huge pages and
 * puts page 7 of each into a pipe (the pipe buffer holds a reference to
 * it).  Sets mem[k] to the memory of huge page k. */
static void pipe_prepare(struct pipe_fx *fx, const char *opts, char **mem)
{
	if (tl_cg_create(&fx->cg, "thpfs-kernel", "the page table is the only judge")) {
		fx->made = true;
		tl_cg_enter(&fx->cg);
	}
	fx->fs = tl_mount(opts);
	need_kernel_view(fx->fs);
	assert_int_equal(thpfs_open(fx->fs, "/f", O_RDWR | O_CREAT, 0644, &fx->f), 0);
	struct thpfs_file *f = fx->f;
	tl_write_pat(f, 0, NTHP * HPG, 22);

	/* One page (page 7) of each huge page goes into the pipe: the pipe
	 * buffer holds a reference to it. */
	assert_int_equal(pipe(fx->pfd), 0);
	assert_true(fcntl(fx->pfd[1], F_SETPIPE_SZ, (int)(4 * NTHP * PG)) >= (int)(NTHP * PG));
	for (unsigned k = 0; k < NTHP; k++) {
		void *addr;
		size_t len;
		assert_int_equal(thpfs_map_existing(f, (off_t)(k * HPG + 7 * PG), &addr, &len), 0);
		struct iovec iov = {addr, PG};
		assert_int_equal(vmsplice(fx->pfd[1], &iov, 1, 0), (ssize_t)PG);
		assert_int_equal(thpfs_unmap(f, addr), 0);
		mem[k] = (char *)addr - 7 * PG;
		assert_int_equal(tl_kernel_huge_bytes(mem[k], HPG), HPG);
	}
}

/* Reads the pipe empty, checking that it held the file's page 7 of each
 * huge page. */
static void pipe_drain(struct pipe_fx *fx)
{
	static uint8_t buf[NTHP * PG], want[PG];
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t n = read(fx->pfd[0], buf + got, sizeof(buf) - got);
		assert_true(n > 0);
		got += (size_t)n;
	}
	for (unsigned k = 0; k < NTHP; k++) {
		tl_fill(want, PG, k * HPG + 7 * PG, 22);
		assert_memory_equal(buf + k * PG, want, PG);
	}
}

/* The cgroup's usage, or 0 without a cgroup. */
static int64_t usage(struct pipe_fx *fx)
{
	if (!fx->made)
		return 0;
	int64_t u = thpfs_cg_usage(&fx->cg);
	assert_true(u > 0);
	return u;
}

/* Huge page k of the file: the first half holds the pattern, the punched
 * second half reads zero.  Reads through static buffers: a heap buffer
 * would sit in AddressSanitizer's quarantine and be charged to the cgroup
 * being measured. */
static void check_halves(struct thpfs_file *f, unsigned k)
{
	static uint8_t got[64 * KIB], want[64 * KIB];
	for (uint64_t off = k * HPG; off < (k + 1) * HPG; off += sizeof(got)) {
		assert_int_equal(thpfs_pread(f, got, sizeof(got), (off_t)off), (ssize_t)sizeof(got));
		if (off < k * HPG + HPG / 2)
			tl_fill(want, sizeof(want), off, 22);
		else
			memset(want, 0, sizeof(want));
		if (memcmp(got, want, sizeof(got)))
			fail_msg("huge page %u: wrong bytes in [%" PRIu64 ", +64 KiB)", k, off);
	}
}

static void test_pipe_blocks_native_split(void **state)
{
	struct pipe_fx *fx = *state;
	char *mem[NTHP];
	pipe_prepare(fx, NATIVE, mem);
	struct thpfs_file *f = fx->f;

	/* Punch the second half of each huge page (not the pipe's page). */
	const uint64_t punched = NTHP * HPG / 2;
	struct thpfs_stats s0 = tl_stats(fx->fs);
	int64_t kfail0 = tl_vmstat("thp_split_page_failed");
	int64_t use0 = usage(fx);
	for (unsigned k = 0; k < NTHP; k++)
		assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(k * HPG + HPG / 2),
						 (off_t)(HPG / 2)), 0);
	int64_t use1 = usage(fx);
	int64_t kfail1 = tl_vmstat("thp_split_page_failed");
	struct thpfs_stats s1 = tl_stats(fx->fs);
	int64_t fell = use0 - use1;
	int64_t claimed = (int64_t)(s1.bytes_released - s0.bytes_released);
	int64_t dropped = (int64_t)s0.shmem_bytes - (int64_t)s1.shmem_bytes;
	print_message("pipe holds a page of each of %d THPs; punched %.1f MiB: cgroup fell "
		      "%.1f MiB, thpfs claims %.1f MiB released (Shmem -%.1f MiB), "
		      "thp_split_page +%" PRIu64 " thp_split_page_failed +%" PRIu64
		      ", kernel thp_split_page_failed +%" PRId64 "\n",
		      NTHP, mib((int64_t)punched), mib(fell), mib(claimed), mib(dropped),
		      s1.thp_split_page - s0.thp_split_page,
		      s1.thp_split_page_failed - s0.thp_split_page_failed, kfail1 - kfail0);
	/* Never claim memory the cgroup did not see go. */
	if (fx->made) {
		assert_true(claimed <= fell + (int64_t)CG_SLACK);
		assert_true(dropped <= fell + (int64_t)CG_SLACK);
	}
	for (unsigned k = 0; k < NTHP; k++) /* the kernel kept every page */
		assert_int_equal(tl_kernel_present_bytes(mem[k], HPG), HPG);
	assert_int_equal(claimed, 0);
	/* The kernel refused every split, and thpfs says so. */
	assert_true(kfail1 - kfail0 >= NTHP);
	assert_int_equal(s1.thp_split_page_failed - s0.thp_split_page_failed, NTHP);
	assert_int_equal(s1.thp_split_page - s0.thp_split_page, 0);
	/* thpfs kept the huge pages (zeroed the punched halves, queued them) */
	assert_int_equal(s1.shmem_pmd_mapped, NTHP * HPG);
	assert_int_equal(s1.deferred_split_queue, NTHP);
	/* The data: punched halves read zero, the rest (and the pipe's page)
	 * is intact. */
	for (unsigned k = 0; k < NTHP; k++) {
		check_halves(f, k);
	}

	pipe_drain(fx);
	/* With the references gone, the deferred queue splits and frees. */
	int64_t freed = thpfs_reclaim(fx->fs, 0);
	int64_t use2 = usage(fx);
	struct thpfs_stats s2 = tl_stats(fx->fs);
	print_message("pipe drained, thpfs_reclaim freed %.1f MiB: cgroup fell %.1f MiB in all "
		      "(%.1f%% of the punch), thpfs claims %.1f MiB, thp_split_page +%" PRIu64 "\n",
		      mib(freed), mib(use0 - use2), 100.0 * (double)(use0 - use2) / (double)punched,
		      mib((int64_t)(s2.bytes_released - s0.bytes_released)),
		      s2.thp_split_page - s0.thp_split_page);
	if (fx->made)
		assert_true(use0 - use2 >= (int64_t)(punched - CG_SLACK));
	assert_int_equal(s2.bytes_released - s0.bytes_released, punched);
	assert_int_equal(s2.thp_split_page - s0.thp_split_page, NTHP);
	assert_int_equal(s2.deferred_split_queue, 0);
	assert_int_equal(s2.shmem_pmd_mapped, 0);
	assert_int_equal(s2.shmem_bytes, NTHP * HPG - punched);
	for (unsigned k = 0; k < NTHP; k++) {
		assert_int_equal(tl_kernel_huge_bytes(mem[k], HPG), 0);
		assert_int_equal(tl_kernel_present_bytes(mem[k], HPG), HPG / 2);
		check_halves(f, k);
	}
}

/* What split=migrate would do instead (the fallback native does not use
 * for this case): the kept halves are copied out at once, but the THPs the
 * pipe references stay alive until it is drained, so while the pipe holds
 * them the cgroup grows by the copies instead of falling. */
static void test_pipe_migrate_holds_both(void **state)
{
	struct pipe_fx *fx = *state;
	char *mem[NTHP];
	pipe_prepare(fx, "huge=always,split=migrate,collapse=off", mem);
	const uint64_t punched = NTHP * HPG / 2;
	int64_t use0 = usage(fx);
	for (unsigned k = 0; k < NTHP; k++)
		assert_int_equal(thpfs_fallocate(fx->f, PUNCH, (off_t)(k * HPG + HPG / 2),
						 (off_t)(HPG / 2)), 0);
	assert_true(thpfs_reclaim(fx->fs, 0) >= 0);
	int64_t use1 = usage(fx);
	pipe_drain(fx);
	int64_t use2 = usage(fx);
	print_message("split=migrate, pipe holds a page of each of %d THPs; punched %.1f MiB: "
		      "cgroup %+.1f MiB while the pipe holds them, %+.1f MiB after draining it\n",
		      NTHP, mib((int64_t)punched), mib(use1 - use0), mib(use2 - use0));
	if (!fx->made) {
		print_message("no memory cgroup: nothing to measure\n");
		skip();
	}
	assert_true(use1 - use0 >= (int64_t)(punched * 9 / 10)); /* the copies, on top */
	assert_true(use0 - use2 >= (int64_t)(punched - CG_SLACK));
	for (unsigned k = 0; k < NTHP; k++) {
		tl_check_pat(fx->f, k * HPG, HPG / 2, 22);
		tl_check_zero(fx->f, k * HPG + HPG / 2, HPG / 2);
	}
}

/* ---- The kernel gives 4 KiB pages where a huge page was asked for ---- */

static int nothp_setup(void **state)
{
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		return -1;
	return tl_setup(state);
}

static int nothp_teardown(void **state)
{
	int r = tl_teardown(state);
	if (prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0))
		r = -1;
	return r;
}

static void test_small_pages_not_counted_huge(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_kernel_view(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_stats s0 = tl_stats(fs);
	tl_write_pat(f, 0, 2 * HPG, 23);
	char *m0 = chunk_addr(f, 0), *m1 = chunk_addr(f, 1);
	struct thpfs_stats s1 = tl_stats(fs);
	print_message("THP disabled for the process: kernel huge PMD bytes %" PRId64 " + %" PRId64
		      "; thpfs huge_frames %" PRIu64 " base_pages %" PRIu64
		      " thp_file_alloc +%" PRIu64 " thp_file_fallback +%" PRIu64 "\n",
		      tl_kernel_huge_bytes(m0, HPG), tl_kernel_huge_bytes(m1, HPG), s1.huge_frames,
		      s1.base_pages, s1.thp_file_alloc - s0.thp_file_alloc,
		      s1.thp_file_fallback - s0.thp_file_fallback);
	assert_int_equal(tl_kernel_huge_bytes(m0, HPG), 0);
	assert_int_equal(tl_kernel_huge_bytes(m1, HPG), 0);
	/* thpfs agrees with the kernel */
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.shmem_huge_bytes, 0);
	assert_int_equal(s1.shmem_pmd_mapped, 0);
	assert_int_equal(s1.thp_file_alloc - s0.thp_file_alloc, 0);
	assert_int_equal(s1.thp_file_fallback - s0.thp_file_fallback, 2);
	assert_int_equal(s1.base_pages, 2 * HPG / PG);
	assert_int_equal(s1.shmem_bytes, 2 * HPG);
	assert_int_equal(tl_blocks(f), 2 * BLK_HPG);

	/* A punch frees the page at once (no split), and the kernel sees it. */
	assert_int_equal(thpfs_fallocate(f, PUNCH, 9 * PG, PG), 0);
	assert_true(thpfs_reclaim(fs, 0) >= 0);
	assert_int_equal(tl_kernel_present_bytes(m0 + 9 * PG, PG), 0);
	assert_int_equal(tl_stats(fs).thp_split_page, s0.thp_split_page);
	/* A collapse cannot get a huge page either, and does not pretend. */
	thpfs_collapse(f, 0, (off_t)(2 * HPG));
	tl_write_pat(f, 9 * PG, PG, 23);
	struct thpfs_stats s2 = tl_stats(fs);
	assert_int_equal(s2.huge_frames, 0);
	char *n0 = chunk_addr(f, 0);
	assert_int_equal(tl_kernel_huge_bytes(n0, HPG), 0);
	tl_check_pat(f, 0, 2 * HPG, 23);
	tl_close(f);
}

/* ---- thp_split_page counts only splits the kernel made ---- */

/*
 * split=migrate copies the kept pages and frees the huge page whole;
 * split=inplace drops pages inside the THP, which the kernel only queues for
 * its deferred split.  Neither is a split the kernel made at once, so
 * thpfs's thp_split_page must not rise by more than the kernel's own
 * (/proc/vmstat, system-wide: other processes can only add to it).
 */
static void test_split_counter_is_kernels(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_kernel_view(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, NTHP * HPG, 24);
	struct thpfs_stats s0 = tl_stats(fs);
	int64_t k0 = tl_vmstat("thp_split_page");
	for (unsigned k = 0; k < NTHP; k++)
		assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(k * HPG + HPG / 2),
						 (off_t)(HPG / 2)), 0);
	assert_true(thpfs_reclaim(fs, 0) >= 0);
	int64_t k1 = tl_vmstat("thp_split_page");
	struct thpfs_stats s1 = tl_stats(fs);
	print_message("%s: %d huge pages punched in half: thpfs thp_split_page +%" PRIu64
		      ", kernel thp_split_page +%" PRId64 "\n", TL_FX(state)->opts, NTHP,
		      s1.thp_split_page - s0.thp_split_page, k1 - k0);
	assert_true((int64_t)(s1.thp_split_page - s0.thp_split_page) <= k1 - k0);
	/* each under its own name */
	const char *opts = TL_FX(state)->opts;
	uint64_t native = s1.thp_split_page - s0.thp_split_page;
	uint64_t migrate = s1.thp_split_migrate - s0.thp_split_migrate;
	uint64_t inplace = s1.thp_split_inplace - s0.thp_split_inplace;
	assert_int_equal(native + migrate + inplace, NTHP);
	if (strstr(opts, "split=migrate"))
		assert_int_equal(migrate, NTHP);
	else if (strstr(opts, "split=inplace"))
		assert_int_equal(inplace, NTHP);
	else
		assert_int_equal(native, NTHP);
	for (unsigned k = 0; k < NTHP; k++) {
		tl_check_pat(f, k * HPG, HPG / 2, 24);
		tl_check_zero(f, k * HPG + HPG / 2, HPG / 2);
	}
	tl_close(f);
}

/* ---- An unprivileged process (a daemon after setresuid) ---- */
#include <sys/wait.h>

#define CCHECK TL_CCHECK /* testlib.h: a check in a forked child */

/* Becomes nobody (uid 65534), as a daemon that drops root does; dumpable
 * or not (a setresuid clears it: /proc/self/pagemap is then refused). */
static void child_become_nobody(bool dumpable)
{
	CCHECK(setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0,
	       "setresuid: %s", strerror(errno));
	if (dumpable)
		CCHECK(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0, "PR_SET_DUMPABLE");
}

static void child_write_pat(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed)
{
	static uint8_t buf[HPG];
	for (uint64_t o = 0; o < len; o += sizeof(buf)) {
		tl_fill(buf, sizeof(buf), off + o, seed);
		CCHECK(thpfs_pwrite(f, buf, sizeof(buf), (off_t)(off + o)) == (ssize_t)sizeof(buf),
		       "pwrite");
	}
}

/* Huge page k: first half pattern, second half zero (static buffers: the
 * child is measured by its cgroup). */
static void child_check_halves(struct thpfs_file *f, unsigned k, unsigned seed)
{
	static uint8_t got[64 * KIB], want[64 * KIB];
	for (uint64_t off = k * HPG; off < (k + 1) * HPG; off += sizeof(got)) {
		CCHECK(thpfs_pread(f, got, sizeof(got), (off_t)off) == (ssize_t)sizeof(got), "pread");
		if (off < k * HPG + HPG / 2)
			tl_fill(want, sizeof(want), off, seed);
		else
			memset(want, 0, sizeof(want));
		CCHECK(!memcmp(got, want, sizeof(got)), "huge page %u: wrong bytes at %" PRIu64, k,
		       off);
	}
}

/* Runs fn in a forked child (in cg when given) and fails if it did. */
static void run_child(void (*fn)(struct thpfs_cg *cg), struct thpfs_cg *cg)
{
	pid_t pid = tl_fork();
	if (pid == 0) {
		fn(cg);
		fflush(stdout);
		_exit(0);
	}
	tl_wait_child(pid);
}

/* The SplitVerify line of thpfs_meminfo, without its newline. */
static void meminfo_line(struct thpfs *fs, const char *name, char *out, size_t len)
{
	static char buf[8192];
	CCHECK(thpfs_meminfo(fs, buf, sizeof(buf)) < (int)sizeof(buf), "meminfo");
	char *l = strstr(buf, name);
	CCHECK(l, "no %s line", name);
	size_t n = strcspn(l, "\n");
	snprintf(out, len, "%.*s", (int)n, l);
}

/*
 * Not dumpable (setresuid without PR_SET_DUMPABLE): /proc/self/pagemap is
 * refused, nothing can be verified, and thpfs says why.  split=native then
 * migrates, which is not a kernel split: thp_split_page must not count it.
 */
static void child_not_dumpable(struct thpfs_cg *cg)
{
	(void)cg;
	child_become_nobody(false);
	struct thpfs *fs;
	CCHECK(thpfs_mount(&fs, NATIVE) == 0, "mount");
	struct thpfs_stats s0;
	CCHECK(thpfs_get_stats(fs, &s0) == 0, "stats");
	if (!s0.thp_available) {
		printf("no transparent huge pages: skipping\n");
		_exit(77);
	}
	char line[128];
	meminfo_line(fs, "SplitVerify:", line, sizeof(line));
	printf("nobody, not dumpable: split_verify %" PRIu64 ", meminfo \"%s\"\n", s0.split_verify,
	       line);
	CCHECK(s0.split_verify == 0, "split_verify %" PRIu64, s0.split_verify);
	CCHECK(strstr(line, "none") && strstr(line, "pagemap") && strstr(line, "EACCES"),
	       "meminfo does not say why nothing is verified: \"%s\"", line);
	struct thpfs_file *f;
	CCHECK(thpfs_open(fs, "/f", O_RDWR | O_CREAT, 0644, &f) == 0, "open");
	child_write_pat(f, 0, NTHP * HPG, 25);
	int64_t k0 = tl_vmstat("thp_split_page");
	for (unsigned k = 0; k < NTHP; k++)
		CCHECK(thpfs_fallocate(f, PUNCH, (off_t)(k * HPG + HPG / 2), (off_t)(HPG / 2)) == 0,
		       "punch");
	CCHECK(thpfs_reclaim(fs, 0) >= 0, "reclaim");
	int64_t k1 = tl_vmstat("thp_split_page");
	struct thpfs_stats s1;
	CCHECK(thpfs_get_stats(fs, &s1) == 0, "stats");
	printf("nobody, not dumpable: %d huge pages punched in half: thpfs thp_split_page +%" PRIu64
	       ", kernel +%" PRId64 "\n", NTHP, s1.thp_split_page - s0.thp_split_page, k1 - k0);
	CCHECK((int64_t)(s1.thp_split_page - s0.thp_split_page) <= k1 - k0,
	       "thpfs counts %" PRIu64 " splits, the kernel made %" PRId64,
	       s1.thp_split_page - s0.thp_split_page, k1 - k0);
	CCHECK(s1.thp_split_migrate - s0.thp_split_migrate == NTHP, "thp_split_migrate +%" PRIu64,
	       s1.thp_split_migrate - s0.thp_split_migrate);
	for (unsigned k = 0; k < NTHP; k++)
		child_check_halves(f, k, 25);
	CCHECK(thpfs_close(f) == 0 && thpfs_unmount(fs) == 0, "close, unmount");
}

static void test_not_dumpable(void **state)
{
	(void)state;
	run_child(child_not_dumpable, NULL);
}

/*
 * Nobody with PR_SET_DUMPABLE: PAGEMAP_SCAN works but page frame numbers are
 * hidden (no kpageflags).  The caller mprotects one page of each huge page
 * it mapped and back (a guard page, a dirty-tracking pass): the kernel maps
 * the THP with 4 KiB entries from then on, so "no huge PMD" after MADV_FREE
 * proves nothing; a pipe then holds a page of each, and the kernel cannot
 * split it.  Judged by the cgroup and the kernel's counters: thpfs must not
 * count splits the kernel did not make, and once the pipe lets go the
 * punched memory must really leave the cgroup.
 */
static void child_ptemapped_pipe(struct thpfs_cg *cg)
{
	CCHECK(thpfs_cg_enter(cg) == 0, "enter cgroup");
	child_become_nobody(true);
	struct thpfs *fs;
	CCHECK(thpfs_mount(&fs, NATIVE) == 0, "mount");
	struct thpfs_stats s0;
	CCHECK(thpfs_get_stats(fs, &s0) == 0, "stats");
	if (!s0.thp_available || s0.split_verify != 1) {
		printf("split_verify %" PRIu64 " (want 1: PAGEMAP_SCAN only): skipping\n",
		       s0.split_verify);
		_exit(77);
	}
	struct thpfs_file *f;
	CCHECK(thpfs_open(fs, "/f", O_RDWR | O_CREAT, 0644, &f) == 0, "open");
	child_write_pat(f, 0, NTHP * HPG, 26);
	static int pfd[NTHP][2];
	for (unsigned k = 0; k < NTHP; k++) {
		void *a;
		size_t len;
		CCHECK(thpfs_map(f, (off_t)(k * HPG), &a, &len) == 0, "map");
		char *pg = (char *)a + 2 * PG;
		CCHECK(!mprotect(pg, PG, PROT_READ) && !mprotect(pg, PG, PROT_READ | PROT_WRITE),
		       "mprotect: %s", strerror(errno));
		CCHECK(pipe(pfd[k]) == 0, "pipe");
		struct iovec iov = {(char *)a + 7 * PG, PG};
		CCHECK(vmsplice(pfd[k][1], &iov, 1, 0) == (ssize_t)PG, "vmsplice");
		CCHECK(thpfs_unmap(f, a) == 0, "unmap");
	}
	int64_t k0 = tl_vmstat("thp_split_page"), u0 = thpfs_cg_usage(cg);
	for (unsigned k = 0; k < NTHP; k++)
		CCHECK(thpfs_fallocate(f, PUNCH, (off_t)(k * HPG + HPG / 2), (off_t)(HPG / 2)) == 0,
		       "punch");
	CCHECK(thpfs_reclaim(fs, 0) >= 0, "reclaim");
	int64_t k1 = tl_vmstat("thp_split_page"), u1 = thpfs_cg_usage(cg);
	struct thpfs_stats s1;
	CCHECK(thpfs_get_stats(fs, &s1) == 0, "stats");
	for (unsigned k = 0; k < NTHP; k++) {
		close(pfd[k][0]);
		close(pfd[k][1]);
	}
	CCHECK(thpfs_reclaim(fs, 0) >= 0, "reclaim");
	int64_t u2 = thpfs_cg_usage(cg);
	const int64_t punched = NTHP * HPG / 2;
	printf("nobody, PTE-mapped THPs held by a pipe, %.1f MiB punched: thpfs thp_split_page "
	       "+%" PRIu64 ", kernel +%" PRId64 "; cgroup %+.1f MiB while the pipe holds them, "
	       "%+.1f MiB after it let go\n", mib(punched), s1.thp_split_page - s0.thp_split_page,
	       k1 - k0, mib(u1 - u0), mib(u2 - u0));
	CCHECK((int64_t)(s1.thp_split_page - s0.thp_split_page) <= k1 - k0,
	       "thpfs counts %" PRIu64 " splits, the kernel made %" PRId64,
	       s1.thp_split_page - s0.thp_split_page, k1 - k0);
	CCHECK(s1.thp_split_migrate - s0.thp_split_migrate == NTHP, "thp_split_migrate +%" PRIu64,
	       s1.thp_split_migrate - s0.thp_split_migrate);
	CCHECK(u0 - u2 >= punched - (int64_t)CG_SLACK,
	       "the punch gave back %.1f MiB of %.1f MiB", mib(u0 - u2), mib(punched));
	for (unsigned k = 0; k < NTHP; k++)
		child_check_halves(f, k, 26);
	CCHECK(thpfs_close(f) == 0 && thpfs_unmount(fs) == 0, "close, unmount");
}

static void test_ptemapped_pipe_unprivileged(void **state)
{
	struct pipe_fx *fx = *state;
	if (!tl_cg_create(&fx->cg, "thpfs-kernel", "skipping"))
		skip();
	fx->made = true;
	run_child(child_ptemapped_pipe, &fx->cg);
}

/* ---- split=inplace when the range cannot be marked MADV_NOHUGEPAGE ---- */

/* Whether the VmFlags of the mapping holding p include flag ("nh", "hg"). */
static bool vma_has_flag(const void *p, const char *flag)
{
	char line[512];
	bool in = false, found = false;
	uintptr_t a = (uintptr_t)p;
	FILE *fp = fopen("/proc/self/smaps", "r");
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp)) {
		unsigned long lo, hi;
		if (!strncmp(line, "VmFlags:", 8)) {
			if (in) {
				char want[8];
				snprintf(want, sizeof(want), " %s", flag);
				for (char *q = line + 8; (q = strstr(q, want)); q++)
					if (q[strlen(want)] == ' ' || q[strlen(want)] == '\n')
						found = true;
				break;
			}
			continue;
		}
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ':') > line + 8)
			in = a >= lo && a < hi;
	}
	fclose(fp);
	return found;
}

/* Uses up the process's VMAs (vm.max_map_count): maps a region and makes
 * every other page PROT_NONE until the kernel refuses a split, then one
 * more at the region's end.  Returns the region to munmap, *len its size. */
static char *vmas_exhaust(size_t *len)
{
	FILE *fp = fopen("/proc/sys/vm/max_map_count", "r");
	long max = 0;
	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "%ld", &max), 1);
	fclose(fp);
	*len = (size_t)(max + 16) * PG;
	char *r = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(r != MAP_FAILED);
	size_t i;
	for (i = 1; (i + 1) * PG < *len; i += 2)
		if (mprotect(r + i * PG, PG, PROT_NONE))
			break;
	assert_int_equal(errno, ENOMEM);
	(void)mprotect(r + *len - PG, PG, PROT_NONE); /* fails once full */
	return r;
}

/*
 * split=inplace marks the split range MADV_NOHUGEPAGE so that khugepaged
 * does not collapse it again over the released pages.  With every VMA used
 * that madvise fails (a 2 MiB range in the middle of an arena needs two
 * more VMAs); the split must not go on as if it had worked: it migrates
 * instead.  Judged by the kernel's VmFlags of the memory the chunk is in.
 */
static void test_inplace_needs_nohugepage(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_kernel_view(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_file *g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_fadvise(g, THPFS_ADV_NOHUGEPAGE), 0);
	tl_write_pat(g, 0, PG, 27); /* a base arena exists now */
	tl_write_pat(f, 0, 3 * HPG, 27);
	char *m1 = chunk_addr(f, 1);
	assert_true(vma_has_flag(m1, "hg"));
	struct thpfs_stats s0 = tl_stats(fs);
	size_t len;
	char *filler = vmas_exhaust(&len);
	int r = thpfs_fallocate(f, PUNCH, (off_t)(HPG + HPG / 2), (off_t)(HPG / 2));
	int64_t reclaimed = thpfs_reclaim(fs, 0);
	assert_int_equal(munmap(filler, len), 0);
	assert_int_equal(r, 0);
	assert_true(reclaimed >= 0);
	struct thpfs_stats s1 = tl_stats(fs);
	char *n1 = chunk_addr(f, 1);
	bool nh = vma_has_flag(n1, "nh"), hg = vma_has_flag(n1, "hg");
	print_message("punch with no VMA left: chunk 1 at %s address, VmFlags nh=%d hg=%d; "
		      "thp_split_inplace +%" PRIu64 " thp_split_migrate +%" PRIu64 "\n",
		      n1 == m1 ? "the same" : "a new", nh, hg,
		      s1.thp_split_inplace - s0.thp_split_inplace,
		      s1.thp_split_migrate - s0.thp_split_migrate);
	/* Where the kept pages live now, khugepaged may not make a THP. */
	assert_true(nh);
	assert_false(hg);
	assert_int_equal(s1.thp_split_migrate - s0.thp_split_migrate, 1);
	tl_check_pat(f, 0, HPG + HPG / 2, 27);
	tl_check_zero(f, HPG + HPG / 2, HPG / 2);
	tl_check_pat(f, 2 * HPG, HPG, 27);
	tl_close(g);
	tl_close(f);
}

/* ---- ShmemPmdMapped counts a thpfs_mmap'd file too ---- */

/*
 * thpfs_mmap moves a file's huge frames into the mapping; the kernel still
 * maps them with huge PMDs, and ShmemPmdMapped must say so (it is the
 * coverage gauge of collapse-bench and thpfs-stat).  Compared with
 * PAGEMAP_SCAN over the mapping.
 */
static void test_pmd_mapped_counts_mmap(void **state)
{
	struct thpfs *fs = TL_FS(state);
	need_kernel_view(fs);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, NTHP * HPG, 28);
	void *addr = NULL;
	assert_int_equal(thpfs_mmap(f, 0, NTHP * HPG, &addr), 0);
	int64_t kernel = tl_kernel_huge_bytes(addr, NTHP * HPG);
	struct thpfs_stats s = tl_stats(fs);
	print_message("%d MiB mapped with thpfs_mmap: kernel maps %.1f MiB with huge PMDs "
		      "(PAGEMAP_SCAN), ShmemPmdMapped %.1f MiB, huge_frames %" PRIu64 "\n",
		      2 * NTHP, mib(kernel), mib((int64_t)s.shmem_pmd_mapped), s.huge_frames);
	assert_int_equal(kernel, NTHP * HPG);
	assert_int_equal(s.shmem_pmd_mapped, (uint64_t)kernel);
	/* split one in place through the mapping: both drop by 2 MiB */
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(3 * HPG + 5 * PG), (off_t)PG), 0);
	assert_true(thpfs_reclaim(fs, 0) >= 0);
	kernel = tl_kernel_huge_bytes(addr, NTHP * HPG);
	s = tl_stats(fs);
	print_message("after a 4 KiB punch: kernel %.1f MiB, ShmemPmdMapped %.1f MiB\n",
		      mib(kernel), mib((int64_t)s.shmem_pmd_mapped));
	assert_int_equal(s.shmem_pmd_mapped, (uint64_t)kernel);
	assert_int_equal(kernel, (NTHP - 1) * HPG);
	assert_int_equal(thpfs_munmap(f, addr, NTHP * HPG), 0);
	/* back in the arenas: the same answer */
	s = tl_stats(fs);
	assert_int_equal(s.shmem_pmd_mapped, (NTHP - 1) * HPG);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_native_split_seen_by_kernel, NATIVE),
		TL_TEST(test_native_split_seen_by_kernel, "huge=always,collapse=off"),
		cmocka_unit_test_setup_teardown(test_pipe_blocks_native_split, pipe_setup,
						pipe_teardown),
		cmocka_unit_test_setup_teardown(test_pipe_migrate_holds_both, pipe_setup,
						pipe_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_small_pages_not_counted_huge,
							 nothp_setup, nothp_teardown,
							 (void *)"huge=always,collapse=off"),
		TL_TEST(test_split_counter_is_kernels, "huge=always,split=migrate,collapse=off"),
		TL_TEST(test_split_counter_is_kernels, "huge=always,split=inplace,collapse=off"),
		TL_TEST(test_split_counter_is_kernels, NATIVE),
		TL_TEST(test_inplace_needs_nohugepage, "huge=always,split=inplace,collapse=off"),
		TL_TEST(test_pmd_mapped_counts_mmap, NATIVE),
		cmocka_unit_test(test_not_dumpable),
		cmocka_unit_test_setup_teardown(test_ptemapped_pipe_unprivileged, pipe_setup,
						pipe_teardown),
	};
	/* THPFS_TEST_FILTER=name runs only the matching cases. */
	const char *only = getenv("THPFS_TEST_FILTER");
	if (only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
