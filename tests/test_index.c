/*
 * test_index.c - white-box unit tests of the page-cache index (a 64-way
 * radix tree from chunk index to chunk) and of the 512-bit page bitmaps.
 *
 * The index stores pointers it never dereferences except for ->index in
 * _thpfs_index_next's callers, so the chunks here are plain structs with
 * only ->index set.  Keys go up to 2^25 - 1: the largest file
 * (THPFS_MAX_FILE_SIZE = 2^46) has 2^25 chunks of 2 MiB.
 */
#include "testlib.h"
#include "internal.h"

#include <inttypes.h>

#define MAX_KEY ((THPFS_MAX_FILE_SIZE >> THPFS_HUGE_SHIFT) - 1)

static struct thpfs_chunk *mk_chunk(uint64_t key)
{
	struct thpfs_chunk *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->index = key;
	return c;
}

static void test_index_empty(void **state)
{
	struct thpfs_index ix;

	(void)state;
	_thpfs_index_init(&ix);
	assert_int_equal(ix.count, 0);
	assert_null(_thpfs_index_lookup(&ix, 0));
	assert_null(_thpfs_index_lookup(&ix, MAX_KEY));
	assert_null(_thpfs_index_next(&ix, 0));
	_thpfs_index_remove(&ix, 5); /* removing a missing key is harmless */
	assert_int_equal(ix.count, 0);
	assert_true(_thpfs_index_bytes(&ix) < 1024);
	_thpfs_index_destroy(&ix);
}

static void test_index_sparse(void **state)
{
	static const uint64_t keys[] = { 0, 1, 63, 64, 4095, 4096, 262143, 262144, 1 << 24, MAX_KEY };
	const size_t n = sizeof(keys) / sizeof(keys[0]);
	struct thpfs_chunk *c[sizeof(keys) / sizeof(keys[0])];
	struct thpfs_index ix;

	(void)state;
	_thpfs_index_init(&ix);
	/* insert from the top down so the tree grows and fills in */
	for (size_t i = n; i-- > 0;) {
		c[i] = mk_chunk(keys[i]);
		assert_int_equal(_thpfs_index_insert(&ix, keys[i], c[i]), 0);
		assert_int_equal(ix.count, n - i);
	}
	for (size_t i = 0; i < n; i++) {
		assert_ptr_equal(_thpfs_index_lookup(&ix, keys[i]), c[i]);
		if (keys[i] + 1 <= MAX_KEY && (i + 1 == n || keys[i + 1] != keys[i] + 1))
			assert_null(_thpfs_index_lookup(&ix, keys[i] + 1));
	}
	assert_null(_thpfs_index_lookup(&ix, 2));
	assert_null(_thpfs_index_lookup(&ix, 4097));
	assert_null(_thpfs_index_lookup(&ix, MAX_KEY - 1));

	/* next: the first key >= the one asked */
	assert_ptr_equal(_thpfs_index_next(&ix, 0), c[0]);
	assert_ptr_equal(_thpfs_index_next(&ix, 2), c[2]);
	assert_ptr_equal(_thpfs_index_next(&ix, 64), c[3]);
	assert_ptr_equal(_thpfs_index_next(&ix, 65), c[4]);
	assert_ptr_equal(_thpfs_index_next(&ix, 4097), c[6]);
	assert_ptr_equal(_thpfs_index_next(&ix, 262145), c[8]);
	assert_ptr_equal(_thpfs_index_next(&ix, (1 << 24) + 1), c[9]);
	assert_ptr_equal(_thpfs_index_next(&ix, MAX_KEY), c[9]);
	assert_null(_thpfs_index_next(&ix, MAX_KEY + 1));

	/* remove from the middle and the ends */
	_thpfs_index_remove(&ix, 64);
	_thpfs_index_remove(&ix, 0);
	_thpfs_index_remove(&ix, MAX_KEY);
	assert_int_equal(ix.count, n - 3);
	assert_null(_thpfs_index_lookup(&ix, 64));
	assert_null(_thpfs_index_lookup(&ix, 0));
	assert_null(_thpfs_index_lookup(&ix, MAX_KEY));
	assert_ptr_equal(_thpfs_index_next(&ix, 0), c[1]);
	assert_ptr_equal(_thpfs_index_next(&ix, 64), c[4]);
	assert_null(_thpfs_index_next(&ix, (1 << 24) + 1));
	assert_ptr_equal(_thpfs_index_lookup(&ix, 63), c[2]);
	/* and insert them again */
	assert_int_equal(_thpfs_index_insert(&ix, MAX_KEY, c[9]), 0);
	assert_ptr_equal(_thpfs_index_lookup(&ix, MAX_KEY), c[9]);
	for (size_t i = 0; i < n; i++)
		_thpfs_index_remove(&ix, keys[i]);
	assert_int_equal(ix.count, 0);
	assert_null(_thpfs_index_next(&ix, 0));
	_thpfs_index_destroy(&ix);
	for (size_t i = 0; i < n; i++)
		free(c[i]);
}

/* A sparse file with a few chunks far apart needs a few tree nodes, not
 * memory in proportion to its size. */
static void test_index_bytes(void **state)
{
	struct thpfs_index ix;
	struct thpfs_chunk *c[3];
	const uint64_t keys[3] = { 0, 1 << 20, MAX_KEY };

	(void)state;
	_thpfs_index_init(&ix);
	for (int i = 0; i < 3; i++) {
		c[i] = mk_chunk(keys[i]);
		assert_int_equal(_thpfs_index_insert(&ix, keys[i], c[i]), 0);
	}
	uint64_t b = _thpfs_index_bytes(&ix);
	printf("index of 3 chunks spread over 2^25 keys: %" PRIu64 " bytes\n", b);
	assert_true(b > 0);
	/* at most 5 levels of 64-slot nodes on 3 paths */
	assert_true(b <= 16 * KIB);

	/* a dense 64 MiB file (32 chunks) stays small too */
	struct thpfs_index dense;
	struct thpfs_chunk *d[32];
	_thpfs_index_init(&dense);
	for (int i = 0; i < 32; i++) {
		d[i] = mk_chunk(i);
		assert_int_equal(_thpfs_index_insert(&dense, i, d[i]), 0);
	}
	assert_true(_thpfs_index_bytes(&dense) <= 4 * KIB);

	/* removing everything gives the nodes back */
	for (int i = 0; i < 3; i++)
		_thpfs_index_remove(&ix, keys[i]);
	for (int i = 0; i < 32; i++)
		_thpfs_index_remove(&dense, i);
	uint64_t e = _thpfs_index_bytes(&ix);
	printf("after removing them: %" PRIu64 " bytes\n", e);
	assert_true(e < b);
	assert_true(e <= 1 * KIB);
	assert_true(_thpfs_index_bytes(&dense) <= 1 * KIB);
	_thpfs_index_destroy(&ix);
	_thpfs_index_destroy(&dense);
	for (int i = 0; i < 3; i++)
		free(c[i]);
	for (int i = 0; i < 32; i++)
		free(d[i]);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* First element >= key of a sorted array, or n. */
static size_t lower_bound(const uint64_t *v, size_t n, uint64_t key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Random keys against a sorted array: lookup, next, remove half, again. */
static void test_index_random(void **state)
{
	enum { N = 20000 };
	uint64_t seed = tl_seed("test_index_random");
	uint64_t *keys = malloc(N * sizeof(*keys));
	struct thpfs_chunk *chunks = calloc(N, sizeof(*chunks));
	struct thpfs_index ix;
	size_t n = 0;

	(void)state;
	assert_non_null(keys);
	assert_non_null(chunks);
	/* a mix of clustered and scattered keys, no duplicates */
	for (size_t i = 0; i < N; i++) {
		uint64_t k = (i & 1) ? tl_rand_below(&seed, MAX_KEY + 1)
				     : (1 << 22) + tl_rand_below(&seed, 50000);
		keys[i] = k;
	}
	qsort(keys, N, sizeof(*keys), cmp_u64);
	for (size_t i = 0; i < N; i++)
		if (!n || keys[n - 1] != keys[i])
			keys[n++] = keys[i];
	/* insert in a shuffled order */
	uint64_t *order = malloc(n * sizeof(*order));
	assert_non_null(order);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j = tl_rand_below(&seed, i);
		uint64_t t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	_thpfs_index_init(&ix);
	for (size_t i = 0; i < n; i++) {
		struct thpfs_chunk *c = &chunks[order[i]];
		c->index = keys[order[i]];
		assert_int_equal(_thpfs_index_insert(&ix, c->index, c), 0);
	}
	assert_int_equal(ix.count, n);
	for (size_t i = 0; i < n; i++)
		assert_ptr_equal(_thpfs_index_lookup(&ix, keys[i]), &chunks[i]);
	for (int t = 0; t < 20000; t++) {
		uint64_t k = tl_rand_below(&seed, MAX_KEY + 2);
		size_t lb = lower_bound(keys, n, k);
		struct thpfs_chunk *want = lb < n ? &chunks[lb] : NULL;
		struct thpfs_chunk *got = _thpfs_index_next(&ix, k);
		if (got != want)
			fail_msg("next(%" PRIu64 ") = %p (key %" PRIu64 "), expected key %" PRIu64, k,
				 (void *)got, got ? got->index : 0, want ? want->index : 0);
		if (lb < n && keys[lb] == k)
			assert_ptr_equal(_thpfs_index_lookup(&ix, k), &chunks[lb]);
		else
			assert_null(_thpfs_index_lookup(&ix, k));
	}

	/* remove every other key; the rest must be untouched */
	uint64_t *akeys = malloc(n * sizeof(*akeys));
	struct thpfs_chunk **aptr = malloc(n * sizeof(*aptr));
	assert_non_null(akeys);
	assert_non_null(aptr);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (i & 1) {
			_thpfs_index_remove(&ix, keys[i]);
		} else {
			akeys[m] = keys[i];
			aptr[m] = &chunks[i];
			m++;
		}
	}
	assert_int_equal(ix.count, m);
	for (int t = 0; t < 20000; t++) {
		uint64_t k = tl_rand_below(&seed, MAX_KEY + 1);
		size_t lb = lower_bound(akeys, m, k);
		assert_ptr_equal(_thpfs_index_next(&ix, k), lb < m ? aptr[lb] : NULL);
	}
	/* walk everything with next */
	size_t walked = 0;
	for (struct thpfs_chunk *c = _thpfs_index_next(&ix, 0); c;
	     c = c->index < MAX_KEY ? _thpfs_index_next(&ix, c->index + 1) : NULL) {
		assert_true(walked < m);
		assert_ptr_equal(c, aptr[walked]);
		walked++;
	}
	assert_int_equal(walked, m);
	free(akeys);
	free(aptr);
	_thpfs_index_destroy(&ix);
	free(order);
	free(chunks);
	free(keys);
}

static void test_bitmap(void **state)
{
	thpfs_bitmap_t b;

	(void)state;
	thpfs_bitmap_zero(b);
	assert_true(thpfs_bitmap_empty(b));
	assert_int_equal(_thpfs_bitmap_find(b, 0, true), 512);
	assert_int_equal(_thpfs_bitmap_find(b, 0, false), 0);
	assert_int_equal(_thpfs_bitmap_find(b, 511, false), 511);

	_thpfs_bitmap_set_range(b, 3, 130);
	assert_int_equal(thpfs_bitmap_weight(b), 127);
	assert_false(thpfs_bit_test(b, 2));
	assert_true(thpfs_bit_test(b, 3));
	assert_true(thpfs_bit_test(b, 63));
	assert_true(thpfs_bit_test(b, 64));
	assert_true(thpfs_bit_test(b, 129));
	assert_false(thpfs_bit_test(b, 130));
	assert_int_equal(_thpfs_bitmap_find(b, 0, true), 3);
	assert_int_equal(_thpfs_bitmap_find(b, 3, false), 130);
	assert_int_equal(_thpfs_bitmap_find(b, 100, true), 100);
	assert_int_equal(_thpfs_bitmap_find(b, 130, true), 512);

	_thpfs_bitmap_clear_range(b, 64, 128);
	assert_int_equal(thpfs_bitmap_weight(b), 127 - 64);
	assert_int_equal(_thpfs_bitmap_find(b, 10, false), 64);
	assert_int_equal(_thpfs_bitmap_find(b, 64, true), 128);
	/* empty ranges change nothing */
	_thpfs_bitmap_set_range(b, 200, 200);
	_thpfs_bitmap_clear_range(b, 5, 5);
	assert_int_equal(thpfs_bitmap_weight(b), 63);

	thpfs_bitmap_fill(b);
	assert_int_equal(thpfs_bitmap_weight(b), 512);
	assert_int_equal(_thpfs_bitmap_find(b, 0, false), 512);
	_thpfs_bitmap_clear_range(b, 511, 512);
	assert_int_equal(_thpfs_bitmap_find(b, 0, false), 511);
	_thpfs_bitmap_clear_range(b, 0, 512);
	assert_true(thpfs_bitmap_empty(b));
	_thpfs_bitmap_set_range(b, 0, 512);
	assert_int_equal(thpfs_bitmap_weight(b), 512);

	/* against a byte-per-bit model */
	uint64_t seed = 12345;
	bool model[512];
	memset(model, 0, sizeof(model));
	thpfs_bitmap_zero(b);
	for (int t = 0; t < 5000; t++) {
		unsigned x = (unsigned)tl_rand_below(&seed, 513);
		unsigned y = (unsigned)tl_rand_below(&seed, 513);
		unsigned from = x < y ? x : y, to = x < y ? y : x;
		bool set = tl_rand(&seed) & 1;
		if (set)
			_thpfs_bitmap_set_range(b, from, to);
		else
			_thpfs_bitmap_clear_range(b, from, to);
		for (unsigned i = from; i < to; i++)
			model[i] = set;
		unsigned q = (unsigned)tl_rand_below(&seed, 512);
		for (int want = 0; want < 2; want++) {
			unsigned e = q;
			while (e < 512 && model[e] != want)
				e++;
			assert_int_equal(_thpfs_bitmap_find(b, q, want), e);
		}
		unsigned w = 0;
		for (unsigned i = 0; i < 512; i++)
			w += model[i];
		assert_int_equal(thpfs_bitmap_weight(b), w);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_empty),
		cmocka_unit_test(test_index_sparse),
		cmocka_unit_test(test_index_bytes),
		cmocka_unit_test(test_index_random),
		cmocka_unit_test(test_bitmap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
