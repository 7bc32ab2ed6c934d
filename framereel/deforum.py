"""Deforum settings files → framereel storyboards.

Deforum (deforum-stable-diffusion and sd-webui-deforum) saves a run as a JSON settings file
(``*_settings.txt``): prompts by frame, keyframe schedules, the seed and its behaviour, and many
switches. :func:`convert` turns the parts framereel can render into a storyboard (a dict in the
usual ``{"defaults": …, "frames": […]}`` form) and lists everything else, one line each, in its
``notes``. :func:`import_deforum` does the same for files on disk. ``load_storyboard`` calls
:func:`convert` itself when it is given a settings file, so ``framereel make settings.txt`` works.

How Deforum's 2D animation maps (from its ``render_animation`` and ``anim_frame_warp_2d``):

* frame 0 is text-to-image; every later frame is img2img from the previous frame, warped first by
  the frame's ``angle`` (degrees, counter-clockwise), ``zoom`` (factor), ``translation_x/y``
  (pixels, applied before zoom and rotation) about ``transform_center_x/y`` (fractions), with
  ``border`` ``replicate`` or ``wrap``; then colour-matched to frame 0 (``color_coherence``);
* Deforum's ``strength`` is how much of the previous image is kept: framereel's is how much is
  redrawn, so it becomes ``1 - strength``;
* with ``diffusion_cadence`` N only frames 0, N, 2N … are diffused; the frames between are the
  previous frame warped by their own motion (framereel: chained frames with strength 0).
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FramereelError
from .schedule import Schedule, ScheduleError, parse_schedule
from .storyboard import MAX_SIDE, MIN_SIDE, SIDE_MULTIPLE, SIDE_RULE

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


def is_deforum_settings(data: Any) -> bool:
    """Whether a parsed JSON object is a Deforum settings file rather than a storyboard."""
    return isinstance(data, dict) and "frames" not in data and "defaults" not in data and bool(MARKERS & set(data))


def _fail(name: str, key: str, problem: str) -> FramereelError:
    return FramereelError(f'{name}: "{key}": {problem}' if key else f"{name}: {problem}")


def _int(value: Any, default: int = 0) -> int:
    """A whole number from a settings value that may be saved as a string; ``default`` if it is none."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _flag(value: Any) -> bool:
    """Deforum booleans, also as saved by older versions ("True", 1) or as choice strings ("None")."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "none", "false", "0", "off", "no")
    return bool(value)


def _schedule(s: dict, name: str, key: str, frames: int, seed: int, bounds=None) -> tuple[Schedule, tuple[float, ...]]:
    """Parse Deforum schedule ``key`` and evaluate it at every frame (errors name the key)."""
    text = s.get(key, DEFAULTS.get(key))
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        text = f"0:({text})"
    try:
        sched = parse_schedule(text, name=key)
        if bounds:
            sched = Schedule(sched.keys, sched.name, bounds)
        return sched, sched.series(frames, seed)
    except ScheduleError as e:
        raise FramereelError(f"{name}: {e}") from None


def _frame_key(name: str, key: str, text: Any, frames: int, seed: int) -> int:
    """A prompt's frame: a number, or an expression of ``max_f`` (and ``s``) as Deforum allows."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        return int(_eval_key(text, frames, seed))
    except ScheduleError as e:
        raise _fail(name, key, f"frame {text!r}: {e}") from None


def _eval_key(text: str, frames: int, seed: int) -> float:
    import numpy as np

    from .schedule import evaluate

    return float(evaluate(text.strip("\"'"), {"max_f": np.int64(frames - 1), "s": np.int64(seed), "pi": np.float64(math.pi)}))


def _split_neg(text: str) -> tuple[str, str]:
    """Deforum's ``--neg``: what follows it is the frame's negative prompt."""
    pos, _, neg = text.partition("--neg")
    return " ".join(pos.split()), " ".join(neg.replace("--neg", " ").split())


def _prompt_series(s: dict, name: str, frames: int, seed: int, notes: list[str]) -> list[tuple[str, str]]:
    """(prompt, negative prompt) at every frame: Deforum fills forward from each keyed prompt,
    and backward before the first; the webui's global positive/negative prompts are added."""
    raw = s.get("prompts", s.get("animation_prompts"))
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise _fail(name, "animation_prompts", f"not valid JSON: {e.msg}") from None
    if isinstance(raw, list):
        raw = {str(i): p for i, p in enumerate(raw)}
    if not isinstance(raw, dict) or not raw:
        raise _fail(name, "prompts", 'no prompts; Deforum keeps them as "prompts": {"0": "a prompt", "60": "another"}')
    plus = s.get("positive_prompts", s.get("animation_prompts_positive")) or ""
    minus = s.get("negative_prompts", s.get("animation_prompts_negative")) or ""
    keyed: dict[int, tuple[str, str]] = {}
    for key, text in raw.items():
        if not isinstance(text, str):
            raise _fail(name, f"prompts.{key}", "must be a string")
        frame = _frame_key(name, f"prompts.{key}", key, frames, seed)
        pos, neg = _split_neg(text)
        if isinstance(plus, str) and plus.strip():
            pos = f"{plus.strip()} {pos}".strip()
        if isinstance(minus, str) and minus.strip():
            neg = f"{neg} {minus.replace('--neg', '').strip()}".strip()
        if not pos:
            raise _fail(name, f"prompts.{key}", "nothing before --neg; the positive prompt is empty")
        if not 0 <= frame < frames:
            notes.append(f'prompt at frame {frame} ("{pos[:40]}") is outside frames 0-{frames - 1}: not used, as in Deforum')
            continue
        keyed[frame] = (pos, neg)
    if not keyed:
        raise _fail(name, "prompts", f"no prompt falls within frames 0-{frames - 1}")
    neg_by_frame = s.get("neg_prompts") if isinstance(s.get("neg_prompts"), dict) else {}
    out, current = [], keyed[min(keyed)]
    negs = {_frame_key(name, f"neg_prompts.{k}", k, frames, seed): " ".join(str(v).split()) for k, v in neg_by_frame.items()}
    current_neg = negs[min(negs)] if negs else None
    for i in range(frames):
        current = keyed.get(i, current)
        current_neg = negs.get(i, current_neg)
        pos, neg = current
        if current_neg:
            neg = f"{neg} {current_neg}".strip() if neg else current_neg
        out.append((pos, neg))
    texts = " ".join(p + " " + n for p, n in keyed.values())
    if "`" in texts:
        notes.append("prompt expressions in `backticks` are not evaluated: they reach the model as written")
    if re.search(r"\(\s*[^()]+:\s*[\d.]+\s*\)|\bAND\b", texts):
        notes.append("prompt weights like (word:1.2) and AND are A1111 syntax: they reach the model as plain text")
    return out


def _seeds(s: dict, name: str, frames: list[int], seed: int, schedule: tuple[float, ...] | None, notes: list[str]) -> list[int]:
    """The seed of each diffused frame, as Deforum's ``next_seed`` steps it after every diffusion."""
    behavior = str(s.get("seed_behavior", DEFAULTS["seed_behavior"])).lower()
    every = max(1, _int(s.get("seed_iter_N"), 1))
    rng = random.Random(seed)
    out, current, internal = [], seed, 0
    for frame in frames:
        if behavior == "schedule":
            value = int(schedule[frame])
            # A1111 turns seed -1 into a random seed: draw it from the run seed so reruns match
            current = random.Random(f"{seed}:{frame}").randrange(2**32) if value == -1 else value
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
                notes.append(f'seed_behavior "{behavior}" is unknown to Deforum too; treated as random')
                behavior = "random"
            current = rng.randrange(2**32)
    if behavior == "random":
        notes.append(f"seed_behavior random: seeds drawn once from seed {seed}, so a rerun renders the same film")
    return out


def _size(s: dict, name: str, notes: list[str]) -> tuple[int, int]:
    out = []
    for key in ("W", "H"):
        try:
            v = int(s.get(key, DEFAULTS[key]))
        except (TypeError, ValueError):
            raise _fail(name, key, f"must be a whole number of pixels (got {json.dumps(s.get(key))})") from None
        r = min(MAX_SIDE, max(MIN_SIDE, v - v % SIDE_MULTIPLE))
        if r != v:
            notes.append(f"{key} {v} → {r}: framereel needs {SIDE_RULE}")
        out.append(r)
    return out[0], out[1]


def _sampler(s: dict, notes: list[str]) -> str:
    raw = str(s.get("sampler", DEFAULTS["sampler"]))
    key = " ".join(raw.lower().replace("_", " ").replace("dpmpp", "dpm++").split())
    key = {"euler ancestral": "euler a", "k euler ancestral": "euler a", "k euler": "euler", "klms": "lms"}.get(key, key)
    if key in SAMPLERS:
        scheduler, exact = SAMPLERS[key]
    elif "a" in key.split() or "ancestral" in key or "sde" in key or key.endswith(" a") or "2s" in key:
        scheduler, exact = "euler-a", False  # stochastic samplers: the nearest stochastic one
    else:
        scheduler, exact = "dpm++", False
    if not exact:
        notes.append(f'sampler "{raw}" has no exact match here: using scheduler {scheduler}')
    return scheduler


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


def _mode(s: dict, name: str) -> str:
    """The file's ``animation_mode``, refused unless framereel can render it."""
    mode = str(s.get("animation_mode", DEFAULTS["animation_mode"]))
    if mode in ("Video Input",):
        raise _fail(name, "animation_mode", f'"{mode}" renders over a video\'s frames; framereel imports 2D, 3D (as 2D) and None')
    if mode not in ("2D", "3D", "None", "Interpolation"):
        raise _fail(name, "animation_mode", f'"{mode}" is not a Deforum mode (2D, 3D, Video Input, Interpolation, None)')
    return mode


def _count(s: dict, name: str, key: str, top: int) -> int:
    """A whole-number setting (``max_frames``, ``steps``) from 1 to ``top``."""
    try:
        value = int(s.get(key, DEFAULTS[key]))
    except (TypeError, ValueError):
        raise _fail(name, key, f"must be a whole number (got {json.dumps(s.get(key))})") from None
    if not 1 <= value <= top:
        raise _fail(name, key, f"must be from 1 to {top} (got {value})")
    return value


def _run_seed(s: dict, name: str, seed: int, notes: list[str]) -> int:
    """The file's seed; Deforum's random seed (-1) becomes ``seed``."""
    raw_seed = s.get("seed", DEFAULTS["seed"])
    try:
        run_seed = int(raw_seed)
    except (TypeError, ValueError):
        raise _fail(name, "seed", f"must be a whole number (got {json.dumps(raw_seed)})") from None
    if run_seed == -1:
        run_seed = seed
        notes.append(f"seed -1 (random in Deforum): using seed {seed}, so a rerun renders the same film; pass --seed to choose")
    return run_seed % 2**32


def _fps(s: dict, name: str) -> float:
    try:
        fps = float(s.get("fps", DEFAULTS["fps"]))
    except (TypeError, ValueError):
        fps = 0.0
    if not math.isfinite(fps) or fps <= 0:
        raise _fail(name, "fps", f"must be a number greater than 0 (got {json.dumps(s.get('fps'))})")
    return fps


def _guidance(s: dict, name: str, frames: int, seed: int) -> Any:
    """The guidance: a number, or a schedule string when ``cfg_scale_schedule`` changes over the film."""
    if "cfg_scale_schedule" in s or "scale" not in s:
        sched, _ = _schedule(s, name, "cfg_scale_schedule", frames, seed, bounds=(0.0, 50.0))
        return sched.keys[0].number if sched.constant else _schedule_text(sched)
    guidance = float(s["scale"])
    if not 0 <= guidance <= 50:
        raise _fail(name, "scale", f"must be from 0 to 50 (got {guidance})")
    return guidance


def _mode_frames(s, name, mode, prompts, frames, seed, fps, defaults, notes) -> list[dict[str, Any]]:
    """The storyboard's frames for ``mode`` (stills, interpolation, or a 2D animation)."""
    seed_values = None
    if str(s.get("seed_behavior", DEFAULTS["seed_behavior"])).lower() == "schedule":
        _, seed_values = _schedule(s, name, "seed_schedule", frames, seed)
    if mode == "None":
        entries = _still_frames(s, name, prompts, seed, seed_values, notes)
        defaults.pop("duration")  # stills: paced by framereel stitch --fps
    elif mode == "Interpolation":
        entries = _interpolation_frames(s, name, prompts, frames, seed, seed_values, notes)
        defaults.pop("duration")  # morph in-betweens are paced by --fps, so every frame is
        notes.append(f"fps {fps:g}: pass --fps {fps:g} to framereel make/stitch (in-betweens are paced by --fps)")
    else:
        entries = _animation_frames(s, name, mode, prompts, frames, seed, seed_values, defaults, notes)
    return entries


def convert(settings: dict[str, Any], name: str = "settings", seed: int = 174) -> Imported:
    """Convert a parsed Deforum settings file into a storyboard dict.

    ``seed`` stands in for Deforum's random seed (``"seed": -1``) so the film is the same on every
    run. Raises :class:`FramereelError` (naming the file, the setting and the problem) for what
    cannot be converted at all; lists what is converted only in part, or not at all, in ``notes``.
    """
    s, notes = settings, []
    mode = _mode(s, name)
    frames = _count(s, name, "max_frames", 100_000)
    run_seed = _run_seed(s, name, seed, notes)
    width, height = _size(s, name, notes)
    steps = _count(s, name, "steps", 1000)
    fps = _fps(s, name)
    scheduler = _sampler(s, notes)
    guidance = _guidance(s, name, frames, run_seed)
    prompts = _prompt_series(s, name, frames, run_seed, notes)
    defaults: dict[str, Any] = {"seed": run_seed, "steps": steps, "guidance": guidance, "width": width,
                                "height": height, "duration": 1 / fps}
    steps_by_frame = None
    if _flag(s.get("enable_steps_scheduling")):
        _, steps_by_frame = _schedule(s, name, "steps_schedule", frames, run_seed, bounds=(1, 1000))
    entries = _mode_frames(s, name, mode, prompts, frames, run_seed, fps, defaults, notes)
    if steps_by_frame is not None:
        for i, e in enumerate(entries):
            if i < len(steps_by_frame):
                e["steps"] = int(steps_by_frame[i])
    _not_carried(s, mode, frames, run_seed, name, notes)
    storyboard = {"notes": notes, "scheduler": scheduler, "defaults": defaults, "frames": entries}
    return Imported(storyboard, notes, len(entries), mode, scheduler)


def _entry(prompt: tuple[str, str]) -> dict[str, Any]:
    e: dict[str, Any] = {"prompt": prompt[0]}
    if prompt[1]:
        e["negative_prompt"] = prompt[1]
    return e


def _animation_frames(s, name, mode, prompts, frames, seed, seed_values, defaults, notes) -> list[dict[str, Any]]:
    cadence = s.get("diffusion_cadence", DEFAULTS["diffusion_cadence"])
    try:
        cadence = max(1, int(cadence))
    except (TypeError, ValueError):
        raise _fail(name, "diffusion_cadence", f"must be a whole number (got {json.dumps(cadence)})") from None
    strength_sched, kept = _schedule(s, name, "strength_schedule", frames, seed)
    outside = [i for i, v in enumerate(kept) if not 0 <= v <= 1]
    if outside:  # Deforum clamps strength to 0..1; a schedule string cannot, so write each frame's value
        notes.append(f"strength_schedule leaves 0 to 1 at frames {outside[0]}-{outside[-1]}: clamped as Deforum does, "
                     "and written per frame")
    motion: dict[str, Any] = {}
    for key, ours in (("zoom", "zoom"), ("angle", "angle"), ("translation_x", "translation_x"),
                      ("translation_y", "translation_y"), ("transform_center_x", "transform_center_x"),
                      ("transform_center_y", "transform_center_y")):
        sched, values = _schedule(s, name, key, frames, seed)
        if key.startswith("transform_center") and set(values) == {0.5}:
            continue  # the default centre: leave it out
        motion[ours] = sched.keys[0].number if sched.constant else _schedule_text(sched)
    border = str(s.get("border", DEFAULTS["border"]))
    if border not in ("replicate", "wrap"):
        raise _fail(name, "border", f'must be "replicate" or "wrap" (got {json.dumps(border)})')
    motion["border"] = border
    strength = _strength_text(strength_sched)
    defaults.update({"init": "previous", "strength": round(1 - strength_sched.keys[0].number, 10)
                     if strength_sched.constant else strength, "motion": motion})
    coherence = str(s.get("color_coherence", DEFAULTS["color_coherence"]))
    match = coherence not in ("None", "Video Input", "Image")
    if match:
        defaults["color_match"] = "first-lab" if "LAB" in coherence else "first-hsv" if "HSV" in coherence else "first"
        if "legacy_colormatch" in s and not _flag(s["legacy_colormatch"]):
            notes.append(f'color_coherence "{coherence}": colours are matched to frame 0 before img2img only '
                         "(sd-webui-deforum also re-matches each generated image)")
    elif coherence != "None":
        notes.append(f'color_coherence "{coherence}": not carried (needs a video or image to match)')
    diffused = list(range(0, frames, cadence))
    seeds = dict(zip(diffused, _seeds(s, name, diffused, seed, seed_values, notes)))
    entries = []
    for i in range(frames):
        e = _entry(prompts[i])
        if i in seeds:
            e["seed"] = seeds[i]
            if outside and i > 0:
                e["strength"] = round(1 - min(1.0, max(0.0, kept[i])), 10)
        else:  # a cadence in-between: the previous frame warped by this frame's motion, not diffused
            e["strength"] = 0
            if match:
                e["color_match"] = None
        entries.append(e)
    if cadence > 1:
        notes.append(f"diffusion_cadence {cadence}: frames between diffused frames are the previous frame warped by "
                     "their motion; Deforum also cross-fades them toward the next diffused frame (not carried)")
    if mode == "3D":
        notes.append("animation_mode 3D: depth warping is not carried; rendered as a 2D animation from angle, zoom "
                     "and translation_x/y")
    return entries


def _still_frames(s, name, prompts, seed, seed_values, notes) -> list[dict[str, Any]]:
    """animation_mode None: one text-to-image frame per prompt (n_batch of each), seeds stepped per image."""
    batch = max(1, _int(s.get("n_batch"), 1))
    keyed, last = [], None
    for p in prompts:
        if p != last:
            keyed.append(p)
            last = p
    images = [p for p in keyed for _ in range(batch)]
    seeds = _seeds(s, name, list(range(len(images))), seed,
                   None if seed_values is None else [seed_values[min(i, len(seed_values) - 1)] for i in range(len(images))], notes)
    return [{**_entry(p), "seed": sd} for p, sd in zip(images, seeds)]


def _interpolation_frames(s, name, prompts, frames, seed, seed_values, notes) -> list[dict[str, Any]]:
    """animation_mode Interpolation: the keyed prompts as key frames, latent morphs between them."""
    starts = [i for i in range(frames) if i == 0 or prompts[i] != prompts[i - 1]]
    seeds = _seeds(s, name, starts, seed, seed_values, notes)
    entries = []
    for j, (start, sd) in enumerate(zip(starts, seeds)):
        e = {**_entry(prompts[start]), "seed": sd}
        stop = starts[j + 1] if j + 1 < len(starts) else frames
        if j + 1 < len(starts) and stop - start - 1 > 0:
            e["morph"] = stop - start - 1
        entries.append(e)
    notes.append("animation_mode Interpolation: key prompts become key frames with latent morphs between them "
                 "(noise slerped, prompt embeddings interpolated)")
    return entries


def _changes(s: dict, key: str, frames: int, seed: int, neutral: float) -> bool:
    """Whether schedule ``key`` is present and moves away from ``neutral`` at some frame."""
    if key not in s:
        return False
    try:
        return any(abs(v - neutral) > 1e-9 for v in parse_schedule(s[key] if isinstance(s[key], str) else f"0:({s[key]})",
                                                                     name=key).series(frames, seed))
    except (ScheduleError, TypeError):
        return True


def _not_carried(s: dict, mode: str, frames: int, seed: int, name: str, notes: list[str]) -> None:
    """One note per Deforum feature in the file that framereel does not render."""
    present = [k for k in THREE_D_KEYS if k in s]
    if present and mode != "3D":
        moving = [k for k in present if k in ZERO_3D and _changes(s, k, frames, seed, 0.0)]
        notes.append(f"3D keys ({', '.join(present)}): not carried; depth warping is for 3D mode, and Deforum ignores "
                     f"them in {mode} mode too" + (f" ({', '.join(moving)} set)" if moving else ""))
    elif mode == "3D":
        notes.append(f"3D keys not carried: {', '.join(present) or 'translation_z, rotation_3d_x/y/z'}")
    checks = [
        (_flag(s.get("hybrid_composite")) or _flag(s.get("hybrid_motion")), "hybrid video (hybrid_composite, hybrid_motion): not carried"),
        (_flag(s.get("use_mask")) or _flag(s.get("use_mask_video")) or _flag(s.get("use_noise_mask")), "masks (use_mask, use_mask_video, use_noise_mask): not carried"),
        (any(_flag(v) for k, v in s.items() if re.fullmatch(r"cn_\d+_enabled", k)), "ControlNet units: not carried"),
        (_flag(s.get("enable_checkpoint_scheduling")), "checkpoint_schedule (a model per frame range): not carried; one model renders every frame"),
        (_flag(s.get("enable_sampler_scheduling")) or _flag(s.get("enable_schedule_samplers")), "sampler_schedule: not carried; one sampler renders every frame"),
        (_flag(s.get("enable_clipskip_scheduling")), "clipskip_schedule: not carried"),
        (_flag(s.get("enable_subseed_scheduling")), "subseed_schedule / subseed_strength_schedule: not carried"),
        (_flag(s.get("enable_ddim_eta_scheduling")) or _flag(s.get("enable_ancestral_eta_scheduling")), "eta schedules: not carried"),
        (_flag(s.get("enable_noise_multiplier_scheduling")) and _changes(s, "noise_multiplier_schedule", frames, seed, 1.0), "noise_multiplier_schedule: not carried"),
        (_flag(s.get("enable_perspective_flip")) or _flag(s.get("flip_2d_perspective")), "perspective flip (perspective_flip_theta/phi/gamma/fv): not carried"),
        (mode in ("2D", "3D") and _changes(s, "noise_schedule", frames, seed, 0.0), "noise_schedule: Deforum adds noise to each previous image before img2img; framereel does not"),
        (mode in ("2D", "3D") and _changes(s, "contrast_schedule", frames, seed, 1.0), "contrast_schedule: not carried"),
        (mode in ("2D", "3D") and _changes(s, "amount_schedule", frames, seed, 0.0), "anti-blur (amount/kernel/sigma/threshold schedules): not carried"),
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
    ]
    notes.extend(line for active, line in checks if active)


def read_settings(path: str | Path) -> dict[str, Any]:
    """Read a Deforum settings file (JSON, usually named ``*_settings.txt``)."""
    from .storyboard import read_text

    path = Path(path)
    text = read_text(path, "a Deforum settings file (deforum_settings.txt)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FramereelError(f"{path.name}: line {e.lineno} column {e.colno}: invalid JSON: {e.msg}") from None
    if not is_deforum_settings(data):
        raise FramereelError(f"{path.name}: not a Deforum settings file (no animation_mode, max_frames, prompts … keys)")
    return data


def import_deforum(settings_path: str | Path, out: str | Path, seed: int = 174, force: bool = False) -> Imported:
    """Convert a Deforum settings file into the storyboard ``out`` (refuses to overwrite it unless
    ``force``), and check that the written storyboard loads. Returns what was converted."""
    from .storyboard import load_storyboard

    settings_path, out = Path(settings_path), Path(out)
    imported = convert(read_settings(settings_path), settings_path.name, seed)
    if out.exists() and not force:
        raise FramereelError(f"{out}: already exists; choose another -o path or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(imported.storyboard, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        load_storyboard(tmp)
    except FramereelError:
        tmp.unlink()
        raise
    tmp.replace(out)
    return imported
