/*
 * guest-mem.c - the program the test guest runs as its workload (static,
 * started by guest/init in the initramfs; see docs/vm.md).
 *
 * It fills most of the guest's free memory with stamped 4 KiB pages, frees a
 * fragmenting pattern of them (whole 2 MiB chunks, backed by guest huge
 * pages, here; every other page of 4 KiB-page chunks there) so that the
 * balloon driver has room to inflate to the host's target out of fragmented
 * memory, and holds the rest.  Then it obeys one-word
 * commands read from the console (stdin), one a line, and answers each with
 * one line starting "GM: " that the host's runner (guest/run-vm.py) waits for:
 *
 *   chase     time a pointer chase through the held pages
 *   check     verify every stamp of the held pages
 *   rewrite   verify the held pages, fault the freed pages back in, stamp
 *             every page again with the next generation, verify them all,
 *             rebuild the chase chain and time it
 *   quit      exit (init then powers the guest off)
 *
 * Stamp of a page (64-bit words): [0] magic, [1] its virtual address,
 * [2] its guest-physical frame number when it was stamped (from
 * /proc/self/pagemap; pages may legitimately move in the guest, so this word
 * is reported, not checked), [3] the generation, and every other word a
 * function of (address, generation, word index).  The chase chain lives in
 * the held pages themselves: one word per page (at a cache line that depends
 * on the page) holds the address of the next page's chain word.
 *
 * Options come from the kernel command line (/proc/cmdline):
 *   gm.ram_mb=N     the VM's RAM size as the host configured it (MiB)
 *   gm.target=P     the balloon will take P% of it (default 50)
 *   gm.margin_mb=N  memory left for the guest kernel after inflate
 *   gm.chase=N      pointer-chase steps (default 1M)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)
#define CHUNK (2UL << 20)
#define PAGES_PER_CHUNK (CHUNK / PAGE)
#define MAGIC 0x7468706673766d31ULL /* "thpfsvm1" */

enum chunk_kind { HOLD, FREE_WHOLE, FREE_HALF };

static char *region;      /* the filled memory, CHUNK aligned */
static size_t nchunks;
static unsigned char *kind; /* per chunk */
static uint32_t *chain;   /* held page indices in chase order */
static size_t nheld;
static int pagemap_fd = -1;

static void die(const char *what)
{
	printf("GM: FATAL %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t meminfo_kb(const char *name)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t len = strlen(name);
	uint64_t v = 0;

	if (!f)
		die("/proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, len) && line[len] == ':') {
			v = strtoull(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Value of "key=N" on the kernel command line, or def. */
static long cmdline_opt(const char *key, long def)
{
	static char buf[4096];
	static int loaded;
	size_t len = strlen(key);

	if (!loaded) {
		int fd = open("/proc/cmdline", O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

		buf[n > 0 ? n : 0] = '\0';
		if (fd >= 0)
			close(fd);
		loaded = 1;
	}
	for (char *p = buf; (p = strstr(p, key)); p += len)
		if ((p == buf || p[-1] == ' ') && p[len] == '=')
			return strtol(p + len + 1, NULL, 0);
	return def;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static inline uint64_t pattern(uint64_t va, uint64_t gen, size_t w)
{
	return (va + w * 8) * 0x9E3779B97F4A7C15ULL ^ (gen << 48) ^ w;
}

static inline uint64_t *page_at(size_t page)
{
	return (uint64_t *)(region + page * PAGE);
}

static inline int page_held(size_t page)
{
	enum chunk_kind k = kind[page / PAGES_PER_CHUNK];

	return k == HOLD || (k == FREE_HALF && !(page & 1));
}

/* The chain word of a page: one of the cache lines 1..63, by page. */
static inline size_t chain_word(size_t page)
{
	return 8 * (1 + (page * 7) % 63);
}

/* Guest-physical frame numbers of pages [first, first+n) into pfn[]. */
static void read_pfns(size_t first, size_t n, uint64_t *pfn)
{
	off_t off = (off_t)(((uintptr_t)region / PAGE + first) * 8);
	ssize_t got = pread(pagemap_fd, pfn, n * 8, off);

	if (got != (ssize_t)(n * 8))
		die("pagemap");
	for (size_t i = 0; i < n; i++)
		pfn[i] &= (1ULL << 55) - 1;
}

/* Writes the stamp of generation gen into every page of chunk c that
 * want(page) selects (faulting it in). */
static void stamp_chunk(size_t c, uint64_t gen, int all)
{
	uint64_t pfn[PAGES_PER_CHUNK];
	size_t first = c * PAGES_PER_CHUNK;

	for (size_t i = 0; i < PAGES_PER_CHUNK; i++) {
		if (!all && !page_held(first + i))
			continue;
		uint64_t *p = page_at(first + i);
		uint64_t va = (uintptr_t)p;

		for (size_t w = 4; w < WORDS; w++)
			p[w] = pattern(va, gen, w);
		p[0] = MAGIC;
		p[1] = va;
		p[3] = gen;
	}
	read_pfns(first, PAGES_PER_CHUNK, pfn);
	for (size_t i = 0; i < PAGES_PER_CHUNK; i++)
		if (all || page_held(first + i))
			page_at(first + i)[2] = pfn[i];
}

/* Counts the pages (held ones, or all) whose stamp is not generation gen;
 * the chain word is skipped in pages that carry one.  Pages whose frame
 * moved since stamping are counted in *moved. */
static size_t verify(uint64_t gen, int all, int skip_chain, size_t *moved)
{
	size_t errors = 0, shown = 0;
	uint64_t pfn[PAGES_PER_CHUNK];

	*moved = 0;
	for (size_t c = 0; c < nchunks; c++) {
		size_t first = c * PAGES_PER_CHUNK;

		read_pfns(first, PAGES_PER_CHUNK, pfn);
		for (size_t i = 0; i < PAGES_PER_CHUNK; i++) {
			size_t page = first + i;
			int held = page_held(page);

			if (!all && !held)
				continue;
			uint64_t *p = page_at(page);
			uint64_t va = (uintptr_t)p;
			size_t cw = skip_chain && held ? chain_word(page) : 0;
			int bad = p[0] != MAGIC || p[1] != va || p[3] != gen;

			for (size_t w = 4; w < WORDS && !bad; w++)
				bad = w != cw && p[w] != pattern(va, gen, w);
			if (bad) {
				if (shown++ < 5)
					printf("GM: BAD page %zu va %#" PRIx64 " words %#" PRIx64 " %#" PRIx64 " %#" PRIx64 " %#" PRIx64 "\n",
					       page, va, p[0], p[1], p[2], p[3]);
				errors++;
			} else if (p[2] != pfn[i]) {
				(*moved)++;
			}
		}
	}
	return errors;
}

/* Puts the held pages in a fixed random order (once). */
static void shuffle_chain(void)
{
	uint64_t seed = 0x1234567;

	for (size_t i = nheld - 1; i > 0; i--) {
		size_t j = xorshift(&seed) % (i + 1);
		uint32_t t = chain[i];

		chain[i] = chain[j];
		chain[j] = t;
	}
}

/* Lays the chase chain through the held pages in chain[] order. */
static void build_chain(void)
{
	for (size_t i = 0; i < nheld; i++) {
		size_t a = chain[i], b = chain[(i + 1) % nheld];

		page_at(a)[chain_word(a)] = (uintptr_t)&page_at(b)[chain_word(b)];
	}
}

/* Nanoseconds per dependent load along the chain. */
static double chase(long steps)
{
	uint64_t *p = &page_at(chain[0])[chain_word(chain[0])];
	double t0 = now();

	for (long i = 0; i < steps; i++)
		p = (uint64_t *)*p;
	double t = now() - t0;
	if (!p)
		printf("GM: chain broken\n");
	return t * 1e9 / steps;
}

static void free_pattern(void)
{
	for (size_t c = 0; c < nchunks; c++) {
		char *base = region + c * CHUNK;

		if (kind[c] == FREE_WHOLE) {
			if (madvise(base, CHUNK, MADV_DONTNEED))
				die("madvise");
		} else if (kind[c] == FREE_HALF) {
			for (size_t i = 1; i < PAGES_PER_CHUNK; i += 2)
				if (madvise(base + i * PAGE, PAGE, MADV_DONTNEED))
					die("madvise");
		}
	}
}

/* Chooses the kind of every chunk so that about held_target bytes stay
 * held: half the chunks lose every other page while whole frees suffice
 * for the rest; kinds are shuffled so the pattern is scattered. */
static void plan(size_t held_target)
{
	size_t nfree_half, nfree_whole, nhold;
	double f = 1.0 - (double)held_target / (double)(nchunks * CHUNK);
	uint64_t seed = 0xabcdef;

	if (f < 0)
		f = 0;
	if (f <= 0.25) {
		nfree_half = (size_t)(2 * f * nchunks);
		nfree_whole = 0;
	} else {
		nfree_half = nchunks / 2;
		nfree_whole = (size_t)((f - 0.25) * nchunks + 0.5);
		if (nfree_half + nfree_whole > nchunks)
			nfree_whole = nchunks - nfree_half;
	}
	nhold = nchunks - nfree_half - nfree_whole;
	kind = malloc(nchunks);
	if (!kind)
		die("malloc");
	for (size_t c = 0; c < nchunks; c++)
		kind[c] = c < nhold ? HOLD : c < nhold + nfree_whole ? FREE_WHOLE : FREE_HALF;
	for (size_t i = nchunks - 1; i > 0; i--) {
		size_t j = xorshift(&seed) % (i + 1);
		unsigned char t = kind[i];

		kind[i] = kind[j];
		kind[j] = t;
	}
	printf("GM: plan chunks=%zu hold=%zu free_whole=%zu free_half=%zu\n",
	       nchunks, nhold, nfree_whole, nfree_half);
}

/* Huge pages in the guest (its kernel's default, THP always) for the
 * chunks held or freed whole, so that a chunk freed whole frees a 2 MiB
 * block of guest-physical memory; 4 KiB pages for the chunks that lose every
 * other page, so that those pages are free at once (no guest THP split
 * pending).  The balloon takes the scattered 4 KiB pages first (Linux's
 * buddy allocator hands out the smallest free blocks first), then whole
 * 2 MiB blocks. */
static void advise_chunks(void)
{
	for (size_t c = 0; c < nchunks; c++)
		if (madvise(region + c * CHUNK, CHUNK, kind[c] == FREE_HALF ? MADV_NOHUGEPAGE : MADV_HUGEPAGE))
			die("madvise");
}

static void quiet_console(void)
{
	struct termios t;

	if (tcgetattr(0, &t) == 0) {
		t.c_lflag &= ~(ECHO | ECHONL);
		tcsetattr(0, TCSANOW, &t);
	}
}

int main(void)
{
	long ram_mb = cmdline_opt("gm.ram_mb", 0);
	long target = cmdline_opt("gm.target", 50);
	long chase_steps = cmdline_opt("gm.chase", 1L << 20);
	uint64_t total = meminfo_kb("MemTotal") * 1024;
	uint64_t avail = meminfo_kb("MemAvailable") * 1024;
	uint64_t used = total - avail;
	long margin_mb = cmdline_opt("gm.margin_mb", (long)(total >> 20) / 16 + 24);
	uint64_t ballooned, fill, held_target;
	double t0;
	char cmd[64];
	size_t moved;

	setvbuf(stdout, NULL, _IOLBF, 0);
	quiet_console();
	if (!ram_mb)
		ram_mb = (long)(total >> 20);
	ballooned = (uint64_t)ram_mb * target / 100 << 20;
	fill = (avail - (avail / 32 + (16UL << 20))) & ~(CHUNK - 1);
	if (total < ballooned + used + ((uint64_t)margin_mb << 20))
		held_target = 0;
	else
		held_target = total - ballooned - used - ((uint64_t)margin_mb << 20);
	printf("GM: start total=%" PRIu64 " avail=%" PRIu64 " fill=%" PRIu64 " held_target=%" PRIu64 "\n",
	       total >> 20, avail >> 20, fill >> 20, held_target >> 20);

	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0)
		die("open pagemap");
	nchunks = fill / CHUNK;
	region = mmap(NULL, fill + CHUNK, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED)
		die("mmap");
	region = (char *)(((uintptr_t)region + CHUNK - 1) & ~(CHUNK - 1));
	plan(held_target);
	advise_chunks();

	t0 = now();
	for (size_t c = 0; c < nchunks; c++)
		stamp_chunk(c, 1, 1);
	printf("GM: filled %zu MiB in %.2f s\n", (size_t)(fill >> 20), now() - t0);
	free_pattern();
	for (size_t p = 0; p < nchunks * PAGES_PER_CHUNK; p++)
		nheld += page_held(p);
	chain = malloc(nheld * sizeof(*chain));
	if (!chain)
		die("malloc");
	for (size_t p = 0, i = 0; p < nchunks * PAGES_PER_CHUNK; p++)
		if (page_held(p))
			chain[i++] = (uint32_t)p;
	shuffle_chain();
	build_chain();
	printf("GM: READY held_mib=%zu freed_mib=%zu memfree_mib=%" PRIu64 " chase_ns=%.1f\n",
	       nheld * PAGE >> 20, (nchunks * PAGES_PER_CHUNK - nheld) * PAGE >> 20,
	       meminfo_kb("MemFree") >> 10, chase(chase_steps));

	while (fgets(cmd, sizeof(cmd), stdin)) {
		cmd[strcspn(cmd, "\r\n")] = '\0';
		if (!strcmp(cmd, "chase")) {
			printf("GM: CHASE chase_ns=%.1f\n", chase(chase_steps));
		} else if (!strcmp(cmd, "check")) {
			size_t e = verify(1, 0, 1, &moved);

			printf("GM: CHECK errors=%zu pages=%zu moved=%zu\n", e, nheld, moved);
		} else if (!strcmp(cmd, "rewrite")) {
			size_t e1, e2, npages = nchunks * PAGES_PER_CHUNK;
			double t;

			e1 = verify(1, 0, 1, &moved);
			t = now();
			for (size_t c = 0; c < nchunks; c++)
				stamp_chunk(c, 2, 1);
			t = now() - t;
			e2 = verify(2, 1, 0, &moved);
			build_chain(); /* the same order as before */
			printf("GM: REWRITE errors=%zu held_errors=%zu all_errors=%zu pages=%zu moved=%zu rewrite_s=%.2f memfree_mib=%" PRIu64 " chase_ns=%.1f\n",
			       e1 + e2, e1, e2, npages, moved, t,
			       meminfo_kb("MemFree") >> 10, chase(chase_steps));
		} else if (!strcmp(cmd, "quit")) {
			printf("GM: BYE\n");
			return 0;
		} else if (cmd[0]) {
			printf("GM: ? %s\n", cmd);
		}
	}
	printf("GM: EOF\n");
	return 0;
}
