"""The rendering options of a :class:`~framereel.settings.RenderSettings`, checked against the backend
registry and this machine's devices before the output folder is made (no model is resolved)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import FramereelError
from . import backend_class

DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_render_settings(settings, executor: str = "local", ray_address: str | None = None) -> None:
    """The rendering options of a :class:`~framereel.settings.RenderSettings`, checked before the
    output folder is made: by spelling, by the backend registry, and whether the device exists
    (no model is resolved, nothing is loaded)."""
    settings.check()
    if settings.backend != "auto":
        cls = backend_class(settings.backend)
        flags = settings.speed_flags()
        if flags and not cls.takes_speed_options:
            raise FramereelError(f"{', '.join(flags)}: {cls.speed_refusal}; drop them or use --backend diffusers")
    if settings.dtype not in DTYPES:
        raise FramereelError(f"--dtype {settings.dtype}: choose float32, bfloat16, float16 or auto")
    if not re.fullmatch(r"auto|cpu|mps|cuda|cuda:\d{1,3}|tt|tt:\d{1,3}", settings.device):
        raise FramereelError(f"--device {settings.device}: use auto, cpu, cuda, cuda:N or mps")
    if settings.device.startswith("cuda") or settings.device == "mps":
        import torch  # rendering imports it anyway; asking now keeps a refused run from making its folder

        if settings.device.startswith("cuda"):
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = int(settings.device.partition(":")[2] or 0)
            if index >= count:
                raise FramereelError(f"--device {settings.device}: " + (
                    "no CUDA GPU is visible to PyTorch; use --device cpu or auto" if not count
                    else f"PyTorch sees {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"))
        elif not torch.backends.mps.is_available():
            raise FramereelError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if settings.step_cache > 1000 or settings.batch > 64:
        raise FramereelError("--step-cache takes at most 1000 and --batch at most 64")
    vae = settings.tiny_vae
    if vae:
        path = Path(vae).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise FramereelError(f"--tiny-vae {vae}: no config.json there; pass a folder saved with "
                                 "AutoencoderTiny.save_pretrained, or a Hub id like madebyollin/taesd")
        if not path.is_dir() and (vae.startswith((".", "/", "~")) or vae.count("/") != 1):
            raise FramereelError(f"--tiny-vae {vae}: no such folder; pass a local folder or a Hub id like "
                                 "madebyollin/taesd")
    if executor == "ray" and ray_address is not None and not re.fullmatch(
            r"auto|local|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}", ray_address):
        raise FramereelError(f"--ray-address {ray_address}: give auto, HOST:PORT or ray://HOST:PORT")
