"""Native video: "clip" entries rendered whole with AnimateDiff, against a tiny random-weight
MotionAdapter on the tiny SD pipeline (diffusers' own AnimateDiff tests use the same sizes)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import probe_video, run_cli, write_storyboard
from PIL import Image
from test_tt import fake_env, lines, make_tree
from tiny_motion import build_tiny_motion_adapter

from framereel.errors import FramereelError
from framereel.loader import load_storyboard


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    return build_tiny_motion_adapter(tmp_path_factory.mktemp("motion") / "adapter")


def frame_bytes(out, indices):
    return {i: (out / "frames" / f"frame_{i:03d}.png").read_bytes() for i in indices}


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------ whole runs through the CLI


def test_clips_render_resume_after_kill_and_stitch(tmp_path, tiny_model, adapter):
    """A still, an 8-frame clip and a 24-frame clip (through 16-frame context windows): killed
    after the first clip is written, the rerun renders only the second clip, then stitches."""
    board = write_storyboard(tmp_path / "b.json", {"defaults": {"steps": 2}, "frames": [
        {"prompt": "a lighthouse"},
        {"prompt": "a red circle moving to the right", "clip": 8},
        {"prompt": "waves", "clip": 24, "context_length": 16, "context_stride": 4},
    ]})
    out = tmp_path / "out"
    args = ["--model", tiny_model, "--motion-adapter", adapter, "--dtype", "float32", "-o", out, "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "framereel", "frames", str(board), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stdout:
        ev = json.loads(line)
        if ev["event"] == "frame_done":
            seen.append(ev["index"])
            if ev["index"] == 8:  # the first clip's last frame: kill between the clips
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert seen == list(range(9))  # the still, then the first clip's 8 frames, written together
    assert not (out / "frames" / "frame_009.png").exists()  # nothing of the unfinished clip
    before = frame_bytes(out, range(9))

    done = run_cli("make", board, *args, check=True)
    ev = events(done.stdout)
    assert sorted(e["index"] for e in ev if e["event"] == "frame_done") == list(range(9, 33))
    assert sorted(e["index"] for e in ev if e["event"] == "frame_skipped") == list(range(9))
    assert frame_bytes(out, range(9)) == before
    assert not (out / "superseded").exists()

    run = json.loads((out / "run.json").read_text())
    records = {r["index"]: r for r in run["frames"]}
    assert records[0]["kind"] == "key" and "clip" not in records[0]
    assert records[1]["kind"] == "clip" and records[1]["clip"] == {"id": 1, "position": 0, "frames": 8}
    assert records[32]["clip"] == {"id": 2, "position": 23, "frames": 24}
    assert records[9]["params"]["motion_adapter"] and "motion_adapter" not in records[0]["params"]
    # frames of a clip move; a clip is not one still repeated
    clip = [np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png"), dtype=np.int16) for i in range(9, 33)]
    assert all(np.abs(a - b).mean() > 0 for a, b in zip(clip, clip[1:]))
    video = probe_video(out / "video.mp4")
    assert video["frames"] >= 33  # every frame is in the film



# ------------------------------------------------------------------ in-process: parity and conditioning


@pytest.fixture(scope="module")
def backend(tiny_model, adapter):
    from framereel.backends import RenderSettings, create_backend

    be = create_backend(RenderSettings(model=str(tiny_model), device="cpu", dtype="float32",
                                       motion_adapter=str(adapter)))
    yield be
    be.close()


def render_board(tmp_path, name, frames, backend):
    from framereel.runner import render

    board = write_storyboard(tmp_path / f"{name}.json", {"defaults": {"steps": 2}, "frames": frames})
    out = tmp_path / name
    render(load_storyboard(board), out, backend.settings, backend=backend)
    return out


def test_clip_matches_animatediff_pipeline_called_directly(tmp_path, tiny_model, adapter, backend):
    import torch
    from diffusers import AnimateDiffPipeline, DPMSolverMultistepScheduler, MotionAdapter

    out = render_board(tmp_path, "a", [{"prompt": "a red circle moving to the right", "clip": 8, "seed": 7}], backend)
    pipe = AnimateDiffPipeline.from_pretrained(
        tiny_model, motion_adapter=MotionAdapter.from_pretrained(adapter), torch_dtype=torch.float32)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    direct = pipe("a red circle moving to the right", num_frames=8, num_inference_steps=2, guidance_scale=7.5,
                  width=64, height=64, generator=torch.Generator("cpu").manual_seed(7)).frames[0]
    for i, image in enumerate(direct):
        ours = np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png"))
        assert np.array_equal(ours, np.asarray(image)), f"frame {i} differs from AnimateDiffPipeline's"
    # same inputs, another folder: byte-identical frames
    again = render_board(tmp_path, "b", [{"prompt": "a red circle moving to the right", "clip": 8, "seed": 7}], backend)
    assert frame_bytes(out, range(8)) == frame_bytes(again, range(8))


def test_clip_hash_covers_adapter_contents_and_loras(tmp_path, tiny_model, adapter):
    from framereel.backends import RenderSettings, create_backend

    def options(motion_adapter, loras=()):
        be = create_backend(RenderSettings(model=str(tiny_model), device="cpu", dtype="float32",
                                           motion_adapter=str(motion_adapter), motion_loras=loras))
        be.describe()
        return be.clip_options

    retrained = build_tiny_motion_adapter(tmp_path / "retrained", seed=1)  # same files, same sizes
    lora = tmp_path / "zoom.safetensors"
    lora.write_bytes(b"0" * 16)
    assert options(adapter) != options(retrained)
    assert options(adapter, (f"{lora}:0.5",)) != options(adapter, (f"{lora}:0.8",)) != options(adapter)


def test_prompt_travel_interpolates_the_conditioning_across_frames(tmp_path, backend, monkeypatch):
    import torch
    from diffusers import UNetMotionModel

    seen = []
    forward = UNetMotionModel.forward

    def spy(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        seen.append(encoder_hidden_states.detach().clone())
        return forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(UNetMotionModel, "forward", spy)
    render_board(tmp_path, "travel", [{"prompt": "a day sky", "clip": 8,
                                       "travel": [{"at": 7, "prompt": "a night sky"}]}], backend)
    cond = seen[0].chunk(2)[1]  # classifier-free guidance: [negative; positive], one row per frame
    assert cond.shape[0] == 8
    day, night = backend._embed("a day sky")["prompt_embeds"][0], backend._embed("a night sky")["prompt_embeds"][0]
    assert torch.allclose(cond[0], day, atol=1e-5) and torch.allclose(cond[7], night, atol=1e-5)
    dist = [float((c - day).norm()) for c in cond]
    assert all(a < b for a, b in zip(dist, dist[1:]))  # each frame a step further from the first prompt

    seen.clear()
    render_board(tmp_path, "still", [{"prompt": "a day sky", "clip": 8}], backend)
    cond = seen[0].chunk(2)[1]
    assert all(torch.equal(c, cond[0]) for c in cond)  # without travel every frame has the same prompt


def test_clip_group_travels_between_its_entries(tmp_path):
    board = write_storyboard(tmp_path / "g.json", [
        {"prompt": "a day sky", "clip": 4, "clip_group": "sky", "duration": 0.25},
        {"prompt": "a sunset", "clip": 4, "clip_group": "sky"},
        {"prompt": "a night sky", "clip": 2},
    ])
    frames = load_storyboard(board).frames
    assert [f.clip.id for f in frames] == [0] * 8 + [2] * 2
    assert frames[0].clip.prompts == ((0, "a day sky"), (4, "a sunset"))
    assert [f.prompt for f in frames[:8]] == ["a day sky"] * 4 + ["a sunset"] * 4
    assert [f.duration for f in frames[:8]] == [0.25] * 4 + [None] * 4
    assert len({f.seed for f in frames[:8]}) == 1 and frames[8].seed != frames[0].seed


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("frames, message", [
    ([{"prompt": "a", "clip": 0}], '"clip" must be a number of frames from 1 to 1000'),
    ([{"prompt": "a", "clip": 4, "travel": [{"at": 4, "prompt": "b"}]}], "past the clip's last frame (3)"),
    ([{"prompt": "a", "clip": 4, "morph": 2}, {"prompt": "b"}], '"morph" and "clip" don\'t combine'),
    ([{"prompt": "a", "morph": 2}, {"prompt": "b", "clip": 4}], '"morph" into a clip'),
    ([{"prompt": "a", "travel": [{"at": 0, "prompt": "b"}]}], 'add "clip": N'),
    ([{"prompt": "a", "clip": 4, "init_video": "missing.mp4"}], '"init_video": missing.mp4: no such file'),
    ([{"prompt": "a", "clip": 2, "clip_group": "g"}, {"prompt": "b"}, {"prompt": "c", "clip": 2, "clip_group": "g"}],
     'clip group "g" was used earlier'),
    ([{"prompt": "a", "clip": 2, "clip_group": "g", "steps": 3}, {"prompt": "b", "clip": 2, "clip_group": "g"}],
     '"steps" differs from the first entry of clip group "g"'),
    ([{"prompt": "a", "clip": 4, "context_length": 8, "context_stride": 9}], '"context_stride" must not exceed'),
])
def test_bad_clip_entries_are_one_line(tmp_path, frames, message):
    board = write_storyboard(tmp_path / "bad.json", frames)
    with pytest.raises(FramereelError) as err:
        load_storyboard(board)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_refused_up_front(tmp_path, tiny_model, adapter):
    from framereel.backends import RenderSettings, create_backend
    from framereel.runner import render

    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a", "clip": 8}])
    # a motion adapter made for another UNet: one line from the CLI, before any weights load
    wide = build_tiny_motion_adapter(tmp_path / "wide", block_out_channels=(32, 64))
    proc = run_cli("frames", board, "--model", tiny_model, "--motion-adapter", wide, "-o", tmp_path / "o1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "made for a UNet with block channels (32, 64)" in proc.stderr
    # an SDXL-family model (its UNet takes text_time embeddings)
    xl = tmp_path / "xl"
    shutil.copytree(tiny_model, xl)
    config = json.loads((xl / "unet" / "config.json").read_text())
    (xl / "unet" / "config.json").write_text(json.dumps({**config, "addition_embed_type": "text_time"}))
    with pytest.raises(FramereelError, match="is an SDXL-family model"):
        create_backend(RenderSettings(model=str(xl), device="cpu", motion_adapter=str(adapter))).describe()
    # clips without a motion adapter: refused before the model loads
    be = create_backend(RenderSettings(model=str(tiny_model), device="cpu"))
    with pytest.raises(FramereelError, match='"clip" needs --motion-adapter'):
        render(load_storyboard(board), tmp_path / "o3", be.settings, backend=be)
    assert be.pipe is None
    # the Tenstorrent backend: refused before the chip is opened
    env, log = fake_env(tmp_path, make_tree(tmp_path))
    proc = run_cli("frames", board, "--backend", "tt", "--scheduler", "pndm", "--model", tiny_model, "-o", tmp_path / "o4",
                   env=env)
    assert proc.returncode == 2 and "can't render clip frames" in proc.stderr
    assert not any(line.startswith("open") for line in lines(log))
    assert not list((tmp_path / "o4").glob("frames/*.png"))


# ------------------------------------------------------------------ video-to-video and motion LoRAs


def write_video(path, frames=8, shift=0):
    """An 8-frame 64×64 H.264 clip of a white square moving right (written with PyAV)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        for k in range(frames):
            a = np.zeros((64, 64, 3), np.uint8)
            a[24:40, 8 + 5 * k + shift:24 + 5 * k + shift] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_video_to_video_matches_the_pipeline_and_tracks_its_input_file(tmp_path, tiny_model, adapter, backend):
    import av
    import torch
    from diffusers import AnimateDiffVideoToVideoPipeline, DPMSolverMultistepScheduler, MotionAdapter

    from framereel.runner import render

    video = write_video(tmp_path / "in.mp4")
    board = write_storyboard(tmp_path / "v.json", {"defaults": {"steps": 2}, "frames": [
        {"prompt": "a white square", "clip": 8, "init_video": "in.mp4", "strength": 0.5, "seed": 3}]})
    out = tmp_path / "v"
    assert render(load_storyboard(board), out, backend.settings, backend=backend).rendered == list(range(8))

    with av.open(str(video)) as container:
        decoded = [f.to_image() for f in container.decode(video=0)]  # 64×64 already: nothing to resize
    pipe = AnimateDiffVideoToVideoPipeline.from_pretrained(
        tiny_model, motion_adapter=MotionAdapter.from_pretrained(adapter), torch_dtype=torch.float32)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    direct = pipe(video=decoded, prompt="a white square", strength=0.5, num_inference_steps=2, guidance_scale=7.5,
                  width=64, height=64, generator=torch.Generator("cpu").manual_seed(3)).frames[0]
    for i, image in enumerate(direct):
        assert np.array_equal(np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png")), np.asarray(image))

    assert render(load_storyboard(board), out, backend.settings, backend=backend).rendered == []
    write_video(video, shift=3)  # another input video: the clip is stale
    assert render(load_storyboard(board), out, backend.settings, backend=backend).rendered == list(range(8))


def test_motion_lora_weight_changes_the_clip(tmp_path, tiny_model, adapter, backend):
    import torch
    from diffusers import AnimateDiffPipeline, MotionAdapter
    from peft import LoraConfig, get_peft_model_state_dict

    from framereel.backends import create_backend

    pipe = AnimateDiffPipeline.from_pretrained(tiny_model, motion_adapter=MotionAdapter.from_pretrained(adapter))
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                     target_modules=r".*motion_modules.*\.(to_q|to_k|to_v)"))
    AnimateDiffPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    lora = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    clip = [{"prompt": "a red circle", "clip": 8}]
    plain = render_board(tmp_path, "plain", clip, backend)
    rendered = {}
    for weight in ("0", "1"):
        be = create_backend(replace_settings(backend.settings, motion_loras=(f"{lora}:{weight}",)))
        try:
            rendered[weight] = render_board(tmp_path, f"w{weight}", clip, be)
        finally:
            be.close()
    assert frame_bytes(rendered["0"], range(8)).values() != frame_bytes(rendered["1"], range(8)).values()
    pix = lambda out: [np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png")) for i in range(8)]  # noqa: E731
    assert all(np.array_equal(a, b) for a, b in zip(pix(rendered["0"]), pix(plain)))  # weight 0: no effect
    assert not all(np.array_equal(a, b) for a, b in zip(pix(rendered["1"]), pix(plain)))


def replace_settings(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)


def test_motion_lora_weight_is_read_as_lora_weights_are(tmp_path):
    """--motion-lora PATH[:WEIGHT] follows --lora's syntax: a weight that is not a finite number is
    refused in one line naming the weight (it was taken as part of the path, or as an infinite weight)."""
    from framereel.backends.animatediff import parse_motion_lora

    lora = tmp_path / "zoom.safetensors"
    lora.write_bytes(b"0" * 16)
    assert parse_motion_lora(str(lora)) == (str(lora.resolve()), 1.0)
    assert parse_motion_lora(f"{lora}:0.8") == (str(lora.resolve()), 0.8)
    for weight in ("x8", "inf", "nan"):
        with pytest.raises(FramereelError, match=r"--motion-lora .*zoom.safetensors:.*: the weight after ':' must be a") as err:
            parse_motion_lora(f"{lora}:{weight}")
        assert "\n" not in str(err.value)
    with pytest.raises(FramereelError, match="no such file or folder"):
        parse_motion_lora(f"{tmp_path / 'missing.safetensors'}:0.5")


def test_a_windowed_clip_leaves_the_pipeline_as_it_found_it(tmp_path, backend):
    """A clip after one denoised in context windows renders as it does alone. FreeNoise's blocks used
    to stay in the motion modules (disabling FreeNoise missed them inside the split-inference
    wrappers): every later clip ran through windows, and one shorter than the window failed."""
    short = [{"prompt": "a red circle", "clip": 3, "seed": 5}]
    alone = render_board(tmp_path, "alone", short, backend)
    render_board(tmp_path, "windowed", [{"prompt": "waves", "clip": 6, "context_length": 4, "context_stride": 2}],
                 backend)
    after = render_board(tmp_path, "after", short, backend)
    assert (after / "frames" / "frame_002.png").is_file(), "the clip after a windowed one failed"
    assert frame_bytes(after, range(3)) == frame_bytes(alone, range(3))


def test_context_windows_end_on_the_last_frame(tmp_path, backend, monkeypatch):
    """A clip whose length the stride does not tile (7 frames, windows of 4 every 2) is denoised in
    whole windows that end on its last frame. diffusers' FreeNoise otherwise adds a partial last
    window and weighs its frames with one weight: the last frame's motion features were halved."""
    from diffusers.models.attention import FreeNoiseTransformerBlock

    assert load_storyboard(write_storyboard(tmp_path / "s.json", [
        {"prompt": "a", "clip": 7, "context_length": 4, "context_stride": 2},
        {"prompt": "a", "clip": 24, "context_length": 16, "context_stride": 4},
        {"prompt": "a", "clip": 25, "context_length": 16, "context_stride": 4}])).frames[-1].clip.context_stride == 3
    windows = []
    forward = FreeNoiseTransformerBlock.forward

    def spy(self, hidden_states, *args, **kwargs):
        frames = hidden_states.size(1)
        windows.append((frames, self.context_length, self._get_frame_indices(frames)))
        return forward(self, hidden_states, *args, **kwargs)

    monkeypatch.setattr(FreeNoiseTransformerBlock, "forward", spy)
    out = render_board(tmp_path, "odd", [{"prompt": "waves", "clip": 7, "context_length": 4, "context_stride": 2}],
                       backend)
    assert (out / "frames" / "frame_006.png").is_file() and windows
    for frames, length, indices in windows:
        assert frames == 7 and indices[-1][1] == frames, indices  # the last window ends on the last frame
        assert all(end - start == length for start, end in indices)
