# Fake of models/experimental/stable_diffusion_xl_base/tt/tt_sdxl_pipeline.py, an earlier shape
# (mid-2025: TtSDXLPipelineConfig without use_cfg_parallel; encode_prompts(prompts, negative_prompts)
# returning four tuples split into mesh-sized batches; generate_input_tensors(prompt_embeds_torch,
# negative_prompt_embeds_torch, pooled_prompt_embeds_torch, negative_pooled_prompt_embeds_torch) with one
# latent replicated to every chip; prepare_input_tensors taking [latents, *prompt_embeds, *text_embeds]).
# As the current-shape fake, its UNet/VAE "run" draws each chip's prompt (see fake_sd_images).

from dataclasses import dataclass

import torch
import ttnn
from diffusers import StableDiffusionXLPipeline
from fake_sd_images import recall, remember, sdxl_image_tensor
from transformers import CLIPTextModel, CLIPTextModelWithProjection


@dataclass
class TtSDXLPipelineConfig:
    num_inference_steps: int
    guidance_scale: float
    is_galaxy: bool
    capture_trace: bool = True
    vae_on_device: bool = True
    encoders_on_device: bool = True


class TtSDXLPipeline:
    def __init__(self, ttnn_device, torch_pipeline, pipeline_config: TtSDXLPipelineConfig):
        assert isinstance(
            torch_pipeline, StableDiffusionXLPipeline
        ), "torch_pipeline must be an instance of StableDiffusionXLPipeline"
        assert isinstance(torch_pipeline.text_encoder, CLIPTextModel), "pipeline.text_encoder is not a CLIPTextModel"
        assert isinstance(
            torch_pipeline.text_encoder_2, CLIPTextModelWithProjection
        ), "pipeline.text_encoder_2 is not a CLIPTextModelWithProjection"
        self.ttnn_device = ttnn_device
        self.cpu_device = "cpu"
        self.batch_size = ttnn_device.get_num_devices()
        self.torch_pipeline = torch_pipeline
        self.pipeline_config = pipeline_config
        self.encoders_compiled = False
        self.image_processing_compiled = False
        self.allocated_device_tensors = False
        self.generated_input_tensors = False
        ttnn._log("sdxl_pipeline", f"batch={self.batch_size}", "cfg_parallel=absent",
                  f"steps={pipeline_config.num_inference_steps}", f"guidance={pipeline_config.guidance_scale}")
        B, C, H, W = 1, 4, 128, 128
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

    def encode_prompts(self, prompts, negative_prompts):
        if self.pipeline_config.encoders_on_device:
            assert self.encoders_compiled, "Text encoders are not compiled"
        (prompt_embeds, negative_prompt_embeds, pooled, negative_pooled) = self.torch_pipeline.encode_prompt(
            prompt=prompts, prompt_2=None, device=self.cpu_device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative_prompts, negative_prompt_2=None,
        )
        remember(prompt_embeds, prompts)
        return tuple(torch.split(t, self.batch_size, dim=0)
                     for t in (prompt_embeds, negative_prompt_embeds, pooled, negative_pooled))

    def generate_input_tensors(self, prompt_embeds_torch, negative_prompt_embeds_torch, pooled_prompt_embeds_torch,
                               negative_pooled_prompt_embeds_torch):
        latents = torch.randn(self.tt_latents_shape)  # prepare_latents(1, 4, 1024, 1024)
        B, C, H, W = latents.shape
        tt_latents = torch.permute(latents, (0, 2, 3, 1)).reshape(1, 1, B * H * W, C)
        tt_latents = ttnn.from_torch(tt_latents, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                                     mesh_mapper=ttnn.ReplicateTensorToMesh(self.ttnn_device))

        def shard(t, layout):
            return ttnn.from_torch(t, dtype=ttnn.bfloat16, layout=layout,
                                   mesh_mapper=ttnn.ShardTensorToMesh(self.ttnn_device, dim=0))

        tt_prompt_embeds = [[shard(n, ttnn.TILE_LAYOUT), shard(p, ttnn.TILE_LAYOUT)]
                            for n, p in zip(negative_prompt_embeds_torch, prompt_embeds_torch)]
        tt_add_text_embeds = [[shard(n, ttnn.ROW_MAJOR_LAYOUT), shard(p, ttnn.ROW_MAJOR_LAYOUT)]
                              for n, p in zip(negative_pooled_prompt_embeds_torch, pooled_prompt_embeds_torch)]
        if not self.allocated_device_tensors:
            self.tt_latents_device = ttnn.allocate_tensor_on_device(tt_latents.shape, None, None, self.ttnn_device)
            self.tt_prompt_embeds_device = [ttnn.allocate_tensor_on_device(t.shape, None, None, self.ttnn_device)
                                            for t in tt_prompt_embeds[0]]
            self.tt_text_embeds_device = [ttnn.allocate_tensor_on_device(t.shape, None, None, self.ttnn_device)
                                          for t in tt_add_text_embeds[0]]
            self.allocated_device_tensors = True
        self.generated_input_tensors = True
        return tt_latents, tt_prompt_embeds, tt_add_text_embeds

    def prepare_input_tensors(self, host_tensors):
        assert self.allocated_device_tensors, "Device tensors are not allocated"
        device_tensors = [self.tt_latents_device, *self.tt_prompt_embeds_device, *self.tt_text_embeds_device]
        for host_tensor, device_tensor in zip(host_tensors, device_tensors):
            ttnn.copy_host_to_device_tensor(host_tensor, device_tensor)

    def generate_images(self):
        assert self.image_processing_compiled, "Image processing is not compiled"
        assert self.generated_input_tensors, "Input tensors are not re/generated"
        positive = self.tt_prompt_embeds_device[1]
        texts = [recall(positive.shards[chip][0]) for chip in range(self.batch_size)]
        ttnn._log("generate_images", len(texts), "prompts=" + "|".join(texts))
        return torch.stack([sdxl_image_tensor(text, self.tt_latents_device.shards[chip])
                            for chip, text in enumerate(texts)])

    def forward(self, *args, **kwargs):
        raise NotImplementedError("Use individual methods for text encoding and image generation.")
