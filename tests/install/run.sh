#!/bin/bash
# run.sh [BUILD_DIR] - tests of `make install` and of a first use, as a new
# user would do them: two installs into temporary prefixes (thpfs.pc must
# name the prefix of its own install), the shared library's SONAME and links,
# the README's library snippet compiled against the installed library with
# the README's commands (pkg-config, rpath) and run, the installed programs
# and man pages, `mount -t fuse.thpfs` and an fstab line through the
# installed mount helper, and `make uninstall`; where the helper goes
# without MOUNT_HELPER_DIR (into a DESTDIR), two installs sharing one helper,
# and an install as uid 65534 into a prefix of its own.
#
# Ends with one line "N passed, N failed[, N skipped]"; exit status 0 when
# nothing failed.  The mount checks need root and /dev/fuse (skipped
# otherwise): they put the helper into /sbin (mount(8) looks only there)
# and remove it again, unless a mount.fuse.thpfs that is not ours is there.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-build}
pass=0
fail=0
skip=0
tmp=$(mktemp -d /tmp/thpfs-install-test.XXXXXX)
mnt=$tmp/mnt
helper=/sbin/mount.fuse.thpfs
helper_ours=
cleanup() {
	mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
	[ -n "$helper_ours" ] && rm -f "$helper"
	rm -rf "$tmp"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); echo "PASS: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }
skipped() { skip=$((skip + 1)); echo "SKIP: $1"; }
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else bad "$desc"; fi
}

cd "$root" || exit 1
inst() { # inst PREFIX [MAKE VARS...]
	local p=$1
	shift
	make -s --no-print-directory B="$B" PREFIX="$p" MOUNT_HELPER_DIR="$p/sbin" "$@" install \
		>"$tmp/install.log" 2>&1
}

# ---- two prefixes: each thpfs.pc names its own ----
A=$tmp/A
P=$tmp/prefix-B
check "make install PREFIX=A" inst "$A"
check "make install PREFIX=B after A" inst "$P"
grep -iE "error|warning" "$tmp/install.log" | head -5
check "A's thpfs.pc says prefix=A" grep -qx "prefix=$A" "$A/lib/pkgconfig/thpfs.pc"
check "B's thpfs.pc says prefix=B" grep -qx "prefix=$P" "$P/lib/pkgconfig/thpfs.pc"
export PKG_CONFIG_PATH=$P/lib/pkgconfig
check "pkg-config --cflags/--libs thpfs point into B" \
	bash -c "[ \"\$(pkg-config --cflags thpfs | xargs)\" = '-I$P/include' ] && [ \"\$(pkg-config --libs thpfs | xargs)\" = '-L$P/lib -lthpfs' ]"

# ---- the shared library: versioned SONAME and links ----
ver=$(sed -n 's/.*THPFS_VERSION "\(.*\)"/\1/p' include/thpfs.h)
major=${ver%%.*}
soname=$(readelf -d "$P/lib/libthpfs.so.$ver" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "libthpfs.so.$ver has SONAME libthpfs.so.$major (got '$soname')" test "$soname" = "libthpfs.so.$major"
check "links libthpfs.so -> libthpfs.so.$major -> libthpfs.so.$ver" \
	bash -c "[ \"\$(readlink '$P/lib/libthpfs.so')\" = libthpfs.so.$major ] && [ \"\$(readlink '$P/lib/libthpfs.so.$major')\" = libthpfs.so.$ver ]"

# ---- the README's snippet, built as the README says ----
awk '/^## Using the library/ { on = 1 } on && /^```c$/ { inc = 1; next } inc && /^```$/ { exit } inc { print }' \
	README.md >"$tmp/snippet.c"
check "README has a C snippet under 'Using the library' ($(wc -l <"$tmp/snippet.c") lines)" test -s "$tmp/snippet.c"
cmd=$(sed -n 's/^cc \(.*\)\$(pkg-config --cflags --libs thpfs)\(.*\)$/cc \1$(pkg-config --cflags --libs thpfs)\2/p' README.md | head -1)
check "README gives the cc command line ($cmd)" test -n "$cmd"
(cd "$tmp" && cp snippet.c example.c && eval "$cmd" >"$tmp/cc.log" 2>&1)
check "the snippet compiles with the README's command, -Wall -Wextra clean ($(head -c 300 "$tmp/cc.log"))" \
	bash -c "[ -x '$tmp/example' ] && ! grep -q warning '$tmp/cc.log'"
out=$("$tmp/example" 2>&1)
check "the program runs against the installed library (rpath) and prints its meminfo ($(echo "$out" | head -1))" \
	bash -c "echo \"\$1\" | grep -q '^Shmem:'" _ "$out"
check "it loads libthpfs.so.$major from B" \
	bash -c "ldd '$tmp/example' | grep -q 'libthpfs.so.$major => $P/lib/libthpfs.so.$major'"
# without the rpath the loader must be told where the library is
(cd "$tmp" && cc -o norpath example.c $(pkg-config --cflags --libs thpfs) 2>/dev/null)
if "$tmp/norpath" >/dev/null 2>&1; then
	bad "a program without rpath should not find a library outside the loader's path"
else
	check "without rpath: runs with LD_LIBRARY_PATH (the README's other way)" \
		env LD_LIBRARY_PATH="$P/lib" "$tmp/norpath"
fi

# ---- programs and man pages ----
for p in thpfs thpfs-stat thpfs-balloon; do
	check "$p installed and runs --help" bash -c "'$P/bin/$p' --help >/dev/null 2>&1"
done
for m in man1/thpfs.1 man1/thpfs-stat.1 man1/thpfs-balloon.1 man8/mount.fuse.thpfs.8; do
	check "man page $m renders without warnings" \
		bash -c "[ -f '$P/share/man/$m' ] && man --warnings -l '$P/share/man/$m' 2>&1 >/dev/null | (! grep -q .)"
done
check "the mount helper runs B's thpfs" grep -q "^THPFS=$P/bin/thpfs\$" "$P/sbin/mount.fuse.thpfs"

# ---- mount -t fuse.thpfs and fstab ----
if [ "$(id -u)" != 0 ] || [ ! -c /dev/fuse ]; then
	skipped "mount -t fuse.thpfs (needs root and /dev/fuse)"
elif [ -e "$helper" ] && ! grep -q "mount(8) runs for \"mount -t fuse.thpfs" "$helper"; then
	skipped "mount -t fuse.thpfs ($helper exists and is not ours)"
else
	[ -e "$helper" ] || helper_ours=1
	install -m 755 "$P/sbin/mount.fuse.thpfs" "$helper"
	helper_ours=1
	mkdir -p "$mnt"
	mount -t fuse.thpfs thpfs "$mnt" -o size=64m,noauto,x-test=1 2>"$tmp/mount.err"
	check "mount -t fuse.thpfs thpfs MNT -o size=64m ($(head -c 200 "$tmp/mount.err"))" mountpoint -q "$mnt"
	check "it is a fuse.thpfs mount of source thpfs" \
		bash -c "findmnt -n -o FSTYPE,SOURCE '$mnt' | grep -q 'fuse.thpfs *thpfs'"
	check "size=64m reached the file system" bash -c "[ \$(stat -f -c '%b*%S' '$mnt' | bc) -eq \$((64 << 20)) ]"
	mountpoint -q "$mnt" && dd if=/dev/zero of="$mnt/f" bs=1M count=4 status=none
	check "a file can be written and read back" \
		bash -c "mountpoint -q '$mnt' && cmp -n $((4 << 20)) '$mnt/f' /dev/zero"
	check "thpfs-stat reads the mount" bash -c "'$P/bin/thpfs-stat' '$mnt' Shmem | grep -q ."
	umount "$mnt"
	check "umount" bash -c "! mountpoint -q '$mnt'"
	echo "thpfs $mnt fuse.thpfs size=32m,noauto 0 0" >"$tmp/fstab"
	mount -T "$tmp/fstab" "$mnt" 2>"$tmp/mount.err"
	check "mount from an fstab line of type fuse.thpfs ($(head -c 200 "$tmp/mount.err"))" \
		bash -c "mountpoint -q '$mnt' && [ \$(stat -f -c '%b*%S' '$mnt' | bc) -eq \$((32 << 20)) ]"
	mountpoint -q "$mnt" && umount "$mnt"
fi

# ---- where the mount helper goes without MOUNT_HELPER_DIR (DESTDIR) ----
# /usr and /usr/local: /sbin, where mount(8) looks; another prefix: its own
# sbin, and the install says how to link it.  Two installs sharing one
# helper: the second does not take it over, uninstalling either leaves the
# other's helper alone.
D=$tmp/dest
mi() { # mi install|uninstall PREFIX [LOG]
	make -s --no-print-directory B="$B" PREFIX="$2" DESTDIR="$D" "$1" >"${3:-$tmp/mi.log}" 2>&1
}
check "make install PREFIX=/usr/local DESTDIR=D" mi install /usr/local
check "PREFIX=/usr/local: the helper goes to /sbin, runs /usr/local/bin/thpfs" \
	grep -qx "THPFS=/usr/local/bin/thpfs" "$D/sbin/mount.fuse.thpfs"
check "make install PREFIX=/usr DESTDIR=D (the same /sbin)" mi install /usr "$tmp/usr.log"
check "PREFIX=/usr does not take over /usr/local's helper" \
	grep -qx "THPFS=/usr/local/bin/thpfs" "$D/sbin/mount.fuse.thpfs"
check "... and says so ($(grep -i helper "$tmp/usr.log" | head -1))" \
	grep -q "mount.fuse.thpfs.*another install" "$tmp/usr.log"
check "make uninstall PREFIX=/usr DESTDIR=D" mi uninstall /usr
check "uninstalling /usr leaves /usr/local's helper" test -e "$D/sbin/mount.fuse.thpfs"
check "make install PREFIX=/opt/thpfs DESTDIR=D" mi install /opt/thpfs "$tmp/opt.log"
check "PREFIX=/opt/thpfs: the helper goes to /opt/thpfs/sbin" \
	grep -qx "THPFS=/opt/thpfs/bin/thpfs" "$D/opt/thpfs/sbin/mount.fuse.thpfs"
check "... /sbin keeps /usr/local's helper" \
	grep -qx "THPFS=/usr/local/bin/thpfs" "$D/sbin/mount.fuse.thpfs"
check "... and the install says how to link it into /sbin ($(grep 'ln -s' "$tmp/opt.log" | head -1))" \
	grep -q "ln -s /opt/thpfs/sbin/mount.fuse.thpfs /sbin/mount.fuse.thpfs" "$tmp/opt.log"
check "make uninstall PREFIX=/opt/thpfs DESTDIR=D" mi uninstall /opt/thpfs
check "make uninstall PREFIX=/usr/local DESTDIR=D" mi uninstall /usr/local
left=$(find "$D" \( -type f -o -type l \) | head -5)
check "nothing left in DESTDIR${left:+ (left: $left)}" test -z "$left"

# ---- an unprivileged install into a prefix of one's own ----
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	N=$tmp/nobody
	mkdir -p "$N"
	chown 65534:65534 "$N"
	chmod 755 "$tmp" # (mktemp -d made it 0700)
	setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$N" \
		make -s --no-print-directory B="$B" PREFIX="$N/.local" install >"$tmp/nobody.log" 2>&1
	rc=$?
	check "uid 65534: make install PREFIX=~/.local exits 0 ($(grep -m1 -iE 'cannot|error' "$tmp/nobody.log"))" \
		test $rc -eq 0
	check "uid 65534: the helper is in ~/.local/sbin" \
		grep -qx "THPFS=$N/.local/bin/thpfs" "$N/.local/sbin/mount.fuse.thpfs"
	setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$N" \
		make -s --no-print-directory B="$B" PREFIX="$N/.local" uninstall >"$tmp/nobody.log" 2>&1
	left=$(find "$N/.local" \( -type f -o -type l \) | head -5)
	check "uid 65534: make uninstall removes it all${left:+ (left: $left)}" test -z "$left"
else
	skipped "unprivileged install (needs root to become uid 65534, and setpriv)"
fi

# ---- uninstall ----
make -s --no-print-directory B="$B" PREFIX="$P" MOUNT_HELPER_DIR="$P/sbin" uninstall >"$tmp/un.log" 2>&1
left=$(find "$P" \( -type f -o -type l \) | head -5)
check "make uninstall removes every installed file${left:+ (left: $left)}" \
	bash -c "[ -z '$left' ] && [ -d '$P/lib' ]"

echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
