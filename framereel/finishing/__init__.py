"""Finishing stages that run after the frames: AI upscaling, learned in-betweens, cuts on the beat.

* :mod:`.upscale` — any super-resolution model file spandrel loads, tiled, cached in ``out/upscaled/``;
* :mod:`.interpolate` — RIFE in-betweens inside continuous runs only, cached in ``out/interpolated/``;
* :mod:`.beats` — librosa beat tracking → a storyboard whose cuts land on beats.

Every output is a PNG written atomically whose metadata carries the hash of everything that
decides its pixels, so a killed stage resumes where it stopped and a rerun computes only what
changed; ``run.json`` records each stage's settings, outputs and their hashes under ``finishing``.
"""

from .beats import BeatGrid, cut_report, find_beats, fit_to_beats, time_storyboard
from .interpolate import InterpolateSpec, parse_interpolate
from .upscale import UpscaleSpec, parse_upscale, upscale

__all__ = [
    "BeatGrid",
    "InterpolateSpec",
    "UpscaleSpec",
    "cut_report",
    "find_beats",
    "fit_to_beats",
    "parse_interpolate",
    "parse_upscale",
    "time_storyboard",
    "upscale",
]
