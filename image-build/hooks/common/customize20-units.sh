#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root): the units and OS snippets of systemd/,
# installed where systemd/README.md's table says, then enabled. The Jetson drop-in is for
# Jetson images only and is not installed here.
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_REPO:?}"
src="$APPLIANCE_REPO/systemd"

put() {  # put MODE SOURCE DEST (DEST inside the image)
  install -D -m "$1" "$src/$2" "$root$3"
}
put 0644 appliance.service /etc/systemd/system/appliance.service
put 0644 appliance-firstboot.service /etc/systemd/system/appliance-firstboot.service
put 0644 run-appliance.mount /etc/systemd/system/run-appliance.mount
put 0755 system-generators/appliance-noswap-generator /usr/lib/systemd/system-generators/appliance-noswap-generator
put 0644 sysusers.d/appliance.conf /usr/lib/sysusers.d/appliance.conf
put 0644 tmpfiles.d/appliance.conf /usr/lib/tmpfiles.d/appliance.conf
put 0644 journald.conf.d/appliance.conf /etc/systemd/journald.conf.d/appliance.conf
put 0644 coredump.conf.d/appliance.conf /etc/systemd/coredump.conf.d/appliance.conf
put 0644 cups.service.d/appliance.conf /etc/systemd/system/cups.service.d/appliance.conf

# The service user and its groups exist before first boot (systemd-sysusers also runs at
# every boot; this makes /etc/passwd and /etc/group right in the image itself).
in_root systemd-sysusers

in_root systemctl enable appliance.service appliance-firstboot.service run-appliance.mount
