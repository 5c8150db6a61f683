# thpfs build.  `make` builds the library, tools and tests into build/;
# `make test` runs the test suite; `make SAN=asan` / `make SAN=tsan` build
# into build-asan/ / build-tsan/ with the sanitizers.
CC ?= cc
PREFIX ?= /usr/local
SAN ?=
OPT ?= -O2
CFLAGS_BASE = -std=gnu11 -g $(OPT) -Wall -Wextra -Wno-unused-parameter -fPIC -pthread -Iinclude -Isrc
ifeq ($(SAN),asan)
  B ?= build-asan
  SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  # the ASan build also checks the chunk invariants (src/internal.h)
  CFLAGS += -DTHPFS_DEBUG
else ifeq ($(SAN),tsan)
  B ?= build-tsan
  SANFLAGS = -fsanitize=thread
else
  B ?= build
  SANFLAGS =
endif
CFLAGS += $(CFLAGS_BASE) $(SANFLAGS)
LDFLAGS += $(SANFLAGS) -pthread

LIB_SRC = $(wildcard src/*.c)
LIB_OBJ = $(patsubst src/%.c,$(B)/obj/%.o,$(LIB_SRC))
HDRS = include/thpfs.h src/internal.h

.PHONY: all lib tools tests bench clean test deps demo check
all: lib tools tests bench

# The README's two commands: `make demo` (the balloon model on defaults) and
# `make check` (every test suite, plain and under the sanitizers).  Both
# install what they need first.
deps:
	@sh scripts/deps.sh
demo: deps
	@$(MAKE) --no-print-directory all
	$(B)/thpfs-balloon -o docs/balloon.png
check: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/check.sh

lib: $(B)/libthpfs.a $(B)/libthpfs.so
$(B)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(B)/libthpfs.a: $(LIB_OBJ)
	ar rcs $@ $^
# libthpfs.so.$(VERSION) with SONAME libthpfs.so.$(SOMAJOR), and the two
# links a build and the loader look for (mk/install.mk installs the same).
VERSION := $(shell sed -n 's/.*THPFS_VERSION "\(.*\)"/\1/p' include/thpfs.h)
SOMAJOR := $(firstword $(subst ., ,$(VERSION)))
$(B)/libthpfs.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libthpfs.so.$(SOMAJOR) -o $@ $^ $(LDFLAGS)
$(B)/libthpfs.so: $(B)/libthpfs.so.$(VERSION)
	ln -sf libthpfs.so.$(VERSION) $@.$(SOMAJOR)
	ln -sf libthpfs.so.$(SOMAJOR) $@

-include mk/*.mk

clean:
	rm -rf build build-asan build-tsan build-fuzz thpfs.pc
