# Fake of models/experimental/stable_diffusion_xl_base/tt/tt_sdxl_pipeline.py, current shape (2026:
# TtSDXLPipelineConfig with use_cfg_parallel, crop_coords_top_left, guidance_rescale;
# encode_prompts(prompts, negative_prompts, prompt_2=None, negative_prompt_2=None) returning
# (all_prompt_embeds_torch, torch_add_text_embeds); generate_input_tensors(all_prompt_embeds_torch,
# torch_add_text_embeds, start_latent_seed=None, fixed_seed_for_batch=False, timesteps=None, sigmas=None)).
# Public methods, their asserts, the batch size (chips, or mesh columns with cfg-parallel), the
# mesh mappers and the device tensors are the real file's; the UNet/VAE "run" draws each chip's
# prompt (see fake_sd_images) instead of denoising.

import os
from dataclasses import dataclass

import torch
import ttnn
from diffusers import StableDiffusionXLPipeline
from fake_sd_images import recall, remember, sdxl_image_tensor
from loguru import logger
from transformers import CLIPTextModel, CLIPTextModelWithProjection


@dataclass
class TtSDXLPipelineConfig:
    num_inference_steps: int
    guidance_scale: float
    is_galaxy: bool
    capture_trace: bool = True
    vae_on_device: bool = True
    encoders_on_device: bool = True
    use_cfg_parallel: bool = False
    crop_coords_top_left: tuple = (0, 0)
    guidance_rescale: float = 0.0
    _debug_mode: bool = False
    _torch_pipeline_type = StableDiffusionXLPipeline

    @property
    def pipeline_type(self):
        return self._torch_pipeline_type


class TtSDXLPipeline:
    def __init__(self, ttnn_device, torch_pipeline, pipeline_config: TtSDXLPipelineConfig):
        assert isinstance(
            torch_pipeline, pipeline_config.pipeline_type
        ), f"torch_pipeline must be an instance of {pipeline_config.pipeline_type.__name__}, but got {type(torch_pipeline).__name__}"
        assert (
            isinstance(torch_pipeline.text_encoder, CLIPTextModel) or torch_pipeline.text_encoder is None
        ), "pipeline.text_encoder is not a CLIPTextModel or None"
        assert isinstance(
            torch_pipeline.text_encoder_2, CLIPTextModelWithProjection
        ), "pipeline.text_encoder_2 is not a CLIPTextModelWithProjection"
        self.ttnn_device = ttnn_device
        self.cpu_device = "cpu"
        self.batch_size = (
            list(self.ttnn_device.shape)[1] if pipeline_config.use_cfg_parallel else ttnn_device.get_num_devices()
        )
        self.torch_pipeline = torch_pipeline
        self.pipeline_config = pipeline_config
        self.encoders_compiled = False
        self.image_processing_compiled = False
        self.allocated_device_tensors = False
        self.generated_input_tensors = False
        if pipeline_config.is_galaxy:
            logger.info("Setting TT_MM_THROTTLE_PERF for Galaxy")
            os.environ["TT_MM_THROTTLE_PERF"] = "5"
        ttnn._log("sdxl_pipeline", f"batch={self.batch_size}", f"cfg_parallel={pipeline_config.use_cfg_parallel}",
                  f"steps={pipeline_config.num_inference_steps}", f"guidance={pipeline_config.guidance_scale}")
        self.num_in_channels_unet = 4
        B, C, H, W = 1, self.num_in_channels_unet, 128, 128
        self.tt_latents_shape = [B, C, H, W]

    def compile_text_encoding(self):
        if not self.encoders_compiled:
            assert self.pipeline_config.encoders_on_device, "Host text encoders are used; compile is not needed"
            self.encoders_compiled = True

    def compile_image_processing(self):
        if not self.image_processing_compiled:
            assert self.allocated_device_tensors, "Input tensors are not allocated"
            ttnn._log("sdxl_compile")
            self.image_processing_compiled = True

    def encode_prompts(self, prompts, negative_prompts, prompt_2=None, negative_prompt_2=None):
        if self.pipeline_config.encoders_on_device:
            assert self.encoders_compiled, "Text encoders are not compiled"
        (prompt_embeds, negative_prompt_embeds, pooled, negative_pooled) = self.torch_pipeline.encode_prompt(
            prompt=prompts, prompt_2=prompt_2, device=self.cpu_device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative_prompts, negative_prompt_2=negative_prompt_2,
        )
        remember(prompt_embeds, prompts)
        all_prompt_embeds_torch = torch.cat(
            [negative_prompt_embeds.unsqueeze(1), prompt_embeds.unsqueeze(1)], dim=1
        )  # [batch, 2 (negative, positive), 77, dim]
        torch_add_text_embeds = torch.cat([negative_pooled.unsqueeze(1), pooled.unsqueeze(1)], dim=1)
        return all_prompt_embeds_torch, torch_add_text_embeds

    def generate_input_tensors(self, all_prompt_embeds_torch, torch_add_text_embeds, start_latent_seed=None,
                               fixed_seed_for_batch=False, timesteps=None, sigmas=None):
        assert start_latent_seed is None or isinstance(start_latent_seed, int), "start_latent_seed must be an integer or None"
        latents_list = []
        for index in range(self.batch_size):
            if start_latent_seed is not None:
                torch.manual_seed(start_latent_seed if fixed_seed_for_batch else start_latent_seed + index)
            latents = torch.randn(self.tt_latents_shape)  # prepare_latents(1, 4, 1024, 1024): 128×128 for SDXL's VAE
            B, C, H, W = latents.shape
            latents = torch.permute(latents, (0, 2, 3, 1)).reshape(B, 1, H * W, C)
            latents_list.append(latents)
        tt_latents = torch.cat(latents_list, dim=0)
        mesh = list(self.ttnn_device.shape)
        tt_latents = ttnn.from_torch(tt_latents, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                                     mesh_mapper=ttnn.ShardTensor2dMesh(self.ttnn_device, mesh, dims=(None, 0)))
        tt_prompt_embeds = ttnn.from_torch(all_prompt_embeds_torch, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                                           mesh_mapper=ttnn.ShardTensor2dMesh(self.ttnn_device, mesh, dims=(1, 0)))
        tt_add_text_embeds = ttnn.from_torch(torch_add_text_embeds, dtype=ttnn.bfloat16, layout=ttnn.ROW_MAJOR_LAYOUT,
                                             mesh_mapper=ttnn.ShardTensor2dMesh(self.ttnn_device, mesh, dims=(1, 0)))
        if not self.allocated_device_tensors:
            self.tt_latents_device = ttnn.allocate_tensor_on_device(
                tt_latents.shape, None, None, self.ttnn_device, ttnn.DRAM_MEMORY_CONFIG)
            self.tt_prompt_embeds_device = ttnn.allocate_tensor_on_device(
                tt_prompt_embeds[0].shape, None, None, self.ttnn_device, ttnn.DRAM_MEMORY_CONFIG)
            self.tt_text_embeds_device = ttnn.allocate_tensor_on_device(
                tt_add_text_embeds[0].shape, None, None, self.ttnn_device, ttnn.DRAM_MEMORY_CONFIG)
            self.allocated_device_tensors = True
        self.generated_input_tensors = True
        return tt_latents, tt_prompt_embeds, tt_add_text_embeds

    def prepare_input_tensors(self, host_tensors):
        assert self.allocated_device_tensors, "Device tensors are not allocated"
        device_tensors = [self.tt_latents_device, self.tt_prompt_embeds_device, self.tt_text_embeds_device]
        for host_tensor, device_tensor in zip(host_tensors, device_tensors):
            ttnn.copy_host_to_device_tensor(host_tensor, device_tensor)

    def generate_images(self):
        assert self.image_processing_compiled, "Image processing is not compiled"
        assert self.generated_input_tensors, "Input tensors are not re/generated"
        rows, cols = list(self.ttnn_device.shape)
        images = []
        for col in range(cols):  # the positive half sits on the last mesh row (row 1 with cfg-parallel)
            chip = (rows - 1) * cols + col
            embeds = self.tt_prompt_embeds_device.shards[chip]
            images.append(sdxl_image_tensor(recall(embeds[-1]), self.tt_latents_device.shards[chip]))
        ttnn._log("generate_images", len(images), "prompts=" + "|".join(recall(self.tt_prompt_embeds_device.shards[(rows - 1) * cols + c][-1]) for c in range(cols)))
        return torch.stack(images)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("Use individual methods for text encoding and image generation.")
