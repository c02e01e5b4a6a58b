"""Demo printer: the sheet goes into the session workspace (encrypted) instead of onto paper.

The session layer injects ``store(sheet) -> reference``, which encrypts the bytes into the
current session's workspace; this module never writes anything itself, so no plaintext sheet
reaches any disk, and the sheet is wiped with the session. The job is complete as soon as
the store call returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from appliance.devices.config import PrinterConfig
from appliance.devices.printer.base import (
    JobStatus,
    PrintJob,
    PrintJobNotFoundError,
    QueueState,
    check_copies,
    media_name,
    purge_each,
    sheet_format,
)

SheetStore = Callable[[bytes], str]


class FilePrinter:
    def __init__(self, config: PrinterConfig, *, store: SheetStore) -> None:
        self._store = store
        self._media = config.media
        self._max_copies = config.max_copies
        self._lock = threading.Lock()
        self._next_id = 1
        self.jobs: dict[str, PrintJob] = {}
        self.stored: dict[str, str] = {}  # job id -> the workspace reference store() returned
        self._canceled: set[str] = set()

    def submit(self, sheet: bytes, copies: int, media: str) -> str:
        document_format = sheet_format(sheet)
        check_copies(copies, self._max_copies)
        name = media_name(media, self._media)
        reference = self._store(sheet)
        with self._lock:
            job_id = f"file-{self._next_id}"
            self._next_id += 1
            self.jobs[job_id] = PrintJob(job_id, copies, name, document_format, len(sheet))
            self.stored[job_id] = reference
        return job_id

    def status(self, job_id: str) -> JobStatus:
        with self._lock:
            if job_id in self._canceled:
                return JobStatus(job_id, "canceled", "purged")
            if job_id not in self.jobs:
                raise PrintJobNotFoundError(f"no print job {job_id}")
        return JobStatus(job_id, "completed", "stored in the session workspace")

    def queue_state(self) -> QueueState:
        return QueueState(accepting=True, paused=False)

    def resume(self) -> None:
        """Nothing to resume: the demo printer never pauses."""

    def purge(self, job_id: str) -> None:
        # The sheet itself lives in the workspace and goes with the session's wipe.
        with self._lock:
            self.stored.pop(job_id, None)
            if job_id in self.jobs:
                self._canceled.add(job_id)

    def purge_all(self, job_ids: Iterable[str]) -> None:
        purge_each(self, job_ids)
