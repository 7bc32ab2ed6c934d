"""The render path with the tiny random-weight model, loaded through --model PATH like a user's."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import frames_bytes, write_storyboard
from PIL import Image

from framereel import FramereelError, RenderSettings, load_storyboard, render

PROMPTS = [{"prompt": f"a lighthouse, shot {i}"} for i in range(5)]


def settings(model):
    return RenderSettings(model=str(model))


@pytest.fixture(scope="module")
def backend(tiny_model):
    """One loaded tiny model shared by the tests here, as an interactive session would share it."""
    from framereel.backends import create_backend

    return create_backend(settings(tiny_model))



@pytest.fixture()
def board(tmp_path):
    return write_storyboard(tmp_path / "prompts.json", PROMPTS)


def quick(board, **kw):
    return load_storyboard(board, overrides={"steps": 3, **kw})


def test_render_twice_is_byte_identical_and_second_run_renders_nothing(tmp_path, board, tiny_model, backend):
    first = render(quick(board), tmp_path / "a", settings(tiny_model), backend=backend)
    assert first.rendered == [0, 1, 2, 3, 4]
    again = render(quick(board), tmp_path / "a", settings(tiny_model), backend=backend)
    assert again.rendered == [] and again.skipped == [0, 1, 2, 3, 4]
    render(quick(board), tmp_path / "b", settings(tiny_model), backend=backend)
    assert frames_bytes(tmp_path / "a") == frames_bytes(tmp_path / "b")
    images = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "a" / "frames").glob("*.png"))]
    assert not np.array_equal(images[0], images[1])  # frames get different seeds


def test_the_run_result_says_how_long_loading_the_model_took(tmp_path, board, tiny_model):
    result = render(quick(board), tmp_path / "out", RenderSettings(model=str(tiny_model), batch=1))  # loads its model
    assert 0 < result.load_seconds <= result.seconds


def test_a_frame_alone_equals_the_same_frame_of_the_full_run(tmp_path, board, tiny_model, backend):
    render(quick(board), tmp_path / "full", settings(tiny_model), backend=backend)
    alone = render(quick(board), tmp_path / "alone", settings(tiny_model), backend=backend, only=[3])
    assert alone.rendered == [3]
    assert sorted(frames_bytes(tmp_path / "alone")) == ["frame_003.png"]
    assert frames_bytes(tmp_path / "alone")["frame_003.png"] == frames_bytes(tmp_path / "full")["frame_003.png"]


def test_changed_prompt_rerenders_only_that_frame_and_keeps_the_old_one(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    render(quick(board), out, settings(tiny_model), backend=backend)
    before = frames_bytes(out)
    changed = [dict(p) for p in PROMPTS]
    changed[2]["prompt"] = "a lighthouse in a storm"
    write_storyboard(board, changed)
    result = render(quick(board), out, settings(tiny_model), backend=backend)
    assert result.rendered == [2]
    after = frames_bytes(out)
    assert [n for n in after if after[n] != before[n]] == ["frame_002.png"]
    kept = list((out / "superseded").glob("frame_002.*.png"))
    assert len(kept) == 1 and kept[0].read_bytes() == before["frame_002.png"]


def test_redo_and_force(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    render(quick(board), out, settings(tiny_model), backend=backend)
    assert render(quick(board), out, settings(tiny_model), backend=backend, redo=[1, 3]).rendered == [1, 3]
    assert render(quick(board), out, settings(tiny_model), backend=backend, force=True).rendered == [0, 1, 2, 3, 4]


def test_corrupt_frame_is_rerendered(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    render(quick(board), out, settings(tiny_model), backend=backend)
    good = frames_bytes(out)["frame_001.png"]
    (out / "frames" / "frame_001.png").write_bytes(good[: len(good) // 2])
    assert render(quick(board), out, settings(tiny_model), backend=backend).rendered == [1]
    assert frames_bytes(out)["frame_001.png"] == good


def test_manifest_records_every_resolved_parameter(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    render(quick(board, guidance=5.0), out, settings(tiny_model), backend=backend)
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "diffusers" and run["scheduler"] == "dpm++" and run["dtype"] in ("bfloat16", "float32")
    assert run["model"]["fingerprint"]
    frame = run["frames"][4]
    assert frame["status"] == "done" and frame["file"] == "frames/frame_004.png" and frame["seconds"] > 0
    assert {k: frame["params"][k] for k in ("prompt", "seed", "steps", "guidance", "width", "height")} == {
        "prompt": "a lighthouse, shot 4", "seed": 178, "steps": 3, "guidance": 5.0, "width": 64, "height": 64}
    meta = Image.open(out / "frames" / "frame_004.png").text
    assert meta["prompt"] == "a lighthouse, shot 4" and meta["seed"] == "178" and meta["steps"] == "3"
    assert meta["guidance"] == "5" and meta["scheduler"] == "dpm++" and meta["model"] == str(tiny_model.resolve())


def test_another_storyboard_in_the_same_folder_is_refused(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    render(quick(board), out, settings(tiny_model), backend=backend, only=[0])
    other = write_storyboard(tmp_path / "other.json", [{"prompt": "x"}])
    with pytest.raises(FramereelError, match="holds a run of another storyboard"):
        render(load_storyboard(other), out, settings(tiny_model), backend=backend)


def _plain_pipeline(model):
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(model), torch_dtype=torch.float32)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    return pipe


def test_parity_with_stable_diffusion_pipeline(tmp_path, board, tiny_model):
    import torch

    out = tmp_path / "out"
    run = render(quick(board), out, RenderSettings(model=str(tiny_model), dtype="float32", batch=1), only=[2])
    assert run.rendered == [2]
    expected = _plain_pipeline(tiny_model)(
        PROMPTS[2]["prompt"], num_inference_steps=3, guidance_scale=7.5, width=64, height=64,
        generator=torch.Generator().manual_seed(174 + 2)).images[0]
    ours = Image.open(out / "frames" / "frame_002.png")
    assert np.array_equal(np.asarray(ours), np.asarray(expected))


def test_batched_frames_are_what_the_pipeline_gives_for_a_batch_of_prompts(tmp_path, board, tiny_model):
    import torch

    out = tmp_path / "out"
    run = render(quick(board), out, RenderSettings(model=str(tiny_model), dtype="float32", batch=4),
                 only=[0, 1, 2, 3])
    assert run.rendered == [0, 1, 2, 3]
    assert json.loads((out / "run.json").read_text())["batch"] == 4
    expected = _plain_pipeline(tiny_model)(
        [p["prompt"] for p in PROMPTS[:4]], num_inference_steps=3, guidance_scale=7.5, width=64, height=64,
        generator=[torch.Generator().manual_seed(174 + i) for i in range(4)]).images
    for i in range(4):
        assert np.array_equal(np.asarray(Image.open(out / "frames" / f"frame_00{i}.png")), np.asarray(expected[i]))


def test_a_batched_frame_does_not_depend_on_its_batch_mates(tmp_path, board, tiny_model):
    """Padding every call to --batch rows makes a frame the same bytes in a full run, alone, or resumed."""
    full = render(quick(board), tmp_path / "full", RenderSettings(model=str(tiny_model), batch=4))
    assert full.rendered == [0, 1, 2, 3, 4]
    alone = render(quick(board), tmp_path / "alone", RenderSettings(model=str(tiny_model), batch=4), only=[2])
    assert alone.rendered == [2]
    partial = tmp_path / "partial"
    render(quick(board), partial, RenderSettings(model=str(tiny_model), batch=4), only=[1, 3])
    resumed = render(quick(board), partial, RenderSettings(model=str(tiny_model), batch=4))
    assert resumed.rendered == [0, 2, 4] and resumed.skipped == [1, 3]
    for name in (tmp_path / "full" / "frames").iterdir():
        assert (partial / "frames" / name.name).read_bytes() == name.read_bytes()
    assert (tmp_path / "alone" / "frames" / "frame_002.png").read_bytes() == (
        tmp_path / "full" / "frames" / "frame_002.png").read_bytes()


def test_batch_size_is_a_speed_setting_not_part_of_a_frames_identity(tmp_path, board, tiny_model):
    """Frames made with another --batch count as finished: the pixels differ only by rounding."""
    from framereel.bench import psnr

    out = tmp_path / "out"
    render(quick(board), out, RenderSettings(model=str(tiny_model), batch=4))
    batch4 = np.asarray(Image.open(out / "frames" / "frame_001.png"))
    again = render(quick(board), out, RenderSettings(model=str(tiny_model), batch=1))
    assert again.rendered == [] and again.skipped == [0, 1, 2, 3, 4]
    single = render(quick(board), tmp_path / "single", RenderSettings(model=str(tiny_model), batch=1), only=[1])
    assert single.rendered == [1]
    assert psnr(np.asarray(Image.open(tmp_path / "single" / "frames" / "frame_001.png")), batch4) > 35


def test_pndm_scheduler_and_long_prompt_warning(tmp_path, tiny_model):
    board = write_storyboard(tmp_path / "p.json", [{"prompt": " ".join(["lighthouse"] * 90)}])
    events = []
    render(load_storyboard(board, overrides={"steps": 4}), tmp_path / "out",
           RenderSettings(model=str(tiny_model), scheduler="pndm"), on_event=events.append)
    warnings = [e.message for e in events if e.name == "warning"]
    assert any("frame 0: prompt is 92 tokens" in w and "truncated" in w for w in warnings)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["scheduler"] == "pndm"


def test_kill_9_mid_run_leaves_no_partial_frame_and_resume_completes(tmp_path, tiny_model, backend):
    many = write_storyboard(tmp_path / "many.json", [{"prompt": f"shot {i}"} for i in range(12)])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "framereel", "frames", str(many), "-o", str(out), "--model", str(tiny_model),
           "--steps", "3", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "frames" / "frame_002.png").exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (out / "frames").glob("frame_*.png"))
    assert 3 <= len(done) < 12, "the run should have been killed part-way"
    for name in done:  # every frame file present is whole
        Image.open(out / "frames" / name).load()
    resumed = render(load_storyboard(many, overrides={"steps": 3}), out, settings(tiny_model), backend=backend)
    assert sorted(resumed.skipped + resumed.rendered) == list(range(12))
    assert set(resumed.skipped) >= {int(n[6:9]) for n in done}
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    reference = tmp_path / "ref"
    render(load_storyboard(many, overrides={"steps": 3}), reference, settings(tiny_model), backend=backend)
    assert frames_bytes(out) == frames_bytes(reference)


def test_folder_lock_stops_a_second_writer(tmp_path, board, tiny_model, backend):
    from framereel.manifest import folder_lock

    with folder_lock(tmp_path / "out"):
        with pytest.raises(FramereelError, match="in use by another framereel run"):
            render(quick(board), tmp_path / "out", settings(tiny_model), backend=backend)
    # released: a later run goes ahead
    assert render(quick(board), tmp_path / "out", settings(tiny_model), backend=backend, only=[0]).rendered == [0]


def test_editing_a_model_card_keeps_finished_frames(tmp_path, board, tiny_model):
    import shutil

    model = shutil.copytree(tiny_model, tmp_path / "model")
    out = tmp_path / "out"
    render(quick(board), out, settings(model), only=[0])
    (model / "README.md").write_text("# notes about this model, edited after rendering\n")
    again = render(quick(board), out, settings(model), only=[0])
    assert again.rendered == [] and again.skipped == [0]
    (model / "scheduler" / "scheduler_config.json").write_text(
        (model / "scheduler" / "scheduler_config.json").read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    assert render(quick(board), out, settings(model), only=[0]).rendered == [0]  # a config change does count
