"""run.json: versioned, and every version framereel has written still loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from framereel import FramereelError
from framereel.manifest import SCHEMA, Manifest, read_png_hash, write_frame_file

FIXTURES = Path(__file__).parent / "fixtures"


def test_a_version_1_run_json_loads_and_is_saved_as_the_current_version(tmp_path):
    shutil.copy(FIXTURES / "run-v1.json", tmp_path / "run.json")
    manifest = Manifest.load(tmp_path)
    assert manifest.run["model"] == {"id": "demo", "fingerprint": "e314eb01df00b229"}
    assert sorted(manifest.frames) == list(range(7))
    assert manifest.frames[5]["derived_from"] == {"parent": 4, "strength": 0.5}
    manifest.save()
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["schema"] == SCHEMA == 2
    assert [f["hash"] for f in saved["frames"]] == [f["hash"] for f in json.loads(
        (FIXTURES / "run-v1.json").read_text())["frames"]]


def test_a_run_json_from_a_newer_framereel_is_refused_in_one_line(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema": SCHEMA + 1, "frames": []}))
    with pytest.raises(FramereelError, match="newer than this framereel reads"):
        Manifest.load(tmp_path)


def test_writing_a_frame_over_a_finished_one_keeps_the_old_one(tmp_path):
    from PIL import Image

    from framereel.manifest import png_bytes

    def png(colour, digest):
        return png_bytes(Image.new("RGB", (8, 8), colour), {"framereel:hash": digest})

    path = write_frame_file(tmp_path, 3, png("red", "aaaa"))
    assert path == tmp_path / "frames" / "frame_003.png" and read_png_hash(path) == "aaaa"
    write_frame_file(tmp_path, 3, png("blue", "bbbb"))
    assert read_png_hash(path) == "bbbb"
    kept = list((tmp_path / "superseded").glob("frame_003.*.png"))
    assert len(kept) == 1 and read_png_hash(kept[0]) == "aaaa"
