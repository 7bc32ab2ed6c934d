"""Cuts on the beat: librosa beat tracking → a storyboard whose every cut lands on a beat.

``find_beats`` decodes the song with ffmpeg (any format it reads) and tracks beats with
librosa, following tempo changes (a time-varying tempo estimate guides the tracker), with a fine
hop (≈ 6 ms) so each beat sits within a few milliseconds of its onset. ``--bpm`` replaces
detection with a fixed grid starting at the first onset.

``fit_to_beats`` gives each storyboard entry a whole number of beats (``every`` beats, or its own
``duration`` rounded to a multiple of ``every``), so entry k starts — the cut, or the moment a
morph reaches the next key frame — exactly on a beat. An entry with ``"morph"`` gets as many
in-betweens as its span holds at ``fps`` (each shown ``1/fps``), and its key frame the rest, so
the video must be stitched at that ``--fps``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FramereelError
from ..manifest import atomic_write_bytes

SAMPLE_RATE = 22050
HOP = 128  # ≈ 5.8 ms at 22.05 kHz
MIN_BEATS = 4
MIN_SALIENCE = 1.6  # beats' onsets vs the mean onset: noise ≈ 1.3, clicks in noise ≈ 5


@dataclass(frozen=True)
class BeatGrid:
    times: tuple[float, ...]  # seconds
    bpm: float  # median tempo
    source: str  # "detected" or "--bpm"
    seconds: float  # the song's length

    def period_at(self, j: int) -> float:
        """Seconds between beat j and the next (the last interval past the end)."""
        t = self.times
        if len(t) < 2:
            return 60.0 / self.bpm
        j = min(max(j, 0), len(t) - 2)
        return t[j + 1] - t[j]

    def at(self, j: int) -> float:
        """Beat j's time, extended past the song's end at the last interval."""
        if j < len(self.times):
            return self.times[j]
        last = len(self.times) - 1
        return self.times[last] + (j - last) * self.period_at(last)


def decode_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The song as mono float32 samples, decoded by ffmpeg."""
    from ..ffmpeg import find_ffmpeg

    if not path.is_file():
        raise FramereelError(f"{path}: no such audio file")
    cmd = [find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(path),
           "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        why = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["no audio stream"])[-1]
        raise FramereelError(f"{path}: cannot decode it as audio ({why})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def find_beats(path: str | Path, bpm: float | None = None) -> BeatGrid:
    """Beat times of the song at ``path``; with ``bpm``, a fixed grid from its first onset."""
    from .common import require

    librosa = require("librosa", "beat tracking")

    path = Path(path)
    y = decode_audio(path)
    seconds = len(y) / SAMPLE_RATE
    onset = librosa.onset.onset_strength(y=y, sr=SAMPLE_RATE, hop_length=HOP)
    if bpm is not None:
        if not 20 <= bpm <= 400:
            raise FramereelError(f"--bpm {bpm}: give a tempo from 20 to 400 beats per minute")
        onsets = librosa.onset.onset_detect(onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP, units="time")
        start = float(onsets[0]) if len(onsets) else 0.0
        times = tuple(float(t) for t in np.arange(start, seconds, 60.0 / bpm))
        return BeatGrid(times, float(bpm), "--bpm", seconds)
    if not np.any(onset > 0):
        raise FramereelError(f"{path}: no beat found (silent?); give the tempo with --bpm, e.g. --bpm 120")
    tempo = librosa.feature.tempo(onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP, aggregate=None)
    _, frames = librosa.beat.beat_track(onset_envelope=onset, sr=SAMPLE_RATE, hop_length=HOP, bpm=tempo)
    beats = librosa.frames_to_time(frames, sr=SAMPLE_RATE, hop_length=HOP)
    if len(beats) < MIN_BEATS or not _regular(beats) or _salience(onset, frames) < MIN_SALIENCE:
        raise FramereelError(f"{path}: no steady beat found; give the tempo with --bpm, e.g. --bpm 120")
    times = tuple(float(t) for t in beats)
    return BeatGrid(times, float(60.0 / np.median(np.diff(beats))), "detected", seconds)


def _salience(onset: np.ndarray, frames: np.ndarray) -> float:
    """How much stronger the onsets at the beats are than the average onset (≈ 1.3 for noise)."""
    near = [onset[max(0, i - 3):i + 4].max() for i in frames]
    return float(np.median(near) / (np.mean(onset) + 1e-9))


def _regular(beats: np.ndarray) -> bool:
    """Beats a person would tap along to: intervals that change gradually, not at random."""
    gaps = np.diff(beats)
    if len(gaps) < MIN_BEATS - 1:
        return False
    change = np.abs(np.diff(gaps)) / gaps[1:]
    return float(np.median(change)) < 0.15


# ------------------------------------------------------------------ fitting a storyboard


def _raw_entries(path: Path) -> tuple[Any, list[dict[str, Any]], Any]:
    """The storyboard as written (list or object), its list of entries as dicts, and the storyboard
    as loaded (its frames say which entries are clips)."""
    from ..loader import contents, load_storyboard

    board = load_storyboard(path)  # validates, with the usual one-line errors
    data = contents(path, path.read_text(encoding="utf-8").removeprefix("\ufeff"))
    entries = data if isinstance(data, list) else data["frames"]
    entries = [{"prompt": e} if isinstance(e, str) else e for e in entries]
    for e in [*entries, data.get("defaults", {}) if isinstance(data, dict) else {}]:
        if isinstance(e.get("init_video"), str):  # the timed copy may be written to another folder
            e["init_video"] = str((path.parent / Path(e["init_video"]).expanduser()).resolve())
    if isinstance(data, list):
        return entries, entries, board
    data["frames"] = entries
    return data, entries, board


def _shots(board: Any, count: int, fps: float) -> list[tuple[list[int], int, float]]:
    """The storyboard's shots: (its entries, its clip's frame count or 0, the clip's own length in
    seconds). An entry is a shot, except that the entries of one clip (a ``clip_group``) are one."""
    clips: dict[int, list[Any]] = {}
    for f in board.frames:
        if f.kind == "clip":
            clips.setdefault(f.clip.id, []).append(f)
    in_clip = {f.shot: first for first, frames in clips.items() for f in frames}
    shots = []
    for k in range(count):
        if k not in in_clip:
            shots.append(([k], 0, 0.0))
        elif in_clip[k] == k:  # a clip's frames play at their own duration, else at --fps
            frames = clips[k]
            shots.append((sorted({f.shot for f in frames}), len(frames), sum(f.duration or 1 / fps for f in frames)))
    return shots


def fit_to_beats(
    path: str | Path, grid: BeatGrid, every: int = 1, fps: float = 8.0
) -> tuple[Any, list[dict[str, Any]]]:
    """The storyboard at ``path`` retimed to ``grid``, and the timing report (one row per shot).

    Shot k starts on beat ``j_k`` (shot 0 at 0 s; its first cut on beat ``every``); an entry
    with its own ``duration`` keeps about that length in whole multiples of ``every`` beats. A
    clip is one shot: it lasts the whole multiple of ``every`` beats nearest its length at its
    frames' pace (``--fps``), and its frames share that span evenly, so the cut after it is on
    a beat too.
    """
    if every < 1:
        raise FramereelError("--every must be 1 or more beats")
    if fps <= 0:
        raise FramereelError("--fps must be greater than 0")
    path = Path(path)
    doc, entries, board = _raw_entries(path)
    defaults = doc.get("defaults", {}) if isinstance(doc, dict) else {}
    defaults.pop("duration", None)  # every entry gets its own; morph in-betweens stay at 1/--fps
    prompts: dict[int, str] = {}
    for f in board.frames:
        prompts.setdefault(f.shot, f.prompt)  # an entry's own, or its clip's first travel prompt
    report = []
    start, j = 0.0, 0
    for group, clip_frames, clip_seconds in _shots(board, len(entries), fps):
        k = group[0]
        entry = entries[k]
        beats = every
        length = clip_seconds if clip_frames else entry.get("duration")
        if length is not None:
            beats = max(1, round(length / grid.period_at(j) / every)) * every
        j += beats
        end = grid.at(j)
        span = end - start
        row: dict[str, Any] = {"entry": k, "prompt": prompts.get(k, ""), "start": round(start, 4)}
        morph = entry.get("morph", defaults.get("morph"))
        if clip_frames:  # a clip entry's duration is each of its frames'
            for i in group:
                entries[i]["duration"] = round(span / clip_frames, 6)
            row["clip"] = clip_frames
        elif morph and k < len(entries) - 1:
            count = max(0, round(span * fps) - 1)  # the key frame keeps at least half a frame
            entry["morph"] = count
            entry["duration"] = round(span - count / fps, 6)
            row["morph"] = count
        else:
            entry["duration"] = round(span, 6)
        row.update(duration=entry["duration"], end_beat=j, end=round(end, 4), beyond_song=end > grid.seconds + 1e-6)
        report.append(row)
        start = end
    return doc, report


def cut_report(report: list[dict[str, Any]], grid: BeatGrid) -> list[dict[str, Any]]:
    """Each cut (the start of every entry but the first): its time and the beat it sits on."""
    cuts = []
    for prev, row in zip(report, report[1:]):
        j = prev["end_beat"]
        cuts.append({"cut": row["entry"], "time": row["start"], "beat": j + 1, "beat_time": round(grid.at(j), 4),
                     "prompt": row["prompt"]})
    return cuts


def format_report(report: list[dict[str, Any]], grid: BeatGrid, fps: float) -> list[str]:
    """The timing report as lines for a person."""
    lines = [f"{len(grid.times)} beats, about {grid.bpm:.1f} BPM ({grid.source}); song {grid.seconds:.2f}s; "
             f"in-betweens at {fps:g} fps"]
    for c in cut_report(report, grid):
        lines.append(f"  cut {c['cut']:>3} at {c['time']:8.3f}s  on beat {c['beat']:>4} ({c['beat_time']:.3f}s)  "
                     f"{c['prompt'][:50]}")
    end = report[-1]["end"] if report else 0.0
    lines.append(f"  end     at {end:8.3f}s")
    if report and report[-1]["beyond_song"]:
        lines.append(f"  warning: the film ({end:.2f}s) is longer than the song ({grid.seconds:.2f}s); "
                     "its last beats are extrapolated")
    return lines


def time_storyboard(
    song: str | Path,
    storyboard: str | Path,
    out: str | Path | None = None,
    *,
    every: int = 1,
    fps: float = 8.0,
    bpm: float | None = None,
) -> tuple[Path | None, BeatGrid, list[dict[str, Any]]]:
    """``framereel beats``: write the beat-timed storyboard to ``out`` (if given, atomically) and
    return (path, beat grid, report rows)."""
    text, grid, report = timed_text(song, storyboard, out, every=every, fps=fps, bpm=bpm)
    target = None
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, text.encode("utf-8"))
    return target, grid, report


def timed_text(
    song: str | Path,
    storyboard: str | Path,
    out: str | Path | None = None,
    *,
    every: int = 1,
    fps: float = 8.0,
    bpm: float | None = None,
) -> tuple[str, BeatGrid, list[dict[str, Any]]]:
    """:func:`time_storyboard` without writing: the timed storyboard's text (as it would be written
    to ``out``, which must not be the song or the storyboard), the beat grid and the report rows."""
    if every not in (1, 2, 4, 8):
        raise FramereelError(f"--every {every}: cut every 1, 2, 4 or 8 beats")
    for name, given in (("storyboard", storyboard), ("song", song)):
        if out is not None and same_file(Path(out), Path(given)):
            raise FramereelError(f"{out}: that is the {name} being timed; write the timed storyboard to another "
                                 "file (-o timed.json)")
    grid = find_beats(song, bpm)
    doc, report = fit_to_beats(storyboard, grid, every, fps)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n", grid, report


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (a link or another spelling included)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False
