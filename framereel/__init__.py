"""framereel: a storyboard of prompts → Stable Diffusion frames → a paced, cross-faded video.

The data path, one public function per stage::

    storyboard = framereel.load_storyboard("prompts.json")        # validate, resolve
    result = framereel.render(storyboard, "out/")                  # frames + run.json, resumable
    video = framereel.stitch("out/")                               # ffmpeg → out/video.mp4

Importing framereel is cheap: torch and diffusers load only when a backend needs them.
The modules follow the data path: loader → storyboard → backends (via runner) → manifest → video.
"""

from __future__ import annotations

from . import openmp  # noqa: F401  (first: sets how OpenMP threads wait before torch loads)
from ._version import __version__
from .deforum import import_deforum
from .errors import FramereelError
from .loader import load_storyboard
from .runner import RunResult, render
from .settings import Parallelism, RenderSettings, StitchSettings
from .storyboard import Frame, Storyboard, frame_seed
from .video import stitch

__all__ = [
    "Frame",
    "FramereelError",
    "Parallelism",
    "RenderSettings",
    "StitchSettings",
    "RunResult",
    "Storyboard",
    "__version__",
    "frame_seed",
    "import_deforum",
    "load_storyboard",
    "render",
    "stitch",
]
