"""``write_gallery()``: ``out/index.html``, a page for a run that works from ``file://``.

The page is static (``framereel/web/gallery.html``, inline CSS and JS, no network); what it
shows comes from ``out/run.js``, a script holding one call ``framereelRun({...})`` with the run's
data built from ``run.json``, ``frames/`` and ``superseded/``. Browsers refuse ``fetch()`` of a
``file://`` URL but load scripts from one, so the page re-adds ``run.js`` every few seconds and
redraws when its stamp changes: while a run is going, :class:`LiveGallery` rewrites ``run.js``
as frames land and the open page follows.

Every prompt and parameter reaches the page as JSON data and is put in the page with
``textContent``/attributes only, never as HTML.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from .errors import FramereelError
from .manifest import (
    DEPTH_DIR,
    FRAMES_DIR,
    MANIFEST,
    SUPERSEDED_DIR,
    Manifest,
    atomic_write_bytes,
    frame_index,
    read_png_hash,
    read_png_metadata,
)
from .storyboard import COLOR_MATCHES, DEFORUM_MOTION_KEYS, MOTION_KEYS


@runtime_checkable
class Closable(Protocol):
    """A progress report that holds a terminal display to close (a plain event handler holds none)."""

    def close(self) -> None: ...

PAGE = "index.html"
DATA = "run.js"
DEFAULT_FPS = 2.0  # what stitch paces frames without a duration at, when no video says otherwise
ENTRY_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height")


def page_html() -> str:
    """The gallery page's HTML (the same for every run). Its Content-Security-Policy allows its
    own inline script by hash and scripts from its folder (``run.js``), so no inline event handler
    or other markup slipped into the page could run."""
    html = resources.files("framereel").joinpath("web", "gallery.html").read_text(encoding="utf-8")
    script = re.search(r"<script>(.*?)</script>", html, re.S)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return html.replace("{{SCRIPT_HASH}}", f"'sha256-{digest}'")


def script_json(obj: Any) -> str:
    """JSON that is safe inside a ``<script>`` (no ``</script>``, no line separators)."""
    text = json.dumps(obj, ensure_ascii=True, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _version(path: Path) -> str:
    """A cache-busting token for a file that may be replaced (size and mtime)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return ""
    return hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]


def _params_from_png(path: Path) -> dict[str, Any]:
    """A frame's parameters from its PNG metadata (for frames that run.json does not describe)."""
    meta = read_png_metadata(path) or {}
    params: dict[str, Any] = {"prompt": meta.get("prompt", ""), "negative_prompt": meta.get("negative_prompt", "")}
    for key, cast in (("seed", int), ("steps", int), ("guidance", float)):
        try:
            params[key] = cast(meta[key])
        except (KeyError, ValueError):
            params[key] = None
    w, _, h = meta.get("size", "").partition("x")
    params["width"], params["height"] = (int(w), int(h)) if w.isdigit() and h.isdigit() else (None, None)
    if not params["width"]:
        try:
            with Image.open(path) as im:
                params["width"], params["height"] = im.size
        except OSError:
            pass
    params["scheduler"] = meta.get("scheduler")
    for key in ("morph", "init"):
        if key in meta:
            params[key] = meta[key]
    return params


def storyboard_entry(params: dict[str, Any], duration: float | None = None) -> dict[str, Any]:
    """The storyboard entry that renders this frame again: its prompt and exact parameters, and
    what makes it a clip (``clip``, ``travel``, context settings, ``init_video``), a chained frame
    (``init``, ``strength``, ``motion``, ``color_match``) or a morph (``morph``: an in-between
    gives its key frame's entry, which morphs into the entry after it; see :func:`_mark_morph_keys`)."""
    entry = {k: params[k] for k in ENTRY_KEYS if params.get(k) not in (None, "")}
    kind, morph = params.get("kind", "key"), params.get("morph")
    if kind == "clip" and params.get("clip"):
        entry.update(_clip_keys(params["clip"]))
    elif kind == "chain":
        entry.update(_chain_keys(params))
    elif kind == "morph" and isinstance(morph, list) and len(morph) == 3:  # (from, to, t)
        entry["morph"] = morph[1] - morph[0] - 1
    if duration:
        entry["duration"] = duration
    return entry


def _clip_keys(clip: dict[str, Any]) -> dict[str, Any]:
    """A clip's keys, from the clip spec in its frames' parameters (a clip group becomes one
    entry whose travel starts each of the group's prompts at its frame: the same clip)."""
    (_, first), *rest = clip["prompts"]
    keys: dict[str, Any] = {"prompt": first, "clip": clip["frames"]}
    if rest:
        keys["travel"] = [{"at": at, "prompt": prompt} for at, prompt in rest]
    keys["context_length"], keys["context_stride"] = clip["context_length"], clip["context_stride"]
    if clip.get("init_video"):
        keys["init_video"], keys["strength"] = clip["init_video"], clip["strength"]
    keys.update({k: clip[k] for k in ("first_frame", "last_frame") if clip.get(k)})  # a video model's key frames
    return keys


def _chain_keys(params: dict[str, Any]) -> dict[str, Any]:
    """A chained frame's keys: img2img from the previous frame, its strength, motion and colour match."""
    keys: dict[str, Any] = {"init": "previous", "strength": params.get("strength")}
    motion = params.get("motion")
    if motion and isinstance(motion[0], list):  # a 3D camera: (key, value) pairs
        keys["motion"] = dict(motion)
    elif motion:
        names = [*MOTION_KEYS, *DEFORUM_MOTION_KEYS, "warp"] if len(motion) > len(MOTION_KEYS) else list(MOTION_KEYS)
        keys["motion"] = dict(zip(names, motion))
    if params.get("cadence"):  # [its block's diffused frame, N]
        keys["cadence"] = params["cadence"][1]
    if params.get("color_ref") is not None:
        space = params.get("color_space")
        keys["color_match"] = next(k for k, v in COLOR_MATCHES.items() if k and v == space)
    return keys


def _superseded(out: Path) -> dict[int, list[Path]]:
    """The earlier versions of each frame kept in ``superseded/``, oldest first, by frame index."""
    superseded: dict[int, list[Path]] = {}
    sdir = out / SUPERSEDED_DIR
    if sdir.is_dir():
        for p in sorted(sdir.glob("frame_*.png"), key=lambda p: p.stat().st_mtime_ns):
            stem = p.name.split(".")[0]
            if stem[6:].isdigit():
                superseded.setdefault(int(stem[6:]), []).append(p)
    return superseded


def _frame_data(index: int, record: dict[str, Any], path: Path, on_disk: bool, fps: float,
                superseded: list[Path]) -> dict[str, Any]:
    """What the page shows of one frame: its file, status, parameters and earlier versions."""
    params = dict(record.get("params") or {}) or (_params_from_png(path) if on_disk else {})
    status = record.get("status") or ("done" if on_disk else "missing")
    if status == "done" and not on_disk:
        status = "missing"
    duration = record.get("duration")
    return {
        "index": index,
        "file": f"{FRAMES_DIR}/{path.name}" if on_disk else None,
        "v": _version(path) if on_disk else "",
        "kind": record.get("kind", "key"),
        "status": status,
        "error": record.get("error"),
        "params": {k: v for k, v in params.items() if k not in ("model", "dtype", "backend")},
        "seconds": record.get("seconds"),
        "device": record.get("device"),
        "duration": float(duration or 1.0 / fps),
        "duration_set": duration is not None,
        "derived_from": record.get("derived_from"),
        "flagged": bool(record.get("nsfw_blacked_out")),  # the safety checker blacked it out
        "control": _control_maps(path.parent.parent, record, params) if on_disk else [],
        "entry": storyboard_entry(params, duration),
        "superseded": [
            {"file": f"{SUPERSEDED_DIR}/{p.name}", "v": _version(p), "params": _params_from_png(p)}
            for p in superseded
        ],
        "depth": _depth_data(path, record.get("hash")) if on_disk else None,
    }


def _control_maps(out: Path, record: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """A controlled frame's ControlNet maps on disk, each with its preprocessor and weight."""
    settings = params.get("control") or []
    return [{"file": name, "v": _version(out / name), **{k: c.get(k) for k in ("preprocess", "weight")}}
            for name, c in zip(record.get("control_maps") or [], settings, strict=False) if (out / name).is_file()]
def _depth_data(path: Path, frame_hash: str | None) -> dict[str, str] | None:
    """The frame's depth map (a 3D camera moved it for the next frame), when it was estimated from
    this very picture: ``depth/frame_NNN.png`` carrying the frame's hash."""
    depth = path.parent.parent / DEPTH_DIR / path.name
    if frame_hash and depth.is_file() and read_png_hash(depth) == frame_hash:
        return {"file": f"{DEPTH_DIR}/{path.name}", "v": _version(depth)}
    return None


def _drop_unused_depth(frames: list[dict[str, Any]]) -> None:
    """A depth layer stays only where a 3D camera still moves the next frame out of this one (a chain
    re-rendered in 2D leaves its first picture, and that picture's old depth map, as they were)."""
    by_index = {f["index"]: f for f in frames}
    for f in frames:
        child = by_index.get(f["index"] + 1)
        motion = (child["params"].get("motion") if child is not None else None) or [None]
        moved = child is not None and (child["derived_from"] or {}).get("parent") == f["index"] and \
            motion[0] == ["mode", "3D"]  # run.json's 3D motion: [["mode", "3D"], [key, value] …]; 2D: numbers
        if f["depth"] is not None and not moved:
            f["depth"] = None


def _mark_morph_keys(frames: list[dict[str, Any]]) -> None:
    """A morph's key frame gets ``"morph": N`` in its entry, and its in-betweens that entry."""
    by_index = {f["index"]: f for f in frames}
    for f in frames:
        if f["kind"] == "morph" and "morph" in f["entry"]:
            key = by_index.get(f["params"]["morph"][0])
            if key is not None and key["kind"] != "morph":
                key["entry"]["morph"] = f["entry"]["morph"]
                f["entry"] = key["entry"]


def _run_data(run: dict[str, Any]) -> dict[str, Any]:
    """The run's model, device and settings, as the page's header shows them."""
    return {
        "model": (run.get("model") or {}).get("id"),
        "backend": run.get("backend"),
        "device": run.get("device"),
        "dtype": run.get("dtype"),
        "scheduler": run.get("scheduler"),
        "run_seed": run.get("run_seed"),
        "framereel": run.get("framereel"),
        "storyboard": Path(run["storyboard"]).name if run.get("storyboard") else None,
    }


def _video_data(out: Path, video: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's video, when ``run.json`` names one that exists inside ``out``."""
    video_path = out / video["path"] if video and video.get("path") else None
    if video_path is not None and video_path.is_file() and video_path.resolve().is_relative_to(out.resolve()):
        return {
            "file": os.path.relpath(video_path, out).replace(os.sep, "/"),
            "v": _version(video_path),
            "seconds": video.get("seconds"),
            "transition": video.get("transition", "cut"),
            "fps": video.get("fps"),
        }
    return None


def gallery_data(out_dir: str | Path, rendering: bool = False) -> dict[str, Any]:
    """Everything the gallery page shows, as plain JSON-able data."""
    out = Path(out_dir)
    manifest = Manifest.load(out) if (out / MANIFEST).exists() else Manifest(out / MANIFEST, {}, {})
    frames_dir = out / FRAMES_DIR
    present = {frame_index(p): p for p in frames_dir.glob("frame_*.png")} if frames_dir.is_dir() else {}
    present.pop(None, None)
    if not manifest.frames and not present:
        raise FramereelError(f"{out}: no run here (no run.json, no frames/); render first with `framereel make`")
    video = manifest.run.get("video") or None
    fps = float((video or {}).get("fps") or DEFAULT_FPS)
    superseded = _superseded(out)
    frames = [
        _frame_data(index, manifest.frames.get(index, {}), frames_dir / f"frame_{index:03d}.png", index in present,
                    fps, superseded.get(index, []))
        for index in sorted(set(manifest.frames) | set(present))
    ]
    _mark_morph_keys(frames)
    _drop_unused_depth(frames)
    data = {
        "title": out.resolve().name,
        "rendering": rendering,
        "run": _run_data(manifest.run),
        "fps": fps,
        "video": _video_data(out, video),
        "frames": frames,
    }
    data["stamp"] = hashlib.sha1(script_json(data).encode()).hexdigest()[:16]
    return data


def write_gallery(out_dir: str | Path, rendering: bool = False) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/run.js``; returns the page's path.

    ``rendering`` marks a run in progress (the page says so and checks for new frames often).
    """
    out = Path(out_dir)
    data = gallery_data(out, rendering)
    atomic_write_bytes(out / DATA, f"framereelRun({script_json(data)});\n".encode())
    page = out / PAGE
    html = page_html().encode("utf-8")
    if not page.exists() or page.read_bytes() != html:
        atomic_write_bytes(page, html)
    return page


class LiveGallery:
    """An event handler that keeps ``out/index.html`` current during a run, then passes each
    event on to ``report`` (the CLI's progress output). ``close()`` writes the finished page."""

    EVERY = 0.5  # seconds: at most two rewrites a second, however fast frames land

    def __init__(self, out_dir: str | Path, report=None) -> None:
        self.out = Path(out_dir)
        self.report = report
        self.started = False
        self.last = 0.0

    def _write(self, rendering: bool, now: bool = True) -> None:
        if not now and time.monotonic() - self.last < self.EVERY:
            return
        self.last = time.monotonic()
        try:
            write_gallery(self.out, rendering)
        except (FramereelError, OSError):
            pass  # the page is a view of the run: it never stops one

    def __call__(self, event) -> None:
        kind = event.name  # a framereel.events.Event
        if kind == "start":
            self.started = True
            self._write(rendering=bool(event.todo))
        elif kind in ("frame_done", "frame_error") and self.started:
            self._write(rendering=True, now=False)
        if self.report is not None:
            self.report(event)

    def close(self) -> None:
        try:
            if isinstance(self.report, Closable):
                self.report.close()
        finally:
            self._write(rendering=False)
