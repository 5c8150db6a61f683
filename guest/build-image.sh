#!/bin/sh
# build-image.sh - builds the test guest of docs/vm.md from Debian packages,
# without installing a kernel on the host:
#   OUT/vmlinuz             Debian's kernel (the package linux-image-amd64
#                           depends on), from `apt-get download` + `dpkg-deb -x`
#   OUT/initramfs.cpio.gz   busybox-static, the virtio balloon modules of the
#                           same kernel, guest/init and guest/guest-mem (static)
# Usage: guest/build-image.sh [OUT]   (default build/guest; idempotent: the
# kernel package is downloaded once, the initramfs rebuilt when its inputs
# change).  Installs the host packages it needs (see scripts/deps.sh vm).
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-build/guest}
CC=${CC:-cc}
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_balloon"

sh "$HERE/../scripts/deps.sh" vm
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# The kernel: whatever linux-image-amd64 points to now.
if [ ! -f "$OUT/vmlinuz" ] || [ ! -f "$OUT/kernel-version" ]; then
	pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n 1)
	[ -n "$pkg" ] || { echo "build-image: cannot find the kernel package linux-image-amd64 depends on" >&2; exit 1; }
	rm -rf "$OUT/deb" "$OUT/kernel"
	mkdir -p "$OUT/deb" "$OUT/kernel"
	# apt-get download writes to the current directory; the _apt user
	# must be able to write there, else apt warns and downloads as root.
	(cd "$OUT/deb" && apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
	deb=$(ls "$OUT"/deb/*.deb 2>/dev/null | head -n 1)
	[ -n "$deb" ] || { echo "build-image: apt-get download $pkg failed" >&2; exit 1; }
	dpkg-deb -x "$deb" "$OUT/kernel"
	kver=$(ls "$OUT/kernel/lib/modules" | head -n 1)
	rm -rf "$OUT/modules"
	mkdir -p "$OUT/modules"
	for m in $MODULES; do
		f="$OUT/kernel/lib/modules/$kver/kernel/drivers/virtio/$m.ko"
		[ -f "$f" ] || { echo "build-image: $f missing (compressed modules? expected plain .ko in $kver)" >&2; exit 1; }
		cp "$f" "$OUT/modules/"
	done
	cp "$OUT/kernel/boot/vmlinuz-$kver" "$OUT/vmlinuz"
	# keep only what the guest uses (the package unpacks to ~400 MB)
	rm -rf "$OUT/deb" "$OUT/kernel"
	echo "$kver" > "$OUT/kernel-version"
fi
kver=$(cat "$OUT/kernel-version")

# The workload.
$CC -static -O2 -Wall -Wextra -o "$OUT/guest-mem" "$HERE/guest-mem.c"

# The initramfs.
root="$OUT/initramfs"
rm -rf "$root"
mkdir -p "$root/bin" "$root/lib/modules" "$root/proc" "$root/sys" "$root/dev"
cp /bin/busybox "$root/bin/busybox"
for app in sh mount insmod ls grep echo poweroff cat sleep; do
	ln -s busybox "$root/bin/$app"
done
for m in $MODULES; do
	cp "$OUT/modules/$m.ko" "$root/lib/modules/"
done
cp "$HERE/init" "$root/init"
chmod 755 "$root/init"
cp "$OUT/guest-mem" "$root/guest-mem"
(cd "$root" && find . | sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
echo "build-image: $OUT/vmlinuz ($kver), $OUT/initramfs.cpio.gz"
