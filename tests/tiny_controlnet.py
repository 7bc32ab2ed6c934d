"""A tiny random-weight ControlNet for the tiny SD pipeline of :mod:`tiny_model` (same blocks, 32-wide
cross-attention, maps at 1/2 scale like its VAE), saved with ``save_pretrained`` so it loads as a
control's ``"model"`` folder. Its zero convolutions get random weights (diffusers' own multi-ControlNet tests
do so for the output ones), so a control image really changes a frame."""

from __future__ import annotations

from pathlib import Path


def build_tiny_controlnet(folder: Path, seed: int = 0, cross_attention_dim: int = 32, sdxl: bool = False) -> Path:
    """``sdxl``: one for the tiny SDXL of :mod:`tiny_families` (its UNet's text-time embedding and widths)."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    shape = dict(in_channels=4, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), conditioning_embedding_out_channels=(8, 16))
    if sdxl:
        shape.update(attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
                     addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
                     projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64)
    else:
        shape.update(attention_head_dim=4, cross_attention_dim=cross_attention_dim)
    net = ControlNetModel(**shape)

    def init_weights(m):
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
            m.bias.data.fill_(0.1)

    net.controlnet_down_blocks.apply(init_weights)
    net.controlnet_mid_block.apply(init_weights)
    net.controlnet_cond_embedding.conv_out.apply(init_weights)  # zero too: the image would not count
    net.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_transformer_controlnet(folder: Path, kind: str, seed: int = 0) -> Path:
    """A tiny ``SD3ControlNetModel`` (``kind="sd3"``) or ``FluxControlNetModel`` (``"flux"``) shaped for
    the tiny SD 3 / FLUX transformers of :mod:`tiny_families`, its zero-initialised projections randomised."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    if kind == "sd3":
        net = diffusers.SD3ControlNetModel(
            sample_size=32, patch_size=1, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
            num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64)
        parts = (net.controlnet_blocks, net.pos_embed_input)
    else:
        net = diffusers.FluxControlNetModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8))
        parts = (net.controlnet_blocks, net.controlnet_single_blocks, net.controlnet_x_embedder)
    with torch.no_grad():
        for part in parts:
            for p in part.parameters():
                p.normal_(0, 0.1)
    net.save_pretrained(folder, safe_serialization=True)
    return folder
