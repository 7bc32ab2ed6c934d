"""``stitch()``: frames on disk → a paced video, through ffmpeg.

Three pure steps and one runner:

1. ``collect_shots`` — which frames, in index order, each with its on-screen duration;
2. ``plan_timeline`` — every output frame as (shot a, shot b, blend weight), so pacing and
   crossfades are exact to the output frame;
3. ``ffmpeg_command`` — the argument list (never a shell string) for the chosen format;
4. ``stitch`` — decodes each shot once, writes raw RGB frames to ffmpeg's stdin, and renames the
   finished file into place.

Length rules: with ``cut`` and ``smooth`` the video lasts the sum of the shots' durations; with
``crossfade`` every shot keeps its full hold and each of the N-1 dissolves adds its own length,
so the video lasts ``sum(durations) + (N - 1) * crossfade``.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .errors import FramereelError
from .events import Encoding, EventHandler, VideoWritten, Warning, ignore
from .ffmpeg import find_ffmpeg
from .manifest import FRAMES_DIR, MANIFEST, TMP_MARK, Manifest, disk_full_error, folder_lock, frame_index
from .settings import TRANSITIONS, StitchSettings
from .validate import MAX_VIDEO_SECONDS, format_indices, parse_indices, parse_size

DEFAULT_FPS = 2.0
DEFAULT_CRF = 18
BLEND_FPS = 24  # output rate when crossfading or when durations are not whole frames at --fps
AUDIO_FADE = 1.0  # seconds of fade-out at the end of a soundtrack
MIN_SHORT_SIDE = 256  # tiny frames (the demo model's 64×64) are scaled up by a whole factor to at least this


@dataclass(frozen=True)
class Shot:
    index: int
    path: Path
    duration: float


@dataclass(frozen=True)
class Timeline:
    rate: Fraction  # output frames per second
    frames: tuple[tuple[int, int, float], ...]  # (shot a, shot b, weight of b) per output frame

    @property
    def seconds(self) -> float:
        return len(self.frames) / float(self.rate)


def collect_shots(
    out_dir: Path, fps: float, frames: str | None = None, records: dict[int, dict[str, Any]] | None = None,
    unreadable: list[int] | None = None,
) -> tuple[list[Shot], list[int]]:
    """The frames present in ``out_dir/frames`` in index order, and the indices that are missing.

    Durations come from ``records`` (``run.json``'s frames, read if not given: the storyboard's
    ``duration``) or default to ``1 / fps``.
    ``frames`` (e.g. ``"0-4,7"``) picks a subset. A frame file that does not decode as an image
    counts as missing; its index is also appended to ``unreadable`` when a list is given.
    """
    frames_dir = out_dir / FRAMES_DIR
    if not frames_dir.is_dir():
        raise FramereelError(f"{out_dir}: no frames/ folder; render first with `framereel frames` or `framereel make`")
    present = {frame_index(p): p for p in frames_dir.glob("frame_*.png") if frame_index(p) is not None}
    if records is None:
        records = Manifest.load(out_dir).frames if (out_dir / MANIFEST).exists() else {}
    expected = set(records) or set(present)
    wanted = sorted(expected | set(present))
    if frames:
        pick = set(parse_indices(frames))
        wanted = [i for i in wanted if i in pick]
    for i in wanted:
        if i in present and not _decodes(present[i]):
            del present[i]
            if unreadable is not None:
                unreadable.append(i)
    missing = [i for i in wanted if i not in present]
    shots = []
    for i in wanted:
        if i in present:
            d = (records.get(i) or {}).get("duration") or 1.0 / fps
            shots.append(Shot(i, present[i], float(d)))
    if not shots:
        raise FramereelError(f"{out_dir}: no frames to stitch (frames/ has no readable frame_NNN.png files)")
    return shots, missing


def _decodes(path: Path) -> bool:
    """Whether ``path`` is an image whose every pixel decodes (a truncated PNG does not)."""
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def plan_timeline(
    durations: list[float], fps: float, transition: str = "cut", crossfade: float = 0.5, motion: bool = False,
    joined: frozenset[int] = frozenset(), blend_fps: int = BLEND_FPS,
) -> Timeline:
    """Every output frame as (shot a, shot b, weight of b). Pure: no files, no ffmpeg.

    Shot boundaries are placed at the output frame nearest to their exact time, so each shot's
    on-screen time is exact to within one output frame, the last shot included. ``motion``
    (a Ken Burns zoom) needs a film rate, so it runs at ``blend_fps`` (24) like a crossfade.
    ``joined``: positions k after which shot k + 1 continues the same run (learned in-betweens):
    no crossfade there.
    """
    if transition not in TRANSITIONS:
        raise FramereelError(f'--transition {transition}: choose one of {", ".join(TRANSITIONS)}')
    if not (math.isfinite(fps) and fps > 0):
        raise FramereelError("--fps must be a number greater than 0")
    seconds = sum(durations) + (len(durations) - 1) * crossfade * (transition == "crossfade")
    if not seconds <= MAX_VIDEO_SECONDS:
        raise FramereelError(f"the video would last {seconds / 3600:.1f} hours; framereel writes at most "
                             f"{MAX_VIDEO_SECONDS / 3600:g} hours: shorten the frames' durations")
    uniform_multiples = all(abs(d * fps - round(d * fps)) < 1e-6 and round(d * fps) >= 1 for d in durations)
    if transition == "crossfade" and not (math.isfinite(crossfade) and crossfade > 0):
        raise FramereelError("--crossfade must be a number of seconds greater than 0")
    if transition == "crossfade" or motion:
        rate = Fraction(blend_fps)
    elif uniform_multiples:
        rate = Fraction(fps).limit_denominator(1000)
    elif len(set(durations)) == 1 and 1 <= 1 / durations[0] <= 240:
        rate = Fraction(1 / durations[0]).limit_denominator(1000)  # every frame 1/15 s: a 15 fps film
    else:
        rate = Fraction(blend_fps)
    out: list[tuple[int, int, float]] = []
    t = 0.0
    n = len(durations)
    for k, d in enumerate(durations):
        hold_end = t + d
        out.extend((k, k, 0.0) for _ in range(_frames_until(hold_end, rate) - len(out)))
        t = hold_end
        if transition == "crossfade" and k < n - 1 and k not in joined:
            fade_end = t + crossfade
            count = _frames_until(fade_end, rate) - len(out)
            out.extend((k, k + 1, (j + 1) / (count + 1)) for j in range(count))
            t = fade_end
    return Timeline(rate, tuple(out))


def _frames_until(seconds: float, rate: Fraction) -> int:
    return int(math.floor(seconds * float(rate) + 0.5))


def video_size(first: Image.Image, size: str | None) -> tuple[int, int]:
    """The output size: ``--size WxH``, else the first frame's size scaled up by a whole factor
    until its short side is at least 256 pixels. Always even (yuv420p needs it)."""
    if size:
        return parse_size(size)
    w, h = first.size
    factor = max(1, math.ceil(MIN_SHORT_SIDE / min(w, h)))
    return (w * factor) // 2 * 2, (h * factor) // 2 * 2


def ffmpeg_command(
    ffmpeg: str,
    size: tuple[int, int],
    rate: Fraction,
    output: Path,
    fmt: str,
    *,
    crf: int = DEFAULT_CRF,
    codec: str | None = None,
    smooth_fps: int | None = None,
    seconds: float | None = None,
    audio: Path | None = None,
    audio_loop: bool = False,
) -> list[str]:
    """The ffmpeg argument list that reads raw RGB frames on stdin and writes ``output`` as ``fmt``.

    ``seconds`` trims the output; ``audio`` is muxed in, cut to ``seconds`` with a short fade-out
    (``audio_loop`` repeats it to fill the video).
    """
    w, h = size
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(rate), "-i", "-"]
    if audio is not None:
        cmd += (["-stream_loop", "-1"] if audio_loop else []) + ["-i", str(audio), "-map", "0:v", "-map", "1:a"]
    if seconds is not None:
        cmd += ["-t", f"{seconds:.6f}"]
    filters = []
    if smooth_fps:
        filters.append(f"minterpolate=fps={smooth_fps}:mi_mode=mci")
    if fmt == ".gif":
        chain = ",".join(filters + ["split[a][b]"])
        cmd += ["-filter_complex", f"[0:v]{chain};[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=4",
                "-loop", "0", "-f", "gif"]
    else:
        if filters:
            cmd += ["-vf", ",".join(filters)]
        if fmt in (".mp4", ".mov"):
            cmd += ["-c:v", codec or "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf),
                    "-movflags", "+faststart", "-f", "mp4" if fmt == ".mp4" else "mov"]
        elif fmt == ".webm":
            cmd += ["-c:v", codec or "libvpx-vp9", "-pix_fmt", "yuv420p", "-crf", str(crf), "-b:v", "0",
                    "-row-mt", "1", "-deadline", "good", "-cpu-used", "4", "-f", "webm"]
        elif fmt == ".webp":
            cmd += ["-c:v", codec or "libwebp", "-quality", "90", "-loop", "0", "-f", "webp"]
    if audio is not None:
        fade = min(AUDIO_FADE, (seconds or AUDIO_FADE) / 4)
        cmd += ["-af", f"afade=t=out:st={max(0.0, (seconds or 0) - fade):.3f}:d={fade:.3f}",
                "-c:a", "libopus" if fmt == ".webm" else "aac", "-b:a", "160k"]
    return cmd + [str(output)]


def stitch(
    out_dir: str | Path,
    settings: StitchSettings | str | Path | None = None,
    *,
    on_event: EventHandler | None = None,
    **changes: Any,
) -> Path:
    """Build a video from the frames in ``out_dir/frames``; returns the video's path.

    ``settings`` is a :class:`~framereel.settings.StitchSettings` (or just the video's path);
    keyword arguments change single fields: ``stitch("out", fps=4, transition="crossfade")``.
    The video defaults to ``out_dir/video.mp4``; its extension picks the format (.mp4, .mov,
    .webm, .gif, .webp). ``fps`` paces frames without their own duration (default: the last
    stitch's, else 2). ``zoom`` pushes in on each still by that fraction (Ken Burns, 0.1 =
    10 %). ``audio`` muxes a soundtrack cut to the video with a fade-out (``audio_loop`` repeats
    it). Missing frames are skipped with a warning event. ``upscale`` (``"MODEL[:SCALE]"`` or an
    :class:`~framereel.finishing.upscale.UpscaleSpec`) encodes upscaled frames from ``out/upscaled/``
    (tiles: ``upscale_tile``, ``upscale_overlap``); ``interpolate`` (``"MODEL[:FACTOR|FPSfps]"``)
    adds learned in-betweens inside continuous runs (across the loop seam too with ``loop``), on
    ``finish_device``; see :mod:`framereel.finishing`.
    """
    if not isinstance(settings, StitchSettings):
        settings = StitchSettings(video=settings)
    s = replace(settings, **changes)
    out = Path(out_dir)
    emit = on_event or ignore
    ffmpeg = find_ffmpeg()
    fmt = _check_settings(out, s, ffmpeg)
    with folder_lock(out, create=False):
        manifest = Manifest.load(out, on_warning=lambda m: emit(Warning(m))) \
            if (out / MANIFEST).exists() else None
        last = (manifest.run.get("video") or {}) if manifest else {}
        fps = s.fps or last.get("fps") or DEFAULT_FPS
        target = Path(s.video) if s.video else out / "video.mp4"
        shots = _shots_to_stitch(out, fps, s.frames, manifest, emit)
        joined, rate, blend = frozenset(), fps, BLEND_FPS
        if s.upscale is not None or s.interpolate is not None:
            from .finishing.stitching import finish_shots

            shots, joined, rate, blend = finish_shots(out, manifest, shots, fps, s, on_event=emit)
        timeline = plan_timeline([shot.duration for shot in shots], rate, s.transition, s.crossfade,
                                 motion=s.zoom > 0, joined=joined, blend_fps=blend)
        dims = _frame_dims(shots, s.size, emit)
        _encode(ffmpeg, fmt, shots, timeline, dims, target, s, emit)
        if manifest is not None:
            _record_video(manifest, out, target, fps, timeline, s)
    emit(VideoWritten(str(target), round(timeline.seconds, 3), len(shots), f"{dims[0]}x{dims[1]}"))
    return target


def _check_settings(out: Path, s: StitchSettings, ffmpeg: str) -> str:
    """The video's format (its extension) once ``s`` and the folder ``out`` are checked."""
    fmt = s.check(out, ffmpeg)
    if not out.is_dir():
        raise FramereelError(f"{out}: no such folder, so no frames/ folder to stitch; render first with `framereel frames` or `framereel make`")
    return fmt


def _shots_to_stitch(out: Path, fps: float, frames: str | None, manifest: Manifest | None,
                     emit: EventHandler) -> list[Shot]:
    """:func:`collect_shots`, with a warning event for frames that do not decode and for missing ones."""
    unreadable: list[int] = []
    shots, missing = collect_shots(out, fps, frames, manifest.frames if manifest else {}, unreadable)
    if unreadable:
        emit(Warning(f"frames that do not decode as images, stitched without them: "
                     f"{format_indices(sorted(unreadable))} (render them again with --redo)"))
    missing = [i for i in missing if i not in unreadable]
    if missing:
        emit(Warning(f"frames missing, stitched without them: {format_indices(missing)}"))
    return shots


def _frame_dims(shots: list[Shot], size: str | None, emit: EventHandler) -> tuple[int, int]:
    """The video's size (see :func:`video_size`), with a warning event for frames of another size."""
    with Image.open(shots[0].path) as first:
        dims = video_size(first, size)
        first_size = first.size
    odd = _odd_sizes(shots, first_size)
    if odd:
        emit(Warning(
            f"frames {format_indices(sorted(odd))} are not {first_size[0]}x{first_size[1]} like frame {shots[0].index} "
            f"(e.g. frame {min(odd)} is {odd[min(odd)][0]}x{odd[min(odd)][1]}); fitted inside the video "
            "without stretching, with dark bars"))
    return dims


def _encode(ffmpeg: str, fmt: str, shots: list[Shot], timeline: Timeline, dims: tuple[int, int], target: Path,
            s: StitchSettings, emit: EventHandler) -> None:
    """Encode ``timeline`` into a temp file next to ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temp_videos(target)
    tmp = target.with_name(f"{target.name}{TMP_MARK}{os.getpid()}")
    cmd = ffmpeg_command(ffmpeg, dims, timeline.rate, tmp, fmt, crf=s.crf, codec=s.codec,
                         smooth_fps=s.smooth_fps if s.transition == "smooth" else None,
                         seconds=timeline.seconds, audio=Path(s.audio) if s.audio is not None else None,
                         audio_loop=s.audio_loop)
    feed = timeline
    if s.transition == "smooth":
        # minterpolate looks ahead two frames: extra copies of the last one fill its time; -t trims them
        feed = Timeline(timeline.rate, timeline.frames + timeline.frames[-1:] * 3)
    try:
        _run_ffmpeg(cmd, shots, feed, dims, s.zoom, emit, target)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise FramereelError(f"ffmpeg exited without writing {target.name}; nothing was changed")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _record_video(manifest: Manifest, out: Path, target: Path, fps: float, timeline: Timeline,
                  s: StitchSettings) -> None:
    """Save how the video was made in ``run.json`` (its ``fps`` is the next stitch's default)."""
    manifest.run["video"] = {"path": os.path.relpath(target, out), "fps": fps, "transition": s.transition,
                             "seconds": round(timeline.seconds, 3), "zoom": s.zoom,
                             "audio": str(Path(s.audio)) if s.audio is not None else None}
    if s.upscale is not None or s.interpolate is not None or s.loop:
        from .finishing.stitching import options_used

        manifest.run["video"].update(options_used(s.upscale, s.interpolate, s.loop))
    manifest.save()


def _odd_sizes(shots: list[Shot], size: tuple[int, int]) -> dict[int, tuple[int, int]]:
    """Frames whose pixel size differs from ``size`` (read from the PNG headers only)."""
    odd = {}
    for s in shots:
        with Image.open(s.path) as im:
            if im.size != size:
                odd[s.index] = im.size
    return odd


def _remove_dead_temp_videos(target: Path) -> None:
    """Temp files a killed stitch left next to ``target`` (their process is gone)."""
    for p in target.parent.glob(f"{target.name}{TMP_MARK}*"):
        pid = p.name.rsplit(TMP_MARK, 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fit_image(im: Image.Image, dims: tuple[int, int]) -> Image.Image:
    """``im`` scaled to ``dims``; when its shape differs, scaled to fit inside without stretching,
    centred on a black background."""
    if im.size == dims:
        return im
    w, h = im.size
    if abs(w * dims[1] - h * dims[0]) <= max(dims):  # same shape, to within a pixel
        return im.resize(dims, Image.Resampling.LANCZOS)
    scale = min(dims[0] / w, dims[1] / h)
    fitted = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", dims, (0, 0, 0))
    canvas.paste(fitted, ((dims[0] - fitted.width) // 2, (dims[1] - fitted.height) // 2))
    return canvas


def _load_image(path: Path, dims: tuple[int, int]) -> Image.Image:
    with Image.open(path) as im:
        return fit_image(im.convert("RGB"), dims)


def ken_burns(image: Image.Image, progress: float, zoom: float, direction: int) -> Image.Image:
    """``image`` pushed in by ``zoom * progress`` with a slow sideways drift (``direction`` ±1)."""
    w, h = image.size
    scale = 1 + zoom * progress
    cw, ch = w / scale, h / scale
    cx = w / 2 + direction * (w - cw) / 2 * progress
    box = (cx - cw / 2, h / 2 - ch / 2, cx + cw / 2, h / 2 + ch / 2)
    return image.resize(image.size, Image.Resampling.BICUBIC, box=box)


def _shot_spans(timeline: Timeline) -> dict[int, tuple[int, int]]:
    """First and last output frame on which each shot is visible."""
    spans: dict[int, tuple[int, int]] = {}
    for n, (a, b, w) in enumerate(timeline.frames):
        for k in (a, b) if w else (a,):
            first, _ = spans.get(k, (n, n))
            spans[k] = (first, n)
    return spans


def _run_ffmpeg(cmd: list[str], shots: list[Shot], timeline: Timeline, dims: tuple[int, int], zoom: float,
                emit, target: Path) -> None:
    spans = _shot_spans(timeline)

    def pixels(k: int, n: int) -> np.ndarray:
        if k not in cache:
            cache[k] = _load_image(shots[k].path, dims)
        image = cache[k]
        if zoom:
            first, last = spans[k]
            image = ken_burns(image, (n - first) / max(1, last - first), zoom, 1 if shots[k].index % 2 else -1)
        return np.asarray(image, dtype=np.float32)

    with tempfile.TemporaryFile() as errlog:
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errlog)
        except OSError as err:
            raise FramereelError(f"{cmd[0]}: cannot run ffmpeg ({err.strerror or err}); install it "
                                 "(apt install ffmpeg) or `pip install imageio-ffmpeg`") from None
        cache: dict[int, Image.Image] = {}
        total = len(timeline.frames)
        try:
            for n, (a, b, w) in enumerate(timeline.frames):
                for k in [k for k in cache if k < a]:
                    del cache[k]
                frame = pixels(a, n) if w == 0 else pixels(a, n) * (1 - w) + pixels(b, n) * w
                proc.stdin.write(np.clip(frame + 0.5, 0, 255).astype(np.uint8).tobytes())
                if n % 12 == 0 or n == total - 1:
                    emit(Encoding(n + 1, total))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        if code != 0:
            errlog.seek(0)
            text = errlog.read().decode("utf-8", "replace")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if "No space left on device" in text:
                raise disk_full_error(target.parent, "the video", _estimate_video_bytes(timeline, dims))
            if code < 0:
                raise FramereelError(f"ffmpeg was killed (signal {-code}) while encoding; {target.name} was not "
                                     "changed — run stitch again")
            last = lines[-1] if lines else "no message"
            raise FramereelError(f"ffmpeg failed (exit {code}): {last}")


def _estimate_video_bytes(timeline: Timeline, dims: tuple[int, int]) -> int:
    """A generous guess at an H.264 video's size: 0.2 bits per pixel per frame."""
    return int(len(timeline.frames) * dims[0] * dims[1] * 0.2 / 8) + 1_000_000
