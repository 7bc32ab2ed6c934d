"""Render on a Ray cluster: the same jobs and worker code as local workers, as Ray actors.

One actor per device (``num_gpus=1`` for CUDA, a ``tenstorrent`` custom resource per chip, or a
share of the CPUs). Actors get the images a job starts from as PNG bytes and send images back, so
no shared filesystem is assumed; only the driver writes the output folder and ``run.json``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from .backends import RenderSettings
from .errors import FramereelError
from .manifest import frame_name
from .storyboard import Frame
from .workers import Job, plan_jobs, render_job, requeue


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class RenderActor:
    """Loads the backend once; renders jobs and returns their images as PNG bytes."""

    def __init__(self, settings: RenderSettings, threads: int):
        import torch

        from .backends import create_backend

        if threads:
            torch.set_num_threads(threads)
        self.backend = create_backend(settings)
        self.backend.load()

    def run(self, job: Job, refs: dict[int, bytes]) -> list[tuple]:
        def image_of(index: int) -> Image.Image:
            return Image.open(io.BytesIO(refs[index])).convert("RGB")

        fault = os.environ.get("FRAMEREEL_FAULT", "")  # as in workers.py: die mid-job, for the tests
        if job.attempts == 0 and fault.startswith("crash:") and int(fault[6:]) in {f.index for f in job.frames}:
            os._exit(3)
        out = []
        for result in render_job(self.backend, job, image_of):
            if result[0] == "failed":
                out.append(result)
                break
            _, index, image, facts, seconds = result
            out.append(("frame", index, _png(image), facts, seconds))
        return out


def _resources(device: str, cpu_share: int) -> dict[str, Any]:
    if device.startswith("cuda"):
        return {"num_gpus": 1, "num_cpus": 1}
    if device.startswith("tt"):
        return {"resources": {"tenstorrent": 1}, "num_cpus": 1}
    return {"num_cpus": cpu_share}


def render_with_ray(
    todo: list[Frame],
    frames_dir: Path,
    settings: RenderSettings,
    devices: list[str],
    accept: Callable[[Frame, Image.Image, dict[str, Any], float, str], None],
    reject: Callable[[Frame, str], None],
    emit: Callable[..., None],
    address: str | None = None,
) -> None:
    """Render ``todo`` with one Ray actor per entry of ``devices``, on the cluster at ``address``
    (``auto`` for a running one; none starts a local cluster)."""
    try:
        import ray
    except ImportError:
        raise FramereelError("--executor ray needs Ray: pip install 'framereel[ray]'") from None
    from .workers import worker_labels

    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True,
                                  "logging_level": "ERROR"}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = os.cpu_count() or 1
        try:
            ray.init(**kwargs)
        except ConnectionError as err:
            raise FramereelError(f"could not reach the Ray cluster at {address}: {err}; check --ray-address") from None
        started = True
    cpu_workers = sum(1 for d in devices if d.startswith("cpu"))
    share = max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, cpu_workers))
    actor_cls = ray.remote(RenderActor)
    labels = worker_labels(devices)
    actors = {label: actor_cls.options(**_resources(d, share)).remote(replace(settings, device=d),
                                                                        share if d.startswith("cpu") else 0)
              for label, d in zip(labels, devices)}
    emit("workers_started", workers=labels, threads=share, executor="ray")
    frames = {f.index: f for f in todo}
    pending = plan_jobs(todo, settings.batch or 1)
    in_flight: dict[Any, tuple[str, Job]] = {}
    idle = list(actors)
    try:
        while pending or in_flight:
            while idle and pending:
                label, job = idle.pop(0), pending.pop(0)
                inside = {f.index for f in job.frames}
                outside = {r for f in job.frames for r in (f.parent, f.color_ref) if r is not None and r not in inside}
                refs = {r: (frames_dir / frame_name(r)).read_bytes() for r in outside}
                in_flight[actors[label].run.remote(job, refs)] = (label, job)
                emit("frame_start", index=job.frames[0].index, prompt=job.frames[0].prompt,
                     steps=job.frames[0].steps, device=label)
            if not in_flight:
                for job in pending:
                    for f in job.frames:
                        reject(f, "no Ray actor left to render it")
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            label, job = in_flight.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayError as err:
                actors.pop(label, None)
                requeue(job, set(), pending, reject, emit, f"Ray actor {label} failed ({type(err).__name__})")
                continue
            idle.append(label)
            done = set()
            for result in results:
                if result[0] == "failed":
                    requeue(job, done, pending, reject, emit, result[2])
                    break
                _, index, data, facts, seconds = result
                done.add(index)
                accept(frames[index], Image.open(io.BytesIO(data)).convert("RGB"), facts, seconds, label)
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started and not address:
            ray.shutdown()
