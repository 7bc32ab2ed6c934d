"""The Tenstorrent backends against fakes: a fake tt-metal tree, a fake ttnn, a fake tt-smi.

No chip is here. The fake ttnn runs the trace's work with torch on the host; the fake demo behaves
like tt-metal's (exactly 10 prompts, 1-based names, one fixed seed).
"""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_storyboard
from PIL import Image

FAKES = Path(__file__).parent / "fake_tt"


@pytest.fixture()
def fake_env(tmp_path):
    """Environment for a subprocess that sees a fake tt-metal checkout, ttnn and tt-smi."""
    home = tmp_path / "tt-metal"
    shutil.copytree(FAKES / "tt_metal", home)
    log = tmp_path / "ttnn.log"
    env = {**os.environ, "TT_METAL_HOME": str(home), "FAKE_TTNN_LOG": str(log),
           "PYTHONPATH": str(FAKES), "PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("TT_METAL_ARCH_NAME", None)
    return env, log


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def frames_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


PROMPTS = [{"prompt": f"a lighthouse, shot {i}"} for i in range(3)]


def test_in_process_trace_compiled_once_per_run_and_images_reproducible(tmp_path, tiny_model, fake_env):
    env, log = fake_env
    board = write_storyboard(tmp_path / "b.json", PROMPTS + [{"prompt": "a lighthouse, shot 0", "morph": 1}, {"prompt": "end"}])
    args = ["frames", board, "--backend", "tt", "--model", tiny_model, "--scheduler", "pndm", "--steps", "4", "--quiet"]
    run_cli(*args, "-o", tmp_path / "a", env=env, check=True)
    calls = lines(log)
    assert calls[0].startswith("open 0 90112 789835776")
    assert [c.split()[0] for c in calls].count("capture") == 1
    assert [c.split()[0] for c in calls].count("execute") == 6  # 5 storyboard frames + 1 in-between
    assert calls[-2].startswith("release") and calls[-1] == "close 0"
    a = frames_bytes(tmp_path / "a")
    assert len(a) == 6
    # per-frame seeds: different frames differ; the morph in-between differs from its ends
    assert len(set(a.values())) == 6
    assert json.loads((tmp_path / "a" / "run.json").read_text())["backend"] == "tt"
    # a rerun renders nothing and never opens the chip
    log.unlink()
    run_cli(*args, "-o", tmp_path / "a", env=env, check=True)
    assert lines(log) == []
    # the same frames again, from scratch, on two fake chips with one worker each
    run_cli(*args, "-o", tmp_path / "b", "--devices", "tt:0,tt:1", env={**env, "FAKE_TTNN_CHIPS": "2"}, check=True)
    assert frames_bytes(tmp_path / "b") == a
    opened = sorted(c for c in lines(log) if c.startswith("open"))
    assert [c.split()[1] for c in opened] == ["0", "1"]


@pytest.mark.parametrize("extra, message", [
    (["--scheduler", "dpm++", "--steps", "4"], "PNDM scheduler only; pass --scheduler pndm"),
    (["--scheduler", "pndm", "--steps", "3"], "needs steps >= 4"),
    (["--scheduler", "pndm", "--steps", "4", "--width", "128"], "renders 64x64 only"),
    (["--scheduler", "pndm", "--steps", "4", "--chain"], "can't render chain frames"),
])
def test_unsupported_settings_fail_before_the_chip_opens(tmp_path, tiny_model, fake_env, extra, message):
    env, log = fake_env
    board = write_storyboard(tmp_path / "b.json", PROMPTS)
    proc = run_cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_model, *extra, env=env)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not [c for c in lines(log) if c.startswith("open")]


def test_device_in_bad_state_says_reset_and_reset_device_runs_tt_smi(tmp_path, tiny_model, fake_env):
    env, log = fake_env
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    args = ["frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_model, "--scheduler", "pndm",
            "--steps", "4"]
    proc = run_cli(*args, env={**env, "FAKE_TTNN_BAD_STATE": "1"})
    assert proc.returncode == 2 and "tt-smi -r" in proc.stderr and "--reset-device" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    proc = run_cli(*args, "--reset-device", "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert lines(log)[0] == "reset"


def test_environment_problems_are_one_line(tmp_path, fake_env):
    env, _ = fake_env
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    no_home = {k: v for k, v in env.items() if k != "TT_METAL_HOME"}
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env=no_home)
    assert proc.returncode == 2 and "TT_METAL_HOME is not set" in proc.stderr
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env={**env, "TT_METAL_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "is not a tt-metal tree" in proc.stderr
    no_ttnn = {**env, "PYTHONPATH": ""}
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env=no_ttnn)
    assert proc.returncode == 2 and "ttnn is not importable" in proc.stderr and "python_env" in proc.stderr
    for p in (proc,):
        assert "Traceback" not in p.stderr


def test_blackhole_boards_set_the_arch_unless_the_user_did(monkeypatch, tmp_path):
    from framereel.backends.tt import prepare_environment

    monkeypatch.delenv("TT_METAL_ARCH_NAME", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert prepare_environment(tmp_path, ["p150a"])["TT_METAL_ARCH_NAME"] == "blackhole"
    monkeypatch.setenv("TT_METAL_ARCH_NAME", "wormhole_b0")
    assert "TT_METAL_ARCH_NAME" not in prepare_environment(tmp_path, ["p300c"])
    monkeypatch.delenv("TT_METAL_ARCH_NAME")
    assert "TT_METAL_ARCH_NAME" not in prepare_environment(tmp_path, ["n300 L"])
    assert str(tmp_path) in os.environ["PYTHONPATH"].split(os.pathsep)


def demo_image(prompt: str) -> np.ndarray:
    base = np.random.default_rng(174).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    return base + np.uint8(sum(prompt.encode()) % 256)


@pytest.mark.parametrize("count", [1, 10, 11, 23])
def test_demo_fallback_runs_chunks_of_ten_and_maps_files_to_frames(tmp_path, fake_env, count):
    env, log = fake_env
    prompts = [{"prompt": f"shot number {i}"} for i in range(count)]
    board = write_storyboard(tmp_path / "b.json", prompts)
    proc = run_cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "ignores per-frame seeds, steps and guidance" in proc.stderr
    assert lines(log).count("demo 10") == -(-count // 10)
    for i in (0, count - 1):
        got = np.asarray(Image.open(tmp_path / "o" / "frames" / f"frame_{i:03d}.png"))
        assert np.array_equal(got, demo_image(prompts[i]["prompt"]))
    assert sorted(frames_bytes(tmp_path / "o")) == [f"frame_{i:03d}.png" for i in range(count)]
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert "ignores per-frame seeds" in run["notes"] and run["frames"][0]["seed_used"] == 174


def test_demo_fallback_resumes_with_only_the_missing_frames(tmp_path, fake_env):
    env, log = fake_env
    board = write_storyboard(tmp_path / "b.json", [{"prompt": f"shot {i}"} for i in range(23)])
    run_cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", "--frames", "0-14", "--quiet", env=env, check=True)
    assert lines(log).count("demo 10") == 2
    log.unlink()
    run_cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", "--quiet", env=env, check=True)
    assert lines(log) == ["demo 10"]  # the 8 missing frames, padded to one chunk
    assert len(frames_bytes(tmp_path / "o")) == 23


def test_device_is_closed_on_ctrl_c(tmp_path, tiny_model, fake_env, monkeypatch):
    env, log = fake_env
    for key in ("TT_METAL_HOME", "FAKE_TTNN_LOG", "PATH"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setattr(sys, "path", [str(FAKES), *sys.path])
    from framereel import RenderSettings, load_storyboard, render

    board = write_storyboard(tmp_path / "b.json", PROMPTS)

    def interrupt(event):
        if event.name == "frame_done":
            raise KeyboardInterrupt

    settings = RenderSettings(model=str(tiny_model), backend="tt", scheduler="pndm")
    with pytest.raises(KeyboardInterrupt):
        render(load_storyboard(board, overrides={"steps": 4}), tmp_path / "o", settings, on_event=interrupt)
    assert lines(log)[-1] == "close 0"


def test_doctor_on_this_machine(tmp_path):
    proc = run_cli("doctor", "--json", env={**os.environ, "HF_TOKEN": "hf_not_a_real_secret_42"})
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["framereel"]["detail"]
    assert report["ffmpeg"]["ok"] is True and report["libx264"]["ok"] is True
    assert "hf_not_a_real_secret_42" not in proc.stdout and "token set" in report["hugging face login"]["detail"]
    assert report["tenstorrent boards"]["detail"] == "none found"
    assert "backend diffusers on cpu" in report["auto picks"]["detail"]
