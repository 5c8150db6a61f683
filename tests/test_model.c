/*
 * test_model.c - model-based randomized test of the file data paths.
 *
 * Thousands of random operations on three files (up to 16 MiB each) are
 * applied both to thpfs and to a plain reference model (a byte array and a
 * size per file, plus per-4 KiB-page state), and compared: content and size
 * exactly (the range an operation touched after every operation, whole files
 * every few operations), SEEK_DATA / SEEK_HOLE against what the model knows,
 * and st_blocks:
 *   - always: st_blocks is a multiple of 8, st_blocks * 512 >= the bytes of
 *     the non-zero 4 KiB pages below EOF, and every byte SEEK_DATA /
 *     SEEK_HOLE call a hole reads zero;
 *   - for a file that can only get base pages (huge=never, a file advised
 *     NOHUGEPAGE, or an unadvised file under huge=advise) exactly: st_blocks
 *     * 512 = 4 KiB * the pages the model says are allocated (set by write,
 *     fallocate, zero-range, map; cleared by punch and by truncation below
 *     the page), and SEEK_DATA / SEEK_HOLE agree page by page with the
 *     pages written or mapped since their last punch (fallocated-only pages
 *     are holes).
 *
 *   - on a mount with a small size= (a few MiB): the memory held (the
 *     budget's use once the release batch is flushed) and the sum of
 *     st_blocks never pass size=, and statfs agrees.
 *
 * What the model leaves open (and checks loosely):
 *   - pages zeroed by ZERO_RANGE are allocated, but whether SEEK_DATA counts
 *     them as data is not specified: either answer is accepted;
 *   - a page punched or truncated while its 2 MiB chunk is pinned: the
 *     pinned page itself must keep its memory until the last pin of the
 *     chunk drops; other pages of that chunk may be freed at once or then.
 *     Either way all of them must be gone once the chunk has no pins.
 *   - a page given to thpfs_free_lazy reads zero at once but may keep its
 *     memory (and SEEK_DATA may still call it data) until reclaim takes it:
 *     any write or fallocate that runs out of size= may, thpfs_reclaim(0)
 *     must (unless its chunk is pinned; then the last unmap does);
 *   - under size=, a write may be short or fail with -ENOSPC, a fallocate,
 *     ZERO_RANGE or map may fail with -ENOSPC: the bytes a write reports
 *     must be stored, everything else (bytes, size, allocation) unchanged.
 *
 * Every mount policy (huge=never|always|within_size|advise) runs with each
 * split mode (native, the default, migrate and inplace), the background
 * collapse thread on; then small size= mounts (1-4 MiB, huge=never and
 * huge=always, collapse on and off) where files may grow to twice size=, so
 * writes and fallocates run into the budget and reclaim all the time.  On
 * failure the seed, the configuration, the operation number and the last
 * operations are printed.
 *
 * Environment: THPFS_SEED (base seed), THPFS_MODEL_OPS (operations per
 * configuration, default 2000; three times that on the size= mounts),
 * THPFS_MODEL_ONLY (run only configurations whose option string contains
 * this, e.g. "size=" or "split=native").
 */
#include "testlib.h"
#include "internal.h" /* _thpfs_held_bytes, _thpfs_release_flush */

#include <inttypes.h>
#include <stdarg.h>
#include <time.h>

#define PUNCH_MODE (THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE)
#define NFILES 3
#define MAXSZ (16 * MIB)
#define NPAGES (MAXSZ / PG)
#define MAXPINS 4
#define FULL_EVERY 50
#define HISTORY 32

static inline uint64_t umin(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* allocation state of a page (exact files); A_LAZY: given to free_lazy,
 * memory held until reclaim (or the last unpin of its chunk) */
enum { A_FREE, A_ALLOC, A_PENDING, A_MAYBE, A_LAZY };
/* SEEK_DATA state of a page (exact files) */
enum { S_HOLE, S_DATA, S_ANY };

struct pin {
	void *addr;
	size_t len;
	uint64_t off;
};

struct mfile {
	struct thpfs_file *f;
	char path[16];
	uint8_t *data; /* MAXSZ bytes; zero at and past size */
	uint64_t size;
	bool exact;
	uint8_t alloc[NPAGES];
	uint8_t seek[NPAGES];
	struct pin pins[MAXPINS];
	int npins;
	bool lazy; /* free_lazy gave it whole pages since the last full reclaim
		    * (a huge chunk's pages are all present: the model's alloc
		    * does not know them) */
	uint64_t lazy_off, lazy_len; /* the last free_lazy range */
};

struct model {
	struct thpfs *fs;
	const char *opts;
	uint64_t seed, rng;
	uint64_t op;
	bool collapse_thread;
	uint64_t budget; /* size= of the mount, 0 when not small */
	uint64_t lim;    /* files stay below this (MAXSZ, or 2 * budget) */
	struct mfile file[NFILES];
	char history[HISTORY][160];
	uint8_t *buf; /* scratch, MAXSZ */
};

static struct model *cur;

/* Fails the test with the seed, configuration, op number and recent ops. */
static void model_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void model_fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	print_error("model failure: %s\n", msg);
	print_error("  config \"%s\", seed %" PRIu64 ", op %" PRIu64 " (THPFS_SEED=%" PRIu64
		    " THPFS_MODEL_ONLY='%s')\n",
		    cur->opts, cur->seed, cur->op, cur->seed, cur->opts);
	print_error("  last operations:\n");
	for (uint64_t i = cur->op >= HISTORY ? cur->op - HISTORY + 1 : 0; i <= cur->op; i++)
		if (cur->history[i % HISTORY][0])
			print_error("    #%" PRIu64 " %s\n", i, cur->history[i % HISTORY]);
	fail_msg("%s (seed %" PRIu64 ", op %" PRIu64 ", %s)", msg, cur->seed, cur->op, cur->opts);
}

#define MCHECK(cond, ...)                   \
	do {                                \
		if (!(cond))                \
			model_fail(__VA_ARGS__); \
	} while (0)

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cur->history[cur->op % HISTORY], sizeof(cur->history[0]), fmt, ap);
	va_end(ap);
}

static uint64_t rnd(uint64_t n)
{
	return tl_rand_below(&cur->rng, n);
}

static uint64_t page_of(uint64_t off)
{
	return off / PG;
}

static uint64_t pages_up(uint64_t off)
{
	return (off + PG - 1) / PG;
}

/* ---- the model's view of pins ---- */

static int chunk_pins(const struct mfile *m, uint64_t chunk)
{
	int n = 0;
	for (int i = 0; i < m->npins; i++)
		n += m->pins[i].off / HPG == chunk;
	return n;
}

static bool page_pinned(const struct mfile *m, uint64_t pg)
{
	for (int i = 0; i < m->npins; i++)
		if (page_of(m->pins[i].off) == pg)
			return true;
	return false;
}

/* Page pg loses its memory (punch, truncate): at once, or - if its chunk is
 * pinned - later. */
static void page_drop(struct mfile *m, uint64_t pg)
{
	if (m->alloc[pg] == A_FREE)
		return;
	if (chunk_pins(m, pg * PG / HPG)) {
		m->alloc[pg] = page_pinned(m, pg) ? A_PENDING : A_MAYBE;
		m->seek[pg] = S_ANY;
	} else {
		m->alloc[pg] = A_FREE;
		m->seek[pg] = S_HOLE;
	}
}

/* The last pin of a chunk dropped: everything waiting in it goes. */
static void chunk_settle(struct mfile *m, uint64_t chunk)
{
	for (uint64_t pg = chunk * (HPG / PG); pg < (chunk + 1) * (HPG / PG); pg++) {
		if (m->alloc[pg] == A_PENDING || m->alloc[pg] == A_MAYBE || m->alloc[pg] == A_LAZY) {
			m->alloc[pg] = A_FREE;
			m->seek[pg] = S_HOLE;
		}
	}
}

/* Whether any file may still have lazily freed pages on the deferred queue. */
static bool any_lazy(void)
{
	for (int i = 0; i < NFILES; i++) {
		if (cur->file[i].lazy)
			return true;
		for (uint64_t pg = 0; pg < NPAGES; pg++)
			if (cur->file[i].alloc[pg] == A_LAZY)
				return true;
	}
	return false;
}

/* ---- comparing ---- */

static void compare_range(struct mfile *m, uint64_t lo, uint64_t hi)
{
	if (hi > m->size)
		hi = m->size;
	if (lo >= hi)
		return;
	ssize_t n = thpfs_pread(m->f, cur->buf, hi - lo, (off_t)lo);
	MCHECK(n == (ssize_t)(hi - lo), "%s: pread(%" PRIu64 ", %" PRIu64 ") = %zd", m->path, lo,
	       hi - lo, n);
	if (memcmp(cur->buf, m->data + lo, hi - lo)) {
		for (uint64_t i = 0; i < hi - lo; i++)
			MCHECK(cur->buf[i] == m->data[lo + i],
			       "%s: byte %" PRIu64 " reads %#x, model has %#x", m->path, lo + i,
			       cur->buf[i], m->data[lo + i]);
	}
}

static bool model_zero(const struct mfile *m, uint64_t lo, uint64_t hi)
{
	for (uint64_t i = lo; i < hi; i++)
		if (m->data[i])
			return false;
	return true;
}

static uint64_t first_nonzero(const struct mfile *m, uint64_t lo, uint64_t hi)
{
	for (uint64_t i = lo; i < hi; i++)
		if (m->data[i])
			return i;
	return hi;
}

/* Counts model pages by allocation state. */
static void count_alloc(const struct mfile *m, uint64_t *sure, uint64_t *maybe)
{
	*sure = *maybe = 0;
	for (uint64_t pg = 0; pg < NPAGES; pg++) {
		if (m->alloc[pg] == A_ALLOC || m->alloc[pg] == A_PENDING)
			(*sure)++;
		else if (m->alloc[pg] == A_MAYBE || m->alloc[pg] == A_LAZY)
			(*maybe)++;
	}
}

static void check_blocks(struct mfile *m, bool full)
{
	struct stat st = tl_fstat(m->f);
	MCHECK((uint64_t)st.st_size == m->size, "%s: size %" PRId64 ", model %" PRIu64, m->path,
	       (int64_t)st.st_size, m->size);
	MCHECK(st.st_blocks % 8 == 0, "%s: st_blocks %" PRId64 " not a multiple of 8", m->path,
	       (int64_t)st.st_blocks);
	if (m->exact) {
		uint64_t sure, maybe;
		count_alloc(m, &sure, &maybe);
		uint64_t pages = (uint64_t)st.st_blocks / 8;
		MCHECK(pages >= sure && pages <= sure + maybe,
		       "%s: st_blocks %" PRId64 " = %" PRIu64 " pages, model has %" PRIu64
		       " allocated + %" PRIu64 " maybe",
		       m->path, (int64_t)st.st_blocks, pages, sure, maybe);
	}
	if (full) {
		uint64_t nz = 0;
		for (uint64_t pg = 0; pg < pages_up(m->size); pg++)
			if (!model_zero(m, pg * PG, umin((pg + 1) * PG, m->size)))
				nz++;
		MCHECK((uint64_t)st.st_blocks * 512 >= nz * PG,
		       "%s: st_blocks %" PRId64 " < %" PRIu64 " non-zero pages", m->path,
		       (int64_t)st.st_blocks, nz);
	}
}

/* Checks SEEK_DATA and SEEK_HOLE from off against the model. */
static void check_seek(struct mfile *m, uint64_t off)
{
	off_t d = thpfs_lseek(m->f, (off_t)off, SEEK_DATA);
	off_t h = thpfs_lseek(m->f, (off_t)off, SEEK_HOLE);
	if (off >= m->size) {
		MCHECK(d == -ENXIO && h == -ENXIO, "%s: SEEK_DATA/HOLE(%" PRIu64 ") at/past EOF %" PRIu64
		       " = %" PRId64 "/%" PRId64, m->path, off, m->size, (int64_t)d, (int64_t)h);
		return;
	}
	/* loose rules, any file */
	MCHECK(d == -ENXIO || (d >= (off_t)off && d < (off_t)m->size),
	       "%s: SEEK_DATA(%" PRIu64 ") = %" PRId64 " (size %" PRIu64 ")", m->path, off,
	       (int64_t)d, m->size);
	MCHECK(h >= (off_t)off && h <= (off_t)m->size,
	       "%s: SEEK_HOLE(%" PRIu64 ") = %" PRId64 " (size %" PRIu64 ")", m->path, off,
	       (int64_t)h, m->size);
	uint64_t dend = d == -ENXIO ? m->size : (uint64_t)d;
	uint64_t nz = first_nonzero(m, off, dend);
	MCHECK(nz == dend, "%s: SEEK_DATA(%" PRIu64 ") = %" PRId64 " skips non-zero byte %" PRIu64,
	       m->path, off, (int64_t)d, nz);
	if ((uint64_t)h < m->size) {
		off_t hd = thpfs_lseek(m->f, h, SEEK_DATA);
		uint64_t hend = hd == -ENXIO ? m->size : (uint64_t)hd;
		MCHECK(hd == -ENXIO || hd >= h, "%s: SEEK_DATA(%" PRId64 ") = %" PRId64, m->path,
		       (int64_t)h, (int64_t)hd);
		nz = first_nonzero(m, (uint64_t)h, hend);
		MCHECK(nz == hend, "%s: hole [%" PRId64 ", %" PRIu64 ") from SEEK_HOLE(%" PRIu64
		       ") holds non-zero byte %" PRIu64, m->path, (int64_t)h, hend, off, nz);
	}
	if (!m->exact)
		return;
	/* exact rules, page by page */
	uint64_t p0 = page_of(off), last = page_of(m->size - 1);
	if (d == -ENXIO) {
		for (uint64_t pg = p0; pg <= last; pg++)
			MCHECK(m->seek[pg] != S_DATA, "%s: SEEK_DATA(%" PRIu64 ") = -ENXIO but page %"
			       PRIu64 " is data", m->path, off, pg);
	} else {
		uint64_t pd = page_of((uint64_t)d);
		MCHECK((uint64_t)d == off || (uint64_t)d % PG == 0,
		       "%s: SEEK_DATA(%" PRIu64 ") = %" PRId64 " not a page start", m->path, off,
		       (int64_t)d);
		for (uint64_t pg = p0; pg < pd; pg++)
			MCHECK(m->seek[pg] != S_DATA, "%s: SEEK_DATA(%" PRIu64 ") = %" PRId64
			       " skips data page %" PRIu64, m->path, off, (int64_t)d, pg);
		MCHECK(m->seek[pd] != S_HOLE, "%s: SEEK_DATA(%" PRIu64 ") = %" PRId64
		       " lands on hole page %" PRIu64, m->path, off, (int64_t)d, pd);
	}
	if ((uint64_t)h == m->size) {
		for (uint64_t pg = p0; pg <= last; pg++)
			MCHECK(m->seek[pg] != S_HOLE, "%s: SEEK_HOLE(%" PRIu64 ") = EOF but page %"
			       PRIu64 " is a hole", m->path, off, pg);
	} else {
		uint64_t ph = page_of((uint64_t)h);
		MCHECK((uint64_t)h == off || (uint64_t)h % PG == 0,
		       "%s: SEEK_HOLE(%" PRIu64 ") = %" PRId64 " not a page start", m->path, off,
		       (int64_t)h);
		for (uint64_t pg = p0; pg < ph; pg++)
			MCHECK(m->seek[pg] != S_HOLE, "%s: SEEK_HOLE(%" PRIu64 ") = %" PRId64
			       " skips hole page %" PRIu64, m->path, off, (int64_t)h, pg);
		MCHECK(m->seek[ph] != S_DATA, "%s: SEEK_HOLE(%" PRIu64 ") = %" PRId64
		       " lands on data page %" PRIu64, m->path, off, (int64_t)h, ph);
	}
}

static void check_mount_gauges(bool settle)
{
	struct thpfs_stats s;
	uint64_t blocks;
	int npins = 0;
	for (int i = 0; i < NFILES; i++)
		npins += cur->file[i].npins;
	uint64_t held = 0;
	/* the collapse thread may hold two copies of a range for a moment */
	for (int tries = 0;; tries++) {
		s = tl_stats(cur->fs);
		blocks = 0;
		for (int i = 0; i < NFILES; i++)
			blocks += (uint64_t)tl_blocks(cur->file[i].f);
		struct thpfs_stats s2 = tl_stats(cur->fs);
		_thpfs_release_flush(cur->fs);
		held = _thpfs_held_bytes(cur->fs);
		bool ok = s.shmem_bytes == blocks * 512 && s2.shmem_bytes == s.shmem_bytes &&
			  s.shmem_bytes == s.huge_frames * HPG + s.base_pages * PG &&
			  s.shmem_huge_bytes == s.huge_frames * HPG &&
			  (!cur->budget || held <= cur->budget);
		if (ok || !cur->collapse_thread || tries > 200 || !settle)
			break;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	MCHECK(s.shmem_bytes == blocks * 512, "shmem_bytes %" PRIu64 " != sum of st_blocks * 512 %"
	       PRIu64, s.shmem_bytes, blocks * 512);
	MCHECK(s.shmem_bytes == s.huge_frames * HPG + s.base_pages * PG,
	       "shmem_bytes %" PRIu64 " != %" PRIu64 " huge frames + %" PRIu64 " base pages",
	       s.shmem_bytes, s.huge_frames, s.base_pages);
	MCHECK(s.shmem_huge_bytes == s.huge_frames * HPG, "shmem_huge_bytes %" PRIu64
	       " != huge_frames %" PRIu64 " * 2 MiB", s.shmem_huge_bytes, s.huge_frames);
	if (cur->budget) {
		struct thpfs_statfs sf;
		MCHECK(held <= cur->budget && s.shmem_bytes <= cur->budget,
		       "over size=%" PRIu64 ": held %" PRIu64 ", shmem_bytes %" PRIu64, cur->budget,
		       held, s.shmem_bytes);
		MCHECK(thpfs_statfs(cur->fs, &sf) == 0 && sf.bfree <= sf.blocks &&
		       sf.blocks * sf.bsize <= cur->budget,
		       "statfs: blocks %" PRIu64 " bfree %" PRIu64 " bsize %" PRIu64, sf.blocks,
		       sf.bfree, sf.bsize);
	}
	if (!npins) {
		MCHECK(s.deferred_split_queue == 0 || any_lazy(),
		       "no pins, no lazily freed pages, but deferred_split_queue %" PRIu64,
		       s.deferred_split_queue);
		MCHECK(s.pinned_pages == 0, "no pins but pinned_pages %" PRIu64, s.pinned_pages);
	}
}

static void full_check(struct mfile *m)
{
	compare_range(m, 0, m->size);
	check_blocks(m, true);
	check_mount_gauges(true);
}

/* ---- operations ---- */

/* A random offset, often near a 2 MiB boundary. */
static uint64_t rand_off(uint64_t limit)
{
	uint64_t off;
	switch (rnd(4)) {
	case 0:
		off = rnd(limit);
		break;
	case 1: /* near the start of a chunk */
		off = rnd(cur->lim / HPG) * HPG + rnd(3 * PG);
		break;
	case 2: /* near the end of a chunk */
		off = (rnd(cur->lim / HPG) + 1) * HPG - 1 - rnd(3 * PG);
		break;
	default: /* page aligned */
		off = rnd(limit / PG) * PG;
		break;
	}
	return off < limit ? off : limit - 1;
}

static uint64_t rand_len(uint64_t off)
{
	uint64_t len;
	switch (rnd(5)) {
	case 0:
		len = 1 + rnd(64);
		break;
	case 1:
		len = 1 + rnd(3 * PG);
		break;
	case 2:
		len = (1 + rnd(8)) * PG;
		break;
	case 3:
		len = 1 + rnd(HPG + 2 * PG);
		break;
	default:
		len = 1 + rnd(4 * MIB);
		break;
	}
	if (off + len > cur->lim)
		len = off < cur->lim ? cur->lim - off : 1;
	return len;
}

/* A range for a write, fallocate or zero-range: random, or (one time in
 * four) around the last range given to free_lazy - what a balloon's guest
 * does when it takes pages back - so that filling meets lazily freed pages
 * in the chunk being filled. */
static void rand_fill_range(const struct mfile *m, uint64_t *off, uint64_t *len)
{
	if (m->lazy_len && rnd(4) == 0) {
		uint64_t back = rnd(3) ? rnd(3 * PG) : 0;
		*off = m->lazy_off > back ? m->lazy_off - back : 0;
		*len = back + rnd(m->lazy_len + 1) + rnd(3) * rnd(16 * PG);
		if (!*len)
			*len = 1;
		if (*off + *len > cur->lim)
			*len = cur->lim - *off;
		return;
	}
	*off = rand_off(cur->lim);
	*len = rand_len(*off);
}

static void op_write(struct mfile *m)
{
	uint64_t off, len;
	rand_fill_range(m, &off, &len);
	uint8_t v = (uint8_t)(1 + rnd(255));
	note("%s write off %" PRIu64 " len %" PRIu64 " (byte %#x...)", m->path, off, len, v);
	for (uint64_t i = 0; i < len; i++)
		cur->buf[i] = (uint8_t)(v + i * 7 + (i >> 12));
	ssize_t n = thpfs_pwrite(m->f, cur->buf, len, (off_t)off);
	/* under size= a write may stop short, or store nothing (-ENOSPC) */
	MCHECK(n == (ssize_t)len || (cur->budget && (n == -ENOSPC || (n > 0 && n < (ssize_t)len))),
	       "%s: pwrite(%" PRIu64 ", %" PRIu64 ") = %zd", m->path, off, len, n);
	if (n != (ssize_t)len)
		note("%s write off %" PRIu64 " len %" PRIu64 " (byte %#x...) = %zd", m->path, off,
		     len, v, n);
	uint64_t done = n > 0 ? (uint64_t)n : 0;
	memcpy(m->data + off, cur->buf, done);
	if (done && off + done > m->size)
		m->size = off + done;
	for (uint64_t pg = page_of(off); done && pg < pages_up(off + done); pg++) {
		m->alloc[pg] = A_ALLOC;
		m->seek[pg] = S_DATA;
	}
	compare_range(m, off > PG ? off - PG : 0, off + len + PG);
}

static void op_read(struct mfile *m)
{
	uint64_t off = rand_off(cur->lim + PG), len = rand_len(off % cur->lim);
	note("%s read off %" PRIu64 " len %" PRIu64, m->path, off, len);
	ssize_t n = thpfs_pread(m->f, cur->buf, len, (off_t)off);
	uint64_t want = off >= m->size ? 0 : umin(len, m->size - off);
	MCHECK(n == (ssize_t)want, "%s: pread(%" PRIu64 ", %" PRIu64 ") = %zd, want %" PRIu64,
	       m->path, off, len, n, want);
	for (uint64_t i = 0; i < want; i++)
		MCHECK(cur->buf[i] == m->data[off + i], "%s: byte %" PRIu64 " reads %#x, model %#x",
		       m->path, off + i, cur->buf[i], m->data[off + i]);
}

/* Removes [lo, hi) the way punch and truncate do: bytes zero, whole pages
 * dropped. */
static void remove_range(struct mfile *m, uint64_t lo, uint64_t hi)
{
	memset(m->data + lo, 0, hi - lo);
	for (uint64_t pg = pages_up(lo); pg < page_of(hi); pg++)
		page_drop(m, pg);
}

static void op_punch(struct mfile *m)
{
	uint64_t off = rand_off(cur->lim), len = rand_len(off);
	note("%s punch off %" PRIu64 " len %" PRIu64, m->path, off, len);
	int r = thpfs_fallocate(m->f, PUNCH_MODE, (off_t)off, (off_t)len);
	MCHECK(r == 0, "%s: punch(%" PRIu64 ", %" PRIu64 ") = %d", m->path, off, len, r);
	remove_range(m, off, off + len);
	compare_range(m, off > PG ? off - PG : 0, off + len + PG);
}

static void op_zero(struct mfile *m)
{
	uint64_t off, len;
	rand_fill_range(m, &off, &len);
	bool keep = rnd(2);
	note("%s zero-range%s off %" PRIu64 " len %" PRIu64, m->path, keep ? " keep" : "", off, len);
	int r = thpfs_fallocate(m->f, THPFS_FALLOC_ZERO_RANGE | (keep ? THPFS_FALLOC_KEEP_SIZE : 0),
				(off_t)off, (off_t)len);
	MCHECK(r == 0 || (cur->budget && r == -ENOSPC), "%s: zero-range(%" PRIu64 ", %" PRIu64
	       ") = %d", m->path, off, len, r);
	if (r) { /* nothing changed */
		note("%s zero-range%s off %" PRIu64 " len %" PRIu64 " = %d", m->path,
		     keep ? " keep" : "", off, len, r);
		compare_range(m, off > PG ? off - PG : 0, off + len + PG);
		return;
	}
	memset(m->data + off, 0, len);
	if (!keep && off + len > m->size)
		m->size = off + len;
	/* allocated now; a data page keeping non-zero bytes stays data, for
	 * the rest SEEK_DATA may say either */
	for (uint64_t pg = page_of(off); pg < pages_up(off + len); pg++) {
		m->alloc[pg] = A_ALLOC;
		if (m->seek[pg] != S_DATA || model_zero(m, pg * PG, (pg + 1) * PG))
			m->seek[pg] = S_ANY;
	}
	compare_range(m, off > PG ? off - PG : 0, off + len + PG);
}

static void op_fallocate(struct mfile *m)
{
	uint64_t off, len;
	rand_fill_range(m, &off, &len);
	bool keep = rnd(2);
	note("%s fallocate%s off %" PRIu64 " len %" PRIu64, m->path, keep ? " keep" : "", off, len);
	int r = thpfs_fallocate(m->f, keep ? THPFS_FALLOC_KEEP_SIZE : 0, (off_t)off, (off_t)len);
	MCHECK(r == 0 || (cur->budget && r == -ENOSPC), "%s: fallocate(%" PRIu64 ", %" PRIu64
	       ") = %d", m->path, off, len, r);
	if (r) { /* nothing changed */
		note("%s fallocate%s off %" PRIu64 " len %" PRIu64 " = %d", m->path,
		     keep ? " keep" : "", off, len, r);
		compare_range(m, off > PG ? off - PG : 0, off + len + PG);
		return;
	}
	if (!keep && off + len > m->size)
		m->size = off + len;
	for (uint64_t pg = page_of(off); pg < pages_up(off + len); pg++) {
		if (m->alloc[pg] == A_PENDING || m->alloc[pg] == A_MAYBE || m->alloc[pg] == A_LAZY)
			m->seek[pg] = S_ANY;
		m->alloc[pg] = A_ALLOC;
	}
	compare_range(m, off > PG ? off - PG : 0, off + len + PG);
}

static void op_truncate(struct mfile *m)
{
	uint64_t size;
	switch (rnd(4)) {
	case 0:
		size = m->size / 2;
		break;
	case 1:
		size = rnd(m->size + 1);
		break;
	case 2:
		size = umin(cur->lim, m->size + rnd(2 * MIB));
		break;
	default:
		size = rand_off(cur->lim);
		break;
	}
	note("%s ftruncate %" PRIu64 " (from %" PRIu64 ")", m->path, size, m->size);
	int r = thpfs_ftruncate(m->f, (off_t)size);
	MCHECK(r == 0, "%s: ftruncate(%" PRIu64 ") = %d", m->path, size, r);
	/* Linux (shmem_setattr): a size at or below the old one drops
	 * everything past it, fallocated pages beyond EOF included; growing
	 * drops nothing. */
	if (size <= m->size) {
		memset(m->data + size, 0, MAXSZ - size);
		for (uint64_t pg = pages_up(size); pg < NPAGES; pg++)
			page_drop(m, pg);
	}
	m->size = size;
	compare_range(m, size > 2 * PG ? size - 2 * PG : 0, size);
}

static void op_seek(struct mfile *m)
{
	uint64_t off = m->size && rnd(8) ? rnd(m->size) : rand_off(cur->lim);
	note("%s seek data/hole from %" PRIu64 " (size %" PRIu64 ")", m->path, off, m->size);
	check_seek(m, off);
}

static void op_map(struct mfile *m)
{
	if (m->npins == MAXPINS)
		return;
	uint64_t off = m->size && rnd(6) ? rnd(m->size) : rand_off(cur->lim);
	void *addr = NULL;
	size_t len = 0;
	note("%s map off %" PRIu64 " (size %" PRIu64 ")", m->path, off, m->size);
	int r = thpfs_map(m->f, (off_t)off, &addr, &len);
	if (off >= m->size) {
		MCHECK(r == -ENXIO, "%s: map(%" PRIu64 ") past EOF %" PRIu64 " = %d", m->path, off,
		       m->size, r);
		return;
	}
	MCHECK(r == 0 || (cur->budget && r == -ENOSPC), "%s: map(%" PRIu64 ") = %d", m->path, off,
	       r);
	if (r) {
		note("%s map off %" PRIu64 " (size %" PRIu64 ") = %d", m->path, off, m->size, r);
		return;
	}
	/* valid bytes: at least to the end of the 4 KiB page or EOF, at most
	 * to the end of the 2 MiB chunk */
	MCHECK(len >= umin(PG - off % PG, m->size - off) && len <= HPG - off % HPG,
	       "%s: map(%" PRIu64 ") len %zu (size %" PRIu64 ")", m->path, off, len, m->size);
	m->pins[m->npins++] = (struct pin){ addr, len, off };
	uint64_t pg = page_of(off);
	m->alloc[pg] = A_ALLOC;
	m->seek[pg] = S_DATA;
	/* the mapping shows the file's bytes; write a few through it */
	uint64_t avail = umin((uint64_t)len, m->size - off);
	uint8_t *p = addr;
	MCHECK(!memcmp(p, m->data + off, avail), "%s: bytes at map(%" PRIu64 ") differ from the model",
	       m->path, off);
	uint64_t k = umin(avail, 1 + rnd(100));
	for (uint64_t i = 0; i < k; i++) {
		uint8_t v = (uint8_t)(0x40 + rnd(64));
		p[i] = v;
		m->data[off + i] = v;
	}
	/* those bytes stay within the mapped page */
	for (uint64_t q = pg; q < pages_up(off + k); q++) {
		m->alloc[q] = A_ALLOC;
		m->seek[q] = S_DATA;
	}
	compare_range(m, off > PG ? off - PG : 0, off + k + PG);
}

static void op_unmap(struct mfile *m)
{
	if (!m->npins)
		return;
	int i = (int)rnd((uint64_t)m->npins);
	struct pin pin = m->pins[i];
	note("%s unmap pin at off %" PRIu64, m->path, pin.off);
	int r = thpfs_unmap(m->f, pin.addr);
	MCHECK(r == 0, "%s: unmap(%p) = %d", m->path, pin.addr, r);
	m->pins[i] = m->pins[--m->npins];
	uint64_t chunk = pin.off / HPG;
	if (!chunk_pins(m, chunk))
		chunk_settle(m, chunk);
}

/* thpfs_free_lazy: the range reads zero at once; its whole pages keep their
 * memory until reclaim. */
static void op_lazy(struct mfile *m)
{
	uint64_t off = rand_off(cur->lim), len = rand_len(off);
	note("%s free_lazy off %" PRIu64 " len %" PRIu64, m->path, off, len);
	int r = thpfs_free_lazy(m->f, (off_t)off, (off_t)len);
	MCHECK(r == 0, "%s: free_lazy(%" PRIu64 ", %" PRIu64 ") = %d", m->path, off, len, r);
	memset(m->data + off, 0, umin(len, MAXSZ - off));
	if (pages_up(off) < page_of(off + len))
		m->lazy = true;
	m->lazy_off = off;
	m->lazy_len = umin(len, cur->lim - off);
	for (uint64_t pg = pages_up(off); pg < page_of(off + len); pg++) {
		if (m->alloc[pg] == A_ALLOC) {
			m->alloc[pg] = A_LAZY;
			m->seek[pg] = S_ANY;
		}
	}
	compare_range(m, off > PG ? off - PG : 0, off + len + PG);
}

/* thpfs_reclaim: all it can (0), which takes every lazily freed page outside
 * pinned chunks, or a few pages' worth. */
static void op_reclaim(struct mfile *m)
{
	bool all = rnd(2);
	uint64_t want = all ? 0 : (1 + rnd(64)) * PG;
	note("reclaim %" PRIu64, want);
	int64_t r = thpfs_reclaim(cur->fs, want);
	MCHECK(r >= 0, "thpfs_reclaim(%" PRIu64 ") = %" PRId64, want, r);
	if (all) {
		for (int i = 0; i < NFILES; i++) {
			struct mfile *x = &cur->file[i];
			if (!x->npins)
				x->lazy = false;
			for (uint64_t pg = 0; pg < NPAGES; pg++) {
				if (x->alloc[pg] == A_LAZY && !chunk_pins(x, pg * PG / HPG)) {
					x->alloc[pg] = A_FREE;
					x->seek[pg] = S_HOLE;
				}
			}
		}
	}
	compare_range(m, 0, m->size);
}

static void op_reopen(struct mfile *m)
{
	if (m->npins)
		return;
	note("%s close and reopen", m->path);
	assert_int_equal(thpfs_close(m->f), 0);
	m->f = tl_open(cur->fs, m->path, O_RDWR);
}

static void one_op(void)
{
	struct mfile *m = &cur->file[rnd(NFILES)];
	uint64_t r = rnd(100);
	if (r < 22)
		op_write(m);
	else if (r < 29)
		op_read(m);
	else if (r < 40)
		op_punch(m);
	else if (r < 46)
		op_zero(m);
	else if (r < 54)
		op_fallocate(m);
	else if (r < 60)
		op_truncate(m);
	else if (r < 71)
		op_seek(m);
	else if (r < 78)
		op_map(m);
	else if (r < 85)
		op_unmap(m);
	else if (r < 94)
		op_lazy(m);
	else if (r < 97)
		op_reclaim(m);
	else if (r < 98)
		op_reopen(m);
	else
		note("%s full check", m->path);
	check_blocks(m, false);
	if (cur->budget && !cur->collapse_thread) {
		/* after every operation (the collapse thread may pass size= by
		 * a huge page for a moment: full_check allows for it) */
		_thpfs_release_flush(cur->fs);
		uint64_t held = _thpfs_held_bytes(cur->fs);
		MCHECK(held <= cur->budget, "held %" PRIu64 " > size=%" PRIu64, held, cur->budget);
	}
	if (r >= 98 || cur->op % FULL_EVERY == 0)
		full_check(m);
}

/* Whether file i can only ever get base pages under this mount. */
static bool file_exact(const char *opts, int i)
{
	if (strstr(opts, "huge=never") || i == 1)
		return true;
	return strstr(opts, "huge=advise") && i == 2;
}

/* Frees the model and its mount whatever state a failure left them in. */
static void model_destroy(struct model *md)
{
	if (!md)
		return;
	for (int i = 0; i < NFILES; i++) {
		struct mfile *m = &md->file[i];
		if (m->f) {
			while (m->npins)
				thpfs_unmap(m->f, m->pins[--m->npins].addr);
			thpfs_close(m->f);
		}
		free(m->data);
	}
	if (md->fs)
		thpfs_unmount(md->fs);
	free(md->buf);
	free(md);
}

static int model_teardown(void **state)
{
	(void)state;
	model_destroy(cur);
	cur = NULL;
	return 0;
}

static void run_config(const char *opts, uint64_t seed, uint64_t salt, uint64_t nops)
{
	struct model *md = calloc(1, sizeof(*md));
	assert_non_null(md);
	cur = md;
	md->opts = opts;
	md->seed = seed;
	/* splitmix64 of seed and salt: neighbouring seeds differ */
	uint64_t x = seed + salt * 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	md->rng = (x ^ (x >> 31)) | 1;
	md->collapse_thread = !strstr(opts, "collapse=off");
	const char *sz = strstr(opts, "size=");
	md->budget = sz ? strtoull(sz + 5, NULL, 10) * MIB : 0; /* "size=Nm" only */
	md->lim = md->budget ? umin(MAXSZ, 2 * md->budget) : MAXSZ;
	md->buf = malloc(MAXSZ + PG);
	assert_non_null(md->buf);
	md->fs = tl_mount(opts);
	for (int i = 0; i < NFILES; i++) {
		struct mfile *m = &md->file[i];
		snprintf(m->path, sizeof(m->path), "/file%d", i);
		m->data = calloc(1, MAXSZ);
		assert_non_null(m->data);
		m->f = tl_open(md->fs, m->path, O_RDWR | O_CREAT | O_EXCL);
		m->exact = file_exact(opts, i);
	}
	/* file0 asks for huge pages, file1 refuses them, file2 says nothing */
	assert_int_equal(thpfs_fadvise(md->file[0].f, THPFS_ADV_HUGEPAGE), 0);
	assert_int_equal(thpfs_fadvise(md->file[1].f, THPFS_ADV_NOHUGEPAGE), 0);

	double t0 = tl_now();
	for (md->op = 1; md->op <= nops; md->op++)
		one_op();

	/* drop every pin, then everything must be settled */
	note("unmap everything and check all files");
	for (int i = 0; i < NFILES; i++)
		while (md->file[i].npins)
			op_unmap(&md->file[i]);
	/* the last unmaps settled every punched-while-pinned chunk by
	 * themselves; only lazily freed pages wait for reclaim */
	if (!any_lazy()) {
		uint64_t q = tl_stats(md->fs).deferred_split_queue;
		MCHECK(q == 0, "after the last unmap, before reclaim: deferred_split_queue %" PRIu64, q);
	}
	MCHECK(thpfs_reclaim(md->fs, 0) >= 0, "final thpfs_reclaim failed");
	for (int i = 0; i < NFILES; i++) {
		md->file[i].lazy = false;
		for (uint64_t pg = 0; pg < NPAGES; pg++)
			if (md->file[i].alloc[pg] == A_LAZY)
				md->file[i].alloc[pg] = A_FREE, md->file[i].seek[pg] = S_HOLE;
	}
	for (int i = 0; i < NFILES; i++)
		full_check(&md->file[i]);
	struct thpfs_stats s = tl_stats(md->fs);
	print_message("%s: %" PRIu64 " ops in %.1fs; now huge %" PRIu64 " base %" PRIu64
		      "; events: splits %" PRIu64 " deferred %" PRIu64 " collapsed %" PRIu64
		      " fallback %" PRIu64 "\n",
		      opts, nops, tl_now() - t0, s.huge_frames, s.base_pages, tl_splits(&s),
		      s.thp_deferred_split_page, s.thp_collapse_alloc, s.thp_file_fallback);
	MCHECK(s.deferred_split_queue == 0 && s.pinned_pages == 0,
	       "after the last unmap: deferred_split_queue %" PRIu64 ", pinned_pages %" PRIu64,
	       s.deferred_split_queue, s.pinned_pages);
	for (int i = 0; i < NFILES; i++) {
		struct mfile *m = &md->file[i];
		assert_int_equal(thpfs_close(m->f), 0);
		m->f = NULL;
		assert_int_equal(thpfs_unlink(md->fs, m->path), 0);
	}
	s = tl_stats(md->fs);
	MCHECK(s.shmem_bytes == 0 && s.huge_frames == 0 && s.base_pages == 0 && s.inodes == 1,
	       "after unlinking everything: shmem_bytes %" PRIu64 " huge_frames %" PRIu64
	       " base_pages %" PRIu64 " inodes %" PRIu64,
	       s.shmem_bytes, s.huge_frames, s.base_pages, s.inodes);
	int r = thpfs_unmount(md->fs);
	md->fs = NULL;
	assert_int_equal(r, 0);
}

struct model_config {
	const char *opts;
	uint64_t salt; /* makes each configuration's operations differ */
};

static void test_model(void **state)
{
	const struct model_config *mc = *state;
	const char *opts = mc->opts;
	const char *only = getenv("THPFS_MODEL_ONLY");
	if (only && *only && !strstr(opts, only)) {
		print_message("THPFS_MODEL_ONLY=%s: not running %s\n", only, opts);
		skip();
	}
	if (getenv("THPFS_MODEL_MAPPED_ONLY")) /* for seed loops over mapped files */
		skip();
	static uint64_t seed;
	if (!seed)
		seed = tl_seed("test_model");
	/* the small size= mounts are cheap (small files) and where reclaim
	 * runs: three times the operations */
	uint64_t nops = tl_env_u64("THPFS_MODEL_OPS", 2000);
	run_config(opts, seed, mc->salt, strstr(opts, "size=") ? 3 * nops : nops);
}

/* "split=native" is the default split mode; it is spelled out so that
 * THPFS_MODEL_ONLY=split=native picks it. */
static const struct model_config configs[] = {
	{ "huge=never,split=native,scan_sleep_ms=5", 8 },
	{ "huge=never,split=migrate,scan_sleep_ms=5", 0 },
	{ "huge=never,split=inplace,scan_sleep_ms=5,max_ptes_none=128", 1 },
	{ "huge=always,split=native,scan_sleep_ms=5", 9 },
	{ "huge=always,split=native,scan_sleep_ms=5,max_ptes_none=128", 10 },
	{ "huge=always,split=migrate,scan_sleep_ms=5", 2 },
	{ "huge=always,split=inplace,scan_sleep_ms=5,max_ptes_none=128", 3 },
	{ "huge=within_size,split=native,scan_sleep_ms=5,max_ptes_none=64", 11 },
	{ "huge=within_size,split=migrate,scan_sleep_ms=5,max_ptes_none=64", 4 },
	{ "huge=within_size,split=inplace,scan_sleep_ms=5", 5 },
	{ "huge=advise,split=native,scan_sleep_ms=5", 12 },
	{ "huge=advise,split=migrate,scan_sleep_ms=5", 6 },
	{ "huge=advise,split=inplace,scan_sleep_ms=5,max_ptes_none=511", 7 },
	/* small size= mounts: the budget and reclaim in every operation */
	{ "huge=never,collapse=off,size=1m", 13 },
	{ "huge=never,scan_sleep_ms=5,size=2m", 14 },
	{ "huge=always,collapse=off,split=native,size=4m", 15 },
	{ "huge=always,split=native,scan_sleep_ms=5,size=4m", 16 },
	{ "huge=always,collapse=off,split=migrate,size=3m", 17 },
	{ "huge=always,split=inplace,scan_sleep_ms=5,max_ptes_none=128,size=4m", 18 },
	{ "huge=within_size,split=native,scan_sleep_ms=5,size=4m", 19 },
};

#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

/* ---- Mapped files (thpfs_mmap) ----
 * One file of MAP_SZ bytes mapped whole; random stores through the mapping,
 * pwrite, pread, punch, free_lazy, ZERO_RANGE, reclaim, collapse, growing
 * and shrinking past the mapping, and unmap + map again, all checked against
 * a byte model: the mapping and pread must both read what the model holds.
 * Kept apart from the model above (its own state, its own configurations).
 */
#include <sys/mman.h>
#define MAP_SZ (8 * MIB)
static uint8_t *cur_mbuf; /* scratch for pwrite */
static inline uint64_t thpfs_max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

struct mmodel {
	bool lock; /* the view is mlocked (on fault), as with QEMU's mem-lock=on */
	struct thpfs *fs;
	struct thpfs_file *f;
	char *view;
	uint8_t *data; /* model of the file's first 2 * MAP_SZ bytes */
	uint64_t size;
	uint64_t rng;
};

static uint64_t mrnd(struct mmodel *mm, uint64_t n)
{
	return tl_rand_below(&mm->rng, n);
}

static void mcheck_all(struct mmodel *mm, uint64_t op, const char *what)
{
	static uint8_t buf[MAP_SZ];
	for (uint64_t i = 0; i < MAP_SZ; i++)
		if ((uint8_t)mm->view[i] != mm->data[i])
			fail_msg("op %" PRIu64 " (%s): view byte %" PRIu64 " is %#x, model %#x", op,
				 what, i, (uint8_t)mm->view[i], mm->data[i]);
	assert_int_equal(thpfs_pread(mm->f, buf, MAP_SZ, 0), MAP_SZ);
	for (uint64_t i = 0; i < MAP_SZ; i++)
		if (buf[i] != mm->data[i])
			fail_msg("op %" PRIu64 " (%s): pread byte %" PRIu64 " is %#x, model %#x", op,
				 what, i, buf[i], mm->data[i]);
	struct stat st;
	assert_int_equal(thpfs_fstat(mm->f, &st), 0);
	assert_int_equal((uint64_t)st.st_size, mm->size);
	assert_true((uint64_t)st.st_blocks * 512 <= thpfs_max_u64(mm->size, MAP_SZ) + 2 * MIB);
}

static void mmodel_op(struct mmodel *mm, uint64_t op)
{
	uint64_t off = mrnd(mm, MAP_SZ), len = 1 + mrnd(mm, mrnd(mm, 4) ? 3 * PG : 3 * MIB);
	if (off + len > MAP_SZ)
		len = MAP_SZ - off;
	uint8_t v = (uint8_t)(1 + mrnd(mm, 255));
	const char *what = "";
	switch (mrnd(mm, 11)) {
	case 0: case 1: case 2: /* a guest store */
		what = "store";
		memset(mm->view + off, v, len);
		memset(mm->data + off, v, len);
		break;
	case 3:
		what = "pwrite";
		memset(cur_mbuf, v, len);
		assert_int_equal(thpfs_pwrite(mm->f, cur_mbuf, len, (off_t)off), (ssize_t)len);
		memset(mm->data + off, v, len);
		break;
	case 4: case 5:
		what = "punch";
		assert_int_equal(thpfs_fallocate(mm->f, PUNCH_MODE, (off_t)off, (off_t)len), 0);
		memset(mm->data + off, 0, len);
		break;
	case 6:
		what = "free_lazy";
		assert_int_equal(thpfs_free_lazy(mm->f, (off_t)off, (off_t)len), 0);
		memset(mm->data + off, 0, len);
		break;
	case 7:
		what = "zero_range";
		assert_int_equal(thpfs_fallocate(mm->f, THPFS_FALLOC_ZERO_RANGE | THPFS_FALLOC_KEEP_SIZE,
						 (off_t)off, (off_t)len), 0);
		memset(mm->data + off, 0, len);
		break;
	case 8:
		what = mrnd(mm, 2) ? "reclaim" : "collapse";
		if (what[0] == 'r')
			assert_true(thpfs_reclaim(mm->fs, 0) >= 0);
		else
			assert_true(thpfs_collapse(mm->f, 0, (off_t)MAP_SZ) >= 0);
		break;
	case 9: { /* grow, or shrink: never below the mapping */
		uint64_t size = MAP_SZ + mrnd(mm, MAP_SZ);
		what = "truncate";
		assert_int_equal(thpfs_ftruncate(mm->f, (off_t)(MAP_SZ - 1 - mrnd(mm, 100))), -EBUSY);
		assert_int_equal(thpfs_ftruncate(mm->f, (off_t)size), 0);
		if (size < mm->size)
			memset(mm->data + size, 0, mm->size - size);
		mm->size = size;
		break;
	}
	default:
		what = "remap";
		assert_int_equal(thpfs_munmap(mm->f, mm->view, MAP_SZ), 0);
		void *a = NULL;
		assert_int_equal(thpfs_mmap(mm->f, 0, MAP_SZ, &a), 0);
		mm->view = a;
		if (mm->lock)
			assert_int_equal(mlock2(mm->view, MAP_SZ, MLOCK_ONFAULT), 0);
		break;
	}
	if (getenv("THPFS_MODEL_TRACE")) /* to reduce a failing seed */
		fprintf(stderr, "op %" PRIu64 " %s off %" PRIu64 " len %" PRIu64 " v %#x\n", op, what,
			off, len, v);
	if (op % 25 == 0 || !strcmp(what, "remap"))
		mcheck_all(mm, op, what);
}

struct mapped_config {
	const char *opts;
	bool lock;
};

static void test_model_mapped(void **state)
{
	const struct mapped_config *mc = *state;
	const char *opts = mc->opts;
	const char *only = getenv("THPFS_MODEL_ONLY");
	if (only && *only && !strstr(opts, only))
		skip();
	struct mmodel mm = { .lock = mc->lock };
	mm.rng = tl_seed("test_model_mapped") | 1;
	mm.data = calloc(1, 2 * MAP_SZ);
	cur_mbuf = malloc(MAP_SZ);
	assert_non_null(mm.data);
	assert_non_null(cur_mbuf);
	mm.fs = tl_mount(opts);
	mm.f = tl_open(mm.fs, "/ram", O_RDWR | O_CREAT);
	/* some data before the mapping exists: it moves in */
	memset(mm.data + 3 * MIB, 0x5a, 300 * KIB);
	assert_int_equal(thpfs_pwrite(mm.f, mm.data + 3 * MIB, 300 * KIB, (off_t)(3 * MIB)),
			 (ssize_t)(300 * KIB));
	assert_int_equal(thpfs_ftruncate(mm.f, (off_t)MAP_SZ), 0);
	mm.size = MAP_SZ;
	void *a = NULL;
	assert_int_equal(thpfs_mmap(mm.f, 0, MAP_SZ, &a), 0);
	mm.view = a;
	if (mm.lock)
		assert_int_equal(mlock2(mm.view, MAP_SZ, MLOCK_ONFAULT), 0);
	uint64_t nops = tl_env_u64("THPFS_MODEL_OPS", 2000) / 2;
	for (uint64_t op = 1; op <= nops; op++)
		mmodel_op(&mm, op);
	mcheck_all(&mm, nops, "end");
	assert_int_equal(thpfs_munmap(mm.f, mm.view, MAP_SZ), 0);
	static uint8_t buf[MAP_SZ];
	assert_int_equal(thpfs_pread(mm.f, buf, MAP_SZ, 0), MAP_SZ);
	assert_memory_equal(buf, mm.data, MAP_SZ);
	struct thpfs_stats s = tl_stats(mm.fs);
	print_message("%s%s mapped: %" PRIu64 " ops; huge %" PRIu64 " base %" PRIu64
		      "; splits %" PRIu64 " collapsed %" PRIu64 " faulted-in pages %" PRIu64 "\n",
		      opts, mm.lock ? " (mlocked)" : "", nops, s.huge_frames, s.base_pages, tl_splits(&s),
		      s.thp_collapse_alloc, s.mmap_faulted_pages);
	tl_close(mm.f);
	assert_int_equal(thpfs_unlink(mm.fs, "/ram"), 0);
	s = tl_stats(mm.fs);
	assert_int_equal(s.shmem_bytes, 0);
	tl_unmount(mm.fs);
	free(mm.data);
	free(cur_mbuf);
	cur_mbuf = NULL;
}

static const struct mapped_config mapped_configs[] = {
	{ "huge=always,scan_sleep_ms=5", false },
	{ "huge=always,split=migrate,collapse=off", false },
	{ "huge=never,scan_sleep_ms=5", false },
	{ "huge=within_size,scan_sleep_ms=5,max_ptes_none=511", false },
	{ "huge=always,scan_sleep_ms=5", true },
};

int main(void)
{
	enum { NMAPPED = sizeof(mapped_configs) / sizeof(mapped_configs[0]) };
	struct CMUnitTest tests[NCONFIGS + NMAPPED];
	for (size_t i = 0; i < NCONFIGS; i++)
		tests[i] = (struct CMUnitTest){ .name = configs[i].opts,
						.test_func = test_model,
						.teardown_func = model_teardown,
						.initial_state = (void *)&configs[i] };
	for (size_t i = 0; i < NMAPPED; i++)
		tests[NCONFIGS + i] = (struct CMUnitTest){ .name = mapped_configs[i].opts,
							   .test_func = test_model_mapped,
							   .initial_state = (void *)&mapped_configs[i] };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
