"""Train framereel's offline demo model: a tiny text-to-image latent diffusion model.

Reproducible and CPU-only: ``python -m framereel.demo_model.train --out DIR`` (about 60 minutes on
2 cores). Every setting is in ``TrainConfig``. Stages, each timed and logged:

1. draw the data set (procedural scenes, ``scenes.py``) and its held-out evaluation prompts;
2. train the autoencoder (``AutoencoderKL``, 64×64 RGB ↔ 16×16×4 latents);
3. encode every image once and set the latent scaling factor to 1/std, as Stable Diffusion does;
4. train the UNet and the CLIP text encoder together (epsilon prediction, Min-SNR-5 weighting,
   10% empty captions for classifier-free guidance);
5. save everything in diffusers' Stable Diffusion layout, weights in fp16 safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import scenes

TOKENIZER_DIR = Path(__file__).parent / "weights" / "tokenizer"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    n_images: int = 24000
    vae_channels: tuple[int, ...] = (16, 32, 32)
    vae_steps: int = 1400
    vae_batch: int = 32
    vae_lr: float = 2e-3
    vae_kl_weight: float = 1e-6
    text_hidden: int = 64
    text_layers: int = 2
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_steps: int = 4200
    unet_batch: int = 64
    unet_lr: float = 1e-3
    warmup: int = 200
    uncond_prob: float = 0.1
    min_snr_gamma: float = 5.0
    # Stage 2 (zero terminal SNR): SD's noise schedule leaves a trace of the image at t = 999, so a
    # model trained on it reads the shape's place from that trace instead of from the caption, and
    # at sampling time (pure noise, no trace) puts the shape wherever the noise suggests. Stage 2
    # rescales the betas to zero terminal SNR and moves the UNet to v-prediction (Lin et al. 2023,
    # "Common Diffusion Noise Schedules and Sample Steps are Flawed"; diffusers'
    # ``rescale_betas_zero_snr``), with trailing timesteps at sampling time.
    zsnr_steps: int = 1500
    zsnr_batch: int = 32
    zsnr_lr: float = 3e-4
    zsnr_warmup: int = 50
    zsnr_full_caption_prob: float = 0.5  # captions that name every attribute, position included
    zsnr_snr_floor: float = 1.0  # see loss_weights
    # Share of timesteps drawn from t >= zsnr_high_noise_from, where x_t is (nearly) pure noise and only
    # the caption can say where the shape goes. With uniform timesteps these steps are too rare for the
    # model to learn positions at all (measured: still chance after 1,500 steps).
    zsnr_high_noise_share: float = 0.5
    zsnr_high_noise_from: int = 950
    threads: int = 2


def eval_prompts() -> list[str]:
    """The held-out prompts the model is measured on: never used verbatim as a training caption."""
    rng = random.Random(1234)
    prompts = []
    for i in range(48):
        bg = scenes.BACKGROUNDS[i % len(scenes.BACKGROUNDS)]
        colour = list(scenes.COLOURS)[(i * 3) % len(scenes.COLOURS)]
        if (colour, bg) in scenes.INVISIBLE:
            colour = "red"
        scene = scenes.Scene(
            colour=colour,
            shape=scenes.SHAPES[(i // 2) % len(scenes.SHAPES)],
            size=rng.choice(list(scenes.SIZES)),
            position=rng.choice(list(scenes.POSITIONS)),
            background=bg,
        )
        prompts.append(scenes.full_caption(scene))
    return prompts


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_dataset(cfg: TrainConfig) -> tuple[torch.Tensor, list[scenes.Scene]]:
    rng = random.Random(cfg.seed)
    scene_list = [scenes.random_scene(rng) for _ in range(cfg.n_images)]
    pixels = np.stack([np.asarray(scenes.draw_scene(s)) for s in scene_list])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, scene_list


def build_models(cfg: TrainConfig):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    n = len(cfg.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=scenes.SIZE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=cfg.text_hidden,
            intermediate_size=cfg.text_hidden * 4,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=cfg.text_hidden,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    latent = scenes.SIZE // 2 ** (n - 1)
    unet = UNet2DConditionModel(
        sample_size=latent,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=cfg.unet_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    return vae, text_encoder, unet


def train_vae(vae, images: torch.Tensor, cfg: TrainConfig) -> None:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    vae.train()
    t0 = time.time()
    for step in range(cfg.vae_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg.vae_steps, cfg.vae_lr, 50)
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen)
        x = images[idx]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        mse = F.mse_loss(recon, x)
        loss = mse + cfg.vae_kl_weight * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step}/{cfg.vae_steps} mse {mse.item():.4f} ({time.time() - t0:.0f}s)")
    vae.eval()


@torch.inference_mode()
def encode_all(vae, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([vae.encode(images[i : i + 512]).latent_dist.mean for i in range(0, len(images), 512)])


@dataclass(frozen=True)
class UNetStage:
    """One pass of UNet + text encoder training: its noise schedule, target and optimiser."""

    name: str
    steps: int
    batch: int
    lr: float
    warmup: int
    zero_terminal_snr: bool
    full_caption_prob: float
    snr_floor: float
    seed: int
    high_noise_share: float = 0.0
    high_noise_from: int = 1000

    @property
    def prediction_type(self) -> str:
        # epsilon is undefined at zero SNR (x_t is pure noise): such a schedule needs v-prediction
        return "v_prediction" if self.zero_terminal_snr else "epsilon"


def unet_stages(cfg: TrainConfig) -> tuple[UNetStage, UNetStage]:
    return (
        UNetStage("unet", cfg.unet_steps, cfg.unet_batch, cfg.unet_lr, cfg.warmup, False, 0.0, 0.0, cfg.seed + 2),
        UNetStage("zsnr", cfg.zsnr_steps, cfg.zsnr_batch, cfg.zsnr_lr, cfg.zsnr_warmup, True,
                  cfg.zsnr_full_caption_prob, cfg.zsnr_snr_floor, cfg.seed + 20, cfg.zsnr_high_noise_share,
                  cfg.zsnr_high_noise_from),
    )


def noise_schedule(zero_terminal_snr: bool, prediction_type: str = "epsilon"):
    """SD 1.x's training noise schedule (scaled-linear betas), optionally rescaled to zero terminal SNR."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         rescale_betas_zero_snr=zero_terminal_snr, prediction_type=prediction_type)


def loss_weights(snr: torch.Tensor, prediction_type: str, gamma: float, floor: float = 0.0) -> torch.Tensor:
    """Min-SNR-γ weights (Hang et al. 2023) for an epsilon or v target: the clean image's error
    weighted by min(SNR, γ), with SNR first raised to ``floor``. Plain Min-SNR (floor 0) weighs the
    noisiest steps, where the layout is decided, by their tiny SNR, and the zero-SNR step of a
    v-prediction model not at all; a floor of 1 weighs them like the rest."""
    weighted = torch.clamp(snr, min=floor, max=gamma)
    return weighted / snr if prediction_type == "epsilon" else weighted / (snr + 1)


def train_unet(unet, text_encoder, tokenizer, latents, scene_list, cfg: TrainConfig, held_out: set[str],
               stage: UNetStage):
    noise_sched = noise_schedule(stage.zero_terminal_snr, stage.prediction_type)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    rng = random.Random(stage.seed)
    gen = torch.Generator().manual_seed(stage.seed + 1)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=stage.lr, weight_decay=0.01)
    unet.train()
    text_encoder.train()
    t0, running = time.time(), 0.0
    for step in range(stage.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, stage.steps, stage.lr, stage.warmup)
        idx = [rng.randrange(len(latents)) for _ in range(stage.batch)]
        captions = []
        for i in idx:
            text = ""
            if rng.random() >= cfg.uncond_prob:
                text = scenes.caption(scene_list[i], rng)
                if stage.full_caption_prob and rng.random() < stage.full_caption_prob:
                    text = scenes.full_caption(scene_list[i])
                while text in held_out:
                    text = scenes.caption(scene_list[i], rng)
            captions.append(text)
        ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(idx),), generator=gen)
        if stage.high_noise_share:
            high = torch.rand(len(idx), generator=gen) < stage.high_noise_share
            t = torch.where(high, torch.randint(stage.high_noise_from, 1000, (len(idx),), generator=gen), t)
        xt = noise_sched.add_noise(x0, noise, t)
        target = noise if stage.prediction_type == "epsilon" else noise_sched.get_velocity(x0, noise, t)
        cond = text_encoder(ids)[0]
        pred = unet(xt, t, cond).sample
        weight = loss_weights(snr[t], stage.prediction_type, cfg.min_snr_gamma, stage.snr_floor)
        loss = (weight * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == stage.steps - 1:
            log(f"{stage.name} step {step}/{stage.steps} loss {running:.4f} ({time.time() - t0:.0f}s)")
    unet.eval()
    text_encoder.eval()


def save_pipeline(out: Path, vae, text_encoder, tokenizer, unet) -> None:
    """The model in diffusers' layout, fp16, with a sampler on the schedule stage 2 trains on."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        algorithm_type="dpmsolver++", steps_offset=1, prediction_type="v_prediction", rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)


def load_models(folder: Path):
    """The VAE, text encoder and UNet of a demo model folder, in fp32 for training."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    f32 = dict(torch_dtype=torch.float32)
    return (AutoencoderKL.from_pretrained(folder / "vae", **f32).eval(),
            CLIPTextModel.from_pretrained(folder / "text_encoder", **f32),
            UNet2DConditionModel.from_pretrained(folder / "unet", **f32))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--init", type=Path, help="start from this model folder's stage-1 weights and run stage 2 "
                                                  "(zero terminal SNR) only")
    parser.add_argument("--quick", action="store_true", help="a few steps only, to check the script runs")
    args = parser.parse_args(argv)
    if args.init and not (args.init / "unet" / "config.json").is_file():
        parser.error(f"--init {args.init}: not a demo model folder (no unet/config.json); pass the folder "
                     "`train --out` wrote, e.g. framereel/demo_model/weights")
    cfg = TrainConfig()
    if args.quick:
        cfg = TrainConfig(n_images=256, vae_steps=3, unet_steps=3, zsnr_steps=3, zsnr_batch=4)
    from transformers import CLIPTokenizer

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    timings: dict[str, float] = {}
    t = time.time()
    images, scene_list = make_dataset(cfg)
    timings["draw_dataset_s"] = time.time() - t
    log(f"drew {len(images)} scenes in {timings['draw_dataset_s']:.1f}s")
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER_DIR)
    held_out = set(eval_prompts())
    stage1, stage2 = unet_stages(cfg)
    if args.init:
        vae, text_encoder, unet = load_models(args.init)
        latents = encode_all(vae, images) * vae.config.scaling_factor
    else:
        vae, text_encoder, unet = build_models(cfg)
        t = time.time()
        train_vae(vae, images, cfg)
        timings["train_vae_s"] = time.time() - t
        t = time.time()
        raw = encode_all(vae, images)
        scale = float(1.0 / raw.std())
        vae.register_to_config(scaling_factor=scale)
        latents = raw * scale
        timings["encode_latents_s"] = time.time() - t
        log(f"encoded latents {tuple(latents.shape)}, scaling_factor {scale:.4f}")
        t = time.time()
        train_unet(unet, text_encoder, tokenizer, latents, scene_list, cfg, held_out, stage1)
        timings["train_unet_s"] = time.time() - t
    t = time.time()
    train_unet(unet, text_encoder, tokenizer, latents, scene_list, cfg, held_out, stage2)
    timings["train_zsnr_s"] = time.time() - t
    save_pipeline(args.out, vae, text_encoder, tokenizer, unet)
    record = {"config": asdict(cfg), "timings": timings, "torch": torch.__version__}
    if args.init:
        record["init"] = str(args.init)
        previous = args.init / "training.json"
        if previous.is_file():
            record["stage1"] = json.loads(previous.read_text())
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"saved to {args.out}; timings {timings}")


if __name__ == "__main__":
    main()
