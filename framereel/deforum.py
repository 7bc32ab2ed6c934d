"""Deforum settings files → framereel storyboards.

Deforum (deforum-stable-diffusion and sd-webui-deforum) saves a run as a JSON settings file
(``*_settings.txt``): prompts by frame, keyframe schedules, the seed and its behaviour, and many
switches. :func:`convert` turns the parts framereel can render into a storyboard (a dict in the
usual ``{"defaults": …, "frames": […]}`` form) and lists everything else, one line each, in its
``notes``. :func:`import_deforum` does the same for files on disk. :mod:`framereel.loader` calls
:func:`convert` itself when it is given a settings file, so ``framereel make settings.txt`` works.
A :class:`Conversion` holds one file's conversion: its settings, name, length, seed, notes and defaults.

How Deforum's 2D animation maps (from its ``render_animation`` and ``anim_frame_warp_2d``):

* frame 0 is text-to-image; every later frame is img2img from the previous frame, warped first by
  the frame's ``angle`` (degrees, counter-clockwise), ``zoom`` (factor), ``translation_x/y``
  (pixels, applied before zoom and rotation) about ``transform_center_x/y`` (fractions), with
  ``border`` ``replicate`` or ``wrap``; then colour-matched to frame 0 (``color_coherence``);
* Deforum's ``strength`` is how much of the previous image is kept: framereel's is how much is
  redrawn, so it becomes ``1 - strength``;
* with ``diffusion_cadence`` N only frames 0, N, 2N … are diffused; each block's frames blend the
  previous and next diffused images carried by their motion (framereel: ``"cadence": N``), and the
  last block is never written;
* 3D mode (``anim_frame_warp_3d``) moves the picture through its depth with a camera: translation,
  ``rotation_3d_*``, ``fov``, aspect, padding and sampling modes (``"motion": {"mode": "3D", …}``,
  :mod:`framereel.camera3d`); zoom and angle are ignored there.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FramereelError
from .schedule import Schedule, ScheduleError, frame_index, parse_schedule, shorten
from .storyboard import (
    DEFAULT_RUN_SEED,
    MAX_DURATION,
    MAX_SIDE,
    MIN_SIDE,
    MOTION_3D_CHOICES,
    MOTION_3D_RANGES,
    MOTION_PIXELS,
    MOTION_RANGES,
    SIDE_MULTIPLE,
    SIDE_RULE,
    build_storyboard,
    read_json,
    read_text,
    shown,
)

# Keys only Deforum's settings files have (a storyboard object always has "frames").
MARKERS = {"animation_mode", "max_frames", "diffusion_cadence", "strength_schedule", "seed_behavior",
           "animation_prompts", "cfg_scale_schedule", "translation_x", "color_coherence"}

# What sd-webui-deforum uses for a setting the file leaves out (its args.py defaults).
DEFAULTS: dict[str, Any] = {
    "animation_mode": "2D", "max_frames": 120, "border": "replicate", "angle": "0: (0)",
    "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "translation_x": "0: (0)", "translation_y": "0: (0)",
    "transform_center_x": "0: (0.5)", "transform_center_y": "0: (0.5)", "strength_schedule": "0: (0.65)",
    "cfg_scale_schedule": "0: (7)", "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "color_coherence": "LAB", "diffusion_cadence": 2, "W": 512, "H": 512, "seed": -1, "sampler": "Euler a",
    "steps": 25, "seed_behavior": "iter", "seed_iter_N": 1, "fps": 15, "n_batch": 1,
    "translation_z": "0: (1.75)", "rotation_3d_x": "0: (0)", "rotation_3d_y": "0: (0)", "rotation_3d_z": "0: (0)",
    "fov_schedule": "0: (70)", "aspect_ratio_schedule": "0: (1)", "padding_mode": "border", "sampling_mode": "bicubic",
}

# Deforum / A1111 sampler → framereel scheduler, and whether that is the same sampler.
SAMPLERS: dict[str, tuple[str, bool]] = {
    "euler a": ("euler-a", True), "euler ancestral": ("euler-a", True), "euler": ("euler", True),
    "heun": ("heun", True), "ddim": ("ddim", True), "plms": ("pndm", True), "unipc": ("unipc", True),
    "dpm++ 2m": ("dpm++", True), "dpmpp 2m": ("dpm++", True), "dpm++ 2m karras": ("dpm++", False),
}

ZERO_3D = {"translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z"}
THREE_D_KEYS = ("translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "fov_schedule", "near_schedule",
                "far_schedule", "use_depth_warping", "depth_algorithm", "midas_weight", "padding_mode", "sampling_mode")


@dataclass
class Imported:
    """A converted settings file: the storyboard (a JSON-ready dict) and what was not carried."""

    storyboard: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    frames: int = 0
    mode: str = "2D"
    scheduler: str = "dpm++"

    @property
    def needs_depth_model(self) -> bool:
        """Whether some frame's 3D camera moves through depth (then ``make`` needs ``--depth-model``)."""
        motions = [self.storyboard.get("defaults", {}).get("motion")]
        motions += [f.get("motion") for f in self.storyboard.get("frames", [])]
        return any(isinstance(m, dict) and m.get("mode") == "3D" and m.get("depth_warping", True) for m in motions)


def is_deforum_settings(data: Any) -> bool:
    """Whether a parsed JSON object is a Deforum settings file rather than a storyboard."""
    return isinstance(data, dict) and "frames" not in data and "defaults" not in data and bool(MARKERS & set(data))


def _int(value: Any, default: int = 0) -> int:
    """A whole number from a settings value that may be saved as a string; ``default`` if it is none."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return default


def _flag(value: Any) -> bool:
    """Deforum booleans, also as saved by older versions ("True", 1) or as choice strings ("None")."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "none", "false", "0", "off", "no")
    return bool(value)


def _split_neg(text: str) -> tuple[str, str]:
    """Deforum's ``--neg``: what follows it is the frame's negative prompt."""
    pos, _, neg = text.partition("--neg")
    return " ".join(pos.split()), " ".join(neg.replace("--neg", " ").split())


def _number(v: float) -> str:
    return repr(round(v, 10)).removesuffix(".0") if float(v).is_integer() else repr(round(v, 10))


def _strength_text(sched: Schedule) -> str:
    """Deforum's strength (kept) → framereel's (redrawn): every keyframe's value becomes 1 - value."""
    parts = []
    for k in sched.keys:
        value = _number(1 - k.number) if k.number is not None else f"1-({k.value})"
        parts.append(f"{k.frame}:({value})")
    return ", ".join(parts)


def _schedule_text(sched: Schedule) -> str:
    return ", ".join(f"{k.frame}:({k.value})" for k in sched.keys)


def _entry(prompt: tuple[str, str]) -> dict[str, Any]:
    e: dict[str, Any] = {"prompt": prompt[0]}
    if prompt[1]:
        e["negative_prompt"] = prompt[1]
    return e


def convert(settings: dict[str, Any], name: str = "settings", seed: int = DEFAULT_RUN_SEED) -> Imported:
    """Convert a parsed Deforum settings file into a storyboard dict.

    ``seed`` stands in for Deforum's random seed (``"seed": -1``) so the film is the same on every
    run. Raises :class:`FramereelError` (naming the file, the setting and the problem) for what
    cannot be converted at all; lists what is converted only in part, or not at all, in ``notes``.
    """
    return Conversion(settings, name).run(seed)


class Conversion:
    """One settings file being converted: its settings ``s``, its ``name`` (for messages), the film's
    length in ``frames`` and its run ``seed`` (once read), the ``notes`` gathered so far and the
    storyboard's ``defaults`` being built."""

    def __init__(self, settings: dict[str, Any], name: str = "settings"):
        self.s, self.name = settings, name
        self.frames, self.seed = 0, 0
        self.notes: list[str] = []
        self.defaults: dict[str, Any] = {}

    def fail(self, key: str, problem: str) -> FramereelError:
        return FramereelError(f'{self.name}: "{key}": {problem}' if key else f"{self.name}: {problem}")

    def shown(self, key: str) -> str:
        """The file's value of ``key``, as JSON cut short, for a message."""
        return shown(self.s.get(key))

    def run(self, seed: int) -> Imported:
        """The storyboard, with ``seed`` standing in for a random seed (-1)."""
        mode = self.mode()
        self.frames = self.count("max_frames", 100_000)
        self.seed = self.run_seed(seed)
        width, height = self.size()
        steps = self.count("steps", 1000)
        fps = self.fps(mode)
        scheduler = self.sampler()
        guidance = self.guidance()
        prompts = self.prompt_series()
        self.defaults = {"seed": self.seed, "steps": steps, "guidance": guidance, "width": width,
                         "height": height, "duration": 1 / fps}
        steps_by_frame = None
        if _flag(self.s.get("enable_steps_scheduling")):
            _, steps_by_frame = self.schedule("steps_schedule", bounds=(1, 1000))
        entries = self.mode_frames(mode, prompts, fps)
        if steps_by_frame is not None:
            for i, e in enumerate(entries):
                if i < len(steps_by_frame):
                    e["steps"] = int(steps_by_frame[i])
        self.not_carried(mode)
        storyboard = {"notes": self.notes, "scheduler": scheduler, "defaults": self.defaults, "frames": entries}
        return Imported(storyboard, self.notes, len(entries), mode, scheduler)

    # --- single settings ------------------------------------------------------------------------

    def mode(self) -> str:
        """The file's ``animation_mode``, refused unless framereel can render it."""
        mode = str(self.s.get("animation_mode", DEFAULTS["animation_mode"]))
        if mode in ("Video Input",):
            raise self.fail("animation_mode", f'"{mode}" renders over a video\'s frames; framereel imports 2D, 3D, '
                            "Interpolation and None")
        if mode not in ("2D", "3D", "None", "Interpolation"):
            raise self.fail("animation_mode", f'"{shorten(mode)}" is not a Deforum mode (2D, 3D, Video Input, '
                            "Interpolation, None)")
        return mode

    def count(self, key: str, top: int) -> int:
        """A whole-number setting (``max_frames``, ``steps``) from 1 to ``top``."""
        try:
            value = int(self.s.get(key, DEFAULTS[key]))
        except (TypeError, ValueError, OverflowError):
            raise self.fail(key, f"must be a whole number (got {self.shown(key)})") from None
        if not 1 <= value <= top:
            raise self.fail(key, f"must be from 1 to {top} (got {shorten(str(value))})")
        return value

    def run_seed(self, seed: int) -> int:
        """The file's seed; Deforum's random seed (-1) becomes ``seed``."""
        try:
            run_seed = int(self.s.get("seed", DEFAULTS["seed"]))
        except (TypeError, ValueError, OverflowError):
            raise self.fail("seed", f"must be a whole number (got {self.shown('seed')})") from None
        if run_seed == -1:
            run_seed = seed
            self.notes.append(f"seed -1 (random in Deforum): using seed {seed}, so a rerun renders the same film; "
                              "pass --seed to choose")
        return run_seed % 2**32

    def size(self) -> tuple[int, int]:
        out = []
        for key in ("W", "H"):
            try:
                v = int(self.s.get(key, DEFAULTS[key]))
            except (TypeError, ValueError, OverflowError):
                raise self.fail(key, f"must be a whole number of pixels (got {self.shown(key)})") from None
            r = min(MAX_SIDE, max(MIN_SIDE, v - v % SIDE_MULTIPLE))
            if r != v:
                self.notes.append(f"{key} {shorten(str(v))} → {r}: framereel needs {SIDE_RULE}")
            out.append(r)
        return out[0], out[1]

    def fps(self, mode: str) -> float:
        try:
            fps = float(self.s.get("fps", DEFAULTS["fps"]))
        except (TypeError, ValueError, OverflowError):
            fps = 0.0
        if not math.isfinite(fps) or fps <= 0:
            raise self.fail("fps", f"must be a number greater than 0 (got {self.shown('fps')})")
        if mode in ("2D", "3D") and fps * MAX_DURATION < 1:  # each frame's duration is 1/fps
            raise self.fail("fps", f"must be at least 1/{MAX_DURATION:g}: a frame stays on screen at most "
                            f"{MAX_DURATION:g} s (got {self.shown('fps')})")
        return fps

    def sampler(self) -> str:
        raw = str(self.s.get("sampler", DEFAULTS["sampler"]))
        key = " ".join(raw.lower().replace("_", " ").replace("dpmpp", "dpm++").split())
        key = {"euler ancestral": "euler a", "k euler ancestral": "euler a", "k euler": "euler", "klms": "lms"}.get(key, key)
        if key in SAMPLERS:
            scheduler, exact = SAMPLERS[key]
        elif "a" in key.split() or "ancestral" in key or "sde" in key or key.endswith(" a") or "2s" in key:
            scheduler, exact = "euler-a", False  # stochastic samplers: the nearest stochastic one
        else:
            scheduler, exact = "dpm++", False
        if not exact:
            self.notes.append(f'sampler "{shorten(raw)}" has no exact match here: using scheduler {scheduler}')
        return scheduler

    def guidance(self) -> Any:
        """The guidance: a number, or a schedule string when ``cfg_scale_schedule`` changes over the film."""
        if "cfg_scale_schedule" in self.s or "scale" not in self.s:
            sched, _ = self.schedule("cfg_scale_schedule", bounds=(0.0, 50.0))
            return sched.keys[0].number if sched.constant else _schedule_text(sched)
        try:
            guidance = float(self.s["scale"])
        except (TypeError, ValueError, OverflowError):
            guidance = math.nan
        if not 0 <= guidance <= 50:
            raise self.fail("scale", f"must be from 0 to 50 (got {self.shown('scale')})")
        return guidance

    # --- schedules and prompts ------------------------------------------------------------------

    def schedule(self, key: str, bounds: tuple[float, float] | None = None) -> tuple[Schedule, tuple[float, ...]]:
        """Parse Deforum schedule ``key`` and evaluate it at every frame (errors name the file and the key)."""
        text = self.s.get(key, DEFAULTS.get(key))
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = f"0:({text})"
        try:
            sched = parse_schedule(text, name=key)
            if bounds:
                sched = Schedule(sched.keys, sched.name, bounds)
            return sched, sched.series(self.frames, self.seed)
        except ScheduleError as e:
            raise FramereelError(f"{self.name}: {e}") from None

    def changes(self, key: str, neutral: float) -> bool:
        """Whether schedule ``key`` is present and moves away from ``neutral`` at some frame."""
        if key not in self.s:
            return False
        text = self.s[key] if isinstance(self.s[key], str) else f"0:({self.s[key]})"
        try:
            return any(abs(v - neutral) > 1e-9 for v in parse_schedule(text, name=key).series(self.frames, self.seed))
        except (ScheduleError, TypeError):
            return True

    def frame_key(self, key: str, text: Any) -> int:
        """A prompt's frame: a number, or an expression of ``max_f`` (and ``s``) as Deforum allows."""
        text = str(text).strip()
        if text.isdigit():
            return int(text)
        try:
            return frame_index(text, self.frames, self.seed)
        except ScheduleError as e:
            raise self.fail(key, f"frame {shorten(text)!r}: {e}") from None

    def raw_prompts(self) -> dict[str, Any]:
        """The file's prompts by frame, as written (a dict of frame → text)."""
        raw = self.s.get("prompts", self.s.get("animation_prompts"))
        if raw is None and isinstance(self.s.get("cond_prompts"), dict):  # the notebook since 2e19447
            raw = self.s["cond_prompts"]
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as e:
                raise self.fail("animation_prompts", f"not valid JSON: {e.msg}") from None
        if isinstance(raw, list):
            raw = {str(i): p for i, p in enumerate(raw)}
        if not isinstance(raw, dict) or not raw:
            raise self.fail("prompts", 'no prompts; Deforum keeps them as "prompts": {"0": "a prompt", "60": "another"}')
        return raw

    def keyed_prompts(self) -> dict[int, tuple[str, str]]:
        """(prompt, negative prompt) at each keyed frame, with the webui's global prompts added."""
        plus = self.s.get("positive_prompts", self.s.get("animation_prompts_positive")) or ""
        minus = self.s.get("negative_prompts", self.s.get("animation_prompts_negative")) or ""
        keyed: dict[int, tuple[str, str]] = {}
        for key, text in self.raw_prompts().items():
            where = f"prompts.{shorten(str(key))}"
            if not isinstance(text, str):
                raise self.fail(where, "must be a string")
            frame = self.frame_key(where, key)
            pos, neg = _split_neg(text)
            plus_text, minus_text = (" ".join(str(v or "").replace("--neg", " ").split()) for v in (plus, minus))
            # a file saved after a run holds prompts the webui already joined with both boxes: add them once
            if plus_text and not pos.startswith(plus_text):
                pos = f"{plus_text} {pos}".strip()
            if minus_text and not neg.endswith(minus_text):
                neg = f"{neg} {minus_text}".strip()
            if not pos:
                raise self.fail(where, "nothing before --neg; the positive prompt is empty")
            if not 0 <= frame < self.frames:
                self.notes.append(f'prompt at frame {frame} ("{pos[:40]}") is outside frames 0-{self.frames - 1}: '
                                  "not used, as in Deforum")
                continue
            keyed[frame] = (pos, neg)
        if not keyed:
            raise self.fail("prompts", f"no prompt falls within frames 0-{self.frames - 1}")
        return keyed

    def prompt_series(self) -> list[tuple[str, str]]:
        """(prompt, negative prompt) at every frame: Deforum fills forward from each keyed prompt,
        and backward before the first."""
        keyed = self.keyed_prompts()
        neg_by_frame = next((self.s[k] for k in ("neg_prompts", "uncond_prompts") if isinstance(self.s.get(k), dict)), {})
        out, current = [], keyed[min(keyed)]
        negs = {self.frame_key(f"neg_prompts.{shorten(str(k))}", k): " ".join(str(v).split())
                for k, v in neg_by_frame.items()}
        current_neg = negs[min(negs)] if negs else None
        for i in range(self.frames):
            current = keyed.get(i, current)
            current_neg = negs.get(i, current_neg)
            pos, neg = current
            if current_neg:
                neg = f"{neg} {current_neg}".strip() if neg else current_neg
            out.append((pos, neg))
        texts = " ".join(p + " " + n for p, n in keyed.values())
        if "`" in texts:
            self.notes.append("prompt expressions in `backticks` are not evaluated: they reach the model as written")
        if re.search(r"\(\s*[^()]+:\s*[\d.]+\s*\)|\bAND\b", texts):
            self.notes.append("prompt weights like (word:1.2) and AND are A1111 syntax: they reach the model as plain text")
        return out

    def seeds(self, frames: list[int], schedule: tuple[float, ...] | None) -> list[int]:
        """The seed of each diffused frame, as Deforum's ``next_seed`` steps it after every diffusion."""
        behavior = str(self.s.get("seed_behavior", DEFAULTS["seed_behavior"])).lower()
        every = max(1, _int(self.s.get("seed_iter_N"), 1))
        rng = random.Random(self.seed)
        out, current, internal = [], self.seed, 0
        for frame in frames:
            if behavior == "schedule":
                value = int(schedule[frame])
                # A1111 turns seed -1 into a random seed: draw it from the run seed so reruns match
                current = random.Random(f"{self.seed}:{frame}").randrange(2**32) if value == -1 else value
            out.append(current % 2**32)
            if behavior == "iter":
                current += 1 if internal % every == 0 else 0
                internal += 1
            elif behavior in ("ladder", "alternate"):
                current += (2 if behavior == "ladder" else 1) if internal == 0 else -1
                internal = 1 - internal
            elif behavior == "fixed" or behavior == "schedule":
                pass
            else:
                if behavior != "random":
                    self.notes.append(f'seed_behavior "{shorten(behavior)}" is unknown to Deforum too; treated as random')
                    behavior = "random"
                current = rng.randrange(2**32)
        if behavior == "random":
            self.notes.append(f"seed_behavior random: seeds drawn once from seed {self.seed}, so a rerun renders the "
                              "same film")
        return out

    # --- frames ---------------------------------------------------------------------------------

    def mode_frames(self, mode: str, prompts: list[tuple[str, str]], fps: float) -> list[dict[str, Any]]:
        """The storyboard's frames for ``mode`` (stills, interpolation, or a 2D animation)."""
        seed_values = None
        if str(self.s.get("seed_behavior", DEFAULTS["seed_behavior"])).lower() == "schedule":
            _, seed_values = self.schedule("seed_schedule")
        if mode == "None":
            entries = self.still_frames(prompts, seed_values)
            self.defaults.pop("duration")  # stills: paced by framereel stitch --fps
        elif mode == "Interpolation":
            entries = self.interpolation_frames(prompts, seed_values)
            self.defaults.pop("duration")  # morph in-betweens are paced by --fps, so every frame is
            self.notes.append(f"fps {fps:g}: pass --fps {fps:g} to framereel make/stitch (in-betweens are paced by --fps)")
        else:
            entries = self.animation_frames(mode, prompts, seed_values)
        return entries

    def cadence(self) -> int:
        cadence = self.s.get("diffusion_cadence", DEFAULTS["diffusion_cadence"])
        try:
            return max(1, int(cadence))
        except (TypeError, ValueError, OverflowError):
            raise self.fail("diffusion_cadence", f"must be a whole number (got {self.shown('diffusion_cadence')})") from None

    def strength(self) -> tuple[tuple[float, ...], bool]:
        """Deforum's ``strength_schedule`` (kept) at every frame, and whether it leaves 0..1; sets the
        defaults' strength (redrawn). Outside 0..1 Deforum clamps: then each chained frame carries its
        own clamped value, and the defaults the clamped first one."""
        sched, kept = self.schedule("strength_schedule")
        outside = [i for i, v in enumerate(kept) if not 0 <= v <= 1]
        if outside:
            self.notes.append(f"strength_schedule leaves 0 to 1 at frames {outside[0]}-{outside[-1]}: clamped as Deforum "
                              "does, and written per frame")
            self.defaults["strength"] = round(1 - min(1.0, max(0.0, kept[0])), 10)
        elif sched.constant:
            self.defaults["strength"] = round(1 - sched.keys[0].number, 10)
        else:
            self.defaults["strength"] = _strength_text(sched)
        return kept, bool(outside)

    def motion(self) -> dict[str, Any]:
        """The 2D motion: angle, zoom, translation and centre schedules (within the storyboard's
        ranges; errors name the Deforum key), and the border."""
        motion: dict[str, Any] = {}
        for key in ("zoom", "angle", "translation_x", "translation_y", "transform_center_x", "transform_center_y"):
            sched, values = self.schedule(key, bounds=MOTION_RANGES.get(key, MOTION_PIXELS))
            if key.startswith("transform_center") and set(values) == {0.5}:
                continue  # the default centre: leave it out
            motion[key] = sched.keys[0].number if sched.constant else _schedule_text(sched)
        border = str(self.s.get("border", DEFAULTS["border"]))
        if border not in ("replicate", "wrap"):
            raise self.fail("border", f'must be "replicate" or "wrap" (got {self.shown("border")})')
        motion["border"] = border
        motion["warp"] = "deforum"  # Deforum's OpenCV warp: bilinear, its pixel grid
        return motion

    def camera(self) -> dict[str, Any]:
        """The 3D camera (``animation_mode`` 3D): translation, rotation, field of view and aspect
        schedules, padding and sampling modes, depth warping on or off (errors name the Deforum key)."""
        motion: dict[str, Any] = {"mode": "3D"}
        keys = {"translation_x": "translation_x", "translation_y": "translation_y", "translation_z": "translation_z",
                "rotation_3d_x": "rotation_3d_x", "rotation_3d_y": "rotation_3d_y", "rotation_3d_z": "rotation_3d_z",
                "fov": "fov_schedule", "aspect_ratio": "aspect_ratio_schedule"}
        if "fov_schedule" not in self.s and "fov" in self.s:  # the notebook's single number
            keys["fov"] = "fov"
        if _flag(self.s.get("aspect_ratio_use_old_formula")):  # the notebook's is 1: the schedule's default
            keys.pop("aspect_ratio")
            motion["aspect_ratio"] = round(self.defaults["width"] / self.defaults["height"], 10)
        for name, key in keys.items():
            sched, _ = self.schedule(key, bounds=MOTION_3D_RANGES.get(name, MOTION_PIXELS))
            motion[name] = sched.keys[0].number if sched.constant else _schedule_text(sched)
        for name, choices in MOTION_3D_CHOICES.items():
            value = str(self.s.get(name, DEFAULTS[name]))
            if value not in choices:
                raise self.fail(name, f'must be one of {", ".join(choices)} (got {self.shown(name)})')
            motion[name] = value
        motion["depth_warping"] = _flag(self.s.get("use_depth_warping", True))
        return motion

    def color_match(self) -> bool:
        """Sets the defaults' ``color_match`` from ``color_coherence``; whether colours are matched."""
        coherence = str(self.s.get("color_coherence", DEFAULTS["color_coherence"]))
        if coherence not in ("None", "Video Input", "Image"):
            self.defaults["color_match"] = "first-lab" if "LAB" in coherence else "first-hsv" if "HSV" in coherence else "first"
            if "legacy_colormatch" in self.s and not _flag(self.s["legacy_colormatch"]):
                self.notes.append(f'color_coherence "{shorten(coherence)}": colours are matched to frame 0 before img2img '
                                  "only (sd-webui-deforum also re-matches each generated image)")
            return True
        if coherence != "None":
            self.notes.append(f'color_coherence "{coherence}": not carried (needs a video or image to match)')
        return False

    def animation_frames(self, mode: str, prompts: list[tuple[str, str]], seed_values) -> list[dict[str, Any]]:
        cadence = self.cadence()
        self.defaults["init"] = "previous"
        kept, outside = self.strength()
        self.defaults["motion"] = self.camera() if mode == "3D" else self.motion()
        self.color_match()
        diffused = list(range(0, self.frames, cadence))
        seeds = dict(zip(diffused, self.seeds(diffused, seed_values)))
        # Deforum writes a cadence block when the next one is diffused: the last block is never written
        written = max(1, cadence * ((self.frames - 1) // cadence)) if cadence > 1 else self.frames
        entries = []
        for i in range(written):
            e = _entry(prompts[i])
            if i in seeds:
                e["seed"] = seeds[i]
                if outside and i > 0:
                    e["strength"] = round(1 - min(1.0, max(0.0, kept[i])), 10)
            entries.append(e)
        if cadence > 1:
            self.defaults["cadence"] = cadence
            self.notes.append(f"diffusion_cadence {cadence}: frames 0, {cadence}, {2 * cadence} … are diffused and the frames of each "
                              "block blend the previous and next diffused images, moved by their motion, as Deforum does; "
                              f"like Deforum, the last block is not written ({written} of {self.frames} frames)")
        if mode == "3D":
            self.notes_3d()
        return entries

    def notes_3d(self) -> None:
        """What a 3D file says that framereel reads differently."""
        if _flag(self.s.get("use_depth_warping", True)):
            algorithm = str(self.s.get("depth_algorithm", "Midas-3-Hybrid"))
            self.notes.append(f'depth_algorithm "{shorten(algorithm)}": depth comes from --depth-model (a Depth Anything '
                              "or DPT model), read as sd-webui-deforum reads MiDaS (inverse depth, normalised)")
            if "near_plane" in self.s:
                self.notes.append("the notebook's depth (MiDaS blended with AdaBins, not normalised) is read as "
                                  "sd-webui-deforum's normalised depth")
        self.notes.append("animation_mode 3D: zoom, angle, transform_center and border are 2D keys; Deforum ignores "
                          "them in 3D too")

    def still_frames(self, prompts: list[tuple[str, str]], seed_values) -> list[dict[str, Any]]:
        """animation_mode None: one text-to-image frame per prompt (n_batch of each), seeds stepped per image."""
        batch = max(1, _int(self.s.get("n_batch"), 1))
        keyed, last = [], None
        for p in prompts:
            if p != last:
                keyed.append(p)
                last = p
        images = [p for p in keyed for _ in range(batch)]
        schedule = None if seed_values is None else [seed_values[min(i, len(seed_values) - 1)] for i in range(len(images))]
        seeds = self.seeds(list(range(len(images))), schedule)
        return [{**_entry(p), "seed": sd} for p, sd in zip(images, seeds)]

    def interpolation_frames(self, prompts: list[tuple[str, str]], seed_values) -> list[dict[str, Any]]:
        """animation_mode Interpolation: the keyed prompts as key frames, latent morphs between them."""
        starts = [i for i in range(self.frames) if i == 0 or prompts[i] != prompts[i - 1]]
        seeds = self.seeds(starts, seed_values)
        entries = []
        for j, (start, sd) in enumerate(zip(starts, seeds)):
            e = {**_entry(prompts[start]), "seed": sd}
            stop = starts[j + 1] if j + 1 < len(starts) else self.frames
            if j + 1 < len(starts) and stop - start - 1 > 0:
                e["morph"] = stop - start - 1
            entries.append(e)
        self.notes.append("animation_mode Interpolation: key prompts become key frames with latent morphs between them "
                          "(noise slerped, prompt embeddings interpolated)")
        return entries

    # --- what is not carried --------------------------------------------------------------------

    def not_carried(self, mode: str) -> None:
        """One note per Deforum feature in the file that framereel does not render."""
        s = self.s
        present = [k for k in THREE_D_KEYS if k in s]
        if present and mode != "3D":
            moving = [k for k in present if k in ZERO_3D and self.changes(k, 0.0)]
            self.notes.append(f"3D keys ({', '.join(present)}): not carried; depth warping is for 3D mode, and Deforum "
                              f"ignores them in {mode} mode too" + (f" ({', '.join(moving)} set)" if moving else ""))
        elif mode == "3D":
            planes = [k for k in ("near_schedule", "far_schedule", "near_plane", "far_plane") if k in s]
            if planes:
                self.notes.append(f"{', '.join(planes)}: not needed; Deforum's projection uses them only for depth, "
                                  "which its warp discards, so they move no pixel")
            if "midas_weight" in s:
                self.notes.append("midas_weight: not carried (it blends MiDaS with AdaBins, which framereel does not run)")
        animated = mode in ("2D", "3D")
        checks = [
            (_flag(s.get("hybrid_composite")) or _flag(s.get("hybrid_motion")), "hybrid video (hybrid_composite, hybrid_motion): not carried"),
            (_flag(s.get("use_mask")) or _flag(s.get("use_mask_video")) or _flag(s.get("use_noise_mask")), "masks (use_mask, use_mask_video, use_noise_mask): not carried"),
            (any(_flag(v) for k, v in s.items() if re.fullmatch(r"cn_\d+_enabled", k)), "ControlNet units: not carried"),
            (_flag(s.get("enable_checkpoint_scheduling")), "checkpoint_schedule (a model per frame range): not carried; one model renders every frame"),
            (_flag(s.get("enable_sampler_scheduling")) or _flag(s.get("enable_schedule_samplers")), "sampler_schedule: not carried; one sampler renders every frame"),
            (_flag(s.get("enable_clipskip_scheduling")), "clipskip_schedule: not carried"),
            (_flag(s.get("enable_subseed_scheduling")), "subseed_schedule / subseed_strength_schedule: not carried"),
            (_flag(s.get("enable_ddim_eta_scheduling")) or _flag(s.get("enable_ancestral_eta_scheduling")), "eta schedules: not carried"),
            (_flag(s.get("enable_noise_multiplier_scheduling")) and self.changes("noise_multiplier_schedule", 1.0), "noise_multiplier_schedule: not carried"),
            (_flag(s.get("enable_perspective_flip")) or _flag(s.get("flip_2d_perspective")), "perspective flip (perspective_flip_theta/phi/gamma/fv): not carried"),
            (animated and self.changes("noise_schedule", 0.0), "noise_schedule: Deforum adds noise to each previous image before img2img; framereel does not"),
            (animated and self.changes("contrast_schedule", 1.0), "contrast_schedule: not carried"),
            (animated and self.changes("amount_schedule", 0.0), "anti-blur (amount/kernel/sigma/threshold schedules): not carried"),
            (_flag(s.get("optical_flow_cadence")), "optical_flow_cadence: not carried"),
            (_flag(s.get("optical_flow_redo_generation")) or _int(s.get("diffusion_redo")) > 0, "redo generation (optical_flow_redo_generation, diffusion_redo): not carried"),
            (_flag(s.get("use_init")), "use_init (an init image for frame 0): not carried; frame 0 is text-to-image"),
            (_flag(s.get("use_looper")), "guided images (use_looper): not carried"),
            (bool(s.get("parseq_manifest")), "Parseq manifest: not carried"),
            (_flag(s.get("color_force_grayscale")), "color_force_grayscale: not carried"),
            (_flag(s.get("tiling")), "tiling: not carried"),
            (_flag(s.get("restore_faces")), "restore_faces: not carried"),
            (_flag(s.get("frame_interpolation_engine")), "frame interpolation (RIFE/FILM): not carried; try framereel stitch --transition smooth"),
            (_flag(s.get("r_upscale_video")), "video upscaling: not carried"),
            (_flag(s.get("add_soundtrack")), "soundtrack: not carried; pass --audio FILE to framereel make/stitch"),
            (_int(s.get("n_samples"), 1) > 1, "n_samples > 1: one image per frame is rendered"),
            (mode != "None" and _int(s.get("n_batch"), 1) > 1, "n_batch > 1: one animation is rendered"),
            (_flag(s.get("resume_from_timestring")), "resume_from_timestring: not needed; rerunning the same command resumes"),
            (bool(s.get("sd_model_name")), f'sd_model_name "{shorten(str(s.get("sd_model_name")))}": not carried; '
                                            "pass that checkpoint with --model"),
        ]
        self.notes.extend(line for active, line in checks if active)


def read_settings(path: str | Path) -> dict[str, Any]:
    """Read a Deforum settings file (JSON, usually named ``*_settings.txt``)."""
    path = Path(path)
    data = read_json(path, read_text(path, "a Deforum settings file (deforum_settings.txt)"))
    if not is_deforum_settings(data):
        raise FramereelError(f"{path.name}: not a Deforum settings file (no animation_mode, max_frames, prompts … keys)")
    return data


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def import_deforum(settings_path: str | Path, out: str | Path, seed: int = DEFAULT_RUN_SEED,
                   force: bool = False) -> Imported:
    """Convert a Deforum settings file into the storyboard ``out`` (refuses to overwrite it unless
    ``force``, and never writes onto the settings file), and check that the storyboard loads (its
    errors name the settings file). Returns what was converted."""
    settings_path, out = Path(settings_path), Path(out)
    imported = convert(read_settings(settings_path), settings_path.name, seed)
    if _same_file(settings_path, out):
        raise FramereelError(f"{out}: is the settings file being imported; choose another -o path")
    if out.exists() and not force:
        raise FramereelError(f"{out}: already exists; choose another -o path or pass --force to replace it")
    text = json.dumps(imported.storyboard, indent=2, ensure_ascii=False) + "\n"
    build_storyboard(json.loads(text), settings_path, text)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return imported
