"""Worker processes, one per device (or per share of the CPU's cores).

Each worker loads the model once and renders the jobs the driver hands it, sending images back;
only the driver writes files and ``run.json``. Seeds come from the frames themselves, never from
worker state, so the frames are the same as a single process renders.

``FRAMEREEL_FAULT=crash:N`` makes a worker die on its first try at frame N (for the tests).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..events import EventHandler, WorkersStarted
from ..jobs import Job, JobFailed, Message, WorkerDied, WorkerPool, WorkerReady, run_job
from ..manifest import read_frame_image
from ..settings import RenderSettings
from .shares import cpu_threads, worker_labels


def _worker_main(label: str, settings: RenderSettings, threads: int, frames_dir: str, inbox, outbox) -> None:
    """A worker process: load the backend once, then render jobs until told to stop."""
    import signal

    import torch

    from ..backends import create_backend

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    if threads:
        torch.set_num_threads(threads)
    fault = os.environ.get("FRAMEREEL_FAULT", "")
    backend = create_backend(settings)
    backend.load()
    outbox.put(WorkerReady(label))
    try:
        _serve(label, backend, frames_dir, fault, inbox, outbox)
    finally:
        backend.close()  # release the device (a Tenstorrent chip stays claimed otherwise)


def _serve(label: str, backend, frames_dir: str, fault: str, inbox, outbox) -> None:
    while (job := inbox.get()) is not None:
        if job.attempts == 0 and fault.startswith("crash:") and int(fault[6:]) in {f.index for f in job.frames}:
            os._exit(3)  # fault injection for tests: die mid-job, as a segfault or an OOM kill would
        try:
            for msg in run_job(backend, job, lambda i: read_frame_image(Path(frames_dir), i), label):
                outbox.put(msg)
        except FramereelError as err:
            outbox.put(JobFailed(label, job.id, job.frames[0].index, str(err)))


class ProcessPool(WorkerPool):
    """One spawned worker process per entry of ``devices``."""

    def __init__(self, settings: RenderSettings, devices: list[str], frames_dir: Path):
        self.settings = settings
        self.devices = devices
        self.frames_dir = frames_dir
        self.workers: dict[str, tuple[Any, Any]] = {}
        self.outbox = None

    def start(self, emit: EventHandler) -> None:
        ctx = mp.get_context("spawn")
        threads = cpu_threads(self.devices)
        self.outbox = ctx.Queue()
        for label, device in zip(worker_labels(self.devices), self.devices):
            inbox = ctx.Queue()
            proc = ctx.Process(target=_worker_main, daemon=True, args=(
                label, replace(self.settings, device=device), threads, str(self.frames_dir), inbox, self.outbox))
            proc.start()
            self.workers[label] = (proc, inbox)
        emit(WorkersStarted(list(self.workers), threads))

    def submit(self, worker: str, job: Job) -> None:
        self.workers[worker][1].put(job)

    def poll(self, timeout: float) -> list[Message]:
        try:
            return [self.outbox.get(timeout=timeout)]
        except queue.Empty:
            pass
        dead = []
        for label, (proc, _) in list(self.workers.items()):
            if not proc.is_alive():
                del self.workers[label]
                dead.append(WorkerDied(label, f"worker {label} died (exit code {proc.exitcode})"))
        return dead

    def alive(self) -> bool:
        return any(proc.is_alive() for proc, _ in self.workers.values())

    def close(self, now: bool = False) -> None:
        for proc, inbox in self.workers.values():
            if now:
                proc.terminate()
            if proc.is_alive():
                inbox.put(None)
        deadline = time.time() + 5
        for proc, _ in self.workers.values():
            proc.join(timeout=max(0.1, deadline - time.time()))
            if proc.is_alive():
                proc.terminate()
