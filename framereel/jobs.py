"""Jobs, the one render loop, and the one dispatch loop every executor shares.

A :class:`Job` is data: frames that are rendered together by one worker — one frame, a batch
group that shares a UNet call, or a whole img2img chain (its frames depend on each other).
:func:`run_job` renders a job with a loaded backend; :func:`drive` hands jobs to a
:class:`WorkerPool` (this process, worker processes or Ray actors, see :mod:`framereel.executors`),
retries failed jobs, fails a failed frame's descendants and yields one :class:`Outcome` per frame.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .backends.base import Backend, Rendered, StepCallback
from .camera3d import warp_3d
from .coherence import match_colours, warp
from .depth import cached_depth
from .errors import FramereelError
from .events import EventHandler, FrameStarted, ModelLoaded
from .events import Warning as WarningEvent
from .storyboard import Frame, motion_3d

MAX_ATTEMPTS = 3  # the first try and at most two more
ImageOf = Callable[[int], Image.Image]
DepthOf = Callable[[Image.Image], Any]  # a picture → its model's inverse depth (numpy, H×W)


# ------------------------------------------------------------------ jobs


@dataclass
class Job:
    id: int
    frames: list[Frame]
    attempts: int = 0

    @property
    def kind(self) -> str:
        """``chain`` (frames that start from each other), ``batch`` (frames sharing a call) or ``frame``."""
        if any(f.depends_on is not None for f in self.frames):
            return "chain"
        if self.frames and self.frames[0].kind == "clip":
            return "clip"
        return "batch" if len(self.frames) > 1 else "frame"

    def refs(self) -> set[int]:
        """Frames outside the job whose images it starts from (a chain's first parent, colour
        references, a clip's key frames)."""
        inside = {f.index for f in self.frames}
        return {r for f in self.frames for r in (*f.starts_from(), f.color_ref) if r is not None and r not in inside}


def whole_blocks(frames: list[Frame], todo: list[Frame]) -> list[Frame]:
    """``todo`` with each cadence block it touches completed from the block's diffused frame: the
    in-betweens need that frame's diffused image, which only rendering it gives. Sorted by index."""
    starts = {f.cadence[0] for f in todo if f.cadence is not None}
    if not starts:
        return todo
    first = {start: min(f.index for f in todo if f.cadence is not None and f.cadence[0] == start) for start in starts}
    have = {f.index for f in todo}
    extra = [f for f in frames if f.cadence is not None and f.cadence[0] in first
             and f.index not in have and f.index < first[f.cadence[0]]]
    return sorted([*todo, *extra], key=lambda f: f.index)


def batch_key(frame: Frame) -> tuple | None:
    """Frames with equal keys can share one UNet call; ``None``: this frame renders alone (img2img, or a
    control image from the frame before)."""
    return None if frame.depends_on is not None else BATCH_KEYS[frame.kind](frame)


def _call_key(frame: Frame, lora: Any) -> tuple:
    """Frames sharing a call share its size, steps and guidance, their LoRAs (set per call) and their
    ControlNets with their weights (each row brings its own control image)."""
    key = (frame.width, frame.height, frame.steps, frame.guidance) + ((lora,) if lora is not None else ())
    return key + (("control", tuple(c.set() for c in frame.control)),) if frame.control else key


BATCH_KEYS: dict[str, Callable[[Frame], tuple | None]] = {
    "key": lambda f: _call_key(f, f.lora),
    # blended LoRA weights are this in-between's own
    "morph": lambda f: _call_key(f, f.lora if f.morph_lora == f.lora else (f.lora, f.morph_lora, f.morph[2])),
    "chain": lambda f: None,  # img2img from its parent
    "clip": lambda f: ("clip", f.clip),  # a clip renders whole, in one call, whatever the batch size
}


def batch_groups(frames: list[Frame], size: int | Callable[[Frame], int]) -> list[list[Frame]]:
    """Split frames, in order, into groups of at most ``size`` (a number, or one for each frame's
    size, like :meth:`Backend.batch_for`) consecutive frames that can share a UNet call; chained
    frames stay alone, so a parent is always rendered before its chain."""
    rows = size if callable(size) else lambda frame: size
    groups: list[list[Frame]] = []
    for f in frames:
        key = batch_key(f)
        last = groups[-1] if groups else None
        if key is not None and last and (len(last) < rows(f) or key[0] == "clip") and batch_key(last[0]) == key:
            last.append(f)
        else:
            groups.append([f])
    return groups


def plan_jobs(todo: list[Frame], batch: int | Callable[[Frame], int] = 1) -> list[Job]:
    """Group frames into jobs: a chained frame joins the job of the frame it starts from (a clip's
    frames, which render whole, stay in one job); up to ``batch`` consecutive independent frames that
    can share a UNet call make one job."""
    chains: list[list[Frame]] = []
    chain_of: dict[int, list[Frame]] = {}
    for f in todo:
        joins = f.depends_on if f.depends_on is not None else f.index - 1 if f.kind == "clip" and f.clip_pos else None
        chain = chain_of.get(joins) if joins is not None else None
        if chain is None:
            chain = []
            chains.append(chain)
        chain.append(f)
        chain_of[f.index] = chain
    groups: list[list[Frame]] = []
    independent: list[Frame] = []
    for chain in chains:
        if len(chain) == 1 and chain[0].depends_on is None:
            independent.append(chain[0])
            continue
        groups += batch_groups(independent, batch)
        independent = []
        groups.append(chain)
    groups += batch_groups(independent, batch)
    return [Job(i, g) for i, g in enumerate(groups)]


# ------------------------------------------------------------------ rendering a job


def move(image: Image.Image, motion: tuple | None, depth_of: DepthOf | None = None,
         depth_from: Image.Image | None = None) -> Image.Image:
    """``image`` moved by a frame's ``motion``: the 2D warp, or the 3D camera through the depth of
    ``depth_from`` (default: the image itself)."""
    camera = motion_3d(motion)
    if camera is not None:
        if not camera.pop("depth_warping"):
            return warp_3d(image, None, **camera)
        if depth_of is None:  # refused before the run (Backend.check); never moved flat in silence
            raise FramereelError('a "mode": "3D" camera with depth warping needs --depth-model PATH_OR_ID')
        return warp_3d(image, depth_of(image if depth_from is None else depth_from), **camera)
    return warp(image, *motion) if motion is not None else image


def chain_init_image(frame: Frame, image_of: ImageOf, depth_of: DepthOf | None = None) -> Image.Image:
    """A chained frame's starting image: its parent's, warped by its motion (through the parent's
    depth, from ``depth_of``, for a 3D camera) and colour-matched."""
    image = move(image_of(frame.parent), frame.motion, depth_of)
    if frame.color_ref is not None:
        image = match_colours(image, image_of(frame.color_ref), frame.color_space or "rgb")
    return image


def clip_key_images(frame: Frame, image_of: ImageOf) -> dict[str, Image.Image]:
    """A clip's key frames as images, fitted (scaled and centre-cropped) to the clip's size:
    ``{"first": …, "last": …}`` for those it has."""
    from PIL import ImageOps

    images = {}
    for key, ref in frame.clip.keys:
        image = image_of(ref) if isinstance(ref, int) else Image.open(ref).convert("RGB")
        if image.size != (frame.width, frame.height):
            image = ImageOps.fit(image, (frame.width, frame.height), Image.Resampling.LANCZOS)
        images[key.removesuffix("_frame")] = image
    return images


def render_group(backend: Backend, group: list[Frame], image_of: ImageOf,
                 on_step: StepCallback | None = None, carried: Carried | None = None) -> list[Rendered]:
    """Render a group from :func:`batch_groups`: frames sharing one call, or one chained frame
    (``carried``: the cadence blocks' images so far, see :func:`render_cadence`)."""
    f = group[0]
    if f.kind == "clip":
        return backend.render_clip(group, on_step=on_step, **clip_key_images(f, image_of))
    if f.depends_on is None:
        return backend.render_batch(group, on_step=on_step)
    if f.parent is None:  # a control image from the frame before: the backend takes its images
        return backend.render_batch(group, on_step=on_step, image_of=image_of)
    extra = {"image_of": image_of} if f.control else {}  # only backends that take "control" get one
    if f.cadence is not None:
        rendered = render_cadence(backend, f, image_of, {} if carried is None else carried, on_step)
    else:
        rendered = backend.render(f, on_step=on_step, init_image=chain_init_image(f, image_of, backend_depth(backend)),
                                  **extra)
    return [with_depth_map(backend, f, image_of, rendered)]


DEPTH_FACT = "depth_map"  # a 3D frame's facts: its parent's depth map, which the driver writes to depth/


def with_depth_map(backend: Backend, frame: Frame, image_of: ImageOf, rendered: Rendered) -> Rendered:
    """``rendered`` with the depth map of the picture the frame's 3D camera moved (its parent's; a
    cache hit unless a cadence block moved its diffused image instead), for the gallery's depth layer."""
    depth_of = backend_depth(backend)
    if depth_of is None or not (motion_3d(frame.motion) or {}).get("depth_warping"):
        return rendered
    image, facts = rendered
    return image, {**facts, DEPTH_FACT: depth_of(image_of(frame.parent))}


Carried = dict[int, tuple[Image.Image, Image.Image]]  # cadence block → (previous, next) diffused image, moved


def render_cadence(backend: Backend, frame: Frame, image_of: ImageOf, carried: Carried,
                   on_step: StepCallback | None = None) -> Rendered:
    """A frame of a cadence block, as Deforum's render loop makes it: at the block's diffused frame
    the previous image (the frame before, moved) and the newly diffused one start; each frame after
    moves both by its motion (3D: through the depth of the diffused one); frame j of N shows
    ``(1 - (j+1)/N)·previous + ((j+1)/N)·diffused``, rounded as OpenCV writes it."""
    start, n = frame.cadence
    depth_of = backend_depth(backend)
    if frame.index == start:
        extra = {"image_of": image_of} if frame.control else {}  # a "previous" control image: the frame before
        diffused, facts = backend.render(frame, on_step=on_step, init_image=chain_init_image(frame, image_of, depth_of),
                                         **extra)
        diffused = diffused.convert("RGB")
        previous = move(image_of(frame.parent), frame.motion, depth_of, depth_from=diffused)
    else:
        if start not in carried:
            raise RuntimeError(f"frame {frame.index}: its cadence block's diffused frame {start} is not in this job")
        previous, diffused = carried[start]
        previous = move(previous, frame.motion, depth_of, depth_from=diffused)
        diffused, facts = move(diffused, frame.motion, depth_of), {}
    carried[start] = (previous, diffused)
    t = (frame.index - start + 1) / n
    mixed = np.asarray(previous, np.float64) * (1 - t) + np.asarray(diffused, np.float64) * t
    return Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8)), facts


def backend_depth(backend: Backend) -> DepthOf | None:
    """The depth maps a 3D camera moves through: ``--depth-model``'s, on the backend's device
    (cached by the picture's bytes); None without a depth model."""
    spec = getattr(backend.settings, "depth_model", None)
    if not spec:
        return None
    return lambda image: cached_depth(image, spec, backend.device)


def per_frame_seconds(elapsed: float, results: list[Rendered]) -> float:
    """Rendering seconds per frame of a group: its share of the call, compiling (reported once
    in the first frame's ``compile_seconds``) left out."""
    return (elapsed - results[0][1].get("compile_seconds", 0.0)) / len(results)


@dataclass(frozen=True)
class FrameRendered:
    """A message from a worker: one frame of a job is rendered."""

    worker: str
    job: int
    index: int
    image: Image.Image
    facts: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class JobFailed:
    """A message from a worker: the job failed at frame ``index`` (its group and what follows are unfinished)."""

    worker: str
    job: int
    index: int
    error: str
    refused: bool = False  # a FramereelError (the user's input is refused): the run stops, no retries


@dataclass(frozen=True)
class JobDone:
    worker: str
    job: int


@dataclass(frozen=True)
class WorkerReady:
    worker: str


@dataclass(frozen=True)
class WorkerDied:
    worker: str
    why: str


Message = FrameRendered | JobFailed | JobDone | WorkerReady | WorkerDied


def run_job(backend: Backend, job: Job, image_of: ImageOf, worker: str,
            on_group: Callable[[list[Frame]], None] | None = None,
            on_step: Callable[[Frame], StepCallback] | None = None) -> Iterator[Message]:
    """Render a job's frames in order with a loaded backend: one :class:`FrameRendered` per frame,
    then :class:`JobDone`, or a :class:`JobFailed` at the first group that fails. ``image_of`` gives
    images of frames finished before the job; frames rendered inside it are kept in memory."""
    images: dict[int, Image.Image] = {}
    carried: Carried = {}

    def lookup(index: int) -> Image.Image:
        if index not in images:
            images[index] = image_of(index)
        return images[index]

    for group in batch_groups(job.frames, backend.batch_for):
        if on_group is not None:
            on_group(group)
        t0 = time.perf_counter()
        try:
            results = render_group(backend, group, lookup, on_step(group[0]) if on_step else None, carried)
        except FramereelError:
            raise
        except Exception as err:  # a failed frame says why; the dispatcher retries or fails it
            yield JobFailed(worker, job.id, group[0].index, f"{type(err).__name__}: {err}".splitlines()[0])
            return
        seconds = per_frame_seconds(time.perf_counter() - t0, results)
        for f, (image, facts) in zip(group, results):
            images[f.index] = image.convert("RGB")
            yield FrameRendered(worker, job.id, f.index, images[f.index], facts, seconds)
    yield JobDone(worker, job.id)


def worker_messages(backend: Backend, job: Job, image_of: ImageOf, worker: str) -> Iterator[Message]:
    """:func:`run_job` in a worker: a refusal (FramereelError) becomes a refused :class:`JobFailed`,
    which stops the run with that one line in the driver, as it would in-process."""
    try:
        yield from run_job(backend, job, image_of, worker)
    except FramereelError as err:
        yield JobFailed(worker, job.id, job.frames[0].index, str(err), refused=True)


# ------------------------------------------------------------------ dispatching jobs to workers


@dataclass(frozen=True)
class Outcome:
    """What became of one frame: ``image`` and ``facts`` when rendered, else ``error``."""

    frame: Frame
    device: str = ""
    image: Image.Image | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


class WorkerPool(ABC):
    """Workers that render jobs: this process, worker processes or Ray actors."""

    remote = True  # workers report no per-step progress

    @abstractmethod
    def start(self, emit: EventHandler) -> None:
        """Start the workers; each reports :class:`WorkerReady` through :meth:`poll` once loaded."""

    @abstractmethod
    def submit(self, worker: str, job: Job) -> None:
        """Hand ``job`` to an idle worker."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Message]:
        """Messages from the workers, waiting at most ``timeout`` seconds for the first."""

    @abstractmethod
    def alive(self) -> bool:
        """Whether any worker is left."""

    def close(self, now: bool = False) -> None:
        """Stop every worker (``now``: without letting them finish their job, e.g. on Ctrl-C)."""
        return None


class JobQueue:
    """Jobs waiting for a worker. A failed job comes back with its unfinished frames, at the
    front, until it has been tried ``MAX_ATTEMPTS`` times; then its frames fail."""

    def __init__(self, jobs: list[Job]):
        self.pending = deque(jobs)

    def __bool__(self) -> bool:
        return bool(self.pending)

    def take(self, ready: Callable[[Job], bool] = lambda job: True) -> Job | None:
        """The first waiting job that is ``ready`` (its key frames are rendered), or None."""
        for i, job in enumerate(self.pending):
            if ready(job):
                del self.pending[i]
                return job
        return None

    def fail_waiting_on(self, failed: set[int]) -> list[Outcome]:
        """Fail the jobs that start from a frame that failed (a clip whose key still failed)."""
        outcomes = []
        for job in [j for j in self.pending if j.refs() & failed]:
            self.pending.remove(job)
            ref = min(job.refs() & failed)
            outcomes += [Outcome(f, error=f"frame {ref}, which it starts from, failed") for f in job.frames]
        return outcomes

    def give_back(self, job: Job, done: set[int], why: str, emit: EventHandler, worker: str = "") -> list[Outcome]:
        """Requeue the unfinished rest of ``job``; returns the failed frames once it is out of tries."""
        rest = [f for f in job.frames if f.index not in done or job.kind == "clip"]  # a clip goes back whole
        rest = whole_blocks(job.frames, rest)
        job.attempts += 1
        if job.attempts < MAX_ATTEMPTS:
            which = f"frame {rest[0].index} goes" if len(rest) == 1 else \
                f"frames {', '.join(str(f.index) for f in rest)} go"
            emit(WarningEvent(f"{which} back to the queue ({why})"))
            self.pending.appendleft(Job(job.id, rest, job.attempts))
            return []
        failed: set[int] = set()
        outcomes = []
        for f in rest:
            if f.depends_on in failed:
                error = f"its parent frame {f.depends_on} failed"
            else:
                error = f"failed {MAX_ATTEMPTS} times; last: {why}"
            failed.add(f.index)
            outcomes.append(Outcome(f, worker, error=error))
        return outcomes


def drive(pool: WorkerPool, jobs: list[Job], emit: EventHandler) -> Iterator[Outcome]:
    """Run ``jobs`` on ``pool``'s workers; yields one :class:`Outcome` per frame, in the order they finish."""
    frames = {f.index: f for job in jobs for f in job.frames}
    queue = JobQueue(jobs)
    busy: dict[str, Job] = {}
    idle: list[str] = []
    done: set[int] = set()
    failed: set[int] = set()

    def ready(job: Job) -> bool:  # a job waits for the frames of this run it starts from
        return all(r in done or r not in frames for r in job.refs())

    pool.start(emit)
    while queue or busy:
        for outcome in queue.fail_waiting_on(failed):
            failed.add(outcome.frame.index)
            yield outcome
        while idle and queue:
            job = queue.take(ready)
            if job is None:
                break
            worker = idle.pop(0)
            busy[worker] = job
            if pool.remote:
                first = job.frames[0]
                emit(FrameStarted(first.index, first.prompt, first.steps, device=worker, worker=True))
            pool.submit(worker, job)
        if not pool.alive():
            for job in [*queue.pending, *busy.values()]:
                yield from (Outcome(f, error="every worker died") for f in job.frames if f.index not in done)
            return
        for msg in pool.poll(0.5):
            if isinstance(msg, WorkerReady):
                idle.append(msg.worker)
                if pool.remote:
                    emit(ModelLoaded(device=msg.worker, dtype="", worker=True))
            elif isinstance(msg, FrameRendered):
                done.add(msg.index)
                yield Outcome(frames[msg.index], msg.worker, msg.image, msg.facts, msg.seconds)
            elif isinstance(msg, JobDone):
                busy.pop(msg.worker, None)
                idle.append(msg.worker)
            elif isinstance(msg, JobFailed) and msg.refused:
                raise FramereelError(msg.error)
            elif isinstance(msg, JobFailed | WorkerDied):
                job = busy.pop(msg.worker, None)
                if isinstance(msg, JobFailed):
                    idle.append(msg.worker)
                why = msg.error if isinstance(msg, JobFailed) else msg.why
                if job is not None:
                    for outcome in queue.give_back(job, done, why, emit, msg.worker):
                        failed.add(outcome.frame.index)
                        yield outcome
