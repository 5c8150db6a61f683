#!/bin/sh
# Installs the Debian packages thpfs needs to build, test and run its demo,
# if they are missing.  Idempotent; needs root (or sudo) only when something
# is missing.  `deps.sh vm` installs what the VM targets need instead
# (mk/vm.mk: QEMU, busybox for the guest's initramfs, cpio), so that
# `make check` does not need QEMU.
set -e
# clang and libclang-rt-dev (libclang_rt.fuzzer, the ASan/UBSan runtimes) for
# the fuzzer (mk/fuzz.mk).
PKGS="build-essential pkg-config libcmocka-dev libfuse3-dev fuse3 gnuplot-nox jq util-linux attr
clang libclang-rt-dev"
APT_OPTS=""
if [ "$1" = vm ]; then
	PKGS="qemu-system-x86 busybox-static cpio gzip python3 strace gnuplot-nox"
	APT_OPTS="--no-install-recommends" # QEMU's recommends pull in a GUI
fi
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "thpfs: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $APT_OPTS $missing >/dev/null
