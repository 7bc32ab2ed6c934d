"""Check every option a user gives before anything slow happens: no model loads, no folder is
created and no frame is rendered until the whole command line is known to be usable.

Each check raises :class:`~framereel.errors.FramereelError` with one line naming the option, the
value and what would work. These are the parts: the CLI checks a whole command line with them (and
:meth:`~framereel.settings.StitchSettings.check`, :func:`~framereel.backends.checks.check_render_settings`)
before it starts; ``stitch()`` and ``contact_sheet()`` call the ones they need, so library callers get the
same answers.
"""

from __future__ import annotations

import math
import os
import stat
import subprocess
from pathlib import Path

from .errors import FramereelError

MAX_FPS = 240.0
MAX_SMOOTH_FPS = 120
MAX_CROSSFADE = 60.0  # seconds per dissolve
MAX_DURATION = 3600.0  # seconds one frame stays on screen
MAX_VIDEO_SECONDS = 24 * 3600.0
MAX_VIDEO_SIDE = 8192  # pixels, either side of --size
VIDEO_FORMATS = (".mp4", ".mov", ".webm", ".gif", ".webp")
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libvpx": (4, 63), "libaom-av1": (0, 63),
             "libsvtav1": (0, 63)}
DEFAULT_CODEC = {".mp4": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9", ".webp": "libwebp"}
MAX_FRAMES = 100_000  # frame numbers in --frames/--redo lists
SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def check_number(option: str, value: float | None, lo: float, hi: float, *, above: bool = False,
                 unit: str = "") -> float | None:
    """``value`` must be a finite number from ``lo`` (exclusive when ``above``) to ``hi``."""
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if above else value >= lo) and value <= hi
    if not ok:
        low = f"greater than {lo:g}" if above else f"from {lo:g}"
        raise FramereelError(f"{option} {value}: give a number {low} {'up ' if above else ''}to {hi:g}{unit}")
    return value


def parse_size(text: str, option: str = "--size", multiple: int = 2, lo: int = 2,
               hi: int = MAX_VIDEO_SIDE) -> tuple[int, int]:
    """``"512x288"`` → (512, 288): both sides whole multiples of ``multiple`` from ``lo`` to ``hi``."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise FramereelError(f"{option} {text}: write it as WIDTHxHEIGHT, e.g. 512x512")
    w, h = (int(p) for p in parts)
    if not (lo <= w <= hi and lo <= h <= hi) or w % multiple or h % multiple:
        kind = "even numbers" if multiple == 2 else f"multiples of {multiple}"
        raise FramereelError(f"{option} {text}: width and height must be {kind} from {lo} to {hi}")
    return w, h


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
        if hi >= MAX_FRAMES:
            raise FramereelError(f'"{spec}": frame {hi} is past the largest frame number ({MAX_FRAMES - 1})')
        out.extend(range(lo, hi + 1))
    return sorted(set(out))


def format_indices(indices: list[int]) -> str:
    """``[3, 5, 6, 7]`` → ``"3,5-7"`` (sorted indices; the inverse of :func:`parse_indices`)."""
    parts, start = [], None
    for i, v in enumerate(indices):
        if start is None:
            start = v
        if i == len(indices) - 1 or indices[i + 1] != v + 1:
            parts.append(str(start) if start == v else f"{start}-{v}")
            start = None
    return ",".join(parts)


def check_video_path(video: Path) -> str:
    """The format (extension) of a video path, refused if framereel can't write it."""
    fmt = video.suffix.lower()
    if fmt not in VIDEO_FORMATS:
        raise FramereelError(f"--video {video}: unknown video format {fmt or '(no extension)'}; "
                             f"use one of {', '.join(VIDEO_FORMATS)}")
    if video.is_dir():
        raise FramereelError(f"--video {video}: is a folder; give a file name like {video / 'video.mp4'}")
    check_output_folder(video.parent, "--video")
    return fmt


def check_audio(audio: Path, ffmpeg: str) -> Path:
    """``audio`` must be a readable file with a sound stream ffmpeg can decode."""
    if not audio.is_file():
        raise FramereelError(f"--audio {audio}: no such file")
    if not os.access(audio, os.R_OK):
        raise FramereelError(f"--audio {audio}: not readable (permission denied)")
    proc = subprocess.run([ffmpeg, "-hide_banner", "-v", "error", "-nostdin", "-i", str(audio), "-map", "0:a:0",
                           "-t", "0.05", "-f", "null", "-"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise FramereelError(f"--audio {audio}: not a sound file ffmpeg can read (no audio stream); "
                             "give an .mp3, .wav, .ogg or .m4a")
    return audio


def check_output_folder(out: Path, option: str = "-o") -> None:
    """``out`` can be (or become) a folder this user may write in; nothing is created here."""
    out = Path(out)
    probe = out
    while True:
        try:
            st = probe.stat()
        except FileNotFoundError:
            parent = probe.parent
            if parent == probe:
                break
            probe = parent
            continue
        except NotADirectoryError:
            probe = probe.parent
            continue
        except PermissionError:
            raise FramereelError(f"{option} {out}: {probe} cannot be searched (permission denied)") from None
        if not stat.S_ISDIR(st.st_mode):
            what = "is a file" if stat.S_ISREG(st.st_mode) else "is not a folder"
            if probe == out:
                raise FramereelError(f"{option} {out}: {what}; give a folder")
            raise FramereelError(f"{option} {out}: {probe} {what}, so no folder can be made under it")
        if _is_virtual(probe):
            raise FramereelError(f"{option} {out}: {probe} is a system folder ({_mount_type(probe)}); "
                                 "give a folder on a disk")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise FramereelError(f"{option} {out}: {probe} is not writable by this user; "
                                 "give a folder you can write in")
        break


VIRTUAL_FS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "securityfs", "configfs",
              "tracefs", "pstore", "bpf", "fusectl", "mqueue", "hugetlbfs", "efivarfs"}


def _mount_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (from /proc/self/mounts), or ''."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, kind = "", ""
    target = os.path.realpath(path)
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def _is_virtual(path: Path) -> bool:
    return _mount_type(path) in VIRTUAL_FS


MODEL_SUFFIXES = (".safetensors", ".ckpt")


def check_model(model: str | None) -> None:
    """A ``--model`` that names a local path must be a diffusers folder or a .safetensors/.ckpt file.

    Hub ids (``owner/name``) and ``demo`` pass; they are resolved when the model is described.
    """
    if not model or model == "demo" or model == "sd-shaped":
        return
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or path.exists() or path.suffix in MODEL_SUFFIXES \
        or model.count("/") > 1
    if not looks_local:
        return
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FramereelError(f"--model {model}: not a diffusers model folder (no model_index.json); pass a "
                                 "folder saved with save_pretrained, a .safetensors/.ckpt file, or a Hub id")
        if not os.access(path, os.R_OK | os.X_OK):
            raise FramereelError(f"--model {model}: not readable (permission denied)")
        return
    if path.exists():
        if path.suffix not in MODEL_SUFFIXES:
            raise FramereelError(f"--model {model}: is a {path.suffix or 'plain'} file, not a model; pass a "
                                 "diffusers folder or a .safetensors/.ckpt checkpoint")
        if not os.access(path, os.R_OK):
            raise FramereelError(f"--model {model}: not readable (permission denied)")
        if not _looks_like_checkpoint(path):
            raise FramereelError(f"--model {model}: not a {path.suffix} checkpoint (its first bytes are not "
                                 f"{'a safetensors header' if path.suffix == '.safetensors' else 'a PyTorch zip'}); "
                                 "the file may be truncated or misnamed")
        return
    raise FramereelError(f"--model {model}: no such model folder or file; check the path")


def _looks_like_checkpoint(path: Path) -> bool:
    """A .safetensors file starts with an 8-byte header length and a JSON object; a .ckpt is a zip
    (PyTorch ≥ 1.6) or a pickle (older)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix == ".safetensors":
        return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000 and head[8:9] == b"{"
    return head[:2] == b"PK" or head[:1] == b"\x80"
