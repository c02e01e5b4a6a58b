#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root): invariant 1 at the OS level. Every
# writable place that could see a customer photo is RAM, nothing swaps to the card,
# nothing dumps core, and logs stay in RAM.
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_FILES:?}"

# Filesystems: / on the card; /var/tmp and CUPS's old spool and job cache as tmpfs
# (files/fstab); /tmp as tmpfs through systemd's own tmp.mount. Debian 12 ships that unit
# unused in /usr/share/systemd/; Debian 13 ships it in the unit path, statically on and
# without an [Install] section. Either way the image gets its own enabled copy in /etc.
install -m 0644 "$APPLIANCE_FILES/fstab" "$root/etc/fstab"
tmp_mount="$root/usr/share/systemd/tmp.mount"
[ -f "$tmp_mount" ] || tmp_mount="$root/usr/lib/systemd/system/tmp.mount"
cp "$tmp_mount" "$root/etc/systemd/system/tmp.mount"
if ! grep -q '^\[Install\]' "$root/etc/systemd/system/tmp.mount"; then
  printf '\n[Install]\nWantedBy=local-fs.target\n' >> "$root/etc/systemd/system/tmp.mount"
fi
in_root systemctl enable tmp.mount

# No swap on the card: Pi OS's swap file service is masked (whether installed or not)
# and fstab has no swap line; nothing else in the image creates swap.
in_root systemctl mask dphys-swapfile.service
rm -f "$root/var/swap"

# Logs: the journal is volatile (systemd/journald.conf.d/, installed by customize20);
# no persistent journal directory, and no syslog daemon copying it to /var/log.
rm -rf "$root/var/log/journal"
# Debian 13's systemd ships journald.conf.d/syslog.conf (ForwardToSyslog=yes), which sorts
# after the appliance's drop-in and so would win; a file of the same name in /etc replaces it.
if [ -f "$root/usr/lib/systemd/journald.conf.d/syslog.conf" ]; then
  cat > "$root/etc/systemd/journald.conf.d/syslog.conf" <<'CONF'
# Replaces systemd's syslog.conf (image-build customize30-privacy.sh): no syslog forwarding.
[Journal]
ForwardToSyslog=no
CONF
fi
# shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not a shell variable
if in_root dpkg-query -W -f='${Status}' rsyslog 2>/dev/null | grep -q 'ok installed'; then
  in_root apt-get purge -y -q rsyslog
fi

# Core dumps: none from any service or set-id program.
install -D -m 0644 "$APPLIANCE_FILES/system.conf" "$root/etc/systemd/system.conf.d/appliance.conf"
install -D -m 0644 "$APPLIANCE_FILES/sysctl.conf" "$root/etc/sysctl.d/60-appliance.conf"
