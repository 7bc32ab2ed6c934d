"""Finishing stages that run after the frames: AI upscaling, learned in-betweens, cuts on the beat.

* :mod:`.upscale` — any super-resolution model file spandrel loads, tiled, cached in ``out/upscaled/``;
* :mod:`.interpolate` — RIFE in-betweens inside continuous runs only, cached in ``out/interpolated/``;
* :mod:`.beats` — librosa beat tracking → a storyboard whose cuts land on beats.

Every output is a PNG written atomically whose metadata carries the hash of everything that
decides its pixels, so a killed stage resumes where it stopped and a rerun computes only what
changed; ``run.json`` records each stage's settings, outputs and their hashes under ``finishing``.
"""

