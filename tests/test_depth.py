"""Depth maps through a transformers depth-estimation model given by path (a tiny random Depth Anything)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_depth import build_tiny_depth

from framereel.depth import estimate_depth
from framereel.errors import FramereelError


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory):
    return str(build_tiny_depth(tmp_path_factory.mktemp("depth")))


def test_depth_is_at_the_pictures_size_and_follows_the_picture(depth_model):
    rng = np.random.default_rng(0)
    a = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    b = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    da, db = estimate_depth(a, depth_model), estimate_depth(b, depth_model)
    assert da.shape == (48, 64) and da.dtype == np.float32
    assert np.isfinite(da).all()
    assert np.array_equal(da, estimate_depth(a, depth_model))  # the same picture, the same depth
    assert not np.allclose(da, db)


def test_a_folder_that_is_not_a_depth_model_is_one_line(tmp_path):
    with pytest.raises(FramereelError, match=r"--depth-model .*no config.json"):
        estimate_depth(Image.new("RGB", (8, 8)), str(tmp_path))
    with pytest.raises(FramereelError, match=r"--depth-model ./nowhere: no such folder"):
        estimate_depth(Image.new("RGB", (8, 8)), "./nowhere")
