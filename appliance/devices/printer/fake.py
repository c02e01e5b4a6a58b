"""A printer for tests and laptops: records what it was sent, completes it or holds it.

While not paused a job completes at once (``auto_complete``); while paused jobs stay
``pending`` until ``resume()``. Tests can force any state with ``set_status``. The sheets are
kept in memory only (``sheets``) so a test can compare them; ``purge`` forgets them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from appliance.devices.config import PrinterConfig
from appliance.devices.printer.base import (
    JobState,
    JobStatus,
    PrinterError,
    PrintJob,
    PrintJobNotFoundError,
    QueueState,
    check_copies,
    media_name,
    purge_each,
    sheet_format,
)


class FakePrinter:
    def __init__(self, config: PrinterConfig | None = None, *, auto_complete: bool = True) -> None:
        config = config or PrinterConfig()
        self._media = config.media
        self._max_copies = config.max_copies
        self.auto_complete = auto_complete
        self._lock = threading.Lock()
        self._next_id = 1
        self.jobs: dict[str, PrintJob] = {}
        self.sheets: dict[str, bytes] = {}
        self._status: dict[str, JobStatus] = {}
        self.history: list[tuple[str, ...]] = []
        self.purged: list[str] = []
        self.accepting = True
        self.paused = False
        self.pause_reason = ""
        self.fail_purge: set[str] = set()  # job ids whose purge raises (tests)

    # --- test controls -----------------------------------------------------------------------

    def pause(self, reason: str = "paused") -> None:
        with self._lock:
            self.history.append(("pause", reason))
            self.paused = True
            self.pause_reason = reason

    def set_status(self, job_id: str, state: JobState, reason: str = "") -> None:
        with self._lock:
            self._status[job_id] = JobStatus(job_id, state, reason)

    # --- Printer -------------------------------------------------------------------------------

    def submit(self, sheet: bytes, copies: int, media: str) -> str:
        document_format = sheet_format(sheet)
        check_copies(copies, self._max_copies)
        name = media_name(media, self._media)
        with self._lock:
            if not self.accepting:
                raise PrinterError("the printer is not accepting jobs")
            job_id = f"fake-{self._next_id}"
            self._next_id += 1
            self.history.append(("submit", job_id))
            self.jobs[job_id] = PrintJob(job_id, copies, name, document_format, len(sheet))
            self.sheets[job_id] = bytes(sheet)
            done = self.auto_complete and not self.paused
            state: JobState = "completed" if done else "pending"
            reason = "job-completed-successfully" if done else ""
            self._status[job_id] = JobStatus(job_id, state, reason)
            return job_id

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            try:
                return self._status[job_id]
            except KeyError:
                raise PrintJobNotFoundError(f"no print job {job_id}") from None

    def queue_state(self) -> QueueState:
        with self._lock:
            waiting = sum(1 for s in self._status.values() if not s.done)
            reason = f"paused: {self.pause_reason}" if self.paused else ""
            return QueueState(self.accepting, self.paused, reason, waiting)

    def resume(self) -> None:
        with self._lock:
            self.history.append(("resume",))
            self.paused = False
            self.pause_reason = ""
            self.accepting = True
            if self.auto_complete:
                for job_id, status in list(self._status.items()):
                    if status.state == "pending":
                        self._status[job_id] = JobStatus(
                            job_id, "completed", "job-completed-successfully"
                        )

    def purge(self, job_id: str) -> None:
        with self._lock:
            self.history.append(("purge", job_id))
            if job_id in self.fail_purge:
                raise PrinterError(f"could not purge {job_id}")
            self.sheets.pop(job_id, None)
            self.purged.append(job_id)
            status = self._status.get(job_id)
            if status is not None and not status.done:
                self._status[job_id] = JobStatus(job_id, "canceled", "job-canceled-by-user")

    def purge_all(self, job_ids: Iterable[str]) -> None:
        purge_each(self, job_ids)
