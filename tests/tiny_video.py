"""Tiny random-weight video pipelines (Wan 2.1/2.2, LTX-Video), shaped as diffusers' own tests build
them (tests/pipelines/wan/test_wan*.py, tests/pipelines/ltx/test_ltx*.py), with a T5-style
tokenizer written here instead of ``hf-internal-testing/tiny-random-t5`` (no Hub in the tests)."""

from __future__ import annotations

from pathlib import Path

from tiny_families import t5_tokenizer

VIDEO_BUILDS = ("wan2.1-t2v", "wan2.1-flf2v", "wan2.2-t2v", "wan2.2-ti2v", "ltx")


def _umt5(d_model: int = 32):
    """A one-layer UMT5 encoder (Wan's text encoder class) sized like tiny-random-t5."""
    from transformers import UMT5Config, UMT5EncoderModel

    return UMT5EncoderModel(UMT5Config(vocab_size=128, d_model=d_model, d_ff=37, d_kv=8, num_layers=1, num_heads=4,
                                       relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0))


def _t5(d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=128, d_model=d_model, d_ff=37, d_kv=8, num_layers=1, num_heads=4,
                                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0))


def _wan_vae(ti2v: bool = False):
    from diffusers import AutoencoderKLWan

    if ti2v:  # Wan 2.2 TI2V-5B: a z_dim-48 VAE over 2x2 pixel patches, 16x spatial compression
        return AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                                latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1],
                                num_res_blocks=1, scale_factor_spatial=16, scale_factor_temporal=4,
                                temperal_downsample=[False, True, True])
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def _wan_transformer(in_channels: int, out_channels: int, **kw):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=in_channels, out_channels=out_channels, text_dim=32, freq_dim=256,
                                 ffn_dim=32, num_layers=1, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=32, **kw)


def build_wan(kind: str, folder: Path, seed: int = 0):
    """A tiny Wan pipeline saved to ``folder``: ``wan2.1-t2v`` (WanPipeline), ``wan2.1-flf2v``
    (WanImageToVideoPipeline with a CLIP image encoder), ``wan2.2-t2v`` (the A14B shape: two
    transformers switched at ``boundary_ratio``) or ``wan2.2-ti2v`` (WanPipeline with the TI2V-5B
    shape: z_dim-48 VAE, ``expand_timesteps``)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline

    torch.manual_seed(seed)
    vae = _wan_vae(ti2v=kind == "wan2.2-ti2v")
    tokenizer = t5_tokenizer(folder.with_name(folder.name + "-tokenizer"))
    text_encoder = _umt5()
    if kind == "wan2.1-flf2v":
        from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

        transformer = _wan_transformer(36, 16, image_dim=4, pos_embed_seq_len=2 * 65)  # FLF2V: two images' tokens
        image_encoder = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=4, num_hidden_layers=2, num_attention_heads=2, image_size=8,
            intermediate_size=16, patch_size=1))
        pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                       scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                       image_processor=CLIPImageProcessor(crop_size=8, size=8),
                                       image_encoder=image_encoder, transformer=transformer)
    else:
        z = 48 if kind == "wan2.2-ti2v" else 16
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
        experts = {"transformer_2": _wan_transformer(z, z), "boundary_ratio": 0.875} if kind == "wan2.2-t2v" else {}
        pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                           transformer=_wan_transformer(z, z), expand_timesteps=kind == "wan2.2-ti2v", **experts)
    pipe.save_pretrained(folder)
    return pipe


def build_ltx(folder: Path, seed: int = 0):
    """A tiny LTXPipeline saved to ``folder`` (diffusers' tests/pipelines/ltx/test_ltx.py shapes)."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=1, caption_channels=32)
    vae = AutoencoderKLLTXVideo(latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                spatio_temporal_scaling=(True, True, False, False), layers_per_block=(1, 1, 1, 1, 1),
                                decoder_block_out_channels=(8, 8, 8, 8), decoder_layers_per_block=(1, 1, 1, 1, 1),
                                decoder_spatio_temporal_scaling=(True, True, False, False),
                                patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    pipe = LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_t5(),
                       tokenizer=t5_tokenizer(folder.with_name(folder.name + "-tokenizer")), transformer=transformer)
    pipe.save_pretrained(folder)
    return pipe


def build_video(kind: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny video pipeline of ``kind`` (one of VIDEO_BUILDS) to ``folder``; returns it."""
    if kind == "ltx":
        build_ltx(folder, seed)
    else:
        build_wan(kind, folder, seed)
    return folder
