#!/bin/bash
# tests/fuse/run.sh BUILD_DIR - mount thpfs with the FUSE daemon in a
# temporary directory and drive it with ordinary programs (dd, cp, cmp,
# truncate, fallocate, stat, du, mkdir, mv, ln...), comparing with a private
# kernel tmpfs (huge=always) where the answer is "what tmpfs does".
#
# Needs root (mounts, a child memory cgroup, setpriv to another user).
# Every mount and the cgroup are removed on exit, also when a check fails.
# Prints one line per check, then "N passed, N failed, N skipped"; exit
# status 1 when anything failed.  Not root: every check is counted as
# skipped (exit 0).
set -u
export TZ=UTC LC_ALL=C

B=${1:?usage: tests/fuse/run.sh BUILD_DIR}
B=$(cd "$B" && pwd) || exit 1
THPFS=$B/thpfs
THPFS_STAT=$B/thpfs-stat
FSX=$B/fuse/fsx
PROBE=$B/fuse/probe
PUNCH=$B/fuse/punch-mem
FSX_OPS=${FSX_OPS:-20000}

passed=0
failed=0
skipped=0
failed_names=()
mounts=()   # mount points to take down at exit, newest last
daemons=()  # daemon pids to reap at exit

T=$(mktemp -d /tmp/thpfs-fuse-test.XXXXXX) || exit 1
chmod 755 "$T" # other users must reach the mounts (allow_other checks)
MNT=$T/mnt
REF=$T/ref
DATA=$T/data
mkdir -p "$MNT" "$REF" "$DATA"

cleanup() {
	local i m
	cd /
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		m=${mounts[i]}
		if mountpoint -q "$m" 2>/dev/null; then
			fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null ||
				umount -l "$m" 2>/dev/null
		fi
	done
	for i in "${daemons[@]}"; do
		if kill -0 "$i" 2>/dev/null; then
			sleep 0.2
			kill "$i" 2>/dev/null
		fi
		wait "$i" 2>/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ----

# start_daemon MOUNTPOINT OPTIONS: runs `thpfs -f` in the background and
# waits until the mount is there.  Sets DAEMON_PID.
start_daemon() {
	local mp=$1 opts=$2 i
	# its output goes to the log: a daemon holding a check's $(...) pipe
	# open would make the check wait for it.  A non-interactive shell
	# starts background jobs with SIGINT ignored (and set -m cannot undo
	# that without a terminal, as under CI); libfuse rightly leaves an
	# ignored signal alone, so give the daemon default handling back.
	env --default-signal=INT,TERM,HUP "$THPFS" -f -o "$opts" "$mp" >>"$T/daemon.log" 2>&1 &
	DAEMON_PID=$!
	daemons+=("$DAEMON_PID")
	mounts+=("$mp")
	for ((i = 0; i < 500; i++)); do
		grep -qs " $mp fuse.thpfs " /proc/mounts && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || return 1
		sleep 0.01
	done
	return 1
}

# stop_daemon MOUNTPOINT PID: unmounts and checks that the daemon exits 0.
stop_daemon() {
	local mp=$1 pid=$2 i
	fusermount3 -u "$mp" || return 1
	for ((i = 0; i < 500; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.01
	done
	wait "$pid"
}

fail_msg() {
	echo "  $*" >&2
	return 1
}

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() {
	[ "$1" = "$2" ] || fail_msg "$3: got '$1', want '$2'"
}

stat_field() { stat -c "$1" "$2"; }

nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }

# A file of N MiB of random data in $DATA (made once per name).
random_file() {
	local name=$1 mib=$2
	[ -f "$DATA/$name" ] || head -c $((mib << 20)) /dev/urandom >"$DATA/$name"
	echo "$DATA/$name"
}

meminfo_value() { "$THPFS_STAT" "$MNT" "$1" | awk '{print $1}'; }

# check NAME FUNCTION: runs the function in a subshell with errexit, so any
# failing command fails the check; its output is shown only on failure.
# (Not inside an `if`: bash ignores errexit in a condition's subshells.)
# Lines a check prints starting with "info: " are shown also on success.
# A check that exits 77 is skipped (its last line says why).
# ONLY=REGEX (environment) runs only the checks whose function name matches.
check() {
	local name=$1 fn=$2 out rc t0=$SECONDS
	if [ -n "${ONLY:-}" ] && ! [[ $fn =~ $ONLY ]]; then
		return 0
	fi
	out=$( (set -e -o pipefail; cd "$T"; "$fn") 2>&1)
	rc=$?
	if [ "$rc" -eq 77 ]; then
		skipped=$((skipped + 1))
		printf 'skip  %s: %s\n' "$name" "$(printf '%s\n' "$out" | tail -1)"
	elif [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		printf 'ok    %s (%ds)\n' "$name" $((SECONDS - t0))
		printf '%s\n' "$out" | sed -n 's/^info: /      /p'
	else
		failed=$((failed + 1))
		failed_names+=("$name")
		printf 'FAIL  %s (%ds)\n' "$name" $((SECONDS - t0))
		[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/      /'
	fi
}

# ---- the checks (each runs with set -e in its own subshell) ----

t_empty_root_and_statfs() {
	expect_eq "$(ls -A "$MNT" | wc -l)" 0 "entries in a new mount"
	expect_eq "$(stat -f -c '%S %b' "$MNT")" "4096 262144" "statfs block size, blocks (size=1g)"
	expect_eq "$(stat -f -c '%c' "$MNT")" 100000 "statfs files (nr_inodes=100000)"
	expect_eq "$(stat -c '%a %u %g' "$MNT")" "1777 0 0" "root mode and owner"
}

t_dd_cp_cmp() {
	local src
	src=$(random_file rand10 10)
	cp "$src" "$MNT/copy"
	cmp "$src" "$MNT/copy"
	dd if="$src" of="$MNT/dd4k" bs=4k status=none
	dd if="$src" of="$MNT/dd1m" bs=1M conv=fsync status=none
	cmp "$src" "$MNT/dd4k"
	cmp "$src" "$MNT/dd1m"
	cmp "$src" <(dd if="$MNT/dd1m" bs=4k status=none)
	cmp "$src" <(dd if="$MNT/dd4k" bs=1M status=none)
	# unaligned writes into the middle, the same on tmpfs
	local d
	for d in "$MNT" "$REF"; do
		cp "$src" "$d/patch"
		dd if=/dev/zero of="$d/patch" bs=1 count=3333 seek=2097000 conv=notrunc status=none
		dd if="$src" of="$d/patch" bs=7777 count=3 skip=5 seek=300 conv=notrunc status=none
		dd if="$src" of="$d/patch" bs=65536 count=2 seek=200 conv=notrunc status=none
	done
	cmp "$MNT/patch" "$REF/patch"
	expect_eq "$(stat_field %s "$MNT/patch")" "$(stat_field %s "$REF/patch")" "size after writes past EOF"
	rm -f "$MNT"/copy "$MNT"/dd4k "$MNT"/dd1m "$MNT/patch" "$REF/patch"
}

t_truncate() {
	local src d s
	src=$(random_file rand10 10)
	for d in "$MNT" "$REF"; do
		cp "$src" "$d/t"
		truncate -s 5M "$d/t"
		truncate -s 3333 "$d/t"
		truncate -s +2M "$d/t"
		truncate -s 9000000 "$d/t"
	done
	cmp "$MNT/t" "$REF/t"
	expect_eq "$(stat_field %s "$MNT/t")" 9000000 "size"
	# shrinking frees memory: 3333 bytes of data left = one 4 KiB page
	truncate -s 3333 "$MNT/t"
	s=$(stat_field %b "$MNT/t")
	expect_eq "$s" 8 "st_blocks after truncating to 3333 bytes"
	truncate -s 0 "$MNT/t"
	expect_eq "$(stat_field '%s %b' "$MNT/t")" "0 0" "size and blocks after truncate -s 0"
	rm -f "$MNT/t" "$REF/t"
}

t_fallocate_l() {
	fallocate -l 6M "$MNT/fl"
	expect_eq "$(stat_field '%s %b' "$MNT/fl")" "6291456 12288" "size, blocks after fallocate -l 6M"
	cmp "$MNT/fl" <(head -c 6M /dev/zero)
	# allocated but never written reads as a hole, as on tmpfs
	expect_eq "$("$PROBE" segments "$MNT/fl" | wc -l)" 0 "data segments of a fallocated file"
	fallocate -n -o 6M -l 2M "$MNT/fl"
	expect_eq "$(stat_field '%s %b' "$MNT/fl")" "6291456 16384" "fallocate -n keeps the size"
	rm -f "$MNT/fl"
}

t_punch_splits_huge_page() {
	local src b0 b1 split0 split1 d
	src=$(random_file rand4 4)
	for d in "$MNT" "$REF"; do cp "$src" "$d/p"; done
	b0=$(stat_field %b "$MNT/p")
	expect_eq "$b0" 8192 "st_blocks of 4 MiB written"
	expect_eq "$(stat_field %o "$MNT/p")" 2097152 "st_blksize (huge page)"
	split0=$(meminfo_value thp_split_page)
	for d in "$MNT" "$REF"; do fallocate -p -o 8192 -l 4096 "$d/p"; done
	b1=$(stat_field %b "$MNT/p")
	expect_eq "$((b0 - b1))" 8 "st_blocks freed by a 4 KiB punch"
	split1=$(meminfo_value thp_split_page)
	expect_eq "$((split1 - split0))" 1 "huge pages split by the punch"
	cmp "$MNT/p" "$REF/p"
	# a punch covering a whole huge page frees it without a split
	for d in "$MNT" "$REF"; do fallocate -p -o 2M -l 2M "$d/p"; done
	expect_eq "$(stat_field %b "$MNT/p")" $((b1 - 4096)) "st_blocks after punching a whole huge page"
	expect_eq "$(meminfo_value thp_split_page)" "$split1" "no split for a whole huge page"
	cmp "$MNT/p" "$REF/p"
	expect_eq "$(stat_field %s "$MNT/p")" 4194304 "punch keeps the size"
	rm -f "$MNT/p" "$REF/p"
}

t_zero_range() {
	local src
	src=$(random_file rand4 4)
	cp "$src" "$MNT/z"
	cp "$src" "$REF/z"
	fallocate -z -o 100 -l 5000 "$MNT/z"
	# tmpfs has no FALLOC_FL_ZERO_RANGE: write the zeros there
	dd if=/dev/zero of="$REF/z" bs=100 seek=1 count=50 conv=notrunc status=none
	cmp "$MNT/z" "$REF/z"
	fallocate -z -o 4M -l 1M "$MNT/z"
	expect_eq "$(stat_field %s "$MNT/z")" 5242880 "fallocate -z past EOF extends the size"
	fallocate -z -n -o 6M -l 1M "$MNT/z"
	expect_eq "$(stat_field %s "$MNT/z")" 5242880 "fallocate -z -n keeps the size"
	truncate -s 5M "$REF/z"
	cmp "$MNT/z" "$REF/z"
	rm -f "$MNT/z" "$REF/z"
}

# punch_end_script DIR: "punch to the end" and punches past the largest
# file, then offset + length past LLONG_MAX (EFBIG on both).
punch_end_script() {
	local f=$1/punch-end max=9223372036854775807
	head -c $((3 << 20)) /dev/urandom >"$f"
	fallocate -p -o 4096 -l $((max - 4096)) "$f" 2>&1 && echo "punch to the end: ok"
	stat -c 'size %s blocks %b' "$f"
	fallocate -p -o 0 -l $max "$f" 2>&1 && echo "punch everything: ok"
	fallocate -p -o $((1 << 47)) -l 4096 "$f" 2>&1 && echo "punch at 128 TiB: ok"
	fallocate -p -o 1 -l $max "$f" 2>&1 | sed "s|$1|DIR|" || true
	fallocate -p -o $max -l 1 "$f" 2>&1 | sed "s|$1|DIR|" || true
	stat -c 'size %s blocks %b' "$f"
	rm "$f"
}

t_punch_to_the_end() {
	diff <(punch_end_script "$MNT" 2>&1) <(punch_end_script "$REF" 2>&1)
}

t_fallocate_unsupported() {
	local src out
	src=$(random_file rand4 4)
	cp "$src" "$MNT/u"
	if out=$(fallocate -c -o 0 -l 2M "$MNT/u" 2>&1); then
		fail_msg "fallocate -c (collapse range) succeeded"
	fi
	echo "$out" | grep -q "not supported" || fail_msg "collapse range: '$out'"
	if fallocate -i -o 0 -l 2M "$MNT/u" 2>/dev/null; then
		fail_msg "fallocate -i (insert range) succeeded"
	fi
	cmp "$src" "$MNT/u"
	rm -f "$MNT/u"
}

t_du_matches_blocks() {
	local src f
	src=$(random_file rand10 10)
	mkdir -p "$MNT/du"
	cp "$src" "$MNT/du/a"
	truncate -s 100M "$MNT/du/b"
	dd if="$src" of="$MNT/du/b" bs=1M count=1 seek=50 conv=notrunc status=none
	fallocate -p -o 4096 -l 65536 "$MNT/du/a"
	for f in a b; do
		expect_eq "$(du -B1 "$MNT/du/$f" | cut -f1)" $(($(stat_field %b "$MNT/du/$f") * 512)) "du of $f"
	done
	expect_eq "$(du -B1 "$MNT/du/b" | cut -f1)" 2097152 "du of a 100 MiB file with 1 MiB written"
	expect_eq "$(du -b --apparent-size "$MNT/du/b" | cut -f1)" 104857600 "apparent size"
	rm -rf "$MNT/du"
}

t_sparse_cp() {
	local src
	src=$(random_file rand4 4)
	rm -f "$DATA/sparse"
	truncate -s 64M "$DATA/sparse"
	dd if="$src" of="$DATA/sparse" bs=1M count=2 seek=10 conv=notrunc status=none
	dd if="$src" of="$DATA/sparse" bs=1M count=1 seek=40 conv=notrunc status=none
	cp --sparse=always "$DATA/sparse" "$MNT/sparse"
	cmp "$DATA/sparse" "$MNT/sparse"
	# 3 MiB of data in two 2 MiB pages: 8192 blocks, or 6144 when cp also
	# punches the trailing hole (coreutils 9 does), which splits the page
	# holding the last 1 MiB and frees its empty half
	local b
	b=$(stat_field %b "$MNT/sparse")
	[ "$b" -eq 8192 ] || [ "$b" -eq 6144 ] || fail_msg "blocks of the sparse copy: $b"
	local last=44040192
	[ "$b" -eq 6144 ] && last=42991616 # the punched half is a hole now
	expect_eq "$("$PROBE" segments "$MNT/sparse" | tr '\n' ' ')" \
		"10485760 12582912 41943040 $last " "data segments (SEEK_DATA/SEEK_HOLE)"
	# and back out of the mount onto tmpfs, which keeps the holes
	cp --sparse=always "$MNT/sparse" "$REF/sparse"
	cmp "$DATA/sparse" "$REF/sparse"
	[ "$(stat_field %b "$REF/sparse")" -le 16384 ] ||
		fail_msg "copy out of the mount is not sparse: $(stat_field %b "$REF/sparse") blocks"
	# copy_file_range inside the mount keeps holes too
	cp --sparse=auto "$MNT/sparse" "$MNT/sparse2"
	cmp "$DATA/sparse" "$MNT/sparse2"
	b=$(stat_field %b "$MNT/sparse2")
	[ "$b" -eq 8192 ] || [ "$b" -eq 6144 ] || fail_msg "blocks of a copy inside the mount: $b"
	rm -f "$MNT/sparse" "$MNT/sparse2" "$REF/sparse"
}

t_namespace() {
	local d
	for d in "$MNT" "$REF"; do
		(
			cd "$d"
			mkdir -p ns/a/b/c/d
			echo hello >ns/a/b/c/d/f
			echo world >ns/a/g
			mv ns/a/b ns/a/x
			mv ns/a/g ns/a/x/c/g
			ln -s ../x/c/g ns/a/x/link
			ln ns/a/x/c/d/f ns/hard
			mkdir ns/e
			mv ns/e ns/a/x/c/d/
			ln -s nowhere ns/dangling
		)
	done
	diff <(cd "$MNT/ns" && find . -printf '%p %y %n %s\n' | sort) \
		<(cd "$REF/ns" && find . -printf '%p %y %n %s\n' | sort)
	expect_eq "$(cat "$MNT/ns/a/x/link")" world "read through a symlink"
	expect_eq "$(readlink "$MNT/ns/a/x/link")" ../x/c/g "readlink"
	expect_eq "$(stat_field %h "$MNT/ns/hard")" 2 "link count of a hard link"
	expect_eq "$(stat -L -c %i "$MNT/ns/hard")" "$(stat -c %i "$MNT/ns/a/x/c/d/f")" "hard link inode"
	if rmdir "$MNT/ns/a" 2>/dev/null; then fail_msg "rmdir of a non-empty directory succeeded"; fi
	if mkdir "$MNT/ns/a" 2>/dev/null; then fail_msg "mkdir over an existing name succeeded"; fi
	rm -rf "$MNT/ns" "$REF/ns"
	expect_eq "$(ls -A "$MNT" | tr '\n' ' ')" "" "entries after rm -rf"
}

t_rename_flags() {
	echo one >"$MNT/r1"
	echo two >"$MNT/r2"
	expect_eq "$("$PROBE" rename2 "$MNT/r1" "$MNT/r2" noreplace || true)" EEXIST "RENAME_NOREPLACE onto a file"
	expect_eq "$("$PROBE" rename2 "$MNT/r1" "$MNT/r2" exchange)" ok "RENAME_EXCHANGE"
	expect_eq "$(cat "$MNT/r1") $(cat "$MNT/r2")" "two one" "contents after the exchange"
	expect_eq "$("$PROBE" rename2 "$MNT/r1" "$MNT/r3" noreplace)" ok "RENAME_NOREPLACE to a new name"
	expect_eq "$("$PROBE" rename2 "$MNT/r1" "$MNT/r4" exchange || true)" ENOENT "RENAME_EXCHANGE with a missing name"
	rm -f "$MNT/r2" "$MNT/r3"
}

t_concurrent_writers() {
	local src i
	src=$(random_file rand32 32)
	# four processes write their own 8 MiB region of one file, four more
	# their own files, at the same time
	truncate -s 32M "$MNT/shared"
	for i in 0 1 2 3; do
		dd if="$src" of="$MNT/shared" bs=64k skip=$((i * 128)) seek=$((i * 128)) count=128 \
			conv=notrunc status=none &
		dd if="$src" of="$MNT/own$i" bs=1M skip=$((i * 8)) count=8 status=none &
	done
	wait
	cmp "$src" "$MNT/shared"
	for i in 0 1 2 3; do
		cmp <(dd if="$src" bs=1M skip=$((i * 8)) count=8 status=none) "$MNT/own$i"
	done
	# four appenders: every line must arrive whole
	for i in 0 1 2 3; do
		(for n in $(seq 1 500); do echo "writer $i line $n"; done) >>"$MNT/appended" &
	done
	wait
	expect_eq "$(wc -l <"$MNT/appended")" 2000 "appended lines"
	expect_eq "$(grep -c -E '^writer [0-3] line [0-9]+$' "$MNT/appended")" 2000 "whole lines"
	rm -f "$MNT/shared" "$MNT"/own? "$MNT/appended"
}

t_unlinked_open_file() {
	local src inodes0 inodes1
	src=$(random_file rand4 4)
	cp "$src" "$MNT/gone"
	inodes0=$(meminfo_value inodes)
	exec 3<"$MNT/gone"
	rm "$MNT/gone"
	[ ! -e "$MNT/gone" ] || fail_msg "the name is still there"
	cmp "$src" /dev/fd/3
	exec 3<&-
	sleep 0.1
	inodes1=$(meminfo_value inodes)
	expect_eq "$((inodes0 - inodes1))" 1 "inodes freed after the last close"
}

t_mmap() {
	local src
	src=$(random_file rand4 4)
	cp "$src" "$MNT/m"
	# direct_io with FUSE_DIRECT_IO_ALLOW_MMAP (added to libfuse 3.14's
	# INIT reply by tools/fuse/io.c): shared and private mappings work
	expect_eq "$("$PROBE" mmap "$MNT/m" | tr '\n' ' ')" "shared: ok private: ok " "mmap"
	rm -f "$MNT/m"
	# stores through a shared mapping reach the file, pwrite is seen through
	# it, punch and truncate drop the mapped pages; the same on tmpfs
	diff <("$PROBE" shared "$MNT/sh") <("$PROBE" shared "$REF/sh")
	"$PROBE" shared "$MNT/sh" >/dev/null
	rm -f "$MNT/sh" "$REF/sh"
}

# FIFOs, sockets and device nodes as tmpfs keeps them; the kernel gives
# them their behaviour.  The mount is nodev (FUSE's default), as is checked.
t_special_files() {
	local d
	for d in "$MNT" "$REF"; do
		mkfifo -m 640 "$d/fifo"
		mknod -m 600 "$d/chr" c 1 3
		mknod -m 600 "$d/blk" b 7 200
		python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$d/sock"
		ln "$d/chr" "$d/chr2"
		mv "$d/sock" "$d/sock2"
	done
	diff <(cd "$MNT" && stat -c '%n %F %a %h %t:%T %s' fifo chr chr2 blk sock2) \
		<(cd "$REF" && stat -c '%n %F %a %h %t:%T %s' fifo chr chr2 blk sock2)
	expect_eq "$(find "$MNT" -maxdepth 1 -type p -printf '%f ' ; find "$MNT" -maxdepth 1 -type s -printf '%f ')" \
		"fifo sock2 " "readdir types (find -type p, -type s)"
	# a FIFO on the mount carries data between two processes
	(echo through-the-fifo >"$MNT/fifo") &
	expect_eq "$(timeout 5 cat "$MNT/fifo")" through-the-fifo "data through a FIFO"
	wait
	# a socket bound on the mount takes a connection
	python3 - "$MNT/sock3" <<'PY'
import socket, sys, os
srv = socket.socket(socket.AF_UNIX); srv.bind(sys.argv[1]); srv.listen(1)
cli = socket.socket(socket.AF_UNIX); cli.connect(sys.argv[1])
conn, _ = srv.accept(); cli.sendall(b"ping")
assert conn.recv(4) == b"ping"
PY
	# nodev: the device node is there but cannot be opened
	grep " $MNT " /proc/mounts | grep -q nodev || fail_msg "mount is not nodev"
	if head -c 1 "$MNT/chr" >/dev/null 2>&1; then fail_msg "opened a device node on a nodev mount"; fi
	rm -f "$MNT"/{fifo,chr,chr2,blk,sock2,sock3} "$REF"/{fifo,chr,chr2,blk,sock2}
}

# xattr_script DIR: extended attribute calls on DIR, one result a line, the
# same program for the mount and for tmpfs.
xattr_script() {
	python3 - "$1" <<'PY'
import os, sys, errno
d = sys.argv[1]
def r(what, fn, *a):
    try:
        v = fn(*a)
        print(what, "ok", v if v is not None else "")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
f = d + "/xf"; open(f, "w").close(); os.mkdir(d + "/xd"); os.symlink("xf", d + "/xl")
os.mkfifo(d + "/xp")
r("set user.a", os.setxattr, f, "user.a", b"one")
r("set trusted.t", os.setxattr, f, "trusted.t", b"")
r("set security.s", os.setxattr, f, "security.s", b"sec")
r("create existing", os.setxattr, f, "user.a", b"x", os.XATTR_CREATE)
r("replace missing", os.setxattr, f, "user.b", b"x", os.XATTR_REPLACE)
r("replace", os.setxattr, f, "user.a", b"uno!", os.XATTR_REPLACE)
r("get", os.getxattr, f, "user.a")
r("get missing", os.getxattr, f, "user.zz")
r("list", lambda: sorted(os.listxattr(f)))
r("64 KiB", os.setxattr, f, "user.big", b"v" * 65536)
r("64 KiB + 1", os.setxattr, f, "user.big2", b"v" * 65537)
r("name 255", os.setxattr, f, "user." + "n" * 250, b"")
r("name 256", os.setxattr, f, "user." + "n" * 251, b"")
r("unknown namespace", os.setxattr, f, "os2.x", b"x")
r("user. on a symlink", lambda: os.setxattr(d + "/xl", "user.x", b"x", follow_symlinks=False))
r("trusted. on a symlink", lambda: os.setxattr(d + "/xl", "trusted.x", b"x", follow_symlinks=False))
r("get on a symlink", lambda: os.getxattr(d + "/xl", "trusted.x", follow_symlinks=False))
r("user. on a fifo", os.setxattr, d + "/xp", "user.x", b"x")
r("user. on a dir", os.setxattr, d + "/xd", "user.x", b"dir")
r("get dir", os.getxattr, d + "/xd", "user.x")
r("remove", os.removexattr, f, "user.a")
r("remove again", os.removexattr, f, "user.a")
r("list after", lambda: sorted(os.listxattr(f)))
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(2)
n = libc.getxattr(f.encode(), b"security.s", buf, 2)
print("small buffer", n, errno.errorcode.get(ctypes.get_errno()))
n = libc.listxattr(f.encode(), buf, 2)
print("small list buffer", n, errno.errorcode.get(ctypes.get_errno()))
for p in ("/xf", "/xl", "/xp"): os.unlink(d + p)
os.rmdir(d + "/xd")
PY
}

# xattr_space DIR: fills the inode space of a nr_inodes=100 mount.
xattr_space() {
	python3 - "$1" <<'PY'
import os, sys, errno
f = sys.argv[1] + "/f"; open(f, "w").close()
def r(what, fn, *a):
    try: fn(*a); print(what, "ok")
    except OSError as e: print(what, errno.errorcode[e.errno])
st = os.statvfs(sys.argv[1]); print("used", st.f_files - st.f_ffree)
r("30000", os.setxattr, f, "user.b", b"x" * 30000)
st = os.statvfs(sys.argv[1]); print("used", st.f_files - st.f_ffree)
r("65536", os.setxattr, f, "user.c", b"x" * 65536)
r("65536 more", os.setxattr, f, "user.d", b"x" * 65536)
r("replace same size", os.setxattr, f, "user.c", b"y" * 65536)
r("remove", os.removexattr, f, "user.c")
st = os.statvfs(sys.argv[1]); print("used", st.f_files - st.f_ffree)
PY
}

# Extended attributes compared with tmpfs: namespaces, flags, limits, the
# inode space they take (nr_inodes=100 on both); the statistics attribute
# of the root stays.
t_xattrs() {
	local mp=$T/mnt-xattr ref=$T/ref-xattr pid rc=0
	diff <(xattr_script "$MNT" 2>&1) <(xattr_script "$REF" 2>&1)
	getfattr -n user.thpfs.meminfo "$MNT" | grep -q "Shmem:" || fail_msg "meminfo attribute"
	getfattr -d -m - "$MNT" | grep -q user.thpfs.meminfo || fail_msg "meminfo listed"
	mkdir -p "$ref"
	mount -t tmpfs -o nr_inodes=100 tmpfs "$ref"
	start_daemon "$mp" "size=64m,nr_inodes=100" || { umount "$ref"; fail_msg "mount"; }
	pid=$DAEMON_PID
	set +e
	diff <(xattr_space "$mp" 2>&1) <(xattr_space "$ref" 2>&1)
	rc=$?
	set -e
	umount "$ref"
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

# acl_script DIR: POSIX ACLs set, read, enforced and inherited on DIR
# (run as root; user nobody is refused and allowed by ACL entries).
acl_script() {
	local d=$1
	cd "$d"
	umask 022
	echo secret >af
	chmod 600 af
	nobody cat af 2>/dev/null && echo "nobody read 0600" || echo "nobody refused"
	setfacl -m u:nobody:r af
	stat -c 'mode %a' af
	nobody cat af || echo "nobody refused with u:nobody:r"
	getfacl -n af | grep -v '^# file'
	chmod 640 af
	getfacl -n af | grep -v '^# file'
	setfacl -m u:nobody:--- af
	nobody cat af 2>/dev/null && echo "nobody read" || echo "nobody refused by u:nobody:---"
	setfacl -b af
	getfacl -n af | grep -v '^# file'
	mkdir ad
	setfacl -d -m u:nobody:rwx,g::r-x,o::--- ad
	getfacl -n ad | grep -v '^# file'
	(umask 077 && touch ad/f && mkdir ad/sub && mkfifo ad/p)
	stat -c '%n %a' ad/f ad/sub ad/p
	getfacl -n ad/f ad/sub ad/p | grep -v '^# file'
	nobody sh -c "echo by-nobody > ad/f" && cat ad/f
	setfacl -k ad
	(umask 077 && touch ad/g)
	stat -c '%n %a' ad/g
	rm -rf af ad
	# leave the mount now: a process's cwd is let go after its output is
	# closed at exit, and the unmount that follows must not find it busy
	cd /
}

# POSIX ACLs compared with tmpfs, on an allow_other mount so that user
# nobody can be refused or allowed by the kernel's ACL checks.
t_posix_acls() {
	local mp=$T/mnt-acl pid rc=0
	command -v setfacl >/dev/null || { echo "setfacl missing (apt-get install acl)"; exit 77; }
	start_daemon "$mp" "size=64m,allow_other" || fail_msg "mount"
	pid=$DAEMON_PID
	set +e
	diff <(acl_script "$mp" 2>&1) <(acl_script "$REF" 2>&1)
	rc=$?
	set -e
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

# File handles survive the kernel dropping its inodes: it asks the daemon
# to look up "." (and ".." to reconnect a directory) and checks the
# generation.  A removed file's handle is stale.  Compared with tmpfs.
t_file_handles() {
	local d
	for d in "$MNT" "$REF"; do
		mkdir -p "$d/fh/a/b"
		echo handle-data >"$d/fh/a/b/file"
		echo gone >"$d/fh/a/b/gone"
		expect_eq "$("$PROBE" handle "$d/fh/a/b/file" "$d")" ok "open_by_handle_at of a file ($d)"
		expect_eq "$("$PROBE" handle "$d/fh/a/b" "$d")" ok "open_by_handle_at of a directory ($d)"
		expect_eq "$("$PROBE" handle "$d/fh/a/b/gone" "$d" unlink)" ESTALE "handle of a removed file ($d)"
		rm -rf "$d/fh"
	done
}

# The user's fsname= and subtype= win over the daemon's defaults.
t_fsname_subtype() {
	local mp=$T/mnt-name pid i
	env --default-signal=INT,TERM,HUP "$THPFS" -f -o size=16m,fsname=myname,subtype=mysub "$mp" \
		>>"$T/daemon.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 500; i++)); do
		grep -qs " $mp " /proc/mounts && break
		sleep 0.01
	done
	expect_eq "$(awk -v m="$mp" '$2 == m {print $1, $3}' /proc/mounts)" "myname fuse.mysub" \
		"source and type in /proc/mounts"
	stop_daemon "$mp" "$pid"
	expect_eq "$(awk -v m="$MNT" '$2 == m {print $1, $3}' /proc/mounts)" "thpfs fuse.thpfs" \
		"defaults without the options"
}

t_umask_and_owner() {
	(umask 027 && touch "$MNT/um" && mkdir "$MNT/umd")
	expect_eq "$(stat_field %a "$MNT/um")" 640 "file mode under umask 027"
	expect_eq "$(stat_field %a "$MNT/umd")" 750 "directory mode under umask 027"
	(umask 0 && touch "$MNT/um0")
	expect_eq "$(stat_field %a "$MNT/um0")" 666 "file mode under umask 0"
	expect_eq "$(stat_field '%u %g' "$MNT/um")" "0 0" "owner"
	rm -rf "$MNT/um" "$MNT/umd" "$MNT/um0"
}

t_setattr() {
	echo data >"$MNT/sa"
	chmod 640 "$MNT/sa"
	chown 65534:100 "$MNT/sa"
	touch -m -d '2001-02-03 04:05:06 UTC' "$MNT/sa"
	touch -a -d '2002-03-04 05:06:07.5 UTC' "$MNT/sa"
	expect_eq "$(stat_field '%a %u %g' "$MNT/sa")" "640 65534 100" "mode and owner"
	expect_eq "$(stat_field %Y "$MNT/sa")" 981173106 "mtime"
	expect_eq "$(stat_field %X "$MNT/sa")" 1015218367 "atime"
	expect_eq "$(stat_field %x "$MNT/sa" | cut -c1-29)" "2002-03-04 05:06:07.500000000" "atime nanoseconds"
	local c0
	c0=$(stat_field %Z "$MNT/sa")
	touch "$MNT/sa"
	[ "$(stat_field %Y "$MNT/sa")" -ge "$c0" ] || fail_msg "touch did not set mtime to now"
	truncate -s 3 "$MNT/sa"
	expect_eq "$(cat "$MNT/sa")" dat "contents after truncate -s 3"
	rm "$MNT/sa"
}

t_only_mounting_user() {
	# no allow_other: another user cannot even look
	if setpriv --reuid=65534 --regid=65534 --clear-groups stat "$MNT" >/dev/null 2>&1; then
		fail_msg "user nobody could stat a mount without allow_other"
	fi
}

t_permissions_allow_other() {
	local mp=$T/mnt-other pid rc=0
	start_daemon "$mp" "size=64m,allow_other" || fail_msg "mount with allow_other"
	pid=$DAEMON_PID
	set +e
	(
		set -e
		echo secret >"$mp/rootfile"
		chmod 644 "$mp/rootfile"
		nobody sh -c "umask 022; echo mine > $mp/userfile; mkdir $mp/userdir"
		expect_eq "$(stat -c '%u %g %a' "$mp/userfile")" "65534 65534 644" "owner of a file made by nobody"
		expect_eq "$(stat -c '%u %g %a' "$mp/userdir")" "65534 65534 755" "owner of a directory made by nobody"
		expect_eq "$(nobody cat "$mp/rootfile")" secret "nobody reads a 0644 file"
		if nobody sh -c "echo x >> $mp/rootfile" 2>/dev/null; then fail_msg "nobody wrote a root 0644 file"; fi
		if nobody chmod 666 "$mp/rootfile" 2>/dev/null; then fail_msg "nobody chmod'ed a root file"; fi
		if nobody truncate -s 0 "$mp/rootfile" 2>/dev/null; then fail_msg "nobody truncated a root file"; fi
		chmod 600 "$mp/rootfile"
		if nobody cat "$mp/rootfile" >/dev/null 2>&1; then fail_msg "nobody read a 0600 root file"; fi
		# sticky root (1777): nobody cannot remove root's file
		if nobody rm -f "$mp/rootfile" 2>/dev/null; then fail_msg "nobody removed root's file in a sticky directory"; fi
		# set-group-ID directories pass their group on
		mkdir "$mp/sgid" && chown 0:100 "$mp/sgid" && chmod 2777 "$mp/sgid"
		nobody sh -c "touch $mp/sgid/f; mkdir $mp/sgid/d"
		expect_eq "$(stat -c '%u %g' "$mp/sgid/f")" "65534 100" "group inherited from a set-group-ID directory"
		expect_eq "$(stat -c '%g %A' "$mp/sgid/d")" "100 drwxr-sr-x" "set-group-ID directory inherited"
		# the kernel clears set-user-ID when an unprivileged user writes
		nobody sh -c "touch $mp/userdir/suid && chmod 4755 $mp/userdir/suid && echo x >> $mp/userdir/suid"
		expect_eq "$(nobody stat -c '%a' "$mp/userdir/suid")" 755 "set-user-ID cleared by a write"
		nobody sh -c "chmod 4755 $mp/userdir/suid && : > $mp/userdir/suid"
		expect_eq "$(nobody stat -c '%a' "$mp/userdir/suid")" 755 "set-user-ID cleared by an O_TRUNC open"
		nobody sh -c "chmod 4755 $mp/userdir/suid && truncate -s 1 $mp/userdir/suid"
		expect_eq "$(nobody stat -c '%a' "$mp/userdir/suid")" 755 "set-user-ID cleared by truncate"
	)
	rc=$?
	set -e
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

# kill_suid_case DIR MODE GID: user nobody (group GID) appends to a file of
# nobody:nobody with MODE; prints the mode after the write.
kill_suid_case() {
	local d=$1 mode=$2 gid=$3
	rm -f "$d/ks"
	nobody sh -c "touch $d/ks && chmod $mode $d/ks"
	setpriv --reuid=65534 --regid="$gid" --clear-groups sh -c "echo x >> $d/ks"
	stat -c %a "$d/ks"
}

# Which set-ID bits a write clears, against tmpfs: set-user-ID always, and
# set-group-ID when group-executable or when the writer is not in the
# file's group (Linux 6.x), unless the writer has CAP_FSETID.
t_suid_kill_rules() {
	local mp=$T/mnt-kill pid rc=0
	start_daemon "$mp" "size=64m,allow_other,attr_timeout=0" || fail_msg "mount"
	pid=$DAEMON_PID
	set +e
	(
		set -e
		local mode gid
		for mode in 4755 2755 2745 6755 4644 2644 6644; do
			for gid in 65534 100; do
				expect_eq "$(kill_suid_case "$mp" $mode $gid)" \
					"$(kill_suid_case "$REF" $mode $gid)" "mode $mode after a write by nobody, group $gid"
			done
		done
		# root (CAP_FSETID) keeps both
		chmod 6755 "$mp/ks"
		echo y >>"$mp/ks"
		expect_eq "$(stat -c %a "$mp/ks")" 6755 "mode after a write by root"
		rm -f "$mp/ks" "$REF/ks"
	)
	rc=$?
	set -e
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

# Set-user-ID is cleared before the data of a write lands, as the kernel
# does (file_remove_privs comes first): then a write that fails with ENOSPC
# has cleared it too, on tmpfs and on thpfs alike.
t_suid_cleared_before_data() {
	local mp=$T/mnt-kill pid rc=0 ref=$T/ref-kill
	mkdir -p "$ref"
	mount -t tmpfs -o size=4m,mode=1777 tmpfs "$ref" || fail_msg "tmpfs"
	start_daemon "$mp" "size=4m,allow_other,attr_timeout=0" || { umount "$ref"; fail_msg "mount"; }
	pid=$DAEMON_PID
	set +e
	(
		set -e
		local d
		for d in "$mp" "$ref"; do
			nobody sh -c "touch $d/s && chmod 4755 $d/s"
			dd if=/dev/zero of="$d/fill" bs=64k status=none 2>/dev/null || true
			if nobody sh -c "echo x >> $d/s" 2>/dev/null; then
				fail_msg "$d: a write into a full file system succeeded"
			fi
		done
		expect_eq "$(stat -c '%a %s' "$mp/s")" "$(stat -c '%a %s' "$ref/s")" \
			"mode and size after a write that failed with ENOSPC"
		rm -f "$mp/s" "$mp/fill"
	)
	rc=$?
	set -e
	umount "$ref"
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

t_stats() {
	local out
	out=$("$THPFS_STAT" "$MNT")
	echo "$out" | grep -q '^ShmemHugePages:' || fail_msg "no ShmemHugePages line"
	echo "$out" | grep -q '^thp_split_page ' || fail_msg "no thp_split_page line"
	[[ $("$THPFS_STAT" "$MNT" huge_frames) =~ ^[0-9]+$ ]] || fail_msg "huge_frames is not a number"
	echo "$out" | grep -q '^ShmemPmdMapped:' || fail_msg "no ShmemPmdMapped line"
	if ! echo "$out" | grep -q '^SplitVerify: none'; then
		[[ $("$THPFS_STAT" "$MNT" coverage) =~ ^[0-9]+\.[0-9]$ ]] || fail_msg "coverage is not a percentage"
	fi
	if command -v getfattr >/dev/null; then
		expect_eq "$(getfattr --only-values -n user.thpfs.meminfo "$MNT" | head -1 | cut -d: -f1)" Shmem \
			"getfattr on the root"
	fi
	expect_eq "$(ls -A "$MNT" | grep -c thpfs || true)" 0 "statistics files in the namespace"
	if "$THPFS_STAT" "$REF" >/dev/null 2>&1; then fail_msg "thpfs-stat accepted a tmpfs"; fi
	set +e
	"$THPFS_STAT" "$MNT" no_such_counter >/dev/null 2>&1
	expect_eq $? 2 "exit status for an unknown name"
}

t_enospc() {
	local mp=$T/mnt-small pid src rc=0 out
	src=$(random_file rand10 10)
	start_daemon "$mp" "size=4m,nr_inodes=20" || fail_msg "mount size=4m"
	pid=$DAEMON_PID
	set +e
	(
		set -e
		expect_eq "$(stat -f -c '%b %c' "$mp")" "1024 20" "statfs of size=4m,nr_inodes=20"
		if out=$(dd if="$src" of="$mp/big" bs=1M status=none 2>&1); then
			fail_msg "writing 10 MiB into size=4m succeeded"
		fi
		echo "$out" | grep -q "No space left on device" || fail_msg "dd said: $out"
		local size
		size=$(stat -c %s "$mp/big")
		[ "$size" -le 4194304 ] || fail_msg "size $size past size="
		cmp -n "$size" "$src" "$mp/big"
		rm "$mp/big"
		dd if="$src" of="$mp/fits" bs=1M count=4 status=none
		rm "$mp/fits"
		local n=0
		while touch "$mp/f$n" 2>/dev/null; do n=$((n + 1)); [ $n -lt 100 ] || break; done
		expect_eq "$n" 19 "files that fit in nr_inodes=20 (the root is one)"
	)
	rc=$?
	set -e
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

# fsx_on DIR: the random exerciser against $REF; FSX_SEED repeats a run.
fsx_on() {
	rm -rf "$REF/fsx"
	mkdir "$1/fsx" "$REF/fsx"
	"$FSX" -n "$FSX_OPS" -s "${FSX_SEED:-$RANDOM$RANDOM}" "$1/fsx" "$REF/fsx" | sed 's/^/info: /'
	rm -rf "$1/fsx" "$REF/fsx"
}

t_fsx() {
	fsx_on "$MNT"
}

t_fsx_inplace_collapse() {
	# split=inplace, and collapse back into huge pages as eagerly as it gets
	local mp=$T/mnt-fsx pid rc
	start_daemon "$mp" "size=1g,split=inplace,max_ptes_none=511,scan_sleep_ms=1" ||
		fail_msg "mount"
	pid=$DAEMON_PID
	set +e
	(set -e -o pipefail; fsx_on "$mp")
	rc=$?
	set -e
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	return $rc
}

# Sanitizer builds add shadow memory and allocator quarantine to the
# daemon's cgroup: its usage says nothing about frames there.
sanitized() {
	case $(basename "$B") in build-asan | build-tsan) return 0 ;; esac
	return 1
}

t_punch_memory_cgroup() {
	if sanitized; then
		echo "memory is not measurable in a sanitizer build"
		exit 77
	fi
	"$PUNCH" -o size=1g,split=migrate "$THPFS" "$T/mnt-cg" | sed 's/^/info: /'
}

# Punched pages of a file mapped shared by another process leave both the
# daemon's cgroup (thpfs frames) and the mapper's (its page cache).
t_punch_memory_mapped() {
	if sanitized; then
		echo "memory is not measurable in a sanitizer build"
		exit 77
	fi
	"$PUNCH" -m -o size=1g "$THPFS" "$T/mnt-cg" | sed 's/^/info: /'
}

t_punch_memory_inplace() {
	# split=inplace only drops RSS: the kernel keeps the whole huge page
	# charged until it splits it later, so this prints and does not judge
	"$PUNCH" -i -o size=1g,split=inplace "$THPFS" "$T/mnt-cg2" | sed 's/^/info: /'
}

# A read is one pread: a writer rewriting the whole range at the same time
# must show either all old or all new bytes, never a mix (the zero-copy
# reply is copied out by the kernel while the writer may run).
t_reads_not_torn() {
	local out
	out=$("$PROBE" torn "$MNT/torn" 2) || fail_msg "$out"
	echo "info: $out"
	rm -f "$MNT/torn"
}

# Zero-copy reads must not leak pins: 8 parallel cats of a 100 MiB file,
# five rounds; after each round no page may stay pinned, and the daemon
# must still unmount cleanly (a leaked pin makes thpfs_unmount fail with
# EBUSY and the daemon exit 1).
t_parallel_reads_no_pins() {
	local mp=$T/mnt-pin pid rc=0
	start_daemon "$mp" "size=256m" || fail_msg "mount"
	pid=$DAEMON_PID
	set +e
	(
		set -e
		local round i pins src
		src=$(random_file rand100 100)
		cp "$src" "$mp/big"
		for round in 1 2 3 4 5; do
			# straight to /dev/null: a reader that closes at once is
			# what races the daemon's late unmap
			for i in 1 2 3 4 5 6 7 8; do
				cat "$mp/big" >/dev/null &
			done
			wait
			pins=$("$THPFS_STAT" "$mp" pinned_pages | awk '{print $1}')
			expect_eq "$pins" 0 "pinned_pages after round $round"
		done
		cmp "$src" "$mp/big"
		rm "$mp/big"
	)
	rc=$?
	set -e
	stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount: $(tail -1 "$T/daemon.log")"
	return $rc
}

# The daemon's own memory cgroup directory, or nothing (v1 memory
# controller, else cgroup v2 with memory enabled for children).
own_memcg() {
	local p
	p=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
	if [ -n "$p" ] && [ -d /sys/fs/cgroup/memory ]; then
		echo "/sys/fs/cgroup/memory${p%/}"
		return
	fi
	p=$(awk -F: '$1 == 0 {print $3}' /proc/self/cgroup)
	if [ -n "$p" ] && grep -qw memory "/sys/fs/cgroup${p%/}/cgroup.subtree_control" 2>/dev/null; then
		echo "/sys/fs/cgroup${p%/}"
	fi
}

# size= against the memory cgroup limit: a daemon in a child cgroup limited
# to 256 MiB refuses size=1g (an OOM kill would lose every file), lowers the
# default size= to fit, takes size=100m; and it sets oom_score_adj -1000.
t_memcg_limit() {
	local parent cg mp=$T/mnt-memcg pid rc=0 out limit_file
	parent=$(own_memcg)
	if [ -z "$parent" ]; then
		echo "no memory cgroup to make a child in"
		exit 77
	fi
	cg=$parent/thpfs-fuse-test-$$
	mkdir "$cg"
	if [ -e "$cg/memory.limit_in_bytes" ]; then limit_file=memory.limit_in_bytes; else limit_file=memory.max; fi
	echo $((256 << 20)) >"$cg/$limit_file"
	# the wrapper also raises its oom_score_adj: the daemon must bring it
	# down as far as it may
	printf '#!/bin/sh\necho $$ > %s/cgroup.procs && echo 500 > /proc/self/oom_score_adj && exec %s "$@"\n' \
		"$cg" "$THPFS" >"$T/in-memcg"
	chmod +x "$T/in-memcg"
	set +e
	(
		set -e
		local blocks adj
		# (not -f: a daemon that wrongly mounts goes to the background)
		if out=$("$T/in-memcg" -o size=1g "$mp" 2>&1); then
			fusermount3 -u "$mp"
			fail_msg "size=1g mounted under a 256 MiB memory cgroup limit"
		fi
		echo "$out" | grep -q "above the memory cgroup limit 256 MiB" || fail_msg "size=1g: '$out'"
		grep -qs " $mp " /proc/mounts && fail_msg "a refused mount left a mount behind"
		# the inode space (inodes, names, attributes) counts too
		for o in nr_inodes=1m nr_inodes=0 size=100m,nr_inodes=100k; do
			if out=$("$T/in-memcg" -o "$o" "$mp" 2>&1); then
				fusermount3 -u "$mp"
				fail_msg "$o mounted under a 256 MiB memory cgroup limit"
			fi
			echo "$out" | grep -q "nr_inodes=.* is above the memory cgroup limit 256 MiB" ||
				fail_msg "$o: '$out'"
		done
		THPFS=$T/in-memcg start_daemon "$mp" "nr_inodes=1000" || fail_msg "mount with the default size="
		pid=$DAEMON_PID
		# 256 MiB less the 32 MiB reserve less 1536 bytes for each of
		# the 1000 inodes: 233345024 bytes, 222.5 MiB
		grep -q "size= lowered to 222 MiB" "$T/daemon.log" || fail_msg "no message about the lowered size="
		blocks=$(stat -f -c %b "$mp")
		expect_eq "$blocks" $((((224 << 20) - 1000 * 1536) >> 12)) "statfs blocks of the lowered size="
		adj=$(cat /proc/$pid/oom_score_adj)
		if (($(printf '%d' 0x"$(awk '/^CapEff/ {print $2}' /proc/self/status)") >> 24 & 1)); then
			expect_eq "$adj" -1000 "the daemon's oom_score_adj (CAP_SYS_RESOURCE)"
		else
			# without CAP_SYS_RESOURCE: down to the lowest it may set,
			# at most ours (where it started before the wrapper), and said
			[ "$adj" -le "$(cat /proc/self/oom_score_adj)" ] ||
				fail_msg "the daemon's oom_score_adj is $adj"
			grep -q "oom_score_adj is $adj, not -1000" "$T/daemon.log" ||
				fail_msg "no message about oom_score_adj"
			echo "info: no CAP_SYS_RESOURCE: the daemon's oom_score_adj is $adj"
		fi
		stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
		THPFS=$T/in-memcg start_daemon "$mp" "size=100m" || fail_msg "mount size=100m"
		# (224 MiB - 100 MiB) / 1536 bytes
		expect_eq "$(stat -f -c %c "$mp")" $(((124 << 20) / 1536)) "statfs files of the lowered nr_inodes="
		stop_daemon "$mp" "$DAEMON_PID" || fail_msg "daemon exit status after unmount"
	)
	rc=$?
	set -e
	rmdir "$cg" 2>/dev/null || true
	return $rc
}

# meta_fill DIR WHAT: fills the mount at DIR until ENOSPC/EDQUOT with WHAT:
# "data" (one file, 1 MiB writes), "xattrs" (files with 4 user. attributes
# of 64 KiB each) or "inodes" (empty files with 200-byte names).  Prints
# the count made; any other error fails.
meta_fill() {
	python3 - "$1" "$2" <<'PY'
import errno, os, sys
d, what = sys.argv[1], sys.argv[2]
full = (errno.ENOSPC, errno.EDQUOT)
n = 0
try:
    if what == "data":
        with open(os.path.join(d, "data"), "wb", buffering=0) as f:
            block = bytes(range(256)) * 4096
            while True:
                f.write(block)
                n += 1
    elif what == "xattrs":
        val = b"x" * 65536
        while True:
            p = os.path.join(d, "x%d" % n)
            open(p, "w").close()
            for i in range(4):
                os.setxattr(p, "user.a%d" % i, val)
                n += 1
    else:
        os.mkdir(os.path.join(d, "i"))
        while True:
            open(os.path.join(d, "i", "%0200d" % n), "w").close()
            n += 1
except OSError as e:
    if e.errno not in full:
        print("%s: %s after %d" % (what, e, n))
        sys.exit(1)
print(n)
PY
}

# memcg_oom_kills CGROUP_DIR: the OOM kills counted in the cgroup (v1 or v2).
memcg_oom_kills() {
	if [ -e "$1/memory.oom_control" ]; then
		awk '$1 == "oom_kill" {print $2}' "$1/memory.oom_control"
	else
		awk '$1 == "oom_kill" {print $2}' "$1/memory.events"
	fi
}

# The whole of what a mount can hold, data, attributes and inodes, fits the
# daemon's memory cgroup: a daemon in a 160 MiB cgroup, mounted with the
# defaults, filled with size= of data, then 64 KiB attributes, then empty
# files until ENOSPC, is not OOM-killed and still answers.  Also measures
# what an empty file costs the daemon's cgroup (printed as info).
t_memcg_metadata() {
	local parent cg mp=$T/mnt-memcg2 pid rc=0 limit_file
	if sanitized; then
		# (ASan's redzones and quarantine: 2304 bytes an empty file)
		echo "memory is not measurable in a sanitizer build"
		exit 77
	fi
	parent=$(own_memcg)
	if [ -z "$parent" ]; then
		echo "no memory cgroup to make a child in"
		exit 77
	fi
	cg=$parent/thpfs-fuse-meta-$$
	mkdir "$cg"
	if [ -e "$cg/memory.limit_in_bytes" ]; then limit_file=memory.limit_in_bytes; else limit_file=memory.max; fi
	echo $((160 << 20)) >"$cg/$limit_file"
	printf '#!/bin/sh\necho $$ > %s/cgroup.procs && exec %s "$@"\n' "$cg" "$THPFS" >"$T/in-memcg2"
	chmod +x "$T/in-memcg2"
	set +e
	(
		set -e
		local data xattrs inodes u0 u1 kills per
		THPFS=$T/in-memcg2 start_daemon "$mp" "mode=1777" || fail_msg "mount with the defaults"
		pid=$DAEMON_PID
		echo "info: $(grep 'lowered' "$T/daemon.log" | tail -2 | tr '\n' ' ')"
		data=$(timeout 120 bash -c "$(declare -f meta_fill); meta_fill $mp data") ||
			fail_msg "filling with data: $data"
		data=$(stat -c %s "$mp/data")
		u0=$(cat "$cg/memory.usage_in_bytes" 2>/dev/null || cat "$cg/memory.current")
		inodes=$(timeout 120 bash -c "$(declare -f meta_fill); meta_fill $mp inodes") ||
			fail_msg "filling with inodes: $inodes"
		u1=$(cat "$cg/memory.usage_in_bytes" 2>/dev/null || cat "$cg/memory.current")
		per=$(( (u1 - u0) / (inodes > 0 ? inodes : 1) ))
		echo "info: the empty files took $per bytes each of the daemon's cgroup"
		# the daemon's check counts 1536 bytes per inode (INODE_MEMORY)
		[ "$per" -le 1536 ] || fail_msg "an empty file costs $per bytes, above INODE_MEMORY"
		# the freed inodes' memory may stay with the daemon's malloc:
		# the attributes then come on top of it
		rm -r "$mp/i"
		xattrs=$(timeout 120 bash -c "$(declare -f meta_fill); meta_fill $mp xattrs") ||
			fail_msg "filling with xattrs: $xattrs"
		echo "info: filled $((data >> 20)) MiB of data, $inodes empty files, then $xattrs attributes of 64 KiB"
		echo "info: daemon's cgroup peak $(( $(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || cat "$cg/memory.peak") >> 20 )) MiB of 160"
		kills=$(memcg_oom_kills "$cg")
		expect_eq "$kills" 0 "OOM kills in the daemon's 160 MiB cgroup"
		kill -0 "$pid" || fail_msg "the daemon is gone"
		expect_eq "$(stat -c %s "$mp/data")" "$data" "size of the data file afterwards"
		[ "$xattrs" -gt 0 ] && [ "$inodes" -gt 0 ] || fail_msg "no attribute or no inode fitted"
		getfattr -n user.a0 --only-values "$mp/x0" | cmp - <(head -c 65536 /dev/zero | tr '\0' x)
		stop_daemon "$mp" "$pid" || fail_msg "daemon exit status after unmount"
	)
	rc=$?
	set -e
	rmdir "$cg" 2>/dev/null || true
	return $rc
}

t_bad_mounts() {
	local out
	if out=$("$THPFS" "$T/missing" 2>&1); then fail_msg "mounted on a missing directory"; fi
	echo "$out" | grep -q "does not exist" || fail_msg "missing: '$out'"
	touch "$T/afile"
	if out=$("$THPFS" "$T/afile" 2>&1); then fail_msg "mounted on a file"; fi
	echo "$out" | grep -q "not a directory" || fail_msg "file: '$out'"
	if out=$("$THPFS" "$MNT" 2>&1); then fail_msg "mounted on a busy mount point"; fi
	echo "$out" | grep -q "busy" || fail_msg "busy: '$out'"
	set +e
	out=$("$THPFS" -o huge=sometimes "$T/mnt-bad" 2>&1)
	expect_eq $? 1 "exit status for a bad option" || return 1
	set -e
	echo "$out" | grep -q "huge" || fail_msg "bad option message does not name it: '$out'"
	if out=$("$THPFS" -o size=lots "$T/mnt-bad" 2>&1); then fail_msg "size=lots accepted"; fi
	echo "$out" | grep -q "size" || fail_msg "size=lots: '$out'"
	if out=$("$THPFS" -o no_such_option "$T/mnt-bad" 2>&1); then fail_msg "unknown option accepted"; fi
	# no /dev/fuse: hide it in a private mount namespace
	if out=$(unshare -m sh -c "mount -t tmpfs none /dev && exec $THPFS $T/mnt-bad" 2>&1); then
		fail_msg "mounted without /dev/fuse"
	fi
	echo "$out" | grep -q "/dev/fuse is unavailable" || fail_msg "no /dev/fuse: '$out'"
	grep -qs " $T/mnt-bad " /proc/mounts && fail_msg "a failed mount left a mount behind"
	true
}

t_shutdown_signals() {
	local mp=$T/mnt-sig pid sig i
	# start_daemon gives the daemon default SIGINT/SIGTERM handling
	for sig in TERM INT; do
		start_daemon "$mp" "size=16m" || fail_msg "mount"
		pid=$DAEMON_PID
		echo data >"$mp/f"
		kill -s "$sig" "$pid"
		for ((i = 0; i < 500; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.01
		done
		kill -0 "$pid" 2>/dev/null && fail_msg "daemon still running 5 s after SIG$sig"
		wait "$pid" || fail_msg "daemon exit status $? after SIG$sig"
		grep -qs " $mp " /proc/mounts && fail_msg "mount still there after SIG$sig"
	done
	# plain umount(8) also ends the daemon cleanly
	start_daemon "$mp" "size=16m" || fail_msg "mount"
	pid=$DAEMON_PID
	umount "$mp"
	for ((i = 0; i < 500; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.01
	done
	wait "$pid" || fail_msg "daemon exit status $? after umount"
}

t_background_mode() {
	# without -f the daemon forks, the parent returns once it is mounted
	local mp=$T/mnt-bg
	"$THPFS" -o size=16m "$mp"
	grep -qs " $mp fuse.thpfs " /proc/mounts || fail_msg "not mounted after the parent returned"
	echo hi >"$mp/x"
	expect_eq "$(cat "$mp/x")" hi "read back"
	fusermount3 -u "$mp"
}

# ---- run ----

if [ "$(id -u)" != 0 ]; then
	echo "tests/fuse/run.sh: needs root (mounts, cgroups, setpriv): skipping every check"
	# the checks below, and the main daemon's exit
	echo "0 passed, 0 failed, $(($(grep -c '^check "' "$0") + 1)) skipped"
	exit 0
fi
for f in "$THPFS" "$THPFS_STAT" "$FSX" "$PROBE" "$PUNCH"; do
	if [ ! -x "$f" ]; then
		echo "tests/fuse/run.sh: $f is missing (make tools tests)"
		echo "0 passed, 1 failed"
		exit 1
	fi
done
if ! mount -t tmpfs -o size=2g,huge=always tmpfs "$REF"; then
	echo "tests/fuse/run.sh: cannot mount the reference tmpfs"
	echo "0 passed, 1 failed"
	exit 1
fi
mounts+=("$REF")
if ! start_daemon "$MNT" "size=1g,nr_inodes=100000"; then
	echo "tests/fuse/run.sh: the daemon did not mount $MNT:"
	cat "$T/daemon.log"
	echo "0 passed, 1 failed"
	exit 1
fi
MAIN_PID=$DAEMON_PID
# the checks run in subshells: register the mount points they use here, so
# that cleanup takes them down whatever happens
for m in mnt-other mnt-small mnt-cg mnt-cg2 mnt-sig mnt-bg mnt-bad mnt-fsx mnt-pin mnt-kill ref-kill mnt-memcg mnt-memcg2 mnt-name mnt-xattr ref-xattr mnt-acl; do
	mkdir -p "$T/$m"
	mounts+=("$T/$m")
done

check "empty root, statfs reports size= and nr_inodes=" t_empty_root_and_statfs
check "dd, cp, cmp at 4 KiB and 1 MiB, unaligned writes" t_dd_cp_cmp
check "truncate grows, shrinks, frees" t_truncate
check "fallocate -l allocates, reads zero, is a hole" t_fallocate_l
check "fallocate -p: 4 KiB punch splits a huge page" t_punch_splits_huge_page
check "fallocate -z zeroes, extends unless -n" t_zero_range
check "fallocate -c/-i are refused, data kept" t_fallocate_unsupported
check "punch to the end (off, LLONG_MAX - off) and past 64 TiB as on tmpfs" t_punch_to_the_end
check "du agrees with stat %b" t_du_matches_blocks
check "cp --sparse=always in and out (SEEK_DATA/HOLE)" t_sparse_cp
check "mkdir -p, mv, ln -s, ln, find agree with tmpfs" t_namespace
check "rename NOREPLACE / EXCHANGE" t_rename_flags
check "concurrent writers and appenders" t_concurrent_writers
check "an unlinked open file stays readable" t_unlinked_open_file
check "mmap: shared and private; coherent with I/O, punch, truncate" t_mmap
check "the user's fsname= and subtype= win over the defaults" t_fsname_subtype
check "FIFOs, sockets, device nodes (mount stays nodev)" t_special_files
check "extended attributes as on tmpfs (limits, inode space)" t_xattrs
check "POSIX ACLs as on tmpfs (checks, chmod, inheritance)" t_posix_acls
check "file handles after the kernel drops its inodes" t_file_handles
check "umask and owner of new files" t_umask_and_owner
check "setattr: chmod, chown, touch -d, truncate" t_setattr
check "only the mounting user without allow_other" t_only_mounting_user
check "permissions with allow_other (kernel checks)" t_permissions_allow_other
check "set-ID bits a write clears, as on tmpfs" t_suid_kill_rules
check "set-user-ID cleared before the data lands (ENOSPC write)" t_suid_cleared_before_data
check "statistics via xattr and thpfs-stat" t_stats
check "ENOSPC at size=, nr_inodes= limit" t_enospc
check "random operations: mount vs tmpfs (fsx)" t_fsx
check "fsx with split=inplace, eager collapse" t_fsx_inplace_collapse
check "punched 4 KiB pages leave the daemon's cgroup (migrate)" t_punch_memory_cgroup
check "punch with split=inplace (reported only)" t_punch_memory_inplace
check "punched pages of a shared mapping leave daemon and page cache" t_punch_memory_mapped
check "reads racing a writer are never a mix of old and new" t_reads_not_torn
check "parallel zero-copy reads leave no pins, unmount works" t_parallel_reads_no_pins
check "size= fits the memory cgroup limit; oom_score_adj lowered" t_memcg_limit
check "data, attributes and inodes all fit the memory cgroup (no OOM kill)" t_memcg_metadata
check "clear errors: missing, file, busy, bad option, no /dev/fuse" t_bad_mounts
check "clean exit on SIGTERM, SIGINT, umount" t_shutdown_signals
check "background mode (no -f)" t_background_mode

# the main daemon must also shut down cleanly
if stop_daemon "$MNT" "$MAIN_PID"; then
	passed=$((passed + 1))
	echo "ok    main daemon exits 0 on fusermount3 -u"
else
	failed=$((failed + 1))
	failed_names+=("main daemon exit")
	echo "FAIL  main daemon exits 0 on fusermount3 -u"
	cat "$T/daemon.log"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
