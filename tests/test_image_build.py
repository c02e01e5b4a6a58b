"""The image recipe (image-build/), proven on the CI smoke build.

`image-build/build-rootfs.sh --target amd64` runs the same mmdebstrap recipe and the same
customize hooks as the Raspberry Pi image, on Debian 12 amd64. These tests build that root
filesystem once per session (or reuse the one built from identical inputs, cached under
~/.cache/appliance/image-build/) and then check the result by reading its files and by
running its own programs: `systemd-analyze verify/security --root=`, `systemctl --root=`,
`nft` in a private network namespace, `cupsd -t` and `appliance doctor` inside the root
(image-build/lib/in-rootfs.sh: private mount/PID namespaces, root read-only, so nothing is
written to the cached tree and no mount can outlive a test).

When the build host can make int8 models (ai-edge-quantizer installed, the shared portraits
present), the smoke build ships them: `appliance models build` runs once on four of
../shared/data/portraits (cached like the tree, ~25 s), and build-rootfs.sh gets
`--int8-from`; the tests check the files and doctor's variant rows inside the image.
`prepare-payload.sh --int8-from` itself is checked at the payload level: exactly the
manifest's files, and a refusal for an altered file or a manifest of other float models.

The slow tier (`--run-slow`) boots the same recipe plus Debian's kernel under
qemu-system-x86_64 and checks, from outside the VM, that appliance.service reached READY,
that /healthz answers over TLS on a port forwarded to 127.0.0.1, and that the workspace is
a tmpfs and no swap is active.

The tree's tests skip only when the build cannot run here: no mmdebstrap, or not root; the
int8 ones also without ai-edge-quantizer or the shared portraits.
"""

from __future__ import annotations

import configparser
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_PORTRAITS

from appliance.config import default_cache_dir
from appliance.inference.registry import model_files
from appliance.inference.variants import MANIFEST_NAME

ROOT = Path(__file__).resolve().parents[1]
IMAGE_BUILD = ROOT / "image-build"
SYSTEMD_DIR = ROOT / "systemd"
IN_ROOTFS = IMAGE_BUILD / "lib" / "in-rootfs.sh"
VENV_BIN = "/opt/appliance/venv/bin"
CONFIG = "/etc/appliance/appliance.toml"
MAX_EXPOSURE = 1.5
WEB_PORTS = {8080, 8443}
# The studio LAN as the firewall must see it: RFC 1918, IPv4 link-local, IPv6 ULA and
# link-local.
LAN = [
    ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
]
# Everything the smoke rootfs is made from; a change to any of these means a new build.
INPUTS = ("image-build", "systemd", "appliance", "pyproject.toml", "README.md", "docs")
# The int8 models the smoke build ships: `appliance models build` on these portraits (two
# calibrate, two are held out; ~25 s on one thread). What they are made from: the sources,
# the portraits, and the packages that quantize and run them.
INT8_PORTRAITS = "hivision-test[0-3].jpg"
INT8_INPUTS = ("appliance", "pyproject.toml")
INT8_PACKAGES = ("ai-edge-quantizer", "ai-edge-litert", "numpy", "opencv-python-headless")

# The smoke build's base: bookworm (Python 3.11) by default; APPLIANCE_SMOKE_SUITE=trixie runs
# this module on Debian 13 (Python 3.13) instead.
SMOKE_SUITE = os.environ.get("APPLIANCE_SMOKE_SUITE", "bookworm")
SMOKE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}[SMOKE_SUITE]
ANALYZE = shutil.which("systemd-analyze")
SYSTEMCTL = shutil.which("systemctl")


def _build_skip_reason() -> str | None:
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap not installed (apt-get install mmdebstrap)"
    if os.geteuid() != 0:
        return "needs root: mmdebstrap root mode, chroot and namespaces"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    return None


def _int8_skip_reason() -> str | None:
    if importlib.util.find_spec("ai_edge_quantizer") is None:
        return "ai-edge-quantizer is not installed: pip install 'appliance[build]'"
    if len(sorted(SHARED_PORTRAITS.glob(INT8_PORTRAITS))) < 4:
        return f"{SHARED_PORTRAITS} ({INT8_PORTRAITS}) is not present on this machine"
    return None


# The first test also waits for the builds: ~75-140 s here, more on a slow mirror. (The
# tree's fixtures skip where the build cannot run; the payload tests need no root.)
pytestmark = pytest.mark.timeout(1500)


# --- building (cached per content hash of the inputs) --------------------------------------


@dataclass(frozen=True)
class BuiltRoot:
    path: Path
    build_seconds: float | None  # None: reused from the cache
    int8: Path | None = None  # the models dir its int8 models came from (--int8-from)


def inputs_digest(variant: str, inputs: Sequence[str] = INPUTS) -> str:
    digest = hashlib.sha256(variant.encode())
    for top in inputs:
        base = ROOT / top
        paths = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for path in paths:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
            digest.update(b"x" if os.access(path, os.X_OK) else b"-")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def cached_build(kind: str, digest: str, make: Callable[[Path], None]) -> tuple[Path, float | None]:
    """`<cache>/image-build/<kind>-<digest>/`, made by `make(dir)` unless a complete one is
    there (then None seconds); only the newest build of each kind is kept."""
    cache = default_cache_dir() / "image-build"
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / f"{kind}-{digest}"
    with (cache / f"{kind}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "complete").is_file():
            return final, None
        for old in cache.iterdir():  # earlier builds of this kind (and any half-built one)
            if re.fullmatch(rf"{re.escape(kind)}-[0-9a-f]{{20}}(\.partial)?", old.name):
                shutil.rmtree(old)
        partial = cache / f"{kind}-{digest}.partial"
        partial.mkdir()
        started = time.monotonic()
        make(partial)
        seconds = time.monotonic() - started
        (partial / "complete").write_text(f"{seconds:.1f}\n", encoding="utf-8")
        partial.rename(final)
        return final, seconds


def build_rootfs(variant: str, args: list[str], extra: str = "") -> BuiltRoot:
    """Build (or reuse) the rootfs for one variant; `extra` names inputs outside the tree
    (the int8 build's manifest) that the args bring in."""

    def make(partial: Path) -> None:
        result = subprocess.run(
            [str(IMAGE_BUILD / "build-rootfs.sh"), *args, "--out", str(partial / "rootfs")],
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )
        (partial / "build.log").write_text(result.stdout + result.stderr, encoding="utf-8")
        assert result.returncode == 0, (
            f"build-rootfs.sh {' '.join(args)} failed ({partial / 'build.log'}):\n"
            + "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        )

    directory, seconds = cached_build(variant, inputs_digest(variant + extra), make)
    return BuiltRoot(directory / "rootfs", seconds)


def int8_inputs_digest() -> str:
    """What `appliance models build` makes its bytes from: sources, portraits, packages."""
    seed = hashlib.sha256(f"int8-models:{INT8_PORTRAITS}".encode())
    for package in INT8_PACKAGES:
        try:
            seed.update(f"{package}=={importlib.metadata.version(package)};".encode())
        except importlib.metadata.PackageNotFoundError:
            seed.update(f"{package} missing;".encode())
    for portrait in sorted(SHARED_PORTRAITS.glob(INT8_PORTRAITS)):
        seed.update(portrait.name.encode() + hashlib.sha256(portrait.read_bytes()).digest())
    return inputs_digest(seed.hexdigest(), INT8_INPUTS)


def build_int8_models(models_dir: Path) -> tuple[Path, float | None]:
    """A models directory where `appliance models build --portraits` ran (cached): the
    pinned float models, the int8 models and the manifest, as on a build host."""

    def make(partial: Path) -> None:
        models = partial / "models"
        models.mkdir()
        for pinned in model_files():  # the pinned files only, not whatever else is there
            shutil.copy2(models_dir / pinned.name, models / pinned.name)
        config = partial / "build.toml"
        # One thread: the same bytes every time (and the other core stays free).
        config.write_text(
            f"[inference]\nmodels_dir = {json.dumps(str(models))}\nnum_threads = 1\n",
            encoding="utf-8",
        )
        command = [
            *(sys.executable, "-m", "appliance.cli", "--config", str(config)),
            *("models", "build", "--portraits", str(SHARED_PORTRAITS)),
            *("--glob", INT8_PORTRAITS),
        ]
        result = run(command, timeout=900)
        (partial / "build.log").write_text(result.stdout + result.stderr, encoding="utf-8")
        assert result.returncode == 0, f"appliance models build failed:\n{result.stderr[-3000:]}"

    directory, seconds = cached_build("int8-models", int8_inputs_digest(), make)
    return directory / "models", seconds


@pytest.fixture(scope="session")
def int8_source(models_dir: Path) -> Path | None:
    """The cached int8 build, or None where it cannot be made here."""
    if _int8_skip_reason() is not None:
        return None
    models, seconds = build_int8_models(models_dir)
    how = f"built in {seconds:.0f} s" if seconds is not None else "reused"
    print(f"\nint8 models {models}: {how}")
    return models


@pytest.fixture
def int8_models(int8_source: Path | None) -> Path:
    if int8_source is None:
        pytest.skip(str(_int8_skip_reason()))
    return int8_source


@pytest.fixture(scope="session")
def built(int8_source: Path | None) -> BuiltRoot:
    if _build_skip_reason() is not None:
        pytest.skip(str(_build_skip_reason()))
    suite = SMOKE_SUITE
    args, extra = ["--target", "amd64", "--suite", suite], ""
    if int8_source is not None:  # ship the int8 models: the tree changes when they do
        args += ["--int8-from", str(int8_source)]
        extra = "+int8:" + hashlib.sha256((int8_source / MANIFEST_NAME).read_bytes()).hexdigest()
    result = build_rootfs("amd64" if suite == "bookworm" else f"amd64-{suite}", args, extra)
    how = f"built in {result.build_seconds:.0f} s" if result.build_seconds else "reused"
    print(f"\nsmoke rootfs {result.path}: {how}" + (" (with int8 models)" if extra else ""))
    return BuiltRoot(result.path, result.build_seconds, int8_source)


@pytest.fixture(scope="session")
def rootfs(built: BuiltRoot) -> Path:
    return built.path


# --- helpers ---------------------------------------------------------------------------------


def run(
    args: list[str], timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, input=stdin
    )


def in_rootfs(rootfs: Path, *command: str, net: bool = False) -> subprocess.CompletedProcess[str]:
    return run([str(IN_ROOTFS), *(["--net"] if net else []), str(rootfs), *command])


def inside(rootfs: Path, path: str) -> Path:
    return rootfs / path.lstrip("/")


def systemctl_state(rootfs: Path, unit: str) -> str:
    assert SYSTEMCTL is not None
    return run([SYSTEMCTL, f"--root={rootfs}", "is-enabled", unit]).stdout.strip()


def dpkg_installed(rootfs: Path) -> set[str]:
    installed = set()
    for stanza in inside(rootfs, "/var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Status") == "install ok installed":
            installed.add(fields["Package"])
    return installed


def cups_directives(path: Path) -> list[tuple[str, str]]:
    """Top-level (not inside <...> blocks) directives of a CUPS config file, in order."""
    found, depth = [], 0
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("</"):
            depth -= 1
        elif line.startswith("<"):
            depth += 1
        elif line and not line.startswith("#") and depth == 0:
            key, _, value = line.partition(" ")
            found.append((key.lower(), value.strip()))
    return found


def unit_values(path: Path, section: str, key: str) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return [parser.get(section, key)] if parser.has_option(section, key) else []


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the units: verify, security, installed and enabled -----------------------------------


IMAGE_UNITS = [
    "etc/systemd/system/appliance.service",
    "etc/systemd/system/appliance-firstboot.service",
    "etc/systemd/system/run-appliance.mount",
    "etc/systemd/system/tmp.mount",
    "usr/lib/systemd/system/cups.service",
    "usr/lib/systemd/system/nftables.service",
    "usr/lib/systemd/system/ssh.service",
]


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", IMAGE_UNITS, ids=lambda u: Path(u).name)
def test_units_verify_clean_in_the_image(rootfs: Path, unit: str) -> None:
    """Every unit resolves inside the image: ExecStart= binaries, dependencies, drop-ins."""
    assert ANALYZE is not None
    path = rootfs / unit
    assert path.is_file(), f"{unit} is not in the image"
    result = run(
        [ANALYZE, "verify", "--man=no", f"--root={rootfs}", "--recursive-errors=yes", str(path)]
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"verify {unit}:\n{output}"


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["appliance.service", "appliance-firstboot.service"])
def test_exposure_in_the_image_at_most_1_5(rootfs: Path, unit: str) -> None:
    assert ANALYZE is not None
    threshold = round(MAX_EXPOSURE * 10)  # security's --threshold is on the 0-100 scale
    path = rootfs / "etc/systemd/system" / unit
    result = run(
        [
            ANALYZE,
            "security",
            "--offline=true",
            f"--root={rootfs}",
            f"--threshold={threshold}",
            str(path),
        ]
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    score = float(match.group(1))
    print(f"\n{unit} in the image: exposure {score}")
    assert score <= MAX_EXPOSURE
    assert result.returncode == 0, f"--threshold={threshold} rejected exposure {score}"


def systemd_readme_rows() -> list[tuple[str, str, str]]:
    """(source, install column, then column) for each row of systemd/README.md's table."""
    rows = []
    for line in (SYSTEMD_DIR / "README.md").read_text().splitlines():
        match = re.match(r"^\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|$", line)
        if match:
            rows.append((match.group(1), match.group(2), match.group(3)))
    return rows


def test_systemd_files_installed_where_systemd_readme_says(rootfs: Path) -> None:
    """Each row of systemd/README.md's install table holds in the image, byte for byte."""
    rows = systemd_readme_rows()
    assert len(rows) >= 10, "systemd/README.md's install table was not found"
    checked = 0
    for source, where, then in rows:
        path = re.search(r"`(/[^`]+)`", where)
        assert path, f"no install path in row for {source}"
        target = path.group(1)
        if target.endswith("/"):
            target += Path(source).name
        installed = inside(rootfs, target)
        if "Jetson" in then:
            assert not installed.exists(), f"{target}: Jetson-only, but in the Pi/amd64 image"
            continue
        if where.startswith("merged into"):
            continue  # the CUPS merges: test_cups_is_private
        assert installed.is_file(), f"{source} not installed at {target}"
        assert installed.read_bytes() == (SYSTEMD_DIR / source).read_bytes(), (
            f"{target} differs from systemd/{source}"
        )
        if "mode 0755" in where:
            assert installed.stat().st_mode & 0o777 == 0o755, f"{target} is not mode 0755"
        for unit in re.findall(r"systemctl enable (\S+?)`", then):
            assert systemctl_state(rootfs, unit) == "enabled", f"{unit} is not enabled"
        checked += 1
    assert checked >= 9


@pytest.mark.skipif(SYSTEMCTL is None, reason="systemctl not installed")
@pytest.mark.parametrize(
    ("unit", "state"),
    [
        ("appliance.service", "enabled"),
        ("appliance-firstboot.service", "enabled"),
        ("run-appliance.mount", "enabled"),
        ("tmp.mount", "enabled"),
        ("nftables.service", "enabled"),
        ("systemd-networkd.service", "enabled"),
        ("cups.service", "enabled"),
        ("ssh.service", "disabled"),
        ("ssh.socket", "disabled"),
        ("dphys-swapfile.service", "masked"),
    ],
)
def test_unit_state_in_the_image(rootfs: Path, unit: str, state: str) -> None:
    assert systemctl_state(rootfs, unit) == state


def test_appliance_wanted_by_multi_user(rootfs: Path) -> None:
    link = inside(rootfs, "/etc/systemd/system/multi-user.target.wants/appliance.service")
    assert link.is_symlink()
    assert os.readlink(link) == "/etc/systemd/system/appliance.service"


# --- invariant 1 at the OS level: RAM only, no swap, volatile logs ---------------------------


def fstab(rootfs: Path) -> dict[str, tuple[str, str, str]]:
    """mount point -> (what, type, options) from the image's /etc/fstab."""
    entries = {}
    for line in inside(rootfs, "/etc/fstab").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            assert len(fields) >= 4, f"short fstab line: {line}"
            entries[fields[1]] = (fields[0], fields[2], fields[3])
    return entries


def test_writable_places_that_could_see_photos_are_tmpfs(rootfs: Path) -> None:
    mounts = fstab(rootfs)
    assert mounts["/"][1] == "ext4"
    for where in ("/var/tmp", "/var/spool/cups", "/var/cache/cups"):
        assert mounts.get(where, ("", "missing", ""))[1] == "tmpfs", f"{where}: no tmpfs in fstab"
    tmp = inside(rootfs, "/etc/systemd/system/tmp.mount")
    assert unit_values(tmp, "Mount", "What") == ["tmpfs"] and unit_values(
        tmp, "Mount", "Where"
    ) == ["/tmp"]
    workspace = inside(rootfs, "/etc/systemd/system/run-appliance.mount")
    assert unit_values(workspace, "Mount", "Type") == ["tmpfs"]
    assert unit_values(workspace, "Mount", "Where") == ["/run/appliance"]
    config = tomllib.loads(inside(rootfs, CONFIG).read_text())
    assert config["session"]["workspace_dir"].startswith("/run/appliance/")
    # CUPS's spool: /run (systemd's tmpfs), not the card.
    spool = dict(cups_directives(inside(rootfs, "/etc/cups/cups-files.conf")))["requestroot"]
    assert spool.startswith("/run/")


def test_no_swap_anywhere(rootfs: Path) -> None:
    assert all(kind != "swap" for _, kind, _ in fstab(rootfs).values())
    assert not inside(rootfs, "/var/swap").exists()
    assert os.readlink(inside(rootfs, "/etc/systemd/system/dphys-swapfile.service")) == "/dev/null"
    units = [p.name for p in inside(rootfs, "/etc/systemd/system").rglob("*.swap")]
    assert units == [], f"swap units in the image: {units}"


def test_journal_is_volatile_and_nothing_copies_it(rootfs: Path) -> None:
    """The effective journald setting (main file, then drop-ins by name) is volatile."""
    files = [inside(rootfs, "/etc/systemd/journald.conf")]
    dropins: dict[str, Path] = {}
    for directory in ("/usr/lib/systemd/journald.conf.d", "/etc/systemd/journald.conf.d"):
        for path in sorted(inside(rootfs, directory).glob("*.conf")):
            dropins[path.name] = path  # /etc overrides /usr/lib with the same name
    files += [dropins[name] for name in sorted(dropins)]
    storage = forward = None
    for path in files:
        for line in path.read_text().splitlines():
            key, _, value = line.strip().partition("=")
            if key == "Storage":
                storage = value
            if key == "ForwardToSyslog":
                forward = value
    assert storage == "volatile"
    assert forward == "no"
    assert not inside(rootfs, "/var/log/journal").exists()
    assert "rsyslog" not in dpkg_installed(rootfs)


def test_no_core_dumps_system_wide(rootfs: Path) -> None:
    manager = inside(rootfs, "/etc/systemd/system.conf.d/appliance.conf")
    assert unit_values(manager, "Manager", "DefaultLimitCORE") == ["0"]
    sysctl = inside(rootfs, "/etc/sysctl.d/60-appliance.conf").read_text()
    assert re.search(r"^fs\.suid_dumpable\s*=\s*0$", sysctl, re.M)


# --- CUPS ----------------------------------------------------------------------------------


def test_cups_is_private(rootfs: Path) -> None:
    cupsd = cups_directives(inside(rootfs, "/etc/cups/cupsd.conf"))
    settings: dict[str, list[str]] = {}
    for key, value in cupsd:
        settings.setdefault(key, []).append(value)
    assert settings["preservejobfiles"] == ["No"]
    assert settings["preservejobhistory"] == ["No"]
    assert settings["browsing"] == ["No"]
    assert settings["pagelogformat"] == [""]
    assert sorted(settings["listen"]) == ["/run/cups/cups.sock", "localhost:631"]
    assert "port" not in settings
    files = dict(cups_directives(inside(rootfs, "/etc/cups/cups-files.conf")))
    assert files["requestroot"] == "/run/cups/spool"
    assert files["errorlog"] == files["accesslog"] == files["pagelog"] == "syslog"
    packages = dpkg_installed(rootfs)
    assert {"cups-daemon", "printer-driver-gutenprint"} <= packages
    # Nothing that advertises or discovers printers on the LAN.
    assert not {"cups-browsed", "avahi-daemon"} & packages
    assert list(inside(rootfs, "/usr/lib/cups/driver").glob("gutenprint*")), "no Gutenprint driver"
    # cupsd itself accepts the merged files.
    result = in_rootfs(rootfs, "cupsd", "-t")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"/etc/cups/cupsd.conf" is OK' in result.stdout + result.stderr


# --- firewall --------------------------------------------------------------------------------


def _addresses(expr: dict[str, object]) -> list[str]:
    right = expr["right"]
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    out = []
    for item in items:
        if isinstance(item, dict) and "prefix" in item:
            out.append(f"{item['prefix']['addr']}/{item['prefix']['len']}")
        else:
            out.append(str(item))
    return out


def _ports(expr: dict[str, object]) -> set[int]:
    right = expr["right"]
    items = right["set"] if isinstance(right, dict) and "set" in right else [right]
    return {int(p) for p in items}


def test_firewall_lets_in_only_the_web_ports_from_the_lan(rootfs: Path) -> None:
    """Load the image's ruleset in a fresh network namespace and read back what committed."""
    conf = inside(rootfs, "/etc/nftables.conf")
    assert conf.read_bytes() == (IMAGE_BUILD / "files/nftables.conf").read_bytes()
    result = in_rootfs(rootfs, "nft", "--echo", "--json", "-f", "/etc/nftables.conf", net=True)
    assert result.returncode == 0, result.stderr
    added = [item["add"] for item in json.loads(result.stdout)["nftables"] if "add" in item]
    chains = {c["chain"]["name"]: c["chain"] for c in added if "chain" in c}
    for hook in ("input", "forward", "output"):
        assert chains[hook]["hook"] == hook and chains[hook]["policy"] == "drop"
    web_ports: set[int] = set()
    for rule in (a["rule"] for a in added if "rule" in a and a["rule"]["chain"] == "input"):
        verdict = rule["expr"][-1]
        if "accept" not in verdict:
            continue
        matches = [e["match"] for e in rule["expr"] if "match" in e]
        text = json.dumps(matches)
        if ('"iif"' in text and '"lo"' in text) or '"established"' in text:
            continue
        if "nd-neighbor-solicit" in text:
            assert '"hoplimit"' in text, "neighbour discovery accepted from off-link"
            continue
        dport = [m for m in matches if m["left"].get("payload", {}).get("field") == "dport"]
        sport = [m for m in matches if m["left"].get("payload", {}).get("field") == "sport"]
        assert dport, f"input accepts without a destination port: {text}"
        ports = _ports(dport[0])
        if ports & WEB_PORTS:
            assert ports <= WEB_PORTS, f"input accepts ports {ports}"
            saddr = [m for m in matches if m["left"].get("payload", {}).get("field") == "saddr"]
            assert saddr, f"web ports open to any source: {text}"
            for net in map(ip_network, _addresses(saddr[0])):
                assert any(net.subnet_of(lan) for lan in LAN if lan.version == net.version), net
            web_ports |= ports
        else:  # DHCP replies (v4 67->68, v6 547->546) are the only other way in
            assert sport and (_ports(sport[0]), ports) in [({67}, {68}), ({547}, {546})], text
    assert web_ports == WEB_PORTS


# --- SSH off, no built-in secrets (invariant 7) --------------------------------------------


def test_ssh_off_and_no_secret_is_shared_by_every_card(rootfs: Path) -> None:
    assert list(inside(rootfs, "/etc/ssh").glob("ssh_host_*")) == []
    assert list(inside(rootfs, "/etc/ssl/private").glob("*")) == []
    assert list(inside(rootfs, "/etc/cups/ssl").glob("*")) == []
    state = inside(rootfs, "/var/lib/appliance")
    assert not state.exists() or not any(state.iterdir()), "state (secrets) shipped in the image"
    assert inside(rootfs, "/etc/machine-id").read_text().strip() in ("", "uninitialized")
    assert not inside(rootfs, "/var/lib/systemd/random-seed").exists()
    shadow = {
        line.split(":")[0]: line.split(":")[1]
        for line in inside(rootfs, "/etc/shadow").read_text().splitlines()
    }
    assert shadow["root"].startswith(("!", "*")), "root has a usable password"
    assert all(h.startswith(("!", "*")) for h in shadow.values()), "an account has a password"
    # Enabling SSH later makes this device's own host keys first.
    dropin = inside(rootfs, "/etc/systemd/system/ssh.service.d/appliance.conf").read_text()
    assert "ExecStartPre=/usr/bin/ssh-keygen -A" in dropin


# --- the appliance: user, venv, models, doctor ---------------------------------------------


def test_service_user_and_groups(rootfs: Path) -> None:
    passwd = {
        entry.split(":")[0]: entry.split(":")
        for entry in inside(rootfs, "/etc/passwd").read_text().splitlines()
    }
    groups = {
        entry.split(":")[0]: entry.split(":")
        for entry in inside(rootfs, "/etc/group").read_text().splitlines()
    }
    assert passwd["appliance"][6] == "/usr/sbin/nologin"
    assert int(passwd["appliance"][2]) < 1000
    for group in ("video", "gpio", "plugdev", "apex", "lpadmin"):
        assert group in groups, f"group {group} missing"
    assert "appliance" in groups["lpadmin"][3].split(",")


def test_venv_holds_exactly_the_pinned_wheels(rootfs: Path) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = {}
    lines = (
        pyproject["project"]["dependencies"]
        + (IMAGE_BUILD / "constraints.txt").read_text().splitlines()
    )
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[normalise(name)] = version.strip()
    script = "import json, sys; print(json.dumps([sys.version.split()[0], sys.prefix]))"
    result = in_rootfs(rootfs, f"{VENV_BIN}/python", "-I", "-c", script)
    assert result.returncode == 0, result.stderr
    version, prefix = json.loads(result.stdout)
    assert version.startswith(SMOKE_PYTHON + ".") and prefix == "/opt/appliance/venv"
    venv_site = f"/opt/appliance/venv/lib/python{SMOKE_PYTHON}/site-packages"
    dists = {}
    for info in inside(rootfs, venv_site).glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").split("-")
        dists[normalise(name)] = version
    assert dists.pop("appliance") == pyproject["project"]["version"]
    unpinned = {n: v for n, v in dists.items() if pins.get(n) != v}
    assert not unpinned, f"in the venv but not as pinned: {unpinned}"
    missing = {normalise(d.split("==")[0]) for d in pyproject["project"]["dependencies"]} - set(
        dists
    )
    assert not missing, f"pinned dependencies missing from the venv: {missing}"


@pytest.fixture(scope="session")
def doctor_rows(rootfs: Path) -> dict[str, dict[str, str]]:
    """`appliance doctor --json` inside the image (once), its rows by name."""
    result = in_rootfs(rootfs, f"{VENV_BIN}/appliance", "--config", CONFIG, "doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_appliance_doctor_in_the_image_reports_models_verified(
    doctor_rows: dict[str, dict[str, str]],
) -> None:
    rows = doctor_rows
    models = {name: row for name, row in rows.items() if name.startswith("model ")}
    assert len(models) >= 3
    for name, row in models.items():
        assert row["status"] == "ok", f"{name}: {row['detail']}"
        assert row["detail"].startswith("sha256 verified (/opt/appliance/models/"), row
    assert rows["runtime"]["status"] == "ok"
    assert rows["python"]["detail"].startswith(SMOKE_PYTHON + ".")


@pytest.mark.parametrize("unit", ["appliance.service", "appliance-firstboot.service"])
def test_unit_command_line_parses_with_the_installed_cli(rootfs: Path, unit: str) -> None:
    """ExecStart= of the installed unit is a command line the installed CLI accepts."""
    (exec_start,) = unit_values(
        inside(rootfs, f"/etc/systemd/system/{unit}"), "Service", "ExecStart"
    )
    program, *args = shlex.split(exec_start)
    assert program == f"{VENV_BIN}/appliance"
    parse = "build_parser().parse_args(sys.argv[1:])"
    script = f"import sys\nfrom appliance.cli import build_parser\n{parse}"
    result = in_rootfs(rootfs, f"{VENV_BIN}/python", "-I", "-c", script, *args)
    assert result.returncode == 0, f"{unit}: `appliance {' '.join(args)}`: {result.stderr.strip()}"


def test_shipped_config_validates(rootfs: Path) -> None:
    result = in_rootfs(rootfs, f"{VENV_BIN}/appliance", "--validate-config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    config = tomllib.loads(inside(rootfs, CONFIG).read_text())
    assert config["inference"]["models_dir"] == "/opt/appliance/models"
    assert {config["web"]["port"], config["web"]["http_port"]} == WEB_PORTS


def manifest_files(manifest: dict[str, Any]) -> dict[str, str]:
    """Every file a build manifest lists (runtime and Edge TPU int8 models), with its sha256."""
    assert manifest["models"], "the manifest lists no models"
    files = {}
    for entry in manifest["models"]:
        files[entry["file"]] = entry["sha256"]
        files[entry["integer_io_file"]] = entry["integer_io_sha256"]
    return files


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_int8_models_in_the_image_are_the_builds_read_only_like_the_float_ones(
    built: BuiltRoot,
) -> None:
    if built.int8 is None:
        pytest.skip(f"the smoke build has no int8 models: {_int8_skip_reason()}")
    source = built.int8 / MANIFEST_NAME
    manifest = json.loads(source.read_text())
    listed = manifest_files(manifest)
    assert all(name.endswith(".int8.tflite") or name.endswith(".int8-io.tflite") for name in listed)
    models = inside(built.path, "/opt/appliance/models")
    shipped = {p.name for p in models.iterdir() if ".int8" in p.name or p.name == MANIFEST_NAME}
    assert shipped == {MANIFEST_NAME, *listed}
    assert (models / MANIFEST_NAME).read_bytes() == source.read_bytes()
    for name, digest in listed.items():
        assert sha256_of(models / name) == digest, f"{name} in the image differs from its manifest"
    reference = (models / "face_landmark.tflite").stat()  # a float model, as fetched
    assert reference.st_mode & 0o022 == 0
    for name in shipped:
        info = (models / name).stat()
        assert (info.st_uid, info.st_gid) == (reference.st_uid, reference.st_gid) == (0, 0), name
        assert info.st_mode == reference.st_mode, f"{name}: mode {info.st_mode:o}"


def test_doctor_in_the_image_reports_the_variants_the_manifest_allows(
    built: BuiltRoot, doctor_rows: dict[str, dict[str, str]]
) -> None:
    """Per model the pipeline loads: int8 where the gate passed (or float with the timings
    that say int8 is slower on this CPU), float with the gate's numbers where it failed."""
    if built.int8 is None:
        pytest.skip(f"the smoke build has no int8 models: {_int8_skip_reason()}")
    manifest = json.loads((built.int8 / MANIFEST_NAME).read_text())
    variants = {name: row for name, row in doctor_rows.items() if name.startswith("variant ")}
    assert len(variants) == 4, sorted(variants)
    for entry in manifest["models"]:
        row = variants.pop(f"variant {entry['name']}", None)
        if row is None:
            continue  # built, but not a model the pipeline loads (the landscape segmenter)
        detail = row["detail"]
        print(f"\n{entry['name']}: {detail}")
        if entry["passed"]:
            assert "int8 passed the accuracy gate" in detail, detail
            assert "does not load" not in detail, detail
            assert detail.startswith("int8: ") or "but slower here" in detail, detail
        else:
            assert detail.startswith("float: int8 failed the accuracy gate"), detail
            assert "FAILED by" in detail
    assert not variants, f"variant rows without a manifest entry: {variants}"


def test_the_phones_cipher_library_is_in_the_image_verified(rootfs: Path) -> None:
    """The customer's download page decrypts with @noble/ciphers (docs/customer-download.md):
    fetched from the payload's pinned npm tarball into /opt/appliance/js, root-owned."""
    from appliance.web.vendor_js import NOBLE_CIPHERS, load_files

    directory = inside(rootfs, "/opt/appliance/js")
    assert set(load_files(directory)) == set(NOBLE_CIPHERS.files)  # every sha256 checked
    for file in (directory / NOBLE_CIPHERS.directory_name).iterdir():
        info = file.stat()
        assert info.st_uid == 0 and not info.st_mode & 0o022, file


def test_build_left_nothing_behind(rootfs: Path) -> None:
    assert not inside(rootfs, "/var/tmp/appliance-build").exists()
    assert list(inside(rootfs, "/var/cache/apt/archives").glob("*.deb")) == []
    assert not inside(rootfs, "/opt/appliance/venv/bin/pip").exists()


# --- the payload: prepare-payload.sh --int8-from ----------------------------------------------


def prepare_payload(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(IMAGE_BUILD / "prepare-payload.sh"), "--arch", "amd64", "--out", str(out)]
    return run([*command, *extra], timeout=900)


def payload_files(payload: Path) -> set[str]:
    return {str(p.relative_to(payload)) for p in payload.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def int8_payload(int8_source: Path | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if int8_source is None:
        pytest.skip(str(_int8_skip_reason()))
    payload = tmp_path_factory.mktemp("payload") / "int8"
    result = prepare_payload(payload, "--int8-from", str(int8_source))
    assert result.returncode == 0, result.stderr
    assert "int8: 10 files of 5 models, sha256 verified" in result.stderr, result.stderr
    return payload


def test_payload_holds_exactly_the_manifests_int8_files(
    int8_payload: Path, int8_models: Path
) -> None:
    int8 = int8_payload / "models" / "int8"
    manifest = json.loads((int8_models / MANIFEST_NAME).read_text())
    listed = manifest_files(manifest)
    assert {p.name for p in int8.iterdir()} == {MANIFEST_NAME, *listed}
    assert len(listed) == 2 * len(manifest["models"])  # runtime + Edge TPU file per model
    assert (int8 / MANIFEST_NAME).read_bytes() == (int8_models / MANIFEST_NAME).read_bytes()
    for name, digest in listed.items():
        assert sha256_of(int8 / name) == digest, name


def test_without_int8_from_the_payload_is_as_before(int8_payload: Path, tmp_path: Path) -> None:
    """The same payload, minus models/int8/: the option adds that and changes nothing else."""
    plain = tmp_path / "plain"
    result = prepare_payload(plain)
    assert result.returncode == 0, result.stderr
    assert "[payload] int8" not in result.stderr
    with_int8 = payload_files(int8_payload)
    assert payload_files(plain) == {f for f in with_int8 if not f.startswith("models/int8/")}
    assert {f for f in payload_files(plain) if f.startswith("models/")} == {
        f"models/{pinned.wheel.filename}" for pinned in model_files()
    }


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    for entry in manifest["models"]:
        change(entry)
    path.write_text(json.dumps(manifest, indent=2))


def _other_float_models(directory: Path) -> None:
    """As if built from other float models (another MediaPipe release): each entry records
    the hash of a float model that is not the pinned one."""

    def change(entry: dict[str, Any]) -> None:
        float_bytes = bytearray((directory / str(entry["source_file"])).read_bytes())
        float_bytes[-1] ^= 0x01
        entry["source_sha256"] = hashlib.sha256(float_bytes).hexdigest()

    _edit_manifest(directory, change)


def _altered_edgetpu_file(directory: Path) -> None:
    """Edge TPU files compiled (by the stand-in compiler), then one of them altered."""
    from test_edgetpu import FAKE_COMPILER

    from appliance.inference.edgetpu_build import compile_edgetpu, edgetpu_file_name

    program = directory.parent / "edgetpu_compiler"
    program.write_text(FAKE_COMPILER)
    program.chmod(0o755)
    compile_edgetpu(directory, compiler=str(program))
    _flip_byte(directory / edgetpu_file_name("face_landmark"))


def _escaping_name(directory: Path) -> None:
    def change(entry: dict[str, Any]) -> None:
        entry["file"] = f"../{entry['file']}"

    _edit_manifest(directory, change)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            lambda d: _flip_byte(d / "face_landmark.int8.tflite"),
            r"face_landmark\.int8\.tflite has sha256 [0-9a-f]{16}…, its manifest says "
            r"[0-9a-f]{16}…: the file was altered",
            id="flipped-byte-runtime-file",
        ),
        pytest.param(
            lambda d: _flip_byte(d / "selfie_segmentation.int8-io.tflite"),
            r"selfie_segmentation\.int8-io\.tflite has sha256 [0-9a-f]{16}…, its manifest says",
            id="flipped-byte-edgetpu-file",
        ),
        pytest.param(
            _other_float_models,
            r"face_detection_full_range was built from another float model "
            r"\(face_detection_full_range_sparse\.tflite, sha256 [0-9a-f]{16}…\), not the "
            r"pinned face_detection_full_range_sparse\.tflite",
            id="manifest-of-other-float-models",
        ),
        pytest.param(
            lambda d: (d / "face_landmark.int8-io.tflite").unlink(),
            r"face_landmark\.int8-io\.tflite is in quantized-models\.json but missing",
            id="listed-file-missing",
        ),
        pytest.param(
            _escaping_name,
            r"quantized-models\.json names '\.\./face_detection_full_range_sparse\.int8\.tflite'",
            id="file-name-outside-the-directory",
        ),
        pytest.param(
            _altered_edgetpu_file,
            r"face_landmark\.int8-io_edgetpu\.tflite does not match its sha256 in "
            r"edgetpu-models\.json",
            id="altered-compiled-edgetpu-file",
        ),
        pytest.param(
            lambda d: (d / MANIFEST_NAME).unlink(),
            r"no quantized-models\.json there: run `appliance models build`",
            id="no-manifest",
        ),
    ],
)
def test_payload_refuses_int8_models_that_do_not_check_out(
    int8_models: Path, tmp_path: Path, damage: Callable[[Path], None], message: str
) -> None:
    """Refused with one clear line, before the slow steps, leaving no int8 files behind."""
    source = tmp_path / "models"
    shutil.copytree(int8_models, source)
    damage(source)
    payload = tmp_path / "payload"
    result = prepare_payload(payload, "--int8-from", str(source))
    assert result.returncode != 0
    refusal = result.stderr.strip().splitlines()[-1]
    assert refusal.startswith(f"prepare-payload: --int8-from {source}: "), result.stderr
    assert refusal.endswith("; refusing it"), refusal
    assert re.search(message, refusal), refusal
    assert "building the appliance wheel" not in result.stderr
    assert not (payload / "models" / "int8").exists()
    assert not (payload / "models" / ".int8.partial").exists()


# --- slow tier: boot it under qemu --------------------------------------------------------


QEMU = shutil.which("qemu-system-x86_64")
BOOT_TIMEOUT_S = 900


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_report(path: Path) -> dict[str, str] | None:
    text = path.read_text(errors="replace") if path.exists() else ""
    if "report=end" not in text:
        return None
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def console_tail(console: Path) -> str:
    """The daemon's own lines from the serial console (else its last lines), for messages."""
    lines = console.read_text(errors="replace").splitlines() if console.exists() else []
    daemon = [line for line in lines if "appliance[" in line or "appliance.service" in line]
    return "\n".join((daemon or lines)[-40:])


def fetch_healthz(port: int) -> tuple[int, str]:
    # The certificate is this VM's own CA (made at first boot): TLS is checked, not trust.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(f"https://127.0.0.1:{port}/healthz")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return response.status, response.read().decode("utf-8", "replace")


@pytest.fixture
def qemu_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if _build_skip_reason() is not None:
        pytest.skip(str(_build_skip_reason()))
    built_kernel = build_rootfs("amd64-kernel", ["--target", "amd64", "--with-kernel"])
    disk = tmp_path / "disk.img"
    result = run(
        [str(IMAGE_BUILD / "make-sd-image.sh"), str(built_kernel.path), str(disk)], timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield built_kernel.path, disk


@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(
    QEMU is None, reason="qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
)
def test_boot_under_qemu(qemu_disk: tuple[Path, Path], tmp_path: Path) -> None:
    rootfs, disk = qemu_disk
    assert QEMU is not None
    port = free_port()
    console, report_file = tmp_path / "console.log", tmp_path / "report.log"
    # Software emulation (TCG) on both cores: KVM is not assumed (nested KVM is not usable
    # on this workplace's machines). The journal goes to the console so that a failing
    # daemon's own words end up in the assertion message.
    command = [
        QEMU, "-machine", "q35", "-accel", "tcg,thread=multi", "-m", "2048", "-smp", "2",
        "-cpu", "max", "-display", "none", "-no-reboot",
        "-kernel", str(rootfs / "vmlinuz"), "-initrd", str(rootfs / "initrd.img"),
        "-append", "root=LABEL=rootfs ro console=ttyS0 panic=-1 "
        "systemd.journald.forward_to_console=1",
        "-drive", f"file={disk},format=raw,if=virtio",
        # restrict=on: the guest reaches nothing outside; only the forwarded port comes in.
        "-netdev", f"user,id=lan,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:8443",
        "-device", "virtio-net-pci,netdev=lan",
        "-serial", f"file:{console}", "-serial", f"file:{report_file}",
    ]  # fmt: skip
    qemu_log = tmp_path / "qemu.log"
    with qemu_log.open("wb") as log:
        vm = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        report = None
        while report is None and time.monotonic() < deadline and vm.poll() is None:
            time.sleep(0.5)  # poll; the deadline bounds the wait
            report = read_report(report_file)
        tail = console_tail(console)
        assert report is not None, (
            f"no boot report (qemu exit {vm.poll()}: {qemu_log.read_text()[-2000:]}); "
            f"console:\n{tail}"
        )
        print("\n" + "\n".join(f"{k}={v}" for k, v in report.items()))
        # Type=notify: "active/running" only after the daemon sent READY=1.
        assert report["appliance.ActiveState"] == "active", f"{report}\nconsole:\n{tail}"
        assert report["appliance.SubState"] == "running"
        assert report["appliance.NRestarts"] == "0"
        assert report["firstboot.Result"] == "success"
        assert report["workspace.mount"] == "tmpfs"
        assert report["workspace.dir"] == "tmpfs"
        assert report["tmp.fstype"] == report["var_tmp.fstype"] == "tmpfs"
        assert report["swaps"] == "0"
        assert report["journal.dir"] == "absent"
        assert report["ssh.active"] != "active"
        assert "appliance" in report["nft.tables"]
        assert report["failed"].strip() == "", f"failed units: {report['failed']}"
        status, body = None, ""
        while time.monotonic() < deadline:
            try:
                status, body = fetch_healthz(port)
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        assert status == 200, f"/healthz over TLS on 127.0.0.1:{port} did not answer"
        assert json.loads(body)["status"] == "ok", body
        print(f"/healthz: {body[:200]}")
    finally:
        vm.terminate()
        try:
            vm.wait(timeout=30)
        except subprocess.TimeoutExpired:
            vm.kill()
            vm.wait(timeout=30)
