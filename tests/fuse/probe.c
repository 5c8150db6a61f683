/*
 * probe.c - small system-call probes for tests/fuse/run.sh, for the calls
 * that no everyday tool makes on its own.  Each prints what happened and
 * exits 0 when the call behaved as the subcommand's description says.
 *
 *   probe mmap FILE                shared mmap: prints "shared: ok" or
 *                                  "shared: ERRNAME"; private read-only mmap:
 *                                  "private: ok" when it reads what pread
 *                                  reads, else "private: ERRNAME|mismatch"
 *   probe segments FILE            data segments by SEEK_DATA/SEEK_HOLE,
 *                                  one "START END" line each
 *   probe rename2 OLD NEW FLAG     renameat2 with FLAG noreplace|exchange;
 *                                  prints "ok" or the errno name
 *   probe dirty FILE OFF           pwrite one byte 'x' at OFF (no truncate)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "unknown";
}

static int probe_mmap(const char *path)
{
	struct stat st;
	char *buf, *p;
	int fd, ret = 0;

	fd = open(path, O_RDWR);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
		fprintf(stderr, "probe: %s: need a non-empty file (%s)\n", path, strerror(errno));
		return 1;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("shared: %s\n", errname(errno));
	} else {
		printf("shared: ok\n");
		munmap(p, (size_t)st.st_size);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	buf = malloc((size_t)st.st_size);
	if (p == MAP_FAILED) {
		printf("private: %s\n", errname(errno));
		ret = 1;
	} else if (!buf || pread(fd, buf, (size_t)st.st_size, 0) != st.st_size) {
		printf("private: pread failed\n");
		ret = 1;
	} else {
		int same = memcmp(p, buf, (size_t)st.st_size) == 0;

		printf("private: %s\n", same ? "ok" : "mismatch");
		ret = !same;
	}
	if (p != MAP_FAILED)
		munmap(p, (size_t)st.st_size);
	free(buf);
	close(fd);
	return ret;
}

static int probe_segments(const char *path)
{
	off_t pos = 0, data, hole;
	int fd = open(path, O_RDONLY);

	if (fd < 0) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (;;) {
		data = lseek(fd, pos, SEEK_DATA);
		if (data < 0)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0) {
			fprintf(stderr, "probe: SEEK_HOLE: %s\n", strerror(errno));
			close(fd);
			return 1;
		}
		printf("%lld %lld\n", (long long)data, (long long)hole);
		pos = hole;
	}
	close(fd);
	if (errno != ENXIO) {
		fprintf(stderr, "probe: SEEK_DATA: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

static int probe_rename2(const char *from, const char *to, const char *flag)
{
	unsigned flags;

	if (!strcmp(flag, "noreplace"))
		flags = RENAME_NOREPLACE;
	else if (!strcmp(flag, "exchange"))
		flags = RENAME_EXCHANGE;
	else if (!strcmp(flag, "none"))
		flags = 0;
	else {
		fprintf(stderr, "probe: rename2 flag must be none, noreplace or exchange\n");
		return 2;
	}
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) < 0) {
		printf("%s\n", errname(errno));
		return 1;
	}
	printf("ok\n");
	return 0;
}

static int probe_dirty(const char *path, const char *off)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0 || pwrite(fd, "x", 1, strtoll(off, NULL, 0)) != 1) {
		fprintf(stderr, "probe: %s: %s\n", path, strerror(errno));
		return 1;
	}
	close(fd);
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc == 3 && !strcmp(argv[1], "mmap"))
		return probe_mmap(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "segments"))
		return probe_segments(argv[2]);
	if (argc == 5 && !strcmp(argv[1], "rename2"))
		return probe_rename2(argv[2], argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "dirty"))
		return probe_dirty(argv[2], argv[3]);
	fprintf(stderr, "usage: probe mmap FILE | segments FILE | rename2 OLD NEW FLAG | "
		"dirty FILE OFF\n");
	return 2;
}
