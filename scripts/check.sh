#!/bin/sh
# Runs every test suite in turn - the library's tests, the same under
# AddressSanitizer+UBSan, the concurrency tests under ThreadSanitizer, the
# FUSE mount tests (plain and with the daemon under ASan+UBSan) and the
# balloon model's tests, a short libFuzzer pass (fuzz/run.sh check) - and
# ends with one line "check: N passed, N failed, N skipped" summing the
# suites' own summary lines ("N passed, N failed[, N skipped]").
# Exits non-zero if any suite fails.
cd "$(dirname "$0")/.." || exit 1
MAKE=${MAKE:-make}
log=$(mktemp)
trap 'rm -f "$log" "$log.rc"' EXIT
total_pass=0
total_fail=0
total_skip=0
bad=""
run_stage() {
	name=$1
	shift
	echo "=== $name: $*"
	( "$@"; echo $? > "$log.rc" ) 2>&1 | tee "$log"
	rc=$(cat "$log.rc" 2>/dev/null || echo 1)
	line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	p=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
	f=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
	s=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) skipped.*/\1/p')
	if [ -z "$line" ]; then
		echo "=== $name: no summary line"
		f=1
		p=0
	elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "=== $name: exit status $rc"
		f=1
	fi
	total_pass=$((total_pass + p))
	total_fail=$((total_fail + f))
	total_skip=$((total_skip + ${s:-0}))
	[ "$f" -ne 0 ] && bad="$bad $name"
	return 0
}
run_stage unit $MAKE --no-print-directory test
run_stage asan $MAKE --no-print-directory check-asan
run_stage tsan $MAKE --no-print-directory check-tsan
run_stage fuse $MAKE --no-print-directory test-fuse
run_stage fuse-asan $MAKE --no-print-directory SAN=asan test-fuse
run_stage balloon $MAKE --no-print-directory test-balloon
run_stage options $MAKE --no-print-directory test-options
run_stage install $MAKE --no-print-directory test-install
run_stage vm $MAKE --no-print-directory test-vm
run_stage fuzz $MAKE --no-print-directory fuzz-check
[ -n "$bad" ] && echo "failing suites:$bad"
echo "check: $total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
