"""``framereel bench``: framereel's speed as ratios against the plain diffusers way, in one run.

Figures, each printed with the machine, dtype and settings, and written as JSON:

1. overhead — framereel's seconds per frame ÷ ``StableDiffusionPipeline.__call__`` with the same
   scheduler, steps, dtype, size and generator; interleaved, median of several frames;
2. fraction of peak — achieved UNet FLOP/s (FLOPs counted from the model's own shapes with
   ``torch.utils.flop_counter``) ÷ a large matmul's FLOP/s measured in the same run;
3. schedulers — DPM-Solver++ 25 steps vs PNDM 50 (the lesson's recipe): time ratio, and PSNR of
   each against its own scheduler at 100 steps, so the speed-up is not bought with broken images;
4. batching — frames/s when several frames share one UNet call (batch 1, 2, 4).

Models: ``demo`` (the shipped tiny model) and ``sd-shaped`` (SD 1.x's real UNet/VAE/CLIP
configs with random weights: the same FLOPs as SD 1.4), or any ``--model``.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .backends import RenderSettings
from .storyboard import Frame

PROMPTS = ["a large red circle on the left, night sky", "a small blue square at the top, day sky",
           "a yellow star in the center, sunset", "a purple triangle at the bottom, grass field"]


def machine() -> dict[str, Any]:
    import torch

    from .backends.diffusers_backend import cpu_supports_bf16

    return {"cpu": platform.processor() or platform.machine(), "cores": __import__("os").cpu_count(),
            "bf16": cpu_supports_bf16(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def build_sd_shaped(folder: Path) -> Path:
    """SD 1.x's UNet, VAE and CLIP text encoder configs with random weights, saved as a diffusers folder."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .backends.diffusers_backend import DEMO_MODEL_DIR

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, projection_dim=768))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(DEMO_MODEL_DIR / "tokenizer"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return folder


def unet_flops(unet, latent: int, batch: int = 2) -> float:
    """FLOPs of one UNet call, counted by tracing the model at this size (no hard-coded SD figures)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(batch, unet.config.in_channels, latent, latent, dtype=unet.dtype)
    ctx = torch.zeros(batch, 77, unet.config.cross_attention_dim, dtype=unet.dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(500), ctx)
    return float(counter.get_total_flops())


def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times)


def psnr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def run_bench(model: str = "demo", size: int | None = None, steps: int = 25, frames: int = 3,
              dtype: str = "auto", batches: tuple[int, ...] = (1, 2, 4), compare_schedulers: bool = True,
              out: Path | None = None, log=print) -> dict[str, Any]:
    """Run all four measurements; returns (and optionally writes) the results."""
    import torch

    from .backends.diffusers_backend import DiffusersBackend, make_scheduler

    with tempfile.TemporaryDirectory() as tmp:
        if model == "sd-shaped":
            log("building an SD-1.x-shaped random-weight model …")
            model = str(build_sd_shaped(Path(tmp) / "sd-shaped"))
        backend = DiffusersBackend(RenderSettings(model=model, dtype=dtype, device="cpu"))
        info = backend.describe()
        size = size or info.native_width
        backend.load()
        pipe = backend.pipe
        settings = {"model": info.id if not model.startswith(tmp) else "sd-shaped", "size": size, "steps": steps,
                    "dtype": backend.dtype, "device": backend.device, "frames": frames}
        report: dict[str, Any] = {"machine": machine(), "settings": settings}
        log(f"machine {report['machine']}\nsettings {settings}")

        def frame(i: int, n_steps: int = steps, guidance: float = 7.5) -> Frame:
            return Frame(i, PROMPTS[i % len(PROMPTS)], "", 1000 + i, n_steps, guidance, size, size)

        def plain(i: int, n_steps: int = steps):
            f = frame(i, n_steps)
            return pipe(f.prompt, num_inference_steps=n_steps, guidance_scale=f.guidance, width=size, height=size,
                        generator=torch.Generator("cpu").manual_seed(f.seed)).images[0]

        # 1. overhead, interleaved
        backend.render(frame(0))  # warm-up both paths
        plain(0)
        ours, theirs = [], []
        for i in range(frames):
            t0 = time.perf_counter()
            backend.render(frame(i))
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            plain(i)
            theirs.append(time.perf_counter() - t0)
        overhead = statistics.median(ours) / statistics.median(theirs)
        report["overhead"] = {"framereel_s": statistics.median(ours), "diffusers_s": statistics.median(theirs),
                              "ratio": round(overhead, 4)}
        log(f"1. overhead: framereel {statistics.median(ours):.3f}s/frame ÷ diffusers "
            f"{statistics.median(theirs):.3f}s/frame = {overhead:.3f}")

        # 2. fraction of peak (UNet only)
        latent = size // pipe.vae_scale_factor
        flops = unet_flops(pipe.unet, latent)
        x = torch.randn(2, pipe.unet.config.in_channels, latent, latent, dtype=pipe.unet.dtype)
        ctx = torch.randn(2, 77, pipe.unet.config.cross_attention_dim, dtype=pipe.unet.dtype)
        with torch.inference_mode():
            pipe.unet(x, torch.tensor(500), ctx)
            times = []
            for _ in range(max(3, frames)):
                t0 = time.perf_counter()
                pipe.unet(x, torch.tensor(500), ctx)
                times.append(time.perf_counter() - t0)
        achieved = flops / statistics.median(times)
        peak = matmul_peak(pipe.unet.dtype)
        report["peak"] = {"unet_flops_per_call": flops, "achieved_flops": achieved, "matmul_peak_flops": peak,
                          "fraction": round(achieved / peak, 4)}
        log(f"2. UNet: {flops / 1e9:.2f} GFLOP per call (CFG batch 2), {achieved / 1e9:.1f} GFLOP/s achieved, "
            f"matmul peak {peak / 1e9:.1f} GFLOP/s → {achieved / peak:.1%} of peak")

        # 3. DPM-Solver++ 25 vs PNDM 50, each against its own 100-step reference (meaningful for trained weights)
        sched: dict[str, Any] = {}
        for name, n in (("dpm++", 25), ("pndm", 50)) if compare_schedulers else ():
            pipe.scheduler = make_scheduler(name, pipe.scheduler.config)
            t0 = time.perf_counter()
            image = plain(1, n)
            seconds = time.perf_counter() - t0
            reference = plain(1, 100)
            sched[name] = {"steps": n, "seconds": seconds, "psnr_vs_100_steps": round(psnr(image, reference), 2)}
        pipe.scheduler = make_scheduler(backend.settings.scheduler, pipe.scheduler.config)
        if sched:
            sched["time_ratio_dpm25_over_pndm50"] = round(sched["dpm++"]["seconds"] / sched["pndm"]["seconds"], 3)
            report["schedulers"] = sched
        log("3. schedulers: skipped (random weights make image similarity meaningless)" if not sched else f"3. DPM++ 25 steps {sched['dpm++']['seconds']:.2f}s (PSNR {sched['dpm++']['psnr_vs_100_steps']} dB vs 100 steps) "
            f"vs PNDM 50 {sched['pndm']['seconds']:.2f}s (PSNR {sched['pndm']['psnr_vs_100_steps']} dB): "
            f"time ratio {sched['time_ratio_dpm25_over_pndm50']}")

        # 4. batching: several frames per UNet call
        batch_report = {}
        for b in batches:
            fs = [frame(i) for i in range(b)]
            embeds = torch.cat([backend._embed(f.prompt) for f in fs])
            negative = torch.cat([backend._embed("")] * b)
            gens = [torch.Generator("cpu").manual_seed(f.seed) for f in fs]
            t0 = time.perf_counter()
            with torch.inference_mode():
                pipe(prompt_embeds=embeds, negative_prompt_embeds=negative, num_inference_steps=steps,
                     guidance_scale=7.5, width=size, height=size, generator=gens)
            batch_report[b] = round(b / (time.perf_counter() - t0), 4)
        report["batching_frames_per_s"] = batch_report
        log("4. batching: " + ", ".join(f"batch {b}: {v:.3f} frames/s" for b, v in batch_report.items()))
    import resource

    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    log(f"peak resident memory of this process: {report['peak_rss_mb']} MB")
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"results written to {out}")
    return report
