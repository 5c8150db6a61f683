/*
 * test_release.c - memory given back is really given back, and never comes
 * back with someone else's bytes.
 *
 * Every memory claim here is judged by the kernel: the usage of a child
 * memory cgroup the process enters before mounting (tools/cgroup.h), or
 * mincore() on the frames.  Covered:
 *  - mlocked memory (mlock of a thpfs_map'd range; mlockall(MCL_CURRENT |
 *    MCL_FUTURE) in a forked child, as a VMM with QEMU's mem-lock=on does):
 *    MADV_DONTNEED refuses it, so freed frames used to be reused with their
 *    old bytes and never left the cgroup;
 *  - a partial process_madvise return, and madvise failures (fault injection:
 *    thpfs_fault_inject_release);
 *  - collapse=off: released pages leave within scan_sleep_ms with no call;
 *  - ShmemPinned's bytes; thpfs_reclaim's result under a racing writer;
 *  - a failed release stays charged (size=, Shmem) and reclaim does not
 *    claim it; thpfs_mmap under mlockall does not populate the slots it
 *    empties.
 * Tests that need a cgroup (root, a memory controller) skip without one.
 */
#include "testlib.h"
#include "cgroup.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)

#if defined(TL_ASAN) || defined(TL_TSAN)
#define SANITIZED 1
#endif

/* Makes the child cgroup (skipping the test without one); enters it unless
 * the caller will put a child process there. */
static void cg_make(struct tl_cg_fx *fx, bool enter)
{
#if defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer's own memory grows by hundreds of KiB at random
	 * moments and is charged to the cgroup: too much noise. */
	print_message("ThreadSanitizer build: no cgroup measurement, skipping\n");
	skip();
#endif
	tl_cg_start(fx, "thpfs-release", enter);
}

static void punch(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)off, (off_t)len), 0);
}

/* Writes one byte at off and asserts the 4 KiB page holding it reads as that
 * byte and zeros: a page that came back with old bytes shows them here. */
static void check_fresh_page(struct thpfs_file *f, uint64_t off)
{
	static uint8_t buf[PG];
	uint8_t one = 0x5a;
	assert_int_equal(thpfs_pwrite(f, &one, 1, (off_t)off), 1);
	uint64_t pg = off & ~(PG - 1);
	assert_int_equal(thpfs_pread(f, buf, PG, (off_t)pg), (ssize_t)PG);
	for (uint64_t i = 0; i < PG; i++) {
		uint8_t want = pg + i == off ? one : 0;
		if (buf[i] != want)
			fail_msg("offset %" PRIu64 " reads 0x%02x, want 0x%02x (old bytes of a freed page)",
				 pg + i, buf[i], want);
	}
}

/* Asserts [p, p+len) is all zero. */
static void check_zero_mem(const uint8_t *p, size_t len, const char *what)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			fail_msg("%s: byte %zu is 0x%02x, want 0 (old bytes of a freed page)", what, i,
				 p[i]);
}

/*
 * The reproducer: map a page of a file, mlock it, unmap, unlink the
 * file: its memory must leave the cgroup, and a new file that gets the frame
 * must read zeros.  huge=always: a 2 MiB huge page; huge=never: a 4 KiB page.
 */
static void test_mlocked_frame(void **state, const char *opts)
{
	struct tl_cg_fx *fx = *state;
	cg_make(fx, true);
	fx->fs = tl_mount(opts);
	struct thpfs_file *a = tl_open(fx->fs, "/a", O_RDWR | O_CREAT);
	tl_write_pat(a, 0, 2 * MIB, 7);
	void *addr;
	size_t len;
	assert_int_equal(thpfs_map(a, 0, &addr, &len), 0);
	assert_int_equal(mlock(addr, len), 0);
	assert_int_equal(thpfs_unmap(a, addr), 0);
	tl_close(a);
	int64_t u0 = tl_cg_usage(&fx->cg);
	assert_int_equal(thpfs_unlink(fx->fs, "/a"), 0);
	assert_true(thpfs_reclaim(fx->fs, 0) >= 0);
	int64_t u1 = tl_cg_usage(&fx->cg);
	struct thpfs_stats s = tl_stats(fx->fs);
	printf("%s: unlink of a file with a mlocked page: cgroup fell %.1f MiB of 2.0 MiB "
	       "(bytes_released %" PRIu64 ", release_failed_bytes %" PRIu64 ")\n",
	       opts, (u0 - u1) / (double)MIB, s.bytes_released, s.release_failed_bytes);
	assert_true(u0 - u1 >= (int64_t)(2 * MIB) - tl_cg_stock());

	struct thpfs_file *b = tl_open(fx->fs, "/b", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(b, (off_t)(2 * MIB)), 0);
	check_fresh_page(b, 0);
	assert_int_equal(thpfs_map(b, 0, &addr, &len), 0);
	check_zero_mem((uint8_t *)addr + 1, len - 1, "new file's first page");
	assert_int_equal(thpfs_unmap(b, addr), 0);
	for (uint64_t off = PG; off < 2 * MIB; off += 64 * PG)
		check_fresh_page(b, off);
	tl_close(b);
}

static void test_mlocked_huge(void **state)
{
	test_mlocked_frame(state, "huge=always");
}

static void test_mlocked_base(void **state)
{
	test_mlocked_frame(state, "huge=never");
}

/* ---- mlockall in a child ---- */
#ifndef SANITIZED

#define CCHECK TL_CCHECK /* testlib.h: a check in the forked child */

static int64_t child_usage(struct thpfs_cg *cg)
{
	int64_t u = thpfs_cg_usage(cg);
	CCHECK(u > 0, "cgroup usage %" PRId64, u);
	return u;
}

static void child_write_pat(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed)
{
	static uint8_t buf[2 * MIB];
	for (uint64_t o = 0; o < len; o += sizeof(buf)) {
		size_t n = len - o < sizeof(buf) ? (size_t)(len - o) : sizeof(buf);
		tl_fill(buf, n, off + o, seed);
		CCHECK(thpfs_pwrite(f, buf, n, (off_t)(off + o)) == (ssize_t)n, "pwrite");
	}
}

/* Byte + zeros in the page at off after writing one byte (see check_fresh_page). */
static void child_fresh_page(struct thpfs_file *f, uint64_t off)
{
	static uint8_t buf[PG];
	uint8_t one = 0xa5;
	CCHECK(thpfs_pwrite(f, &one, 1, (off_t)off) == 1, "pwrite 1 byte");
	CCHECK(thpfs_pread(f, buf, PG, (off_t)off) == (ssize_t)PG, "pread");
	CCHECK(buf[0] == one, "byte at %" PRIu64, off);
	for (size_t i = 1; i < PG; i++)
		CCHECK(!buf[i], "offset %" PRIu64 " reads 0x%02x: old bytes of a freed page",
		       off + i, buf[i]);
}

/*
 * The child: mlockall(MCL_CURRENT | MCL_FUTURE) like QEMU's mem-lock=on, then
 * mount, fill, punch whole huge pages and 4 KiB pages, and judge each step
 * by the cgroup.  opts picks huge pages or base pages.
 */
static void child_locked_run(struct thpfs_cg *cg, const char *opts)
{
	CCHECK(thpfs_cg_enter(cg) == 0, "enter cgroup");
	CCHECK(mlockall(MCL_CURRENT | MCL_FUTURE) == 0, "mlockall: %s", strerror(errno));
	int64_t u0 = child_usage(cg);
	struct thpfs *fs;
	CCHECK(thpfs_mount(&fs, opts) == 0, "mount");
	struct thpfs_file *f, *g;
	CCHECK(thpfs_open(fs, "/f", O_RDWR | O_CREAT, 0644, &f) == 0, "open");
	child_write_pat(f, 0, PG, 1); /* the arenas exist now */
	int64_t u1 = child_usage(cg);
	printf("  %s: mount + first page under mlockall: +%.1f MiB\n", opts, (u1 - u0) / (double)MIB);
	CCHECK(u1 - u0 < (int64_t)(16 * MIB), "mount faulted in %.1f MiB: arena populated",
	       (u1 - u0) / (double)MIB);

	child_write_pat(f, 0, 16 * MIB, 1);
	int64_t u2 = child_usage(cg);
	printf("  %s: 16 MiB written: +%.1f MiB since mount\n", opts, (u2 - u0) / (double)MIB);
	CCHECK(u2 - u0 >= (int64_t)(15 * MIB) && u2 - u0 <= (int64_t)(20 * MIB),
	       "16 MiB of data cost %.1f MiB", (u2 - u0) / (double)MIB);

	/* whole 2 MiB pages */
	CCHECK(thpfs_fallocate(f, PUNCH, 0, (off_t)(4 * MIB)) == 0, "punch 4 MiB");
	CCHECK(thpfs_reclaim(fs, 0) >= 0, "reclaim");
	int64_t u3 = child_usage(cg);
	printf("  %s: punched 2 x 2 MiB: cgroup fell %.2f MiB\n", opts, (u2 - u3) / (double)MIB);
	/* The cgroup counts usage in per-CPU stocks of 64 pages (see below):
	 * allow one per CPU; a punch that freed nothing falls 0. */
	CCHECK(u2 - u3 >= (int64_t)(4 * MIB) - tl_cg_stock(), "punch of 4 MiB returned %.2f MiB",
	       (u2 - u3) / (double)MIB);

	/* every other 4 KiB page of the next two 2 MiB ranges */
	for (uint64_t off = 4 * MIB; off < 8 * MIB; off += 2 * PG)
		CCHECK(thpfs_fallocate(f, PUNCH, (off_t)off, (off_t)PG) == 0, "punch 4 KiB");
	CCHECK(thpfs_reclaim(fs, 0) >= 0, "reclaim");
	int64_t u4 = child_usage(cg);
	printf("  %s: punched 512 x 4 KiB: cgroup fell %.2f MiB of 2.00 MiB\n", opts,
	       (u3 - u4) / (double)MIB);
	/* Under split=migrate (what locked memory gets: MADV_FREE refuses it)
	 * the kept halves are copied to new base pages, and a charge takes a
	 * batch of 64 pages into a per-CPU stock that counts as usage: allow
	 * one batch per CPU. */
	CCHECK(u3 - u4 >= (int64_t)(2 * MIB) - tl_cg_stock(),
	       "punch of 2 MiB in 4 KiB pages returned %.2f MiB", (u3 - u4) / (double)MIB);

	/* a new file gets the freed frames: zeros only */
	CCHECK(thpfs_open(fs, "/g", O_RDWR | O_CREAT, 0644, &g) == 0, "open g");
	CCHECK(thpfs_fallocate(g, 0, 0, (off_t)(8 * MIB)) == 0, "fallocate g");
	for (uint64_t off = 0; off < 8 * MIB; off += PG)
		child_fresh_page(g, off);
	/* and the first file's punched pages come back zero */
	for (uint64_t off = 4 * MIB; off < 8 * MIB; off += 2 * PG)
		child_fresh_page(f, off);
	CCHECK(thpfs_close(g) == 0 && thpfs_close(f) == 0, "close");
	CCHECK(thpfs_unmount(fs) == 0, "unmount");
	fflush(stdout);
	_exit(0);
}
/*
 * The child: mlockall(MCL_CURRENT | MCL_FUTURE), then thpfs_mmap of a file
 * whose data already exists.  The mapping takes the file's frames (no copy);
 * the arena slots they leave are mapped afresh, and under MCL_FUTURE a new
 * writable mapping is locked and populated at once: that must not happen, or
 * the mapping doubles the memory of the data, unseen by any counter.
 */
static void child_mmap_locked(struct thpfs_cg *cg)
{
	CCHECK(thpfs_cg_enter(cg) == 0, "enter cgroup");
	CCHECK(mlockall(MCL_CURRENT | MCL_FUTURE) == 0, "mlockall: %s", strerror(errno));
	struct thpfs *fs;
	CCHECK(thpfs_mount(&fs, "huge=always,collapse=off") == 0, "mount");
	struct thpfs_file *f;
	CCHECK(thpfs_open(fs, "/f", O_RDWR | O_CREAT, 0644, &f) == 0, "open");
	child_write_pat(f, 0, 32 * MIB, 4);
	int64_t u0 = child_usage(cg);
	void *addr = NULL;
	int r = thpfs_mmap(f, 0, 32 * MIB, &addr);
	if (r == -EOPNOTSUPP) {
		printf("  thpfs_mmap needs PAGEMAP_SCAN: skipping\n");
		_exit(77);
	}
	CCHECK(r == 0, "thpfs_mmap = %d", r);
	int64_t u1 = child_usage(cg);
	printf("  mlockall: thpfs_mmap of 32 MiB of existing data: cgroup %+.1f MiB\n",
	       (u1 - u0) / (double)MIB);
	CCHECK(u1 - u0 < (int64_t)(4 * MIB), "thpfs_mmap took %.1f MiB more",
	       (u1 - u0) / (double)MIB);
	for (uint64_t off = 0; off < 32 * MIB; off += 4093)
		CCHECK(((uint8_t *)addr)[off] == tl_pat(off, 4), "mapped byte %" PRIu64, off);
	CCHECK(thpfs_munmap(f, addr, 32 * MIB) == 0, "munmap");
	int64_t u2 = child_usage(cg);
	printf("  after thpfs_munmap: cgroup %+.1f MiB\n", (u2 - u0) / (double)MIB);
	CCHECK(u2 - u0 < (int64_t)(4 * MIB), "thpfs_munmap took %.1f MiB more",
	       (u2 - u0) / (double)MIB);
	CCHECK(thpfs_close(f) == 0 && thpfs_unmount(fs) == 0, "close, unmount");
	fflush(stdout);
	_exit(0);
}
#endif

static void test_mmap_mlockall(void **state)
{
#ifdef SANITIZED
	(void)state;
	print_message("mlockall would fault in the sanitizer's shadow memory: skipping\n");
	skip();
#else
	struct tl_cg_fx *fx = *state;
	cg_make(fx, false);
	tl_cg_set_limit(&fx->cg, (int64_t)(256 * MIB));
	pid_t pid = tl_fork();
	if (pid == 0)
		child_mmap_locked(&fx->cg);
	tl_wait_child(pid);
#endif
}

static void test_mlockall(void **state, const char *opts)
{
#ifdef SANITIZED
	(void)state;
	(void)opts;
	print_message("mlockall would fault in the sanitizer's shadow memory: skipping\n");
	skip();
#else
	struct tl_cg_fx *fx = *state;
	cg_make(fx, false);
	/* A limit far below an arena: populating one gets the child killed
	 * instead of the machine's memory. */
	tl_cg_set_limit(&fx->cg, (int64_t)(256 * MIB));
	pid_t pid = tl_fork();
	if (pid == 0)
		child_locked_run(&fx->cg, opts);
	tl_wait_child(pid);
#endif
}

static void test_mlockall_huge(void **state)
{
	test_mlockall(state, "huge=always");
}

static void test_mlockall_base(void **state)
{
	test_mlockall(state, "huge=never");
}

/* ---- release failures (fault injection) ---- */

/*
 * A process_madvise batch that returns after half of its runs: the rest must
 * be released one by one, not taken as done.  64 separate pages make one
 * batch; eight batches, each made to return half, must give the cgroup all
 * 2 MiB (less the per-CPU charge stock, tl_cg_stock: one batch alone, 256
 * KiB, is within that noise), and each page must come back zero.
 */
static void test_partial_process_madvise(void **state)
{
	struct tl_cg_fx *fx = *state;
	enum { BATCHES = 8, RUNS = 64 };
	cg_make(fx, true);
	fx->fs = tl_mount("huge=never,collapse=off");
	struct thpfs_file *f = tl_open(fx->fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * BATCHES * RUNS * PG, 3);
	int64_t u0 = tl_cg_usage(&fx->cg);
	for (unsigned b = 0; b < BATCHES; b++) {
		thpfs_fault_inject_release(fx->fs, 1, 0); /* this batch's call */
		for (unsigned i = 0; i < RUNS; i++) /* the 64th flushes */
			punch(f, ((uint64_t)b * RUNS + i) * 2 * PG, PG);
	}
	thpfs_fault_inject_release(fx->fs, 0, 0);
	int64_t u1 = tl_cg_usage(&fx->cg);
	struct thpfs_stats s = tl_stats(fx->fs);
	int64_t want = (int64_t)BATCHES * RUNS * PG;
	printf("partial process_madvise x%d: cgroup fell %" PRId64 " KiB of %" PRId64
	       " KiB (stock allowance %" PRId64 " KiB); bytes_released %" PRIu64 "\n",
	       BATCHES, (u0 - u1) >> 10, want >> 10, tl_cg_stock() >> 10, s.bytes_released);
	assert_true(u0 - u1 >= want * 9 / 10 - tl_cg_stock());
	assert_int_equal(s.bytes_released, (uint64_t)want);
	assert_int_equal(s.release_failed_bytes, 0);
	for (unsigned i = 0; i < BATCHES * RUNS; i++)
		check_fresh_page(f, (uint64_t)i * 2 * PG + 100);
	tl_close(f);
}

/*
 * Every release fails (as on a kernel without MADV_DONTNEED_LOCKED, for
 * mlocked memory): the frames are zeroed in place, counted as not released,
 * and whoever gets them next reads zeros.  4 KiB pages inside a block stay
 * with the process (and charged, unreleased_bytes) until their block reuses
 * them: the cgroup confirms they were not given back and nothing claims they
 * were.  A whole 2 MiB frame is mapped afresh instead (whole_slot), which
 * frees it even though madvise refused: the cgroup sees it go, and only then
 * is it counted in bytes_released.
 */
static void test_release_failure(void **state, const char *opts, uint64_t punch_len,
				 bool whole_slot)
{
	struct tl_cg_fx *fx = *state;
	cg_make(fx, true);
	fx->fs = tl_mount(opts);
	struct thpfs_file *a = tl_open(fx->fs, "/a", O_RDWR | O_CREAT);
	tl_write_pat(a, 0, 4 * MIB, 9);
	struct thpfs_stats s0 = tl_stats(fx->fs);
	int64_t u0 = tl_cg_usage(&fx->cg);
	thpfs_fault_inject_release(fx->fs, 1, 1);
	punch(a, 0, punch_len);
	assert_true(thpfs_reclaim(fx->fs, 0) >= 0);
	thpfs_fault_inject_release(fx->fs, 0, 0);
	int64_t u1 = tl_cg_usage(&fx->cg);
	struct thpfs_stats s1 = tl_stats(fx->fs);
	printf("%s: failed releases of %" PRIu64 " KiB: cgroup fell %" PRId64
	       " KiB, release_failed_bytes +%" PRIu64 " KiB, bytes_released +%" PRIu64 "\n",
	       opts, punch_len >> 10, (u0 - u1) >> 10,
	       (s1.release_failed_bytes - s0.release_failed_bytes) >> 10,
	       s1.bytes_released - s0.bytes_released);
	assert_int_equal(s1.release_failed_bytes - s0.release_failed_bytes, punch_len);
	if (whole_slot) {
		/* mapped afresh: gone, and counted once it is */
		assert_int_equal(s1.bytes_released - s0.bytes_released, punch_len);
		assert_true(u0 - u1 >= (int64_t)punch_len - tl_cg_stock());
		assert_int_equal(s1.unreleased_bytes, 0);
		assert_int_equal(s1.shmem_bytes, s0.shmem_bytes - punch_len);
	} else {
		assert_int_equal(s1.bytes_released, s0.bytes_released);
		assert_true(u0 - u1 < (int64_t)(punch_len / 2)); /* and indeed it stayed */
		assert_int_equal(s1.unreleased_bytes, punch_len); /* still held, */
		assert_int_equal(s1.shmem_bytes, s0.shmem_bytes); /* still counted */
	}
	tl_check_zero(a, 0, punch_len);
	tl_check_pat(a, punch_len, 4 * MIB - punch_len, 9);
	/* the zeroed frames are reused and read as zeros */
	struct thpfs_file *b = tl_open(fx->fs, "/b", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(b, (off_t)punch_len), 0);
	for (uint64_t off = 0; off < punch_len; off += PG)
		check_fresh_page(b, off);
	for (uint64_t off = 0; off < punch_len; off += PG)
		check_fresh_page(a, off + 17);
	assert_int_equal(tl_stats(fx->fs).unreleased_bytes, 0); /* reused */
	tl_close(b);
	tl_close(a);
}

static void test_release_failure_huge(void **state)
{
	test_release_failure(state, "huge=always,collapse=off", 2 * MIB, true);
}

static void test_release_failure_base(void **state)
{
	test_release_failure(state, "huge=never,collapse=off", 100 * PG, false);
}

/* ---- collapse=off: the scan_sleep_ms promise ---- */

/* Whether the kernel has the page at p resident (mincore). */
static bool page_resident(void *p)
{
	unsigned char v;
	assert_int_equal(mincore(p, PG, &v), 0);
	return v & 1;
}

/*
 * Fewer pages than a batch, punched with collapse=off and no call after: the
 * kernel must have dropped them within a few scan_sleep_ms.  Judged by
 * mincore on the pages' addresses in the block (the cgroup's usage moves in
 * steps of a 64-page charge batch, more than the 128 KiB punched here; it is
 * printed too).
 */
static void test_release_without_collapse(void **state)
{
	struct tl_cg_fx *fx = *state;
	cg_make(fx, true);
	fx->fs = tl_mount("huge=never,collapse=off,scan_sleep_ms=50");
	struct thpfs_file *f = tl_open(fx->fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 1 * MIB, 5);
	void *addr;
	size_t len;
	assert_int_equal(thpfs_map_existing(f, 0, &addr, &len), 0);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	char *block = addr; /* page i of the file is at block + i * 4 KiB */
	for (unsigned i = 0; i < 32; i++)
		assert_true(page_resident(block + (size_t)i * 4 * PG));
	int64_t u0 = tl_cg_usage(&fx->cg);
	for (unsigned i = 0; i < 32; i++)
		punch(f, (uint64_t)i * 4 * PG, PG);
	usleep(150 * 1000);
	int64_t u1 = tl_cg_usage(&fx->cg);
	unsigned left = 0;
	for (unsigned i = 0; i < 32; i++)
		left += page_resident(block + (size_t)i * 4 * PG);
	printf("collapse=off,scan_sleep_ms=50: 32 x 4 KiB punched; after 150 ms %u still resident "
	       "(mincore), cgroup fell %" PRId64 " KiB of 128 KiB\n", left, (u0 - u1) >> 10);
	assert_int_equal(left, 0);
	for (unsigned i = 0; i < 32; i++)
		assert_true(page_resident(block + ((size_t)i * 4 + 1) * PG)); /* kept pages stay */
	tl_close(f);
}

/* ---- ShmemPinned ---- */

/* Pages of [p, p+len) the kernel has resident. */
static uint64_t resident_pages(void *p, size_t len)
{
	unsigned char vec[512];
	assert_true(len <= 512 * PG);
	assert_int_equal(mincore(p, len, vec), 0);
	uint64_t n = 0;
	for (size_t i = 0; i < len / PG; i++)
		n += vec[i] & 1;
	return n;
}

/* The "Name: N kB" value of thpfs_meminfo, in bytes. */
static uint64_t meminfo_kb(struct thpfs *fs, const char *name)
{
	char buf[4096];
	assert_true(thpfs_meminfo(fs, buf, sizeof(buf)) < (int)sizeof(buf));
	char *l = strstr(buf, name);
	assert_non_null(l);
	return strtoull(l + strlen(name) + 1, NULL, 10) * 1024;
}

/*
 * ShmemPinned is the memory pins hold: a pinned huge page 2 MiB, a pinned
 * base chunk its present pages.  Checked against mincore on the frames.
 */
static void test_shmem_pinned(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *h = tl_open(fs, "/h", O_RDWR | O_CREAT);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_fadvise(b, THPFS_ADV_NOHUGEPAGE), 0);
	tl_write_pat(h, 0, 2 * MIB, 1);
	tl_write_pat(b, 0, 3 * PG, 1);
	void *ha, *ba;
	size_t len;
	assert_int_equal(thpfs_map(h, 4096, &ha, &len), 0);
	assert_int_equal(thpfs_map(b, 100, &ba, &len), 0);
	char *hframe = (char *)((uintptr_t)ha & ~(uintptr_t)(HPG - 1));
	char *bblock = (char *)((uintptr_t)ba & ~(uintptr_t)(HPG - 1));
	uint64_t kernel = (resident_pages(hframe, HPG) + resident_pages(bblock, HPG)) * PG;
	struct thpfs_stats s = tl_stats(fs);
	uint64_t text = meminfo_kb(fs, "ShmemPinned:");
	printf("pinned: %" PRIu64 " chunks, pinned_bytes %" PRIu64 " KiB, ShmemPinned %" PRIu64
	       " KiB, resident in the pinned frames (mincore) %" PRIu64 " KiB\n",
	       s.pinned_pages, s.pinned_bytes >> 10, text >> 10, kernel >> 10);
	assert_int_equal(s.pinned_pages, 2);
	assert_int_equal(kernel, 2 * MIB + 3 * PG);
	assert_int_equal(s.pinned_bytes, kernel);
	assert_int_equal(text, kernel);
	assert_int_equal(thpfs_unmap(h, ha), 0);
	assert_int_equal(thpfs_unmap(b, ba), 0);
	assert_int_equal(meminfo_kb(fs, "ShmemPinned:"), 0);
	assert_int_equal(tl_stats(fs).pinned_bytes, 0);
	tl_close(h);
	tl_close(b);
}

/* ---- thpfs_reclaim under a racing allocator ---- */

struct racer {
	struct thpfs *fs;
	bool stop;      /* atomic */
	uint64_t rounds; /* atomic */
};

static void *racer_thread(void *arg)
{
	struct racer *r = arg;
	struct thpfs_file *f;
	if (thpfs_open(r->fs, "/race", O_RDWR | O_CREAT, 0644, &f))
		return NULL;
	static uint8_t buf[64 * 1024];
	memset(buf, 1, sizeof(buf));
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		for (uint64_t off = 0; off < 4 * MIB; off += 2 * MIB)
			thpfs_pwrite(f, buf, sizeof(buf), (off_t)off);
		thpfs_fallocate(f, PUNCH, 4096, 8192);
		thpfs_ftruncate(f, 0);
		__atomic_add_fetch(&r->rounds, 1, __ATOMIC_RELAXED);
	}
	thpfs_close(f);
	return NULL;
}

/* thpfs_reclaim returns bytes it freed: never negative, never more than the
 * mount ever held, while another thread allocates and frees. */
static void test_reclaim_race(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct racer r = {.fs = fs};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, racer_thread, &r), 0);
	int64_t worst = 0, most = 0;
	uint64_t calls = 0;
	double t0 = tl_now();
	while (tl_now() - t0 < 2.0) {
		int64_t n = thpfs_reclaim(fs, 0);
		if (n < worst)
			worst = n;
		if (n > most)
			most = n;
		calls++;
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	printf("%" PRIu64 " reclaims against %" PRIu64 " writer rounds: smallest %" PRId64
	       ", largest %" PRId64 "\n", calls, r.rounds, worst, most);
	assert_true(worst >= 0);
	assert_true(most <= (int64_t)(8 * MIB));
}

/* ---- A release that fails stays charged ---- */

/*
 * thpfs_free_lazy of 1 MiB in each of four 2 MiB ranges, then thpfs_reclaim
 * with every release failing (as on a kernel that refuses mlocked memory):
 * reclaim must not report (or count in reclaim_bytes) memory the cgroup did
 * not see go, and the zeroed pages stay charged to size= and Shmem until they
 * are really released or reused: another file cannot take their place (the
 * process would hold more than size=), their own file can write them again
 * without a new charge, and unlinking the file gives them back for real.
 */
/* Static buffers, so that the test's own memory does not move the cgroup
 * reading (a heap buffer may sit in AddressSanitizer's quarantine). */
static uint8_t stat_buf[MIB], stat_want[MIB];

/* Writes the pattern (or zero when seed is 0) over [off, off + len) in 1 MiB
 * pieces. */
static void write_static(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed)
{
	for (uint64_t o = off; o < off + len; o += MIB) {
		tl_fill(stat_buf, MIB, o, seed);
		assert_int_equal(thpfs_pwrite(f, stat_buf, MIB, (off_t)o), (ssize_t)MIB);
	}
}

/* Checks [off, off + len) holds the pattern (seed) or zeros (seed 0). */
static void check_static(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed)
{
	for (uint64_t o = off; o < off + len; o += MIB) {
		assert_int_equal(thpfs_pread(f, stat_buf, MIB, (off_t)o), (ssize_t)MIB);
		if (seed)
			tl_fill(stat_want, MIB, o, seed);
		else
			memset(stat_want, 0, MIB);
		if (memcmp(stat_buf, stat_want, MIB))
			fail_msg("wrong bytes in [%" PRIu64 ", +1 MiB)", o);
	}
}

static void test_failed_release_stays_charged(void **state)
{
	struct tl_cg_fx *fx = *state;
	cg_make(fx, true);
	fx->fs = tl_mount("huge=never,collapse=off,size=8m");
	memset(stat_buf, 1, MIB); /* both faulted in before the first reading */
	memset(stat_want, 1, MIB);
	int64_t ubase = tl_cg_usage(&fx->cg);
	struct thpfs_file *a = tl_open(fx->fs, "/a", O_RDWR | O_CREAT);
	write_static(a, 0, 8 * MIB, 11);
	assert_true(thpfs_reclaim(fx->fs, 0) >= 0);
	struct thpfs_stats s0 = tl_stats(fx->fs);
	int64_t u0 = tl_cg_usage(&fx->cg);
	for (uint64_t off = 0; off < 8 * MIB; off += HPG)
		assert_int_equal(thpfs_free_lazy(a, (off_t)off, (off_t)MIB), 0);
	thpfs_fault_inject_release(fx->fs, 1, 1);
	int64_t r = thpfs_reclaim(fx->fs, 0);
	int64_t u1 = tl_cg_usage(&fx->cg);
	struct thpfs_stats s1 = tl_stats(fx->fs);
	printf("4 MiB lazily freed, every release fails: thpfs_reclaim returned %.1f MiB, "
	       "reclaim_bytes +%.1f MiB, cgroup fell %.1f MiB; Shmem %.1f MiB, "
	       "release_failed_bytes +%.1f MiB\n", r / (double)MIB,
	       (s1.reclaim_bytes - s0.reclaim_bytes) / (double)MIB, (u0 - u1) / (double)MIB,
	       s1.shmem_bytes / (double)MIB,
	       (s1.release_failed_bytes - s0.release_failed_bytes) / (double)MIB);
	assert_int_equal(s1.release_failed_bytes - s0.release_failed_bytes, 4 * MIB);
	assert_true(u0 - u1 < (int64_t)MIB); /* the kernel kept it */
	assert_true(r <= (u0 - u1 > 0 ? u0 - u1 : 0) + (int64_t)MIB);
	assert_int_equal(s1.reclaim_bytes - s0.reclaim_bytes, (uint64_t)r);
	assert_int_equal(s1.shmem_bytes, 8 * MIB); /* still held */
	assert_int_equal(s1.unreleased_bytes, 4 * MIB);

	/* size= still counts them: another file gets nothing... */
	struct thpfs_file *b = tl_open(fx->fs, "/b", O_RDWR | O_CREAT);
	ssize_t w = thpfs_pwrite(b, stat_buf, MIB, 0);
	int64_t u2 = tl_cg_usage(&fx->cg);
	printf("another file's 1 MiB write: %zd; the process holds %.1f MiB with size=8m\n", w,
	       (u2 - ubase) / (double)MIB);
	assert_int_equal(w, -ENOSPC);
	assert_true(u2 - ubase <= (int64_t)(8 * MIB + MIB));
	thpfs_fault_inject_release(fx->fs, 0, 0);
	tl_close(b);

	/* ...the file itself reuses them (zeroed, no new memory)... */
	for (uint64_t off = 0; off < 8 * MIB; off += HPG) {
		check_static(a, off, MIB, 0);
		write_static(a, off, MIB, 12);
	}
	int64_t u3 = tl_cg_usage(&fx->cg);
	struct thpfs_stats s3 = tl_stats(fx->fs);
	printf("rewritten in place: cgroup %+.1f MiB, Shmem %.1f MiB\n", (u3 - u0) / (double)MIB,
	       s3.shmem_bytes / (double)MIB);
	assert_true(u3 - u0 < (int64_t)MIB);
	assert_int_equal(s3.shmem_bytes, 8 * MIB);
	assert_int_equal(s3.unreleased_bytes, 0);
	for (uint64_t off = 0; off < 8 * MIB; off += HPG) {
		check_static(a, off, MIB, 12);
		check_static(a, off + MIB, MIB, 11);
	}

	/* ...and it all goes when the file does. */
	for (uint64_t off = 0; off < 8 * MIB; off += HPG)
		assert_int_equal(thpfs_free_lazy(a, (off_t)off, (off_t)MIB), 0);
	thpfs_fault_inject_release(fx->fs, 1, 1);
	assert_true(thpfs_reclaim(fx->fs, 0) >= 0);
	thpfs_fault_inject_release(fx->fs, 0, 0);
	tl_close(a);
	assert_int_equal(thpfs_unlink(fx->fs, "/a"), 0);
	assert_true(thpfs_reclaim(fx->fs, 0) >= 0);
	int64_t u4 = tl_cg_usage(&fx->cg);
	struct thpfs_stats s4 = tl_stats(fx->fs);
	printf("file unlinked: cgroup fell %.1f MiB of 8.0 MiB, Shmem %.1f MiB\n",
	       (u0 - u4) / (double)MIB, s4.shmem_bytes / (double)MIB);
	assert_true(u0 - u4 >= (int64_t)(7 * MIB));
	assert_int_equal(s4.shmem_bytes, 0);
	assert_int_equal(s4.unreleased_bytes, 0);
	struct thpfs_statfs sf;
	assert_int_equal(thpfs_statfs(fx->fs, &sf), 0);
	assert_int_equal(sf.bfree * sf.bsize, 8 * MIB); /* size= holds nothing */
}

/*
 * Pages whose release failed (zeroed, kept charged to size=) must not follow
 * their slot's memory into a thpfs_mmap view as something else: before, the
 * record stayed with the empty slot while the pages moved, so the view
 * adopted them as file data (st_blocks doubled) and Unreleased, Shmem and
 * size= kept counting 1 MiB after the file was gone (found by review).
 */
static void test_failed_release_moves_into_view(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/a", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 1);
	assert_int_equal(thpfs_free_lazy(f, 0, (off_t)MIB), 0);
	thpfs_fault_inject_release(fs, 1, 1);
	assert_true(thpfs_reclaim(fs, 0) >= 0);
	thpfs_fault_inject_release(fs, 0, 0);
	struct thpfs_stats s = tl_stats(fs);
	assert_int_equal(s.unreleased_bytes, MIB);
	assert_int_equal(tl_blocks(f), (int64_t)(MIB / PG) * BLK_PG);
	void *v = NULL;
	assert_int_equal(thpfs_mmap(f, 0, 2 * MIB, &v), 0);
	/* the kernel holds the file's 1 MiB in the view and nothing more */
	int64_t present = tl_kernel_present_bytes(v, 2 * MIB);
	printf("after thpfs_mmap: kernel has %lld KiB present in the view, st_blocks %lld KiB\n",
	       (long long)(present >> 10), (long long)(tl_blocks(f) / 2));
	assert_int_equal(present, (int64_t)MIB);
	tl_check_pat(f, MIB, MIB, 1);
	assert_int_equal(thpfs_munmap(f, v, 2 * MIB), 0);
	assert_int_equal(tl_blocks(f), (int64_t)(MIB / PG) * BLK_PG);
	s = tl_stats(fs);
	assert_int_equal(s.unreleased_bytes, 0);
	assert_int_equal(s.shmem_bytes, MIB);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/a"), 0);
	assert_true(thpfs_reclaim(fs, 0) >= 0);
	s = tl_stats(fs);
	assert_int_equal(s.shmem_bytes, 0);
	assert_int_equal(s.unreleased_bytes, 0);
	/* and size= is whole again */
	f = tl_open(fs, "/b", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 4 * MIB, 2);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mlocked_huge, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_mlocked_base, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_mlockall_huge, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_mlockall_base, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_mmap_mlockall, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_partial_process_madvise, tl_cg_setup,
						tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_release_failure_huge, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_release_failure_base, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_release_without_collapse, tl_cg_setup,
						tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_failed_release_stays_charged, tl_cg_setup,
						tl_cg_teardown),
		TL_TEST(test_shmem_pinned, "huge=always,collapse=off"),
		TL_TEST(test_reclaim_race, "huge=always,collapse=off"),
		TL_TEST(test_failed_release_moves_into_view, "huge=never,collapse=off,size=4m"),
	};
	/* THPFS_TEST_FILTER=name runs only the matching cases. */
	const char *only = getenv("THPFS_TEST_FILTER");
	if (only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
