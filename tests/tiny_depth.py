"""A tiny random-weight Depth Anything model (a 2-layer DINOv2 backbone), saved in transformers' layout
(config.json, model.safetensors, preprocessor_config.json) the way transformers' own tests shape it,
so that it loads through ``--depth-model PATH`` like a real checkpoint. Its depth is noise."""

from __future__ import annotations

from pathlib import Path


def build_tiny_depth(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, out_features=["stage1", "stage2"], apply_layernorm=False,
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16, patch_size=14,
                                 neck_hidden_sizes=[8, 16], fusion_hidden_size=16, head_hidden_size=8,
                                 reassemble_factors=[1, 1], depth_estimation_type="relative")
    torch.manual_seed(seed)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(folder)
    return folder
