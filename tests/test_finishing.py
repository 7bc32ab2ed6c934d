"""Finishing stages: upscaling, learned in-betweens inside continuous runs, cuts on the beat.

The models are tiny random-weight networks in the layouts users' files have (a Real-ESRGAN
``RRDBNet`` state dict that spandrel detects, a Practical-RIFE ``flownet.pkl``), saved to files
and passed through the same options users pass. Output folders are built from PNGs and a
``run.json`` of the shape ``render()`` writes, except for one end-to-end ``make`` run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, probe_video, write_storyboard
from finishing_models import build_esrgan, build_rife
from PIL import Image

from framereel.errors import FramereelError
from framereel.finishing.beats import BeatGrid, cut_report, find_beats, fit_to_beats, time_storyboard
from framereel.finishing.interpolate import INTERPOLATED_DIR, parse_interpolate
from framereel.finishing.upscale import UPSCALED_DIR, parse_upscale, upscale
from framereel.loader import load_storyboard
from framereel.manifest import Manifest, atomic_write_json
from framereel.video import plan_timeline, stitch

COLOURS = [(230, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 30), (200, 40, 200), (30, 210, 210),
           (250, 140, 20), (120, 120, 120)]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("finishing-models")
    return {"x4": build_esrgan(d / "RealESRGAN_x4-tiny.pth", scale=4),
            "x2": build_esrgan(d / "RealESRGAN_x2-tiny.pth", scale=2, seed=1),
            "rife": build_rife(d / "flownet.pkl"),
            "rife46": build_rife(d / "rife46.pkl", head=None, feature_channels=1, widths=(24, 16, 8, 8))}


def make_folder(out: Path, records: list[dict], size=(40, 24), solid: bool = False) -> Path:
    """An output folder as render() leaves it: frames/frame_NNN.png and run.json's frame records."""
    (out / "frames").mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = []
    for i, rec in enumerate(records):
        if solid:
            arr = np.full((size[1], size[0], 3), COLOURS[i % len(COLOURS)], np.uint8)
        else:
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(out / "frames" / f"frame_{i:03d}.png")
        frames.append({"index": i, "file": f"frames/frame_{i:03d}.png", "status": "done", "duration": None,
                       "kind": "key", **rec})
    atomic_write_json(out / "run.json", {"framereel": "test", "frames": frames})
    return out


def morph(a: int, b: int) -> dict:
    return {"kind": "morph", "derived_from": {"morph": [a, b], "t": 0.5}}


def chain(parent: int) -> dict:
    return {"kind": "chain", "derived_from": {"parent": parent, "strength": 0.5}}


# A film: key 0 morphs through 1, 2 into key 3 | cut | key 4, chained 5 | cut | key 6.
FILM = [{}, morph(0, 3), morph(0, 3), {}, {}, chain(4), {}]


def stage_done(events: list, stage: str) -> dict:
    """The ``stage_done`` event of ``stage`` as its JSON dict (from event objects or ``--json`` lines)."""
    docs = [e if isinstance(e, dict) else e.to_json() for e in events]
    return next(d for d in docs if d["event"] == "stage_done" and d["stage"] == stage)


# ------------------------------------------------------------------ upscaling


def test_upscale_sizes_cache_and_run_json(tmp_path, models):
    out = make_folder(tmp_path / "out", [{}, {}, {}])
    events: list = []
    done = upscale(out, parse_upscale(str(models["x4"]), tile=16, overlap=8), on_event=events.append)
    assert sorted(done) == [0, 1, 2]
    for path in done.values():
        with Image.open(path) as im:
            assert im.size == (160, 96)
    assert stage_done(events, "upscale")["computed"] == 3
    record = Manifest.load(out).run["finishing"]["upscale"]
    assert record["architecture"] == "ESRGAN" and record["model"] == str(models["x4"])
    assert record["frames"]["1"]["file"] == f"{UPSCALED_DIR}/frame_001.png" and len(record["frames"]["1"]["hash"]) == 16

    # a rerun computes nothing and does not touch the files; a changed frame is the only one redone
    mtimes = {i: p.stat().st_mtime_ns for i, p in done.items()}
    events.clear()
    upscale(out, parse_upscale(str(models["x4"]), tile=16, overlap=8), on_event=events.append)
    assert stage_done(events, "upscale")["computed"] == 0
    assert {i: p.stat().st_mtime_ns for i, p in done.items()} == mtimes
    Image.new("RGB", (40, 24), (9, 9, 9)).save(out / "frames" / "frame_001.png")
    events.clear()
    upscale(out, parse_upscale(str(models["x4"]), tile=16, overlap=8), on_event=events.append)
    assert stage_done(events, "upscale")["computed"] == 1
    assert done[0].stat().st_mtime_ns == mtimes[0]

    # :SCALE resizes the model's result; other tile settings are another cache entry
    events.clear()
    done = upscale(out, parse_upscale(f"{models['x4']}:2", tile=16, overlap=8), on_event=events.append)
    with Image.open(done[0]) as im:
        assert im.size == (80, 48)
    assert stage_done(events, "upscale")["computed"] == 3


def test_tiles_meet_without_seams(tmp_path, models):
    """Tiled output equals the whole-frame output once the overlap covers the receptive field."""
    out = make_folder(tmp_path / "out", [{}], size=(56, 40))
    whole = np.asarray(Image.open(upscale(out, parse_upscale(str(models["x2"]), tile=0))[0]), dtype=np.int16)
    tiled = np.asarray(Image.open(upscale(out, parse_upscale(str(models["x2"]), tile=16, overlap=24))[0]),
                       dtype=np.int16)
    assert tiled.shape == whole.shape == (80, 112, 3)
    assert np.abs(tiled - whole).max() <= 1
    no_overlap = np.asarray(Image.open(upscale(out, parse_upscale(str(models["x2"]), tile=16, overlap=0))[0]),
                            dtype=np.int16)
    assert np.abs(no_overlap - whole).max() > 1  # without context the seams show: the check above means something


def test_upscale_errors_are_one_line(tmp_path, models):
    import torch

    out = make_folder(tmp_path / "out", [{}])
    junk = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 4)}, junk)
    proc = cli("upscale", out, junk)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and "mystery.pth" in line and "ESRGAN" in line and "SwinIR" in line
    with pytest.raises(FramereelError, match="missing.pth"):
        stitch(out, upscale=str(tmp_path / "missing.pth"))


def test_kill_during_upscaling_loses_nothing(tmp_path):
    """kill -9 in the middle of the stage: every finished file decodes and is reused on resume."""
    model = build_esrgan(tmp_path / "slow_x4.pth", nf=32, blocks=2)
    out = make_folder(tmp_path / "out", [{}] * 6, size=(64, 64))
    cmd = [sys.executable, "-m", "framereel", "upscale", str(out), str(model), "--device", "cpu", "-q"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    folder = out / UPSCALED_DIR
    deadline = time.time() + 120
    while time.time() < deadline and len(list(folder.glob("frame_*.png"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(folder.glob("frame_*.png"))
    assert 2 <= len(finished) < 6, "the stage should have been killed part-way"
    for p in finished:
        with Image.open(p) as im:
            im.load()
    events: list = []
    upscale(out, parse_upscale(str(model)), device="cpu", on_event=events.append)
    done = stage_done(events, "upscale")
    assert done["cached"] == len(finished) and done["computed"] == 6 - len(finished)
    assert not [p for p in (out / UPSCALED_DIR).iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------ in-betweens


def test_inbetweens_only_inside_runs(tmp_path, models):
    out = make_folder(tmp_path / "out", FILM, solid=True)
    events: list = []
    video = stitch(out, fps=4, interpolate=parse_interpolate(str(models["rife"])), on_event=events.append)
    made = sorted(p.name for p in (out / INTERPOLATED_DIR).glob("*.png"))
    # morph run 0-1-2-3 and chain 4-5 get one in-between per pair; 3|4 and 5|6 are cuts; no loop seam
    assert made == ["frame_000_001_1of2.png", "frame_001_002_1of2.png", "frame_002_003_1of2.png",
                    "frame_004_005_1of2.png"]
    facts = probe_video(video)
    assert facts["rate"] == 8 and facts["frames"] == 7 * 2  # same length: 7 frames × 1/4 s at 8 fps

    # every video frame is one of the frames or an in-between of a continuous pair: none across a cut
    def label(px: np.ndarray) -> int | None:
        mean = px.reshape(-1, 3).mean(0)
        dist = [np.abs(mean - np.array(c)).max() for c in COLOURS[:7]]
        return int(np.argmin(dist)) if min(dist) < 12 else None

    labels = [label(px) for px in facts["pixels"]]
    assert labels[6] == 3 and labels[7] == 3 and labels[8] == 4  # 3 keeps its full hold, then the cut
    assert labels[11] == 5 and labels[12] == 6

    record = Manifest.load(out).run["finishing"]["interpolate"]
    assert {tuple(r["between"]) for r in record["frames"].values()} == {(0, 1), (1, 2), (2, 3), (4, 5)}

    # a rerun makes no model calls; --loop adds the seam 6 → 0 and nothing else
    events.clear()
    stitch(out, fps=4, interpolate=parse_interpolate(str(models["rife"])), on_event=events.append)
    assert stage_done(events, "interpolate")["model_calls"] == 0
    events.clear()
    stitch(out, fps=4, interpolate=parse_interpolate(str(models["rife"])), loop=True, on_event=events.append)
    assert stage_done(events, "interpolate")["computed"] == 1
    assert (out / INTERPOLATED_DIR / "frame_006_000_1of2.png").exists()


def test_inbetweens_at_a_target_rate_with_crossfades_between_runs(tmp_path, models):
    out = make_folder(tmp_path / "out", [{}, morph(0, 2), {}, {}], size=(32, 32), solid=True)
    video = stitch(out, fps=4, interpolate=parse_interpolate(f"{models['rife46']}:12fps"),
                   transition="crossfade", crossfade=0.25)
    made = sorted(p.name for p in (out / INTERPOLATED_DIR).glob("*.png"))
    assert made == ["frame_000_001_1of3.png", "frame_000_001_2of3.png", "frame_001_002_1of3.png",
                    "frame_001_002_2of3.png"]
    facts = probe_video(video)
    # 4 frames × 1/4 s, one crossfade (2|3) of 1/4 s; in-betweens replace the crossfades inside the run
    assert facts["rate"] == 24 and facts["frames"] == round((4 * 0.25 + 0.25) * 24)


def test_bad_interpolation_model_is_one_line(tmp_path, models):
    out = make_folder(tmp_path / "out", FILM[:3])
    proc = cli("stitch", out, "--interpolate", models["x4"])
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and models["x4"].name in line and "RIFE" in line
    with pytest.raises(FramereelError, match="factor from 2 to 16"):
        parse_interpolate(f"{models['rife']}:1")


# ------------------------------------------------------------------ beats


def write_clicks(path: Path, times: list[float], seconds: float, sr: int = 22050) -> Path:
    y = np.zeros(int(seconds * sr), np.float32)
    n = np.arange(int(0.02 * sr))
    click = (np.sin(2 * np.pi * 1500 * n / sr) * np.exp(-n / (0.004 * sr))).astype(np.float32)
    for t in times:
        i = int(round(t * sr))
        y[i:i + len(click)] += click[: len(y) - i]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


STORYBOARD = [{"prompt": "a red circle", "morph": 3}, {"prompt": "a blue square"}, {"prompt": "a green star"},
              {"prompt": "a white circle", "duration": 1.1}, {"prompt": "a black square", "morph": 2},
              {"prompt": "a red star"}, {"prompt": "a blue circle"}, {"prompt": "a yellow star"}]


def cut_times(timed: Path, fps: float) -> tuple[list[float], float]:
    """When each storyboard entry's first frame appears in the stitched video (through the real timeline)."""
    board = load_storyboard(timed)
    frames = board.frames
    timeline = plan_timeline([f.duration or 1 / fps for f in frames], fps)
    first = {}
    for n, (a, _, _) in enumerate(timeline.frames):
        first.setdefault(a, n / float(timeline.rate))
    return [first[f.index] for f in frames if f.kind == "key"][1:], 1 / float(timeline.rate)


@pytest.mark.parametrize("name,clicks", [
    ("120 BPM", list(np.arange(0.5, 14, 0.5))),
    ("120 → 90 BPM", list(np.arange(0.5, 8, 0.5)) + list(7.5 + np.arange(1, 10) * 60 / 90)),
])
def test_every_cut_lands_on_a_click(tmp_path, name, clicks):
    song = write_clicks(tmp_path / "clicks.wav", clicks, clicks[-1] + 1.0)
    board = write_storyboard(tmp_path / "sb.json", STORYBOARD)
    if name == "120 BPM":  # through the command, as a user runs it
        proc = cli("beats", song, board, "--every", "2", "--fps", "8", "-o", tmp_path / "timed.json", "--json",
                   check=True)
        report = json.loads(proc.stdout)
    else:
        _, grid, rows = time_storyboard(song, board, tmp_path / "timed.json", every=2, fps=8)
        report = {"cuts": cut_report(rows, grid)}
    assert len(report["cuts"]) == len(STORYBOARD) - 1
    times, frame = cut_times(tmp_path / "timed.json", 8)
    for t in times:
        assert min(abs(t - c) for c in clicks) <= frame, f"{name}: cut at {t:.3f}s is not on a click"
    for c in report["cuts"]:
        assert abs(c["time"] - c["beat_time"]) < 1e-3
    timed = json.loads((tmp_path / "timed.json").read_text())
    assert timed[0]["morph"] >= 3 and timed[1]["prompt"] == "a blue square"  # morphs sized to the beats at --fps


def test_no_beat_suggests_bpm(tmp_path):
    noise = tmp_path / "noise.wav"
    rng = np.random.default_rng(0)
    with wave.open(str(noise), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((rng.normal(0, 0.05, 22050 * 6) * 32767).astype("<i2").tobytes())
    silence = write_clicks(tmp_path / "silence.wav", [], 4.0)
    board = write_storyboard(tmp_path / "sb.json", STORYBOARD[:3])
    proc = cli("beats", noise, board)
    assert proc.returncode == 2 and "--bpm" in proc.stderr and "\n" not in proc.stderr.strip()
    with pytest.raises(FramereelError, match="--bpm"):
        find_beats(silence)
    grid = find_beats(noise, bpm=120)
    assert np.allclose(np.diff(grid.times), 0.5)
    doc, report = fit_to_beats(board, grid, every=1, fps=8)
    assert [r["start"] for r in report[1:]] == [round(t, 4) for t in grid.times[1:3]]
    assert report[0]["morph"] == round(grid.times[1] * 8) - 1  # as many in-betweens as the beat holds at 8 fps


# ------------------------------------------------------------------ as a user, end to end


def test_make_on_beat_upscaled_and_interpolated(tmp_path, tiny_model, models):
    song = write_clicks(tmp_path / "song.wav", list(np.arange(0.5, 6, 0.5)), 6.5)
    board = write_storyboard(tmp_path / "sb.json", [{"prompt": "a red circle", "morph": 1}, {"prompt": "a square"},
                                                    {"prompt": "a star"}])
    out = tmp_path / "out"
    args = ("make", board, "-o", out, "--model", tiny_model, "--steps", "2", "--audio", song, "--on-beat",
            "--upscale", f"{models['x2']}", "--upscale-tile", "32", "--interpolate", models["rife"], "--json")
    proc = cli(*args, check=True)
    events = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert (out / "timed.json").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["storyboard"] == str((out / "timed.json").resolve())
    keys = [f for f in run["frames"] if f["kind"] == "key"]
    assert len(keys) == 3
    upscaled = run["finishing"]["upscale"]["frames"]
    assert len(upscaled) == len(run["frames"])
    with Image.open(out / upscaled["0"]["file"]) as im:
        assert im.size == (128, 128)  # the tiny model's 64² frames, x2
    pairs = {tuple(r["between"]) for r in run["finishing"]["interpolate"]["frames"].values()}
    morph_end = keys[1]["index"]
    assert pairs == {(i, i + 1) for i in range(morph_end)}  # inside the morph only; the cut to the star has none
    facts = probe_video(out / "video.mp4")
    assert facts["width"] == 256 and facts["audio"] == ["aac"]
    assert stage_done(events, "upscale")["computed"] == len(run["frames"])

    proc = cli(*args, check=True)  # the same command again: nothing rendered, upscaled or interpolated
    events = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert stage_done(events, "upscale")["computed"] == 0
    assert stage_done(events, "interpolate")["model_calls"] == 0
    assert not [e for e in events if e["event"] == "frame_done"]


# ------------------------------------------------------------------ clips, early checks, one-line refusals


def clip(clip_id: int, position: int, frames: int) -> dict:
    return {"kind": "clip", "clip": {"id": clip_id, "position": position, "frames": frames}}


def test_inbetweens_inside_a_clip_only(tmp_path, models):
    """Frames of one clip are a continuous run (their records differ in "position"); the cuts into
    and out of the clip, and between two clips, stay cuts."""
    out = make_folder(tmp_path / "out", [{}, clip(1, 0, 3), clip(1, 1, 3), clip(1, 2, 3), clip(2, 0, 2), clip(2, 1, 2)])
    stitch(out, fps=4, interpolate=parse_interpolate(str(models["rife"])))
    pairs = {tuple(r["between"]) for r in Manifest.load(out).run["finishing"]["interpolate"]["frames"].values()}
    assert pairs == {(1, 2), (2, 3), (4, 5)}


def test_a_clip_is_one_shot_whose_cut_lands_on_a_beat(tmp_path):
    """A clip's duration is each of its frames': the clip lasts the beats nearest its length at
    --fps, its frames share them, and the cut after it is on a beat (one clip_group: one shot)."""
    (tmp_path / "in.mp4").write_bytes(b"not decoded here")
    board = write_storyboard(tmp_path / "sb.json", {"defaults": {"steps": 2}, "frames": [
        {"prompt": "a lighthouse"},
        {"prompt": "waves", "clip": 8, "init_video": "in.mp4"},
        {"prompt": "a boat leaving port", "clip": 6, "clip_group": "boat"},
        {"prompt": "a boat at sea", "clip": 4, "clip_group": "boat"},
        {"prompt": "the end"},
    ]})
    grid = BeatGrid(tuple(np.arange(0.0, 30.0, 0.6)), 100.0, "--bpm", 30.0)
    doc, report = fit_to_beats(board, grid, every=1, fps=8)
    assert [r["entry"] for r in report] == [0, 1, 2, 4] and [r.get("clip") for r in report] == [None, 8, 10, None]
    # 8 frames at 8 fps: 1 s, 2 beats (1.2 s); the group's 10 frames: 1.25 s, 2 beats
    assert [r["start"] for r in report] == [0.0, 0.6, 1.8, 3.0] and report[-1]["end"] == 3.6
    assert doc["frames"][1]["duration"] == 0.15 and doc["frames"][2]["duration"] == doc["frames"][3]["duration"] == 0.12
    assert doc["frames"][1]["init_video"] == str((tmp_path / "in.mp4").resolve())  # the timed copy may live elsewhere
    (tmp_path / "elsewhere").mkdir()
    timed = tmp_path / "elsewhere" / "timed.json"
    atomic_write_json(timed, doc)
    frames = load_storyboard(timed).frames
    timeline = plan_timeline([f.duration for f in frames], 8)
    first: dict[int, float] = {}
    for n, (a, _, _) in enumerate(timeline.frames):
        first.setdefault(frames[a].shot, n / float(timeline.rate))
    frame = 1 / float(timeline.rate)
    for shot, beat in ((1, 0.6), (2, 1.8), (4, 3.0)):
        assert abs(first[shot] - beat) <= frame, f"the cut to entry {shot} is at {first[shot]:.3f}s, not {beat}s"
    assert abs(len(timeline.frames) * frame - 3.6) <= frame  # the film's length: 6 beats, not 8 × 1.2 s of clip


def test_morph_inbetweens_keep_their_beats_when_the_defaults_set_a_duration(tmp_path):
    """In-betweens last the defaults' duration; the timed copy drops it (every entry gets its own),
    so the in-betweens a beat holds at --fps end on that beat."""
    board = write_storyboard(tmp_path / "sb.json", {"defaults": {"duration": 0.3}, "frames": [
        {"prompt": "a lighthouse", "morph": 2}, {"prompt": "a storm"}, {"prompt": "the end"}]})
    grid = BeatGrid(tuple(np.arange(0.0, 30.0, 0.6)), 100.0, "--bpm", 30.0)
    doc, report = fit_to_beats(board, grid, every=1, fps=8)
    assert report[0]["morph"] == 4 and "duration" not in doc["defaults"]
    atomic_write_json(tmp_path / "timed.json", doc)
    frames = load_storyboard(tmp_path / "timed.json").frames
    starts = np.cumsum([0.0] + [f.duration or 1 / 8 for f in frames])
    assert [round(starts[i], 6) for i, f in enumerate(frames) if f.kind == "key"] == [0.0, 0.6, 1.2]


def test_make_on_beat_with_a_clip_and_inbetweens(tmp_path, tiny_model, models):
    """End to end: a still, an 8-frame clip, a still, timed at 120 BPM: 0.5 s + 1 s + 0.5 s, with
    learned in-betweens between the clip's frames and none across its cuts."""
    from tiny_motion import build_tiny_motion_adapter

    adapter = build_tiny_motion_adapter(tmp_path / "adapter")
    song = write_clicks(tmp_path / "song.wav", list(np.arange(0.5, 6, 0.5)), 6.5)
    board = write_storyboard(tmp_path / "sb.json", [{"prompt": "a lighthouse"}, {"prompt": "waves", "clip": 8},
                                                    {"prompt": "a boat"}])
    out = tmp_path / "out"
    cli("make", board, "-o", out, "--model", tiny_model, "--motion-adapter", adapter, "--dtype", "float32",
        "--steps", "2", "--audio", song, "--on-beat", "--interpolate", models["rife"], "-q", check=True)
    timed = json.loads((out / "timed.json").read_text())
    assert abs(timed[1]["duration"] - 0.125) < 0.005  # each clip frame about one 1/8 s step, the clip 2 beats
    end = sum(e["duration"] * (e.get("clip") or 1) for e in timed)
    assert abs(end - 2.5) < 0.05  # the first entry lasts to the second beat (1.0 s), the clip 2 beats, the last 1
    run = json.loads((out / "run.json").read_text())
    pairs = {tuple(r["between"]) for r in run["finishing"]["interpolate"]["frames"].values()}
    assert pairs == {(i, i + 1) for i in range(1, 8)}
    facts = probe_video(out / "video.mp4")
    assert abs(facts["frames"] / facts["rate"] - end) <= 1 / facts["rate"]


@pytest.fixture(scope="module")
def junk_models(tmp_path_factory) -> dict[str, Path]:
    import torch

    d = tmp_path_factory.mktemp("junk-models")
    (d / "notes.pth").write_text("hello, this is a text file\n")
    (d / "garbage.safetensors").write_bytes(bytes(range(256)) * 8)
    torch.save([1, 2, 3], d / "list.pth")
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.parametrize("name", ["notes", "garbage", "list"])
def test_foreign_model_files_are_one_line(tmp_path, models, junk_models, name):
    junk = junk_models[name]
    out = make_folder(tmp_path / "out", FILM[:3])
    for args in (("upscale", out, junk), ("stitch", out, "--upscale", junk)):
        proc = cli(*args)
        line = proc.stderr.strip()
        assert proc.returncode == 2 and "\n" not in line and junk.name in line and "cannot read it" in line, line
    proc = cli("stitch", out, "--interpolate", junk)
    line = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in line and "RIFE" in line, line
    reason = line.rsplit(": ", 1)[-1]
    assert sum(c.isalpha() for c in reason) >= 4, f"no reason in words: {line}"  # not a bare "101"
    assert not (out / "video.mp4").exists()


def test_finishing_options_are_refused_before_anything_renders(tmp_path, tiny_model, models, junk_models):
    board = write_storyboard(tmp_path / "sb.json", [{"prompt": "a lighthouse"}, {"prompt": "a boat"}])
    out = tmp_path / "out"
    base = ("make", board, "-o", out, "--model", tiny_model, "--steps", "1")
    cases = {("--upscale", tmp_path / "nope.pth"): "no such model file",
             ("--upscale", f"{models['x4']}:0"): "scale must be from 1 to 16",
             ("--interpolate", f"{models['rife']}:1"): "factor from 2 to 16",
             ("--upscale", junk_models["notes"]): "cannot read it",
             ("--interpolate", models["x4"]): "RIFE",
             ("--interpolate", models["rife"], "--transition", "smooth"): "choose one"}
    for extra, message in cases.items():
        for dry in ((), ("--dry-run",)):
            proc = cli(*base, *extra, *dry)
            assert proc.returncode == 2 and message in proc.stderr and "\n" not in proc.stderr.strip(), proc.stderr
            assert not (out / "frames").exists(), f"{extra} was refused only after rendering"


def test_flags_without_their_option_are_refused(tmp_path, tiny_model):
    board = write_storyboard(tmp_path / "sb.json", [{"prompt": "a lighthouse"}])
    out = make_folder(tmp_path / "out", [{}])
    make = ("make", board, "-o", tmp_path / "new", "--model", tiny_model, "--dry-run")
    for args, needs in (((*make, "--loop"), "--interpolate"), ((*make, "--every", "2"), "--on-beat"),
                        ((*make, "--bpm", "120"), "--on-beat"), ((*make, "--upscale-tile", "64"), "--upscale"),
                        (("stitch", out, "--loop"), "--interpolate"), (("stitch", out, "--upscale-tile", "0"), "--upscale"),
                        (("stitch", out, "--upscale-overlap", "4"), "--upscale")):
        proc = cli(*args)
        flag = next(a for a in args if isinstance(a, str) and a.startswith("--") and a != "--dry-run"
                    and a not in ("--model",))
        assert proc.returncode == 2 and f"{flag} needs {needs}" in proc.stderr, (args, proc.stderr)
    assert not (out / "video.mp4").exists()


def test_dry_run_on_beat_writes_nothing(tmp_path, tiny_model):
    song = write_clicks(tmp_path / "song.wav", list(np.arange(0.5, 6, 0.5)), 6.5)
    board = write_storyboard(tmp_path / "sb.json", [{"prompt": "a lighthouse"}, {"prompt": "a boat"}])
    out = tmp_path / "out"
    proc = cli("make", board, "-o", out, "--model", tiny_model, "--audio", song, "--on-beat", "--dry-run", check=True)
    assert "cut   1 at" in proc.stderr and "2 frames" in proc.stdout, proc.stdout
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_beats_never_overwrites_its_inputs(tmp_path):
    song = write_clicks(tmp_path / "song.wav", list(np.arange(0.5, 6, 0.5)), 6.5)
    board = write_storyboard(tmp_path / "sb.json", STORYBOARD[:3])
    before = board.read_bytes()
    (tmp_path / "sub").mkdir()
    for target, name in ((board, "storyboard"), (tmp_path / "sub" / ".." / "sb.json", "storyboard"), (song, "song")):
        proc = cli("beats", song, board, "-o", target)
        assert proc.returncode == 2 and f"the {name} being timed" in proc.stderr, proc.stderr
        assert "\n" not in proc.stderr.strip()
    assert board.read_bytes() == before
    (tmp_path / "out").mkdir()
    timed = write_storyboard(tmp_path / "out" / "timed.json", STORYBOARD[:3])  # make --on-beat's own output
    proc = cli("make", timed, "-o", tmp_path / "out", "--audio", song, "--on-beat")
    assert proc.returncode == 2 and "without --on-beat" in proc.stderr and timed.read_bytes() == before


def test_upscale_names_missing_frames(tmp_path, models):
    out = make_folder(tmp_path / "out", [{}, {}, {}])
    for frames in ("99", "1,99"):
        proc = cli("upscale", out, models["x2"], "--frames", frames)
        assert proc.returncode == 2 and "no frame 99" in proc.stderr and "0-2" in proc.stderr, proc.stderr
    assert not (out / UPSCALED_DIR).exists()
