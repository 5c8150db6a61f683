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

void bl_print_table(const struct bl_config *cfg, const struct bl_result *r, int n)
{
	const struct bl_result *f = first_ok(r, n);

	printf("thpfs-balloon: guest RAM %llu MiB, balloon target %llu MiB, frag %.2f, "
	       "seed %llu\n", (unsigned long long)(cfg->size / BL_MIB),
	       (unsigned long long)(cfg->target / BL_MIB), cfg->frag,
	       (unsigned long long)cfg->seed);
	if (f)
		printf("guest free memory after the workload: %.1f MiB, %.1f MiB of it in free "
		       "blocks of 2 MiB or more; memory measured as %s usage\n",
		       mib((double)f->free_bytes), mib((double)f->free_huge_bytes),
		       f->mem_source);
	printf("\n%-7s %-12s %8s %7s %9s %8s %7s %8s %9s %10s %6s %4s\n", "backend", "policy",
	       "balloon", "report", "returned", "MiB", "ratio", "inflate", "pages/s",
	       "discards/s", "msgs", "max");
	printf("%-7s %-12s %8s %7s %9s %8s %7s %8s %9s %10s %6s %4s\n", "", "", "MiB", "MiB",
	       "inflated", "asked", "%", "ms", "", "", "", "pfns");
	for (int i = 0; i < n; i++) {
		const struct bl_result *x = &r[i];

		if (x->status != BL_RUN_OK)
			continue;
		printf("%-7s %-12s %8.1f %7.1f %9.1f %8.1f %6.1f%% %8.1f %9.0f %10.0f %6llu %4u\n",
		       bl_backend_name(x->backend), bl_policy_name(x->policy),
		       mib((double)x->ballooned), mib((double)x->reported),
		       mib(returned_before_ask(x)), mib(returned(x)), 100 * ratio(returned(x), x),
		       1000 * x->inflate_s, per_s((double)(x->ballooned >> BL_PAGE_SHIFT), x->inflate_s),
		       per_s((double)x->inflate_ops, x->host_s),
		       (unsigned long long)(x->inflate_msgs + x->deflate_msgs), x->max_msg_pfns);
	}
	printf("\n%-7s %-12s %-33s %6s %-14s %-21s %s\n", "backend", "policy",
	       "huge-page coverage %", "splits", "collapses", "read ns", "check");
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
		printf("%-7s %-12s %6.1f %6.1f %6.1f %6.1f %6.1f %6llu %6llu %7llu %6.1f %6.1f %6.1f  %s\n",
		       bl_backend_name(x->backend), bl_policy_name(x->policy), 100 * x->cov_fill,
		       100 * x->cov_inflate, 100 * x->cov_ask, 100 * x->cov_deflate,
		       100 * x->cov_collapse,
		       (unsigned long long)(x->c_ask.split - x->c_fill.split),
		       (unsigned long long)(x->c_deflate.collapse_alloc - x->c_ask.collapse_alloc),
		       (unsigned long long)(x->c_collapse.collapse_alloc - x->c_deflate.collapse_alloc),
		       x->read_ns_before, x->read_ns_inflated, x->read_ns_after, check);
	}
	for (int i = 0; i < n; i++)
		if (r[i].status != BL_RUN_OK)
			printf("%s %s: %s: %s\n", bl_backend_name(r[i].backend),
			       bl_policy_name(r[i].policy), status_name(r[i].status), r[i].msg);
	printf("\nreturned: drop of the memory charge from the filled guest to after inflate "
	       "+ report (inflated)\nand after the host asked for memory (asked); ratio = "
	       "asked / (balloon + report).\nkernel split/collapse counts are global "
	       "/proc/vmstat deltas.\n");
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
	printf("     \"coverage\": {\"filled\": ");
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
	printf(", \"seed\": %llu, \"reads\": %llu, \"report\": %s, \"collapse\": %s, "
	       "\"msg_max_pfns\": %d, \"thpfs_options\": ",
	       (unsigned long long)cfg->seed, (unsigned long long)cfg->reads,
	       cfg->report ? "true" : "false", cfg->collapse ? "true" : "false", BL_MSG_MAX);
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
		fprintf(f, "# %s %s: t_s mem_mib coverage_pct\n", bl_backend_name(r[i].backend),
			bl_policy_name(r[i].policy));
		for (uint32_t s = 0; s < r[i].nsamples; s++)
			fprintf(f, "%.4f %.2f %.2f\n", r[i].samples[s].t, r[i].samples[s].mem_mib,
				r[i].samples[s].cov_pct);
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
		fprintf(f, " index %d using 1:%d with steps lw 2 lc %d title '%s'", index[i], col,
			r[i].policy + 1, bl_policy_name(r[i].policy));
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
		"%llu MiB balloon, frag %.2f: inflate, report, ask, deflate + rewrite, "
		"collapse'\n", rows, (unsigned long long)(cfg->size / BL_MIB),
		(unsigned long long)(cfg->target / BL_MIB), cfg->frag);
	fprintf(f, "set xlabel 'time since guest RAM was created (s)'\nset grid\n"
		"set key outside right top vertical\n");
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
