"""What the API remembers between requests: the job it is running (for /progress) and the options clients
have set (known option keys only: A1111 keeps unknown ones, this server ignores them with a notice).

Interrupt and Skip go to the engine's job queue, which only ever arms the RUNNING job; the tracker keeps
no job control, so a press can never land on an API job still waiting in the queue."""

from __future__ import annotations

import datetime
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from pipelines.generation.progress import ProgressUpdate


@dataclass(frozen=True)
class ProgressSnapshot:
    active: bool
    job_id: str | None  # the queue's id of the API job running now
    job: str
    job_timestamp: str
    update: ProgressUpdate | None
    preview: Image.Image | None
    interrupted: bool
    skipped: bool
    started: float


class JobTracker:
    """The API's view of A1111's `shared.state`, without the global: one tracker per mounted API.

    begin() is called once the job's turn in the queue has come (it is running); jobs from other front
    ends (the web UI) are seen through the queue's running job.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job_id: str | None = None
        self._job = ""
        self._timestamp = "0"
        self._update: ProgressUpdate | None = None
        self._preview: Image.Image | None = None
        self._interrupted = False
        self._skipped = False
        self._started = 0.0

    def begin(self, job: str, job_id: str) -> None:
        with self._lock:
            self._job_id = job_id
            self._job = job
            self._timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
            self._update = self._preview = None
            self._interrupted = self._skipped = False
            self._started = time.time()

    def report(self, update: ProgressUpdate) -> None:
        with self._lock:
            self._update = update
            if update.preview is not None:  # previews come every few steps; keep the latest between them
                self._preview = update.preview

    def end(self) -> None:
        with self._lock:
            self._job_id = None
            self._job = ""
            self._update = None

    @property
    def timestamp(self) -> str:
        return self._timestamp

    def interrupt(self) -> None:
        """Remember the press for /progress' state (A1111's state.interrupted); the queue does the work."""
        with self._lock:
            self._interrupted = True

    def skip(self) -> None:
        with self._lock:
            self._skipped = True

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return ProgressSnapshot(
                self._job_id is not None,
                self._job_id,
                self._job,
                self._timestamp,
                self._update,
                self._preview,
                self._interrupted,
                self._skipped,
                self._started,
            )


class OptionsStore:
    """Option keys clients set through POST /options (known keys only): returned as they were."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = dict(defaults or {})

    def update(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._values.update(values)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)
