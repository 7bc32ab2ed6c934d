"""Same seeds, same parameters → the same PNG bytes as recorded: key frames, a morph, an img2img chain
with motion and colour matching, at batch 1 and batch 4. The hashes were first recorded with
framereel 0.1.0 (before the render core was restructured), and re-recorded on 2026-11-26 when the
demo model was retrained to zero terminal SNR, by code that still gave 0.1.0's bytes on the old
weights. Demo model in float32 on one thread, on this project's CI machine kind (another CPU's
float32 kernels may round differently)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from framereel import RenderSettings, load_storyboard, render

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = {
    1: ["ad7e2b734cf0464b", "ff8e40f524bb5193", "4177db6cab1de7d0", "c50e25e48e538983", "fc016a49ca27c6a5",
        "602c97694e5f9491", "d0b2f1697709669d"],
    4: ["d03d664f8470e460", "ff8e40f524bb5193", "4177db6cab1de7d0", "490aa11c0743d73a", "42867ab930952f3e",
        "02e92d009eda089a", "ce0dcfa939aa4908"],
}


@pytest.mark.parametrize("batch", [1, 4])
def test_frames_are_byte_identical_to_the_recorded_ones(tmp_path, one_thread, batch):
    board = tmp_path / "board.json"  # the recorded run's storyboard path is part of run.json, not of the PNGs
    shutil.copy(FIXTURES / "golden-board.json", board)
    render(load_storyboard(board), tmp_path / "out", RenderSettings(model="demo", dtype="float32", batch=batch))
    got = [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted((tmp_path / "out" / "frames").glob("*.png"))]
    assert got == RECORDED[batch]
