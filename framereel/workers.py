"""Render in several worker processes, one per device (or per share of the CPU's cores).

Each worker loads the model once and renders *jobs* handed out by the driver: a job is one
independent frame, or a whole img2img chain (its frames depend on each other, so one worker
renders them in order). Workers send images back; only the driver writes files and ``run.json``.
Seeds come from the frames themselves, never from worker state, so the frames are the same as a
single process renders. A worker that dies or fails a job gives the job back to the queue, which
tries it at most twice more.

``FRAMEREEL_FAULT=crash:N`` makes a worker die on its first try at frame N (for the tests).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image

from .backends import RenderSettings, batch_groups
from .manifest import read_frame_image
from .storyboard import Frame

MAX_ATTEMPTS = 3  # the first try and at most two more


@dataclass
class Job:
    id: int
    frames: list[Frame]
    attempts: int = 0


def plan_jobs(todo: list[Frame], batch: int = 1) -> list[Job]:
    """Group frames into jobs: a chained frame joins the job of the frame it starts from; up to
    ``batch`` independent frames that can share a UNet call make one job."""
    chains: list[list[Frame]] = []
    chain_of: dict[int, list[Frame]] = {}
    for f in todo:
        chain = chain_of.get(f.parent) if f.parent is not None else None
        if chain is None:
            chain = []
            chains.append(chain)
        chain.append(f)
        chain_of[f.index] = chain
    jobs: list[Job] = []
    independent: list[Frame] = []  # consecutive one-frame jobs, grouped by the runner's batching rule

    def flush() -> None:
        jobs.extend(Job(len(jobs) + i, group) for i, group in enumerate(batch_groups(independent, batch)))
        independent.clear()

    for chain in chains:
        if len(chain) == 1 and chain[0].parent is None:
            independent.append(chain[0])
        else:
            flush()
            jobs.append(Job(len(jobs), chain))
    flush()
    return jobs


def worker_labels(devices: list[str]) -> list[str]:
    """Unique names for workers: ``cpu`` twice becomes ``cpu:0``, ``cpu:1``."""
    return [f"{d}:{devices[:i].count(d)}" if devices.count(d) > 1 and ":" not in d else d for i, d in enumerate(devices)]


def requeue(job: Job, done: set[int], pending: list[Job], reject, emit, why: str) -> None:
    """Give a failed job's unfinished frames back to the front of the queue, or fail them after
    ``MAX_ATTEMPTS`` tries."""
    rest = [f for f in job.frames if f.index not in done]
    job.attempts += 1
    if job.attempts >= MAX_ATTEMPTS:
        for f in rest:
            reject(f, f"failed {MAX_ATTEMPTS} times; last: {why}")
        return
    which = f"frame {rest[0].index} goes" if len(rest) == 1 else f"frames {', '.join(str(f.index) for f in rest)} go"
    emit("warning", message=f"{which} back to the queue ({why})")
    pending.insert(0, Job(job.id, rest, job.attempts))


def render_job(backend, job: Job, image_of: Callable[[int], Image.Image]):
    """Render a job's frames in order with a loaded backend; yields ``("frame", index, image, facts,
    seconds)`` per frame, or ``("failed", index, message)`` and stops. ``image_of`` gives images of
    frames finished before the job (a chain's first parent, its colour reference)."""
    from .runner import per_frame_seconds, render_group

    images: dict[int, Image.Image] = {}

    def lookup(index: int) -> Image.Image:
        if index not in images:
            images[index] = image_of(index)
        return images[index]

    for group in batch_groups(job.frames, getattr(backend, "batch", 1)):
        t0 = time.perf_counter()
        try:
            results = render_group(backend, group, lookup)
        except Exception as err:  # reported to the driver, which retries the job elsewhere
            yield ("failed", group[0].index, f"{type(err).__name__}: {err}".splitlines()[0])
            return
        seconds = per_frame_seconds(time.perf_counter() - t0, results)
        for f, (image, facts) in zip(group, results):
            images[f.index] = image.convert("RGB")
            yield ("frame", f.index, images[f.index], facts, seconds)


def _worker_main(label: str, settings: RenderSettings, threads: int, frames_dir: str, inbox, outbox) -> None:
    """A worker process: load the backend once, then render jobs until told to stop."""
    import signal

    import torch

    from .backends import create_backend

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    if threads:
        torch.set_num_threads(threads)
    fault = os.environ.get("FRAMEREEL_FAULT", "")
    backend = create_backend(settings)
    backend.load()
    outbox.put(("ready", label))

    def from_disk(index: int) -> Image.Image:
        return read_frame_image(Path(frames_dir), index)

    while True:
        job = inbox.get()
        if job is None:
            return
        if job.attempts == 0 and fault.startswith("crash:") and int(fault[6:]) in {f.index for f in job.frames}:
            os._exit(3)  # fault injection for tests: die mid-job, as a segfault or an OOM kill would
        for result in render_job(backend, job, from_disk):
            if result[0] == "failed":
                outbox.put(("failed", label, job.id, result[1], result[2]))
                break
            _, index, image, facts, seconds = result
            outbox.put(("frame", label, job.id, index, image.tobytes(), image.size, image.mode, facts, seconds))
        else:
            outbox.put(("job_done", label, job.id))


def render_in_workers(
    todo: list[Frame],
    frames_dir: Path,
    settings: RenderSettings,
    devices: list[str],
    accept: Callable[[Frame, Image.Image, dict[str, Any], float, str], None],
    reject: Callable[[Frame, str], None],
    emit: Callable[..., None],
) -> None:
    """Render ``todo`` with one worker process per entry of ``devices``; ``accept``/``reject`` each frame."""
    ctx = mp.get_context("spawn")
    labels = worker_labels(devices)
    cpu_workers = sum(1 for d in devices if d.startswith("cpu"))
    # CPU workers share the cores; an explicit OMP_NUM_THREADS (the user's choice) wins
    threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else 0)
    outbox = ctx.Queue()
    workers: dict[str, tuple[Any, Any]] = {}
    for label, device in zip(labels, devices):
        inbox = ctx.Queue()
        proc = ctx.Process(target=_worker_main, daemon=True,
                           args=(label, replace(settings, device=device), threads, str(frames_dir), inbox, outbox))
        proc.start()
        workers[label] = (proc, inbox)
    emit("workers_started", workers=labels, threads=threads)

    frames = {f.index: f for f in todo}
    pending = plan_jobs(todo, settings.batch or 1)
    busy: dict[str, Job] = {}
    idle: list[str] = []
    done_frames: set[int] = set()

    def give_back(job: Job, why: str) -> None:
        requeue(job, done_frames, pending, reject, emit, why)

    try:
        while pending or busy:
            while idle and pending:
                label = idle.pop(0)
                job = pending.pop(0)
                busy[label] = job
                workers[label][1].put(job)
                emit("frame_start", index=job.frames[0].index, prompt=job.frames[0].prompt,
                     steps=job.frames[0].steps, device=label)
            alive = [lb for lb, (p, _) in workers.items() if p.is_alive()]
            if not alive:
                for job in pending + list(busy.values()):
                    for f in job.frames:
                        if f.index not in done_frames:
                            reject(f, "every worker process died")
                return
            try:
                msg = outbox.get(timeout=0.5)
            except queue.Empty:
                for label, (proc, _) in list(workers.items()):
                    if not proc.is_alive():
                        del workers[label]
                        if label in idle:
                            idle.remove(label)
                        if label in busy:
                            give_back(busy.pop(label), f"worker {label} died (exit code {proc.exitcode})")
                continue
            kind, label = msg[0], msg[1]
            if kind == "ready":
                idle.append(label)
                emit("model_loaded", device=label, seconds=None, dtype=settings.dtype)
            elif kind == "frame":
                _, _, _, index, data, size, mode, facts, seconds = msg
                done_frames.add(index)
                accept(frames[index], Image.frombytes(mode, size, data), facts, seconds, label)
            elif kind == "failed":
                job = busy.pop(label)
                idle.append(label)
                give_back(job, msg[4])
            elif kind == "job_done":
                busy.pop(label, None)
                idle.append(label)
    except KeyboardInterrupt:
        for proc, _ in workers.values():
            proc.terminate()
        raise
    finally:
        for proc, inbox in workers.values():
            if proc.is_alive():
                inbox.put(None)
        deadline = time.time() + 5
        for proc, _ in workers.values():
            proc.join(timeout=max(0.1, deadline - time.time()))
            if proc.is_alive():
                proc.terminate()
