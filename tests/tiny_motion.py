"""A tiny random-weight AnimateDiff ``MotionAdapter`` that fits ``tiny_model.build_tiny_pipeline``'s UNet.

Sized like diffusers' own AnimateDiff tests (block channels of the tiny UNet, one motion layer per
block, 2 heads, GroupNorm of 8). Its output projections are random, not zero, so it really moves
the latents across frames.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_motion_adapter(folder: Path, seed: int = 0, block_out_channels=(16, 32), layers_per_block: int = 1) -> Path:
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    MotionAdapter(
        block_out_channels=block_out_channels, motion_layers_per_block=layers_per_block,
        motion_transformer_layers_per_block=1, motion_num_attention_heads=2, motion_norm_num_groups=8,
        motion_max_seq_length=32, use_motion_mid_block=True,
    ).save_pretrained(folder, safe_serialization=True)
    return folder
