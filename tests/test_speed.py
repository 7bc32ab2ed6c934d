"""Speed options: --batch, --tiny-vae, --step-cache, --compile, through the CLI and the library."""

import json

import numpy as np
import pytest
from conftest import cli, run_cli, write_storyboard
from PIL import Image
from tiny_model import build_tiny_vae

from framereel import RenderSettings
from framereel.bench import psnr
from framereel.jobs import batch_groups, plan_jobs
from framereel.storyboard import Frame

PROMPTS = [{"prompt": f"a lighthouse, shot {i}"} for i in range(4)]


@pytest.fixture
def board(tmp_path):
    return write_storyboard(tmp_path / "prompts.json", PROMPTS)


def pixels(out, index):
    return np.asarray(Image.open(out / "frames" / f"frame_{index:03d}.png"))


def frame(index, kind="key", parent=None, width=64):
    return Frame(index, "p", None, index, 3, 7.5, width, 64, kind=kind, parent=parent)


def test_batch_groups_keep_chains_alone_and_split_on_size():
    frames = [frame(0), frame(1), frame(2, width=128), frame(3), frame(4, "chain", parent=3), frame(5), frame(6)]
    groups = [[f.index for f in g] for g in batch_groups(frames, 2)]
    assert groups == [[0, 1], [2], [3], [4], [5, 6]]
    assert [[f.index for f in g] for g in batch_groups(frames, 1)] == [[i] for i in range(7)]


def test_worker_jobs_batch_independent_frames_and_keep_chains_whole():
    frames = [frame(0), frame(1), frame(2), frame(3, "chain", parent=2), frame(4), frame(5), frame(6), frame(7)]
    jobs = [[f.index for f in job.frames] for job in plan_jobs(frames, batch=3)]
    assert jobs == [[0, 1], [2, 3], [4, 5, 6], [7]]
    assert [[f.index for f in job.frames] for job in plan_jobs(frames)] == [[0], [1], [2, 3], [4], [5], [6], [7]]


@pytest.mark.parametrize("args, message", [
    (["--batch", "x"], "is not auto or a whole number"),
    (["--batch", "0"], "is not auto or a whole number"),
    (["--compile", "--step-cache", "2"], "--compile and --step-cache don't combine"),
    (["--backend", "tt-demo", "--batch", "4"], "the Tenstorrent backends render one traced frame at a time"),
    (["--tiny-vae", "/no/such/vae"], "--tiny-vae /no/such/vae: no such folder"),
])
def test_speed_flags_refuse_bad_input_in_one_line(tmp_path, board, tiny_model, args, message):
    proc = cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_batch_renders_every_frame_and_records_the_batch(tmp_path, board, tiny_model):
    out = tmp_path / "out"
    proc = cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "2", "--batch", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    starts = [e for e in events if e["event"] == "frame_start"]
    assert [s.get("batch") for s in starts] == [[0, 1, 2], None]  # 4 frames: a batch of 3, then one (padded)
    assert sorted(e["index"] for e in events if e["event"] == "frame_done") == [0, 1, 2, 3]
    assert json.loads((out / "run.json").read_text())["batch"] == 3


def test_tiny_vae_decodes_frames_and_is_part_of_their_identity(tmp_path, board, tiny_model):
    vae = build_tiny_vae(tmp_path / "taesd")
    out = tmp_path / "out"
    cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "2", check=True)
    plain = pixels(out, 0)
    proc = cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "2", "--tiny-vae", vae, "--json")
    assert proc.returncode == 0, proc.stderr
    done = [json.loads(line) for line in proc.stdout.splitlines() if '"frame_done"' in line]
    assert len(done) == 4  # another decoder makes other pixels: every frame is re-rendered
    assert not np.array_equal(pixels(out, 0), plain)
    assert len(list((out / "superseded").rglob("*.png"))) == 4  # the plain-VAE frames are kept
    assert json.loads((out / "run.json").read_text())["frames"][0]["params"]["tiny_vae"]


def test_tiny_vae_for_another_latent_scale_is_refused(tmp_path, board, tiny_model):
    vae = build_tiny_vae(tmp_path / "taesd", levels=4)  # 1/8 scale, like TAESD for SD: the tiny model is 1/2
    proc = cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--tiny-vae", vae)
    assert proc.returncode == 2
    assert "at 1/8 scale, the model makes 4-channel latents at 1/2" in proc.stderr


def test_step_cache_runs_the_deep_blocks_only_every_nth_call(tiny_model):
    import torch

    from framereel.backends.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend(RenderSettings(model=str(tiny_model), step_cache=3, batch=1))
    backend.load()
    unet = backend.pipe.unet
    calls = {"deep": 0, "shallow": 0}
    unet.mid_block.resnets[0].register_forward_hook(lambda *a: calls.__setitem__("deep", calls["deep"] + 1))
    unet.up_blocks[-1].resnets[0].register_forward_hook(lambda *a: calls.__setitem__("shallow", calls["shallow"] + 1))
    image, _ = backend.render(Frame(0, "a lighthouse", None, 1, 7, 7.5, 64, 64))
    assert calls == {"deep": 3, "shallow": 7}  # calls 0, 3 and 6 in full
    cache = backend._step_cache
    cache.remove()
    calls.update(deep=0, shallow=0)
    with torch.inference_mode():
        backend.pipe("x", num_inference_steps=4, width=64, height=64)
    assert calls == {"deep": 4, "shallow": 4}


def test_step_cache_changes_the_frame_hash_and_stays_near_the_full_render(tmp_path, board, tiny_model):
    out = tmp_path / "out"
    cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "6", "--frames", "0", check=True)
    full = pixels(out, 0)
    proc = cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "6", "--frames", "0",
                   "--step-cache", "2")
    assert proc.returncode == 0 and "1 rendered" in proc.stderr, proc.stderr
    cached = pixels(out, 0)
    assert not np.array_equal(cached, full)
    assert psnr(cached, full) > 15  # an approximation of the same image, not another image
    record = json.loads((out / "run.json").read_text())["frames"][0]
    assert record["params"]["step_cache"] == 2


def test_compile_renders_the_same_frames_within_rounding_and_reports_compile_time(tmp_path, board, tiny_model):
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    run_cli("frames", board, "-o", eager, "--model", tiny_model, "--steps", "2", "--frames", "0,1", check=True)
    proc = run_cli("frames", board, "-o", compiled, "--model", tiny_model, "--steps", "2", "--frames", "0,1",
                   "--compile", "--json")
    assert proc.returncode == 0, proc.stderr
    done = [json.loads(line) for line in proc.stdout.splitlines() if '"frame_done"' in line]
    assert done[0]["compile_seconds"] > 0 and "compile_seconds" not in done[1]
    for i in (0, 1):
        assert psnr(pixels(compiled, i), pixels(eager, i)) > 30


def test_compiling_happens_in_the_warm_up_not_in_the_first_frame(tiny_model):
    """The warm-up goes through the pipeline itself, so the render reuses its graphs."""
    from torch._dynamo.utils import counters

    from framereel.backends.diffusers_backend import DiffusersBackend

    backend = DiffusersBackend(RenderSettings(model=str(tiny_model), compile=True, batch=2))
    frames = [Frame(i, "a lighthouse", None, i, 2, 7.5, 64, 64) for i in range(2)]
    backend.load()
    assert backend._warm_up(2, frames[0]) > 0
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    results = backend.render_batch(frames)
    assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled during the render
    assert "compile_seconds" not in results[0][1]  # already warm for this shape


def test_compile_without_a_cxx_compiler_is_one_line(tmp_path, board, tiny_model):
    import os

    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env["PATH"] = str(tmp_path / "empty-bin")  # no g++, c++ or clang++ to be found
    proc = run_cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--compile", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "--compile on a CPU needs a C++ compiler" in proc.stderr and "Traceback" not in proc.stderr
    doctor = run_cli("doctor", "--json", env=env)
    checks = json.loads(doctor.stdout)
    assert checks["--compile on cpu"]["detail"] == "no C++ compiler" and "apt install g++" in checks["--compile on cpu"]["fix"]


def test_batch_auto_is_measured_at_each_size_rendered(tmp_path, tiny_model, measurement_cache):
    """--batch auto times the UNet at the width and height the frames render at (one probe per size,
    cached per model, size, device, dtype and threads), not at the model's native size."""
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a"}, {"prompt": "b", "width": 128, "height": 96},
                                                   {"prompt": "c", "width": 128, "height": 96}])
    cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", "--width", "80",
        "--height", "64", check=True)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    keys = json.loads((measurement_cache / "batch.json").read_text())
    sizes = {key.split("/")[1] for key in keys if key.startswith(run["model"]["fingerprint"])}
    assert {"80x64", "128x96"} <= sizes
    assert set(run["batches"]) == {"80x64", "128x96"} and run["batch"] == run["batches"]["128x96"]
    # every frame rendered, whatever each size's batch
    assert sorted(p.name for p in (tmp_path / "out" / "frames").glob("*.png")) == [
        "frame_000.png", "frame_001.png", "frame_002.png"]


def test_batch_auto_keeps_batch_1_when_a_bigger_batch_is_not_faster(monkeypatch):
    """The measurement picks a bigger batch only when its frames/s beat batch 1's by BATCH_GAIN."""
    from framereel.backends import device as db

    def seconds(per_call):
        return lambda pipe, rows, size: per_call[rows]

    monkeypatch.setattr(db, "time_unet", seconds({1: 0.1, 2: 0.21, 4: 0.5}))  # batching is slower per frame
    assert db.measure_batch(None, (128, 128))["batch"] == 1
    monkeypatch.setattr(db, "time_unet", seconds({1: 0.1, 2: 0.19, 4: 0.36}))  # 1.11×: not enough to pad for
    assert db.measure_batch(None, (128, 128))["batch"] == 1
    monkeypatch.setattr(db, "time_unet", seconds({1: 0.1, 2: 0.15, 4: 0.2}))  # 2× the frames/s
    assert db.measure_batch(None, (128, 128))["batch"] == 4
