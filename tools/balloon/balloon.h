/*
 * balloon.h - thpfs-balloon: a model of virtio-balloon over guest RAM kept in
 * a huge-page file, run on libthpfs and on the kernel's tmpfs side by side.
 *
 * The pieces, one file each:
 *   guest.c          the guest's buddy allocator over guest frame numbers,
 *                    the workload that fragments its free memory, and the
 *                    page stamps the guest checks
 *   balloon.c        the guest's balloon driver: inflate, deflate and free
 *                    page reporting, in messages like Linux's virtio_balloon
 *   host.c           the host's message handlers, one per policy
 *   backend_thpfs.c  guest RAM as a libthpfs file
 *   backend_kernel.c guest RAM as a file on a private tmpfs huge=always mount
 *   scenario.c       one run (backend x policy) in a child process, measured
 *                    in a child memory cgroup
 *   trace.c          a recorded balloon request stream (--trace FILE)
 *   pagemap.c        huge-page coverage from the kernel (PAGEMAP_SCAN)
 *   report.c         the table, --json and the gnuplot PNG
 *   main.c           options
 *
 * Not part of libthpfs.  Functions return 0 (or a count) on success and a
 * negative errno on failure unless they say otherwise.  Nothing here is
 * shared between threads: each run is one single-threaded process.
 */
#ifndef THPFS_BALLOON_H
#define THPFS_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BL_PAGE_SHIFT 12
#define BL_PAGE_SIZE (1UL << BL_PAGE_SHIFT)
#define BL_HUGE_SHIFT 21
#define BL_HUGE_SIZE (1UL << BL_HUGE_SHIFT)
#define BL_PAGES_PER_HUGE (BL_HUGE_SIZE / BL_PAGE_SIZE) /* 512 */
#define BL_HUGE_ORDER 9
#define BL_MAX_ORDER 10		/* largest buddy block: 4 MiB, as Linux's MAX_PAGE_ORDER */
#define BL_MSG_MAX 256		/* VIRTIO_BALLOON_ARRAY_PFNS_MAX */
#define BL_REPORT_MAX 32	/* PAGE_REPORTING_CAPACITY: blocks per report */
#define BL_REPORT_ORDER 9	/* page_reporting_order on x86: 2 MiB */
#define BL_MIB (1ULL << 20)
#define BL_NIL UINT32_MAX
#define BL_MAX_SAMPLES 400

enum bl_policy {
	BL_LEGACY,
	BL_SPLIT,
	BL_QEMU_PBP,
	BL_HUGE_BITMAP,
	BL_LAZY,
	BL_WHOLE_LAZY,
	BL_NR_POLICIES
};

enum bl_backend_kind {
	BL_THPFS,
	BL_KERNEL,
	BL_NR_BACKENDS
};

const char *bl_policy_name(int p);
const char *bl_backend_name(int b);
/* Index of a policy/backend name, or -1. */
int bl_policy_parse(const char *s);
int bl_backend_parse(const char *s);

/* ---- Options of a whole invocation ---- */
struct bl_config {
	uint64_t size;		/* guest RAM, bytes, page-aligned */
	uint64_t target;	/* balloon size, bytes */
	uint64_t ask;		/* bytes the host asks back after inflate */
	double frag;		/* 0: free memory in whole 2 MiB blocks .. 1: scattered */
	double free_frac;	/* share of guest RAM free after the workload */
	uint64_t seed;
	uint64_t reads;		/* pointer-chase loads per speed measurement */
	bool report;		/* free page reporting (the guest's worker) */
	double report_delay;	/* s from a high-order free to the worker's pass */
	const char *trace;	/* replay this request stream instead of the model
				 * guest (NULL: the model) */
	struct bl_trace *tr;	/* the parsed trace */
	bool collapse;		/* explicit collapse after the rewrite */
	bool policies[BL_NR_POLICIES];
	bool backends[BL_NR_BACKENDS];
	char thpfs_opts[256];	/* appended to the thpfs mount options */
	const char *plot;	/* PNG path, NULL for none */
	bool json;
	bool quiet;
};

/* ---- Guest: buddy allocator (guest.c) ----
 * Free lists per order, threaded through per-frame arrays.  A free block is
 * known by its first frame: free_order[pfn] is its order there and
 * BL_ORDER_NONE on every other frame.  Allocation takes the smallest order
 * that has a block, from the head of its list, and splits it keeping the
 * lower half (Linux's expand()); freeing merges with free buddies and adds
 * the block at the head. */
#define BL_ORDER_NONE 0xff
struct bl_buddy {
	uint32_t npages;
	uint32_t *next, *prev;	/* list links of free block heads */
	uint8_t *free_order;
	/* free page reporting, as Linux's PageReported: set on a free block
	 * head the worker reported, cleared when the block leaves its free
	 * list (allocated, merged, isolated) */
	uint8_t *reported;
	/* a block of order >= BL_REPORT_ORDER was freed since the worker last
	 * ran (page_reporting_notify_free), and when */
	bool report_requested;
	double report_requested_at;
	uint32_t head[BL_MAX_ORDER + 1];
	uint64_t nr_blocks[BL_MAX_ORDER + 1];
	uint64_t free_pages;
};
int bl_buddy_init(struct bl_buddy *b, uint32_t npages);
void bl_buddy_destroy(struct bl_buddy *b);
/* First frame of a free block of 2^order frames, or -ENOMEM. */
int64_t bl_buddy_alloc(struct bl_buddy *b, unsigned order);
void bl_buddy_free(struct bl_buddy *b, uint32_t pfn, unsigned order);
/* Puts a block the worker reported back (no new request), marked reported
 * if it did not merge (Linux's page_reporting_drain). */
void bl_buddy_putback_reported(struct bl_buddy *b, uint32_t pfn, unsigned order);
/* Takes the free block whose head is pfn off its list (page reporting
 * isolates blocks this way); bl_buddy_free puts it back. */
void bl_buddy_isolate(struct bl_buddy *b, uint32_t pfn);
/* Free frames that lie in free blocks of at least 2^order frames. */
uint64_t bl_buddy_free_in_order(const struct bl_buddy *b, unsigned order);

/* ---- Guest: workload (guest.c) ----
 * Fills guest RAM with allocations of mixed orders, then frees some of them
 * so that free_frac of RAM is free: (1 - frag) of that free memory in whole
 * 2 MiB blocks, the rest scattered over 2 MiB ranges that each keep at least
 * one allocated frame. */
struct bl_workload {
	uint32_t nalloc;
	uint32_t *pfn;		/* allocations still held */
	uint8_t *order;
};
int bl_workload_run(struct bl_workload *w, struct bl_buddy *b, double free_frac,
		    double frag, uint64_t seed);
void bl_workload_destroy(struct bl_workload *w);

/* ---- Guest: page stamps (guest.c) ----
 * Every 4 KiB page holds a pattern made from its frame number and a
 * generation (0 when guest RAM is filled, 1 when the guest writes it again
 * after deflate).  bl_stamp_check returns 1 if the page holds the stamp of
 * (pfn, gen), 0 if not. */
void bl_stamp(void *page, uint64_t pfn, uint64_t gen);
int bl_stamp_check(const void *page, uint64_t pfn, uint64_t gen);
/* The guest's pointer chase (scenario.c) visits every page it reads
 * BL_CHASE_PER_PAGE times, each time at another 64-byte line, so that its
 * lines (1/8 of the memory read) do not fit in the CPU's caches.
 * bl_chase_word(pfn, k) is the index of the 8-byte word of page pfn that
 * holds its k-th link: the first word of a line that depends on pfn and k,
 * never line 0, all different for k < BL_CHASE_PER_PAGE.  bl_stamp_check
 * does not look at these words. */
#define BL_CHASE_PER_PAGE 8
unsigned bl_chase_word(uint64_t pfn, unsigned k);
int bl_page_is_zero(const void *page);

/* ---- Backends: guest RAM (backend_thpfs.c, backend_kernel.c) ---- */
struct bl_thp_counters {
	uint64_t split;		/* huge pages split */
	uint64_t split_failed;
	uint64_t deferred;	/* queued for a deferred split */
	uint64_t collapse_alloc;	/* huge pages made by collapse */
	uint64_t pages_collapsed;
	uint64_t file_alloc;	/* huge pages allocated for file data */
};

struct bl_backend;
struct bl_backend_ops {
	const char *name;
	/* Creates guest RAM: an empty file of size bytes.  On failure writes a
	 * message to err; -EPERM/-ENOSYS mean "this backend cannot run here"
	 * (skipped, not failed). */
	int (*open)(struct bl_backend *be, uint64_t size, const char *opts, char *err,
		    size_t errlen);
	void (*close)(struct bl_backend *be);
	/* The guest writes guest RAM (kernel: the shared mapping; thpfs: the
	 * thpfs_mmap mapping when the library has it, else thpfs_pwrite). */
	int (*write)(struct bl_backend *be, uint64_t off, const void *buf, size_t len);
	/* Reads guest RAM without allocating holes (pread on both). */
	int (*read)(struct bl_backend *be, uint64_t off, void *buf, size_t len);
	/* Discards: fallocate(PUNCH_HOLE|KEEP_SIZE). */
	int (*punch)(struct bl_backend *be, uint64_t off, uint64_t len);
	/* Writes zeros over [off, off+len), keeping the memory. */
	int (*zero)(struct bl_backend *be, uint64_t off, uint64_t len);
	/* Optional, for the lazy policy: zero [off, off+len) now and let the
	 * file system free it when memory is asked for (thpfs_free_lazy), and
	 * ask for bytes of it back (thpfs_reclaim; returns bytes freed).  A
	 * backend without them gets zero + a queue of punches in the host. */
	int (*lazy_free)(struct bl_backend *be, uint64_t off, uint64_t len);
	int64_t (*reclaim)(struct bl_backend *be, uint64_t bytes);
	/* Fills ptrs[i] with a pointer to page pfns[i] that stays valid until
	 * unmap_pages (thpfs: pins; kernel: the mapping). */
	int (*map_pages)(struct bl_backend *be, const uint32_t *pfns, uint64_t n, char **ptrs);
	void (*unmap_pages)(struct bl_backend *be);
	/* Bytes of guest RAM the kernel maps with huge (PMD) pages now, asked
	 * with PAGEMAP_SCAN PAGE_IS_HUGE; -ENOSYS when the kernel cannot say. */
	int64_t (*huge_bytes)(struct bl_backend *be);
	/* How the guest reaches its RAM, for the output ("mapping", "pwrite"). */
	const char *(*guest_path)(struct bl_backend *be);
	void (*counters)(struct bl_backend *be, struct bl_thp_counters *c);
	/* Collapse what can be collapsed (thpfs_collapse / MADV_COLLAPSE);
	 * returns huge pages made if known, else 0, or a negative errno. */
	int (*collapse)(struct bl_backend *be);
};

struct bl_backend {
	const struct bl_backend_ops *ops;
	uint64_t size;
	uint64_t npages;
	char dir[256];		/* kernel: the (empty) directory to mount on */
	void *priv;
};
extern const struct bl_backend_ops bl_thpfs_ops;
extern const struct bl_backend_ops bl_kernel_ops;

/* ---- Host: the policies (host.c) ----
 * Per-frame state as the host sees it. */
enum bl_host_state {
	BL_H_UNTOUCHED = 0,	/* the host never wrote this page */
	BL_H_ZEROED,		/* zeroed, memory kept (legacy) */
	BL_H_QUEUED,		/* zeroed and on the lazy queue */
	BL_H_DISCARDED,		/* punched: memory given back */
};

struct bl_host {
	int policy;
	struct bl_backend *be;
	uint64_t npages;
	uint8_t *state;		/* enum bl_host_state per frame */
	/* qemu-pbp: QEMU's PartiallyBalloonedPage, one per message */
	int64_t pbp_huge;	/* huge page it tracks, -1 for none */
	uint64_t pbp_bits[BL_PAGES_PER_HUGE / 64];
	/* huge-bitmap, whole-lazy: a bitmap per 2 MiB page, kept across messages */
	uint64_t (*hb_bits)[BL_PAGES_PER_HUGE / 64];
	uint16_t *hb_count;
	/* lazy: queued frames, oldest first (a frame deflated while queued
	 * stays in the array; its state says it is no longer queued) */
	uint32_t *queue;
	uint64_t q_head, q_tail;
	/* what it did */
	uint64_t msgs;
	uint32_t max_msg_pfns;
	uint64_t report_msgs;
	uint32_t max_report_blocks;
	uint64_t punches, punched_bytes;
	uint64_t huge_discards;	/* whole huge pages discarded (qemu-pbp, huge-bitmap,
				 * whole-lazy) */
	uint64_t zeroes, zeroed_bytes;
	double busy_s;		/* time spent handling messages */
	uint64_t ask_ops;	/* discards done when the host asked */
	double ask_busy_s;	/* time spent on them */
};
int bl_host_init(struct bl_host *h, int policy, struct bl_backend *be, uint64_t npages);
void bl_host_destroy(struct bl_host *h);
/* One inflate message: n <= BL_MSG_MAX frame numbers (-EMSGSIZE otherwise,
 * -ERANGE for a frame outside guest RAM; nothing is done then). */
int bl_host_inflate(struct bl_host *h, const uint32_t *pfns, unsigned n);
/* One deflate message: the guest takes these frames back. */
int bl_host_deflate(struct bl_host *h, const uint32_t *pfns, unsigned n);
/* One free page report: n <= BL_REPORT_MAX free blocks (first frame,
 * order >= BL_REPORT_ORDER). */
struct bl_block {
	uint32_t pfn;
	uint8_t order;
};
int bl_host_report(struct bl_host *h, const struct bl_block *blk, unsigned n);
/* The host wants bytes of memory back: lazy and whole-lazy punch queued
 * pages, oldest first, until that much is released or the queue is empty.
 * Returns bytes released; other policies have nothing to release. */
int64_t bl_host_ask(struct bl_host *h, uint64_t bytes);

/* ---- Guest: the balloon driver (balloon.c) ----
 * Called after each message the driver sends (inflate: the frames just
 * ballooned; deflate: the frames the guest has back and now writes again).
 * A negative return stops the driver with that error. */
typedef int (*bl_pages_fn)(void *ctx, const uint32_t *pfns, unsigned n);
struct bl_balloon {
	uint32_t *pages;	/* frames in the balloon, in inflate order */
	uint64_t n;
	uint64_t npages;	/* guest RAM frames */
	uint64_t inflate_msgs, deflate_msgs;
	uint32_t max_msg;	/* largest message the driver sent */
	uint64_t reported_pages;	/* pages in blocks reported, every pass */
	uint64_t skipped_pages;		/* free pages a pass skipped: reported before */
	uint64_t report_msgs;
	uint64_t report_passes;
	uint32_t max_report;
	uint8_t *given;		/* per frame: 0, BL_GIVEN_BALLOON, BL_GIVEN_REPORT */
};
#define BL_GIVEN_BALLOON 1
#define BL_GIVEN_REPORT 2
int bl_balloon_init(struct bl_balloon *bl, uint64_t npages);
void bl_balloon_destroy(struct bl_balloon *bl);
/* Takes up to npages 4 KiB pages from the guest allocator, one by one as
 * Linux's fill_balloon does, and hands them to the host in messages of at
 * most BL_MSG_MAX frames.  Returns the pages ballooned (fewer when the
 * guest runs out of free memory). */
int64_t bl_balloon_inflate(struct bl_balloon *bl, struct bl_buddy *g, struct bl_host *h,
			   uint64_t npages, bl_pages_fn sent, void *ctx);
/* Gives every page back, newest first as Linux's leak_balloon: tells the
 * host (messages of at most BL_MSG_MAX), frees them to the guest and calls
 * reuse for each message. */
int bl_balloon_deflate(struct bl_balloon *bl, struct bl_buddy *g, struct bl_host *h,
		       bl_pages_fn reuse, void *ctx);
/* Free page reporting, one pass of Linux's page_reporting worker: reports
 * every free block of order >= BL_REPORT_ORDER that is not marked reported,
 * in reports of at most BL_REPORT_MAX blocks; the blocks are isolated while
 * the host handles a report and put back marked reported; blocks already
 * marked are skipped.  Clears the buddy's request.  Returns pages reported
 * in this pass. */
int64_t bl_balloon_report(struct bl_balloon *bl, struct bl_buddy *g, struct bl_host *h);

/* ---- One run (scenario.c) ---- */
struct bl_sample {
	float t;		/* seconds since the run started */
	float mem_mib;		/* memory charged to the run */
	float cov_pct;		/* huge-page coverage of guest RAM */
};

enum bl_status {
	BL_RUN_OK,
	BL_RUN_SKIPPED,		/* the backend cannot run here */
	BL_RUN_FAILED,
};

struct bl_result {
	int backend, policy, status;
	char msg[256];
	char mem_source[16];	/* "cgroup" or "rss" */
	/* guest */
	uint64_t size;
	uint64_t free_bytes, free_huge_bytes;	/* after the workload */
	uint64_t ballooned, reported;	/* reported: by the pass after inflate */
	uint64_t reported_deflate;	/* by the pass after deflate */
	uint64_t report_skipped;	/* bytes that pass skipped: reported before */
	uint64_t report_passes;
	/* messages, as the host received them */
	uint64_t inflate_msgs, deflate_msgs, report_msgs;
	uint32_t max_msg_pfns, max_report_blocks;
	/* memory charged (bytes) after each step */
	int64_t mem_fill, mem_inflate, mem_report, mem_ask, mem_deflate, mem_collapse;
	/* times (s) */
	double fill_s, inflate_s, host_s, report_s, ask_s, deflate_s, collapse_s, total_s;
	double ask_host_s;	/* host time spent freeing when asked */
	uint64_t ask_ops;	/* its discards */
	double t_inflate, t_ask, t_deflate, t_collapse;	/* phase starts, s since t0 */
	double t_end;
	char guest_path[16];	/* how the guest wrote its RAM */
	char trace_name[64];	/* --trace: the file's name */
	uint64_t punches, zeroes;
	uint64_t inflate_ops;	/* punches + zeroings while inflating */
	uint64_t huge_discards;	/* whole huge pages the host discarded while inflating */
	/* huge-page coverage (0..1) from the kernel; cov_ok false: not known */
	bool cov_ok;
	double cov_fill, cov_inflate, cov_ask, cov_deflate, cov_collapse;
	int collapse_rc;
	struct bl_thp_counters c_fill, c_ask, c_deflate, c_collapse;
	/* guest memory speed: ns per load of a pointer chase stored in the
	 * guest's own pages */
	double read_ns_before, read_ns_inflated, read_ns_after;
	/* stamp checks */
	uint64_t pages_checked;
	uint64_t bad_kept;	/* a page not given away changed */
	uint64_t bad_zero;	/* a page the host discarded/zeroed is not zero */
	uint64_t bad_rewrite;	/* a rewritten page does not hold its new stamp */
	uint32_t nsamples;
	struct bl_sample samples[BL_MAX_SAMPLES];
};

/* Runs backend x policy in a child process (own memory cgroup, own mount
 * namespace for the kernel backend) and fills *r.  idx/total label the
 * progress line.  Returns 0 when the child reported (r->status says how the
 * run went), a negative errno when it could not be run or died. */
int bl_run(const struct bl_config *cfg, int backend, int policy, int idx, int total,
	   struct bl_result *r);

/* ---- Output (report.c) ---- */
void bl_print_table(const struct bl_config *cfg, const struct bl_result *r, int n);
void bl_print_json(const struct bl_config *cfg, const struct bl_result *r, int n);
/* Writes the PNG with gnuplot; returns 0 or a negative errno (message on
 * stderr). */
int bl_plot(const struct bl_config *cfg, const struct bl_result *r, int n, const char *png);

/* ---- A recorded request stream (trace.c) ----
 * The text format of docs/balloon.md ("thpfs-vm-trace v1", as guest/run-vm.py
 * writes it): "ram BYTES", "inflate BYTES" / "deflate BYTES" (the balloon
 * target changed), "req" (a new virtqueue element: a new message), and
 * "d OFFSET LENGTH" (one discard of guest RAM; numbers in C notation, hex
 * with 0x).  QEMU's raw log lines (trace events virtio_balloon_to_target,
 * virtqueue_pop, virtio_balloon_handle_output) are accepted too.  A 4 KiB
 * discard is a ballooned page; a discard of 2 MiB or more, 2 MiB aligned, is
 * a free page report. */
enum bl_trace_kind {
	BL_TR_REQ,		/* a new message starts */
	BL_TR_PAGE,		/* a ballooned 4 KiB page: pfn */
	BL_TR_BLOCK,		/* a reported free block: pfn, npages */
	BL_TR_TARGET,		/* the host set the balloon target: npages */
};
struct bl_trace_ev {
	uint8_t kind;
	uint32_t pfn;
	uint32_t npages;
};
struct bl_trace {
	uint64_t ram;		/* guest RAM bytes (the "ram" line or --size) */
	struct bl_trace_ev *ev;
	uint64_t nev, cap;
	uint64_t pages, blocks, block_pages, reqs, targets;
	uint64_t ignored;	/* discards that were neither (other lengths) */
	bool raw;		/* QEMU's own log lines */
};
/* Parses path; ram: guest RAM bytes when the file does not say (0: it
 * must).  On failure writes why to err and returns a negative errno. */
int bl_trace_load(struct bl_trace *t, const char *path, uint64_t ram, char *err,
		  size_t errlen);
void bl_trace_destroy(struct bl_trace *t);

/* ---- Small helpers (guest.c) ---- */
double bl_now(void);
uint64_t bl_rand(uint64_t *state);

#endif /* THPFS_BALLOON_H */
