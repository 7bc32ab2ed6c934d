"""``framereel bench``: framereel's speed as ratios against the plain diffusers way, in one run.

Figures, each printed with the machine, dtype and settings, and written as JSON:

1. overhead — framereel's seconds per frame ÷ ``StableDiffusionPipeline.__call__`` with the same
   scheduler, steps, dtype, size and generator; interleaved, median of several frames;
2. fraction of peak — achieved UNet FLOP/s (FLOPs counted from the model's own shapes with
   ``torch.utils.flop_counter``) ÷ a 2048² matmul's FLOP/s, the two timed in turn in the same
   rounds, and with ``fast_path``, the fast path's UNet too;
3. schedulers — DPM-Solver++ 25 steps vs PNDM 50 (the lesson's recipe): time ratio, and PSNR of
   each against its own scheduler at 100 steps, so the speed-up is not bought with broken images;
4. batching — frames/s with ``--batch 1, 2, 4`` (several frames per UNet call), and how close
   the batched frames are to batch 1's;
5. accelerations — ``--step-cache 2``/``3``, ``--tiny-vae``, (with ``compile=True``)
   ``--compile`` and (with ``fast_path``) ``--fast-path``: time per frame ÷ the plain render's, and PSNR against the plain render;
6. memory — peak resident memory of a fresh ``framereel frames`` process rendering one frame.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FramereelError
from .settings import RenderSettings
from .storyboard import Frame

FIGURES = ("overhead", "peak", "schedulers", "batching", "accelerations", "memory")
SIMILARITY_THRESHOLD_DB = 30.0  # an acceleration may be a default only if its frames stay this close to the plain ones
PROMPTS = ["a large red circle on the left, night sky", "a small blue square at the top, day sky",
           "a yellow star in the center, sunset", "a purple triangle at the bottom, grass field",
           "a green circle on the right, day sky", "an orange square in the center, night sky",
           "a white star at the top, sunset", "a pink triangle on the left, grass field"]


def machine() -> dict[str, Any]:
    import torch

    from .backends.device import cpu_supports_bf16

    return {"cpu": platform.processor() or platform.machine(), "cpu_name": cpu_name(),
            "cores": __import__("os").cpu_count(), "bf16": cpu_supports_bf16(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "load_average": round(__import__("os").getloadavg()[0], 2)}


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it ("" where it says none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def build_sd_shaped(folder: Path, safety_checker: bool = False) -> Path:
    """SD 1.x's UNet, VAE and CLIP text encoder configs with random weights, saved as a diffusers
    folder; with ``safety_checker``, also SD 1.4's safety checker (a CLIP ViT-L/14 vision tower)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .backends.resolve import DEMO_MODEL_DIR

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
    checker, features = (_sd_safety_checker() if safety_checker else (None, None))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(DEMO_MODEL_DIR / "tokenizer"),
                                   unet=unet, scheduler=scheduler, safety_checker=checker, feature_extractor=features,
                                   requires_safety_checker=safety_checker)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return folder


def _sd_safety_checker():
    """SD 1.4's safety checker shape: CLIP ViT-L/14 at 224² with a 768-d projection, random weights."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(
        text_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                       "num_attention_heads": 16, "patch_size": 14, "image_size": 224},
        projection_dim=768)
    features = CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224})
    return StableDiffusionSafetyChecker(config), features


def unet_flops(unet, latent: int, batch: int = 2) -> float:
    """FLOPs of one UNet call, counted by tracing the model at this size (no hard-coded SD figures)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(batch, unet.config.in_channels, latent, latent, dtype=unet.dtype)
    ctx = torch.zeros(batch, 77, unet.config.cross_attention_dim, dtype=unet.dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(500), ctx)
    return float(counter.get_total_flops())


def psnr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def random_tiny_vae(pipe, folder: Path) -> Path:
    """A random-weight AutoencoderTiny with TAESD's layer sizes that fits ``pipe``'s latents: its
    decode time is TAESD's (image similarity needs the real weights: pass ``tiny_vae``)."""
    from diffusers import AutoencoderTiny

    levels = int(math.log2(pipe.vae_scale_factor)) + 1
    AutoencoderTiny(encoder_block_out_channels=(64,) * levels, decoder_block_out_channels=(64,) * levels,
                    num_encoder_blocks=(1,) + (3,) * (levels - 1), num_decoder_blocks=(3,) * (levels - 1) + (1,),
                    latent_channels=pipe.unet.config.in_channels).save_pretrained(folder)
    return folder


def peak_rss_of_render(model: str, size: int, steps: int, dtype: str, safety_checker: bool = False) -> float:
    """Peak resident memory (MB) of a fresh ``framereel frames`` process rendering one frame.

    The child reports its own high-water mark (``VmHWM``): a child's ``ru_maxrss`` would include
    the parent's memory, which it inherits at fork until it execs.
    """
    import re
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "one.json"
        board.write_text(json.dumps([{"prompt": PROMPTS[0]}]))
        args = ["frames", str(board), "-o", str(Path(tmp) / "out"), "--model", model, "--width", str(size),
                "--height", str(size), "--steps", str(steps), "--dtype", dtype, "--device", "cpu", "--quiet"]
        args += [] if safety_checker else ["--no-safety-checker"]
        proc = subprocess.run([sys.executable, "-c", _PEAK_PROBE, *args], capture_output=True, text=True)
    found = re.search(r"framereel-peak-rss-kb (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"framereel frames failed: {proc.stderr.strip().splitlines()[-1:]}")
    return int(found.group(1)) / 1024


_PEAK_PROBE = """
import re, runpy, sys
sys.argv = ["framereel", *sys.argv[1:]]
try:
    runpy.run_module("framereel", run_name="__main__", alter_sys=True)
finally:
    status = open("/proc/self/status").read()
    sys.stderr.write("framereel-peak-rss-kb " + re.search(r"VmHWM:\\s+(\\d+)", status).group(1) + "\\n")
"""


@dataclass(frozen=True)
class BenchOptions:
    """What ``framereel bench`` measures and how (see the module's docstring for the figures)."""

    model: str = "demo"
    size: int | None = None
    steps: int = 25
    frames: int = 3
    dtype: str = "auto"
    batches: tuple[int, ...] = (1, 2, 4)
    only: tuple[str, ...] = FIGURES
    compile: bool = False
    tiny_vae: str | None = None
    memory_steps: int = 2
    safety_checker: bool = False  # sd-shaped: add SD 1.4's safety checker and run it in the memory figure
    fast_path: str = "off"  # also measure the UNet (figure 2) and a frame (figure 5) with --fast-path this


MAX_BENCH_BATCH = 64


def parse_batches(text: str) -> tuple[int, ...]:
    """``--batches 1,2,4``: the batch sizes to measure, each a whole number from 1 to 64."""
    try:
        sizes = tuple(int(b) for b in text.split(","))
    except ValueError:
        raise FramereelError(f"--batches {text}: give whole numbers, e.g. 1,2,4") from None
    if not all(1 <= b <= MAX_BENCH_BATCH for b in sizes):
        raise FramereelError(f"--batches {text}: each batch size is a whole number from 1 to {MAX_BENCH_BATCH}, "
                             "e.g. 1,2,4")
    return tuple(dict.fromkeys(sizes))


@dataclass
class Bench:
    """One bench run: the model (loaded once through framereel's backend), the plain pipeline over
    the same weights, and helpers the figures share. Options reach framereel only through
    :class:`~framereel.settings.RenderSettings`."""

    options: BenchOptions
    label: str
    model: str
    settings: RenderSettings
    backend: Any
    size: int
    guidance: float
    log: Any

    def frame(self, i: int, steps: int | None = None) -> Frame:
        return Frame(i, PROMPTS[i % len(PROMPTS)], "", 1000 + i, steps or self.options.steps, self.guidance,
                     self.size, self.size)

    def plain(self, i: int, steps: int | None = None, pipe=None):
        """Frame ``i`` from the plain diffusers pipeline (``StableDiffusionPipeline.__call__``)."""
        import torch

        f = self.frame(i, steps)
        return (pipe or self.backend.pipe)(
            f.prompt, num_inference_steps=f.steps, guidance_scale=f.guidance, width=self.size, height=self.size,
            generator=torch.Generator("cpu").manual_seed(f.seed)).images[0]

    def timed_frames(self, backend=None) -> tuple[float, list]:
        """Median seconds per frame and the images of ``max(2, frames)`` frames, after warm-ups."""
        backend = backend or self.backend
        for i in range(2):
            backend.render(self.frame(i))
        times, images = [], []
        for i in range(max(2, self.options.frames)):
            t0 = time.perf_counter()
            images.append(backend.render(self.frame(i))[0])
            times.append(time.perf_counter() - t0)
        return statistics.median(times), images

    def backend_with(self, **changes: Any):
        """A loaded framereel backend for these settings with ``changes`` (e.g. ``batch=2``, ``step_cache=3``)."""
        from .backends import create_backend

        backend = create_backend(replace(self.settings, **changes))
        backend.load()
        return backend


def figure_memory(bench: Bench) -> dict[str, Any]:
    """6. Peak resident memory of a fresh ``framereel frames`` process rendering one frame."""
    o = bench.options
    rss = peak_rss_of_render(bench.model, bench.size, o.memory_steps, bench.backend.dtype, o.safety_checker)
    bench.log(f"6. memory: a fresh `framereel frames` process rendering one {bench.size}×{bench.size} frame peaks "
              f"at {rss:.0f} MB resident")
    return {"peak_rss_mb_one_frame": round(rss, 1), "size": bench.size, "steps": o.memory_steps,
            "safety_checker": o.safety_checker}


def figure_overhead(bench: Bench) -> dict[str, Any]:
    """1. framereel's seconds per frame ÷ the plain pipeline's, interleaved, medians."""
    backend = bench.backend
    backend.render(bench.frame(0))
    bench.plain(0)
    ours, theirs = [], []
    for i in range(bench.options.frames):
        t0 = time.perf_counter()
        backend.render(bench.frame(i))
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bench.plain(i)
        theirs.append(time.perf_counter() - t0)
    ratio = statistics.median(ours) / statistics.median(theirs)
    bench.log(f"1. overhead: framereel {statistics.median(ours):.3f}s/frame ÷ diffusers "
              f"{statistics.median(theirs):.3f}s/frame = {ratio:.3f}")
    return {"framereel_s": statistics.median(ours), "diffusers_s": statistics.median(theirs), "ratio": round(ratio, 4)}


def figure_peak(bench: Bench) -> dict[str, Any]:
    """2. Achieved UNet FLOP/s ÷ a large matmul's FLOP/s, timed in turn in the same rounds (other
    load on the machine weighs on both alike); with ``fast_path``, also the fast path's UNet
    (compiled in an untimed first call) in the same rounds."""
    import torch

    pipe = bench.backend.pipe
    latent = bench.size // pipe.vae_scale_factor
    flops = unet_flops(pipe.unet, latent)
    fast = bench.backend_with(fast_path=bench.options.fast_path) if bench.options.fast_path != "off" else None
    unets = [pipe.unet] + ([fast.pipe.unet] if fast else [])
    x = torch.randn(2, pipe.unet.config.in_channels, latent, latent, dtype=pipe.unet.dtype)
    ctx = torch.randn(2, 77, pipe.unet.config.cross_attention_dim, dtype=pipe.unet.dtype)
    n = MATMUL_SIDE
    a, b = torch.randn(n, n, dtype=pipe.unet.dtype), torch.randn(n, n, dtype=pipe.unet.dtype)
    with torch.inference_mode():
        seconds = timed_in_turn([lambda u=u: u(x, torch.tensor(500), ctx) for u in unets] + [lambda: a @ b],
                                max(5, bench.options.frames))
    peak = 2 * n**3 / seconds[-1]
    achieved = flops / seconds[0]
    bench.log(f"2. UNet: {flops / 1e9:.2f} GFLOP per call (CFG batch 2), {achieved / 1e9:.1f} GFLOP/s achieved, "
              f"matmul peak {peak / 1e9:.1f} GFLOP/s → {achieved / peak:.1%} of peak")
    report = {"unet_flops_per_call": flops, "achieved_flops": achieved, "matmul_peak_flops": peak,
              "fraction": round(achieved / peak, 4)}
    if fast is not None:
        fast_flops = flops / seconds[1]
        report["fast_path"] = {"mode": bench.options.fast_path, "on": list(fast.fast_plan.on),
                               "achieved_flops": fast_flops, "fraction": round(fast_flops / peak, 4),
                               "speedup": round(fast_flops / achieved, 3)}
        bench.log(f"2. UNet with --fast-path {bench.options.fast_path} ({', '.join(fast.fast_plan.on) or 'nothing'}): "
                  f"{fast_flops / 1e9:.1f} GFLOP/s → {fast_flops / peak:.1%} of peak "
                  f"({fast_flops / achieved:.2f}× the plain UNet)")
        fast.close()
    return report


MATMUL_SIDE = 2048


def timed_in_turn(calls: list, rounds: int) -> list[float]:
    """Median seconds of each of ``calls``, called in turn for ``rounds`` rounds after one untimed
    call each (which compiles a compiled model)."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, t in zip(calls, times):
            t0 = time.perf_counter()
            call()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def figure_schedulers(bench: Bench) -> dict[str, Any]:
    """3. DPM-Solver++ 25 vs PNDM 50, each against its own scheduler at 100 steps; a DPM++ step sweep."""
    from diffusers import StableDiffusionPipeline

    from .backends.common import make_scheduler

    pipe = StableDiffusionPipeline(**bench.backend.pipe.components)  # the plain side: its own scheduler
    pipe.set_progress_bar_config(disable=True)
    sched: dict[str, Any] = {}
    for name, n in (("pndm", 50), ("dpm++", 25)):  # DPM-Solver++ last: the step sweep below uses it
        pipe.scheduler = make_scheduler(name, pipe.scheduler.config)
        t0 = time.perf_counter()
        image = bench.plain(1, n, pipe)
        seconds = time.perf_counter() - t0
        sched[name] = {"steps": n, "seconds": seconds,
                       "psnr_vs_100_steps": round(psnr(image, bench.plain(1, 100, pipe)), 2)}
    references = {i: bench.plain(i, 100, pipe) for i in range(len(PROMPTS))}
    sched["dpm++_min_psnr_vs_100_steps_by_steps"] = {
        str(n): round(min(psnr(bench.plain(i, n, pipe), ref) for i, ref in references.items()), 2)
        for n in (8, 10, 12, 15, 20, 25)}
    sched["time_ratio_dpm25_over_pndm50"] = round(sched["dpm++"]["seconds"] / sched["pndm"]["seconds"], 3)
    bench.log(f"3. DPM++ 25 steps {sched['dpm++']['seconds']:.2f}s (PSNR {sched['dpm++']['psnr_vs_100_steps']} dB "
              f"vs 100 steps) vs PNDM 50 {sched['pndm']['seconds']:.2f}s (PSNR {sched['pndm']['psnr_vs_100_steps']} "
              f"dB): time ratio {sched['time_ratio_dpm25_over_pndm50']}; DPM++ by steps, worst of 8 frames vs "
              "100 steps: " + ", ".join(f"{n}: {v} dB" for n, v in sched["dpm++_min_psnr_vs_100_steps_by_steps"].items()))
    return sched


def figure_batching(bench: Bench, baseline: list) -> dict[str, Any]:
    """4. Frames/s through the real ``--batch`` path (padded calls) and closeness to batch 1."""
    report: dict[str, Any] = {}
    for b in bench.options.batches:
        backend = bench.backend_with(batch=b)
        group = [bench.frame(i) for i in range(b)]
        backend.render_batch(group)  # warm-up at this batch size
        times = []
        for _ in range(max(2, bench.options.frames)):
            t0 = time.perf_counter()
            images = [image for image, _ in backend.render_batch(group)]
            times.append(time.perf_counter() - t0)
        backend.close()
        close = min(psnr(image, base) for image, base in zip(images, baseline))
        report[str(b)] = {"frames_per_s": round(b / statistics.median(times), 4),  # None: identical to batch 1
                          "min_psnr_vs_batch_1": round(close, 2) if math.isfinite(close) else None}
    one = report.get("1", {}).get("frames_per_s") or report[str(bench.options.batches[0])]["frames_per_s"]
    for v in report.values():
        v["speedup_vs_batch_1"] = round(v["frames_per_s"] / one, 3)
    bench.log("4. batching: " + ", ".join(
        f"batch {b}: {v['frames_per_s']:.3f} frames/s ({v['speedup_vs_batch_1']:.2f}×, "
        + (f"≥ {v['min_psnr_vs_batch_1']} dB vs batch 1)" if v["min_psnr_vs_batch_1"] else "the reference)")
        for b, v in report.items()))
    return report


def figure_accelerations(bench: Bench, baseline_s: float, baseline: list, tmp: Path) -> dict[str, Any]:
    """5. Each acceleration's time per frame ÷ the plain render's, and its PSNR against it."""
    o = bench.options
    acc: dict[str, Any] = {"baseline_s_per_frame": round(baseline_s, 4), "similarity_threshold_db": SIMILARITY_THRESHOLD_DB}

    def measure(name: str, changes: dict[str, Any], meaningful_similarity: bool = True, **extra: Any) -> None:
        backend = bench.backend_with(**changes)
        if changes.get("compile"):
            t0 = time.perf_counter()
            backend.render(bench.frame(0))
            extra["first_frame_s"] = round(time.perf_counter() - t0, 1)
        seconds, images = bench.timed_frames(backend)
        backend.close()
        close = min(psnr(a, b) for a, b in zip(images, baseline))
        acc[name] = {"time_ratio": round(seconds / baseline_s, 3), **extra,
                     "min_psnr_vs_plain": round(close, 2) if meaningful_similarity else None}
        similar = f"≥ {close:.1f} dB vs plain" if meaningful_similarity else "similarity n/a (random weights)"
        bench.log(f"5. {name}: {seconds:.3f}s/frame = {seconds / baseline_s:.2f}× the plain render, {similar}")

    for interval in (2, 3):
        measure(f"step-cache {interval}", {"step_cache": interval}, meaningful_similarity=bench.label != "sd-shaped")
    folder = o.tiny_vae or str(random_tiny_vae(bench.backend.pipe, tmp / "tiny-vae"))
    measure("tiny-vae", {"tiny_vae": folder}, meaningful_similarity=bool(o.tiny_vae),
            weights=o.tiny_vae or "random (TAESD's shapes)")
    if o.compile:
        measure("compile", {"compile": True})
    if o.fast_path != "off":
        measure(f"fast-path {o.fast_path}", {"fast_path": o.fast_path})
    return acc


def run_bench(options: BenchOptions | None = None, out: Path | None = None, log=print) -> dict[str, Any]:
    """Run the figures named in ``options.only`` (see :data:`FIGURES`); returns (and optionally writes) them."""
    from .backends import create_backend

    o = options or BenchOptions()
    with tempfile.TemporaryDirectory() as tmp:
        model = o.model
        if model == "sd-shaped":
            log("building an SD-1.x-shaped random-weight model …")
            model = str(build_sd_shaped(Path(tmp) / "sd-shaped", o.safety_checker))
        settings = RenderSettings(model=model, dtype=o.dtype, device="cpu", batch=1, backend="diffusers")
        backend = create_backend(settings)
        info = backend.describe()
        bench = Bench(o, o.model, model, settings, backend, o.size or info.native_width,
                      float(info.recommended.get("guidance", 7.5)), log)
        report: dict[str, Any] = {"machine": machine(), "settings": {
            "model": o.model if o.model == "sd-shaped" else info.id, "size": bench.size, "steps": o.steps,
            "guidance": bench.guidance, "dtype": backend.dtype, "device": backend.device, "frames": o.frames}}
        log(f"machine {report['machine']}\nsettings {report['settings']}")
        if "memory" in o.only:  # first, in a fresh process, before this one holds the model
            report["memory"] = figure_memory(bench)
        if set(o.only) <= {"memory"}:
            return _finish(report, out, log)
        backend.load()
        for name, figure in (("overhead", figure_overhead), ("peak", figure_peak), ("schedulers", figure_schedulers)):
            if name in o.only:
                report[name] = figure(bench)
        if {"batching", "accelerations"} & set(o.only):
            baseline_s, baseline = bench.timed_frames()
            if "batching" in o.only:
                report["batching"] = figure_batching(bench, baseline)
            if "accelerations" in o.only:
                report["accelerations"] = figure_accelerations(bench, baseline_s, baseline, Path(tmp))
        backend.close()
    return _finish(report, out, log)


def _finish(report: dict[str, Any], out: Path | None, log) -> dict[str, Any]:
    import resource

    report["peak_rss_mb_this_process"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n")
        log(f"results written to {out}")
    return report
