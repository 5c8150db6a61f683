#!/bin/sh
# test-vm.sh B - the small real-guest balloon test (make test-vm): a 256 MiB
# guest on each backend; prints "N passed, N failed, N skipped" and exits 1
# if anything failed.  Skipped (exit 0) where QEMU or the guest image cannot
# be had, or when not root.
B=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
skip() {
	echo "test-vm: skipped: $1"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
}
[ "$(id -u)" -eq 0 ] || skip "needs root (cgroup, /proc/kpageflags, tmpfs mount)"
sh "$HERE/../scripts/deps.sh" vm >/dev/null 2>&1 || skip "cannot install QEMU (scripts/deps.sh vm)"
sh "$HERE/build-image.sh" "$B/guest" >/dev/null 2>&1 || skip "cannot build the guest image (guest/build-image.sh)"
exec python3 "$HERE/run-vm.py" --check --mem 256 --guest "$B/guest" --out "$B/vm-test" \
	--backends anon,tmpfs,thpfs:whole-lazy --fpr both --fpr-backends thpfs:whole-lazy \
	--settle 5 --fpr-wait 6
