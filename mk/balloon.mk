# balloon.mk - thpfs-balloon, the virtio-balloon model (tools/balloon/), and
# its tests (tests/balloon/).
#
#   make $(B)/thpfs-balloon   the program (part of `make all` via `tools`)
#   make test-balloon         build it and run tests/balloon/run.sh $(B)
#                             (needs root for the cgroup and the kernel side)
BALLOON_SRC := $(wildcard tools/balloon/*.c) tools/cgroup.c tools/pagemap.c
BALLOON_HDRS := tools/balloon/balloon.h tools/cgroup.h tools/pagemap.h include/thpfs.h
# The unit tests link the program's model parts, not main.c.
BALLOON_MODEL_SRC := tools/balloon/guest.c tools/balloon/balloon.c tools/balloon/host.c

.PHONY: test-balloon
tools: $(B)/thpfs-balloon
tests: $(B)/tests/balloon/test_model

$(B)/thpfs-balloon: $(BALLOON_SRC) $(BALLOON_HDRS) $(B)/libthpfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -Itools/balloon -o $@ $(BALLOON_SRC) $(B)/libthpfs.a $(LDFLAGS) -lm

$(B)/tests/balloon/test_model: tests/balloon/test_model.c $(BALLOON_MODEL_SRC) $(BALLOON_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -Itools/balloon -o $@ tests/balloon/test_model.c \
		$(BALLOON_MODEL_SRC) $(LDFLAGS) -lcmocka

test-balloon: $(B)/thpfs-balloon $(B)/tests/balloon/test_model
	tests/balloon/run.sh $(B)
