"""``--backend tt`` for SD 3.5 Large: tt-metal's TT-DiT ``create_pipeline``
(``models/experimental/tt_dit/pipelines/stable_diffusion_35_large``) on a 2×4 (LoudBox / T3K) or 4×8
(Galaxy) mesh, one frame per call (the pipeline is prepared for batch 1), seeded with the frame's seed.

The pipeline is built for 1024×1024 (its spatial sequence length, 4096, is fixed) and one guidance
(set when it is prepared); its constructor asserts that the checkpoint path names
``stabilityai/stable-diffusion-3.5-large``, so a local folder must sit at such a path. It runs untraced
(``traced=False``): a trace needs a trace region the tree's tests size, which framereel doesn't guess.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import ModelInfo
from .common import files_fingerprint
from .tt_dit import TtDitBackend
from .tt_models import TT_DIT
from .tt_tree import BLACKHOLE, WORMHOLE

SD35_PIPELINE = f"{TT_DIT}/stable_diffusion_35_large/pipeline_stable_diffusion_35_large.py"
SD35_MODEL = "stabilityai/stable-diffusion-3.5-large"
SD35_MESHES = {arch: {(2, 4): "FABRIC_1D", (4, 8): "FABRIC_1D"} for arch in (WORMHOLE, BLACKHOLE)}  # default_config
SD35_SIZE = 1024


def check_sd35_frames(frames: list[Frame]) -> None:
    for f in frames:
        if (f.width, f.height) != (SD35_SIZE, SD35_SIZE):
            raise FramereelError(f"frame {f.index}: tt-metal's SD 3.5 Large pipeline renders {SD35_SIZE}x{SD35_SIZE} "
                                 f"only; got {f.width}x{f.height}")
    guidance = {f.guidance for f in frames}
    if len(guidance) > 1:
        raise FramereelError(f"--backend tt prepares one SD 3.5 pipeline per run: every frame needs the same guidance "
                             f"(got {sorted(guidance)})")


class TtSd35Backend(TtDitBackend):
    """SD 3.5 Large stills on a Tenstorrent mesh through tt-metal's TT-DiT pipeline."""

    kinds = ("key",)
    default_scheduler = "flow-euler"
    label = "SD 3.5 Large (TT-DiT)"
    source = SD35_PIPELINE
    meshes = SD35_MESHES

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        checkpoint = str(self._local_model() or SD35_MODEL)
        if SD35_MODEL not in checkpoint:
            raise FramereelError(f"{settings.model}: tt-metal's SD 3.5 pipeline asserts that the checkpoint path contains "
                                 f"{SD35_MODEL!r}; put the folder at such a path (e.g. …/{SD35_MODEL})")
        self.checkpoint = checkpoint
        self.guidance: float | None = None

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or SD35_MODEL), fingerprint, SD35_SIZE, SD35_SIZE, {"steps": 40, "guidance": 3.5},
                         scheduler="flow-euler")

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        super().prepare(frames, out_dir)
        check_sd35_frames(frames)
        self.guidance = frames[0].guidance if frames else None
        return []

    def load(self) -> None:
        if self.pipeline is not None:
            return
        self._open_mesh()
        module = importlib.import_module(SD35_PIPELINE[:-3].replace("/", "."))
        self.pipeline = module.create_pipeline(mesh_device=self.mesh, image_w=SD35_SIZE, image_h=SD35_SIZE,
                                               guidance_scale=self.guidance if self.guidance is not None else 3.5,
                                               model_checkpoint_path=self.checkpoint)

    def render(self, frame: Frame, on_step=None, init_image=None) -> tuple[Image.Image, dict[str, Any]]:
        check_sd35_frames([frame])
        if self.guidance is not None and frame.guidance != self.guidance and self.pipeline is not None:
            raise FramereelError(f"frame {frame.index}: the SD 3.5 pipeline was prepared for guidance {self.guidance}")
        self.guidance = frame.guidance if self.guidance is None else self.guidance
        self.load()
        negative = frame.negative_prompt or ""
        images = self.pipeline(prompt_1=[frame.prompt], prompt_2=[frame.prompt], prompt_3=[frame.prompt],
                               negative_prompt_1=[negative], negative_prompt_2=[negative], negative_prompt_3=[negative],
                               num_inference_steps=frame.steps, seed=frame.seed, traced=False)
        if on_step is not None:
            on_step(frame.steps, frame.steps)
        return images[0].convert("RGB"), {}
