# fuzz.mk - the libFuzzer target fuzz/fuzz_api.c (the public API as a hostile
# caller uses it, checked against a byte model).  Built with clang into
# build-fuzz/, with ASan+UBSan and THPFS_DEBUG (chunk invariant checks); the
# library is compiled again there with -fsanitize=fuzzer-no-link so its
# branches guide the fuzzer.
#
#   make fuzz [FUZZ_SECONDS=300]      fuzz for that long (fuzz/run.sh fuzz);
#                                     the corpus grows in build-fuzz/corpus,
#                                     crashes land in build-fuzz/artifacts/
#   make fuzz-check [FUZZ_CHECK_SECONDS=60]
#                                     the short pass `make check` runs: every
#                                     input in fuzz/regress/ once, then a
#                                     timed run; ends "fuzz: N passed, N failed"
#
# Needs clang and its runtime (Debian: clang, libclang-rt-dev; scripts/deps.sh).
FUZZ_CC ?= clang
FUZZ_B := build-fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter -pthread -Iinclude -Isrc \
	-DTHPFS_DEBUG $(FUZZ_SAN)
FUZZ_LIB_OBJ := $(patsubst src/%.c,$(FUZZ_B)/obj/%.o,$(LIB_SRC))
FUZZ_SECONDS ?= 300
FUZZ_CHECK_SECONDS ?= 60

.PHONY: fuzz fuzz-check fuzz-build
fuzz-build: $(FUZZ_B)/fuzz_api

$(FUZZ_B)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_B)/fuzz_api: fuzz/fuzz_api.c $(FUZZ_LIB_OBJ) include/thpfs.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ fuzz/fuzz_api.c $(FUZZ_LIB_OBJ) -pthread

fuzz: $(FUZZ_B)/fuzz_api
	fuzz/run.sh fuzz $(FUZZ_B) $(FUZZ_SECONDS)

fuzz-check: $(FUZZ_B)/fuzz_api
	fuzz/run.sh check $(FUZZ_B) $(FUZZ_CHECK_SECONDS)
