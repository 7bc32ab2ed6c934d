"""Video-model clips on a CUDA GPU: seconds per clip and peak GPU memory, framereel's ``--video-model``
against the plain diffusers call over the same model folder (issue #27, GPU figures).

One prepared script, run once on a GPU machine (no internet, no model hub: the models are random
weights with the real shapes, built on the GPU here):

* ``wan2.2-ti2v``: Wan 2.2 TI2V-5B's transformer (30 layers, 3072 wide, 48 latent channels) and
  VAE (z_dim 48 over 2x2 patches, 16x spatial compression) at their real configs,
  ``expand_timesteps``, UniPC flow scheduler; ``WanPipeline``;
* ``ltx``: LTX-Video 0.9's transformer (28 layers, 2048 wide, 128 latent channels) and VAE (32x
  spatial, 8x temporal compression) at their real configs; ``LTXPipeline``.

The text encoders are UMT5-XXL / T5-XXL-shaped in width (d_model 4096, so the transformer's text
projection is real) but ``--text-layers`` deep (default 2 of 24, with a 128-token vocabulary and a
character tokenizer: no tokenizer files offline); text encoding is a small part of a clip. Both
sides use the same folder, so the comparison is fair; the JSON says what was shortened.

For each model: framereel renders a storyboard of one ``"clip"`` (``framereel.render`` through a
loaded backend, ``RenderSettings(video_model=..., dtype=...)``: PNGs with metadata and run.json
written) and diffusers calls the pipeline directly (``DiffusionPipeline.from_pretrained``, same
prompt, negative prompt, seed on a CPU generator, size, frames, steps, guidance; PIL frames saved
as PNG). Each side: one warm-up call (2 steps), then the timed call between ``torch.cuda.synchronize()``;
peak GPU memory from ``torch.cuda.max_memory_allocated`` reset before each side's timed call;
closeness of the two sides' frames (PSNR; the same seed should give the same frames). The JSON
(``--out``) is rewritten after every measurement; ``--budget-s`` skips what is left once that much
time has passed.

    PYTHONPATH=. python benchmarks/gpu_video.py --budget-s 220          # on the GPU machine (~4 min)
    PYTHONPATH=. python benchmarks/gpu_video.py --tiny --device cpu --out /tmp/gv.json   # check here
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_families import ROOT, T0, build, closeness, free, log, machine_info, sync, timed  # noqa: E402

PROMPT = "a red fox running through fresh snow at dawn, tracking shot"
NEGATIVE = "blurry, static"
SEED = 1234

# transformer/config.json and vae/config.json of Wan-AI/Wan2.2-TI2V-5B-Diffusers
WAN_TI2V_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48,
                            out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30,
                            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
WAN_TI2V_VAE = dict(base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                    temperal_downsample=[False, True, True], in_channels=12, out_channels=12, is_residual=True,
                    patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                    latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
# Lightricks/LTX-Video (0.9.x) transformer and VAE (the VAE class's defaults are 0.9.0's config)
LTX_TRANSFORMER = dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                       attention_head_dim=64, cross_attention_dim=2048, num_layers=28, caption_channels=4096,
                       qk_norm="rms_norm_across_heads")
LTX_VAE: dict = {}
LTX_SCHEDULER = dict(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                     max_image_seq_len=4096, shift_terminal=0.1)
# the XXL encoders' width (UMT5-XXL for Wan, T5-XXL for LTX); depth from --text-layers
XXL_TEXT = dict(vocab_size=128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, feed_forward_proj="gated-gelu",
                relative_attention_num_buckets=32, decoder_start_token_id=0, pad_token_id=0)

SETTINGS = {  # name: (frames, width, height, steps, guidance) at full size
    "wan2.2-ti2v": (49, 832, 480, 4, 5.0),
    "ltx": (49, 704, 480, 4, 3.0),
}
TINY = (9, 64, 64, 2)


def build_wan_ti2v(folder: Path, tiny: bool, text_layers: int = 2) -> None:
    """Wan 2.2 TI2V-5B-shaped (or the tests' tiny TI2V shape), saved in bfloat16."""
    if tiny:
        from tiny_video import build_video

        build_video("wan2.2-ti2v", folder)
        return
    import diffusers
    import torch
    from tiny_families import t5_tokenizer
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    pipe = diffusers.WanPipeline(
        tokenizer=t5_tokenizer(folder.with_name(folder.name + "-tokenizer")),
        text_encoder=UMT5EncoderModel(UMT5Config(**XXL_TEXT, num_layers=text_layers)),
        vae=diffusers.AutoencoderKLWan(**WAN_TI2V_VAE),
        scheduler=diffusers.UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                    flow_shift=5.0),
        transformer=diffusers.WanTransformer3DModel(**WAN_TI2V_TRANSFORMER), expand_timesteps=True)
    pipe.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)


def build_ltx(folder: Path, tiny: bool, text_layers: int = 2) -> None:
    """LTX-Video-shaped (or the tests' tiny LTX shape), saved in bfloat16."""
    if tiny:
        from tiny_video import build_video

        build_video("ltx", folder)
        return
    import diffusers
    import torch
    from tiny_families import t5_tokenizer
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    pipe = diffusers.LTXPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER),
        vae=diffusers.AutoencoderKLLTXVideo(**LTX_VAE),
        text_encoder=T5EncoderModel(T5Config(**XXL_TEXT, num_layers=text_layers)),
        tokenizer=t5_tokenizer(folder.with_name(folder.name + "-tokenizer")),
        transformer=diffusers.LTXVideoTransformer3DModel(**LTX_TRANSFORMER))
    pipe.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)


BUILDERS = {"wan2.2-ti2v": build_wan_ti2v, "ltx": build_ltx}


def framereel_clip(backend, settings, call: dict, out: Path) -> float:
    """framereel.render of a one-clip storyboard into a fresh folder through the loaded backend."""
    from framereel import load_storyboard, render

    board = out.with_suffix(".json")
    board.write_text(json.dumps({"frames": [{"prompt": PROMPT, "negative_prompt": NEGATIVE, "seed": SEED,
                                             "clip": call["frames"], "steps": call["steps"],
                                             "guidance": call["guidance"], "width": call["width"],
                                             "height": call["height"]}]}))
    return timed(settings.device, lambda: render(load_storyboard(board), out, settings, backend=backend))


def plain_clip(pipe, device: str, call: dict, out: Path) -> float:
    """The plain diffusers call: the pipeline with the same arguments, its PIL frames saved as PNG."""
    import torch

    def run() -> None:
        out.mkdir(parents=True)
        frames = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_frames=call["frames"], width=call["width"],
                      height=call["height"], num_inference_steps=call["steps"], guidance_scale=call["guidance"],
                      generator=torch.Generator("cpu").manual_seed(SEED), output_type="pil").frames[0]
        for i, image in enumerate(frames):
            image.save(out / f"{i:05d}.png")

    return timed(device, run)


def peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def measure_framereel(folder: Path, args, call: dict, tmp: Path, name: str) -> dict:
    from framereel import RenderSettings
    from framereel.backends import create_backend

    settings = RenderSettings(model="demo", device=args.device, dtype=args.dtype, video_model=str(folder),
                              safety_checker=False)
    backend = create_backend(settings)
    load_s = timed(args.device, backend.load) + timed(args.device, backend.video.load)  # still model, video model
    warm_s = framereel_clip(backend, settings, {**call, "steps": 2}, tmp / f"{name}-fr-warm")
    reset_peak(args.device)
    seconds = framereel_clip(backend, settings, call, tmp / f"{name}-fr")
    result = {"framereel_s_per_clip": round(seconds, 2), "framereel_peak_gpu_gib": peak_gib(args.device),
              "framereel_load_s": round(load_s, 1), "framereel_warm_up_s": round(warm_s, 2)}
    backend.close()
    del backend
    free(args.device)
    return result


def measure_plain(folder: Path, args, call: dict, tmp: Path, name: str) -> dict:
    import torch
    from diffusers import DiffusionPipeline

    t0 = time.perf_counter()
    pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=getattr(torch, args.dtype))
    pipe.set_progress_bar_config(disable=True)
    pipe.to(args.device)
    sync(args.device)
    load_s = time.perf_counter() - t0
    warm_s = plain_clip(pipe, args.device, {**call, "steps": 2}, tmp / f"{name}-df-warm")
    reset_peak(args.device)
    seconds = plain_clip(pipe, args.device, call, tmp / f"{name}-df")
    result = {"diffusers_s_per_clip": round(seconds, 2), "diffusers_peak_gpu_gib": peak_gib(args.device),
              "diffusers_load_s": round(load_s, 1), "diffusers_warm_up_s": round(warm_s, 2),
              "pipeline": type(pipe).__name__}
    del pipe
    free(args.device)
    return result


def measure_model(name: str, args, tmp: Path, report: dict, save) -> None:
    entry: dict = report["results"].setdefault(name, {})
    frames, width, height, steps, guidance = SETTINGS[name]
    if args.tiny:
        frames, width, height, steps = TINY
    call = {"frames": args.frames or frames, "width": width, "height": height, "steps": args.steps or steps,
            "guidance": guidance}
    entry["call"] = call
    log(f"{name}: building the {'tiny' if args.tiny else 'real-shaped'} random-weight model …")
    t0 = time.perf_counter()
    folder, where = build(lambda f, tiny: BUILDERS[name](f, tiny, args.text_layers), tmp / name, args.device,
                          args.tiny)
    free(args.device)
    entry.update(build_s=round(time.perf_counter() - t0, 1), built_on=where,
                 weights_gib=round(sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**30, 2))
    log(f"{name}: built on {where} in {entry['build_s']}s ({entry['weights_gib']} GiB); {call}")
    save()
    for side, measure in (("framereel", measure_framereel), ("diffusers", measure_plain)):
        if time.perf_counter() - T0 > args.budget_s:
            entry[f"{side}_skipped"] = f"time budget of {args.budget_s}s spent"
            log(f"{name} {side}: skipped (over the {args.budget_s}s budget)")
            save()
            return
        entry.update(measure(folder, args, call, tmp, name))
        log(f"{name} {side}: {json.dumps({k: v for k, v in entry.items() if k.startswith(side)})}")
        save()
    entry["ratio_framereel_over_diffusers_time"] = round(entry["framereel_s_per_clip"] / entry["diffusers_s_per_clip"],
                                                         3)
    entry.update(closeness(tmp / f"{name}-fr", tmp / f"{name}-df"))
    log(f"{name}: ratio {entry['ratio_framereel_over_diffusers_time']}, frames ≥ "
        f"{entry['min_psnr_framereel_vs_diffusers_db']} dB vs diffusers' (None: identical)")
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu-video.json",
                        help="JSON written after every measurement (default: benchmarks/results/gpu-video.json)")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu with --tiny")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--models", default="wan2.2-ti2v,ltx", help="comma-separated: wan2.2-ti2v, ltx (default both)")
    parser.add_argument("--frames", type=int, default=0, help="frames per clip (default 49; 9 with --tiny)")
    parser.add_argument("--steps", type=int, default=0, help="denoising steps (default 4; 2 with --tiny)")
    parser.add_argument("--text-layers", type=int, default=2, help="text encoder depth (default 2 of the real 24)")
    parser.add_argument("--budget-s", type=float, default=220.0,
                        help="skip measurements not started after this many seconds (default 220)")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny shapes, 64², 9 frames, 2 steps: checks "
                                                            "the script on a CPU")
    parser.add_argument("--workdir", type=Path, default=None, help="where the models and frames go (default: a "
                                                                    "temporary folder, removed at the end)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in BUILDERS]
    if unknown:
        parser.error(f"--models {','.join(unknown)}: choose from {', '.join(BUILDERS)}")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible to PyTorch; on a CPU run it with --tiny --device cpu")
    log(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, models {models}, "
        f"budget {args.budget_s}s")
    report = {"script": "benchmarks/gpu_video.py",
              "command": " ".join(["python", "benchmarks/gpu_video.py", *sys.argv[1:]]),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_info(args.device),
              "settings": {"device": args.device, "dtype": args.dtype, "tiny": args.tiny, "seed": SEED,
                           "prompt": PROMPT, "negative_prompt": NEGATIVE,
                           "weights": "random; transformer and VAE at the real configs (tiny shapes with --tiny)",
                           "text_encoder": f"XXL width (d_model 4096), {args.text_layers} of 24 layers, 128-token "
                                           "vocabulary, a character tokenizer",
                           "warm_up": "one 2-step call per side before the timed call"},
              "results": {}, "complete": False}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - T0, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    save()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in models:
            if time.perf_counter() - T0 > args.budget_s:
                report["results"][name] = {"skipped": f"time budget of {args.budget_s}s spent"}
                log(f"{name}: skipped (over the {args.budget_s}s budget)")
                save()
                continue
            try:
                measure_model(name, args, Path(tmp), report, save)
            except Exception as err:  # noqa: BLE001 - a failed model is recorded, the next one still runs
                report["results"].setdefault(name, {})["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:500]
                log(f"{name}: failed: {report['results'][name]['error']}")
                free(args.device)
                save()
    report["complete"] = True
    save()
    log(f"done: {args.out}")


if __name__ == "__main__":
    main()
