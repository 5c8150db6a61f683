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
#include <signal.h>
#include <sys/wait.h>

#define FILE_SIZE (256 * MIB)
#define NPAGES (FILE_SIZE / PG)
#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define SEED 20240601ULL

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
	if (!tl_cg_create(&fx->cg, "thpfs-test", "skipping"))
		skip();
	fx->made = true;
	tl_cg_enter(&fx->cg);

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

	int64_t shadow0 = tl_asan_shadow_rss();
	int64_t before = thpfs_cg_usage(&fx->cg);
	assert_true(before > 0);
	for (uint32_t i = 0; i < NPAGES / 2; i++)
		assert_int_equal(thpfs_fallocate(fx->f, PUNCH, (off_t)fx->pages[i] * PG, PG), 0);
	int64_t after = thpfs_cg_usage(&fx->cg);
	assert_true(after > 0);
	int64_t shadow = tl_asan_shadow_rss() - shadow0;
	if (shadow0 || shadow) {
		printf("AddressSanitizer shadow grew by %.1f MiB during the punches; not counted\n",
		       shadow / (double)MIB);
		after -= shadow;
	}
	*punched = NPAGES / 2 * PG;

	s = tl_stats(fx->fs);
	printf("punched: huge_frames %" PRIu64 " base_pages %" PRIu64 " splits %" PRIu64
	       " st_blocks %" PRId64 "\n",
	       s.huge_frames, s.base_pages, tl_splits(&s), tl_blocks(fx->f));
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

/* ---- where the measurement cgroup is (tools/cgroup.c) ---- */

static bool starts_with_dir(const char *s, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(s, dir, n) && s[n] == '/';
}

/* A struct thpfs_cg for reading another cgroup directory's counters. */
static struct thpfs_cg cg_at(const char *dir, int v2)
{
	struct thpfs_cg c;
	memset(&c, 0, sizeof(c));
	snprintf(c.dir, sizeof(c.dir), "%s", dir);
	c.v2 = v2;
	return c;
}

/*
 * The child is made inside the caller's own memory cgroup, so the caller's
 * limits hold for it: what the child is charged shows in the caller's
 * cgroup too (judged by the kernel's counters of both).
 */
static void test_child_inside_caller(void **state)
{
	struct cg_fx *fx = *state;
	char self[512];
	int v2;
	int r = thpfs_cg_self("memory", self, sizeof(self), &v2);
	if (r) {
		print_message("no memory cgroup (%s): skipping\n", strerror(-r));
		skip();
	}
	r = thpfs_cg_create(&fx->cg, "thpfs-test");
	if (r) {
		print_message("cannot create a child memory cgroup (%s: %s): skipping\n",
			      strerror(-r), fx->cg.why);
		skip();
	}
	fx->made = true;
	print_message("caller's cgroup %s, child %s\n", self, fx->cg.dir);
	assert_string_equal(fx->cg.home, self);
	assert_true(starts_with_dir(fx->cg.dir, self));
	struct thpfs_cg home = cg_at(self, fx->cg.v2);
	assert_int_equal(thpfs_cg_enter(&fx->cg), 0);

	/* /proc/self/cgroup now names the child */
	char now[512];
	assert_int_equal(thpfs_cg_self("memory", now, sizeof(now), &v2), 0);
	assert_string_equal(now, fx->cg.dir);

	int64_t h0 = thpfs_cg_usage(&home), c0 = thpfs_cg_usage(&fx->cg);
	assert_true(h0 > 0 && c0 >= 0);
	size_t len = 64 * MIB;
	char *p = malloc(len);
	assert_non_null(p);
	memset(p, 1, len);
	int64_t h1 = thpfs_cg_usage(&home), c1 = thpfs_cg_usage(&fx->cg);
	print_message("64 MiB touched: child +%.1f MiB, caller's cgroup +%.1f MiB\n",
		      (c1 - c0) / (double)MIB, (h1 - h0) / (double)MIB);
	assert_true(c1 - c0 >= (int64_t)(len * 9 / 10));
	assert_true(h1 - h0 >= (int64_t)(len * 9 / 10));
	free(p);
	/* the limit and memory.stat are read through the same struct */
	assert_true(thpfs_cg_limit(&fx->cg) > 0);
	assert_true(thpfs_cg_stat(&fx->cg, fx->cg.v2 ? "anon" : "rss") >= 0);
}

/*
 * cgroup v2: the caller lives in a non-root cgroup T that does not enable
 * the controller for its children.  thpfs_cg_create_v2 moves the caller into
 * a leaf of T, enables the controller in T, makes the child in T, and
 * thpfs_cg_destroy undoes it all.  With another process in T it fails with
 * -EBUSY ("no internal processes") and leaves nothing behind.
 *
 * Needs a cgroup2 mount whose root offers the controller: memory, or the
 * one named in THPFS_TEST_CG2_CTL (on a host where memory is bound to cgroup
 * v1).  If the root does not enable it for its children, the test does so
 * only with THPFS_TEST_CG2_ENABLE=1 (and disables it again), else skips.
 */
static void test_v2_leaf_and_internal_processes(void **state)
{
	(void)state;
	const char *ctl = getenv("THPFS_TEST_CG2_CTL") ? getenv("THPFS_TEST_CG2_CTL") : "memory";
	char root[512] = "", buf[512], line[2048], orig[512] = "";
	FILE *f = fopen("/proc/self/mountinfo", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char point[512], fstype[64], *dash = strstr(line, " - ");
		if (dash && sscanf(line, "%*s %*s %*s %*s %511s", point) == 1 &&
		    sscanf(dash + 3, "%63s", fstype) == 1 && !strcmp(fstype, "cgroup2"))
			snprintf(root, sizeof(root), "%s", point);
	}
	fclose(f);
	if (!root[0]) {
		print_message("no cgroup2 mount: skipping\n");
		skip();
	}
	/* our v2 cgroup, to come back to */
	f = fopen("/proc/self/cgroup", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3))
			snprintf(orig, sizeof(orig), "%s%.*s", root, (int)strcspn(line + 3, "\n"),
				 line + 3);
	fclose(f);
	if (!orig[0] || strlen(orig) == strlen(root) + 1)
		snprintf(orig, sizeof(orig), "%s", root);

	char path[700];
	snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
	f = fopen(path, "r");
	buf[0] = 0;
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	if (!strstr(buf, ctl)) {
		print_message("cgroup v2 at %s offers no %s controller (\"%.*s\"; memory is "
			      "bound to cgroup v1 here?): skipping\n", root, ctl,
			      (int)strcspn(buf, "\n"), buf);
		skip();
	}
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", root);
	f = fopen(path, "r");
	assert_non_null(f);
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	bool enabled_root = false;
	char cmd[64];
	if (!strstr(buf, ctl)) {
		if (!getenv("THPFS_TEST_CG2_ENABLE")) {
			print_message("%s is not enabled in %s; set THPFS_TEST_CG2_ENABLE=1 to let "
				      "the test enable it for a moment: skipping\n", ctl, path);
			skip();
		}
		f = fopen(path, "w");
		assert_non_null(f);
		snprintf(cmd, sizeof(cmd), "+%s", ctl);
		assert_true(fputs(cmd, f) >= 0);
		assert_int_equal(fclose(f), 0);
		enabled_root = true;
	}

	char t[600], pid[32];
	snprintf(t, sizeof(t), "%s/thpfs-test-v2-%d", root, (int)getpid());
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_int_equal(mkdir(t, 0755), 0);
	snprintf(path, sizeof(path), "%s/cgroup.procs", t);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(pid, f);
	assert_int_equal(fclose(f), 0);

	struct thpfs_cg cg;
	int r = thpfs_cg_create_v2(&cg, root, "m", ctl);
	if (r)
		print_message("create: %s (%s)\n", strerror(-r), cg.why);
	assert_int_equal(r, 0);
	print_message("child %s, caller moved to %s\n", cg.dir, cg.leaf);
	assert_true(starts_with_dir(cg.dir, t));
	assert_true(starts_with_dir(cg.leaf, t));
	assert_int_equal(thpfs_cg_enter(&cg), 0);
	char made_leaf[512];
	snprintf(made_leaf, sizeof(made_leaf), "%s", cg.leaf);
	assert_int_equal(thpfs_cg_destroy(&cg), 0);
	struct stat st;
	assert_int_equal(stat(cg.dir, &st), -1);
	assert_int_equal(stat(made_leaf, &st), -1);

	/* another process in T: the rule applies, nothing is left behind */
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		pause();
		_exit(0);
	}
	snprintf(pid, sizeof(pid), "%d", (int)child);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(pid, f);
	assert_int_equal(fclose(f), 0);
	r = thpfs_cg_create_v2(&cg, root, "m", ctl);
	print_message("with another process in T: %s (%s)\n", strerror(-r), cg.why);
	assert_int_equal(r, -EBUSY);
	assert_non_null(strstr(cg.why, "no internal processes"));
	assert_int_equal(kill(child, SIGKILL), 0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	char leaf[600];
	snprintf(leaf, sizeof(leaf), "%s/m-%d-home", t, (int)getpid());
	assert_int_equal(stat(leaf, &st), -1);

	/* back where we were */
	snprintf(path, sizeof(path), "%s/cgroup.procs", orig);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(pid, f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rmdir(t), 0);
	if (enabled_root) {
		snprintf(path, sizeof(path), "%s/cgroup.subtree_control", root);
		f = fopen(path, "w");
		assert_non_null(f);
		snprintf(cmd, sizeof(cmd), "-%s", ctl);
		fputs(cmd, f);
		assert_int_equal(fclose(f), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrate_returns_memory, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_native_returns_memory, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_inplace_keeps_memory, cg_setup, cg_teardown),
		cmocka_unit_test_setup_teardown(test_child_inside_caller, cg_setup, cg_teardown),
		cmocka_unit_test(test_v2_leaf_and_internal_processes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
