"""Cost of each finishing stage per 512×512 frame on this machine, as a ratio against rendering that frame.

    python benchmarks/finishing.py [--steps 25] [--rounds 2]

Every model has the real shapes with random weights (no model hub here), so the times are real
and the pixels mean nothing:

* the frame: SD 1.x's UNet at 512² (64² latents, classifier-free guidance batch 2) for ``--steps``
  steps + its VAE decoder, in framereel's auto dtype for this CPU (bf16 where it is native);
* ``--upscale``: Real-ESRGAN ``RealESRGAN_x4plus``'s RRDBNet (64 features, 23 blocks) and the
  compact ``realesr-general-x4v3`` (SRVGGNetCompact, 64 features, 32 convs), through spandrel,
  fp32, tiles of 256 with 16 px overlap: a 512² frame is 4 tiles of 272² source pixels. The
  RRDBNet is timed on one 136² tile (¼ of a 272² tile's pixels) and scaled by 16;
* ``--interpolate``: RIFE 4.26's IFNet (encoder 16, blocks 192/128/96/64/32), one in-between at 512², fp32;
* beats: librosa beat tracking of a 60 s click track (per song, not per frame).

Rounds are interleaved (frame, stages, frame, …) and medians reported. Writes benchmarks/results/finishing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch


def click_track(path: Path, bpm: float, seconds: float, sr: int = 22050) -> Path:
    """A mono WAV of short 1.5 kHz clicks at ``bpm``."""
    y = np.zeros(int(seconds * sr), np.float32)
    n = np.arange(int(0.02 * sr))
    click = np.sin(2 * np.pi * 1500 * n / sr) * np.exp(-n / (0.004 * sr))
    for t in np.arange(0.5, seconds - 0.1, 60.0 / bpm):
        i = int(t * sr)
        y[i:i + len(click)] += click
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(y, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def timed(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def sd_frame_parts(dtype):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2).to(dtype).eval()
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512).to(dtype).eval()
    latents = torch.randn(2, 4, 64, 64, dtype=dtype)
    text = torch.randn(2, 77, 768, dtype=dtype)

    def step():
        with torch.inference_mode():
            unet(latents, 500, encoder_hidden_states=text)

    def decode():
        with torch.inference_mode():
            vae.decode(latents[:1])

    return step, decode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="denoising steps of the reference frame")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from PIL import Image
    from spandrel.architectures.Compact.__arch.SRVGG import SRVGGNetCompact
    from spandrel.architectures.ESRGAN.__arch.RRDB import RRDBNet

    from framereel.backends.device import cpu_supports_bf16
    from framereel.bench import machine
    from framereel.finishing.beats import find_beats
    from framereel.finishing.rife import IFNet
    from framereel.finishing.upscale import UpscaleSpec, load_upscaler, run_tiled, upscale_image

    dtype = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    step, decode = sd_frame_parts(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        torch.save(RRDBNet(num_filters=64, num_blocks=23, scale=4).state_dict(), tmp / "x4plus.pth")
        torch.save(SRVGGNetCompact(num_feat=64, num_conv=32, upscale=4, act_type="prelu").state_dict(), tmp / "x4v3.pth")
        rrdb, _, _ = load_upscaler(tmp / "x4plus.pth", "cpu")
        compact, _, _ = load_upscaler(tmp / "x4v3.pth", "cpu")
        heads = [(7 + 32, 192), (8 + 4 + 8 + 32, 128), (8 + 4 + 8 + 32, 96), (8 + 4 + 8 + 32, 64), (8 + 4 + 8 + 32, 32)]
        rife = IFNet([(cin, c, 13) for cin, c in heads], (16, 16)).eval()
        spec = UpscaleSpec(tmp / "x4v3.pth", None, 256, 16)
        frame = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
        x136 = torch.rand(1, 3, 136, 136)
        a, b = torch.rand(1, 3, 512, 512), torch.rand(1, 3, 512, 512)
        song = click_track(tmp / "clicks.wav", 120, 60)
        find_beats(song)  # numba compiles librosa's kernels on first use

        rows: dict[str, list[float]] = {k: [] for k in ("unet_step", "vae_decode", "esrgan_x4plus", "compact_x4v3",
                                                        "rife_426", "beats_60s")}
        for r in range(args.rounds):
            rows["unet_step"].append(timed(step))
            rows["vae_decode"].append(timed(decode))
            with torch.inference_mode():
                rows["esrgan_x4plus"].append(timed(lambda: run_tiled(rrdb, x136, 4, 0, 0)) * 16)
            rows["compact_x4v3"].append(timed(lambda: upscale_image(compact, frame, spec, "cpu", torch.float32)))
            rows["rife_426"].append(timed(lambda: rife.interpolate(a, b, 0.5)))
            rows["beats_60s"].append(timed(lambda: find_beats(song)))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()), flush=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    frame_s = med["unet_step"] * args.steps + med["vae_decode"]
    report = {
        "machine": machine(),
        "reference": {"what": f"SD-1.x-shaped frame at 512x512: {args.steps} UNet steps (CFG batch 2) + VAE decode",
                      "dtype": str(dtype).replace("torch.", ""), "unet_step_s": round(med["unet_step"], 3),
                      "vae_decode_s": round(med["vae_decode"], 3), "frame_s": round(frame_s, 2)},
        "per_512_frame_s": {
            "upscale RealESRGAN_x4plus-shaped (RRDBNet 23 blocks), tiles 256+16": round(med["esrgan_x4plus"], 2),
            "upscale realesr-general-x4v3-shaped (Compact), tiles 256+16": round(med["compact_x4v3"], 2),
            "interpolate RIFE 4.26-shaped, one in-between": round(med["rife_426"], 2),
        },
        "ratio_to_rendering_the_frame": {
            "upscale RealESRGAN_x4plus-shaped": round(med["esrgan_x4plus"] / frame_s, 3),
            "upscale realesr-general-x4v3-shaped": round(med["compact_x4v3"] / frame_s, 3),
            "interpolate RIFE 4.26-shaped (per in-between)": round(med["rife_426"] / frame_s, 3),
            "beats: 60 s of audio (once per song)": round(med["beats_60s"] / frame_s, 4),
        },
        "beats_60s_audio_s": round(med["beats_60s"], 3),
        "rounds": args.rounds,
        "raw_s": {k: [round(x, 3) for x in v] for k, v in rows.items()},
        "note": "random weights with the real shapes; fp32 for the finishing models, the frame in framereel's auto "
                "dtype; one run on a shared machine: ratios, not absolute speed",
    }
    print(json.dumps(report, indent=2))
    out = Path(__file__).parent / "results" / "finishing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
