"""``--fast-path off|auto|on|max``: the loaded pipeline made faster without changing what it computes.

1. plan (:func:`plan_fast_path`): which of the steps below this model, device and run take, each
   skipped one with its reason; pure, before anything loads;
2. apply (:func:`apply_fast_path`) to the placed pipeline, in this order:

   * ``channels_last`` — the UNet and VAE weights in NHWC layout (convolutions without transposes);
   * ``fused_qkv`` — diffusers' ``fuse_qkv_projections``: one matmul for Q, K and V (K and V in
     cross-attention) through ``FusedAttnProcessor2_0``, which calls PyTorch's SDPA (flash /
     memory-efficient attention on CUDA). Without it diffusers already uses SDPA
     (``AttnProcessor2_0``); skipped with LoRAs, whose adapters sit on the separate projections;
   * ``compile`` — ``torch.compile`` (inductor) of the UNet and VAE decoder: on a CPU with weight
     freezing, on CUDA with CUDA graphs (``reduce-overhead``; ``max``: ``max-autotune``, which also
     tunes the matmul and convolution kernels: minutes more to compile). Compiled code is cached in
     ``cache_dir()/inductor`` across runs; the backend compiles in a warm-up call before the first
     frame of each shape, never inside a frame's time.

``auto`` takes what was measured to pay and to keep frames ≥ 30 dB from the plain path on this
kind of device (README "Speed"); ``on`` takes all three; ``max`` adds max-autotune on CUDA.

None of it changes what is computed, only the order of the floating-point sums, so it is left
out of a frame's hash, as ``--batch`` and ``--compile`` are: frames stay deterministic for one
machine and settings, and lie ≥ 40 dB from the plain path's (tests/test_fast.py; README "Speed").
It is recorded in ``run.json`` (``"fast_path"``). The tiny VAE, which does change pixels, stays
its own option (``--tiny-vae``), in the hash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import FramereelError
from ..settings import FAST_PATH_MODES

# what `auto` takes, per kind of device (measured: README "Speed")
AUTO = {"cuda": ("channels_last", "fused_qkv"), "cpu": (), "mps": ()}


@dataclass(frozen=True)
class FastPlan:
    """The fast-path steps a run takes (``on``) and those it skips, each with why (``skipped``)."""

    mode: str = "off"
    on: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    compile_mode: str | None = None  # torch.compile's mode (None: its default)

    def takes(self, step: str) -> bool:
        return step in self.on

    def without(self, step: str, reason: str) -> FastPlan:
        """This plan with ``step`` skipped for ``reason``."""
        return replace(self, on=tuple(s for s in self.on if s != step), skipped={**self.skipped, step: reason})

    def record(self) -> dict[str, Any]:
        """run.json's ``"fast_path"``."""
        out: dict[str, Any] = {"mode": self.mode, "on": list(self.on)}
        if self.compile_mode:
            out["compile_mode"] = self.compile_mode
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        return out


def check_mode(mode: str) -> str:
    if mode not in FAST_PATH_MODES:
        raise FramereelError(f"--fast-path {mode}: choose {', '.join(FAST_PATH_MODES)}")
    return mode


def plan_fast_path(mode: str, device: str, *, unet: bool, loras: bool, step_cache: bool,
                   compile_asked: bool = False) -> FastPlan:
    """The steps ``mode`` takes for a model (``unet``: a UNet model, else a transformer) on
    ``device``; ``loras``, ``step_cache``: the run has them; ``compile_asked``: ``--compile``."""
    if check_mode(mode) == "off":
        return FastPlan()
    kind = "cuda" if device.startswith("cuda") else device if device in AUTO else "cpu"
    wanted = list(AUTO[kind]) if mode == "auto" else ["channels_last", "fused_qkv", "compile"]
    skipped: dict[str, str] = {}
    fuse_refused = ("UNet models only" if not unet else "LoRAs adapt the separate Q, K, V projections" if loras
                    else "slower on a CPU (measured: README \"Speed\")" if kind == "cpu" else None)
    if "fused_qkv" in wanted and fuse_refused:
        skipped["fused_qkv"] = fuse_refused
    if "compile" in wanted and step_cache:
        skipped["compile"] = "--step-cache switches the UNet's graph every step"
    if "channels_last" in wanted and not unet:
        skipped["channels_last"] = "UNet models only"
    if compile_asked and "compile" not in wanted and "compile" not in skipped:
        wanted.append("compile")  # --compile with auto: compiled as asked, in the fast path's way
    on = tuple(step for step in wanted if step not in skipped)
    compile_mode = None
    if "compile" in on and kind == "cuda":
        compile_mode = "max-autotune" if mode == "max" else "reduce-overhead"
    return FastPlan(mode, on, skipped, compile_mode)


def apply_fast_path(pipe, plan: FastPlan) -> None:
    """Stage 2: channels-last and fused QKV on the placed pipeline (compiling: :func:`~framereel.backends.device.compile_pipeline`)."""
    import torch

    if plan.takes("channels_last"):
        for model in (pipe.unet, pipe.vae):
            model.to(memory_format=torch.channels_last)
    if plan.takes("fused_qkv"):
        from diffusers import AutoencoderKL

        pipe.fuse_qkv_projections(unet=True, vae=isinstance(pipe.vae, AutoencoderKL))


def use_compile_cache() -> str:
    """Keep inductor's compiled code across runs in ``cache_dir()/inductor`` (a
    ``TORCHINDUCTOR_CACHE_DIR`` of your own wins); returns the folder."""
    import torch._inductor.config as inductor
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from .common import cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    # torch writes its default there the first time it asks, which is not a choice of yours
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")
    inductor.fx_graph_cache = True
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]
