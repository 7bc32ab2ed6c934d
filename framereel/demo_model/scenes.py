"""Procedural scenes for the demo model: draw a captioned 64×64 picture, and read one back.

``draw_scene`` paints a background and one shape with Pillow; ``caption`` writes one of several
templated captions for it; ``parse_caption`` recovers what a caption asks for; and
``classify_image`` reads a picture back (background, shape colour, shape kind) from pixel
statistics, so the demo model's accuracy is measured rather than eyeballed.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
MARGIN = 4  # shapes never touch this outer ring, so the ring is always background

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (255, 230, 20),
    "green": (20, 200, 40),
    "blue": (30, 70, 230),
    "purple": (140, 40, 190),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star")
SIZES = {"small": 8, "large": 14}  # radius in pixels
POSITIONS = {
    "left": (18, 32),
    "right": (46, 32),
    "top": (32, 18),
    "bottom": (32, 46),
    "center": (32, 32),
}
BACKGROUNDS = ("day sky", "night sky", "sunset", "grass field", "white background")

# Shape colours that vanish into a background: such pairs are not evaluated.
INVISIBLE = {("white", "white background"), ("black", "night sky"), ("green", "grass field")}

POSITION_PHRASES = {
    "left": ("on the left", "at the left"),
    "right": ("on the right", "at the right"),
    "top": ("at the top", "on the top"),
    "bottom": ("at the bottom", "on the bottom"),
    "center": ("in the center", "in the middle"),
}
BACKGROUND_PHRASES = {
    "day sky": (", day sky", " in the day sky", " in a blue day sky"),
    "night sky": (", night sky", " in the night sky", " at night"),
    "sunset": (", sunset", " at sunset"),
    "grass field": (", grass field", " on a grass field", " over a grass field"),
    "white background": (", white background", " on a white background"),
}


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    size: str
    position: str
    background: str
    jitter: tuple[int, int] = (0, 0)
    star_seed: int = 0


def _lerp(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def _background(name: str, star_seed: int) -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(img)
    for y in range(SIZE):
        t = y / (SIZE - 1)
        if name == "day sky":
            c = _lerp((70, 140, 230), (170, 210, 250), t)
        elif name == "night sky":
            c = _lerp((8, 10, 40), (25, 30, 75), t)
        elif name == "sunset":
            c = _lerp((110, 40, 120), (250, 120, 60), t * 2) if t < 0.5 else _lerp(
                (250, 120, 60), (255, 200, 100), (t - 0.5) * 2
            )
        elif name == "grass field":
            c = (165, 205, 240) if y < 20 else _lerp((90, 160, 60), (50, 120, 35), (y - 20) / 43)
        else:  # white background
            c = (242, 242, 242)
        draw.line([(0, y), (SIZE - 1, y)], fill=c)
    if name == "night sky":
        rng = random.Random(star_seed)
        for _ in range(12):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            draw.point((x, y), fill=(255, 255, 220))
    return img


def _star_points(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        rad = r if k % 2 == 0 else r * 0.42
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def draw_scene(scene: Scene) -> Image.Image:
    """Paint one scene as a 64×64 RGB image."""
    img = _background(scene.background, scene.star_seed)
    draw = ImageDraw.Draw(img)
    cx, cy = POSITIONS[scene.position]
    cx, cy = cx + scene.jitter[0], cy + scene.jitter[1]
    r = SIZES[scene.size]
    fill = COLOURS[scene.colour]
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif scene.shape == "square":
        s = r * 0.85
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif scene.shape == "triangle":
        h = r * 0.9
        draw.polygon([(cx, cy - r), (cx + r, cy + h), (cx - r, cy + h)], fill=fill)
    else:
        draw.polygon(_star_points(cx, cy, r + 1), fill=fill)
    return img


def random_scene(rng: random.Random) -> Scene:
    return Scene(
        colour=rng.choice(list(COLOURS)),
        shape=rng.choice(SHAPES),
        size=rng.choice(list(SIZES)),
        position=rng.choice(list(POSITIONS)),
        background=rng.choice(BACKGROUNDS),
        jitter=(rng.randint(-2, 2), rng.randint(-2, 2)),
        star_seed=rng.randrange(1 << 30),
    )


def caption(scene: Scene, rng: random.Random) -> str:
    """One templated caption for ``scene``; some attributes may be left unsaid."""
    said_colour = rng.random() < 0.9
    said_shape = rng.random() < 0.9
    said_size = rng.random() < 0.5
    said_pos = rng.random() < 0.5
    said_bg = rng.random() < 0.8
    noun = scene.shape if said_shape else rng.choice(("shape", "thing"))
    words = ([scene.size] if said_size else []) + ([scene.colour] if said_colour else []) + [noun]
    text = " ".join(words)
    if rng.random() < 0.6:
        text = ("an " if text[0] in "aeiou" else "a ") + text
    if said_pos:
        text += " " + rng.choice(POSITION_PHRASES[scene.position])
    if said_bg:
        text += rng.choice(BACKGROUND_PHRASES[scene.background])
    return text


def full_caption(scene: Scene) -> str:
    """The canonical long caption, e.g. ``a large red circle on the left, night sky``."""
    article = "an" if scene.size[0] in "aeiou" else "a"
    return (
        f"{article} {scene.size} {scene.colour} {scene.shape} "
        f"{POSITION_PHRASES[scene.position][0]}, {scene.background}"
    )


def parse_caption(text: str) -> dict[str, str]:
    """What a caption names: any of colour, shape, size, position, background."""
    found: dict[str, str] = {}
    low = text.lower()
    words = re.findall(r"[a-z]+", low)
    for key, names in (("colour", COLOURS), ("shape", SHAPES), ("size", SIZES)):
        for w in words:
            if w in names:
                found[key] = w
                break
    for pos in POSITIONS:
        if pos in words or (pos == "center" and "middle" in words):
            found["position"] = pos
    for bg in BACKGROUNDS:
        if bg in low:
            found["background"] = bg
    if "background" not in found and ("at night" in low or "night" in words):
        found["background"] = "night sky"
    return found


# ---------------------------------------------------------------- reading an image back

_BG_REFERENCE = {name: np.asarray(_background(name, 0), dtype=np.float32) for name in BACKGROUNDS}


def classify_background(img: Image.Image) -> str:
    """The background whose reference is nearest on the outer ring (median per row)."""
    a = np.asarray(img.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32)
    m = MARGIN - 1
    left_right = np.concatenate([a[:, :m], a[:, -m:]], axis=1)  # (64, 2m, 3)
    rows = np.median(left_right, axis=1)
    best, best_d = "", float("inf")
    for name, ref in _BG_REFERENCE.items():
        ref_rows = np.median(np.concatenate([ref[:, :m], ref[:, -m:]], axis=1), axis=1)
        d = float(np.mean(np.abs(rows - ref_rows)))
        if d < best_d:
            best, best_d = name, d
    return best


def shape_mask(img: Image.Image) -> np.ndarray:
    """Pixels that differ from the background's per-row colour (estimated on the image's sides)."""
    a = np.asarray(img.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32)
    m = MARGIN - 1
    rows = np.median(np.concatenate([a[:, :m], a[:, -m:]], axis=1), axis=1)  # (64, 3)
    diff = np.linalg.norm(a - rows[:, None, :], axis=2)
    mask = diff > 60
    mask[:m] = mask[-m:] = False
    mask[:, :m] = mask[:, -m:] = False
    return _largest_component(mask)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack, comp = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask)
    for y, x in best:
        out[y, x] = True
    return out


def _nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda n: float(np.sum((np.array(COLOURS[n]) - rgb) ** 2)))


def classify_image(img: Image.Image) -> dict[str, str | None]:
    """Read a scene back: ``background``, and the main shape's ``colour``, ``shape`` and ``position``.

    Values are ``None`` when no shape stands out from the background.
    """
    img = img.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    result: dict[str, str | None] = {"background": classify_background(img)}
    mask = shape_mask(img)
    if mask.sum() < 12:
        return {**result, "colour": None, "shape": None, "position": None}
    result["colour"] = _nearest_colour(np.median(a[mask], axis=0))
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean(), ys.mean()
    result["position"] = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    result["shape"] = _classify_shape(mask)
    return result


def _classify_shape(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = mask.sum() / float(h * w)
    # the top row's width: a triangle and a star come to a point, a square does not
    top = mask[ys.min() : ys.min() + max(1, h // 6)].sum(axis=1).max() / float(w)
    if fill > 0.9:
        return "square"
    if fill > 0.68:
        return "circle" if top < 0.8 else "square"
    if fill > 0.45 and top < 0.35:
        return "triangle" if _bottom_width(mask, ys, w) > 0.8 else "star"
    return "star"


def _bottom_width(mask: np.ndarray, ys: np.ndarray, w: int) -> float:
    h = ys.max() - ys.min() + 1
    rows = mask[ys.max() - max(1, h // 6) + 1 : ys.max() + 1]
    return rows.sum(axis=1).max() / float(w)
