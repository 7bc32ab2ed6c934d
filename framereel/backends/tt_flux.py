"""``--backend tt`` for FLUX.1 (dev / schnell): tt-metal's TT-DiT ``Flux1Pipeline.create_pipeline``
(``models/experimental/tt_dit/pipelines/flux1``) on a mesh of every chip in a shape it configures
(Wormhole 1×4, 2×4, 4×4, 4×8; Blackhole 1×2, 2×2, 2×4), one frame per call (the pipeline takes one
prompt) seeded with the frame's seed. FLUX.1 takes no classifier-free guidance: framereel's guidance
is the pipeline's distilled ``guidance_scale``, per frame. Untraced, as :mod:`.tt_sd35`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..storyboard import Frame
from .base import ModelInfo
from .common import files_fingerprint
from .tt_dit import TtDitBackend
from .tt_models import TT_DIT
from .tt_tree import BLACKHOLE, WORMHOLE

FLUX_PIPELINE = f"{TT_DIT}/flux1/pipeline_flux1.py"
FLUX_MODEL = "black-forest-labs/FLUX.1-dev"
FLUX_MESHES = {  # create_pipeline's wh_config / bh_config; the fabric its tests open them with
    WORMHOLE: {(1, 4): "FABRIC_1D", (2, 4): "FABRIC_1D", (4, 4): "FABRIC_1D", (4, 8): "FABRIC_1D"},
    BLACKHOLE: {(1, 2): "FABRIC_1D", (2, 2): "FABRIC_1D", (2, 4): "FABRIC_1D"},
}
FLUX_MULTIPLE = 32  # the pipeline asserts sizes divisible by its VAE factor (16) × patch size (2)


class TtFluxBackend(TtDitBackend):
    """FLUX.1 stills on a Tenstorrent mesh through tt-metal's TT-DiT pipeline."""

    kinds = ("key",)
    default_scheduler = "flow-euler"
    label = "FLUX.1 (TT-DiT)"
    source = FLUX_PIPELINE
    meshes = FLUX_MESHES

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or self.settings.model or FLUX_MODEL), fingerprint, 1024, 1024,
                         {"steps": 28, "guidance": 3.5}, scheduler="flow-euler")

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        super().prepare(frames, out_dir)
        for f in frames:
            if f.width % FLUX_MULTIPLE or f.height % FLUX_MULTIPLE:
                raise FramereelError(f"frame {f.index}: tt-metal's FLUX.1 pipeline renders sizes in multiples of "
                                     f"{FLUX_MULTIPLE}; got {f.width}x{f.height}")
        return []

    def load(self) -> None:
        if self.pipeline is not None:
            return
        self._open_mesh()
        module = importlib.import_module(FLUX_PIPELINE[:-3].replace("/", "."))
        checkpoint = str(self._local_model() or self.settings.model)
        self.pipeline = module.Flux1Pipeline.create_pipeline(checkpoint_name=checkpoint, mesh_device=self.mesh)

    def render(self, frame: Frame, on_step=None, init_image=None) -> tuple[Image.Image, dict[str, Any]]:
        self.load()
        negative = frame.negative_prompt or ""
        images = self.pipeline(width=frame.width, height=frame.height, guidance_scale=frame.guidance,
                               prompt_1=[frame.prompt], prompt_2=[frame.prompt], negative_prompt_1=[negative],
                               negative_prompt_2=[negative], num_inference_steps=frame.steps, seed=frame.seed,
                               traced=False)
        if on_step is not None:
            on_step(frame.steps, frame.steps)
        return images[0].convert("RGB"), {}
