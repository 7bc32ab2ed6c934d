"""Fake of tt-metal's SD demo: exactly 10 prompts, 1-based file names, one fixed seed for all."""

import json
import os

import numpy as np
from PIL import Image


def test_demo(input_path):
    with open(input_path) as f:
        prompts = [item["prompt"] for item in json.load(f)]
    num_prompts = 10
    assert len(prompts) >= num_prompts, "list index out of range"  # fewer than 10 crash, as in the real demo
    with open(os.environ.get("FAKE_TTNN_LOG", os.devnull), "a") as log:
        log.write(f"demo {len(prompts)}\n")
    rng = np.random.default_rng(174)
    base = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
    for i, prompt in enumerate(prompts[:num_prompts], start=1):
        shift = sum(prompt.encode()) % 256
        Image.fromarray(base + np.uint8(shift)).save(f"input_data_{i}_512x512_ttnn.png")
