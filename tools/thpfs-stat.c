/*
 * thpfs-stat.c - print the statistics of a mounted thpfs.
 *
 *   thpfs-stat MOUNTPOINT            the whole meminfo text
 *   thpfs-stat MOUNTPOINT NAME...    the value of each named line, one a line
 *   thpfs-stat MOUNTPOINT coverage   huge-page coverage from the kernel's
 *                                    view: ShmemPmdMapped / Shmem, in %
 *   thpfs-stat FILE [NAME...]        the same from a stats file that a
 *                                    process keeps (libthpfs-qemu.so's
 *                                    THPFS_QEMU_STATS, docs/vm.md)
 *
 * The daemon serves the text as the extended attribute user.thpfs.meminfo
 * of the mount's root directory (nothing is added to the namespace), so
 * `getfattr --only-values -n user.thpfs.meminfo MOUNTPOINT` prints the same.
 * Exit status: 0, 1 on an error (printed), 2 when a NAME is not there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#define XATTR_NAME "user.thpfs.meminfo"

/* Reads the attribute into a NUL-terminated malloc'd buffer, retrying if the
 * text grew between the size probe and the read.  Returns NULL with errno. */
static char *read_meminfo(const char *mp)
{
	for (int tries = 0; tries < 4; tries++) {
		ssize_t size = getxattr(mp, XATTR_NAME, NULL, 0);
		ssize_t n;
		char *buf;

		if (size < 0)
			return NULL;
		buf = malloc((size_t)size + 257);
		if (!buf)
			return NULL;
		n = getxattr(mp, XATTR_NAME, buf, (size_t)size + 256);
		if (n >= 0) {
			buf[n] = '\0';
			return buf;
		}
		free(buf);
		if (errno != ERANGE)
			return NULL;
	}
	errno = ERANGE;
	return NULL;
}

/* Reads a whole stats file into a NUL-terminated malloc'd buffer, or NULL
 * with errno. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t cap = 8192, n = 0, got;
	char *buf = malloc(cap + 1);

	if (!f || !buf) {
		if (f)
			fclose(f);
		free(buf);
		return NULL;
	}
	while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			char *bigger = realloc(buf, 2 * cap + 1);

			if (!bigger) {
				free(buf);
				fclose(f);
				errno = ENOMEM;
				return NULL;
			}
			buf = bigger;
			cap *= 2;
		}
	}
	fclose(f);
	buf[n] = '\0';
	return buf;
}

/* Prints the value part of the line named name ("Name:  123 kB" or
 * "name 123"); returns 0, or -1 when there is no such line. */
static int print_field(const char *text, const char *name)
{
	size_t len = strlen(name);

	for (const char *line = text; *line; ) {
		const char *end = strchr(line, '\n');
		size_t llen = end ? (size_t)(end - line) : strlen(line);

		if (llen > len && !strncmp(line, name, len) &&
		    (line[len] == ':' || line[len] == ' ' || line[len] == '\t')) {
			const char *v = line + len + (line[len] == ':');

			while (v < line + llen && (*v == ' ' || *v == '\t'))
				v++;
			printf("%.*s\n", (int)(line + llen - v), v);
			return 0;
		}
		line += llen + (end != NULL);
	}
	return -1;
}

/* The number on the line named name, or -1. */
static long long field_value(const char *text, const char *name)
{
	size_t len = strlen(name);

	for (const char *line = text; *line; ) {
		const char *end = strchr(line, '\n');

		if (!strncmp(line, name, len) && (line[len] == ':' || line[len] == ' '))
			return strtoll(line + len + 1, NULL, 10);
		if (!end)
			break;
		line = end + 1;
	}
	return -1;
}

/* Huge-page coverage as the kernel sees it: the bytes of thpfs frames it
 * maps with huge PMDs (PAGEMAP_SCAN) over the bytes thpfs holds.  thpfs's
 * own ShmemHugePages counter is not used: it cannot disagree with itself. */
static int print_coverage(const char *prog, const char *text)
{
	long long pmd = field_value(text, "ShmemPmdMapped"), shmem = field_value(text, "Shmem");
	const char *verify = strstr(text, "SplitVerify: none");

	if (verify) {
		/* The daemon cannot ask the kernel (Linux < 6.7, or it could not
		 * open /proc/self/pagemap); the line says why. */
		fprintf(stderr, "%s: coverage cannot be asked: %.*s\n", prog,
			(int)strcspn(verify, "\n"), verify);
		return -2;
	}
	if (pmd < 0 || shmem < 0)
		return -1; /* an older daemon */
	printf("%.1f\n", shmem ? 100.0 * (double)pmd / (double)shmem : 0.0);
	return 0;
}

int main(int argc, char *argv[])
{
	char *text;
	int ret = 0;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fprintf(argc < 2 ? stderr : stdout,
			"usage: %s MOUNTPOINT|STATSFILE [NAME...]\n"
			"Prints the statistics of the thpfs mounted on MOUNTPOINT (or kept in\n"
			"STATSFILE, e.g. by libthpfs-qemu.so), or the values of the named\n"
			"lines (e.g. ShmemPmdMapped thp_split_page).\n"
			"NAME coverage prints the huge-page coverage the kernel reports:\n"
			"ShmemPmdMapped / Shmem in %% (exit 2 if it cannot be asked).\n",
			argv[0]);
		return argc < 2 ? 1 : 0;
	}
	{
		struct stat st;

		text = stat(argv[1], &st) == 0 && S_ISREG(st.st_mode) ? read_file(argv[1])
								   : read_meminfo(argv[1]);
	}
	if (!text) {
		if (errno == ENODATA || errno == ENOTSUP)
			fprintf(stderr, "%s: %s is not a thpfs mount point\n", argv[0], argv[1]);
		else
			fprintf(stderr, "%s: %s: %s\n", argv[0], argv[1], strerror(errno));
		return 1;
	}
	if (argc == 2) {
		fputs(text, stdout);
	} else {
		for (int i = 2; i < argc; i++) {
			int r = !strcmp(argv[i], "coverage") ? print_coverage(argv[0], text)
							      : print_field(text, argv[i]);
			if (r == -1)
				fprintf(stderr, "%s: no statistic named %s\n", argv[0], argv[i]);
			if (r < 0)
				ret = 2;
		}
	}
	free(text);
	return ret;
}
