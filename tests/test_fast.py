"""--fast-path: the plan per device, the same pictures as the plain path (PSNR), run.json and the hash."""

import json

import numpy as np
import pytest
from conftest import cli, write_storyboard
from PIL import Image

from framereel.backends.fast import FastPlan, apply_fast_path, plan_fast_path
from framereel.bench import psnr

FAST_PSNR_DB = 40.0  # the fast path's frames vs the plain path's, worst frame (README "Speed")


def pixels(out, index):
    return np.asarray(Image.open(out / "frames" / f"frame_{index:03d}.png"))


def test_auto_takes_what_pays_on_the_device_and_on_takes_everything():
    assert plan_fast_path("off", "cuda", unet=True, loras=False, step_cache=False).on == ()
    assert plan_fast_path("auto", "cuda:1", unet=True, loras=False, step_cache=False).on == ("channels_last",
                                                                                             "fused_qkv")
    assert plan_fast_path("auto", "cpu", unet=True, loras=False, step_cache=False).on == ()
    on = plan_fast_path("on", "cuda", unet=True, loras=False, step_cache=False)
    assert on.on == ("channels_last", "fused_qkv", "compile") and on.compile_mode == "reduce-overhead"
    assert plan_fast_path("max", "cuda", unet=True, loras=False, step_cache=False).compile_mode == "max-autotune"
    cpu = plan_fast_path("on", "cpu", unet=True, loras=False, step_cache=False)
    assert cpu.on == ("channels_last", "compile") and cpu.compile_mode is None
    assert "slower on a CPU" in cpu.skipped["fused_qkv"]


def test_what_the_run_cannot_take_is_skipped_with_its_reason():
    plan = plan_fast_path("on", "cuda", unet=True, loras=True, step_cache=True)
    assert plan.on == ("channels_last",)
    assert "LoRAs" in plan.record()["skipped"]["fused_qkv"] and "--step-cache" in plan.skipped["compile"]
    transformer = plan_fast_path("on", "cuda", unet=False, loras=False, step_cache=False)
    assert transformer.on == ("compile",)


def test_fused_projections_and_channels_last_keep_the_pictures(tiny_model):
    """Fused QKV (skipped on CPUs for speed, taken on GPUs) computes the same attention: checked here."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model)
    pipe.set_progress_bar_config(disable=True)

    def image():
        return pipe("a lighthouse", num_inference_steps=2, generator=torch.Generator().manual_seed(3),
                    output_type="np").images[0] * 255

    plain = image()
    apply_fast_path(pipe, FastPlan("on", ("channels_last", "fused_qkv")))
    assert type(pipe.unet.attn_processors["mid_block.attentions.0.transformer_blocks.0.attn1.processor"]
                ).__name__ == "FusedAttnProcessor2_0"
    assert psnr(image(), plain) > FAST_PSNR_DB


@pytest.mark.parametrize("args, message", [
    (["--fast-path", "fastest"], "'fastest' is not one of 'off', 'auto', 'on', 'max'"),
    (["--fast-path", "on", "--backend", "tt-demo"], "--fast-path: the Tenstorrent backends"),
])
def test_fast_path_refuses_bad_input_in_one_line(tmp_path, tiny_model, args, message):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a lighthouse"}])
    proc = cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_the_fast_path_renders_the_plain_pictures_is_recorded_and_keeps_the_frames_hash(tmp_path, tiny_model):
    """Compiled + channels-last frames: within FAST_PSNR_DB of the plain ones, the same bytes when
    rendered again, ``fast_path`` in run.json; switching it off does not re-render (not in the hash)."""
    from framereel import RenderSettings, load_storyboard, render
    from framereel.backends import create_backend

    board = write_storyboard(tmp_path / "b.json", [{"prompt": f"a lighthouse, shot {i}"} for i in range(2)])
    common = ["--model", tiny_model, "--steps", "2", "--batch", "2"]
    plain, fast, again = tmp_path / "plain", tmp_path / "fast", tmp_path / "again"
    cli("frames", board, "-o", plain, *common, check=True)
    settings = RenderSettings(model=str(tiny_model), backend="diffusers", batch=2, fast_path="on")
    backend = create_backend(settings)  # one backend for both runs: compiled once
    storyboard = load_storyboard(board, overrides={"steps": 2})
    done = []
    render(storyboard, fast, settings, backend=backend, on_event=done.append)
    render(storyboard, again, settings, backend=backend)
    compiled = [e.facts.get("compile_seconds") for e in done if type(e).__name__ == "FrameDone"]
    assert compiled[0] > 0  # compiled in the warm-up, reported apart from the frame's time
    run = json.loads((fast / "run.json").read_text())
    assert run["fast_path"]["on"] == ["channels_last", "compile"] and run["fast_path"]["mode"] == "on"
    assert "fast_path" not in json.loads((plain / "run.json").read_text())
    for i in (0, 1):
        assert psnr(pixels(fast, i), pixels(plain, i)) > FAST_PSNR_DB
        assert np.array_equal(pixels(fast, i), pixels(again, i))
    proc = cli("frames", board, "-o", fast, *common, "--json", check=True)  # the same frames, asked without it
    assert '"frame_done"' not in proc.stdout


def test_bench_measures_the_unet_with_and_without_the_fast_path(tmp_path, tiny_model):
    out = tmp_path / "bench.json"
    proc = cli("bench", "--model", tiny_model, "--steps", "2", "--frames", "1", "--only", "peak",
               "--fast-path", "auto", "--json-out", out, check=True)
    assert "2. UNet with --fast-path auto (nothing)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["peak"]["fast_path"]["on"] == [] and report["peak"]["fast_path"]["fraction"] > 0
    assert report["machine"]["date"] and "cpu_name" in report["machine"] and report["settings"]["dtype"]


def test_compiled_code_is_kept_in_framereels_cache_unless_you_chose_a_folder(monkeypatch, tmp_path):
    """torch writes its default folder into TORCHINDUCTOR_CACHE_DIR the first time it asks: that is
    not the user's choice, and compiled code must still go to framereel's cache folder."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    from framereel.backends.fast import use_compile_cache

    monkeypatch.setenv("FRAMEREEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cache_dir()  # torch asks first, as some import does in a real run
    assert use_compile_cache() == str(tmp_path / "cache" / "inductor") == cache_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_compile_cache() == str(tmp_path / "mine")


def test_frames_with_their_own_loras_turn_fused_projections_off(tmp_path, tiny_model):
    """A frame's LoRA adapts the separate Q, K, V projections, which fused ones would bypass: the
    fast path (as `auto` plans it on a GPU) goes on without fusing, and says why in run.json."""
    from tiny_families import build_tiny_lora

    from framereel import RenderSettings
    from framereel.backends import create_backend
    from framereel.storyboard import Frame

    lora = build_tiny_lora(tmp_path / "style")
    backend = create_backend(RenderSettings(model=str(tiny_model), backend="diffusers", batch=1, fast_path="auto"))
    backend.fast_plan = FastPlan("auto", ("fused_qkv",))  # what `auto` takes on CUDA
    backend.load()
    attn = "mid_block.attentions.0.transformer_blocks.0.attn1.processor"
    assert type(backend.pipe.unet.attn_processors[attn]).__name__ == "FusedAttnProcessor2_0"
    backend.check([Frame(0, "a lighthouse", None, 1, 2, 7.5, 64, 64, lora=((str(lora), 1.0),))])
    assert type(backend.pipe.unet.attn_processors[attn]).__name__ != "FusedAttnProcessor2_0"
    assert "own LoRAs" in backend.run_facts()["fast_path"]["skipped"]["fused_qkv"]
