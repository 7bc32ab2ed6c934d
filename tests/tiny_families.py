"""Tiny random-weight pipelines of each model family, in diffusers' on-disk layout, built in-process
(shaped the way diffusers' own tests build tiny SDXL / SD3 / FLUX pipelines): SD 2.x
(v-prediction), SD-Turbo, LCM, SDXL (and an SDXL refiner), SD 3 and FLUX.1 schnell/dev. They load through the same
``--model PATH`` code path as real ones; their images are noise, which is all plumbing needs.
Plus a tiny random LoRA in PEFT format for the SD-shaped UNet.
"""

from __future__ import annotations

from pathlib import Path

from tiny_model import TOKENIZER_DIR

FAMILY_BUILDS = ("sd2-v", "sd-turbo", "lcm", "sdxl", "sdxl-turbo", "lcm-sdxl", "sd3", "sd3.5", "flux-schnell", "flux-dev")


def _clip(with_projection: bool = False, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=hidden,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_act="gelu")
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR)


def t5_tokenizer(folder: Path):
    """A tiny T5 tokenizer (character-level Unigram, T5's special tokens), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)] + [(chr(c), -2.0) for c in range(33, 127)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)
    fast.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def _t5(vocab: int, d_model: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab, d_model=d_model, d_ff=64, d_kv=16, num_layers=1, num_heads=2,
                                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0))


def _vae(blocks=(8, 16), latent_channels: int = 4, **kw):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(blocks),
                         up_block_types=("UpDecoderBlock2D",) * len(blocks), block_out_channels=blocks,
                         latent_channels=latent_channels, layers_per_block=1, norm_num_groups=8, sample_size=64, **kw)


def _sd_unet(**kw):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8, **kw)


def build_family(family: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny pipeline of ``family`` (one of FAMILY_BUILDS) to ``folder``; returns it."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    if family in ("sd2-v", "sd-turbo", "lcm"):
        if family == "sd2-v":
            unet = _sd_unet(use_linear_projection=True)
            scheduler = diffusers.DDIMScheduler(**betas, prediction_type="v_prediction", steps_offset=1,
                                                clip_sample=False, set_alpha_to_one=False)
        elif family == "sd-turbo":
            unet = _sd_unet(use_linear_projection=True)
            scheduler = diffusers.EulerDiscreteScheduler(**betas, timestep_spacing="trailing")
        else:
            unet = _sd_unet(time_cond_proj_dim=32)
            scheduler = diffusers.LCMScheduler(**betas)
        pipe = diffusers.StableDiffusionPipeline(
            vae=_vae(), text_encoder=_clip(), tokenizer=_clip_tokenizer(), unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    elif family in ("sdxl", "sdxl-turbo", "lcm-sdxl"):
        # SDXL-Turbo ships SDXL's pipeline with Euler on trailing timesteps; LCM-SDXL a UNet with a
        # guidance embedding (time_cond_proj_dim) and the LCM scheduler
        unet = diffusers.UNet2DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=8,
            time_cond_proj_dim=32 if family == "lcm-sdxl" else None)
        scheduler = {"sdxl": diffusers.EulerDiscreteScheduler(**betas, steps_offset=1, timestep_spacing="leading"),
                     "sdxl-turbo": diffusers.EulerDiscreteScheduler(**betas, timestep_spacing="trailing"),
                     "lcm-sdxl": diffusers.LCMScheduler(**betas)}[family]
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=_vae(), text_encoder=_clip(), text_encoder_2=_clip(with_projection=True), tokenizer=_clip_tokenizer(),
            tokenizer_2=_clip_tokenizer(), unet=unet, scheduler=scheduler)
    elif family in ("sd3", "sd3.5"):
        t5_tok = t5_tokenizer(folder.parent / f"{folder.name}-t5tok")
        transformer = diffusers.SD3Transformer2DModel(  # SD 3.5 adds RMS-normalised queries and keys
            sample_size=32, patch_size=1, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
            num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64,
            qk_norm="rms_norm" if family == "sd3.5" else None)
        pipe = diffusers.StableDiffusion3Pipeline(
            transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
            vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
            text_encoder=_clip(with_projection=True), tokenizer=_clip_tokenizer(),
            text_encoder_2=_clip(with_projection=True), tokenizer_2=_clip_tokenizer(),
            text_encoder_3=_t5(len(t5_tok), 64), tokenizer_3=t5_tok)
    elif family in ("flux-schnell", "flux-dev"):
        t5_tok = t5_tokenizer(folder.parent / f"{folder.name}-t5tok")
        transformer = diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
            guidance_embeds=family == "flux-dev")
        pipe = diffusers.FluxPipeline(
            transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(),
            vae=_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
            text_encoder=_clip(), tokenizer=_clip_tokenizer(), text_encoder_2=_t5(len(t5_tok), 32), tokenizer_2=t5_tok)
    else:
        raise ValueError(family)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_refiner(folder: Path, seed: int = 1) -> Path:
    """A tiny SDXL refiner for the tiny SDXL base, shaped like diffusers' refiner tests build it: only
    the second text encoder (the base's shape: it is shared), ``requires_aesthetics_score`` and so a
    UNet whose time embedding takes 5 ids (sizes, crop, aesthetic score: 5 × 8 + 32 = 72 inputs)."""
    import diffusers
    import torch

    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=5 * 8 + 32, cross_attention_dim=32, norm_num_groups=8)
    pipe = diffusers.StableDiffusionXLImg2ImgPipeline(
        vae=_vae(), text_encoder=None, tokenizer=None, text_encoder_2=_clip(with_projection=True),
        tokenizer_2=_clip_tokenizer(), unet=unet, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        scheduler=diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                   steps_offset=1, timestep_spacing="leading"))
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def build_tiny_lora(folder: Path, seed: int = 0, rank: int = 2, cross_attention_dim: int = 32) -> Path:
    """A random LoRA (PEFT format, as ``save_lora_weights`` writes it) for the tiny SD UNet's attention
    projections; ``cross_attention_dim`` other than the model's gives a LoRA of another base."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = _sd_unet() if cross_attention_dim == 32 else _sd_unet_with(cross_attention_dim)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():  # big enough to change the image visibly
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet),
                                              safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def _sd_unet_with(cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=8)
