/*
 * trace.c - reads a recorded balloon request stream (thpfs-balloon --trace):
 * the "thpfs-vm-trace v1" text format guest/run-vm.py writes from QEMU's
 * trace events, or QEMU's raw log lines themselves.  See balloon.h for the
 * events and docs/balloon.md for the format.
 */
#define _GNU_SOURCE
#include "balloon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int trace_push(struct bl_trace *t, uint8_t kind, uint32_t pfn, uint32_t npages)
{
	if (t->nev == t->cap) {
		uint64_t cap = t->cap ? t->cap * 2 : 4096;
		struct bl_trace_ev *ev = realloc(t->ev, sizeof(*ev) * cap);

		if (!ev)
			return -ENOMEM;
		t->ev = ev;
		t->cap = cap;
	}
	t->ev[t->nev++] = (struct bl_trace_ev){ .kind = kind, .pfn = pfn, .npages = npages };
	return 0;
}

/* Parses one number in C notation (0x for hex); -EINVAL for junk. */
static int parse_num(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);

	if (errno || end == s || (*end && *end != '\n' && *end != ' ' && *end != ':'))
		return -EINVAL;
	*out = v;
	return 0;
}

/* One discard of [off, off+len) of guest RAM: a 4 KiB page, or a reported
 * block (2 MiB aligned, a multiple of 2 MiB). */
static int trace_discard(struct bl_trace *t, uint64_t off, uint64_t len, char *err, size_t errlen,
			 unsigned line)
{
	if (off + len > t->ram || off + len < off) {
		snprintf(err, errlen, "line %u: discard 0x%llx+0x%llx is outside guest RAM "
			 "(0x%llx bytes)", line, (unsigned long long)off, (unsigned long long)len,
			 (unsigned long long)t->ram);
		return -ERANGE;
	}
	if (len == BL_PAGE_SIZE && !(off % BL_PAGE_SIZE)) {
		t->pages++;
		return trace_push(t, BL_TR_PAGE, (uint32_t)(off >> BL_PAGE_SHIFT), 1);
	}
	if (len >= BL_HUGE_SIZE && !(off % BL_HUGE_SIZE) && !(len % BL_HUGE_SIZE)) {
		t->blocks++;
		t->block_pages += len >> BL_PAGE_SHIFT;
		return trace_push(t, BL_TR_BLOCK, (uint32_t)(off >> BL_PAGE_SHIFT),
				  (uint32_t)(len >> BL_PAGE_SHIFT));
	}
	t->ignored++;
	return 0;
}

/* QEMU's own log lines (-trace events=... -D FILE): "virtqueue_pop" starts a
 * request, "virtio_balloon_handle_output ... gpa: 0x..." is one ballooned
 * page (guest physical address = offset into RAM below 3 GiB),
 * "virtio_balloon_to_target ... num_pages: N" a new target.  Other lines
 * (ram_block_discard_range names host addresses) are skipped. */
static int trace_raw_line(struct bl_trace *t, const char *ln, char *err, size_t errlen,
			  unsigned line)
{
	const char *p;
	uint64_t v;

	if (strstr(ln, "virtqueue_pop")) {
		t->reqs++;
		return trace_push(t, BL_TR_REQ, 0, 0);
	}
	if ((p = strstr(ln, "virtio_balloon_handle_output")) && (p = strstr(p, "gpa: "))) {
		if (parse_num(p + 5, &v))
			goto bad;
		return trace_discard(t, v, BL_PAGE_SIZE, err, errlen, line);
	}
	if ((p = strstr(ln, "virtio_balloon_to_target")) && (p = strstr(p, "num_pages: "))) {
		if (parse_num(p + 11, &v))
			goto bad;
		t->targets++;
		return trace_push(t, BL_TR_TARGET, 0, (uint32_t)v);
	}
	return 0;
bad:
	snprintf(err, errlen, "line %u: cannot read the number in '%.60s'", line, ln);
	return -EINVAL;
}

static int trace_v1_line(struct bl_trace *t, char *ln, char *err, size_t errlen, unsigned line)
{
	char *save = NULL, *w = strtok_r(ln, " \t\n", &save);
	char *a = strtok_r(NULL, " \t\n", &save), *b = strtok_r(NULL, " \t\n", &save);
	uint64_t x = 0, y = 0;

	if (!w || *w == '#')
		return 0;
	if (!strcmp(w, "req")) {
		t->reqs++;
		return trace_push(t, BL_TR_REQ, 0, 0);
	}
	if (!strcmp(w, "d")) {
		if (parse_num(a, &x) || parse_num(b, &y))
			goto bad;
		return trace_discard(t, x, y, err, errlen, line);
	}
	if (!strcmp(w, "inflate") || !strcmp(w, "deflate")) {
		if (parse_num(a, &x))
			goto bad;
		t->targets++;
		return trace_push(t, BL_TR_TARGET, 0, (uint32_t)(x >> BL_PAGE_SHIFT));
	}
	if (!strcmp(w, "ram")) {
		if (parse_num(a, &x) || !x || x % BL_HUGE_SIZE)
			goto bad;
		if (t->nev) {
			snprintf(err, errlen, "line %u: 'ram' after the first request", line);
			return -EINVAL;
		}
		t->ram = x;
		return 0;
	}
bad:
	snprintf(err, errlen, "line %u: not a thpfs-vm-trace v1 line", line);
	return -EINVAL;
}

int bl_trace_load(struct bl_trace *t, const char *path, uint64_t ram, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char ln[512];
	unsigned line = 0;
	bool decided = false;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	t->ram = ram;
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	while (!rc && fgets(ln, sizeof(ln), f)) {
		line++;
		if (ln[0] == '#' || ln[0] == '\n')
			continue;
		if (!decided) {
			/* QEMU's raw log, or the v1 text */
			t->raw = strstr(ln, "virtqueue_pop") || strstr(ln, "virtio_balloon") ||
				 strstr(ln, "ram_block_discard_range");
			decided = true;
		}
		if (!t->ram && (t->raw || strncmp(ln, "ram ", 4))) {
			snprintf(err, errlen, "line %u: guest RAM size unknown (no 'ram' line "
				 "first; give --size)", line);
			rc = -EINVAL;
			break;
		}
		rc = t->raw ? trace_raw_line(t, ln, err, errlen, line)
			    : trace_v1_line(t, ln, err, errlen, line);
	}
	if (!rc && ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", path);
	}
	fclose(f);
	if (!rc && !t->pages && !t->blocks) {
		snprintf(err, errlen, "%s: no discard of guest RAM in it", path);
		rc = -ENODATA;
	}
	if (!rc && (t->ram >> BL_PAGE_SHIFT) >= BL_NIL) {
		snprintf(err, errlen, "%s: guest RAM too large", path);
		rc = -ERANGE;
	}
	if (rc)
		bl_trace_destroy(t);
	return rc;
}

void bl_trace_destroy(struct bl_trace *t)
{
	free(t->ev);
	t->ev = NULL;
	t->nev = t->cap = 0;
}
