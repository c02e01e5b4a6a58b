#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root): SSH installed but off, and no host
# keys in the image (the package's postinst made some: every card would share them).
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_FILES:?}"

in_root systemctl disable ssh.service ssh.socket
rm -f "$root"/etc/ssh/ssh_host_*
install -D -m 0644 "$APPLIANCE_FILES/ssh.service.conf" "$root/etc/systemd/system/ssh.service.d/appliance.conf"
