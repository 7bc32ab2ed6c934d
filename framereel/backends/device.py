"""The device side of the diffusers backend: which device and dtype (``auto``), how many frames
per call (``--batch auto``, measured), and placing and compiling the loaded pipeline
(``--offload``, ``--vae-tiling``, ``--attention-slicing``, ``--compile``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..settings import RenderSettings


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX512-BF16 or AMX on x86, BF16 on Arm)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16", " bf16"))


def pick_device(requested: str) -> tuple[str, str]:
    """Resolve ``auto`` to cuda → mps → cpu; returns (device, why)."""
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise FramereelError(f"--device {requested}: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise FramereelError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
        return requested, "asked for"
    if torch.cuda.is_available():
        return "cuda", f"CUDA GPU found ({torch.cuda.get_device_name(0)})"
    if torch.backends.mps.is_available():
        return "mps", "Apple GPU (MPS) found"
    return "cpu", "no CUDA or MPS GPU found"


def pick_dtype(requested: str, device: str) -> str:
    """fp16 on GPUs, bf16 on CPUs that have it, else fp32; ``requested`` overrides."""
    if requested != "auto":
        if requested not in ("float32", "bfloat16", "float16"):
            raise FramereelError(f"--dtype {requested}: choose float32, bfloat16, float16 or auto")
        return requested
    if device.startswith("cuda") or device == "mps":
        return "float16"
    return "bfloat16" if cpu_supports_bf16() else "float32"


BATCH_CANDIDATES = (1, 2, 4)
BATCH_GAIN = 1.25  # a batch size must give this many times the frames/s of batch 1 to be picked
PROBE_LIMIT_SECONDS = 1.0  # a UNet call slower than this at batch 1: batching is not probed (CPU, SD-sized)


def time_unet(pipe, rows: int, size: tuple[int, int], repeats: int = 2) -> float:
    """Seconds per UNet call for ``rows`` frames of ``size`` (width, height) with classifier-free
    guidance (best of ``repeats``)."""
    import time

    import torch

    unet = pipe.unet
    width, height = (side // pipe.vae_scale_factor for side in size)
    sample = torch.zeros(2 * rows, unet.config.in_channels, height, width, dtype=unet.dtype, device=unet.device)
    context = torch.zeros(2 * rows, 77, unet.config.cross_attention_dim, dtype=unet.dtype, device=unet.device)
    best = math.inf
    with torch.inference_mode():
        for i in range(repeats + 1):  # the first call warms up
            if unet.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            unet(sample, 500, encoder_hidden_states=context)
            if unet.device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                best = min(best, time.perf_counter() - t0)
    return best


def measure_batch(pipe, size: tuple[int, int]) -> dict[str, Any]:
    """``--batch auto``: time the UNet at batch 1, 2 and 4 for frames of ``size`` (width, height, as
    rendered) and pick the batch with the most frames/s,
    if it gives at least ``BATCH_GAIN``× batch 1's (padding a short run's last call must not eat the
    gain); 1 without probing when one call already takes over a second (SD-sized models on a CPU)."""
    seconds = {1: time_unet(pipe, 1, size)}
    if seconds[1] <= PROBE_LIMIT_SECONDS:
        for rows in BATCH_CANDIDATES[1:]:
            seconds[rows] = time_unet(pipe, rows, size)
    per_frame = {rows: t / rows for rows, t in seconds.items()}
    best = min(per_frame, key=per_frame.get)
    batch = best if per_frame[1] / per_frame[best] >= BATCH_GAIN else 1
    return {"batch": batch, "seconds_per_call": {str(k): round(v, 4) for k, v in seconds.items()}}


VAE_TILE = 512  # --vae-tiling decodes frames larger than this in tiles of this size (pixels)


def place_pipeline(pipe, device: str, settings: RenderSettings):
    """Move the pipeline to its device, or set up accelerate's CPU offload (``--offload``), and
    the memory savers (``--vae-tiling``, ``--attention-slicing``)."""
    if settings.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif settings.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
        vae = pipe.vae
        if hasattr(vae, "tile_sample_min_size") and hasattr(vae, "tile_latent_min_size"):
            # diffusers' tile is the VAE's sample_size (1024 for SDXL's), which never tiles a 1024² frame
            vae.tile_sample_min_size = min(vae.tile_sample_min_size, VAE_TILE)
            vae.tile_latent_min_size = vae.tile_sample_min_size // (2 ** (len(vae.config.block_out_channels) - 1))
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    return pipe


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile would build CPU kernels with ($CXX, g++, c++ or clang++), if any."""
    import shutil

    found = (shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)
    return next((path for path in found if path), None)


def compile_pipeline(pipe, device: str, mode: str | None = None) -> None:
    """``--compile`` (and ``--fast-path``'s compile): torch.compile the UNet and the VAE decoder in
    place, with inductor's ``mode`` (CUDA: ``reduce-overhead`` = CUDA graphs, ``max-autotune``);
    on CPUs with weight freezing (constant-folded, pre-packed weights: the TORCHINDUCTOR_FREEZING=1
    setting). Compiled code is kept across runs (:func:`~framereel.backends.fast.use_compile_cache`)."""
    from .fast import use_compile_cache

    if device == "cpu" and cxx_compiler() is None:
        raise FramereelError("--compile on a CPU needs a C++ compiler and none was found; "
                             "install one (apt install g++, or set CXX) or drop --compile")
    use_compile_cache()
    import torch._dynamo.config as dynamo

    dynamo.automatic_dynamic_shapes = False  # every call has a fixed shape (padded batch): one static graph each
    dynamo.recompile_limit = max(dynamo.recompile_limit, 64)  # a graph per size and batch a run renders at
    if device == "cpu" and "TORCHINDUCTOR_FREEZING" not in os.environ:  # the user's setting wins
        import torch._inductor.config

        torch._inductor.config.freezing = True
    options = {"mode": mode} if mode else {}
    (pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer).compile(**options)
    pipe.vae.decoder.compile(**options)
