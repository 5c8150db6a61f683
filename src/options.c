/*
 * options.c - mount option parsing for libthpfs.
 *
 * The option string is tmpfs-style: "key=value" items separated by commas.
 * Empty items are skipped (as the kernel's monolithic parser does), a later
 * item overrides an earlier one, and anything else that is not understood
 * fails the whole mount with -EINVAL and a message naming the option.
 * Numbers are decimal; sizes take a binary suffix (k, m, g, t) or a percent of
 * physical RAM.  The parser never allocates and never prints.
 */
#include "internal.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

/* A piece of the option string: not NUL-terminated. */
struct opt_span {
	const char *s;
	size_t len;
};

static bool span_is(struct opt_span sp, const char *word)
{
	size_t n = strlen(word);

	return sp.len == n && memcmp(sp.s, word, n) == 0;
}

/* Bytes of physical RAM (0 if the system will not say). */
static uint64_t phys_ram_bytes(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long psize = sysconf(_SC_PAGESIZE);

	if (pages <= 0 || psize <= 0)
		return 0;
	return (uint64_t)pages * (uint64_t)psize;
}

/* Pages of physical RAM counted in 4 KiB units. */
static uint64_t phys_ram_pages(void)
{
	return phys_ram_bytes() >> THPFS_PAGE_SHIFT;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int bad_value(char *err, size_t errlen, struct opt_span key, struct opt_span val)
{
	set_err(err, errlen, "bad value '%.*s' for option '%.*s'",
		(int)val.len, val.s, (int)key.len, key.s);
	return -EINVAL;
}

/*
 * Reads the leading decimal digits of sp into *out and returns how many
 * characters were used; 0 when there is no digit or the number does not fit
 * in 64 bits.
 */
static size_t parse_digits(struct opt_span sp, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < sp.len && sp.s[i] >= '0' && sp.s[i] <= '9'; i++) {
		unsigned d = (unsigned)(sp.s[i] - '0');

		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	*out = v;
	return i;
}

/* A whole decimal number and nothing else, at most max. */
static int parse_uint(struct opt_span sp, uint64_t max, uint64_t *out)
{
	uint64_t v;
	size_t n = parse_digits(sp, &v);

	if (n == 0 || n != sp.len || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* The shift for a binary suffix letter, or -1 when c is not one. */
static int suffix_shift(char c)
{
	switch (c) {
	case 'k': case 'K': return 10;
	case 'm': case 'M': return 20;
	case 'g': case 'G': return 30;
	case 't': case 'T': return 40;
	default: return -1;
	}
}

/*
 * A count with an optional binary suffix (N, Nk, Nm, Ng, Nt).  When allow_pct
 * is set, "N%" (N >= 1, more than 100 too, as tmpfs takes it) is a share of
 * physical RAM in bytes.  Fails with -EINVAL on anything else or when the
 * result overflows 64 bits.
 */
static int parse_scaled(struct opt_span sp, bool allow_pct, uint64_t *out)
{
	uint64_t v;
	size_t n = parse_digits(sp, &v);
	int shift;

	if (n == 0)
		return -EINVAL;
	if (n == sp.len) {
		*out = v;
		return 0;
	}
	if (n + 1 != sp.len)
		return -EINVAL;
	if (allow_pct && sp.s[n] == '%') {
		uint64_t ram = phys_ram_bytes();

		unsigned __int128 b;

		if (v < 1 || !ram)
			return -EINVAL;
		/* ram / 100 * v would lose the remainder; ram * v fits in 128 bits */
		b = (unsigned __int128)ram * v / 100;
		if (b > UINT64_MAX)
			return -EINVAL;
		*out = (uint64_t)b;
		return 0;
	}
	shift = suffix_shift(sp.s[n]);
	if (shift < 0 || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

static int parse_size(struct opt_span sp, uint64_t *out)
{
	uint64_t v;

	if (parse_scaled(sp, true, &v))
		return -EINVAL;
	if (v > UINT64_MAX - (THPFS_PAGE_SIZE - 1))
		return -EINVAL;
	*out = (v + THPFS_PAGE_SIZE - 1) & ~(uint64_t)(THPFS_PAGE_SIZE - 1);
	return 0;
}

static int parse_octal_mode(struct opt_span sp, mode_t *out)
{
	unsigned v = 0;
	size_t i;

	if (sp.len == 0)
		return -EINVAL;
	for (i = 0; i < sp.len; i++) {
		if (sp.s[i] < '0' || sp.s[i] > '7')
			return -EINVAL;
		v = v * 8 + (unsigned)(sp.s[i] - '0');
		if (v > 07777)
			return -EINVAL;
	}
	*out = (mode_t)v;
	return 0;
}

static int parse_huge(struct opt_span sp, enum thpfs_huge_policy *out)
{
	static const enum thpfs_huge_policy all[] = {
		THPFS_HUGE_NEVER, THPFS_HUGE_ALWAYS, THPFS_HUGE_WITHIN_SIZE, THPFS_HUGE_ADVISE,
	};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (span_is(sp, _thpfs_huge_name(all[i]))) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_split(struct opt_span sp, enum thpfs_split_mode *out)
{
	if (span_is(sp, "migrate"))
		*out = THPFS_SPLIT_MIGRATE;
	else if (span_is(sp, "inplace"))
		*out = THPFS_SPLIT_INPLACE;
	else if (span_is(sp, "native"))
		*out = THPFS_SPLIT_NATIVE;
	else
		return -EINVAL;
	return 0;
}

static int parse_bool(struct opt_span sp, bool *out)
{
	if (span_is(sp, "on"))
		*out = true;
	else if (span_is(sp, "off"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* uid_t/gid_t value; (uid_t)-1 means "no id" to the kernel and is refused. */
static int parse_id(struct opt_span sp, uint32_t *out)
{
	uint64_t v;

	if (parse_uint(sp, UINT32_MAX - 1, &v))
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static void set_defaults(struct thpfs_options *o)
{
	uint64_t ram = phys_ram_bytes();

	memset(o, 0, sizeof(*o));
	o->size = ((ram / 2) + THPFS_PAGE_SIZE - 1) & ~(uint64_t)(THPFS_PAGE_SIZE - 1);
	o->nr_inodes = phys_ram_pages() / 2;
	o->huge = THPFS_HUGE_ALWAYS;
	o->split = THPFS_SPLIT_NATIVE;
	o->max_ptes_none = 0;
	o->collapse_thread = true;
	o->scan_sleep_ms = 100;
	o->prealloc = THPFS_PREALLOC_DEFAULT;
	o->mode = 01777;
	o->uid = 0;
	o->gid = 0;
}

static int opt_size(struct thpfs_options *o, struct opt_span val)
{
	return parse_size(val, &o->size);
}

static int opt_nr_inodes(struct thpfs_options *o, struct opt_span val)
{
	return parse_scaled(val, false, &o->nr_inodes);
}

static int opt_huge(struct thpfs_options *o, struct opt_span val)
{
	return parse_huge(val, &o->huge);
}

static int opt_split(struct thpfs_options *o, struct opt_span val)
{
	return parse_split(val, &o->split);
}

static int opt_max_ptes_none(struct thpfs_options *o, struct opt_span val)
{
	uint64_t v;

	if (parse_uint(val, THPFS_PAGES_PER_HUGE - 1, &v))
		return -EINVAL;
	o->max_ptes_none = (unsigned)v;
	return 0;
}

static int opt_collapse(struct thpfs_options *o, struct opt_span val)
{
	return parse_bool(val, &o->collapse_thread);
}

static int opt_scan_sleep_ms(struct thpfs_options *o, struct opt_span val)
{
	uint64_t v;

	if (parse_uint(val, UINT_MAX, &v))
		return -EINVAL;
	o->scan_sleep_ms = (unsigned)v;
	return 0;
}

static int opt_prealloc(struct thpfs_options *o, struct opt_span val)
{
	uint64_t v;

	if (parse_uint(val, THPFS_PREALLOC_MAX, &v))
		return -EINVAL;
	o->prealloc = (unsigned)v;
	return 0;
}

static int opt_mode(struct thpfs_options *o, struct opt_span val)
{
	return parse_octal_mode(val, &o->mode);
}

static int opt_uid(struct thpfs_options *o, struct opt_span val)
{
	uint32_t id;

	if (parse_id(val, &id))
		return -EINVAL;
	o->uid = (uid_t)id;
	return 0;
}

static int opt_gid(struct thpfs_options *o, struct opt_span val)
{
	uint32_t id;

	if (parse_id(val, &id))
		return -EINVAL;
	o->gid = (gid_t)id;
	return 0;
}

/*
 * Every option, the one list: its key, the parser that stores its value (or
 * fails), and what thpfs_options_help prints for it - the value's syntax,
 * what it means and its default.  thpfs --help prints this list;
 * include/thpfs.h, the README and docs/fuse.md repeat it word for word
 * where they list options, and tests/options/run.sh checks that they do.
 */
static const struct opt_def {
	const char *key;
	int (*parse)(struct thpfs_options *o, struct opt_span val);
	const char *syntax;	/* as written after "key=" */
	const char *help;
	const char *def;
} opt_defs[] = {
	{ "size", opt_size, "N[k|m|g|t|%]",
	  "bytes of file data (0 = unlimited; % of RAM, may pass 100)", "50%" },
	{ "nr_inodes", opt_nr_inodes, "N[k|m|g|t]", "most inodes (0 = unlimited)",
	  "RAM pages / 2" },
	{ "huge", opt_huge, "never|always|within_size|advise",
	  "when files get 2 MiB pages, as tmpfs", "always" },
	{ "split", opt_split, "native|migrate|inplace", "how a partly punched huge page is split",
	  "native" },
	{ "max_ptes_none", opt_max_ptes_none, "N",
	  "0..511 holes a 2 MiB range may have and still collapse", "0" },
	{ "collapse", opt_collapse, "on|off", "the background collapse thread", "on" },
	{ "scan_sleep_ms", opt_scan_sleep_ms, "N",
	  "ms between collapse passes; bounds how long freed pages wait", "100" },
	{ "prealloc", opt_prealloc, "N",
	  "0..64 huge frames kept ready (zeroed, verified huge) for new data", "0" },
	{ "mode", opt_mode, "OCTAL", "root directory permissions", "1777" },
	{ "uid", opt_uid, "N", "root directory owner", "0" },
	{ "gid", opt_gid, "N", "root directory group", "0" },
};

/* Sizes (k, m, g, t) are binary: KiB, MiB, GiB, TiB. */
int thpfs_options_help(char *buf, size_t len)
{
	size_t used = 0;

	if (!buf || !len)
		return -EINVAL;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++) {
		const struct opt_def *d = &opt_defs[i];
		char kv[64];
		int n;

		snprintf(kv, sizeof(kv), "%s=%s", d->key, d->syntax);
		n = snprintf(buf + used, len - used, "    %-20s%s%s (default %s)\n", kv,
			     strlen(kv) < 20 ? "" : "\n                        ", d->help, d->def);
		if (n < 0 || (size_t)n >= len - used)
			return -ENOSPC;
		used += (size_t)n;
	}
	return (int)used;
}

static const struct opt_def *find_opt(struct opt_span key)
{
	for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
		if (span_is(key, opt_defs[i].key))
			return &opt_defs[i];
	return NULL;
}

/* Applies one non-empty item ("key=value") to *o; -EINVAL with a message. */
static int apply_item(struct thpfs_options *o, struct opt_span item, char *err, size_t errlen)
{
	const char *eq = memchr(item.s, '=', item.len);
	struct opt_span key = { item.s, eq ? (size_t)(eq - item.s) : item.len };
	struct opt_span val;
	const struct opt_def *def = find_opt(key);

	if (!def) {
		set_err(err, errlen, "unknown option '%.*s'", (int)key.len, key.s);
		return -EINVAL;
	}
	if (!eq || key.len + 1 == item.len) {
		set_err(err, errlen, "missing value for option '%.*s'",
			(int)key.len, key.s);
		return -EINVAL;
	}
	val.s = eq + 1;
	val.len = item.len - key.len - 1;
	if (def->parse(o, val))
		return bad_value(err, errlen, key, val);
	return 0;
}

/*
 * Fills *o with the defaults, then applies each item of s in order.  *o is
 * only written through a local copy, so on failure the caller's options keep
 * whatever they held before the call.
 */
int _thpfs_parse_options(struct thpfs_options *o, const char *s, char *err, size_t errlen)
{
	struct thpfs_options tmp;
	const char *p = s;

	if (err && errlen)
		err[0] = '\0';
	set_defaults(&tmp);
	while (p && *p) {
		const char *end = strchrnul(p, ',');
		struct opt_span item = { p, (size_t)(end - p) };

		p = *end ? end + 1 : end;
		if (item.len && apply_item(&tmp, item, err, errlen))
			return -EINVAL;
	}
	*o = tmp;
	return 0;
}

const char *_thpfs_huge_name(enum thpfs_huge_policy p)
{
	switch (p) {
	case THPFS_HUGE_NEVER: return "never";
	case THPFS_HUGE_ALWAYS: return "always";
	case THPFS_HUGE_WITHIN_SIZE: return "within_size";
	case THPFS_HUGE_ADVISE: return "advise";
	}
	return "unknown";
}
