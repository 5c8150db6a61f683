/*
 * test_budget.c - the size= budget and the fault paths (issue 3).
 *
 * Budget: reclaim before -ENOSPC (the EOF shrinker, the deferred queue),
 * fallback to base pages when a huge page does not fit, collapse at the
 * limit, and a random test (fixed, printed seed) of writes, punches,
 * truncates and fallocates near the limit on a few files against a
 * reference model of their bytes.
 *
 * Faults (thpfs_fault_inject): a failed huge frame falls back to base
 * pages; every allocation failing gives -ENOMEM and changes nothing; a
 * migrate split without memory leaves the huge page zeroed over the range
 * and queued until reclaim; fallocate failing at any allocation leaves
 * nothing allocated.
 *
 * The budget's use is fs->held_bytes (_thpfs_held_bytes), which lags by the
 * base pages waiting in the release batch; every check flushes it first.
 * The random test checks that thpfs_reclaim frees exactly that lag, so it
 * mounts with a scan_sleep_ms long enough that the background thread (which
 * flushes the batch within scan_sleep_ms, collapse=off too) never does.
 */
#include "testlib.h"
#include "internal.h"

#include <inttypes.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)

/* ---- helpers ---- */

static void punch(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	int r = thpfs_fallocate(f, PUNCH, (off_t)off, (off_t)len);
	if (r)
		fail_msg("punch(%" PRIu64 ", %" PRIu64 ") = %d", off, len, r);
}

/* Bytes the budget holds, after the release batch is flushed. */
static uint64_t held_now(struct thpfs *fs)
{
	_thpfs_release_flush(fs);
	return _thpfs_held_bytes(fs);
}

/* Free bytes statfs reports. */
static uint64_t statfs_free(struct thpfs *fs)
{
	struct thpfs_statfs sf;
	assert_int_equal(thpfs_statfs(fs, &sf), 0);
	return sf.bfree * sf.bsize;
}

/* ---- budget: deterministic cases ---- */

/*
 * size=4m full of a 3 MiB file (two huge pages, the second straddling EOF):
 * a write to another file needs memory, so reclaim splits the EOF page
 * (freeing the 1 MiB past EOF); 2 MiB still do not fit, so the new chunk
 * falls back to base pages.  No byte of the first file changes.
 */
static void test_budget_eof_reclaim_fallback(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = tl_open(fs, "/a", O_RDWR | O_CREAT);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	tl_write_pat(a, 0, 3 * MIB, 1);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	assert_int_equal(s0.huge_frames, 2);
	assert_int_equal(held_now(fs), 4 * MIB);
	assert_int_equal(statfs_free(fs), 0);

	tl_write_pat(b, 0, PG, 2);
	s1 = tl_stats(fs);
	print_message("reclaim freed %" PRIu64 " bytes, fallback %" PRIu64 "\n",
		      s1.reclaim_bytes - s0.reclaim_bytes,
		      s1.thp_file_fallback - s0.thp_file_fallback);
	assert_int_equal(s1.thp_file_fallback, s0.thp_file_fallback + 1);
	assert_int_equal(s1.thp_split_page, s0.thp_split_page + 1);
	assert_true(s1.reclaim_bytes - s0.reclaim_bytes >= 1 * MIB);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(tl_blocks(a), (int64_t)(3 * MIB / 512));
	assert_int_equal(tl_blocks(b), BLK_PG);
	assert_true(held_now(fs) <= 4 * MIB);
	assert_int_equal(held_now(fs), 3 * MIB + PG);
	tl_check_pat(a, 0, 3 * MIB, 1);
	tl_check_pat(b, 0, PG, 2);
	tl_close(a);
	tl_close(b);
}

/* A full mount gives -ENOSPC and changes nothing; a punch makes room and
 * the next write fits (in base pages: 2 MiB do not). */
static void test_budget_enospc_recover(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = tl_open(fs, "/a", O_RDWR | O_CREAT);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	char c = 'z';
	tl_write_pat(a, 0, 4 * MIB, 3);
	struct thpfs_stats s0 = tl_stats(fs), s1;

	assert_int_equal(thpfs_pwrite(b, &c, 1, 0), -ENOSPC);
	assert_int_equal(thpfs_fallocate(b, 0, 0, (off_t)PG), -ENOSPC);
	assert_int_equal(thpfs_fallocate(a, THPFS_FALLOC_KEEP_SIZE, (off_t)(4 * MIB), (off_t)PG),
			 -ENOSPC);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	assert_int_equal(tl_size(b), 0);
	assert_int_equal(tl_blocks(b), 0);
	assert_int_equal(tl_size(a), 4 * MIB);
	assert_int_equal(thpfs_reclaim(fs, 0), 0); /* nothing could be freed */
	tl_check_pat(a, 0, 4 * MIB, 3);

	punch(a, 0, 1 * MIB);
	assert_int_equal(held_now(fs), 3 * MIB);
	assert_int_equal(statfs_free(fs), 1 * MIB);
	s0 = tl_stats(fs);
	tl_write_pat(b, 0, 1 * MIB, 4);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_file_fallback, s0.thp_file_fallback + 1);
	assert_int_equal(held_now(fs), 4 * MIB);
	assert_int_equal(thpfs_pwrite(b, &c, 1, (off_t)(1 * MIB)), -ENOSPC);
	assert_int_equal(tl_size(b), 1 * MIB);
	tl_check_zero(a, 0, 1 * MIB);
	tl_check_pat(a, 1 * MIB, 3 * MIB, 3);
	tl_check_pat(b, 0, 1 * MIB, 4);
	tl_close(a);
	tl_close(b);
}

/* At the limit a refill still collapses (the collapse may hold both copies
 * for a moment) and afterwards the budget holds exactly what it did. */
static void test_budget_collapse_at_limit(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 4 * MIB, 5);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	punch(f, 100 * PG, PG);
	assert_int_equal(held_now(fs), 4 * MIB - PG);
	tl_write_pat(f, 100 * PG, PG, 5);
	s1 = tl_stats(fs);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0) + 1);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s1.huge_frames, 2);
	assert_int_equal(s1.base_pages, 0);
	assert_int_equal(held_now(fs), 4 * MIB);
	tl_check_pat(f, 0, 4 * MIB, 5);
	tl_close(f);
}

/* thpfs_reclaim returns what it freed: the pages of huge pages past EOF,
 * and it stops once it freed what was asked for. */
static void test_budget_reclaim_call(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = tl_open(fs, "/a", O_RDWR | O_CREAT);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_reclaim(NULL, 0), -EINVAL);
	tl_write_pat(a, 0, 10, 6);
	tl_write_pat(b, 0, 10, 7);
	assert_int_equal(tl_blocks(a), BLK_HPG);
	assert_int_equal(tl_blocks(b), BLK_HPG);

	int64_t r = thpfs_reclaim(fs, PG);
	print_message("thpfs_reclaim(4096) = %" PRId64 "\n", r);
	assert_int_equal(r, 511 * PG);
	/* one file was enough */
	assert_int_equal(tl_blocks(a) + tl_blocks(b), BLK_HPG + BLK_PG);
	r = thpfs_reclaim(fs, 0);
	print_message("thpfs_reclaim(0) = %" PRId64 "\n", r);
	assert_int_equal(r, 511 * PG);
	assert_int_equal(thpfs_reclaim(fs, 0), 0);
	assert_int_equal(tl_blocks(a), BLK_PG);
	assert_int_equal(tl_blocks(b), BLK_PG);
	assert_int_equal(held_now(fs), 2 * PG);
	tl_check_pat(a, 0, 10, 6);
	tl_check_pat(b, 0, 10, 7);
	tl_close(a);
	tl_close(b);
}

/* ---- budget: random test against a reference model ---- */

#define RT_FILES 3
#define RT_FMAX (6 * MIB)        /* files stay below this */
#define RT_SIZE (10 * MIB)       /* the budget: less than the files could hold */

struct rt_file {
	struct thpfs_file *f;
	uint8_t *data; /* RT_FMAX bytes: the model; zero past size */
	uint64_t size;
};

struct rt {
	struct thpfs *fs;
	struct rt_file file[RT_FILES];
	uint8_t *buf; /* scratch, RT_FMAX */
	uint64_t rng;
	uint64_t op;
	/* what happened, printed at the end */
	uint64_t n_ok, n_short, n_nospc, max_held;
	bool trace; /* THPFS_RT_TRACE=1: print every op */
};

/* An offset below RT_FMAX: page aligned, huge aligned or any. */
static uint64_t rt_off(struct rt *t)
{
	uint64_t off = tl_rand_below(&t->rng, RT_FMAX);
	switch (tl_rand_below(&t->rng, 3)) {
	case 0:
		return off & ~(PG - 1);
	case 1:
		return off & ~(HPG - 1);
	default:
		return off;
	}
}

/* A length: small, page-sized runs, or up to 2.5 MiB. */
static uint64_t rt_len(struct rt *t)
{
	switch (tl_rand_below(&t->rng, 3)) {
	case 0:
		return 1 + tl_rand_below(&t->rng, 2 * PG);
	case 1:
		return PG * (1 + tl_rand_below(&t->rng, 128));
	default:
		return 1 + tl_rand_below(&t->rng, 5 * MIB / 2);
	}
}

/* Zeroes the model's [from, to) of file i. */
static void rt_zero(struct rt_file *m, uint64_t from, uint64_t to)
{
	if (from < to)
		memset(m->data + from, 0, to - from);
}

/*
 * After a call that returned -ENOSPC (or a short write): reclaim had run
 * inside it, so an explicit thpfs_reclaim may free only the pages still
 * waiting in the release batch (lag: held bytes minus the Shmem gauge),
 * and afterwards less than need bytes (the most that call could have
 * needed) are free.
 */
static void rt_check_full(struct rt *t, const char *what, uint64_t need, bool exact_reclaim)
{
	uint64_t held = _thpfs_held_bytes(t->fs);
	uint64_t lag = held - tl_stats(t->fs).shmem_bytes;
	int64_t r = thpfs_reclaim(t->fs, 0);
	uint64_t left = RT_SIZE - held_now(t->fs);
	if (r < 0 || (exact_reclaim && (uint64_t)r != lag))
		fail_msg("op %" PRIu64 " %s: -ENOSPC, but thpfs_reclaim then freed %" PRId64
			 " bytes (release batch %" PRIu64 ")", t->op, what, r, lag);
	if (left >= need)
		fail_msg("op %" PRIu64 " %s: -ENOSPC with %" PRIu64 " bytes free (needs <= %" PRIu64
			 ")", t->op, what, left, need);
}

static void rt_write(struct rt *t, struct rt_file *m)
{
	uint64_t off = rt_off(t), len = rt_len(t);
	if (off + len > RT_FMAX)
		len = RT_FMAX - off;
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t x = tl_rand(&t->rng);
		memcpy(t->buf + i, &x, thpfs_min(8, len - i));
	}
	ssize_t n = thpfs_pwrite(m->f, t->buf, len, (off_t)off);
	if (t->trace)
		printf("  pwrite(%" PRIu64 ", %" PRIu64 ") = %zd\n", off, len, n);
	if (n == -ENOSPC || (n >= 0 && (uint64_t)n < len)) {
		uint64_t done = n > 0 ? (uint64_t)n : 0;
		memcpy(m->data + off, t->buf, done);
		if (done && off + done > m->size)
			m->size = off + done;
		t->n_nospc += n < 0;
		t->n_short += n >= 0;
		/* the chunk that failed needed at most 2 MiB */
		rt_check_full(t, "write", HPG, true);
		return;
	}
	if (n != (ssize_t)len)
		fail_msg("op %" PRIu64 ": pwrite(%" PRIu64 ", %" PRIu64 ") = %zd", t->op, off, len, n);
	memcpy(m->data + off, t->buf, len);
	if (off + len > m->size)
		m->size = off + len;
	t->n_ok++;
}

static void rt_punch(struct rt *t, struct rt_file *m)
{
	uint64_t off = rt_off(t), len = rt_len(t);
	int r = thpfs_fallocate(m->f, PUNCH, (off_t)off, (off_t)len);
	if (t->trace)
		printf("  punch(%" PRIu64 ", %" PRIu64 ") = %d\n", off, len, r);
	if (r)
		fail_msg("op %" PRIu64 ": punch(%" PRIu64 ", %" PRIu64 ") = %d", t->op, off, len, r);
	rt_zero(m, thpfs_min(off, m->size), thpfs_min(off + len, m->size));
	t->n_ok++;
}

static void rt_truncate(struct rt *t, struct rt_file *m)
{
	uint64_t size = tl_rand_below(&t->rng, 2) && m->size ? tl_rand_below(&t->rng, m->size)
							      : rt_off(t);
	int r = thpfs_ftruncate(m->f, (off_t)size);
	if (t->trace)
		printf("  ftruncate(%" PRIu64 ") = %d\n", size, r);
	if (r)
		fail_msg("op %" PRIu64 ": ftruncate(%" PRIu64 ") = %d", t->op, size, r);
	rt_zero(m, size, m->size);
	m->size = size;
	t->n_ok++;
}

static void rt_fallocate(struct rt *t, struct rt_file *m)
{
	static const int modes[4] = { 0, THPFS_FALLOC_KEEP_SIZE, THPFS_FALLOC_ZERO_RANGE,
				      THPFS_FALLOC_ZERO_RANGE | THPFS_FALLOC_KEEP_SIZE };
	int mode = modes[tl_rand_below(&t->rng, 4)];
	uint64_t off = rt_off(t), len = rt_len(t);
	if (off + len > RT_FMAX)
		len = RT_FMAX - off;
	int64_t blocks = tl_blocks(m->f);
	int r = thpfs_fallocate(m->f, mode, (off_t)off, (off_t)len);
	if (t->trace)
		printf("  fallocate(%#x, %" PRIu64 ", %" PRIu64 ") = %d\n", mode, off, len, r);
	if (r == -ENOSPC) {
		/* nothing allocated (reclaim inside may have freed some) */
		assert_true(tl_blocks(m->f) <= blocks);
		if ((uint64_t)tl_size(m->f) != m->size)
			fail_msg("op %" PRIu64 ": fallocate -ENOSPC changed the size to %" PRId64
				 " (was %" PRIu64 ")", t->op, tl_size(m->f), m->size);
		t->n_nospc++;
		uint64_t chunks = ((off + len - 1) >> 21) - (off >> 21) + 1;
		rt_check_full(t, "fallocate", chunks * HPG, false);
		return;
	}
	if (r)
		fail_msg("op %" PRIu64 ": fallocate(%#x, %" PRIu64 ", %" PRIu64 ") = %d", t->op, mode,
			 off, len, r);
	if (!(mode & THPFS_FALLOC_KEEP_SIZE) && off + len > m->size)
		m->size = off + len;
	if (mode & THPFS_FALLOC_ZERO_RANGE)
		rt_zero(m, off, thpfs_min(off + len, m->size));
	t->n_ok++;
}

/* The checks after every op: the budget, the accounting, every byte. */
static void rt_check(struct rt *t)
{
	uint64_t held = held_now(t->fs);
	struct thpfs_stats s = tl_stats(t->fs);
	uint64_t blocks = 0;
	if (held > RT_SIZE)
		fail_msg("op %" PRIu64 ": %" PRIu64 " bytes held, size= is %llu", t->op, held,
			 (unsigned long long)RT_SIZE);
	if (held > t->max_held)
		t->max_held = held;
	assert_int_equal(held, s.shmem_bytes);
	assert_int_equal(statfs_free(t->fs), RT_SIZE - held);
	for (int i = 0; i < RT_FILES; i++) {
		struct rt_file *m = &t->file[i];
		if ((uint64_t)tl_size(m->f) != m->size)
			fail_msg("op %" PRIu64 ": file %d size %" PRId64 ", model %" PRIu64, t->op, i,
				 tl_size(m->f), m->size);
		blocks += (uint64_t)tl_blocks(m->f);
		ssize_t n = thpfs_pread(m->f, t->buf, RT_FMAX, 0);
		assert_int_equal(n, m->size);
		if (memcmp(t->buf, m->data, m->size)) {
			uint64_t k = 0;
			while (t->buf[k] == m->data[k])
				k++;
			fail_msg("op %" PRIu64 ": file %d offset %" PRIu64 " reads %#x, model %#x",
				 t->op, i, k, t->buf[k], m->data[k]);
		}
	}
	assert_int_equal(blocks * 512, s.shmem_bytes);
}

static void test_budget_random(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct rt t = { .fs = fs };
	uint64_t seed = tl_env_u64("THPFS_SEED", 0x746870667333ULL);
	uint64_t ops = tl_env_u64("THPFS_BUDGET_OPS", 600);
	char path[16];

	/* each split= mode gets its own stream from the one printed seed */
	t.rng = seed;
	for (const char *o = TL_FX(state)->opts; *o; o++)
		t.rng = (t.rng ^ (uint8_t)*o) * 0x100000001b3ULL; /* FNV-1a step */
	if (!t.rng)
		t.rng = 1;
	print_message("%s: seed %" PRIu64 " (THPFS_SEED), %" PRIu64 " ops (THPFS_BUDGET_OPS)\n",
		      TL_FX(state)->opts, seed, ops);
	t.trace = tl_env_u64("THPFS_RT_TRACE", 0);
	t.buf = malloc(RT_FMAX);
	assert_non_null(t.buf);
	for (int i = 0; i < RT_FILES; i++) {
		snprintf(path, sizeof(path), "/f%d", i);
		t.file[i].f = tl_open(fs, path, O_RDWR | O_CREAT);
		t.file[i].data = calloc(1, RT_FMAX);
		assert_non_null(t.file[i].data);
	}
	for (t.op = 0; t.op < ops; t.op++) {
		unsigned fi = (unsigned)tl_rand_below(&t.rng, RT_FILES);
		struct rt_file *m = &t.file[fi];
		unsigned what = (unsigned)tl_rand_below(&t.rng, 100);
		if (t.trace)
			printf("op %" PRIu64 ": file %u size %" PRIu64 " kind %u\n", t.op, fi,
			       m->size, what);
		if (what < 40)
			rt_write(&t, m);
		else if (what < 60)
			rt_punch(&t, m);
		else if (what < 72)
			rt_truncate(&t, m);
		else
			rt_fallocate(&t, m);
		rt_check(&t);
	}
	struct thpfs_stats s = tl_stats(fs);
	print_message("ok %" PRIu64 ", short writes %" PRIu64 ", ENOSPC %" PRIu64
		      ", most held %" PRIu64 " KiB of %llu; fallback %" PRIu64 ", splits %" PRIu64
		      ", collapses %" PRIu64 ", reclaimed %" PRIu64 " KiB\n",
		      t.n_ok, t.n_short, t.n_nospc, t.max_held >> 10,
		      (unsigned long long)RT_SIZE >> 10, s.thp_file_fallback, tl_splits(&s),
		      s.thp_collapse_alloc, s.reclaim_bytes >> 10);
	/* the test must have run into the limit to mean anything */
	assert_true(t.n_nospc + t.n_short > 0);
	for (int i = 0; i < RT_FILES; i++) {
		tl_close(t.file[i].f);
		free(t.file[i].data);
	}
	free(t.buf);
}

/* ---- fault paths ---- */

/* A failed huge frame allocation falls back to base pages; filling the
 * rest of the range later collapses it. */
static void test_fault_huge_fallback(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	struct thpfs_stats s0 = tl_stats(fs), s1;

	thpfs_fault_inject(fs, 1, 0);
	tl_write_pat(f, 100 * KIB, 64 * KIB, 1);
	thpfs_fault_inject(fs, 0, 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_file_fallback, s0.thp_file_fallback + 1);
	assert_int_equal(s1.thp_file_alloc, s0.thp_file_alloc);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 16); /* 100 KiB .. 164 KiB: pages 25..40 */
	assert_int_equal(tl_blocks(f), 16 * BLK_PG);
	tl_check_zero(f, 0, 100 * KIB);
	tl_check_pat(f, 100 * KIB, 64 * KIB, 1);

	tl_write_pat(f, 0, 100 * KIB, 1);
	tl_write_pat(f, 164 * KIB, 2 * MIB - 164 * KIB, 1);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_collapse_alloc, s0.thp_collapse_alloc + 1);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, 0);
	tl_check_pat(f, 0, 2 * MIB, 1);
	tl_close(f);
}

/* Every allocation failing: each call that needs memory fails with -ENOMEM
 * and nothing changes; calls that need none still work. */
static void test_fault_all_fail(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	char c = 'q';
	void *addr;
	size_t len;
	tl_write_pat(f, 0, 2 * MIB, 2);                  /* chunk 0: huge */
	thpfs_fault_inject(fs, 1, 0);
	tl_write_pat(f, 2 * MIB + 8 * PG, 2 * PG, 2);    /* chunk 1: 2 base pages */
	thpfs_fault_inject(fs, 0, 0);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	uint64_t held = held_now(fs);
	int64_t blocks = tl_blocks(f), size = tl_size(f);
	assert_int_equal(blocks, BLK_HPG + 2 * BLK_PG);

	thpfs_fault_inject(fs, 1, 1);
	assert_int_equal(thpfs_pwrite(f, &c, 1, (off_t)(6 * MIB)), -ENOMEM);  /* new chunk */
	assert_int_equal(thpfs_pwrite(f, &c, 1, (off_t)(2 * MIB)), -ENOMEM);  /* base hole */
	assert_int_equal(thpfs_fallocate(f, 0, (off_t)(8 * MIB), (off_t)(4 * MIB)), -ENOMEM);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_KEEP_SIZE, 0, (off_t)(4 * MIB)),
			 -ENOMEM);
	assert_int_equal(thpfs_fallocate(f, THPFS_FALLOC_ZERO_RANGE, 0, (off_t)(3 * MIB)),
			 -ENOMEM);
	struct thpfs_file *g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_pwrite(g, &c, 1, 0), -ENOMEM);
	assert_int_equal(tl_size(g), 0);
	assert_int_equal(thpfs_ftruncate(g, (off_t)(1 * MIB)), 0); /* no memory needed */
	assert_int_equal(thpfs_map(g, 5, &addr, &len), -ENOMEM);
	assert_int_equal(tl_blocks(g), 0);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	assert_int_equal(s1.pinned_pages, 0);
	assert_int_equal(held_now(fs), held);
	assert_int_equal(tl_blocks(f), blocks);
	assert_int_equal(tl_size(f), size);
	tl_check_pat(f, 0, 2 * MIB, 2);
	tl_check_zero(f, 2 * MIB, 8 * PG);
	tl_check_pat(f, 2 * MIB + 8 * PG, 2 * PG, 2);
	/* memory already held needs no allocation */
	tl_write_pat(f, 4096, 3 * PG, 3);
	tl_write_pat(f, 2 * MIB + 8 * PG, PG, 3);
	s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	thpfs_fault_inject(fs, 0, 0);
	assert_int_equal(thpfs_pwrite(g, &c, 1, 0), 1);
	tl_close(g);
	tl_close(f);
}

/*
 * A migrate split that cannot get its base pages (the 2nd populate fails,
 * so the 1st must be taken back) leaves the huge page whole with the range
 * zeroed, counts a failed split and queues the page; reclaim with memory
 * back completes the split and frees the pages.
 */
static void test_fault_split_migrate(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 2 * MIB, 4);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	uint64_t held = held_now(fs);

	/* keeping pages 0..99 and 101..511: two runs, two populates */
	thpfs_fault_inject(fs, 2, 0);
	punch(f, 100 * PG, PG);
	thpfs_fault_inject(fs, 0, 0);
	s1 = tl_stats(fs);
	assert_int_equal(s1.thp_split_page_failed, s0.thp_split_page_failed + 1);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0));
	assert_int_equal(s1.thp_deferred_split_page, s0.thp_deferred_split_page + 1);
	assert_int_equal(s1.deferred_split_queue, 1);
	assert_int_equal(s1.punch_zeroed_bytes, s0.punch_zeroed_bytes + PG);
	assert_int_equal(s1.huge_frames, 1);
	assert_int_equal(s1.base_pages, s0.base_pages); /* the first run went back */
	assert_int_equal(held_now(fs), held);
	assert_int_equal(tl_blocks(f), BLK_HPG);
	tl_check_pat(f, 0, 100 * PG, 4);
	tl_check_zero(f, 100 * PG, PG);
	tl_check_pat(f, 101 * PG, 2 * MIB - 101 * PG, 4);

	int64_t r = thpfs_reclaim(fs, 0);
	s1 = tl_stats(fs);
	print_message("reclaim after the failed split freed %" PRId64 " bytes\n", r);
	assert_int_equal(r, PG);
	assert_int_equal(s1.deferred_split_queue, 0);
	assert_int_equal(s1.thp_deferred_split_done, s0.thp_deferred_split_done + 1);
	assert_int_equal(tl_splits(&s1), tl_splits(&s0) + 1);
	assert_int_equal(s1.huge_frames, 0);
	assert_int_equal(s1.base_pages, 511);
	assert_int_equal(held_now(fs), 2 * MIB - PG);
	assert_int_equal(tl_blocks(f), BLK_HPG - BLK_PG);
	tl_check_pat(f, 0, 100 * PG, 4);
	tl_check_zero(f, 100 * PG, PG);
	tl_check_pat(f, 101 * PG, 2 * MIB - 101 * PG, 4);
	tl_close(f);
}

/*
 * fallocate failing at its 1st, 2nd, ... allocation (and every one after)
 * takes back all it allocated: st_blocks, size, gauges and bytes as before.
 * The range covers a partly present chunk and new ones.  The first nth that
 * succeeds ends the sweep; the count of allocations it took is printed.
 */
static void test_fault_fallocate_sweep(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	bool keep = false;
	uint64_t nth;

	bool huge = strstr(TL_FX(state)->opts, "huge=always");
	/* chunk 0 in base pages under any huge=: fail its huge frame */
	thpfs_fault_inject(fs, huge ? 1 : 0, 0);
	tl_write_pat(f, 8 * PG, 2 * PG, 5);
	thpfs_fault_inject(fs, 0, 0);
	tl_write_pat(f, 300 * PG, PG, 5);
	struct thpfs_stats s0 = tl_stats(fs), s1;
	int64_t blocks = tl_blocks(f), size = tl_size(f);
	uint64_t held = held_now(fs);
	assert_int_equal(blocks, 3 * BLK_PG);

	for (nth = 1; nth < 64; nth++) {
		keep = !keep;
		thpfs_fault_inject(fs, nth, 1);
		int r = thpfs_fallocate(f, keep ? THPFS_FALLOC_KEEP_SIZE : 0, 0,
					(off_t)(7 * MIB + PG));
		thpfs_fault_inject(fs, 0, 0);
		if (r == 0)
			break;
		assert_int_equal(r, -ENOMEM);
		s1 = tl_stats(fs);
		tl_same_memory(&s0, &s1);
		assert_int_equal(held_now(fs), held);
		assert_int_equal(tl_blocks(f), blocks);
		assert_int_equal(tl_size(f), size);
		tl_check_zero(f, 0, 8 * PG);
		tl_check_pat(f, 8 * PG, 2 * PG, 5);
		tl_check_zero(f, 10 * PG, 290 * PG);
		tl_check_pat(f, 300 * PG, PG, 5);
	}
	print_message("%s: fallocate failed cleanly at allocations 1..%" PRIu64
		      ", succeeded with %" PRIu64 "\n",
		      TL_FX(state)->opts, nth - 1, nth);
	assert_true(nth > 2 && nth < 64);
	/* chunks 0-2 whole, chunk 3 one page past 1 MiB (huge: whole) */
	if (huge)
		assert_int_equal(tl_blocks(f), 4 * BLK_HPG);
	else
		assert_int_equal(tl_blocks(f), 3 * BLK_HPG + 257 * BLK_PG);
	assert_int_equal(tl_size(f), keep ? size : (int64_t)(7 * MIB + PG));
	tl_check_pat(f, 8 * PG, 2 * PG, 5);
	tl_check_pat(f, 300 * PG, PG, 5);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_budget_eof_reclaim_fallback, "huge=always,collapse=off,size=4m"),
		TL_TEST(test_budget_enospc_recover, "huge=always,collapse=off,size=4m"),
		TL_TEST(test_budget_collapse_at_limit,
			"huge=always,collapse=off,size=4m,split=migrate"),
		TL_TEST(test_budget_collapse_at_limit,
			"huge=always,collapse=off,size=4m,split=inplace"),
		TL_TEST(test_budget_reclaim_call, "huge=always,collapse=off"),
		TL_TEST(test_budget_random, "huge=always,collapse=off,size=10m,split=migrate,scan_sleep_ms=3600000"),
		TL_TEST(test_budget_random, "huge=always,collapse=off,size=10m,split=inplace,scan_sleep_ms=3600000"),
		TL_TEST(test_budget_random, "huge=always,collapse=off,size=10m,split=native,scan_sleep_ms=3600000"),
		TL_TEST(test_budget_random, "huge=never,collapse=off,size=10m,scan_sleep_ms=3600000"),
		TL_TEST(test_fault_huge_fallback, "huge=always,collapse=off"),
		TL_TEST(test_fault_all_fail, "huge=always,collapse=off"),
		TL_TEST(test_fault_split_migrate, "huge=always,collapse=off,split=migrate"),
		TL_TEST(test_fault_fallocate_sweep, "huge=always,collapse=off"),
		TL_TEST(test_fault_fallocate_sweep, "huge=never,collapse=off"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
