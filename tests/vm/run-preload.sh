#!/bin/sh
# run-preload.sh B - tests of B/libthpfs-qemu.so without QEMU: B/vm/test_preload
# under each policy, and the refusals (bad options) a VMM must see at start.
# Prints "N passed, N failed, N skipped"; exit 1 if anything failed.
B=${1:-build}
lib=$(cd "$B" && pwd)/libthpfs-qemu.so
# A sanitizer build of the preload needs the sanitizer runtimes loaded first.
preload=$(ldd "$lib" | awk '/lib(asan|tsan)\.so/ {print $3}')
# (and ASan's quarantine of freed memory would count in the cgroup)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=0:thread_local_quarantine_size_kb=0}
preload="$preload $(ldd "$lib" | awk '/libubsan\.so/ {print $3}') $lib"
passed=0 failed=0 skipped=0
tmp=$(mktemp -d)
trap '[ -n "$KEEP" ] || rm -rf "$tmp"' EXIT
count() { # adds the "N passed, N failed" line of file $1
	set -- $(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$1" | tail -n 1)
	passed=$((passed + ${1:-0})); failed=$((failed + ${2:-1}))
}
for policy in whole-lazy split lazy; do
	echo "== test_preload policy=$policy"
	THPFS_QEMU_PREFIX=/thpfs-test/ THPFS_QEMU_OPTIONS="policy=$policy" \
	THPFS_QEMU_STATS="$tmp/stats-$policy" LD_PRELOAD="$preload" \
		timeout 120 "$B/vm/test_preload" > "$tmp/out" 2>&1
	rc=$?
	cat "$tmp/out"
	if [ $rc -ne 0 ] && [ $rc -ne 1 ] && [ $rc -ne 2 ]; then
		echo "FAIL: test_preload policy=$policy exited with status $rc"
		failed=$((failed + 1))
	elif [ $rc -eq 2 ]; then
		skipped=$((skipped + 1))
	else
		count "$tmp/out"
	fi
done
echo "== the stats file, read from outside"
n=$("$B/thpfs-stat" "$tmp/stats-whole-lazy" discards 2>&1)
if [ -x "$B/thpfs-stat" ] && [ "${n:-0}" -gt 0 ] 2>/dev/null && "$B/thpfs-stat" "$tmp/stats-whole-lazy" ShmemHugePages >/dev/null; then
	echo "ok: thpfs-stat reads the preload's stats file (discards $n)"; passed=$((passed + 1))
else
	echo "FAIL: thpfs-stat on the stats file: '$n'"; failed=$((failed + 1))
fi
echo "== refusals"
check_refusal() { # $1 options, $2 expected message
	out=$(THPFS_QEMU_OPTIONS="$1" LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0 timeout 60 /bin/true 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && echo "$out" | grep -q "$2"; then
		echo "ok: THPFS_QEMU_OPTIONS='$1' stops the process: $out"; passed=$((passed + 1))
	else
		echo "FAIL: THPFS_QEMU_OPTIONS='$1': exit $rc, '$out'"; failed=$((failed + 1))
	fi
}
check_refusal "policy=nope" "unknown policy 'nope'"
check_refusal "bogus=1" "unknown option 'bogus'"
check_refusal "size=1x" "thpfs-qemu: THPFS_QEMU_OPTIONS"
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
