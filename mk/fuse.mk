# fuse.mk - the FUSE daemon `thpfs`, `thpfs-stat`, their tests and benchmark.
#
#   make tools        also builds $(B)/thpfs and $(B)/thpfs-stat
#   make test-fuse    mounts in a temp dir and drives the mount (tests/fuse/run.sh; root)
#   make bench-fuse   the mount against a private tmpfs huge=always (bench/fuse-bench.sh; root)
#
# Helpers of the tests and the benchmark are built into $(B)/fuse/.
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS := $(shell pkg-config --libs fuse3 2>/dev/null)
FUSE_OBJ_DIR := $(B)/obj-fuse
FUSE_DAEMON_SRC := tools/thpfs-fuse.c tools/fuse/ops.c tools/fuse/io.c tools/fuse/session.c
FUSE_DAEMON_OBJ := $(patsubst tools/%.c,$(FUSE_OBJ_DIR)/%.o,$(FUSE_DAEMON_SRC))
FUSE_HELPERS := $(B)/fuse/fsx $(B)/fuse/probe $(B)/fuse/punch-mem $(B)/fuse/fuse-bench \
	$(B)/fuse/fuse-null

.PHONY: test-fuse bench-fuse
tools: $(B)/thpfs $(B)/thpfs-stat
tests: $(FUSE_HELPERS)

$(FUSE_OBJ_DIR)/%.o: tools/%.c tools/fuse/thpfs-fuse.h tools/fuse/session.h include/thpfs.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUSE_CFLAGS) -Itools -c $< -o $@

$(B)/thpfs: $(FUSE_DAEMON_OBJ) $(B)/libthpfs.a
	$(CC) -o $@ $(FUSE_DAEMON_OBJ) $(B)/libthpfs.a $(LDFLAGS) $(FUSE_LIBS)

$(B)/thpfs-stat: tools/thpfs-stat.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(FUSE_OBJ_DIR)/cgroup.o: tools/cgroup.c tools/cgroup.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/fuse/fsx: tests/fuse/fsx.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(B)/fuse/probe: tests/fuse/probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS)

$(B)/fuse/punch-mem: tests/fuse/punch-mem.c $(FUSE_OBJ_DIR)/cgroup.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -o $@ $< $(FUSE_OBJ_DIR)/cgroup.o $(LDFLAGS)

$(B)/fuse/fuse-bench: bench/fuse-bench.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDFLAGS) -lm

# the do-nothing daemon that gives bench-fuse its ceiling
$(B)/fuse/fuse-null: bench/fuse-null.c $(FUSE_OBJ_DIR)/fuse/session.o tools/fuse/session.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUSE_CFLAGS) -Itools -o $@ $< $(FUSE_OBJ_DIR)/fuse/session.o $(LDFLAGS) $(FUSE_LIBS)

test-fuse: $(B)/thpfs $(B)/thpfs-stat $(FUSE_HELPERS) $(B)/fuse/fuse-null
	tests/fuse/run.sh $(B)
	tests/fuse/null-options.sh $(B)/fuse/fuse-null

bench-fuse: $(B)/thpfs $(B)/thpfs-stat $(B)/fuse/fuse-bench $(B)/fuse/fuse-null
	bench/fuse-bench.sh $(B)
