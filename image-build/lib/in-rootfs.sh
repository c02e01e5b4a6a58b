#!/usr/bin/env bash
# Run one command inside a built image root, the way the booted image would see its
# files: / read-only, RAM-backed /run, /tmp and /var/tmp, a /proc of its own, the host's
# /dev. Everything happens in private mount and PID namespaces (and a network namespace
# with --net), so every mount vanishes with the command, even if it fails or is killed,
# and nothing is written into the image root or seen by the host.
#
#   image-build/lib/in-rootfs.sh [--net] ROOTFS COMMAND [ARG...]
#
# Needs root (or CAP_SYS_ADMIN). The command gets a clean environment.
set -euo pipefail

if [ "${1:-}" != --inside ]; then
  namespaces=(--mount --propagation private --pid --fork --kill-child)
  if [ "${1:-}" = --net ]; then
    namespaces+=(--net)
    shift
  fi
  [ $# -ge 2 ] || { echo "usage: in-rootfs.sh [--net] ROOTFS COMMAND [ARG...]" >&2; exit 2; }
  exec unshare "${namespaces[@]}" -- "$0" --inside "$@"
fi
shift
root="$(realpath "$1")"
shift
[ -x "$root/usr/bin/env" ] || { echo "in-rootfs: $root is not an image root" >&2; exit 2; }

mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/var/tmp"
exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 "$@"
