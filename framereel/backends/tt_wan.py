"""``--backend tt`` for ``"clip"`` entries with Wan 2.2 text-to-video: tt-metal's TT-DiT ``WanPipeline``
(``models/experimental/tt_dit/pipelines/wan/pipeline_wan.py``) on a mesh of every chip.

1. check the clips (the sizes the pipeline is tested at, a frame count the VAE takes whole, one prompt
   per clip, clip entries only);
2. open the mesh in a shape the pipeline's ``create_pipeline`` has a configuration for (Wormhole 2×4,
   4×8; Blackhole 1×4, 1×8, 4×8), with the fabric its tests open it with (``line_params`` /
   ``ring_params`` in ``tt_dit/utils/test.py``), and ``TT_MM_THROTTLE_PERF=5`` on Wormhole;
3. ``WanPipeline.create_pipeline(mesh_device, checkpoint_name=…)``, then one call per clip with the
   clip's first frame's seed as the generator.

Image-to-video (``pipeline_wan_i2v.py``) is not wired: a clip with ``init_video`` is refused.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import ModelInfo
from .common import files_fingerprint
from .tt_chips import THROTTLE
from .tt_dit import TtDitBackend
from .tt_models import TT_DIT
from .tt_tree import BLACKHOLE, WORMHOLE

WAN_PIPELINE = f"{TT_DIT}/wan/pipeline_wan.py"
WAN_MODEL = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
# the mesh shapes create_pipeline configures, per architecture, and the fabric its tests open them with
WAN_MESHES = {
    WORMHOLE: {(2, 4): "FABRIC_1D", (4, 8): "FABRIC_1D_RING"},
    BLACKHOLE: {(1, 4): "FABRIC_1D", (1, 8): "FABRIC_1D", (4, 8): "FABRIC_1D"},
}
WAN_SIZES = ((832, 480), (1280, 720))  # test_pipeline_wan's resolutions
TEMPORAL = 4  # the Wan VAE's temporal factor: a clip of 4k + 1 frames


def check_wan_frames(frames: list[Frame]) -> None:
    for f in frames:
        if f.kind != "clip":
            raise FramereelError(f"frame {f.index}: Wan 2.2 on Tenstorrent renders \"clip\" entries only; render still "
                                 "frames in another run (e.g. with SDXL)")
        if (f.width, f.height) not in WAN_SIZES:
            raise FramereelError(f"frame {f.index}: tt-metal's Wan 2.2 pipeline renders "
                                 f"{' or '.join(f'{w}x{h}' for w, h in WAN_SIZES)}; got {f.width}x{f.height}")
    clips = {f.clip for f in frames if f.clip is not None}
    for spec in clips:
        if spec.frames % TEMPORAL != 1:
            raise FramereelError(f"clip at entry {spec.id}: Wan 2.2 renders 4k+1 frames (its VAE packs 4 frames in one); "
                                 f"got {spec.frames}, use {spec.frames // TEMPORAL * TEMPORAL + 1}")
        if spec.travels or spec.init_video:
            raise FramereelError(f"clip at entry {spec.id}: Wan 2.2 on Tenstorrent takes one prompt per clip and no "
                                 "init_video; drop \"travel\"/\"clip_group\"/\"init_video\" or use --backend diffusers")


class TtWanBackend(TtDitBackend):
    """Wan 2.2 T2V clips on a Tenstorrent mesh through tt-metal's TT-DiT ``WanPipeline``."""

    kinds = ("clip",)
    default_scheduler = "flow-euler"
    label = "Wan 2.2 T2V (TT-DiT)"
    source = WAN_PIPELINE
    meshes = WAN_MESHES

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        if "def create_pipeline(" not in (self.home / WAN_PIPELINE).read_text(errors="replace"):
            raise FramereelError(f"this tt-metal tree (commit {self.demo.commit}) has a WanPipeline without "
                                 f"create_pipeline ({WAN_PIPELINE}); update tt-metal")

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or WAN_MODEL), fingerprint, *WAN_SIZES[0], {"steps": 40, "guidance": 3.0},
                         scheduler="flow-euler")

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        super().prepare(frames, out_dir)
        check_wan_frames(frames)
        if self.arch == WORMHOLE and "TT_MM_THROTTLE_PERF" not in os.environ:
            os.environ["TT_MM_THROTTLE_PERF"] = THROTTLE
            self.decisions["TT_MM_THROTTLE_PERF"] = f"{THROTTLE} (Wormhole: Wan 2.2 needs it)"
        self.decisions["TT_DIT_CACHE_DIR"] = os.environ.get("TT_DIT_CACHE_DIR", "unset: TT-DiT's default weight cache")
        return []

    def load(self) -> None:
        if self.pipeline is not None:
            return
        self._open_mesh()
        module = importlib.import_module(WAN_PIPELINE[:-3].replace("/", "."))
        self.pipeline = module.WanPipeline.create_pipeline(mesh_device=self.mesh,
                                                           checkpoint_name=str(self._local_model() or WAN_MODEL))

    def render(self, frame: Frame, on_step=None, init_image=None):
        raise FramereelError(f"frame {frame.index}: Wan 2.2 on Tenstorrent renders \"clip\" entries only")

    def render_clip(self, frames: list[Frame], on_step=None) -> list[tuple[Image.Image, dict[str, Any]]]:
        """One pipeline call for the whole clip, seeded with its first frame's seed."""
        import torch

        check_wan_frames(frames)
        self.load()
        first = frames[0]
        result = self.pipeline(prompt=first.prompt, negative_prompt=first.negative_prompt or "", height=first.height,
                               width=first.width, num_frames=len(frames), num_inference_steps=first.steps,
                               guidance_scale=first.guidance, generator=torch.Generator("cpu").manual_seed(first.seed))
        video = result.frames[0]
        if len(video) != len(frames):
            raise FramereelError(f"clip at frame {first.index}: the Wan pipeline returned {len(video)} frames, not "
                                 f"{len(frames)}")
        if on_step is not None:
            on_step(first.steps, first.steps)
        return [(Image.fromarray((v * 255).round().clip(0, 255).astype("uint8")), {}) for v in video]
