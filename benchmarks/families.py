"""Model-family figures, as ratios measured on this machine (random weights, real shapes):

1. turbo — seconds per frame of an SD-Turbo-shaped model (SD 2.1's UNet and OpenCLIP-H text
   encoder, Euler with trailing timesteps) at 512², 1 step, guidance 0, against an SD-1.x-shaped
   model at 512², 25 steps of DPM-Solver++ with guidance 7.5, both through ``framereel.render``.
2. vae-tiling — peak RSS of rendering one 1024² frame through an SDXL pipeline whose VAE is
   SDXL's (full size) with and without ``--vae-tiling``; the UNet and text encoders are tiny, so
   the figures are the VAE's share (the full SDXL UNet adds ~5 GiB of bf16 weights to both).
   Each measurement runs in its own process (peak RSS is per process).
3. sdxl-full — the same with every part of SDXL base 1.0 at full size (UNet, both text
   encoders, VAE; random weights, saved in fp16), one step without CFG: the whole peak RSS of an
   SDXL frame at 1024² on the CPU, with and without ``--vae-tiling``.

    PYTHONPATH=. python benchmarks/families.py [turbo] [vae-tiling] [sdxl-full] --out benchmarks/results/families.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framereel.backends.resolve import DEMO_MODEL_DIR
from framereel.bench import build_sd_shaped, machine


def build_turbo_shaped(folder: Path) -> Path:
    """SD 2.1's UNet (as SD-Turbo ships it: 512² sample size) and OpenCLIP ViT-H text encoder shapes."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                use_linear_projection=True, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                                        num_attention_heads=16, max_position_embeddings=77, projection_dim=1024,
                                        hidden_act="gelu"))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="trailing")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(DEMO_MODEL_DIR / "tokenizer"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return folder


def build_sdxl_vae_shaped(folder: Path) -> Path:
    """An SDXL pipeline with SDXL's VAE at full size (scaling 0.13025) and a tiny UNet and text encoders."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    import torch
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline
    from tiny_families import build_family

    build_family("sdxl", folder)
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    torch.manual_seed(0)
    pipe.vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                             up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                             sample_size=1024, scaling_factor=0.13025)
    # the tiny UNet samples 1/2 scale latents; 1024² frames need the SD VAE's 1/8 — resize its sample size
    pipe.unet.register_to_config(sample_size=128)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def frame_seconds(model: Path, frames: int, out: Path, **overrides) -> list[float]:
    from framereel import RenderSettings, load_storyboard, render

    board = out.with_suffix(".json")
    board.write_text(json.dumps([{"prompt": f"a lighthouse, shot {i}"} for i in range(frames)]))
    render(load_storyboard(board, overrides=overrides or None), out, RenderSettings(model=str(model), batch=1))
    run = json.loads((out / "run.json").read_text())
    return [f["seconds"] for f in run["frames"]]


def peak_rss_child(model: str, tiling: bool, out: str) -> None:
    from framereel import RenderSettings, load_storyboard, render

    board = Path(out + ".json")
    board.write_text(json.dumps([{"prompt": "a lighthouse"}]))
    render(load_storyboard(board, overrides={"steps": 1, "width": 1024, "height": 1024, "guidance": 0.0}), out,
           RenderSettings(model=model, batch=1, vae_tiling=tiling))
    print(json.dumps({"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("figures", nargs="*", default=["turbo", "vae-tiling"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/families.json"))
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_rss_child(args.child[0], args.child[1] == "1", args.child[2])
        return
    report = {"machine": machine(), "command": " ".join(["python", "benchmarks/families.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "turbo" in args.figures:
            sd1 = frame_seconds(build_sd_shaped(tmp / "sd1"), args.frames, tmp / "sd1-out", steps=25)
            turbo = frame_seconds(build_turbo_shaped(tmp / "turbo"), args.frames, tmp / "turbo-out")
            report["turbo"] = {
                "sd1_shaped_512_25_steps_dpmpp_s_per_frame": sd1,
                "sd_turbo_shaped_512_1_step_s_per_frame": turbo,
                "ratio_sd1_over_turbo": round(statistics.median(sd1) / statistics.median(turbo), 2),
            }
            print(json.dumps(report["turbo"]), flush=True)
        if "vae-tiling" in args.figures:
            report["vae_tiling_sdxl_vae_1024"] = tiling_figures(build_sdxl_vae_shaped(tmp / "sdxl-vae"), tmp)
        if "sdxl-full" in args.figures:
            from gpu_families import build_sdxl

            t0 = time.perf_counter()
            build_sdxl(tmp / "sdxl-full", tiny=False)
            figures = tiling_figures(tmp / "sdxl-full", tmp)
            figures["build_s"] = round(time.perf_counter() - t0, 1)
            report["sdxl_full_1024_one_step_no_cfg"] = figures
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def tiling_figures(model: Path, tmp: Path) -> dict:
    """Peak RSS of one 1024² frame of ``model``, each in a fresh process, without and with --vae-tiling."""
    figures = {}
    for tiling in (False, True):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", str(model), "1" if tiling else "0",
                               str(tmp / f"{model.name}-tiling-{tiling}")], capture_output=True, text=True, check=True)
        rss = json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_gib"]
        figures["with_vae_tiling" if tiling else "without"] = {
            "peak_rss_gib": round(rss, 2), "seconds": round(time.perf_counter() - t0, 1)}
    figures["ratio_without_over_with"] = round(figures["without"]["peak_rss_gib"]
                                               / figures["with_vae_tiling"]["peak_rss_gib"], 2)
    print(json.dumps(figures), flush=True)
    return figures


if __name__ == "__main__":
    main()
