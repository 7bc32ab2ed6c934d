"""``--interpolate MODEL[:FACTOR|FPSfps]``: learned in-betweens, only inside continuous runs.

framereel knows which neighbouring frames belong to one continuous run — a key frame and its
morph in-betweens up to the next key frame, an img2img chain, the frames of one clip — from each
frame's ``kind`` and ``derived_from`` in ``run.json``. In-betweens are made only between two such
frames; every other boundary is a cut (or the crossfade ``--transition crossfade`` asks for) and
stays one. The loop seam (last frame → first) gets in-betweens only with ``loop=True``.

Timing: a pair's in-betweens share the time of one frame step (``1/fps``, or the first frame's
hold if shorter) at the end of the first frame's hold, so the video keeps its length and its cuts
stay where they were. ``FACTOR`` (default 2) splits that step into FACTOR parts; ``24fps`` makes
as many as the step holds at 24 frames per second.

Each in-between is ``out/interpolated/frame_AAA_BBB_KofF.png``, its metadata carrying the hash of
(both frames' bytes, the model file's fingerprint, t): a rerun computes only what changed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import FramereelError
from ..manifest import Manifest, atomic_write_bytes, file_digest, params_hash, png_bytes, read_png_metadata
from .common import (
    EventHandler,
    check_model_file,
    model_fingerprint,
    pick_device,
    record_stage,
    remove_temp_files,
    split_spec,
    stage_done,
    stage_progress,
    stage_started,
)

INTERPOLATED_DIR = "interpolated"
HASH_KEY = "framereel:interpolate"
DEFAULT_FACTOR = 2


@dataclass(frozen=True)
class InterpolateSpec:
    """``factor``: parts per frame step (2 = one in-between); ``fps``: or as many as fill this rate."""

    model: Path
    factor: int | None = DEFAULT_FACTOR
    fps: float | None = None


def parse_interpolate(text: str) -> InterpolateSpec:
    """``"rife.pkl"``, ``"rife.pkl:4"`` or ``"rife.pkl:24fps"`` → an :class:`InterpolateSpec`."""
    model, arg = split_spec(text, "--interpolate")
    if arg is None:
        return InterpolateSpec(model)
    try:
        if arg.lower().endswith("fps"):
            fps = float(arg[:-3])
            if not 1 <= fps <= 240:
                raise ValueError
            return InterpolateSpec(model, None, fps)
        factor = int(arg.rstrip("x"))
        if not 2 <= factor <= 16:
            raise ValueError
        return InterpolateSpec(model, factor)
    except ValueError:
        raise FramereelError(
            f"--interpolate {text}: after ':' give a factor from 2 to 16 (e.g. {model}:2) or a rate (e.g. {model}:24fps)"
        ) from None


def check_interpolator(spec: InterpolateSpec) -> None:
    """Refuse a model file ``--interpolate`` could not use, before anything renders (loaded once, on the CPU)."""
    from .rife import load_rife

    check_model_file(spec.model, "interpolate", load_rife)


# ------------------------------------------------------------------ which neighbours belong together


def continuous(records: dict[int, dict[str, Any]], a: int, b: int) -> bool:
    """Whether frames ``a`` and ``b`` (= a + 1) are neighbours in one continuous run.

    True for: a morph in-between and its neighbours up to the morph's end key frame; a chained
    frame and its parent; two frames of the same clip. False for anything else (a cut).
    """
    if b != a + 1:
        return False
    ra, rb = records.get(a) or {}, records.get(b) or {}
    da, db = ra.get("derived_from") or {}, rb.get("derived_from") or {}
    if rb.get("kind") == "morph" and (da.get("morph") == db.get("morph") or (db.get("morph") or [None])[0] == a):
        return True
    if ra.get("kind") == "morph" and (da.get("morph") or [None, None])[1] == b:
        return True
    if rb.get("kind") == "chain" and db.get("parent") == a:
        return True
    clip_a, clip_b = _clip_id(da.get("clip", ra.get("clip"))), _clip_id(db.get("clip", rb.get("clip")))
    return clip_a is not None and clip_a == clip_b


def _clip_id(clip: Any) -> Any:
    """The clip a frame belongs to: its record's ``{"id", "position", "frames"}`` names it by ``id``."""
    return clip.get("id") if isinstance(clip, dict) else clip


@dataclass(frozen=True)
class Tween:
    after: int  # position in the shot list of the frame it follows
    a: int  # frame indices of the pair
    b: int
    k: int  # k-th of parts - 1 in-betweens
    parts: int
    duration: float

    @property
    def t(self) -> float:
        return self.k / self.parts

    @property
    def name(self) -> str:
        return f"frame_{self.a:03d}_{self.b:03d}_{self.k}of{self.parts}.png"


def plan_tweens(shots: list, records: dict[int, dict[str, Any]], spec: InterpolateSpec, fps: float,
                loop: bool = False) -> tuple[list[float], list[Tween]]:
    """New durations for ``shots`` and the in-betweens to insert after them. Pure: no files.

    ``shots`` are :class:`framereel.video.Shot` (index, path, duration) in order; the loop seam
    (last → first) counts as continuous only with ``loop``.
    """
    durations = [s.duration for s in shots]
    tweens: list[Tween] = []
    n = len(shots)
    for pos, shot in enumerate(shots):
        if pos + 1 < n:
            nxt = shots[pos + 1]
            if not continuous(records, shot.index, nxt.index):
                continue
        elif loop and n > 1:
            nxt = shots[0]
        else:
            continue
        step = min(shot.duration, 1.0 / fps)
        parts = spec.factor or max(1, round(step * spec.fps))
        if parts < 2:
            continue
        durations[pos] = shot.duration - step * (parts - 1) / parts
        tweens += [Tween(pos, shot.index, nxt.index, k, parts, step / parts) for k in range(1, parts)]
    return durations, tweens


def timeline_fps(spec: InterpolateSpec, fps: float) -> float:
    """The frame rate in-betweens are paced at: ``fps × factor``, or the rate asked for."""
    return spec.fps if spec.fps else fps * (spec.factor or 1)


# ------------------------------------------------------------------ the model


class Interpolator:
    """A RIFE model loaded on the best device (fp16 on GPUs); ``calls`` counts model runs."""

    def __init__(self, path: Path, device: str = "auto") -> None:
        from .rife import load_rife

        self.device, self.dtype = pick_device(device)
        self.net = load_rife(path).to(self.device, self.dtype)
        self.calls = 0

    def __call__(self, a: Image.Image, b: Image.Image, t: float) -> Image.Image:
        import torch

        def tensor(im):
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(self.device, self.dtype)

        y = self.net.interpolate(tensor(a), tensor(b), t)
        self.calls += 1
        y = y.float().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
        return Image.fromarray((y * 255.0 + 0.5).astype(np.uint8))


def make_tweens(
    out: Path,
    spec: InterpolateSpec,
    tweens: list[Tween],
    paths: dict[int, Path],
    *,
    manifest: Manifest | None = None,
    device: str = "auto",
    on_event: EventHandler | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[Tween, Path]:
    """Compute (or reuse) each in-between into ``out/interpolated/``; ``paths`` maps frame index →
    the image it is made from (the frame, or its upscaled version). The caller holds the lock."""
    folder = out / INTERPOLATED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(folder)
    fingerprint = model_fingerprint(spec.model)
    _, dtype = pick_device(device)
    precision = str(dtype).replace("torch.", "")
    digests = {i: file_digest(paths[i]) for i in {t.a for t in tweens} | {t.b for t in tweens}}
    model: Interpolator | None = None
    image = _image_reader(paths)
    results: dict[Tween, Path] = {}
    records: dict[str, Any] = {}
    stage = {"model": str(spec.model), "fingerprint": fingerprint, "factor": spec.factor, "fps": spec.fps,
             **(extra or {})}
    computed = cached = 0
    t0 = time.perf_counter()
    stage_started(on_event, "interpolate", len(tweens))
    for n, tw in enumerate(tweens):
        target = folder / tw.name
        key = params_hash({"a": digests[tw.a], "b": digests[tw.b], "model": fingerprint,
                           "t": round(tw.t, 6), "precision": precision})
        meta = read_png_metadata(target)
        if meta is None or meta.get(HASH_KEY) != key:
            model = _write_tween(target, key, tw, spec, image, model, device, stage)
            computed += 1
        else:
            cached += 1
        results[tw] = target
        records[tw.name] = {"between": [tw.a, tw.b], "t": round(tw.t, 6), "key": key, "hash": file_digest(target)}
        if computed and (n % 8 == 0 or n == len(tweens) - 1):
            record_stage(manifest, "interpolate", {**stage, "frames": records})
        stage_progress(on_event, "interpolate", n + 1, len(tweens), computed, cached)
    record_stage(manifest, "interpolate", {**stage, "frames": records})
    stage_done(on_event, "interpolate", computed, cached, time.perf_counter() - t0, model.calls if model else 0)
    return results


def _image_reader(paths: dict[int, Path]) -> Callable[[int], Image.Image]:
    """A function from frame index to its RGB image, keeping the last few images read."""
    images: dict[int, Image.Image] = {}

    def image(i: int) -> Image.Image:
        if i not in images:
            if len(images) > 4:
                images.pop(next(iter(images)))
            with Image.open(paths[i]) as im:
                images[i] = im.convert("RGB")
        return images[i]

    return image


def _write_tween(target: Path, key: str, tw: Tween, spec: InterpolateSpec, image: Callable[[int], Image.Image],
                 model: Interpolator | None, device: str, stage: dict[str, Any]) -> Interpolator:
    """Compute ``tw`` into ``target`` with its hash ``key``, loading the model on first use (and noting
    its device in ``stage``); returns the model."""
    if image(tw.a).size != image(tw.b).size:
        raise FramereelError(f"frames {tw.a} and {tw.b} differ in size; cannot interpolate between them")
    if model is None:
        model = Interpolator(spec.model, device)
        stage.update(device=str(model.device), dtype=str(model.dtype).replace("torch.", ""))
    result = model(image(tw.a), image(tw.b), tw.t)
    atomic_write_bytes(target, png_bytes(result, {HASH_KEY: key, "between": f"frame {tw.a} → frame {tw.b}",
                                                  "t": f"{tw.t:.4f}", "interpolator": spec.model.name}))
    return model


def interpolate_shots(
    out: Path,
    shots: list,
    records: dict[int, dict[str, Any]],
    spec: InterpolateSpec,
    fps: float,
    *,
    loop: bool = False,
    manifest: Manifest | None = None,
    device: str = "auto",
    on_event: EventHandler | None = None,
) -> tuple[list, frozenset[int], float]:
    """``shots`` with learned in-betweens inserted inside continuous runs.

    Returns the new shot list, the positions after which the next shot continues the run (no
    crossfade there), and the frame rate to pace the timeline at.
    """
    durations, tweens = plan_tweens(shots, records, spec, fps, loop)
    made = make_tweens(out, spec, tweens, {s.index: s.path for s in shots}, manifest=manifest, device=device,
                       on_event=on_event, extra={"loop": loop})
    after: dict[int, list[Tween]] = {}
    for tw in tweens:
        after.setdefault(tw.after, []).append(tw)
    new_shots, joined = [], set()
    for pos, shot in enumerate(shots):
        new_shots.append(replace(shot, duration=durations[pos]))
        for tw in after.get(pos, []):
            joined.add(len(new_shots) - 1)
            new_shots.append(replace(shot, path=made[tw], duration=tw.duration))
        if pos in after and pos + 1 < len(shots):
            joined.add(len(new_shots) - 1)
    rate = timeline_fps(spec, fps)
    if not math.isfinite(rate) or rate <= 0:
        rate = fps
    return new_shots, frozenset(joined), rate
