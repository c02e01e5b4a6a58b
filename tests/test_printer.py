"""Printers: a real cupsd prints, pauses, resumes and purges; fakes and checks without it."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cupsd_fixture import CupsServer, cupsd  # noqa: F401 - the fixture
from PIL import Image
from pydantic import ValidationError

from appliance.devices.config import PrinterConfig
from appliance.devices.printer import (
    JobStatus,
    Printer,
    PrinterConfigError,
    PrinterError,
    PrinterUnavailableError,
    PrintJobNotFoundError,
    PrintRequestError,
    open_printer,
)
from appliance.devices.printer.cups import (
    JOB_TITLE,
    CupsPrinter,
    job_state,
    parse_jobs,
    parse_printer,
)
from appliance.devices.printer.cups_doctor import cups_privacy_rows, read_directives
from appliance.devices.printer.fake import FakePrinter
from appliance.devices.printer.file import FilePrinter
from appliance.session.hardening import filesystem_of


def _sheet(fmt: str = "JPEG", colour: str = "white") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (600, 400), colour).save(out, format=fmt)
    return out.getvalue()


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def wait_done(printer: Printer, job_id: str, timeout: float = 15.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = printer.status(job_id)
        if status.done or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


@pytest.fixture
def cups(cupsd: CupsServer) -> CupsPrinter:  # noqa: F811 - pytest fixture injection
    cupsd.admin("cupsenable", cupsd.queue)
    cupsd.admin("cupsaccept", cupsd.queue)
    cupsd.reset_output()
    return CupsPrinter(PrinterConfig(backend="cups", queue=cupsd.queue, server=cupsd.address))


# --- real cupsd


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_printed_bytes_are_the_bytes_sent(cups: CupsPrinter, cupsd: CupsServer, fmt: str) -> None:  # noqa: F811
    sheet = _sheet(fmt, "salmon")
    job = cups.submit(sheet, copies=1, media="4x6")
    assert job.startswith(f"{cupsd.queue}-")
    status = wait_done(cups, job)
    assert status.state == "completed", status
    assert wait_until(lambda: cupsd.output.read_bytes() == sheet)
    assert cupsd.job_files() == []  # PreserveJobFiles No: nothing left in the spool
    assert cups.jobs[job].media == "na_index-4x6_4x6in"
    assert cups.queue_state().ok


def test_paused_queue_holds_jobs_until_resumed(cups: CupsPrinter, cupsd: CupsServer) -> None:  # noqa: F811
    cupsd.admin("cupsdisable", "-r", "out of paper", cupsd.queue)
    state = cups.queue_state()
    assert state.paused and state.accepting
    assert state.reason == "paused: out of paper"

    sheet = _sheet("JPEG", "teal")
    job = cups.submit(sheet, copies=2, media="5x7")
    time.sleep(0.3)
    status = cups.status(job)
    assert status.state == "pending", status
    assert status.reason == "printer paused: out of paper"
    assert cups.queue_state().jobs == 1
    assert cupsd.output.read_bytes() == b""
    # The control file carries the neutral title only.
    [control] = [p for p in cupsd.spool.iterdir() if p.name.startswith("c")]
    assert JOB_TITLE.encode() in control.read_bytes()

    cups.resume()
    assert wait_done(cups, job).state == "completed"
    assert wait_until(lambda: cupsd.output.read_bytes() == sheet)
    state = cups.queue_state()
    assert not state.paused and state.reason == "" and state.jobs == 0


def test_purge_removes_every_job_file(cups: CupsPrinter, cupsd: CupsServer) -> None:  # noqa: F811
    cupsd.admin("cupsdisable", "-r", "media jam", cupsd.queue)
    first = cups.submit(_sheet(), copies=1, media="4x6")
    second = cups.submit(_sheet("PNG"), copies=1, media="a6")
    assert wait_until(lambda: len(cupsd.job_files()) == 4)  # c+d for each job
    cups.purge(first)
    assert wait_until(lambda: len(cupsd.job_files()) == 2)
    assert cups.status(first).state == "canceled"
    cups.purge_all([first, second])  # the first is already gone: that is fine
    assert wait_until(lambda: cupsd.job_files() == [])
    assert cups.status(second).state == "canceled"
    assert cups.queue_state().jobs == 0
    cups.resume()
    time.sleep(0.3)
    assert cupsd.output.read_bytes() == b""  # purged jobs never print


def test_rejecting_queue_refuses_jobs(cups: CupsPrinter, cupsd: CupsServer) -> None:  # noqa: F811
    cupsd.admin("cupsreject", "-r", "maintenance", cupsd.queue)
    state = cups.queue_state()
    assert not state.accepting and state.reason == "not accepting jobs: maintenance"
    with pytest.raises(PrinterError, match="not accepting"):
        cups.submit(_sheet(), copies=1, media="4x6")
    cups.resume()
    assert cups.queue_state().ok


def test_unknown_queue_and_unknown_job(cupsd: CupsServer) -> None:  # noqa: F811
    missing = CupsPrinter(PrinterConfig(backend="cups", queue="nowhere", server=cupsd.address))
    with pytest.raises(PrinterUnavailableError, match='queue "nowhere"'):
        missing.queue_state()
    printer = CupsPrinter(PrinterConfig(backend="cups", queue=cupsd.queue, server=cupsd.address))
    with pytest.raises(PrintJobNotFoundError):
        printer.status(f"{cupsd.queue}-99999")


def test_cups_doctor_rows_for_the_test_server(cupsd: CupsServer) -> None:  # noqa: F811
    rows = cups_privacy_rows(cupsd.cups_files_conf, cupsd.cupsd_conf)
    assert [(r.name, r.status) for r in rows] == [
        ("cups job files", "ok"),
        ("cups job history", "ok"),
        ("cups spool", "ok"),
        ("cups temp dir", "ok"),
    ]


def test_server_not_running() -> None:
    printer = CupsPrinter(PrinterConfig(backend="cups", server="127.0.0.1:9", timeout_s=10))
    with pytest.raises(PrinterUnavailableError):
        printer.queue_state()


# --- checks that need no cupsd


@pytest.mark.parametrize(
    ("sheet", "copies", "media", "message"),
    [
        (b"GIF89a...", 1, "4x6", "JPEG or PNG"),
        (_sheet(), 0, "4x6", "copies"),
        (_sheet(), 11, "4x6", "copies"),
        (_sheet(), 1, "4x6 -o job-hold-until=indefinite", "unknown media"),
        (_sheet(), 1, "letter", "unknown media"),
    ],
)
def test_bad_requests_never_reach_lp(sheet: bytes, copies: int, media: str, message: str) -> None:
    printer = CupsPrinter(PrinterConfig(backend="cups", server="127.0.0.1:9"))
    with pytest.raises(PrintRequestError, match=message):
        printer.submit(sheet, copies=copies, media=media)
    with pytest.raises(PrintRequestError, match="not a CUPS job id"):
        printer.purge("1; rm -rf /")


def test_media_accepts_pwg_names() -> None:
    printer = FakePrinter()
    job = printer.submit(_sheet(), copies=1, media="oe_photo-l_3.5x5in")
    assert printer.jobs[job].media == "oe_photo-l_3.5x5in"


def test_lpstat_parsing() -> None:
    jobs = parse_jobs(
        "studio-7                root              5120   Sat Nov 21 23:46:41 2026\n"
        "\tStatus: Waiting for printer to finish.\n"
        "\tAlerts: job-printing\n"
        "\tqueued for studio\n"
        "studio-8                appliance         1024   Sat Nov 21 23:46:42 2026\n"
        "\tAlerts: printer-stopped\n"
        "\tqueued for studio\n"
    )
    assert jobs["studio-7"].reasons == ("job-printing",)
    assert jobs["studio-7"].status_message == "Waiting for printer to finish."
    assert jobs["studio-8"].reasons == ("printer-stopped",)
    assert job_state(["job-printing"]) == "processing"
    assert job_state(["printer-stopped"]) == "pending"
    assert job_state(["job-completed-successfully"]) == "completed"
    assert job_state(["job-canceled-by-user"]) == "canceled"
    assert job_state(["aborted-by-system"]) == "failed"

    printer = parse_printer(
        "printer studio disabled since Sat Nov 21 23:46:41 2026 -\n"
        "\tout of paper\n"
        "\tForm mounted:\n"
        "\tContent types: any\n"
        "\tAlerts: paused media-empty-error\n"
    )
    assert printer.state == "disabled"
    assert printer.message == "out of paper"
    assert printer.reasons == ("paused", "media-empty-error")
    idle = parse_printer("printer studio is idle.  enabled since Sat\n\tForm mounted:\n")
    assert (idle.state, idle.message, idle.reasons) == ("idle", "", ())


# --- doctor rows from config files ----------------------------------------------------------------


def test_doctor_rows_flag_cups_defaults(tmp_path: Path) -> None:
    if filesystem_of(tmp_path).in_ram:
        pytest.skip("tmp_path is on tmpfs here: cannot show a spool on disk")
    files = tmp_path / "cups-files.conf"
    scheduler = tmp_path / "cupsd.conf"
    files.write_text(f"RequestRoot {tmp_path / 'spool'}\n")
    scheduler.write_text(
        "LogLevel warn\n<Location />\n  PreserveJobFiles No\n</Location>\n"
        "PreserveJobHistory 86400\n"
    )
    rows = {row.name: row for row in cups_privacy_rows(files, scheduler)}
    assert rows["cups job files"].status == "fail"
    assert f"Set `PreserveJobFiles No` in {scheduler}" in rows["cups job files"].detail
    assert rows["cups job history"].status == "warn"
    assert rows["cups spool"].status == "fail"
    assert "RequestRoot /run/cups/spool" in rows["cups spool"].detail
    assert rows["cups temp dir"].status == "fail"


def test_doctor_rows_when_cups_is_absent(tmp_path: Path) -> None:
    [row] = cups_privacy_rows(tmp_path / "nope.conf", tmp_path / "nope2.conf")
    assert row.status == "info" and "not installed" in row.detail


def test_read_directives_skips_blocks_and_comments() -> None:
    text = "# PreserveJobFiles Yes\nPreserveJobFiles No\n<Policy default>\n  User x\n</Policy>\n"
    assert read_directives(text) == {"preservejobfiles": "No"}


# --- fake and file backends, factory


def test_fake_printer_pause_resume_and_purge() -> None:
    printer = FakePrinter()
    done = printer.submit(_sheet(), copies=1, media="4x6")
    assert printer.status(done).state == "completed"
    printer.pause("out of paper")
    held = printer.submit(_sheet("PNG"), copies=3, media="a4")
    assert printer.status(held).state == "pending"
    assert printer.queue_state().reason == "paused: out of paper"
    printer.purge(held)
    assert printer.status(held).state == "canceled" and held not in printer.sheets
    printer.fail_purge.add(done)
    with pytest.raises(PrinterError, match=done):
        printer.purge_all([done, held])
    assert printer.history.count(("purge", held)) == 2  # tried all despite the failure
    printer.resume()
    assert printer.queue_state().ok


def test_file_printer_stores_through_the_session() -> None:
    stored: list[bytes] = []

    def store(data: bytes) -> str:
        stored.append(data)
        return f"blob-{len(stored)}"

    printer = open_printer(PrinterConfig(backend="file"), store=store)
    assert isinstance(printer, FilePrinter)
    sheet = _sheet()
    job = printer.submit(sheet, copies=1, media="4x6")
    assert stored == [sheet] and printer.stored[job] == "blob-1"
    assert printer.status(job).state == "completed"
    printer.purge_all([job])
    assert printer.status(job).state == "canceled"
    with pytest.raises(PrinterConfigError, match="needs the session workspace store"):
        open_printer(PrinterConfig(backend="file"))


def test_factory_and_config() -> None:
    assert isinstance(open_printer(PrinterConfig()), FakePrinter)
    assert isinstance(open_printer(PrinterConfig(backend="cups")), CupsPrinter)
    with pytest.raises(PrinterConfigError, match=r'printer\.backend = "lpr" is unknown'):
        open_printer(PrinterConfig(backend="lpr"))
    with pytest.raises(ValidationError, match="single lp option"):
        PrinterConfig(extra_options=("print-scaling=none media=a4",))
    with pytest.raises(ValidationError, match="PWG name"):
        PrinterConfig(media={"4x6": "4x6"})
    with pytest.raises(ValidationError):
        PrinterConfig(queue="studio printer")
    assert PrinterConfig(media={"4x6": "oe_4x6-postcard_4x6in"}).media["a4"] == "iso_a4_210x297mm"
