"""A tiny random-weight ControlNet for the tiny SD pipeline of :mod:`tiny_model` (same blocks, 32-wide
cross-attention, maps at 1/2 scale like its VAE), saved with ``save_pretrained`` so it loads as a
control's ``"model"`` folder. Its zero convolutions get random weights (diffusers' own multi-ControlNet tests
do so for the output ones), so a control image really changes a frame."""

from __future__ import annotations

from pathlib import Path


def build_tiny_controlnet(folder: Path, seed: int = 0, cross_attention_dim: int = 32) -> Path:
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel(
        in_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), cross_attention_dim=cross_attention_dim,
        attention_head_dim=4, norm_num_groups=8, conditioning_embedding_out_channels=(8, 16),
    )

    def init_weights(m):
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
            m.bias.data.fill_(0.1)

    net.controlnet_down_blocks.apply(init_weights)
    net.controlnet_mid_block.apply(init_weights)
    net.controlnet_cond_embedding.conv_out.apply(init_weights)  # zero too: the image would not count
    net.save_pretrained(folder, safe_serialization=True)
    return folder
