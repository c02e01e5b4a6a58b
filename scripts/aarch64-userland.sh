#!/usr/bin/env bash
# The arm64 userland the aarch64 test tier runs the appliance in (tests/test_aarch64.py).
#
#   scripts/aarch64-userland.sh bookworm|trixie
#
# Prints the path of that base's env.json, after making (once per set of inputs) under
# ${APPLIANCE_CACHE:-~/.cache/appliance}/aarch64/:
#   qemu-user/qemu-aarch64    Debian's qemu user-mode emulator (static), from bookworm-backports
#                             (bookworm's 7.2 crashes in LiteRT's allocate_tensors; 10.0 runs it)
#   SUITE-DIGEST/root/        Debian SUITE arm64: python3 and the few libraries the pinned wheels
#                             and picamera2's compiled helpers need, unpacked from the .debs
#                             (mmdebstrap --variant=extract: no maintainer scripts, no chroot)
#   SUITE-DIGEST/site/        the appliance's pinned dependencies (pyproject.toml + the `pi`
#                             extra, under image-build/constraints.txt) as aarch64 wheels for
#                             that base's CPython, installed by this host's pip (--target)
#   SUITE-DIGEST/camera/      the real picamera2 and its pure-Python helpers
#                             (tests/aarch64/picamera2-pins.txt), for the import test
# The emulator runs the target's interpreter directly (qemu-aarch64 -L ROOT ROOT/usr/bin/python3):
# no binfmt_misc, no root needed for running. DIGEST covers every input (this script, the
# pins, the package lists), so a change means a new tree; a second run only prints the path.
#
# Environment: APT_MIRROR, APT_SECURITY_MIRROR (as build-rootfs.sh), APPLIANCE_CACHE, PYTHON
# (the host Python whose pip downloads; default the project's .venv).
set -euo pipefail

suite="${1:?usage: $0 bookworm|trixie}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=../image-build/lib/suites.sh
. "$repo/image-build/lib/suites.sh"
suite_params "$suite"
python="${PYTHON:-$repo/.venv/bin/python}"
cache="${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance}"
mirror="${APT_MIRROR:-http://deb.debian.org/debian}"
security="${APT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
base="$cache/aarch64"
camera_pins="$repo/tests/aarch64/picamera2-pins.txt"

log() { printf '[aarch64] %s\n' "$*" >&2; }

# What the sysroot holds: the interpreter, the C++ runtime the manylinux wheels link to
# (libstdc++6 is outside what manylinux wheels may bundle), and the Debian builds of
# picamera2's compiled helpers that Debian has (libcamera's Python bindings only in trixie).
packages=(python3 libstdc++6 python3-prctl)
[ "$suite" = trixie ] && packages+=(python3-libcamera)

digest="$(
  {
    printf '%s\n' "$suite" "${packages[@]}"
    cat "${BASH_SOURCE[0]}" "$repo/image-build/lib/suites.sh" "$repo/pyproject.toml" \
      "$repo/image-build/constraints.txt" "$camera_pins"
  } | sha256sum | cut -c1-20
)"
out="$base/$suite-$digest"
mkdir -p "$base"
exec 9>"$base/$suite.lock"
flock 9
if [ -f "$out/complete" ]; then
  echo "$out/env.json"
  exit 0
fi
[ -x "$python" ] || { echo "aarch64-userland: no Python at $python (run scripts/setup.sh)" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { echo "aarch64-userland: mmdebstrap is not installed" >&2; exit 2; }

# 1. The emulator: Debian 12's backported qemu-user (static binaries), unpacked, no binfmt.
qemu_dir="$base/qemu-user"
exec 8>"$base/qemu.lock"
flock 8
if [ ! -x "$qemu_dir/qemu-aarch64" ]; then
  log "fetching Debian's qemu-user (bookworm-backports, amd64)"
  scratch="$(mktemp -d "$base/.qemu.XXXXXX")"
  mmdebstrap --quiet --mode=auto --variant=extract --architectures=amd64 --include=qemu-user \
    --aptopt='Acquire::Languages "none"' --format=directory \
    bookworm-backports "$scratch/root" "deb $mirror bookworm-backports main" >&2
  rm -rf "$qemu_dir.partial"
  mkdir -p "$qemu_dir.partial"
  cp "$scratch/root/usr/bin/qemu-aarch64" "$scratch/root/usr/share/doc/qemu-user/copyright" \
    "$qemu_dir.partial/"
  rm -rf "$scratch"
  rm -rf "$qemu_dir"
  mv "$qemu_dir.partial" "$qemu_dir"
fi
flock -u 8
qemu="$qemu_dir/qemu-aarch64"

rm -rf "$out.partial"
mkdir -p "$out.partial"
work="$out.partial"

# 2. The Debian arm64 userland, extracted without running anything from it. Merged /usr
# (as on Pi OS) by three symlinks made first: the ELF interpreter is /lib/ld-linux-aarch64.so.1
# whichever half of the tree a package puts it in.
log "$suite arm64 userland: ${packages[*]}"
list="$(IFS=,; echo "${packages[*]}")"
mmdebstrap --quiet --mode=auto --variant=extract --architectures=arm64 --include="$list" \
  --setup-hook='mkdir -p "$1/usr/bin" "$1/usr/lib" "$1/usr/sbin" && ln -s usr/bin "$1/bin" && ln -s usr/lib "$1/lib" && ln -s usr/sbin "$1/sbin"' \
  --aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Languages "none"' \
  --format=directory "$suite" "$work/root" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" \
  "deb $security $suite-security main" >&2
# mmdebstrap's placeholders for the special folders: qemu -L would prefer them to the host's
# (a regular file at dev/null, a tmp on disk), so the host's are what the target sees.
rm -rf "$work/root/dev" "$work/root/tmp" "$work/root/proc" "$work/root/sys" "$work/root/run"
interpreter="$work/root/usr/bin/python$suite_python"
[ -x "$interpreter" ] || { echo "aarch64-userland: $suite has no python$suite_python" >&2; exit 1; }

# 3. The pinned wheels for this base: CPython $suite_python on aarch64, glibc 2.$suite_glibc_minor.
mapfile -t platforms < <(wheel_platform_args aarch64)
target=(--only-binary=:all: "${platforms[@]}" --python-version "$suite_python"
  --implementation cp --abi "$suite_abi")
"$python" - "$repo/pyproject.toml" > "$work/requirements.txt" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    project = tomllib.load(handle)["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["pi"]))
PY
wheel_cache="$cache/wheels/arm64"
mkdir -p "$wheel_cache" "$work/wheels"
download() {
  "$python" -m pip download --quiet --disable-pip-version-check "${target[@]}" \
    --constraint "$repo/image-build/constraints.txt" --requirement "$work/requirements.txt" "$@"
}
if ! download --no-index --find-links "$wheel_cache" --dest "$work/wheels" >/dev/null 2>&1; then
  log "downloading the pinned aarch64 wheels ($suite_abi) into $wheel_cache"
  # The machine's pip config may name extra local indexes; their "ignored" notes are noise.
  download --dest "$wheel_cache" 2>&1 | grep -v "^WARNING: Location .* is ignored" >&2 || true
  download --no-index --find-links "$wheel_cache" --dest "$work/wheels" >&2
fi
"$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
  "${target[@]}" --target "$work/site" "$work/wheels/"*.whl >&2

# 4. picamera2's own code and its pure-Python helpers, by version and sha256.
mkdir -p "$work/camera-dl"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  --requirement "$camera_pins" --dest "$work/camera-dl" 2>&1 |
  grep -v "^WARNING: Location .* is ignored" >&2 || true
"$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile \
  "${target[@]}" --target "$work/camera" "$work/camera-dl/"*.whl >&2
"$python" - "$work/camera-dl" "$work/camera" <<'PY'
import sys
import tarfile
from pathlib import Path

downloads, camera = Path(sys.argv[1]), Path(sys.argv[2])
(sdist,) = downloads.glob("pidng-*.tar.gz")
prefix = sdist.name.removesuffix(".tar.gz") + "/src/"
with tarfile.open(sdist) as archive:
    members = [m for m in archive.getmembers() if m.name.startswith(prefix + "pidng/")]
    for member in members:
        member.name = member.name.removeprefix(prefix)
    archive.extractall(camera, members=members, filter="data")
PY
rm -rf "$work/camera-dl"

# 5. What the tests read.
"$python" - "$work" "$out" "$suite" "$suite_python" "$qemu" "${packages[@]}" <<'PY'
import json
import subprocess
import sys
from pathlib import Path

work, out, suite, python, qemu, *packages = sys.argv[1:]
version = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=True)
env = {
    "suite": suite,
    "python_version": python,
    "qemu": qemu,
    "qemu_version": version.stdout.splitlines()[0],
    "root": f"{out}/root",
    "python": f"{out}/root/usr/bin/python{python}",
    "site": f"{out}/site",
    "camera": f"{out}/camera",
    "debian_packages": packages,
    "wheels": sorted(p.name for p in Path(work, "wheels").glob("*.whl")),
}
Path(work, "env.json").write_text(json.dumps(env, indent=2) + "\n", encoding="utf-8")
PY
rm -rf "$work/wheels"  # installed in site/; the wheel cache keeps the files
touch "$work/complete"
mv "$work" "$out"
# Keep this tree and the one before it (another checkout may still use that one).
find "$base" -maxdepth 1 -type d -name "$suite-*" -printf '%T@ %p\n' | sort -rn | tail -n +3 |
  cut -d' ' -f2- | while read -r old; do rm -rf "$old"; done
log "$suite ready: $out"
echo "$out/env.json"
