#!/usr/bin/env bash
# Turn a root filesystem made by build-rootfs.sh into a raw, partitioned disk image, the
# way Raspberry Pi OS lays out its SD card: an MBR with
#   1. FAT32 "bootfs" (ROOTFS/boot/firmware: firmware, kernels, config.txt, cmdline.txt)
#   2. ext4 "rootfs"  (everything else; /boot/firmware left as an empty mount point)
# No loop devices and no mounting: mkfs.ext4 -d and mtools write the filesystems as files.
#
#   image-build/make-sd-image.sh ROOTFS IMAGE [--boot-mib N] [--free-mib N]
#
# Host tools: e2fsprogs, dosfstools, mtools, fdisk (sfdisk). The image is sparse; write
# it with `dd bs=4M conv=fsync` or Raspberry Pi Imager ("Use custom"). The Pi's first boot
# (raspberrypi-sys-mods) grows the root partition to the card.
set -euo pipefail

rootfs="${1:?usage: make-sd-image.sh ROOTFS IMAGE [--boot-mib N] [--free-mib N]}"
image="${2:?usage: make-sd-image.sh ROOTFS IMAGE [--boot-mib N] [--free-mib N]}"
shift 2
boot_mib=512
free_mib=512
while [ $# -gt 0 ]; do
  case "$1" in
    --boot-mib) boot_mib="${2:?}"; shift 2 ;;
    --free-mib) free_mib="${2:?}"; shift 2 ;;
    *) echo "make-sd-image: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$rootfs/usr/bin/env" ] || { echo "make-sd-image: $rootfs is not a root filesystem" >&2; exit 2; }
for tool in mkfs.ext4 mkfs.vfat mcopy sfdisk; do
  command -v "$tool" >/dev/null || { echo "make-sd-image: $tool missing (apt-get install e2fsprogs dosfstools mtools fdisk)" >&2; exit 2; }
done

log() { printf '[make-sd-image] %s\n' "$*" >&2; }
work="$(mktemp -d "$(dirname "$image")/.make-sd-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The ext4 tree: the rootfs as hard links (instant, same owners and modes), minus the
# boot partition's files. Hard links need the same filesystem; fall back to a copy.
tree="$work/tree"
cp -al "$rootfs" "$tree" 2>/dev/null || { rm -rf "$tree"; cp -a "$rootfs" "$tree"; }
if [ -d "$tree/boot/firmware" ]; then
  find "$tree/boot/firmware" -mindepth 1 -delete
fi

# Sizes in MiB: the tree plus 25% for ext4's own metadata, plus the requested free space.
used_mib=$(( $(du -s --block-size=1M "$tree" | cut -f1) ))
root_mib=$(( used_mib + used_mib / 4 + free_mib ))
start_mib=4

# SOURCE_DATE_EPOCH makes the filesystems' timestamps reproducible.
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then export E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH"; fi
log "ext4 rootfs: ${root_mib} MiB (${used_mib} MiB used)"
mkfs.ext4 -q -F -L rootfs -d "$tree" -E root_owner=0:0 "$work/root.img" "${root_mib}M" >"$work/mkfs.log" 2>&1 \
  || { cat "$work/mkfs.log" >&2; exit 1; }

log "FAT32 bootfs: ${boot_mib} MiB"
truncate -s "${boot_mib}M" "$work/boot.img"
# Pi OS's label is lower case too; mkfs.vfat warns about that, nothing else.
mkfs.vfat -F 32 -n bootfs "$work/boot.img" >"$work/mkfs.log" 2>&1 || { cat "$work/mkfs.log" >&2; exit 1; }
if [ -d "$rootfs/boot/firmware" ] && [ -n "$(ls -A "$rootfs/boot/firmware")" ]; then
  mcopy -s -p -Q -i "$work/boot.img" "$rootfs/boot/firmware/"* ::/
fi

total_mib=$(( start_mib + boot_mib + root_mib ))
rm -f "$image"
truncate -s "${total_mib}M" "$image"
sfdisk --quiet "$image" <<TABLE
label: dos
unit: sectors
start=$(( start_mib * 2048 )), size=$(( boot_mib * 2048 )), type=c
start=$(( (start_mib + boot_mib) * 2048 )), size=$(( root_mib * 2048 )), type=83
TABLE
dd if="$work/boot.img" of="$image" bs=1M seek="$start_mib" conv=notrunc,sparse status=none
dd if="$work/root.img" of="$image" bs=1M seek="$(( start_mib + boot_mib ))" conv=notrunc,sparse status=none
log "done: $image (${total_mib} MiB)"
