"""The shipped demo motion module moves shapes the prompted way, measured by tracking the shape."""

import json
import random

import pytest

from framereel.backends.animatediff import DEMO_MOTION_DIR
from framereel.demo_model import motion_scenes
from framereel.demo_model.evaluate_motion import THRESHOLDS, evaluate

pytestmark = pytest.mark.skipif(not (DEMO_MOTION_DIR / "config.json").is_file(),
                                reason="demo motion module not in this tree")


def test_the_tracker_reads_procedural_clips_exactly():
    rng = random.Random(3)
    for kind in ("right", "left", "falling", "rising"):
        for _ in range(10):
            m = motion_scenes.random_motion(rng, kind)
            if (m.colour, m.background) in {("white", "white background"), ("black", "night sky")}:
                continue
            assert motion_scenes.moved_as_asked(kind, motion_scenes.track(motion_scenes.draw_clip(m, 8)))
            opposite = {"right": "left", "left": "right", "falling": "rising", "rising": "falling"}[kind]
            assert not motion_scenes.moved_as_asked(opposite, motion_scenes.track(motion_scenes.draw_clip(m, 8)))


def test_held_out_motion_captions_are_never_training_captions():
    from framereel.demo_model.train_motion import training_caption

    held = motion_scenes.held_out_captions()
    rng = random.Random(0)
    for m in motion_scenes.eval_motions():
        assert all(training_caption(m, rng, held) not in held for _ in range(20))


@pytest.mark.slow
def test_demo_motion_module_moves_the_prompted_way_and_smoothly():
    """The issue's targets on the 12 held-out clips: the shape moves the asked way in >= 70 % of them
    (measured 11 of 12 in bf16 and in fp32), and the clips' frame-to-frame change is steadier than a
    latent morph's over the same prompts, with no frame changing more than twice the median."""
    report = evaluate("demo")
    assert report["prompts"] == 12
    assert report["direction_accuracy"] >= THRESHOLDS["direction_accuracy"], report["clips"]
    assert report["clip_change_variance"] < 0.25 * report["morph_change_variance"]  # measured 3.3 vs 82.6
    assert report["clips_smoother_than_morph"] >= 0.9  # measured 12 of 12
    assert report["clips_without_jumps"] >= 0.75 > report["morphs_without_jumps"]  # measured 12 of 12 vs 0 of 12


def test_the_retrain_command_runs_and_teaches_only_the_motion_words(tmp_path):
    """`train_motion --quick --stage 3` end to end: an adapter diffusers loads, and a text encoder in
    which every embedding row but the motion words' is the demo model's, bit for bit."""
    import subprocess
    import sys

    import torch
    from diffusers import MotionAdapter
    from safetensors.torch import load_file

    from framereel.demo_model.train_motion import WEIGHTS

    out = tmp_path / "adapter"
    proc = subprocess.run([sys.executable, "-m", "framereel.demo_model.train_motion", "--out", str(out), "--quick",
                           "--stage", "3", "--set", "batch=1"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    MotionAdapter.from_pretrained(out)
    training = json.loads((out / "training.json").read_text())
    assert training["config"]["batch"] == 1 and {"moving</w>", "falling</w>"} <= set(training["motion_words"])
    assert "right</w>" not in training["motion_words"]  # a position word stills use: never retaught
    before = load_file(WEIGHTS / "text_encoder" / "model.safetensors")
    after = load_file(out / "text_encoder" / "model.safetensors")
    key = next(k for k in before if "token_embedding" in k)
    changed = set((before[key] != after[key]).any(dim=1).nonzero().flatten().tolist())
    from transformers import CLIPTokenizer

    words = set(CLIPTokenizer.from_pretrained(WEIGHTS / "tokenizer").convert_tokens_to_ids(training["motion_words"]))
    assert changed and changed <= words
    assert all(torch.equal(before[k], after[k]) for k in before if k != key)

    bad = subprocess.run([sys.executable, "-m", "framereel.demo_model.train_motion", "--out", str(out), "--quick",
                          "--set", "btach=2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no MotionConfig field 'btach'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "framereel.demo_model.train_motion", "--out", str(out), "--quick",
                          "--base", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--base" in bad.stderr and "not a demo model folder" in bad.stderr
    assert "Traceback" not in bad.stderr
