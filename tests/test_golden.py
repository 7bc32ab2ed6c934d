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
    1: ["b9640cc848838e30", "083588117ae5e754", "a562d4e8e228fb99", "fe4724c2cd54fe61", "48d25859c6b0c9a4",
        "6358ee25ae4e6b48", "0ea4107b5ccf07a5"],
    4: ["b9640cc848838e30", "083588117ae5e754", "a2ca5dbf7f355f9f", "defa6a23640ea68a", "b45bfddc9ac39a61",
        "b3565bfd39a8f9c2", "0c6b80c0b0f68e57"],
}


@pytest.mark.parametrize("batch", [1, 4])
def test_frames_are_byte_identical_to_the_recorded_ones(tmp_path, one_thread, batch):
    board = tmp_path / "board.json"  # the recorded run's storyboard path is part of run.json, not of the PNGs
    shutil.copy(FIXTURES / "golden-board.json", board)
    render(load_storyboard(board), tmp_path / "out", RenderSettings(model="demo", dtype="float32", batch=batch))
    got = [hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted((tmp_path / "out" / "frames").glob("*.png"))]
    assert got == RECORDED[batch]
