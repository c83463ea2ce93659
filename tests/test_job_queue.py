"""The one job queue (pipelines/generation/queue.py) and Skip's scope: FIFO, re-entrant, job records,
Interrupt/Skip only ever reaching the running job, and a Skip pressed outside a batch's sampling never
dropping the next batch (driven at exact points by hooks, not timing)."""

import threading
import time

import pytest
from demo_engine import make_demo_engine
from PIL import Image

from pipelines.generation.progress import JobControl
from pipelines.generation.queue import JobNotRunning, JobQueue, JobState
from pipelines.generation.requests import Img2ImgRequest


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


class Holder:
    """A job that holds the queue (in its own thread) until released."""

    def __init__(self, queue, kind="holder", control=None):
        self.queue, self.started, self.release = queue, threading.Event(), threading.Event()
        self.job = None
        self.thread = threading.Thread(target=self._run, args=(kind, control), daemon=True)
        self.thread.start()
        assert self.started.wait(10)

    def _run(self, kind, control):
        with self.queue.hold(kind, control) as job:
            self.job = job
            self.started.set()
            assert self.release.wait(30)

    def finish(self):
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def submit_in_thread(queue, kind, func=lambda: None, control=None):
    """queue.run(kind, func) in a thread; returns (thread, the Job once it is queued)."""
    before = {job.id for job in queue.waiting}
    thread = threading.Thread(target=queue.run, args=(kind, func), kwargs={"control": control}, daemon=True)
    thread.start()
    wait_until(lambda: any(job.id not in before for job in queue.waiting))
    (job,) = [job for job in queue.waiting if job.id not in before]
    return thread, job


class SpyControl(JobControl):
    def __init__(self):
        super().__init__()
        self.skips = 0

    def skip(self):
        self.skips += 1
        return super().skip()


# -- the queue ---------------------------------------------------------------------------------------------
def test_jobs_run_one_at_a_time_in_arrival_order():
    queue, order = JobQueue(), []
    holder = Holder(queue)
    threads = [submit_in_thread(queue, f"job{i}", lambda i=i: order.append(i))[0] for i in range(4)]
    assert [job.kind for job in queue.waiting] == ["job0", "job1", "job2", "job3"]
    assert order == [] and queue.running is holder.job and holder.job.state is JobState.RUNNING
    holder.finish()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3] and queue.running is None and queue.waiting == []
    assert queue.get(holder.job.id).state is JobState.DONE


def test_a_job_submitting_again_from_its_own_thread_runs_inline_in_its_job():
    queue = JobQueue()
    with queue.hold("script") as outer:
        inner = queue.run("img2img", lambda: queue.running)  # would deadlock if it queued behind itself
        with queue.hold("switch") as nested:
            assert nested is outer
    assert inner is outer and outer.state is JobState.DONE and queue.get(outer.id) is outer


def test_job_records_say_how_each_job_ended():
    queue = JobQueue()
    with pytest.raises(ValueError, match="bad weights"), queue.hold("switch") as failed:
        raise ValueError("bad weights")
    control = JobControl()
    with queue.hold("img2img", control) as stopped:
        queue.interrupt()
    assert queue.run("img2img", lambda: "fine") == "fine"  # a failed job does not block the next
    assert queue.get(failed.id).state is JobState.FAILED and "bad weights" in failed.error
    assert stopped.state is JobState.INTERRUPTED and control.interrupted


def test_interrupt_and_skip_reach_only_the_running_job():
    queue = JobQueue()
    assert queue.interrupt() is None and queue.skip() is None  # idle: nothing to do
    running_control, queued_control = SpyControl(), SpyControl()
    holder = Holder(queue, "img2img", running_control)
    thread, queued = submit_in_thread(queue, "img2img", control=queued_control)

    assert queue.skip() is holder.job and queue.interrupt() is holder.job
    assert running_control.skips == 1 and running_control.interrupted
    assert queued_control.skips == 0 and not queued_control.interrupted

    for press in (queue.interrupt, queue.skip):
        with pytest.raises(JobNotRunning, match=rf"job '{queued.id}' is queued: only the running job"):
            press(queued.id)
        with pytest.raises(JobNotRunning, match="'nope' is unknown"):
            press("nope")
    assert queued_control.skips == 0 and not queued_control.interrupted
    assert queue.interrupt(holder.job.id) is holder.job  # by id: the running one is fine
    holder.finish()
    thread.join(10)
    assert queued.state is JobState.DONE and holder.job.state is JobState.INTERRUPTED


def test_skip_counts_only_during_a_batch():
    control = JobControl()
    assert control.skip() is False and not control.take_skip()  # before any batch: a no-op
    control.begin_batch()
    assert control.skip() is True and control.skip_requested
    assert control.take_skip() and not control.take_skip()  # consumed once
    control.skip()
    control.end_batch()  # pressed but not taken (the batch was decoding): it expires with the batch
    control.begin_batch()
    assert not control.take_skip()


# -- the engine: Skip's scope ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return make_demo_engine(tmp_path_factory.mktemp("data"), preview_every=0)


def request(**kw):
    base = dict(init_image=Image.new("RGB", (64, 64), (90, 140, 200)), prompt="a lake", width=64, height=64,
                steps=4, denoising_strength=1.0, seed=500, save_images=False)
    return Img2ImgRequest(**(base | kw))


def test_skip_during_a_batch_drops_that_batch(engine):
    control = JobControl()

    def on_progress(update):
        if update.job == 1 and update.step == 1:
            assert engine.skip().control is control  # through the queue: the running job
    result = engine.img2img(request(n_iter=3), on_progress, control)
    assert result.seeds == [500, 502] and result.skipped_batches == 1


def test_skip_after_the_last_step_does_not_drop_the_next_batch(engine):
    control = JobControl()

    def on_progress(update):
        if update.job == 0 and update.step == update.steps:  # sampling is over; decode comes next
            control.skip()
    result = engine.img2img(request(n_iter=2), on_progress, control)
    assert result.seeds == [500, 501] and result.skipped_batches == 0


def test_skip_during_decode_does_not_drop_the_next_batch(engine, monkeypatch):
    control, calls = JobControl(), []
    vae = engine.models.pipeline("img2img").vae
    decode = vae.decode

    def pressing_decode(*args, **kwargs):
        calls.append(control.skip())  # pressed while batch 0 decodes
        return decode(*args, **kwargs)
    monkeypatch.setattr(vae, "decode", pressing_decode)
    result = engine.img2img(request(n_iter=2), None, control)
    assert calls[0] is True  # the press landed (inside batch 0's bracket), too late to matter
    assert result.seeds == [500, 501] and result.skipped_batches == 0


def test_skip_between_a_scripts_engine_calls_does_not_drop_the_next_call(engine):
    with engine.job() as control:  # one script job, two engine calls
        first = engine.img2img(request(), None, control)
        assert engine.skip() is not None and engine.queue.running.kind == "script"
        second = engine.img2img(request(seed=600), None, control)
    assert first.seeds == [500] and second.seeds == [600] and second.skipped_batches == 0


def test_interrupt_by_id_of_a_queued_engine_job_is_refused(engine):
    holder = Holder(engine.queue, "switch")
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("r", engine.img2img(request(seed=7))))
    thread.start()
    wait_until(lambda: engine.queue.waiting)
    (queued,) = engine.queue.waiting
    with pytest.raises(JobNotRunning, match="queued"):
        engine.interrupt(queued.id)
    holder.finish()
    thread.join(60)
    assert results["r"].seeds == [7] and not results["r"].interrupted and queued.state is JobState.DONE
