#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root): the LAN and the firewall.
# systemd-networkd takes any wired interface (DHCP, else IPv4 link-local); nftables lets
# in only the web ports from the LAN and lets out nothing beyond it (files/nftables.conf);
# timesyncd asks only NTP servers that the LAN's DHCP names.
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_FILES:?}"

install -m 0755 "$APPLIANCE_FILES/nftables.conf" "$root/etc/nftables.conf"
install -D -m 0644 "$APPLIANCE_FILES/20-lan.network" "$root/etc/systemd/network/20-lan.network"
install -D -m 0644 "$APPLIANCE_FILES/timesyncd.conf" "$root/etc/systemd/timesyncd.conf.d/appliance.conf"
echo studio-appliance > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tstudio-appliance\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
in_root systemctl enable nftables.service systemd-networkd.service
