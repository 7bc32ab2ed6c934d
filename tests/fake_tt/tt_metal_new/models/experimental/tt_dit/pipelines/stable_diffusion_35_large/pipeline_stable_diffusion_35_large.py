# Fake of models/experimental/tt_dit/pipelines/stable_diffusion_35_large/pipeline_stable_diffusion_35_large.py
# (2026 shape): the module's create_pipeline(mesh_device, batch_size=1, image_w=1024, image_h=1024,
# guidance_scale=3.5, …, model_checkpoint_path=…, use_cache=False) with its default_config per mesh
# shape (a KeyError for another shape, as the real dict lookup), StableDiffusion3Pipeline's
# constructor asserts (the checkpoint path must name stabilityai/stable-diffusion-3.5-large) and
# __call__(*, prompt_1, prompt_2, prompt_3, negative_prompt_1, …, num_inference_steps=40, seed=None,
# traced=False) seeding with torch.manual_seed(seed). No weights load; each image draws its prompt.

from __future__ import annotations

import torch
import ttnn
from fake_sd_images import prompt_image

from ...parallel.config import DiTParallelConfig, ParallelFactor


def create_pipeline(mesh_device, batch_size=1, image_w=1024, image_h=1024, guidance_scale=3.5, num_images_per_prompt=1,
                    max_t5_sequence_length=256, prompt_sequence_length=333, spatial_sequence_length=4096,
                    cfg_config=None, sp_config=None, tp_config=None, num_links=None,
                    model_checkpoint_path="stabilityai/stable-diffusion-3.5-large", use_cache=False):
    default_config = {
        (2, 4): {"cfg_config": (2, 1), "sp_config": (2, 0), "tp_config": (2, 1), "num_links": 1},
        (4, 8): {"cfg_config": (2, 1), "sp_config": (4, 0), "tp_config": (4, 1), "num_links": 4},
    }
    cfg_factor, cfg_axis = cfg_config or default_config[tuple(mesh_device.shape)]["cfg_config"]
    sp_factor, sp_axis = sp_config or default_config[tuple(mesh_device.shape)]["sp_config"]
    tp_factor, tp_axis = tp_config or default_config[tuple(mesh_device.shape)]["tp_config"]
    num_links = num_links or default_config[tuple(mesh_device.shape)]["num_links"]
    parallel_config = DiTParallelConfig(
        cfg_parallel=ParallelFactor(factor=cfg_factor, mesh_axis=cfg_axis),
        tensor_parallel=ParallelFactor(factor=tp_factor, mesh_axis=tp_axis),
        sequence_parallel=ParallelFactor(factor=sp_factor, mesh_axis=sp_axis),
    )
    pipeline = StableDiffusion3Pipeline(mesh_device=mesh_device, enable_t5_text_encoder=True, guidance_cond=1,
                                        parallel_config=parallel_config, num_links=num_links, height=image_h,
                                        width=image_w, model_checkpoint_path=model_checkpoint_path, use_cache=use_cache)
    pipeline.prepare(batch_size=batch_size, num_images_per_prompt=num_images_per_prompt, width=image_w, height=image_h,
                     guidance_scale=guidance_scale, max_t5_sequence_length=max_t5_sequence_length,
                     prompt_sequence_length=prompt_sequence_length, spatial_sequence_length=spatial_sequence_length)
    return pipeline


class StableDiffusion3Pipeline:
    def __init__(self, *, mesh_device, enable_t5_text_encoder=True, guidance_cond, parallel_config, num_links, height,
                 width, model_checkpoint_path, use_cache=False):
        assert "stabilityai/stable-diffusion-3.5-large" in model_checkpoint_path
        self._mesh_device = mesh_device
        self.dit_parallel_config = parallel_config
        ttnn._log("sd35_pipeline", "x".join(map(str, mesh_device.shape)), f"links={num_links}",
                  f"cfg={parallel_config.cfg_parallel.factor}", f"sp={parallel_config.sequence_parallel.factor}",
                  f"tp={parallel_config.tensor_parallel.factor}")

    def prepare(self, *, batch_size, num_images_per_prompt, width, height, guidance_scale, max_t5_sequence_length,
                prompt_sequence_length, spatial_sequence_length):
        self._prepared_batch_size = batch_size
        self._prepared_width, self._prepared_height = width, height
        self._prepared_guidance_scale = guidance_scale

    def __call__(self, *, prompt_1, prompt_2, prompt_3, negative_prompt_1, negative_prompt_2, negative_prompt_3,
                 num_inference_steps=40, seed=None, traced=False, clip_skip=None):
        assert self._prepared_batch_size == len(prompt_1)
        if seed is not None:
            torch.manual_seed(seed)
        latents = torch.randn((1, self._prepared_height // 8, self._prepared_width // 8, 16))
        ttnn._log("sd35_call", f"steps={num_inference_steps}", f"seed={seed}", f"traced={traced}", f"prompt={prompt_1[0]}")
        shade = int(abs(float(latents.sum())) * 3) % 200
        return [prompt_image(prompt_1[0], self._prepared_height, self._prepared_width, background=(shade, 40, 60))]
