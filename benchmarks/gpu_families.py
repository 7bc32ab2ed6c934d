"""framereel on a CUDA GPU: SD-1.x- and SDXL-shaped frames/s at fp16 with batch 1 and 4, framereel
against a plain diffusers loop over the same model folder (issue #20, Benchmarks, third bullet).

One prepared script, run once on a GPU machine (no internet, no model hub: the models are random
weights with the real shapes, built here):

* SD-1.x-shaped: :func:`framereel.bench.build_sd_shaped` (SD 1.4's UNet/VAE/CLIP configs), 512²;
* SDXL-shaped: SDXL base 1.0's UNet, VAE and both text encoders (CLIP ViT-L and OpenCLIP bigG)
  at their real config shapes, 1024².

For each model and batch size N (frames per UNet call), after a warm-up of one call each:

* framereel: ``framereel.render`` of a storyboard of ``--frames`` prompts into a fresh folder
  through an already loaded backend (``RenderSettings(batch=N, dtype="float16", device="cuda")``):
  PNGs with metadata and run.json written, as a user gets them;
* diffusers: ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline.from_pretrained`` of the same
  folder, same scheduler (DPM-Solver++), steps, guidance, size and seeds, prompts in calls of N
  with a list of CPU generators, PIL output saved as PNG.

Timed between ``torch.cuda.synchronize()`` calls; frames/s of each, the time ratio framereel ÷
diffusers, and how close framereel's frames are to the plain loop's (PSNR; the same seeds should
give the same pictures). The JSON (``--out``) is rewritten after every measurement, so a run cut
short still leaves its figures; ``--budget-s`` skips what is left once that much time has passed.

    PYTHONPATH=. python benchmarks/gpu_families.py                       # on the GPU machine
    PYTHONPATH=. python benchmarks/gpu_families.py --tiny --device cpu --out /tmp/gf.json   # check here
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# everything is local: never wait on a network the GPU machine doesn't have
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
T0 = time.perf_counter()
PROMPTS = ["a lighthouse on a cliff at dusk, oil painting", "a red fox in fresh snow, morning light",
           "a busy night market in the rain, neon signs", "an old sailing ship in a storm, dramatic sky",
           "a quiet mountain lake with pine trees, mist", "a robot reading a book in a library",
           "a field of sunflowers under a blue sky", "a steaming cup of coffee on a wooden table"]

# SDXL base 1.0's unet/config.json (stabilityai/stable-diffusion-xl-base-1.0), and a tiny stand-in
# with the same block types for --tiny (shaped as tests/tiny_families.py builds SDXL)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, cross_attention_dim=2048, norm_num_groups=32)
SDXL_UNET_TINY = dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                      transformer_layers_per_block=(1, 1), use_linear_projection=True,
                      addition_embed_type="text_time", addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=8)
# text_encoder (CLIP ViT-L/14) and text_encoder_2 (OpenCLIP ViT-bigG/14, with projection)
SDXL_CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   projection_dim=768, hidden_act="quick_gelu")
SDXL_CLIP_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                   projection_dim=1280, hidden_act="gelu")
SDXL_CLIP_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      projection_dim=32, hidden_act="gelu")
# vae/config.json of SDXL base 1.0 (force_upcast: the pipeline decodes in float32, as with the real model)
SDXL_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=1024,
                scaling_factor=0.13025, force_upcast=True)
TINY_VAE = dict(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=64)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - T0:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------------------ models


@contextmanager
def built_on(device: str):
    """Create tensors on ``device`` while a model is built (random init on a GPU takes seconds, not minutes)."""
    import torch

    with torch.device(device):
        yield


def build(builder, folder: Path, device: str, tiny: bool) -> tuple[Path, str]:
    """Build with ``builder`` on ``device``; on the CPU (all cores) if that fails. Returns (folder, where)."""
    import shutil

    import torch

    try:
        with built_on(device):
            builder(folder, tiny)
        return folder, device
    except Exception as err:  # noqa: BLE001 - the CPU is a slower but sure way to the same folder
        if device == "cpu":
            raise
        log(f"building on {device} failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); building on the CPU")
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()
        torch.cuda.empty_cache()
        with built_on("cpu"):
            builder(folder, tiny)
        return folder, "cpu"


def build_sd1(folder: Path, tiny: bool) -> None:
    """SD-1.x-shaped: framereel.bench.build_sd_shaped (full size), or the tests' tiny SD pipeline."""
    if tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_model import build_tiny_pipeline

        build_tiny_pipeline(folder)
        return
    from framereel.bench import build_sd_shaped

    build_sd_shaped(folder)


def build_sdxl(folder: Path, tiny: bool) -> None:
    """SDXL-shaped: SDXL base 1.0's UNet, VAE and two text encoders (random weights), saved in float16."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from framereel.backends.resolve import DEMO_MODEL_DIR

    torch.manual_seed(0)
    clip = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407)
    unet = diffusers.UNet2DConditionModel(**(SDXL_UNET_TINY if tiny else SDXL_UNET))
    vae_shape = TINY_VAE if tiny else SDXL_VAE
    levels = len(vae_shape["block_out_channels"])
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=("DownEncoderBlock2D",) * levels,
                                  up_block_types=("UpDecoderBlock2D",) * levels, **vae_shape)
    text = CLIPTextModel(CLIPTextConfig(**clip, **(SDXL_CLIP_TINY if tiny else SDXL_CLIP_L)))
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip, **(SDXL_CLIP_TINY if tiny else SDXL_CLIP_G)))
    tokenizer = CLIPTokenizer.from_pretrained(DEMO_MODEL_DIR / "tokenizer")
    scheduler = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 steps_offset=1, timestep_spacing="leading")
    pipe = diffusers.StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tokenizer,
                                               tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)


MODELS = {  # name: (builder, pipeline class, steps option, size when full)
    "sd1": (build_sd1, "StableDiffusionPipeline", "steps_sd1", 512),
    "sdxl": (build_sdxl, "StableDiffusionXLPipeline", "steps_sdxl", 1024),
}


# ------------------------------------------------------------------------------------------ timing


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def timed(device: str, fn) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def write_board(path: Path, prompts: list[str], seeds: list[int]) -> Path:
    path.write_text(json.dumps([{"prompt": p, "seed": s} for p, s in zip(prompts, seeds)]))
    return path


def framereel_render(backend, settings, prompts, seeds, call, out: Path) -> float:
    """framereel.render of these prompts into a fresh folder through the loaded backend; returns seconds."""
    from framereel import load_storyboard, render

    board = load_storyboard(write_board(out.with_suffix(".json"), prompts, seeds), overrides=call)
    return timed(settings.device, lambda: render(board, out, settings, backend=backend))


def plain_render(pipe, device, prompts, seeds, call, batch: int, out: Path) -> float:
    """The plain diffusers loop: calls of ``batch`` prompts, a CPU generator per frame, PNGs saved."""
    import torch

    def run() -> None:
        out.mkdir(parents=True)
        for i in range(0, len(prompts), batch):
            generators = [torch.Generator("cpu").manual_seed(s) for s in seeds[i:i + batch]]
            images = pipe(prompt=prompts[i:i + batch], num_inference_steps=call["steps"],
                          guidance_scale=call["guidance"], width=call["width"], height=call["height"],
                          generator=generators).images
            for j, image in enumerate(images):
                image.save(out / f"{i + j:05d}.png")

    return timed(device, run)


def closeness(ours: Path, theirs: Path) -> dict:
    """The lowest PSNR between framereel's frames and the plain loop's (None: identical), and whether
    framereel's frames are blank (one flat colour: NaNs from random fp16 weights decode to black,
    which would make "identical" mean nothing)."""
    import numpy as np
    from PIL import Image

    from framereel.bench import psnr

    a, b = sorted((ours / "frames").glob("*.png")), sorted(theirs.glob("*.png"))
    if not a or len(a) != len(b):
        return {"min_psnr_framereel_vs_diffusers_db": f"frame counts differ: {len(a)} vs {len(b)}"}
    pairs = [(np.asarray(Image.open(x).convert("RGB")), np.asarray(Image.open(y).convert("RGB"))) for x, y in zip(a, b)]
    worst = min(psnr(x, y) for x, y in pairs)
    return {"min_psnr_framereel_vs_diffusers_db": round(worst, 2) if math.isfinite(worst) else None,
            "framereel_frames_blank": sum(bool(x.std() < 1) for x, _ in pairs)}


def measure_model(name: str, args, tmp: Path, report: dict, save) -> None:
    import diffusers
    import torch

    from framereel import RenderSettings
    from framereel.backends import create_backend

    builder, pipeline_class, steps_option, full_size = MODELS[name]
    device, dtype = args.device, args.dtype
    entry: dict = report["results"].setdefault(name, {})
    log(f"{name}: building the {'tiny' if args.tiny else 'full-size'} random-weight model …")
    t0 = time.perf_counter()
    folder, built_where = build(builder, tmp / name, device, args.tiny)
    free(device)
    entry.update(build_s=round(time.perf_counter() - t0, 1), built_on=built_where,
                 weights_gib=round(sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**30, 2))
    size = 64 if args.tiny else full_size
    steps = 2 if args.tiny else getattr(args, steps_option)
    probe = create_backend(RenderSettings(model=str(folder), backend="diffusers", device=device, dtype=dtype,
                                          batch=1, scheduler="dpm++", safety_checker=False))
    info = probe.describe()
    guidance = float(info.recommended.get("guidance", 7.5))
    call = {"steps": steps, "guidance": guidance, "width": size, "height": size}
    entry.update(family=probe.family.key, size=size, steps=steps, guidance=guidance, scheduler=probe.scheduler,
                 dtype=probe.dtype, device=probe.device, frames=args.frames)
    log(f"{name}: built on {built_where} in {entry['build_s']}s ({entry['weights_gib']} GiB); family "
        f"{probe.family.key}, {size}², {steps} steps, guidance {guidance}, {probe.scheduler}, {probe.dtype}")
    save()

    log(f"{name}: loading the plain diffusers pipeline …")
    t0 = time.perf_counter()
    extra = {"safety_checker": None, "requires_safety_checker": False} if name == "sd1" else {}
    pipe = getattr(diffusers, pipeline_class).from_pretrained(str(folder), torch_dtype=getattr(torch, dtype), **extra)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.scheduler.config,
                                                                       algorithm_type="dpmsolver++")
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    sync(device)
    entry["diffusers_load_s"] = round(time.perf_counter() - t0, 1)

    prompts = [PROMPTS[i % len(PROMPTS)] + f", shot {i}" for i in range(args.frames)]
    seeds = [1000 + i for i in range(args.frames)]
    for batch in args.batches:
        key = f"batch_{batch}"
        if time.perf_counter() - T0 > args.budget_s:
            entry[key] = {"skipped": f"time budget of {args.budget_s}s spent"}
            log(f"{name} batch {batch}: skipped (over the {args.budget_s}s budget)")
            save()
            continue
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        settings = RenderSettings(model=str(folder), backend="diffusers", device=device, dtype=dtype, batch=batch,
                                  scheduler="dpm++", safety_checker=False)
        backend = create_backend(settings)
        load_s = timed(device, backend.load)
        # warm-ups: one call each, with other prompts than the timed ones (framereel caches embeddings per text)
        warm = [f"warm-up picture {i}" for i in range(batch)]
        warm_s = framereel_render(backend, settings, warm, seeds[:batch], call, tmp / f"{name}-b{batch}-fr-warm")
        warm_s_plain = plain_render(pipe, device, warm, seeds[:batch], call, batch, tmp / f"{name}-b{batch}-df-warm")
        log(f"{name} batch {batch}: framereel loaded in {load_s:.1f}s; warm-up calls {warm_s:.1f}s (framereel), "
            f"{warm_s_plain:.1f}s (diffusers)")
        ours, theirs = [], []
        for r in range(args.rounds):
            fr_out, df_out = tmp / f"{name}-b{batch}-fr-{r}", tmp / f"{name}-b{batch}-df-{r}"
            ours.append(framereel_render(backend, settings, prompts, seeds, call, fr_out))
            theirs.append(plain_render(pipe, device, prompts, seeds, call, batch, df_out))
            log(f"{name} batch {batch} round {r + 1}: framereel {ours[-1]:.2f}s, diffusers {theirs[-1]:.2f}s "
                f"for {args.frames} frames")
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        run = json.loads((fr_out / "run.json").read_text())
        entry[key] = {
            "framereel_frames_per_s": round(args.frames / ours_s, 3),
            "diffusers_frames_per_s": round(args.frames / theirs_s, 3),
            "ratio_framereel_over_diffusers_time": round(ours_s / theirs_s, 3),
            "framereel_s": [round(t, 3) for t in ours], "diffusers_s": [round(t, 3) for t in theirs],
            "framereel_batch_in_run_json": run.get("batch"),
            "framereel_load_s": round(load_s, 1), "warm_up_s": {"framereel": round(warm_s, 2),
                                                                "diffusers": round(warm_s_plain, 2)},
            **closeness(fr_out, df_out),
        }
        if device.startswith("cuda"):
            entry[key]["peak_gpu_memory_gib_both_pipelines"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        log(f"{name} batch {batch}: framereel {entry[key]['framereel_frames_per_s']} frames/s, diffusers "
            f"{entry[key]['diffusers_frames_per_s']} frames/s, time ratio framereel ÷ diffusers "
            f"{entry[key]['ratio_framereel_over_diffusers_time']}; frames ≥ "
            f"{entry[key]['min_psnr_framereel_vs_diffusers_db']} dB vs diffusers' (None: identical), "
            f"{entry[key].get('framereel_frames_blank')} blank")
        backend.close()
        del backend
        free(device)
        save()
    del pipe
    free(device)


# ------------------------------------------------------------------------------------------ report


def machine_info(device: str) -> dict:
    import diffusers
    import torch
    import transformers

    import framereel
    from framereel.bench import machine

    info = {**machine(), "python": sys.version.split()[0], "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "framereel": framereel.__version__}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name,power.limit,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
        except (OSError, subprocess.SubprocessError) as err:
            info["nvidia_smi"] = f"unavailable ({err})"
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu-families.json",
                        help="JSON written after every measurement (default: benchmarks/results/gpu-families.json)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu with --tiny")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--models", default="sd1,sdxl", help="comma-separated: sd1, sdxl (default both, in that order)")
    parser.add_argument("--batches", default="1,4", help="frames per UNet call to measure (default 1,4)")
    parser.add_argument("--frames", type=int, default=8, help="frames per timed render (default 8; a multiple of "
                                                               "each batch size)")
    parser.add_argument("--rounds", type=int, default=1, help="timed renders per side and batch (median; default 1)")
    parser.add_argument("--steps-sd1", type=int, default=20)
    parser.add_argument("--steps-sdxl", type=int, default=20)
    parser.add_argument("--budget-s", type=float, default=240.0,
                        help="skip measurements not started after this many seconds (default 240)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, 64², 2 steps: checks the script on a CPU")
    parser.add_argument("--workdir", type=Path, default=None, help="where the models and frames go (default: a "
                                                                    "temporary folder, removed at the end)")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models {','.join(unknown)}: choose from {', '.join(MODELS)}")
    if any(args.frames % b for b in args.batches):
        parser.error(f"--frames {args.frames} must be a multiple of every batch size ({args.batches}): "
                     "framereel pads a short last call, the plain loop would not")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible to PyTorch; on a CPU run it with --tiny --device cpu")
    log(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, models {models}, "
        f"batches {args.batches}, {args.frames} frames, budget {args.budget_s}s")

    report = {"script": "benchmarks/gpu_families.py",
              "command": " ".join(["python", "benchmarks/gpu_families.py", *sys.argv[1:]]),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_info(args.device),
              "settings": {"device": args.device, "dtype": args.dtype, "tiny": args.tiny, "frames": args.frames,
                           "batches": args.batches, "rounds": args.rounds, "scheduler": "dpm++",
                           "weights": "random, real shapes (tiny shapes with --tiny)"},
              "results": {}, "complete": False}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - T0, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    log(f"machine {json.dumps(report['machine'])}")
    save()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in models:
            if time.perf_counter() - T0 > args.budget_s:
                report["results"][name] = {"skipped": f"time budget of {args.budget_s}s spent"}
                log(f"{name}: skipped (over the {args.budget_s}s budget)")
                continue
            try:
                measure_model(name, args, Path(tmp), report, save)
            except Exception as err:  # noqa: BLE001 - keep the other model's figures; say what failed
                import traceback

                traceback.print_exc()
                report["results"].setdefault(name, {})["error"] = f"{type(err).__name__}: {err}"
                log(f"{name}: FAILED ({type(err).__name__}: {err})")
                free(args.device)
            save()
    report["complete"] = all("error" not in r and "skipped" not in r
                             and all("skipped" not in r.get(f"batch_{b}", {}) for b in args.batches)
                             for r in report["results"].values())
    save()
    print(json.dumps(report, indent=2), flush=True)
    log(f"written to {args.out}")


if __name__ == "__main__":
    main()
