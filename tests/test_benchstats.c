/*
 * test_benchstats.c - the statistics the benchmarks print (bench-common.c):
 * percentiles, and paired ratios that leave out runs with no ratio.
 */
#include "testlib.h"
#include "../bench/bench-common.h"

#include <math.h>

static void test_percentile(void **state)
{
	(void)state;
	double v[10] = { 10, 1, 9, 2, 8, 3, 7, 4, 6, 5 };
	assert_true(bench_percentile(v, 10, 0.9) == 9);
	assert_true(bench_percentile(v, 10, 0.5) == 5);
	assert_true(bench_percentile(v, 10, 1.0) == 10);
	assert_true(isnan(bench_percentile(v, 0, 0.9)));
}

/* A run where the kernel's rate was 0 (failed) has no ratio: it must not
 * count, and must not upset the sort that finds the median. */
static void test_paired_ratios_skip_nan(void **state)
{
	(void)state;
	double a[7] = { 2, 4, 6, 8, 10, 1, 1 }, b[7] = { 1, 0, 1, 0, 1, -1, 1 };
	double m[3];
	/* ratios: 2, -, 6, -, 10, -, 1 */
	int n = bench_paired_ratios(a, b, 7, m);
	printf("%d runs: median %.2f min %.2f max %.2f\n", n, m[0], m[1], m[2]);
	assert_true(m[0] == 4); /* (2 + 6) / 2 */
	assert_true(m[1] == 1);
	assert_true(m[2] == 10);
	assert_int_equal(n, 4);
	double z[2] = { 0, 0 };
	assert_int_equal(bench_paired_ratios(a, z, 2, m), 0);
	assert_true(isnan(m[0]) && isnan(m[1]) && isnan(m[2]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentile),
		cmocka_unit_test(test_paired_ratios_skip_nan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
