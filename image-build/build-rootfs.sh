#!/usr/bin/env bash
# The recipe: one mmdebstrap run that makes the appliance's root filesystem.
#
#   image-build/build-rootfs.sh --target pi|amd64 --out DIR [--suite bookworm|trixie]
#                               [--with-kernel] [--int8-from MODELS_DIR]
#
#   --target pi      Raspberry Pi OS Lite (arm64): Debian + the Raspberry Pi archive, the Pi
#                    kernels and firmware. build-pi-image.sh turns DIR into an SD-card
#                    image. On an x86 host this needs qemu-user-static (binfmt).
#   --target amd64   the CI smoke build: the same packages and hooks on Debian amd64.
#   --suite          the base: bookworm (Debian 12, Python 3.11; the default) or trixie
#                    (Debian 13, Python 3.13; the current Raspberry Pi OS). The pinned wheels
#                    are fetched for that base's CPython (lib/suites.sh).
#   --with-kernel    amd64 only: add Debian's kernel and the boot-report unit, for the qemu
#                    boot tier (tests/test_image_build.py, slow).
#   --int8-from MODELS_DIR
#                    also ship the int8 models that `appliance models build` made in
#                    MODELS_DIR on this host (prepare-payload.sh checks them against their
#                    manifest and the pinned float models); the image's appliance then picks
#                    int8 per model where the manifest says the gate passed.
#   --verbose        mmdebstrap's --verbose (every apt/dpkg line).
#
# The steps that install and configure the appliance are mmdebstrap customize hooks in
# hooks/common/ and run for every target; hooks/pi/ and hooks/qemu/ add only what differs
# (boot firmware, or the test-only boot report). DIR must not exist yet.
#
# Environment: APT_MIRROR (default http://deb.debian.org/debian), APT_SECURITY_MIRROR,
# RPI_MIRROR (default http://archive.raspberrypi.com/debian), RPI_KEYRING (the Raspberry Pi
# archive key, default /usr/share/keyrings/raspberrypi-archive-keyring.gpg), APPLIANCE_CACHE
# (default ~/.cache/appliance: apt .deb cache in apt/<arch>/, wheels in wheels/<arch>/),
# SOURCE_DATE_EPOCH (reproducible timestamps; default: the last commit's time).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance}"

target=""
out=""
with_kernel=no
int8=()
suite=bookworm
verbosity=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:?--target needs pi or amd64}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --with-kernel) with_kernel=yes; shift ;;
    --int8-from) int8=(--int8-from "${2:?--int8-from needs a models directory}"); shift 2 ;;
    --verbose) verbosity=(--verbose); shift ;;
    --suite) suite="${2:?--suite needs bookworm or trixie}"; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "build-rootfs: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] || { echo "build-rootfs: --out DIR is required" >&2; exit 2; }
[ ! -e "$out" ] || { echo "build-rootfs: $out exists; give a new directory" >&2; exit 2; }

log() { printf '[build-rootfs] %s\n' "$*" >&2; }
# shellcheck source-path=SCRIPTDIR source=lib/suites.sh
. "$here/lib/suites.sh"
suite_params "$suite" || exit 2

mirror="${APT_MIRROR:-http://deb.debian.org/debian}"
security="${APT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
lists=("$here/packages/common.txt")
hook_dirs=("$here/hooks/common")
case "$target" in
  pi)
    arch=arm64
    keyring="${RPI_KEYRING:-/usr/share/keyrings/raspberrypi-archive-keyring.gpg}"
    [ -r "$keyring" ] || { echo "build-rootfs: Raspberry Pi archive key not found at $keyring (see image-build/README.md)" >&2; exit 2; }
    components="main non-free-firmware"
    lists+=("$here/packages/pi.txt")
    hook_dirs+=("$here/hooks/pi")
    [ "$with_kernel" = no ] || { echo "build-rootfs: --with-kernel is for --target amd64" >&2; exit 2; }
    ;;
  amd64)
    arch=amd64
    components="main"
    if [ "$with_kernel" = yes ]; then
      lists+=("$here/packages/qemu.txt")
      hook_dirs+=("$here/hooks/qemu")
    fi
    ;;
  *) echo "build-rootfs: --target pi|amd64 is required" >&2; exit 2 ;;
esac

sources=(
  "deb $mirror $suite $components"
  "deb $mirror $suite-updates $components"
  "deb $security $suite-security $components"
)
payload_args=(--suite "$suite")
if [ "$target" = pi ]; then
  sources+=("deb [signed-by=$keyring] ${RPI_MIRROR:-http://archive.raspberrypi.com/debian} $suite main")
  payload_args+=(--extra pi)
fi

# Package lists: one name a line, '#' starts a comment.
packages="$(sed -e 's/#.*//' "${lists[@]}" | tr -s ' \t\n' '\n' | sed '/^$/d' | paste -sd, -)"

# Root: mmdebstrap's root mode. Anyone else: unshare mode (user namespaces, /etc/subuid).
mode=unshare
[ "$(id -u)" -eq 0 ] && mode=root

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH

# What the hooks read (exported: mmdebstrap keeps the caller's environment for hooks).
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
export APPLIANCE_REPO="$repo"
export APPLIANCE_FILES="$here/files"
export APPLIANCE_TARGET="$target"
export APPLIANCE_PAYLOAD="$workdir/payload"
"$here/prepare-payload.sh" --arch "$arch" --out "$APPLIANCE_PAYLOAD" "${payload_args[@]}" "${int8[@]}"

# Downloaded .debs are kept between runs, so a repeat build downloads only the indexes.
apt_cache="$cache/apt/$suite-$arch"
mkdir -p "$apt_cache"

# mmdebstrap's own hook: merged /usr without the usrmerge package (and the perl it pulls in).
hook_args=(--hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr)
for dir in "${hook_dirs[@]}"; do hook_args+=("--hook-dir=$dir"); done

log "mmdebstrap: $target ($suite, $arch, $mode mode) into $out"
# The single-quoted hook below is run by mmdebstrap under sh, with $1 = the image root.
# shellcheck disable=SC2016
mmdebstrap "${verbosity[@]}" \
  --mode="$mode" \
  --variant=minbase \
  --architectures="$arch" \
  --format=directory \
  --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt=force-unsafe-io \
  --skip=download/empty \
  --skip=essential/unlink \
  --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
  --setup-hook="sync-in $apt_cache /var/cache/apt/archives/" \
  --essential-hook="copy-in $here/files/appliance-dpkg-excludes /etc/dpkg/dpkg.cfg.d/" \
  --customize-hook="sync-out /var/cache/apt/archives $apt_cache" \
  "${hook_args[@]}" \
  "$suite" "$out" "${sources[@]}"
log "done: $out ($(du -sh "$out" | cut -f1))"
