"""The output folder: frames, ``run.json``, atomic writes, resume and the folder lock.

A frame is finished when ``frames/frame_NNN.png`` decodes and the parameter hash in its PNG
metadata equals the hash of the parameters asked for now. The PNG is self-describing, so a run
killed between writing a frame and updating ``run.json`` loses nothing; ``run.json`` is the
human-readable record of the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from .errors import FramereelError

FRAMES_DIR = "frames"
MANIFEST = "run.json"
SUPERSEDED_DIR = "superseded"
CONTROL_DIR = "control"  # each frame's ControlNet maps, shown beside it in the gallery
DEPTH_DIR = "depth"  # 3D camera runs: each moved picture's depth map, by frame (the gallery's depth layer)
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


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (ulimit -f)


def disk_full_error(folder: Path, what: str, needed: int, code: int = errno.ENOSPC) -> FramereelError:
    """The one line for a full disk: the folder, what could not be written, and the space to free.
    ``code`` EFBIG: a file-size limit (``ulimit -f``) stopped the write, not the disk."""
    if code == errno.EFBIG:
        return FramereelError(
            f"{folder}: a file-size limit (ulimit -f) stopped writing {what} (needs about {_size(needed)}); "
            "raise the limit and run the same command again — finished frames are kept")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    return FramereelError(
        f"{folder}: no space left to write {what} (needs about {_size(needed)}, {_size(free)} free); "
        "free some space and run the same command again — finished frames are kept"
    )


def _size(n: int) -> str:
    n = max(n, 0)
    return f"{n / 1e3:.0f} kB" if n < 1e6 else f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename.

    Either the whole new file is at ``path`` or the old one is untouched; a full disk leaves no
    temp file behind and raises a :class:`FramereelError` saying how much space is needed.
    """
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if err.errno in DISK_FULL:
            raise disk_full_error(path.parent, path.name, len(data), err.errno) from None
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise FramereelError(f"{path.parent}: cannot write {path.name} ({err.strerror}); "
                                 "give a folder you can write in") from None
        raise


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
    there (or a damaged or foreign file) is moved to ``superseded/`` first. The one place a frame
    file is written."""
    path = out_dir / FRAMES_DIR / frame_name(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():  # finished, damaged or someone else's image: kept in superseded/, never deleted
        move_aside(out_dir, path)
    atomic_write_bytes(path, data)
    return path


def write_control_maps(out_dir: Path, index: int, maps: list[Image.Image]) -> list[str]:
    """Write frame ``index``'s ControlNet maps into ``out_dir/control`` atomically (a map is made again
    from its inputs, so an older one is replaced); returns their paths relative to ``out_dir``."""
    names = [f"{CONTROL_DIR}/{Path(frame_name(index)).stem}_{k}.png" for k in range(len(maps))]
    (out_dir / CONTROL_DIR).mkdir(exist_ok=True)
    for name, image in zip(names, maps, strict=True):
        atomic_write_bytes(out_dir / name, png_bytes(image, {}))
    return names


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

    warnings: list[str] = dataclasses.field(default_factory=list)  # what loading had to repair

    @classmethod
    def load(cls, out_dir: Path, on_warning: Callable[[str], None] | None = None, readonly: bool = False) -> Manifest:
        """Read ``run.json``. One that is truncated, empty or not framereel's is rebuilt from the
        frames' PNG metadata (each frame carries its own parameter hash), with a warning: the
        damaged file is kept as ``run.json.damaged``, and no finished frame is rendered again.
        ``readonly``: leave a damaged file where it is (for looking, not running)."""
        path = out_dir / MANIFEST
        if not path.exists():
            return cls(path, {}, {})
        try:
            data = _parse_manifest(path.read_bytes())
        except ValueError as e:
            manifest = rebuild_manifest(out_dir)
            if not readonly:
                with contextlib.suppress(OSError):
                    os.replace(path, path.with_name(MANIFEST + ".damaged"))
            message = (f"{path} was damaged ({e}); rebuilt it from the {len(manifest.frames)} frames' PNG "
                       f"metadata (the old file is {MANIFEST}.damaged)")
            manifest.warnings.append(message)
            if on_warning:
                on_warning(message)
            return manifest
        except PermissionError:
            raise FramereelError(f"{path}: not readable by this user (permission denied)") from None
        try:
            data = upgrade(data)
        except ValueError as e:
            raise FramereelError(f"{path}: {e}") from None
        frames = {int(f["index"]): f for f in data.pop("frames")}
        return cls(path, data, frames)

    def save(self) -> None:
        doc = {"schema": SCHEMA, **self.run, "frames": [self.frames[i] for i in sorted(self.frames)]}
        atomic_write_json(self.path, doc)


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    """``run.json``'s bytes → its document, or ValueError saying what is wrong with it."""
    if not raw.strip():
        raise ValueError("empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON: {str(e).splitlines()[0][:80]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames", []), list):
        raise ValueError("not a framereel run record")
    frames = data.setdefault("frames", [])
    for f in frames:
        if not isinstance(f, dict) or isinstance(f.get("index"), bool) or not isinstance(f.get("index"), int) \
                or f["index"] < 0:
            raise ValueError("a frame record has no index")
        d = f.get("duration")
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d)
                              or not 0 < d <= 3600):
            f["duration"] = None
    if not isinstance(data.get("video", {}), dict):
        data.pop("video")
    return data


def rebuild_manifest(out_dir: Path) -> Manifest:
    """A run record made from what is on disk: each decodable ``frames/frame_NNN.png`` with its
    PNG metadata (prompt, seed, parameter hash). Durations come back with the next render."""
    frames: dict[int, dict[str, Any]] = {}
    folder = out_dir / FRAMES_DIR
    for p in sorted(folder.glob("frame_*.png")) if folder.is_dir() else []:
        index = frame_index(p)
        meta = read_png_metadata(p) if index is not None else None
        if meta is None:
            continue
        frames[index] = {
            "index": index, "file": f"{FRAMES_DIR}/{p.name}", "status": "done", "hash": meta.get(HASH_KEY),
            "prompt": meta.get("prompt"), "seed": meta.get("seed"), "duration": None, "rebuilt": True,
        }
    return Manifest(out_dir / MANIFEST, {}, frames)


def check_same_storyboard(manifest: Manifest, storyboard: Any, out: Path) -> None:
    """Refuse to render a different storyboard into a folder holding another's run.

    Sameness is decided by content: a renamed or copied storyboard with the same text is the
    same run; an edited storyboard at the same path is the same run with changed frames.
    """
    previous = manifest.run.get("storyboard")
    if not previous or previous == str(Path(storyboard.path).resolve()):
        return
    if storyboard.digest and manifest.run.get("storyboard_sha256") == storyboard.digest:
        return
    raise FramereelError(
        f"{out} holds a run of another storyboard ({previous}); use another -o folder, "
        "or --force to render this one there (old frames are kept in superseded/)"
    )


# ------------------------------------------------------------------ a new folder, as it was


def missing_folders(out_dir: Path) -> list[Path]:
    """The folders of ``out_dir``'s path that don't exist yet, ``out_dir`` first: what
    :func:`folder_lock` makes, and :func:`undo_new_folder` may remove again."""
    missing, path = [], Path(out_dir)
    while not os.path.lexists(path) and path.parent != path:
        missing.append(path)
        path = path.parent
    return missing


def undo_new_folder(made: list[Path], also: tuple[str, ...] = ()) -> None:
    """After a run that stopped before writing a frame into a folder it made (``made``, from
    :func:`missing_folders`): remove what it wrote there (the lock, ``run.json``, ``also``), its
    empty ``frames/`` and ``superseded/``, then each folder it made that is empty, so the path is as
    it was. A folder holding a frame, or anything else, is left as it is."""
    if not made:
        return
    out = made[0]
    frames = out / FRAMES_DIR
    if frames.is_dir() and any(frames.iterdir()):
        return  # frames were written: they, and the run record naming them, stay
    for name in (MANIFEST, *also, LOCK_FILE):
        with contextlib.suppress(OSError):
            (out / name).unlink()
    for folder in (frames, out / SUPERSEDED_DIR, *made):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only an empty folder goes


# ------------------------------------------------------------------ lock


@contextlib.contextmanager
def folder_lock(out_dir: Path, create: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` for this process.

    The lock is an ``flock`` on ``.framereel.lock``: the kernel drops it when its holder dies,
    so a stale lock from a killed run never blocks the next one. ``create=False``: the folder
    must exist already (nothing is made in a folder that holds no run).
    """
    try:
        if create:
            out_dir.mkdir(parents=True, exist_ok=True)
        elif not out_dir.is_dir():
            raise FramereelError(f"{out_dir}: no such folder")
        path = out_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileExistsError:
        raise FramereelError(f"{out_dir}: exists and is not a folder; give a folder for -o") from None
    except NotADirectoryError:
        raise FramereelError(f"{out_dir}: a part of this path is a file, not a folder") from None
    except PermissionError:
        raise FramereelError(f"{out_dir}: not writable by this user (permission denied); "
                             "give a folder you can write in") from None
    except OSError as err:
        if err.errno in DISK_FULL:
            raise disk_full_error(out_dir, LOCK_FILE, 4096) from None
        raise FramereelError(f"{out_dir}: cannot be used as an output folder ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            raise FramereelError(
                f"{out_dir} is in use by another framereel run ({holder}); wait for it, or use another -o folder"
            ) from None
        with contextlib.suppress(OSError):  # who holds it is a courtesy: a full disk doesn't stop the run here
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
