#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root), last: nothing device-specific or secret
# stays in the image (invariant 7: every device makes its own at first boot).
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"

# ssl-cert's postinst made a "snakeoil" key pair that every card would share; nothing on
# the appliance uses it (cupsd makes its own in /etc/cups/ssl when asked for TLS).
rm -f "$root/etc/ssl/private/ssl-cert-snakeoil.key" "$root/etc/ssl/certs/ssl-cert-snakeoil.pem"
find "$root/etc/cups/ssl" -mindepth 1 -delete 2>/dev/null || true
# Per-device identity and entropy: made at first boot (mmdebstrap empties machine-id too).
rm -f "$root/var/lib/systemd/random-seed" "$root/var/lib/dbus/machine-id"
: > "$root/etc/machine-id"
# No login with a password: root stays locked (the console and SSH need a key or a
# password that the owner sets, never one the image ships).
in_root passwd --lock root >/dev/null
# Build leftovers.
rm -rf "$root/root/.cache" "$root/var/tmp/"* "$root/var/cache/debconf/"*-old
