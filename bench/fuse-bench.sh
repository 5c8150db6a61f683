#!/bin/bash
# bench/fuse-bench.sh BUILD_DIR - read/write throughput through a thpfs FUSE
# mount against a private kernel tmpfs mounted huge=always, in the same run.
#
# Prints a table: MB/s on each side, the ratio thpfs/tmpfs, and where the
# FUSE time goes (context switches per request in the application and in the
# daemon, daemon CPU per request).  Next to thpfs runs fuse-null
# (bench/fuse-null.c), a daemon with the same libfuse set-up that does no
# file-system work: its ratio to tmpfs is the ceiling of any FUSE daemon
# here.  Needs root (three mounts).
#   FUSE_BENCH_MIB      file size in MiB (256)
#   FUSE_BENCH_SECONDS  seconds per test (1)
#   FUSE_BENCH_OPTS     extra daemon options (e.g. splice_read,splice_write)
#   FUSE_BENCH_BS       only this block size in bytes (default: 4 KiB, 64 KiB, 1 MiB)
#   FUSE_BENCH_ROUNDS   rounds (3); each runs tmpfs then thpfs, and the table
#                       gives medians over the rounds, the ratio as the median
#                       of the rounds' ratios with their range [min-max]
#   FUSE_BENCH_ARGS     extra daemon arguments (e.g. -s for one thread)
# FUSE_BENCH_OPTS and FUSE_BENCH_ARGS go to both daemons (fuse-null ignores
# thpfs's library options).
set -u
B=${1:?usage: bench/fuse-bench.sh BUILD_DIR}
B=$(cd "$B" && pwd) || exit 1
MIB=${FUSE_BENCH_MIB:-256}
SECS=${FUSE_BENCH_SECONDS:-1}
EXTRA=${FUSE_BENCH_OPTS:-}
BSARG=${FUSE_BENCH_BS:+-b $FUSE_BENCH_BS}
ROUNDS=${FUSE_BENCH_ROUNDS:-3}
DARGS=${FUSE_BENCH_ARGS:-}
BENCH=$B/fuse/fuse-bench
NULLD=$B/fuse/fuse-null

[ "$(id -u)" = 0 ] || { echo "bench/fuse-bench.sh: needs root (mounts)"; exit 1; }
[ -x "$BENCH" ] && [ -x "$B/thpfs" ] && [ -x "$NULLD" ] || { echo "bench/fuse-bench.sh: build first (make tools tests)"; exit 1; }

T=$(mktemp -d /tmp/thpfs-fuse-bench.XXXXXX) || exit 1
mkdir -p "$T/thpfs" "$T/tmpfs" "$T/null"
PID=
NPID=
cleanup() {
	mountpoint -q "$T/thpfs" && { fusermount3 -u "$T/thpfs" || umount -l "$T/thpfs"; }
	mountpoint -q "$T/null" && { fusermount3 -u "$T/null" || umount -l "$T/null"; }
	mountpoint -q "$T/tmpfs" && umount "$T/tmpfs"
	# a daemon still running once its mount is gone is stopped, not waited for
	for p in $PID $NPID; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

size=$((MIB * 2 + 64))m
mount -t tmpfs -o "size=$size,huge=always" tmpfs "$T/tmpfs" || exit 1
opts="size=$size${EXTRA:+,$EXTRA}"
"$B/thpfs" -f $DARGS -o "$opts" "$T/thpfs" >"$T/daemon.log" 2>&1 &
PID=$!
for ((i = 0; i < 500; i++)); do
	grep -qs " $T/thpfs fuse.thpfs " /proc/mounts && break
	sleep 0.01
done
grep -qs " $T/thpfs fuse.thpfs " /proc/mounts || { echo "daemon did not mount:"; cat "$T/daemon.log"; exit 1; }
"$NULLD" -f $DARGS -o "$opts" "$T/null" >"$T/null.log" 2>&1 &
NPID=$!
for ((i = 0; i < 500; i++)); do
	grep -qs " $T/null fuse.null " /proc/mounts && break
	sleep 0.01
done
grep -qs " $T/null fuse.null " /proc/mounts || { echo "fuse-null did not mount:"; cat "$T/null.log"; exit 1; }

echo "# fuse-bench: $MIB MiB file, ${SECS}s per test, $ROUNDS rounds, $(nproc) CPUs, $(uname -r)"
echo "# thpfs and fuse-null daemons: ${DARGS:+$DARGS }-o $opts; tmpfs: size=$size,huge=always"
: >"$T/tmpfs.txt"
: >"$T/null.txt"
: >"$T/thpfs.txt"
for ((r = 1; r <= ROUNDS; r++)); do
	"$BENCH" -m "$MIB" -t "$SECS" $BSARG -l tmpfs "$T/tmpfs" >>"$T/tmpfs.txt" || exit 1
	"$BENCH" -m "$MIB" -t "$SECS" $BSARG -p "$NPID" -l null "$T/null" >>"$T/null.txt" || exit 1
	"$BENCH" -m "$MIB" -t "$SECS" $BSARG -p "$PID" -l thpfs "$T/thpfs" >>"$T/thpfs.txt" || exit 1
done

# join the three result sets on (pattern, block size, round); medians over rounds
awk -v tmpfs_file="$T/tmpfs.txt" -v null_file="$T/null.txt" '
function div(a, b) { return b > 0 ? a / b : 0 } # a failed tmpfs pass reads as ratio 0
function bs_name(b) { return b >= 1048576 ? b / 1048576 "M" : b / 1024 "K" }
function median(s,    a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++)
		for (j = i + 1; j <= n; j++)
			if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	lo = a[1]; hi = a[n]
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
FILENAME == tmpfs_file { k = $2 " " $3; kr[k]++; kmb[k, kr[k]] = $4; kus[k] = kus[k] " " $5; next }
FILENAME == null_file {
	k = $2 " " $3; nr[k]++
	nmb[k] = nmb[k] " " $4; nrat[k] = nrat[k] " " div($4, kmb[k, nr[k]]); next
}
{
	k = $2 " " $3
	if (!(k in seen)) { seen[k] = 1; order[++nk] = k; pat[k] = $2; bsz[k] = $3 }
	tr[k]++
	tmb[k] = tmb[k] " " $4; kmbs[k] = kmbs[k] " " kmb[k, tr[k]]
	rat[k] = rat[k] " " div($4, kmb[k, tr[k]]); tus[k] = tus[k] " " $5
	asys[k] = asys[k] " " $10; dusr[k] = dusr[k] " " $8; dsys[k] = dsys[k] " " $9
	acs[k] = acs[k] " " $6; dcs[k] = dcs[k] " " $7
}
END {
	print "| pattern | bs | tmpfs MB/s | null MB/s | null ratio [min-max] | thpfs MB/s | ratio [min-max] | tmpfs us/op | thpfs us/op | app sys us/op | daemon usr us/op | daemon sys us/op | app cs/op | daemon cs/op |"
	print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nk; i++) {
		k = order[i]
		nm = median(nrat[k]); nlo = lo; nhi = hi
		m = median(rat[k]); rlo = lo; rhi = hi
		printf "| %s | %s | %.0f | %.0f | %.3f [%.3f-%.3f] | %.0f | %.3f [%.3f-%.3f] | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f |\n", \
			pat[k], bs_name(bsz[k]), median(kmbs[k]), median(nmb[k]), nm, nlo, nhi, \
			median(tmb[k]), m, rlo, rhi, \
			median(kus[k]), median(tus[k]), median(asys[k]), median(dusr[k]), median(dsys[k]), \
			median(acs[k]), median(dcs[k])
	}
}' "$T/tmpfs.txt" "$T/null.txt" "$T/thpfs.txt"
echo
echo "the CPU and cs columns are thpfs's; fuse-null's are in the raw lines"
echo "raw: label pattern bs MB/s us/op app_cs/op daemon_cs/op daemon_usr_us/op daemon_sys_us/op app_sys_us/op"
cat "$T/tmpfs.txt" "$T/null.txt" "$T/thpfs.txt"
