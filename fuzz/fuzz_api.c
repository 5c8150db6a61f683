/*
 * fuzz_api.c - libFuzzer target: the public API as a hostile caller uses it,
 * checked against a model.
 *
 * The input is decoded into mount options (a small size=, every huge= and
 * split= mode, the collapse thread on or off, max_ptes_none, nr_inodes) and
 * then a sequence of calls on that mount:
 *   - namespace: open/create, unlink, rename (every flag), link, symlink,
 *     readlink, mkdir, rmdir, stat, readdir, on paths built from a few short
 *     names, garbage bytes, 255/256-byte names, "", "//", ".", "..",
 *     "/./", missing leading '/', trailing slashes, paths of 4095/4096 bytes;
 *   - data: pread/pwrite, read/write at the file position, ftruncate,
 *     fallocate in every mode (also invalid ones), lseek with every whence
 *     (SEEK_DATA/SEEK_HOLE too), thpfs_map/map_existing/unmap,
 *     thpfs_free_lazy, thpfs_collapse, thpfs_reclaim, fadvise, fstat,
 *     on offsets and lengths a caller should not pass: negative, near
 *     THPFS_MAX_FILE_SIZE, off+len overflowing, near 2 MiB boundaries;
 *   - closed (stale) handles, which must give -EBADF;
 *   - with the second opcode table (bit 7 of the second byte; inputs
 *     without it decode as before): thpfs_mmap/munmap with stores and loads
 *     through the view, thpfs_pread_direct, thpfs_mknod(_at), and the
 *     xattr calls by path and by inode, POSIX ACLs valid and broken.
 *
 * The model holds the namespace (a tree of names, inodes with link counts)
 * and each regular file's bytes and size (sparse 4 KiB pages).  It predicts
 * whether each call succeeds; a failure must be a negative errno and change
 * nothing the model can see.  Every read is compared with the model's bytes,
 * every fstat with its size, and every few calls (and at the end) the whole
 * tree is compared with readdir_ino/getattr and every file's data with the
 * model (its model pages and every extent SEEK_DATA finds).  A mismatch
 * aborts with a message, so libFuzzer keeps the input.
 *
 * Built with -DTHPFS_DEBUG, so the library checks its chunk invariants too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

#include "thpfs.h"

#define PG 4096ULL
#define HPG (2ULL << 20)
#define MAXF ((int64_t)THPFS_MAX_FILE_SIZE)
#define IO_MAX (1024 * 1024)   /* largest read/write buffer */
#define MODEL_PAGES_MAX 8192   /* model bytes kept at most (32 MiB) */
#define MAX_OPS 400
#define NHANDLES 8
#define NSTALE 8
#define NPINS 8
#define VERIFY_EVERY 32

/* ---- input ---- */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t in_bytes(struct in *in, unsigned k)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < k; i++) {
		v <<= 8;
		if (in->n) {
			v |= *in->p++;
			in->n--;
		}
	}
	return v;
}
#define U8(in) ((unsigned)in_bytes(in, 1))
#define U16(in) ((unsigned)in_bytes(in, 2))
#define U32(in) ((uint32_t)in_bytes(in, 4))
#define U64(in) (in_bytes(in, 8))

/* ---- failing ---- */

static char trace[64][200];
static unsigned nops;
static int trace_all = -1; /* FUZZ_TRACE=1: print every call as it is made */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(trace[nops % 64], sizeof(trace[0]), fmt, ap);
	va_end(ap);
	if (trace_all < 0)
		trace_all = getenv("FUZZ_TRACE") && *getenv("FUZZ_TRACE") == '1';
	if (trace_all)
		fprintf(stderr, "fuzz_api: #%u %s\n", nops, trace[nops % 64]);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "fuzz_api: model mismatch after op %u: ", nops);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nlast operations:\n");
	for (unsigned i = nops >= 63 ? nops - 63 : 0; i <= nops; i++)
		if (trace[i % 64][0])
			fprintf(stderr, "  #%u %s\n", i, trace[i % 64]);
	abort();
}

#define CHECK(cond, ...)              \
	do {                          \
		if (!(cond))          \
			die(__VA_ARGS__); \
	} while (0)

/* A failed call returns a negative errno. */
static void check_errno(int64_t r, const char *what)
{
	CHECK(r >= -4095, "%s returned %" PRId64 ", not a negative errno", what, r);
}

/* ---- the model: bytes of a file ---- */

struct mpage {
	uint64_t idx;
	uint8_t *data;
};

enum { M_REG, M_DIR, M_LNK, M_SPEC };

/* An extended attribute the model expects on an inode (sorted by name). */
struct mxattr {
	char *name;
	uint8_t *val;
	size_t size;
	struct mxattr *next;
};

struct mnode;
struct mdent {
	char *name;
	struct mnode *node;
	struct mdent *next;
};

struct mnode {
	int type;
	uint64_t ino;
	unsigned nlink;   /* names (files); 2 + subdirectories (dirs) */
	unsigned opens;
	bool removed;     /* directory rmdir'ed or renamed over */
	/* M_REG */
	uint64_t size;
	struct mpage *pages;
	size_t npages, cap;
	/* M_DIR */
	struct mdent *children;
	struct mnode *parent;
	/* M_LNK */
	char *target;
	/* M_SPEC: S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK, and its rdev */
	mode_t smode;
	dev_t rdev;
	/* every type */
	struct mxattr *xattrs;
	/* M_REG: its thpfs_mmap view (map_len 0: none); counts in opens */
	uint8_t *map_addr;
	uint64_t map_off, map_len;
	struct mnode *next_all;
};

static struct mnode *all_nodes;
static size_t model_pages;

static struct mpage *page_find(struct mnode *n, uint64_t idx)
{
	size_t lo = 0, hi = n->npages;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (n->pages[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n->npages && n->pages[lo].idx == idx ? &n->pages[lo] : NULL;
}

static size_t page_slot(struct mnode *n, uint64_t idx)
{
	size_t lo = 0, hi = n->npages;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (n->pages[mid].idx < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct mpage *page_get(struct mnode *n, uint64_t idx)
{
	struct mpage *p = page_find(n, idx);
	if (p)
		return p;
	if (n->npages == n->cap) {
		n->cap = n->cap ? 2 * n->cap : 16;
		n->pages = realloc(n->pages, n->cap * sizeof(*n->pages));
		if (!n->pages)
			abort();
	}
	size_t s = page_slot(n, idx);
	memmove(&n->pages[s + 1], &n->pages[s], (n->npages - s) * sizeof(*n->pages));
	n->pages[s].idx = idx;
	n->pages[s].data = calloc(1, PG);
	if (!n->pages[s].data)
		abort();
	n->npages++;
	model_pages++;
	return &n->pages[s];
}

static void model_read(struct mnode *n, uint64_t off, uint64_t len, uint8_t *out)
{
	memset(out, 0, len);
	for (uint64_t done = 0; done < len;) {
		uint64_t pos = off + done, in = pos % PG, k = PG - in;
		if (k > len - done)
			k = len - done;
		struct mpage *p = page_find(n, pos / PG);
		if (p)
			memcpy(out + done, p->data + in, k);
		done += k;
	}
}

static void model_write(struct mnode *n, uint64_t off, const uint8_t *buf, uint64_t len)
{
	for (uint64_t done = 0; done < len;) {
		uint64_t pos = off + done, in = pos % PG, k = PG - in;
		if (k > len - done)
			k = len - done;
		memcpy(page_get(n, pos / PG)->data + in, buf + done, k);
		done += k;
	}
}

/* Zeroes [off, end) (end may be UINT64_MAX) in the model; drops whole pages. */
static void model_zero(struct mnode *n, uint64_t off, uint64_t end)
{
	size_t w = 0;
	for (size_t i = 0; i < n->npages; i++) {
		struct mpage *p = &n->pages[i];
		uint64_t ps = p->idx * PG, pe = ps + PG;
		if (pe <= off || ps >= end) {
			n->pages[w++] = *p;
			continue;
		}
		if (ps >= off && pe <= end) {
			free(p->data);
			model_pages--;
			continue;
		}
		uint64_t a = off > ps ? off - ps : 0, b = end < pe ? end - ps : PG;
		memset(p->data + a, 0, b - a);
		n->pages[w++] = *p;
	}
	n->npages = w;
}

static void model_set_size(struct mnode *n, uint64_t size)
{
	if (size < n->size)
		model_zero(n, size, UINT64_MAX);
	n->size = size;
}

/* ---- the model: names ---- */

static struct mnode *root;

static struct mnode *node_new(int type)
{
	struct mnode *n = calloc(1, sizeof(*n));
	if (!n)
		abort();
	n->type = type;
	n->nlink = type == M_DIR ? 2 : 1;
	n->next_all = all_nodes;
	all_nodes = n;
	return n;
}

static struct mdent *d_find(struct mnode *dir, const char *name, size_t len)
{
	for (struct mdent *d = dir->children; d; d = d->next)
		if (strlen(d->name) == len && !memcmp(d->name, name, len))
			return d;
	return NULL;
}

static void d_add(struct mnode *dir, const char *name, size_t len, struct mnode *n)
{
	struct mdent *d = calloc(1, sizeof(*d));
	if (!d)
		abort();
	d->name = strndup(name, len);
	d->node = n;
	d->next = dir->children;
	dir->children = d;
}

static void d_del(struct mnode *dir, struct mdent *victim)
{
	for (struct mdent **pp = &dir->children; *pp; pp = &(*pp)->next) {
		if (*pp == victim) {
			*pp = victim->next;
			free(victim->name);
			free(victim);
			return;
		}
	}
	abort();
}

/* A name of n went away (unlink, rmdir, rename over it). */
static void drop_link(struct mnode *dir, struct mnode *n)
{
	if (n->type == M_DIR) {
		n->nlink = 0;
		n->removed = true;
		dir->nlink--;
	} else {
		n->nlink--;
	}
}

/* Like the library's walk: what a path names, or the errno it gives. */
enum { N_NORMAL, N_ROOT, N_DOT, N_DOTDOT };
struct mnd {
	struct mnode *dir;
	const char *name;
	size_t len;
	int type;
	bool slash;
};

static int classify(const char *s, size_t len)
{
	if (len == 1 && s[0] == '.')
		return N_DOT;
	if (len == 2 && s[0] == '.' && s[1] == '.')
		return N_DOTDOT;
	return N_NORMAL;
}

static int m_walk(const char *path, struct mnd *nd)
{
	struct mnode *dir = root;
	const char *p = path;

	if (strnlen(path, THPFS_PATH_MAX) >= THPFS_PATH_MAX)
		return -ENAMETOOLONG;
	if (!*path)
		return -ENOENT;
	if (*path != '/')
		return -EINVAL;
	memset(nd, 0, sizeof(*nd));
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p) {
			nd->dir = dir;
			nd->type = N_ROOT;
			nd->slash = true;
			return 0;
		}
		const char *s = p, *e = strchrnul(s, '/');
		size_t len = (size_t)(e - s);
		p = e;
		while (*p == '/')
			p++;
		if (len > THPFS_NAME_MAX)
			return -ENAMETOOLONG;
		if (!*p) {
			nd->dir = dir;
			nd->name = s;
			nd->len = len;
			nd->type = classify(s, len);
			nd->slash = *e == '/';
			return 0;
		}
		switch (classify(s, len)) {
		case N_DOT:
			break;
		case N_DOTDOT:
			dir = dir->parent;
			break;
		default: {
			struct mdent *d = d_find(dir, s, len);
			if (!d)
				return -ENOENT;
			if (d->node->type != M_DIR)
				return -ENOTDIR;
			dir = d->node;
		}
		}
	}
}

static int m_target(const struct mnd *nd, struct mnode **out)
{
	struct mnode *n;
	switch (nd->type) {
	case N_ROOT:
	case N_DOT:
		n = nd->dir;
		break;
	case N_DOTDOT:
		n = nd->dir->parent;
		break;
	default: {
		struct mdent *d = d_find(nd->dir, nd->name, nd->len);
		if (!d)
			return -ENOENT;
		n = d->node;
	}
	}
	if (nd->slash && n->type != M_DIR)
		return -ENOTDIR;
	*out = n;
	return 0;
}

static int m_lookup(const char *path, struct mnode **out)
{
	struct mnd nd;
	int r = m_walk(path, &nd);
	return r ? r : m_target(&nd, out);
}

static int m_may_create(const struct mnd *nd)
{
	if (nd->type != N_NORMAL)
		return -EEXIST;
	if (d_find(nd->dir, nd->name, nd->len))
		return -EEXIST;
	return 0;
}

static bool in_subtree(struct mnode *dir, struct mnode *anc)
{
	for (;;) {
		if (dir == anc)
			return true;
		if (dir == root)
			return false;
		dir = dir->parent;
	}
}

/* ---- the model: extended attributes ---- */

static struct mxattr *mx_find(struct mnode *n, const char *name)
{
	for (struct mxattr *x = n->xattrs; x; x = x->next)
		if (!strcmp(x->name, name))
			return x;
	return NULL;
}

static void mx_remove(struct mnode *n, const char *name)
{
	for (struct mxattr **pp = &n->xattrs; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->name, name)) {
			struct mxattr *x = *pp;
			*pp = x->next;
			free(x->name);
			free(x->val);
			free(x);
			return;
		}
	}
}

/* Sets name = value (size bytes) in the model, keeping the list sorted. */
static void mx_set(struct mnode *n, const char *name, const void *val, size_t size)
{
	mx_remove(n, name);
	struct mxattr *x = calloc(1, sizeof(*x));
	if (!x || !(x->name = strdup(name)) || !(x->val = malloc(size ? size : 1)))
		abort();
	if (size)
		memcpy(x->val, val, size);
	x->size = size;
	struct mxattr **pp = &n->xattrs;
	while (*pp && strcmp((*pp)->name, name) < 0)
		pp = &(*pp)->next;
	x->next = *pp;
	*pp = x;
}

static void mx_free_all(struct mnode *n)
{
	while (n->xattrs)
		mx_remove(n, n->xattrs->name);
}

/* ---- fuzz state ---- */

struct pin {
	void *addr;
	size_t len;
	uint64_t off;
};

struct handle {
	struct thpfs_file *f;
	struct mnode *node;
	int flags;
	int64_t pos;
	struct pin pins[NPINS];
	int npins;
};

static struct thpfs *fs;
static struct handle handles[NHANDLES];
static struct thpfs_file *stale[NSTALE];
static unsigned nstale;
static uint8_t iobuf[IO_MAX], modelbuf[IO_MAX];
static char pathbuf[3][THPFS_PATH_MAX + 64];
static bool fs_full_ok; /* size= can refuse memory at any time */
static bool v2;         /* the second mount byte's bit 7: the opcode table
			 * with mmap, mknod, xattrs, pread_direct (inputs
			 * without it decode as before those calls existed) */
static bool ispace_limit; /* nr_inodes= set: xattrs may get -ENOSPC */

static void inherit_acls(struct mnode *dir, struct mnode *n);
static int direct_actor(void *ctx, const void *data, size_t len);

static bool is_open_handle(struct thpfs_file *f)
{
	for (int i = 0; i < NHANDLES; i++)
		if (handles[i].f == f)
			return true;
	return false;
}

/* ---- inputs for calls ---- */

static const char *const short_names[] = { "a", "b", "c", "dd", ".", "..", "" };

/* A path for the namespace calls, built from the input. */
static const char *gen_path(struct in *in, int which)
{
	char *b = pathbuf[which];
	size_t n = 0, cap = THPFS_PATH_MAX + 32;
	unsigned kind = U8(in);

	switch (kind % 16) {
	case 0:
		return "";
	case 1:
		return "/";
	case 2:
		return "//";
	case 3:
		return "..";
	case 4: /* no leading slash */
		snprintf(b, cap, "%s", short_names[U8(in) % 4]);
		return b;
	case 5: { /* 4095 or 4096 bytes: the limit of a path */
		size_t len = THPFS_PATH_MAX - 1 + (U8(in) & 1);
		memset(b, '/', len);
		for (size_t i = 1; i < len; i += 2)
			b[i] = '.';
		b[len - 1] = 'a';
		b[len] = 0;
		return b;
	}
	default:
		break;
	}
	unsigned ncomp = 1 + U8(in) % 4;
	for (unsigned c = 0; c < ncomp && n + 300 < cap; c++) {
		unsigned sel = U8(in);
		b[n++] = '/';
		if (sel & 0x80)
			b[n++] = '/'; /* "//" */
		switch (sel % 16) {
		case 10: /* garbage bytes, no '/' and no NUL */
		{
			unsigned len = 1 + U8(in) % 12;
			for (unsigned i = 0; i < len; i++) {
				uint8_t ch = (uint8_t)U8(in);
				b[n++] = (ch == '/' || ch == 0) ? 'g' : (char)ch;
			}
			break;
		}
		case 11: /* 255 or 256 bytes */
		{
			unsigned len = THPFS_NAME_MAX + (U8(in) & 1);
			memset(b + n, 'x', len);
			n += len;
			break;
		}
		case 12:
			b[n++] = '.';
			break;
		case 13:
			b[n++] = '.';
			b[n++] = '.';
			break;
		default:
			n += (size_t)sprintf(b + n, "%s", short_names[sel % 4]);
			break;
		}
	}
	if (kind & 0x40)
		b[n++] = '/'; /* trailing slash */
	if (kind & 0x20) {
		b[n++] = '/'; /* trailing slash */
		b[n++] = '.';
	}
	b[n] = 0;
	return b;
}

/* An offset: small, near a huge-page boundary, near EOF, near the largest
 * file size, negative or past everything. */
static int64_t gen_off(struct in *in, uint64_t size)
{
	unsigned sel = U8(in);
	switch (sel % 10) {
	case 0:
	case 1:
		return U16(in);
	case 2:
		return U32(in) & (8 * HPG - 1);
	case 3:
		return (int64_t)((U8(in) % 5) * HPG) + (int16_t)U16(in);
	case 4:
		return (int64_t)size + (int16_t)U16(in);
	case 5:
		return MAXF - (int64_t)(U16(in) % 8192) + (int64_t)(sel >> 7);
	case 6:
		return -(int64_t)U16(in) - 1;
	case 7:
		return INT64_MAX - U16(in);
	case 8:
		return (int64_t)(U8(in) * PG);
	default:
		return (int64_t)U64(in);
	}
}

/* A length for the range calls (fallocate, free_lazy, collapse). */
static int64_t gen_len(struct in *in)
{
	unsigned sel = U8(in);
	switch (sel % 8) {
	case 0:
	case 1:
		return U16(in);
	case 2:
		return (int64_t)(1 + U8(in) % 8) * (int64_t)PG;
	case 3:
		return (int64_t)(U8(in) % 5) * (int64_t)HPG + (int16_t)U16(in);
	case 4:
		return MAXF - (int64_t)U16(in);
	case 5:
		return INT64_MAX - U16(in);
	case 6:
		return -(int64_t)U16(in);
	default:
		return (int64_t)U64(in);
	}
}

static size_t gen_iolen(struct in *in)
{
	unsigned sel = U8(in);
	switch (sel % 8) {
	case 0:
	case 4:
		return U8(in);
	case 1:
	case 5:
		return U16(in);
	case 2:
	case 6:
		return PG * (U8(in) % 17);
	case 7: /* up to 1 MiB: fills a small size= in a few calls */
		return PG * (U8(in) % 257) + U8(in) % 2;
	default:
		return U16(in) % 300;
	}
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed + i * 7 + (i >> 12));
	if (len && seed & 1)
		buf[0] = 0; /* zero bytes are data too */
}

/* ---- checks against the thpfs state ---- */

static void check_range(struct handle *h, int64_t off, uint64_t len, const char *why)
{
	struct mnode *n = h->node;
	if (off < 0)
		off = 0;
	if (len > IO_MAX)
		len = IO_MAX;
	if ((uint64_t)off >= n->size)
		return;
	if (len > n->size - (uint64_t)off)
		len = n->size - (uint64_t)off;
	struct thpfs_file *f = h->f;
	struct thpfs_file *tmp = NULL;
	if ((h->flags & O_ACCMODE) == O_WRONLY) {
		CHECK(thpfs_open_ino(fs, n->ino, O_RDONLY, &tmp) == 0, "open_ino %" PRIu64, n->ino);
		f = tmp;
	}
	ssize_t r = thpfs_pread(f, iobuf, len, off);
	CHECK(r == (ssize_t)len, "%s: pread(%" PRId64 ", %" PRIu64 ") of ino %" PRIu64
	      " size %" PRIu64 " = %zd", why, off, len, n->ino, n->size, r);
	model_read(n, (uint64_t)off, len, modelbuf);
	for (uint64_t i = 0; i < len; i++)
		CHECK(iobuf[i] == modelbuf[i], "%s: ino %" PRIu64 " byte %" PRIu64 " is %#x, model %#x",
		      why, n->ino, (uint64_t)off + i, iobuf[i], modelbuf[i]);
	if (tmp)
		CHECK(thpfs_close(tmp) == 0, "close");
}

static void check_size(struct handle *h, const char *why)
{
	struct stat st;
	CHECK(thpfs_fstat(h->f, &st) == 0, "%s: fstat", why);
	if (h->node->type == M_REG)
		CHECK((uint64_t)st.st_size == h->node->size, "%s: st_size %" PRId64 ", model %" PRIu64,
		      why, (int64_t)st.st_size, h->node->size);
	CHECK(st.st_ino == h->node->ino, "%s: st_ino", why);
}

struct dlist {
	struct thpfs_dirent e[64];
	char names[64][THPFS_NAME_MAX + 1];
	int n;
	bool overflow;
};

static int collect(void *ctx, const struct thpfs_dirent *de)
{
	struct dlist *l = ctx;
	if (l->n == 64) {
		l->overflow = true;
		return 1;
	}
	l->e[l->n] = *de;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", de->name);
	l->e[l->n].name = l->names[l->n];
	l->n++;
	return 0;
}

static int type_of(const struct mnode *n)
{
	return n->type == M_DIR ? S_IFDIR : n->type == M_LNK ? S_IFLNK :
	       n->type == M_SPEC ? (int)n->smode : S_IFREG;
}

/* Whole file: every model page and every extent SEEK_DATA reports. */
static void verify_file(struct mnode *n)
{
	struct thpfs_file *f;
	CHECK(thpfs_open_ino(fs, n->ino, O_RDONLY, &f) == 0, "open_ino %" PRIu64, n->ino);
	struct handle h = { .f = f, .node = n, .flags = O_RDONLY };
	check_size(&h, "verify");
	for (size_t i = 0; i < n->npages && i < 4096; i++)
		check_range(&h, (int64_t)(n->pages[i].idx * PG), PG, "verify page");
	int64_t pos = 0;
	for (int k = 0; k < 64 && (uint64_t)pos < n->size; k++) {
		off_t d = thpfs_lseek(f, pos, SEEK_DATA);
		if (d == -ENXIO)
			break;
		CHECK(d >= pos && (uint64_t)d < n->size, "SEEK_DATA(%" PRId64 ") = %" PRId64, pos,
		      (int64_t)d);
		off_t e = thpfs_lseek(f, d, SEEK_HOLE);
		CHECK(e > d && (uint64_t)e <= n->size, "SEEK_HOLE(%" PRId64 ") = %" PRId64,
		      (int64_t)d, (int64_t)e);
		for (int64_t o = d; o < e && o - d < 16 * (int64_t)HPG; o += IO_MAX)
			check_range(&h, o, (uint64_t)(e - o), "verify extent");
		pos = e;
	}
	CHECK(thpfs_close(f) == 0, "close");
}

/* Whole tree: names, inode numbers, types, link counts, file data. */
static void verify_dir(struct mnode *dir, int depth)
{
	struct dlist *l = malloc(sizeof(*l));
	if (!l)
		abort();
	l->n = 0;
	l->overflow = false;
	uint64_t cookie = 0;
	int r = thpfs_readdir_ino(fs, dir->ino, &cookie, collect, l);
	CHECK(r == 0, "readdir_ino(%" PRIu64 ") = %d", dir->ino, r);
	int nmodel = 0;
	for (struct mdent *d = dir->children; d; d = d->next)
		nmodel++;
	if (!l->overflow) {
		CHECK(l->n == nmodel + 2, "dir %" PRIu64 ": %d entries, model %d + . ..", dir->ino,
		      l->n, nmodel);
		for (int i = 0; i < l->n; i++) {
			const char *nm = l->e[i].name;
			if (!strcmp(nm, ".")) {
				CHECK(l->e[i].ino == dir->ino, "dir %" PRIu64 ": '.' ino", dir->ino);
				continue;
			}
			if (!strcmp(nm, "..")) {
				CHECK(l->e[i].ino == dir->parent->ino, "dir %" PRIu64 ": '..' ino",
				      dir->ino);
				continue;
			}
			struct mdent *d = d_find(dir, nm, strlen(nm));
			CHECK(d, "dir %" PRIu64 ": entry '%s' not in the model", dir->ino, nm);
			CHECK(d->node->ino == l->e[i].ino && (int)l->e[i].type == type_of(d->node),
			      "dir %" PRIu64 ": entry '%s' ino/type", dir->ino, nm);
		}
	}
	free(l);
	for (struct mdent *d = dir->children; d; d = d->next) {
		struct mnode *n = d->node;
		struct stat st;
		CHECK(thpfs_getattr(fs, n->ino, &st) == 0, "getattr %" PRIu64, n->ino);
		CHECK((st.st_mode & S_IFMT) == (mode_t)type_of(n), "getattr %" PRIu64 " type",
		      n->ino);
		if (n->type == M_SPEC && (n->smode == S_IFCHR || n->smode == S_IFBLK))
			CHECK(st.st_rdev == n->rdev, "ino %" PRIu64 ": st_rdev %#jx, model %#jx",
			      n->ino, (uintmax_t)st.st_rdev, (uintmax_t)n->rdev);
		CHECK(st.st_nlink == n->nlink, "ino %" PRIu64 " ('%s'): st_nlink %u, model %u", n->ino,
		      d->name, (unsigned)st.st_nlink, n->nlink);
		if (n->type == M_DIR && depth < 32)
			verify_dir(n, depth + 1);
		else if (n->type == M_LNK)
			CHECK((size_t)st.st_size == strlen(n->target), "symlink size");
	}
}

static bool node_alive(const struct mnode *n)
{
	return n == root || n->nlink || n->opens;
}

/* An inode's attributes: listxattr_ino names exactly the model's (sorted),
 * and getxattr_ino of each returns the model's value. */
static void verify_xattrs(struct mnode *n, const char *why)
{
	static char list[1 << 16];
	size_t need = 0;
	for (struct mxattr *x = n->xattrs; x; x = x->next)
		need += strlen(x->name) + 1;
	ssize_t r = thpfs_listxattr_ino(fs, n->ino, NULL, 0);
	CHECK(r == (ssize_t)need, "%s: listxattr_ino(%" PRIu64 ", size 0) = %zd, model %zu", why,
	      n->ino, r, need);
	if (need > sizeof(list))
		return;
	r = thpfs_listxattr_ino(fs, n->ino, list, sizeof(list));
	CHECK(r == (ssize_t)need, "%s: listxattr_ino(%" PRIu64 ") = %zd, model %zu", why, n->ino,
	      r, need);
	size_t at = 0;
	for (struct mxattr *x = n->xattrs; x; x = x->next) {
		CHECK(!strcmp(list + at, x->name), "%s: ino %" PRIu64 " lists '%.40s', model '%.40s'",
		      why, n->ino, list + at, x->name);
		at += strlen(x->name) + 1;
		r = thpfs_getxattr_ino(fs, n->ino, x->name, iobuf, sizeof(iobuf));
		CHECK(r == (ssize_t)x->size && !memcmp(iobuf, x->val, x->size),
		      "%s: getxattr_ino(%" PRIu64 ", '%.40s') = %zd, model %zu bytes%s", why, n->ino,
		      x->name, r, x->size, r == (ssize_t)x->size ? " (other bytes)" : "");
	}
}

static void verify_all(void)
{
	verify_dir(root, 0);
	for (struct mnode *n = all_nodes; n; n = n->next_all) {
		if (!node_alive(n))
			continue;
		if (n->type == M_REG)
			verify_file(n);
		verify_xattrs(n, "verify");
	}
}

/* A new inode must not share its number with one the model still knows. */
static void learn_ino(struct mnode *n, const char *path, struct thpfs_file *f)
{
	struct stat st;
	int r = f ? thpfs_fstat(f, &st) : thpfs_stat(fs, path, &st);
	CHECK(r == 0, "stat of a new entry '%.80s' = %d", path, r);
	n->ino = st.st_ino;
	for (struct mnode *o = all_nodes; o; o = o->next_all)
		CHECK(o == n || !(o->nlink || o->opens || o == root) || o->ino != n->ino,
		      "new inode %" PRIu64 " reuses a live one", n->ino);
}

/* ---- the calls ---- */

static struct handle *pick_handle(struct in *in)
{
	int i = (int)(U8(in) % NHANDLES);
	for (int k = 0; k < NHANDLES; k++) {
		struct handle *h = &handles[(i + k) % NHANDLES];
		if (h->f)
			return h;
	}
	return NULL;
}

static void node_close(struct mnode *n)
{
	n->opens--;
}

static void unmap_all(struct handle *h)
{
	for (int i = 0; i < h->npins; i++) {
		int r = thpfs_unmap(h->f, h->pins[i].addr);
		CHECK(r == 0, "unmap of a held pin = %d", r);
	}
	h->npins = 0;
}

static void close_handle(struct handle *h)
{
	unmap_all(h);
	int r = thpfs_close(h->f);
	CHECK(r == 0, "close = %d", r);
	stale[nstale++ % NSTALE] = h->f;
	node_close(h->node);
	memset(h, 0, sizeof(*h));
}

static void op_open(struct in *in)
{
	static const int accs[] = { O_RDONLY, O_WRONLY, O_RDWR, O_ACCMODE };
	unsigned fl = U8(in);
	int flags = accs[fl & 3];
	if (fl & 0x04)
		flags |= O_CREAT;
	if (fl & 0x08)
		flags |= O_EXCL;
	if (fl & 0x10)
		flags |= O_TRUNC;
	if (fl & 0x20)
		flags |= O_APPEND;
	if (fl & 0x40)
		flags |= O_DIRECTORY;
	if (fl & 0x80)
		flags |= O_NOFOLLOW;
	const char *path = gen_path(in, 0);
	int slot = -1;
	for (int i = 0; i < NHANDLES; i++)
		if (!handles[i].f)
			slot = i;
	if (slot < 0) {
		slot = (int)(U8(in) % NHANDLES);
		close_handle(&handles[slot]);
	}
	note("open '%.60s' flags %#x", path, flags);

	/* what the model expects */
	struct mnd nd;
	struct mnode *n = NULL;
	bool create = false;
	int e = 0;
	if ((flags & O_ACCMODE) == O_ACCMODE || ((flags & O_CREAT) && (flags & O_DIRECTORY)))
		e = -EINVAL;
	if (!e)
		e = m_walk(path, &nd);
	if (!e && (flags & O_CREAT)) {
		if (nd.type != N_NORMAL)
			e = (flags & O_EXCL) ? -EEXIST : -EISDIR;
		else if (nd.slash)
			e = -EISDIR;
		else {
			struct mdent *d = d_find(nd.dir, nd.name, nd.len);
			if (d && (flags & O_EXCL))
				e = -EEXIST;
			else if (d && d->node->type == M_DIR)
				e = -EISDIR; /* O_CREAT on a directory, as Linux */
			else if (d)
				n = d->node;
			else
				create = true;
		}
	} else if (!e) {
		e = m_target(&nd, &n);
	}
	if (!e && n) {
		if (n->type == M_LNK)
			e = -ELOOP;
		else if (n->type == M_SPEC)
			e = -ENXIO; /* a FIFO, socket or device: nothing to open */
		else if ((flags & O_DIRECTORY) && n->type != M_DIR)
			e = -ENOTDIR;
		else if (n->type == M_DIR && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
			e = -EISDIR;
		else if ((flags & O_TRUNC) && n->type == M_REG && n->map_len)
			e = -EBUSY; /* a truncate below a view */
	}

	struct thpfs_file *f = NULL;
	int r = thpfs_open(fs, path, flags, 0644, &f);
	check_errno(r, "open");
	if (r == -ENOSPC && create)
		return; /* nr_inodes */
	CHECK((r == 0) == (e == 0), "open('%.80s', %#x) = %d, model %d", path, flags, r, e);
	if (r)
		return;
	if (create) {
		n = node_new(M_REG);
		d_add(nd.dir, nd.name, nd.len, n);
		learn_ino(n, path, f);
		inherit_acls(nd.dir, n);
	} else if ((flags & O_TRUNC) && n->type == M_REG) {
		model_set_size(n, 0);
	}
	n->opens++;
	struct handle *h = &handles[slot];
	h->f = f;
	h->node = n;
	h->flags = flags;
	h->pos = 0;
	check_size(h, "open");
}

static void op_close(struct in *in)
{
	struct handle *h = pick_handle(in);
	if (!h)
		return;
	note("close");
	close_handle(h);
}

/* A closed handle: -EBADF from everything (unless its memory was reused by a
 * later open, which is then a live handle of its own). */
static void op_stale(struct in *in)
{
	if (!nstale)
		return;
	struct thpfs_file *f = stale[U8(in) % (nstale < NSTALE ? nstale : NSTALE)];
	if (is_open_handle(f))
		return;
	unsigned what = U8(in) % (v2 ? 12 : 9);
	note("stale handle call %u", what);
	char b[16];
	struct stat st;
	void *a;
	size_t l;
	int64_t r;
	switch (what) {
	case 0: r = thpfs_pread(f, b, sizeof(b), 0); break;
	case 1: r = thpfs_pwrite(f, b, sizeof(b), 0); break;
	case 2: r = thpfs_ftruncate(f, 0); break;
	case 3: r = thpfs_fallocate(f, 0, 0, 4096); break;
	case 4: r = thpfs_fstat(f, &st); break;
	case 5: r = thpfs_map(f, 0, &a, &l); break;
	case 6: r = thpfs_close(f); break;
	case 7: r = thpfs_lseek(f, 0, SEEK_DATA); break;
	case 8: r = thpfs_free_lazy(f, 0, 4096); break;
	case 9: a = NULL; r = thpfs_mmap(f, 0, HPG, &a); break;
	case 10: r = thpfs_munmap(f, b, HPG); break;
	default: r = thpfs_pread_direct(f, 16, 0, direct_actor, NULL); break;
	}
	CHECK(r == -EBADF, "call %u on a closed handle = %" PRId64 ", not -EBADF", what, r);
}

static void op_mkdir(struct in *in)
{
	const char *path = gen_path(in, 0);
	struct mnd nd;
	int e = m_walk(path, &nd);
	if (!e)
		e = m_may_create(&nd);
	note("mkdir '%.60s'", path);
	int r = thpfs_mkdir(fs, path, 0755);
	check_errno(r, "mkdir");
	if (r == -ENOSPC && !e)
		return;
	CHECK((r == 0) == (e == 0), "mkdir('%.80s') = %d, model %d", path, r, e);
	if (r)
		return;
	struct mnode *n = node_new(M_DIR);
	n->parent = nd.dir;
	nd.dir->nlink++;
	d_add(nd.dir, nd.name, nd.len, n);
	learn_ino(n, path, NULL);
	inherit_acls(nd.dir, n);
}

static void op_rmdir(struct in *in)
{
	const char *path = gen_path(in, 0);
	struct mnd nd;
	struct mdent *d = NULL;
	int e = m_walk(path, &nd);
	if (!e) {
		if (nd.type == N_ROOT)
			e = -EBUSY;
		else if (nd.type == N_DOT)
			e = -EINVAL;
		else if (nd.type == N_DOTDOT)
			e = -ENOTEMPTY;
		else if (!(d = d_find(nd.dir, nd.name, nd.len)))
			e = -ENOENT;
		else if (d->node->type != M_DIR)
			e = -ENOTDIR;
		else if (d->node->children)
			e = -ENOTEMPTY;
	}
	note("rmdir '%.60s'", path);
	int r = thpfs_rmdir(fs, path);
	check_errno(r, "rmdir");
	CHECK((r == 0) == (e == 0), "rmdir('%.80s') = %d, model %d", path, r, e);
	if (r)
		return;
	struct mnode *n = d->node;
	d_del(nd.dir, d);
	drop_link(nd.dir, n);
}

static void op_unlink(struct in *in)
{
	const char *path = gen_path(in, 0);
	struct mnd nd;
	struct mdent *d = NULL;
	int e = m_walk(path, &nd);
	if (!e) {
		if (nd.type != N_NORMAL)
			e = -EISDIR;
		else if (!(d = d_find(nd.dir, nd.name, nd.len)))
			e = -ENOENT;
		else if (d->node->type == M_DIR)
			e = -EISDIR;
		else if (nd.slash)
			e = -ENOTDIR;
	}
	note("unlink '%.60s'", path);
	int r = thpfs_unlink(fs, path);
	check_errno(r, "unlink");
	CHECK((r == 0) == (e == 0), "unlink('%.80s') = %d, model %d", path, r, e);
	if (r)
		return;
	struct mnode *n = d->node;
	d_del(nd.dir, d);
	drop_link(nd.dir, n);
}

static void op_symlink(struct in *in)
{
	const char *target = gen_path(in, 1);
	const char *path = gen_path(in, 0);
	struct mnd nd;
	size_t tl = strnlen(target, THPFS_PATH_MAX);
	int e = tl == 0 ? -ENOENT : tl >= THPFS_PATH_MAX ? -ENAMETOOLONG : 0;
	if (!e)
		e = m_walk(path, &nd);
	if (!e)
		e = m_may_create(&nd);
	if (!e && nd.slash)
		e = -ENOENT;
	note("symlink '%.30s' '%.60s'", target, path);
	int r = thpfs_symlink(fs, target, path);
	check_errno(r, "symlink");
	if (r == -ENOSPC && !e)
		return;
	CHECK((r == 0) == (e == 0), "symlink(%zu bytes, '%.80s') = %d, model %d", tl, path, r, e);
	if (r)
		return;
	struct mnode *n = node_new(M_LNK);
	n->target = strdup(target);
	d_add(nd.dir, nd.name, nd.len, n);
	learn_ino(n, path, NULL);
}

static void op_readlink(struct in *in)
{
	const char *path = gen_path(in, 0);
	size_t len = U16(in) % (THPFS_PATH_MAX + 8);
	struct mnode *n = NULL;
	int e = len ? m_lookup(path, &n) : -EINVAL;
	if (!e && n->type != M_LNK)
		e = -EINVAL;
	note("readlink '%.60s' %zu", path, len);
	char *buf = malloc(len + 1);
	if (!buf)
		abort();
	ssize_t r = thpfs_readlink(fs, path, len ? buf : NULL, len);
	check_errno(r, "readlink");
	CHECK((r >= 0) == (e == 0), "readlink('%.80s', %zu) = %zd, model %d", path, len, r, e);
	if (r >= 0) {
		size_t tl = strlen(n->target), want = tl < len ? tl : len;
		CHECK((size_t)r == want && !memcmp(buf, n->target, want), "readlink content");
	}
	free(buf);
}

static void op_link(struct in *in)
{
	const char *from = gen_path(in, 1);
	const char *to = gen_path(in, 0);
	struct mnd nd;
	struct mnode *n = NULL;
	int e = m_lookup(from, &n);
	if (!e)
		e = m_walk(to, &nd);
	if (!e)
		e = m_may_create(&nd);
	if (!e && nd.slash)
		e = -ENOENT;
	if (!e && n->type == M_DIR)
		e = -EPERM;
	note("link '%.60s' '%.60s'", from, to);
	int r = thpfs_link(fs, from, to);
	check_errno(r, "link");
	if (r == -ENOSPC && !e)
		return;
	CHECK((r == 0) == (e == 0), "link('%.80s', '%.80s') = %d, model %d", from, to, r, e);
	if (r)
		return;
	n->nlink++;
	d_add(nd.dir, nd.name, nd.len, n);
}

static void move_parent(struct mnode *n, struct mnode *from, struct mnode *to)
{
	if (n->type != M_DIR || from == to)
		return;
	from->nlink--;
	to->nlink++;
	n->parent = to;
}

static void op_rename(struct in *in)
{
	static const unsigned flagset[] = { 0, 0, THPFS_RENAME_NOREPLACE, THPFS_RENAME_EXCHANGE, 3, 4 };
	unsigned flags = flagset[U8(in) % 6];
	const char *from = gen_path(in, 1);
	const char *to = gen_path(in, 0);
	struct mnd f, t;
	struct mdent *od = NULL, *nd = NULL;
	int e = 0;
	if (flags & ~3u || flags == 3)
		e = -EINVAL;
	if (!e)
		e = m_walk(from, &f);
	if (!e)
		e = m_walk(to, &t);
	if (!e && (f.type != N_NORMAL || t.type != N_NORMAL))
		e = -EBUSY;
	if (!e && !(od = d_find(f.dir, f.name, f.len)))
		e = -ENOENT;
	if (!e) {
		nd = d_find(t.dir, t.name, t.len);
		struct mnode *src = od->node, *dst = nd ? nd->node : NULL;
		if ((flags & THPFS_RENAME_NOREPLACE) && dst)
			e = -EEXIST;
		else if ((flags & THPFS_RENAME_EXCHANGE) && !dst)
			e = -ENOENT;
		else if ((flags & THPFS_RENAME_EXCHANGE) && dst->type != M_DIR && t.slash)
			e = -ENOTDIR;
		else if (src->type != M_DIR && (f.slash || (!(flags & THPFS_RENAME_EXCHANGE) && t.slash)))
			e = -ENOTDIR;
		else if (src->type == M_DIR && in_subtree(t.dir, src))
			e = -EINVAL;
		else if (dst && dst->type == M_DIR && in_subtree(f.dir, dst))
			e = -ENOTEMPTY;
		else if (src != dst && dst && !(flags & THPFS_RENAME_EXCHANGE)) {
			if (src->type == M_DIR && dst->type != M_DIR)
				e = -ENOTDIR;
			else if (src->type != M_DIR && dst->type == M_DIR)
				e = -EISDIR;
			else if (dst->type == M_DIR && dst->children)
				e = -ENOTEMPTY;
		}
	}
	note("rename '%.60s' '%.60s' %u", from, to, flags);
	int r = thpfs_rename(fs, from, to, flags);
	check_errno(r, "rename");
	CHECK((r == 0) == (e == 0), "rename('%.80s', '%.80s', %u) = %d, model %d", from, to, flags,
	      r, e);
	if (r)
		return;
	struct mnode *src = od->node, *dst = nd ? nd->node : NULL;
	if (src == dst)
		return;
	if (flags & THPFS_RENAME_EXCHANGE) {
		od->node = dst;
		nd->node = src;
		move_parent(src, f.dir, t.dir);
		move_parent(dst, t.dir, f.dir);
		return;
	}
	struct mnode *fdir = f.dir;
	if (nd) {
		nd->node = src;
		d_del(fdir, od);
		move_parent(src, fdir, t.dir);
		drop_link(t.dir, dst);
	} else {
		d_add(t.dir, t.name, t.len, src);
		d_del(fdir, od);
		move_parent(src, fdir, t.dir);
	}
}

static void op_stat(struct in *in)
{
	const char *path = gen_path(in, 0);
	struct mnode *n = NULL;
	int e = m_lookup(path, &n);
	struct stat st;
	note("stat '%.60s'", path);
	int r = thpfs_stat(fs, path, &st);
	check_errno(r, "stat");
	CHECK((r == 0) == (e == 0), "stat('%.80s') = %d, model %d", path, r, e);
	if (r)
		return;
	CHECK(st.st_ino == n->ino, "stat('%.80s') ino %" PRIu64 ", model %" PRIu64, path,
	      (uint64_t)st.st_ino, n->ino);
	if (n->type == M_REG)
		CHECK((uint64_t)st.st_size == n->size, "stat size");
}

static void op_readdir(struct in *in)
{
	const char *path = gen_path(in, 0);
	struct mnode *n = NULL;
	int e = m_lookup(path, &n);
	if (!e && n->type != M_DIR)
		e = -ENOTDIR;
	struct dlist *l = malloc(sizeof(*l));
	if (!l)
		abort();
	l->n = 0;
	l->overflow = false;
	uint64_t cookie = U8(in) < 32 ? U64(in) : 0;
	bool odd_cookie = cookie != 0;
	note("readdir '%.60s' cookie %" PRIu64, path, cookie);
	int r = thpfs_readdir(fs, path, &cookie, collect, l);
	check_errno(r, "readdir");
	CHECK((r == 0) == (e == 0), "readdir('%.80s') = %d, model %d", path, r, e);
	if (!r && !odd_cookie && !l->overflow) {
		int nmodel = 2;
		for (struct mdent *d = n->children; d; d = d->next)
			nmodel++;
		CHECK(l->n == nmodel, "readdir('%.80s'): %d entries, model %d", path, l->n, nmodel);
	}
	free(l);
}

/* ---- data calls on a handle ---- */

static bool readable(const struct handle *h)
{
	return (h->flags & O_ACCMODE) != O_WRONLY;
}

static bool writable(const struct handle *h)
{
	return (h->flags & O_ACCMODE) != O_RDONLY;
}

static void op_pread(struct in *in, struct handle *h, bool at_pos)
{
	int64_t off = at_pos ? h->pos : gen_off(in, h->node->size);
	size_t len = gen_iolen(in);
	bool huge_len = U8(in) == 0xff;
	size_t pass = huge_len ? SIZE_MAX - len : len;
	note("%s(%" PRId64 ", %zu)", at_pos ? "read" : "pread", off, pass);
	ssize_t r = at_pos ? thpfs_read(h->f, iobuf, pass) : thpfs_pread(h->f, iobuf, pass, off);
	check_errno(r, "pread");
	struct mnode *n = h->node;
	if (n->type == M_DIR || !readable(h) || off < 0 || huge_len) {
		CHECK(r < 0, "pread that must fail = %zd", r);
		return;
	}
	size_t want = (uint64_t)off >= n->size ? 0 : (size_t)(n->size - (uint64_t)off < len ? n->size - (uint64_t)off : len);
	CHECK(r == (ssize_t)want, "pread(%" PRId64 ", %zu) = %zd, model %zu (size %" PRIu64 ")", off,
	      len, r, want, n->size);
	model_read(n, (uint64_t)off, want, modelbuf);
	for (size_t i = 0; i < want; i++)
		CHECK(iobuf[i] == modelbuf[i], "pread byte %" PRIu64 " is %#x, model %#x",
		      (uint64_t)off + i, iobuf[i], modelbuf[i]);
	if (at_pos)
		h->pos += r;
}

static void op_pwrite(struct in *in, struct handle *h, bool at_pos)
{
	int64_t off = at_pos ? h->pos : gen_off(in, h->node->size);
	size_t len = gen_iolen(in);
	unsigned seed = U8(in);
	bool huge_len = seed == 0xff;
	size_t pass = huge_len ? SIZE_MAX - len : len;
	struct mnode *n = h->node;
	if (model_pages + len / PG + 2 > MODEL_PAGES_MAX)
		return;
	fill(iobuf, len, seed);
	int64_t at = (h->flags & O_APPEND) ? (int64_t)n->size : off;
	note("%s(%" PRId64 ", %zu) at %" PRId64, at_pos ? "write" : "pwrite", off, pass, at);
	ssize_t r = at_pos ? thpfs_write(h->f, iobuf, pass) : thpfs_pwrite(h->f, iobuf, pass, off);
	check_errno(r, "pwrite");
	bool fails = n->type == M_DIR || !writable(h) || huge_len || off < 0 ||
		     (len && at >= MAXF);
	if (fails) {
		CHECK(r < 0, "pwrite that must fail = %zd", r);
		check_size(h, "failed pwrite");
		return;
	}
	if (len == 0) {
		CHECK(r == 0, "pwrite of 0 bytes = %zd", r);
		return;
	}
	size_t maxn = (uint64_t)(MAXF - at) < len ? (size_t)(MAXF - at) : len;
	if (r == -ENOSPC) {
		check_size(h, "ENOSPC pwrite");
		check_range(h, at, len, "ENOSPC pwrite");
		return;
	}
	CHECK(r > 0 && (size_t)r <= maxn, "pwrite(%" PRId64 ", %zu) = %zd (at most %zu)", at, len,
	      r, maxn);
	CHECK((size_t)r == maxn || fs_full_ok, "short pwrite");
	model_write(n, (uint64_t)at, iobuf, (uint64_t)r);
	if ((uint64_t)at + (uint64_t)r > n->size)
		n->size = (uint64_t)at + (uint64_t)r;
	if (at_pos)
		h->pos = at + r;
	check_size(h, "pwrite");
	check_range(h, at - 100, (uint64_t)r + 200, "pwrite");
}

static void op_truncate(struct in *in, struct handle *h)
{
	int64_t size = gen_off(in, h->node->size);
	note("ftruncate(%" PRId64 ")", size);
	int r = thpfs_ftruncate(h->f, size);
	check_errno(r, "ftruncate");
	struct mnode *n = h->node;
	bool fails = n->type == M_DIR || !writable(h) || size < 0 || size > MAXF;
	if (fails) {
		CHECK(r < 0, "ftruncate that must fail = %d", r);
		check_size(h, "failed ftruncate");
		return;
	}
	if (n->map_len && (uint64_t)size < n->map_off + n->map_len) {
		CHECK(r == -EBUSY, "ftruncate(%" PRId64 ") below a view = %d", size, r);
		check_size(h, "ftruncate below a view");
		check_range(h, size, 8192, "ftruncate below a view");
		return;
	}
	if (r == -ENOSPC || r == -ENOMEM) {
		check_size(h, "ftruncate ENOSPC");
		return;
	}
	CHECK(r == 0, "ftruncate(%" PRId64 ") = %d", size, r);
	model_set_size(n, (uint64_t)size);
	check_size(h, "ftruncate");
	check_range(h, size - 5000, 10000, "ftruncate");
}

static bool free_end(int64_t off, int64_t len, uint64_t *end);

static void op_fallocate(struct in *in, struct handle *h)
{
	static const int modes[] = {
		0,
		THPFS_FALLOC_KEEP_SIZE,
		THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
		THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_KEEP_SIZE,
		THPFS_FALLOC_ZERO_RANGE,
		THPFS_FALLOC_ZERO_RANGE | THPFS_FALLOC_KEEP_SIZE,
		THPFS_FALLOC_PUNCH_HOLE,
		THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_ZERO_RANGE | THPFS_FALLOC_KEEP_SIZE,
		0x04, /* COLLAPSE_RANGE */
		0x08, /* FALLOC_FL_NO_HIDE_STALE */
		0x20, /* INSERT_RANGE */
		-1,
	};
	unsigned sel = U8(in);
	int mode = sel >= 240 ? (int)U32(in) : modes[sel % 12];
	struct mnode *n = h->node;
	int64_t off = gen_off(in, n->size), len = gen_len(in);
	note("fallocate(%#x, %" PRId64 ", %" PRId64 ")", mode, off, len);
	int r = thpfs_fallocate(h->f, mode, off, len);
	check_errno(r, "fallocate");
	const int known = THPFS_FALLOC_KEEP_SIZE | THPFS_FALLOC_PUNCH_HOLE | THPFS_FALLOC_ZERO_RANGE;
	bool punch = mode & THPFS_FALLOC_PUNCH_HOLE, zero = mode & THPFS_FALLOC_ZERO_RANGE;
	bool keep = mode & THPFS_FALLOC_KEEP_SIZE;
	uint64_t fend = 0;
	bool fails = n->type == M_DIR || !writable(h) || off < 0 || len <= 0 || (mode & ~known) ||
		     (punch && (zero || !keep)) ||
		     (punch ? !free_end(off, len, &fend)
			    : (uint64_t)off > (uint64_t)MAXF ||
				      (uint64_t)len > (uint64_t)MAXF - (uint64_t)off);
	if (fails) {
		CHECK(r < 0, "fallocate(%#x, %" PRId64 ", %" PRId64 ") that must fail = %d", mode, off,
		      len, r);
		check_size(h, "failed fallocate");
		if (off >= 0)
			check_range(h, off, 8192, "failed fallocate");
		return;
	}
	uint64_t end = punch ? fend : (uint64_t)off + (uint64_t)len;
	if (r == -ENOSPC && !punch) {
		check_size(h, "fallocate ENOSPC");
		check_range(h, off, 8192, "fallocate ENOSPC");
		return;
	}
	CHECK(r == 0, "fallocate(%#x, %" PRId64 ", %" PRId64 ") = %d", mode, off, len, r);
	if ((punch || zero) && (uint64_t)off < end)
		model_zero(n, (uint64_t)off, end);
	if (!punch && !keep && end > n->size)
		n->size = end;
	check_size(h, "fallocate");
	check_range(h, off - 100, 8192, "fallocate");
	if (len > 8192)
		check_range(h, (int64_t)end - 4096, 8192, "fallocate end");
}

/* The end of a range that frees (a punch, a lazy free), as the header
 * promises: clamped to the largest file (nothing lies past it; "punch to the
 * end" succeeds as on tmpfs); false when off + len passes INT64_MAX (-EFBIG). */
static bool free_end(int64_t off, int64_t len, uint64_t *end)
{
	int64_t e;
	if (__builtin_add_overflow(off, len, &e))
		return false;
	*end = (uint64_t)e < (uint64_t)MAXF ? (uint64_t)e : (uint64_t)MAXF;
	return true;
}

/* FUZZ_NO_LAZY=1 leaves thpfs_free_lazy out, to fuzz the rest while a known
 * bug of lazily freed pages is open. */
static bool no_lazy(void)
{
	static int v = -1;
	if (v < 0)
		v = getenv("FUZZ_NO_LAZY") && *getenv("FUZZ_NO_LAZY") == '1';
	return v;
}

static void op_free_lazy(struct in *in, struct handle *h)
{
	struct mnode *n = h->node;
	int64_t off = gen_off(in, n->size), len = gen_len(in);
	if (no_lazy())
		return;
	note("free_lazy(%" PRId64 ", %" PRId64 ")", off, len);
	int r = thpfs_free_lazy(h->f, off, len);
	check_errno(r, "free_lazy");
	uint64_t end = 0;
	bool fails = n->type == M_DIR || !writable(h) || off < 0 || len <= 0 ||
		     !free_end(off, len, &end);
	if (fails) {
		CHECK(r < 0, "free_lazy(%" PRId64 ", %" PRId64 ") that must fail = %d", off, len, r);
		return;
	}
	CHECK(r == 0, "free_lazy(%" PRId64 ", %" PRId64 ") = %d", off, len, r);
	if ((uint64_t)off < end)
		model_zero(n, (uint64_t)off, end);
	check_size(h, "free_lazy");
	check_range(h, off - 100, 8192, "free_lazy");
}

static void op_lseek(struct in *in, struct handle *h)
{
	static const int whences[] = { SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA, SEEK_HOLE, 5, -1 };
	int whence = whences[U8(in) % 7];
	struct mnode *n = h->node;
	int64_t off = gen_off(in, n->size);
	note("lseek(%" PRId64 ", %d) pos %" PRId64, off, whence, h->pos);
	off_t r = thpfs_lseek(h->f, off, whence);
	check_errno(r, "lseek");
	int64_t want = -1;
	bool fails = false;
	uint64_t size = n->type == M_REG ? n->size : 0;
	switch (whence) {
	case SEEK_SET:
		want = off;
		fails = off < 0;
		break;
	case SEEK_CUR:
		fails = __builtin_add_overflow(h->pos, off, &want) || want < 0;
		break;
	case SEEK_END:
		fails = __builtin_add_overflow((int64_t)size, off, &want) || want < 0;
		break;
	case SEEK_DATA:
	case SEEK_HOLE:
		if (n->type != M_REG) {
			if (r >= 0)
				h->pos = r;
			return; /* directories: not modelled */
		}
		fails = off < 0 || (uint64_t)off >= size;
		break;
	default:
		fails = true;
	}
	if (fails) {
		CHECK(r < 0, "lseek(%" PRId64 ", %d) that must fail = %" PRId64, off, whence,
		      (int64_t)r);
		return;
	}
	if (whence == SEEK_DATA && r == -ENXIO) {
		/* no data from off to EOF: the model must agree */
		for (uint64_t o = (uint64_t)off; o < size && o - (uint64_t)off < 2 * IO_MAX; o += IO_MAX)
			check_range(h, (int64_t)o, size - o, "SEEK_DATA said no data");
		for (size_t i = 0; i < n->npages; i++) {
			if ((n->pages[i].idx + 1) * PG <= (uint64_t)off || n->pages[i].idx * PG >= size)
				continue;
			for (unsigned b = 0; b < PG; b++) {
				uint64_t o = n->pages[i].idx * PG + b;
				CHECK(o < (uint64_t)off || o >= size || !n->pages[i].data[b],
				      "SEEK_DATA(%" PRId64 ") = -ENXIO but byte %" PRIu64 " is data", off, o);
			}
		}
		return;
	}
	CHECK(r >= 0, "lseek(%" PRId64 ", %d) = %" PRId64, off, whence, (int64_t)r);
	if (whence == SEEK_DATA || whence == SEEK_HOLE) {
		CHECK(r >= off && (uint64_t)r <= size && (whence == SEEK_HOLE || (uint64_t)r < size),
		      "lseek(%" PRId64 ", %d) = %" PRId64 " outside [off, size %" PRIu64 "]", off,
		      whence, (int64_t)r, size);
		if (whence == SEEK_DATA) {
			/* everything skipped is a hole: the model must have zeros there */
			for (size_t i = 0; i < n->npages; i++) {
				uint64_t ps = n->pages[i].idx * PG;
				if (ps + PG <= (uint64_t)off || ps >= (uint64_t)r)
					continue;
				for (unsigned b = 0; b < PG; b++) {
					uint64_t o = ps + b;
					CHECK(o < (uint64_t)off || o >= (uint64_t)r || !n->pages[i].data[b],
					      "SEEK_DATA(%" PRId64 ") = %" PRId64 " skips data at %" PRIu64,
					      off, (int64_t)r, o);
				}
			}
		} else if ((uint64_t)r < size) {
			check_range(h, r, 1, "SEEK_HOLE");
			struct mpage *p = page_find(n, (uint64_t)r / PG);
			CHECK(!p || !p->data[r % PG], "SEEK_HOLE(%" PRId64 ") = %" PRId64
			      " lands on data", off, (int64_t)r);
		}
	} else {
		CHECK(r == want, "lseek(%" PRId64 ", %d) = %" PRId64 ", model %" PRId64, off, whence,
		      (int64_t)r, want);
	}
	h->pos = r;
}

static void op_map(struct in *in, struct handle *h, bool existing)
{
	struct mnode *n = h->node;
	int64_t off = gen_off(in, n->size);
	unsigned wr = U8(in);
	void *addr = NULL;
	size_t len = 0;
	if (h->npins == NPINS)
		unmap_all(h);
	note("%s(%" PRId64 ")", existing ? "map_existing" : "map", off);
	int r = existing ? thpfs_map_existing(h->f, off, &addr, &len)
			 : thpfs_map(h->f, off, &addr, &len);
	check_errno(r, "map");
	/* thpfs_map gives a writable pointer: O_RDWR only; map_existing a
	 * read-only one: not on O_WRONLY (include/thpfs.h); checked first */
	if (existing ? !readable(h) : (h->flags & O_ACCMODE) != O_RDWR) {
		CHECK(r == -EACCES, "%s(%" PRId64 ") on an %s handle = %d, not -EACCES",
		      existing ? "map_existing" : "map", off,
		      (h->flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY" : "O_RDONLY", r);
		return;
	}
	bool fails = n->type != M_REG || off < 0 || (uint64_t)off >= n->size;
	if (fails) {
		CHECK(r < 0, "map(%" PRId64 ") that must fail = %d", off, r);
		return;
	}
	if (r == -ENODATA && existing) {
		check_range(h, off, 1, "map_existing hole"); /* reads as zero */
		struct mpage *p = page_find(n, (uint64_t)off / PG);
		if (p)
			for (unsigned b = 0; b < PG; b++)
				CHECK(!p->data[b], "map_existing(%" PRId64 ") = -ENODATA on data", off);
		return;
	}
	if (r == -ENOSPC && !existing)
		return;
	CHECK(r == 0, "map(%" PRId64 ") = %d", off, r);
	if (n->map_len && (uint64_t)off - n->map_off < n->map_len)
		CHECK((uint8_t *)addr == n->map_addr + ((uint64_t)off - n->map_off),
		      "%s(%" PRId64 ") = %p, not in the view at %p", existing ? "map_existing" : "map",
		      off, addr, (void *)n->map_addr);
	CHECK(len > 0 && (uint64_t)off + len <= n->size &&
	      ((uint64_t)off + len) / HPG - (uint64_t)off / HPG <= 1,
	      "map(%" PRId64 ") len %zu, size %" PRIu64, off, len, n->size);
	size_t k = len < IO_MAX ? len : IO_MAX;
	model_read(n, (uint64_t)off, k, modelbuf);
	CHECK(!memcmp(addr, modelbuf, k), "bytes at a %s pin differ from the model",
	      existing ? "map_existing" : "map");
	if (!existing && writable(h) && (wr & 1)) {
		size_t w = (wr >> 1) % (k < 600 ? k : 600) + 1;
		if (w > k)
			w = k;
		fill(iobuf, w, wr);
		memcpy(addr, iobuf, w);
		model_write(n, (uint64_t)off, iobuf, w);
		check_range(h, off - 10, w + 20, "write through map");
	}
	h->pins[h->npins].addr = addr;
	h->pins[h->npins].len = len;
	h->pins[h->npins].off = (uint64_t)off;
	h->npins++;
	if (wr & 0x80)
		unmap_all(h);
}

static void op_unmap(struct in *in, struct handle *h)
{
	unsigned sel = U8(in);
	if (sel & 1) {
		char local;
		note("unmap(bogus)");
		int r = thpfs_unmap(h->f, (sel & 2) ? NULL : &local);
		CHECK(r < 0, "unmap of a pointer never mapped = %d", r);
		check_errno(r, "unmap");
		return;
	}
	if (!h->npins)
		return;
	int i = (int)(sel >> 1) % h->npins;
	note("unmap(%p)", h->pins[i].addr);
	int r = thpfs_unmap(h->f, h->pins[i].addr);
	CHECK(r == 0, "unmap of a held pin = %d", r);
	h->pins[i] = h->pins[--h->npins];
}

static void op_collapse(struct in *in, struct handle *h)
{
	struct mnode *n = h->node;
	int64_t off = gen_off(in, n->size), len = gen_len(in);
	note("collapse(%" PRId64 ", %" PRId64 ")", off, len);
	int r = thpfs_collapse(h->f, off, len);
	check_errno(r, "collapse");
	if (!readable(h)) {
		CHECK(r == -EACCES, "collapse on an O_WRONLY handle = %d, not -EACCES", r);
		return;
	}
	if (off < 0 || len <= 0)
		CHECK(r < 0, "collapse(%" PRId64 ", %" PRId64 ") that must fail = %d", off, len, r);
	if (n->type == M_REG) {
		check_size(h, "collapse");
		check_range(h, off, 8192, "collapse");
	}
}

static void op_fadvise(struct in *in, struct handle *h)
{
	static const int advs[] = { THPFS_ADV_NORMAL, THPFS_ADV_HUGEPAGE, THPFS_ADV_NOHUGEPAGE, 1, -1, 16 };
	int adv = advs[U8(in) % 6];
	note("fadvise(%d)", adv);
	int r = thpfs_fadvise(h->f, adv);
	check_errno(r, "fadvise");
	bool ok = adv == THPFS_ADV_NORMAL || adv == THPFS_ADV_HUGEPAGE || adv == THPFS_ADV_NOHUGEPAGE;
	CHECK((r == 0) == ok, "fadvise(%d) = %d", adv, r);
}

static void op_reclaim(struct in *in)
{
	uint64_t bytes = U8(in) < 128 ? 0 : (uint64_t)U32(in);
	note("reclaim(%" PRIu64 ")", bytes);
	int64_t r = thpfs_reclaim(fs, bytes);
	CHECK(r >= 0, "reclaim = %" PRId64, r);
}

static void op_data(struct in *in, unsigned what)
{
	struct handle *h = pick_handle(in);
	if (!h)
		return;
	switch (what) {
	case 0: op_pread(in, h, false); break;
	case 1: op_pwrite(in, h, false); break;
	case 2: op_pread(in, h, true); break;
	case 3: op_pwrite(in, h, true); break;
	case 4: op_truncate(in, h); break;
	case 5: op_fallocate(in, h); break;
	case 6: op_free_lazy(in, h); break;
	case 7: op_lseek(in, h); break;
	case 8: op_map(in, h, false); break;
	case 9: op_map(in, h, true); break;
	case 10: op_unmap(in, h); break;
	case 11: op_collapse(in, h); break;
	case 12: op_fadvise(in, h); break;
	default:
		note("fstat");
		check_size(h, "fstat");
		if (h->node->type == M_REG)
			check_range(h, gen_off(in, h->node->size), gen_iolen(in), "fstat");
		break;
	}
}

/* ---- calls of the second opcode table: mknod, xattrs, mmap, pread_direct ---- */

/* A node the model knows to be alive (so its inode number is its own), or
 * NULL for an inode number nothing has. */
static struct mnode *pick_node(struct in *in)
{
	unsigned sel = U8(in);
	if (sel == 0xff)
		return NULL;
	if (sel < 16)
		return root;
	unsigned count = 0;
	for (struct mnode *n = all_nodes; n; n = n->next_all)
		count += node_alive(n);
	unsigned k = sel % count;
	for (struct mnode *n = all_nodes; n; n = n->next_all)
		if (node_alive(n) && !k--)
			return n;
	return root;
}

static const uint64_t bogus_ino = UINT64_MAX - 7;

/* A single name component for the *_at calls (NULL too). */
static const char *gen_name(struct in *in, char *buf)
{
	unsigned sel = U8(in);
	switch (sel % 12) {
	case 0: return "";
	case 1: return ".";
	case 2: return "..";
	case 3: return "a/b";
	case 4: {
		unsigned len = THPFS_NAME_MAX + (sel >> 7);
		memset(buf, 'y', len);
		buf[len] = 0;
		return buf;
	}
	case 5: return sel & 0x80 ? NULL : "e";
	default: return short_names[sel % 4];
	}
}

static int name_err(const char *name, struct mnd *nd)
{
	if (!name)
		return -EINVAL;
	size_t len = strnlen(name, THPFS_NAME_MAX + 1);
	if (!len)
		return -ENOENT;
	if (len > THPFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (memchr(name, '/', len))
		return -EINVAL;
	nd->name = name;
	nd->len = len;
	nd->type = classify(name, len);
	nd->slash = false;
	return 0;
}

static mode_t gen_mknod_mode(struct in *in)
{
	static const mode_t types[] = { S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, S_IFREG,
					S_IFIFO, S_IFCHR, S_IFDIR, S_IFLNK, 0, S_IFMT, 0050000 };
	unsigned sel = U8(in);
	return types[sel % 12] | (mode_t)(U16(in) & 07777);
}

/* What mknod's mode gives (include/thpfs.h): the five types it makes,
 * -EPERM for a directory, -EINVAL for anything else. */
static int mknod_mode_err(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFIFO: case S_IFSOCK: case S_IFCHR: case S_IFBLK:
		return 0;
	case S_IFDIR:
		return -EPERM;
	default:
		return -EINVAL;
	}
}

static struct mnode *mknod_node(mode_t mode, dev_t rdev)
{
	if (S_ISREG(mode))
		return node_new(M_REG);
	struct mnode *n = node_new(M_SPEC);
	n->smode = mode & S_IFMT;
	n->rdev = (S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0;
	return n;
}

/* POSIX ACLs in xattr form (version 2, entries of tag/perm/id), checked
 * the way Linux's posix_acl_from_xattr + posix_acl_valid do. */
enum { A_UOBJ = 1, A_USER = 2, A_GOBJ = 4, A_GROUP = 8, A_MASK = 0x10, A_OTHER = 0x20 };

static uint32_t le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* 0 valid (*nent entries, *named: USER/GROUP or MASK entries present,
 * *bits: the permission bits it stands for), -EINVAL invalid. */
static int acl_model_check(const uint8_t *v, size_t size, size_t *nent, bool *extended,
			   mode_t *bits)
{
	if (size < 4 || (size - 4) % 8 || le32(v) != 2)
		return -EINVAL;
	size_t n = (size - 4) / 8;
	*nent = n;
	if (!n)
		return 0;
	unsigned seen = 0, named = 0, last = 0, user = 0, group = 0, mask = 0, other = 0;
	uint32_t last_id = 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = v + 4 + 8 * i;
		unsigned tag = e[0] | e[1] << 8, perm = e[2] | e[3] << 8;
		uint32_t id = le32(e + 4);
		if (perm > 7 || tag < last)
			return -EINVAL;
		switch (tag) {
		case A_UOBJ: case A_GOBJ: case A_MASK: case A_OTHER:
			if (seen & tag)
				return -EINVAL;
			seen |= tag;
			if (tag == A_UOBJ) user = perm;
			if (tag == A_GOBJ) group = perm;
			if (tag == A_MASK) mask = perm;
			if (tag == A_OTHER) other = perm;
			break;
		case A_USER: case A_GROUP:
			if (id == UINT32_MAX || (tag == last && id <= last_id))
				return -EINVAL;
			last_id = id;
			named++;
			break;
		default:
			return -EINVAL;
		}
		last = tag;
	}
	if ((seen & (A_UOBJ | A_GOBJ | A_OTHER)) != (A_UOBJ | A_GOBJ | A_OTHER))
		return -EINVAL;
	if (named && !(seen & A_MASK))
		return -EINVAL;
	*extended = named || (seen & A_MASK);
	*bits = (mode_t)(user << 6 | ((seen & A_MASK) ? mask : group) << 3 | other);
	return 0;
}

static size_t put_ace(uint8_t *b, size_t at, unsigned tag, unsigned perm, uint32_t id)
{
	uint8_t *e = b + at;
	e[0] = (uint8_t)tag; e[1] = (uint8_t)(tag >> 8);
	e[2] = (uint8_t)perm; e[3] = (uint8_t)(perm >> 8);
	e[4] = (uint8_t)id; e[5] = (uint8_t)(id >> 8); e[6] = (uint8_t)(id >> 16);
	e[7] = (uint8_t)(id >> 24);
	return at + 8;
}

/* An ACL value in b: valid ones, the empty one, and garbage (one defect
 * put into a valid one, or random bytes). */
static size_t gen_acl(struct in *in, uint8_t *b)
{
	unsigned sel = U8(in), nu = U8(in) % 3, ng = U8(in) % 3, perms = U16(in);
	bool mask = nu || ng || (sel & 0x40);
	size_t at = 4;
	b[0] = 2; b[1] = b[2] = b[3] = 0;
	if (sel % 16 == 15) { /* random bytes */
		size_t len = U8(in) % 64;
		for (size_t i = 0; i < len; i++)
			b[i] = (uint8_t)U8(in);
		return len;
	}
	if (sel % 16 == 14)
		return 4; /* no entries: "no ACL" */
	at = put_ace(b, at, A_UOBJ, perms & 7, UINT32_MAX);
	for (unsigned i = 0; i < nu; i++)
		at = put_ace(b, at, A_USER, (perms >> 3) & 7, 1000 + i * 3);
	at = put_ace(b, at, A_GOBJ, (perms >> 6) & 7, UINT32_MAX);
	for (unsigned i = 0; i < ng; i++)
		at = put_ace(b, at, A_GROUP, (perms >> 9) & 7, 100 + i);
	if (mask)
		at = put_ace(b, at, A_MASK, (perms >> 12) & 7, UINT32_MAX);
	at = put_ace(b, at, A_OTHER, (sel >> 3) & 7, UINT32_MAX);
	size_t nent = (at - 4) / 8;
	unsigned k = U8(in) % nent;
	switch (sel % 16) {
	case 0: b[0] = 1; break;                      /* version 1 */
	case 1: b[at++] = 0; break;                   /* a stray byte */
	case 2: at -= 3; break;                       /* a cut entry */
	case 3: b[4 + 8 * k + 2] = 8; break;          /* perm 8 */
	case 4: b[4 + 8 * k] = 0x40; break;           /* unknown tag */
	case 5: memcpy(b + at, b + 4, 8); at += 8; break; /* USER_OBJ at the end */
	case 6: { /* two entries swapped */
		uint8_t t[8];
		unsigned j = (k + 1) % nent;
		memcpy(t, b + 4 + 8 * k, 8);
		memcpy(b + 4 + 8 * k, b + 4 + 8 * j, 8);
		memcpy(b + 4 + 8 * j, t, 8);
		break;
	}
	case 7: /* an entry dropped (the last: OTHER) */
		at -= 8;
		break;
	case 8: /* named user with the undefined id */
		if (nu)
			memset(b + 4 + 8 + 4, 0xff, 4);
		else
			b[0] = 3;
		break;
	default:
		break; /* valid */
	}
	return at;
}

static const char *const xnames[] = {
	"user.a", "user.b", "trusted.t", "security.s", THPFS_XATTR_ACL_ACCESS,
	THPFS_XATTR_ACL_DEFAULT, THPFS_XATTR_ACL_ACCESS, THPFS_XATTR_ACL_DEFAULT, "user.",
	"", "other.x", "system.posix_acl_other", "trusted.", NULL, "user.a",
};

static const char *gen_xname(struct in *in, char *buf)
{
	unsigned sel = U8(in);
	if (sel % 16 == 15) { /* 255 or 256 bytes */
		size_t len = 255 + (sel >> 7);
		memset(buf, 'z', len);
		memcpy(buf, "user.", 5);
		buf[len] = 0;
		return buf;
	}
	return xnames[sel % 16 % 15];
}

/* The name rules (include/thpfs.h; the bare prefix, which the header does
 * not name, is -EINVAL as in the code and Linux). */
static int xname_err(const char *name, bool *is_user, bool *is_acl)
{
	*is_user = *is_acl = false;
	if (!name)
		return -EINVAL;
	size_t len = strnlen(name, 257);
	if (!len || len > 255)
		return -ERANGE;
	if (!strcmp(name, THPFS_XATTR_ACL_ACCESS) || !strcmp(name, THPFS_XATTR_ACL_DEFAULT)) {
		*is_acl = true;
		return 0;
	}
	static const char *const pre[] = { "user.", "trusted.", "security." };
	for (int i = 0; i < 3; i++) {
		size_t pl = strlen(pre[i]);
		if (!strncmp(name, pre[i], pl)) {
			*is_user = i == 0;
			return len == pl ? -EINVAL : 0;
		}
	}
	return -EOPNOTSUPP;
}

static mode_t node_mode(struct mnode *n)
{
	struct stat st;
	CHECK(thpfs_getattr(fs, n->ino, &st) == 0, "getattr %" PRIu64, n->ino);
	return st.st_mode;
}

/* A new entry in dir gets dir's default ACL as tmpfs gives it: a directory
 * keeps it as its own default ACL, and any entry (not a symlink) an access
 * ACL when the default one says more than a mode (named entries or a
 * mask); its bytes are the default's masked with the creation mode, which
 * the model learns from the library and checks for size. */
static void inherit_acls(struct mnode *dir, struct mnode *n)
{
	struct mxattr *def = mx_find(dir, THPFS_XATTR_ACL_DEFAULT);
	if (!def || n->type == M_LNK)
		return;
	if (n->type == M_DIR)
		mx_set(n, THPFS_XATTR_ACL_DEFAULT, def->val, def->size);
	size_t nent;
	bool ext = false;
	mode_t bits;
	CHECK(acl_model_check(def->val, def->size, &nent, &ext, &bits) == 0,
	      "a stored default ACL the model calls invalid");
	ssize_t r = thpfs_getxattr_ino(fs, n->ino, THPFS_XATTR_ACL_ACCESS, iobuf, sizeof(iobuf));
	if (!ext) {
		CHECK(r == -ENODATA, "inherited access ACL of a minimal default ACL: %zd", r);
		return;
	}
	CHECK(r == (ssize_t)def->size, "inherited access ACL: %zd bytes, default %zu", r, def->size);
	mx_set(n, THPFS_XATTR_ACL_ACCESS, iobuf, (size_t)r);
}

static void op_mknod(struct in *in)
{
	mode_t mode = gen_mknod_mode(in);
	dev_t rdev = (dev_t)U32(in);
	const char *path = gen_path(in, 0);
	struct mnd nd;
	int e = m_walk(path, &nd);
	if (!e)
		e = mknod_mode_err(mode);
	if (!e)
		e = m_may_create(&nd);
	if (!e && nd.slash)
		e = -ENOENT;
	note("mknod '%.60s' %#o rdev %#jx", path, (unsigned)mode, (uintmax_t)rdev);
	int r = thpfs_mknod(fs, path, mode, rdev);
	check_errno(r, "mknod");
	if (r == -ENOSPC && !e)
		return;
	CHECK((r == 0) == (e == 0), "mknod('%.80s', %#o) = %d, model %d", path, (unsigned)mode, r, e);
	if (r)
		return;
	struct mnode *n = mknod_node(mode, rdev);
	d_add(nd.dir, nd.name, nd.len, n);
	learn_ino(n, path, NULL);
	inherit_acls(nd.dir, n);
	struct stat st;
	CHECK(thpfs_getattr(fs, n->ino, &st) == 0 && (st.st_mode & S_IFMT) == (mode_t)type_of(n) &&
	      st.st_rdev == n->rdev && (n->type != M_REG || st.st_size == 0),
	      "mknod('%.80s'): getattr type %#o rdev %#jx", path, (unsigned)st.st_mode,
	      (uintmax_t)st.st_rdev);
}

static void op_mknod_at(struct in *in)
{
	static char nbuf[THPFS_NAME_MAX + 2];
	struct mnode *dir = pick_node(in);
	const char *name = gen_name(in, nbuf);
	mode_t mode = gen_mknod_mode(in);
	dev_t rdev = (dev_t)U64(in);
	uint64_t pino = dir ? dir->ino : bogus_ino;
	struct mnd nd = { .dir = dir };
	int e = !dir ? -ENOENT : dir->type != M_DIR ? -ENOTDIR : name_err(name, &nd);
	if (!e)
		e = mknod_mode_err(mode);
	if (!e)
		e = nd.type != N_NORMAL ? -EEXIST : dir->removed ? -ENOENT :
		    d_find(dir, nd.name, nd.len) ? -EEXIST : 0;
	note("mknod_at(%" PRIu64 ", '%.40s', %#o, rdev %#jx)", pino, name ? name : "(null)",
	     (unsigned)mode, (uintmax_t)rdev);
	struct stat st;
	memset(&st, 0, sizeof(st));
	uid_t uid = 1000 + (uid_t)(rdev & 7);
	int r = thpfs_mknod_at(fs, pino, name, mode, rdev, uid, 100, &st);
	check_errno(r, "mknod_at");
	if (r == -ENOSPC && !e)
		return;
	CHECK((r == 0) == (e == 0), "mknod_at(%" PRIu64 ", '%.40s', %#o) = %d, model %d", pino,
	      name ? name : "(null)", (unsigned)mode, r, e);
	if (r)
		return;
	struct mnode *n = mknod_node(mode, rdev);
	d_add(dir, nd.name, nd.len, n);
	n->ino = st.st_ino;
	for (struct mnode *o = all_nodes; o; o = o->next_all)
		CHECK(o == n || !node_alive(o) || o->ino != n->ino, "new inode %" PRIu64
		      " reuses a live one", n->ino);
	CHECK((st.st_mode & S_IFMT) == (mode_t)type_of(n) && st.st_rdev == n->rdev &&
	      st.st_uid == uid && st.st_nlink == 1, "mknod_at: returned stat (mode %#o)",
	      (unsigned)st.st_mode);
	thpfs_forget(fs, n->ino, 1); /* the lookup reference the reply took */
	inherit_acls(dir, n);
}

static void op_xattr(struct in *in)
{
	static char xbuf[300];
	static uint8_t val[70000];
	unsigned sel = U8(in), what = sel % 4;
	bool by_path = sel & 4;
	struct mnode *n = NULL;
	const char *path = NULL;
	uint64_t ino;
	int te;
	if (by_path) {
		path = gen_path(in, 0);
		te = m_lookup(path, &n);
		ino = n ? n->ino : 0;
	} else {
		n = pick_node(in);
		te = n ? 0 : -ENOENT;
		ino = n ? n->ino : bogus_ino;
	}
	const char *name = what == 2 ? NULL : gen_xname(in, xbuf);
	bool is_user, is_acl;
	int ne = what == 2 ? 0 : xname_err(name, &is_user, &is_acl);
	bool regdir = n && (n->type == M_REG || n->type == M_DIR);
	struct mxattr *old = n && name && !ne ? mx_find(n, name) : NULL;
	mode_t mode_before = n && !te ? node_mode(n) : 0;
	char tgt[80];
	if (!by_path)
		snprintf(tgt, sizeof(tgt), "ino %" PRIu64, ino);
	else
		snprintf(tgt, sizeof(tgt), "'%.60s'", path);

	if (what == 0 || what == 2) { /* getxattr, listxattr */
		unsigned ssel = U8(in);
		size_t need = 0;
		if (what == 0)
			need = old ? old->size : 0;
		else if (n && !te)
			for (struct mxattr *x = n->xattrs; x; x = x->next)
				need += strlen(x->name) + 1;
		size_t size = ssel % 4 == 0 ? 0 : ssel % 4 == 1 ? sizeof(val) : ssel % 4 == 2 ? need :
			      need ? need - 1 : 0;
		void *buf = (ssel & 0x80) ? NULL : val;
		int e = size && !buf ? -EINVAL : ne ? ne : te;
		if (!e && what == 0 && is_user && !regdir)
			e = -ENODATA;
		if (!e && what == 0 && !old)
			e = -ENODATA;
		if (!e && size && size < need)
			e = -ERANGE;
		note("%sxattr %s '%.40s' size %zu", what ? "list" : "get", tgt, name ? name : "(null)",
		     size);
		ssize_t r = what == 0 ? (by_path ? thpfs_getxattr(fs, path, name, buf, size)
						 : thpfs_getxattr_ino(fs, ino, name, buf, size))
				      : (by_path ? thpfs_listxattr(fs, path, buf, size)
						 : thpfs_listxattr_ino(fs, ino, buf, size));
		check_errno(r, "getxattr");
		CHECK(e ? r == e : r == (ssize_t)need, "%sxattr(%s, '%.40s', %zu) = %zd, model %d/%zu",
		      what ? "list" : "get", tgt, name ? name : "(null)", size, r, e, need);
		if (!e && size && what == 0)
			CHECK(!memcmp(val, old->val, need), "getxattr(%s, '%.40s'): other bytes", tgt,
			      name);
		if (!e && size && what == 2) {
			size_t at = 0;
			for (struct mxattr *x = n->xattrs; x; x = x->next) {
				CHECK(!strcmp((char *)val + at, x->name), "listxattr(%s): '%.40s', model '%.40s'",
				      tgt, (char *)val + at, x->name);
				at += strlen(x->name) + 1;
			}
		}
		return;
	}
	if (what == 3) { /* removexattr */
		int e = ne ? ne : te;
		if (!e && is_user && !regdir)
			e = -EPERM;
		if (!e && !old)
			e = -ENODATA;
		note("removexattr %s '%.40s'", tgt, name ? name : "(null)");
		int r = by_path ? thpfs_removexattr(fs, path, name) : thpfs_removexattr_ino(fs, ino, name);
		check_errno(r, "removexattr");
		CHECK(r == e, "removexattr(%s, '%.40s') = %d, model %d", tgt, name ? name : "(null)", r, e);
		if (!r)
			mx_remove(n, name);
		if (n && !te) {
			verify_xattrs(n, "removexattr");
			CHECK(node_mode(n) == mode_before, "removexattr changed the mode");
		}
		return;
	}
	/* setxattr */
	static const int flagset[] = { 0, 0, THPFS_XATTR_CREATE, THPFS_XATTR_REPLACE,
				       THPFS_XATTR_CREATE | THPFS_XATTR_REPLACE, THPFS_XATTR_KILL_SGID,
				       0x8, THPFS_XATTR_REPLACE | THPFS_XATTR_KILL_SGID };
	unsigned vsel = U8(in);
	int flags = flagset[vsel % 8];
	size_t size;
	const void *value = val;
	if (is_acl && !(vsel & 0x80)) {
		size = gen_acl(in, val);
	} else {
		static const size_t sizes[] = { 0, 1, 7, 64, 300, 4096, 65536, 65537 };
		size = sizes[(vsel >> 3) % 8];
		fill(val, size, U8(in));
		if (!size && (vsel & 0x40))
			value = NULL;
	}
	if (size && (vsel & 0x40) && (vsel & 0x80) && (vsel & 0x38) == 0x38)
		value = NULL; /* size without a value */
	int e = (flags & ~7) || (flags & 3) == 3 || (size && !value) ? -EINVAL : ne;
	if (!e && size > 65536)
		e = -E2BIG;
	if (!e)
		e = te;
	if (!e && is_user && !regdir)
		e = -EPERM;
	bool store = true, remove = false, may_nospc = false, mode_change = false;
	mode_t bits = 0;
	if (!e && is_acl) {
		size_t nent = 0;
		bool ext = false;
		bool access = !strcmp(name, THPFS_XATTR_ACL_ACCESS);
		e = acl_model_check(value ? value : (const void *)"", size, &nent, &ext, &bits);
		if (!e && !nent) { /* "no ACL": a removal */
			store = false;
			e = old && (flags & THPFS_XATTR_CREATE) ? -EEXIST :
			    !old && (flags & THPFS_XATTR_REPLACE) ? -ENODATA : 0;
			remove = old && !e;
		} else if (!e && n->type == M_LNK) {
			e = -EOPNOTSUPP;
		} else if (!e && !access && n->type != M_DIR) {
			e = -EACCES;
		} else if (!e && access && !ext) { /* the mode says it all: not stored */
			store = false;
			e = old && (flags & THPFS_XATTR_CREATE) ? -EEXIST :
			    !old && (flags & THPFS_XATTR_REPLACE) ? -ENODATA : 0;
			remove = old && !e;
			mode_change = !e;
		} else if (!e) {
			mode_change = access;
		}
	}
	if (!e && store) {
		e = old && (flags & THPFS_XATTR_CREATE) ? -EEXIST :
		    !old && (flags & THPFS_XATTR_REPLACE) ? -ENODATA : 0;
		may_nospc = ispace_limit;
	}
	note("setxattr %s '%.40s' %zu bytes%s flags %#x", tgt, name ? name : "(null)", size,
	     value ? "" : " (NULL)", flags);
	int r = by_path ? thpfs_setxattr(fs, path, name, value, size, flags)
			: thpfs_setxattr_ino(fs, ino, name, value, size, flags);
	check_errno(r, "setxattr");
	if (!(r == -ENOSPC && !e && may_nospc))
		CHECK(r == e, "setxattr(%s, '%.40s', %zu bytes, %#x) = %d, model %d", tgt,
		      name ? name : "(null)", size, flags, r, e);
	if (!r) {
		if (store)
			mx_set(n, name, value, size);
		else if (remove)
			mx_remove(n, name);
	}
	if (n && !te) {
		verify_xattrs(n, r ? "failed setxattr" : "setxattr");
		mode_t m = node_mode(n);
		if (!r && mode_change)
			CHECK((m & 0777) == bits && (m & ~(mode_t)(0777 | S_ISGID)) ==
			      (mode_before & ~(mode_t)(0777 | S_ISGID)) &&
			      (!(flags & THPFS_XATTR_KILL_SGID) || !(m & S_ISGID)),
			      "access ACL set: mode %#o, ACL bits %#o, before %#o", (unsigned)m,
			      (unsigned)bits, (unsigned)mode_before);
		else
			CHECK(m == mode_before, "setxattr %s changed the mode %#o -> %#o",
			      r ? "that failed" : "of no access ACL", (unsigned)mode_before, (unsigned)m);
	}
}

/* ---- mappings ---- */

#define NMAPS 4
static struct mnode *maps[NMAPS];
static int nmaps;

static bool pinned_in(struct mnode *n, uint64_t start, uint64_t len)
{
	for (int i = 0; i < NHANDLES; i++)
		if (handles[i].f && handles[i].node == n)
			for (int k = 0; k < handles[i].npins; k++)
				if (handles[i].pins[k].off >= start && handles[i].pins[k].off - start < len)
					return true;
	return false;
}

/* pread on a node through a handle of its own (the model's byte check). */
static void check_node_range(struct mnode *n, int64_t off, uint64_t len, const char *why)
{
	struct thpfs_file *f;
	CHECK(thpfs_open_ino(fs, n->ino, O_RDONLY, &f) == 0, "open_ino %" PRIu64, n->ino);
	struct handle h = { .f = f, .node = n, .flags = O_RDONLY };
	check_range(&h, off, len, why);
	CHECK(thpfs_close(f) == 0, "close");
}

static void op_mmap(struct in *in, struct handle *h)
{
	struct mnode *n = h->node;
	unsigned sel = U8(in), asel = U8(in);
	int64_t off = sel % 4 == 3 ? gen_off(in, n->type == M_REG ? n->size : 0)
				   : (int64_t)(U8(in) % 8 * HPG);
	size_t len;
	switch ((sel >> 2) % 12) {
	case 0: len = 0; break;
	case 1: len = HPG + PG; break;
	case 2: len = (size_t)U16(in) * HPG; break;
	case 3: len = THPFS_MAX_FILE_SIZE; break;
	case 4: len = SIZE_MAX & ~(HPG - 1); break;
	default: len = (1 + (sel >> 6)) * HPG; break;
	}
	/* where: thpfs chooses; a reservation of ours (aligned or not); no
	 * out pointer at all */
	uint8_t *resv = NULL;
	size_t resv_len = 0;
	void *addr = NULL;
	bool fixed = asel % 4 == 1 || asel % 4 == 2;
	if (fixed && len <= 64 * HPG) {
		resv_len = len + HPG;
		resv = mmap(NULL, resv_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		CHECK(resv != MAP_FAILED, "reservation mmap");
		addr = (void *)(((uintptr_t)resv + HPG - 1) & ~(uintptr_t)(HPG - 1));
		if (asel % 4 == 2)
			addr = (uint8_t *)addr + PG;
	} else {
		fixed = false;
	}
	void *want = addr;
	note("mmap(%" PRId64 ", %zu, %p%s)", off, len, addr, asel % 4 == 3 ? ", no addr" : "");
	int r = thpfs_mmap(h->f, off, len, asel % 4 == 3 ? NULL : &addr);
	check_errno(r, "mmap");
	int e = 0;
	if (asel % 4 == 3)
		e = -EINVAL;
	else if (n->type != M_REG)
		e = -ENODEV; /* the header says "a regular file"; the code's errno */
	else if ((h->flags & O_ACCMODE) != O_RDWR)
		e = -EACCES;
	else if (off < 0 || !len || (((uint64_t)off | len | (uintptr_t)want) & (HPG - 1)))
		e = -EINVAL;
	else if (len > (uint64_t)MAXF || (uint64_t)off > (uint64_t)MAXF - len)
		e = -ENXIO;
	else if (n->map_len)
		e = -EBUSY;
	else if ((uint64_t)off + len > n->size)
		e = -ENXIO;
	else if (pinned_in(n, (uint64_t)off, len))
		e = -EBUSY;
	else if (nmaps == NMAPS)
		e = 1; /* the fuzzer keeps at most NMAPS: any result */
	if (e == 1 || (r == -ENOMEM && !e && len > 512 * HPG)) {
		/* a view of more than 1 GiB may not get address space */
		if (!r)
			CHECK(thpfs_munmap(h->f, addr, len) == 0, "munmap of an extra view");
		if (resv)
			munmap(resv, resv_len);
		return;
	}
	CHECK(r == e, "mmap(%" PRId64 ", %zu) = %d, model %d", off, len, r, e);
	if (resv && r) {
		munmap(resv, resv_len);
	} else if (resv) { /* the view replaced the middle of the reservation */
		uint8_t *a = addr;
		if (a > resv)
			munmap(resv, (size_t)(a - resv));
		if (resv + resv_len > a + len)
			munmap(a + len, (size_t)(resv + resv_len - (a + len)));
	}
	if (r || e)
		return;
	CHECK(!((uintptr_t)addr & (HPG - 1)) && (!fixed || addr == want), "mmap address %p (asked %p)",
	      addr, want);
	n->map_addr = addr;
	n->map_off = (uint64_t)off;
	n->map_len = len;
	n->opens++;
	maps[nmaps++] = n;
	size_t k = len < IO_MAX ? len : IO_MAX;
	model_read(n, (uint64_t)off, k, modelbuf);
	CHECK(!memcmp(addr, modelbuf, k), "bytes of a new view differ from the model");
	model_read(n, (uint64_t)off + len - k, k, modelbuf);
	CHECK(!memcmp((uint8_t *)addr + len - k, modelbuf, k), "end of a new view differs");
}

static void drop_map(struct mnode *n)
{
	for (int i = 0; i < nmaps; i++)
		if (maps[i] == n)
			maps[i] = maps[--nmaps];
	n->map_len = 0;
	n->map_addr = NULL;
	n->opens--;
}

static void op_munmap(struct in *in, struct handle *h)
{
	unsigned sel = U8(in);
	struct mnode *m = nmaps ? maps[U8(in) % nmaps] : NULL;
	uintptr_t a = m ? (uintptr_t)m->map_addr : 0;
	size_t len = m ? m->map_len : HPG;
	switch (sel % 8) {
	case 0: len += HPG; break;
	case 1: a += HPG; break;
	case 2: a = 0; break;
	default: break;
	}
	void *addr = (void *)a;
	struct thpfs_file *f = h->f, *tmp = NULL;
	struct mnode *hn = h->node;
	if (m && (sel & 0x80)) { /* through another handle of the file, read-only */
		CHECK(thpfs_open_ino(fs, m->ino, O_RDONLY, &tmp) == 0, "open_ino");
		f = tmp;
		hn = m;
	}
	int e = hn->type != M_REG ? -EINVAL : !hn->map_len || hn->map_addr != addr ||
		hn->map_len != len ? -EINVAL : pinned_in(hn, hn->map_off, hn->map_len) ? -EBUSY : 0;
	note("munmap(%p, %zu) of ino %" PRIu64, addr, len, hn->ino);
	int r = thpfs_munmap(f, addr, len);
	check_errno(r, "munmap");
	CHECK(r == e, "munmap(%p, %zu) = %d, model %d", addr, len, r, e);
	if (!r) {
		uint64_t start = hn->map_off, mlen = hn->map_len;
		drop_map(hn);
		if (node_alive(hn)) {
			check_node_range(hn, (int64_t)start, 8192, "after munmap");
			check_node_range(hn, (int64_t)(start + mlen) - 8192, 8192, "after munmap, end");
		}
	}
	if (tmp)
		CHECK(thpfs_close(tmp) == 0, "close");
}

/* A store (write) or load through a view, checked against the model. */
static void op_mstore(struct in *in, bool store)
{
	if (!nmaps)
		return;
	struct mnode *n = maps[U8(in) % nmaps];
	unsigned sel = U8(in);
	uint64_t pages = n->map_len / PG;
	uint64_t at = sel % 4 == 0 ? (U8(in) % (n->map_len / HPG)) * HPG + (int16_t)U16(in)
				   : (U32(in) % pages) * PG + U16(in) % PG;
	at = (at + n->map_len) % n->map_len;
	size_t len = gen_iolen(in);
	if (len > n->map_len - at)
		len = (size_t)(n->map_len - at);
	if (!len)
		return;
	uint8_t *p = n->map_addr + at;
	uint64_t off = n->map_off + at;
	if (store) {
		if (model_pages + len / PG + 2 > MODEL_PAGES_MAX)
			return;
		note("store %zu bytes at %" PRIu64 " through the view of ino %" PRIu64, len, off, n->ino);
		fill(iobuf, len, sel);
		memcpy(p, iobuf, len);
		model_write(n, off, iobuf, len);
		check_node_range(n, (int64_t)off - 100, len + 200, "store through the view");
	} else {
		note("load %zu bytes at %" PRIu64 " through the view of ino %" PRIu64, len, off, n->ino);
		model_read(n, off, len, modelbuf);
		for (size_t i = 0; i < len; i++)
			CHECK(p[i] == modelbuf[i], "view of ino %" PRIu64 " byte %" PRIu64 " is %#x, model %#x",
			      n->ino, off + i, p[i], modelbuf[i]);
	}
}

struct direct_ctx {
	struct mnode *n;
	uint64_t off;
	int calls;
	size_t len;
	int ret;
};

static int direct_actor(void *ctx, const void *data, size_t len)
{
	struct direct_ctx *c = ctx;
	c->calls++;
	c->len = len;
	for (size_t done = 0; done < len;) {
		size_t k = len - done < IO_MAX ? len - done : IO_MAX;
		model_read(c->n, c->off + done, k, modelbuf);
		for (size_t i = 0; i < k; i++)
			CHECK(((const uint8_t *)data)[done + i] == modelbuf[i],
			      "pread_direct byte %" PRIu64 " is %#x, model %#x", c->off + done + i,
			      ((const uint8_t *)data)[done + i], modelbuf[i]);
		done += k;
	}
	return c->ret;
}

static void op_pread_direct(struct in *in, struct handle *h)
{
	struct mnode *n = h->node;
	int64_t off = gen_off(in, n->type == M_REG ? n->size : 0);
	unsigned sel = U8(in);
	size_t len = sel % 8 == 7 ? SIZE_MAX - U8(in) : sel % 8 == 6 ? HPG : gen_iolen(in);
	struct direct_ctx c = { .n = n, .off = (uint64_t)off, .ret = (sel & 0x10) ? -EIO : 0 };
	bool nofn = (sel & 0xe0) == 0xe0;
	note("pread_direct(%" PRId64 ", %zu)%s", off, len, nofn ? " no fn" : "");
	ssize_t r = thpfs_pread_direct(h->f, len, off, nofn ? NULL : direct_actor, &c);
	check_errno(r, "pread_direct");
	int e = 0;
	if (!readable(h))
		e = -EBADF; /* include/thpfs.h: -EBADF on an O_WRONLY handle */
	else if (off < 0 || (ssize_t)len < 0 || nofn)
		e = -EINVAL;
	else if (n->type == M_DIR)
		e = -EISDIR;
	else if ((uint64_t)off >= n->size || !len)
		e = -ENODATA; /* len 0: the header is silent; the code says no run */
	size_t want = e ? 0 : (size_t)(n->size - (uint64_t)off < len ? n->size - (uint64_t)off : len);
	if (!e && (uint64_t)off / HPG != ((uint64_t)off + want - 1) / HPG)
		e = -ENODATA; /* two 2 MiB ranges are never one run */
	if (e) {
		CHECK(r == e && !c.calls, "pread_direct(%" PRId64 ", %zu) = %zd (%d calls), model %d",
		      off, len, r, c.calls, e);
		return;
	}
	if (r == -ENODATA) {
		CHECK(!c.calls, "pread_direct: -ENODATA after calling fn");
		/* Only a range with no memory may say so: a page holding a byte
		 * that is not zero has memory (a view's pages are learned
		 * later, so not there). */
		if (n->map_len)
			return;
		for (uint64_t p = (uint64_t)off / PG; p <= ((uint64_t)off + want - 1) / PG; p++) {
			struct mpage *mp = page_find(n, p);
			bool data = false;
			for (unsigned b = 0; mp && b < PG && !data; b++)
				data = mp->data[b] != 0;
			if (!data)
				return;
		}
		die("pread_direct(%" PRId64 ", %zu) = -ENODATA on pages that all hold data", off, len);
	}
	CHECK(c.calls == 1 && c.len == want && r == (c.ret ? c.ret : (ssize_t)want),
	      "pread_direct(%" PRId64 ", %zu) = %zd, %d calls of %zu bytes, model %zu", off, len, r,
	      c.calls, c.len, want);
}

/* chmod's effect on a stored access ACL (include/thpfs.h "chmod updates a
 * stored access ACL"): USER_OBJ, MASK (GROUP_OBJ without one) and OTHER
 * take the new permission bits. */
static void model_acl_chmod(struct mnode *n, mode_t mode)
{
	struct mxattr *x = mx_find(n, THPFS_XATTR_ACL_ACCESS);
	if (!x || x->size < 4)
		return;
	size_t cnt = (x->size - 4) / 8;
	bool has_mask = false;
	for (size_t i = 0; i < cnt; i++)
		has_mask |= (x->val[4 + 8 * i] | x->val[5 + 8 * i] << 8) == A_MASK;
	for (size_t i = 0; i < cnt; i++) {
		uint8_t *e = x->val + 4 + 8 * i;
		unsigned tag = e[0] | e[1] << 8, perm;
		if (tag == A_UOBJ)
			perm = (mode >> 6) & 7;
		else if (tag == A_MASK || (tag == A_GOBJ && !has_mask))
			perm = (mode >> 3) & 7;
		else if (tag == A_OTHER)
			perm = mode & 7;
		else
			continue;
		e[2] = (uint8_t)perm;
		e[3] = 0;
	}
}

static void op_setattr(struct in *in)
{
	struct mnode *n = pick_node(in);
	uint64_t ino = n ? n->ino : bogus_ino;
	unsigned sel = U8(in);
	int to_set = 0;
	struct stat attr;
	memset(&attr, 0, sizeof(attr));
	if (sel & 1)
		to_set |= THPFS_SET_MODE;
	if (sel & 2)
		to_set |= THPFS_SET_SIZE;
	if (sel & 4)
		to_set |= THPFS_SET_UID;
	if (sel & 8)
		to_set |= THPFS_SET_MTIME_NOW;
	if (sel & 0x10) {
		to_set |= THPFS_SET_MTIME;
		attr.st_mtim.tv_nsec = (sel & 0x20) ? 2000000000L : 5;
	}
	attr.st_mode = (mode_t)(U16(in) & 07777);
	attr.st_uid = 1000;
	attr.st_size = gen_off(in, n && n->type == M_REG ? n->size : 0);
	int e = 0;
	if (!n)
		e = -ENOENT;
	else if ((to_set & THPFS_SET_SIZE) && n->type == M_DIR)
		e = -EISDIR;
	else if ((to_set & THPFS_SET_SIZE) && (n->type != M_REG || attr.st_size < 0))
		e = -EINVAL;
	else if ((to_set & THPFS_SET_SIZE) && attr.st_size > MAXF)
		e = -EFBIG;
	else if ((to_set & THPFS_SET_MTIME) && !(to_set & THPFS_SET_MTIME_NOW) && (sel & 0x20))
		e = -EINVAL;
	else if ((to_set & THPFS_SET_SIZE) && n->map_len && (uint64_t)attr.st_size != n->size &&
		 (uint64_t)attr.st_size < n->map_off + n->map_len)
		e = -EBUSY; /* a size setattr below a view */
	mode_t before = n ? node_mode(n) : 0;
	note("setattr(ino %" PRIu64 ", %#x, mode %#o, size %" PRId64 ")", ino, to_set,
	     (unsigned)attr.st_mode, (int64_t)attr.st_size);
	struct stat out;
	int r = thpfs_setattr(fs, ino, &attr, to_set, &out);
	check_errno(r, "setattr");
	bool tolerated = !e && (to_set & THPFS_SET_SIZE) && (r == -ENOSPC || r == -ENOMEM);
	if (!tolerated)
		CHECK(r == e, "setattr(ino %" PRIu64 ", %#x, size %" PRId64 ") = %d, model %d", ino,
		      to_set, (int64_t)attr.st_size, r, e);
	if (!n)
		return;
	if (r) {
		CHECK(node_mode(n) == before, "failed setattr changed the mode");
		verify_xattrs(n, "failed setattr");
		if (n->type == M_REG)
			check_node_range(n, 0, 8192, "failed setattr");
		return;
	}
	if (to_set & THPFS_SET_SIZE)
		model_set_size(n, (uint64_t)attr.st_size);
	if (to_set & THPFS_SET_MODE) {
		model_acl_chmod(n, attr.st_mode);
		CHECK((node_mode(n) & 07777) == (attr.st_mode & 07777), "setattr mode %#o, asked %#o",
		      (unsigned)node_mode(n), (unsigned)attr.st_mode);
	}
	CHECK(out.st_ino == n->ino && (n->type != M_REG || (uint64_t)out.st_size == n->size),
	      "setattr: returned stat (size %" PRId64 ", model %" PRIu64 ")", (int64_t)out.st_size,
	      n->size);
	verify_xattrs(n, "setattr");
	if (n->type == M_REG && (to_set & THPFS_SET_SIZE))
		check_node_range(n, attr.st_size - 5000, 10000, "setattr size");
}

/* Data calls of the second table: 0..13 as op_data, then the new ones. */
static void op_data2(struct in *in, unsigned what)
{
	if (what < 14) {
		op_data(in, what);
		return;
	}
	if (what == 16 || what == 17) {
		op_mstore(in, what == 16);
		return;
	}
	struct handle *h = pick_handle(in);
	if (!h)
		return;
	switch (what) {
	case 14: op_mmap(in, h); break;
	case 15: op_munmap(in, h); break;
	default: op_pread_direct(in, h); break;
	}
}

/* ---- one input ---- */

static void mount_from(struct in *in)
{
	static const char *const sizes[] = { "256k", "1m", "2m", "3m", "4m", "8m", "16m", "5000k" };
	static const char *const huge[] = { "never", "always", "within_size", "advise" };
	static const char *const split[] = { "native", "migrate", "inplace" };
	static const char *const ptes[] = { "0", "0", "1", "64", "511" };
	static const char *const inodes[] = { "0", "0", "8", "64" };
	unsigned a = U8(in), b = U8(in);
	char opts[256];
	snprintf(opts, sizeof(opts),
		 "size=%s,huge=%s,split=%s,collapse=%s,scan_sleep_ms=%u,max_ptes_none=%s,nr_inodes=%s",
		 sizes[a % 8], huge[(a >> 3) % 4], split[(a >> 5) % 3], (b & 1) ? "on" : "off",
		 (b & 2) ? 1 : 20, ptes[(b >> 2) % 5], inodes[(b >> 5) % 4]);
	v2 = b & 0x80; /* a bit the options above leave unused */
	ispace_limit = (b >> 5) % 4 >= 2;
	note("mount %s%s", opts, v2 ? " (opcode table 2)" : "");
	int r = thpfs_mount(&fs, opts);
	CHECK(r == 0, "mount(%s) = %d", opts, r);
	fs_full_ok = true;
}

static void model_reset(void)
{
	while (all_nodes) {
		struct mnode *n = all_nodes;
		all_nodes = n->next_all;
		while (n->children) {
			struct mdent *d = n->children;
			n->children = d->next;
			free(d->name);
			free(d);
		}
		for (size_t i = 0; i < n->npages; i++)
			free(n->pages[i].data);
		free(n->pages);
		free(n->target);
		mx_free_all(n);
		free(n);
	}
	model_pages = 0;
	root = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };

	memset(trace, 0, sizeof(trace));
	memset(handles, 0, sizeof(handles));
	nstale = 0;
	nops = 0;
	mount_from(&in);
	root = node_new(M_DIR);
	root->parent = root;
	root->ino = THPFS_ROOT_INO;

	while (in.n && nops < MAX_OPS) {
		nops++;
		trace[nops % 64][0] = 0;
		unsigned op = U8(&in);
		if (v2) {
			/* 0..13 as below; 14 mknod, 15 mknod_at, 16 xattrs,
			 * 17 setattr, 18..31 the 19 data calls of op_data2 */
			switch (op % 32) {
			case 0: case 1: op_open(&in); break;
			case 2: op_close(&in); break;
			case 3: op_mkdir(&in); break;
			case 4: op_rmdir(&in); break;
			case 5: op_unlink(&in); break;
			case 6: op_rename(&in); break;
			case 7: op_link(&in); break;
			case 8: op_symlink(&in); break;
			case 9: op_readlink(&in); break;
			case 10: op_stat(&in); break;
			case 11: op_readdir(&in); break;
			case 12: op_stale(&in); break;
			case 13: op_reclaim(&in); break;
			case 14: op_mknod(&in); break;
			case 15: op_mknod_at(&in); break;
			case 16: op_xattr(&in); break;
			case 17: op_setattr(&in); break;
			default: op_data2(&in, (op % 32 - 18 + 14 * (op / 32)) % 19); break;
			}
			if (nops % VERIFY_EVERY == 0)
				verify_all();
			continue;
		}
		switch (op % 24) {
		case 0: case 1: op_open(&in); break;
		case 2: op_close(&in); break;
		case 3: op_mkdir(&in); break;
		case 4: op_rmdir(&in); break;
		case 5: op_unlink(&in); break;
		case 6: op_rename(&in); break;
		case 7: op_link(&in); break;
		case 8: op_symlink(&in); break;
		case 9: op_readlink(&in); break;
		case 10: op_stat(&in); break;
		case 11: op_readdir(&in); break;
		case 12: op_stale(&in); break;
		case 13: op_reclaim(&in); break;
		default: op_data(&in, op / 24 % 14 == 13 ? 13 : (op % 24 - 14 + op / 24) % 14); break;
		}
		if (nops % VERIFY_EVERY == 0)
			verify_all();
	}
	nops++;
	note("final check");
	verify_all();
	for (int i = 0; i < NHANDLES; i++)
		if (handles[i].f)
			close_handle(&handles[i]);
	if (nmaps) {
		/* a view keeps the mount busy; any handle of the file ends it */
		int u = thpfs_unmount(fs);
		CHECK(u == -EBUSY, "unmount with %d views = %d", nmaps, u);
		while (nmaps) {
			struct mnode *n = maps[0];
			struct thpfs_file *f;
			CHECK(thpfs_open_ino(fs, n->ino, O_RDONLY, &f) == 0, "open_ino of a viewed file");
			u = thpfs_munmap(f, n->map_addr, n->map_len);
			CHECK(u == 0, "final munmap = %d", u);
			drop_map(n);
			CHECK(thpfs_close(f) == 0, "close");
		}
	}
	struct thpfs_stats st;
	CHECK(thpfs_get_stats(fs, &st) == 0 && st.pinned_pages == 0,
	      "pinned_pages %" PRIu64 " after every pin was dropped", st.pinned_pages);
	int r = thpfs_unmount(fs);
	CHECK(r == 0, "unmount = %d", r);
	fs = NULL;
	model_reset();
	return 0;
}
