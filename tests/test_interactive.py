"""Interactive mode driven like a user: piped stdin in a subprocess, and a real pseudo-terminal."""

import json
import sys

import numpy as np
import pytest
from conftest import probe_video, run_cli
from PIL import Image


def interactive(tmp_path, tiny_model, script: str):
    return run_cli("interactive", "-o", tmp_path / "out", "--model", tiny_model, "--steps", "3", input=script)


def test_piped_session_renders_keeps_and_makes_a_video(tmp_path, tiny_model):
    script = "\n".join([
        "a lighthouse at dusk", "a lighthouse in fog", ":bogus", ":steps many", ":size 65x64", ":keep",
        ":seed 9", "a lighthouse in fog", ":keep", ":again", ":list", ":make",
    ]) + "\n"  # end of input ends the session
    proc = interactive(tmp_path, tiny_model, script)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    images = sorted((out / "interactive").glob("*.png"))
    assert [p.name for p in images] == ["0001-a-lighthouse-at-dusk.png", "0002-a-lighthouse-in-fog.png",
                                        "0003-a-lighthouse-in-fog.png", "0004-a-lighthouse-in-fog.png"]
    # stdout holds only result lines: paths with seed and seconds, the :list lines, the video line
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(str(images[0])) and "seed=174" in lines[0]
    assert "seed=9" in lines[2] and "seed=10" in lines[3]
    assert lines[4].startswith("0: a lighthouse in fog  seed=174") and lines[5].startswith("1: a lighthouse in fog  seed=9")
    assert "reused=2" in lines[6] and "rendered=0" in lines[6]
    # bad commands said so on stderr and the session went on
    assert "unknown command :bogus" in proc.stderr and ":steps N" in proc.stderr and ":size WxH" in proc.stderr
    # two prompts → two distinct images; the same prompt with another seed differs too
    pix = [np.asarray(Image.open(p)) for p in images]
    assert not np.array_equal(pix[0], pix[1]) and not np.array_equal(pix[1], pix[2])
    # the kept storyboard is a valid storyboard, and :make reused the kept images byte for byte
    board = json.loads((out / "storyboard.json").read_text())["frames"]
    assert [f["seed"] for f in board] == [174, 9]
    assert (out / "frames" / "frame_000.png").read_bytes() == images[1].read_bytes()
    assert (out / "frames" / "frame_001.png").read_bytes() == images[2].read_bytes()
    assert probe_video(out / "video.mp4")["frames"] == 2


def test_seed_command_is_deterministic_and_nothing_is_overwritten(tmp_path, tiny_model):
    first = interactive(tmp_path, tiny_model, ":seed 42\nred sky\nq\n")
    second = interactive(tmp_path, tiny_model, ":seed 42\nred sky\n:seed 43\nred sky\n:quit\n")
    assert first.returncode == second.returncode == 0
    files = sorted((tmp_path / "out" / "interactive").glob("*.png"))
    assert [p.name[:4] for p in files] == ["0001", "0002", "0003"]
    assert files[0].read_bytes() == files[1].read_bytes()
    assert files[1].read_bytes() != files[2].read_bytes()


def test_terminal_shows_the_prompt_and_ctrl_c_cancels_a_render(tmp_path, tiny_model):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "framereel", "interactive", "-o", str(tmp_path / "out"),
                                           "--model", str(tiny_model)], encoding="utf-8", timeout=120,
                          dimensions=(40, 200))
    try:
        child.expect("framereel>")
        child.sendline(":steps 1000")
        child.expect("framereel>")
        child.sendline("a very slow lighthouse")
        child.expect("rendering")
        child.sendcontrol("c")
        child.expect("cancelled")
        child.expect("framereel>")  # back at the prompt, the session goes on
        child.sendline(":steps 2")
        child.expect("framereel>")
        child.sendline("a quick lighthouse")
        child.expect("0001-a-quick-lighthouse.png")
        child.expect("framereel>")
        child.sendline("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert (tmp_path / "out" / ".history").read_text().count("a quick lighthouse") == 1
