/*
 * test_prealloc.c - the prealloc pool (prealloc=N) and collapse's retired
 * blocks, judged by the kernel: the memory cgroup the process enters (pool
 * frames are held memory and must go back when thpfs says so), PAGEMAP_SCAN
 * (every frame handed out is a huge page), and the bytes read back.
 *
 * Tests that need a cgroup (root, a memory controller) skip without one.
 */
#include "testlib.h"

#include <inttypes.h>
#include <pthread.h>
#include <time.h>

#include "cgroup.h"

/* ASan's shadow memory and quarantine are charged to the cgroup too: there
 * the memory figures are printed, not asserted (the code paths still run
 * under the sanitizers). */
#ifdef TL_ASAN
#define CG_EXACT 0
#else
#define CG_EXACT 1
#endif
#define assert_cg(cond)                                                        \
	do {                                                                   \
		if (CG_EXACT)                                                  \
			assert_true(cond);                                     \
		else if (!(cond))                                              \
			print_message("ASan build: not asserted: %s\n", #cond); \
	} while (0)

/* Enters a child memory cgroup, or skips the test. */
static void cg_enter(struct tl_cg_fx *fx)
{
#if defined(__SANITIZE_THREAD__)
	print_message("ThreadSanitizer build: no cgroup measurement, skipping\n");
	skip();
#endif
	tl_cg_start(fx, "thpfs-prealloc", true);
}

/* Waits up to ms for the pool to hold exactly want bytes; returns the last
 * value seen. */
static uint64_t wait_pool(struct thpfs *fs, uint64_t want, unsigned ms)
{
	uint64_t have = 0;
	for (unsigned t = 0; t <= ms; t += 5) {
		have = tl_stats(fs).prealloc_bytes;
		if (have == want)
			break;
		usleep(5000);
	}
	return have;
}

/* The kernel maps the 2 MiB holding file offset off with a huge PMD. */
static void assert_kernel_huge(struct thpfs_file *f, uint64_t off)
{
	void *addr;
	size_t len;
	assert_int_equal(thpfs_map_existing(f, (off_t)off, &addr, &len), 0);
	int64_t huge = tl_kernel_huge_bytes(addr, HPG);
	assert_int_equal(thpfs_unmap(f, addr), 0);
	if (huge == -EOPNOTSUPP)
		return; /* Linux < 6.7: nothing to ask */
	assert_int_equal(huge, (int64_t)HPG);
}

/*
 * The pool fills in the background after the first huge frame is used; its
 * frames are in the cgroup (held memory), a new 2 MiB range takes one (no
 * fault on the write path) and it is a huge page the kernel maps with a PMD
 * and reads as zeros; thpfs_reclaim gives the pool back and the cgroup falls
 * by its size.
 */
static void test_pool_fill_take_reclaim(void **state)
{
	struct tl_cg_fx *fx = *state;
	cg_enter(fx);
	fx->fs = tl_mount("huge=always,collapse=off,prealloc=4,scan_sleep_ms=60000");
	if (!tl_stats(fx->fs).thp_available)
		skip();
	struct thpfs_file *f = tl_open(fx->fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(tl_stats(fx->fs).prealloc_bytes, 0); /* nothing before use */
	int64_t u0 = tl_cg_usage(&fx->cg);
	tl_write_pat(f, 0, HPG, 1); /* the first frame: the pool starts filling */
	assert_int_equal(wait_pool(fx->fs, 4 * HPG, 2000), 4 * HPG);
	int64_t u1 = tl_cg_usage(&fx->cg);
	printf("prealloc=4: file 2 MiB + pool 8 MiB: cgroup rose %.2f MiB\n",
	       (double)(u1 - u0) / MIB);
	assert_cg(u1 - u0 >= (int64_t)(10 * MIB - MIB / 2));

	struct thpfs_stats s0 = tl_stats(fx->fs);
	uint8_t one = 0x77;
	assert_int_equal(thpfs_pwrite(f, &one, 1, (off_t)(HPG + 12345)), 1);
	struct thpfs_stats s1 = tl_stats(fx->fs);
	assert_int_equal(s1.prealloc_used, s0.prealloc_used + 1);
	assert_int_equal(s1.huge_frames, 2);
	assert_kernel_huge(f, HPG);
	assert_int_equal(thpfs_ftruncate(f, (off_t)(2 * HPG)), 0); /* read the whole frame */
	tl_check_zero(f, HPG, 12345);
	tl_check_zero(f, HPG + 12346, HPG - 12346);
	tl_check_pat(f, 0, HPG, 1);

	/* refilled to 4 again; then reclaim empties it and the cgroup sees it */
	assert_int_equal(wait_pool(fx->fs, 4 * HPG, 2000), 4 * HPG);
	int64_t u2 = tl_cg_usage(&fx->cg);
	int64_t freed = thpfs_reclaim(fx->fs, 0);
	int64_t u3 = tl_cg_usage(&fx->cg);
	printf("thpfs_reclaim freed %" PRId64 " MiB; cgroup fell %.2f MiB\n", freed >> 20,
	       (double)(u2 - u3) / MIB);
	assert_true(freed >= (int64_t)(4 * HPG));
	assert_int_equal(tl_stats(fx->fs).prealloc_bytes, 0);
	assert_cg(u2 - u3 >= (int64_t)(8 * MIB - MIB / 2));
	tl_check_pat(f, 0, HPG, 1);
	tl_close(f);
}

/* A pool nobody takes from goes back to the OS within two background
 * passes (scan_sleep_ms each), also with collapse=off. */
static void test_pool_idle_trim(void **state)
{
	struct tl_cg_fx *fx = *state;
	cg_enter(fx);
	fx->fs = tl_mount("huge=always,collapse=off,prealloc=3,scan_sleep_ms=50");
	if (!tl_stats(fx->fs).thp_available)
		skip();
	struct thpfs_file *f = tl_open(fx->fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, HPG, 2);
	/* it fills (it may also empty again already: an idle pass) */
	uint64_t seen = 0;
	for (unsigned t = 0; t < 400 && seen < 3 * HPG; t++) {
		{ uint64_t b = tl_stats(fx->fs).prealloc_bytes; seen = b > seen ? b : seen; }
		usleep(1000);
	}
	assert_int_equal(seen, 3 * HPG);
	assert_int_equal(wait_pool(fx->fs, 0, 1000), 0);
	int64_t u = tl_cg_usage(&fx->cg);
	printf("idle pool emptied; cgroup holds %.2f MiB (file 2 MiB)\n", (double)u / MIB);
	assert_cg(u < (int64_t)(2 * HPG + 3 * MIB / 2));
	tl_check_pat(f, 0, HPG, 2);
	tl_close(f);
}

/*
 * size= counts the pool, and data comes first: with size=8m the pool keeps
 * one frame of room free for data, and a file may still grow to the whole
 * of size= (the pool gives its frames up).
 */
static void test_pool_gives_way_to_size(void **state)
{
	struct tl_cg_fx *fx = *state;
	fx->fs = tl_mount("huge=always,collapse=off,prealloc=4,size=8m,scan_sleep_ms=60000");
	if (!tl_stats(fx->fs).thp_available)
		skip();
	struct thpfs_file *f = tl_open(fx->fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, HPG, 3);
	/* held 2 MiB: the pool grows while 2 frames of room remain: to 2 */
	assert_int_equal(wait_pool(fx->fs, 2 * HPG, 2000), 2 * HPG);
	tl_write_pat(f, HPG, 3 * HPG, 3); /* all of size= */
	struct thpfs_stats s = tl_stats(fx->fs);
	assert_int_equal(s.shmem_bytes, 8 * MIB);
	assert_int_equal(s.prealloc_bytes, 0);
	assert_int_equal(s.huge_frames, 4);
	tl_check_pat(f, 0, 4 * HPG, 3);
	uint8_t one = 1;
	assert_int_equal(thpfs_pwrite(f, &one, 1, (off_t)(4 * HPG)), -ENOSPC);
	tl_close(f);
}

/* Unmount with a full pool gives everything back (ASan: nothing leaks). */
static void test_pool_unmount(void **state)
{
	struct tl_cg_fx *fx = *state;
	cg_enter(fx);
	/* One mount, pool and unmount first: what a process keeps after its
	 * first background thread (glibc's per-thread malloc arena, the
	 * thread's stack cache) is charged once and is not the pool's; the
	 * measured cycle then sees only what the mount itself leaves. */
	int64_t u0 = 0;
	for (int cycle = 0; cycle < 2; cycle++) {
		if (cycle == 1)
			u0 = tl_cg_usage(&fx->cg);
		struct thpfs *fs = tl_mount("huge=always,prealloc=4,scan_sleep_ms=60000");
		if (!tl_stats(fs).thp_available) {
			tl_unmount(fs);
			skip();
		}
		struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
		tl_write_pat(f, 0, HPG, 4);
		tl_close(f);
		assert_int_equal(wait_pool(fs, 4 * HPG, 2000), 4 * HPG);
		tl_unmount(fs);
	}
	int64_t u1 = tl_cg_usage(&fx->cg);
	printf("after unmount the cgroup holds %.2f MiB more than before mount\n",
	       (double)(u1 - u0) / MIB);
	/* the pool was 8 MiB; malloc may keep a little of the mount's
	 * metadata for reuse */
	assert_cg(u1 - u0 < (int64_t)(2 * MIB));
}

/* Bad values of prealloc= are refused. */
static void test_prealloc_option(void **state)
{
	(void)state;
	struct thpfs *fs;
	assert_int_equal(thpfs_mount(&fs, "prealloc=65"), -EINVAL);
	assert_int_equal(thpfs_mount(&fs, "prealloc=-1"), -EINVAL);
	assert_int_equal(thpfs_mount(&fs, "prealloc=x"), -EINVAL);
	fs = tl_mount("prealloc=0");
	tl_unmount(fs);
}

/*
 * Collapse retires the old block: its pages are not released on the
 * collapse's path but within scan_sleep_ms (the memory cgroup sees them go,
 * collapse=off: the background thread's flush).
 */
static void test_collapse_retired_block(void **state)
{
	struct tl_cg_fx *fx = *state;
	cg_enter(fx);
	fx->fs = tl_mount("huge=never,collapse=off,scan_sleep_ms=50");
	if (!tl_stats(fx->fs).thp_available)
		skip();
	struct thpfs_file *f = tl_open(fx->fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * HPG, 5);
	int64_t u0 = tl_cg_usage(&fx->cg);
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(2 * HPG)), 2);
	int64_t u1 = tl_cg_usage(&fx->cg);
	assert_int_equal(tl_stats(fx->fs).huge_frames, 2);
	assert_int_equal(tl_stats(fx->fs).base_pages, 0);
	assert_kernel_huge(f, 0);
	assert_kernel_huge(f, HPG);
	usleep(200 * 1000);
	int64_t u2 = tl_cg_usage(&fx->cg);
	printf("collapse of 2 x 2 MiB: cgroup %+.2f MiB right after, %+.2f MiB 200 ms later "
	       "(scan_sleep_ms=50)\n", (double)(u1 - u0) / MIB, (double)(u2 - u0) / MIB);
	/* The background thread frees the old blocks on its own CPU, whose
	 * memory cgroup charge stock (64 pages) may then hold a batch: allow
	 * that slack per CPU (as test_release does), far below one block. */
	assert_cg(u2 - u0 <= tl_cg_stock());
	tl_check_pat(f, 0, 2 * HPG, 5);
	tl_close(f);
}

/*
 * A retired block's slot is not handed out before its pages are released.
 * A block made from a huge frame split in place lives in a huge arena; if
 * its slot came back at once, the next huge frame would be that slot with
 * the old 4 KiB pages still mapped (no huge page), and the late release
 * would then take the new file's bytes away.  No background flush here
 * (scan_sleep_ms=60000): reclaim flushes.
 */
static void test_retired_slot_not_reused(void **state)
{
	struct thpfs *fs = TL_FS(state);
	if (!tl_stats(fs).thp_available)
		skip();
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, HPG, 7);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
					 (off_t)(7 * PG), (off_t)PG), 0);
	struct thpfs_stats s = tl_stats(fs);
	if (s.huge_frames != 0)
		skip(); /* not split in place (kernel without PAGEMAP_SCAN) */
	tl_write_pat(f, 7 * PG, PG, 7); /* full again: eager collapse */
	assert_int_equal(tl_stats(fs).huge_frames, 1);
	struct thpfs_file *g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	tl_write_pat(g, 0, 2 * HPG, 8);
	assert_kernel_huge(g, 0);
	assert_kernel_huge(g, HPG);
	assert_kernel_huge(f, 0);
	thpfs_reclaim(fs, 0); /* flushes the release batch */
	tl_check_pat(g, 0, 2 * HPG, 8);
	tl_check_pat(f, 0, HPG, 7);
	tl_close(g);
	tl_close(f);
}

/*
 * Threads writing new 2 MiB ranges (taking pool frames, kicking refills)
 * while another calls thpfs_reclaim (draining the pool) and the background
 * thread refills and trims it, under a size= the pool must give way to:
 * every byte reads back, and at the end the pool and the data add up.
 * Meant for TSan as well (no memory cgroup needed).
 */
#define PA_THREADS 3
#define PA_ROUNDS 40
struct pa_worker {
	struct thpfs *fs;
	int id;
	bool *stop; /* atomic */
};

static void *pa_write_thread(void *arg)
{
	struct pa_worker *w = arg;
	char path[32];
	snprintf(path, sizeof(path), "/w%d", w->id);
	for (int r = 0; r < PA_ROUNDS; r++) {
		struct thpfs_file *f = tl_open(w->fs, path, O_RDWR | O_CREAT | O_TRUNC);
		tl_write_pat(f, 0, 2 * HPG, (unsigned)(w->id * 100 + r));
		tl_check_pat(f, 0, 2 * HPG, (unsigned)(w->id * 100 + r));
		tl_close(f);
	}
	return NULL;
}

static void *pa_reclaim_thread(void *arg)
{
	struct pa_worker *w = arg;
	while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
		assert_true(thpfs_reclaim(w->fs, 0) >= 0);
		usleep(500);
	}
	return NULL;
}

static void test_pool_concurrent(void **state)
{
	struct thpfs *fs = TL_FS(state);
	if (!tl_stats(fs).thp_available)
		skip();
	bool stop = false;
	struct pa_worker w[PA_THREADS + 1];
	pthread_t t[PA_THREADS + 1];
	for (int i = 0; i <= PA_THREADS; i++) {
		w[i] = (struct pa_worker){ fs, i, &stop };
		assert_int_equal(pthread_create(&t[i], NULL,
						i < PA_THREADS ? pa_write_thread : pa_reclaim_thread,
						&w[i]), 0);
	}
	for (int i = 0; i < PA_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(t[PA_THREADS], NULL), 0);
	struct thpfs_stats s = tl_stats(fs);
	printf("%d threads x %d new files: %" PRIu64 " frames from the pool\n", PA_THREADS,
	       PA_ROUNDS, s.prealloc_used);
	assert_int_equal(s.shmem_bytes, (uint64_t)PA_THREADS * 2 * HPG);
	assert_true(s.prealloc_bytes <= 4 * HPG);
	/* a refill kicked by the last take may still be running: the idle
	 * trim (scan_sleep_ms=5) empties the pool soon after anyway */
	thpfs_reclaim(fs, 0);
	assert_int_equal(wait_pool(fs, 0, 2000), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pool_fill_take_reclaim, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_pool_idle_trim, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_pool_gives_way_to_size, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test_setup_teardown(test_pool_unmount, tl_cg_setup, tl_cg_teardown),
		cmocka_unit_test(test_prealloc_option),
		cmocka_unit_test_setup_teardown(test_collapse_retired_block, tl_cg_setup, tl_cg_teardown),
		TL_TEST(test_retired_slot_not_reused, "huge=always,collapse=off,scan_sleep_ms=60000"),
		TL_TEST(test_pool_concurrent, "huge=always,prealloc=4,size=20m,scan_sleep_ms=5"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
