/*
 * index.c - the page-cache index: a radix tree from chunk index (file offset
 * >> 21) to struct thpfs_chunk.
 *
 * Each node has 64 slots (6 bits of the key); the tree grows in height as
 * larger keys arrive and shrinks back when the top node only uses slot 0, so
 * a file of a few pages costs one or two nodes (~520 bytes each) whatever its
 * size.  Lookup, insert and remove walk `height` nodes: O(log64 n) with
 * n <= 2^25 for the largest file, so at most five levels.
 *
 * The caller holds inode->lock: for reading around lookups and walks, for
 * writing around inserts and removes.
 */
#include "internal.h"

#include <stdlib.h>

#define IX_BITS 6
#define IX_SLOTS (1u << IX_BITS)
#define IX_MASK (IX_SLOTS - 1)
#define IX_MAX_HEIGHT 6

struct ix_node {
	void *slot[IX_SLOTS];
	unsigned used;
};

void _thpfs_index_init(struct thpfs_index *ix)
{
	memset(ix, 0, sizeof(*ix));
}

/* Number of keys a tree of height h covers. */
static uint64_t ix_span(unsigned h)
{
	return h >= IX_MAX_HEIGHT ? UINT64_MAX : 1ULL << (IX_BITS * h);
}

static unsigned ix_slot(uint64_t key, unsigned level)
{
	return (unsigned)(key >> (IX_BITS * level)) & IX_MASK;
}

struct thpfs_chunk *_thpfs_index_lookup(const struct thpfs_index *ix, uint64_t key)
{
	if (!ix->height || key >= ix_span(ix->height))
		return NULL;
	void *p = ix->root;
	for (unsigned level = ix->height; p && level > 0; level--)
		p = ((struct ix_node *)p)->slot[ix_slot(key, level - 1)];
	return p;
}

int _thpfs_index_insert(struct thpfs_index *ix, uint64_t key, struct thpfs_chunk *c)
{
	/* Grow until the key fits: the old root becomes slot 0 of a new one. */
	while (!ix->height || key >= ix_span(ix->height)) {
		if (ix->height == IX_MAX_HEIGHT)
			return -EFBIG;
		struct ix_node *n = calloc(1, sizeof(*n));
		if (!n)
			return -ENOMEM;
		ix->nodes++;
		if (ix->root) {
			n->slot[0] = ix->root;
			n->used = 1;
		}
		ix->root = n;
		ix->height++;
	}
	struct ix_node *n = ix->root;
	for (unsigned level = ix->height; level > 1; level--) {
		unsigned s = ix_slot(key, level - 1);
		if (!n->slot[s]) {
			struct ix_node *child = calloc(1, sizeof(*child));
			if (!child)
				return -ENOMEM; /* empty nodes left behind are harmless */
			ix->nodes++;
			n->slot[s] = child;
			n->used++;
		}
		n = n->slot[s];
	}
	unsigned s = ix_slot(key, 0);
	if (!n->slot[s]) {
		n->used++;
		ix->count++;
	}
	n->slot[s] = c;
	return 0;
}

void _thpfs_index_remove(struct thpfs_index *ix, uint64_t key)
{
	if (!ix->height || key >= ix_span(ix->height))
		return;
	struct ix_node *path[IX_MAX_HEIGHT];
	struct ix_node *n = ix->root;
	unsigned level;
	for (level = ix->height; level > 1; level--) {
		path[level - 1] = n;
		n = n->slot[ix_slot(key, level - 1)];
		if (!n)
			return;
	}
	path[0] = n;
	unsigned s = ix_slot(key, 0);
	if (!n->slot[s])
		return;
	n->slot[s] = NULL;
	n->used--;
	ix->count--;
	/* Free nodes that became empty, bottom up. */
	for (level = 0; level < ix->height && path[level]->used == 0; level++) {
		free(path[level]);
		ix->nodes--;
		if (level + 1 < ix->height) {
			struct ix_node *parent = path[level + 1];
			parent->slot[ix_slot(key, level + 1)] = NULL;
			parent->used--;
		} else {
			ix->root = NULL;
			ix->height = 0;
			return;
		}
	}
	/* Shrink while the root only uses slot 0. */
	while (ix->height > 1) {
		struct ix_node *r = ix->root;
		if (r->used != 1 || !r->slot[0])
			break;
		ix->root = r->slot[0];
		free(r);
		ix->nodes--;
		ix->height--;
	}
}

/* First chunk with key >= *key below node n at level (n covers 64^level). */
static struct thpfs_chunk *ix_next(const struct ix_node *n, unsigned level, uint64_t base,
				   uint64_t key)
{
	uint64_t step = 1ULL << (IX_BITS * (level - 1));
	unsigned s = key > base ? (unsigned)((key - base) / step) : 0;
	for (; s < IX_SLOTS; s++) {
		void *p = n->slot[s];
		if (!p)
			continue;
		uint64_t sbase = base + s * step;
		if (level == 1)
			return p;
		struct thpfs_chunk *c = ix_next(p, level - 1, sbase, key > sbase ? key : sbase);
		if (c)
			return c;
	}
	return NULL;
}

struct thpfs_chunk *_thpfs_index_next(const struct thpfs_index *ix, uint64_t key)
{
	if (!ix->height || key >= ix_span(ix->height))
		return NULL;
	return ix_next(ix->root, ix->height, 0, key);
}

static void ix_free(struct ix_node *n, unsigned level)
{
	if (level > 1)
		for (unsigned s = 0; s < IX_SLOTS; s++)
			if (n->slot[s])
				ix_free(n->slot[s], level - 1);
	free(n);
}

void _thpfs_index_destroy(struct thpfs_index *ix)
{
	if (ix->root)
		ix_free(ix->root, ix->height);
	_thpfs_index_init(ix);
}

uint64_t _thpfs_index_bytes(const struct thpfs_index *ix)
{
	return ix->nodes * sizeof(struct ix_node);
}
