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
echo "== the preload without QEMU"
sh "$HERE/../tests/vm/run-preload.sh" "$B" > "$B/vm-preload.log" 2>&1
pre=$(tail -n 1 "$B/vm-preload.log")
echo "$pre" | grep -q ' passed, ' || pre="0 passed, 1 failed, 0 skipped (run-preload.sh)"
echo "$pre (log: $B/vm-preload.log)"
echo "== a real guest under QEMU"
python3 "$HERE/run-vm.py" --check --mem 256 --guest "$B/guest" --out "$B/vm-test" \
	--backends anon,tmpfs,thpfs:whole-lazy,thpfs:split --fpr both --fpr-backends thpfs:whole-lazy \
	--settle 5 --fpr-wait 6 > "$B/vm-test.log" 2>&1
rc=$?
grep -E '^(ok|FAIL)' "$B/vm-test.log"
sed -n '/^backend/,/^(/p' "$B/vm-test.log"
run=$(tail -n 1 "$B/vm-test.log")
echo "$run" | grep -q ' passed, ' || run="0 passed, 1 failed, 0 skipped (run-vm.py exited with $rc)"
echo "$run (log: $B/vm-test.log)"
# one summary line over both
echo "$pre
$run" | awk '/passed,/ {p += $1; f += $3; s += $5} END {printf "%d passed, %d failed, %d skipped\n", p, f, s; exit f > 0}'
