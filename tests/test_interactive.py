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
    assert "unknown command :bogus" in proc.stderr and ":steps N" in proc.stderr
    assert '"width" must be a multiple of 8 from 64 to 4096 (got 65)' in proc.stderr
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


@pytest.fixture(scope="module")
def session(tmp_path_factory, tiny_model):
    """A session on the tiny SD 1.x model, in this process; what it tells is in ``session.told``."""
    from framereel.interactive import Session
    from framereel.settings import RenderSettings

    told: list[str] = []
    s = Session(tmp_path_factory.mktemp("session") / "out", RenderSettings(model=str(tiny_model), batch=1),
                say=told.append, tell=told.append)
    s.told = told
    return s


def test_sizes_beyond_the_storyboard_limit_are_refused_by_the_repl_and_the_typed_methods(session):
    from framereel.errors import FramereelError
    from framereel.storyboard import MAX_SIDE, SIDE_RULE

    assert session.handle(":size 100000x100000")
    assert "width" not in session.params and session.told[-1] == f'"width" must be {SIDE_RULE} (got 100000)'
    session.handle(f":size {MAX_SIDE}x{MAX_SIDE}")
    assert (session.params["width"], session.params["height"]) == (MAX_SIDE, MAX_SIDE)
    for width, height in ((MAX_SIDE + 8, 64), (64, 100000), (65, 64), (56, 64)):
        with pytest.raises(FramereelError, match="must be a multiple of 8 from 64 to 4096"):
            session.set_size(width, height)
    assert (session.params["width"], session.params["height"]) == (MAX_SIDE, MAX_SIDE)
    session.set_size(64, 64)
    assert not (session.out_dir / "interactive").exists()  # made with the first image, not before


def test_the_repl_parses_its_commands_onto_the_typed_settings(session):
    from framereel.errors import FramereelError

    session.handle(":steps 5")
    session.handle(":guidance 3.5")
    session.handle(":seed 12")
    session.handle(":neg blur")
    assert session.current() == {"seed": 12, "scheduler": session.settings.scheduler, "steps": 5, "guidance": 3.5,
                                 "width": 64, "height": 64, "negative_prompt": "blur"}
    session.handle(":steps 1001")
    assert session.told[-1] == '"steps" must be an integer from 1 to 1000 (got 1001)' and session.params["steps"] == 5
    session.handle(":steps ²")
    assert session.told[-1].startswith(":steps N") and session.params["steps"] == 5
    with pytest.raises(FramereelError):  # all or nothing
        session.apply({"steps": 9, "guidance": 51})
    assert (session.params["steps"], session.params["guidance"]) == (5, 3.5)
    session.set_steps(9)
    assert session.params["steps"] == 9
    session.handle(":seed random")
    assert session.seed is None
    session.set_seed(174)


def test_the_scheduler_must_be_one_the_model_takes(session):
    from framereel.errors import FramereelError

    assert "flow-euler" not in session.schedulers() and "lcm" not in session.schedulers()  # SD 1.x
    session.handle(":scheduler flow-euler")
    assert session.settings.scheduler == "dpm++" and "this model takes" in session.told[-1]
    session.set_scheduler("euler")
    assert session.settings.scheduler == session.identity.settings.scheduler == "euler"
    with pytest.raises(FramereelError, match="this model takes"):
        session.set_scheduler("lcm")
    session.handle(":scheduler auto")  # the family's
    assert session.settings.scheduler == "dpm++"
