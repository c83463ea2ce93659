"""One job queue for everything that uses the model (after InvokeAI's session queue).

Both front ends submit here, through the engine or directly: an img2img run, a script (its many engine
calls are ONE job), a checkpoint/VAE switch, the API's override + run + restore, an interrogation, an
upscale. Jobs run one at a time in arrival order (FIFO), each in the thread that submitted it: the
submitter blocks until its turn, so a Gradio handler or an API worker thread just calls
`queue.run(kind, func)` or `with queue.hold(kind) as job:`.

Re-entrant: a thread that holds the running job and submits again (a script calling engine.img2img, an
override job calling models.load) runs inline inside its own job, never behind itself.

Interrupt and Skip address the RUNNING job, by id or by default; a queued job cannot be armed, so a
press meant for the job on screen never lands on the one after it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterator, TypeVar

from pipelines.generation.progress import JobControl, ProgressUpdate

log = logging.getLogger(__name__)
T = TypeVar("T")

# Job kinds (free text is allowed too; these are the ones the project submits).
IMG2IMG = "img2img"
SCRIPT = "script"
SWITCH = "switch"  # checkpoint / VAE change
INTERROGATE = "interrogate"
UPSCALE = "upscale"
EXTRAS = "extras"  # the Extras tab and /sdapi/v1/extra-*-image(s): upscaling without the SD model


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class JobNotRunning(LookupError):
    """Interrupt/Skip named a job that is not the running one (queued, finished or unknown)."""


@dataclass(eq=False)
class Job:
    """One queued unit of work on the model; the record stays readable after it ends."""

    id: str
    kind: str
    control: JobControl
    state: JobState = JobState.QUEUED
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    update: ProgressUpdate | None = None  # the latest progress report while it runs (for polling)


class JobQueue:
    """FIFO, one running job at a time; thread-safe. `history` finished records are kept for get()."""

    def __init__(self, history: int = 100) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: Job | None = None
        self._owner: int | None = None  # the thread running self._running (re-entrant submits)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._history = history

    # Submitting ---------------------------------------------------------------------------------------
    @contextmanager
    def hold(self, kind: str, control: JobControl | None = None) -> Iterator[Job]:
        """Wait for this job's turn, then hold the model until the block ends.

        Inside the running job's own thread this is a no-op that yields the running job (whose control
        every nested call shares, so Interrupt reaches all of them)."""
        me = threading.get_ident()
        with self._cond:
            nested = self._running if self._running is not None and self._owner == me else None
        if nested is not None:
            yield nested
            return
        job = self._enqueue(kind, control or JobControl())
        self._wait_for_turn(job, me)
        try:
            yield job
        except BaseException as exc:
            self._finish(job, JobState.FAILED, f"{type(exc).__name__}: {exc}")
            raise
        self._finish(job, JobState.INTERRUPTED if job.control.interrupted else JobState.DONE)

    def run(self, kind: str, func: Callable[..., T], *args: Any, control: JobControl | None = None) -> T:
        """func(*args) as one job (queued behind the others); its result or exception."""
        with self.hold(kind, control):
            return func(*args)

    # Addressing the running job -------------------------------------------------------------------------
    def interrupt(self, job_id: str | None = None) -> Job | None:
        """Stop the running job (or the one named, which must be running); None when nothing runs."""
        job = self._target(job_id, "interrupted")
        if job is not None:
            job.control.interrupt()
        return job

    def skip(self, job_id: str | None = None) -> Job | None:
        """Drop the running job's current batch (a no-op outside a batch's sampling; see JobControl)."""
        job = self._target(job_id, "skipped")
        if job is not None:
            job.control.skip()
        return job

    def report(self, update: ProgressUpdate) -> None:
        """The running job's latest progress (what GET /progress shows for a job the API did not start)."""
        with self._cond:
            if self._running is not None:
                self._running.update = update

    # Reading --------------------------------------------------------------------------------------------
    @property
    def running(self) -> Job | None:
        with self._cond:
            return self._running

    @property
    def waiting(self) -> list[Job]:
        with self._cond:
            return list(self._waiting)

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    # Internals -------------------------------------------------------------------------------------------
    def _target(self, job_id: str | None, verb: str) -> Job | None:
        with self._cond:
            running = self._running
            if job_id is None or (running is not None and running.id == job_id):
                return running
            known = self._jobs.get(job_id)
        state = known.state.value if known is not None else "unknown"
        raise JobNotRunning(f"job {job_id!r} is {state}: only the running job can be {verb}")

    def _enqueue(self, kind: str, control: JobControl) -> Job:
        job = Job(uuid.uuid4().hex[:12], kind, control)
        with self._cond:
            self._waiting.append(job)
            self._jobs[job.id] = job
            while len(self._jobs) > self._history:  # forget the oldest finished records
                oldest = next(iter(self._jobs.values()))
                if oldest.state in (JobState.QUEUED, JobState.RUNNING):
                    break
                self._jobs.popitem(last=False)
        return job

    def _wait_for_turn(self, job: Job, me: int) -> None:
        with self._cond:
            try:
                while self._running is not None or self._waiting[0] is not job:
                    self._cond.wait()
            except BaseException:  # the waiter died (KeyboardInterrupt...): do not block the jobs behind it
                self._waiting.remove(job)
                job.state = JobState.FAILED
                self._cond.notify_all()
                raise
            self._waiting.popleft()
            self._running, self._owner = job, me
            job.state, job.started_at = JobState.RUNNING, time.monotonic()
        log.debug("job %s (%s) started", job.id, job.kind)

    def _finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        with self._cond:
            job.state, job.error, job.finished_at = state, error, time.monotonic()
            self._running = self._owner = None
            self._cond.notify_all()
        log.debug("job %s (%s) %s", job.id, job.kind, state.value)
