"""Ray actors: the same jobs and render loop as worker processes, one actor per device.

One actor per device (``num_gpus=1`` for CUDA, a ``tenstorrent`` custom resource per chip, or a
share of the CPUs). Actors get the images a job starts from as PNG bytes and send images back, so
no shared filesystem is assumed; only the driver writes the output folder and ``run.json``.
"""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..events import EventHandler, WorkersStarted
from ..jobs import Job, Message, WorkerDied, WorkerPool, WorkerReady, worker_messages
from ..manifest import frame_name
from ..settings import RenderSettings
from .shares import cpu_threads, worker_labels


class RenderActor:
    """Loads the backend once; renders jobs and returns their messages."""

    def __init__(self, settings: RenderSettings, threads: int):
        import torch

        from ..backends import create_backend

        if threads:
            torch.set_num_threads(threads)
        self.backend = create_backend(settings)
        self.backend.load()

    def run(self, label: str, job: Job, refs: dict[int, bytes]) -> list[Message]:
        def image_of(index: int) -> Image.Image:
            return Image.open(io.BytesIO(refs[index])).convert("RGB")

        fault = os.environ.get("FRAMEREEL_FAULT", "")  # as in processes.py: die mid-job, for the tests
        if job.attempts == 0 and fault.startswith("crash:") and int(fault[6:]) in {f.index for f in job.frames}:
            os._exit(3)
        return list(worker_messages(self.backend, job, image_of, label))


def _resources(device: str, cpu_share: int) -> dict[str, Any]:
    if device.startswith("cuda"):
        return {"num_gpus": 1, "num_cpus": 1}
    if device.startswith("tt"):
        return {"resources": {"tenstorrent": 1}, "num_cpus": 1}
    return {"num_cpus": cpu_share}


class RayPool(WorkerPool):
    """One Ray actor per entry of ``devices``, on the cluster at ``address`` (``auto`` for a running
    one; none starts a local cluster)."""

    def __init__(self, settings: RenderSettings, devices: list[str], frames_dir: Path, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise FramereelError("--executor ray needs Ray: pip install 'framereel[ray]'") from None
        self.ray = ray
        self.settings, self.devices, self.frames_dir, self.address = settings, devices, frames_dir, address
        self.actors: dict[str, Any] = {}
        self.in_flight: dict[Any, str] = {}
        self.started = False
        self.pending: list[Message] = []

    def _init(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True,
                                  "logging_level": "ERROR"}
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs["num_cpus"] = os.cpu_count() or 1
        try:
            ray.init(**kwargs)
        except ConnectionError as err:
            raise FramereelError(f"could not reach the Ray cluster at {self.address}: {err}; "
                                 "check --ray-address") from None
        self.started = True

    def start(self, emit: EventHandler) -> None:
        self._init()
        share = cpu_threads(self.devices, int(self.ray.cluster_resources().get("CPU", 1)))
        actor_cls = self.ray.remote(RenderActor)
        for label, d in zip(worker_labels(self.devices), self.devices):
            self.actors[label] = actor_cls.options(**_resources(d, share or 1)).remote(
                replace(self.settings, device=d), share if d.startswith("cpu") else 0)
            self.pending.append(WorkerReady(label))  # actors load lazily; their first job waits for it
        emit(WorkersStarted(list(self.actors), share, executor="ray"))

    def submit(self, worker: str, job: Job) -> None:
        refs = {r: (self.frames_dir / frame_name(r)).read_bytes() for r in job.refs()}
        self.in_flight[self.actors[worker].run.remote(worker, job, refs)] = worker

    def poll(self, timeout: float) -> list[Message]:
        if self.pending:
            out, self.pending = self.pending, []
            return out
        if not self.in_flight:
            return []
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=timeout)
        if not ready:
            return []
        worker = self.in_flight.pop(ready[0])
        try:
            return self.ray.get(ready[0])
        except self.ray.exceptions.RayError as err:
            self.actors.pop(worker, None)
            return [WorkerDied(worker, f"Ray actor {worker} failed ({type(err).__name__})")]

    def alive(self) -> bool:
        return bool(self.actors)

    def close(self, now: bool = False) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor)
        if self.started and not self.address:
            self.ray.shutdown()
