"""Train the demo model's motion module: a small AnimateDiff ``MotionAdapter`` on procedural clips.

Reproducible, on the CPU by default: ``python -m framereel.demo_model.train_motion --out DIR``
(``--device cuda`` on a GPU; every random draw is made on the CPU, so the batches are the same).
The demo model (``weights/``) stays frozen; only the temporal attention layers of a diffusers
``MotionAdapter`` learn (and, with ``word_lr``, the embeddings of the motion words, saved with a
copy of the text encoder in ``DIR/text_encoder``). Every setting is in ``MotionConfig``
(``--set FIELD=VALUE`` overrides one). Stages, each timed and logged:

1. draw the clips (``motion_scenes.py``: shapes moving left/right, falling/rising, growing/
   shrinking, shifting colour) and encode every frame once with the demo model's VAE;
2. wrap the demo UNet in a ``UNetMotionModel`` with a fresh adapter whose output projections
   start at zero (so step 0 is exactly the image model), and train the adapter on the image
   model's own noise schedule and target (the demo model's: zero terminal SNR, v-prediction),
   independent noise per frame, Min-SNR-5 weighting (with an optional floor), a share of the
   timesteps from the noisiest end (where the path of a move is decided), 10 % empty captions;
3. save the adapter in diffusers' layout (fp16 safetensors) and ``training.json``.

A checkpoint is written every ``--checkpoint-every`` steps (``DIR/checkpoint.pt``) and a rerun
of the same command resumes from it. ``--budget-minutes`` stops early (the last checkpoint is
saved as the adapter, and ``training.json`` says how many steps were done).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from . import motion_scenes, scenes
from .train import load_models, log, loss_weights, lr_at, noise_schedule

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
    high_noise_share: float = 0.0  # share of timesteps drawn from t >= high_noise_from, where layout and motion are decided
    high_noise_from: int = 500
    # Loss weight in terms of the clean clip's error: clamp(SNR, snr_floor, min_snr_gamma). With a floor of 0
    # this is plain Min-SNR, which weighs the noisiest steps (where a shape's position is decided) by their
    # tiny SNR; a floor of 1 weighs them like the rest.
    snr_floor: float = 0.0
    # Learning rate of the motion words' embeddings in the demo text encoder (0: text encoder frozen).
    # Only words the demo model never saw ("moving", "falling", "rising", ...) learn; every row a demo
    # caption uses stays bit-identical, so stills render exactly as before.
    word_lr: float = 0.0


# The shipped module, on the demo model's zero-terminal-SNR schedule: stage 1 from scratch; stage 2 from
# stage 1's adapter (``--init``) on new clips, its snapshot at step 1,000 (``--snapshot-every 500``;
# the cosine schedule runs to 2,000); stage 3 from that snapshot, also teaching the motion words
# ("rising", "falling", "up", "down" ...: words no still caption uses) to the demo text encoder, whose
# copy with those rows replaces the demo model's (still captions' rows stay bit-identical).
# Every stage weighs the noisiest steps like the rest (``snr_floor``) and draws half its timesteps from
# t >= 950, where only the caption can say which way the shape goes.
_DIRECTED = dict(batch=4, directional_share=0.8, high_noise_share=0.5, high_noise_from=950, snr_floor=1.0)
STAGES = {
    1: MotionConfig(steps=2000, **_DIRECTED),
    2: MotionConfig(seed=1, steps=2000, lr=5e-4, warmup=20, **_DIRECTED),
    3: MotionConfig(seed=2, steps=1500, lr=5e-4, warmup=20, word_lr=5e-3, **_DIRECTED),
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


def motion_word_ids(tokenizer) -> list[int]:
    """Token ids of the motion captions that no demo still caption uses (the words the motion module
    may teach: every row a still caption uses stays as it is, so stills render exactly as before)."""
    rng = random.Random(0)
    still = set()
    for _ in range(4000):
        scene = scenes.random_scene(rng)
        still.update(tokenizer(scenes.caption(scene, rng)).input_ids)
        still.update(tokenizer(scenes.full_caption(scene)).input_ids)
    motion = set()
    for _ in range(4000):
        motion.update(tokenizer(motion_scenes.motion_caption(motion_scenes.random_motion(rng), rng)).input_ids)
    return sorted(motion - still)


class MotionWords:
    """The demo text encoder with only the motion words' embedding rows trainable (see ``word_lr``)."""

    def __init__(self, text_encoder, tokenizer, enabled: bool):
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.weight = text_encoder.get_input_embeddings().weight
        self.ids = motion_word_ids(tokenizer) if enabled else []
        self.frozen = self.weight.detach().clone()
        self.keep = torch.ones(self.weight.shape[0], dtype=torch.bool, device=self.weight.device)
        self.keep[self.ids] = False
        text_encoder.requires_grad_(False)
        self.weight.requires_grad_(bool(self.ids))

    def restore_frozen_rows(self) -> None:
        """Put back every row but the motion words' (weight decay and optimizer noise never touch them)."""
        with torch.no_grad():
            self.weight[self.keep] = self.frozen[self.keep]


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
    parser.add_argument("--base", type=Path, default=WEIGHTS, help="the image model to train on  [default: the demo model]")
    parser.add_argument("--device", default="cpu", help="torch device to train on, e.g. cuda  [default: cpu]")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one MotionConfig field, e.g. --set steps=4000 (repeatable)")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="also save the adapter every N steps under DIR/snapshots/step-N")
    args = parser.parse_args(argv)
    if not (args.base / "scheduler" / "scheduler_config.json").is_file():
        parser.error(f"--base {args.base}: not a demo model folder (no scheduler/scheduler_config.json)")
    cfg = STAGES[args.stage]
    fields = MotionConfig.__dataclass_fields__
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in fields:
            parser.error(f"--set {item}: no MotionConfig field {name!r} (fields: {', '.join(fields)})")
        kind = type(getattr(cfg, name))
        cfg = MotionConfig(**{**asdict(cfg), name: tuple(int(v) for v in value.split(",")) if kind is tuple else kind(value)})
    if args.quick:
        cfg = MotionConfig(**{**asdict(cfg), "n_clips": 8, "steps": 3})
    if args.steps:
        cfg = MotionConfig(**{**asdict(cfg), "steps": args.steps})
    return args, cfg


def load_and_encode(cfg: MotionConfig, timings: dict[str, float], base: Path = WEIGHTS):
    """Stage 1: load the demo model, draw the clips and encode them with its VAE (timed in ``timings``).

    Returns (text encoder, tokenizer, 2-D UNet, held-out captions, clips, their latents)."""
    from transformers import CLIPTokenizer

    t = time.time()
    vae, text_encoder, unet2d = load_models(base)
    text_encoder.eval()
    tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer")
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


def resume(ckpt_path: Path, cfg: MotionConfig, model, opt, timings: dict[str, float], words: MotionWords):
    """Load the checkpoint into ``model``, ``opt`` and ``words`` when it was written with the same ``cfg``.

    Returns (step to start at, saved random states or None, timings)."""
    ckpt = torch.load(ckpt_path, weights_only=False)
    if ckpt["config"] != asdict(cfg):
        return 0, None, timings
    model.load_state_dict(ckpt["model"], strict=False)
    opt.load_state_dict(ckpt["opt"])
    with torch.no_grad():
        words.weight.copy_(ckpt["words"])
    log(f"resumed from step {ckpt['step']}")
    return ckpt["step"], ckpt["rng"], ckpt["timings"]


def save_checkpoint(ckpt_path: Path, cfg: MotionConfig, model, opt, words: MotionWords, rng: random.Random,
                    gen: torch.Generator, timings: dict[str, float], step: int) -> None:
    """Write ``DIR/checkpoint.pt`` (motion modules, word embeddings, optimizer, random states, timings) atomically."""
    state = {k: v for k, v in model.state_dict().items() if "motion_modules" in k}
    tmp = ckpt_path.with_suffix(".tmp")
    torch.save({"config": asdict(cfg), "model": state, "words": words.weight.detach().cpu(), "opt": opt.state_dict(), "step": step,
                "rng": (rng.getstate(), gen.get_state()), "timings": timings}, tmp)
    os.replace(tmp, ckpt_path)


def batch_loss(cfg: MotionConfig, model, tokenizer, text_encoder, noise_sched, motions, latents: torch.Tensor,
               held_out: set[str], rng: random.Random, gen: torch.Generator, device: str = "cpu") -> torch.Tensor:
    """One batch of random clips and captions: the Min-SNR-weighted loss on the image model's own target
    (epsilon or v, on its own noise schedule), independent noise per frame.

    Every random draw is made on the CPU (``rng``, ``gen``), so a run draws the same batches on any device."""
    idx = [rng.randrange(len(motions)) for _ in range(cfg.batch)]
    captions = ["" if rng.random() < cfg.uncond_prob else training_caption(motions[i], rng, held_out) for i in idx]
    ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.set_grad_enabled(cfg.word_lr > 0):
        cond = text_encoder(ids.to(device))[0].repeat_interleave(cfg.frames, dim=0)
    x0 = latents[idx].permute(0, 2, 1, 3, 4)  # (B, C, F, H, W)
    noise = torch.randn(x0.shape, generator=gen)
    tt = torch.randint(0, 1000, (len(idx),), generator=gen)
    if cfg.high_noise_share:
        high = torch.rand(len(idx), generator=gen) < cfg.high_noise_share
        tt = torch.where(high, cfg.high_noise_from + tt * (1000 - cfg.high_noise_from) // 1000, tt)
    alphas = noise_sched.alphas_cumprod[tt]
    a = alphas.view(-1, 1, 1, 1, 1)
    xt = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(device)
    pred = model(xt, tt.to(device), cond).sample
    prediction = noise_sched.config.prediction_type
    target = noise if prediction == "epsilon" else noise_sched.get_velocity(x0, noise, tt)
    snr = alphas / (1 - alphas)
    weight = loss_weights(snr, prediction, cfg.min_snr_gamma, cfg.snr_floor).to(device)
    return (weight * ((pred - target.to(device)) ** 2).mean(dim=(1, 2, 3, 4))).mean()


def train_adapter(cfg: MotionConfig, model, opt, start: int, timings: dict[str, float],
                  budget_minutes: float | None, checkpoint_every: int, loss_fn, save, after_step=None) -> int:
    """Stage 2: train from step ``start``; ``save(step)`` writes a checkpoint. Returns the steps done.

    Each optimizer group has its own ``base_lr`` (warm-up and cosine decay) and its own gradient clipping."""
    model.train()
    t0, running, step = time.time(), 0.0, start
    deadline = t0 + budget_minutes * 60 if budget_minutes else None
    prior = timings.get("train_s", 0.0)
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.steps, group["base_lr"], cfg.warmup)
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            torch.nn.utils.clip_grad_norm_(group["params"], 1.0)
        opt.step()
        if after_step:
            after_step()
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


def save_adapter(model, adapter, words: MotionWords, cfg: MotionConfig, args: argparse.Namespace, done: int,
                 timings: dict[str, float], out: Path | None = None) -> None:
    """Stage 3: the trained adapter in diffusers' layout (fp16 safetensors) and ``training.json``; when the
    motion words learned, the demo text encoder with them under ``text_encoder/`` (its other rows unchanged)."""
    out = out or args.out
    was_training = model.training
    model.eval()
    copy_back(model, adapter)
    adapter.to(torch.float16).save_pretrained(out, safe_serialization=True)
    adapter.to(torch.float32)
    model.train(was_training)
    learned = []
    if words.ids:
        # a copy in fp16: casting the one being trained would round its learned rows at every snapshot
        copy.deepcopy(words.text_encoder).to(torch.float16).save_pretrained(out / "text_encoder", safe_serialization=True)
        learned = [words.tokenizer.convert_ids_to_tokens(i) for i in words.ids]
    (out / "training.json").write_text(json.dumps(
        {"config": asdict(cfg), "stage": args.stage, "init": str(args.init) if args.init else None, "steps_done": done,
         "timings": timings, "torch": torch.__version__, "device": args.device, "motion_words": learned}, indent=2) + "\n")
    log(f"saved adapter to {out} after {done} steps; timings {timings}")


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_args(argv)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", cfg.threads)))
    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    text_encoder, tokenizer, unet2d, held_out, motions, latents = load_and_encode(cfg, timings, args.base)
    adapter, model, params = motion_model(cfg, unet2d, args.init)
    model.to(args.device)
    text_encoder.to(args.device)
    words = MotionWords(text_encoder, tokenizer, cfg.word_lr > 0)
    groups = [{"params": params, "lr": cfg.lr, "base_lr": cfg.lr}]
    if words.ids:
        log(f"motion words learning: {' '.join(tokenizer.convert_ids_to_tokens(words.ids))}")
        groups.append({"params": [words.weight], "lr": cfg.word_lr, "base_lr": cfg.word_lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.01)
    base = json.loads((args.base / "scheduler" / "scheduler_config.json").read_text())
    noise_sched = noise_schedule(base.get("rescale_betas_zero_snr", False), base.get("prediction_type", "epsilon"))
    log(f"image model's schedule: {noise_sched.config.prediction_type}, zero terminal SNR "
        f"{noise_sched.config.rescale_betas_zero_snr}")

    ckpt_path = args.out / "checkpoint.pt"
    start, rng_state = 0, None
    if ckpt_path.exists() and not args.quick:
        start, rng_state, timings = resume(ckpt_path, cfg, model, opt, timings, words)
    rng = random.Random(cfg.seed + 2)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    if rng_state is not None:
        rng.setstate(rng_state[0])
        gen.set_state(rng_state[1])
    loss_fn = partial(batch_loss, cfg, model, tokenizer, text_encoder, noise_sched, motions, latents, held_out, rng,
                      gen, args.device)
    checkpoint = partial(save_checkpoint, ckpt_path, cfg, model, opt, words, rng, gen, timings)

    def save(step: int) -> None:
        checkpoint(step)
        if args.snapshot_every and step % args.snapshot_every == 0:
            save_adapter(model, adapter, words, cfg, args, step, timings, args.out / "snapshots" / f"step-{step}")

    done = train_adapter(cfg, model, opt, start, timings, args.budget_minutes, args.checkpoint_every, loss_fn, save,
                         words.restore_frozen_rows if words.ids else None)
    save_adapter(model, adapter, words, cfg, args, done, timings)


if __name__ == "__main__":
    main()
