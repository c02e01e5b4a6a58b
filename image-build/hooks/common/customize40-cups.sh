#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root): CUPS, private. The directives of
# systemd/cups/*.appliance are merged into cupsd.conf / cups-files.conf (CUPS has no
# include): spool in RAM, no job files or history kept, no page log, loopback and the local
# socket only, no browsing. cups-browsed and avahi are not installed (no recommends).
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_REPO:?}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

"$here/lib/merge-cups-conf.sh" "$APPLIANCE_REPO/systemd/cups/cupsd.conf.appliance" "$root/etc/cups/cupsd.conf"
"$here/lib/merge-cups-conf.sh" "$APPLIANCE_REPO/systemd/cups/cups-files.conf.appliance" "$root/etc/cups/cups-files.conf"
# Whatever the packages left in the old on-card spool goes (it is a tmpfs from now on).
find "$root/var/spool/cups" -mindepth 1 -delete
# cupsd -t wants the parent of its RAM spool; mmdebstrap empties /run afterwards.
install -d -m 0755 "$root/run/cups"
in_root cupsd -t
