"""framereel: a storyboard of prompts → Stable Diffusion frames → a paced, cross-faded video.

The data path, one public function per stage::

    storyboard = framereel.load_storyboard("prompts.json")        # validate, resolve
    result = framereel.render(storyboard, "out/")                  # frames + run.json, resumable
    video = framereel.stitch("out/")                               # ffmpeg → out/video.mp4

Importing framereel is cheap: torch and diffusers load only when a backend needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import FramereelError
from .storyboard import Frame, Storyboard, frame_seed, load_storyboard

__all__ = [
    "Frame",
    "FramereelError",
    "RenderSettings",
    "Storyboard",
    "__version__",
    "frame_seed",
    "load_storyboard",
    "render",
    "stitch",
]


def __getattr__(name: str):
    # render/stitch pull in Pillow and numpy; keep `import framereel` and `--help` instant.
    if name == "render":
        from .runner import render

        return render
    if name == "stitch":
        from .stitch import stitch

        return stitch
    if name == "RenderSettings":
        from .render import RenderSettings

        return RenderSettings
    raise AttributeError(f"module 'framereel' has no attribute {name!r}")
