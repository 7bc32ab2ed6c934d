"""Clips from video models (``--video-model``): tiny random-weight Wan and LTX-Video pipelines,
shaped as diffusers' own tests build them (tests/tiny_video.py), against the family's diffusers
pipeline called directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cli, write_storyboard
from PIL import Image
from tiny_video import build_video

from framereel.loader import load_storyboard


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Tiny video pipelines by kind, built once (each under a second)."""
    root = tmp_path_factory.mktemp("video_models")
    return {kind: build_video(kind, root / kind) for kind in ("wan2.1-t2v", "wan2.2-ti2v", "wan2.1-flf2v", "ltx")}


def settings(video, **kw):
    from framereel.settings import RenderSettings

    return RenderSettings(model="demo", device="cpu", dtype="float32", video_model=str(video), **kw)


def render_board(tmp_path, name, frames, video, **kw):
    from framereel.runner import render

    board = write_storyboard(tmp_path / f"{name}.json",
                             {"defaults": {"steps": 2, "width": 64, "height": 64}, "frames": frames})
    out = tmp_path / name
    return out, render(load_storyboard(board), out, settings(video, **kw))


def frames_of(out, indices):
    return [np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png")) for i in indices]


def direct(folder, **kw):
    """The family's pipeline called directly, as its model card would."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe(output_type="pil", **kw).frames[0], pipe


@pytest.mark.parametrize("kind", ["wan2.1-t2v", "wan2.2-ti2v"])
def test_a_wan_clip_is_what_wan_pipeline_gives(tmp_path, videos, kind):
    """Text-to-video, Wan 2.1 shape and Wan 2.2 TI2V-5B shape (z_dim-48 VAE, expand_timesteps):
    the clip's frames are WanPipeline's pixels for the same seed, prompt, size, steps and guidance."""
    import torch

    out, result = render_board(tmp_path, "a", [
        {"prompt": "a cat walking", "clip": 9, "seed": 7, "guidance": 4.0, "negative_prompt": "blur"}], videos[kind])
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


def test_families_are_read_from_the_model(videos):
    from framereel.backends.video_models import resolve_video_model

    seen = {k: resolve_video_model(str(v)) for k, v in videos.items()}
    assert {k: m.family.key for k, m in seen.items()} == {k: k for k in videos}
    assert {k: (m.frame_step, m.size_multiple) for k, m in seen.items()} == {
        "wan2.1-t2v": (4, 16), "wan2.2-ti2v": (4, 32), "wan2.1-flf2v": (4, 16), "ltx": (4, 4)}
