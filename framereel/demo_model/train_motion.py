"""Train the demo model's motion module: a small AnimateDiff ``MotionAdapter`` on procedural clips.

Reproducible and CPU-only: ``python -m framereel.demo_model.train_motion --out DIR``. The demo
model (``weights/``) stays frozen; only the temporal attention layers of a diffusers
``MotionAdapter`` learn. Every setting is in ``MotionConfig``. Stages, each timed and logged:

1. draw the clips (``motion_scenes.py``: shapes moving left/right, falling/rising, growing/
   shrinking, shifting colour) and encode every frame once with the demo model's VAE;
2. wrap the demo UNet in a ``UNetMotionModel`` with a fresh adapter whose output projections
   start at zero (so step 0 is exactly the image model), and train the adapter: epsilon
   prediction, independent noise per frame, Min-SNR-5 weighting, 10 % empty captions;
3. save the adapter in diffusers' layout (fp16 safetensors) and ``training.json``.

A checkpoint is written every ``--checkpoint-every`` steps (``DIR/checkpoint.pt``) and a rerun
of the same command resumes from it. ``--budget-minutes`` stops early (the last checkpoint is
saved as the adapter, and ``training.json`` says how many steps were done).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from . import motion_scenes
from .train import log, lr_at

WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class MotionConfig:
    seed: int = 0
    frames: int = 8
    n_clips: int = 480
    heads: tuple[int, ...] = (4, 4, 8)
    norm_groups: int = 16
    max_seq_length: int = 32
    steps: int = 800
    batch: int = 2
    lr: float = 1e-3
    warmup: int = 50
    uncond_prob: float = 0.1
    min_snr_gamma: float = 5.0
    threads: int = 2
    directional_share: float = 0.0  # share of clips drawn from left/right/falling/rising (else any motion)
    high_noise_share: float = 0.0  # share of timesteps drawn from t >= 500, where layout and motion are decided


# Stage 2 starts from stage 1's adapter (``--init``) and trains on the directional moves at high
# noise, where stage 1 learned frame-to-frame consistency but not yet which way a shape goes.
STAGES = {
    1: MotionConfig(),
    2: MotionConfig(seed=1, steps=1000, warmup=20, directional_share=0.8, high_noise_share=0.5),
}


def build_adapter(cfg: MotionConfig, unet_config: dict):
    from diffusers import MotionAdapter

    adapter = MotionAdapter(
        block_out_channels=tuple(unet_config["block_out_channels"]),
        motion_layers_per_block=unet_config["layers_per_block"],
        motion_transformer_layers_per_block=1,
        motion_mid_block_layers_per_block=1,
        motion_num_attention_heads=cfg.heads,
        motion_norm_num_groups=cfg.norm_groups,
        motion_max_seq_length=cfg.max_seq_length,
        use_motion_mid_block=True,
    )
    for name, module in adapter.named_modules():
        if name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    return adapter


def _motion_parts(model):
    parts = [b.motion_modules for b in model.down_blocks] + [b.motion_modules for b in model.up_blocks]
    if getattr(model, "mid_block", None) is not None and hasattr(model.mid_block, "motion_modules"):
        parts.append(model.mid_block.motion_modules)
    return parts


def copy_back(unet_motion, adapter) -> None:
    """Copy the trained motion modules out of the ``UNetMotionModel`` into the ``MotionAdapter``."""
    for src, dst in zip(_motion_parts(unet_motion), _motion_parts(adapter), strict=True):
        dst.load_state_dict(src.state_dict())


def make_clips(cfg: MotionConfig):
    rng = random.Random(cfg.seed)
    directional = ("right", "left", "falling", "rising")
    return [motion_scenes.random_motion(rng, rng.choice(directional) if rng.random() < cfg.directional_share else None)
            for _ in range(cfg.n_clips)]


def training_caption(motion, rng: random.Random, held_out: set[str]) -> str:
    """A random phrasing of the clip's caption, never one of the held-out evaluation captions."""
    text = motion_scenes.motion_caption(motion, rng)
    while text in held_out:
        text = motion_scenes.motion_caption(motion, rng)
    return text


@torch.inference_mode()
def encode_clips(vae, motions, frames: int) -> torch.Tensor:
    out = []
    scale = vae.config.scaling_factor
    for i in range(0, len(motions), 32):
        imgs = [f for m in motions[i : i + 32] for f in motion_scenes.draw_clip(m, frames)]
        x = torch.from_numpy(np.stack([np.asarray(f) for f in imgs])).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = vae.encode(x).latent_dist.mean * scale
        out.append(z.reshape(-1, frames, *z.shape[1:]))
    return torch.cat(out)  # (clips, frames, 4, 16, 16)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, MotionConfig]:
    """The command line, and the stage's :class:`MotionConfig` with ``--quick``/``--steps`` applied."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="adapter folder to write")
    parser.add_argument("--quick", action="store_true", help="a few steps only, to check the script runs")
    parser.add_argument("--steps", type=int, default=None, help="training steps  [default: MotionConfig.steps]")
    parser.add_argument("--budget-minutes", type=float, default=None, help="stop training after this long")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--stage", type=int, choices=sorted(STAGES), default=1, help="training stage (see STAGES)")
    parser.add_argument("--init", type=Path, default=None, help="start from this adapter (stage 2: stage 1's)")
    args = parser.parse_args(argv)
    cfg = STAGES[args.stage]
    if args.quick:
        cfg = MotionConfig(**{**asdict(cfg), "n_clips": 8, "steps": 3})
    if args.steps:
        cfg = MotionConfig(**{**asdict(cfg), "steps": args.steps})
    return args, cfg


def load_and_encode(cfg: MotionConfig, timings: dict[str, float]):
    """Stage 1: load the demo model, draw the clips and encode them with its VAE (timed in ``timings``).

    Returns (text encoder, tokenizer, 2-D UNet, held-out captions, clips, their latents)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    t = time.time()
    vae = AutoencoderKL.from_pretrained(WEIGHTS / "vae", torch_dtype=torch.float32).eval()
    text_encoder = CLIPTextModel.from_pretrained(WEIGHTS / "text_encoder", torch_dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(WEIGHTS / "tokenizer")
    unet2d = UNet2DConditionModel.from_pretrained(WEIGHTS / "unet", torch_dtype=torch.float32)
    held_out = motion_scenes.held_out_captions()
    motions = make_clips(cfg)
    latents = encode_clips(vae, motions, cfg.frames)
    timings["draw_and_encode_s"] = time.time() - t
    log(f"drew and encoded {len(motions)} clips of {cfg.frames} frames in {timings['draw_and_encode_s']:.1f}s")
    return text_encoder, tokenizer, unet2d, held_out, motions, latents


def motion_model(cfg: MotionConfig, unet2d, init: Path | None):
    """The adapter (fresh, or loaded from ``init``) inside a ``UNetMotionModel`` whose image layers are
    frozen; returns (adapter, model, trainable parameters)."""
    from diffusers import UNetMotionModel

    adapter = build_adapter(cfg, dict(unet2d.config))
    if init:
        from diffusers import MotionAdapter

        adapter.load_state_dict(MotionAdapter.from_pretrained(init, torch_dtype=torch.float32).state_dict())
        log(f"starting from {init}")
    model = UNetMotionModel.from_unet2d(unet2d, adapter)
    model.freeze_unet2d_params()
    params = [p for p in model.parameters() if p.requires_grad]
    log(f"motion parameters: {sum(p.numel() for p in params) / 1e6:.2f} M")
    return adapter, model, params


def resume(ckpt_path: Path, cfg: MotionConfig, model, opt, timings: dict[str, float]):
    """Load the checkpoint into ``model`` and ``opt`` when it was written with the same ``cfg``.

    Returns (step to start at, saved random states or None, timings)."""
    ckpt = torch.load(ckpt_path, weights_only=False)
    if ckpt["config"] != asdict(cfg):
        return 0, None, timings
    model.load_state_dict(ckpt["model"], strict=False)
    opt.load_state_dict(ckpt["opt"])
    log(f"resumed from step {ckpt['step']}")
    return ckpt["step"], ckpt["rng"], ckpt["timings"]


def save_checkpoint(ckpt_path: Path, cfg: MotionConfig, model, opt, rng: random.Random, gen: torch.Generator,
                    timings: dict[str, float], step: int) -> None:
    """Write ``DIR/checkpoint.pt`` (motion modules, optimizer, random states, timings) atomically."""
    state = {k: v for k, v in model.state_dict().items() if "motion_modules" in k}
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save({"config": asdict(cfg), "model": state, "opt": opt.state_dict(), "step": step,
                "rng": (rng.getstate(), gen.get_state()), "timings": timings}, tmp)
    os.replace(tmp, ckpt_path)


def batch_loss(cfg: MotionConfig, model, tokenizer, text_encoder, alphas_cumprod: torch.Tensor, snr: torch.Tensor,
               motions, latents: torch.Tensor, held_out: set[str], rng: random.Random,
               gen: torch.Generator) -> torch.Tensor:
    """One batch of random clips and captions: the Min-SNR-weighted epsilon loss, independent noise per frame."""
    idx = [rng.randrange(len(motions)) for _ in range(cfg.batch)]
    captions = ["" if rng.random() < cfg.uncond_prob else training_caption(motions[i], rng, held_out) for i in idx]
    with torch.no_grad():
        ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        cond = text_encoder(ids)[0].repeat_interleave(cfg.frames, dim=0)
    x0 = latents[idx].permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)
    noise = torch.randn(x0.shape, generator=gen)
    tt = torch.randint(0, 1000, (len(idx),), generator=gen)
    if cfg.high_noise_share:
        high = torch.rand(len(idx), generator=gen) < cfg.high_noise_share
        tt = torch.where(high, 500 + tt // 2, tt)
    a = alphas_cumprod[tt].view(-1, 1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    pred = model(xt, tt, cond).sample
    weight = torch.clamp(snr[tt], max=cfg.min_snr_gamma) / snr[tt]
    return (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3, 4))).mean()


def train_adapter(cfg: MotionConfig, model, opt, params, start: int, timings: dict[str, float],
          budget_minutes: float | None, checkpoint_every: int, loss_fn, save) -> int:
    """Stage 2: train from step ``start``; ``save(step)`` writes a checkpoint. Returns the steps done."""
    model.train()
    t0, running, step = time.time(), 0.0, start
    deadline = t0 + budget_minutes * 60 if budget_minutes else None
    prior = timings.get("train_s", 0.0)
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running = 0.98 * running + 0.02 * loss.item() if step > start else loss.item()
        done = step + 1
        if step % 20 == 0 or done == cfg.steps:
            log(f"motion step {step}/{cfg.steps} loss {running:.4f} ({time.time() - t0:.0f}s)")
        timings["train_s"] = prior + time.time() - t0
        if done % checkpoint_every == 0 or done == cfg.steps:
            save(done)
        if deadline and time.time() > deadline:
            log(f"wall-clock budget reached after {done} steps")
            save(done)
            break
    else:
        done = cfg.steps if cfg.steps > start else start
    return done


def save_adapter(model, adapter, cfg: MotionConfig, args: argparse.Namespace, done: int,
                 timings: dict[str, float]) -> None:
    """Stage 3: the trained adapter in diffusers' layout (fp16 safetensors) and ``training.json``."""
    model.eval()
    copy_back(model, adapter)
    adapter.to(torch.float16)
    adapter.save_pretrained(args.out, safe_serialization=True)
    (args.out / "training.json").write_text(json.dumps(
        {"config": asdict(cfg), "stage": args.stage, "init": str(args.init) if args.init else None, "steps_done": done, "timings": timings, "torch": torch.__version__}, indent=2) + "\n")
    log(f"saved adapter to {args.out} after {done} steps; timings {timings}")


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_args(argv)
    from diffusers import DDPMScheduler

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", cfg.threads)))
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    text_encoder, tokenizer, unet2d, held_out, motions, latents = load_and_encode(cfg, timings)
    adapter, model, params = motion_model(cfg, unet2d, args.init)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    noise_sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    snr = noise_sched.alphas_cumprod / (1 - noise_sched.alphas_cumprod)

    ckpt_path = args.out / "checkpoint.pt"
    start, rng_state = 0, None
    if ckpt_path.exists() and not args.quick:
        start, rng_state, timings = resume(ckpt_path, cfg, model, opt, timings)
    rng = random.Random(cfg.seed + 2)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    if rng_state is not None:
        rng.setstate(rng_state[0])
        gen.set_state(rng_state[1])
    loss_fn = partial(batch_loss, cfg, model, tokenizer, text_encoder, noise_sched.alphas_cumprod, snr, motions,
                      latents, held_out, rng, gen)
    save = partial(save_checkpoint, ckpt_path, cfg, model, opt, rng, gen, timings)
    done = train_adapter(cfg, model, opt, params, start, timings, args.budget_minutes, args.checkpoint_every, loss_fn, save)
    save_adapter(model, adapter, cfg, args, done, timings)


if __name__ == "__main__":
    main()
