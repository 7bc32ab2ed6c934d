# Fake of models/experimental/tt_dit/pipelines/wan/pipeline_wan.py (Wan 2.2 text-to-video, 2026 shape):
# WanPipeline's constructor, its create_pipeline(mesh_device, checkpoint_name=…, pipeline_class=…) with the real table of
# mesh shapes per architecture (a KeyError for any other shape, as the real dict lookup), and
# __call__'s signature and quirk (num_frames - 1 not divisible by the VAE's temporal factor, 4, is
# rounded with a warning). No weights load; each output frame draws the prompt (see fake_sd_images),
# its shade from the generator's noise, so a test can read which prompt and seed made it.

from typing import NamedTuple

import numpy as np
import torch
import ttnn
from fake_sd_images import prompt_image
from loguru import logger

from ...parallel.config import DiTParallelConfig, ParallelFactor, VaeHWParallelConfig


class WanPipelineOutput(NamedTuple):
    frames: np.ndarray


class WanPipeline:
    def __init__(self, mesh_device, parallel_config, vae_parallel_config, num_links,
                 checkpoint_name: str = "Wan-AI/Wan2.2-T2V-A14B-Diffusers", boundary_ratio=0.875,
                 expand_timesteps: bool = False, dynamic_load=False, topology=ttnn.Topology.Linear, is_fsdp: bool = True):
        self.mesh_device = mesh_device
        self.parallel_config = parallel_config
        self.vae_parallel_config = vae_parallel_config
        self.vae_scale_factor_temporal = 4
        self.vae_scale_factor_spatial = 8
        ttnn._log("wan_pipeline", "x".join(map(str, mesh_device.shape)), f"checkpoint={checkpoint_name}",
                  f"links={num_links}", f"topology={topology.name}", f"fsdp={is_fsdp}", f"dynamic_load={dynamic_load}")

    @staticmethod
    def create_pipeline(mesh_device, checkpoint_name="Wan-AI/Wan2.2-T2V-A14B-Diffusers", sp_axis=None, tp_axis=None,
                        num_links=None, dynamic_load=None, topology=None, is_fsdp=None, pipeline_class=None):
        device_configs = {}
        if ttnn.device.is_blackhole():
            device_configs[(1, 4)] = {"sp_axis": 0, "tp_axis": 1, "num_links": 2, "dynamic_load": False,
                                      "topology": ttnn.Topology.Linear, "is_fsdp": False}
            device_configs[(1, 8)] = {"sp_axis": 0, "tp_axis": 1, "num_links": 2, "dynamic_load": False,
                                      "topology": ttnn.Topology.Linear, "is_fsdp": False}
            device_configs[(4, 8)] = {"sp_axis": 1, "tp_axis": 0, "num_links": 2, "dynamic_load": False,
                                      "topology": ttnn.Topology.Linear, "is_fsdp": False}
        else:
            device_configs[(2, 4)] = {"sp_axis": 0, "tp_axis": 1, "num_links": 1, "dynamic_load": True,
                                      "topology": ttnn.Topology.Linear, "is_fsdp": True}
            device_configs[(4, 8)] = {"sp_axis": 1, "tp_axis": 0, "num_links": 4, "dynamic_load": False,
                                      "topology": ttnn.Topology.Ring, "is_fsdp": True}
        config = device_configs[tuple(mesh_device.shape)]
        sp_axis = sp_axis or config["sp_axis"]
        tp_axis = tp_axis or config["tp_axis"]
        parallel_config = DiTParallelConfig(
            tensor_parallel=ParallelFactor(mesh_axis=tp_axis, factor=tuple(mesh_device.shape)[tp_axis]),
            sequence_parallel=ParallelFactor(mesh_axis=sp_axis, factor=tuple(mesh_device.shape)[sp_axis]),
            cfg_parallel=None,
        )
        vae_parallel_config = VaeHWParallelConfig(
            height_parallel=ParallelFactor(factor=tuple(mesh_device.shape)[tp_axis], mesh_axis=tp_axis),
            width_parallel=ParallelFactor(factor=tuple(mesh_device.shape)[sp_axis], mesh_axis=sp_axis),
        )
        pipeline_class = pipeline_class or WanPipeline
        return pipeline_class(mesh_device=mesh_device, parallel_config=parallel_config,
                              vae_parallel_config=vae_parallel_config, num_links=num_links or config["num_links"],
                              boundary_ratio=0.875,
                              dynamic_load=dynamic_load if dynamic_load is not None else config["dynamic_load"],
                              topology=topology or config["topology"],
                              is_fsdp=is_fsdp if is_fsdp is not None else config["is_fsdp"], checkpoint_name=checkpoint_name)

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, height: int = 480, width: int = 832, num_frames: int = 81,
                 num_inference_steps: int = 50, guidance_scale: float = 5.0, guidance_scale_2=None,
                 num_videos_per_prompt=1, generator=None, latents=None, prompt_embeds=None, negative_prompt_embeds=None,
                 output_type="np", return_dict: bool = True, attention_kwargs=None, callback_on_step_end=None,
                 callback_on_step_end_tensor_inputs=["latents"], max_sequence_length: int = 512):  # noqa: B006
        if num_frames % self.vae_scale_factor_temporal != 1:
            logger.warning(f"`num_frames - 1` has to be divisible by {self.vae_scale_factor_temporal}. "
                           "Rounding to the nearest number.")
            num_frames = num_frames // self.vae_scale_factor_temporal * self.vae_scale_factor_temporal + 1
        num_frames = max(num_frames, 1)
        latent_frames = (num_frames - 1) // self.vae_scale_factor_temporal + 1
        noise = torch.randn((1, 16, latent_frames, height // 8, width // 8), generator=generator)
        ttnn._log("wan_call", f"frames={num_frames}", f"{width}x{height}", f"steps={num_inference_steps}",
                  f"guidance={guidance_scale}", f"prompt={prompt}")
        frames = []
        for t in range(num_frames):
            shade = int(abs(float(noise[0, :, t // self.vae_scale_factor_temporal].sum())) * 3 + t * 5) % 200
            frames.append(np.asarray(prompt_image(prompt, height, width, background=(shade, 40, 60)),
                                     dtype=np.float32) / 255.0)
        video = np.stack(frames)[None]
        return WanPipelineOutput(frames=video) if return_dict else (video,)
