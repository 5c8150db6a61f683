#!/bin/bash
# tests/fuse/null-options.sh FUSE_NULL - fuse-null (bench/fuse-null.c, the
# ceiling fuse-bench.sh measures next to thpfs) must negotiate the
# max_write= it is given, as thpfs does: a 1 MiB O_DIRECT write through a
# max_write=65536 mount must arrive as requests of at most 64 KiB.  Root.
set -u
NULLD=${1:?usage: tests/fuse/null-options.sh FUSE_NULL}
M=$(mktemp -d /tmp/fuse-null-opts.XXXXXX) || exit 1
LOG=$M.log
PID=
cleanup() {
	mountpoint -q "$M" && { fusermount3 -u "$M" || umount -l "$M"; }
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rmdir "$M"
	rm -f "$LOG"
}
trap cleanup EXIT
"$NULLD" -f -d -s -o size=4m,max_write=65536 "$M" >"$LOG" 2>&1 &
PID=$!
for ((i = 0; i < 500; i++)); do
	grep -qs " $M fuse.null " /proc/mounts && break
	sleep 0.01
done
grep -qs " $M fuse.null " /proc/mounts || { echo "FAIL: fuse-null did not mount"; cat "$LOG"; exit 1; }
dd if=/dev/zero of="$M/f" bs=1M count=1 oflag=direct status=none || { echo "FAIL: dd"; exit 1; }
max=$(grep -o 'WRITE ([0-9]*), nodeid: [0-9]*, insize: [0-9]*' "$LOG" | awk '{ if ($NF > m) m = $NF } END { print m + 0 }')
# insize: the request header (80 bytes) and the payload
if [ "$max" -eq 0 ] || [ "$max" -gt $((65536 + 80)) ]; then
	echo "FAIL: largest WRITE request $max bytes with max_write=65536"
	exit 1
fi
echo "PASS: largest WRITE request $max bytes with max_write=65536"
