"""The threads of a ``process`` run: decode thread -> bounded queue -> one worker per device -> encode pool.

The decode thread claims a set (its lock), decodes it and queues it; at most ``devices + 1``
sets are in memory at once. Each device's worker computes the sets it takes from the queue and
hands them to the encode pool. A failing set is recorded and releases its lock; the others go on.

When the run's stop event is set (SIGINT/SIGTERM, :mod:`flambient.batch.signals`) the decode
thread claims no more sets, workers give up queued and computing sets (between tiles), sets
already handed to the encoder are finished, and every set not done is recorded as
``interrupted``. Every thread is joined before :func:`run_pipeline` returns (threads left
running in torch at interpreter exit abort the process with "terminate called without an
active exception").
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..backends import Backend
from ..brackets import BracketSet
from ..devices import Device
from .stages import Interrupted, Job, Stages
from .summary import SetResult

if TYPE_CHECKING:
    from .runner import Runner


def run_pipeline(runner: Runner, todo: list[BracketSet], devices: list[Device], backends: list[Backend],
                 stages: Stages, model_sha: str) -> None:
    """Run the sets of ``todo`` through ``stages`` on ``devices`` (one backend each); results go to
    ``runner.record``."""
    from .runner import error_text

    runner.out.mkdir(parents=True, exist_ok=True)
    stop = runner.stop
    slots = threading.Semaphore(len(devices) + 1)  # sets in memory at once
    ready: queue.Queue[Job | None] = queue.Queue()
    encoder = ThreadPoolExecutor(max_workers=max(1, min(2, len(devices))), thread_name_prefix="encode")

    def producer() -> None:
        try:
            for bset in todo:
                slots.acquire()
                if stop.is_set():
                    slots.release()
                    runner.record(SetResult(bset.name, "interrupted", note="not started"))
                    continue
                job = None
                try:
                    job = runner.claim(bset, model_sha)
                    if job is None:
                        slots.release()
                        continue
                    stages.decode(job)
                    ready.put(job)
                except BaseException as exc:  # one bad set fails alone
                    slots.release()
                    if job is not None:
                        runner.fail(job, exc)
                    else:
                        runner.record(SetResult(bset.name, "failed", error=error_text(exc)))
        finally:
            for _ in devices:
                ready.put(None)

    def finish_job(job: Job, device: str, backend: Backend) -> None:
        try:
            runner.record(stages.encode(job, device, backend))
            job.lock.release()
        except BaseException as exc:
            runner.fail(job, exc)
        finally:
            slots.release()

    def worker(device: Device, backend: Backend) -> None:
        while True:
            job = ready.get()
            if job is None:
                return
            try:
                if stop.is_set():
                    raise Interrupted("decoded, not computed")
                stages.compute(job, backend)
            except BaseException as exc:
                runner.fail(job, exc)
                slots.release()
                continue
            encoder.submit(finish_job, job, device.name, backend)

    threads = [threading.Thread(target=producer, name="decode", daemon=True)]
    threads += [threading.Thread(target=worker, args=(d, b), name=f"device-{d.name}", daemon=True)
                for d, b in zip(devices, backends)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():  # a timed join keeps the main thread free to run signal handlers
            t.join(timeout=0.2)
    encoder.shutdown(wait=True)
