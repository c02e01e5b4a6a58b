#!/usr/bin/env bash
# mmdebstrap customize hook, qemu test tier only ($1 = the image root): the boot report
# (files/qemu/) and a kernel/initramfs at fixed paths for `qemu -kernel/-initrd`.
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_FILES:?}"

install -D -m 0755 "$APPLIANCE_FILES/qemu/boot-report" "$root/usr/local/lib/appliance-test/boot-report"
install -D -m 0644 "$APPLIANCE_FILES/qemu/appliance-boot-report.service" \
  "$root/etc/systemd/system/appliance-boot-report.service"
in_root systemctl enable appliance-boot-report.service
# Debian's kernel package leaves /vmlinuz and /initrd.img symlinks: check they are there.
if [ ! -e "$root/vmlinuz" ] || [ ! -e "$root/initrd.img" ]; then
  echo "customize70: no /vmlinuz or /initrd.img in the image" >&2
  exit 1
fi
