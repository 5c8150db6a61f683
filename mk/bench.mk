# bench.mk - the library benchmarks: thpfs-bench (punch, I/O, fill against
# the kernel's tmpfs) and collapse-bench (huge-page coverage after a punch and
# rewrite, collapse latency) and release-bench (4 KiB releases one madvise at
# a time against process_madvise batches).  `make run-bench` runs them (needs
# root for the kernel side; they print numbers, they never fail on timing).
BENCH_COMMON = bench/bench-common.c tools/cgroup.c tools/pagemap.c
BENCH_HDRS = bench/bench-common.h tools/cgroup.h tools/pagemap.h include/thpfs.h
BENCH_ARGS ?=
COLLAPSE_BENCH_ARGS ?=

bench: $(B)/thpfs-bench $(B)/collapse-bench $(B)/release-bench $(B)/guestram-bench

$(B)/thpfs-bench: bench/thpfs-bench.c $(BENCH_COMMON) $(BENCH_HDRS) $(B)/libthpfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -o $@ bench/thpfs-bench.c $(BENCH_COMMON) $(B)/libthpfs.a $(LDFLAGS) -lm

$(B)/collapse-bench: bench/collapse-bench.c $(BENCH_COMMON) $(BENCH_HDRS) $(B)/libthpfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -o $@ bench/collapse-bench.c $(BENCH_COMMON) $(B)/libthpfs.a $(LDFLAGS) -lm

$(B)/release-bench: bench/release-bench.c $(BENCH_COMMON) $(BENCH_HDRS) $(B)/libthpfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -o $@ bench/release-bench.c $(BENCH_COMMON) $(B)/libthpfs.a $(LDFLAGS) -lm

.PHONY: run-bench
run-bench: $(B)/thpfs-bench $(B)/collapse-bench $(B)/release-bench
	$(B)/thpfs-bench $(BENCH_ARGS)
	$(B)/collapse-bench $(COLLAPSE_BENCH_ARGS)

# guestram-bench: thpfs_mmap guest RAM under a balloon against kernel tmpfs
# huge=always and anonymous THP (docs/guest-ram.md).  Needs root.
GUESTRAM_BENCH_ARGS ?=
$(B)/guestram-bench: bench/guestram-bench.c $(BENCH_COMMON) $(BENCH_HDRS) $(B)/libthpfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -o $@ bench/guestram-bench.c $(BENCH_COMMON) $(B)/libthpfs.a $(LDFLAGS) -lm

.PHONY: run-guestram-bench
run-guestram-bench: $(B)/guestram-bench
	$(B)/guestram-bench $(GUESTRAM_BENCH_ARGS)
