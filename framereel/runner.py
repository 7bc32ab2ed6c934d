"""``render()``: storyboard → frames on disk, resumable, through one backend.

It reads like a diffusers pipeline's ``__call__``: numbered stages, each a function below, called
in order from :func:`render`:

1. lock the output folder (:func:`~framereel.manifest.folder_lock`); a run refused before its first
   frame takes away again a folder it made (:func:`refusal_undoes`);
2. read what is on disk (:func:`read_output_folder`): run.json and each frame's PNG hash;
3. resolve every frame's parameters against the model (:class:`~framereel.identity.RunIdentity`);
4. :func:`plan` — which frames are finished, which to render (pure, unit-tested on its own);
5. write the run record (:func:`write_run_record`);
6. render: ``for outcome in drive(pool, jobs): write_frame(outcome)`` — :func:`write_frame` is the one
   function that writes a frame file;
7. close: record the batch size used, release the device.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ._version import __version__
from .backends import Backend, create_backend
from .backends.lora import with_storyboard_loras
from .clips import whole_clips
from .depth import depth_picture
from .errors import FramereelError
from .events import EventHandler, FrameDone, FrameFailed, FrameSkipped, ModelLoaded, RunStarted, ignore
from .events import Warning as WarningEvent
from .executors import make_pool
from .gallery import DATA, PAGE
from .identity import RunIdentity
from .jobs import DEPTH_FACT, Outcome, drive, plan_jobs, whole_blocks
from .manifest import (
    DEPTH_DIR,
    FRAMES_DIR,
    HASH_KEY,
    Manifest,
    atomic_write_bytes,
    check_same_storyboard,  # by content: a renamed or copied storyboard is the same run
    file_digest,
    folder_lock,
    frame_index,
    frame_name,
    missing_folders,
    move_aside,
    png_bytes,
    read_png_hash,
    remove_stale_temp_files,
    undo_new_folder,
    write_control_maps,
    write_frame_file,
)
from .settings import Parallelism, RenderSettings
from .storyboard import Frame, Storyboard


@dataclass
class RunResult:
    out_dir: Path
    total: int
    rendered: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    devices: dict[str, int] = field(default_factory=dict)  # frames rendered per device
    load_seconds: float = 0.0  # of ``seconds``, loading the model (workers don't time theirs)

    @property
    def seconds_per_frame(self) -> float | None:
        return self.seconds / len(self.rendered) if self.rendered else None


@dataclass(frozen=True)
class OnDisk:
    """What the output folder holds before a run."""

    manifest: Manifest
    hashes: dict[int, str]  # frame index → the parameter hash in its PNG (frames that decode fully)
    files: dict[int, str]  # frame index → a digest of the file's bytes (what a chained child starts from)


@dataclass(frozen=True)
class Plan:
    """Which frames a run renders. ``digests`` is each frame's hash; "" for a chained frame whose
    parent renders in this run (known once the parent's image is on disk)."""

    frames: list[Frame]
    digests: dict[int, str]
    finished: frozenset[int]
    todo: list[Frame]
    skipped: list[int]


def render(
    storyboard: Storyboard,
    out_dir: str | Path,
    settings: RenderSettings | None = None,
    *,
    redo: Iterable[int] = (),
    force: bool = False,
    only: Iterable[int] | None = None,
    parallelism: Parallelism | None = None,
    on_event: EventHandler | None = None,
    backend: Backend | None = None,
) -> RunResult:
    """Render every frame of ``storyboard`` that is not already finished into ``out_dir/frames``.

    Finished frames (same parameters, PNG decodes) are skipped; ``redo`` forces some frames and
    ``force`` all of them; ``only`` limits the run to some frames. A replaced frame is moved to
    ``out_dir/superseded/``, never deleted. ``parallelism`` renders in worker processes or Ray
    actors (frames are identical either way). ``on_event`` gets :mod:`framereel.events` objects.
    ``backend`` reuses an already created backend (its model stays loaded for the caller).
    """
    settings = (settings or RenderSettings()).check()
    parallelism = (parallelism or Parallelism()).check()
    emit = on_event or ignore
    out = Path(out_dir)
    made = missing_folders(out)  # a run refused before its first frame leaves no folder behind
    with folder_lock(out), refusal_undoes(made):                                # 1
        on_disk = read_output_folder(out, force)                                # 2
        check_same_storyboard(on_disk.manifest, storyboard, out)
        for message in on_disk.manifest.warnings:  # e.g. a damaged run.json rebuilt from the frames
            emit(WarningEvent(message))
        settings = with_storyboard_loras(settings, storyboard, backend)
        owned = backend is None
        backend = backend or create_backend(settings)
        try:
            identity = RunIdentity.of(backend, settings)                        # 3
            frames = list(storyboard.resolved(identity.model.defaults()).frames)
            the_plan = plan(frames, on_disk, identity, redo=set(redo), force=force, only=only)  # 4
            set_aside_extra_frames(out, len(frames), emit)
            for message in backend.prepare(the_plan.todo, out) if the_plan.todo else []:
                emit(WarningEvent(message))
            manifest = write_run_record(on_disk, storyboard, identity, backend, the_plan)  # 5
            result = RunResult(out, len(the_plan.todo) + len(the_plan.skipped), skipped=list(the_plan.skipped))
            emit(RunStarted(result.total, len(the_plan.todo), len(the_plan.skipped), backend.device, backend.dtype,
                            identity.model.id, backend.device_reason))
            for index in the_plan.skipped:
                emit(FrameSkipped(index, frame_name(index)))
            if the_plan.todo:
                render_planned(the_plan, out, identity, backend, parallelism, manifest, result, emit)  # 6
            return result
        finally:
            if owned:                                                           # 7
                backend.close()


@contextmanager
def refusal_undoes(made: list[Path]) -> Iterator[None]:
    """Stage 1: a run that stops before writing a frame (a refusal, a model that doesn't load)
    takes away again what it wrote into folders it made (run.json, the gallery page, the lock),
    and those folders, while it still holds the lock."""
    try:
        yield
    except Exception:
        undo_new_folder(made, also=(PAGE, DATA))
        raise


def read_output_folder(out: Path, force: bool = False) -> OnDisk:
    """Stage 2: run.json (none when ``force``) and the hash and bytes digest of every frame PNG."""
    remove_stale_temp_files(out)
    manifest = Manifest(out / "run.json", {}, {}) if force else Manifest.load(out)
    hashes, files = {}, {}
    for path in sorted((out / FRAMES_DIR).glob("frame_*.png")):
        index = frame_index(path)
        if index is None:
            continue
        digest = read_png_hash(path)
        if digest is not None:
            hashes[index] = digest
            files[index] = file_digest(path)
    return OnDisk(manifest, hashes, files)


def plan(frames: list[Frame], on_disk: OnDisk, identity: RunIdentity, *, redo: set[int] | None = None,
         force: bool = False, only: Iterable[int] | None = None) -> Plan:
    """Stage 4: which frames are finished with these exact parameters, and which to render.

    A frame is finished when its PNG's hash equals the hash asked for now. ``only`` limits the run
    (a chained frame whose parent must be re-rendered comes along); ``redo`` and ``force`` render
    finished frames again. Pure: reads nothing but ``on_disk``.
    """
    redo = redo or set()
    selected = set(only) if only is not None else {f.index for f in frames}
    digests: dict[int, str] = {}
    finished: set[int] = set()
    todo: list[Frame] = []
    todo_set: set[int] = set()
    skipped: list[int] = []
    # a clip that ends on the "next" still is planned after it (the still's image is in its hash)
    for f in sorted(frames, key=lambda f: (f.kind == "clip" and bool(f.starts_from()), f.index)):
        stale_parent = any(ref in todo_set for ref in f.starts_from())
        digests[f.index] = "" if stale_parent else identity.digest(f, image_digest=on_disk.files.get)
        if not stale_parent and on_disk.hashes.get(f.index) == digests[f.index]:
            finished.add(f.index)
        if f.index not in selected and not stale_parent:
            continue
        if f.index in finished and not force and f.index not in redo:
            skipped.append(f.index)
            continue
        missing = next((ref for ref in f.starts_from() if ref not in finished and ref not in todo_set), None)
        if missing is not None:
            how = ("chains from" if missing == f.parent else "is a clip that starts or ends on" if f.kind == "clip"
                   else "takes its control image from")
            raise FramereelError(
                f"frame {f.index} {how} frame {missing}, which is not rendered; include it in --frames")
        todo.append(f)
        todo_set.add(f.index)
    todo = whole_clips(frames, sorted(todo, key=lambda f: f.index))  # a clip renders whole: one unfinished
    todo = whole_blocks(frames, todo)  # a cadence block's in-betweens need its diffused frame rendered
    skipped = sorted(i for i in skipped if i not in {f.index for f in todo})  # frame brings in its clip
    return Plan(frames, digests, frozenset(finished), todo, skipped)


def set_aside_extra_frames(out: Path, count: int, emit: EventHandler) -> None:
    """Frames beyond the storyboard's end (it got shorter) go to superseded/, not into the video."""
    for p in sorted((out / FRAMES_DIR).glob("frame_*.png")):
        index = frame_index(p)
        if index is not None and index >= count:
            dest = move_aside(out, p)
            emit(WarningEvent(f"{p.name} is past the storyboard's last frame; moved to {dest}"))


def write_run_record(on_disk: OnDisk, storyboard: Storyboard, identity: RunIdentity, backend: Backend,
                     the_plan: Plan) -> Manifest:
    """Stage 5: run.json with the run's settings and every frame's record (finished ones keep theirs)."""
    manifest = on_disk.manifest
    settings = identity.settings
    manifest.run = {
        "framereel": __version__,
        "storyboard": str(storyboard.path.resolve()),
        "storyboard_sha256": storyboard.digest,
        "model": {"id": identity.model.id, "fingerprint": identity.model.fingerprint},
        "backend": backend.name,
        "device": backend.device,
        "dtype": backend.dtype,
        "scheduler": settings.scheduler,
        **({"family": identity.model.family} if identity.model.family else {}),
        **({"refiner": identity.model.family["refiner"]} if "refiner" in (identity.model.family or {}) else {}),
        "safety_checker": settings.safety_checker,
        "batch": backend.batch,
        **backend.run_facts(),
        "run_seed": storyboard.run_seed,
        **({"notes": list(backend.notes)} if backend.notes else {}),
        **{k: v for k, v in manifest.run.items() if k in ("video", "finishing")},
    }
    old = manifest.frames
    manifest.frames = {}
    for f in the_plan.frames:
        record = identity.record(f, the_plan.digests[f.index])
        if f.index in the_plan.finished:
            prev = old.get(f.index, {})
            facts = {k: v for k, v in prev.items() if k not in record and k not in ("device", "error")}
            record.update(status="done", seconds=prev.get("seconds"), device=prev.get("device", backend.device),
                          **facts)  # what the backend said of the frame when it was rendered (e.g. nsfw_blacked_out)
        manifest.frames[f.index] = record
    manifest.save()
    return manifest


def render_planned(the_plan: Plan, out: Path, identity: RunIdentity, backend: Backend, parallelism: Parallelism,
                   manifest: Manifest, result: RunResult, emit: EventHandler) -> None:
    """Stage 6: render the plan's frames as jobs on the asked-for executor, writing each as it lands."""
    frames_dir = out / FRAMES_DIR
    frames_dir.mkdir(parents=True, exist_ok=True)
    for message in backend.prompt_warnings(the_plan.todo):
        emit(WarningEvent(message))
    batches = backend.resolve_batch(the_plan.todo)
    if not parallelism.in_process:
        backend.close()  # a model loaded here only to measure the batch: the workers load their own
    # every worker renders in the backend's resolved dtype and batches, so its frames are the same bytes
    pinned = {"batch": backend.batch, "batch_sizes": tuple((w, h, b) for (w, h), b in sorted(batches.items()))}
    pinned = pinned if backend.takes_speed_options else {}
    worker_settings = replace(identity.settings, dtype=backend.dtype, **pinned)
    pool = make_pool(parallelism, backend, worker_settings, frames_dir)
    t_run = time.perf_counter()

    def noting_load(event) -> None:
        if isinstance(event, ModelLoaded) and event.seconds:
            result.load_seconds += event.seconds
        emit(event)

    try:
        for outcome in drive(pool, plan_jobs(the_plan.todo, backend.batch_for), noting_load):
            write_frame(out, identity, the_plan, manifest, outcome, result, emit)
    except KeyboardInterrupt:
        pool.close(now=True)
        raise
    finally:
        pool.close()
        manifest.run.update(batch_record(backend, the_plan.todo, batches))
        manifest.save()
        result.seconds = time.perf_counter() - t_run


def batch_record(backend: Backend, todo: list[Frame], batches: dict[tuple[int, int], int]) -> dict[str, Any]:
    """run.json's ``"batch"``: frames per call for the size most frames render at, and with
    ``--batch auto`` over several sizes, ``"batches"``: each size's (``"512x512": 4``)."""
    if not batches:
        return {"batch": backend.batch}
    sizes = [(f.width, f.height) for f in todo if (f.width, f.height) in batches]
    common = max(batches, key=sizes.count)
    return {"batch": batches[common], **({"batches": {f"{w}x{h}": b for (w, h), b in sorted(batches.items())}}
                                         if len(batches) > 1 else {})}


def write_depth_map(out: Path, index: int, depth: Any, frame_hash: str) -> None:
    """Frame ``index``'s depth map as ``depth/frame_NNN.png``, carrying the frame's hash (the gallery
    shows it only beside the picture it was estimated from)."""
    path = out / DEPTH_DIR / frame_name(index)
    path.parent.mkdir(exist_ok=True)
    atomic_write_bytes(path, png_bytes(depth_picture(depth), {HASH_KEY: frame_hash}))


def write_frame(out: Path, identity: RunIdentity, the_plan: Plan, manifest: Manifest, outcome: Outcome,
                result: RunResult, emit: EventHandler) -> None:
    """Write one outcome: the frame's PNG (the old one, if any, to superseded/) and its run.json record."""
    f = outcome.frame
    record = manifest.frames[f.index]
    if outcome.error is not None:
        record.update(status="failed", error=outcome.error)
        manifest.save()
        result.failed[f.index] = outcome.error
        emit(FrameFailed(f.index, outcome.error))
        return
    depth = outcome.facts.pop(DEPTH_FACT, None)
    if depth is not None:
        write_depth_map(out, f.parent, depth, manifest.frames[f.parent].get("hash") or "")
    digest = the_plan.digests[f.index] or identity.digest(f, out / FRAMES_DIR)  # a chain's parent is on disk now
    path = write_frame_file(out, f.index, identity.png(outcome.image, f, digest))
    facts = dict(outcome.facts)
    if facts.get("control_maps"):  # images, for the gallery: written beside the frames, named in run.json
        facts["control_maps"] = write_control_maps(out, f.index, facts["control_maps"])
    record.update(hash=digest, status="done", seconds=round(outcome.seconds, 3), device=outcome.device, **facts)
    manifest.save()
    result.rendered.append(f.index)
    result.devices[outcome.device] = result.devices.get(outcome.device, 0) + 1
    emit(FrameDone(f.index, str(path), round(outcome.seconds, 3), outcome.device, facts))
