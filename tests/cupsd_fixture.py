"""A real, private ``cupsd`` for the printer tests, on a loopback port.

Everything lives under one directory in /dev/shm: config (ServerRoot), spool (RequestRoot,
TempDir), cache, state, logs, and the file the queue prints into. The daemon keeps no job
files or history (as on the appliance). Running as root, cupsd runs filters as ``lp``, so the
tree is world-traversable (0755); the test documents are synthetic.

Why a small PPD rather than ``-m raw``: CUPS 2.4 still accepts raw queues (with a deprecation
warning), but for a raw queue with one document and a ``file:`` device the scheduler starts
no process at all, so nothing is written (scheduler/job.c adds its gziptoany pass-through
only for compressed or multi-document raw jobs). The PPD below routes image/jpeg and
image/png through ``gziptoany`` (cups-core-drivers), which copies the document unchanged;
with a PPD, ``FINAL_CONTENT_TYPE`` is set, so gziptoany writes one copy whatever ``-n`` says
(copies are the printer's job). The output file is created beforehand: for device paths
under ``/dev/`` cupsd opens ``O_WRONLY`` without ``O_CREAT``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

QUEUE = "studio"
TOOLS = ("cupsd", "lpadmin", "lp", "lpstat", "cancel", "cupsenable", "cupsdisable", "cupsaccept")
PASS_THROUGH = Path("/usr/lib/cups/filter/gziptoany")

PPD = """*PPD-Adobe: "4.3"
*FormatVersion: "4.3"
*FileVersion: "1.0"
*LanguageVersion: English
*LanguageEncoding: ISOLatin1
*PCFileName: "STUDIO.PPD"
*Manufacturer: "Appliance"
*Product: "(Studio test sink)"
*ModelName: "Studio test sink"
*ShortNickName: "Studio test sink"
*NickName: "Studio test sink"
*PSVersion: "(3010.000) 0"
*LanguageLevel: "3"
*ColorDevice: True
*DefaultColorSpace: RGB
*FileSystem: False
*Throughput: "1"
*LandscapeOrientation: Plus90
*TTRasterizer: Type42
*cupsVersion: 2.4
*cupsManualCopies: False
*cupsFilter: "image/jpeg 0 gziptoany"
*cupsFilter: "image/png 0 gziptoany"
*OpenUI *PageSize/Media Size: PickOne
*OrderDependency: 10 AnySetup *PageSize
*DefaultPageSize: w288h432
*PageSize w288h432/4x6in: "<</PageSize[288 432]>>setpagedevice"
*PageSize w360h504/5x7in: "<</PageSize[360 504]>>setpagedevice"
*CloseUI: *PageSize
*OpenUI *PageRegion/Media Size: PickOne
*OrderDependency: 10 AnySetup *PageRegion
*DefaultPageRegion: w288h432
*PageRegion w288h432/4x6in: "<</PageSize[288 432]>>setpagedevice"
*PageRegion w360h504/5x7in: "<</PageSize[360 504]>>setpagedevice"
*CloseUI: *PageRegion
*DefaultImageableArea: w288h432
*ImageableArea w288h432/4x6in: "0 0 288 432"
*ImageableArea w360h504/5x7in: "0 0 360 504"
*DefaultPaperDimension: w288h432
*PaperDimension w288h432/4x6in: "288 432"
*PaperDimension w360h504/5x7in: "360 504"
"""


@dataclass(frozen=True)
class CupsServer:
    address: str  # "127.0.0.1:PORT", for printer.server / CUPS_SERVER
    root: Path
    cupsd_conf: Path
    cups_files_conf: Path
    spool: Path
    output: Path  # what the queue "prints" into
    queue: str = QUEUE

    def admin(self, *argv: str) -> str:
        """Run a CUPS admin tool against this server (e.g. cupsdisable -r 'out of paper')."""
        result = subprocess.run(
            [argv[0], "-h", self.address, *argv[1:]],
            capture_output=True,
            check=True,
            timeout=30,
            env={**os.environ, "LC_ALL": "C"},
        )
        return result.stdout.decode()

    def job_files(self) -> list[str]:
        """Job documents (d*) and control files (c*) in the spool."""
        return sorted(p.name for p in self.spool.iterdir() if p.name[:1] in ("c", "d"))

    def reset_output(self) -> None:
        self.output.write_bytes(b"")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"cupsd exited with {process.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"cupsd did not listen on port {port} within 15 s:\n{_tail(log)}")


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])
    except OSError:
        return "(no log)"


def _write_config(root: Path, port: int) -> tuple[Path, Path]:
    conf = root / "conf"
    cupsd_conf = conf / "cupsd.conf"
    cups_files_conf = conf / "cups-files.conf"
    cupsd_conf.write_text(
        f"Listen 127.0.0.1:{port}\n"
        "Browsing No\n"
        "WebInterface No\n"
        "LogLevel info\n"
        "PreserveJobFiles No\n"
        "PreserveJobHistory No\n"
        # Write control files at once (default: up to 30 s later) so tests can inspect them.
        "DirtyCleanInterval 0\n"
        "DefaultAuthType None\n"
        # Loopback only and no authentication: a throwaway server for one test run.
        "<Location />\n  Order allow,deny\n  Allow from 127.0.0.1\n</Location>\n"
        "<Location /admin>\n  Order allow,deny\n  Allow from 127.0.0.1\n</Location>\n"
        "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n"
    )
    lines = [
        f"ServerRoot {conf}",
        f"RequestRoot {root / 'spool'}",
        f"TempDir {root / 'spool' / 'tmp'}",
        f"CacheDir {root / 'cache'}",
        f"StateDir {root / 'state'}",
        f"ErrorLog {root / 'log' / 'error_log'}",
        f"AccessLog {root / 'log' / 'access_log'}",
        f"PageLog {root / 'log' / 'page_log'}",
        f"Printcap {root / 'printcap'}",
        "FileDevice Yes",
    ]
    if os.geteuid() == 0:
        # cupsd refuses User root; as root it runs filters as lp (as on the appliance).
        lines += ["User lp", "Group lp"]
    cups_files_conf.write_text("\n".join(lines) + "\n")
    return cupsd_conf, cups_files_conf


@pytest.fixture(scope="module")
def cupsd() -> Iterator[CupsServer]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing or not PASS_THROUGH.exists():
        pytest.skip(
            f"CUPS is not installed ({', '.join(missing) or PASS_THROUGH}): "
            "apt install cups-daemon cups-client cups-core-drivers"
        )
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="cupsd-test-", dir=shm if shm.is_dir() else None))
    process: subprocess.Popen[bytes] | None = None
    try:
        root.chmod(0o755)
        for sub in ("conf", "spool", "spool/tmp", "cache", "state", "log", "out"):
            (root / sub).mkdir(mode=0o755, exist_ok=True)
        port = _free_port()
        cupsd_conf, cups_files_conf = _write_config(root, port)
        log = root / "log" / "error_log"
        with (root / "log" / "stderr").open("wb") as stderr:
            process = subprocess.Popen(
                ["cupsd", "-f", "-c", str(cupsd_conf), "-s", str(cups_files_conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        _wait_for_port(port, process, log)
        output = root / "out" / "printed.bin"
        output.write_bytes(b"")
        (root / "studio.ppd").write_text(PPD)
        server = CupsServer(
            f"127.0.0.1:{port}", root, cupsd_conf, cups_files_conf, root / "spool", output
        )
        server.admin(
            "lpadmin", "-p", QUEUE, "-E", "-v", f"file://{output}", "-P", str(root / "studio.ppd")
        )
        yield server
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
