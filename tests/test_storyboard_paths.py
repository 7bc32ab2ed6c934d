"""The storyboard keys that name files (a clip's ``init_video``, ``lora`` in the defaults or a frame):
what they are relative to, and that a missing one is refused in one line before the model loads,
``--dry-run`` included (the README's Reliability section)."""

from __future__ import annotations

import json

from conftest import cli
from tiny_families import build_tiny_lora

from framereel import load_storyboard


def one_error(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def test_init_video_is_relative_to_the_storyboards_folder(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "in.mp4").write_bytes(b"not decoded when loading")
    (tmp_path / "other.mp4").write_bytes(b"next to the working directory, not the storyboard")
    board = tmp_path / "sub" / "board.json"
    board.write_text(json.dumps([{"prompt": "waves", "clip": 8, "init_video": "in.mp4"}]))
    monkeypatch.chdir(tmp_path)
    clip = load_storyboard(board).frames[0].clip
    assert clip.init_video == str((tmp_path / "sub" / "in.mp4").resolve())
    board.write_text(json.dumps([{"prompt": "waves", "clip": 8, "init_video": "other.mp4"}]))
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--motion-adapter", "demo", "--dry-run")
    assert 'board.json: frame 0: "init_video": other.mp4: no such file' in one_error(proc)
    assert not (tmp_path / "out").exists()


def test_lora_paths_are_relative_to_the_working_directory_and_checked_before_the_model_loads(
        tmp_path, tiny_model, monkeypatch):
    build_tiny_lora(tmp_path / "styles" / "ink")
    spec = "styles/ink/pytorch_lora_weights.safetensors"
    (tmp_path / "sub").mkdir()
    defaults = tmp_path / "sub" / "defaults.json"
    defaults.write_text(json.dumps({"defaults": {"lora": f"{spec}:0.5"}, "frames": [{"prompt": "a"}]}))
    frame = tmp_path / "sub" / "frame.json"
    frame.write_text(json.dumps([{"prompt": "a", "lora": spec}]))
    args = ("-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", "--device", "cpu")
    monkeypatch.chdir(tmp_path)  # the working directory holds styles/: both plan
    for board in (defaults, frame):
        plan = json.loads(cli("frames", board, *args, "--dry-run", "--json", check=True).stdout.splitlines()[-1])
        assert plan["todo"] == [0]
    monkeypatch.chdir(tmp_path / "sub")  # next to the storyboard is not where they are looked for
    for dry in (("--dry-run",), ()):
        line = one_error(cli("frames", defaults, *args, *dry))
        assert f'defaults.json: defaults: "lora" {spec}: no such file or folder' in line, dry
        line = one_error(cli("frames", frame, *args, *dry))
        assert f'frame 0: "lora" {spec}: no such file or folder' in line, dry
    assert not list((tmp_path / "out").glob("frames/*.png"))
    defaults.write_text(json.dumps({"defaults": {"lora": f"{spec}:heavy"}, "frames": [{"prompt": "a"}]}))
    line = one_error(cli("frames", defaults, *args, "--dry-run"))  # a weight that is not a number
    assert 'defaults.json: defaults: "lora"' in line and "must be a number" in line
