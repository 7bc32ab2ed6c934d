"""``render()``: storyboard → frames on disk, resumable, through one backend.

The steps, in order: lock the folder, read what is there, resolve the model and every frame's
parameters, plan (skip frames already finished with the same parameters), load the model only
if something is left to do, render and write each frame atomically, record it in ``run.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from ._version import __version__
from .backends import Backend, ModelInfo, RenderSettings, batch_groups, create_backend
from .coherence import match_colours, warp
from .errors import FramereelError
from .manifest import (
    FRAMES_DIR,
    HASH_KEY,
    Manifest,
    atomic_write_bytes,
    check_same_storyboard,
    file_digest,
    folder_lock,
    frame_index,
    frame_name,
    move_aside,
    params_hash,
    png_bytes,
    read_frame_image,
    read_png_metadata,
    remove_stale_temp_files,
)
from .storyboard import Frame, Storyboard

EventHandler = Callable[[dict[str, Any]], None]
CLIP_MAX_TOKENS = 77


@dataclass(frozen=True)
class Parallelism:
    workers: int = 1
    devices: list[str] | None = None
    executor: str = "local"  # or "ray"
    ray_address: str | None = None


@dataclass
class RunResult:
    out_dir: Path
    total: int
    rendered: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    devices: dict[str, int] = field(default_factory=dict)  # frames rendered per device

    @property
    def seconds_per_frame(self) -> float | None:
        return self.seconds / len(self.rendered) if self.rendered else None


def frame_params(frame: Frame, settings: RenderSettings, info: ModelInfo, backend: Backend) -> dict[str, Any]:
    """Everything that decides a frame's pixels: hashed to tell whether a frame is finished."""
    return {
        **frame.render_params(),
        "scheduler": settings.scheduler,
        "model": info.fingerprint,
        "dtype": backend.dtype,
        "backend": backend.name,
        **getattr(backend, "pixel_options", {}),  # e.g. a tiny VAE or step caching
    }


def frame_digest(frame: Frame, settings: RenderSettings, info: ModelInfo, backend: Backend,
                 frames_dir: Path | None = None) -> str:
    """The hash that tells whether a frame is finished. A chained frame's includes its parent's
    (and colour reference's) image in ``frames_dir``, so redoing a frame invalidates its chain."""
    params = frame_params(frame, settings, info, backend)
    for key, ref in (("parent_image", frame.parent), ("colour_image", frame.color_ref)):
        if ref is not None:
            params[key] = file_digest(frames_dir / frame_name(ref))
    return params_hash(params)


def model_defaults(info: ModelInfo) -> dict[str, Any]:
    """What a model fills in for parameters nobody set: its native size and recommended settings."""
    return {"width": info.native_width, "height": info.native_height, **info.recommended}


def frame_png(image: Image.Image, frame: Frame, settings: RenderSettings, info: ModelInfo, digest: str) -> bytes:
    """The PNG bytes of a rendered frame, with its metadata: the same for every command."""
    return png_bytes(image, frame_metadata(frame, settings, info, digest))


def frame_metadata(frame: Frame, settings: RenderSettings, info: ModelInfo, digest: str) -> dict[str, str]:
    """The PNG text chunks every frame carries."""
    meta = {
        "prompt": frame.prompt,
        "negative_prompt": frame.negative_prompt or "",
        "seed": str(frame.seed),
        "steps": str(frame.steps),
        "guidance": f"{frame.guidance:g}",
        "size": f"{frame.width}x{frame.height}",
        "scheduler": settings.scheduler,
        "model": info.id,
        "software": f"framereel {__version__}",
        HASH_KEY: digest,
    }
    if frame.kind == "morph":
        meta["morph"] = f"frame {frame.morph[0]} → frame {frame.morph[1]} at t={frame.morph[2]:.4f}: {frame.morph_prompt}"
    elif frame.kind == "chain":
        meta["init"] = f"frame {frame.parent}, strength {frame.strength:g}"
    return meta


def _emit(on_event: EventHandler | None, event: str, **data: Any) -> None:
    if on_event is not None:
        on_event({"event": event, **data})


def render(
    storyboard: Storyboard,
    out_dir: str | Path,
    settings: RenderSettings | None = None,
    *,
    redo: Iterable[int] = (),
    force: bool = False,
    only: Iterable[int] | None = None,
    workers: int = 1,
    devices: list[str] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    on_event: EventHandler | None = None,
    backend: Backend | None = None,
) -> RunResult:
    """Render every frame of ``storyboard`` that is not already finished into ``out_dir/frames``.

    Finished frames (same parameters, PNG decodes) are skipped; ``redo`` forces some frames and
    ``force`` all of them; ``only`` limits the run to some frames (the others are left as they
    are). A replaced frame is moved to ``out_dir/superseded/``, never deleted.
    Emits events (dicts with an ``"event"`` key) to ``on_event``. ``backend`` reuses an already
    created backend (its model stays loaded). ``workers`` > 1 or several ``devices`` render in
    one worker process each (see :mod:`framereel.workers`); ``executor="ray"`` runs the same
    workers as Ray actors (on ``ray_address``, else a local cluster). Frames are identical either way.
    Returns a :class:`RunResult`.
    """
    settings = settings or RenderSettings()
    out = Path(out_dir)
    redo = set(redo)
    with folder_lock(out):
        remove_stale_temp_files(out)
        manifest = Manifest(out / "run.json", {}, {}) if force else Manifest.load(out)
        _check_same_storyboard(manifest, storyboard, out)
        for message in manifest.warnings:  # e.g. a damaged run.json rebuilt from the frames
            _emit(on_event, "warning", message=message)
        owned = backend is None  # a backend passed in stays loaded for the caller's next run
        backend = backend or create_backend(settings)
        try:
            plan = Parallelism(workers, devices, executor, ray_address)
            return _render_locked(storyboard, out, settings, backend, manifest, redo, force, only, plan, on_event)
        finally:
            if owned:
                backend.close()


def _check_same_storyboard(manifest: Manifest, storyboard: Storyboard, out: Path) -> None:
    check_same_storyboard(manifest, storyboard, out)


def _render_locked(
    storyboard: Storyboard,
    out: Path,
    settings: RenderSettings,
    backend: Backend,
    manifest: Manifest,
    redo: set[int],
    force: bool,
    only: Iterable[int] | None,
    plan: Parallelism,
    on_event: EventHandler | None,
) -> RunResult:
    frames_dir = out / FRAMES_DIR
    frames_dir.mkdir(parents=True, exist_ok=True)
    info = backend.describe()
    frames = storyboard.resolved(model_defaults(info)).frames
    selected = set(only) if only is not None else {f.index for f in frames}
    result = RunResult(out, len(selected))

    # -- plan: which frames are already finished with these exact parameters
    def digest(f: Frame) -> str:
        return frame_digest(f, settings, info, backend, frames_dir)

    digests: dict[int, str] = {}
    todo: list[Frame] = []
    todo_set: set[int] = set()
    finished: set[int] = set()
    for f in frames:
        stale_parent = f.parent is not None and f.parent in todo_set
        if stale_parent:
            digests[f.index] = ""  # known once the parent is rendered
        else:
            digests[f.index] = digest(f)
            meta = read_png_metadata(frames_dir / frame_name(f.index))
            if meta is not None and meta.get(HASH_KEY) == digests[f.index]:
                finished.add(f.index)
        if f.index not in selected and not stale_parent:
            continue
        if f.index in finished and not force and f.index not in redo:
            result.skipped.append(f.index)
        else:
            todo.append(f)
            todo_set.add(f.index)
            if f.parent is not None and f.parent not in finished and f.parent not in todo_set:
                raise FramereelError(
                    f"frame {f.index} chains from frame {f.parent}, which is not rendered; include it in --frames"
                )
    _set_aside_extra_frames(out, frames_dir, len(frames), on_event)
    prepare = getattr(backend, "prepare", None)  # backends with limits refuse frames before opening a device
    for message in prepare(todo, out) if prepare and todo else []:
        _emit(on_event, "warning", message=message)

    manifest.run = {
        "framereel": __version__,
        "storyboard": str(storyboard.path.resolve()),
        "storyboard_sha256": storyboard.digest,
        "model": {"id": info.id, "fingerprint": info.fingerprint},
        "backend": backend.name,
        "device": backend.device,
        "dtype": backend.dtype,
        "scheduler": settings.scheduler,
        "safety_checker": settings.safety_checker,
        "batch": getattr(backend, "batch", 1),
        "run_seed": storyboard.run_seed,
        **({"notes": backend.notes} if getattr(backend, "notes", None) else {}),
        **{k: v for k, v in manifest.run.items() if k == "video"},
    }
    old_records = manifest.frames
    manifest.frames = {}
    for f in frames:
        record = _record(f, settings, info, backend, digests[f.index])
        if f.index in finished:
            prev = old_records.get(f.index, {})
            record.update(status="done", seconds=prev.get("seconds"), device=prev.get("device", backend.device))
        manifest.frames[f.index] = record
    manifest.save()
    _emit(on_event, "start", total=len(selected), todo=len(todo), skipped=len(result.skipped),
          device=backend.device, why=getattr(backend, "device_reason", ""), dtype=backend.dtype, model=info.id)
    for index in result.skipped:
        _emit(on_event, "frame_skipped", index=index, file=frame_name(index))
    if not todo:
        return result

    # -- render what is left, here or in worker processes; only this process writes the folder
    def accept(f: Frame, image: Image.Image, facts: dict[str, Any], seconds: float, device: str) -> None:
        path = frames_dir / frame_name(f.index)
        if f.parent is not None:
            digests[f.index] = digest(f)  # the parent's image is on disk by now
            manifest.frames[f.index]["hash"] = digests[f.index]
        data = frame_png(image, f, settings, info, digests[f.index])
        if path.exists():  # finished, damaged or someone else's image: kept in superseded/, never deleted
            move_aside(out, path)
        atomic_write_bytes(path, data)
        manifest.frames[f.index].update(status="done", seconds=round(seconds, 3), device=device, **facts)
        manifest.save()
        result.rendered.append(f.index)
        result.devices[device] = result.devices.get(device, 0) + 1
        _emit(on_event, "frame_done", index=f.index, file=str(path), seconds=round(seconds, 3), device=device, **facts)

    def reject(f: Frame, message: str) -> None:
        manifest.frames[f.index].update(status="failed", error=message)
        manifest.save()
        result.failed[f.index] = message
        _emit(on_event, "frame_error", index=f.index, error=message)

    t_run = time.perf_counter()
    try:
        emit = lambda event, **data: _emit(on_event, event, **data)  # noqa: E731
        devices = plan.devices or [backend.device] * plan.workers
        # every worker renders in the same dtype and batch size, so its frames are the same bytes
        worker_settings = replace(settings, dtype=backend.dtype, batch=getattr(backend, "batch", 1))
        if plan.executor == "ray":
            from .ray_executor import render_with_ray

            render_with_ray(todo, frames_dir, worker_settings, devices, accept, reject, emit, plan.ray_address)
        elif len(devices) > 1:
            from .workers import render_in_workers

            render_in_workers(todo, frames_dir, worker_settings, devices, accept, reject, emit)
        else:
            _render_here(todo, frames_dir, backend, accept, reject, on_event)
    finally:
        manifest.save()
        result.seconds = time.perf_counter() - t_run
    return result


def _render_here(todo: list[Frame], frames_dir: Path, backend: Backend, accept, reject, on_event) -> None:
    t_load = time.perf_counter()
    backend.load()
    _emit(on_event, "model_loaded", seconds=round(time.perf_counter() - t_load, 3),
          device=backend.device, dtype=backend.dtype)
    _warn_long_prompts(backend, todo, on_event)
    failed: set[int] = set()
    for group in batch_groups(todo, getattr(backend, "batch", 1)):
        f = group[0]
        if f.parent in failed:
            failed.add(f.index)
            reject(f, f"its parent frame {f.parent} failed")
            continue
        _emit(on_event, "frame_start", index=f.index, prompt=f.prompt, steps=f.steps,
              **({"batch": [g.index for g in group]} if len(group) > 1 else {}))
        t0 = time.perf_counter()
        try:
            results = render_group(backend, group, lambda i: read_frame_image(frames_dir, i),
                                   on_step=lambda i, n, idx=f.index: _emit(on_event, "step", index=idx, step=i, steps=n))
        except (KeyboardInterrupt, FramereelError):
            raise
        except Exception as err:  # a failed frame says why, and the run goes on with the others
            for g in group:
                failed.add(g.index)
                reject(g, f"{type(err).__name__}: {err}".splitlines()[0])
            continue
        seconds = per_frame_seconds(time.perf_counter() - t0, results)
        for g, (image, facts) in zip(group, results):
            accept(g, image, facts, seconds, backend.device)


def render_group(backend: Backend, group: list[Frame], image_of: Callable[[int], Image.Image],
                 on_step: Callable[[int, int], None] | None = None) -> list[tuple[Image.Image, dict[str, Any]]]:
    """Render a group from :func:`~framereel.backends.batch_groups`: frames sharing one UNet call
    (backends that batch), or one frame (a chained frame starts from ``image_of(parent)``)."""
    f = group[0]
    if f.parent is None and hasattr(backend, "render_batch"):
        return backend.render_batch(group, on_step=on_step)
    init_image = chain_init_image(f, image_of) if f.parent is not None else None
    return [backend.render(f, on_step=on_step, init_image=init_image)]


def per_frame_seconds(elapsed: float, results: list[tuple[Image.Image, dict[str, Any]]]) -> float:
    """Rendering seconds per frame of a group: its share of the call, compiling (reported once
    in the first frame's ``compile_seconds``) left out."""
    return (elapsed - results[0][1].get("compile_seconds", 0.0)) / len(results)


def chain_init_image(frame: Frame, image_of: Callable[[int], Image.Image]) -> Image.Image:
    """A chained frame's starting image: its parent's, warped by its motion and colour-matched.

    ``image_of(index)`` gives a finished frame's image (from disk, or from a worker's memory).
    """
    image = image_of(frame.parent)
    if frame.motion is not None:
        image = warp(image, *frame.motion)
    if frame.color_ref is not None:
        image = match_colours(image, image_of(frame.color_ref))
    return image


def _record(f: Frame, settings: RenderSettings, info: ModelInfo, backend: Backend, digest: str) -> dict[str, Any]:
    record = {
        "index": f.index,
        "file": f"{FRAMES_DIR}/{frame_name(f.index)}",
        "kind": f.kind,
        "status": "pending",
        "hash": digest,
        "params": frame_params(f, settings, info, backend),
        "duration": f.duration,
        "seconds": None,
    }
    if f.kind == "morph":
        record["derived_from"] = {"morph": [f.morph[0], f.morph[1]], "t": round(f.morph[2], 6)}
    elif f.kind == "chain":
        record["derived_from"] = {"parent": f.parent, "strength": f.strength}
    return record


def _set_aside_extra_frames(out: Path, frames_dir: Path, count: int, on_event: EventHandler | None) -> None:
    """Frames beyond the storyboard's end (it got shorter) go to superseded/, not into the video."""
    for p in sorted(frames_dir.glob("frame_*.png")):
        index = frame_index(p)
        if index is not None and index >= count:
            dest = move_aside(out, p)
            _emit(on_event, "warning", message=f"{p.name} is past the storyboard's last frame; moved to {dest}")


def _warn_long_prompts(backend: Backend, frames: list[Frame], on_event: EventHandler | None) -> None:
    seen: set[str] = set()
    for f in frames:
        if f.prompt in seen:
            continue
        seen.add(f.prompt)
        n = backend.count_tokens(f.prompt)
        if n > CLIP_MAX_TOKENS:
            _emit(on_event, "warning", message=(
                f"frame {f.index}: prompt is {n} tokens; CLIP reads only the first {CLIP_MAX_TOKENS}, "
                "the rest will be truncated"))
