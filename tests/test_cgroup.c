/*
 * test_cgroup.c - memory is really given back to the OS.
 *
 * The process enters a child memory cgroup (tools/cgroup.h), mounts
 * huge=always, fills a 256 MiB file, and punches out half of its 4 KiB
 * pages chosen at random.  With split=native (the default) and split=migrate
 * the cgroup's usage must fall by at least 99% of the punched bytes.  With split=inplace the punched
 * pages are MADV_DONTNEED'd inside transparent huge pages, which the kernel
 * only splits later (deferred split): the usage is expected to fall by less
 * than half of the punched bytes - the trap split=migrate exists to avoid.
 * Both numbers are printed.
 *
 * Memory is charged to the cgroup of the process that faults it in, so the
 * process enters the cgroup before mounting; teardown destroys the cgroup
 * (moving the process back) even when a test fails.
 */
#include "testlib.h"
#include "cgroup.h"

#include <inttypes.h>

#define FILE_SIZE (256 * MIB)
#define NPAGES (FILE_SIZE / PG)
#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define SEED 20240601ULL

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

/* Bytes of AddressSanitizer shadow memory resident now (0 without ASan).
 * The shadow is charged to the cgroup too, so under ASan its growth during
 * the punches is taken out of the measurement (and printed). */
static int64_t asan_shadow_rss(void)
{
#ifdef ASAN
	/* x86_64 shadow: [0x7fff8000, 0x10007fff8000) */
	const unsigned long lo = 0x7fff8000UL, hi = 0x10007fff8000UL;
	char line[512];
	int64_t sum = 0;
	bool in = false;
	FILE *fp = fopen("/proc/self/smaps", "r");
	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp)) {
		unsigned long a, b;
		size_t tok = strcspn(line, " \t\n");
		if (!(tok > 0 && line[tok - 1] == ':') && sscanf(line, "%lx-%lx ", &a, &b) == 2) {
			in = a >= lo && b <= hi;
			continue;
		}
		if (in && !strncmp(line, "Rss:", 4))
			sum += strtoll(line + 4, NULL, 10) * 1024;
	}
	fclose(fp);
	return sum;
#else
	return 0;
#endif
}

struct cg_fx {
	struct thpfs_cg cg;
	bool made;
	struct thpfs *fs;
	struct thpfs_file *f;
	uint32_t *pages; /* the pages to punch */
};

static int cg_setup(void **state)
{
	struct cg_fx *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	*state = fx;
	return 0;
}

static int cg_teardown(void **state)
{
	struct cg_fx *fx = *state;
	int ret = 0;
	if (fx->f)
		thpfs_close(fx->f);
	if (fx->fs && thpfs_unmount(fx->fs))
		ret = -1;
	if (fx->made) {
		int r = thpfs_cg_destroy(&fx->cg);
		if (r) {
			fprintf(stderr, "could not remove cgroup %s: %s\n", fx->cg.dir, strerror(-r));
			ret = -1;
		}
	}
	free(fx->pages);
	free(fx);
	return ret;
}

/* Picks NPAGES / 2 distinct pages (a partial Fisher-Yates shuffle). */
static uint32_t *pick_pages(uint64_t seed)
{
	uint32_t *all = malloc(NPAGES * sizeof(*all));
	assert_non_null(all);
	for (uint32_t i = 0; i < NPAGES; i++)
		all[i] = i;
	for (uint32_t i = 0; i < NPAGES / 2; i++) {
		uint32_t j = i + (uint32_t)tl_rand_below(&seed, NPAGES - i);
		uint32_t t = all[i];
		all[i] = all[j];
		all[j] = t;
	}
	return all;
}

/* Fills the file, punches the chosen pages, returns the usage drop. */
static int64_t fill_and_punch(struct cg_fx *fx, const char *opts, uint64_t *punched)
{
	int r = thpfs_cg_create(&fx->cg, "thpfs-test");
	if (r) {
		print_message("cannot create a child memory cgroup (%s): skipping\n", strerror(-r));
		skip();
	}
	fx->made = true;
	r = thpfs_cg_enter(&fx->cg);
	if (r)
		fail_msg("cannot enter cgroup %s: %s", fx->cg.dir, strerror(-r));

	printf("seed %llu: punching %llu of %llu pages at random\n", (unsigned long long)SEED,
	       (unsigned long long)(NPAGES / 2), (unsigned long long)NPAGES);
	fx->pages = pick_pages(SEED);
	fx->fs = tl_mount(opts);
	assert_int_equal(thpfs_open(fx->fs, "/big", O_RDWR | O_CREAT, 0644, &fx->f), 0);

	size_t chunk = 8 * MIB;
	uint8_t *buf = malloc(chunk);
	assert_non_null(buf);
	for (uint64_t off = 0; off < FILE_SIZE; off += chunk) {
		tl_fill(buf, chunk, off, 1);
		assert_int_equal(thpfs_pwrite(fx->f, buf, chunk, (off_t)off), (ssize_t)chunk);
	}
	free(buf);
	struct thpfs_stats s = tl_stats(fx->fs);
	printf("filled: huge_frames %" PRIu64 " base_pages %" PRIu64 "\n", s.huge_frames,
	       s.base_pages);

	int64_t shadow0 = asan_shadow_rss();
	int64_t before = thpfs_cg_usage(&fx->cg);
	assert_true(before > 0);
	for (uint32_t i = 0; i < NPAGES / 2; i++)
		assert_int_equal(thpfs_fallocate(fx->f, PUNCH, (off_t)fx->pages[i] * PG, PG), 0);
	int64_t after = thpfs_cg_usage(&fx->cg);
	assert_true(after > 0);
	int64_t shadow = asan_shadow_rss() - shadow0;
	if (shadow0 || shadow) {
		printf("AddressSanitizer shadow grew by %.1f MiB during the punches; not counted\n",
		       shadow / (double)MIB);
		after -= shadow;
	}
	*punched = NPAGES / 2 * PG;

	s = tl_stats(fx->fs);
	printf("punched: huge_frames %" PRIu64 " base_pages %" PRIu64 " splits %" PRIu64
	       " st_blocks %" PRId64 "\n",
	       s.huge_frames, s.base_pages, s.thp_split_page, tl_blocks(fx->f));
	/* what thpfs says it holds is the unpunched half */
	assert_int_equal(tl_blocks(fx->f) * 512, (int64_t)(FILE_SIZE - *punched));
	/* spot-check content */
	for (uint32_t i = 0; i < 64; i++) {
		uint64_t pg = fx->pages[i];
		tl_check_zero(fx->f, pg * PG, PG);
		uint64_t other = fx->pages[NPAGES / 2 + i];
		tl_check_pat(fx->f, other * PG, PG, 1);
	}
	printf("cgroup usage %.1f MiB -> %.1f MiB: fell by %.1f MiB of %.1f MiB punched (%.1f%%)\n",
	       before / (double)MIB, after / (double)MIB, (before - after) / (double)MIB,
	       *punched / (double)MIB, 100.0 * (double)(before - after) / (double)*punched);
	return before - after;
}

static void test_migrate_returns_memory(void **state)
{
	struct cg_fx *fx = *state;
	uint64_t punched;
	int64_t fell = fill_and_punch(fx, "huge=always,split=migrate", &punched);
	printf("split=migrate: usage fell by %" PRId64 " bytes, punched %" PRIu64 "\n", fell, punched);
	assert_true(fell >= (int64_t)(punched * 99 / 100));
}

/* The default: the kernel splits our huge pages in place (no copy) and the
 * punched pages leave the cgroup at once. */
static void test_native_returns_memory(void **state)
{
	struct cg_fx *fx = *state;
	uint64_t punched;
	int64_t fell = fill_and_punch(fx, "huge=always", &punched);
	printf("split=native (default): usage fell by %" PRId64 " bytes, punched %" PRIu64 "\n",
	       fell, punched);
	assert_true(fell >= (int64_t)(punched * 99 / 100));
}

static void test_inplace_keeps_memory(void **state)
{
	struct cg_fx *fx = *state;
	uint64_t punched;
	if (tl_thp_sysfs() != 1) {
		print_message("THP disabled: the deferred-split trap cannot happen here\n");
		skip();
	}
	int64_t fell = fill_and_punch(fx, "huge=always,split=inplace", &punched);
	printf("split=inplace: usage fell by %" PRId64 " bytes, punched %" PRIu64 "\n", fell, punched);
	/* the kernel keeps the partly unmapped huge pages until its deferred
	 * split shrinker runs under memory pressure */
	assert_true(fell < (int64_t)(punched / 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrate_returns_memory, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_native_returns_memory, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_keeps_memory, cg_setup, cg_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
