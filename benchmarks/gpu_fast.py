"""framereel's fast path on a CUDA GPU: frames/s and % of the GPU's fp16 peak, ``--fast-path``
against plain diffusers in one run (issue #30, Benchmarks).

One prepared script for a GPU machine without internet (random weights in the real shapes,
built here with the helpers of ``benchmarks/gpu_families.py``):

* ``sd1`` — SD-1.x-shaped (:func:`framereel.bench.build_sd_shaped`), 512², DPM-Solver++ 20 steps,
  guidance 7.5, batch 1 and 4;
* ``turbo`` — SD-Turbo-shaped (SD 2.1's UNet and OpenCLIP-H text encoder, Euler on trailing
  timesteps; ``benchmarks/families.py``), 512², 1 step, guidance 0, decoded by a tiny VAE
  (random weights with TAESD's shapes), batch 1 and 4.

Both models are built first; then for each batch size (batch 1 of every model first) and model,
in this order, each side loaded once and warmed up untimed:

1. ``diffusers`` — the plain ``StableDiffusionPipeline`` over the same folder (same scheduler, steps,
   guidance, seeds, tiny VAE for turbo), prompts in calls of N, PIL images in memory;
2. ``framereel --fast-path MODE`` for each of ``--modes`` (default ``off,auto,on``): the loaded
   diffusers backend's ``render_batch`` (PIL images in memory, as ``framereel live`` gets them).
   Compiling happens in the backend's warm-up, timed apart (``warm_up_s``, ``compile_seconds``)
   and never inside the timed frames; two untimed calls follow (CUDA graphs record on them);
3. for the fastest framereel mode, ``framereel.render`` into a fresh folder (PNGs, run.json), the
   whole user-visible path.

Figures: frames/s of each (median of ``--rounds`` timed runs of ``--frames`` frames, between
``torch.cuda.synchronize()`` calls), the speed-up over diffusers, the worst PSNR of framereel's
frames against diffusers' (same seeds), and the fraction of the GPU's fp16 peak: FLOPs per frame
(UNet calls × steps + VAE decode, counted with ``torch.utils.flop_counter`` on the model itself)
× frames/s ÷ an 8192² fp16 matmul's FLOP/s measured in the same run. The JSON (``--out``) is
rewritten after every measurement; ``--budget-s`` skips what has not started after that long.

    PYTHONPATH=. python benchmarks/gpu_fast.py --budget-s 330   # results/gpu-fast.json: 6.6 min on an H200 (Turbo batch 4 skipped)
    PYTHONPATH=. python benchmarks/gpu_fast.py --modes on --batches 1 --budget-s 200 \
        --out benchmarks/results/gpu-fast-check.json                  # the two goals only: ~4.5 min on an H200
    PYTHONPATH=. python benchmarks/gpu_fast.py --tiny --device cpu --out /tmp/gpu-fast.json   # check here (~1 min)
    PYTHONPATH=. python benchmarks/gpu_fast.py --tiny --device cpu --modes on --models turbo  # compiling too (minutes)
    PYTHONPATH=. python benchmarks/gpu_fast.py --models turbo --modes auto --stream 1,4 --frames 16   # stream batching
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_families import (  # noqa: E402  (the GPU benchmarks share their helpers)
    PROMPTS,
    ROOT,
    T0,
    build,
    build_sd1,
    free,
    log,
    machine_info,
    timed,
    write_board,
)


def build_turbo(folder: Path, tiny: bool) -> None:
    """SD-Turbo-shaped: ``benchmarks/families.py``'s full-size builder, or the tests' tiny SD-Turbo."""
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_families import build_family

        build_family("sd-turbo", folder)
        return
    from families import build_turbo_shaped

    build_turbo_shaped(folder)


MODELS = {  # name: (builder, size when full, steps when full, scheduler, tiny VAE)
    "sd1": (build_sd1, 512, 20, "dpm++", False),
    "turbo": (build_turbo, 512, 1, "euler", True),
}


# ------------------------------------------------------------------------------------------ peak and FLOPs


def fp16_peak(device: str, dtype: str, n: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of an n² matmul in ``dtype`` on ``device`` (median of ``repeats``; 2048² on a CPU)."""
    import torch

    n = n if device.startswith("cuda") else 2048
    a = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, device=device, dtype=getattr(torch, dtype))
    a @ b
    times = [timed(device, lambda: a @ b) for _ in range(repeats)]
    return 2 * n**3 / statistics.median(times)


def flops_per_frame(pipe, size: int, steps: int, guidance: float) -> float:
    """FLOPs of one frame: the UNet at CFG batch 2 (1 without guidance) × steps, plus one VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet, device = pipe.unet, pipe.unet.device
    rows = 2 if guidance > 1 else 1
    latent = size // pipe.vae_scale_factor
    x = torch.zeros(rows, unet.config.in_channels, latent, latent, dtype=unet.dtype, device=device)
    ctx = torch.zeros(rows, 77, unet.config.cross_attention_dim, dtype=unet.dtype, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as unet_count:
        unet(x, torch.tensor(500, device=device), ctx)
    with torch.inference_mode(), FlopCounterMode(display=False) as vae_count:
        pipe.vae.decode(x[:1].to(pipe.vae.dtype))
    return float(unet_count.get_total_flops()) * steps + float(vae_count.get_total_flops())


def random_tiny_vae(folder: Path, latent_channels: int, scale: int) -> Path:
    from framereel.bench import random_tiny_vae as make

    return make(SimpleNamespace(vae_scale_factor=scale, unet=SimpleNamespace(
        config=SimpleNamespace(in_channels=latent_channels))), folder)


# ------------------------------------------------------------------------------------------ the sides


def frames_of(n: int, call: dict) -> list:
    """``n`` key frames with the prompts and seeds both sides render."""
    from framereel.storyboard import Frame

    return [Frame(i, PROMPTS[i % len(PROMPTS)] + f", shot {i}", "", 1000 + i, call["steps"], call["guidance"],
                  call["width"], call["height"]) for i in range(n)]


def diffusers_images(pipe, frames: list, batch: int) -> list:
    import torch

    images = []
    for i in range(0, len(frames), batch):
        group = frames[i:i + batch]
        f = group[0]
        images += pipe(prompt=[g.prompt for g in group], num_inference_steps=f.steps, guidance_scale=f.guidance,
                       width=f.width, height=f.height,
                       generator=[torch.Generator("cpu").manual_seed(g.seed) for g in group]).images
    return images


def framereel_images(backend, frames: list, batch: int) -> list:
    return [image for i in range(0, len(frames), batch) for image, _ in backend.render_batch(frames[i:i + batch])]


def worst_psnr(ours: list, theirs: list) -> float | None:
    import numpy as np

    from framereel.bench import psnr

    worst = min(psnr(np.asarray(a), np.asarray(b)) for a, b in zip(ours, theirs))
    return round(worst, 2) if math.isfinite(worst) else None


def median_fps(device: str, rounds: int, n: int, run) -> tuple[float, list]:
    """frames/s (median of ``rounds``) of ``run()``, which renders ``n`` frames; and the last images."""
    images: list = []

    def once() -> None:
        images[:] = run()

    seconds = [timed(device, once) for _ in range(rounds)]
    return n / statistics.median(seconds), images


# ------------------------------------------------------------------------------------------ one model


def load_plain(folder: Path, args, scheduler: str, tiny_vae: Path | None):
    import diffusers
    import torch

    from framereel.backends.common import make_scheduler

    dtype = getattr(torch, args.dtype)
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtype, safety_checker=None,
                                                            requires_safety_checker=False)
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    if tiny_vae is not None:
        pipe.vae = diffusers.AutoencoderTiny.from_pretrained(str(tiny_vae), torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(args.device)


def measure_plain(folder: Path, args, scheduler: str, tiny_vae, frames: list, batch: int):
    """Plain diffusers: frames/s, its images (the reference) and the FLOPs of a frame."""
    pipe = load_plain(folder, args, scheduler, tiny_vae)
    f = frames[0]
    flops = flops_per_frame(pipe, f.width, f.steps, f.guidance)
    diffusers_images(pipe, frames[:batch], batch)  # warm-up
    fps, reference = median_fps(args.device, args.rounds, len(frames), lambda: diffusers_images(pipe, frames, batch))
    return fps, reference, flops


def measure_mode(mode: str, folder: Path, tiny_vae, batch: int, frames: list, args, scheduler: str,
                 reference: list, entry: dict) -> tuple[float, object]:
    """framereel with ``--fast-path mode``: warm-up (compiling) apart, then frames/s in memory."""
    from framereel import RenderSettings
    from framereel.backends import create_backend

    settings = RenderSettings(model=str(folder), backend="diffusers", device=args.device, dtype=args.dtype,
                              batch=batch, scheduler=scheduler, safety_checker=False, fast_path=mode,
                              tiny_vae=str(tiny_vae) if tiny_vae else None)
    backend = create_backend(settings)
    load_s = timed(args.device, backend.load)
    warm = [replace(f, prompt=f"warm-up picture {f.index}") for f in frames[:batch]]  # other texts: not cached
    facts: dict = {}
    warm_s = timed(args.device, lambda: facts.update(backend.render_batch(warm)[0][1]))
    settle_s = timed(args.device, lambda: [backend.render_batch(warm) for _ in range(2)])  # CUDA graphs record
    fps, images = median_fps(args.device, args.rounds, len(frames), lambda: framereel_images(backend, frames, batch))
    entry[f"framereel_{mode}"] = {
        "frames_per_s": round(fps, 3), "on": list(backend.fast_plan.on),
        "compile_mode": backend.fast_plan.compile_mode, "load_s": round(load_s, 1),
        "warm_up_s": round(warm_s, 1), "compile_seconds": facts.get("compile_seconds"),
        "settle_calls_s": round(settle_s, 2), "min_psnr_vs_diffusers_db": worst_psnr(images, reference)}
    return fps, backend


def measure_folder(backend, frames: list, batch: int, args, tmp: Path, name: str) -> dict:
    """The whole user-visible path: ``framereel.render`` of the frames into a fresh folder."""
    from framereel import load_storyboard, render

    f = frames[0]
    board = load_storyboard(write_board(tmp / f"{name}.json", [x.prompt for x in frames], [x.seed for x in frames]),
                            overrides={"steps": f.steps, "guidance": f.guidance, "width": f.width, "height": f.height})
    seconds = [timed(args.device, lambda r=r: render(board, tmp / f"{name}-{r}", backend.settings, backend=backend))
               for r in range(args.rounds)]
    return {"frames_per_s": round(len(frames) / statistics.median(seconds), 3),
            "run_json_fast_path": json.loads((tmp / f"{name}-0" / "run.json").read_text()).get("fast_path")}


def measure_case(name: str, folder: Path, tiny_vae, batch: int, args, tmp: Path, entry: dict, peak: float, save):
    import torch

    _, full_size, full_steps, scheduler, _ = MODELS[name]
    size, steps = (64, min(full_steps, 2)) if args.tiny else (full_size, full_steps)
    guidance = 7.5 if name == "sd1" else 0.0
    call = {"steps": steps, "guidance": guidance, "width": size, "height": size}
    frames = frames_of(args.frames, call)
    fps, reference, flops = measure_plain(folder, args, scheduler, tiny_vae, frames, batch)
    entry.update(size=size, steps=steps, guidance=guidance, scheduler=scheduler, frames=args.frames,
                 gflop_per_frame=round(flops / 1e9, 1), tiny_vae=bool(tiny_vae), diffusers={"frames_per_s": round(fps, 3)})
    log(f"{name} batch {batch}: diffusers {fps:.2f} frames/s ({flops / 1e9:.0f} GFLOP a frame)")
    free(args.device)
    save()
    best = (0.0, None, None)
    for mode in args.modes:
        if time.perf_counter() - T0 > args.budget_s:
            entry[f"framereel_{mode}"] = {"skipped": f"time budget of {args.budget_s}s spent"}
            continue
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        try:
            ours, backend = measure_mode(mode, folder, tiny_vae, batch, frames, args, scheduler, reference, entry)
        except Exception as err:  # noqa: BLE001 - keep the other modes' figures; say what failed
            entry[f"framereel_{mode}"] = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
            log(f"{name} batch {batch} --fast-path {mode}: FAILED ({type(err).__name__}: {str(err)[:200]})")
            free(args.device)
            save()
            continue
        row = entry[f"framereel_{mode}"]
        row.update(speedup_vs_diffusers=round(ours / entry["diffusers"]["frames_per_s"], 3),
                   fraction_of_fp16_peak=round(ours * flops / peak, 4))
        if args.device.startswith("cuda"):
            row["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        log(f"{name} batch {batch} --fast-path {mode} ({', '.join(row['on']) or 'nothing'}): {ours:.2f} frames/s = "
            f"{row['speedup_vs_diffusers']}× diffusers, {row['fraction_of_fp16_peak']:.1%} of peak; warm-up "
            f"{row['warm_up_s']}s (compiling {row['compile_seconds'] or 0}s); worst PSNR vs diffusers "
            f"{row['min_psnr_vs_diffusers_db']} dB (None: identical)")
        if ours > best[0]:
            if best[1] is not None:
                best[1].close()
            best = (ours, backend, mode)
        else:
            backend.close()
        free(args.device)
        save()
    if best[1] is not None and time.perf_counter() - T0 <= args.budget_s:
        entry["to_folder"] = {"mode": best[2], **measure_folder(best[1], frames, batch, args, tmp, f"{name}-b{batch}")}
        log(f"{name} batch {batch}: framereel.render to a folder (--fast-path {best[2]}): "
            f"{entry['to_folder']['frames_per_s']} frames/s")
    if best[1] is not None:
        best[1].close()
    free(args.device)
    save()


def measure_stream(name: str, built, steps: int, args, report: dict) -> None:
    """Stream batching (``framereel live``): frames/s of ``steps``-step frames pushed through a
    StreamBatch (frames at staggered steps share one UNet call) against the same frames rendered
    one by one, with ``--fast-path`` ``args.stream_mode``; batch 1, in memory."""
    from framereel import RenderSettings
    from framereel.backends import create_backend

    folder, tiny_vae = built
    size = 64 if args.tiny else MODELS[name][1]
    frames = frames_of(args.frames, {"steps": steps, "guidance": 0.0, "width": size, "height": size})
    settings = RenderSettings(model=str(folder), backend="diffusers", device=args.device, dtype=args.dtype, batch=1,
                              scheduler=MODELS[name][3], safety_checker=False, fast_path=args.stream_mode,
                              tiny_vae=str(tiny_vae) if tiny_vae else None)
    backend = create_backend(settings)
    backend.load()
    stream = backend.open_stream(frames[0])

    def streamed() -> list:
        out = [image for f in frames for _, image in stream.push(*backend.stream_inputs(f), tag=f)]
        return out + [image for _, image in stream.flush()]

    warm = [replace(f, prompt=f"warm-up picture {f.index}") for f in frames[:steps]]
    for f in warm:
        stream.push(*backend.stream_inputs(f), tag=f)
    stream.flush()
    framereel_images(backend, warm, 1)
    one_by_one, alone = median_fps(args.device, args.rounds, len(frames), lambda: framereel_images(backend, frames, 1))
    fps, images = median_fps(args.device, args.rounds, len(frames), streamed)
    report["results"][name][f"stream_{steps}_steps"] = {
        "fast_path": args.stream_mode, "on": list(backend.fast_plan.on), "frames": len(frames),
        "stream_frames_per_s": round(fps, 3), "one_by_one_frames_per_s": round(one_by_one, 3),
        "speedup": round(fps / one_by_one, 3), "min_psnr_stream_vs_one_by_one_db": worst_psnr(images, alone)}
    log(f"{name} {steps} steps: stream-batched {fps:.2f} frames/s vs one by one {one_by_one:.2f} "
        f"(--fast-path {args.stream_mode}; worst PSNR {worst_psnr(images, alone)} dB: DDIM's step vs the scheduler's)")
    backend.close()
    free(args.device)


def build_model(name: str, args, tmp: Path, report: dict, save) -> tuple[Path, Path | None]:
    """The model's folder (random weights, real shapes) and its tiny VAE (turbo), built on the device."""
    builder, _, _, _, wants_tiny_vae = MODELS[name]
    entry: dict = report["results"].setdefault(name, {})
    t0 = time.perf_counter()
    folder, where = build(builder, tmp / name, args.device, args.tiny)
    entry.update(build_s=round(time.perf_counter() - t0, 1), built_on=where)
    tiny_vae = random_tiny_vae(tmp / f"{name}-taesd", 4, 2 if args.tiny else 8) if wants_tiny_vae else None
    log(f"{name}: built on {where} in {entry['build_s']}s")
    save()
    return folder, tiny_vae


def measure_batch(name: str, built, batch: int, args, tmp: Path, report: dict, peak: float, save) -> None:
    entry: dict = report["results"][name]
    key = f"batch_{batch}"
    if time.perf_counter() - T0 > args.budget_s:
        entry[key] = {"skipped": f"time budget of {args.budget_s}s spent"}
        log(f"{name} batch {batch}: skipped (over the {args.budget_s}s budget)")
        return
    entry[key] = {}
    try:
        measure_case(name, *built, batch, args, tmp, entry[key], peak, save)
    except Exception as err:  # noqa: BLE001 - keep the other figures; say what failed
        import traceback

        traceback.print_exc()
        entry[key]["error"] = f"{type(err).__name__}: {str(err)[:400]}"
        log(f"{name} batch {batch}: FAILED ({type(err).__name__}: {str(err)[:200]})")
        free(args.device)


# ------------------------------------------------------------------------------------------ main


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu-fast.json")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu with --tiny")
    parser.add_argument("--dtype", default=None, help="float16 on CUDA (default), the CPU's auto dtype on a CPU")
    parser.add_argument("--models", default="sd1,turbo", help="comma-separated: sd1, turbo (in the order given)")
    parser.add_argument("--modes", default=None, help="--fast-path modes to measure (default off,auto,on; "
                                                      "--tiny: off,auto, as compiling on a CPU takes minutes)")
    parser.add_argument("--batches", default=None, help="frames per UNet call (default 1,4; --tiny: 1)")
    parser.add_argument("--frames", type=int, default=None, help="frames per timed run, a multiple of each batch "
                                                                 "(default 8; --tiny: 2)")
    parser.add_argument("--rounds", type=int, default=None, help="timed runs per side (median; default 2, --tiny: 1)")
    parser.add_argument("--budget-s", type=float, default=230.0,
                        help="skip measurements not started after this many seconds (default 230)")
    parser.add_argument("--stream", default="", help="also measure stream batching (framereel live) of the models "
                                                       "that stream at these step counts, e.g. 1,4 (default: none)")
    parser.add_argument("--stream-mode", default="auto", help="--fast-path of the stream measurement (default auto)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, 64², ≤ 2 steps: checks the script on a CPU")
    args = parser.parse_args()
    tiny = args.tiny
    args.batches = [int(b) for b in (args.batches or ("1" if tiny else "1,4")).split(",")]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.modes = [m.strip() for m in (args.modes or ("off,auto" if tiny else "off,auto,on")).split(",") if m.strip()]
    args.frames = args.frames or (2 if tiny else 8)
    args.rounds = args.rounds or (1 if tiny else 2)
    args.stream = [int(n) for n in args.stream.split(",") if n.strip()]
    if any(m not in MODELS for m in args.models):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    if any(m not in ("off", "auto", "on", "max") for m in args.modes):
        parser.error("--modes: choose from off, auto, on, max")
    if any(args.frames % b for b in args.batches):
        parser.error(f"--frames {args.frames} must be a multiple of every batch size ({args.batches})")
    return args


def main() -> None:
    import torch

    from framereel.backends.device import pick_dtype

    args = parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA GPU is visible to PyTorch; on a CPU run it with --tiny --device cpu")
    args.dtype = args.dtype or pick_dtype("auto", args.device)
    report = {"script": "benchmarks/gpu_fast.py", "command": " ".join(["python", "benchmarks/gpu_fast.py", *sys.argv[1:]]),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine_info(args.device),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "weights": "random, real shapes (tiny shapes with --tiny)", "results": {}, "complete": False}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - T0, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    peak = fp16_peak(args.device, args.dtype)
    report["matmul_peak_tflops"] = round(peak / 1e12, 2)
    log(f"torch {torch.__version__}, {args.device}, {args.dtype}; measured matmul peak {peak / 1e12:.1f} TFLOP/s")
    save()
    with tempfile.TemporaryDirectory() as tmp:
        built = {name: build_model(name, args, Path(tmp), report, save) for name in args.models}
        for batch in args.batches:  # batch 1 of every model first: the goals are at batch 1
            for name in args.models:
                measure_batch(name, built[name], batch, args, Path(tmp), report, peak, save)
                save()
        for steps in args.stream:
            for name in args.models:
                if time.perf_counter() - T0 > args.budget_s:
                    report["results"][name][f"stream_{steps}_steps"] = {"skipped": "time budget spent"}
                    continue
                try:
                    measure_stream(name, built[name], steps, args, report)
                except Exception as err:  # noqa: BLE001 - keep the other figures; say what failed
                    report["results"][name][f"stream_{steps}_steps"] = {"error": f"{type(err).__name__}: {err}"[:400]}
                    log(f"{name} stream {steps} steps: FAILED ({type(err).__name__}: {str(err)[:200]})")
                save()
    report["complete"] = "skipped" not in json.dumps(report["results"]) and "error" not in json.dumps(report["results"])
    save()
    log(f"written to {args.out}")


if __name__ == "__main__":
    main()
