/*
 * fuse-bench.c - sequential and random read/write throughput in one
 * directory, for bench/fuse-bench.sh (which runs it on a thpfs FUSE mount
 * and on a kernel tmpfs in the same run and prints the ratios).
 *
 *   fuse-bench [-m FILE_MIB] [-t SECONDS] [-p DAEMON_PID] [-l LABEL] [-b BS]
 *              [-P PATTERN] DIR
 *
 * -b runs only block size BS (bytes) instead of all three, -P only one
 * pattern (seqwrite, randwrite, seqread, randread; for perf).
 * For each block size (4 KiB, 64 KiB, 1 MiB) and pattern it prints one line:
 *   LABEL PATTERN BS MB/s us/op app_cs/op daemon_cs/op daemon_usr_us/op
 *   daemon_sys_us/op app_sys_us/op
 * seqwrite writes a new file from offset 0 (allocation included); randwrite
 * overwrites random block-aligned offsets of a full file; seqread and
 * randread read the full file.  One untimed pass writes the file first.  Each test repeats passes over the file
 * until SECONDS have passed.  Context switches are counted for this process
 * (getrusage) and, with -p, for all threads of the daemon (/proc/PID/task).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct sample {
	double t;          /* seconds, monotonic */
	long app_cs;       /* voluntary + involuntary context switches */
	double app_sys;    /* seconds of system time */
	long daemon_cs;
	double daemon_usr; /* seconds of user time, all threads */
	double daemon_sys; /* seconds of system time, all threads */
};

static pid_t daemon_pid;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sums a "name: N" line over /proc/PID/task/ * /status. */
static long daemon_ctx_switches(void)
{
	char path[64], line[256];
	struct dirent *de;
	long total = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)daemon_pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char sp[384];
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(sp, sizeof(sp), "%s/%s/status", path, de->d_name);
		f = fopen(sp, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			long v;

			if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
			    sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
				total += v;
		}
		fclose(f);
	}
	closedir(d);
	return total;
}

/* utime and stime of the whole daemon process (all threads), in seconds. */
static void daemon_cpu(double *usr, double *sys)
{
	unsigned long ut = 0, st = 0;
	char path[64], buf[1024], *p;
	FILE *f;

	*usr = *sys = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)daemon_pid);
	f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return;
	}
	fclose(f);
	p = strrchr(buf, ')');
	/* fields after ")": state(3) ... utime(14) stime(15) */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &st) != 2)
		return;
	*usr = (double)ut / (double)sysconf(_SC_CLK_TCK);
	*sys = (double)st / (double)sysconf(_SC_CLK_TCK);
}

static void take(struct sample *s)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	s->t = now();
	s->app_cs = ru.ru_nvcsw + ru.ru_nivcsw;
	s->app_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
	s->daemon_cs = daemon_pid ? daemon_ctx_switches() : 0;
	s->daemon_usr = s->daemon_sys = 0;
	if (daemon_pid)
		daemon_cpu(&s->daemon_usr, &s->daemon_sys);
}

static uint64_t rng = 0x853c49e6748fea9bULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

enum pattern { SEQWRITE, RANDWRITE, SEQREAD, RANDREAD };
static const char *pattern_name[] = { "seqwrite", "randwrite", "seqread", "randread" };

/* One pass of file_size bytes; returns ops done or -1 (printed). */
static long one_pass(int fd, enum pattern p, char *buf, size_t bs, size_t file_size)
{
	size_t nblocks = file_size / bs;
	long ops = 0;

	for (size_t i = 0; i < nblocks; i++) {
		off_t off = (p == SEQWRITE || p == SEQREAD) ? (off_t)(i * bs)
							      : (off_t)(rnd() % nblocks * bs);
		ssize_t n = (p == SEQWRITE || p == RANDWRITE) ? pwrite(fd, buf, bs, off)
							      : pread(fd, buf, bs, off);

		if (n != (ssize_t)bs) {
			fprintf(stderr, "fuse-bench: %s at %lld: %s\n", pattern_name[p],
				(long long)off, n < 0 ? strerror(errno) : "short");
			return -1;
		}
		ops++;
	}
	return ops;
}

static int run_one(const char *dir, const char *label, enum pattern p, size_t bs,
		   size_t file_size, double seconds, char *buf)
{
	struct sample a, b;
	char path[4200];
	double busy = 0;
	long ops = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/fuse-bench.dat", dir);
	fd = open(path, O_RDWR | O_CREAT, 0644);
	if (fd < 0) {
		fprintf(stderr, "fuse-bench: %s: %s\n", path, strerror(errno));
		return -1;
	}
	/* reads and random writes work on a full file; writing it first also
	 * warms up seqwrite (in a VM, first touches of guest memory are slow) */
	if (one_pass(fd, SEQWRITE, buf, 1 << 20, file_size) < 0)
		goto fail;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	do {
		struct sample s0, s1;
		long n;

		if (p == SEQWRITE && ftruncate(fd, 0) < 0)
			goto fail;
		take(&s0);
		n = one_pass(fd, p, buf, bs, file_size);
		take(&s1);
		if (n < 0)
			goto fail;
		ops += n;
		busy += s1.t - s0.t;
		b.app_cs += s1.app_cs - s0.app_cs;
		b.app_sys += s1.app_sys - s0.app_sys;
		b.daemon_cs += s1.daemon_cs - s0.daemon_cs;
		b.daemon_usr += s1.daemon_usr - s0.daemon_usr;
		b.daemon_sys += s1.daemon_sys - s0.daemon_sys;
	} while (busy < seconds);
	printf("%s %s %zu %.1f %.2f %.2f %.2f %.2f %.2f %.2f\n", label, pattern_name[p], bs,
	       (double)ops * (double)bs / busy / 1e6, busy / (double)ops * 1e6,
	       (double)b.app_cs / (double)ops, (double)b.daemon_cs / (double)ops,
	       b.daemon_usr / (double)ops * 1e6, b.daemon_sys / (double)ops * 1e6,
	       b.app_sys / (double)ops * 1e6);
	fflush(stdout);
	close(fd);
	unlink(path);
	return 0;
fail:
	close(fd);
	unlink(path);
	return -1;
}

int main(int argc, char *argv[])
{
	static const size_t sizes[] = { 4096, 65536, 1 << 20 };
	size_t only_bs = 0;
	int only_pattern = -1;
	const char *label = "dir";
	size_t file_mib = 256;
	double seconds = 1.0;
	char *buf;
	int c;

	while ((c = getopt(argc, argv, "m:t:p:l:b:P:")) != -1) {
		switch (c) {
		case 'b':
			only_bs = strtoul(optarg, NULL, 0);
			break;
		case 'P':
			for (int p = SEQWRITE; p <= RANDREAD; p++)
				if (!strcmp(optarg, pattern_name[p]))
					only_pattern = p;
			if (only_pattern < 0) {
				fprintf(stderr, "fuse-bench: unknown pattern %s\n", optarg);
				return 2;
			}
			break;
		case 'm':
			file_mib = strtoul(optarg, NULL, 0);
			break;
		case 't':
			seconds = atof(optarg);
			break;
		case 'p':
			daemon_pid = (pid_t)atoi(optarg);
			break;
		case 'l':
			label = optarg;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 1 || file_mib == 0) {
		fprintf(stderr, "usage: fuse-bench [-m FILE_MIB] [-t SECONDS] [-p DAEMON_PID] "
			"[-l LABEL] [-b BS] [-P PATTERN] DIR\n");
		return 2;
	}
	if (posix_memalign((void **)&buf, 4096, 1 << 20))
		return 1;
	for (size_t i = 0; i < (1 << 20); i++)
		buf[i] = (char)(rnd() | 1); /* no zero pages */
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (int p = SEQWRITE; p <= RANDREAD; p++)
			if ((!only_bs || only_bs == sizes[s]) &&
			    (only_pattern < 0 || only_pattern == p))
				if (run_one(argv[optind], label, (enum pattern)p, sizes[s],
					    file_mib << 20, seconds, buf) < 0)
					return 1;
	free(buf);
	return 0;
}
