"""Clips in a storyboard: entries with ``"clip": N`` render N frames at once with a motion model.

Pure Python (no torch), like :mod:`framereel.storyboard`, which calls in here to check clip keys
and to expand clip entries into frames.

* ``"clip": N`` on an entry (or in ``defaults``) makes that entry one clip of N frames.
* ``"travel": [{"at": 0, "prompt": …}, {"at": 12, "prompt": …}]`` interpolates the prompt across
  the clip's frames (``at`` counts frames from the clip's start).
* ``"clip_group": "name"`` joins consecutive clip entries into one clip; each entry's prompt starts
  at its own first frame and the prompt travels between them.
* ``"context_length"`` / ``"context_stride"``: clips longer than the context length are denoised
  in overlapping windows (FreeNoise), blended with pyramid weights; the stride is lowered where
  needed so that the last window ends on the clip's last frame; memory follows the window.
* ``"init_video": "in.mp4"`` with ``"strength"``: video-to-video from that file's frames.
* ``"first_frame"`` / ``"last_frame"`` (with ``--video-model``): the key frames a clip animates
  from and to: ``"previous"`` (the frame before the clip), ``"next"`` (the still after it) or an
  image path. The clip's hash includes its key frames' images, so changing a key re-renders the
  key and the clips that touch it, nothing else.

A clip is atomic: all its frames share one :class:`ClipSpec` (part of every frame's hash) and are
rendered and written together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import FramereelError
from .schedule import Schedule

CLIP_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "clip": ((int,), "a number of frames from 1 to 1000"),
    "clip_group": ((str,), "a non-empty name"),
    "travel": ((list,), 'a list like [{"at": 0, "prompt": "..."}, {"at": 12, "prompt": "..."}]'),
    "context_length": ((int,), "a number of frames from 2 to 64"),
    "context_stride": ((int,), "a number of frames from 1 to the context length"),
    "init_video": ((str,), "the path of a video file"),
    "first_frame": ((str,), '"previous", "next" or the path of an image'),
    "last_frame": ((str,), '"previous", "next" or the path of an image'),
}
KEY_FRAMES = ("first_frame", "last_frame")
DEFAULT_CONTEXT_LENGTH = 16  # the frames AnimateDiff's motion modules are trained on
DEFAULT_CONTEXT_STRIDE = 4
DEFAULT_VIDEO_STRENGTH = 0.6
# keys of a clip group's entries that must agree: they are per clip
PER_CLIP = ("negative_prompt", "steps", "guidance", "width", "height", "seed", "context_length",
            "context_stride", "init_video", "strength", "control", *KEY_FRAMES)


@dataclass(frozen=True)
class ClipSpec:
    """What decides a clip's frames (besides the run-wide model, adapter and LoRAs)."""

    id: int  # the storyboard entry the clip starts at
    frames: int
    prompts: tuple[tuple[int, str], ...]  # (frame in the clip, prompt), sorted, the first at 0
    context_length: int = DEFAULT_CONTEXT_LENGTH
    context_stride: int = DEFAULT_CONTEXT_STRIDE
    init_video: str | None = None  # an absolute path
    strength: float | None = None  # video-to-video only
    first_frame: str | None = None  # "previous", "next" or an absolute image path (video models)
    last_frame: str | None = None
    first_index: int | None = None  # the output frame "previous"/"next" names (not hashed: its image is)
    last_index: int | None = None

    @property
    def keys(self) -> tuple[tuple[str, int | str], ...]:
        """The clip's key frames: ``(key, frame index or image path)`` for each one it has."""
        out = []
        for key, value, index in (("first_frame", self.first_frame, self.first_index),
                                  ("last_frame", self.last_frame, self.last_index)):
            if value is not None:
                out.append((key, index if value in ("previous", "next") else value))
        return tuple(out)

    def hashed(self) -> dict[str, Any]:
        """What of the spec goes into a frame's hash (key frame indices don't: their images do,
        and a clip without key frames hashes as before they existed)."""
        d = asdict(self)
        for key in ("first_index", "last_index", *KEY_FRAMES):
            if key.endswith("index") or d[key] is None:
                del d[key]
        return d

    @property
    def travels(self) -> bool:
        return len({p for _, p in self.prompts}) > 1

    @property
    def windowed(self) -> bool:
        return self.frames > self.context_length


def check_clip_value(fail, key: str, value: Any) -> Any:
    """Validate one clip key; ``fail(problem)`` builds the one-line error."""
    types, want = CLIP_KEYS[key]
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and key == "clip":
        ok = 1 <= value <= 1000
    elif ok and key == "clip_group":
        ok = bool(value.strip())
    elif ok and key == "context_length":
        ok = 2 <= value <= 64
    elif ok and key == "context_stride":
        ok = 1 <= value <= 64
    elif ok and key in ("init_video", *KEY_FRAMES):
        ok = bool(value.strip())
    elif ok and key == "travel":
        ok = bool(value) and all(
            isinstance(t, dict) and set(t) == {"at", "prompt"} and isinstance(t["at"], int)
            and not isinstance(t["at"], bool) and t["at"] >= 0 and isinstance(t["prompt"], str) and t["prompt"].strip()
            for t in value)
    if not ok:
        raise fail(f'"{key}" must be {want} (got {_short(value)})')
    return value


def _short(value: Any) -> str:
    import json

    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_clip_entry(fail, entry: dict[str, Any], shot: int, total: int, next_entry: dict | None) -> None:
    """Refuse combinations a clip can't take, naming the fix."""
    clip_only = [k for k in ("travel", "clip_group", "init_video", *KEY_FRAMES) if k in entry]
    if "clip" not in entry:
        if clip_only:
            raise fail(f'"{clip_only[0]}" belongs to a clip; add "clip": N (frames) to this entry')
        if entry.get("morph") and next_entry is not None and "clip" in next_entry:
            raise fail('"morph" into a clip: a clip starts from its own noise; drop "morph" or the next entry\'s "clip"')
        return
    if entry.get("morph"):
        raise fail('"morph" and "clip" don\'t combine (a clip moves by itself); drop one')
    if entry.get("init") == "previous":
        raise fail('"init": "previous" and "clip" don\'t combine; for video-to-video use "init_video"')
    for t in entry.get("travel", []):
        if t["at"] >= entry["clip"]:
            raise fail(f'"travel": "at" {t["at"]} is past the clip\'s last frame ({entry["clip"] - 1})')
    if entry.get("context_stride", 1) > entry.get("context_length", DEFAULT_CONTEXT_LENGTH):
        raise fail('"context_stride" must not exceed "context_length"')
    check_key_frames(fail, entry, shot, total, next_entry)


def check_key_frames(fail, entry: dict[str, Any], shot: int, total: int, next_entry: dict | None) -> None:
    """``"previous"`` needs an entry before the clip, ``"next"`` a still after it (a key frame the
    clip animates into, not another clip); one key frame can't be both ends."""
    for key in KEY_FRAMES:
        value = entry.get(key)
        if value == "previous" and shot == 0:
            raise fail(f'"{key}": "previous": the first entry has no frame before it; give an image path')
        if value == "next" and shot == total - 1:
            raise fail(f'"{key}": "next": the last entry has no frame after it; give an image path')
        if value == "next" and next_entry is not None and "clip" in next_entry:
            raise fail(f'"{key}": "next" is a clip; "next" names the still after the clip (its key frame)')
    if entry.get("first_frame") is not None and entry.get("first_frame") == entry.get("last_frame"):
        raise fail('"first_frame" and "last_frame" are the same frame; a transition goes from one key to another')


def resolve_image(path: Path, where: str, key: str, value: str) -> str:
    """An image path in ``first_frame``/``last_frame`` (relative to the storyboard's folder): it must
    exist now; ``"previous"``/``"next"`` stay as they are."""
    if value in ("previous", "next"):
        return value
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = path.parent / p
    if not p.is_file():
        raise FramereelError(f'{path.name}: {where}: "{key}": {value}: no such image; give "previous", "next" or '
                             "an image file's path")
    return str(p.resolve())


def resolve_video(path: Path, where: str, value: str) -> str:
    """``init_video`` relative to the storyboard's folder; it must exist now."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = path.parent / p
    if not p.is_file():
        raise FramereelError(f'{path.name}: {where}: "init_video": {value}: no such file')
    return str(p.resolve())


def group_clips(entries: list[dict[str, Any]], fail_at) -> list[list[int]]:
    """Entry indices, grouped: a clip entry alone, or consecutive entries of one ``clip_group``;
    a non-clip entry is a group of its own."""
    groups: list[list[int]] = []
    for i, e in enumerate(entries):
        name = e.get("clip_group") if "clip" in e else None
        last = groups[-1] if groups else None
        if name and last and entries[last[0]].get("clip_group") == name and "clip" in entries[last[0]]:
            first = entries[last[0]]
            for key in PER_CLIP:
                if first.get(key) != e.get(key):
                    raise fail_at(i, f'"{key}" differs from the first entry of clip group "{name}" '
                                     f'(a clip has one {key.replace("_", " ")}); set it on the first entry only')
            last.append(i)
        else:
            if name and any(entries[g[0]].get("clip_group") == name for g in groups):
                raise fail_at(i, f'clip group "{name}" was used earlier; a group\'s entries must be consecutive')
            groups.append([i])
    return groups


def clip_spec(entries: list[dict[str, Any]], group: list[int], start: int = 0) -> ClipSpec:
    """The :class:`ClipSpec` of the clip made by ``group`` (entry indices) whose first frame is
    output frame ``start``."""
    prompts: dict[int, str] = {}
    offset = 0
    for i in group:
        e = entries[i]
        prompts[offset] = e["prompt"].strip()
        for t in e.get("travel", []):
            prompts[offset + t["at"]] = t["prompt"].strip()
        offset += e["clip"]
    first = entries[group[0]]
    video = first.get("init_video")
    strength = first.get("strength", DEFAULT_VIDEO_STRENGTH) if video else None
    if isinstance(strength, Schedule):  # a keyframe schedule: a clip takes one strength, its value at the start
        strength = strength.at(0)
    length = first.get("context_length", DEFAULT_CONTEXT_LENGTH)
    return ClipSpec(
        id=group[0], frames=offset, prompts=tuple(sorted(prompts.items())),
        context_length=length,
        context_stride=window_stride(offset, length, first.get("context_stride", DEFAULT_CONTEXT_STRIDE)),
        init_video=video, strength=float(strength) if strength is not None else None,
        first_frame=first.get("first_frame"), last_frame=first.get("last_frame"),
        first_index=_key_index(first.get("first_frame"), start, offset),
        last_index=_key_index(first.get("last_frame"), start, offset),
    )


def _key_index(value: str | None, start: int, frames: int) -> int | None:
    """The output frame ``"previous"``/``"next"`` names for a clip of ``frames`` frames at ``start``."""
    return {"previous": start - 1, "next": start + frames}.get(value) if value else None


def window_stride(frames: int, length: int, stride: int) -> int:
    """The largest stride up to ``stride`` whose windows of ``length`` frames end on the clip's
    last frame. Otherwise diffusers' FreeNoise adds a partial last window and normalises its frames
    with one weight for all: the last frame's motion features came out divided by the frames left over."""
    if frames <= length:
        return stride
    return next(s for s in range(stride, 0, -1) if (frames - length) % s == 0)


def prompt_at(spec: ClipSpec, position: int) -> str:
    """The prompt a clip frame shows in its metadata: the last travel key at or before it."""
    return [p for at, p in spec.prompts if at <= position][-1]


def whole_clips(frames: list, todo: list) -> list:
    """``todo`` with every clip it touches completed: a clip renders (and is written) whole, so
    one unfinished frame brings in all of its clip's frames. Sorted by index."""
    clips_left = {f.clip for f in todo if f.kind == "clip"}
    if not clips_left:
        return todo
    have = {f.index for f in todo}
    extra = [f for f in frames if f.kind == "clip" and f.clip in clips_left and f.index not in have]
    return sorted([*todo, *extra], key=lambda f: f.index)

