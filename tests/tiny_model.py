"""A tiny random-weight Stable Diffusion pipeline in diffusers' on-disk format, built in-process.

It loads through the same ``--model PATH`` code path as SD 1.4; its images are noise, which is
all the plumbing tests need. Native size 64×64.
"""

from __future__ import annotations

from pathlib import Path

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "framereel" / "demo_model" / "weights" / "tokenizer"


def build_tiny_pipeline(folder: Path, seed: int = 0, sample_size: int = 32, vae_blocks: tuple[int, ...] = (8, 16),
                        unet_blocks: tuple[int, int] = (16, 32), groups: int = 8, heads: int = 4) -> Path:
    """Native size: ``sample_size`` × 2 ** (len(vae_blocks) - 1) (64×64 by default; 64 and four VAE blocks
    make an SD 1.4-sized 512×512 model with 64×64 latents). ``unet_blocks``, ``heads``, ``vae_blocks`` and ``groups``
    (their GroupNorm groups, dividing every channel count) set the cost of a render."""
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=unet_blocks,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=heads, norm_num_groups=groups,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(vae_blocks),
        up_block_types=("UpDecoderBlock2D",) * len(vae_blocks), block_out_channels=vae_blocks, latent_channels=4,
        layers_per_block=1, norm_num_groups=groups, sample_size=sample_size * 2 ** (len(vae_blocks) - 1),
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(TOKENIZER_DIR), unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_vae(folder: Path, seed: int = 0, levels: int = 2) -> Path:
    """A random-weight AutoencoderTiny (TAESD's architecture) that fits the tiny pipeline's latents
    (4 channels at 1/2 scale with ``levels=2``)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(encoder_block_out_channels=(8,) * levels, decoder_block_out_channels=(8,) * levels,
                    num_encoder_blocks=(1,) * levels, num_decoder_blocks=(1,) * levels,
                    latent_channels=4).save_pretrained(folder, safe_serialization=True)
    return folder


if __name__ == "__main__":
    import sys

    print(build_tiny_pipeline(Path(sys.argv[1])))
