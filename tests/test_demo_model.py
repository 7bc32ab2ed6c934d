"""The shipped demo model follows its prompts, measured by reading the images back."""

import random

import numpy as np
import pytest
from PIL import Image

from framereel import RenderSettings, load_storyboard, render
from framereel.backends.resolve import DEMO_MODEL_DIR
from framereel.demo_model import scenes
from framereel.demo_model.evaluate import THRESHOLDS, evaluate
from framereel.demo_model.train import eval_prompts

pytestmark = pytest.mark.skipif(not (DEMO_MODEL_DIR / "unet").is_dir(), reason="demo model weights not in this tree")


def test_the_checker_reads_procedural_scenes_exactly():
    rng = random.Random(7)
    seen = 0
    for _ in range(300):
        scene = scenes.random_scene(rng)
        if (scene.colour, scene.background) in scenes.INVISIBLE:
            continue
        got = scenes.classify_image(scenes.draw_scene(scene))
        assert (got["colour"], got["shape"], got["background"]) == (scene.colour, scene.shape, scene.background)
        seen += 1
    assert seen > 250


def test_eval_prompts_are_held_out_and_parse():
    prompts = eval_prompts()
    assert len(prompts) >= 40 and len(set(prompts)) == len(prompts)
    for p in prompts:
        want = scenes.parse_caption(p)
        assert {"colour", "shape", "background"} <= set(want)
        assert (want["colour"], want["background"]) not in scenes.INVISIBLE


def test_demo_model_follows_its_prompts(tmp_path):
    report = evaluate("demo", tmp_path)
    for key, floor in THRESHOLDS.items():
        assert report[f"{key}_accuracy"] >= floor, (key, report[f"{key}_accuracy"], report["images"])


def test_morph_moves_the_colour_monotonically(tmp_path):
    board = tmp_path / "m.json"
    board.write_text('[{"prompt": "a large red circle in the center, day sky", "morph": 6},'
                     ' {"prompt": "a large blue circle in the center, night sky"}]')
    render(load_storyboard(board), tmp_path / "out", RenderSettings(model="demo"))
    blueness = []
    for i in range(8):
        image = Image.open(tmp_path / "out" / "frames" / f"frame_{i:03d}.png").convert("RGB")
        mask = scenes.shape_mask(image)
        rgb = np.median(np.asarray(image, dtype=float)[mask], axis=0)
        blueness.append(rgb[2] - rgb[0])  # position on the red → blue axis
    assert blueness[0] < -100 and blueness[-1] > 100  # the ends are red and blue
    steps = np.diff(blueness)
    assert (steps > -25).all(), blueness  # never turns back by more than a little


def test_the_retrain_command_writes_a_zero_terminal_snr_model_framereel_renders(tmp_path):
    """`train --quick` end to end, and `train --init` (stage 2 only, from the shipped weights): each
    writes a model folder whose scheduler samples on the schedule stage 2 trained on (v-prediction,
    zero terminal SNR, trailing timesteps), and `framereel frames --model DIR` renders from it."""
    import json
    import subprocess
    import sys

    from conftest import cli

    for name, extra in (("scratch", []), ("stage2", ["--init", str(DEMO_MODEL_DIR)])):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "framereel.demo_model.train", "--out", str(out), "--quick", *extra],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        sched = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
        assert (sched["prediction_type"], sched["rescale_betas_zero_snr"], sched["timestep_spacing"]) == (
            "v_prediction", True, "trailing")
        training = json.loads((out / "training.json").read_text())
        assert ("train_unet_s" in training["timings"]) == (name == "scratch") and "train_zsnr_s" in training["timings"]
    assert training["init"] == str(DEMO_MODEL_DIR)
    assert training["stage1"] == json.loads((DEMO_MODEL_DIR / "training.json").read_text())  # the record it started from
    board = tmp_path / "b.json"
    board.write_text('[{"prompt": "a red circle on the left, day sky"}]')
    cli("frames", board, "-o", tmp_path / "film", "--model", tmp_path / "stage2", "--steps", "2", check=True)
    assert Image.open(tmp_path / "film" / "frames" / "frame_000.png").size == (64, 64)
    bad = subprocess.run([sys.executable, "-m", "framereel.demo_model.train", "--out", str(tmp_path / "x"),
                          "--init", str(tmp_path / "film")], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a demo model folder" in bad.stderr and "Traceback" not in bad.stderr
