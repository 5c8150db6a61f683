# options.mk - `make test-options`: the mount options are one list, the same
# in `thpfs --help`, include/thpfs.h, the README and docs/fuse.md
# (tests/options/run.sh; prints "N passed, N failed").
.PHONY: test-options
test-options: $(B)/thpfs
	tests/options/run.sh $(B)
