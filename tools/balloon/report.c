/*
 * report.c - thpfs-balloon's output: a table for people, JSON for programs,
 * and a PNG of memory and huge-page coverage over time made by gnuplot from
 * a data file and a script written to a temporary directory.
 *
 * "returned" is the drop of the run's memory charge from the moment guest
 * RAM was written (after the workload) to after inflate + report (before
 * the host asks) and to after the host asked; the ratio divides the latter
 * by the bytes the guest gave away (ballooned + reported).
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static double mib(double bytes)
{
	return bytes / (double)BL_MIB;
}

static double given_bytes(const struct bl_result *r)
{
	return (double)(r->ballooned + r->reported);
}

static double returned_before_ask(const struct bl_result *r)
{
	return (double)(r->mem_fill - r->mem_report);
}

static double returned(const struct bl_result *r)
{
	return (double)(r->mem_fill - r->mem_ask);
}

static double ratio(double ret, const struct bl_result *r)
{
	return given_bytes(r) > 0 ? ret / given_bytes(r) : 0.0;
}

static double per_s(double n, double s)
{
	return s > 0 ? n / s : 0.0;
}

static const struct bl_result *first_ok(const struct bl_result *r, int n)
{
	for (int i = 0; i < n; i++)
		if (r[i].status == BL_RUN_OK)
			return &r[i];
	return NULL;
}

static const char *status_name(int s)
{
	return s == BL_RUN_OK ? "ok" : s == BL_RUN_SKIPPED ? "skipped" : "failed";
}

/* ---- Table ---- */

/* cgroup v1 charges in per-CPU batches of 64 pages: a reading may be off by
 * that much per CPU. */
static double noise_mib(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return (double)(n > 0 ? n : 1) * 64 * BL_PAGE_SIZE / (double)BL_MIB;
}

/* A returned-memory figure: within the noise of a cgroup reading it is
 * printed as "~0" (nothing measurable), not as a small negative number. */
static void print_mib(double bytes, int width)
{
	double m = mib(bytes);

	if (fabs(m) <= noise_mib())
		printf(" %*s", width, "~0");
	else
		printf(" %*.1f", width, m);
}

static void print_pct(double v, bool ok, int width)
{
	if (ok)
		printf(" %*.1f", width, 100 * v);
	else
		printf(" %*s", width, "?");
}

static const struct bl_result *find(const struct bl_result *r, int n, int b, int p)
{
	for (int i = 0; i < n; i++)
		if (r[i].backend == b && r[i].policy == p && r[i].status == BL_RUN_OK)
			return &r[i];
	return NULL;
}

/* ret as % of what the guest gave away; within a reading's noise of 0 or of
 * all of it, 0% or 100% (a charge batch can make it read 100.1%). */
static double pct_of_given(double ret, const struct bl_result *r)
{
	double v = 100 * ratio(ret, r);

	if (fabs(mib(ret)) <= noise_mib())
		return 0.0;
	if (v > 100 && mib(ret - given_bytes(r)) <= noise_mib())
		return 100.0;
	return v;
}

/* One sentence per backend: what each policy gave back at once and when
 * asked, and the huge pages it kept. */
static void print_conclusion(const struct bl_result *r, int n, int b)
{
	const struct bl_result *x;
	bool first = true;

	printf("%s:", bl_backend_name(b));
	for (int p = 0; p < BL_NR_POLICIES; p++) {
		if (!(x = find(r, n, b, p)))
			continue;
		printf("%s %s gives back %.1f%% at once", first ? "" : ";",
		       bl_policy_name(p), pct_of_given(returned_before_ask(x), x));
		if (x->policy == BL_LAZY || x->policy == BL_WHOLE_LAZY)
			printf(", %.1f%% when asked (%.0f ms)", pct_of_given(returned(x), x),
			       1000 * x->ask_s);
		if (x->cov_ok)
			printf(" keeping %.0f%% huge", 100 * x->cov_inflate);
		first = false;
	}
	if ((x = find(r, n, b, BL_SPLIT)) && x->cov_ok)
		printf("; after deflate + rewrite split is %.0f%% huge, %.0f%% after the "
		       "explicit collapse", 100 * x->cov_deflate, 100 * x->cov_collapse);
	printf(".\n");
}

void bl_print_table(const struct bl_config *cfg, const struct bl_result *r, int n)
{
	const struct bl_result *f = first_ok(r, n);

	if (cfg->tr)
		printf("thpfs-balloon: replay of %s: guest RAM %llu MiB, %llu MiB ballooned in %llu "
		       "requests, %llu MiB reported\n", cfg->trace,
		       (unsigned long long)(cfg->size / BL_MIB),
		       (unsigned long long)(cfg->target / BL_MIB),
		       (unsigned long long)cfg->tr->reqs,
		       (unsigned long long)(cfg->tr->block_pages >> 8));
	else
		printf("thpfs-balloon: guest RAM %llu MiB, balloon target %llu MiB, free memory "
		       "%.0f%% of RAM, frag %.2f, seed %llu\n",
		       (unsigned long long)(cfg->size / BL_MIB),
		       (unsigned long long)(cfg->target / BL_MIB), 100 * cfg->free_frac, cfg->frag,
		       (unsigned long long)cfg->seed);
	if (f && !cfg->tr)
		printf("guest free memory after the workload: %.1f MiB, %.1f MiB of it in free "
		       "blocks of 2 MiB or more\n", mib((double)f->free_bytes),
		       mib((double)f->free_huge_bytes));
	if (f)
		printf("memory: %s usage of each run (noise of a reading: %.1f MiB, shown as ~0); "
		       "huge pages: the kernel's PAGEMAP_SCAN;\nguest RAM access: thpfs %s, kernel "
		       "%s; free page reporting: %s\n", f->mem_source, noise_mib(),
		       find(r, n, BL_THPFS, f->policy) ? find(r, n, BL_THPFS, f->policy)->guest_path : "-",
		       find(r, n, BL_KERNEL, f->policy) ? find(r, n, BL_KERNEL, f->policy)->guest_path : "-",
		       cfg->tr ? "as recorded" : cfg->report ? "on" : "off");

	printf("\nMemory given back to the host (MiB) and the cost of the discards\n");
	printf("%-7s %-12s %8s %7s %8s %8s %6s %8s %9s %7s %6s %4s\n", "backend", "policy",
	       "balloon", "report", "at once", "asked", "ratio", "inflate", "pages/s", "ask",
	       "msgs", "max");
	printf("%-7s %-12s %8s %7s %8s %8s %6s %8s %9s %7s %6s %4s\n", "", "", "MiB", "MiB", "MiB",
	       "MiB", "%", "ms", "", "ms", "", "pfns");
	for (int i = 0; i < n; i++) {
		const struct bl_result *x = &r[i];

		if (x->status != BL_RUN_OK)
			continue;
		printf("%-7s %-12s %8.1f %7.1f", bl_backend_name(x->backend),
		       bl_policy_name(x->policy), mib((double)x->ballooned),
		       mib((double)x->reported));
		print_mib(returned_before_ask(x), 8);
		print_mib(returned(x), 8);
		printf(" %5.1f%% %8.1f %9.0f %7.1f %6llu %4u\n", pct_of_given(returned(x), x),
		       1000 * x->inflate_s,
		       per_s((double)(x->ballooned >> BL_PAGE_SHIFT), x->inflate_s),
		       1000 * x->ask_s, (unsigned long long)(x->inflate_msgs + x->deflate_msgs),
		       x->max_msg_pfns);
	}
	printf("balloon: pages the driver inflated; report: free blocks of 2 MiB or more the "
	       "reporting worker\nreported after inflate; at once: drop of the run's memory "
	       "from the filled guest to after\ninflate + report; asked: to after the host "
	       "asked for all memory back (only lazy and\nwhole-lazy have anything left to "
	       "free then); ratio: asked / (balloon + report); inflate:\nwall time of the "
	       "inflate without the plot's samples; pages/s: pages ballooned per second\nof it; "
	       "ask: time the host spent freeing when it asked; msgs: inflate + deflate "
	       "messages;\nmax pfns: frames in the largest message (virtio limit 256).\n");

	printf("\nHuge pages (%% of guest RAM mapped huge, kernel's view) and guest memory speed\n");
	printf("%-7s %-12s %-34s %6s %-14s %-20s %s\n", "backend", "policy",
	       "huge-page coverage %", "splits", "collapses", "chase ns/load", "check");
	printf("%-7s %-12s %6s %6s %6s %6s %6s %6s %6s %7s %6s %6s %6s  %s\n", "", "", "fill",
	       "infl.", "asked", "defl.", "coll.", "", "eager", "explicit", "before", "infl.",
	       "after", "");
	for (int i = 0; i < n; i++) {
		const struct bl_result *x = &r[i];
		char check[32];

		if (x->status != BL_RUN_OK)
			continue;
		uint64_t bad = x->bad_kept + x->bad_zero + x->bad_rewrite;

		if (bad)
			snprintf(check, sizeof(check), "BAD %llu", (unsigned long long)bad);
		else
			snprintf(check, sizeof(check), "ok");
		printf("%-7s %-12s", bl_backend_name(x->backend), bl_policy_name(x->policy));
		print_pct(x->cov_fill, x->cov_ok, 6);
		print_pct(x->cov_inflate, x->cov_ok, 6);
		print_pct(x->cov_ask, x->cov_ok, 6);
		print_pct(x->cov_deflate, x->cov_ok, 6);
		print_pct(x->cov_collapse, x->cov_ok, 6);
		printf(" %6llu %6llu %7llu %6.0f %6.0f %6.0f  %s\n",
		       (unsigned long long)(x->c_ask.split - x->c_fill.split),
		       (unsigned long long)(x->c_deflate.collapse_alloc - x->c_ask.collapse_alloc),
		       (unsigned long long)(x->c_collapse.collapse_alloc - x->c_deflate.collapse_alloc),
		       x->read_ns_before, x->read_ns_inflated, x->read_ns_after, check);
	}
	printf("coverage after fill, after inflate + report, after the host asked, after "
	       "deflate + rewrite,\nafter the explicit collapse (thpfs_collapse / "
	       "MADV_COLLAPSE); splits: huge pages split\nuntil the host asked; collapses: "
	       "made during the rewrite (eager) and by the collapse call\n(explicit); kernel "
	       "splits/collapses are global /proc/vmstat deltas; chase ns/load: one load\nof "
	       "a pointer chase stored in the guest's own pages, over all guest RAM before "
	       "and after,\nover the pages the guest kept while inflated; check: every page "
	       "held what it must.\n");
	for (int i = 0; i < n; i++)
		if (r[i].status != BL_RUN_OK)
			printf("%s %s: %s: %s\n", bl_backend_name(r[i].backend),
			       bl_policy_name(r[i].policy), status_name(r[i].status), r[i].msg);
	if (f) {
		printf("\nIn short (%% of what the guest gave away, balloon + report):\n");
		for (int b = 0; b < BL_NR_BACKENDS; b++)
			for (int p = 0; p < BL_NR_POLICIES; p++)
				if (find(r, n, b, p)) {
					print_conclusion(r, n, b);
					break;
				}
		for (int p = 0; p < BL_NR_POLICIES; p++) {
			const struct bl_result *a = find(r, n, BL_THPFS, p), *k = find(r, n, BL_KERNEL, p);

			double ra, rk;

			/* a rate, and so a ratio, only of work done on both sides */
			if (p != BL_SPLIT || !a || !k || !(a->ballooned >> BL_PAGE_SHIFT) ||
			    !(k->ballooned >> BL_PAGE_SHIFT) || a->inflate_s <= 0 || k->inflate_s <= 0)
				continue;
			ra = per_s((double)(a->ballooned >> BL_PAGE_SHIFT), a->inflate_s);
			rk = per_s((double)(k->ballooned >> BL_PAGE_SHIFT), k->inflate_s);
			printf("split inflates at %.0f pages/s on thpfs and %.0f on the kernel "
			       "(thpfs at %.2fx the kernel's rate).\n", ra, rk, ra / rk);
		}
		if (f->report_passes || f->reported_deflate || f->report_skipped)
			printf("free page reporting: %.0f MiB reported after inflate, %.0f MiB "
			       "newly after deflate, %.0f MiB skipped as reported before.\n",
			       mib((double)f->reported), mib((double)f->reported_deflate),
			       mib((double)f->report_skipped));
	}
}

/* ---- JSON ---- */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_num(double v)
{
	if (isfinite(v))
		printf("%.6g", v);
	else
		printf("null");
}

static void json_counters(const char *name, const struct bl_thp_counters *a,
			  const struct bl_thp_counters *b, bool comma)
{
	printf("\"%s\": {\"split\": %llu, \"split_failed\": %llu, \"deferred_split\": %llu, "
	       "\"collapse_alloc\": %llu, \"pages_collapsed\": %llu, \"file_alloc\": %llu}%s",
	       name, (unsigned long long)(b->split - a->split),
	       (unsigned long long)(b->split_failed - a->split_failed),
	       (unsigned long long)(b->deferred - a->deferred),
	       (unsigned long long)(b->collapse_alloc - a->collapse_alloc),
	       (unsigned long long)(b->pages_collapsed - a->pages_collapsed),
	       (unsigned long long)(b->file_alloc - a->file_alloc), comma ? ", " : "");
}

static void json_run(const struct bl_result *x)
{
	printf("    {\"backend\": \"%s\", \"policy\": \"%s\", \"status\": \"%s\", \"message\": ",
	       bl_backend_name(x->backend), bl_policy_name(x->policy), status_name(x->status));
	json_str(x->msg);
	printf(",\n     \"mem_source\": ");
	json_str(x->mem_source);
	printf(", \"guest_free_mib\": ");
	json_num(mib((double)x->free_bytes));
	printf(", \"guest_free_huge_blocks_mib\": ");
	json_num(mib((double)x->free_huge_bytes));
	printf(",\n     \"ballooned_mib\": ");
	json_num(mib((double)x->ballooned));
	printf(", \"reported_mib\": ");
	json_num(mib((double)x->reported));
	printf(", \"reported_after_deflate_mib\": ");
	json_num(mib((double)x->reported_deflate));
	printf(", \"report_skipped_mib\": ");
	json_num(mib((double)x->report_skipped));
	printf(", \"report_passes\": %llu, \"guest_path\": ", (unsigned long long)x->report_passes);
	json_str(x->guest_path);
	printf(", \"returned_inflated_mib\": ");
	json_num(mib(returned_before_ask(x)));
	printf(", \"returned_mib\": ");
	json_num(mib(returned(x)));
	printf(", \"ratio_inflated\": ");
	json_num(ratio(returned_before_ask(x), x));
	printf(", \"ratio\": ");
	json_num(ratio(returned(x), x));
	printf(",\n     \"memory_mib\": {\"filled\": ");
	json_num(mib((double)x->mem_fill));
	printf(", \"inflated\": ");
	json_num(mib((double)x->mem_inflate));
	printf(", \"reported\": ");
	json_num(mib((double)x->mem_report));
	printf(", \"asked\": ");
	json_num(mib((double)x->mem_ask));
	printf(", \"deflated\": ");
	json_num(mib((double)x->mem_deflate));
	printf(", \"collapsed\": ");
	json_num(mib((double)x->mem_collapse));
	printf("},\n     \"messages\": {\"inflate\": %llu, \"deflate\": %llu, \"report\": %llu, "
	       "\"max_pfns\": %u, \"max_report_blocks\": %u},\n",
	       (unsigned long long)x->inflate_msgs, (unsigned long long)x->deflate_msgs,
	       (unsigned long long)x->report_msgs, x->max_msg_pfns, x->max_report_blocks);
	printf("     \"time_s\": {\"fill\": ");
	json_num(x->fill_s);
	printf(", \"inflate\": ");
	json_num(x->inflate_s);
	printf(", \"host\": ");
	json_num(x->host_s);
	printf(", \"report\": ");
	json_num(x->report_s);
	printf(", \"ask\": ");
	json_num(x->ask_s);
	printf(", \"ask_host\": ");
	json_num(x->ask_host_s);
	printf(", \"deflate\": ");
	json_num(x->deflate_s);
	printf(", \"collapse\": ");
	json_num(x->collapse_s);
	printf(", \"total\": ");
	json_num(x->total_s);
	printf("},\n     \"pages_per_s\": ");
	json_num(per_s((double)(x->ballooned >> BL_PAGE_SHIFT), x->inflate_s));
	printf(", \"discards_per_s\": ");
	json_num(per_s((double)x->inflate_ops, x->host_s));
	printf(", \"inflate_ops\": %llu, \"huge_discards\": %llu, \"punches\": %llu, "
	       "\"zeroes\": %llu,\n", (unsigned long long)x->inflate_ops,
	       (unsigned long long)x->huge_discards, (unsigned long long)x->punches,
	       (unsigned long long)x->zeroes);
	printf("     \"phases_s\": {\"inflate\": ");
	json_num(x->t_inflate);
	printf(", \"ask\": ");
	json_num(x->t_ask);
	printf(", \"deflate\": ");
	json_num(x->t_deflate);
	printf(", \"collapse\": ");
	json_num(x->t_collapse);
	printf(", \"end\": ");
	json_num(x->t_end);
	printf("},\n     \"coverage_known\": %s, \"coverage\": {\"filled\": ",
	       x->cov_ok ? "true" : "false");
	json_num(x->cov_fill);
	printf(", \"inflated\": ");
	json_num(x->cov_inflate);
	printf(", \"asked\": ");
	json_num(x->cov_ask);
	printf(", \"deflated\": ");
	json_num(x->cov_deflate);
	printf(", \"collapsed\": ");
	json_num(x->cov_collapse);
	printf("},\n     ");
	json_counters("counters_inflate", &x->c_fill, &x->c_ask, true);
	printf("\n     ");
	json_counters("counters_rewrite", &x->c_ask, &x->c_deflate, true);
	printf("\n     ");
	json_counters("counters_collapse", &x->c_deflate, &x->c_collapse, true);
	printf("\"collapse_rc\": %d,\n     \"read_ns\": {\"before\": ", x->collapse_rc);
	json_num(x->read_ns_before);
	printf(", \"inflated\": ");
	json_num(x->read_ns_inflated);
	printf(", \"after\": ");
	json_num(x->read_ns_after);
	printf("},\n     \"check\": {\"pages\": %llu, \"bad_kept\": %llu, \"bad_zero\": %llu, "
	       "\"bad_rewrite\": %llu},\n     \"samples\": [",
	       (unsigned long long)x->pages_checked, (unsigned long long)x->bad_kept,
	       (unsigned long long)x->bad_zero, (unsigned long long)x->bad_rewrite);
	for (uint32_t i = 0; i < x->nsamples; i++) {
		printf("%s[", i ? ", " : "");
		json_num(x->samples[i].t);
		printf(", ");
		json_num(x->samples[i].mem_mib);
		printf(", ");
		json_num(x->samples[i].cov_pct);
		printf("]");
	}
	printf("]}");
}

void bl_print_json(const struct bl_config *cfg, const struct bl_result *r, int n)
{
	printf("{\"tool\": \"thpfs-balloon\",\n \"config\": {\"size_mib\": ");
	json_num(mib((double)cfg->size));
	printf(", \"target_mib\": ");
	json_num(mib((double)cfg->target));
	printf(", \"ask_mib\": ");
	if (cfg->ask == UINT64_MAX)
		printf("\"all\"");
	else
		json_num(mib((double)cfg->ask));
	printf(", \"frag\": ");
	json_num(cfg->frag);
	printf(", \"free\": ");
	json_num(cfg->free_frac);
	printf(", \"seed\": %llu, \"reads\": %llu, \"report\": %s, \"report_delay_s\": ",
	       (unsigned long long)cfg->seed, (unsigned long long)cfg->reads,
	       cfg->report ? "true" : "false");
	json_num(cfg->report_delay);
	printf(", \"collapse\": %s, \"msg_max_pfns\": %d, \"trace\": ",
	       cfg->collapse ? "true" : "false", BL_MSG_MAX);
	if (cfg->trace)
		json_str(cfg->trace);
	else
		printf("null");
	printf(", \"thpfs_options\": ");
	json_str(cfg->thpfs_opts);
	printf("},\n \"runs\": [\n");
	for (int i = 0; i < n; i++) {
		json_run(&r[i]);
		printf("%s\n", i + 1 < n ? "," : "");
	}
	printf(" ]}\n");
}

/* ---- Plot ---- */

/* Writes s as a gnuplot single-quoted string. */
static void gp_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

/*
 * The plot's x axis: the phases of every run on one scale, phase k from
 * k to k + 1 (0 fill, workload and first speed test; 1 inflate and the
 * reporting worker; 2 the host asks, speed while inflated; 3 deflate, the
 * worker's next pass and the rewrite; 4 explicit collapse, checks and the
 * last speed test), time inside a phase linear.  Runs take very different
 * times (the kernel's inflate is slower), so one time axis would hide one
 * or the other; this way every panel has the same x range and the phase
 * boundaries line up.
 */
#define BL_PLOT_PHASES 5
static double plot_x(const struct bl_result *r, double t)
{
	double b[BL_PLOT_PHASES + 1] = { 0, r->t_inflate, r->t_ask, r->t_deflate, r->t_collapse,
					 r->t_end };

	for (int k = 0; k < BL_PLOT_PHASES; k++) {
		if (t < b[k + 1] || k == BL_PLOT_PHASES - 1) {
			double w = b[k + 1] - b[k];
			double x = w > 0 ? (t - b[k]) / w : 0.0;

			return k + (x < 0 ? 0 : x > 1 ? 1 : x);
		}
	}
	return BL_PLOT_PHASES;
}

static int write_data(const char *path, const struct bl_result *r, int n, int *index)
{
	FILE *f = fopen(path, "w");
	int k = 0;

	if (!f)
		return -errno;
	for (int i = 0; i < n; i++) {
		index[i] = -1;
		if (r[i].status != BL_RUN_OK)
			continue;
		fprintf(f, "# %s %s: phase_x mem_mib coverage_pct t_s\n",
			bl_backend_name(r[i].backend), bl_policy_name(r[i].policy));
		for (uint32_t s = 0; s < r[i].nsamples; s++)
			fprintf(f, "%.4f %.2f %.2f %.4f\n", plot_x(&r[i], r[i].samples[s].t),
				r[i].samples[s].mem_mib, r[i].samples[s].cov_pct, r[i].samples[s].t);
		fprintf(f, "\n\n");
		index[i] = k++;
	}
	if (fclose(f))
		return -errno;
	return k;
}

static void write_panel(FILE *f, const char *dat, const struct bl_result *r, int n,
			const int *index, int backend, int col, const char *title,
			const char *ylabel)
{
	bool first = true;

	fprintf(f, "set title '%s: %s'\nset ylabel '%s'\n", bl_backend_name(backend), title,
		ylabel);
	if (col == 3)
		fprintf(f, "set yrange [0:105]\n");
	else
		fprintf(f, "set yrange [0:*]\n");
	fprintf(f, "plot ");
	for (int i = 0; i < n; i++) {
		if (index[i] < 0 || r[i].backend != backend)
			continue;
		fprintf(f, "%s", first ? "" : ", \\\n     ");
		gp_quote(f, dat);
		/* overlapping lines stay visible: wide to thin, each dashed
		 * its own way, with its own point marks */
		fprintf(f, " index %d using 1:%d with linespoints lw %.1f dt %d pt %d ps 0.8 "
			"pi 6 lc %d title '%s'", index[i], col, 4.0 - 0.5 * r[i].policy,
			r[i].policy + 1, r[i].policy + 4, r[i].policy + 1,
			bl_policy_name(r[i].policy));
		first = false;
	}
	fprintf(f, "\n");
}

static int run_gnuplot(const char *script)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		fprintf(stderr, "thpfs-balloon: cannot run gnuplot: %s (Debian package "
			"gnuplot-nox); no plot\n", strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return -EIO;
	return 0;
}

int bl_plot(const struct bl_config *cfg, const struct bl_result *r, int n, const char *png)
{
	const char *tmp = getenv("TMPDIR");
	char dir[256], dat[300], gp[300];
	int index[BL_NR_BACKENDS * BL_NR_POLICIES];
	int rows = 0, err;
	bool has[BL_NR_BACKENDS] = { false };

	snprintf(dir, sizeof(dir), "%s/thpfs-balloon-plot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "thpfs-balloon: plot: %s: %s\n", dir, strerror(errno));
		return -errno;
	}
	snprintf(dat, sizeof(dat), "%s/balloon.dat", dir);
	snprintf(gp, sizeof(gp), "%s/balloon.gp", dir);
	err = write_data(dat, r, n, index);
	if (err == 0) {
		fprintf(stderr, "thpfs-balloon: no finished run to plot\n");
		err = -ENODATA;
		goto out;
	}
	if (err < 0)
		goto out;
	for (int i = 0; i < n; i++)
		if (index[i] >= 0)
			has[r[i].backend] = true;
	for (int b = 0; b < BL_NR_BACKENDS; b++)
		rows += has[b];

	FILE *f = fopen(gp, "w");

	if (!f) {
		err = -errno;
		goto out;
	}
	fprintf(f, "set terminal pngcairo size 1500,%d font 'sans,10'\nset output ", 420 * rows + 60);
	gp_quote(f, png);
	fprintf(f, "\nset multiplot layout %d,2 title 'thpfs-balloon: %llu MiB guest RAM, "
		"%llu MiB balloon, frag %.2f'\n", rows, (unsigned long long)(cfg->size / BL_MIB),
		(unsigned long long)(cfg->target / BL_MIB), cfg->frag);
	fprintf(f, "set xlabel 'phase (each run scaled to the same phase boundaries)'\n"
		"set xrange [0:%d]\nset grid ytics\nset xtics ('' 0, '' 1, '' 2, '' 3, '' 4, '' 5)\n"
		"set for [k=1:4] arrow from k, graph 0 to k, graph 1 nohead lc rgb 'gray50' dt 2\n"
		"set label 1 'fill' at 0.5, graph 0.04 center\n"
		"set label 2 'inflate+report' at 1.5, graph 0.04 center\n"
		"set label 3 'host asks' at 2.5, graph 0.04 center\n"
		"set label 4 'deflate+rewrite' at 3.5, graph 0.04 center\n"
		"set label 5 'collapse' at 4.5, graph 0.04 center\n"
		"set key outside right top vertical\n", BL_PLOT_PHASES);
	for (int b = 0; b < BL_NR_BACKENDS; b++) {
		if (!has[b])
			continue;
		write_panel(f, dat, r, n, index, b, 2, "host memory charged to the run",
			    "MiB");
		write_panel(f, dat, r, n, index, b, 3, "huge-page coverage of guest RAM", "%");
	}
	fprintf(f, "unset multiplot\n");
	if (fclose(f)) {
		err = -errno;
		goto out;
	}
	err = run_gnuplot(gp);
	if (err)
		fprintf(stderr, "thpfs-balloon: gnuplot failed; no plot written to %s\n", png);
out:
	unlink(dat);
	unlink(gp);
	rmdir(dir);
	return err < 0 ? err : 0;
}
