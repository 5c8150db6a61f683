#!/bin/bash
# bench/fuse-exit-time.sh BUILD_DIR [MiB] - how long the thpfs daemon lives
# after `fusermount3 -u`: mounts a daemon in a temporary directory, serves
# MiB (default 1024) of traffic, unmounts and polls its pid every 5 ms.
# Two cases: a file written and read by 4 parallel cats (huge pages), and
# every other 4 KiB page of MiB written (huge=never: runs of base pages).
# Needs root (or a user allowed to mount FUSE) and python3.
set -u
B=$(cd "${1:?usage: bench/fuse-exit-time.sh BUILD_DIR [MiB]}" && pwd) || exit 1
N=${2:-1024}
T=$(mktemp -d /tmp/thpfs-exit-time.XXXXXX) || exit 1
M=$T/mnt
mkdir "$M"
trap 'mountpoint -q "$M" && fusermount3 -u "$M"; rm -rf "$T"' EXIT

# run OPTIONS WHAT: mounts, runs the traffic function WHAT, unmounts, times.
run() {
	local pid i t0 t1 t2
	env --default-signal=INT,TERM "$B/thpfs" -f -o "$1" "$M" 2>>"$T/daemon.log" &
	pid=$!
	for ((i = 0; i < 500; i++)); do
		grep -qs " $M fuse.thpfs" /proc/mounts && break
		sleep 0.01
	done
	"$2"
	t0=$(date +%s%N)
	fusermount3 -u "$M"
	t1=$(date +%s%N)
	while kill -0 "$pid" 2>/dev/null; do sleep 0.005; done
	t2=$(date +%s%N)
	wait "$pid"
	echo "$2: fusermount3 -u took $(((t1 - t0) / 1000000)) ms; the daemon exited $(((t2 - t1) / 1000000)) ms later (status $?)"
}

dense() {
	local c=() j
	dd if=/dev/zero of="$M/f" bs=1M count="$N" status=none
	for j in 1 2 3 4; do
		cat "$M/f" >/dev/null &
		c+=($!)
	done
	wait "${c[@]}"
}

sparse() {
	python3 -c "
import os
fd = os.open('$M/f', os.O_CREAT | os.O_WRONLY)
for off in range(0, $N << 20, 8192):
    os.pwrite(fd, b'x' * 4096, off)
os.close(fd)"
}

for i in 1 2 3 4 5; do run "size=$((N + 64))m" dense; done
run "size=$((N + 64))m,huge=never" sparse
