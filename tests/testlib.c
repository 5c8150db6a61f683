/*
 * testlib.c - helpers shared by the libthpfs cmocka tests (see testlib.h).
 */
#include "testlib.h"

#include <inttypes.h>
#include <sys/wait.h>
#include <time.h>

/* Line-buffer stdout so that cmocka's messages (stdout) and its errors
 * (stderr) come out in order when the runner pipes them. */
__attribute__((constructor)) static void tl_line_buffer(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

struct thpfs *tl_mount(const char *options)
{
	struct thpfs *fs = NULL;
	char err[256] = "";
	int r = thpfs_mount_ex(&fs, options, err, sizeof(err));
	if (r)
		fail_msg("thpfs_mount(\"%s\") = %d (%s) %s", options ? options : "(null)", r,
			 strerror(-r), err);
	assert_non_null(fs);
	return fs;
}

void tl_unmount(struct thpfs *fs)
{
	int r = thpfs_unmount(fs);
	if (r)
		fail_msg("thpfs_unmount = %d (%s)", r, strerror(-r));
}

struct thpfs_file *tl_open(struct thpfs *fs, const char *path, int flags)
{
	struct thpfs_file *f = NULL;
	int r = thpfs_open(fs, path, flags, 0644, &f);
	if (r)
		fail_msg("thpfs_open(%s, %#x) = %d (%s)", path, flags, r, strerror(-r));
	assert_non_null(f);
	return f;
}

void tl_close(struct thpfs_file *f)
{
	assert_int_equal(thpfs_close(f), 0);
}

struct thpfs_stats tl_stats(struct thpfs *fs)
{
	struct thpfs_stats st;
	memset(&st, 0xa5, sizeof(st));
	assert_int_equal(thpfs_get_stats(fs, &st), 0);
	return st;
}

struct stat tl_fstat(struct thpfs_file *f)
{
	struct stat st;
	memset(&st, 0, sizeof(st));
	int r = thpfs_fstat(f, &st);
	if (r)
		fail_msg("thpfs_fstat = %d (%s)", r, strerror(-r));
	return st;
}

int64_t tl_blocks(struct thpfs_file *f)
{
	return (int64_t)tl_fstat(f).st_blocks;
}

int64_t tl_size(struct thpfs_file *f)
{
	return (int64_t)tl_fstat(f).st_size;
}

void tl_fill(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = tl_pat(off + i, seed);
}

void tl_write_pat(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed)
{
	uint8_t *buf = malloc(len ? len : 1);
	assert_non_null(buf);
	tl_fill(buf, len, off, seed);
	ssize_t n = thpfs_pwrite(f, buf, len, (off_t)off);
	free(buf);
	if (n != (ssize_t)len)
		fail_msg("pwrite(off %" PRIu64 ", len %" PRIu64 ") = %zd", off, len, n);
}

/* Reads [off, off+len) into a new buffer, asserting a full read. */
static uint8_t *tl_read_all(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	assert_non_null(buf);
	memset(buf, 0x5a, len);
	ssize_t n = thpfs_pread(f, buf, len, (off_t)off);
	if (n != (ssize_t)len) {
		free(buf);
		fail_msg("pread(off %" PRIu64 ", len %" PRIu64 ") = %zd", off, len, n);
	}
	return buf;
}

void tl_check_pat(struct thpfs_file *f, uint64_t off, uint64_t len, unsigned seed)
{
	uint8_t *buf = tl_read_all(f, off, len);
	for (uint64_t i = 0; i < len; i++) {
		if (buf[i] != tl_pat(off + i, seed)) {
			uint8_t got = buf[i];
			free(buf);
			fail_msg("offset %" PRIu64 ": read %#x, expected pattern %#x", off + i, got,
				 tl_pat(off + i, seed));
		}
	}
	free(buf);
}

void tl_check_zero(struct thpfs_file *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = tl_read_all(f, off, len);
	for (uint64_t i = 0; i < len; i++) {
		if (buf[i]) {
			uint8_t got = buf[i];
			free(buf);
			fail_msg("offset %" PRIu64 ": read %#x, expected 0", off + i, got);
		}
	}
	free(buf);
}

int tl_thp_sysfs(void)
{
	char line[256];
	FILE *fp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!fp)
		return -1;
	if (!fgets(line, sizeof(line), fp)) {
		fclose(fp);
		return -1;
	}
	fclose(fp);
	return strstr(line, "[never]") ? 0 : 1;
}

/* Parses "Field:   N kB" into bytes; -1 if line is another field. */
static int64_t tl_kb_field(const char *line, const char *field)
{
	size_t n = strlen(field);
	if (strncmp(line, field, n) || line[n] != ':')
		return -1;
	return strtoll(line + n + 1, NULL, 10) * 1024;
}

int64_t tl_smaps_rollup(const char *field)
{
	char line[512];
	int64_t sum = 0, v;
	FILE *fp = fopen("/proc/self/smaps_rollup", "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if ((v = tl_kb_field(line, field)) >= 0)
			sum += v;
	fclose(fp);
	return sum;
}

int64_t tl_smaps_at(const void *addr, const char *field)
{
	char line[512];
	int64_t ret = -1, v;
	bool in = false;
	uintptr_t a = (uintptr_t)addr;
	FILE *fp = fopen("/proc/self/smaps", "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp)) {
		unsigned long lo, hi;
		size_t tok = strcspn(line, " \t\n");
		/* field lines are "Name: value"; mapping headers "lo-hi perms ..." */
		bool is_field = tok > 0 && line[tok - 1] == ':';
		if (!is_field && sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && (v = tl_kb_field(line, field)) >= 0) {
			ret = v;
			break;
		}
	}
	fclose(fp);
	return ret;
}

double tl_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

uint64_t tl_seed(const char *what)
{
	const char *e = getenv("THPFS_SEED");
	uint64_t s;
	if (e && *e) {
		s = strtoull(e, NULL, 0);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s = (uint64_t)ts.tv_sec * 1000003ULL ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20);
	}
	if (!s)
		s = 1;
	printf("%s: seed %" PRIu64 " (rerun with THPFS_SEED=%" PRIu64 ")\n", what, s, s);
	return s;
}

uint64_t tl_env_u64(const char *name, uint64_t def)
{
	const char *e = getenv(name);
	if (!e || !*e)
		return def;
	return strtoull(e, NULL, 0);
}

int tl_setup(void **state)
{
	struct tl_fx *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	fx->opts = *state ? (const char *)*state : "huge=always";
	char err[256] = "";
	int r = thpfs_mount_ex(&fx->fs, fx->opts, err, sizeof(err));
	if (r) {
		fprintf(stderr, "mount \"%s\" failed: %d (%s) %s\n", fx->opts, r, strerror(-r), err);
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

int tl_teardown(void **state)
{
	struct tl_fx *fx = *state;
	int r = fx->fs ? thpfs_unmount(fx->fs) : 0;
	if (r)
		fprintf(stderr, "teardown: thpfs_unmount = %d (%s)\n", r, strerror(-r));
	free(fx);
	return r ? -1 : 0;
}

void tl_same_memory(const struct thpfs_stats *a, const struct thpfs_stats *b)
{
	assert_int_equal(a->shmem_bytes, b->shmem_bytes);
	assert_int_equal(a->shmem_huge_bytes, b->shmem_huge_bytes);
	assert_int_equal(a->huge_frames, b->huge_frames);
	assert_int_equal(a->base_pages, b->base_pages);
	assert_int_equal(a->deferred_split_queue, b->deferred_split_queue);
}

/* ---- The kernel's view ----
 * PAGEMAP_SCAN (include/uapi/linux/fs.h, Linux 6.7), declared here for older
 * headers.  Written independently of src/kernel.c so that a test does not
 * check the library with the library's own code. */
#include <sys/ioctl.h>
struct tl_page_region {
	uint64_t start, end, categories;
};
struct tl_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define TL_PAGEMAP_SCAN _IOWR('f', 16, struct tl_pm_scan_arg)
#define TL_PAGE_IS_PRESENT (1 << 3)
#define TL_PAGE_IS_HUGE (1 << 6)

/* Bytes of [p, p + len) having every category in mask, or -1. */
static int64_t kernel_bytes(const void *p, size_t len, uint64_t mask)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return -1;
	/* whole pages: the ioctl wants page-aligned bounds */
	uint64_t start = (uintptr_t)p & ~4095ULL, end = ((uintptr_t)p + len + 4095) & ~4095ULL;
	uint64_t sum = 0;
	while (start < end) {
		struct tl_page_region vec[32];
		struct tl_pm_scan_arg a = {
			.size = sizeof(a), .start = start, .end = end,
			.vec = (uintptr_t)vec, .vec_len = 32,
			.category_mask = mask, .return_mask = mask,
		};
		int n = ioctl(fd, TL_PAGEMAP_SCAN, &a);
		if (n < 0) {
			close(fd);
			return -1;
		}
		for (int i = 0; i < n; i++)
			sum += vec[i].end - vec[i].start;
		start = a.walk_end > start ? a.walk_end : end;
	}
	close(fd);
	return (int64_t)sum;
}

int64_t tl_kernel_huge_bytes(const void *p, size_t len)
{
	return kernel_bytes(p, len, TL_PAGE_IS_PRESENT | TL_PAGE_IS_HUGE);
}

int64_t tl_kernel_present_bytes(const void *p, size_t len)
{
	return kernel_bytes(p, len, TL_PAGE_IS_PRESENT);
}

int tl_kernel_large_folio(const void *p)
{
	uint64_t e, fl;
	int pm = open("/proc/self/pagemap", O_RDONLY);
	if (pm < 0)
		return -1;
	ssize_t r = pread(pm, &e, 8, (off_t)((uintptr_t)p / 4096 * 8));
	close(pm);
	uint64_t pfn = e & ((1ULL << 55) - 1);
	if (r != 8 || !(e >> 63) || !pfn)
		return -1; /* not present, or frame numbers hidden (not root) */
	int kf = open("/proc/kpageflags", O_RDONLY);
	if (kf < 0)
		return -1;
	r = pread(kf, &fl, 8, (off_t)(pfn * 8));
	close(kf);
	if (r != 8)
		return -1;
	/* KPF_COMPOUND_HEAD 15, KPF_COMPOUND_TAIL 16, KPF_THP 22 */
	return (fl & ((1ULL << 15) | (1ULL << 16) | (1ULL << 22))) != 0;
}

int64_t tl_vmstat(const char *name)
{
	char line[256];
	size_t n = strlen(name);
	int64_t v = -1;
	FILE *fp = fopen("/proc/vmstat", "r");
	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (!strncmp(line, name, n) && line[n] == ' ')
			v = strtoll(line + n + 1, NULL, 10);
	fclose(fp);
	return v;
}

void tl_skip_check(const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	print_message("[  SKIPPED ] check: %s\n", why);
}

bool tl_cg_create(struct thpfs_cg *cg, const char *name, const char *then)
{
	int r = thpfs_cg_create(cg, name);
	if (r) {
		print_message("cannot create a child memory cgroup (%s): %s\n", strerror(-r), then);
		return false;
	}
	return true;
}

void tl_cg_enter(struct thpfs_cg *cg)
{
	int r = thpfs_cg_enter(cg);
	if (r)
		fail_msg("cannot enter cgroup %s: %s", cg->dir, strerror(-r));
}

int64_t tl_cg_usage(const struct thpfs_cg *cg)
{
	int64_t u = thpfs_cg_usage(cg);
	assert_true(u > 0);
	return u;
}

void tl_cg_set_limit(const struct thpfs_cg *cg, int64_t bytes)
{
	int r = thpfs_cg_set_limit(cg, bytes);
	if (r)
		fail_msg("cannot set the memory limit of %s: %s", cg->dir, strerror(-r));
}

int tl_cg_setup(void **state)
{
	*state = calloc(1, sizeof(struct tl_cg_fx));
	return *state ? 0 : -1;
}

int tl_cg_teardown(void **state)
{
	struct tl_cg_fx *fx = *state;
	int ret = 0;
	if (fx->fs && thpfs_unmount(fx->fs))
		ret = -1;
	if (fx->made && thpfs_cg_destroy(&fx->cg))
		ret = -1;
	free(fx);
	return ret;
}

void tl_cg_start(struct tl_cg_fx *fx, const char *name, bool enter)
{
	if (!tl_cg_create(&fx->cg, name, "skipping"))
		skip();
	fx->made = true;
	if (enter)
		tl_cg_enter(&fx->cg);
}

int64_t tl_asan_shadow_rss(void)
{
#ifdef TL_ASAN
	/* x86_64 shadow: [0x7fff8000, 0x10007fff8000) */
	const unsigned long lo = 0x7fff8000UL, hi = 0x10007fff8000UL;
	char line[512];
	int64_t sum = 0;
	bool in = false;
	FILE *fp = fopen("/proc/self/smaps", "r");
	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp)) {
		unsigned long a, b;
		size_t tok = strcspn(line, " \t\n");
		if (!(tok > 0 && line[tok - 1] == ':') && sscanf(line, "%lx-%lx ", &a, &b) == 2) {
			in = a >= lo && b <= hi;
			continue;
		}
		if (in && !strncmp(line, "Rss:", 4))
			sum += strtoll(line + 4, NULL, 10) * 1024;
	}
	fclose(fp);
	return sum;
#else
	return 0;
#endif
}

pid_t tl_fork(void)
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	return pid;
}

void tl_wait_child(pid_t pid)
{
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fail_msg("child killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(st), 0);
}

int64_t tl_cg_stock(void)
{
	return 64 * 4096 * (int64_t)sysconf(_SC_NPROCESSORS_ONLN);
}
