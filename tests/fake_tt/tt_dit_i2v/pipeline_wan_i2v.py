# Fake of models/experimental/tt_dit/pipelines/wan/pipeline_wan_i2v.py (Wan 2.2 image-to-video, 2026
# shape); tests copy it into a fake tree beside pipeline_wan.py (a tree that holds the I2V pipeline).
# Copied from the real file: ImagePrompt(image, frame_pos), WanPipelineI2V(WanPipeline) whose
# create_pipeline(*args, **kwargs) defaults checkpoint_name to Wan-AI/Wan2.2-I2V-A14B-Diffusers and
# hands pipeline_class=WanPipelineI2V to WanPipeline.create_pipeline (its mesh table), and
# prepare_latents' quirks: batch size 1 only, an image or ImagePrompt or a list of ImagePrompts, one
# image per frame position (an assert otherwise), each resized to the call's height x width. No
# weights load: the frames are the T2V fake's, with each conditioning image in its frame position.

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import ttnn
from PIL import Image

from .pipeline_wan import WanPipeline


class ImagePrompt(NamedTuple):
    image: Image.Image
    frame_pos: int


class WanPipelineI2V(WanPipeline):
    def __init__(self, *args, **kwargs):
        if "checkpoint_name" not in kwargs:
            kwargs["checkpoint_name"] = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
        super().__init__(*args, **kwargs)

    @staticmethod
    def create_pipeline(*args, **kwargs):
        if "checkpoint_name" not in kwargs:
            kwargs["checkpoint_name"] = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
        return WanPipeline.create_pipeline(*args, pipeline_class=WanPipelineI2V, **kwargs)

    def prepare_image_prompts(self, batch_size: int, image_prompt: ImagePrompt | Image.Image | list[ImagePrompt],
                              height: int, width: int, num_frames: int):
        assert batch_size == 1, "Only batch size 1 is currently supported for I2V"
        if isinstance(image_prompt, ImagePrompt):
            image_prompt = [image_prompt]
        elif isinstance(image_prompt, Image.Image):
            image_prompt = [ImagePrompt(image=image_prompt, frame_pos=0)]
        inserted_frames = set()
        for _, frame_pos in image_prompt:
            assert frame_pos not in inserted_frames, f"Frame position {frame_pos} already processed."
            inserted_frames.add(frame_pos)
        return [(image.convert("RGB").resize((width, height)), pos) for image, pos in image_prompt]

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, image_prompt=None, height: int = 480, width: int = 832,
                 num_frames: int = 81, num_inference_steps: int = 50, guidance_scale: float = 5.0,
                 guidance_scale_2=None, num_videos_per_prompt=1, generator=None, **kwargs):
        images = self.prepare_image_prompts(num_videos_per_prompt, image_prompt, height, width, num_frames)
        ttnn._log("wan_i2v_images", *(f"frame_pos={pos}:{image.width}x{image.height}" for image, pos in images))
        result = super().__call__(prompt=prompt, negative_prompt=negative_prompt, height=height, width=width,
                                  num_frames=num_frames, num_inference_steps=num_inference_steps,
                                  guidance_scale=guidance_scale, guidance_scale_2=guidance_scale_2,
                                  num_videos_per_prompt=num_videos_per_prompt, generator=generator, **kwargs)
        video = result.frames
        for image, pos in images:  # the conditioned frames come back as the images given
            video[0, pos] = np.asarray(image, dtype=np.float32) / 255.0
        return result
