#!/bin/sh
# run.sh MODE BUILD_DIR SECONDS - runs the libFuzzer target BUILD_DIR/fuzz_api.
#
#   fuzz   fuzz for SECONDS from the seed corpus (fuzz/seeds.sh) and the
#          inputs in fuzz/regress/; new inputs go to BUILD_DIR/corpus, a
#          crashing input to BUILD_DIR/artifacts/ (libFuzzer prints its name).
#   check  the short pass of `make check`: every file in fuzz/regress/ is run
#          once (one test each), then one timed run of SECONDS (one test).
#          Ends with "fuzz: N passed, N failed"; a test passes when the
#          target neither crashes nor reports a model mismatch.
#
# Environment: FUZZ_JOBS (parallel libFuzzer jobs in fuzz mode, default 1),
# FUZZ_ARGS (more libFuzzer flags).
set -u
mode=$1
bdir=$2
secs=$3
here=$(cd "$(dirname "$0")" && pwd)
bin=$bdir/fuzz_api
[ -x "$bin" ] || { echo "$bin missing"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
seeds=$bdir/seeds
rm -rf "$seeds"
sh "$here/seeds.sh" "$seeds"
mkdir -p "$bdir/corpus" "$bdir/artifacts"
flags="-max_len=4096 -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 ${FUZZ_ARGS:-}"

if [ "$mode" = fuzz ]; then
	jobs=${FUZZ_JOBS:-1}
	# shellcheck disable=SC2086
	exec "$bin" $flags -max_total_time="$secs" -artifact_prefix="$bdir/artifacts/" \
		${jobs:+-fork=$jobs} "$bdir/corpus" "$seeds" "$here/regress"
fi

pass=0
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for f in "$here"/regress/*; do
	[ -f "$f" ] || continue
	if "$bin" -timeout=60 -rss_limit_mb=4096 "$f" > "$log" 2>&1; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL regress/$(basename "$f"):"
		grep -E 'model mismatch|ERROR|runtime error|deadly signal|#[0-9]+ 0x' "$log" | head -12
	fi
done
echo "regression inputs: $pass passed, $fail failed"
# The timed run starts from a fresh copy of the seeds: the result does not
# depend on what earlier runs left in BUILD_DIR/corpus.
work=$bdir/check-corpus
rm -rf "$work"
mkdir -p "$work"
# shellcheck disable=SC2086
if "$bin" $flags -max_total_time="$secs" -artifact_prefix="$bdir/artifacts/" \
	"$work" "$seeds" > "$log" 2>&1; then
	pass=$((pass + 1))
	grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$log" | tr '\n' ' '
	echo
	echo "timed run (${secs}s): passed"
else
	fail=$((fail + 1))
	echo "timed run (${secs}s): FAILED"
	grep -vE '^(INFO|#[0-9]+\s+(NEW|REDUCE|pulse|INITED))' "$log" | tail -40
fi
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
