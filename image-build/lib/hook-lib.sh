# Sourced by the customize hooks: in_root runs a command inside the image root with a
# clean environment, so nothing from the build host (PIP_* settings, proxies, locale)
# leaks into what runs inside the image.
# shellcheck shell=bash
in_root() {
  chroot "${root:?}" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
