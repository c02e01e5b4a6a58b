"""The studio printer through CUPS, driven by its command-line tools.

* ``lp -d QUEUE -n COPIES -o media=PWG -t TITLE -`` with the sheet on stdin: lp streams it to
  the scheduler (Create-Job + Send-Document), so no client-side copy is made. The title is a
  fixed neutral word, never a customer's name or file name.
* ``lpstat`` for job and queue state, ``cupsenable``/``cupsaccept`` to resume, ``cancel -x``
  to cancel and purge (documents and control files deleted).

Every call is an argument list with ``check=True`` and a timeout, run in a minimal
environment (``LC_ALL=C`` so the output parses; ``CUPS_SERVER`` only when config sets
``printer.server``). Media are PWG self-describing names (``na_index-4x6_4x6in``,
``na_5x7_5x7in``, ``iso_a6_105x148mm``, ``iso_a4_210x297mm``), which CUPS maps onto the
page sizes of whatever driver the queue uses.

CUPS keeps no job history on the appliance (``PreserveJobHistory No``): a finished job
vanishes from ``lpstat`` at once. So a job this printer submitted that is no longer listed is
reported ``completed`` (or ``canceled`` if it was purged here); a job that fails stops the
queue under CUPS's default error policy and shows up in ``queue_state()``.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.devices.config import PrinterConfig
from appliance.devices.printer.base import (
    JobState,
    JobStatus,
    PrinterError,
    PrinterUnavailableError,
    PrintJob,
    PrintJobNotFoundError,
    PrintRequestError,
    QueueState,
    check_copies,
    media_name,
    purge_each,
    sheet_format,
)

JOB_TITLE = "appliance-sheet"  # neutral on purpose: titles show in lpstat and logs
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]+-\d+$")
_REQUEST_ID = re.compile(r"request id is (\S+-\d+)")
_JOB_LINE = re.compile(r"^(\S+-\d+)\s+\S+\s+\d+\s+")
_PRINTER_LINE = re.compile(r"^printer (\S+) (is idle|now printing|disabled since|is holding)")

# job-state-reasons (RFC 8011, PWG 5100.x) lpstat shows as "Alerts:", by the state they imply.
_PROCESSING_REASONS = frozenset({"job-printing", "job-transforming", "job-outgoing"})
_COMPLETED_REASONS = frozenset({"job-completed-successfully", "job-completed-with-warnings"})
_FAILED_REASONS = frozenset(
    {
        "aborted-by-system",
        "job-aborted-by-system",
        "job-completed-with-errors",
        "document-format-error",
        "document-unprintable-error",
        "document-access-error",
        "unsupported-document-format",
        "compression-error",
        "job-data-insufficient",
    }
)
_NOT_FOUND = ("does not exist", "not found", "already")


@dataclass(frozen=True)
class ListedJob:
    job_id: str
    status_message: str
    reasons: tuple[str, ...]


def parse_jobs(text: str) -> dict[str, ListedJob]:
    """Jobs from ``lpstat -l -o`` output (LC_ALL=C)."""
    jobs: dict[str, ListedJob] = {}
    current: str | None = None
    message = ""
    reasons: tuple[str, ...] = ()
    for line in [*text.splitlines(), "<end>"]:
        match = _JOB_LINE.match(line)
        if match or line == "<end>":
            if current is not None:
                jobs[current] = ListedJob(current, message, reasons)
            current = match.group(1) if match else None
            message, reasons = "", ()
        elif line.startswith("\tStatus: "):
            message = line.removeprefix("\tStatus: ").strip()
        elif line.startswith("\tAlerts: "):
            reasons = tuple(line.removeprefix("\tAlerts: ").split())
    return jobs


def job_state(reasons: Sequence[str]) -> JobState:
    """The job state implied by its job-state-reasons."""
    found = set(reasons)
    if found & _FAILED_REASONS:
        return "failed"
    if any(reason.startswith("job-canceled") for reason in found):
        return "canceled"
    if found & _COMPLETED_REASONS:
        return "completed"
    if found & _PROCESSING_REASONS:
        return "processing"
    return "pending"


@dataclass(frozen=True)
class PrinterListing:
    state: str  # "idle", "printing", "disabled", "holding"
    message: str  # printer-state-message ("out of paper")
    reasons: tuple[str, ...]  # printer-state-reasons ("paused", "media-empty-error")


def parse_printer(text: str) -> PrinterListing:
    """The first printer in ``lpstat -l -p QUEUE`` output (LC_ALL=C)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _PRINTER_LINE.match(line)
        if not match:
            continue
        state = {
            "is idle": "idle",
            "now printing": "printing",
            "disabled since": "disabled",
            "is holding": "holding",
        }[match.group(2)]
        details = []
        for detail in lines[index + 1 :]:
            if not detail.startswith("\t"):
                break
            details.append(detail)
        # lpstat prints the state message (if any) right under the printer line, before the
        # long-listing fields that start with "Form mounted:".
        message = ""
        if details and not details[0].startswith(("\tForm mounted:", "\tAlerts:")):
            message = details[0].strip()
        reasons: tuple[str, ...] = ()
        for detail in details:
            if detail.startswith("\tAlerts: "):
                reasons = tuple(r for r in detail.removeprefix("\tAlerts: ").split() if r != "none")
        return PrinterListing(state, message, reasons)
    raise PrinterError("unexpected lpstat output: no printer line")


class CupsPrinter:
    def __init__(self, config: PrinterConfig) -> None:
        self.queue = config.queue
        self._server = config.server
        self._timeout = config.timeout_s
        self._media = config.media
        self._max_copies = config.max_copies
        self._extra = config.extra_options
        self._lock = threading.Lock()
        self.jobs: dict[str, PrintJob] = {}
        self._purged: set[str] = set()

    # --- running the tools --------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"}
        if "HOME" in os.environ:
            env["HOME"] = os.environ["HOME"]
        if self._server:
            env["CUPS_SERVER"] = self._server
        return env

    def _run(self, argv: Sequence[str], *, stdin: bytes | None = None) -> str:
        try:
            result = subprocess.run(
                list(argv),
                input=stdin,
                capture_output=True,
                check=True,
                timeout=self._timeout,
                env=self._env(),
            )
        except FileNotFoundError as error:
            raise PrinterUnavailableError(
                f"{argv[0]} not found: install the CUPS client tools (apt install cups-client)"
            ) from error
        except subprocess.TimeoutExpired as error:
            raise PrinterUnavailableError(
                f"{argv[0]} did not finish in {self._timeout:g} s: is cupsd running?"
            ) from error
        except subprocess.CalledProcessError as error:
            detail = (error.stderr or b"").decode(errors="replace").strip().splitlines()
            raise PrinterError(
                f"{argv[0]} failed: {detail[0] if detail else error.returncode}"
            ) from error
        return result.stdout.decode(errors="replace")

    def _lpstat(self, *args: str) -> str:
        try:
            return self._run(["lpstat", *args])
        except PrinterError as error:
            if isinstance(error, PrinterUnavailableError):
                raise
            raise PrinterUnavailableError(
                f'cannot read the CUPS queue "{self.queue}" ({error}): check that cupsd runs '
                f"and the queue exists (lpstat -p {self.queue})"
            ) from error

    @staticmethod
    def _check_job_id(job_id: str) -> str:
        if not _JOB_ID.match(job_id):
            raise PrintRequestError(f"{job_id!r} is not a CUPS job id")
        return job_id

    # --- Printer -------------------------------------------------------------------------------

    def submit(self, sheet: bytes, copies: int, media: str) -> str:
        document_format = sheet_format(sheet)
        check_copies(copies, self._max_copies)
        name = media_name(media, self._media)
        argv = ["lp", "-d", self.queue, "-n", str(copies), "-o", f"media={name}", "-t", JOB_TITLE]
        for option in self._extra:
            argv += ["-o", option]
        argv.append("-")  # the sheet comes on stdin, from memory
        output = self._run(argv, stdin=sheet)
        match = _REQUEST_ID.search(output)
        if not match:
            raise PrinterError("lp did not report a job id")
        job_id = match.group(1)
        with self._lock:
            self.jobs[job_id] = PrintJob(job_id, copies, name, document_format, len(sheet))
        return job_id

    def status(self, job_id: str) -> JobStatus:
        self._check_job_id(job_id)
        listed = parse_jobs(self._lpstat("-W", "all", "-l", "-o", self.queue)).get(job_id)
        if listed is not None:
            state = job_state(listed.reasons)
            reason = " ".join(r for r in listed.reasons if r != "none") or listed.status_message
            if state == "pending" and not reason:
                # CUPS leaves a job waiting on a stopped queue without reasons: say why.
                printer = parse_printer(self._lpstat("-l", "-p", self.queue))
                if printer.state == "disabled":
                    reason = f"printer paused: {printer.message or 'disabled'}"
            return JobStatus(job_id, state, reason)
        with self._lock:
            if job_id in self._purged:
                return JobStatus(job_id, "canceled", "purged")
            if job_id in self.jobs:
                return JobStatus(job_id, "completed", "left the queue (CUPS keeps no job history)")
        raise PrintJobNotFoundError(f"no print job {job_id} on queue {self.queue}")

    def queue_state(self) -> QueueState:
        printer = parse_printer(self._lpstat("-l", "-p", self.queue))
        accepting_text = self._lpstat("-a", self.queue)
        accepting = f"{self.queue} accepting requests" in accepting_text
        waiting = len(parse_jobs(self._lpstat("-l", "-o", self.queue)))
        paused = printer.state == "disabled" or "paused" in printer.reasons
        other = [r for r in printer.reasons if r != "paused"]
        if paused:
            reason = f"paused: {printer.message or ' '.join(other) or 'disabled'}"
        elif not accepting:
            lines = accepting_text.splitlines()
            why = lines[1].strip() if len(lines) > 1 else "rejecting jobs"
            reason = f"not accepting jobs: {why}"
        else:
            reason = " ".join(other)
        return QueueState(accepting=accepting, paused=paused, reason=reason, jobs=waiting)

    def resume(self) -> None:
        self._run(["cupsenable", self.queue])
        self._run(["cupsaccept", self.queue])

    def purge(self, job_id: str) -> None:
        self._check_job_id(job_id)
        try:
            self._run(["cancel", "-x", job_id])
        except PrinterUnavailableError:
            raise
        except PrinterError as error:
            if not any(phrase in str(error) for phrase in _NOT_FOUND):
                raise
        with self._lock:
            self._purged.add(job_id)

    def purge_all(self, job_ids: Iterable[str]) -> None:
        purge_each(self, job_ids)
