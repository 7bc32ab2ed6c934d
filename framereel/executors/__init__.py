"""Executors: where jobs render. Each is a :class:`~framereel.jobs.WorkerPool` driven by the same
loop (:func:`framereel.jobs.drive`), so retries, failures and device attribution are alike:

* :class:`InProcessPool` — the backend already loaded in this process (the default);
* :class:`~framereel.executors.processes.ProcessPool` — one worker process per device or CPU share;
* :class:`~framereel.executors.ray_actors.RayPool` — one Ray actor per device.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from ..backends.base import Backend
from ..events import EventHandler, FrameStarted, ModelLoaded, Step
from ..jobs import Job, Message, WorkerPool, WorkerReady, run_job
from ..manifest import read_frame_image
from ..settings import Parallelism, RenderSettings


class InProcessPool(WorkerPool):
    """One worker: ``backend``, in this process. Reports each batch group and step as it goes."""

    remote = False

    def __init__(self, backend: Backend, frames_dir: Path):
        self.backend = backend
        self.frames_dir = frames_dir
        self.running: Iterator[Message] | None = None
        self.emit: EventHandler = lambda event: None
        self.ready = False

    def start(self, emit: EventHandler) -> None:
        self.emit = emit
        t0 = time.perf_counter()
        self.backend.load()
        emit(ModelLoaded(self.backend.device, self.backend.dtype, round(time.perf_counter() - t0, 3)))

    def submit(self, worker: str, job: Job) -> None:
        def on_group(group):
            first = group[0]
            self.emit(FrameStarted(first.index, first.prompt, first.steps,
                                   batch=[g.index for g in group] if len(group) > 1 else None))

        def on_step(frame):
            return lambda i, n: self.emit(Step(frame.index, i, n))

        self.running = run_job(self.backend, job, lambda i: read_frame_image(self.frames_dir, i),
                               self.backend.device, on_group, on_step)

    def poll(self, timeout: float) -> list[Message]:
        if not self.ready:
            self.ready = True
            return [WorkerReady(self.backend.device)]
        msg = next(self.running, None) if self.running is not None else None
        if msg is None:
            self.running = None
            return []
        return [msg]

    def alive(self) -> bool:
        return True


def make_pool(parallelism: Parallelism, backend: Backend, settings: RenderSettings, frames_dir: Path) -> WorkerPool:
    """The pool ``parallelism`` asks for. Workers render with the backend's resolved dtype and
    batch, so their frames are the same bytes as this process would render."""
    if parallelism.in_process:
        return InProcessPool(backend, frames_dir)
    devices = parallelism.worker_devices(backend.device)
    if parallelism.executor == "ray":
        from .ray_actors import RayPool

        return RayPool(settings, devices, frames_dir, parallelism.ray_address)
    from .processes import ProcessPool

    return ProcessPool(settings, devices, frames_dir)
