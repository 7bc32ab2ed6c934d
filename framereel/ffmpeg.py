"""ffmpeg itself: which binary runs, and what it can encode. Used by the checks (validate, settings),
the encoder (video), beat detection and ``framereel doctor``."""

from __future__ import annotations

import shutil
import subprocess

from .errors import FramereelError


def find_ffmpeg() -> str:
    """The ffmpeg on PATH if there is one, else the static binary shipped by ``imageio-ffmpeg``."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise FramereelError("ffmpeg not found; install it (apt install ffmpeg) or `pip install imageio-ffmpeg`") from None


def has_encoder(ffmpeg: str, name: str) -> bool:
    """Whether ``ffmpeg -encoders`` lists a video encoder called ``name``."""
    listing = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("V") and parts[1] == name:
            return True
    return False
