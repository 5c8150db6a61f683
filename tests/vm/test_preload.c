/*
 * test_preload.c - build/libthpfs-qemu.so without QEMU: makes the calls
 * QEMU 7.2 makes on a memory-backend-file (the sequence strace shows, see
 * tools/qemu-preload/thpfs-qemu.c) and then its balloon discards
 * (fallocate(PUNCH_HOLE|KEEP_SIZE) + MADV_DONTNEED per 4 KiB page, in
 * descending order like the guest's driver hands them), and checks what the
 * memory cgroup and the data say.  Run by tests/vm/run-preload.sh with
 * LD_PRELOAD set and THPFS_QEMU_OPTIONS=policy=P; the expectations depend on
 * P.  Prints "ok"/"FAIL" lines and "N passed, N failed"; root (cgroup).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"

#define MiB (1UL << 20)
#define HUGE (2 * MiB)
#define PAGE 4096UL
#define RAM (16 * MiB)
#define SLACK (512 * 1024L) /* cgroup noise: page tables, our own small allocations */

static int passed, failed;
static struct thpfs_cg cg;
static const char *policy = "whole-lazy";
static const char *stats;

#define CHECK(cond, ...) do { \
	if (cond) { passed++; printf("ok: "); } else { failed++; printf("FAIL (%s:%d): ", __FILE__, __LINE__); } \
	printf(__VA_ARGS__); printf("\n"); fflush(stdout); \
} while (0)

static long usage(void)
{
	return (long)thpfs_cg_usage(&cg);
}

/* QEMU's balloon discard of one 4 KiB page of file-backed RAM. */
static int discard_page(int fd, char *ram, size_t off)
{
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, PAGE))
		return -1;
	return madvise(ram + off, PAGE, MADV_DONTNEED);
}

static void stamp(char *ram, size_t off, size_t len, unsigned gen)
{
	for (size_t o = off; o < off + len; o += PAGE)
		for (size_t w = 0; w < PAGE / 8; w++)
			((uint64_t *)(ram + o))[w] = (o + w * 8) ^ ((uint64_t)gen << 56) ^ 0x5a5a;
}

/* Pages of [off, off+len) (every step-th) that do not hold stamp gen. */
static size_t bad_stamps(const char *ram, size_t off, size_t len, size_t step, unsigned gen)
{
	size_t bad = 0;

	for (size_t o = off; o < off + len; o += step)
		for (size_t w = 0; w < PAGE / 8; w++)
			if (((const uint64_t *)(ram + o))[w] != ((o + w * 8) ^ ((uint64_t)gen << 56) ^ 0x5a5a)) {
				bad++;
				break;
			}
	return bad;
}

static int reads_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Value of a "name value" line of the stats file, or -1. */
static long stat_value(const char *name)
{
	char line[256];
	size_t len = strlen(name);
	long v = -1;
	FILE *f = fopen(stats, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, len) && line[len] == ' ') {
			v = strtol(line + len + 1, NULL, 0);
			break;
		}
	fclose(f);
	return v;
}

/* The host asks for the memory: STATS.reclaim, served within a second. */
static int ask_reclaim(void)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s.reclaim", stats);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("0\n", f);
	fclose(f);
	for (int i = 0; i < 100; i++) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (access(path, F_OK))
			return 0;
		nanosleep(&ts, NULL);
	}
	return -1;
}

int main(void)
{
	const char *opts = getenv("THPFS_QEMU_OPTIONS");
	const char *path = "/thpfs-test/ram";
	struct stat st;
	struct statfs sf;
	char *resv, *ram;
	long u0, u1, u2;
	int fd;

	stats = getenv("THPFS_QEMU_STATS");
	if (!dlsym(RTLD_DEFAULT, "thpfs_mount") || !stats) {
		printf("test_preload: run me with LD_PRELOAD=libthpfs-qemu.so and THPFS_QEMU_STATS set\n");
		return 2;
	}
	if (opts && strstr(opts, "policy="))
		policy = strstr(opts, "policy=") + 7;
	if (thpfs_cg_create(&cg, "thpfs-preload") || thpfs_cg_enter(&cg)) {
		printf("test_preload: needs a memory cgroup (root)\n");
		return 2;
	}
	printf("policy %s\n", policy);

	/* QEMU's sequence (file_ram_open, file_ram_alloc, qemu_ram_mmap). */
	errno = 0;
	fd = open(path, O_RDWR);
	CHECK(fd < 0 && errno == ENOENT, "open of a missing file: ENOENT");
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0, "open O_CREAT|O_EXCL under the prefix: fd %d", fd);
	CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0, "fstat: empty regular file");
	CHECK(lseek(fd, 0, SEEK_END) == 0, "lseek SEEK_END: 0");
	CHECK(fstatfs(fd, &sf) == 0 && sf.f_type != 0x958458f6 && sf.f_bsize == 4096,
	      "fstatfs: not hugetlbfs, 4 KiB blocks (QEMU then discards 4 KiB pages)");
	CHECK(ftruncate(fd, RAM) == 0, "ftruncate to the RAM size");
	resv = mmap(NULL, RAM + HUGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(resv != MAP_FAILED, "reservation (passed through)");
	ram = (char *)(((uintptr_t)resv + HUGE - 1) & ~(HUGE - 1));
	CHECK(mmap(ram, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED &&
	      errno == ENODEV, "MAP_PRIVATE of a served file refused (ENODEV)");
	CHECK(mmap(ram, RAM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == ram,
	      "mmap MAP_SHARED|MAP_FIXED into the reservation");
	CHECK(madvise(ram, RAM, MADV_HUGEPAGE) == 0 && madvise(ram, RAM, MADV_DONTFORK) == 0 &&
	      madvise(ram, RAM, MADV_MERGEABLE) == 0, "madvise HUGEPAGE, DONTFORK, MERGEABLE");
	CHECK(stat_value("map_addr") == (long)(uintptr_t)ram, "stats file names the mapping");

	u0 = usage();
	stamp(ram, 0, RAM, 1);
	u1 = usage();
	CHECK(u1 - u0 >= (long)RAM - SLACK, "writing the RAM charges it: %ld KiB", (u1 - u0) >> 10);
	CHECK(fstat(fd, &st) == 0 && st.st_blocks * 512 == (long)RAM, "st_blocks counts what the mapping touched");

	/* Range 0: ballooned whole, page by page, top down. */
	for (size_t off = HUGE - PAGE; off > 0; off -= PAGE)
		if (discard_page(fd, ram, off))
			CHECK(0, "discard at %zu: %s", off, strerror(errno));
	u2 = usage();
	if (!strcmp(policy, "split"))
		CHECK(u1 - u2 >= (long)(HUGE - PAGE) - SLACK, "split: 511 pages back at once (%ld KiB)", (u1 - u2) >> 10);
	else
		CHECK(u1 - u2 < SLACK, "%s: 511 of 512 pages discarded, memory kept (%ld KiB back)", policy, (u1 - u2) >> 10);
	CHECK(discard_page(fd, ram, 0) == 0, "discard of the last page");
	u2 = usage();
	if (!strcmp(policy, "lazy"))
		CHECK(u1 - u2 < SLACK, "lazy: nothing back before the host asks (%ld KiB)", (u1 - u2) >> 10);
	else
		CHECK(u1 - u2 >= (long)HUGE - SLACK, "%s: the whole range back when its last page arrives (%ld KiB)",
		      policy, (u1 - u2) >> 10);
	CHECK(reads_zero(ram, HUGE), "the ballooned range reads zero");

	/* Range 1: every other page ballooned. */
	u1 = usage();
	for (size_t off = HUGE; off < 2 * HUGE; off += 2 * PAGE)
		discard_page(fd, ram, off);
	u2 = usage();
	if (!strcmp(policy, "split"))
		CHECK(u1 - u2 >= (long)(HUGE / 2) - SLACK, "split: half a range back at once (%ld KiB)", (u1 - u2) >> 10);
	else
		CHECK(u1 - u2 < SLACK, "%s: half a range ballooned, kept huge (%ld KiB back)", policy, (u1 - u2) >> 10);
	CHECK(bad_stamps(ram, HUGE + PAGE, HUGE - PAGE, 2 * PAGE, 1) == 0, "the other half keeps its data");
	{
		int zero = 1;

		for (size_t off = HUGE; off < 2 * HUGE; off += 2 * PAGE)
			zero &= reads_zero(ram + off, PAGE);
		CHECK(zero, "the ballooned half reads zero");
	}

	/* Range 2: the guest writes a ballooned page again without a deflate
	 * (after a reset, say) before the range's last page arrives: that page
	 * must survive. */
	for (size_t off = 3 * HUGE - PAGE; off > 2 * HUGE; off -= PAGE)
		discard_page(fd, ram, off);
	stamp(ram, 2 * HUGE + 100 * PAGE, PAGE, 2);
	discard_page(fd, ram, 2 * HUGE);
	CHECK(bad_stamps(ram, 2 * HUGE + 100 * PAGE, PAGE, PAGE, 2) == 0,
	      "a ballooned page written again is not lost when its range completes");
	CHECK(bad_stamps(ram, 3 * HUGE, RAM - 3 * HUGE, PAGE, 1) == 0, "untouched ranges keep every stamp");

	/* The host asks for the memory. */
	u1 = usage();
	CHECK(ask_reclaim() == 0, "reclaim request served");
	u2 = usage();
	if (!strcmp(policy, "split"))
		CHECK(1, "split: nothing left to reclaim (%ld KiB)", (u1 - u2) >> 10);
	else
		CHECK(u1 - u2 >= (long)(HUGE / 2) - SLACK, "%s: the partly ballooned range comes back when asked (%ld KiB)",
		      policy, (u1 - u2) >> 10);
	CHECK(bad_stamps(ram, HUGE + PAGE, HUGE - PAGE, 2 * PAGE, 1) == 0 &&
	      bad_stamps(ram, 2 * HUGE + 100 * PAGE, PAGE, PAGE, 2) == 0 &&
	      bad_stamps(ram, 3 * HUGE, RAM - 3 * HUGE, PAGE, 1) == 0, "no stamp lost to reclaim");

	/* Deflate: QEMU's MADV_WILLNEED per page. */
	for (size_t off = HUGE; off < 2 * HUGE; off += 2 * PAGE)
		if (madvise(ram + off, PAGE, MADV_WILLNEED))
			CHECK(0, "madvise WILLNEED: %s", strerror(errno));
	if (!strcmp(policy, "whole-lazy"))
		CHECK(stat_value("refilled_ranges") >= 1 || (sleep(2), stat_value("refilled_ranges") >= 1),
		      "whole-lazy: a range the guest has all back is backed whole again");
	stamp(ram, 0, RAM, 3);
	CHECK(bad_stamps(ram, 0, RAM, PAGE, 3) == 0, "rewrite: every page holds its new stamp");

	/* Pass-through: a file outside the prefix, anonymous memory. */
	{
		char tmpl[] = "/tmp/thpfs-preload-XXXXXX";
		int tfd = mkstemp(tmpl);
		char buf[4] = "abc", back[4] = "";
		char *anon = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		CHECK(tfd >= 0 && pwrite(tfd, buf, 4, 0) == 4 && pread(tfd, back, 4, 0) == 4 &&
		      !strcmp(back, "abc") && fstat(tfd, &st) == 0 && st.st_size == 4 &&
		      fallocate(tfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4) == 0 &&
		      pread(tfd, back, 4, 0) == 4 && back[0] == 0,
		      "a file outside the prefix goes to the kernel");
		CHECK(anon != MAP_FAILED && madvise(anon, PAGE, MADV_DONTNEED) == 0 && munmap(anon, PAGE) == 0,
		      "anonymous mmap/madvise/munmap pass through");
		close(tfd);
		unlink(tmpl);
	}

	/* QEMU's exit path: munmap of the RAM and its guard page, close. */
	CHECK(munmap(ram, RAM + PAGE) == 0, "munmap of the mapping plus the guard page");
	CHECK(close(fd) == 0, "close");
	munmap(resv, (size_t)(ram - resv));
	CHECK(stat_value("errors") == 0, "no errors counted by the preload");
	thpfs_cg_destroy(&cg);
	printf("%d passed, %d failed, 0 skipped\n", passed, failed);
	return failed ? 1 : 0;
}
