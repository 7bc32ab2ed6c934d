"""``plan``: which frames a run renders, from what is on disk — pure, no model, no files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_storyboard

from framereel import FramereelError, RenderSettings, load_storyboard
from framereel.backends.base import ModelInfo
from framereel.identity import RunIdentity
from framereel.manifest import Manifest
from framereel.runner import OnDisk, plan

IDENTITY = RunIdentity(RenderSettings(), ModelInfo("m", "fp", 64, 64), "diffusers", "float32")


def frames_of(tmp_path: Path, entries) -> list:
    board = load_storyboard(write_storyboard(tmp_path / "b.json", entries))
    return list(board.resolved(IDENTITY.model.defaults()).frames)


def on_disk(frames, finished=(), files=None) -> OnDisk:
    hashes = {f.index: IDENTITY.digest(f, image_digest=(files or {}).get) for f in frames if f.index in finished}
    return OnDisk(Manifest(Path("run.json"), {}, {}), hashes, files or {i: f"bytes-{i}" for i in finished})


CHAIN = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "b", "init": "previous", "strength": 0.5},
         {"prompt": "b", "init": "previous", "strength": 0.5}]


def test_nothing_on_disk_renders_everything_in_order(tmp_path):
    frames = frames_of(tmp_path, CHAIN)
    p = plan(frames, on_disk(frames), IDENTITY)
    assert [f.index for f in p.todo] == [0, 1, 2, 3] and p.skipped == []
    assert p.digests[2] == p.digests[3] == ""  # known once their parents are on disk


def test_finished_frames_are_skipped_and_redo_or_force_renders_them(tmp_path):
    frames = frames_of(tmp_path, CHAIN)
    disk = on_disk(frames, finished={0, 1, 2, 3}, files={i: f"bytes-{i}" for i in range(4)})
    assert plan(frames, disk, IDENTITY).skipped == [0, 1, 2, 3]
    assert [f.index for f in plan(frames, disk, IDENTITY, redo={1}).todo] == [1, 2, 3]  # its chain follows
    assert [f.index for f in plan(frames, disk, IDENTITY, force=True).todo] == [0, 1, 2, 3]


def test_a_changed_parent_image_makes_its_chain_stale(tmp_path):
    frames = frames_of(tmp_path, CHAIN)
    files = {i: f"bytes-{i}" for i in range(4)}
    disk = on_disk(frames, finished={0, 1, 2, 3}, files=files)
    files[1] = "other bytes"  # frame 1 was replaced since its children were rendered
    assert [f.index for f in plan(frames, disk, IDENTITY).todo] == [2, 3]


def test_only_limits_the_run_and_refuses_a_chain_without_its_parent(tmp_path):
    frames = frames_of(tmp_path, CHAIN)
    assert [f.index for f in plan(frames, on_disk(frames), IDENTITY, only=[0]).todo] == [0]
    with pytest.raises(FramereelError, match="frame 2 chains from frame 1, which is not rendered"):
        plan(frames, on_disk(frames), IDENTITY, only=[2])


def test_other_settings_make_finished_frames_stale(tmp_path):
    frames = frames_of(tmp_path, CHAIN[:2])
    disk = on_disk(frames, finished={0, 1})
    euler = RunIdentity(RenderSettings(scheduler="euler"), IDENTITY.model, "diffusers", "float32")
    assert [f.index for f in plan(frames, disk, euler).todo] == [0, 1]
