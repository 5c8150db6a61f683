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

.PHONY: all lib tools tests bench clean test install deps demo check
all: lib tools tests bench

# The README's two commands: `make demo` (the balloon model on defaults) and
# `make check` (every test suite, plain and under the sanitizers).  Both
# install what they need first.
deps:
	@sh scripts/deps.sh
demo: deps
	@$(MAKE) --no-print-directory all
	$(B)/thpfs-balloon
check: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/check.sh

lib: $(B)/libthpfs.a $(B)/libthpfs.so
$(B)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(B)/libthpfs.a: $(LIB_OBJ)
	ar rcs $@ $^
$(B)/libthpfs.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS)

-include mk/*.mk

thpfs.pc: thpfs.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(shell sed -n 's/.*THPFS_VERSION "\(.*\)"/\1/p' include/thpfs.h)|' $< > $@
install: lib thpfs.pc
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 644 $(B)/libthpfs.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libthpfs.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/thpfs.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 thpfs.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

clean:
	rm -rf build build-asan build-tsan build-fuzz thpfs.pc
