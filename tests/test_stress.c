/*
 * test_stress.c - concurrency: many threads on one file and one directory.
 *
 * One file of 16 huge pages in which every 4 KiB page is stamped with its
 * page number (every 8-byte word holds stamp(page)).  Pages with
 * page % 50 in PUNCHED_SET (3 of every 50, not aligned to huge pages) are
 * punched and re-written over and over; every other page is never touched
 * after the initial fill.
 *   - 4 readers pread random ranges: untouched pages must hold their stamp,
 *     punched pages may hold the stamp or zeros, word by word;
 *   - 1 puncher punches the punched-set pages and writes their stamps back;
 *   - 1 writer writes stamps into punched-set pages too (racing the puncher);
 *   - 1 pinner maps random pages (pinning their chunk, so punches there are
 *     deferred), checks untouched pages through the pointer, and unmaps;
 *   - 1 lazy thread gives punched-set pages to thpfs_free_lazy and now and
 *     then runs thpfs_reclaim (which locks every file with pending pages);
 *   - 2 namespace threads create, write, rename and unlink files in one
 *     directory, and 1 lister reads it, checking the names it sees.
 * Every thread does a bounded number of iterations (and stops early once the
 * puncher has done its passes), so the test ends in seconds even if one
 * kind of thread starves the others.  At the end every page holds its stamp,
 * no pin or deferred page is left, and the directory's listing matches what
 * stat finds.
 *
 * It runs on three mounts: huge=always with each split mode (native, the
 * default, migrate and inplace).
 *
 * This is the test `make check-tsan` runs under ThreadSanitizer.
 * Environment: THPFS_STRESS_PASSES (puncher passes, default 6),
 * THPFS_STRESS_ITERS (iterations of each other thread, default 20000).
 */
#include "testlib.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>

#define NHUGE 16
#define FSIZE (NHUGE * HPG)
#define NPAGES (FSIZE / PG)
#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define NREADERS 4
#define NNAMES 16

struct stress {
	struct thpfs *fs;
	struct thpfs_file *f;
	int stop;             /* set when the puncher is done (atomic) */
	int lazy_stop;        /* the puncher's last rewrite begins (atomic) */
	int lazy_done;        /* the lazy thread has stopped (atomic) */
	int failed;           /* first failure wins (atomic) */
	char why[256];
	uint64_t reads, punches, writes, pins, ns_ops, listings, lazies, reclaims; /* atomic */
	uint64_t spins; /* the pinner's busy wait (atomic) */
	double max_punch; /* longest punch call, seconds (puncher only) */
};

static uint64_t stamp(uint64_t page)
{
	return 0x5354414d50000000ULL | page; /* "STAMP" + page */
}

static bool punched_page(uint64_t page)
{
	uint64_t r = page % 50;
	return r == 7 || r == 23 || r == 41;
}

static void stress_fail(struct stress *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void stress_fail(struct stress *s, const char *fmt, ...)
{
	int zero = 0;
	if (__atomic_compare_exchange_n(&s->failed, &zero, 1, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->why, sizeof(s->why), fmt, ap);
		va_end(ap);
	}
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
}

static bool stopped(struct stress *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_ACQUIRE);
}

/* Whether a worker should go on with iteration *i (and counts it). */
static bool more(struct stress *s, uint64_t *i)
{
	static uint64_t cap;
	if (!__atomic_load_n(&cap, __ATOMIC_RELAXED))
		__atomic_store_n(&cap, tl_env_u64("THPFS_STRESS_ITERS", 20000), __ATOMIC_RELAXED);
	return !stopped(s) && (*i)++ < __atomic_load_n(&cap, __ATOMIC_RELAXED);
}

static void count(uint64_t *c)
{
	__atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

static void fill_page(uint64_t *w, uint64_t page)
{
	for (size_t i = 0; i < PG / 8; i++)
		w[i] = stamp(page);
}

/* Checks page content read at file page `page`: every word is the stamp,
 * or (for a punched-set page) zero. */
static bool check_page(struct stress *s, const uint64_t *w, uint64_t page, const char *who)
{
	bool may_be_zero = punched_page(page);
	for (size_t i = 0; i < PG / 8; i++) {
		if (w[i] == stamp(page) || (may_be_zero && w[i] == 0))
			continue;
		stress_fail(s, "%s: page %" PRIu64 " word %zu holds %#" PRIx64 ", expected %#" PRIx64
			    "%s", who, page, i, w[i], stamp(page), may_be_zero ? " or 0" : "");
		return false;
	}
	return true;
}

static void *reader(void *arg)
{
	struct stress *s = arg;
	uint64_t seed = (uint64_t)pthread_self() | 1;
	uint64_t *buf = malloc(64 * PG), it = 0;
	if (!buf) {
		stress_fail(s, "reader: out of memory");
		return NULL;
	}
	while (more(s, &it)) {
		uint64_t first = tl_rand_below(&seed, NPAGES);
		uint64_t n = 1 + tl_rand_below(&seed, 64);
		if (first + n > NPAGES)
			n = NPAGES - first;
		ssize_t r = thpfs_pread(s->f, buf, n * PG, (off_t)(first * PG));
		if (r != (ssize_t)(n * PG)) {
			stress_fail(s, "reader: pread(page %" PRIu64 ", %" PRIu64 " pages) = %zd", first, n, r);
			break;
		}
		for (uint64_t i = 0; i < n; i++)
			if (!check_page(s, buf + i * (PG / 8), first + i, "reader"))
				break;
		count(&s->reads);
	}
	free(buf);
	return NULL;
}

static void *puncher(void *arg)
{
	struct stress *s = arg;
	uint64_t passes = tl_env_u64("THPFS_STRESS_PASSES", 6);
	uint64_t *page = malloc(PG);
	if (!page) {
		stress_fail(s, "puncher: out of memory");
		return NULL;
	}
	for (uint64_t pass = 0; pass < passes && !stopped(s); pass++) {
		for (uint64_t p = 0; p < NPAGES && !stopped(s); p++) {
			if (!punched_page(p))
				continue;
			double t = tl_now();
			int r = thpfs_fallocate(s->f, PUNCH, (off_t)(p * PG), PG);
			t = tl_now() - t;
			if (t > s->max_punch)
				s->max_punch = t;
			if (r) {
				stress_fail(s, "puncher: punch page %" PRIu64 " = %d", p, r);
				break;
			}
			count(&s->punches);
			/* every other pass leaves the hole a while */
			if (pass % 2 && p % 3)
				continue;
			fill_page(page, p);
			ssize_t w = thpfs_pwrite(s->f, page, PG, (off_t)(p * PG));
			if (w != (ssize_t)PG) {
				stress_fail(s, "puncher: rewrite page %" PRIu64 " = %zd", p, w);
				break;
			}
		}
	}
	/* no more free_lazy once the last rewrite starts */
	__atomic_store_n(&s->lazy_stop, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&s->lazy_done, __ATOMIC_ACQUIRE))
		sched_yield();
	/* leave every punched page stamped again */
	for (uint64_t p = 0; p < NPAGES && !__atomic_load_n(&s->failed, __ATOMIC_ACQUIRE); p++) {
		if (!punched_page(p))
			continue;
		fill_page(page, p);
		if (thpfs_pwrite(s->f, page, PG, (off_t)(p * PG)) != (ssize_t)PG)
			stress_fail(s, "puncher: final rewrite of page %" PRIu64 " failed", p);
	}
	free(page);
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *writer(void *arg)
{
	struct stress *s = arg;
	uint64_t seed = 0x777, it = 0;
	uint64_t *page = malloc(PG);
	if (!page) {
		stress_fail(s, "writer: out of memory");
		return NULL;
	}
	while (more(s, &it)) {
		uint64_t p = tl_rand_below(&seed, NPAGES);
		if (!punched_page(p))
			continue;
		fill_page(page, p);
		ssize_t w = thpfs_pwrite(s->f, page, PG, (off_t)(p * PG));
		if (w != (ssize_t)PG) {
			stress_fail(s, "writer: page %" PRIu64 " = %zd", p, w);
			break;
		}
		count(&s->writes);
	}
	free(page);
	return NULL;
}

static void *pinner(void *arg)
{
	struct stress *s = arg;
	uint64_t seed = 0x1234, it = 0;
	while (more(s, &it)) {
		uint64_t p = tl_rand_below(&seed, NPAGES);
		void *addr;
		size_t len;
		int r = thpfs_map(s->f, (off_t)(p * PG), &addr, &len);
		if (r) {
			stress_fail(s, "pinner: map page %" PRIu64 " = %d", p, r);
			break;
		}
		/* untouched pages are never written, so reading them through the
		 * pointer races with nothing */
		if (!punched_page(p) && len >= PG)
			check_page(s, addr, p, "pinner");
		/* hold the pin a moment (an atomic TSan understands; it does
		 * not model atomic_thread_fence) */
		for (int spin = 0; spin < 200; spin++)
			__atomic_fetch_add(&s->spins, 1, __ATOMIC_RELAXED);
		r = thpfs_unmap(s->f, addr);
		if (r) {
			stress_fail(s, "pinner: unmap page %" PRIu64 " = %d", p, r);
			break;
		}
		count(&s->pins);
	}
	return NULL;
}

static void *lazy_freer(void *arg)
{
	struct stress *s = arg;
	uint64_t seed = 0x1a2b, it = 0;
	while (!__atomic_load_n(&s->lazy_stop, __ATOMIC_ACQUIRE) && more(s, &it)) {
		uint64_t p = tl_rand_below(&seed, NPAGES);
		if (!punched_page(p))
			continue;
		int r = thpfs_free_lazy(s->f, (off_t)(p * PG), PG);
		if (r) {
			stress_fail(s, "lazy: free_lazy page %" PRIu64 " = %d", p, r);
			break;
		}
		count(&s->lazies);
		if (tl_rand_below(&seed, 16) == 0) {
			int64_t n = thpfs_reclaim(s->fs, tl_rand_below(&seed, 2) ? 0 : 64 * PG);
			if (n < 0) {
				stress_fail(s, "lazy: thpfs_reclaim = %" PRId64, n);
				break;
			}
			count(&s->reclaims);
		}
	}
	__atomic_store_n(&s->lazy_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool ok_errno(int r, int a, int b)
{
	return r == 0 || r == a || r == b;
}

static void *namespace_worker(void *arg)
{
	struct stress *s = arg;
	static int next_id;
	int id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
	uint64_t seed = 0xabc + (uint64_t)id, it = 0;
	char a[64], b[64];
	while (more(s, &it)) {
		snprintf(a, sizeof(a), "/dir/n%d", (int)tl_rand_below(&seed, NNAMES));
		snprintf(b, sizeof(b), "/dir/n%d", (int)tl_rand_below(&seed, NNAMES));
		int r;
		struct thpfs_file *f = NULL;
		switch (tl_rand_below(&seed, 4)) {
		case 0:
			r = thpfs_open(s->fs, a, O_RDWR | O_CREAT | O_EXCL, 0644, &f);
			if (!ok_errno(r, -EEXIST, -EEXIST)) {
				stress_fail(s, "create %s = %d", a, r);
				break;
			}
			if (!r) {
				ssize_t w = thpfs_pwrite(f, a, strlen(a), (off_t)(id * 3000));
				if (w != (ssize_t)strlen(a))
					stress_fail(s, "write %s = %zd", a, w);
				thpfs_close(f);
			}
			break;
		case 1:
			r = thpfs_unlink(s->fs, a);
			if (!ok_errno(r, -ENOENT, -ENOENT))
				stress_fail(s, "unlink %s = %d", a, r);
			break;
		case 2:
			r = thpfs_rename(s->fs, a, b, 0);
			if (!ok_errno(r, -ENOENT, -ENOENT))
				stress_fail(s, "rename %s %s = %d", a, b, r);
			break;
		default:
			r = thpfs_rename(s->fs, a, b, THPFS_RENAME_NOREPLACE);
			if (!ok_errno(r, -ENOENT, -EEXIST))
				stress_fail(s, "rename noreplace %s %s = %d", a, b, r);
			break;
		}
		count(&s->ns_ops);
	}
	return NULL;
}

struct listing {
	struct stress *s;
	int seen[NNAMES];
	int dots;
};

static int list_one(void *ctx, const struct thpfs_dirent *de)
{
	struct listing *l = ctx;
	int n;
	char extra;
	if (!strcmp(de->name, ".") || !strcmp(de->name, "..")) {
		l->dots++;
		return 0;
	}
	if (sscanf(de->name, "n%d%c", &n, &extra) != 1 || n < 0 || n >= NNAMES) {
		stress_fail(l->s, "readdir: unexpected name \"%s\"", de->name);
		return 1;
	}
	l->seen[n]++;
	return 0;
}

static void *lister(void *arg)
{
	struct stress *s = arg;
	uint64_t it = 0;
	while (more(s, &it)) {
		struct listing l = { .s = s };
		uint64_t cookie = 0;
		int r = thpfs_readdir(s->fs, "/dir", &cookie, list_one, &l);
		if (r < 0) {
			stress_fail(s, "readdir = %d", r);
			break;
		}
		/* a name may be renamed while we read, but never listed twice
		 * at the same cookie-ordered pass unless it moved behind us */
		if (l.dots != 2)
			stress_fail(s, "readdir saw %d dot entries", l.dots);
		count(&s->listings);
	}
	return NULL;
}

static void test_stress(void **state)
{
	struct stress *s = calloc(1, sizeof(*s));
	pthread_t th[NREADERS + 8];
	int n = 0;

	assert_non_null(s);
	s->fs = tl_mount(*state);
	s->f = tl_open(s->fs, "/data", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_mkdir(s->fs, "/dir", 0755), 0);
	uint64_t *buf = malloc(HPG);
	assert_non_null(buf);
	for (uint64_t h = 0; h < NHUGE; h++) {
		for (uint64_t i = 0; i < HPG / PG; i++)
			fill_page(buf + i * (PG / 8), h * (HPG / PG) + i);
		assert_int_equal(thpfs_pwrite(s->f, buf, HPG, (off_t)(h * HPG)), (ssize_t)HPG);
	}
	struct thpfs_stats st0 = tl_stats(s->fs);
	double t0 = tl_now();

	for (int i = 0; i < NREADERS; i++)
		assert_int_equal(pthread_create(&th[n++], NULL, reader, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, puncher, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, writer, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, pinner, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, lazy_freer, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, namespace_worker, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, namespace_worker, s), 0);
	assert_int_equal(pthread_create(&th[n++], NULL, lister, s), 0);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);

	struct thpfs_stats st = tl_stats(s->fs);
	printf("%s: %.1fs: %" PRIu64 " reads, %" PRIu64 " punches, %" PRIu64 " writes, %" PRIu64
	       " pins, %" PRIu64 " lazy frees, %" PRIu64 " reclaims, %" PRIu64
	       " namespace ops, %" PRIu64 " listings; splits %" PRIu64 ", deferred %" PRIu64
	       ", collapsed %" PRIu64 "\n",
	       (const char *)*state, tl_now() - t0, s->reads, s->punches, s->writes, s->pins,
	       s->lazies, s->reclaims, s->ns_ops, s->listings,
	       tl_splits(&st) - tl_splits(&st0),
	       st.thp_deferred_split_page - st0.thp_deferred_split_page,
	       st.thp_collapse_alloc - st0.thp_collapse_alloc);
	printf("longest punch call: %.1f ms\n", s->max_punch * 1000);
	if (s->failed)
		fail_msg("%s", s->why);
	assert_true(s->punches > 0);

	/* every page holds its stamp again */
	for (uint64_t h = 0; h < NHUGE; h++) {
		assert_int_equal(thpfs_pread(s->f, buf, HPG, (off_t)(h * HPG)), (ssize_t)HPG);
		for (uint64_t i = 0; i < HPG / PG; i++) {
			uint64_t p = h * (HPG / PG) + i;
			const uint64_t *w = buf + i * (PG / 8);
			for (size_t k = 0; k < PG / 8; k++)
				if (w[k] != stamp(p))
					fail_msg("final: page %" PRIu64 " word %zu = %#" PRIx64, p, k, w[k]);
		}
	}
	free(buf);
	assert_int_equal(tl_size(s->f), FSIZE);
	assert_int_equal(st.pinned_pages, 0);
	assert_int_equal(st.deferred_split_queue, 0);

	/* the directory: what readdir lists is what stat finds */
	struct listing l = { .s = s };
	uint64_t cookie = 0;
	assert_true(thpfs_readdir(s->fs, "/dir", &cookie, list_one, &l) >= 0);
	int listed = 0;
	for (int i = 0; i < NNAMES; i++) {
		char name[32];
		struct stat sst;
		snprintf(name, sizeof(name), "/dir/n%d", i);
		int r = thpfs_stat(s->fs, name, &sst);
		assert_true(l.seen[i] <= 1);
		assert_int_equal(r == 0, l.seen[i] == 1);
		if (!r)
			assert_int_equal(thpfs_unlink(s->fs, name), 0);
		listed += l.seen[i];
	}
	assert_int_equal(thpfs_rmdir(s->fs, "/dir"), 0);
	assert_int_equal(tl_stats(s->fs).inodes, 2);
	printf("%d names left in the directory at the end\n", listed);
	tl_close(s->f);
	assert_int_equal(thpfs_unlink(s->fs, "/data"), 0);
	st = tl_stats(s->fs);
	assert_int_equal(st.shmem_bytes, 0);
	assert_int_equal(st.inodes, 1);
	tl_unmount(s->fs);
	free(s);
}

/* ---- Two threads close the same handle ---- */

struct dclose {
	pthread_barrier_t go;
	unsigned rounds;
	struct thpfs_file *f; /* the handle both threads close this round */
	int ret[2];
};

struct dclose_arg {
	struct dclose *d;
	int me;
};

static void *dclose_thread(void *arg)
{
	struct dclose_arg *a = arg;
	struct dclose *d = a->d;
	for (unsigned r = 0; r < d->rounds; r++) {
		pthread_barrier_wait(&d->go); /* the handle is ready */
		struct thpfs_file *f = __atomic_load_n(&d->f, __ATOMIC_ACQUIRE);
		__atomic_store_n(&d->ret[a->me], thpfs_close(f), __ATOMIC_RELEASE);
		pthread_barrier_wait(&d->go); /* both closed */
	}
	return NULL;
}

/*
 * thpfs_close is safe against a concurrent second close of the same handle:
 * exactly one of them closes it (0), the other gets -EBADF, and the file's
 * open count drops once (a file still open through another handle survives
 * an unlink).  Many rounds, to hit the moment both check the handle.
 */
static void test_double_close(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct dclose d = { .rounds = (unsigned)tl_env_u64("THPFS_DCLOSE_ROUNDS", 20000) };
	struct dclose_arg arg[2] = { { &d, 0 }, { &d, 1 } };
	pthread_t t[2];
	unsigned both = 0, rounds = d.rounds;
	assert_int_equal(pthread_barrier_init(&d.go, NULL, 3), 0);
	struct thpfs_file *keep = tl_open(fs, "/x", O_RDWR | O_CREAT);
	tl_write_pat(keep, 0, PG, 3);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, dclose_thread, &arg[i]), 0);
	int a = 0, b = 0;
	for (unsigned r = 0; r < rounds; r++) {
		struct thpfs_file *f = tl_open(fs, "/x", O_RDWR);
		__atomic_store_n(&d.f, f, __ATOMIC_RELEASE);
		pthread_barrier_wait(&d.go); /* both close now */
		pthread_barrier_wait(&d.go); /* both done */
		a = __atomic_load_n(&d.ret[0], __ATOMIC_ACQUIRE);
		b = __atomic_load_n(&d.ret[1], __ATOMIC_ACQUIRE);
		both += a == 0 && b == 0;
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("%u rounds of two concurrent thpfs_close on one handle: both returned 0 in %u; "
	       "last round %d and %d\n", rounds, both, a, b);
	assert_int_equal(both, 0);
	assert_true((a == 0 && b == -EBADF) || (a == -EBADF && b == 0));
	/* The file is open through keep: unlink must leave the inode alive. */
	uint64_t inodes = tl_stats(fs).inodes;
	assert_int_equal(thpfs_unlink(fs, "/x"), 0);
	assert_int_equal(tl_stats(fs).inodes, inodes);
	tl_check_pat(keep, 0, PG, 3);
	tl_close(keep);
	assert_int_equal(tl_stats(fs).inodes, inodes - 1);
	pthread_barrier_destroy(&d.go);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		{ .name = "split=native (default)", .test_func = test_stress,
		  .initial_state = (void *)"huge=always,split=native,scan_sleep_ms=2" },
		{ .name = "split=migrate", .test_func = test_stress,
		  .initial_state = (void *)"huge=always,split=migrate,scan_sleep_ms=2" },
		{ .name = "split=inplace", .test_func = test_stress,
		  .initial_state = (void *)"huge=always,split=inplace,scan_sleep_ms=2" },
		TL_TEST(test_double_close, "huge=never"),
	};
	/* THPFS_TEST_FILTER=name runs only the matching cases. */
	const char *only = getenv("THPFS_TEST_FILTER");
	if (only)
		cmocka_set_test_filter(only);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
