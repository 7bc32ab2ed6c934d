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
    batch: int = 0  # frames per UNet call; 0 = auto (see ``DiffusersBackend.batch``)
    compile: bool = False  # torch.compile the UNet (and VAE decoder)
    tiny_vae: str | None = None  # a TAESD-style AutoencoderTiny (folder or Hub id) to decode with
    step_cache: int = 0  # DeepCache-style: full UNet every N steps, shallow branch in between; 0/1 = off
    motion_adapter: str | None = None  # AnimateDiff MotionAdapter (folder, Hub id or "demo") for "clip" frames
    motion_loras: tuple[str, ...] = ()  # motion LoRAs, "PATH:WEIGHT"


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


def batch_key(frame: Frame) -> tuple | None:
    """Frames with equal keys can share one UNet call; ``None``: this frame renders alone (img2img)."""
    if frame.kind == "chain":
        return None
    if frame.kind == "clip":  # a clip is rendered whole, in one call
        return ("clip", frame.clip)
    return (frame.width, frame.height, frame.steps, frame.guidance)


def batch_groups(frames: list[Frame], size: int) -> list[list[Frame]]:
    """Split frames, in order, into groups of at most ``size`` consecutive frames that can share
    a UNet call; chained frames stay alone, so a parent is always rendered before its chain."""
    groups: list[list[Frame]] = []
    for f in frames:
        key = batch_key(f)
        last = groups[-1] if groups else None
        if key is not None and last and (len(last) < size or key[0] == "clip") and batch_key(last[0]) == key:
            last.append(f)
        else:
            groups.append([f])
    return groups


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


def check_speed_options(settings: RenderSettings, backend: str) -> None:
    """Refuse speed options the backend can't honour, rather than ignore them silently."""
    if settings.batch < 0 or settings.step_cache < 0:
        raise FramereelError("--batch and --step-cache take a whole number ≥ 0 (0: auto / off)")
    asked = [flag for flag, on in (("--batch N", settings.batch > 1), ("--compile", settings.compile),
                                   ("--tiny-vae", bool(settings.tiny_vae)), ("--step-cache", settings.step_cache > 1))
             if on]
    if backend in ("tt", "tt-demo") and settings.motion_adapter:
        raise FramereelError("--motion-adapter: the Tenstorrent backends render still frames only; "
                             "render clips with --backend diffusers")
    if backend in ("tt", "tt-demo") and asked:
        raise FramereelError(f"{', '.join(asked)}: the Tenstorrent backends render one traced frame at a time "
                             "and don't take these; drop them or use --backend diffusers")
    if settings.compile and settings.step_cache > 1:
        raise FramereelError("--compile and --step-cache don't combine (the cache switches the UNet's graph "
                             "every step); pick one")


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
    check_speed_options(settings, backend)
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
