#!/bin/bash
# run.sh BUILD_DIR - thpfs-balloon's tests: the model's unit tests
# (BUILD_DIR/tests/balloon/test_model), then the program itself
# (BUILD_DIR/thpfs-balloon) on a 64 MiB guest: bad input, every policy's
# returned memory as the cgroup measured it, stamped pages, message sizes,
# the JSON, the plot, and a run as an unprivileged user.
#
# Ends with one line "N passed, N failed, N skipped"; exit status 0 when
# nothing failed.  Needs root (child memory cgroups, the kernel's tmpfs
# mount) and jq; without root the checks that need it are counted as skipped.
#
# Tolerance: cgroup v1 charges memory to a cgroup in per-CPU batches of 64
# pages, so a usage reading may be off by up to 64 pages per CPU; TOL_MIB
# below is that bound, and every "returns X" check allows it.

set -u
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 2
fi
bdir=$(cd "$1" && pwd)
bin=$bdir/thpfs-balloon
unit=$bdir/tests/balloon/test_model
pass=0
fail=0
skipped=0
root=0
[ "$(id -u)" -eq 0 ] && root=1
tmp=$(mktemp -d /tmp/thpfs-balloon-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $1"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else bad "$desc"; fi
}
# jqtrue FILTER FILE: the filter's only output is true
jqtrue() {
	[ -s "$2" ] && [ "$(jq -c "$1" "$2" 2>/dev/null)" = "true" ]
}

ncpu=$(nproc)
TOL_MIB=$(awk -v n="$ncpu" 'BEGIN { printf "%.3f", n * 64 * 4096 / 1048576 }')
echo "tolerance of a cgroup reading: $TOL_MIB MiB ($ncpu CPUs)"

for tool in jq awk; do
	if ! command -v $tool >/dev/null; then
		echo "$tool is missing (Debian package $tool)"
		echo "0 passed, 1 failed, 0 skipped"
		exit 1
	fi
done

# ---- unit tests ----
if [ -x "$unit" ]; then
	out=$("$unit" 2>&1)
	rc=$?
	echo "$out" | grep -E '^\[  (FAILED|ERROR)|^\[   LINE' || true
	np=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p')
	nf=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p')
	pass=$((pass + ${np:-0}))
	fail=$((fail + ${nf:-0}))
	echo "unit tests: ${np:-0} passed, ${nf:-0} failed"
	if [ $rc -ne 0 ] && [ "${nf:-0}" -eq 0 ]; then bad "test_model exited $rc"; fi
else
	bad "no unit test binary $unit"
fi

if [ ! -x "$bin" ]; then
	bad "no program $bin"
	echo "$pass passed, $fail failed, $skipped skipped"
	exit 1
fi

# ---- --help and bad input ----
help=$("$bin" --help)
check "--help exits 0" test $? -eq 0
missing=""
for o in size target frag free ask no-report report-delay trace no-collapse seed reads policies \
	backends thpfs-options json plot no-plot quiet help version; do
	grep -q -- "--$o" <<<"$help" || missing="$missing --$o"
done
check "--help documents every option${missing:+ (missing:$missing)}" test -z "$missing"

# bad_input DESCRIPTION WORD ARGS...: exit status 2 and a message with WORD
bad_input() {
	local desc=$1 word=$2
	shift 2
	"$bin" -q --no-plot -r 0 "$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	if [ $rc -eq 2 ] && grep -qi -- "$word" "$tmp/err" && [ ! -s "$tmp/out" ]; then
		ok "bad input: $desc (exit 2: $(head -1 "$tmp/err"))"
	else
		bad "bad input: $desc: exit $rc, stderr: $(head -2 "$tmp/err")"
	fi
}
bad_input "size zero" "more than zero" --size 0
bad_input "size not page-aligned" "multiple of the 4 KiB" --size 1000000
bad_input "size larger than the machine" "more than this machine" --size 64t
bad_input "size not a number" "not a size" --size lots
bad_input "target zero" "more than zero" --size 64m --target 0
bad_input "target not page-aligned" "multiple of the 4 KiB" --size 64m --target 5000
bad_input "target above guest RAM" "larger than guest RAM" --size 64m --target 128m
bad_input "unknown policy" "unknown policy" --policies split,balloonify
bad_input "unknown backend" "unknown backend" --backends zfs
bad_input "fragmentation out of range" "0..1" --frag 1.5
bad_input "unknown option" "unknown" --turbo
bad_input "stray argument" "unexpected argument" extra
bad_input "report delay out of range" "report-delay" --report-delay 99
bad_input "trace file missing" "trace" --trace "$tmp/no-such-trace"
printf 'ram 0x1000000\nd 0x2000000 0x1000\n' >"$tmp/bad.trace"
bad_input "trace discard outside guest RAM" "outside guest RAM" --trace "$tmp/bad.trace"
printf 'virtqueue_pop vq 0x1 elem 0x2 in_num 0 out_num 1\n' >"$tmp/raw.trace"
bad_input "raw trace without --size" "give --size" --trace "$tmp/raw.trace"

# ---- 64 MiB guest, scattered free memory (the issue's table) ----
j1=$tmp/scattered.json
"$bin" -q --size 64m --target 32m --frag 1 --reads 20000 --json -o "$tmp/plot.png" >"$j1" 2>"$tmp/err1"
rc=$?
check "64 MiB scattered run exits 0 (stderr: $(head -c 300 "$tmp/err1"))" test $rc -eq 0
check "JSON parses" jqtrue '.runs | length > 0' "$j1"

nruns=$(jq '[.runs[] | select(.status == "ok")] | length' "$j1")
kernel=$(jq '[.runs[] | select(.backend == "kernel" and .status == "ok")] | length' "$j1")
check "every policy ran on thpfs" test "$(jq '[.runs[] | select(.backend == "thpfs" and .status == "ok")] | length' "$j1")" -eq 6
if [ "$kernel" -eq 6 ]; then
	ok "every policy ran on the kernel's tmpfs"
elif [ "$root" -eq 0 ]; then
	skip "the kernel's tmpfs backend (not root)"
else
	bad "kernel runs: $kernel of 6 ($(jq -r '.runs[] | select(.backend == "kernel") | .message' "$j1" | head -1))"
fi

# every field of the JSON
fields='backend policy status message mem_source guest_free_mib guest_free_huge_blocks_mib
ballooned_mib reported_mib reported_after_deflate_mib report_skipped_mib report_passes guest_path
phases_s coverage_known returned_inflated_mib returned_mib ratio_inflated ratio memory_mib
messages time_s pages_per_s discards_per_s inflate_ops huge_discards punches zeroes coverage
counters_inflate counters_rewrite counters_collapse collapse_rc read_ns check samples'
sub='memory_mib:filled,inflated,reported,asked,deflated,collapsed
messages:inflate,deflate,report,max_pfns,max_report_blocks
time_s:fill,inflate,host,report,ask,ask_host,deflate,collapse,total
phases_s:inflate,ask,deflate,collapse,end
coverage:filled,inflated,asked,deflated,collapsed
counters_inflate:split,split_failed,deferred_split,collapse_alloc,pages_collapsed,file_alloc
read_ns:before,inflated,after
check:pages,bad_kept,bad_zero,bad_rewrite'
missing=""
for f in $fields; do
	n=$(jq --arg f "$f" '[.runs[] | select(has($f) | not)] | length' "$j1")
	[ "$n" -eq 0 ] || missing="$missing $f"
done
while IFS=: read -r obj keys; do
	for k in ${keys//,/ }; do
		n=$(jq --arg o "$obj" --arg k "$k" '[.runs[] | select(.[$o] | has($k) | not)] | length' "$j1")
		[ "$n" -eq 0 ] || missing="$missing $obj.$k"
	done
done <<<"$sub"
for k in size_mib target_mib ask_mib frag free seed reads report report_delay_s collapse msg_max_pfns trace thpfs_options; do
	jq -e --arg k "$k" '.config | has($k)' "$j1" >/dev/null || missing="$missing config.$k"
done
check "JSON has every field${missing:+ (missing:$missing)}" test -z "$missing"
check "JSON samples are [t, MiB, %] triples" \
	jqtrue '[.runs[] | select(.status == "ok") | .samples | length > 10 and all(length == 3)] | all' "$j1"

# run_value BACKEND POLICY JQ-EXPR
rv() { jq -r --arg b "$1" --arg p "$2" ".runs[] | select(.backend == \$b and .policy == \$p) | $3" "$j1"; }
# kernel_unprivileged BACKEND POLICY: the kernel's run failed because we are not root
kernel_unprivileged() {
	[ "$1" = kernel ] && [ "$root" -eq 0 ] && [ "$(rv "$1" "$2" .status)" != ok ]
}
# cmp_ok DESC AWK-CONDITION: the condition sees variables r (returned),
# ri (returned before the host asked), g (ballooned + reported), t (tolerance)
cmp_ok() {
	local desc=$1 b=$2 p=$3 cond=$4
	local r ri g hd
	if [ -z "$(rv "$b" "$p" .backend)" ]; then
		skip "$b $p: $desc (no such run)"
		return 0
	fi
	if kernel_unprivileged "$b" "$p"; then
		skip "$b $p: $desc (not root)"
		return 0
	fi
	r=$(rv "$b" "$p" .returned_mib)
	ri=$(rv "$b" "$p" .returned_inflated_mib)
	g=$(rv "$b" "$p" '.ballooned_mib + .reported_mib')
	hd=$(rv "$b" "$p" .huge_discards)
	if awk -v r="$r" -v ri="$ri" -v g="$g" -v t="$TOL_MIB" -v hd="$hd" "BEGIN { exit !($cond) }"; then
		ok "$b $p: $desc (returned $ri / $r of $g MiB)"
	else
		bad "$b $p: $desc (returned $ri / $r of $g MiB, tolerance $t)"
	fi
}

check "the balloon took 32 MiB in every run" \
	jqtrue '[.runs[] | select(.status == "ok") | .ballooned_mib == 32] | all' "$j1"
check "free memory was scattered: no free 2 MiB block" \
	jqtrue '[.runs[] | select(.status == "ok") | .guest_free_huge_blocks_mib == 0] | all' "$j1"
for b in thpfs kernel; do
	cmp_ok "legacy returns about 0%" $b legacy 'r <= t && r >= -t'
	cmp_ok "qemu-pbp returns about 0%" $b qemu-pbp 'r <= t && r >= -t && hd == 0'
	cmp_ok "huge-bitmap returns only whole ballooned 2 MiB pages (none here)" $b huge-bitmap \
		'r <= hd * 2 + t && r >= hd * 2 - t && hd == 0'
	cmp_ok "lazy returns about 0% until asked" $b lazy 'ri <= t && ri >= -t'
	cmp_ok "whole-lazy returns about 0% until asked (no 2 MiB page ballooned whole)" $b whole-lazy \
		'ri <= t && ri >= -t && hd == 0'
done
cmp_ok "split returns at least 99.5%" thpfs split 'r >= 0.995 * g - t'
cmp_ok "lazy returns at least 99.5% once asked" thpfs lazy 'r >= 0.995 * g - t'
cmp_ok "whole-lazy returns at least 99.5% once asked" thpfs whole-lazy 'r >= 0.995 * g - t'
check "huge-page coverage came from the kernel (PAGEMAP_SCAN) in every run" \
	jqtrue '[.runs[] | select(.status == "ok") | .coverage_known] | all' "$j1"
check "the guest of the kernel backend writes through its mapping" \
	jqtrue '[.runs[] | select(.backend == "kernel" and .status == "ok") | .guest_path == "mapping"] | all' "$j1"
check "the speed test measured a pointer chase in every run (ns/load > 0)" \
	jqtrue '[.runs[] | select(.status == "ok") | .read_ns | .before > 0 and .inflated > 0 and .after > 0] | all' "$j1"
check "phase starts are in order" \
	jqtrue '[.runs[] | select(.status == "ok") | .phases_s | .inflate < .ask and .ask < .deflate and .deflate <= .collapse and .collapse <= .end] | all' "$j1"
if [ "$kernel" -eq 6 ]; then
	ks=$(rv kernel split .returned_mib)
	ts=$(rv thpfs split .returned_mib)
	check "thpfs split returns at least what the kernel's tmpfs returns ($ts vs $ks MiB)" \
		awk -v a="$ts" -v b="$ks" -v t="$TOL_MIB" 'BEGIN { exit !(a >= b - t) }'
else
	skip "thpfs split against the kernel's tmpfs (no kernel runs)"
fi

check "every stamped page intact after inflate and after deflate + rewrite" \
	jqtrue '[.runs[] | select(.status == "ok") | .check | .bad_kept + .bad_zero + .bad_rewrite == 0 and .pages == 2 * 16384] | all' "$j1"
check "messages never exceed 256 frames" \
	jqtrue '[.runs[] | select(.status == "ok") | .messages | .max_pfns > 0 and .max_pfns <= 256 and .max_report_blocks <= 32] | all' "$j1"
check "inflate sent ceil(pages / 256) messages" \
	jqtrue '[.runs[] | select(.status == "ok") | .messages.inflate == ((.ballooned_mib * 256 + 255) / 256 | floor)] | all' "$j1"
if [ "$root" -eq 0 ]; then
	skip "memory measured in a child cgroup (not root)"
else check "memory measured in a child cgroup" \
	jqtrue '[.runs[] | select(.status == "ok") | .mem_source == "cgroup"] | all' "$j1"
fi
check "thpfs huge-page coverage comes back after deflate + rewrite (split, lazy)" \
	jqtrue '[.runs[] | select(.backend == "thpfs" and (.policy == "split" or .policy == "lazy")) | (.coverage.asked < 0.5) and .coverage.collapsed > 0.99] | all' "$j1"
if head -c 8 "$tmp/plot.png" 2>/dev/null | od -An -tx1 | grep -q "89 50 4e 47 0d 0a 1a 0a"; then
	ok "plot written as a PNG ($(stat -c %s "$tmp/plot.png") bytes)"
else
	bad "no PNG at $tmp/plot.png"
fi

# ---- 64 MiB guest, free memory in whole 2 MiB blocks ----
j2=$tmp/whole.json
"$bin" -q --size 64m --target 17m --frag 0 --policies split,huge-bitmap --reads 0 --no-plot \
	--json >"$j2" 2>"$tmp/err2"
check "64 MiB whole-block run exits 0 ($(head -c 300 "$tmp/err2"))" test $? -eq 0
j1=$j2
for b in thpfs kernel; do
	if [ -z "$(rv $b split .backend)" ] || kernel_unprivileged $b split; then
		skip "$b: whole-block checks (no $b runs)"
		continue
	fi
	s=$(rv $b split .returned_mib)
	h=$(rv $b huge-bitmap .returned_mib)
	hd=$(rv $b huge-bitmap .huge_discards)
	check "$b: huge-bitmap returns what split does but the partial 2 MiB page ($h vs $s MiB, $hd whole pages)" \
		awk -v s="$s" -v h="$h" -v t="$TOL_MIB" 'BEGIN { exit !(h <= s + t && h >= s - 2 - t) }'
	cs=$(rv $b split .coverage.inflated)
	ch=$(rv $b huge-bitmap .coverage.inflated)
	check "$b: huge-bitmap keeps more huge pages than split ($ch vs $cs)" \
		awk -v s="$cs" -v h="$ch" 'BEGIN { exit !(h > s) }'
	check "$b: free page reporting gave back the whole free blocks left" \
		jqtrue "[.runs[] | select(.backend == \"$b\") | .reported_mib >= 14 and .returned_mib >= .ballooned_mib - 2 + .reported_mib - $TOL_MIB] | all" "$j2"
done
check "thpfs huge-bitmap splits no huge page" \
	test "$(rv thpfs huge-bitmap .counters_inflate.split)" = 0
check "every stamped page intact (whole blocks)" \
	jqtrue '[.runs[] | select(.status == "ok") | .check | .bad_kept + .bad_zero + .bad_rewrite == 0] | all' "$j2"

# ---- 64 MiB guest on the defaults (half the free memory in whole 2 MiB
# blocks): the reporting worker, whole-lazy against huge-bitmap and lazy ----
j3=$tmp/default.json
"$bin" -q --size 64m --reads 0 --no-plot --json >"$j3" 2>"$tmp/err3"
check "64 MiB default run exits 0 ($(head -c 300 "$tmp/err3"))" test $? -eq 0
j1=$j3
check "the worker reported free 2 MiB blocks after inflate in every run" \
	jqtrue '[.runs[] | select(.status == "ok") | .reported_mib >= 2] | all' "$j3"
check "the worker's pass after deflate skipped the blocks it reported before and reported the new ones" \
	jqtrue '[.runs[] | select(.status == "ok") | .report_skipped_mib == .reported_mib and .reported_after_deflate_mib >= 2 and .report_passes == 2] | all' "$j3"
for b in thpfs kernel; do
	[ -n "$(rv $b whole-lazy .backend)" ] || continue
	wl=$(rv $b whole-lazy .returned_inflated_mib)
	hb=$(rv $b huge-bitmap .returned_inflated_mib)
	lz=$(rv $b lazy .returned_inflated_mib)
	check "$b: whole-lazy gives back at once what huge-bitmap does ($wl vs $hb MiB), more than lazy ($lz)" \
		awk -v a="$wl" -v h="$hb" -v l="$lz" -v t="$TOL_MIB" 'BEGIN { exit !(a >= h - t && a <= h + t && a > l + 1) }'
	cmp_ok "whole-lazy returns at least 99% once asked" $b whole-lazy 'r >= 0.99 * g - t'
	cw=$(rv $b whole-lazy .coverage.inflated)
	cs=$(rv $b split .coverage.inflated)
	# thpfs splits every punched huge page (or says it could not: split
	# verification).  The kernel's split is best effort: a folio it cannot
	# split then (an extra reference, e.g. a per-CPU LRU batch) is zeroed and
	# stays huge, so its split kept 0-16% of 32 huge pages here; it must
	# still keep far fewer than whole-lazy.
	if [ "$b" = thpfs ]; then lim=0.05; else lim=0.5; fi
	check "$b: whole-lazy keeps huge pages until asked, split does not ($cw vs $cs, split below $lim)" \
		awk -v w="$cw" -v s="$cs" -v l="$lim" 'BEGIN { exit !(w > 0.5 && s < l && w > s + 0.25) }'
done

# ---- --trace: a request stream recorded from a real guest, and a synthetic one ----
data=$(cd "$(dirname "$0")/../data" && pwd)
j4=$tmp/trace.json
"$bin" -q --trace "$data/balloon-trace-synthetic.txt" --reads 0 --no-plot --json >"$j4" 2>"$tmp/err4"
check "synthetic trace replays (exit 0; $(head -c 200 "$tmp/err4"))" test $? -eq 0
j1=$j4
check "synthetic trace: 812 pages and 6 MiB of reports in every run, guest RAM 16 MiB" \
	jqtrue '([.runs[] | select(.status == "ok") | (.ballooned_mib * 256 | round) == 812 and .reported_mib == 6] | all) and .config.size_mib == 16 and (.runs | length) == 12' "$j4"
check "synthetic trace: the 512-page request went as two messages, none above 256" \
	jqtrue '[.runs[] | select(.status == "ok") | .messages.inflate == 4 and .messages.max_pfns == 256] | all' "$j4"
check "synthetic trace: huge-bitmap and whole-lazy discard the whole 2 MiB page at once" \
	jqtrue '[.runs[] | select(.status == "ok" and (.policy == "huge-bitmap" or .policy == "whole-lazy")) | .huge_discards == 1] | all' "$j4"
cmp_ok "synthetic trace: split returns at least 99.5%" thpfs split 'r >= 0.995 * g - t'
check "synthetic trace: every page intact" \
	jqtrue '[.runs[] | select(.status == "ok") | .check | .bad_kept + .bad_zero + .bad_rewrite == 0] | all' "$j4"
j5=$tmp/real.json
"$bin" -q --trace "$data/balloon-trace-qemu.txt" --policies split,whole-lazy --reads 0 --no-plot \
	--no-collapse --json >"$j5" 2>"$tmp/err5"
check "recorded QEMU trace replays (exit 0; $(head -c 200 "$tmp/err5"))" test $? -eq 0
check "recorded trace: 128 MiB ballooned in 128 messages of 256 frames" \
	jqtrue '[.runs[] | select(.status == "ok") | .ballooned_mib == 128 and .messages.inflate == 128 and .messages.max_pfns == 256] | all' "$j5"
j1=$j5
cmp_ok "recorded trace: split returns at least 99.5%" thpfs split 'r >= 0.995 * g - t'
cmp_ok "recorded trace: whole-lazy returns the 20 whole 2 MiB pages at once" thpfs whole-lazy \
	'hd == 20 && ri >= 40 - t && ri <= 40 + t && r >= 0.995 * g - t'
j6=$tmp/raw.json
"$bin" -q --trace "$data/balloon-trace-raw.log" --size 256m --policies split --backends thpfs \
	--reads 0 --no-plot --json >"$j6" 2>"$tmp/err6"
check "QEMU's raw trace log replays: 512 pages in 2 messages ($(head -c 200 "$tmp/err6"))" \
	jqtrue '.runs[0] | .status == "ok" and .ballooned_mib == 2 and .messages.inflate == 2' "$j6"

# ---- a trace that balloons nothing: no rate of nothing; the plot only
# where asked, and said after the tables ----
printf 'ram 0x200000\nd 0x0 0x200000\n' >"$tmp/zero.trace"
mkdir "$tmp/cwd"
(cd "$tmp/cwd" && "$bin" -q --trace "$tmp/zero.trace" --policies split --reads 0 \
	>"$tmp/zero.out" 2>"$tmp/zero.err")
rc=$?
check "nothing ballooned: exit 0 ($(head -c 200 "$tmp/zero.err"))" test $rc -eq 0
check "nothing ballooned: no inflate rate or ratio printed ($(grep 'pages/s on' "$tmp/zero.out"))" \
	bash -c "! grep -q \"the kernel's rate\" '$tmp/zero.out'"
check "no --plot: no PNG written in the working directory" test ! -e "$tmp/cwd/balloon.png"
(cd "$tmp/cwd" && "$bin" --trace "$tmp/zero.trace" --policies split --reads 0 \
	-o "$tmp/zero.png" >"$tmp/zero.out" 2>"$tmp/zero.err")
if command -v gnuplot >/dev/null; then
	check "--plot: the last line of stdout names the PNG ($(tail -1 "$tmp/zero.out"))" \
		test "$(tail -1 "$tmp/zero.out")" = "plot written to $tmp/zero.png"
	check "--plot: nothing about the plot on stderr" bash -c "! grep -q plot '$tmp/zero.err'"
	check "--plot: the PNG is where asked" test -s "$tmp/zero.png"
else
	skip "plot message (no gnuplot)"
fi

# ---- not root: the kernel backend is skipped with a message ----
if command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups \
	test -x "$bin" 2>/dev/null; then
	(cd "$tmp" && setpriv --reuid=65534 --regid=65534 --clear-groups "$bin" -q --size 16m \
		--policies split --reads 0 --no-plot --json >"$tmp/nr.json" 2>"$tmp/nr.err")
	rc=$?
	check "unprivileged: exit 0, kernel skipped with a message ($(head -1 "$tmp/nr.err"))" \
		bash -c "[ $rc -eq 0 ] && grep -q 'kernel backend skipped' '$tmp/nr.err'"
	check "unprivileged: thpfs split still measured (process RSS)" \
		jqtrue '.runs[] | select(.backend == "thpfs") | .status == "ok" and .mem_source == "rss" and .returned_mib > 3.5' "$tmp/nr.json"
else
	skip "unprivileged run (no setpriv, or $bin not reachable by uid 65534)"
fi

echo "$pass passed, $fail failed, $skipped skipped"
[ $fail -eq 0 ]
