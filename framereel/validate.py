"""Check every option a user gives before anything slow happens: no model loads, no folder is
created and no frame is rendered until the whole command line is known to be usable.

Each check raises :class:`~framereel.errors.FramereelError` with one line naming the option, the
value and what would work. The CLI calls :func:`check_run` once; ``stitch()`` and
``contact_sheet()`` call the parts they need, so library callers get the same answers.
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


def check_stitch_options(
    out: Path,
    video: Path | None = None,
    *,
    fps: float | None = None,
    crf: int = 18,
    codec: str | None = None,
    transition: str = "cut",
    crossfade: float = 0.5,
    smooth_fps: int = 24,
    size: str | None = None,
    frames: str | None = None,
    zoom: float = 0.0,
    audio: Path | None = None,
    ffmpeg: str | None = None,
) -> str:
    """Every ``stitch`` option, checked without reading a frame; returns the video's format."""
    from .storyboard import parse_indices

    target = Path(video) if video else Path(out) / "video.mp4"
    fmt = check_video_path(target)
    check_number("--fps", fps, 0, MAX_FPS, above=True)
    if transition not in ("cut", "crossfade", "smooth"):
        raise FramereelError(f"--transition {transition}: choose one of cut, crossfade, smooth")
    check_number("--crossfade", crossfade, 0, MAX_CROSSFADE, above=True, unit=" seconds")
    if isinstance(smooth_fps, bool) or not isinstance(smooth_fps, int) or not 1 <= smooth_fps <= MAX_SMOOTH_FPS:
        raise FramereelError(f"--smooth-fps {smooth_fps}: give a whole number from 1 to {MAX_SMOOTH_FPS}")
    check_number("--zoom", zoom, 0, 1)
    if size:
        parse_size(size)
    if frames:
        parse_indices(frames)
    if fmt in (".gif", ".webp") and codec:
        raise FramereelError(f"--codec: {fmt} files have one encoder; drop --codec or write .mp4, .mov or .webm")
    name = codec or DEFAULT_CODEC.get(fmt)
    lo, hi = CRF_RANGE.get(name, (0, 63))
    if isinstance(crf, bool) or not isinstance(crf, int) or not lo <= crf <= hi:
        raise FramereelError(f"--crf {crf}: {name or fmt} takes {lo} (best) to {hi} (smallest); 18 looks near lossless")
    if audio is not None and fmt in (".gif", ".webp"):
        raise FramereelError(f"--audio: {fmt} files have no sound; write .mp4, .mov or .webm")
    if name or audio is not None:
        from .video import find_ffmpeg

        ffmpeg = ffmpeg or find_ffmpeg()
        if name and not has_encoder(ffmpeg, name):
            hint = {".webp": "; write .gif or .webm instead"}.get(fmt, "; list them with `ffmpeg -encoders`")
            raise FramereelError(f"--codec {name}: this ffmpeg ({Path(ffmpeg).name}) has no such video encoder{hint}")
        if audio is not None:
            check_audio(Path(audio), ffmpeg)
    return fmt


def has_encoder(ffmpeg: str, name: str) -> bool:
    """Whether ``ffmpeg -encoders`` lists a video encoder called ``name``."""
    listing = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("V") and parts[1] == name:
            return True
    return False


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


DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_render_settings(settings, executor: str = "local", ray_address: str | None = None) -> None:
    """The rendering options of a :class:`~framereel.settings.RenderSettings`, checked before the
    output folder is made: by spelling, by the backend registry, and whether the device exists
    (no model is resolved, nothing is loaded)."""
    import re

    from .backends import backend_class

    settings.check()
    if settings.backend != "auto":
        cls = backend_class(settings.backend)
        flags = settings.speed_flags()
        if flags and not cls.takes_speed_options:
            raise FramereelError(f"{', '.join(flags)}: {cls.speed_refusal}; drop them or use --backend diffusers")
    if settings.dtype not in DTYPES:
        raise FramereelError(f"--dtype {settings.dtype}: choose float32, bfloat16, float16 or auto")
    if not re.fullmatch(r"auto|cpu|mps|cuda|cuda:\d{1,3}|tt|tt:\d{1,3}", settings.device):
        raise FramereelError(f"--device {settings.device}: use auto, cpu, cuda, cuda:N or mps")
    if settings.device.startswith("cuda") or settings.device == "mps":
        import torch  # rendering imports it anyway; asking now keeps a refused run from making its folder

        if settings.device.startswith("cuda"):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(settings.device.partition(":")[2] or 0)
            if index >= count:
                raise FramereelError(f"--device {settings.device}: " + (
                    "no CUDA GPU is visible to PyTorch; use --device cpu or auto" if not count
                    else f"PyTorch sees {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"))
        elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise FramereelError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if settings.step_cache > 1000 or settings.batch > 64:
        raise FramereelError("--step-cache takes at most 1000 and --batch at most 64")
    vae = settings.tiny_vae
    if vae:
        path = Path(vae).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise FramereelError(f"--tiny-vae {vae}: no config.json there; pass a folder saved with "
                                 "AutoencoderTiny.save_pretrained, or a Hub id like madebyollin/taesd")
        if not path.is_dir() and (vae.startswith((".", "/", "~")) or vae.count("/") != 1):
            raise FramereelError(f"--tiny-vae {vae}: no such folder; pass a local folder or a Hub id like "
                                 "madebyollin/taesd")
    if executor == "ray" and ray_address is not None and not re.fullmatch(
            r"auto|local|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", ray_address):
        raise FramereelError(f"--ray-address {ray_address}: give auto, HOST:PORT or ray://HOST:PORT")
