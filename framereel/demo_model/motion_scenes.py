"""Procedural clips for the demo motion module: one shape of ``scenes.py`` moving across frames.

``draw_clip`` paints a clip (a list of 64×64 frames) of a shape moving to the left or right,
falling or rising, growing or shrinking, or shifting colour, on one of the demo model's
backgrounds; ``motion_caption`` writes a caption for it (``a red circle moving to the right, day
sky``); ``track`` reads a rendered clip back (the shape's centre, size and colour per frame) so
that motion is measured rather than eyeballed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from . import scenes

MOTIONS = ("right", "left", "falling", "rising", "growing", "shrinking", "colour")

MOTION_PHRASES = {
    "right": ("moving to the right", "moving right", "sliding to the right", "going to the right"),
    "left": ("moving to the left", "moving left", "sliding to the left", "going to the left"),
    "falling": ("falling", "falling down", "dropping down", "moving down"),
    "rising": ("rising", "rising up", "floating up", "moving up"),
    "growing": ("growing", "getting bigger", "growing larger"),
    "shrinking": ("shrinking", "getting smaller", "shrinking away"),
}


@dataclass(frozen=True)
class Motion:
    """One clip: a shape, its background and how it moves (start → end of centre, radius, colour)."""

    shape: str
    colour: str
    background: str
    kind: str
    start: tuple[float, float, float]  # cx, cy, radius
    end: tuple[float, float, float]
    colour_to: str = ""  # for kind == "colour"
    star_seed: int = 0


def random_motion(rng: random.Random, kind: str | None = None) -> Motion:
    """A random clip spec; every move travels far enough to be seen (≥ 24 px, or radius ×2)."""
    kind = kind or rng.choice(MOTIONS)
    background = rng.choice(scenes.BACKGROUNDS)
    colours = [c for c in scenes.COLOURS if (c, background) not in scenes.INVISIBLE]
    colour = rng.choice(colours)
    shape = rng.choice(scenes.SHAPES)
    r = rng.uniform(7, 12)
    lo, hi = 4 + r + 1, 60 - r - 1
    a, b = rng.uniform(lo, lo + 6), rng.uniform(hi - 6, hi)
    other = rng.uniform(22, 42)
    colour_to = ""
    if kind == "right":
        start, end = (a, other, r), (b, other, r)
    elif kind == "left":
        start, end = (b, other, r), (a, other, r)
    elif kind == "falling":
        start, end = (other, a, r), (other, b, r)
    elif kind == "rising":
        start, end = (other, b, r), (other, a, r)
    elif kind in ("growing", "shrinking"):
        small, large = rng.uniform(4, 6), rng.uniform(13, 16)
        cx, cy = rng.uniform(27, 37), rng.uniform(27, 37)
        start, end = (cx, cy, small), (cx, cy, large)
        if kind == "shrinking":
            start, end = end, start
    else:
        cx, cy = rng.uniform(24, 40), rng.uniform(24, 40)
        start = end = (cx, cy, r)
        colour_to = rng.choice([c for c in colours if c != colour])
    return Motion(shape, colour, background, kind, start, end, colour_to, rng.randrange(1 << 30))


def _paint(img: Image.Image, shape: str, cx: float, cy: float, r: float, fill) -> None:
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        h = r * 0.9
        draw.polygon([(cx, cy - r), (cx + r, cy + h), (cx - r, cy + h)], fill=fill)
    else:
        draw.polygon(scenes._star_points(cx, cy, r + 1), fill=fill)


def draw_clip(motion: Motion, frames: int) -> list[Image.Image]:
    """Paint ``frames`` 64×64 RGB frames, moving linearly from ``motion.start`` to ``motion.end``."""
    bg = scenes._background(motion.background, motion.star_seed)
    c0 = np.array(scenes.COLOURS[motion.colour], dtype=np.float64)
    c1 = np.array(scenes.COLOURS[motion.colour_to or motion.colour], dtype=np.float64)
    out = []
    for k in range(frames):
        t = k / max(1, frames - 1)
        cx, cy, r = (s + (e - s) * t for s, e in zip(motion.start, motion.end))
        fill = tuple(int(round(v)) for v in c0 + (c1 - c0) * t)
        img = bg.copy()
        _paint(img, motion.shape, cx, cy, r, fill)
        out.append(img)
    return out


def motion_caption(motion: Motion, rng: random.Random | None = None) -> str:
    """A caption; with ``rng``, one of several phrasings (training), else the canonical one."""
    pick = (lambda xs: rng.choice(xs)) if rng else (lambda xs: xs[0])
    bg = pick(scenes.BACKGROUND_PHRASES[motion.background])
    if motion.kind == "colour":
        verb = pick(("turning from {a} to {b}", "changing from {a} to {b}", "fading from {a} to {b}"))
        return f"a {motion.shape} " + verb.format(a=motion.colour, b=motion.colour_to) + bg
    article = "an" if motion.colour[0] in "aeiou" else "a"
    return f"{article} {motion.colour} {motion.shape} {pick(MOTION_PHRASES[motion.kind])}{bg}"


def eval_motions() -> list[Motion]:
    """The held-out directional clips the motion module is measured on (never a training caption)."""
    rng = random.Random(4321)
    out = []
    kinds = ("right", "left", "falling", "rising")
    for i in range(24):
        m = random_motion(rng, kinds[i % 4])
        out.append(m)
    return out


def held_out_captions() -> set[str]:
    return {motion_caption(m) for m in eval_motions()}


# ---------------------------------------------------------------- reading a clip back


def track(frames: list[Image.Image]) -> list[dict]:
    """Per frame: the main shape's centre ``x``, ``y`` (pixels), ``area`` and median ``rgb`` (or ``None``)."""
    out = []
    for img in frames:
        img = img.convert("RGB").resize((scenes.SIZE, scenes.SIZE), Image.Resampling.BILINEAR)
        mask = scenes.shape_mask(img)
        if mask.sum() < 8:
            out.append(None)
            continue
        ys, xs = np.nonzero(mask)
        a = np.asarray(img, dtype=np.float32)
        out.append({"x": float(xs.mean()), "y": float(ys.mean()), "area": int(mask.sum()),
                    "rgb": np.median(a[mask], axis=0).tolist()})
    return out


def moved_as_asked(kind: str, tracked: list[dict | None], min_px: float = 6.0) -> bool:
    """Did the shape travel the asked way (left/right/falling/rising) by at least ``min_px``?"""
    seen = [t for t in tracked if t]
    if len(seen) < len(tracked) // 2 or len(seen) < 2:
        return False
    k = max(1, len(seen) // 4)
    first = {a: float(np.mean([t[a] for t in seen[:k]])) for a in ("x", "y")}
    last = {a: float(np.mean([t[a] for t in seen[-k:]])) for a in ("x", "y")}
    dx, dy = last["x"] - first["x"], last["y"] - first["y"]
    want = {"right": (dx, 1), "left": (dx, -1), "falling": (dy, 1), "rising": (dy, -1)}[kind]
    return want[0] * want[1] >= min_px


def frame_changes(frames: list[Image.Image]) -> list[float]:
    """Mean absolute difference (0–255) between each pair of consecutive frames."""
    arrs = [np.asarray(f.convert("RGB"), dtype=np.float32) for f in frames]
    return [float(np.mean(np.abs(b - a))) for a, b in zip(arrs, arrs[1:])]
