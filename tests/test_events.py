"""Events are typed; ``--json`` prints them as a versioned interface."""

from __future__ import annotations

import json

from conftest import run_cli, write_storyboard

from framereel.events import EVENT_TYPES, EVENTS_VERSION, FrameDone, FrameStarted, event_fields


def test_json_lines_carry_the_event_name_version_and_fields(tmp_path, tiny_model):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a"}, {"prompt": "b"}])
    proc = run_cli("make", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", "--json", check=True)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-1] == "video_written"
    assert names.count("frame_done") == 2 and "step" not in names
    assert all(e["v"] == EVENTS_VERSION for e in events)
    done = [e for e in events if e["event"] == "frame_done"]
    assert set(event_fields(FrameDone)) <= set(done[0])
    assert done[0]["file"].endswith("frame_000.png") and done[0]["seconds"] > 0


def test_every_event_type_has_a_unique_name_and_flattens_its_facts():
    assert len({cls.name for cls in EVENT_TYPES}) == len(EVENT_TYPES)
    doc = FrameDone(3, "frames/frame_003.png", 1.5, "cpu", {"compile_seconds": 12.0}).to_json()
    assert doc == {"event": "frame_done", "v": EVENTS_VERSION, "index": 3, "file": "frames/frame_003.png",
                   "seconds": 1.5, "device": "cpu", "compile_seconds": 12.0}
    assert FrameStarted(0, "p", 4).to_json()["batch"] is None
