/*
 * thpfs-fuse.c - `thpfs`, the FUSE daemon that mounts a thpfs file system.
 *
 *   thpfs [-f] [-d] [-s] [-o OPTIONS] MOUNTPOINT
 *
 * Command line, mount-point checks, session set-up and shutdown live here;
 * the FUSE operations are in tools/fuse/ops.c.  Options are parsed with
 * libfuse's fuse_opt_parse: the library's mount options are collected into
 * one string for thpfs_mount_ex, the daemon's own options go into struct
 * cli, and everything else is left for libfuse (allow_other, ro, ...).
 */
#define _GNU_SOURCE
#include "fuse/thpfs-fuse.h"
#include "fuse/session.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct cli {
	char *lib_opts;       /* "size=...,huge=..." for thpfs_mount_ex */
	size_t lib_len;
	double attr_timeout;
	double entry_timeout;
	unsigned max_write;
	int splice_read;
	int splice_write;
	const char *mountpoint; /* the first non-option argument */
	int size_given;       /* size= was on the command line */
	int inodes_given;     /* nr_inodes= was on the command line */
	int ignore_memcg;     /* -o ignore_memcg_limit: no memory cgroup check */
	int show_help;        /* -h/--help/-V/--version: no checks, no mount */
	int failed;           /* an option could not be stored */
};

enum {
	KEY_LIB,  /* a libthpfs mount option: collected into cli.lib_opts */
	KEY_INFO, /* help or version: noted, and left for fuse_parse_cmdline */
};

#define CLI_OPT(t, field, v) { t, offsetof(struct cli, field), v }

static const struct fuse_opt cli_opts[] = {
	THPFS_FUSE_LIB_OPTS(KEY_LIB),
	CLI_OPT("attr_timeout=%lf", attr_timeout, 0),
	CLI_OPT("entry_timeout=%lf", entry_timeout, 0),
	CLI_OPT("max_write=%u", max_write, 0),
	CLI_OPT("splice_read", splice_read, 1),
	CLI_OPT("no_splice_read", splice_read, 0),
	CLI_OPT("splice_write", splice_write, 1),
	CLI_OPT("no_splice_write", splice_write, 0),
	CLI_OPT("ignore_memcg_limit", ignore_memcg, 1),
	FUSE_OPT_KEY("-h", KEY_INFO),
	FUSE_OPT_KEY("--help", KEY_INFO),
	FUSE_OPT_KEY("-V", KEY_INFO),
	FUSE_OPT_KEY("--version", KEY_INFO),
	FUSE_OPT_END
};

static void usage(const char *prog)
{
	char opts[4096];

	if (thpfs_options_help(opts, sizeof(opts)) < 0)
		opts[0] = '\0';
	printf("usage: %s [options] MOUNTPOINT\n"
	       "\n"
	       "Mounts a thpfs file system (files in 2 MiB transparent huge pages that\n"
	       "are split and given back to the OS when punched) with FUSE.  Unmount\n"
	       "with `fusermount3 -u MOUNTPOINT` or `umount MOUNTPOINT`.\n"
	       "\n"
	       "thpfs options (-o, comma-separated; sizes take k, m, g or t: KiB .. TiB):\n"
	       "%s"
	       "\n"
	       "daemon options (-o):\n"
	       "    attr_timeout=SECONDS   how long the kernel caches attributes (1.0)\n"
	       "    entry_timeout=SECONDS  how long the kernel caches names (1.0)\n"
	       "    max_write=BYTES        largest write request (1048576)\n"
	       "    [no_]splice_read       receive write data through a pipe (off)\n"
	       "    [no_]splice_write      send read data through a pipe (off)\n"
	       "    ignore_memcg_limit     allow size=, nr_inodes= above the memory cgroup limit\n"
	       "\n"
	       "default_permissions is always on: the kernel checks permissions.  Only\n"
	       "the mounting user can use the mount unless allow_other is given.\n"
	       "Files are opened with direct I/O (no page-cache copy of read/write data);\n"
	       "shared and private mmap work (mapped pages live in the page cache too).\n"
	       "size= + nr_inodes= x 1536 bytes (inodes, names, extended attributes)\n"
	       "must fit in the daemon's memory cgroup limit less a reserve for the\n"
	       "daemon: more is refused, the defaults are lowered to fit.\n"
	       "The daemon sets its oom_score_adj to -1000 when allowed, else as low as\n"
	       "it may: if the OOM killer ends it, every file on the mount is lost.\n"
	       "Statistics: `thpfs-stat MOUNTPOINT`, or the extended attribute\n"
	       "%s of the mount's root directory.\n"
	       "\n",
	       prog, opts, THPFS_XATTR_MEMINFO);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/* Appends one "name=value" to the library option string. */
static int lib_opt_add(struct cli *cli, const char *arg)
{
	size_t n = strlen(arg);
	char *p = realloc(cli->lib_opts, cli->lib_len + n + 2);

	if (!p)
		return -1;
	if (cli->lib_len)
		p[cli->lib_len++] = ',';
	memcpy(p + cli->lib_len, arg, n + 1);
	cli->lib_len += n;
	cli->lib_opts = p;
	return 0;
}

/* fuse_opt_parse callback: 0 discards arg (it is ours), 1 keeps it for
 * libfuse, -1 stops parsing. */
static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct cli *cli = data;

	if (key == KEY_INFO)
		cli->show_help = 1;
	if (key == FUSE_OPT_KEY_NONOPT && !cli->mountpoint)
		cli->mountpoint = arg;
	if (key != KEY_LIB)
		return 1;
	if (!strncmp(arg, "size=", 5))
		cli->size_given = 1;
	if (!strncmp(arg, "nr_inodes=", 10))
		cli->inodes_given = 1;
	if (lib_opt_add(cli, arg) < 0) {
		cli->failed = 1;
		return -1;
	}
	return 0;
}

/* Replaces \040-style escapes of /proc/self/mountinfo in place. */
static void unescape_octal(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = '\0';
}

/* Whether something is mounted on the directory path (canonical). */
static int is_mount_point(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return 0;
	while (!found && getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX + 1];

		/* id parent major:minor root MOUNTPOINT ... */
		if (sscanf(line, "%*s %*s %*s %*s %" "4096" "s", mp) != 1)
			continue;
		unescape_octal(mp);
		found = strcmp(mp, path) == 0;
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * Checks the mount point before asking the kernel, so that the usual
 * mistakes get a message that names them.  Returns 0 or -1 (printed).
 */
static int check_mountpoint(const char *prog, const char *mp)
{
	char real[PATH_MAX];
	struct stat st;

	if (stat(mp, &st) < 0) {
		if (errno == ENOENT)
			fprintf(stderr, "%s: mount point %s does not exist\n", prog, mp);
		else if (errno == ENOTCONN)
			fprintf(stderr, "%s: mount point %s is busy: a FUSE file system "
				"there lost its daemon (run: fusermount3 -u %s)\n", prog, mp, mp);
		else
			fprintf(stderr, "%s: cannot use mount point %s: %s\n", prog, mp,
				strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: mount point %s is not a directory\n", prog, mp);
		return -1;
	}
	if (realpath(mp, real) && is_mount_point(real)) {
		fprintf(stderr, "%s: mount point %s is busy: a file system is already "
			"mounted there (unmount it first)\n", prog, mp);
		return -1;
	}
	return 0;
}

/* Checks that the FUSE device exists and opens (libfuse opens it itself
 * before it mounts, for unprivileged users too, with fusermount3's help). */
static int check_fuse_device(const char *prog)
{
	struct stat st;
	int fd;

	if (stat("/dev/fuse", &st) < 0) {
		fprintf(stderr, "%s: /dev/fuse is unavailable (%s): load the fuse module "
			"(modprobe fuse) or, in a container, pass /dev/fuse in\n", prog,
			strerror(errno));
		return -1;
	}
	if (!S_ISCHR(st.st_mode)) {
		fprintf(stderr, "%s: /dev/fuse is not a character device\n", prog);
		return -1;
	}
	fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot open /dev/fuse: %s\n", prog, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* Mounts the library with the collected options; prints the library's
 * message on a bad option.  Returns 0 or -1. */
static int mount_library(const char *prog, struct cli *cli, struct thpfs **fs)
{
	char err[256] = "";
	int ret;

	ret = thpfs_mount_ex(fs, cli->lib_opts ? cli->lib_opts : "", err, sizeof(err));
	if (ret == 0)
		return 0;
	if (ret == -EINVAL && err[0])
		fprintf(stderr, "%s: %s\n", prog, err);
	else
		fprintf(stderr, "%s: cannot create the file system: %s\n", prog,
			strerror(-ret));
	return -1;
}

/* ---- Memory cgroup limit and the OOM killer ---- */

#define MIB (1ULL << 20)
#define MEMCG_NO_LIMIT (1ULL << 62) /* v1 reports "none" as ~2^63 */

/* Reads one number from a cgroup file; "max" (v2) and absurdly large
 * values mean no limit.  Returns the limit, 0 for none or unreadable. */
static uint64_t read_limit_file(const char *path)
{
	char buf[64] = "";
	unsigned long long v;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (sscanf(buf, "%llu", &v) != 1 || v >= MEMCG_NO_LIMIT)
		return 0;
	return v;
}

/*
 * The smallest limit in file name over the cgroup directory dir and its
 * ancestors up to the hierarchy's mount point top (a parent's limit binds
 * its children).  where receives the directory holding it.  0 for none.
 */
static uint64_t walk_limits(char *dir, const char *top, const char *name, char *where,
			    size_t wlen)
{
	size_t toplen = strlen(top);
	uint64_t best = 0;

	for (;;) {
		char path[PATH_MAX + 64];
		uint64_t v;
		char *slash;

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		v = read_limit_file(path);
		if (v && (!best || v < best)) {
			best = v;
			snprintf(where, wlen, "%s", path);
		}
		if (strlen(dir) <= toplen)
			break;
		slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < toplen)
			break;
		*slash = '\0';
	}
	return best;
}

/* Whether the comma-separated list has the word. */
static int list_has(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
		if (!strncmp(p, word, n) && (p[n] == ',' || p[n] == '\0' || p[n] == '\n'))
			return 1;
	return 0;
}

/*
 * Where the daemon's memory cgroup directory is: its path in
 * /proc/self/cgroup (v1: the hierarchy with the memory controller; v2: the
 * "0::" line) joined to where that hierarchy is mounted (found in
 * /proc/self/mountinfo, whose root field is cut off the path).  Returns 1
 * with dir (and top, the mount point) filled, or 0.
 */
static int memcg_dir(int v2, char *dir, char *top, size_t len)
{
	char *line = NULL, cgpath[PATH_MAX] = "";
	size_t cap = 0;
	int found = 0;
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (!f)
		return 0;
	while (!found && getline(&line, &cap, f) > 0) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c2 = '\0';
		line[strcspn(line, ":")] = '\0';
		if (v2 ? (!strcmp(line, "0") && c2 == c1 + 1) : list_has(c1 + 1, "memory")) {
			c2[1 + strcspn(c2 + 1, "\n")] = '\0';
			snprintf(cgpath, sizeof(cgpath), "%s", c2 + 1);
			found = 1;
		}
	}
	fclose(f);
	if (!found)
		goto out;
	found = 0;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		goto out;
	while (!found && getline(&line, &cap, f) > 0) {
		char root[PATH_MAX], mp[PATH_MAX], fstype[64], super[1024];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mp) != 2 ||
		    sscanf(sep + 3, "%63s %*s %1023s", fstype, super) != 2)
			continue;
		if (v2 ? strcmp(fstype, "cgroup2") != 0
		       : strcmp(fstype, "cgroup") != 0 || !list_has(super, "memory"))
			continue;
		unescape_octal(root);
		unescape_octal(mp);
		{
			size_t rl = strlen(root);
			const char *rest = cgpath;

			/* a cgroup namespace's mount shows a subtree */
			if (strcmp(root, "/") != 0 && !strncmp(cgpath, root, rl))
				rest = cgpath + rl;
			snprintf(top, len, "%s", mp);
			snprintf(dir, len, "%s%s", mp, strcmp(rest, "/") ? rest : "");
		}
		found = 1;
	}
	fclose(f);
out:
	free(line);
	return found;
}

/* The memory limit the daemon runs under: the smallest of cgroup v1's
 * memory.limit_in_bytes and v2's memory.max over its cgroup and the
 * ancestors; 0 when there is none.  where names the file. */
static uint64_t memcg_limit(char *where, size_t wlen)
{
	char dir[PATH_MAX], top[PATH_MAX], w2[PATH_MAX + 64];
	uint64_t v1 = 0, v2 = 0;

	if (memcg_dir(0, dir, top, sizeof(dir)))
		v1 = walk_limits(dir, top, "memory.limit_in_bytes", where, wlen);
	if (memcg_dir(1, dir, top, sizeof(dir)))
		v2 = walk_limits(dir, top, "memory.max", w2, sizeof(w2));
	if (v2 && (!v1 || v2 < v1)) {
		snprintf(where, wlen, "%s", w2);
		return v2;
	}
	return v1;
}

/* Memory the daemon keeps for itself under a cgroup limit: libfuse and
 * read buffers, inodes and names, page tables: an eighth of the limit,
 * at least 32 MiB and at most 1 GiB. */
static uint64_t memcg_reserve(uint64_t limit)
{
	uint64_t r = limit / 8;

	if (r < 32 * MIB)
		r = 32 * MIB;
	return r > 1024 * MIB ? 1024 * MIB : r;
}

/*
 * What the daemon's memory holds for each inode of nr_inodes=, at most.  The
 * library charges an inode, an extra hard link and the bytes of extended
 * attributes (value + name + 40) to the inode space, nr_inodes= x 1024
 * bytes, as tmpfs does; nothing of it counts against size=.  So the memory
 * that inode space can cost is nr_inodes= x 1024 x (the most the daemon
 * spends per byte charged).  Measured with tests/fuse/run.sh
 * t_memcg_metadata (cgroup usage over empty files with 200-byte names):
 * 653 bytes per empty file; attributes cost their charge plus
 * malloc's rounding (a few percent; at most 8 bytes over the 40 charged per
 * attribute).  1536 (1.5 x 1024) leaves a margin for both.
 */
#define INODE_MEMORY 1536ULL
#define UNLIMITED_FILES (1ULL << 32) /* thpfs_statfs's files for nr_inodes=0 */
#define MIN_INODES 1024ULL /* fewer is refused rather than set */

/* The daemon memory size= and nr_inodes= may take when full. */
static uint64_t mount_memory(uint64_t size, uint64_t files)
{
	return size + files * INODE_MEMORY;
}

/* Adds "name=value" to the library options and says what was lowered. */
static int lower_option(const char *prog, struct cli *cli, const char *name, uint64_t v,
			uint64_t limit, const char *where)
{
	char opt[64];

	snprintf(opt, sizeof(opt), "%s=%llu", name, (unsigned long long)v);
	if (lib_opt_add(cli, opt) < 0)
		return -1;
	if (!strcmp(name, "size"))
		fprintf(stderr, "%s: size= lowered to %llu MiB to fit the memory cgroup limit "
			"%llu MiB (%s)\n", prog, (unsigned long long)(v / MIB),
			(unsigned long long)(limit / MIB), where);
	else
		fprintf(stderr, "%s: nr_inodes= lowered to %llu to fit the memory cgroup limit "
			"%llu MiB (%s)\n", prog, (unsigned long long)v,
			(unsigned long long)(limit / MIB), where);
	return 0;
}

/*
 * An OOM kill of the daemon loses every file, so everything a full mount
 * holds must fit under the memory cgroup limit less the daemon's reserve:
 * size= of file data plus the inode space (inodes, hard links, extended
 * attributes: nr_inodes= x INODE_MEMORY).  An explicit size= or nr_inodes=
 * (or 0, unlimited) that does not fit is refused unless ignore_memcg_limit;
 * a default one is lowered to fit (both in proportion when neither was
 * given) and the new value printed.  size is the mount's size= in bytes and
 * files its nr_inodes= (0 and UNLIMITED_FILES: none).  Returns 0 or -1
 * (printed).
 */
static int check_memcg(const char *prog, struct cli *cli, uint64_t size, uint64_t files)
{
	char where[PATH_MAX + 64] = "", given[96];
	uint64_t limit = memcg_limit(where, sizeof(where)), fit, reserve;
	int unlimited_size = !size, unlimited_files = files >= UNLIMITED_FILES;

	if (!limit || cli->ignore_memcg)
		return 0;
	reserve = memcg_reserve(limit);
	fit = limit > reserve ? limit - reserve : 0;
	fit &= ~(uint64_t)(4096 - 1);
	if (!unlimited_size && !unlimited_files && mount_memory(size, files) <= fit)
		return 0;
	if (fit < 4096 + MIN_INODES * INODE_MEMORY) {
		fprintf(stderr, "%s: the memory cgroup limit %llu MiB (%s) leaves no room for "
			"files\n", prog, (unsigned long long)(limit / MIB), where);
		return -1;
	}
	if (cli->size_given && cli->inodes_given) {
		snprintf(given, sizeof(given), "size= of %llu MiB%s with nr_inodes=%llu%s",
			 (unsigned long long)(size / MIB), unlimited_size ? " (unlimited)" : "",
			 (unsigned long long)(unlimited_files ? 0 : files),
			 unlimited_files ? " (unlimited)" : "");
		goto refuse;
	}
	if (cli->size_given) {
		uint64_t room = !unlimited_size && size < fit ? fit - size : 0;

		snprintf(given, sizeof(given), "size= of %llu MiB", (unsigned long long)(size / MIB));
		if (unlimited_size)
			snprintf(given, sizeof(given), "size=0 (unlimited)");
		if (room / INODE_MEMORY < MIN_INODES)
			goto refuse;
		return lower_option(prog, cli, "nr_inodes", room / INODE_MEMORY, limit, where);
	}
	if (cli->inodes_given) {
		uint64_t room = !unlimited_files && files * INODE_MEMORY < fit ?
				(fit - files * INODE_MEMORY) & ~(uint64_t)(4096 - 1) : 0;

		snprintf(given, sizeof(given), "nr_inodes=%llu", (unsigned long long)files);
		if (unlimited_files)
			snprintf(given, sizeof(given), "nr_inodes=0 (unlimited)");
		if (!room)
			goto refuse;
		return lower_option(prog, cli, "size", room, limit, where);
	}
	/* both defaults (never unlimited): scale them down together */
	{
		double scale = (double)fit / (double)mount_memory(size, files);
		uint64_t nr = (uint64_t)((double)files * scale);

		if (nr < MIN_INODES)
			nr = MIN_INODES;
		size = (fit - nr * INODE_MEMORY) & ~(uint64_t)(4096 - 1);
		if (lower_option(prog, cli, "size", size, limit, where) < 0 ||
		    lower_option(prog, cli, "nr_inodes", nr, limit, where) < 0)
			return -1;
		return 0;
	}
refuse:
	fprintf(stderr, "%s: %s is above the memory cgroup limit %llu MiB (%s) less "
		"%llu MiB for the daemon, counting size= of file data and %llu bytes of "
		"the daemon's memory for each inode of nr_inodes= (inodes, names, "
		"extended attributes): filling it would get the daemon OOM-killed and "
		"every file lost; keep size= + nr_inodes= x %llu within %llu MiB (or "
		"-o ignore_memcg_limit)\n", prog, given, (unsigned long long)(limit / MIB),
		where, (unsigned long long)(reserve / MIB), INODE_MEMORY, INODE_MEMORY,
		(unsigned long long)(fit / MIB));
	return -1;
}

/*
 * Asks the OOM killer to spare the daemon: oom_score_adj -1000 (needs
 * CAP_SYS_RESOURCE), else the lowest value the process may set (an
 * unprivileged process cannot go below the lowest value a privileged one
 * gave it), found by bisection.  Prints what it could not do.
 */
static void protect_from_oom(const char *prog)
{
	int fd = open("/proc/self/oom_score_adj", O_RDWR | O_CLOEXEC);
	char buf[16] = "";
	int cur, lo = -1000, hi;

	if (fd < 0 || pread(fd, buf, sizeof(buf) - 1, 0) <= 0 || sscanf(buf, "%d", &cur) != 1) {
		fprintf(stderr, "%s: cannot read oom_score_adj: %s\n", prog, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	hi = cur; /* allowed: it is the current value */
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		int n = snprintf(buf, sizeof(buf), "%d", mid);

		if (pwrite(fd, buf, (size_t)n, 0) == n)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (hi != cur) {
		int n = snprintf(buf, sizeof(buf), "%d", hi);

		if (pwrite(fd, buf, (size_t)n, 0) != n)
			hi = cur;
	}
	close(fd);
	if (hi > -1000)
		fprintf(stderr, "%s: oom_score_adj is %d, not -1000 (needs CAP_SYS_RESOURCE): "
			"the OOM killer may end the daemon, and every file on the mount "
			"with it\n", prog, hi);
}

/*
 * Checks what can be checked before libfuse sees the mount point (its own
 * check only says "bad mount point"): the library options, size= against
 * the memory cgroup limit, the FUSE device, the mount point.  The library options are validated with a trial mount;
 * the real one happens after fuse_daemonize, because fork keeps only the
 * calling thread and libthpfs may run a collapse thread.  Returns 0 or -1
 * (printed).
 */
static int preflight(const char *prog, struct cli *cli)
{
	struct thpfs_stats st;
	struct thpfs_statfs sf;
	struct thpfs *fs;
	int ret;

	if (mount_library(prog, cli, &fs) < 0)
		return -1;
	ret = thpfs_get_stats(fs, &st);
	if (ret == 0)
		ret = thpfs_statfs(fs, &sf);
	thpfs_unmount(fs);
	if (ret < 0 || check_memcg(prog, cli, st.size_limit, sf.files) < 0)
		return -1;
	if (check_fuse_device(prog) < 0)
		return -1;
	if (cli->mountpoint && check_mountpoint(prog, cli->mountpoint) < 0)
		return -1;
	return 0;
}

/* Checks the daemon's own option values; returns 0 or -1 (printed). */
static int check_cli(const char *prog, const struct cli *cli)
{
	if (cli->max_write < 4096 || cli->max_write > THPFS_FUSE_MAX_IO) {
		fprintf(stderr, "%s: max_write=%u: must be 4096..%u\n", prog, cli->max_write,
			THPFS_FUSE_MAX_IO);
		return -1;
	}
	if (cli->attr_timeout < 0 || cli->entry_timeout < 0) {
		fprintf(stderr, "%s: attr_timeout and entry_timeout must be >= 0\n", prog);
		return -1;
	}
	return 0;
}

/*
 * Mounts, daemonizes unless -f, creates the file system and serves requests
 * until unmount or a signal; then unmounts both.  Returns the exit status.
 */
static int serve(const char *prog, struct fuse_args *args, const struct fuse_cmdline_opts *opts,
		 struct cli *cli)
{
	struct thpfs_fuse tf = {
		.attr_timeout = cli->attr_timeout,
		.entry_timeout = cli->entry_timeout,
		.max_write = cli->max_write,
		.splice_read = cli->splice_read,
		.splice_write = cli->splice_write,
		.debug = opts->debug,
	};
	struct fuse_session *se;
	int ret = 1;

	se = fuse_session_new(args, &thpfs_fuse_ops, sizeof(thpfs_fuse_ops), &tf);
	if (!se)
		return 1;
	tf.se = se;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, opts->mountpoint) != 0) {
		fprintf(stderr, "%s: cannot mount on %s\n", prog, opts->mountpoint);
		goto out_signals;
	}
	if (thpfs_fuse_io_install(se, &tf) != 0) {
		fprintf(stderr, "%s: cannot set up the FUSE device I/O\n", prog);
		goto out_unmount;
	}
	if (fuse_daemonize(opts->foreground) != 0)
		goto out_unmount;
	if (mount_library(prog, cli, &tf.fs) < 0)
		goto out_unmount;

	ret = thpfs_fuse_run_session(se, opts);
	/* the loop returns the signal number after SIGTERM/SIGINT/SIGHUP */
	ret = (ret == 0 || ret == SIGTERM || ret == SIGINT || ret == SIGHUP) ? 0 : 1;

out_unmount:
	fuse_session_unmount(se);
	if (tf.fs) {
		int err = thpfs_unmount(tf.fs);

		if (err < 0) {
			fprintf(stderr, "%s: thpfs_unmount: %s\n", prog, strerror(-err));
			ret = 1;
		}
	}
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	return ret;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cli cli = {
		.attr_timeout = 1.0,
		.entry_timeout = 1.0,
		.max_write = THPFS_FUSE_MAX_IO,
	};
	struct fuse_cmdline_opts opts;
	const char *prog = "thpfs";
	int ret = 1;

	if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) < 0 || cli.failed)
		goto out_args;
	if (!cli.show_help && preflight(prog, &cli) < 0)
		goto out_args;
	/* the defaults go first: libfuse keeps the last fsname=/subtype= it
	 * sees, so the user's own win */
	if (fuse_opt_insert_arg(&args, 1, "-odefault_permissions,fsname=thpfs,subtype=thpfs") < 0)
		goto out_args;
	if (fuse_parse_cmdline(&args, &opts) != 0)
		goto out_args;
	if (opts.show_help) {
		usage(argv[0]);
		ret = 0;
	} else if (opts.show_version) {
		printf("thpfs %s (libfuse %s)\n", THPFS_VERSION, fuse_pkgversion());
		fuse_lowlevel_version();
		ret = 0;
	} else if (!opts.mountpoint) {
		fprintf(stderr, "usage: %s [options] MOUNTPOINT (see %s --help)\n", argv[0],
			argv[0]);
	} else if (check_cli(prog, &cli) == 0) {
		protect_from_oom(prog);
		ret = serve(prog, &args, &opts, &cli);
	}
	free(opts.mountpoint);
out_args:
	fuse_opt_free_args(&args);
	free(cli.lib_opts);
	return ret;
}
