#!/usr/bin/env bash
# mmdebstrap customize hook, Raspberry Pi image only ($1 = the image root): what makes the
# root filesystem boot on a Pi 4/5 the way Raspberry Pi OS Lite does. Everything about the
# appliance itself is in hooks/common/ and is the same as in the CI smoke build.
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_FILES:?}"

# Boot partition: firmware config and kernel command line.
install -d "$root/boot/firmware"
install -m 0644 "$APPLIANCE_FILES/pi/config.txt" "$root/boot/firmware/config.txt"
# The first boot grows the root partition to the card, as on Pi OS. raspberrypi-sys-mods
# did that from an init= script, and newer releases from an initramfs hook that looks for
# a "resize" word; use whichever the installed version has (it removes the word after).
cmdline="$(cat "$APPLIANCE_FILES/pi/cmdline.txt")"
if [ -e "$root/usr/share/initramfs-tools/scripts/local-premount/firstboot" ]; then
  cmdline="$cmdline resize"
elif [ -e "$root/usr/lib/raspberrypi-sys-mods/firstboot" ]; then
  cmdline="$cmdline init=/usr/lib/raspberrypi-sys-mods/firstboot"
else
  echo "customize70: no first-boot resize in raspberrypi-sys-mods; the root partition keeps its size" >&2
fi
printf '%s\n' "$cmdline" > "$root/boot/firmware/cmdline.txt"
chmod 0644 "$root/boot/firmware/cmdline.txt"
for kernel in kernel8.img kernel_2712.img; do
  [ -e "$root/boot/firmware/$kernel" ] || { echo "customize70: $kernel missing from /boot/firmware (raspi-firmware hooks did not run?)" >&2; exit 1; }
done
# The boot partition: readable by root only (it holds nothing secret, nothing needs it).
printf 'LABEL=bootfs     /boot/firmware   vfat   defaults,noatime,umask=0077               0      2\n' >> "$root/etc/fstab"

# Pi OS would turn SSH on when a file named "ssh" appears on the boot partition, which
# anyone with the card in a reader can put there; on the appliance SSH stays off until an
# administrator enables it on the device.
in_root systemctl mask sshswitch.service
