/*
 * main.c - thpfs-balloon's command line: options, checks, the runs, output.
 *
 * Exit status: 0 when every run finished and every page check passed, 1
 * when a run failed or a page changed that must not have, 2 for bad input.
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "thpfs.h"

static const char *const policy_names[BL_NR_POLICIES] = {
	[BL_LEGACY] = "legacy",
	[BL_SPLIT] = "split",
	[BL_QEMU_PBP] = "qemu-pbp",
	[BL_HUGE_BITMAP] = "huge-bitmap",
	[BL_LAZY] = "lazy",
	[BL_WHOLE_LAZY] = "whole-lazy",
};
static const char *const backend_names[BL_NR_BACKENDS] = {
	[BL_THPFS] = "thpfs",
	[BL_KERNEL] = "kernel",
};

const char *bl_policy_name(int p)
{
	return p >= 0 && p < BL_NR_POLICIES ? policy_names[p] : "?";
}

const char *bl_backend_name(int b)
{
	return b >= 0 && b < BL_NR_BACKENDS ? backend_names[b] : "?";
}

int bl_policy_parse(const char *s)
{
	for (int i = 0; i < BL_NR_POLICIES; i++)
		if (!strcmp(s, policy_names[i]))
			return i;
	return -1;
}

int bl_backend_parse(const char *s)
{
	for (int i = 0; i < BL_NR_BACKENDS; i++)
		if (!strcmp(s, backend_names[i]))
			return i;
	return -1;
}

static void usage(FILE *f)
{
	fprintf(f,
"Usage: thpfs-balloon [OPTION]...\n"
"Model a virtio-balloon over guest RAM kept in a huge-page file, on libthpfs\n"
"and on the kernel's tmpfs (huge=always), one policy at a time, and measure\n"
"the memory the host really gets back (in a child memory cgroup per run).\n"
"\n"
"Guest and balloon:\n"
"  -s, --size=SIZE        guest RAM (default 1G)\n"
"  -t, --target=SIZE      balloon size: pages the driver inflates\n"
"                         (default: 3/8 of guest RAM)\n"
"  -f, --frag=F           fragmentation of the guest's free memory, 0..1: 0 puts\n"
"                         all of it in whole 2 MiB blocks, 1 scatters it over\n"
"                         every 2 MiB range (default 0.5)\n"
"  -F, --free=F           share of guest RAM the workload leaves free, 0..1\n"
"                         (default 0.5); the balloon can take only free pages\n"
"  -a, --ask=SIZE|all     memory the host asks back after inflate, which the\n"
"                         lazy policy then releases (default all; 0: never)\n"
"      --no-report        no free page reporting\n"
"      --report-delay=S   seconds from freeing a free block of 2 MiB or more to\n"
"                         the reporting worker's pass (default 0.5; Linux: 2)\n"
"      --trace=FILE       replay a recorded request stream (docs/balloon.md:\n"
"                         thpfs-vm-trace v1, or QEMU's raw trace log) instead\n"
"                         of the model guest and its balloon driver\n"
"      --no-collapse      no explicit collapse (thpfs_collapse, MADV_COLLAPSE)\n"
"                         after deflate and rewrite\n"
"  -S, --seed=N           seed of the workload and the reads (default 1)\n"
"  -r, --reads=N          loads of the pointer chase per speed measurement\n"
"                         (default 200000, best of 4 batches; 0 skips them)\n"
"\n"
"What to run:\n"
"  -p, --policies=LIST    comma-separated, or all (default): legacy, split,\n"
"                         qemu-pbp, huge-bitmap, lazy, whole-lazy\n"
"  -b, --backends=LIST    comma-separated, or all (default): thpfs, kernel\n"
"                         (kernel needs root; skipped with a message if not)\n"
"      --thpfs-options=O  more thpfs mount options, appended to\n"
"                         huge=always,size=0\n"
"\n"
"Output:\n"
"  -j, --json             JSON on stdout instead of the table\n"
"  -o, --plot=FILE        PNG of memory and huge-page coverage over time, made\n"
"                         with gnuplot (none without it; make demo writes\n"
"                         docs/balloon.png); named after the tables\n"
"      --no-plot          no PNG (undoes an earlier --plot)\n"
"  -q, --quiet            no progress on stderr\n"
"  -h, --help             this text\n"
"  -V, --version          the version\n"
"\n"
"SIZE is a number of bytes with an optional suffix k, m, g or t (KiB, MiB,\n"
"GiB, TiB): 64m, 1g.  Sizes must be more than zero and multiples of 4 KiB.\n"
"Exit status: 0 when every run finished and every page held what it must,\n"
"1 when a run failed or a page changed, 2 for bad input.\n");
}

/* Parses SIZE; -EINVAL for junk, -ERANGE for overflow. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned shift = 0;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);

	if (errno || end == s)
		return errno == ERANGE ? -ERANGE : -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	case 0: break;
	default: return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

static int parse_fraction(const char *s, double *out)
{
	char *end;

	errno = 0;
	double v = strtod(s, &end);

	if (errno || end == s || *end || !(v >= 0.0 && v <= 1.0))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);

	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "all" or a comma-separated list of names; sets on[] (n entries). */
static int parse_list(const char *s, bool *on, int n, int (*parse)(const char *),
		      const char *what)
{
	char buf[256], *save = NULL;

	memset(on, 0, sizeof(bool) * (size_t)n);
	if (!strcmp(s, "all")) {
		for (int i = 0; i < n; i++)
			on[i] = true;
		return 0;
	}
	if (strlen(s) >= sizeof(buf) || !*s) {
		fprintf(stderr, "thpfs-balloon: bad %s list '%s'\n", what, s);
		return -EINVAL;
	}
	strcpy(buf, s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int i = parse(t);

		if (i < 0) {
			fprintf(stderr, "thpfs-balloon: unknown %s '%s'\n", what, t);
			return -EINVAL;
		}
		on[i] = true;
	}
	return 0;
}

static uint64_t machine_ram(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

	return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

/* Checks a size option; prints why it is bad. */
static int check_size(const char *opt, const char *arg, uint64_t v)
{
	if (!v) {
		fprintf(stderr, "thpfs-balloon: %s %s: must be more than zero\n", opt, arg);
		return -EINVAL;
	}
	if (v % BL_PAGE_SIZE) {
		fprintf(stderr, "thpfs-balloon: %s %s: %llu bytes is not a multiple of the "
			"4 KiB page size (give a suffix: 64m, 1g)\n", opt, arg,
			(unsigned long long)v);
		return -EINVAL;
	}
	return 0;
}

enum {
	OPT_NO_REPORT = 256,
	OPT_NO_COLLAPSE,
	OPT_NO_PLOT,
	OPT_THPFS_OPTIONS,
	OPT_REPORT_DELAY,
	OPT_TRACE,
};

static const struct option long_opts[] = {
	{ "size", required_argument, NULL, 's' },
	{ "target", required_argument, NULL, 't' },
	{ "frag", required_argument, NULL, 'f' },
	{ "free", required_argument, NULL, 'F' },
	{ "ask", required_argument, NULL, 'a' },
	{ "seed", required_argument, NULL, 'S' },
	{ "reads", required_argument, NULL, 'r' },
	{ "policies", required_argument, NULL, 'p' },
	{ "backends", required_argument, NULL, 'b' },
	{ "json", no_argument, NULL, 'j' },
	{ "plot", required_argument, NULL, 'o' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "no-report", no_argument, NULL, OPT_NO_REPORT },
	{ "no-collapse", no_argument, NULL, OPT_NO_COLLAPSE },
	{ "no-plot", no_argument, NULL, OPT_NO_PLOT },
	{ "thpfs-options", required_argument, NULL, OPT_THPFS_OPTIONS },
	{ "report-delay", required_argument, NULL, OPT_REPORT_DELAY },
	{ "trace", required_argument, NULL, OPT_TRACE },
	{ NULL, 0, NULL, 0 },
};

/* Fills cfg from argv.  Returns 0, 1 for --help/--version (done), or -1
 * after printing why the input is bad. */
static int parse_args(int argc, char **argv, struct bl_config *cfg)
{
	static const char default_size[] = "1g";
	const char *size_arg = default_size, *target_arg = NULL, *ask_arg = "all";
	bool target_set = false;
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	cfg->size = 1ULL << 30;
	cfg->frag = 0.5;
	cfg->report_delay = 0.5;
	cfg->free_frac = 0.5;
	cfg->seed = 1;
	cfg->reads = 200000;
	cfg->report = true;
	cfg->collapse = true;
	cfg->plot = NULL; /* no file in the working directory unless asked */
	for (int i = 0; i < BL_NR_POLICIES; i++)
		cfg->policies[i] = true;
	for (int i = 0; i < BL_NR_BACKENDS; i++)
		cfg->backends[i] = true;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "s:t:f:F:a:S:r:p:b:jo:qhV", long_opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			size_arg = optarg;
			if (parse_size(optarg, &cfg->size)) {
				fprintf(stderr, "thpfs-balloon: --size %s: not a size\n", optarg);
				return -1;
			}
			break;
		case 't':
			target_arg = optarg;
			target_set = true;
			if (parse_size(optarg, &cfg->target)) {
				fprintf(stderr, "thpfs-balloon: --target %s: not a size\n", optarg);
				return -1;
			}
			break;
		case 'f':
			if (parse_fraction(optarg, &cfg->frag)) {
				fprintf(stderr, "thpfs-balloon: --frag %s: not a number in 0..1\n",
					optarg);
				return -1;
			}
			break;
		case 'F':
			if (parse_fraction(optarg, &cfg->free_frac)) {
				fprintf(stderr, "thpfs-balloon: --free %s: not a number in 0..1\n",
					optarg);
				return -1;
			}
			break;
		case 'a':
			ask_arg = optarg;
			break;
		case 'S':
			if (parse_u64(optarg, &cfg->seed)) {
				fprintf(stderr, "thpfs-balloon: --seed %s: not a number\n", optarg);
				return -1;
			}
			break;
		case 'r':
			if (parse_u64(optarg, &cfg->reads) || cfg->reads > (1ULL << 32)) {
				fprintf(stderr, "thpfs-balloon: --reads %s: not a number up to 2^32\n",
					optarg);
				return -1;
			}
			break;
		case 'p':
			if (parse_list(optarg, cfg->policies, BL_NR_POLICIES, bl_policy_parse,
				       "policy"))
				return -1;
			break;
		case 'b':
			if (parse_list(optarg, cfg->backends, BL_NR_BACKENDS, bl_backend_parse,
				       "backend"))
				return -1;
			break;
		case 'j':
			cfg->json = true;
			break;
		case 'o':
			if (!*optarg) {
				fprintf(stderr, "thpfs-balloon: --plot needs a file name\n");
				return -1;
			}
			cfg->plot = optarg;
			break;
		case 'q':
			cfg->quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("thpfs-balloon (libthpfs %s)\n", THPFS_VERSION);
			return 1;
		case OPT_NO_REPORT:
			cfg->report = false;
			break;
		case OPT_NO_COLLAPSE:
			cfg->collapse = false;
			break;
		case OPT_NO_PLOT:
			cfg->plot = NULL;
			break;
		case OPT_REPORT_DELAY: {
			char *end;

			errno = 0;
			cfg->report_delay = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(cfg->report_delay >= 0 &&
								 cfg->report_delay <= 60)) {
				fprintf(stderr, "thpfs-balloon: --report-delay %s: not a number of "
					"seconds in 0..60\n", optarg);
				return -1;
			}
			break;
		}
		case OPT_TRACE:
			cfg->trace = optarg;
			break;
		case OPT_THPFS_OPTIONS:
			if (strlen(optarg) >= sizeof(cfg->thpfs_opts)) {
				fprintf(stderr, "thpfs-balloon: --thpfs-options: too long\n");
				return -1;
			}
			strcpy(cfg->thpfs_opts, optarg);
			break;
		default:
			if (optopt && optopt < 256 && strchr("stfFaSrpbo", optopt))
				fprintf(stderr, "thpfs-balloon: -%c needs an argument\n", optopt);
			else if (optopt)
				fprintf(stderr, "thpfs-balloon: unknown option -%c\n", optopt);
			else
				fprintf(stderr, "thpfs-balloon: unknown or incomplete option '%s'\n",
					argv[optind - 1]);
			fprintf(stderr, "Try 'thpfs-balloon --help'.\n");
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "thpfs-balloon: unexpected argument '%s'\nTry 'thpfs-balloon "
			"--help'.\n", argv[optind]);
		return -1;
	}

	/* a trace says how large guest RAM is and what the balloon takes */
	if (cfg->trace) {
		static struct bl_trace tr;
		char err[256];

		if (bl_trace_load(&tr, cfg->trace, size_arg == default_size ? 0 : cfg->size,
				  err, sizeof(err))) {
			fprintf(stderr, "thpfs-balloon: --trace: %s\n", err);
			return -1;
		}
		cfg->tr = &tr;
		cfg->size = tr.ram;
		cfg->target = tr.pages << BL_PAGE_SHIFT;
		target_set = false;
		size_arg = "(the trace's)";
	}

	/* sizes */
	if (check_size("--size", size_arg, cfg->size))
		return -1;
	uint64_t ram = machine_ram();

	if (ram && cfg->size > ram) {
		fprintf(stderr, "thpfs-balloon: --size %s: %llu MiB is more than this machine's "
			"%llu MiB of RAM\n", size_arg, (unsigned long long)(cfg->size / BL_MIB),
			(unsigned long long)(ram / BL_MIB));
		return -1;
	}
	if ((cfg->size >> BL_PAGE_SHIFT) >= BL_NIL) {
		fprintf(stderr, "thpfs-balloon: --size %s: too many pages\n", size_arg);
		return -1;
	}
	if (cfg->tr) {
		/* the trace's own balloon */
	} else if (!target_set) {
		cfg->target = (cfg->size / 8 * 3) & ~(uint64_t)(BL_PAGE_SIZE - 1);
		if (!cfg->target)
			cfg->target = BL_PAGE_SIZE;
	} else {
		if (check_size("--target", target_arg, cfg->target))
			return -1;
		if (cfg->target > cfg->size) {
			fprintf(stderr, "thpfs-balloon: --target %s: the balloon cannot be larger "
				"than guest RAM (%llu MiB)\n", target_arg,
				(unsigned long long)(cfg->size / BL_MIB));
			return -1;
		}
	}
	if (!strcmp(ask_arg, "all")) {
		cfg->ask = UINT64_MAX;
	} else if (parse_size(ask_arg, &cfg->ask)) {
		fprintf(stderr, "thpfs-balloon: --ask %s: not a size or 'all'\n", ask_arg);
		return -1;
	} else if (cfg->ask % BL_PAGE_SIZE) {
		fprintf(stderr, "thpfs-balloon: --ask %s: not a multiple of 4 KiB\n", ask_arg);
		return -1;
	} else if (cfg->ask > cfg->size) {
		fprintf(stderr, "thpfs-balloon: --ask %s: more than guest RAM\n", ask_arg);
		return -1;
	}
	bool any = false;

	for (int i = 0; i < BL_NR_POLICIES; i++)
		any |= cfg->policies[i];
	if (!any) {
		fprintf(stderr, "thpfs-balloon: no policy to run\n");
		return -1;
	}
	any = false;
	for (int i = 0; i < BL_NR_BACKENDS; i++)
		any |= cfg->backends[i];
	if (!any) {
		fprintf(stderr, "thpfs-balloon: no backend to run\n");
		return -1;
	}
	return 0;
}

static uint64_t violations(const struct bl_result *r)
{
	return r->bad_kept + r->bad_zero + r->bad_rewrite;
}

int main(int argc, char **argv)
{
	static struct bl_result results[BL_NR_BACKENDS * BL_NR_POLICIES];
	struct bl_config cfg;
	int n = 0, total = 0, idx = 0, rc = 0;
	bool kernel_skipped = false, tty = isatty(STDERR_FILENO);
	int prc = parse_args(argc, argv, &cfg);

	if (prc)
		return prc > 0 ? 0 : 2;
	for (int b = 0; b < BL_NR_BACKENDS; b++)
		for (int p = 0; p < BL_NR_POLICIES; p++)
			total += cfg.backends[b] && cfg.policies[p];
	if (cfg.tr && !cfg.quiet)
		fprintf(stderr, "thpfs-balloon: trace %s: %llu MiB guest RAM, %llu requests, %llu "
			"ballooned pages, %llu reported blocks (%llu MiB)%s\n", cfg.trace,
			(unsigned long long)(cfg.size / BL_MIB), (unsigned long long)cfg.tr->reqs,
			(unsigned long long)cfg.tr->pages, (unsigned long long)cfg.tr->blocks,
			(unsigned long long)(cfg.tr->block_pages >> 8),
			cfg.tr->raw ? " (QEMU's raw log)" : "");
	if (!cfg.tr && cfg.target > (uint64_t)(cfg.size * cfg.free_frac) && !cfg.quiet)
		fprintf(stderr, "thpfs-balloon: note: the balloon (%llu MiB) is larger than the "
			"guest's free memory (about %llu MiB): it stops when that runs out\n",
			(unsigned long long)(cfg.target / BL_MIB),
			(unsigned long long)(cfg.size * cfg.free_frac / BL_MIB));

	double t0 = bl_now();

	for (int b = 0; b < BL_NR_BACKENDS; b++) {
		for (int p = 0; p < BL_NR_POLICIES; p++) {
			if (!cfg.backends[b] || !cfg.policies[p])
				continue;
			idx++;
			if (b == BL_KERNEL && kernel_skipped)
				continue;
			struct bl_result *r = &results[n];
			double t = bl_now();
			int err = bl_run(&cfg, b, p, idx, total, r);

			if (err) {
				fprintf(stderr, "thpfs-balloon: %s %s: cannot run: %s\n",
					bl_backend_name(b), bl_policy_name(p), strerror(-err));
				rc = 1;
				continue;
			}
			n++;
			if (r->status == BL_RUN_SKIPPED) {
				fprintf(stderr, "thpfs-balloon: %s\n", r->msg);
				if (b == BL_KERNEL)
					kernel_skipped = true;
				continue;
			}
			if (r->status == BL_RUN_FAILED) {
				fprintf(stderr, "thpfs-balloon: %s %s failed: %s\n",
					bl_backend_name(b), bl_policy_name(p), r->msg);
				rc = 1;
			} else if (violations(r)) {
				fprintf(stderr, "thpfs-balloon: %s %s: %llu pages do not hold what "
					"they must (%llu kept pages changed, %llu discarded pages "
					"not zero, %llu rewritten pages wrong)\n",
					bl_backend_name(b), bl_policy_name(p),
					(unsigned long long)violations(r),
					(unsigned long long)r->bad_kept,
					(unsigned long long)r->bad_zero,
					(unsigned long long)r->bad_rewrite);
				rc = 1;
			}
			if (r->status == BL_RUN_OK && r->ballooned < cfg.target && !cfg.quiet)
				fprintf(stderr, "thpfs-balloon: %s %s: the guest ran out of free "
					"memory: %llu of %llu MiB ballooned\n", bl_backend_name(b),
					bl_policy_name(p),
					(unsigned long long)(r->ballooned / BL_MIB),
					(unsigned long long)(cfg.target / BL_MIB));
			if (!cfg.quiet && !tty)
				fprintf(stderr, "thpfs-balloon: [%d/%d] %s %s: done in %.1f s\n",
					idx, total, bl_backend_name(b), bl_policy_name(p),
					bl_now() - t);
		}
	}
	if (!cfg.quiet)
		fprintf(stderr, "thpfs-balloon: %d runs in %.1f s\n", n, bl_now() - t0);
	if (cfg.json)
		bl_print_json(&cfg, results, n);
	else
		bl_print_table(&cfg, results, n);
	/* after the tables, on stdout: where the picture of them went */
	if (cfg.plot && bl_plot(&cfg, results, n, cfg.plot) == 0 && !cfg.json)
		printf("plot written to %s\n", cfg.plot);
	return rc;
}
