#!/bin/bash
# run-tests.sh BUILD_DIR [TEST...] - run the cmocka test binaries of BUILD_DIR
# (BUILD_DIR/tests/test_*, or only the TEST names given), show their output,
# and end with one line "N passed, N failed, N skipped" counting test cases.
#
# Test cases are counted from cmocka's summary lines ("[  PASSED  ] N
# test(s)." and "[  FAILED  ] N test(s), listed below:").  A binary that
# exits non-zero without reporting a failed case (crash, timeout, sanitizer
# report at exit such as a leak) counts as one more failed case, and so does
# a binary whose output holds a sanitizer report although cmocka passed.
# Skipped: cmocka's "[  SKIPPED ] N test(s)" (a test that called skip(): not
# root, no cgroup, no THP) plus each test that printed "[  SKIPPED ] check:
# WHY" (tl_skip_check(): a kernel check it could not make), counted once.
# Exit status: 0 when nothing failed, 1 otherwise.
#
# Environment: THPFS_TEST_TIMEOUT (seconds per binary, default 900).

set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR [TEST...]" >&2
	exit 2
fi
bdir=$1
shift
timeout_s=${THPFS_TEST_TIMEOUT:-900}

# Sanitizer reports must fail the run; leaks are reported at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=23}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:exitcode=66:second_deadlock_stack=1}

bins=()
if [ $# -gt 0 ]; then
	for t in "$@"; do
		bins+=("$bdir/tests/$t")
	done
else
	for b in "$bdir"/tests/test_*; do
		[ -f "$b" ] && [ -x "$b" ] && bins+=("$b")
	done
fi
if [ ${#bins[@]} -eq 0 ]; then
	echo "no test binaries in $bdir/tests (run make tests first)" >&2
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
total_pass=0
total_fail=0
total_skip=0
broken=()

for b in "${bins[@]}"; do
	name=$(basename "$b")
	echo "=== $name"
	if [ ! -x "$b" ]; then
		echo "=== $name: missing"
		total_fail=$((total_fail + 1))
		broken+=("$name (missing)")
		continue
	fi
	start=$(date +%s)
	timeout -k 10 "$timeout_s" "$b" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	secs=$(( $(date +%s) - start ))
	pass=$(sed -n 's/^\[  PASSED  \] \([0-9]\+\) test(s)\..*/\1/p' "$log" |
	       awk '{ s += $1 } END { print s + 0 }')
	fail=$(sed -n 's/^\[  FAILED  \] \([0-9]\+\) test(s), listed below:.*/\1/p' "$log" |
	       awk '{ s += $1 } END { print s + 0 }')
	skip=$(sed -n 's/^\[  SKIPPED \] \([0-9]\+\) test(s), listed below:.*/\1/p' "$log" |
	       awk '{ s += $1 } END { print s + 0 }')
	# tests that passed without one of their kernel checks, once each
	skip=$((skip + $(awk '/^\[ RUN      \] / { t = $NF }
		/^\[  SKIPPED \] check: / && !(t in seen) { seen[t] = 1; n++ }
		END { print n + 0 }' "$log")))
	san=0
	if grep -qE '^(WARNING: ThreadSanitizer|==[0-9]+==ERROR: (Address|Leak)Sanitizer)|runtime error:' "$log"; then
		san=1
	fi
	extra=0
	why=""
	if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
		extra=1
		case $rc in
		124|137) why="timed out after ${timeout_s}s" ;;
		*) why="exited with status $rc without a failed test case" ;;
		esac
	elif [ "$san" -eq 1 ] && [ "$fail" -eq 0 ]; then
		extra=1
		why="sanitizer report"
	fi
	if [ $((pass + fail + skip)) -eq 0 ] && [ "$extra" -eq 0 ]; then
		extra=1
		why="no cmocka summary in the output"
	fi
	total_pass=$((total_pass + pass))
	total_fail=$((total_fail + fail + extra))
	total_skip=$((total_skip + skip))
	[ -n "$why" ] && broken+=("$name ($why)")
	echo "=== $name: $pass passed, $((fail + extra)) failed, $skip skipped, exit $rc, ${secs}s"
done

echo
for x in "${broken[@]+"${broken[@]}"}"; do
	echo "counted as a failed case: $x"
done
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
