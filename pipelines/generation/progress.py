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
    """Interrupt (stop now, keep finished images) and Skip (drop the current batch, go on); thread-safe."""

    def __init__(self) -> None:
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self.started_at = time.monotonic()

    def interrupt(self) -> None:
        self._interrupt.set()

    def skip(self) -> None:
        self._skip.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def take_skip(self) -> bool:
        """True once per Skip press: the engine consumes it when it drops the current batch."""
        if self._skip.is_set():
            self._skip.clear()
            return True
        return False

    @property
    def skip_requested(self) -> bool:
        return self._skip.is_set()
