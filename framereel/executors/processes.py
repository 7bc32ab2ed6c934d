"""Worker processes, one per device (or per share of the CPU's cores).

Each worker loads the model once and renders the jobs the driver hands it, sending images back;
only the driver writes files and ``run.json``. Seeds come from the frames themselves, never from
worker state, so the frames are the same as a single process renders.

Each worker writes to its own pipe, read only by the driver: a worker that dies mid-message (a
segfault, an OOM kill) can break only its own pipe. (With one queue shared by every worker, a
worker killed while its queue thread held the queue's lock blocked the others' messages for good.)

``FRAMEREEL_FAULT=crash:N`` makes a worker die on its first try at frame N, ``torn:N`` die halfway
through writing a message (for the tests).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ..events import EventHandler, WorkersStarted
from ..jobs import Job, Message, WorkerDied, WorkerPool, WorkerReady, worker_messages
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
    outbox.send(WorkerReady(label))
    try:
        _serve(label, backend, frames_dir, fault, inbox, outbox)
    finally:
        backend.close()  # release the device (a Tenstorrent chip stays claimed otherwise)


def _serve(label: str, backend, frames_dir: str, fault: str, inbox, outbox) -> None:
    while (job := inbox.get()) is not None:
        kind, _, frame = fault.partition(":")
        if job.attempts == 0 and kind in ("crash", "torn") and int(frame) in {f.index for f in job.frames}:
            if kind == "torn":  # a message's length header and a few of its bytes, then nothing
                os.write(outbox.fileno(), struct.pack("!i", 4096) + b"torn")
            os._exit(3)  # fault injection for tests: die mid-job, as a segfault or an OOM kill would
        for msg in worker_messages(backend, job, lambda i: read_frame_image(Path(frames_dir), i), label):
            outbox.send(msg)


class ProcessPool(WorkerPool):
    """One spawned worker process per entry of ``devices``."""

    def __init__(self, settings: RenderSettings, devices: list[str], frames_dir: Path):
        self.settings = settings
        self.devices = devices
        self.frames_dir = frames_dir
        self.workers: dict[str, tuple[Any, Any]] = {}
        self.outboxes: dict[str, Connection] = {}  # each worker's pipe to the driver

    def start(self, emit: EventHandler) -> None:
        ctx = mp.get_context("spawn")
        threads = cpu_threads(self.devices)
        for label, device in zip(worker_labels(self.devices), self.devices):
            inbox = ctx.Queue()
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, daemon=True, args=(
                label, replace(self.settings, device=device), threads, str(self.frames_dir), inbox, writer))
            proc.start()
            writer.close()  # the worker holds the only writer: its pipe ends when it does
            self.workers[label] = (proc, inbox)
            self.outboxes[label] = reader
        emit(WorkersStarted(list(self.workers), threads))

    def submit(self, worker: str, job: Job) -> None:
        self.workers[worker][1].put(job)

    def poll(self, timeout: float) -> list[Message]:
        labels = {conn: label for label, conn in self.outboxes.items()}
        messages: list[Message] = []
        for conn in wait(list(labels), timeout):
            try:
                messages.append(conn.recv())
            except (EOFError, OSError):  # the worker is gone, mid-message or after its last one
                del self.outboxes[labels[conn]]
        if messages:
            return messages
        dead = []
        for label, (proc, _) in list(self.workers.items()):
            if label not in self.outboxes or not proc.is_alive():
                proc.join(timeout=5)
                del self.workers[label]
                self.outboxes.pop(label, None)
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
        for conn in self.outboxes.values():
            conn.close()
