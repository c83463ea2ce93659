"""Progress reports and cancellation, passed into the engine by whichever front end runs a job."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from PIL import Image


@dataclass(frozen=True)
class ProgressUpdate:
    job: int  # 0-based index of the current batch (of n_iter, or a script's sub-job)
    job_count: int
    step: int  # denoising steps finished in the current batch
    steps: int  # denoising steps the current batch runs
    elapsed: float  # seconds since the run started
    preview: Image.Image | None = None  # cheap latent preview, every few steps
    text: str = ""  # e.g. a script's "tile 3/9"

    @property
    def fraction(self) -> float:
        """Whole-run progress in 0..1."""
        if self.job_count <= 0 or self.steps <= 0:
            return 0.0
        return min(1.0, (self.job + self.step / self.steps) / self.job_count)

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the time so far (None until something finished)."""
        f = self.fraction
        return None if f <= 0 else self.elapsed * (1 - f) / f


ProgressCallback = Callable[[ProgressUpdate], None]


class JobControl:
    """Interrupt (stop now, keep finished images) and Skip (drop the current batch, go on); thread-safe.

    A Skip belongs to the batch it was pressed during: the engine brackets each batch's sampling with
    begin_batch()/end_batch(), and a Skip pressed outside that bracket (prompt encoding, decode, saving,
    between a script's engine calls) is a no-op, as A1111 clears `state.skipped` at each batch's start.
    Otherwise it would stay armed and drop the NEXT batch, or the next job's first one.
    """

    def __init__(self) -> None:
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._batch = 0  # counts every batch this control has seen (a script's engine calls share it)
        self._sampling = False  # inside begin_batch() .. end_batch()
        self._skip_batch: int | None = None  # the batch a pending Skip was pressed during
        self.started_at = time.monotonic()

    def interrupt(self) -> None:
        self._interrupt.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def begin_batch(self) -> int:
        """The engine starts sampling a batch; returns its number. A Skip left from before is dropped."""
        with self._lock:
            self._batch += 1
            self._sampling = True
            self._skip_batch = None
            return self._batch

    def end_batch(self) -> None:
        """The batch's sampling is over (finished, skipped or interrupted): a Skip not taken expires."""
        with self._lock:
            self._sampling = False
            self._skip_batch = None

    def skip(self) -> bool:
        """Drop the batch being sampled now. False (and nothing armed) when no batch is sampling."""
        with self._lock:
            if not self._sampling:
                return False
            self._skip_batch = self._batch
            return True

    def take_skip(self) -> bool:
        """True once per Skip pressed during the current batch: the engine consumes it to drop the batch."""
        with self._lock:
            if self._sampling and self._skip_batch == self._batch:
                self._skip_batch = None
                return True
            return False

    @property
    def skip_requested(self) -> bool:
        with self._lock:
            return self._sampling and self._skip_batch == self._batch
