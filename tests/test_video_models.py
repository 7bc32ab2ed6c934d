"""Clips from video models (``--video-model``): tiny random-weight Wan and LTX-Video pipelines,
shaped as diffusers' own tests build them (tests/tiny_video.py), against the family's diffusers
pipeline called directly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ONE_THREAD, cli, frames_bytes, probe_video, write_storyboard
from PIL import Image
from test_faults import no_temp_files
from tiny_video import build_video

from framereel.loader import load_storyboard


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Tiny video pipelines by kind, built once (each under a second)."""
    root = tmp_path_factory.mktemp("video_models")
    return {kind: build_video(kind, root / kind) for kind in ("wan2.1-t2v", "wan2.2-t2v", "wan2.2-ti2v",
                                                              "wan2.1-flf2v", "ltx")}


def settings(video, **kw):
    from framereel.settings import RenderSettings

    return RenderSettings(model="demo", device="cpu", dtype="float32", video_model=str(video), **kw)


@pytest.fixture(scope="module")
def backends(videos):
    """A backend per tiny video model, shared by this module's in-process renders as a run shares one:
    each model is loaded once, not once per render."""
    from framereel.backends import create_backend

    made = {kind: create_backend(settings(folder)) for kind, folder in videos.items()}
    yield made
    for backend in made.values():
        backend.close()


def render_board(tmp_path, name, frames, backend):
    from framereel.runner import render

    board = write_storyboard(tmp_path / f"{name}.json",
                             {"defaults": {"steps": 2, "width": 64, "height": 64}, "frames": frames})
    out = tmp_path / name
    return out, render(load_storyboard(board), out, backend.settings, backend=backend)


def frames_of(out, indices):
    return [np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png")) for i in indices]


def load(folder):
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def direct(folder, **kw):
    """The family's pipeline called directly, as its model card would."""
    pipe = load(folder)
    return pipe(output_type="pil", **kw).frames[0], pipe


@pytest.mark.parametrize("kind", ["wan2.1-t2v", "wan2.2-t2v", "wan2.2-ti2v"])
def test_a_wan_clip_is_what_wan_pipeline_gives(tmp_path, videos, backends, kind):
    """Text-to-video, Wan 2.1 shape, Wan 2.2 A14B shape (two experts) and Wan 2.2 TI2V-5B shape
    (z_dim-48 VAE, expand_timesteps):
    the clip's frames are WanPipeline's pixels for the same seed, prompt, size, steps and guidance."""
    import torch

    out, result = render_board(tmp_path, "a", [
        {"prompt": "a cat walking", "clip": 9, "seed": 7, "guidance": 4.0, "negative_prompt": "blur"}], backends[kind])
    assert sorted(result.rendered) == list(range(9))
    want, pipe = direct(videos[kind], prompt="a cat walking", negative_prompt="blur", num_frames=9, height=64,
                        width=64, num_inference_steps=2, guidance_scale=4.0,
                        generator=torch.Generator("cpu").manual_seed(7))
    assert type(pipe).__name__ == "WanPipeline"
    for i, (ours, theirs) in enumerate(zip(frames_of(out, range(9)), want, strict=True)):
        assert np.array_equal(ours, np.asarray(theirs)), f"frame {i} differs from WanPipeline's"
    run = json.loads((out / "run.json").read_text())
    assert run["family"]["video"]["family"] == kind
    assert run["frames"][0]["kind"] == "clip"


def test_video_family_defaults_fill_clip_steps_and_guidance(tmp_path, videos):
    """A clip that sets no guidance takes the video family's (Wan: 5.0); stills keep the image model's."""
    from framereel.backends import create_backend
    from framereel.identity import RunIdentity

    board = write_storyboard(tmp_path / "b.json", {"frames": ["a still", {"prompt": "a clip", "clip": 5}]})
    be = create_backend(settings(videos["wan2.1-t2v"]))
    frames = load_storyboard(board).resolved(RunIdentity.of(be).model.defaults()).frames
    assert (frames[1].steps, frames[1].guidance) == (50, 5.0)
    assert frames[0].guidance != 5.0 or frames[0].steps != 50


@pytest.mark.parametrize("entry, message", [
    ({"clip": 10}, 'Wan 2.1 T2V makes clips of 4k+1 frames; "clip": 10 is not one (framereel refuses rather '
                   "than rounds): use 9 or 13"),
    ({"clip": 9, "width": 72}, "Wan 2.1 T2V needs a width and height that are multiples of 16"),
    ({"clip": 9, "travel": [{"at": 4, "prompt": "b"}]}, "Wan 2.1 T2V takes one prompt per clip"),
    ({"clip": 85}, "Wan 2.1 T2V makes up to 81 frames per clip and can't continue a clip from its last frame; "
                   'split "clip": 85 into clips of at most 81'),
])
def test_family_rules_are_one_line_naming_the_frame_also_in_a_dry_run(tmp_path, videos, entry, message):
    board = write_storyboard(tmp_path / "b.json", {"defaults": {"steps": 2, "width": 64, "height": 64},
                                                   "frames": ["a still", {"prompt": "a", **entry}]})
    for extra in ([], ["--dry-run"]):
        proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--video-model", videos["wan2.1-t2v"],
                   *extra)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "frame 1: " + message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_video_model_refusals(tmp_path, videos, tiny_model):
    board = write_storyboard(tmp_path / "b.json", {"frames": [{"prompt": "a", "clip": 9}]})
    proc = cli("make", board, "-o", tmp_path / "o", "--model", "demo", "--video-model", tiny_model)
    assert proc.returncode == 2 and "StableDiffusionPipeline, which is not a video model" in proc.stderr
    proc = cli("make", board, "-o", tmp_path / "o", "--model", "demo", "--video-model", videos["ltx"],
               "--motion-adapter", "demo")
    assert proc.returncode == 2 and "--video-model and --motion-adapter both render clips" in proc.stderr
    proc = cli("make", board, "-o", tmp_path / "o", "--model", "demo", "--video-model", tmp_path / "nope")
    assert proc.returncode == 2 and "--video-model" in proc.stderr and "no such model folder" in proc.stderr
    from framereel.backends import create_backend
    from framereel.errors import FramereelError

    with pytest.raises(FramereelError, match="--video-model: the tt backend renders still frames only"):
        create_backend(settings(videos["ltx"], backend="tt"))


def test_one_step_with_a_terminal_shift_is_refused_not_blank(tmp_path, videos):
    """LTX-Video's scheduler config stretches its timesteps to shift_terminal; with 1 step diffusers'
    FlowMatchEulerDiscreteScheduler divides by zero and the clip's frames come out NaN (blank)."""
    import shutil

    ltx = shutil.copytree(videos["ltx"], tmp_path / "ltx")
    config = ltx / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "shift_terminal": 0.1}))
    board = write_storyboard(tmp_path / "b.json", {"defaults": {"width": 64, "height": 64},
                                                   "frames": [{"prompt": "a", "clip": 9, "steps": 1}]})
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--video-model", ltx, "--dry-run")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "frame 0: " in proc.stderr and 'use "steps": 2 or more' in proc.stderr, proc.stderr


def test_families_are_read_from_the_model(videos):
    from framereel.backends.video_models import resolve_video_model

    seen = {k: resolve_video_model(str(v)) for k, v in videos.items()}
    assert {k: m.family.key for k, m in seen.items()} == {k: k for k in videos}
    assert {k: (m.frame_step, m.size_multiple) for k, m in seen.items()} == {
        "wan2.1-t2v": (4, 16), "wan2.2-t2v": (4, 16), "wan2.2-ti2v": (4, 32), "wan2.1-flf2v": (4, 16), "ltx": (4, 4)}


# ------------------------------------------------------------------ key frames: transitions between stills

TRANSITIONS = [
    {"prompt": "a red circle", "seed": 1},
    {"prompt": "the circle becomes a square", "clip": 9, "first_frame": "previous", "last_frame": "next"},
    {"prompt": "a blue square", "seed": 2},
    {"prompt": "the square becomes a star", "clip": 9, "first_frame": "previous", "last_frame": "next"},
    {"prompt": "a green star", "seed": 3},
]


def test_a_changed_key_re_renders_the_key_and_the_transitions_touching_it_nothing_else(tmp_path, backends):
    """Stills 0, 10, 20 with transitions 1-9 and 11-19 (LTX-Video, first and last key frames)."""
    frames = [dict(f) for f in TRANSITIONS]
    out, result = render_board(tmp_path, "t", frames, backends["ltx"])
    assert sorted(result.rendered) == list(range(21))
    run = json.loads((out / "run.json").read_text())
    assert run["frames"][1]["clip"] == {"id": 1, "position": 0, "frames": 9, "first_frame": 0, "last_frame": 10}
    from framereel.gallery import gallery_data

    shown = gallery_data(out)["frames"][1]  # the gallery: where the clip comes from, and its entry to copy
    assert shown["derived_from"] == {"key_frames": [0, 10]}
    assert shown["entry"]["first_frame"] == "previous" and shown["entry"]["last_frame"] == "next"
    before = {p.name: p.read_bytes() for p in (out / "frames").iterdir()}
    frames[4]["prompt"] = "a yellow star"  # the last key: itself and the transition into it
    _, result = render_board(tmp_path, "t", frames, backends["ltx"])
    assert sorted(result.rendered) == list(range(11, 21))
    frames[2]["prompt"] = "a purple square"  # the middle key: itself and both transitions
    _, result = render_board(tmp_path, "t", frames, backends["ltx"])
    assert sorted(result.rendered) == list(range(1, 20))
    _, result = render_board(tmp_path, "t", frames, backends["ltx"])
    assert result.rendered == [] and len(result.skipped) == 21
    after = {p.name: p.read_bytes() for p in (out / "frames").iterdir()}
    assert after["frame_000.png"] == before["frame_000.png"] and after["frame_010.png"] != before["frame_010.png"]


def wan_prompt_embeds(pipe, prompt, negative):
    """Prompt embeddings as WanPipeline makes them (diffusers' image-to-video pipeline needs ftfy for
    its own prompt cleaning; its text-to-video one does not)."""
    from diffusers import WanPipeline

    text = WanPipeline(**{k: v for k, v in pipe.components.items() if k in (
        "tokenizer", "text_encoder", "vae", "scheduler", "transformer")})
    embeds, negative_embeds = text.encode_prompt(prompt, negative, device="cpu")
    return {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}


@pytest.mark.parametrize("kind", ["wan2.1-flf2v", "wan2.2-ti2v", "ltx"])
def test_a_transition_is_what_the_image_to_video_pipeline_gives_for_its_key_stills(tmp_path, videos, backends,
                                                                                  kind):
    """First-last-frame (Wan 2.1 FLF2V: WanImageToVideoPipeline with last_image; LTX:
    LTXConditionPipeline at frames 0 and N-1) or first frame only (Wan 2.2 TI2V-5B: image-to-video
    with expand_timesteps), from the stills framereel rendered."""
    import torch
    from diffusers import LTXConditionPipeline, WanImageToVideoPipeline
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    last = kind != "wan2.2-ti2v"
    clip = {"prompt": "a morph", "clip": 9, "seed": 5, "guidance": 3.0, "negative_prompt": "blur",
            "first_frame": "previous", **({"last_frame": "next"} if last else {})}
    out, _ = render_board(tmp_path, kind, [{"prompt": "a red circle"}, clip, {"prompt": "a blue square"}],
                          backends[kind])
    first, final = (Image.open(out / "frames" / f"frame_{i:03d}.png").convert("RGB") for i in (0, 10))
    pipe = load(videos[kind])
    call = dict(num_frames=9, height=64, width=64, num_inference_steps=2, guidance_scale=3.0, output_type="pil",
                generator=torch.Generator("cpu").manual_seed(5))
    if kind == "ltx":
        cond = LTXConditionPipeline(**pipe.components)
        cond.set_progress_bar_config(disable=True)
        want = cond(prompt="a morph", negative_prompt="blur", conditions=[
            LTXVideoCondition(image=first, frame_index=0), LTXVideoCondition(image=final, frame_index=8)], **call)
    else:
        i2v = WanImageToVideoPipeline(**pipe.components, expand_timesteps=pipe.config.expand_timesteps)
        i2v.set_progress_bar_config(disable=True)
        want = i2v(image=first, **({"last_image": final} if last else {}),
                   **wan_prompt_embeds(pipe, "a morph", "blur"), **call)
    for i, (ours, theirs) in enumerate(zip(frames_of(out, range(1, 10)), want.frames[0], strict=True)):
        assert np.array_equal(ours, np.asarray(theirs)), f"clip frame {i} differs from the pipeline's"


def test_an_image_file_as_key_frame_is_hashed_by_its_bytes(tmp_path, backends):
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "start.png")
    frames = [{"prompt": "a walk", "clip": 5, "first_frame": "start.png"}]
    _, result = render_board(tmp_path, "k", frames, backends["wan2.2-ti2v"])
    assert sorted(result.rendered) == list(range(5))
    _, result = render_board(tmp_path, "k", frames, backends["wan2.2-ti2v"])
    assert result.rendered == []
    Image.new("RGB", (64, 64), (30, 30, 200)).save(tmp_path / "start.png")
    _, result = render_board(tmp_path, "k", frames, backends["wan2.2-ti2v"])
    assert sorted(result.rendered) == list(range(5))


@pytest.mark.parametrize("frames, message", [
    ([{"prompt": "a", "clip": 9, "first_frame": "previous"}],
     'frame 0: "first_frame": "previous": the first entry has no frame before it; give an image path'),
    (["a", {"prompt": "a", "clip": 9, "first_frame": "previous", "last_frame": "next"}, {"prompt": "b", "clip": 9}],
     'frame 1: "last_frame": "next" is a clip; "next" names the still after the clip (its key frame)'),
    (["a", {"prompt": "b", "first_frame": "previous"}],
     'frame 1: "first_frame" belongs to a clip; add "clip": N (frames) to this entry'),
    ([{"prompt": "a", "clip": 9, "first_frame": "nope.png"}],
     'frame 0: "first_frame": nope.png: no such image; give "previous", "next" or an image file\'s path'),
])
def test_bad_key_frames_are_one_line(tmp_path, frames, message):
    from framereel.errors import FramereelError

    board = write_storyboard(tmp_path / "b.json", {"frames": frames})
    with pytest.raises(FramereelError) as err:
        load_storyboard(board)
    assert str(err.value) == f"b.json: {message}"


@pytest.mark.parametrize("kind, entry, message", [
    ("wan2.1-t2v", {"first_frame": "previous"}, "Wan 2.1 T2V renders from a prompt only; drop"),
    ("wan2.2-ti2v", {"first_frame": "previous", "last_frame": "next"}, "Wan 2.2 TI2V-5B has no last-frame"),
    ("wan2.1-flf2v", {"first_frame": "previous"}, "Wan 2.1 FLF2V animates from a first to a last key frame"),
    ("wan2.1-flf2v", {}, "Wan 2.1 FLF2V is an image-to-video model: give the clip a \"first_frame\""),
    (None, {"first_frame": "previous"}, '"first_frame"/"last_frame" need --video-model'),
])
def test_key_frames_a_model_cannot_take_are_refused_up_front(tmp_path, videos, kind, entry, message):
    board = write_storyboard(tmp_path / "b.json", {"defaults": {"steps": 2, "width": 64, "height": 64},
                                                   "frames": ["a", {"prompt": "b", "clip": 9, **entry}, "c"]})
    model = ["--video-model", videos[kind]] if kind else ["--motion-adapter", "demo"]
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", *model, "--dry-run")
    assert proc.returncode == 2 and proc.stderr.startswith("error: frame 1: ") and message in proc.stderr, proc.stderr


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "transitions.json"


def example_args(videos, board=EXAMPLE) -> list:
    """examples/transitions.json on the tiny LTX-Video model, 64², one step: three key stills (frames
    0, 34, 68), transitions 1-33 and 35-67 between them, and a clip 69-101 from the last one."""
    return [board, "--model", "demo", "--video-model", videos["ltx"], "--width", "64", "--height", "64",
            "--steps", "1"]


def example_start(tmp_path, entries: int):
    """The example's first ``entries`` entries as a storyboard of their own: the same frames, indices
    and seeds, so the same bytes (``--frames`` would not do: a still pulls in the clips that start on it)."""
    example = json.loads(EXAMPLE.read_text())
    return write_storyboard(tmp_path / "start.json", {**example, "frames": example["frames"][:entries]})


@pytest.fixture(scope="module")
def example(tmp_path_factory, videos):
    """The example made once in this process with one torch thread (as each of two workers on two
    cores, and as ONE_THREAD processes): the uninterrupted run the other runs are compared with."""
    import torch

    out, threads = tmp_path_factory.mktemp("example") / "one", torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        proc = cli("make", *example_args(videos), "--quiet", "-o", out, "--fps", "16")
    finally:
        torch.set_num_threads(threads)
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_transitions_example_renders_offline(example):
    run = json.loads((example / "run.json").read_text())
    assert [f["kind"] for f in run["frames"]].count("clip") == 3 * 33
    assert run["frames"][1]["clip"]["first_frame"] == 0 and run["frames"][1]["clip"]["last_frame"] == 34
    assert probe_video(example / "video.mp4")["frames"] > 99


def test_two_workers_render_a_transition_as_one_process_does(tmp_path, videos, example, one_thread):
    """With --workers 2 a clip is one job, handed out once the stills it starts and ends on are
    written: the first transition and its two key stills are the one-process run's bytes."""
    cli("frames", *example_args(videos, example_start(tmp_path, 3)), "--quiet", "-o", tmp_path / "two",
        "--workers", "2", check=True)
    two = frames_bytes(tmp_path / "two")
    assert sorted(two) == [f"frame_{i:03d}.png" for i in range(35)]
    assert two == {name: data for name, data in frames_bytes(example).items() if name in two}
    devices = {r["index"]: r["device"] for r in json.loads((tmp_path / "two" / "run.json").read_text())["frames"]
               if r["index"] in range(1, 34)}
    assert len(devices) == 33 and len(set(devices.values())) == 1


def test_kill_9_between_clips_then_the_rerun_keeps_the_finished_clip_and_ends_byte_identical(tmp_path, videos,
                                                                                             example, one_thread):
    """`framereel frames` (one thread) killed with SIGKILL once the first transition is written and
    the second has started: the rerun renders the second transition only, and every frame is the
    uninterrupted run's bytes."""
    out, board = tmp_path / "out", example_start(tmp_path, 5)
    proc = subprocess.Popen([sys.executable, "-m", "framereel", "frames", *map(str, example_args(videos, board)),
                             "-o", str(out), "--json"], env=ONE_THREAD,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    done = []
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "frame_done":
            done.append(event["index"])
        elif event["event"] == "frame_start" and event["index"] in range(35, 68):  # the second transition
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(done) == [*range(35), 68]  # the three stills and the first transition, not the second
    assert not (out / "frames" / "frame_035.png").exists() and no_temp_files(out)
    before = frames_bytes(out)

    rerun = cli("frames", *example_args(videos, board), "-o", out, "--json", check=True)
    events = [json.loads(line) for line in rerun.stdout.splitlines() if line.startswith("{")]
    assert sorted(e["index"] for e in events if e["event"] == "frame_skipped") == sorted(done)
    assert sorted(e["index"] for e in events if e["event"] == "frame_done") == list(range(35, 68))
    after = frames_bytes(out)
    assert {name: after[name] for name in before} == before
    assert after == {name: data for name, data in frames_bytes(example).items() if name in after}
    assert len(after) == 69 and no_temp_files(out)


def test_a_clip_beyond_the_native_length_continues_from_its_last_frame(tmp_path, videos):
    """Wan 2.2 TI2V-5B-shaped, its native length set to 5 frames in framereel.json: a 13-frame clip
    is WanPipeline's 5 frames, then twice image-to-video from the last frame so far (seed + 1, + 2),
    each segment's first frame dropped; run.json says so."""
    import shutil

    import torch
    from diffusers import WanImageToVideoPipeline

    folder = tmp_path / "ti2v"
    shutil.copytree(videos["wan2.2-ti2v"], folder)
    (folder / "framereel.json").write_text(json.dumps({"native_frames": 5}))
    from framereel.backends import create_backend

    out, _ = render_board(tmp_path, "long", [{"prompt": "a walk", "clip": 13, "seed": 3, "guidance": 2.0}],
                          create_backend(settings(folder)))
    run = json.loads((out / "run.json").read_text())
    assert run["frames"][0]["segments"] == [5, 5, 5]
    assert run["family"]["video"]["long_clips"].startswith("beyond 5 frames: continued from the last frame")
    pipe = load(folder)
    i2v = WanImageToVideoPipeline(**pipe.components, expand_timesteps=True)
    i2v.set_progress_bar_config(disable=True)
    call = dict(num_frames=5, height=64, width=64, num_inference_steps=2, guidance_scale=2.0, output_type="pil")
    want = pipe(prompt="a walk", generator=torch.Generator("cpu").manual_seed(3), **call).frames[0]
    for seed in (4, 5):
        want += i2v(image=want[-1], generator=torch.Generator("cpu").manual_seed(seed),
                    **wan_prompt_embeds(pipe, "a walk", None), **call).frames[0][1:]
    for i, (ours, theirs) in enumerate(zip(frames_of(out, range(13)), want, strict=True)):
        assert np.array_equal(ours, np.asarray(theirs)), f"frame {i} differs"


def test_doctor_names_a_video_models_family_and_rules(videos, tmp_path):
    report = json.loads(cli("doctor", "--json", "--video-model", videos["ltx"], check=True).stdout)
    assert report["video model"]["ok"] is True
    assert report["video model"]["detail"].startswith("LTX-Video at ")
    assert "takes a prompt, a first frame, first and last frames; clips of 4k+1 frames" in report["video model"]["detail"]
    report = json.loads(cli("doctor", "--json", "--video-model", tmp_path / "none", check=True).stdout)
    assert report["video model"]["ok"] is False and "no such model folder" in report["video model"]["detail"]


def test_a_transition_whose_key_still_is_left_out_of_frames_is_refused(tmp_path, videos):
    from framereel.errors import FramereelError
    from framereel.runner import render

    board = write_storyboard(tmp_path / "t.json", {"defaults": {"steps": 2, "width": 64, "height": 64},
                                                   "frames": TRANSITIONS})
    with pytest.raises(FramereelError, match="frame 1 is a clip that starts or ends on frame 0, which is not "
                                             "rendered; include it in --frames"):
        render(load_storyboard(board), tmp_path / "out", settings(videos["ltx"]), only=range(1, 11))


@pytest.mark.parametrize("failing", [None, 4])
def test_a_transition_job_waits_for_its_key_stills_and_fails_with_them(tmp_path, failing):
    """drive() hands a clip out only once the stills it starts and ends on are rendered (written by
    the caller as they come); if one of them fails for good, the clip fails saying why."""
    from framereel.jobs import FrameRendered, JobDone, JobFailed, WorkerPool, WorkerReady, drive, plan_jobs

    board = write_storyboard(tmp_path / "b.json", {"frames": [
        "a", {"prompt": "a to b", "clip": 3, "first_frame": "previous", "last_frame": "next"}, "b"]})
    frames = list(load_storyboard(board).resolved().frames)

    class Pool(WorkerPool):
        remote = False

        def __init__(self):
            self.messages, self.submitted = [], []

        def start(self, emit):
            self.messages.append(WorkerReady("w"))

        def submit(self, worker, job):
            self.submitted.append([f.index for f in job.frames])
            if any(f.index == failing for f in job.frames):
                self.messages.append(JobFailed(worker, job.id, failing, "boom"))
                return
            self.messages += [FrameRendered(worker, job.id, f.index, Image.new("RGB", (8, 8)), {}, 0.0)
                              for f in job.frames] + [JobDone(worker, job.id)]

        def poll(self, timeout):
            out, self.messages = self.messages, []
            return out

        def alive(self):
            return True

    pool = Pool()
    outcomes = {o.frame.index: o for o in drive(pool, plan_jobs(frames), lambda event: None)}
    assert sorted(outcomes) == [0, 1, 2, 3, 4]
    if failing is None:
        assert pool.submitted == [[0], [4], [1, 2, 3]] and all(o.error is None for o in outcomes.values())
    else:
        assert [1, 2, 3] not in pool.submitted
        assert outcomes[4].error.startswith("failed 3 times")
        assert {outcomes[i].error for i in (1, 2, 3)} == {"frame 4, which it starts from, failed"}
