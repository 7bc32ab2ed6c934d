"""``--backend tt`` for ``"clip"`` entries with Wan 2.2: tt-metal's TT-DiT ``WanPipeline`` (text-to-video,
``models/experimental/tt_dit/pipelines/wan/pipeline_wan.py``) or ``WanPipelineI2V`` (image-to-video, from a
clip's ``"first_frame"``, ``pipeline_wan_i2v.py``) on a mesh of every chip.

1. check the clips (the sizes the pipeline is tested at, a frame count the VAE takes whole, one prompt
   per clip, clip entries only);
2. open the mesh in a shape the pipeline's ``create_pipeline`` has a configuration for (Wormhole 2×4,
   4×8; Blackhole 1×4, 1×8, 4×8), with the fabric its tests open it with (``line_params`` /
   ``ring_params`` in ``tt_dit/utils/test.py``), and ``TT_MM_THROTTLE_PERF=5`` on Wormhole;
3. ``WanPipeline.create_pipeline(mesh_device, checkpoint_name=…)`` (``WanPipelineI2V.create_pipeline`` for
   I2V), then one call per clip with the clip's first frame's seed as the generator, and for I2V its
   ``"first_frame"`` image (fitted to the clip's size) as the pipeline's image prompt at frame 0.

Video-to-video is not wired: a clip with ``init_video`` is refused; so is ``"last_frame"`` (one image).
"""

from __future__ import annotations

import importlib
import inspect
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
WAN_I2V_PIPELINE = f"{TT_DIT}/wan/pipeline_wan_i2v.py"
WAN_MODEL = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
WAN_I2V_MODEL = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
# the mesh shapes create_pipeline configures, per architecture, and the fabric its tests open them with
WAN_MESHES = {
    WORMHOLE: {(2, 4): "FABRIC_1D", (4, 8): "FABRIC_1D_RING"},
    BLACKHOLE: {(1, 4): "FABRIC_1D", (1, 8): "FABRIC_1D", (4, 8): "FABRIC_1D"},
}
WAN_SIZES = ((832, 480), (1280, 720))  # test_pipeline_wan's resolutions
TEMPORAL = 4  # the Wan VAE's temporal factor: a clip of 4k + 1 frames


def check_wan_frames(frames: list[Frame], i2v: bool = False) -> None:
    """Refuse, in one line, what tt-metal's Wan 2.2 pipelines can't render (``i2v``: the image-to-video one)."""
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
        problem = key_frame_problem(spec, i2v)
        if problem:
            raise FramereelError(f"clip at entry {spec.id}: {problem}")


def key_frame_problem(spec, i2v: bool) -> str | None:
    """What a clip's key frames ask that the Wan 2.2 pipeline in use can't do, or None."""
    if not i2v and spec.first_frame is not None:
        return (f'Wan 2.2 T2V renders from a prompt only; for a clip with "first_frame" use --model {WAN_I2V_MODEL} '
                "(tt-metal's WanPipelineI2V)")
    if i2v and spec.first_frame is None:
        return 'Wan 2.2 I2V animates from an image: give the clip a "first_frame" ("previous", "next" or an image path)'
    if spec.last_frame is not None:
        return 'tt-metal\'s Wan 2.2 pipelines take no "last_frame" here; drop it or use --backend diffusers --video-model'
    return None


class TtWanBackend(TtDitBackend):
    """Wan 2.2 T2V clips on a Tenstorrent mesh through tt-metal's TT-DiT ``WanPipeline``."""

    kinds = ("clip",)
    default_scheduler = "flow-euler"
    label = "Wan 2.2 T2V (TT-DiT)"
    source = WAN_PIPELINE
    meshes = WAN_MESHES
    checkpoint = WAN_MODEL
    pipeline_class = "WanPipeline"
    i2v = False

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        if "def create_pipeline(" not in (self.home / self.source).read_text(errors="replace"):
            raise FramereelError(f"this tt-metal tree (commit {self.demo.commit}) has a {self.pipeline_class} without "
                                 f"create_pipeline ({self.source}); update tt-metal")

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or self.checkpoint), fingerprint, *WAN_SIZES[0], {"steps": 40, "guidance": 3.0},
                         scheduler="flow-euler")

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        super().prepare(frames, out_dir)
        check_wan_frames(frames, self.i2v)
        if self.arch == WORMHOLE and "TT_MM_THROTTLE_PERF" not in os.environ:
            os.environ["TT_MM_THROTTLE_PERF"] = THROTTLE
            self.decisions["TT_MM_THROTTLE_PERF"] = f"{THROTTLE} (Wormhole: Wan 2.2 needs it)"
        self.decisions["TT_DIT_CACHE_DIR"] = os.environ.get("TT_DIT_CACHE_DIR", "unset: TT-DiT's default weight cache")
        return []

    def load(self) -> None:
        if self.pipeline is not None:
            return
        self._open_mesh()
        module = importlib.import_module(self.source[:-3].replace("/", "."))
        self.pipeline = getattr(module, self.pipeline_class).create_pipeline(
            mesh_device=self.mesh, checkpoint_name=str(self._local_model() or self.checkpoint))

    def render(self, frame: Frame, on_step=None, init_image=None):
        raise FramereelError(f"frame {frame.index}: Wan 2.2 on Tenstorrent renders \"clip\" entries only")

    def image_kwargs(self, first: Image.Image | None) -> dict[str, Any]:
        """The call's conditioning image: none for text-to-video."""
        return {}

    def render_clip(self, frames: list[Frame], on_step=None, first: Image.Image | None = None,
                    last: Image.Image | None = None) -> list[tuple[Image.Image, dict[str, Any]]]:
        """One pipeline call for the whole clip, seeded with its first frame's seed (``first``: the clip's
        ``"first_frame"`` image, fitted to its size, for image-to-video)."""
        import torch

        check_wan_frames(frames, self.i2v)
        self.load()
        head = frames[0]
        result = self.pipeline(prompt=head.prompt, negative_prompt=head.negative_prompt or "", height=head.height,
                               width=head.width, num_frames=len(frames), num_inference_steps=head.steps,
                               guidance_scale=head.guidance, generator=torch.Generator("cpu").manual_seed(head.seed),
                               **self.image_kwargs(first))
        video = result.frames[0]
        if len(video) != len(frames):
            raise FramereelError(f"clip at frame {head.index}: the Wan pipeline returned {len(video)} frames, not "
                                 f"{len(frames)}")
        if on_step is not None:
            on_step(head.steps, head.steps)
        return [(Image.fromarray((v * 255).round().clip(0, 255).astype("uint8")), {}) for v in video]


class TtWanI2VBackend(TtWanBackend):
    """Wan 2.2 I2V clips (from their ``"first_frame"``) through tt-metal's TT-DiT ``WanPipelineI2V``."""

    label = "Wan 2.2 I2V (TT-DiT)"
    source = WAN_I2V_PIPELINE
    checkpoint = WAN_I2V_MODEL
    pipeline_class = "WanPipelineI2V"
    i2v = True

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        if not (self.home / WAN_PIPELINE).is_file():
            raise FramereelError(f"this tt-metal tree (commit {self.demo.commit}) has {WAN_I2V_PIPELINE} without the "
                                 f"WanPipeline it builds on ({WAN_PIPELINE}); update tt-metal")

    def image_kwargs(self, first: Image.Image | None) -> dict[str, Any]:
        """The first frame under the name the tree's ``__call__`` takes: ``image_prompt`` (newer trees, an
        image or ``ImagePrompt``s) or ``image`` (earlier ones)."""
        if first is None:  # check_wan_frames refused this; the runner always hands the key image over
            raise FramereelError("Wan 2.2 I2V: the clip's first_frame image is missing")
        params = inspect.signature(type(self.pipeline).__call__).parameters
        name = "image_prompt" if "image_prompt" in params else "image" if "image" in params else None
        if name is None:
            raise FramereelError(f"this tt-metal tree (commit {self.demo.commit}) has a WanPipelineI2V whose __call__ "
                                 f"takes neither image_prompt nor image ({self.source}); update framereel or tt-metal")
        self.decisions["wan_i2v_api"] = f"__call__({name}=…)"
        return {name: first}
