#!/usr/bin/env bash
# Build the tiny test guest from Debian packages only, into tests/.guest/ (git-ignored).
#
# What: a Debian cloud kernel (vmlinuz), a busybox-static initramfs (initrd.img) whose init prints
# markers and its DHCP lease on ttyS0, and a 16 MiB raw disk (disk.img) whose boot sector prints
# a marker too (so whole-disk boot is testable) and whose second sector holds a text marker the
# init reads and rewrites (so disk persistence and CreateImage are testable).
# Why: the vm tests need a real guest that boots in seconds under TCG, with nothing downloaded
# but Debian packages (see ../shared/virt/NOTES.md). Idempotent: a finished build (stamp file
# with the package versions) is reused; pass --force to rebuild.
#
# Console markers (tests wait on them):
#   EC2GW-MBR-BOOT                 the disk's boot sector ran (whole-disk boot, no kernel)
#   EC2GW-GUEST-INIT               the initramfs init started
#   EC2GW-DISK-READ: <line>        the marker line found in sector 1 of /dev/vda
#   EC2GW-SEED instance-id=<id>    the NoCloud seed (cdrom labelled cidata) was read
#   EC2GW-USERDATA: <first line>   the first line of user-data
#   EC2GW-LEASE ip=<a> mask=<m> router=<r>   udhcpc got a lease
#   EC2GW-READY                    init finished; the ACPI power button now powers off
#   EC2GW-POWEROFF                 the power button was pressed, or the user-data asked for a
#                                  power-off after boot (it contains EC2GW-POWEROFF-AFTER-BOOT)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="$PWD/tests/.guest"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
KPKG=$(kernel_package)
if [ -z "$KPKG" ] && [ "$(id -u)" -eq 0 ]; then  # package lists missing (a fresh container): fetch them
  apt-get update -q >/dev/null 2>&1 || true
  KPKG=$(kernel_package)
fi
if [ -z "$KPKG" ]; then
  echo "build-test-guest: apt does not know linux-image-cloud-amd64; run 'apt-get update' (as root) first" >&2
  exit 1
fi
KVER=$(apt-cache policy "$KPKG" | awk '/Candidate:/ {print $2}')
BVER=$(apt-cache policy busybox-static | awk '/Candidate:/ {print $2}')
STAMP="kernel=$KPKG/$KVER busybox=$BVER layout=5"
if [ $FORCE -eq 0 ] && [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] \
   && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ -s "$OUT/disk.img" ]; then
  exit 0
fi

mkdir -p "$OUT"
WORK=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download -q "$KPKG" busybox-static >/dev/null 2>apt.log) || {
  cat "$WORK/apt.log" >&2
  echo "build-test-guest: 'apt-get download $KPKG busybox-static' failed (see above)" >&2
  exit 1
}
dpkg-deb -x "$WORK"/linux-image-*.deb "$WORK/k"
dpkg-deb -x "$WORK"/busybox-static_*.deb "$WORK/b"
MODDIR=$(ls -d "$WORK"/k/lib/modules/*)

R="$WORK/root"
mkdir -p "$R"/{bin,dev,proc,sys,seed,lib/modules,tmp}
cp "$WORK/b/bin/busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
# virtio and ACPI power button as NOTES.md lists them (this order), then IDE cdrom + iso9660 for the seed
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover
virtio_net virtio_blk virtio_balloon button evdev scsi_common scsi_mod libata ata_piix cdrom sr_mod isofs"
for m in $MODULES; do
  f=$(find "$MODDIR" -name "$m.ko" | head -n1)
  if [ -z "$f" ]; then
    echo "build-test-guest: module $m.ko is not in $KPKG" >&2
    exit 1
  fi
  cp "$f" "$R/lib/modules/$m.ko"
done
echo "$MODULES" | tr -s ' \n' '\n\n' >"$R/lib/modules/order"

cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec >/dev/ttyS0 2>&1 </dev/null
echo EC2GW-GUEST-INIT
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
n=0; while [ ! -b /dev/vda ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done
IID=unknown
n=0; while [ ! -b /dev/sr0 ] && [ $n -lt 30 ]; do sleep 0.1; n=$((n+1)); done
if mount -t iso9660 -o ro /dev/sr0 /seed 2>/dev/null; then
  IID=$(sed -n 's/.*"instance-id": *"\([^"]*\)".*/\1/p' /seed/meta-data)
  echo "EC2GW-SEED instance-id=$IID"
  echo "EC2GW-USERDATA: $(head -n1 /seed/user-data)"
else
  echo "EC2GW-SEED none"
fi
if [ -b /dev/vda ]; then
  echo "EC2GW-DISK-READ: $(dd if=/dev/vda bs=512 skip=1 count=1 2>/dev/null | head -n1)"
  printf '%-63s\n' "EC2GW-DISK written-by $IID" | dd of=/dev/vda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
  sync
fi
ip link set lo up
ip link set eth0 up 2>/dev/null && udhcpc -i eth0 -q -n -t 20 -T 1 -s /lease.sh >/dev/null 2>&1 \
  || echo "EC2GW-LEASE none"
echo EC2GW-READY
if grep -q EC2GW-POWEROFF-AFTER-BOOT /seed/user-data 2>/dev/null; then
  echo EC2GW-POWEROFF; sync; poweroff -f
fi
# ACPI power button -> poweroff (stop, and reboot through libvirt's fake-reboot)
for ev in /sys/class/input/event*; do
  if [ "$(cat $ev/device/name 2>/dev/null)" = "Power Button" ]; then
    (dd if=/dev/input/${ev##*/} of=/dev/null bs=24 count=1 2>/dev/null
     echo EC2GW-POWEROFF; sync; poweroff -f) &
  fi
done
while true; do sleep 3600; done
EOF
cat >"$R/lease.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}"
    echo "EC2GW-LEASE ip=$ip mask=$subnet router=$router" >/dev/ttyS0 ;;
esac
EOF
chmod 755 "$R/init" "$R/lease.sh"
(cd "$R" && find . | "$R/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -9) >"$WORK/initrd.img"
cp "$MODDIR/../../../boot/"vmlinuz-* "$WORK/vmlinuz"

# disk.img: a boot sector printing EC2GW-MBR-BOOT on COM1 (16-bit: cli; xor ax,ax; mov ds,ax;
# mov si,msg; mov dx,0x3f8; l: lodsb; test al,al; jz h; out dx,al; jmp l; h: hlt; jmp h),
# the marker line in sector 1, zeros up to 16 MiB.
python3 - "$WORK/disk.img" <<'EOF'
import sys
code = bytes.fromhex("fa31c08ed8be0000baf803ac84c07403eeebf8f4ebfd")
msg = b"\r\nEC2GW-MBR-BOOT\r\n\0"
boot = bytearray(code + msg)
boot[6:8] = (0x7C00 + len(code)).to_bytes(2, "little")
sector0 = bytes(boot).ljust(510, b"\0") + b"\x55\xaa"
sector1 = b"EC2GW-DISK base".ljust(63) + b"\n"
with open(sys.argv[1], "wb") as f:
    f.write(sector0 + sector1.ljust(512, b"\0"))
    f.truncate(16 << 20)
EOF
for f in vmlinuz initrd.img disk.img; do mv "$WORK/$f" "$OUT/$f"; done
echo "$STAMP" >"$OUT/stamp"
echo "test guest built in $OUT ($KPKG $KVER, busybox $BVER)"
