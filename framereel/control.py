"""ControlNet conditioning in a storyboard: a frame's ``"control"`` list, checked and resolved.

Pure Python (no torch), like :mod:`framereel.storyboard`, which calls in here for the ``"control"``
key (in a frame, in ``defaults`` or from ``--control``). Each entry is an object:

* ``"model"``: a ControlNet (a local folder or a Hub id), for the run model's family;
* ``"image"``: the control image: a file (relative to the storyboard's folder), ``"previous"``
  (the frame before this one, as rendered), ``"video:PATH@SECONDS"`` (that video's frame at that
  time) or ``"video:PATH"`` (the video's frame at this frame's time in the film: a source video
  driving the film frame by frame, sampled at the film's fps);
* ``"preprocess"``: what turns the image into the ControlNet's map: ``canny`` (OpenCV edges),
  ``depth`` (a depth-estimation model: ``"depth_model"``, else the run's), ``tile`` and ``none`` (the image as it is);
  ``openpose`` and ``lineart`` need annotator weights framereel does not fetch, and are refused;
* ``"weight"`` (a number or a schedule), ``"start"`` and ``"end"`` (the fraction of the steps it acts on).

A frame's own ``"control"`` replaces the run's (``[]`` or ``null``: none). Several entries make a
multi-ControlNet.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FramereelError
from .schedule import Schedule, ScheduleError, parse_schedule

PREPROCESSORS = ("canny", "depth", "tile", "none", "openpose", "lineart")
NEEDS_ANNOTATOR = ("openpose", "lineart")  # controlnet_aux annotators: their weights come from the Hub
ENTRY_KEYS = ("model", "image", "preprocess", "weight", "start", "end", "depth_model")
PREVIOUS, VIDEO = "previous", "video:"
FILM_TIME = "@film"  # a "video:PATH" image before its frame's time in the film is known
MAX_WEIGHT = 5.0
SHAPE = 'an object like {"model": "PATH_OR_ID", "image": "pose.png", "preprocess": "canny"} or a list of them'


@dataclass(frozen=True)
class ControlSpec:
    """One ControlNet of one frame, resolved: its model, its image, how the image becomes the map, and
    how strongly and over which part of the steps it steers."""

    model: str  # an absolute folder path or a Hub id
    image: str  # an absolute file path, "previous", or "video:ABSOLUTE_PATH@SECONDS"
    preprocess: str = "none"
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    depth_model: str | None = None  # "depth" only (None: the run's depth model)

    @property
    def source(self) -> str:
        """``"file"``, ``"previous"`` or ``"video"``."""
        return "previous" if self.image == PREVIOUS else "video" if self.image.startswith(VIDEO) else "file"

    @property
    def video(self) -> tuple[str, float]:
        """A ``video:`` image's (path, seconds)."""
        path, _, seconds = self.image[len(VIDEO):].rpartition("@")
        return path, float(seconds)

    def set(self) -> tuple:
        """What frames sharing one pipeline call must share (everything but the image)."""
        return (self.model, self.preprocess, self.weight, self.start, self.end, self.depth_model)


Fail = Callable[[str], FramereelError]


def check_control(fail: Fail, base: Path, value: Any, name: str = '"control"') -> tuple[dict[str, Any], ...]:
    """A ``"control"`` value as written → its entries with paths made absolute (relative to ``base``)
    and ``weight`` a number or a :class:`Schedule`; ``()`` for ``[]`` or ``null`` (no control).
    ``name`` names the value in errors (``--control`` on the command line)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
        raise fail(f"{name} must be {SHAPE}")
    return tuple(_check_entry(fail, base, e, f"{name}[{i}]" if len(items) > 1 else name)
                 for i, e in enumerate(items))


def _check_entry(fail: Fail, base: Path, entry: dict[str, Any], name: str) -> dict[str, Any]:
    import difflib

    for key in entry:
        if key not in ENTRY_KEYS:
            close = difflib.get_close_matches(key, ENTRY_KEYS, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(ENTRY_KEYS)}"
            raise fail(f"{name}: unknown key {key!r}{hint}")
    for key in ("model", "image"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise fail(f'{name}: "{key}" must be given: '
                       + ("a ControlNet folder or Hub id" if key == "model" else
                          'an image file, "previous" or "video:PATH@SECONDS"'))
    preprocess = entry.get("preprocess", "none")
    if preprocess not in PREPROCESSORS:
        raise fail(f'{name}: "preprocess" must be one of {", ".join(PREPROCESSORS)} (got {preprocess!r})')
    if preprocess in NEEDS_ANNOTATOR:
        raise fail(f'{name}: "preprocess": "{preprocess}" needs controlnet_aux annotator weights, which framereel '
                   f'does not download; make the {preprocess} map yourself and give it with "preprocess": "none"')
    depth_model = entry.get("depth_model")
    if depth_model is not None and preprocess != "depth":
        raise fail(f'{name}: "depth_model" is for "preprocess": "depth"; drop it')
    if depth_model is not None and not (isinstance(depth_model, str) and depth_model.strip()):
        raise fail(f'{name}: "depth_model" must be a depth-estimation model folder or Hub id')
    start, end = (_fraction(fail, name, key, entry.get(key, default)) for key, default in (("start", 0.0), ("end", 1.0)))
    if start >= end:
        raise fail(f'{name}: "start" ({start:g}) must be before "end" ({end:g})')
    return {"model": _model(base, entry["model"].strip()), "image": _image(fail, base, name, entry["image"].strip()),
            "preprocess": preprocess, "weight": _weight(fail, name, entry.get("weight", 1.0)), "start": start,
            "end": end, "depth_model": _model(base, depth_model.strip()) if depth_model else None}


def _fraction(fail: Fail, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise fail(f'{name}: "{key}" must be a fraction of the steps from 0 to 1 (got {value!r})')
    return float(value)


def _weight(fail: Fail, name: str, value: Any) -> float | Schedule:
    if isinstance(value, str):
        try:
            sched = parse_schedule(value, name="control weight")
        except ScheduleError as e:
            raise fail(f"{name}: {e}") from None
        bad = [k.number for k in sched.keys if k.number is not None and not 0 <= k.number <= MAX_WEIGHT]
        if bad:
            raise fail(f'{name}: "weight" schedule: value {bad[0]:g} is outside 0 to {MAX_WEIGHT:g}')
        from dataclasses import replace

        return replace(sched, bounds=(0.0, MAX_WEIGHT))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and 0 <= value <= MAX_WEIGHT):
        raise fail(f'{name}: "weight" must be a number from 0 to {MAX_WEIGHT:g} or a schedule like '
                   f'"0:(1.0), 10:(0.5)" (got {value!r})')
    return float(value)


def _model(base: Path, spec: str) -> str:
    """A ControlNet or depth model as given: a path (made absolute when it is one here) or a Hub id."""
    local = Path(spec).expanduser()
    local = local if local.is_absolute() else base / local
    return str(local.resolve()) if local.exists() or spec.startswith((".", "/", "~")) else spec


def _image(fail: Fail, base: Path, name: str, image: str) -> str:
    if image == PREVIOUS:
        return image
    if image.startswith(VIDEO):
        path, at, seconds = image[len(VIDEO):].rpartition("@")
        try:
            t = float(seconds)
        except ValueError:
            t = -1.0
        if not at:  # sampled at the film's rate
            return f"{VIDEO}{_existing(fail, base, name, seconds)}{FILM_TIME}"
        if not path or not (math.isfinite(t) and t >= 0):
            raise fail(f'{name}: "image" {image!r}: write a video frame as "video:PATH@SECONDS", like '
                       '"video:walk.mp4@1.5" (or "video:PATH" for the frame at each frame\'s time in the film)')
        return f"{VIDEO}{_existing(fail, base, name, path)}@{t:g}"
    return _existing(fail, base, name, image)


def _existing(fail: Fail, base: Path, name: str, value: str) -> str:
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise fail(f'{name}: "image": {value}: no such file')
    return str(p.resolve())


def resolve_control(entries: tuple[dict[str, Any], ...], at: Callable[[Any], Any], seconds: float
                    ) -> tuple[ControlSpec, ...]:
    """A frame's control: its checked entries with scheduled weights taken at the frame (``at``) and
    ``"video:PATH"`` images at its time in the film (``seconds``)."""
    def image(value: str) -> str:
        return value[: -len(FILM_TIME)] + f"@{round(seconds, 6):g}" if value.endswith(FILM_TIME) else value

    return tuple(ControlSpec(**{**e, "weight": float(at(e["weight"])), "image": image(e["image"])}) for e in entries)


def morph_control(a: tuple[ControlSpec, ...] | None, b: tuple[ControlSpec, ...] | None, t: float
                  ) -> tuple[ControlSpec, ...] | None:
    """A morph in-between's ControlNets at ``t`` from key frame ``a`` to ``b``: each of ``a``'s, its
    weight moved towards what ``b`` gives the same ControlNet (0 if nothing), and ``b``'s others faded in."""
    from dataclasses import replace

    weights_a = {c.model: c.weight for c in a or ()}
    weights_b = {c.model: c.weight for c in b or ()}
    out = [replace(c, weight=round((1 - t) * c.weight + t * weights_b.get(c.model, 0.0), 6)) for c in a or ()]
    out += [replace(c, weight=round(t * c.weight, 6)) for c in b or () if c.model not in weights_a]
    return tuple(out) or None

