# vm.mk - a real guest (Debian's kernel + our guest/guest-mem) ballooned
# under QEMU, with its RAM in anonymous memory, kernel tmpfs huge=always and
# thpfs (build/libthpfs-qemu.so, tools/qemu-preload/).  See docs/vm.md.
#
#   make vm-image   build $(B)/guest (kernel package downloaded, not installed)
#   make vm-demo    1 GiB guest, every backend and policy, free page reporting
#                   off and on: table, $(B)/vm/vm.json, $(B)/vm/vm.png (root, ~10 min)
#   make test-vm    256 MiB guest: "N passed, N failed, N skipped" (skipped
#                   where QEMU cannot run)
# The VM targets install their own packages (scripts/deps.sh vm), so that
# `make check` does not need QEMU.
VM_BACKENDS ?= anon,tmpfs,thpfs:whole-lazy,thpfs:split,thpfs:lazy

.PHONY: vm-image vm-demo test-vm
vm-image:
	sh guest/build-image.sh $(B)/guest

vm-demo: vm-image $(B)/libthpfs-qemu.so
	python3 guest/run-vm.py --mem 1024 --backends $(VM_BACKENDS) --guest $(B)/guest --out $(B)/vm

test-vm: $(B)/libthpfs-qemu.so $(B)/vm/test_preload
	sh guest/test-vm.sh $(B)

# The QEMU preload (tools/qemu-preload/thpfs-qemu.c).  libthpfs's own calls
# to functions the preload also defines must reach the C library, so they
# are --wrap'ed; the recipe fails if libthpfs calls one not in the list.
QEMU_PRELOAD_WRAP := open close pread mmap munmap madvise
tools: $(B)/libthpfs-qemu.so
$(B)/libthpfs-qemu.so: tools/qemu-preload/thpfs-qemu.c $(B)/libthpfs.a include/thpfs.h
	$(CC) $(CFLAGS) -shared -o $@ $< $(B)/libthpfs.a \
		$(foreach s,$(QEMU_PRELOAD_WRAP),-Wl,--wrap=$(s)) $(LDFLAGS) -ldl
	@defined=$$(nm -D --defined-only $@ | awk '{print $$3}' | sort -u); \
	own=$$(nm --defined-only $(B)/libthpfs.a | awk 'NF == 3 {print $$3}' | sort -u); \
	for s in $$(nm -u $(B)/libthpfs.a | awk '{print $$2}' | sort -u); do \
		echo "$$own" | grep -qx "$$s" && continue; \
		if echo "$$defined" | grep -qx "$$s" && ! echo " $(QEMU_PRELOAD_WRAP) " | grep -q " $$s "; then \
			echo "libthpfs-qemu.so: libthpfs calls $$s, which the preload wraps: add it to QEMU_PRELOAD_WRAP" >&2; \
			rm -f $@; exit 1; \
		fi; \
	done

# The preload's own test (no QEMU needed): make test-qemu-preload
.PHONY: test-qemu-preload
tests: $(B)/vm/test_preload
$(B)/vm/test_preload: tests/vm/test_preload.c tools/cgroup.c tools/cgroup.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -o $@ tests/vm/test_preload.c tools/cgroup.c $(LDFLAGS) -ldl
test-qemu-preload: $(B)/libthpfs-qemu.so $(B)/vm/test_preload
	sh tests/vm/run-preload.sh $(B)
