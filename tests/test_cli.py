"""The command line end to end with the tiny model loaded through --model PATH: the first test in a real
subprocess, the rest in this process through click's CliRunner."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli, probe_video, run_cli, write_storyboard

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "lighthouse.json"


def test_make_renders_frames_manifest_and_video_then_rerun_renders_nothing(tmp_path, tiny_model):
    board = tmp_path / "lighthouse.json"
    shutil.copy(EXAMPLE, board)
    args = ["make", board, "-o", tmp_path / "out", "--model", tiny_model, "--width", "64", "--height", "64", "--steps", "2"]
    first = run_cli(*args, check=True)
    frames = sorted(p.name for p in (tmp_path / "out" / "frames").iterdir())
    assert frames == [f"frame_{i:03d}.png" for i in range(10)]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert [f["status"] for f in run["frames"]] == ["done"] * 10
    facts = probe_video(tmp_path / "out" / "video.mp4")
    assert (facts["codec"], facts["pix_fmt"], facts["frames"]) == ("h264", "yuv420p", 10)
    assert facts["seconds"] == pytest.approx(5.0)
    assert "10 rendered, 0 skipped of 10 frames" in first.stderr and "video:" in first.stderr

    again = run_cli(*args, "--json", check=True)
    events = [json.loads(line) for line in again.stdout.splitlines()]
    assert events[0]["event"] == "start" and events[0]["todo"] == 0
    assert not [e for e in events if e["event"] == "frame_done"]
    assert events[-1]["event"] == "video_written"

    restitched = run_cli("stitch", tmp_path / "out", "--fps", "4", "--video", tmp_path / "out" / "fast.webm", check=True)
    assert "fast.webm" in restitched.stderr
    assert probe_video(tmp_path / "out" / "fast.webm")["seconds"] == pytest.approx(2.5)


@pytest.mark.parametrize("content, message", [
    ('[{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": ""}]', 'bad.json: frame 3: "prompt" must be a non-empty string'),
    ('[{"prompt": "a", "sed": 3}]', 'did you mean "seed"?'),
    ("{oops", "bad.json: line 1 column 2: invalid JSON"),
])
def test_bad_storyboard_is_one_line_and_exit_2(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    proc = cli("make", tmp_path / "bad.json", "-o", tmp_path / "out", "--model", "demo")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_model_offline_says_what_to_do(tmp_path):
    board = write_storyboard(tmp_path / "p.json", [{"prompt": "a"}])
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    proc = run_cli("frames", board, "-o", tmp_path / "out", env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "CompVis/stable-diffusion-v1-4" in line and "--model demo" in line and "hf auth login" not in line
    proc = cli("frames", board, "-o", tmp_path / "out", "--model", tmp_path / "nowhere/model")
    assert proc.returncode == 2 and "no such model folder or file" in proc.stderr


def test_help_and_version():
    top = cli("--help", check=True).stdout
    assert "storyboard" in top.lower() and "make" in top and "stitch" in top
    make = cli("make", "--help", check=True).stdout
    for flag in ("--model", "--steps", "--guidance", "--seed", "--scheduler", "--redo", "--force", "--fps", "--json"):
        assert flag in make
    assert cli("--version", check=True).stdout.startswith("framereel, version")
