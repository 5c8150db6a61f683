#!/bin/bash
# bench/fuse-bench.sh BUILD_DIR - read/write throughput through a thpfs FUSE
# mount against a private kernel tmpfs mounted huge=always, in the same run.
#
# Prints a table: MB/s on each side, the ratio thpfs/tmpfs, and where the
# FUSE time goes (context switches per request in the application and in the
# daemon, daemon CPU per request).  Needs root (two mounts).
#   FUSE_BENCH_MIB      file size in MiB (256)
#   FUSE_BENCH_SECONDS  seconds per test (1)
#   FUSE_BENCH_OPTS     extra daemon options (e.g. splice_read,splice_write)
set -u
B=${1:?usage: bench/fuse-bench.sh BUILD_DIR}
B=$(cd "$B" && pwd) || exit 1
MIB=${FUSE_BENCH_MIB:-256}
SECS=${FUSE_BENCH_SECONDS:-1}
EXTRA=${FUSE_BENCH_OPTS:-}
BENCH=$B/fuse/fuse-bench

[ "$(id -u)" = 0 ] || { echo "bench/fuse-bench.sh: needs root (mounts)"; exit 1; }
[ -x "$BENCH" ] && [ -x "$B/thpfs" ] || { echo "bench/fuse-bench.sh: build first (make tools tests)"; exit 1; }

T=$(mktemp -d /tmp/thpfs-fuse-bench.XXXXXX) || exit 1
mkdir -p "$T/thpfs" "$T/tmpfs"
PID=
cleanup() {
	mountpoint -q "$T/thpfs" && { fusermount3 -u "$T/thpfs" || umount -l "$T/thpfs"; }
	mountpoint -q "$T/tmpfs" && umount "$T/tmpfs"
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

size=$((MIB * 2 + 64))m
mount -t tmpfs -o "size=$size,huge=always" tmpfs "$T/tmpfs" || exit 1
opts="size=$size${EXTRA:+,$EXTRA}"
"$B/thpfs" -f -o "$opts" "$T/thpfs" >"$T/daemon.log" 2>&1 &
PID=$!
for ((i = 0; i < 500; i++)); do
	grep -qs " $T/thpfs fuse.thpfs " /proc/mounts && break
	sleep 0.01
done
grep -qs " $T/thpfs fuse.thpfs " /proc/mounts || { echo "daemon did not mount:"; cat "$T/daemon.log"; exit 1; }

echo "# fuse-bench: $MIB MiB file, ${SECS}s per test, $(nproc) CPUs, $(uname -r)"
echo "# thpfs daemon options: $opts; tmpfs: size=$size,huge=always"
"$BENCH" -m "$MIB" -t "$SECS" -l tmpfs "$T/tmpfs" >"$T/tmpfs.txt" || exit 1
"$BENCH" -m "$MIB" -t "$SECS" -p "$PID" -l thpfs "$T/thpfs" >"$T/thpfs.txt" || exit 1

# join the two result sets on (pattern, block size)
awk '
function bs_name(b) { return b >= 1048576 ? b / 1048576 "M" : b / 1024 "K" }
NR == FNR { k = $2 " " $3; kmb[k] = $4; kus[k] = $5; next }
{
	k = $2 " " $3
	if (!hdr++) {
		print "| pattern | bs | tmpfs MB/s | thpfs MB/s | ratio | tmpfs us/op | thpfs us/op | app sys us/op | daemon usr us/op | daemon sys us/op | app cs/op | daemon cs/op |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	}
	printf "| %s | %s | %.0f | %.0f | %.3f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f |\n", \
		$2, bs_name($3), kmb[k], $4, $4 / kmb[k], kus[k], $5, $10, $8, $9, $6, $7
}' "$T/tmpfs.txt" "$T/thpfs.txt"
echo
echo "raw: label pattern bs MB/s us/op app_cs/op daemon_cs/op daemon_usr_us/op daemon_sys_us/op app_sys_us/op"
cat "$T/tmpfs.txt" "$T/thpfs.txt"
