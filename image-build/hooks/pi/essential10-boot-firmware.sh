#!/usr/bin/env bash
# mmdebstrap essential hook, Raspberry Pi image only ($1 = the image root): the boot
# partition's mount point exists before the kernel and firmware packages are installed,
# so their hooks copy kernel8.img, kernel_2712.img, the initramfs and the device trees there
# (customize70-boot.sh checks that they did).
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
install -d -m 0755 "$root/boot/firmware"
