"""The output folder: frames, ``run.json``, atomic writes, resume and the folder lock.

A frame is finished when ``frames/frame_NNN.png`` decodes and the parameter hash in its PNG
metadata equals the hash of the parameters asked for now. The PNG is self-describing, so a run
killed between writing a frame and updating ``run.json`` loses nothing; ``run.json`` is the
human-readable record of the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from .errors import FramereelError

FRAMES_DIR = "frames"
MANIFEST = "run.json"
SUPERSEDED_DIR = "superseded"
LOCK_FILE = ".framereel.lock"
TMP_MARK = ".tmp-"
HASH_KEY = "framereel:hash"


def frame_name(index: int) -> str:
    return f"frame_{index:03d}.png"


def frame_index(path: Path) -> int | None:
    """``frame_012.png`` → 12; None for other names."""
    stem = path.stem
    if path.suffix == ".png" and stem.startswith("frame_") and stem[6:].isdigit():
        return int(stem[6:])
    return None


def file_digest(path: Path, length: int = 16) -> str | None:
    """A short hash of a file's bytes, or None if it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:length]
    except FileNotFoundError:
        return None


def read_frame_image(frames_dir: Path, index: int) -> Image.Image:
    """Frame ``index`` of ``frames_dir`` as an RGB image."""
    with Image.open(frames_dir / frame_name(index)) as im:
        return im.convert("RGB")


def params_hash(params: dict[str, Any]) -> str:
    """A short, stable hash of everything that decides a frame's pixels."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------ atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename."""
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files left by a killed run (only ever called while holding the lock)."""
    removed = []
    for sub in (folder, folder / FRAMES_DIR):
        if sub.is_dir():
            for p in sub.iterdir():
                if TMP_MARK in p.name:
                    p.unlink(missing_ok=True)
                    removed.append(p)
    return removed


# ------------------------------------------------------------------ PNG with metadata


def png_bytes(image: Image.Image, metadata: dict[str, str]) -> bytes:
    """Encode ``image`` as PNG with ``metadata`` as text chunks (deterministic bytes)."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_itxt(key, value)
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def read_png_metadata(path: Path) -> dict[str, str] | None:
    """The PNG's text metadata, or None if the file is missing or does not decode fully."""
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                return None
            text = dict(im.text)
            im.load()  # decodes every pixel: a truncated file fails here
        return text
    except (OSError, SyntaxError, ValueError):
        return None


def read_png_hash(path: Path) -> str | None:
    """The parameter hash a finished frame carries, or None if it has none or does not decode fully."""
    meta = read_png_metadata(path)
    return meta.get(HASH_KEY) if meta is not None else None


def write_frame_file(out_dir: Path, index: int, data: bytes) -> Path:
    """Write frame ``index``'s PNG bytes into ``out_dir/frames`` atomically; a finished frame already
    there is moved to ``superseded/`` first. The one place a frame file is written."""
    path = out_dir / FRAMES_DIR / frame_name(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    if read_png_metadata(path) is not None:
        move_aside(out_dir, path)
    atomic_write_bytes(path, data)
    return path


def move_aside(out_dir: Path, path: Path) -> Path:
    """Move a finished file that is about to be replaced into ``superseded/`` (never delete it)."""
    digest = file_digest(path, 8)
    dest_dir = out_dir / SUPERSEDED_DIR
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{path.stem}.{digest}{path.suffix}"
    os.replace(path, dest)
    return dest


# ------------------------------------------------------------------ run.json


SCHEMA = 2  # run.json's version; 1: framereel 0.1.0's, which had no "schema" key


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A run.json document of any version framereel has written, as the current version."""
    version = doc.get("schema", 1)
    if not isinstance(version, int) or version > SCHEMA:
        raise ValueError(f"schema {version!r} is newer than this framereel reads ({SCHEMA}); upgrade framereel")
    if version == 1:  # 1 → 2: the same fields, now with a version
        doc = {"schema": 2, **doc}
    return doc


@dataclass
class Manifest:
    """``run.json``: what was asked (run-wide settings) and each frame's record.

    Version 2 fields: ``schema``, ``framereel`` (version), ``storyboard`` (path), ``model`` (id,
    fingerprint), ``backend``, ``device``, ``dtype``, ``scheduler``, ``safety_checker``, ``batch``,
    ``run_seed``, ``notes`` (optional), ``video`` (the last stitch), and ``frames``: per frame
    ``index``, ``file``, ``kind``, ``status`` (pending, done, failed), ``hash``, ``params``,
    ``duration``, ``seconds``, ``device``, ``derived_from`` (morphs, chains), ``error``.
    """

    path: Path
    run: dict[str, Any]
    frames: dict[int, dict[str, Any]]

    @classmethod
    def load(cls, out_dir: Path) -> Manifest:
        path = out_dir / MANIFEST
        if not path.exists():
            return cls(path, {}, {})
        try:
            data = upgrade(json.loads(path.read_text(encoding="utf-8")))
            frames = {int(f["index"]): f for f in data.pop("frames", [])}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise FramereelError(
                f"{path}: unreadable ({e}); move it away, or use --force to start the folder afresh"
            ) from None
        return cls(path, data, frames)

    def save(self) -> None:
        doc = {"schema": SCHEMA, **self.run, "frames": [self.frames[i] for i in sorted(self.frames)]}
        atomic_write_json(self.path, doc)


# ------------------------------------------------------------------ lock


@contextlib.contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for this process.

    The lock is an ``flock`` on ``.framereel.lock``: the kernel drops it when its holder dies,
    so a stale lock from a killed run never blocks the next one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            raise FramereelError(
                f"{out_dir} is in use by another framereel run ({holder}); wait for it, or use another -o folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
