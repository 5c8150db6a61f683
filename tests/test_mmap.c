/*
 * test_mmap.c - thpfs_mmap: a file's storage as one contiguous mapping.
 *
 * Every memory claim is asked of the kernel: PAGEMAP_SCAN on
 * /proc/self/pagemap (which pages are present, which are mapped by a huge
 * PMD) and a child memory cgroup (what memory really went back).  The
 * threaded tests run a writer that stores stamps into pages that are kept
 * while the main thread punches, splits, collapses and reclaims the same
 * 2 MiB ranges, and then checks that no stamp was lost.
 */
#include "testlib.h"
#include "internal.h"
#include "cgroup.h"

#include <inttypes.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PUNCH (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define NPG (HPG / PG) /* 512 */

/* ---- What the kernel says (PAGEMAP_SCAN, Linux 6.7) ---- */
struct t_region {
	uint64_t start, end, categories;
};
struct t_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define T_PAGEMAP_SCAN _IOWR('f', 16, struct t_scan_arg)
#define T_PRESENT (1ULL << 3)
#define T_PFNZERO (1ULL << 5)
#define T_HUGE (1ULL << 6)

struct kview {
	uint64_t present; /* bytes holding data (not the zero page) */
	uint64_t huge;    /* bytes mapped by non-zero huge PMDs */
};

/* Scans [p, p+len) with PAGEMAP_SCAN; fails the test if it cannot. */
static struct kview kscan(const void *p, size_t len)
{
	static int fd = -1;
	static pid_t owner;
	if (fd < 0 || owner != getpid()) { /* a fork child asks about itself */
		fd = open("/proc/self/pagemap", O_RDONLY);
		owner = getpid();
	}
	assert_true(fd >= 0);
	struct kview v = { 0, 0 };
	struct t_region vec[512];
	uint64_t start = (uint64_t)(uintptr_t)p, end = start + len;
	while (start < end) {
		struct t_scan_arg a = { .size = sizeof(a), .start = start, .end = end,
					.vec = (uint64_t)(uintptr_t)vec, .vec_len = 512,
					.category_anyof_mask = T_PRESENT,
					.return_mask = T_PRESENT | T_PFNZERO | T_HUGE };
		long n = ioctl(fd, T_PAGEMAP_SCAN, &a);
		if (n < 0)
			fail_msg("PAGEMAP_SCAN: %s", strerror(errno));
		for (long i = 0; i < n; i++) {
			if (vec[i].categories & T_PFNZERO)
				continue;
			v.present += vec[i].end - vec[i].start;
			if (vec[i].categories & T_HUGE)
				v.huge += vec[i].end - vec[i].start;
		}
		if (n < 512 || a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	return v;
}

static bool khuge(const void *p)
{
	return kscan(p, HPG).huge == HPG;
}

/* The VmFlags line of the smaps entry holding addr holds flag ("nh", "hg"). */
static bool vmflag(const void *addr, const char *flag)
{
	FILE *fp = fopen("/proc/self/smaps", "r");
	assert_non_null(fp);
	char line[512];
	bool in = false, found = false;
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof(line), fp)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char pat[8];
			snprintf(pat, sizeof(pat), " %s", flag);
			found = strstr(line, pat) != NULL;
			break;
		}
	}
	fclose(fp);
	return found;
}

/* ---- Helpers ---- */

/* Creates /f of size bytes (a sparse file) and maps all of it. */
static struct thpfs_file *make_mapped(struct thpfs *fs, uint64_t size, char **view)
{
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(f, (off_t)size), 0);
	void *a = NULL;
	assert_int_equal(thpfs_mmap(f, 0, size, &a), 0);
	assert_non_null(a);
	assert_int_equal((uintptr_t)a % HPG, 0);
	*view = a;
	return f;
}

static void fill_view(char *v, uint64_t off, uint64_t len, unsigned seed)
{
	tl_fill((uint8_t *)v + off, len, off, seed);
}

/* Asserts that the view holds the pattern over [off, off+len). */
static void check_view(const char *v, uint64_t off, uint64_t len, unsigned seed)
{
	for (uint64_t i = off; i < off + len; i++)
		if ((uint8_t)v[i] != tl_pat(i, seed))
			fail_msg("view byte at %" PRIu64 " is %u, want %u", i, (uint8_t)v[i],
				 tl_pat(i, seed));
}

static void check_view_zero(const char *v, uint64_t off, uint64_t len)
{
	for (uint64_t i = off; i < off + len; i++)
		if (v[i])
			fail_msg("view byte at %" PRIu64 " is %u, want 0", i, (uint8_t)v[i]);
}

/* ---- Basic behaviour ---- */

static void test_write_through_read_via_pread(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 8 * MIB, &v);
	/* nothing touched: nothing held */
	assert_int_equal(tl_blocks(f), 0);
	fill_view(v, 0, 3 * MIB, 1);             /* 1.5 huge pages */
	fill_view(v, 6 * MIB + 8 * PG, PG, 2);  /* one page of the last range */
	tl_check_pat(f, 0, 3 * MIB, 1);
	tl_check_pat(f, 6 * MIB + 8 * PG, PG, 2);
	tl_check_zero(f, 3 * MIB, 3 * MIB + 8 * PG);
	/* pwrite shows through the view at once */
	tl_write_pat(f, 4 * MIB + 5, 10000, 3);
	check_view(v, 4 * MIB + 5, 10000, 3);
	/* st_blocks is learned from the kernel: all four ranges were written
	 * to, and each got a huge page on its first fault */
	struct kview k = kscan(v, 8 * MIB);
	printf("kernel: %" PRIu64 " KiB present, %" PRIu64 " KiB huge; st_blocks %" PRId64 "\n",
	       k.present >> 10, k.huge >> 10, tl_blocks(f));
	assert_int_equal(tl_blocks(f) * 512, (int64_t)k.present);
	assert_int_equal(k.huge, 8 * MIB);
	struct thpfs_stats s = tl_stats(fs);
	assert_int_equal(s.huge_frames, 4);
	assert_int_equal(s.mapped_bytes, 8 * MIB);
	/* SEEK_DATA/SEEK_HOLE see pages written through the view */
	assert_int_equal(thpfs_lseek(f, 0, SEEK_DATA), 0);
	assert_int_equal(thpfs_munmap(f, v, 8 * MIB), 0);
	/* the data stays with the file */
	tl_check_pat(f, 0, 3 * MIB, 1);
	tl_check_pat(f, 6 * MIB + 8 * PG, PG, 2);
	tl_check_pat(f, 4 * MIB + 5, 10000, 3);
	assert_int_equal(tl_stats(fs).mapped_bytes, 0);
	tl_close(f);
}

/* A base-pages range touched through the view: presence page by page. */
static void test_base_pages_presence(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 4 * MIB, &v);
	for (uint64_t i = 0; i < 100; i++)
		v[i * 3 * PG] = (char)(i + 1);
	struct kview k = kscan(v, 4 * MIB);
	assert_int_equal(k.huge, 0);
	assert_int_equal(k.present, 100 * PG);
	assert_int_equal(tl_blocks(f), 100 * BLK_PG);
	/* a hole between touched pages is a hole to SEEK_HOLE */
	assert_int_equal(thpfs_lseek(f, 0, SEEK_HOLE), (off_t)PG);
	assert_int_equal(thpfs_lseek(f, PG, SEEK_DATA), (off_t)(3 * PG));
	/* reading a hole through the view maps the zero page: not data */
	volatile char x = v[PG];
	(void)x;
	assert_int_equal(tl_blocks(f), 100 * BLK_PG);
	assert_int_equal(thpfs_munmap(f, v, 4 * MIB), 0);
	for (uint64_t i = 0; i < 100; i++) {
		char c;
		assert_int_equal(thpfs_pread(f, &c, 1, (off_t)(i * 3 * PG)), 1);
		assert_int_equal(c, (char)(i + 1));
	}
	assert_int_equal(tl_blocks(f), 100 * BLK_PG);
	tl_close(f);
}

/* Data written before thpfs_mmap moves into the view without a copy: a huge
 * page stays one huge page, at the view's address. */
static void test_existing_data_moves_in(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 6 * MIB, 4);
	/* make the middle range base pages */
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(2 * MIB + 7 * PG), (off_t)PG), 0);
	struct thpfs_stats s0 = tl_stats(fs);
	assert_int_equal(s0.huge_frames, 2);
	void *a = NULL;
	assert_int_equal(thpfs_mmap(f, 0, 6 * MIB, &a), 0);
	char *v = a;
	assert_true(khuge(v));
	assert_false(khuge(v + 2 * MIB));
	assert_true(khuge(v + 4 * MIB));
	check_view(v, 0, 2 * MIB + 7 * PG, 4);
	check_view_zero(v, 2 * MIB + 7 * PG, PG);
	check_view(v, 2 * MIB + 8 * PG, 4 * MIB - 8 * PG, 4);
	struct thpfs_stats s1 = tl_stats(fs);
	tl_same_memory(&s0, &s1);
	assert_int_equal(thpfs_munmap(f, v, 6 * MIB), 0);
	struct thpfs_stats s2 = tl_stats(fs);
	tl_same_memory(&s0, &s2);
	tl_check_pat(f, 0, 2 * MIB + 7 * PG, 4);
	tl_check_pat(f, 2 * MIB + 8 * PG, 4 * MIB - 8 * PG, 4);
	tl_close(f);
}

static void test_rules(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 4 * MIB, &v);
	void *a = NULL;
	/* one mapping per file */
	assert_int_equal(thpfs_mmap(f, 0, 2 * MIB, &a), -EBUSY);
	/* no truncate below the mapping; growing and shrinking back is fine */
	assert_int_equal(thpfs_ftruncate(f, (off_t)(4 * MIB - 1)), -EBUSY);
	assert_int_equal(thpfs_ftruncate(f, (off_t)(8 * MIB)), 0);
	assert_int_equal(thpfs_ftruncate(f, (off_t)(4 * MIB)), 0);
	struct thpfs_file *t = NULL;
	assert_int_equal(thpfs_open(fs, "/f", O_RDWR | O_TRUNC, 0, &t), -EBUSY);
	/* no unmount while mapped */
	assert_int_equal(thpfs_unmount(fs), -EBUSY);
	/* wrong address or length */
	assert_int_equal(thpfs_munmap(f, v + HPG, 2 * MIB), -EINVAL);
	assert_int_equal(thpfs_munmap(f, v, 2 * MIB), -EINVAL);
	/* the mapping keeps the file open: close the handle, unlink the
	 * name, and the data is still there through the view */
	v[5] = 42;
	tl_close(f);
	assert_int_equal(thpfs_link(fs, "/f", "/keep"), 0);
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	assert_int_equal(v[5], 42);
	assert_int_equal(thpfs_unmount(fs), -EBUSY);
	/* a handle of another file cannot unmap it */
	struct thpfs_file *g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_munmap(g, v, 4 * MIB), -EINVAL);
	tl_close(g);
	/* any handle of the same file can */
	struct thpfs_file *h = tl_open(fs, "/keep", O_RDONLY);
	assert_int_equal(thpfs_munmap(h, v, 4 * MIB), 0);
	char c;
	assert_int_equal(thpfs_pread(h, &c, 1, 5), 1);
	assert_int_equal(c, 42);
	tl_close(h);
	(void)t;
}

static void test_bad_arguments(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(f, (off_t)(4 * MIB)), 0);
	void *a = NULL;
	assert_int_equal(thpfs_mmap(f, 0, 4 * MIB, NULL), -EINVAL);
	assert_int_equal(thpfs_mmap(f, 4096, 2 * MIB, &a), -EINVAL);
	assert_int_equal(thpfs_mmap(f, 0, 2 * MIB + 4096, &a), -EINVAL);
	assert_int_equal(thpfs_mmap(f, 0, 0, &a), -EINVAL);
	assert_int_equal(thpfs_mmap(f, -(off_t)HPG, 2 * MIB, &a), -EINVAL);
	assert_int_equal(thpfs_mmap(f, 0, 6 * MIB, &a), -ENXIO); /* past EOF */
	a = (void *)(uintptr_t)(HPG + 4096);
	assert_int_equal(thpfs_mmap(f, 0, 2 * MIB, &a), -EINVAL);
	a = NULL;
	struct thpfs_file *w = tl_open(fs, "/f", O_WRONLY);
	assert_int_equal(thpfs_mmap(w, 0, 2 * MIB, &a), -EACCES);
	tl_close(w);
	struct thpfs_file *d = NULL;
	assert_int_equal(thpfs_open(fs, "/", O_RDONLY, 0, &d), 0);
	assert_int_equal(thpfs_mmap(d, 0, 2 * MIB, &a), -ENODEV);
	tl_close(d);
	/* a pinned page in the range refuses the mapping (its pointer would move) */
	void *p;
	size_t plen;
	assert_int_equal(thpfs_map(f, 0, &p, &plen), 0);
	assert_int_equal(thpfs_mmap(f, 0, 2 * MIB, &a), -EBUSY);
	assert_int_equal(thpfs_mmap(f, 2 * MIB, 2 * MIB, &a), 0); /* another range is fine */
	assert_int_equal(thpfs_munmap(f, a, 2 * MIB), 0);
	assert_int_equal(thpfs_unmap(f, p), 0);
	/* a pin taken inside a mapping points into it and holds munmap off */
	a = NULL;
	assert_int_equal(thpfs_mmap(f, 0, 4 * MIB, &a), 0);
	assert_int_equal(thpfs_map(f, (off_t)(2 * MIB + 8), &p, &plen), 0);
	assert_ptr_equal(p, (char *)a + 2 * MIB + 8);
	assert_int_equal(thpfs_munmap(f, a, 4 * MIB), -EBUSY);
	assert_int_equal(thpfs_unmap(f, p), 0);
	assert_int_equal(thpfs_munmap(f, a, 4 * MIB), 0);
	tl_close(f);
}

/* The view is the storage and thpfs stores to it: it needs O_RDWR.  An
 * O_RDONLY handle reads what is stored through the view, and may unmap it. */
static void test_rdonly_handle(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(f, (off_t)(4 * MIB)), 0);
	struct thpfs_file *r = tl_open(fs, "/f", O_RDONLY);
	void *a = NULL;
	assert_int_equal(thpfs_mmap(r, 0, 4 * MIB, &a), -EACCES);
	assert_int_equal(thpfs_mmap(f, 0, 4 * MIB, &a), 0);
	char *v = a;
	fill_view(v, 3 * MIB, PG, 6);
	tl_check_pat(r, 3 * MIB, PG, 6);
	assert_int_equal(thpfs_munmap(r, v, 4 * MIB), 0);
	tl_check_pat(r, 3 * MIB, PG, 6);
	tl_close(r);
	tl_close(f);
}

/* QEMU reserves guest RAM PROT_NONE and asks for the mapping there. */
static void test_fixed_address(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(f, (off_t)(8 * MIB)), 0);
	tl_write_pat(f, 2 * MIB, 2 * MIB, 7);
	char *raw = mmap(NULL, 12 * MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	assert_true(raw != MAP_FAILED);
	char *want = (char *)(((uintptr_t)raw + HPG - 1) & ~(uintptr_t)(HPG - 1));
	void *a = want + 2 * MIB;
	assert_int_equal(thpfs_mmap(f, 2 * MIB, 6 * MIB, &a), 0);
	assert_ptr_equal(a, want + 2 * MIB);
	char *v = a; /* file offset 2 MiB lives at v */
	for (uint64_t i = 0; i < 2 * MIB; i += 4093)
		assert_int_equal((uint8_t)v[i], tl_pat(2 * MIB + i, 7));
	assert_true(khuge(v));
	v[4 * MIB] = 9;
	char c;
	assert_int_equal(thpfs_pread(f, &c, 1, (off_t)(6 * MIB)), 1);
	assert_int_equal(c, 9);
	assert_int_equal(thpfs_munmap(f, v, 6 * MIB), 0);
	assert_int_equal(thpfs_pread(f, &c, 1, (off_t)(6 * MIB)), 1);
	assert_int_equal(c, 9);
	munmap(raw, 12 * MIB);
	tl_close(f);
}

/* A fixed address over the library's own memory (an arena slot holding
 * another file's page) or over another file's mapping is refused with
 * -EEXIST, and nothing of the other files changes. */
static void test_fixed_address_overlap_refused(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *a = tl_open(fs, "/a", O_RDWR | O_CREAT);
	struct thpfs_file *b = tl_open(fs, "/b", O_RDWR | O_CREAT);
	struct thpfs_file *c = tl_open(fs, "/c", O_RDWR | O_CREAT);
	tl_write_pat(a, 0, 2 * MIB, 3);
	assert_int_equal(thpfs_ftruncate(b, (off_t)(4 * MIB)), 0);
	assert_int_equal(thpfs_ftruncate(c, (off_t)(2 * MIB)), 0);
	void *p;
	size_t l;
	assert_int_equal(thpfs_map(a, 0, &p, &l), 0);
	char *slot = (char *)((uintptr_t)p & ~(uintptr_t)(HPG - 1));
	assert_int_equal(thpfs_unmap(a, p), 0);
	/* over a's arena slot, exactly and overlapping by its last 2 MiB */
	void *want = slot;
	assert_int_equal(thpfs_mmap(b, 0, 2 * MIB, &want), -EEXIST);
	want = slot - 2 * MIB;
	assert_int_equal(thpfs_mmap(b, 0, 4 * MIB, &want), -EEXIST);
	tl_check_pat(a, 0, 2 * MIB, 3);
	/* over c's mapping */
	void *vc = NULL;
	assert_int_equal(thpfs_mmap(c, 0, 2 * MIB, &vc), 0);
	memset(vc, 'C', 2 * MIB);
	want = (char *)vc - 2 * MIB;
	assert_int_equal(thpfs_mmap(b, 0, 4 * MIB, &want), -EEXIST);
	assert_int_equal(((char *)vc)[0], 'C');
	assert_int_equal(((char *)vc)[2 * MIB - 1], 'C');
	char ch;
	assert_int_equal(thpfs_pread(c, &ch, 1, 0), 1);
	assert_int_equal(ch, 'C');
	assert_int_equal(thpfs_munmap(c, vc, 2 * MIB), 0);
	/* once c's mapping is gone, its range may be used */
	want = vc;
	assert_int_equal(thpfs_mmap(b, 0, 2 * MIB, &want), 0);
	assert_ptr_equal(want, vc);
	assert_int_equal(thpfs_munmap(b, want, 2 * MIB), 0);
	assert_int_equal(thpfs_pread(c, &ch, 1, 0), 1);
	assert_int_equal(ch, 'C');
	tl_check_pat(a, 0, 2 * MIB, 3);
	tl_close(a);
	tl_close(b);
	tl_close(c);
}

/* A mremap that fails part way through thpfs_mmap (out of VMAs, injected)
 * and again while undoing: the file keeps all its data and no chunk is left
 * pointing into the dropped view. */
static void test_mmap_move_failure_keeps_data(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	tl_write_pat(f, 0, 6 * MIB, 21);
	void *a = NULL;
	__atomic_store_n(&fs->move_fault_nth, 2, __ATOMIC_RELAXED);
	assert_int_equal(thpfs_mmap(f, 0, 6 * MIB, &a), -ENOMEM);
	__atomic_store_n(&fs->move_fault_nth, 0, __ATOMIC_RELAXED);
	assert_null(a);
	tl_check_pat(f, 0, 6 * MIB, 21);
	/* punch, then map for real: all of it still there */
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)PG, (off_t)PG), 0);
	assert_int_equal(thpfs_mmap(f, 0, 6 * MIB, &a), 0);
	check_view(a, 0, PG, 21);
	check_view_zero(a, PG, PG);
	check_view(a, 2 * PG, 6 * MIB - 2 * PG, 21);
	assert_int_equal(thpfs_munmap(f, a, 6 * MIB), 0);
	tl_close(f);
}

/* The same in thpfs_munmap: it completes (copying what the kernel will not
 * move) and every byte stored through the mapping is in the file. */
static void munmap_move_failure(void **state, const char *what)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 6 * MIB, &v);
	fill_view(v, 0, 6 * MIB, 22);
	__atomic_store_n(&fs->move_fault_nth, 2, __ATOMIC_RELAXED);
	int r = thpfs_munmap(f, v, 6 * MIB);
	__atomic_store_n(&fs->move_fault_nth, 0, __ATOMIC_RELAXED);
	printf("%s: thpfs_munmap with mremap failing from the 2nd on: %d\n", what, r);
	tl_check_pat(f, 0, 6 * MIB, 22);
	assert_int_equal(r, 0);
	/* the data is in arena slots: punch frees it (the kernel says so) */
	assert_int_equal(thpfs_fallocate(f, PUNCH, 0, (off_t)(6 * MIB)), 0);
	struct stat st;
	assert_int_equal(thpfs_fstat(f, &st), 0);
	assert_int_equal(st.st_blocks, 0);
	tl_close(f);
}

static void test_munmap_move_failure_keeps_data(void **state)
{
	munmap_move_failure(state, TL_FX(state)->opts);
}

/* After close and unlink of every handle, the mapping is unmapped through a
 * handle from thpfs_open_ino (the header says so). */
static void test_munmap_after_unlink_via_open_ino(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 2 * MIB, &v);
	v[0] = 5;
	struct stat st;
	assert_int_equal(thpfs_fstat(f, &st), 0);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	assert_int_equal(v[0], 5);
	struct thpfs_file *g;
	assert_int_equal(thpfs_open_ino(fs, (uint64_t)st.st_ino, O_RDWR, &g), 0);
	assert_int_equal(thpfs_munmap(g, v, 2 * MIB), 0);
	tl_close(g);
}

/* ---- Memory goes back, the address stays ---- */

struct cgx {
	struct thpfs_cg cg;
	bool made;
};

static bool cg_start(struct cgx *x)
{
	if (!tl_cg_create(&x->cg, "thpfs-mmap", "skipping"))
		return false;
	x->made = true;
	tl_cg_enter(&x->cg);
	return true;
}

static void cg_end(struct cgx *x)
{
	if (x->made)
		thpfs_cg_destroy(&x->cg);
}

/* Punches half the 4 KiB pages of a mapped 64 MiB file at random (some
 * ranges whole): punched pages read zero through the view, the view stays
 * where it is, and the memory cgroup falls by >= 99% of the punched bytes
 * at once.  lock: mlock the view first (QEMU mem-lock=on). */
static void punch_returns_memory(void **state, bool lock)
{
	struct thpfs *fs = TL_FS(state);
	struct cgx x = { 0 };
	/* the mount's memory is charged where it is faulted: mount inside */
	tl_unmount(fs);
	TL_FX(state)->fs = NULL;
	if (!cg_start(&x))
		skip();
	fs = TL_FX(state)->fs = tl_mount("huge=always");
	const uint64_t size = 64 * MIB, npages = size / PG;
	char *v;
	struct thpfs_file *f = make_mapped(fs, size, &v);
	fill_view(v, 0, size, 11);
	if (lock)
		assert_int_equal(mlock(v, size), 0);
	assert_int_equal(kscan(v, size).huge, size);
	uint8_t *punched = calloc(npages, 1);
	uint64_t seed = 99, npunched = 0;
	for (uint64_t r = 0; r < size / HPG; r++) {
		if (r % 4 == 0) { /* a range wholly ballooned */
			memset(punched + r * NPG, 1, NPG);
			continue;
		}
		for (uint64_t i = 0; i < NPG; i++)
			if (tl_rand_below(&seed, 2))
				punched[r * NPG + i] = 1;
	}
	int64_t shadow0 = tl_asan_shadow_rss();
	int64_t before = thpfs_cg_usage(&x.cg);
	for (uint64_t p = 0; p < npages; p++) {
		if (!punched[p])
			continue;
		npunched++;
		assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(p * PG), (off_t)PG), 0);
	}
	int64_t after = thpfs_cg_usage(&x.cg);
	int64_t shadow = tl_asan_shadow_rss() - shadow0;
	if (shadow0 || shadow) {
		printf("AddressSanitizer shadow grew by %.1f MiB during the punches; not counted\n",
		       shadow / (double)MIB);
		after -= shadow;
	}
	double pct = 100.0 * (double)(before - after) / (double)(npunched * PG);
	printf("%s: punched %.1f MiB; cgroup %.1f -> %.1f MiB (%.2f%% of punched back)\n",
	       lock ? "mlocked" : "plain", npunched * PG / (double)MIB, before / (double)MIB,
	       after / (double)MIB, pct);
	assert_true(before - after >= (int64_t)(npunched * PG * 99 / 100));
	struct kview k = kscan(v, size);
	assert_int_equal(k.present, (npages - npunched) * PG);
	assert_int_equal(tl_blocks(f) * 512, (int64_t)k.present);
	for (uint64_t p = 0; p < npages; p++) {
		if (punched[p])
			check_view_zero(v, p * PG, PG);
		else
			check_view(v, p * PG, PG, 11);
	}
	/* punching did not fault the holes back in */
	assert_int_equal(kscan(v, size).present, (npages - npunched) * PG);
	/* split ranges are MADV_NOHUGEPAGE: khugepaged never refills them */
	assert_true(vmflag(v + HPG, "nh"));
	free(punched);
	if (lock)
		munlock(v, size);
	assert_int_equal(thpfs_munmap(f, v, size), 0);
	tl_close(f);
	tl_unmount(fs);
	TL_FX(state)->fs = NULL;
	cg_end(&x);
}

static void test_punch_returns_memory(void **state)
{
	punch_returns_memory(state, false);
}

static void test_mlocked_punch_returns_memory(void **state)
{
	punch_returns_memory(state, true);
}

/* Under mlockall(MCL_FUTURE) (QEMU mem-lock=on), a new mapping still gets
 * huge pages on its first writes: it must not be populated with 4 KiB pages
 * by mmap before its MADV_HUGEPAGE.  Run in a child (mlockall is
 * process-wide) on its own mount without the collapse thread, so that only
 * the first faults can give huge pages. */
static void test_mlockall_view_huge_at_first_write(void **state)
{
	/* fork with no thread running (the fixture's collapse thread is one;
	 * ThreadSanitizer refuses threads after a multi-threaded fork) */
	tl_unmount(TL_FS(state));
	TL_FX(state)->fs = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct thpfs *fs;
		if (thpfs_mount(&fs, "huge=always,collapse=off"))
			_exit(10);
		struct thpfs_file *f;
		if (thpfs_open(fs, "/f", O_RDWR | O_CREAT, 0644, &f) ||
		    thpfs_ftruncate(f, (off_t)(16 * MIB)))
			_exit(11);
		if (mlockall(MCL_CURRENT | MCL_FUTURE))
			_exit(12);
		/* AddressSanitizer makes mlockall a no-op: nothing to test */
		void *probe = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				   -1, 0);
		if (probe == MAP_FAILED || !vmflag(probe, "lo"))
			_exit(3);
		void *a = NULL;
		if (thpfs_mmap(f, 0, 16 * MIB, &a))
			_exit(13);
		struct kview k0 = kscan(a, 16 * MIB);
		memset(a, 1, 16 * MIB);
		struct kview k = kscan(a, 16 * MIB);
		printf("mlockall child: present before writes %" PRIu64 " KiB; after: %" PRIu64
		       " MiB present, %" PRIu64 " MiB huge\n",
		       k0.present >> 10, k.present >> 20, k.huge >> 20);
		fflush(stdout);
		if (k.huge != 16 * MIB)
			_exit(1);
		if (!vmflag(a, "lo"))
			_exit(2); /* must still be locked */
		munlockall();
		if (thpfs_munmap(f, a, 16 * MIB) || thpfs_close(f) || thpfs_unmount(fs))
			_exit(14);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 3) {
		print_message("mlockall locks nothing here (sanitizer?): skipping\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* A split of a huge page holding zeros (in an arena, no mapping): Linux
 * 6.12+ maps zero-filled subpages to the shared zero page as it splits and
 * frees their memory.  The data stays right (zeros read zero, the written
 * page keeps its bytes) and st_blocks keeps counting the zero pages as data,
 * as tmpfs would (test_seek.c relies on it); shmem_bytes and base_pages then
 * count memory the kernel already freed: docs/design.md, Limits, gives the
 * gap this prints. */
static void test_split_zero_pages_data(void **state)
{
	struct thpfs *fs = TL_FS(state);
	struct cgx x = { 0 };
	tl_unmount(fs);
	TL_FX(state)->fs = NULL;
	if (!cg_start(&x))
		skip();
	fs = TL_FX(state)->fs = tl_mount("huge=always,collapse=off");
	const uint64_t size = 32 * MIB;
	struct thpfs_file *f = tl_open(fs, "/z", O_RDWR | O_CREAT);
	char *zero = calloc(1, MIB);
	assert_non_null(zero);
	for (uint64_t o = 0; o < size; o += MIB)
		assert_int_equal(thpfs_pwrite(f, zero, MIB, (off_t)o), (ssize_t)MIB);
	tl_write_pat(f, 0, PG, 31); /* one page of data in the first range */
	struct thpfs_stats s0 = tl_stats(fs);
	int64_t cg0 = thpfs_cg_usage(&x.cg);
	for (uint64_t r = 0; r < size / HPG; r++)
		assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(r * HPG + 5 * PG), (off_t)PG), 0);
	int64_t cg1 = thpfs_cg_usage(&x.cg);
	struct thpfs_stats s1 = tl_stats(fs);
	int64_t kfreed = cg0 - cg1, tfreed = (int64_t)s0.shmem_bytes - (int64_t)s1.shmem_bytes;
	printf("split of zero-filled huge pages: cgroup fell %.2f MiB, thpfs shmem_bytes fell "
	       "%.2f MiB (base_pages %" PRIu64 ", st_blocks %" PRId64 " KiB)\n",
	       kfreed / (double)MIB, tfreed / (double)MIB, s1.base_pages, tl_blocks(f) / 2);
	tl_check_pat(f, 0, PG, 31);
	char b[PG];
	for (uint64_t o = PG; o < size; o += 7 * PG + 123) {
		assert_int_equal(thpfs_pread(f, b, 1, (off_t)o), 1);
		assert_int_equal(b[0], 0);
	}
	assert_int_equal(tl_blocks(f) * 512, (int64_t)(size - 16 * PG));
	free(zero);
	tl_close(f);
	cg_end(&x);
}

/* ---- Huge again after a rewrite, without khugepaged ---- */

static void rewrite_becomes_huge(void **state, bool thread)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 8 * MIB, &v);
	fill_view(v, 0, 8 * MIB, 12);
	for (uint64_t r = 0; r < 4; r++)
		for (uint64_t i = 1; i < NPG; i += 2)
			assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(r * HPG + i * PG), (off_t)PG), 0);
	for (uint64_t r = 0; r < 4; r++) {
		assert_false(khuge(v + r * HPG));
		assert_true(vmflag(v + r * HPG, "nh")); /* khugepaged leaves it alone */
	}
	char *addr0 = v;
	/* the guest writes everything again */
	fill_view(v, 0, 8 * MIB, 13);
	double t0 = tl_now();
	if (thread) {
		while (tl_now() - t0 < 10.0) {
			if (kscan(v, 8 * MIB).huge == 8 * MIB)
				break;
			usleep(10000);
		}
	} else {
		assert_int_equal(thpfs_collapse(f, 0, (off_t)(8 * MIB)), 4);
	}
	double dt = tl_now() - t0;
	struct kview k = kscan(v, 8 * MIB);
	printf("%s: %" PRIu64 " of 8 MiB huge again after %.3f s\n",
	       thread ? "collapse thread" : "thpfs_collapse", (uint64_t)(k.huge / MIB), dt);
	assert_int_equal(k.huge, 8 * MIB);
	assert_ptr_equal(v, addr0);
	check_view(v, 0, 8 * MIB, 13);
	struct thpfs_stats s = tl_stats(fs);
	assert_int_equal(s.huge_frames, 4);
	assert_true(s.thp_collapse_alloc >= 4);
	assert_int_equal(thpfs_munmap(f, v, 8 * MIB), 0);
	tl_check_pat(f, 0, 8 * MIB, 13);
	tl_close(f);
}

static void test_rewrite_huge_by_thread(void **state)
{
	rewrite_becomes_huge(state, true);
}

static void test_rewrite_huge_by_collapse(void **state)
{
	rewrite_becomes_huge(state, false);
}

/* A range with holes is never collapsed (that would fill the holes). */
static void test_holes_never_filled(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 4 * MIB, &v);
	fill_view(v, 0, 4 * MIB, 14);
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(10 * PG), (off_t)(3 * PG)), 0);
	assert_int_equal(thpfs_collapse(f, 0, (off_t)(4 * MIB)), 0);
	usleep(300000); /* three passes of the collapse thread */
	struct kview k = kscan(v, 2 * MIB);
	assert_int_equal(k.present, 2 * MIB - 3 * PG);
	assert_int_equal(k.huge, 0);
	check_view_zero(v, 10 * PG, 3 * PG);
	assert_int_equal(thpfs_munmap(f, v, 4 * MIB), 0);
	tl_close(f);
}

/* ---- Lazy free in a mapping ---- */

static void test_free_lazy_keeps_rewritten_pages(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 4 * MIB, &v);
	fill_view(v, 0, 4 * MIB, 15);
	assert_int_equal(thpfs_free_lazy(f, 0, (off_t)(HPG + 64 * PG)), 0);
	check_view_zero(v, 0, HPG + 64 * PG);
	assert_true(khuge(v)); /* lazily: still a huge page */
	/* the guest takes some of the pages back before reclaim comes */
	fill_view(v, 5 * PG, 3 * PG, 16);
	fill_view(v, HPG + 10 * PG, PG, 16);
	int64_t got = thpfs_reclaim(fs, 0);
	printf("reclaim freed %" PRId64 " KiB\n", got >> 10);
	check_view(v, 5 * PG, 3 * PG, 16);
	check_view(v, HPG + 10 * PG, PG, 16);
	check_view_zero(v, 0, 5 * PG);
	check_view_zero(v, HPG, 10 * PG);
	check_view(v, HPG + 64 * PG, HPG - 64 * PG, 15);
	struct kview k = kscan(v, 4 * MIB);
	/* everything lazily freed went, except the 4 pages written again */
	assert_int_equal(k.present, 4 * MIB - (HPG + 64 * PG) + 4 * PG);
	assert_int_equal(tl_blocks(f) * 512, (int64_t)k.present);
	assert_int_equal(got, (int64_t)(HPG + 60 * PG));
	assert_int_equal(thpfs_munmap(f, v, 4 * MIB), 0);
	tl_check_pat(f, 5 * PG, 3 * PG, 16);
	tl_close(f);
}

/* A page written again before reclaim's MADV_FREE must be left dirty by
 * reclaim, or the kernel's own reclaim discards it later as a clean lazily
 * freed page.  MADV_PAGEOUT here stands in for the kernel's reclaim.  (With
 * clang, a no-op atomic add compiled to a plain load and this failed.) */
static void test_reclaim_leaves_rewritten_pages_dirty(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 2 * MIB, &v);
	fill_view(v, 0, 2 * MIB, 17);
	assert_int_equal(thpfs_free_lazy(f, 0, (off_t)(64 * PG)), 0);
	fill_view(v, 5 * PG, 3 * PG, 18);
	assert_true(thpfs_reclaim(fs, 0) > 0);
	check_view(v, 5 * PG, 3 * PG, 18);
	assert_int_equal(madvise(v, 64 * PG, MADV_PAGEOUT), 0);
	check_view(v, 5 * PG, 3 * PG, 18);
	assert_int_equal(thpfs_munmap(f, v, 2 * MIB), 0);
	tl_check_pat(f, 5 * PG, 3 * PG, 18);
	tl_close(f);
}

/* ---- A writer thread during punch, split, collapse, reclaim ---- */

#define W_RANGES 16
struct writer {
	char *v;
	volatile int stop;
	uint64_t rounds;
};

/* Page i of each range is kept when i % 4 == 0: the writer stores a
 * round-stamped word into each kept page, forever. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t round = 0;
	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		round++;
		for (uint64_t r = 0; r < W_RANGES; r++)
			for (uint64_t i = 0; i < NPG; i += 4)
				__atomic_store_n((uint64_t *)(w->v + r * HPG + i * PG + 8 * (i % 7)),
						 (r * NPG + i) << 32 | round, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&w->rounds, round, __ATOMIC_RELEASE);
	return NULL;
}

/* Every kept page holds the writer's last stamp. */
static void check_stamps(struct writer *w)
{
	uint64_t round = __atomic_load_n(&w->rounds, __ATOMIC_ACQUIRE);
	for (uint64_t r = 0; r < W_RANGES; r++)
		for (uint64_t i = 0; i < NPG; i += 4) {
			uint64_t got = *(uint64_t *)(w->v + r * HPG + i * PG + 8 * (i % 7));
			uint64_t want = (r * NPG + i) << 32 | round;
			if (got != want)
				fail_msg("range %" PRIu64 " page %" PRIu64 ": stamp %#" PRIx64
					 ", want %#" PRIx64 " (a store was lost)",
					 r, i, got, want);
		}
}

static void test_writer_during_punch_split_collapse(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, W_RANGES * HPG, &v);
	fill_view(v, 0, W_RANGES * HPG, 17);
	struct writer w = { .v = v };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	for (int cycle = 0; cycle < 3; cycle++) {
		/* punch: split every range in place, dropping pages i % 4 == 2 */
		for (uint64_t r = 0; r < W_RANGES; r++)
			for (uint64_t i = 2; i < NPG; i += 4)
				assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)(r * HPG + i * PG),
								 (off_t)PG), 0);
		/* free_lazy pages i % 4 == 1, then reclaim */
		for (uint64_t r = 0; r < W_RANGES; r++)
			for (uint64_t i = 1; i < NPG; i += 4)
				assert_int_equal(thpfs_free_lazy(f, (off_t)(r * HPG + i * PG), (off_t)PG),
						 0);
		thpfs_reclaim(fs, 0);
		for (uint64_t r = 0; r < W_RANGES; r++)
			assert_false(khuge(v + r * HPG));
		/* fill the holes again (pwrite), collapse in place while the
		 * writer runs */
		for (uint64_t r = 0; r < W_RANGES; r++)
			for (uint64_t i = 0; i < NPG; i++)
				if (i % 4 == 1 || i % 4 == 2)
					tl_write_pat(f, r * HPG + i * PG, PG, 18);
		thpfs_collapse(f, 0, (off_t)(W_RANGES * HPG));
		uint64_t huge = kscan(v, W_RANGES * HPG).huge;
		printf("cycle %d: %" PRIu64 " of %d ranges huge again\n", cycle,
		       (uint64_t)(huge / HPG), W_RANGES);
		assert_true(huge >= (W_RANGES - 2) * HPG);
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	printf("writer: %" PRIu64 " rounds\n", w.rounds);
	assert_true(w.rounds > 3);
	check_stamps(&w);
	/* untouched parts of the kept pages still hold the pattern */
	for (uint64_t r = 0; r < W_RANGES; r++)
		for (uint64_t i = 0; i < NPG; i += 4) {
			uint64_t s = 8 * (i % 7);
			check_view(v, r * HPG + i * PG + s + 8, PG - s - 8, 17);
		}
	assert_int_equal(thpfs_munmap(f, v, W_RANGES * HPG), 0);
	tl_close(f);
}

/* Stores through the view that thpfs has not seen yet (no call has synced
 * since) must survive an operation that drops every page thpfs knows of in
 * their 2 MiB range: a punch of those pages, or reclaim of pages freed with
 * thpfs_free_lazy.  (thpfs once freed the whole range when its own bitmap
 * said nothing else was there: found by test_model_mapped, seed
 * 1795703580142949, op 496.) */
static void test_unseen_store_survives_drop(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 4 * MIB, &v);
	/* punch: thpfs knows page 0 only (pwrite); page 100 is stored unseen */
	tl_write_pat(f, 0, PG, 1);
	fill_view(v, 100 * PG, PG, 2);
	assert_int_equal(thpfs_fallocate(f, PUNCH, 0, (off_t)PG), 0);
	check_view_zero(v, 0, PG);
	check_view(v, 100 * PG, PG, 2);
	tl_check_pat(f, 100 * PG, PG, 2);
	/* reclaim: thpfs knows pages 0-3 (lazily freed); page 200 is unseen */
	tl_write_pat(f, 2 * MIB, 4 * PG, 3);
	assert_int_equal(thpfs_free_lazy(f, (off_t)(2 * MIB), (off_t)(4 * PG)), 0);
	fill_view(v, 2 * MIB + 200 * PG, PG, 4);
	assert_true(thpfs_reclaim(fs, 0) >= 0);
	check_view_zero(v, 2 * MIB, 4 * PG);
	check_view(v, 2 * MIB + 200 * PG, PG, 4);
	tl_check_pat(f, 2 * MIB + 200 * PG, PG, 4);
	/* the kernel agrees: the two unseen pages are all that is left */
	struct kview k = kscan(v, 4 * MIB);
	assert_int_equal(k.present, 2 * PG);
	assert_int_equal(tl_blocks(f), 2 * BLK_PG);
	assert_int_equal(thpfs_munmap(f, v, 4 * MIB), 0);
	tl_check_pat(f, 100 * PG, PG, 2);
	tl_check_pat(f, 2 * MIB + 200 * PG, PG, 4);
	tl_close(f);
}

/* A 2 MiB range of a view mapped by 4 KiB entries costs the kernel a page
 * table like a base block does, and is charged to size= the same way: one
 * page in each of 16 ranges holds 16 pages and 16 page tables. */
static void test_page_tables_charged(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 32 * MIB, &v);
	for (uint64_t r = 0; r < 16; r++)
		v[r * HPG] = 1;
	assert_int_equal(tl_blocks(f), 16 * BLK_PG); /* synced: charged now */
	/* another file fills what is left, page by page */
	struct thpfs_file *g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	static char page[PG];
	memset(page, 7, PG);
	uint64_t n = 0;
	ssize_t w;
	while ((w = thpfs_pwrite(g, page, PG, (off_t)(n * PG))) == (ssize_t)PG)
		n++;
	assert_int_equal(w, -ENOSPC);
	print_message("size=8m, 16 sparse mapped pages: %" PRIu64 " KiB more fit\n", (uint64_t)(n * PG / KIB));
	/* data + page tables <= size= + the page tables of size= dense:
	 * 16 + n pages, 16 + 4 tables, 8 MiB + 4 tables */
	assert_true((16 + n) * PG + 20 * PG <= 8 * MIB + 4 * PG);
	assert_true((16 + n) * PG + 20 * PG >= 8 * MIB + 4 * PG - 2 * PG);
	tl_close(g);
	assert_int_equal(thpfs_unlink(fs, "/g"), 0);
	assert_int_equal(thpfs_munmap(f, v, 32 * MIB), 0);
	tl_close(f);
	assert_int_equal(thpfs_unlink(fs, "/f"), 0);
	_thpfs_release_flush(fs);
	/* every charge went with its range: exactly 8 MiB fit again, no more */
	g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	tl_write_pat(g, 0, 8 * MIB, 2);
	char c = 'x';
	assert_int_equal(thpfs_pwrite(g, &c, 1, (off_t)(8 * MIB)), -ENOSPC);
	tl_close(g);
}

/* A pwrite that runs out of size= part way undoes the pages it populated;
 * a page the program had stored to through the view (unseen by thpfs) is
 * not one of them.  Page 0 is stored through the view, page 1 is known,
 * and size= leaves room for one more page: the pwrite from byte 100 of
 * page 0 into page 2 must leave bytes 0-99 of page 0 alone. */
static void test_failed_pwrite_keeps_unseen_page(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 4 * MIB, &v);
	tl_write_pat(f, PG, PG, 1);
	fill_view(v, 0, PG, 2);
	/* fill size= with another file, then free one page of it */
	struct thpfs_file *g = tl_open(fs, "/g", O_RDWR | O_CREAT);
	static char page[PG];
	memset(page, 7, PG);
	uint64_t n = 0;
	while (thpfs_pwrite(g, page, PG, (off_t)(n * PG)) == (ssize_t)PG)
		n++;
	assert_int_equal(thpfs_fallocate(g, PUNCH, 0, (off_t)PG), 0);
	static char buf[3 * PG];
	memset(buf, 9, sizeof(buf));
	ssize_t w = thpfs_pwrite(f, buf, 3 * PG - 100, 100);
	print_message("pwrite of %d bytes into a full size=: %zd\n", (int)(3 * PG - 100), w);
	assert_true(w > 0 || w == -ENOSPC);
	check_view(v, 0, 100, 2);
	tl_check_pat(f, 0, 100, 2);
	tl_close(g);
	assert_int_equal(thpfs_munmap(f, v, 4 * MIB), 0);
	tl_check_pat(f, 0, 100, 2);
	tl_close(f);
}

/* A punch whose MADV_DONTNEED fails (injected, as on a kernel that refuses
 * it) zeroes the page and does not count it as released: the kernel still
 * holds it, and it reads zero.  A later punch gives it back. */
static void test_failed_release_not_counted(void **state)
{
	struct thpfs *fs = TL_FS(state);
	char *v;
	struct thpfs_file *f = make_mapped(fs, 2 * MIB, &v);
	fill_view(v, 0, 4 * PG, 5);
	assert_int_equal(tl_blocks(f), 4 * BLK_PG); /* synced */
	struct thpfs_stats s0 = tl_stats(fs);
	thpfs_fault_inject_release(fs, 1, 1);
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)PG, (off_t)PG), 0);
	thpfs_fault_inject_release(fs, 0, 0);
	struct thpfs_stats s1 = tl_stats(fs);
	check_view_zero(v, PG, PG);
	check_view(v, 0, PG, 5);
	check_view(v, 2 * PG, 2 * PG, 5);
	assert_int_equal(kscan(v, 2 * MIB).present, 4 * PG); /* still held */
	assert_int_equal(s1.bytes_released, s0.bytes_released);
	assert_int_equal(s1.release_failed_bytes - s0.release_failed_bytes, PG);
	assert_int_equal(tl_blocks(f), 4 * BLK_PG); /* found again as (zero) data */
	assert_int_equal(thpfs_fallocate(f, PUNCH, (off_t)PG, (off_t)PG), 0);
	assert_int_equal(kscan(v, 2 * MIB).present, 3 * PG);
	assert_int_equal(tl_blocks(f), 3 * BLK_PG);
	check_view(v, 0, PG, 5);
	check_view(v, 2 * PG, 2 * PG, 5);
	assert_int_equal(thpfs_munmap(f, v, 2 * MIB), 0);
	tl_close(f);
}

/* The kernel's peak RSS of this process (VmHWM), in KiB. */
static long vm_hwm_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;
	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
			break;
	fclose(fp);
	assert_true(kib >= 0);
	return kib;
}

/* Resets VmHWM to the current RSS (Linux 4.0+: clear_refs "5"). */
static void reset_hwm(void)
{
	FILE *fp = fopen("/proc/self/clear_refs", "w");
	assert_non_null(fp);
	assert_true(fputs("5", fp) >= 0);
	assert_int_equal(fclose(fp), 0);
}

/* Asking the kernel what a view holds (here for fstat's st_blocks) must not
 * take memory in proportion to the view's length: a 16 TiB view with two
 * pages touched made each such call allocate and clear 72 bytes per 2 MiB,
 * 576 MiB, found with fuzz/fuzz_api.c (a 64 TiB view: 2.3 GiB per call, and a
 * failed allocation skipped the sync silently).  The growth is the
 * kernel's: the process's peak RSS (VmHWM) across the call. */
static void test_sync_of_huge_view_bounded_memory(void **state)
{
	struct thpfs *fs = TL_FS(state);
	/* The sanitizers' shadow layouts leave no 16 TiB hole: 1 TiB there
	 * (the old code still took 36 MiB per call for that) */
#if defined(TL_ASAN) || defined(TL_TSAN)
	const uint64_t size = 1ULL << 40;
#else
	const uint64_t size = 16ULL << 40;
#endif
	struct thpfs_file *f = tl_open(fs, "/f", O_RDWR | O_CREAT);
	assert_int_equal(thpfs_ftruncate(f, (off_t)size), 0);
	void *a = NULL;
	int err = thpfs_mmap(f, 0, size, &a);
#if defined(TL_ASAN) || defined(TL_TSAN)
	if (err == -ENOMEM) {
		/* TSan's application ranges, once earlier tests have used
		 * some, may hold no such hole at all: nothing to measure */
		print_message("no %llu TiB of address space under this sanitizer: skipped\n",
			      (unsigned long long)(size >> 40));
		tl_close(f);
		skip();
	}
#endif
	assert_int_equal(err, 0);
	char *v = a;
	fill_view(v, 0, PG, 3);
	fill_view(v, size - PG, PG, 4);
	struct stat st;
	reset_hwm();
	long before = vm_hwm_kib();
	assert_int_equal(thpfs_fstat(f, &st), 0);
	long grew = vm_hwm_kib() - before;
	print_message("fstat of a %llu TiB view: peak RSS grew %ld KiB\n", (unsigned long long)(size >> 40), grew);
	assert_true(grew < 16 * 1024);
	/* both touched pages were learned from the kernel */
	assert_true(st.st_blocks >= (blkcnt_t)(2 * (PG / 512)));
	uint8_t b[PG];
	assert_int_equal(thpfs_pread(f, b, PG, (off_t)(size - PG)), (ssize_t)PG);
	for (unsigned i = 0; i < PG; i++)
		assert_int_equal(b[i], tl_pat(size - PG + i, 4));
	assert_int_equal(thpfs_munmap(f, v, size), 0);
	tl_close(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		TL_TEST(test_write_through_read_via_pread, "huge=always"),
		TL_TEST(test_base_pages_presence, "huge=never"),
		TL_TEST(test_existing_data_moves_in, "huge=always"),
		TL_TEST(test_rules, "huge=always"),
		TL_TEST(test_bad_arguments, "huge=always"),
		TL_TEST(test_rdonly_handle, "huge=always"),
		TL_TEST(test_fixed_address, "huge=always"),
		TL_TEST(test_fixed_address_overlap_refused, "huge=always"),
		TL_TEST(test_mmap_move_failure_keeps_data, "huge=always"),
		TL_TEST(test_munmap_after_unlink_via_open_ino, "huge=always"),
		TL_TEST(test_munmap_move_failure_keeps_data, "huge=always"),
		TL_TEST(test_munmap_move_failure_keeps_data, "huge=never"),
		TL_TEST(test_punch_returns_memory, "huge=always"),
		TL_TEST(test_mlocked_punch_returns_memory, "huge=always"),
		TL_TEST(test_mlockall_view_huge_at_first_write, "huge=always"),
		TL_TEST(test_split_zero_pages_data, "huge=always"),
		TL_TEST(test_rewrite_huge_by_thread, "huge=always,scan_sleep_ms=20"),
		TL_TEST(test_rewrite_huge_by_collapse, "huge=always,collapse=off"),
		TL_TEST(test_holes_never_filled, "huge=always,scan_sleep_ms=20"),
		TL_TEST(test_free_lazy_keeps_rewritten_pages, "huge=always,collapse=off"),
		TL_TEST(test_reclaim_leaves_rewritten_pages_dirty, "huge=always,collapse=off"),
		TL_TEST(test_writer_during_punch_split_collapse, "huge=always,collapse=off"),
		TL_TEST(test_unseen_store_survives_drop, "huge=never,collapse=off"),
		TL_TEST(test_page_tables_charged, "huge=never,collapse=off,size=8m"),
		TL_TEST(test_failed_pwrite_keeps_unseen_page, "huge=never,collapse=off,size=8m"),
		TL_TEST(test_failed_release_not_counted, "huge=never,collapse=off"),
		TL_TEST(test_sync_of_huge_view_bounded_memory, "huge=always"),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
