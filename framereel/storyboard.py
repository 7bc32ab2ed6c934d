"""Storyboards: read a prompts file, validate all of it, and resolve every frame's parameters.

Pure Python (no torch): validation is instant and happens before any model loads.

Accepted forms:

* a JSON list of frames: ``[{"prompt": "..."}, {"prompt": "...", "seed": 7}]``;
* a JSON object ``{"defaults": {...}, "frames": [...]}`` whose defaults apply to every frame;
* a ``.txt`` file, one prompt per line (blank lines and lines starting with ``#`` are skipped).

Precedence for each parameter, highest first: the frame's own key, the CLI's flags, the file's
``defaults``, the model's recommended settings, framereel's built-in defaults.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .errors import FramereelError

DEFAULT_RUN_SEED = 174  # the seed of the Tenstorrent demo's fixed latent; any fixed value would do
BUILTIN_DEFAULTS: dict[str, Any] = {
    "negative_prompt": "",
    "steps": 25,
    "guidance": 7.5,
    "width": 512,  # a model's own native size wins over this
    "height": 512,
}
# Left None by load_storyboard when unset; Storyboard.resolved() fills them once the model is known.
RESOLVED_LATER = ("negative_prompt", "steps", "guidance", "width", "height")

# key -> (python types accepted, description used in errors)
FRAME_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "prompt": ((str,), "a non-empty string"),
    "negative_prompt": ((str,), "a string"),
    "seed": ((int,), "an integer from 0 to 2**32-1"),
    "steps": ((int,), "an integer from 1 to 1000"),
    "guidance": ((int, float), "a number from 0 to 50"),
    "width": ((int,), "a multiple of 8 from 64 to 4096"),
    "height": ((int,), "a multiple of 8 from 64 to 4096"),
    "duration": ((int, float), "a number of seconds greater than 0"),
}
DEFAULTS_KEYS = {k for k in FRAME_KEYS if k not in ("prompt", "seed")} | {"seed"}


def frame_seed(run_seed: int, index: int) -> int:
    """The seed of frame ``index`` when the frame sets none: ``(run_seed + index) mod 2**32``.

    It depends on nothing else, so a frame's image is the same whichever other frames are
    rendered, in whatever order, by however many workers.
    """
    return (run_seed + index) % 2**32


@dataclass(frozen=True)
class Frame:
    """One frame of a storyboard: its index and the parameters that make its image."""

    index: int
    prompt: str
    negative_prompt: str | None
    seed: int
    steps: int | None
    guidance: float | None
    width: int | None
    height: int | None
    duration: float | None = None  # None: 1 / fps when stitching

    def render_params(self) -> dict[str, Any]:
        """The parameters that decide the image (not ``index`` or ``duration``)."""
        d = asdict(self)
        del d["index"], d["duration"]
        return d


@dataclass(frozen=True)
class Storyboard:
    path: Path
    frames: tuple[Frame, ...]
    run_seed: int = DEFAULT_RUN_SEED

    def __len__(self) -> int:
        return len(self.frames)

    def resolved(self, model_defaults: dict[str, Any] | None = None) -> Storyboard:
        """Fill what no frame, flag or file set: from the model's recommended settings
        (``width``/``height`` are its native size), else framereel's built-in defaults."""
        fallback = {**BUILTIN_DEFAULTS, **(model_defaults or {})}
        frames = tuple(
            replace(f, **{k: fallback[k] for k in RESOLVED_LATER if getattr(f, k) is None})
            for f in self.frames
        )
        return replace(self, frames=frames)


def _fail(path: Path, where: str, problem: str) -> FramereelError:
    return FramereelError(f"{path.name}: {where}: {problem}" if where else f"{path.name}: {problem}")


def _check_value(path: Path, where: str, key: str, value: Any) -> Any:
    types, want = FRAME_KEYS[key]
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and key == "prompt":
        ok = bool(value.strip())
    elif ok and key == "seed":
        ok = 0 <= value < 2**32
    elif ok and key == "steps":
        ok = 1 <= value <= 1000
    elif ok and key == "guidance":
        ok = math.isfinite(value) and 0 <= value <= 50
    elif ok and key in ("width", "height"):
        ok = value % 8 == 0 and 64 <= value <= 4096
    elif ok and key == "duration":
        ok = math.isfinite(value) and value > 0
    if not ok:
        raise _fail(path, where, f'"{key}" must be {want} (got {json.dumps(value)})')
    return float(value) if key in ("guidance", "duration") else value


def _check_keys(path: Path, where: str, obj: dict, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(sorted(allowed))}"
            raise _fail(path, where, f'unknown key "{key}"{hint}')


def _read(path: Path) -> tuple[list[Any], dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FramereelError(f"{path}: no such file; pass the path of a prompts .json or .txt file") from None
    except IsADirectoryError:
        raise FramereelError(f"{path}: is a folder; pass the path of a prompts .json or .txt file") from None
    except UnicodeDecodeError:
        raise FramereelError(f"{path.name}: not UTF-8 text; save it as UTF-8") from None
    if path.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in text.splitlines()]
        return [{"prompt": ln} for ln in lines if ln and not ln.startswith("#")], {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from None
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict):
        _check_keys(path, "top level", data, {"defaults", "frames"})
        if "frames" not in data or not isinstance(data["frames"], list):
            raise _fail(path, "top level", '"frames" must be a list of frames')
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise _fail(path, "defaults", "must be an object")
        return data["frames"], defaults
    raise _fail(path, "", 'expected a JSON list of {"prompt": ...} objects, or {"defaults": ..., "frames": [...]}')


def load_storyboard(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    run_seed: int | None = None,
) -> Storyboard:
    """Read and validate a storyboard; return every frame with its parameters resolved.

    ``overrides`` are run-wide settings (the CLI's flags); a frame's own keys beat them.
    ``run_seed`` derives the seed of frames that set none (see :func:`frame_seed`).
    Parameters nobody set stay ``None`` until :meth:`Storyboard.resolved`.
    Raises :class:`FramereelError` naming the file, the frame and the problem.
    """
    path = Path(path)
    raw_frames, file_defaults = _read(path)
    if not raw_frames:
        raise _fail(path, "", "no frames; add at least one prompt")
    _check_keys(path, "defaults", file_defaults, DEFAULTS_KEYS)
    for key, value in file_defaults.items():
        _check_value(path, "defaults", key, value)
    cli = {k: v for k, v in (overrides or {}).items() if v is not None}
    base = {**file_defaults, **cli}
    if run_seed is None:
        run_seed = base.get("seed", DEFAULT_RUN_SEED)
    base.pop("seed", None)
    frames = []
    for i, raw in enumerate(raw_frames):
        where = f"frame {i}"
        if isinstance(raw, str):
            raw = {"prompt": raw}
        if not isinstance(raw, dict):
            raise _fail(path, where, 'must be an object like {"prompt": "..."}')
        _check_keys(path, where, raw, set(FRAME_KEYS))
        if "prompt" not in raw:
            raise _fail(path, where, 'missing "prompt"')
        values = {k: _check_value(path, where, k, v) for k, v in raw.items()}
        merged = {**base, **values}
        frames.append(
            Frame(
                index=i,
                prompt=merged["prompt"].strip(),
                negative_prompt=merged.get("negative_prompt"),
                seed=merged.get("seed", frame_seed(run_seed, i)),
                steps=merged.get("steps"),
                guidance=merged.get("guidance"),
                width=merged.get("width"),
                height=merged.get("height"),
                duration=merged.get("duration"),
            )
        )
    return Storyboard(path=path, frames=tuple(frames), run_seed=run_seed)


def parse_indices(spec: str, count: int | None = None) -> list[int]:
    """Parse ``"3,5-7"`` into ``[3, 5, 6, 7]``; check against ``count`` frames if given."""
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
            else:
                lo = hi = int(part)
        except ValueError:
            raise FramereelError(f'"{spec}": "{part}" is not a frame number or range like 5-7') from None
        if lo > hi or lo < 0:
            raise FramereelError(f'"{spec}": "{part}" is not a valid range (write low-high, from 0)')
        if count is not None and hi >= count:
            raise FramereelError(f'"{spec}": frame {hi} does not exist (frames are 0-{count - 1})')
        out.extend(range(lo, hi + 1))
    return sorted(set(out))
