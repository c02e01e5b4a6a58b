#!/usr/bin/env bash
# The Raspberry Pi OS Lite (arm64) SD-card image with the appliance.
#
#   image-build/build-pi-image.sh OUTPUT.img [--suite bookworm|trixie]
#                                 [--int8-from MODELS_DIR | --no-int8] [--verbose]
#
# = build-rootfs.sh --target pi (the same mmdebstrap recipe and hooks as the CI smoke
# build, plus the Pi's archive, kernels, firmware and hooks/pi/) + make-sd-image.sh.
# --suite (default bookworm), --int8-from and --verbose are passed to build-rootfs.sh (see
# there): --suite trixie makes the current (Debian 13) Pi OS base; --int8-from ships
# the int8 models `appliance models build` made in MODELS_DIR on this host. Without either
# int8 option the image gets them anyway: `appliance models build` (the set-up's corpus
# build, a no-op when it is up to date) runs on this host's models directory, which is
# then shipped. --no-int8 makes an image with the float models only.
# Host: Debian 12 / Pi OS Bookworm, root or unshare-capable user, on arm64 or on x86_64
# with qemu-user-static + binfmt-support (see README.md for packages and time).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage="usage: build-pi-image.sh OUTPUT.img [--suite bookworm|trixie] [--int8-from MODELS_DIR | --no-int8] [--verbose]"
image="${1:?$usage}"
shift
rootfs_args=()
int8="default"
while [ $# -gt 0 ]; do
  case "$1" in
    --int8-from) rootfs_args+=(--int8-from "${2:?--int8-from needs a models directory}"); int8="given"; shift 2 ;;
    --no-int8) int8="none"; shift ;;
    --verbose) rootfs_args+=(--verbose); shift ;;
    --suite) rootfs_args+=(--suite "${2:?--suite needs bookworm or trixie}"); shift 2 ;;
    *) echo "build-pi-image: unknown argument: $1 ($usage)" >&2; exit 2 ;;
  esac
done
[ ! -e "$image" ] || { echo "build-pi-image: $image exists" >&2; exit 2; }
if [ "$int8" = "default" ]; then
  # The gated int8 models by default: the corpus build of this host's models directory.
  appliance="${APPLIANCE:-$here/../.venv/bin/appliance}"
  [ -x "$appliance" ] || { echo "build-pi-image: no $appliance: run scripts/setup.sh first (or --no-int8)" >&2; exit 2; }
  models_dir="$("$appliance" models list | sed -n 's/^directory: //p')"
  "$appliance" models build >&2
  rootfs_args+=(--int8-from "$models_dir")
fi

work="$(mktemp -d "$(dirname "$(realpath -m "$image")")/.build-pi-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$here/build-rootfs.sh" --target pi --out "$work/rootfs" "${rootfs_args[@]}"
"$here/make-sd-image.sh" "$work/rootfs" "$image"
sha256sum "$image" > "$image.sha256"
echo "[build-pi-image] $image ($(du -h --apparent-size "$image" | cut -f1), sparse $(du -h "$image" | cut -f1))" >&2
