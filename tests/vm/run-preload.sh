#!/bin/sh
# run-preload.sh B - tests of B/libthpfs-qemu.so without QEMU: B/vm/test_preload
# under each policy, and the refusals (bad options) a VMM must see at start.
# Prints "N passed, N failed, N skipped"; exit 1 if anything failed.
B=${1:-build}
lib=$(cd "$B" && pwd)/libthpfs-qemu.so
passed=0 failed=0 skipped=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() { # adds the "N passed, N failed" line of file $1
	set -- $(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$1" | tail -n 1)
	passed=$((passed + ${1:-0})); failed=$((failed + ${2:-1}))
}
for policy in whole-lazy split lazy; do
	echo "== test_preload policy=$policy"
	THPFS_QEMU_PREFIX=/thpfs-test/ THPFS_QEMU_OPTIONS="policy=$policy" \
	THPFS_QEMU_STATS="$tmp/stats-$policy" LD_PRELOAD="$lib" \
		"$B/vm/test_preload" > "$tmp/out" 2>&1
	rc=$?
	cat "$tmp/out"
	if [ $rc -eq 2 ]; then
		skipped=$((skipped + 1))
	else
		count "$tmp/out"
	fi
done
echo "== refusals"
check_refusal() { # $1 options, $2 expected message
	out=$(THPFS_QEMU_OPTIONS="$1" LD_PRELOAD="$lib" /bin/true 2>&1)
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
