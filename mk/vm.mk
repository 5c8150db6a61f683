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

test-vm: $(B)/libthpfs-qemu.so
	sh guest/test-vm.sh $(B)
