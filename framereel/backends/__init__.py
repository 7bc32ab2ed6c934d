"""Backends: load a model once, then turn one resolved :class:`~framereel.storyboard.Frame` into an image.

Every backend implements :class:`Backend`; the runner (``framereel.runner``) is the only caller,
so resume, seeds, naming and stitching never differ by backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ..errors import FramereelError
from ..storyboard import Frame

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
BACKENDS = ("auto", "diffusers", "tt", "tt-demo")
SCHEDULERS = ("dpm++", "pndm", "ddim", "euler", "euler-a", "heun", "unipc")


@dataclass(frozen=True)
class RenderSettings:
    """Run-wide rendering settings (what every frame of a run shares)."""

    model: str = DEFAULT_MODEL
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    scheduler: str = "dpm++"
    safety_checker: bool = True
    reset_device: bool = False  # Tenstorrent: `tt-smi -r` before opening the chip


@dataclass(frozen=True)
class ModelInfo:
    """What a backend knows about its model before loading weights."""

    id: str
    fingerprint: str  # a hub revision, or a hash of the local files
    native_width: int
    native_height: int
    recommended: dict[str, Any] = field(default_factory=dict)  # from the model folder's framereel.json


class Backend(Protocol):
    name: str
    device: str
    dtype: str

    def describe(self) -> ModelInfo:
        """Resolve the model (download if needed) without loading weights."""

    def load(self) -> None:
        """Load the weights once; called only if some frame needs rendering."""

    def count_tokens(self, text: str) -> int:
        """How many CLIP tokens ``text`` takes, start and end tokens included."""

    def render(self, frame: Frame) -> tuple[Image.Image, dict[str, Any]]:
        """Render one frame; returns the image and extra facts for the manifest."""

    def close(self) -> None:
        """Release the device."""


def expand_devices(spec: str | None) -> list[str] | None:
    """``--devices``: ``cuda:0,cuda:1`` as a list; ``all`` → every Tenstorrent chip, else every CUDA GPU, else the CPU."""
    if not spec:
        return None
    if spec.strip() == "all":
        import torch

        from .tt import board_info

        chips = len(board_info())
        if chips:
            return [f"tt:{i}" for i in range(chips)]
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    for d in devices:
        if not (d in ("cpu", "mps", "cuda") or (d.startswith(("cuda:", "tt:")) and d.split(":")[1].isdigit())):
            raise FramereelError(
                f"--devices: unknown device {d!r}; use cpu, mps, cuda, cuda:N or tt:N, comma-separated, or all")
    return devices


def create_backend(settings: RenderSettings) -> Backend:
    """The backend named by ``settings.backend``."""
    if settings.scheduler not in SCHEDULERS:
        raise FramereelError(
            f'unknown scheduler "{settings.scheduler}"; choose one of {", ".join(SCHEDULERS)}'
        )
    backend = settings.backend
    if backend == "auto":
        from .tt import tenstorrent_present

        backend = "tt" if tenstorrent_present() else "diffusers"
    if backend == "diffusers":
        from .diffusers_backend import DiffusersBackend

        return DiffusersBackend(settings)
    if backend == "tt":
        from .tt import TtBackend

        return TtBackend(settings)
    if backend == "tt-demo":
        from .tt import TtDemoBackend

        return TtDemoBackend(settings)
    raise FramereelError(f'unknown backend "{settings.backend}"; choose {", ".join(BACKENDS)}')
