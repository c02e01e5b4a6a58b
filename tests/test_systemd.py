"""The unit files and OS snippets in systemd/ (what each is for: systemd/README.md).

Tools: Debian 12's systemd 252 (systemd-analyze, systemd-sysusers, systemd-tmpfiles, and
/lib/systemd/systemd for the boot test) and cupsd for `cupsd -t`.

How `systemd-analyze verify` is run, and why: verify insists that ExecStart= exists, and
/opt/appliance/venv/bin/appliance does not exist on a build host. We build a throwaway root
instead: <root>/etc/systemd/system holds our files, <root>/usr/lib/systemd/system a copy of
the host's units (so sysinit.target, cups.service ... resolve), and
<root>/opt/appliance/venv/bin/appliance an executable stub. `--root=` makes verify resolve
units AND ExecStart= inside that tree, so the only thing faked is the program's presence;
every key, value, dependency and path is checked for real. `--man=no` skips man-page
lookups of Documentation= (file: links, not man pages). verify exits 0 on warnings unless
`--recursive-errors=yes`, so we pass that AND fail on any output line at all.

`security --offline=true --threshold=N`: N is on the 0-100 scale (exposure 1.5 prints as
"1.5" but compares as 15), so --threshold=15 means <= 1.5; the test also parses the
printed score, and proves the threshold can fail by re-running just below the score.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[1] / "systemd"
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")

EXEC = "/opt/appliance/venv/bin/appliance"
UNITS = ["appliance.service", "appliance-firstboot.service", "run-appliance.mount"]
JETSON = SYSTEMD_DIR / "dropins/jetson/appliance.service.d/jetson.conf"
GENERATOR = SYSTEMD_DIR / "system-generators/appliance-noswap-generator"
MAX_EXPOSURE = 1.5


# --- helpers ------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists in order; repeated keys all kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: assignment outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not an assignment: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    """Every assignment of key, with systemd's rule that an empty assignment resets the list."""
    result: list[str] = []
    for k, v in unit.get(section, []):
        if k == key:
            result = [] if v == "" else [*result, v]
    return result


def words(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> set[str]:
    return {w for v in values(unit, section, key) for w in v.split()}


def last(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str | None:
    found = values(unit, section, key)
    return found[-1] if found else None


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A root tree for --root=: host units, our units, a stub ExecStart= (see module doc)."""
    root = tmp_path / "root"
    host_units = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    stub = root / EXEC.lstrip("/")
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name in UNITS:
        shutil.copy(SYSTEMD_DIR / name, etc / name)
    return root


def add_dropin(root: Path, unit: str, dropin: Path) -> None:
    target = root / "etc/systemd/system" / f"{unit}.d"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(dropin, target / dropin.name)


def assert_verify_clean(root: Path, unit: str) -> None:
    path = root / "etc/systemd/system" / unit
    result = analyze("verify", "--man=no", f"--root={root}", "--recursive-errors=yes", str(path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"verify {unit}:\n{output}"


def exposure(root: Path, unit: str, threshold: int = 100) -> tuple[float, int, str]:
    path = root / "etc/systemd/system" / unit
    result = analyze(
        "security", "--offline=true", f"--root={root}", f"--threshold={threshold}", str(path)
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, f"no overall score in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1)), result.returncode, result.stdout


# --- verify and security -----------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_clean(unit_root: Path, unit: str) -> None:
    assert_verify_clean(unit_root, unit)


def test_verify_catches_a_bad_key(unit_root: Path) -> None:
    """The verify check itself can fail: a typo'd key and a missing ExecStart= are caught."""
    path = unit_root / "etc/systemd/system/appliance.service"
    path.write_text(path.read_text(encoding="utf-8") + "\n[Service]\nProtectSytem=strict\n")
    with pytest.raises(AssertionError, match="Unknown key"):
        assert_verify_clean(unit_root, "appliance.service")
    (unit_root / EXEC.lstrip("/")).unlink()
    with pytest.raises(AssertionError, match="not executable"):
        assert_verify_clean(unit_root, "appliance-firstboot.service")


def test_dropins_verify_clean(unit_root: Path) -> None:
    add_dropin(unit_root, "appliance.service", JETSON)
    assert_verify_clean(unit_root, "appliance.service")
    cups = unit_root / "usr/lib/systemd/system/cups.service"
    if not cups.exists():  # a stand-in so the drop-in's keys are still checked
        cups.write_text("[Service]\nExecStart=/usr/sbin/cupsd -l\n", encoding="utf-8")
    cupsd = unit_root / "usr/sbin/cupsd"
    cupsd.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(unit_root / EXEC.lstrip("/"), cupsd)
    add_dropin(unit_root, "cups.service", SYSTEMD_DIR / "cups.service.d/appliance.conf")
    assert_verify_clean(unit_root, "cups.service")


@pytest.mark.parametrize(
    ("unit", "dropin"),
    [
        ("appliance.service", None),
        ("appliance.service", JETSON),
        ("appliance-firstboot.service", None),
    ],
    ids=["appliance", "appliance+jetson", "firstboot"],
)
def test_exposure_at_most_1_5(unit_root: Path, unit: str, dropin: Path | None) -> None:
    if dropin:
        add_dropin(unit_root, unit, dropin)
    score, status, report = exposure(unit_root, unit, threshold=round(MAX_EXPOSURE * 10))
    print(f"\n{unit}{' + ' + dropin.name if dropin else ''}: exposure {score}")
    print("\n".join(line for line in report.splitlines() if "✗" in line or "Overall" in line))
    assert score <= MAX_EXPOSURE
    assert status == 0, f"--threshold={round(MAX_EXPOSURE * 10)} rejected exposure {score}"
    if score > 0:  # just below the score, the same command must fail
        _, below_status, _ = exposure(unit_root, unit, threshold=round(score * 10) - 1)
        assert below_status != 0


# --- the directives themselves ---------------------------------------------------------------


def test_appliance_service_directives() -> None:
    unit = parse_unit(SYSTEMD_DIR / "appliance.service")
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "User": "appliance",
        "Group": "appliance",
        "StateDirectory": "appliance",
        "StateDirectoryMode": "0700",
        "RuntimeDirectory": "appliance/workspace",
        "RuntimeDirectoryMode": "0700",
        "UMask": "0077",
        "LimitCORE": "0",
        "MemorySwapMax": "0",
        "MemoryMax": "768M",  # a 1 GB Pi: see the unit's comment and benchmarks/RESULTS.md
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateMounts": "yes",
        "PrivateUsers": "yes",
        "NoNewPrivileges": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": None,
        "AmbientCapabilities": None,
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "ProtectProc": "invisible",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "RestrictNamespaces": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RemoveIPC": "yes",
        "KeyringMode": "private",
        "SystemCallArchitectures": "native",
        "SystemCallErrorNumber": "EPERM",
        "IPAddressDeny": "any",
    }
    for key, value in expected.items():
        if value is None:  # must be assigned, and assigned empty
            assert any(k == key for k, _ in unit["Service"]), f"{key}= missing"
            assert values(unit, "Service", key) == [], f"{key}= must be empty"
        else:
            assert last(unit, "Service", key) == value, key
    assert last(unit, "Service", "ExecStart") == (
        f"{EXEC} run --config /etc/appliance/appliance.toml --state-dir /var/lib/appliance"
    )
    assert re.fullmatch(r"\d+s", last(unit, "Service", "WatchdogSec") or "")
    assert words(unit, "Service", "SupplementaryGroups") == {
        "video",
        "gpio",
        "plugdev",
        "apex",
        "lpadmin",
    }
    assert words(unit, "Service", "RestrictAddressFamilies") == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert words(unit, "Service", "IPAddressAllow") == {
        "localhost",
        "link-local",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    }
    assert set(values(unit, "Service", "DeviceAllow")) == {
        f"char-{name} rw"
        for name in ("video4linux", "media", "dma_heap", "gpiochip", "usb_device", "apex")
    }
    assert values(unit, "Service", "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]
    assert words(unit, "Service", "NoExecPaths") == {"/", "/var/lib/appliance"}
    assert "-/var/tmp" in values(unit, "Service", "InaccessiblePaths")
    assert "appliance-firstboot.service" in words(unit, "Unit", "Requires")
    assert "appliance-firstboot.service" in words(unit, "Unit", "After")
    assert "/run/appliance/workspace" in words(unit, "Unit", "RequiresMountsFor")


def test_firstboot_and_mount_directives() -> None:
    first = parse_unit(SYSTEMD_DIR / "appliance-firstboot.service")
    assert last(first, "Unit", "ConditionPathExists") == "!/var/lib/appliance/.initialised"
    assert "appliance.service" in words(first, "Unit", "Before")
    assert last(first, "Service", "Type") == "oneshot"
    assert last(first, "Service", "ExecStart") == f"{EXEC} firstboot --state-dir /var/lib/appliance"
    assert last(first, "Service", "User") == "appliance"
    assert last(first, "Service", "PrivateNetwork") == "yes"
    mount = parse_unit(SYSTEMD_DIR / "run-appliance.mount")
    assert last(mount, "Mount", "Where") == "/run/appliance"
    assert last(mount, "Mount", "Type") == "tmpfs"
    options = (last(mount, "Mount", "Options") or "").split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(options)
    assert any(o.startswith("size=") for o in options)
    assert "noswap" not in options, "noswap fails on < 6.4 kernels: the generator adds it"


NOT_SET = {
    "appliance.service": [
        "DynamicUser",
        "TemporaryFileSystem",
        "RootDirectory",
        "RootImage",
        "ProcSubset",
        "PrivateDevices",
        "PrivateNetwork",
        "SocketBindAllow",
        "RestrictNetworkInterfaces",
    ],
    "appliance-firstboot.service": ["DynamicUser"],
}
NOT_SET_LINE = re.compile(r"^#\s*not set:\s*(?P<names>[^:]+):\s*(?P<reason>.+)$")


@pytest.mark.parametrize("unit_name", sorted(NOT_SET))
def test_unset_directives_have_a_reason(unit_name: str) -> None:
    path = SYSTEMD_DIR / unit_name
    reasons: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = NOT_SET_LINE.match(line.strip())
        if match:
            for name in match["names"].split(","):
                reasons[name.split("=")[0].strip()] = match["reason"].strip()
    unit = parse_unit(path)
    assigned = {k for entries in unit.values() for k, _ in entries}
    for directive in NOT_SET[unit_name]:
        assert directive not in assigned, f"{directive} is set, yet listed as not set"
        assert len(reasons.get(directive, "")) >= 20, f"no '# not set: {directive}: why' line"


# --- the OS snippets ------------------------------------------------------------------------


def ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


def directives(path: Path) -> dict[str, str]:
    """Non-comment 'Directive value' lines of a CUPS snippet (Listen may repeat: joined)."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            found[key] = f"{found[key]}\n{value}" if key in found else value.strip()
    return found


def test_journald_and_coredump_keep_nothing_on_disk() -> None:
    journal = ini(SYSTEMD_DIR / "journald.conf.d/appliance.conf")
    assert journal["Journal"]["Storage"] == "volatile"
    assert journal["Journal"]["ForwardToSyslog"] == "no"
    journald = next(
        (
            p
            for p in (
                Path("/usr/lib/systemd/systemd-journald"),
                Path("/lib/systemd/systemd-journald"),
            )
            if p.exists()
        ),
        None,
    )
    if journald:  # every key must be one journald parses (its gperf table names them)
        binary = journald.read_bytes()
        for key in journal["Journal"]:
            assert f"Journal.{key}".encode() in binary, f"journald knows no {key}="
    coredump = ini(SYSTEMD_DIR / "coredump.conf.d/appliance.conf")
    assert coredump["Coredump"]["Storage"] == "none"
    assert coredump["Coredump"]["ProcessSizeMax"] == "0"
    cups_unit = parse_unit(SYSTEMD_DIR / "cups.service.d/appliance.conf")
    assert last(cups_unit, "Service", "LimitCORE") == "0"


CUPSD_ONLY = {"PreserveJobFiles", "PreserveJobHistory", "AutoPurgeJobs", "PageLogFormat", "Listen"}
FILES_ONLY = {
    "RequestRoot",
    "TempDir",
    "CacheDir",
    "ErrorLog",
    "AccessLog",
    "PageLog",
    "SystemGroup",
}


def test_cups_snippets_privacy_settings() -> None:
    cupsd = directives(SYSTEMD_DIR / "cups/cupsd.conf.appliance")
    files = directives(SYSTEMD_DIR / "cups/cups-files.conf.appliance")
    assert cupsd["PreserveJobFiles"] == "No"
    assert cupsd["PreserveJobHistory"] == "No"
    assert cupsd["PageLogFormat"] == ""
    assert all(not line.startswith("*") for line in cupsd.get("Listen", "").splitlines())
    assert files["RequestRoot"].startswith("/run/"), "the spool must be on tmpfs"
    assert files.get("TempDir", "/run/").startswith("/run/")
    for log in ("ErrorLog", "AccessLog", "PageLog"):
        assert files[log] == "syslog", f"{log} would write to /var/log/cups on the card"
    assert not (set(cupsd) & FILES_ONLY), "cups-files.conf directives in the cupsd.conf snippet"
    assert not (set(files) & CUPSD_ONLY), "cupsd.conf directives in the cups-files.conf snippet"


def merge_cups(base: str, snippet: Path) -> str:
    """What the image build does: replace each directive's line (or append); add Listen lines."""
    lines = base.splitlines()
    for raw in snippet.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split(None, 1)[0]
        hits = [i for i, old in enumerate(lines) if old.strip().split(None, 1)[:1] == [key]]
        if key == "Listen" or not hits:
            if line not in (old.strip() for old in lines):
                lines.append(line)
            continue
        lines[hits[0]] = line
        for i in reversed(hits[1:]):
            del lines[i]
    return "\n".join(lines) + "\n"


def stock_cups_conf(name: str) -> str:
    for candidate in (Path(f"/usr/share/cups/{name}.default"), Path(f"/etc/cups/{name}")):
        if candidate.exists():
            return candidate.read_text(encoding="utf-8")
    pytest.skip(f"no stock {name} (cups-daemon not installed)")


@pytest.mark.skipif(
    shutil.which("cupsd") is None and not Path("/usr/sbin/cupsd").exists(),
    reason="cupsd not installed: cannot run `cupsd -t`",
)
def test_cupsd_accepts_merged_config(tmp_path: Path) -> None:
    cupsd_bin = shutil.which("cupsd") or "/usr/sbin/cupsd"
    conf = tmp_path / "cupsd.conf"
    files = tmp_path / "cups-files.conf"
    conf.write_text(
        merge_cups(stock_cups_conf("cupsd.conf"), SYSTEMD_DIR / "cups/cupsd.conf.appliance")
    )
    files.write_text(
        merge_cups(
            stock_cups_conf("cups-files.conf"), SYSTEMD_DIR / "cups/cups-files.conf.appliance"
        )
    )

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [cupsd_bin, "-t", "-c", str(conf), "-s", str(files)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    files.write_text(files.read_text() + "NoSuchDirective 1\n")  # cupsd -t really checks
    assert check().returncode != 0


def test_sysusers_creates_user_and_every_group(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    assert sysusers, "systemd-sysusers missing although systemd-analyze is installed"
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):
        (etc / name).write_text("")  # an empty base: every group must come from our snippet
    subprocess.run(
        [sysusers, f"--root={tmp_path}", str(SYSTEMD_DIR / "sysusers.d/appliance.conf")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = {
        line.split(":")[0]: line.split(":") for line in (etc / "passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":") for line in (etc / "group").read_text().splitlines()
    }
    assert passwd["appliance"][6] == "/usr/sbin/nologin"
    assert 0 < int(passwd["appliance"][2]) < 1000, "a system user"
    unit = parse_unit(SYSTEMD_DIR / "appliance.service")
    missing = words(unit, "Service", "SupplementaryGroups") - set(groups)
    assert not missing, f"SupplementaryGroups= names groups nobody creates: {missing}"
    assert "appliance" in groups["lpadmin"][3].split(","), "cupsd checks lpadmin in /etc/group"


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a root:lp directory needs root")
def test_tmpfiles_creates_cups_runtime_dir(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nlp:x:7:\n")
    subprocess.run(
        [
            "systemd-tmpfiles",
            f"--root={tmp_path}",
            "--create",
            str(SYSTEMD_DIR / "tmpfiles.d/appliance.conf"),
        ],
        check=True,
        timeout=60,
    )
    made = (tmp_path / "run/cups").stat()
    assert (made.st_mode & 0o7777, made.st_uid, made.st_gid) == (0o755, 0, 7)


@pytest.mark.parametrize(
    ("release", "noswap"),
    [
        ("6.1.0-27-amd64", False),
        ("6.3.13", False),
        ("6.4.0", True),
        ("6.6.51+rpt-rpi-v8", True),
        ("6.12.25+rpt-rpi-2712", True),
        ("5.15.148-tegra", False),
        ("7.0.1", True),
    ],
)
def test_noswap_generator(tmp_path: Path, unit_root: Path, release: str, noswap: bool) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "uname").write_text(f"#!/bin/sh\necho '{release}'\n")
    (fake_bin / "uname").chmod(0o755)
    out = tmp_path / "gen"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    subprocess.run([str(GENERATOR), str(out), str(out), str(out)], env=env, check=True, timeout=30)
    dropin = out / "run-appliance.mount.d/50-noswap.conf"
    assert dropin.exists() == noswap
    if noswap:
        base = last(parse_unit(SYSTEMD_DIR / "run-appliance.mount"), "Mount", "Options")
        assert last(parse_unit(dropin), "Mount", "Options") == f"{base},noswap"
        add_dropin(unit_root, "run-appliance.mount", dropin)
        assert_verify_clean(unit_root, "run-appliance.mount")


# --- boot the units under a real systemd (root only) --------------------------------------

PROBE = r'''#!/opt/appliance/venv/bin/python
"""Stand-in for `appliance run|firstboot`: reports what the sandbox allows, as JSON."""
import ctypes, errno, json, mmap, os, resource, socket, subprocess, sys

r = {}
def t(name, fn):
    try:
        r[name] = ["ok", fn()]
    except ImportError as e:
        r[name] = ["absent", str(e)]
    except OSError as e:
        r[name] = ["errno", errno.errorcode.get(e.errno, str(e.errno))]
    except Exception as e:
        r[name] = ["error", f"{type(e).__name__}: {e}"]
def run_rc(path):
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(path, [path])
        except OSError as e:
            os._exit(100 + e.errno)
    return os.waitpid(pid, 0)[1] >> 8
def exec_in(d):
    p = os.path.join(d, "x.sh")
    with open(p, "w") as f:
        f.write("#!/bin/sh\nexit 7\n")
    os.chmod(p, 0o700)
    try:
        return run_rc(p)
    finally:
        os.unlink(p)
def statfs_type(p):
    buf = ctypes.create_string_buffer(256)
    if ctypes.CDLL(None, use_errno=True).statfs(p.encode(), buf) != 0:
        raise OSError(ctypes.get_errno(), "statfs")
    return ctypes.c_long.from_buffer(buf).value
def opener(p):
    os.close(os.open(p, os.O_RDWR))
    return "opened"
def wx():
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    return "W+X mapped"
def udp(addr):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", (addr, 9))
    return "sent"
def bind(port):
    s = socket.socket()
    s.bind(("0.0.0.0", port))
    return port
def litert():
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    models = sorted(p for p in os.listdir("/opt/appliance/models") if p.endswith(".tflite"))
    if not models:
        return "no model"
    it = Interpreter(model_path="/opt/appliance/models/" + models[0], num_threads=2)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
    return models[0]
def cups():
    if not os.path.exists("/run/cups/cups.sock"):
        return "no cupsd"
    if sys.argv[1:2] != ["run"]:
        return "daemon only"
    run = lambda *a, **k: subprocess.run(list(a), capture_output=True, timeout=30, **k)
    # the queue starts paused: submit from stdin (no file), purge it, then resume the queue
    submit = run("/usr/bin/lp", "-d", "studio", "-t", "sheet", "-", input=b"page")
    job = submit.stdout.decode().split()[3] if submit.returncode == 0 else "?"
    purge = run("/usr/bin/cancel", "-x", job)
    enable = run("/usr/sbin/cupsenable", "studio")
    return {"lp": submit.returncode, "cancel_x": purge.returncode,
            "cupsenable": enable.returncode, "errors": (purge.stderr + enable.stderr).decode()}
ws = "/run/appliance/workspace"
t("uid", os.getuid)
t("ws_mode", lambda: [oct(os.stat(ws).st_mode & 0o7777), os.stat(ws).st_uid])
t("ws_write", lambda: open(os.path.join(ws, "c"), "wb").write(b"ciphertext"))
t("ws_statfs", lambda: statfs_type(ws))
t("ws_options", lambda: [l.split(" - ")[1].split()[2] + "," + l.split()[5]
                         for l in open("/proc/self/mountinfo") if l.split()[4] == "/run/appliance"])
t("exec_ws", lambda: exec_in(ws))
t("exec_state", lambda: exec_in("/var/lib/appliance"))
t("state_write", lambda: open("/var/lib/appliance/probe", "w").write("x"))
t("exec_usr", lambda: run_rc("/usr/bin/true"))
t("proc_swaps", lambda: open("/proc/swaps").readline().split()[0])
t("proc_cpuinfo", lambda: len(open("/proc/cpuinfo").read()) > 0)
t("self_mountinfo", lambda: len(open("/proc/self/mountinfo").read()) > 0)
t("tmp_fs", lambda: statfs_type("/tmp"))
t("var_tmp", lambda: os.listdir("/var/tmp"))
t("etc_write", lambda: open("/etc/probe", "w"))
t("wx_mmap", wx)
t("core_limit", lambda: resource.getrlimit(resource.RLIMIT_CORE))
t("af_packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
t("af_netlink_uevent", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 15).close())
t("bind_8443", lambda: bind(8443))
t("udp_lan", lambda: udp("192.168.7.2"))
t("udp_wan", lambda: udp("203.0.113.2"))
t("dev_video_group", lambda: opener("/run/devtest/video_group_node"))
t("dev_not_allowed", lambda: opener("/run/devtest/misc_node"))
t("numpy", lambda: float(__import__("numpy").arange(4).sum()))
t("cv2", lambda: __import__("cv2").__version__)
t("cryptography", lambda: len(__import__("cryptography.hazmat.primitives.ciphers.aead",
    fromlist=["AESGCM"]).AESGCM(b"k" * 32).encrypt(b"n" * 12, b"x", None)))
t("litert", litert)
t("cups", cups)
print(json.dumps(r), flush=True)
if os.environ.get("NOTIFY_SOCKET"):
    a = os.environ["NOTIFY_SOCKET"]
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(
        b"READY=1", "\0" + a[1:] if a.startswith("@") else a)
    __import__("signal").pause()
'''

# Runs as PID 1's parent inside fresh pid/mount/net/uts/ipc/cgroup namespaces; everything
# it mounts stays in them. $1 = stash (units, probe, confs), $2 = output dir, $3 = systemd/.
INNER = r"""set -eu
STASH=$1 OUT=$2 REPO=$3
mount --make-rprivate /
ip link set lo up
ip addr add 192.168.7.2/32 dev lo
ip addr add 203.0.113.2/32 dev lo
mount -t cgroup2 none /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mkdir -p /run/stash /run/apptest-out /run/devtest
mount --bind "$STASH" /run/stash
mount --bind "$OUT" /run/apptest-out
R=/run/repo
mkdir -p $R /run/site /run/models
mount --bind "$REPO" $R
# bind what lives under /tmp before /tmp becomes a fresh tmpfs (as tmp.mount makes it)
mount --bind "$(cat /run/stash/site)" /run/site
if [ -s /run/stash/models ]; then mount --bind "$(cat /run/stash/models)" /run/models; fi
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs tmpfs /opt
# a venv at the real path, on this interpreter and its site-packages
SITE=/opt/appliance/venv/$(cat /run/stash/site_rel)
mkdir -p /opt/appliance/venv/bin "$SITE" /opt/appliance/models
ln -s "$(cat /run/stash/python)" /opt/appliance/venv/bin/python
echo "home = $(dirname "$(cat /run/stash/python)")" > /opt/appliance/venv/pyvenv.cfg
mount --bind /run/site "$SITE"
mount --bind /run/models /opt/appliance/models
install -m 0755 /run/stash/probe.py /opt/appliance/venv/bin/appliance
mount -t tmpfs tmpfs /var/lib
mount -t tmpfs tmpfs /var/cache
mkdir -p /run/sysroot/etc
cp /etc/passwd /etc/group /etc/shadow /etc/gshadow /run/sysroot/etc/
systemd-sysusers --root=/run/sysroot $R/sysusers.d/appliance.conf
for f in passwd group shadow gshadow; do mount --bind /run/sysroot/etc/$f /etc/$f; done
systemd-tmpfiles --create $R/tmpfiles.d/appliance.conf
mknod -m 0660 /run/devtest/video_group_node c 13 98
chgrp video /run/devtest/video_group_node
mknod -m 0666 /run/devtest/misc_node c 10 99
if [ -f /run/stash/cupsd.conf ]; then
  mount -t tmpfs tmpfs /etc/cups
  mkdir /etc/cups/ppd /etc/cups/ssl
  cp /run/stash/cupsd.conf /run/stash/cups-files.conf /etc/cups/
fi
U=/run/stash/units
sh $R/system-generators/appliance-noswap-generator $U $U $U
exec env container=apptest SYSTEMD_UNIT_PATH=$U /lib/systemd/systemd --system \
  --unit=apptest.target --log-target=console --log-level=notice --show-status=no
"""

FINISH = r"""set -u
O=/run/apptest-out
systemctl show -p ActiveState -p SubState -p Result appliance.service > $O/appliance.state
systemctl show -p Result appliance-firstboot.service > $O/firstboot.state
ls -A /run/appliance > $O/ws_running
systemctl stop appliance.service
ls -A /run/appliance > $O/ws_stopped
ls -A /run/cups/spool 2>/dev/null | grep -v '^tmp$' > $O/spool || true
"""

TEST_UNITS = {
    "apptest.target": "[Unit]\nWants=appliance.service apptest-finish.service\n",
    "apptest-finish.service": (  # PID 1 exits (container mode) once this has run
        "[Unit]\nAfter=appliance.service\nSuccessAction=exit-force\nFailureAction=exit-force\n"
        "[Service]\nType=oneshot\nExecStart=/bin/sh /run/stash/finish.sh\n"
    ),
    "appliance.service.d/test.conf": (
        "[Service]\nStandardOutput=file:/run/apptest-out/appliance.json\n"
        "StandardError=file:/run/apptest-out/appliance.err\n"
        "# test only: a major that exists on any kernel stands in for the camera's\n"
        "DeviceAllow=char-input rw\n"
    ),
    "appliance-firstboot.service.d/test.conf": (
        "[Service]\nStandardOutput=file:/run/apptest-out/firstboot.json\n"
        "StandardError=file:/run/apptest-out/firstboot.err\n"
    ),
    "apptest-cups.socket": "[Socket]\nListenStream=/run/cups/cups.sock\n",
    "apptest-cups.service": (
        "[Unit]\nRequires=apptest-cups.socket\nBefore=appliance.service\n[Service]\nType=notify\n"
        "ExecStart=/usr/sbin/cupsd -l\nStandardError=file:/run/apptest-out/cupsd.err\n"
        "ExecStartPost=/usr/sbin/lpadmin -p studio -v file:///dev/null -m raw -E\n"
        "ExecStartPost=/usr/sbin/cupsdisable studio\n"
    ),
}
STUB_TARGETS = [
    "sysinit",
    "basic",
    "sockets",
    "local-fs",
    "network",
    "multi-user",
    "shutdown",
    "umount",
    "paths",
    "timers",
    "slices",
]


def cgroup2_dir() -> Path | None:
    """Our own cgroup v2 directory, if cgroup v2 is mounted and writable."""
    mount = next(
        (
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split(" - ")[1].startswith("cgroup2 ")
        ),
        None,
    )
    own = next(
        (
            line[3:]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        ),
        None,
    )
    if mount is None or own is None:
        return None
    path = Path(mount) / own.lstrip("/")
    return path if os.access(path, os.W_OK) else None


def boot_requirements() -> str | None:
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    for tool in ("unshare", "ip", "systemctl", "systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not Path("/lib/systemd/systemd").exists():
        return "/lib/systemd/systemd not installed"
    if cgroup2_dir() is None:
        return "no writable cgroup v2 hierarchy here"
    return None


def kill_cgroup(box: Path) -> None:
    """SIGKILL everything under box (PID 1 of the namespace included), wait, remove it."""
    if (box / "cgroup.kill").exists():
        (box / "cgroup.kill").write_text("1")
    else:  # kernels before 5.14
        for procs in box.rglob("cgroup.procs"):
            for pid in procs.read_text().split():
                os.kill(int(pid), 9)
    with (box / "cgroup.events").open() as events:  # the kernel signals changes with POLLPRI
        poller = select.poll()
        poller.register(events, select.POLLPRI)
        deadline = time.monotonic() + 30
        while True:
            events.seek(0)
            if "populated 0" in events.read():
                break
            assert time.monotonic() < deadline, f"{box} still has processes"
            poller.poll(1000)
    for sub in sorted(box.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if sub.is_dir():
            sub.rmdir()
    box.rmdir()


def kernel_has_noswap() -> bool:
    match = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert match, os.uname().release
    return (int(match[1]), int(match[2])) >= (6, 4)


@pytest.mark.skipif(boot_requirements() is not None, reason=str(boot_requirements()))
def test_units_boot_under_systemd(tmp_path: Path, models_dir: Path) -> None:
    """systemd 252 as PID 1 of private namespaces starts the real units; a probe reports."""
    import sys
    import sysconfig

    stash, out = tmp_path / "stash", tmp_path / "out"
    units = stash / "units"
    units.mkdir(parents=True)
    out.mkdir()
    for name in UNITS:
        shutil.copy(SYSTEMD_DIR / name, units / name)
    for name, text in TEST_UNITS.items():
        if "cups" in name and not Path("/usr/sbin/cupsd").exists():
            continue
        (units / name).parent.mkdir(exist_ok=True)
        (units / name).write_text(text)
    if Path("/usr/sbin/cupsd").exists():
        (units / "appliance.service.d/cups.conf").write_text("[Unit]\nAfter=apptest-cups.service\n")
        (units / "apptest.target").write_text(
            TEST_UNITS["apptest.target"].replace("Wants=", "Wants=apptest-cups.service ")
        )
        (stash / "cupsd.conf").write_text(
            merge_cups(stock_cups_conf("cupsd.conf"), SYSTEMD_DIR / "cups/cupsd.conf.appliance")
        )
        (stash / "cups-files.conf").write_text(
            merge_cups(
                stock_cups_conf("cups-files.conf"), SYSTEMD_DIR / "cups/cups-files.conf.appliance"
            ).replace("ErrorLog syslog", "ErrorLog stderr")
            + "FileDevice Yes\n"
        )
    for target in STUB_TARGETS:
        (units / f"{target}.target").write_text("[Unit]\n")
    (stash / "probe.py").write_text(PROBE)
    (stash / "finish.sh").write_text(FINISH)
    (stash / "inner.sh").write_text(INNER)
    # The probe runs on a /usr interpreter (ProtectHome= hides e.g. ~/.pyenv); it gets this
    # interpreter's site-packages when the minor versions match, else libraries are "absent".
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    ours = os.path.realpath(sys.executable)
    python = ours if ours.startswith("/usr/") else shutil.which(f"python{version}", path="/usr/bin")
    if python is None:
        pytest.skip(f"no python{version} under /usr/bin for the probe")
    (stash / "python").write_text(python)
    (stash / "site").write_text(sysconfig.get_paths()["purelib"])
    (stash / "site_rel").write_text(
        f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    )
    (stash / "models").write_text(str(models_dir))  # LiteRT + XNNPACK under MDWE

    cgroup = cgroup2_dir()
    assert cgroup is not None
    box = cgroup / f"appliance-boot-test-{os.getpid()}"
    box.mkdir()
    log = out / "pid1.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        with log.open("w") as log_file:
            try:  # systemd gets its own cgroup subtree (and cgroup namespace) under ours
                proc = subprocess.Popen(
                    [
                        "unshare",
                        "--pid",
                        "--fork",
                        "--mount",
                        "--uts",
                        "--ipc",
                        "--net",
                        "--cgroup",
                        "--propagation",
                        "private",
                        "--mount-proc",
                        "bash",
                        str(stash / "inner.sh"),
                        str(stash),
                        str(out),
                        str(SYSTEMD_DIR),
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=lambda: (box / "cgroup.procs").write_text(str(os.getpid())),
                )
            except (OSError, subprocess.SubprocessError) as error:
                pytest.skip(f"cannot start a process in a new cgroup here: {error}")
            try:
                proc.wait(timeout=180)
            except subprocess.TimeoutExpired:
                pytest.fail(f"systemd did not finish; log:\n{log.read_text()[-3000:]}")
    finally:
        kill_cgroup(box)
        if proc is not None:
            proc.wait(timeout=30)

    def report(name: str) -> dict[str, Any]:
        path = out / f"{name}.json"
        assert path.exists(), f"{name} never ran; PID 1 log:\n{log.read_text()[-3000:]}"
        return json.loads(path.read_text())

    app, first = report("appliance"), report("firstboot")
    print(json.dumps({"appliance": app, "firstboot": first}, indent=1))
    assert "ActiveState=active" in (out / "appliance.state").read_text()
    assert "Result=success" in (out / "firstboot.state").read_text()
    assert app["ws_mode"][0] == "ok" and app["ws_mode"][1][0] == "0o700"
    assert app["ws_write"][0] == "ok"
    assert app["ws_statfs"] == ["ok", 0x01021994], "workspace not on tmpfs"
    options = app["ws_options"][1][0].split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(options)
    assert ("noswap" in options) == kernel_has_noswap()
    assert (out / "ws_running").read_text().split() == ["workspace"]
    assert (out / "ws_stopped").read_text().split() == [], "stop must delete the workspace"
    assert app["exec_ws"] == ["ok", 100 + 13], "workspace must be noexec"
    assert app["exec_state"] == ["ok", 100 + 13], "state dir must be noexec"
    assert app["exec_usr"] == ["ok", 0], "lp/lpstat from /usr must still run"
    assert app["state_write"][0] == "ok"
    assert app["proc_swaps"] == ["ok", "Filename"], "doctor reads /proc/swaps"
    assert app["proc_cpuinfo"] == ["ok", True], "XNNPACK's cpuinfo reads /proc/cpuinfo"
    assert app["self_mountinfo"] == ["ok", True]
    assert app["tmp_fs"] == ["ok", 0x01021994]
    assert app["var_tmp"] == ["errno", "EACCES"], "/var/tmp is on the card"
    assert app["etc_write"] == ["errno", "EROFS"]
    assert app["wx_mmap"] == ["errno", "EPERM"], "MemoryDenyWriteExecute"
    assert app["core_limit"] == ["ok", [0, 0]]
    assert app["af_packet"] == ["errno", "EAFNOSUPPORT"]
    assert app["af_netlink_uevent"][0] == "ok"
    assert app["bind_8443"] == ["ok", 8443]
    assert app["udp_lan"] == ["ok", "sent"]
    assert app["udp_wan"] == ["errno", "EPERM"], "IPAddressDeny must drop non-LAN traffic"
    # root:video 0660 node of an allowed major: the group check passes (PrivateUsers=yes
    # notwithstanding), the missing driver answers ENXIO; a major not allowed gets EPERM.
    assert app["dev_video_group"] == ["errno", "ENXIO"]
    assert app["dev_not_allowed"] == ["errno", "EPERM"]
    for lib in ("numpy", "cv2", "cryptography", "litert"):
        assert app[lib][0] in ("ok", "absent"), f"{lib} under the sandbox: {app[lib]}"
    assert app["litert"][1] != "no model"
    if app["cups"][1] != "no cupsd":
        assert app["cups"] == ["ok", {"lp": 0, "cancel_x": 0, "cupsenable": 0, "errors": ""}]
        assert (out / "spool").read_text().split() == [], "purged job left in the spool"
    assert first["proc_cpuinfo"] == ["errno", "ENOENT"], "firstboot has ProcSubset=pid"
    assert first["bind_8443"] == ["errno", "EAFNOSUPPORT"], "firstboot has no network"
    assert first["state_write"][0] == "ok"
