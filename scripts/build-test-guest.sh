#!/usr/bin/env bash
# Build the tiny test guest from Debian packages only, into tests/.guest/ (git-ignored).
#
# What: a Debian cloud kernel (vmlinuz), a busybox-static initramfs (initrd.img) whose init prints
# markers and its DHCP lease on ttyS0, and a 16 MiB raw disk (disk.img) whose boot sector prints
# a marker too (so whole-disk boot is testable) and whose second sector holds a text marker the
# init reads and rewrites (so disk persistence and CreateImage are testable).
# Why: the vm tests need a real guest that boots in seconds under TCG, with nothing downloaded
# but Debian packages (see ../shared/virt/NOTES.md). Idempotent: a finished build (stamp file
# with the package versions and the layout number) is reused; pass --force to rebuild.
#
# Console markers (tests wait on them), in boot order:
#   EC2GW-MBR-BOOT                 the disk's boot sector ran (whole-disk boot, no kernel)
#   EC2GW-GUEST-INIT               the initramfs init started
#   EC2GW-BOOT-ID <id>             /proc/sys/kernel/random/boot_id: the same after hibernation
#                                  (restore) or live migration, a new one after every boot
#   EC2GW-DISK-READ: <line>        the marker line found in sector 1 of /dev/vda
#   EC2GW-SEED instance-id=<id>    the NoCloud seed (cdrom labelled cidata) was read
#   EC2GW-USERDATA: <first line>   the first line of user-data
#   EC2GW-BLK-ADD <dev> size=<sectors> head=<bytes>
#                                  a disk (vd*, sd*, xvd*) is present: once per disk at boot, then
#                                  within 0.5 s of a hot-plug; head= is its first 32 bytes with NULs
#                                  dropped and every byte outside [A-Za-z0-9_.:=/+-] shown as '.'
#   EC2GW-BLK-RESIZE <dev> size=<sectors>   a present disk changed size (a grown volume)
#   EC2GW-BLK-DEL <dev>            a disk went away (hot-unplug)
#   EC2GW-NIC-ADD <if> mac=<mac>   a NIC is present (at boot, or within 0.5 s of a hot-plug); every
#                                  NIC but eth0 is then brought up and runs udhcpc in the background
#   EC2GW-NIC-DEL <if>             a NIC went away
#   EC2GW-LEASE ip=<a> mask=<m> router=<r> if=<iface>
#                                  udhcpc got a lease on <iface> (the default route goes via eth0's
#                                  router only); "EC2GW-LEASE none" (eth0) or
#                                  "EC2GW-LEASE none if=<iface>" when no lease came
#   EC2GW-HTTPD port=80            busybox httpd serves /www (CGI below)
#   EC2GW-COUNTER <n>              every second from 0 on, after the lease: it stops while the
#                                  domain is paused and carries on (no restart at 0) after a restore
#   EC2GW-READY                    init finished; the ACPI power button now powers off
#   EC2GW-BUSY-START               the user-data contains EC2GW-BUSY: a niced loop keeps the vCPU
#                                  busy from now on (CPUUtilization near 100 %)
#   EC2GW-POWEROFF                 the power button was pressed, or the user-data asked for a
#                                  power-off after boot (it contains EC2GW-POWEROFF-AFTER-BOOT)
#
# HTTP on port 80 (text/plain; query values may be URL-encoded; dev= is a name like vdb, ip= a
# dotted IPv4 address; a bad parameter answers a line starting "error:"):
#   /                              "EC2GW-WEB <boot id>"
#   /cgi-bin/status                lines boot=<id>, uptime=<s>, counter=<n>,
#                                  blk=<dev>:<sectors>,...  net=<if>:<mac>,...  ip=<if>:<a>/<p>,...
#   /cgi-bin/write?dev=vdb&text=X  writes X at offset 0 of /dev/vdb (dd conv=notrunc,fsync);
#                                  answers "wrote <n> bytes to vdb"
#   /cgi-bin/read?dev=vdb          the first 32 bytes of /dev/vdb read with iflag=direct, NULs dropped
#   /cgi-bin/busy?seconds=N        burns CPU for N seconds (1..3600) in a niced background loop
#   /cgi-bin/setip?ip=A[&dev=eth0] adds A/32 to the interface (anti-spoofing tests: the guest then
#                                  answers HTTP and ARP for A, and sends from A), announces it with
#                                  gratuitous ARP from A and pings the interface's router (or DHCP
#                                  server, on an isolated network) G from A;
#                                  answers "setip ip=A dev=eth0 to=G ping=ok|fail";
#                                  setip?ip=A&del=1 removes it again
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
STAMP="kernel=$KPKG/$KVER busybox=$BVER layout=6"
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
mkdir -p "$R"/{bin,dev,proc,sys,seed,lib/modules,tmp,www/cgi-bin}
cp "$WORK/b/bin/busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
# virtio and ACPI power button as NOTES.md lists them (this order), then IDE cdrom + iso9660 for the
# seed, then SCSI disks on virtio-scsi (PROBES-2026-12.md: scsi_common scsi_mod sd_mod virtio_scsi;
# the first two are already loaded for the cdrom)
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover
virtio_net virtio_blk virtio_balloon button evdev scsi_common scsi_mod libata ata_piix cdrom sr_mod isofs
sd_mod virtio_scsi"
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
read BOOT_ID </proc/sys/kernel/random/boot_id
echo "EC2GW-BOOT-ID $BOOT_ID"
echo "EC2GW-WEB $BOOT_ID" >/www/index.html
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

# hot-plug: disks and NICs, compared with the previous scan (" name:sectors " / " name=mac ")
BLKS=" "; NICS=" "
blk_head() {
  n=0; while [ ! -b /dev/$1 ] && [ $n -lt 20 ]; do sleep 0.1; n=$((n+1)); done
  dd if=/dev/$1 bs=512 count=1 iflag=direct 2>/dev/null | head -c 32 | tr -d '\000' | tr -c 'A-Za-z0-9_.:=/+-' '.'
}
nic_up() {
  ip link set "$1" up
  udhcpc -i "$1" -q -n -t 20 -T 1 -s /lease.sh >/dev/null 2>&1 || echo "EC2GW-LEASE none if=$1"
}
scan() {
  now=" "
  for p in /sys/block/vd* /sys/block/sd* /sys/block/xvd*; do
    [ -e "$p/size" ] || continue
    d=${p##*/}; read s <"$p/size"
    now="$now$d:$s "
    case "$BLKS" in
      *" $d:$s "*) ;;
      *" $d:"*) echo "EC2GW-BLK-RESIZE $d size=$s" ;;
      *) echo "EC2GW-BLK-ADD $d size=$s head=$(blk_head $d)" ;;
    esac
  done
  for w in $BLKS; do
    case "$now" in *" ${w%%:*}:"*) ;; *) echo "EC2GW-BLK-DEL ${w%%:*}" ;; esac
  done
  BLKS=$now
  now=" "
  for p in /sys/class/net/*; do
    i=${p##*/}
    [ "$i" != lo ] && [ -e "$p/address" ] || continue
    read m <"$p/address"
    now="$now$i=$m "
    case "$NICS" in
      *" $i=$m "*) continue ;;
      *" $i="*) echo "EC2GW-NIC-DEL $i" ;;
    esac
    echo "EC2GW-NIC-ADD $i mac=$m"
    if [ "$i" != eth0 ]; then nic_up "$i" & fi
  done
  for w in $NICS; do
    case "$now" in *" ${w%%=*}="*) ;; *) echo "EC2GW-NIC-DEL ${w%%=*}" ;; esac
  done
  NICS=$now
}
scan

ip link set lo up
httpd -p 80 -h /www && echo "EC2GW-HTTPD port=80"
ip link set eth0 up 2>/dev/null && udhcpc -i eth0 -q -n -t 20 -T 1 -s /lease.sh >/dev/null 2>&1 \
  || echo "EC2GW-LEASE none"
(n=0; while true; do echo "EC2GW-COUNTER $n"; echo $n >/tmp/counter; n=$((n+1)); sleep 1; done) &
(while true; do sleep 0.5; scan; done) &
echo EC2GW-READY
if grep -q EC2GW-BUSY /seed/user-data 2>/dev/null; then
  echo EC2GW-BUSY-START
  sh -c 'renice 19 $$ >/dev/null 2>&1; while true; do :; done' &
fi
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
    gw=${router%% *}
    echo "${gw:-$serverid}" >"/tmp/router.$interface"  # isolated networks announce no router
    if [ "$interface" = eth0 ] && [ -n "$gw" ]; then ip route replace default via "$gw" dev eth0; fi
    echo "EC2GW-LEASE ip=$ip mask=$subnet router=$router if=$interface" >/dev/ttyS0 ;;
esac
EOF
# CGI: /lib/cgi.sh is sourced by every script (header, query parameters, checks)
cat >"$R/lib/cgi.sh" <<'EOF'
exec 2>/dev/null
echo "Content-Type: text/plain"
echo
arg() {  # the URL-decoded value of query parameter $1 ("" when absent)
  v=$(echo "&$QUERY_STRING" | sed -n "s/.*&$1=\([^&]*\).*/\1/p")
  [ -n "$v" ] && httpd -d "$v"
}
fail() { echo "error: $*"; exit 0; }
block_dev() {  # $1 names a block device such as vdb
  case "$1" in ""|*[!a-z0-9]*) return 1 ;; esac
  [ -b "/dev/$1" ]
}
EOF
cat >"$R/www/cgi-bin/status" <<'EOF'
#!/bin/sh
. /lib/cgi.sh
read boot </proc/sys/kernel/random/boot_id
read up _ </proc/uptime
c=none; [ -f /tmp/counter ] && read c </tmp/counter
blk=""
for p in /sys/block/vd* /sys/block/sd* /sys/block/xvd*; do
  [ -e "$p/size" ] || continue
  read s <"$p/size"; blk="$blk${blk:+,}${p##*/}:$s"
done
net=""
for p in /sys/class/net/*; do
  i=${p##*/}
  [ "$i" != lo ] && [ -e "$p/address" ] || continue
  read m <"$p/address"; net="$net${net:+,}$i:$m"
done
echo "boot=$boot"
echo "uptime=$up"
echo "counter=$c"
echo "blk=$blk"
echo "net=$net"
echo "ip=$(ip -o -4 addr show | awk '$2 != "lo" {printf "%s%s:%s", sep, $2, $4; sep=","}')"
EOF
cat >"$R/www/cgi-bin/write" <<'EOF'
#!/bin/sh
. /lib/cgi.sh
dev=$(arg dev); text=$(arg text)
block_dev "$dev" || fail "dev=$dev is not a block device of this guest (e.g. dev=vdb)"
[ -n "$text" ] || fail "text= is missing; give the bytes to write, e.g. text=MARKER1"
printf '%s' "$text" | dd of="/dev/$dev" bs=512 count=1 conv=notrunc,fsync 2>/dev/null \
  || fail "writing to /dev/$dev failed"
echo "wrote ${#text} bytes to $dev"
EOF
cat >"$R/www/cgi-bin/read" <<'EOF'
#!/bin/sh
. /lib/cgi.sh
dev=$(arg dev)
block_dev "$dev" || fail "dev=$dev is not a block device of this guest (e.g. dev=vdb)"
dd if="/dev/$dev" bs=512 count=1 iflag=direct 2>/dev/null | head -c 32 | tr -d '\000'
EOF
cat >"$R/www/cgi-bin/busy" <<'EOF'
#!/bin/sh
. /lib/cgi.sh
n=$(arg seconds)
case "$n" in ""|*[!0-9]*) fail "seconds=$n is not a whole number from 1 to 3600" ;; esac
[ "$n" -ge 1 ] && [ "$n" -le 3600 ] || fail "seconds=$n is not a whole number from 1 to 3600"
sh -c "renice 19 \$\$ >/dev/null 2>&1; exec timeout $n sh -c 'while true; do :; done'" </dev/null >/dev/null 2>&1 &
echo "busy seconds=$n"
EOF
cat >"$R/www/cgi-bin/setip" <<'EOF'
#!/bin/sh
. /lib/cgi.sh
ip=$(arg ip); dev=$(arg dev); dev=${dev:-eth0}
case "$ip" in ""|*[!0-9.]*) fail "ip=$ip is not a dotted IPv4 address" ;; esac
case "$dev" in *[!a-z0-9]*) fail "dev=$dev is not a network interface name" ;; esac
[ -e "/sys/class/net/$dev" ] || fail "dev=$dev is not a network interface of this guest"
if [ -n "$(arg del)" ]; then
  ip addr del "$ip/32" dev "$dev" || fail "$ip/32 is not on $dev"
  echo "delip ip=$ip dev=$dev"; exit 0
fi
ip -o -4 addr show dev "$dev" | grep -q " $ip/" || ip addr add "$ip/32" dev "$dev" || fail "could not add $ip/32 to $dev"
arping -U -c 2 -I "$dev" -s "$ip" "$ip" >/dev/null 2>&1
gw=""; [ -f "/tmp/router.$dev" ] && read gw <"/tmp/router.$dev"
p=fail; [ -n "$gw" ] && ping -c 2 -w 3 -I "$ip" "$gw" >/dev/null 2>&1 && p=ok
echo "setip ip=$ip dev=$dev to=${gw:-none} ping=$p"
EOF
chmod 755 "$R/init" "$R/lease.sh" "$R"/www/cgi-bin/*
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
