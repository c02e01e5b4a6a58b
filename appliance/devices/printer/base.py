"""The printer contract, its records and its errors, plus the checks every backend shares.

``submit(sheet, copies, media) -> job id`` takes a finished print sheet (JPEG or PNG bytes, in
memory) and never a file name; ``status(job)``, ``queue_state()``, ``resume()``, ``purge(job)``
and ``purge_all(jobs)`` let the session layer follow a print and, at wipe, cancel and purge
whatever is left of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from appliance.devices.config import DEFAULT_MEDIA, PWG_MEDIA_PATTERN
from appliance.errors import ApplianceError

JobState = Literal["pending", "processing", "completed", "failed", "canceled"]
FINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "canceled"})
SheetFormat = Literal["image/jpeg", "image/png"]


class PrinterError(ApplianceError, RuntimeError):
    """The print system refused or failed a request."""


class PrinterUnavailableError(PrinterError):
    """The print system cannot be reached (CUPS not installed, not running, not answering)."""


class PrintJobNotFoundError(PrinterError, LookupError):
    """No job by that id was submitted through this printer."""


class PrintRequestError(ApplianceError, ValueError):
    """A print request that cannot be valid: not a JPEG/PNG sheet, bad copies or media."""


@dataclass(frozen=True)
class PrintJob:
    """One submission as the appliance made it (no image data, no customer details)."""

    job_id: str
    copies: int
    media: str  # the PWG media name sent to the printer
    document_format: SheetFormat
    size: int  # bytes of the sheet


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState
    reason: str = ""  # e.g. "printer-stopped", "job-canceled-by-user"

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class QueueState:
    accepting: bool  # new jobs are taken
    paused: bool  # jobs are held: out of paper, disabled by the operator, error
    reason: str = ""  # for the operator, e.g. "paused: out of paper"
    jobs: int = 0  # jobs not yet finished

    @property
    def ok(self) -> bool:
        return self.accepting and not self.paused


@runtime_checkable
class Printer(Protocol):
    def submit(self, sheet: bytes, copies: int, media: str) -> str:
        """Queue a sheet; returns the job id. ``media`` is a paper ("4x6") or a PWG name."""

    def status(self, job_id: str) -> JobStatus: ...

    def queue_state(self) -> QueueState: ...

    def resume(self) -> None:
        """Re-enable the queue (after paper was loaded) and accept jobs again."""

    def purge(self, job_id: str) -> None:
        """Cancel the job and delete its files; a job that is already gone is fine."""

    def purge_all(self, job_ids: Iterable[str]) -> None:
        """Purge every job, trying all of them; raises PrinterError after if any failed."""


# --- checks shared by the backends ------------------------------------------------------------


def sheet_format(sheet: bytes) -> SheetFormat:
    """The document format of a print sheet, from its magic bytes."""
    if sheet[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if sheet[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    raise PrintRequestError("a print sheet must be JPEG or PNG image data")


def check_copies(copies: int, max_copies: int) -> int:
    if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= max_copies:
        raise PrintRequestError(f"copies must be a whole number from 1 to {max_copies}")
    return copies


def media_name(media: str, table: Mapping[str, str] = DEFAULT_MEDIA) -> str:
    """The PWG media name for a paper key ("4x6") or a PWG name given directly.

    Checked strictly because lp splits an -o value on spaces: an unchecked value could carry
    extra options.
    """
    name = table.get(media, media)
    if not PWG_MEDIA_PATTERN.match(name):
        papers = ", ".join(sorted(table))
        raise PrintRequestError(
            f"unknown media {media!r}: use a paper ({papers}) or a PWG name such as "
            "'na_index-4x6_4x6in'"
        )
    return name


def purge_each(printer: Printer, job_ids: Iterable[str]) -> None:
    """Shared purge_all: try every job, then report the ones that failed."""
    failed: list[str] = []
    for job_id in job_ids:
        try:
            printer.purge(job_id)
        except PrinterError:
            failed.append(job_id)
    if failed:
        raise PrinterError(f"could not purge print job(s) {', '.join(failed)}")
