# Fake of models/experimental/tt_dit/pipelines/flux1/pipeline_flux1.py (2026 shape): Flux1Pipeline's
# create_pipeline(checkpoint_name, mesh_device, …) with the real Wormhole / Blackhole tables of mesh
# shapes (a KeyError for another shape, as the real dict lookup), the constructor's warm-up run, and
# __call__(*, num_images_per_prompt=1, width=1024, height=1024, cfg_scale=1, guidance_scale=3.5,
# prompt_1, prompt_2, negative_prompt_1=None, negative_prompt_2=None, num_inference_steps, seed=None,
# traced=False, …) with its asserts (one prompt, no CFG, sizes in multiples of 32), seeding with
# torch.manual_seed(seed). No weights load; each image draws its prompt.

from __future__ import annotations

import torch
import ttnn
from fake_sd_images import prompt_image
from models.common.utility_functions import is_blackhole

from ...parallel.config import DiTParallelConfig, ParallelFactor


class Flux1Pipeline:
    T5_SEQUENCE_LENGTH = 512

    def __init__(self, *, checkpoint_name, mesh_device, enable_t5_text_encoder=True, use_torch_t5_text_encoder=False,
                 use_torch_clip_text_encoder=False, parallel_config, encoder_parallel_config=None,
                 vae_parallel_config=None, topology, num_links):
        self._mesh_device = mesh_device
        self._parallel_config = parallel_config
        self._vae_scale_factor, self._patch_size = 16, 2
        ttnn._log("flux_pipeline", "x".join(map(str, mesh_device.shape)), f"checkpoint={checkpoint_name}",
                  f"sp={parallel_config.sequence_parallel.factor}", f"tp={parallel_config.tensor_parallel.factor}",
                  f"links={num_links}")
        self.run_single_prompt(prompt="", num_inference_steps=1, seed=0, traced=False)  # warmup for safe tracing

    @staticmethod
    def create_pipeline(checkpoint_name, mesh_device, dit_sp=None, dit_tp=None, encoder_tp=None, vae_tp=None,
                        enable_t5_text_encoder=True, use_torch_t5_text_encoder=False, use_torch_clip_text_encoder=False,
                        num_links=None, topology=ttnn.Topology.Linear):
        wh_config = {
            (1, 4): {"sp": (1, 0), "tp": (4, 1), "encoder_tp": (4, 1), "vae_tp": (4, 1), "num_links": 1},
            (2, 4): {"sp": (2, 0), "tp": (4, 1), "encoder_tp": (4, 1), "vae_tp": (4, 1), "num_links": 1},
            (4, 4): {"sp": (4, 0), "tp": (4, 1), "encoder_tp": (4, 1), "vae_tp": (4, 1), "num_links": 1},
            (4, 8): {"sp": (4, 0), "tp": (8, 1), "encoder_tp": (4, 0), "vae_tp": (4, 0), "num_links": 4},
        }
        bh_config = {
            (1, 2): {"sp": (1, 0), "tp": (2, 1), "encoder_tp": (2, 1), "vae_tp": (2, 1), "num_links": 2},
            (2, 2): {"sp": (2, 0), "tp": (2, 1), "encoder_tp": (2, 1), "vae_tp": (2, 1), "num_links": 2},
            (2, 4): {"sp": (2, 0), "tp": (4, 1), "encoder_tp": (4, 1), "vae_tp": (4, 1), "num_links": 2},
        }
        default_config = bh_config if is_blackhole() else wh_config
        sp_factor, sp_axis = dit_sp or default_config[tuple(mesh_device.shape)]["sp"]
        tp_factor, tp_axis = dit_tp or default_config[tuple(mesh_device.shape)]["tp"]
        num_links = num_links or default_config[tuple(mesh_device.shape)]["num_links"]
        dit_parallel_config = DiTParallelConfig(
            cfg_parallel=ParallelFactor(factor=1, mesh_axis=0),
            tensor_parallel=ParallelFactor(factor=tp_factor, mesh_axis=tp_axis),
            sequence_parallel=ParallelFactor(factor=sp_factor, mesh_axis=sp_axis),
        )
        return Flux1Pipeline(checkpoint_name=checkpoint_name, mesh_device=mesh_device,
                             enable_t5_text_encoder=enable_t5_text_encoder, parallel_config=dit_parallel_config,
                             topology=topology, num_links=num_links)

    def run_single_prompt(self, *, width=1024, height=1024, prompt, negative_prompt="", num_inference_steps, seed,
                          traced=True, profiler=None, profiler_iteration=0):
        return self(width=width, height=height, prompt_1=[prompt], prompt_2=[prompt], negative_prompt_1=[negative_prompt],
                    negative_prompt_2=[negative_prompt], num_inference_steps=num_inference_steps, seed=seed, traced=traced)

    def __call__(self, *, num_images_per_prompt=1, width=1024, height=1024, cfg_scale=1, guidance_scale=3.5,
                 prompt_1, prompt_2, negative_prompt_1=None, negative_prompt_2=None, num_inference_steps, seed=None,
                 traced=False, clip_skip=0, profiler=None, profiler_iteration=0):
        assert num_images_per_prompt == 1, "generating multiple images is not supported"
        assert len(prompt_1) == 1, "generating multiple images is not supported"
        assert height % (self._vae_scale_factor * self._patch_size) == 0
        assert width % (self._vae_scale_factor * self._patch_size) == 0
        assert not cfg_scale > 1, "CFG is not supported"
        if seed is not None:
            torch.manual_seed(seed)
        latents = torch.randn([1, 16, height // 8, width // 8], dtype=torch.bfloat16)
        if prompt_1[0]:  # not the constructor's warm-up
            ttnn._log("flux_call", f"{width}x{height}", f"steps={num_inference_steps}", f"guidance={guidance_scale}",
                      f"seed={seed}", f"prompt={prompt_1[0]}")
        shade = int(abs(float(latents.float().sum())) * 3) % 200
        return [prompt_image(prompt_1[0], height, width, background=(shade, 40, 60))]
