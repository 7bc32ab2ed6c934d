"""Same seeds, same parameters → the same PNG bytes as framereel 0.1.0 wrote (before the render core
was restructured): key frames, a morph, an img2img chain with motion and colour matching, at batch 1
and batch 4. The hashes were recorded with the shipped demo model in float32 on one thread, on this
project's CI machine kind (another CPU's float32 kernels may round differently)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from framereel import RenderSettings, load_storyboard, render

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = {
    1: ["2437dc21b8fbae73", "0b919912ca3b1843", "4b9e98e8385999f5", "aa2bf0c301160c11", "ca939a18ce81257c",
        "dcdd0c5c832eb8b0", "e160b80bc3a1cf65"],
    4: ["d8b17a77ecb6f8ff", "55ca025ac898afdc", "01f888853e06a9e1", "c4206e67fb4cae9a", "a0233e0218660a25",
        "10bc1b1124f44be0", "a60a047cb3cc21e8"],
}


@pytest.mark.parametrize("batch", [1, 4])
def test_frames_are_byte_identical_to_the_recorded_ones(tmp_path, one_thread, batch):
    board = tmp_path / "board.json"  # the recorded run's storyboard path is part of run.json, not of the PNGs
    shutil.copy(FIXTURES / "golden-board.json", board)
    render(load_storyboard(board), tmp_path / "out", RenderSettings(model="demo", dtype="float32", batch=batch))
    got = [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted((tmp_path / "out" / "frames").glob("*.png"))]
    assert got == RECORDED[batch]
