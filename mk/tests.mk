# tests.mk - the library's cmocka test suite (tests/*.c).
#
#   make tests        build every test binary into $(B)/tests/
#   make test         build and run them all (tests/run-tests.sh $(B))
#   make check-asan   the same under AddressSanitizer + UBSan (build-asan/)
#   make check-tsan   the concurrency tests under ThreadSanitizer (build-tsan/)
#
# tests/fuse/ and tests/balloon/ have their own fragments; only tests/*.c
# are built here.  tests/testlib.c is shared by every test binary and is not
# a test itself.

TESTS_SRC := $(filter-out tests/testlib.c,$(wildcard tests/test_*.c))
TESTS_BIN := $(patsubst tests/%.c,$(B)/tests/%,$(TESTS_SRC))
TESTS_LIB_OBJ := $(B)/tests/obj/testlib.o
# Binaries that also need the child-cgroup helper from tools/.
TESTS_CG_BIN := $(B)/tests/test_cgroup $(B)/tests/test_bounds $(B)/tests/test_kernel \
		$(B)/tests/test_release $(B)/tests/test_mmap
TESTS_CG_BIN += $(B)/tests/test_prealloc
TESTS_CG_OBJ := $(B)/tests/obj/cgroup.o
# testlib's cgroup helpers use it, so every test links it.
TESTS_LIB_OBJ += $(TESTS_CG_OBJ)
# The concurrency tests, the only ones check-tsan runs.
TESTS_TSAN := test_stress test_collapse test_release test_mmap
TESTS_TSAN += test_prealloc
TESTS_CFLAGS := -Itools
TESTS_LIBS := -lcmocka -lpthread

.PHONY: tests test test-tsan check-asan check-tsan
# Keep the objects make would otherwise delete as intermediates.
.PRECIOUS: $(B)/tests/obj/%.o

tests: $(TESTS_BIN)

$(B)/tests/obj/%.o: tests/%.c tests/testlib.h tools/cgroup.h $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TESTS_CFLAGS) -c $< -o $@

$(TESTS_CG_OBJ): tools/cgroup.c tools/cgroup.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TESTS_CFLAGS) -c $< -o $@

$(TESTS_CG_BIN): $(TESTS_CG_OBJ)

# test_benchstats checks the benchmarks' statistics (bench/bench-common.c).
$(B)/tests/obj/bench-common.o: bench/bench-common.c bench/bench-common.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(TESTS_CFLAGS) -c $< -o $@
$(B)/tests/test_benchstats: $(B)/tests/obj/bench-common.o
$(B)/tests/test_benchstats: TESTS_LIBS += -lm

$(B)/tests/%: $(B)/tests/obj/%.o $(TESTS_LIB_OBJ) $(B)/libthpfs.a
	$(CC) -o $@ $(filter %.o,$^) $(B)/libthpfs.a $(LDFLAGS) $(TESTS_LIBS)

test: $(TESTS_BIN)
	tests/run-tests.sh $(B)

test-tsan: $(patsubst %,$(B)/tests/%,$(TESTS_TSAN))
	tests/run-tests.sh $(B) $(TESTS_TSAN)

check-asan:
	$(MAKE) SAN=asan test

check-tsan:
	$(MAKE) SAN=tsan test-tsan
