"""Several worker processes render the same frames as one; a crashed worker loses nothing."""

import json

import pytest
from conftest import FILM, ONE_THREAD, frames_bytes, run_cli, write_storyboard


def test_two_workers_render_exactly_what_one_does(tmp_path, tiny_model):
    board = write_storyboard(tmp_path / "film.json", FILM)
    common = ["frames", board, "--model", tiny_model, "--steps", "3", "--quiet"]
    run_cli(*common, "-o", tmp_path / "one", env=ONE_THREAD, check=True)
    run_cli(*common, "-o", tmp_path / "two", "--workers", "2", env=ONE_THREAD, check=True)
    one, two = frames_bytes(tmp_path / "one"), frames_bytes(tmp_path / "two")
    assert len(one) == 8 and one == two
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    devices = {f["device"] for f in run["frames"]}
    assert devices <= {"cpu:0", "cpu:1"}  # which worker takes which job depends on who loads first
    # the chain (frames 4-6 here: key 4, chained 5 and 6) was rendered by one worker, in order
    assert len({run["frames"][i]["device"] for i in (4, 5, 6)}) == 1


def test_a_crashed_worker_gives_its_frame_back(tmp_path, tiny_model):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": f"shot {i}"} for i in range(5)])
    proc = run_cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", "--workers", "2",
                   "--batch", "4", env={**ONE_THREAD, "FRAMEREEL_FAULT": "crash:2"})
    assert proc.returncode == 0, proc.stderr
    # 4 frames per call: the whole batch goes back
    assert "frames 0, 1, 2, 3 go back to the queue" in proc.stderr and "died" in proc.stderr
    assert sorted(frames_bytes(tmp_path / "out")) == [f"frame_{i:03d}.png" for i in range(5)]
    reference = tmp_path / "ref"
    run_cli("frames", board, "-o", reference, "--model", tiny_model, "--steps", "2", "--batch", "4", "--quiet",
            env=ONE_THREAD, check=True)
    assert frames_bytes(tmp_path / "out") == frames_bytes(reference)


def test_a_worker_that_dies_mid_message_breaks_only_its_own_pipe(tmp_path, tiny_model):
    """A worker killed halfway through sending (a torn message on its pipe): the other worker's
    messages still arrive, the torn job goes back to the queue, and every frame is rendered."""
    board = write_storyboard(tmp_path / "b.json", [{"prompt": f"shot {i}"} for i in range(5)])
    proc = run_cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", "--workers", "2",
                   "--batch", "1", env={**ONE_THREAD, "FRAMEREEL_FAULT": "torn:2"}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "frame 2 goes back to the queue" in proc.stderr and "died" in proc.stderr
    assert sorted(frames_bytes(tmp_path / "out")) == [f"frame_{i:03d}.png" for i in range(5)]


def test_subprocesses_share_the_test_sessions_batch_measurement(tmp_path, tiny_model, measurement_cache):
    """A ONE_THREAD subprocess reads --batch auto from the session's measurement cache, as the test
    process does, so both render in the same batches (bf16 bytes depend on the batch); it never
    measures on its own into the user's cache folder."""
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a"}])
    home = tmp_path / "home"
    run_cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", "1", "--quiet",
            env={**ONE_THREAD, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}, check=True)
    assert not (home / ".cache" / "framereel").exists()
    assert json.loads((measurement_cache / "batch.json").read_text())


@pytest.mark.parametrize("spec, message", [("gpu7", "unknown device 'gpu7'"), ("cuda:x", "unknown device")])
def test_bad_devices_are_one_line(tmp_path, spec, message):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a"}])
    proc = run_cli("frames", board, "-o", tmp_path / "out", "--model", "demo", "--devices", spec)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ray_actors_render_exactly_what_one_process_does(tmp_path, tiny_model):
    pytest.importorskip("ray")
    board = write_storyboard(tmp_path / "film.json", FILM)
    common = ["frames", board, "--model", tiny_model, "--steps", "3", "--quiet"]
    run_cli(*common, "-o", tmp_path / "one", env=ONE_THREAD, check=True)
    run_cli(*common, "-o", tmp_path / "ray", "--workers", "2", "--executor", "ray", env=ONE_THREAD, check=True)
    assert frames_bytes(tmp_path / "ray") == frames_bytes(tmp_path / "one")
    devices = {f["device"] for f in json.loads((tmp_path / "ray" / "run.json").read_text())["frames"]}
    assert devices <= {"cpu:0", "cpu:1"}
