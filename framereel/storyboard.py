"""Storyboards: read a prompts file, validate all of it, and resolve every frame's parameters.

Pure Python (no torch): validation is instant and happens before any model loads.

Accepted forms:

* a JSON list of frames: ``[{"prompt": "..."}, {"prompt": "...", "seed": 7}]``;
* a JSON object ``{"defaults": {...}, "frames": [...]}`` whose defaults apply to every frame;
* a ``.txt`` file, one prompt per line (blank lines and lines starting with ``#`` are skipped);
* a Deforum settings file (JSON, often ``*_settings.txt``), converted by :mod:`framereel.deforum`.

:mod:`framereel.loader` reads a file, picks its form and converts other tools' files; this module
checks the result (it knows no file format but its own).

An object may also carry ``"notes"`` (a list of lines: what an import could not carry) and
``"scheduler"`` and ``"depth_model"`` (used when the command line names none).

Files may start with a UTF-8 byte-order mark (Windows editors write one); it is ignored.

Precedence for each parameter, highest first: the frame's own key, the CLI's flags, the file's
``defaults``, the model's recommended settings, framereel's built-in defaults.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from . import clips, control
from .clips import ClipSpec
from .control import ControlSpec
from .errors import FramereelError
from .schedule import Schedule, ScheduleError, parse_schedule

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

# a frame's width and height, in pixels: every interface (storyboards, flags, interactive mode,
# the studio, Deforum imports) takes the same sizes
SIDE_MULTIPLE, MIN_SIDE, MAX_SIDE = 8, 64, 4096
SIDE_RULE = f"a multiple of {SIDE_MULTIPLE} from {MIN_SIDE} to {MAX_SIDE}"

# key -> (python types accepted, description used in errors)
FRAME_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "prompt": ((str,), "a non-empty string"),
    "negative_prompt": ((str,), "a string"),
    "seed": ((int,), "an integer from 0 to 2**32-1"),
    "steps": ((int,), "an integer from 1 to 1000"),
    "guidance": ((int, float), "a number from 0 to 50"),
    "width": ((int,), SIDE_RULE),
    "height": ((int,), SIDE_RULE),
    "duration": ((int, float), "a number of seconds greater than 0, at most 3600"),
    # temporal coherence: latent morphs and img2img chains
    "morph": ((int,), "a number of in-between frames from 0 to 1000"),
    "cadence": ((int,), "a whole number of frames from 1 to 1000"),  # chains: Deforum's diffusion cadence
    "init": ((str, type(None)), '"previous" or null'),
    "strength": ((int, float, str), 'a number from 0 to 1 or a schedule like "0:(0.65), 10:(0.45)"'),
    "motion": ((dict,), 'an object like {"zoom": 1.02, "angle": 0, "tx": 0, "ty": 0}'),
    "shared_noise": ((bool,), "true or false"),
    "color_match": ((str, type(None)), '"first" (RGB), "first-lab", "first-hsv" or null'),
    **clips.CLIP_KEYS,  # native video: see framereel.clips
    "control": ((dict, list, type(None)), control.SHAPE),  # ControlNets: see framereel.control
}
ENTRY_KEYS = (*FRAME_KEYS, "lora")  # every key a frame entry takes ("lora" is checked on its own)
DEFAULTS_KEYS = {k for k in FRAME_KEYS if k not in ("prompt", *clips.KEY_FRAMES)}  # key frames are per clip
MAX_DURATION = 3600.0  # seconds one frame stays on screen
MOTION_KEYS = {"zoom": 1.0, "angle": 0.0, "tx": 0.0, "ty": 0.0}
# Deforum's 2D transform beyond the four above: a shift before zoom/rotation, the centre, the border
DEFORUM_MOTION_KEYS = {"translation_x": 0.0, "translation_y": 0.0, "transform_center_x": 0.5,
                       "transform_center_y": 0.5, "border": "mirror"}
MOTION_RANGES = {"zoom": (0.1, 10.0), "angle": (-360.0, 360.0), "transform_center_x": (-10.0, 10.0),
                 "transform_center_y": (-10.0, 10.0)}  # others: MOTION_PIXELS
MOTION_PIXELS = (-4096.0, 4096.0)
BORDERS = ("mirror", "wrap", "replicate")
# "warp": "deforum" resamples as Deforum's OpenCV warp (bilinear, its pixel grid); see coherence.warp
WARPS = ("framereel", "deforum")
# "mode": "3D": Deforum's 3D camera through the picture's depth (framereel.camera3d); zoom and angle
# are 2D keys, as Deforum ignores them in 3D
MOTION_3D_KEYS: dict[str, Any] = {
    "translation_x": 0.0, "translation_y": 0.0, "translation_z": 0.0, "rotation_3d_x": 0.0, "rotation_3d_y": 0.0,
    "rotation_3d_z": 0.0, "fov": 70.0, "aspect_ratio": 1.0, "padding_mode": "border", "sampling_mode": "bicubic",
    "depth_warping": True,
}
MOTION_3D_RANGES = {"rotation_3d_x": (-360.0, 360.0), "rotation_3d_y": (-360.0, 360.0),
                    "rotation_3d_z": (-360.0, 360.0), "fov": (1.0, 179.0), "aspect_ratio": (0.1, 10.0)}
MOTION_3D_CHOICES = {"padding_mode": ("border", "reflection", "zeros"),
                     "sampling_mode": ("bicubic", "bilinear", "nearest")}
COLOR_MATCHES = {"first": None, "first-lab": "lab", "first-hsv": "hsv", None: None}  # → Frame.color_space
TOP_LEVEL_KEYS = {"defaults", "frames", "notes", "scheduler", "depth_model"}
SCHEDULED = ("guidance", "strength")  # keys that also take a keyframe schedule string
DEFAULT_STRENGTH = 0.65
FILM_FPS = 2.0  # stitch's pace for frames without a duration when nothing else says: control videos sample at it


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
    shot: int = 0  # the storyboard entry this frame comes from
    kind: str = "key"  # "key": text-to-image; "morph": a latent in-between; "chain": img2img from ``parent``
    morph: tuple[int, int, float] | None = None  # (from frame, to frame, t) for in-betweens
    morph_prompt: str | None = None  # the next key frame's prompt and seed, for in-betweens
    morph_seed: int | None = None
    parent: int | None = None  # chains: the frame whose image this one starts from
    strength: float | None = None  # chains: 0 keeps the parent's image, 1 ignores it
    # chains: zoom, angle (deg), tx, ty (px); with Deforum's keys also translation_x/y, transform centre, border
    motion: tuple[Any, ...] | None = None
    color_ref: int | None = None  # chains: match colours to this frame's
    color_space: str | None = None  # chains: "lab" or "hsv" to match colours there (None: RGB)
    clip: ClipSpec | None = None  # "clip" frames: the clip they belong to (rendered whole)
    clip_pos: int | None = None  # their position in it, from 0
    # the frame's own "lora": ((PATH_OR_ID, weight), ...) instead of the run's LoRAs (None: the run's);
    # a morph's in-betweens also carry the next key frame's, and blend the weights of both
    lora: tuple[tuple[str, float], ...] | None = None
    morph_lora: tuple[tuple[str, float], ...] | None = None
    control: tuple[ControlSpec, ...] | None = None  # ControlNets steering this frame (see framereel.control)
    # chains with Deforum's cadence N, from the second block on: (the block's diffused frame, N); its
    # frames are blends of the previous and this block's diffused images carried by their motion
    cadence: tuple[int, int] | None = None

    @property
    def depends_on(self) -> int | None:
        """The frame whose image this one starts from, rendered first: a chain's parent, or the frame
        before when a control image is ``"previous"``."""
        if self.parent is not None:
            return self.parent
        if self.control and any(c.source == "previous" for c in self.control):
            return self.index - 1
        return None

    def starts_from(self) -> tuple[int, ...]:
        """Output frames whose images this frame's pixels start from: a chain's parent (or the frame
        before for a ``"previous"`` control image, :attr:`depends_on`), a clip's key frames
        (``"previous"``/``"next"``)."""
        keys = tuple(ref for _, ref in self.clip.keys if isinstance(ref, int)) if self.kind == "clip" else ()
        return ((self.depends_on,) if self.depends_on is not None else ()) + keys

    def render_params(self) -> dict[str, Any]:
        """The parameters that decide the image (not ``index``, ``shot`` or ``duration``; a frame's
        own LoRAs and ControlNets enter its hash as the backend resolves them: by their files' contents)."""
        d = asdict(self)
        for key in ("index", "shot", "duration", "lora", "morph_lora", "control"):
            del d[key]
        if self.color_space is None:  # RGB, as before colour spaces existed: hashes stay the same
            del d["color_space"]
        if self.cadence is None:
            del d["cadence"]
        if self.kind in ("key", "clip"):  # keep key frames' hashes as plain as the storyboard they come from
            for key in ("kind", "morph", "morph_prompt", "morph_seed", "parent", "strength", "motion", "color_ref",
                        "color_space"):
                d.pop(key, None)
        if self.kind == "clip":
            d["kind"] = "clip"
            d["clip"] = self.clip.hashed()
        else:
            del d["clip"], d["clip_pos"]
        return d


@dataclass(frozen=True)
class Storyboard:
    path: Path
    frames: tuple[Frame, ...]
    run_seed: int = DEFAULT_RUN_SEED
    notes: tuple[str, ...] = ()  # what an import could not carry, one line each
    digest: str = ""  # sha256 of the file's text: the same storyboard under another name is the same run
    scheduler: str | None = None  # the file's scheduler; the command line's --scheduler wins
    depth_model: str | None = None  # the file's depth model for 3D motion; --depth-model wins
    loras: tuple[str, ...] = ()  # the defaults' "lora": LoRAs for the whole run ("PATH_OR_ID[:WEIGHT]")

    def __len__(self) -> int:
        return len(self.frames)

    def resolved(self, model_defaults: dict[str, Any] | None = None) -> Storyboard:
        """Fill what no frame, flag or file set: from the model's recommended settings
        (``width``/``height`` are its native size), else framereel's built-in defaults."""
        frames = tuple(resolve_frame(f, model_defaults) for f in self.frames)
        for f in frames:
            if f.kind == "morph":
                a, b = frames[f.morph[0]], frames[f.morph[1]]
                if (a.width, a.height) != (b.width, b.height):
                    raise FramereelError(
                        f"{self.path.name}: frame {a.shot}: a morph needs both ends the same size "
                        f"({a.width}x{a.height} vs {b.width}x{b.height}); set width/height alike"
                    )
        return replace(self, frames=frames)


def resolve_frame(frame: Frame, model_defaults: dict[str, Any] | None = None) -> Frame:
    """``frame`` with what nobody set filled from the model's recommendations, else the built-ins."""
    fallback = {**BUILTIN_DEFAULTS, **(model_defaults or {})}
    clip_defaults = fallback.pop("clip", None) or {}  # a video model's, for clip frames
    if frame.kind == "clip":
        fallback.update(clip_defaults)
    return replace(frame, **{k: fallback[k] for k in RESOLVED_LATER if getattr(frame, k) is None})


def _fail(path: Path, where: str, problem: str) -> FramereelError:
    if where == SETTING:
        return FramereelError(problem)
    if where == "command line":
        return FramereelError(f"command line: {problem.replace(chr(34), '--', 1).replace(chr(34), '', 1).replace('_', '-')}")
    return FramereelError(f"{path.name}: {where}: {problem}" if where else f"{path.name}: {problem}")


def check_value(path: Path, where: str, key: str, value: Any) -> Any:
    if key in clips.CLIP_KEYS:
        return clips.check_clip_value(lambda problem: _fail(path, where, problem), key, value)
    if key == "control":  # images and models: relative to the storyboard's folder (the command line's: here)
        if where == "command line":
            return control.check_control(lambda problem: FramereelError(f"command line: {problem}"), Path.cwd(),
                                         value, name="--control")
        return control.check_control(lambda problem: _fail(path, where, problem), path.parent, value)
    types, want = FRAME_KEYS[key]
    if key in SCHEDULED and isinstance(value, str):
        return _check_schedule(path, where, key, value, 0.0, 1.0 if key == "strength" else 50.0)
    if key == "motion" and isinstance(value, dict):
        return _check_motion(path, where, value)
    ok = isinstance(value, types) and (not isinstance(value, bool) or key == "shared_noise")
    if ok and key == "init":
        ok = value in ("previous", None)
    elif ok and key == "color_match":
        ok = value in COLOR_MATCHES
    elif ok and key == "morph":
        ok = 0 <= value <= 1000
    elif ok and key == "cadence":
        ok = 1 <= value <= 1000
    elif ok and key == "strength":
        ok = 0 <= value <= 1
    elif ok and key == "prompt":
        ok = bool(value.strip())
    elif ok and key == "seed":
        ok = 0 <= value < 2**32
    elif ok and key == "steps":
        ok = 1 <= value <= 1000
    elif ok and key == "guidance":
        ok = math.isfinite(value) and 0 <= value <= 50
    elif ok and key in ("width", "height"):
        ok = value % SIDE_MULTIPLE == 0 and MIN_SIDE <= value <= MAX_SIDE
    elif ok and key == "duration":
        ok = math.isfinite(value) and 0 < value <= MAX_DURATION
    if not ok:
        raise _fail(path, where, f'"{key}" must be {want} (got {shown(value)})')
    return float(value) if key in ("guidance", "duration") else value


SETTING = "setting"  # check_value's ``where`` for one setting on its own: the message names only the key


def check_setting(key: str, value: Any) -> Any:
    """One frame parameter set on its own (interactive mode, the studio), checked by the storyboard's
    rule for ``key``: the value (``guidance`` a float), or one line naming the key and the rule.
    A plain value only: no keyframe schedule."""
    types, want = FRAME_KEYS[key]
    if key in SCHEDULED and isinstance(value, str):
        raise _fail(Path("-"), SETTING, f'"{key}" must be {want.split(" or ")[0]} (got {shown(value)})')
    return check_value(Path("-"), SETTING, key, value)


def shown(value: Any, limit: int = 60) -> str:
    """A value as JSON for an error message, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_schedule(path: Path, where: str, key: str, text: str, lo: float, hi: float) -> Schedule:
    try:
        sched = parse_schedule(text, name=key)
    except ScheduleError as e:
        raise _fail(path, where, str(e)) from None
    bad = [k.number for k in sched.keys if k.number is not None and not lo <= k.number <= hi]
    if bad:
        raise _fail(path, where, f'"{key}" schedule: value {bad[0]:g} is outside {lo:g} to {hi:g}')
    return replace(sched, bounds=(lo, hi))  # expressions are checked at every frame


def _check_motion(path: Path, where: str, motion: dict) -> dict[str, Schedule | str | bool]:
    _check_keys(path, f"{where}: motion", motion,
                set(MOTION_KEYS) | set(DEFORUM_MOTION_KEYS) | set(MOTION_3D_KEYS) | {"mode", "warp"})
    three_d = _check_motion_mode(path, where, motion)
    choices = {"border": BORDERS, "warp": WARPS, **(MOTION_3D_CHOICES if three_d else {})}
    out: dict[str, Schedule | str | bool] = {}
    for key, value in motion.items():
        if key in choices:
            if value not in choices[key]:
                raise _fail(path, where, f'motion "{key}" must be one of {", ".join(choices[key])} (got {shown(value)})')
            out[key] = value
            continue
        if key in ("mode", "depth_warping"):
            out[key] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _fail(path, where, f'motion "{key}" must be a number or a schedule like "0:(1.0), 10:(1.05)"')
        lo, hi = (MOTION_3D_RANGES if three_d else MOTION_RANGES).get(key, MOTION_PIXELS)
        out[key] = _check_schedule(path, where, f"motion.{key}", value if isinstance(value, str) else f"0:({value})", lo, hi)
    return out


def _check_motion_mode(path: Path, where: str, motion: dict) -> bool:
    """Whether ``motion`` is Deforum's 3D camera ("mode": "3D"); refuses keys of the other mode."""
    mode = motion.get("mode", "2D")
    if mode not in ("2D", "3D"):
        raise _fail(path, where, f'motion "mode" must be "2D" or "3D" (got {shown(mode)})')
    if mode == "3D":
        flat = sorted(set(motion) - set(MOTION_3D_KEYS) - {"mode"})
        if flat:
            raise _fail(path, where, f'motion "{flat[0]}" is a 2D key; a "mode": "3D" camera moves with '
                        "translation_x/y/z and rotation_3d_x/y/z (Deforum ignores zoom and angle in 3D too)")
        if not isinstance(motion.get("depth_warping", True), bool):
            raise _fail(path, where, f'motion "depth_warping" must be true or false (got {shown(motion["depth_warping"])})')
        return True
    deep = sorted(set(motion) & (set(MOTION_3D_KEYS) - set(DEFORUM_MOTION_KEYS)))
    if deep:
        raise _fail(path, where, f'motion "{deep[0]}" moves the 3D camera; add "mode": "3D" to the motion')
    return False


def _check_keys(path: Path, where: str, obj: dict, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(sorted(allowed))}"
            raise _fail(path, where, f"unknown key {shown(key)}{hint}")


def read_text(path: Path, what: str = "a prompts .json or .txt file") -> str:
    """A text file's contents (UTF-8, a leading byte-order mark dropped), or one line saying why not;
    ``what`` names the file the user should pass instead (a storyboard, by default)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FramereelError(f"{path}: no such file; pass the path of {what}") from None
    except IsADirectoryError:
        raise FramereelError(f"{path}: is a folder; pass the path of {what}") from None
    except NotADirectoryError:
        raise FramereelError(f"{path}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise FramereelError(f"{path}: not readable by this user (permission denied)") from None
    except OSError as e:
        raise FramereelError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FramereelError(f"{path.name}: not UTF-8 text (byte {e.start + 1}); save it as UTF-8") from None


def prompt_lines(text: str) -> list[dict[str, str]]:
    """A ``.txt`` storyboard: one prompt per line; blank lines and lines starting with ``#`` are skipped."""
    lines = [ln.strip() for ln in text.splitlines()]
    return [{"prompt": ln} for ln in lines if ln and not ln.startswith("#")]


def read_json(path: Path, text: str) -> Any:
    """``text`` parsed as JSON, or one line naming where it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from None
    except RecursionError:
        raise _fail(path, "", "invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal with thousands of digits
        raise _fail(path, "", f"invalid JSON: {str(e).splitlines()[0]}") from None


def _contents(path: Path, data: Any) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """A storyboard's contents → its raw frames, file defaults and extras (checked by :func:`build_storyboard`)."""
    if isinstance(data, list):
        return data, {}, {}
    if not isinstance(data, dict):
        raise _fail(path, "", 'expected a JSON list of {"prompt": ...} objects, or {"defaults": ..., "frames": [...]}')
    _check_keys(path, "top level", data, TOP_LEVEL_KEYS)
    if "frames" not in data or not isinstance(data["frames"], list):
        raise _fail(path, "top level", '"frames" must be a list of frames')
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail(path, "defaults", "must be an object")
    extras = {}
    notes = data.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise _fail(path, "notes", "must be a list of strings")
    extras["notes"] = tuple(n.replace("\n", " ") for n in notes)
    if "scheduler" in data:
        from .settings import SCHEDULERS

        if data["scheduler"] not in SCHEDULERS:
            raise _fail(path, "scheduler", f"must be one of {', '.join(SCHEDULERS)} (got {json.dumps(data['scheduler'])})")
        extras["scheduler"] = data["scheduler"]
    if "depth_model" in data:
        extras["depth_model"] = _depth_model(path, data["depth_model"])
    return data["frames"], defaults, extras


def _depth_model(path: Path, value: Any) -> str:
    """The file's depth model for 3D motion: a folder relative to the storyboard's, else a Hub id."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "depth_model", "must be a depth-estimation model folder or Hub id (owner/name)")
    local = Path(value).expanduser()
    local = local if local.is_absolute() else path.parent / local
    return str(local.resolve()) if local.exists() else value


def build_storyboard(
    data: Any,
    path: str | Path,
    text: str,
    overrides: dict[str, Any] | None = None,
    run_seed: int | None = None,
    fps: float | None = None,
) -> Storyboard:
    """Check a storyboard's contents (a list of frames, or ``{"defaults": …, "frames": […]}``) and
    return every frame with its parameters resolved; ``text`` is the file's text (its digest names
    the run). Files are read, and their format picked, by :mod:`framereel.loader`.

    ``overrides`` are run-wide settings (the CLI's flags); a frame's own keys beat them.
    ``run_seed`` derives the seed of frames that set none (see :func:`frame_seed`).
    ``fps``: the film's pace for frames without a duration (control videos are sampled at it; default 2).
    Parameters nobody set stay ``None`` until :meth:`Storyboard.resolved`.
    Raises :class:`FramereelError` naming the file, the frame and the problem.
    """
    path = Path(path)
    raw_frames, file_defaults, extras = _contents(path, data)
    if not raw_frames:
        raise _fail(path, "", "no frames; add at least one prompt")
    _check_keys(path, "defaults", file_defaults, DEFAULTS_KEYS | {"lora"})
    loras = _loras(path, file_defaults.pop("lora", None))
    file_defaults = {key: check_value(path, "defaults", key, value) for key, value in file_defaults.items()}
    cli = {k: check_value(path, "command line", k, v) for k, v in (overrides or {}).items() if v is not None}
    base = {**file_defaults, **cli}
    if run_seed is None:
        run_seed = base.get("seed", DEFAULT_RUN_SEED)
    else:
        check_value(path, "command line", "seed", run_seed)
    base.pop("seed", None)
    entries = [{**base, **_frame_entry(path, i, raw, len(raw_frames))} for i, raw in enumerate(raw_frames)]
    for i, e in enumerate(entries):
        clips.check_clip_entry(lambda problem, i=i: _fail(path, f"frame {i}", problem), e, i, len(entries),
                               entries[i + 1] if i + 1 < len(entries) else None)
    for i, e in enumerate(entries):
        if "clip" in e and any(c["image"] == control.PREVIOUS for c in e.get("control") or ()):
            raise _fail(path, f"frame {i}", '"control" image "previous" in a clip: a clip renders all its frames at '
                        'once; give an image or "video:PATH" (each clip frame takes its own moment)')
    groups = clips.group_clips(entries, lambda i, problem: _fail(path, f"frame {i}", problem))
    try:
        frames = _expand(entries, run_seed, groups, in_between=base.get("duration"), fps=fps or FILM_FPS)
    except ScheduleError as e:
        raise _fail(path, "", str(e)) from None
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Storyboard(path=path, frames=tuple(frames), run_seed=run_seed, digest=digest, loras=loras, **extras)


def _frame_entry(path: Path, i: int, raw: Any, count: int) -> dict[str, Any]:
    """Frame ``i`` of ``count`` as written → its checked keys (the file's defaults not yet applied)."""
    where = f"frame {i}"
    if isinstance(raw, str):
        raw = {"prompt": raw}
    if not isinstance(raw, dict):
        raise _fail(path, where, 'must be an object like {"prompt": "..."}')
    if "lora" in raw:
        if "clip" in raw:
            raise _fail(path, where, '"lora" of a clip: a clip renders with the run\'s LoRAs; put it in '
                        '"defaults" (or use --lora)')
        raw = {**raw}
        frame_lora = frame_loras(path, where, raw.pop("lora"))
    else:
        frame_lora = None
    _check_keys(path, where, raw, set(ENTRY_KEYS))
    if "prompt" not in raw and isinstance(raw.get("travel"), list) and raw["travel"]:
        raw = {**raw, "prompt": next((t.get("prompt") for t in raw["travel"] if isinstance(t, dict)
                                      and t.get("at") == 0), None)}  # a travel list may start the clip
        if raw["prompt"] is None:
            raise _fail(path, where, '"travel" needs an entry with "at": 0 when the frame has no "prompt"')
    if "prompt" not in raw:
        raise _fail(path, where, 'missing "prompt"')
    values = {k: check_value(path, where, k, v) for k, v in raw.items()}
    if "init_video" in values:
        values["init_video"] = clips.resolve_video(path, where, values["init_video"])
    if i == 0 and any(c["image"] == control.PREVIOUS for c in values.get("control") or ()):
        raise _fail(path, where, '"control" image "previous" needs a frame before it; the first frame has none')
    for key in clips.KEY_FRAMES:
        if key in values:
            values[key] = clips.resolve_image(path, where, key, values[key])
    if i == 0 and values.get("init") == "previous":
        raise _fail(path, where, '"init": "previous" needs a frame before it; the first frame has none')
    if i == count - 1 and values.get("morph"):
        raise _fail(path, where, '"morph" needs a next frame to morph into; the last frame has none')
    return {**values, **({"lora": frame_lora} if frame_lora is not None else {})}


def parse_lora_spec(spec: str) -> tuple[str, float]:
    """``"PATH_OR_ID[:WEIGHT]"`` → (PATH_OR_ID, weight), weight 1 when left out; ValueError naming
    what is wrong (a Windows drive letter or a URL's colon is not a weight)."""
    source, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head and not tail.startswith(("/", "\\")):
        try:
            weight = float(tail)
        except ValueError:
            raise ValueError(f"the weight after ':' must be a number, like {Path(head).name}:0.8") from None
        if not math.isfinite(weight):
            raise ValueError(f"the weight after ':' must be a finite number, like {Path(head).name}:0.8")
        source = head
    if not source.strip():
        raise ValueError("give a LoRA file, folder or Hub id, optionally with :WEIGHT")
    return source, weight


def frame_loras(path: Path, where: str, value: Any) -> tuple[tuple[str, float], ...]:
    """A frame's ``"lora"``: a ``"PATH_OR_ID[:WEIGHT]"`` string or a list of them ([]: none)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise _fail(path, where, '"lora" must be a LoRA path or Hub id (with an optional ":WEIGHT"), a list of '
                    "them, or [] for none")
    out = []
    for spec in items:
        try:
            out.append(parse_lora_spec(spec))
        except ValueError as err:
            raise _fail(path, where, f'"lora" {spec}: {err}') from None
    if len({source for source, _ in out}) != len(out):
        raise _fail(path, where, '"lora" names the same LoRA twice; give it once with its weight')
    return tuple(out)


def _loras(path: Path, value: Any) -> tuple[str, ...]:
    """The defaults' ``"lora"``: one ``"PATH_OR_ID[:WEIGHT]"`` string or a list of them."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise _fail(path, "defaults", '"lora" must be a LoRA path or Hub id (with an optional ":WEIGHT"), '
                    "or a list of them")
    return tuple(items)


def _value_at(value: Any, index: int, count: int, seed: int) -> Any:
    """A key's value at output frame ``index`` of ``count`` (schedules: ``max_f = count-1``, ``s = seed``)."""
    return value.at(index, count, seed) if isinstance(value, Schedule) else value


def _motion_at(motion: dict[str, Any], index: int, count: int, seed: int) -> tuple[Any, ...]:
    """(zoom, angle, tx, ty), plus Deforum's (translation_x, translation_y, centre x, centre y, border)
    only when the storyboard uses them, so the frames of plain storyboards keep their hashes."""
    if motion.get("mode") == "3D":  # (key, value) pairs: ("mode", "3D") first, then every 3D key
        return (("mode", "3D"),) + tuple((k, _value_at(motion.get(k, default), index, count, seed))
                                         for k, default in MOTION_3D_KEYS.items())
    keys = {**MOTION_KEYS, **DEFORUM_MOTION_KEYS} if set(motion) & set(DEFORUM_MOTION_KEYS) else MOTION_KEYS
    if motion.get("warp", "framereel") != "framereel":  # only when asked, so other frames keep their hashes
        keys = {**MOTION_KEYS, **DEFORUM_MOTION_KEYS, "warp": "framereel"}
    return tuple(_value_at(motion.get(k, default), index, count, seed) for k, default in keys.items())


def _frame_control(entry: dict[str, Any], index: int, count: int, run_seed: int, seconds: float
                   ) -> tuple[ControlSpec, ...] | None:
    """A frame's ControlNets: weights at this frame, source-video images at its time in the film."""
    if not entry.get("control"):
        return None
    return control.resolve_control(entry["control"], lambda v: _value_at(v, index, count, run_seed), seconds)


def _film_seconds(frames: list[Frame], fps: float) -> float:
    """When the next frame starts in the film: the earlier frames' durations (1 / ``fps`` where unset)."""
    return sum(f.duration or 1.0 / fps for f in frames)


def motion_3d(motion: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """A frame's 3D camera (its motion's keys and values, "mode" left out), or None for 2D motion."""
    if not motion or motion[0] != ("mode", "3D"):
        return None
    return {k: v for k, v in motion[1:]}


def _expand(entries: list[dict[str, Any]], run_seed: int, groups: list[list[int]] | None = None,
            in_between: float | None = None, fps: float = FILM_FPS) -> list[Frame]:
    """Storyboard entries → output frames: key frames, chained frames, morph in-betweens and clips.

    Indices are consecutive; a morph's in-betweens sit between its two key frames; a clip's
    frames follow each other (``groups`` from :func:`framereel.clips.group_clips`). In-betweens
    last ``in_between`` seconds (the defaults' ``duration``; None: 1 / fps when stitching), not
    their key frame's own ``duration``. ``fps`` paces frames without a duration, for control
    images sampled from a source video at each frame's time in the film.
    """
    frames: list[Frame] = []
    chain_start = cadence_start = 0
    count = len(entries) + sum(e.get("morph") or 0 for e in entries[:-1])  # output frames, in-betweens included
    count += sum(e["clip"] - 1 for e in entries if "clip" in e)  # and clips' frames
    clip_groups = {g[0]: g for g in groups or [] if "clip" in entries[g[0]]}
    in_group = {i for g in clip_groups.values() for i in g[1:]}
    for shot, e in enumerate(entries):
        if shot in in_group:
            continue
        if shot in clip_groups:
            frames.extend(_clip_frames(entries, clip_groups[shot], run_seed, len(frames), count,
                                       _film_seconds(frames, fps), fps))
            continue
        prompt = e["prompt"].strip()
        seed = e.get("seed")
        if seed is None:
            seed = run_seed if e.get("shared_noise") else frame_seed(run_seed, shot)
        if shot > 0 and entries[shot - 1].get("morph"):
            a = frames[-1]
            between = entries[shot - 1]["morph"]  # not ``count``: schedules are read over the whole film
            target = a.index + between + 1
            b_control = _frame_control(e, target, count, run_seed, _film_seconds(frames, fps)
                                       + between * (in_between or 1 / fps)) if a.control or e.get("control") else None
            for j in range(between):
                t = (j + 1) / (between + 1)
                a_control = a.control and _frame_control(entries[shot - 1], a.index, count, run_seed,
                                                         _film_seconds(frames, fps))  # a source video: this moment's
                frames.append(replace(
                    a, index=a.index + 1 + j, kind="morph", duration=in_between, morph=(a.index, target, t),
                    morph_prompt=prompt, morph_seed=seed, parent=None, strength=None, motion=None, color_ref=None, color_space=None,
                    morph_lora=e.get("lora"), control=control.morph_control(a_control, b_control, t),
                ))
        index = len(frames)
        common = dict(
            index=index, shot=shot, prompt=prompt, negative_prompt=e.get("negative_prompt"), seed=seed,
            steps=e.get("steps"), guidance=_value_at(e.get("guidance"), index, count, run_seed), width=e.get("width"),
            height=e.get("height"), duration=e.get("duration"), lora=e.get("lora"),
            control=_frame_control(e, index, count, run_seed, _film_seconds(frames, fps) if e.get("control") else 0.0),
        )
        if shot > 0 and e.get("init") == "previous":
            motion = e.get("motion")
            # cadence blocks count from the frame the chain starts from (a morph's last in-between, a clip's last frame)
            cadence_start = index - 1 if frames[-1].kind != "chain" else cadence_start
            step, block = _cadence_block(index, cadence_start, e.get("cadence") or 1)
            frames.append(Frame(
                **common, kind="chain", parent=index - 1,
                strength=0 if step else _value_at(e.get("strength", DEFAULT_STRENGTH), index, count, run_seed),
                motion=_motion_at(motion, index, count, run_seed) if motion else None,
                color_ref=chain_start if e.get("color_match") and not step else None,
                color_space=COLOR_MATCHES[e.get("color_match")] if not step else None,
                cadence=block,
            ))
        else:
            chain_start = index
            frames.append(Frame(**common))
    return frames


def _cadence_block(index: int, chain_start: int, cadence: int) -> tuple[int, tuple[int, int] | None]:
    """Frame ``index``'s step in its cadence block (0: the diffused frame) and, from the chain's second
    block on, the block (its diffused frame, ``cadence``) its image blends toward, as Deforum's render
    loop does; the first block's in-betweens are plain warped copies of the chain's first frame."""
    if cadence <= 1:
        return 0, None
    step = (index - chain_start) % cadence
    start = index - step
    return step, ((start, cadence) if start > chain_start else None)


def _clip_frames(entries: list[dict[str, Any]], group: list[int], run_seed: int, start: int, count: int,
                 seconds: float = 0.0, fps: float = FILM_FPS) -> list[Frame]:
    """The frames of one clip (``group``: its entries), all sharing one :class:`ClipSpec`; a clip that
    starts ``seconds`` into the film gives each frame the control image of its own moment."""
    spec = clips.clip_spec(entries, group, start)
    first = entries[group[0]]
    seed = first.get("seed")
    if seed is None:
        seed = run_seed if first.get("shared_noise") else frame_seed(run_seed, group[0])
    shot_of = [i for i in group for _ in range(entries[i]["clip"])]
    starts = [seconds]  # each frame's time in the film, for control images from a source video
    for j in range(spec.frames - 1):
        starts.append(starts[-1] + (entries[shot_of[j]].get("duration") or 1.0 / fps))
    return [  # one control weight for the whole clip (the pipeline takes one), each frame its own image
        Frame(index=start + j, prompt=clips.prompt_at(spec, j), negative_prompt=first.get("negative_prompt"),
              seed=seed, steps=first.get("steps"), guidance=_value_at(first.get("guidance"), start, count, run_seed),
              width=first.get("width"), height=first.get("height"), duration=entries[shot_of[j]].get("duration"),
              shot=shot_of[j], kind="clip", clip=spec, clip_pos=j,
              control=_frame_control(first, start, count, run_seed, starts[j]))
        for j in range(spec.frames)
    ]
