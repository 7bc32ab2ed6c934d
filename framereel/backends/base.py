"""The backend contract: everything the runner, the executors and interactive mode use of a backend.

A backend loads a model once and turns resolved :class:`~framereel.storyboard.Frame` objects into
images. Subclass :class:`Backend`, implement the four abstract methods, and override the
defaults only where the backend can do more (batching, options that change pixels, a
prepare step that refuses frames before a device opens). Register it by name under the
``framereel.backends`` entry-point group (see :mod:`framereel.backends`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..depth import depth_model_name
from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame, motion_3d

MAX_PROMPT_TOKENS = 77  # CLIP's context
StepCallback = Callable[[int, int], None]
Rendered = tuple[Image.Image, dict[str, Any]]  # an image and extra facts for run.json


@dataclass(frozen=True)
class ModelInfo:
    """What a backend knows about its model before loading weights."""

    id: str
    fingerprint: str  # a hub revision, or a hash of the local files
    native_width: int
    native_height: int
    recommended: dict[str, Any] = field(default_factory=dict)  # from the model folder's framereel.json
    scheduler: str = "dpm++"  # what --scheduler auto means for this model
    family: dict[str, Any] | None = None  # the model family and its defaults (see ``backends.families``)
    clip_recommended: dict[str, Any] = field(default_factory=dict)  # a --video-model's steps and guidance

    def defaults(self) -> dict[str, Any]:
        """What the model fills in for parameters nobody set: its native size and recommended settings
        (and, under ``"clip"``, what a video model recommends for clip frames)."""
        clip = {"clip": dict(self.clip_recommended)} if self.clip_recommended else {}
        return {"width": self.native_width, "height": self.native_height, **self.recommended, **clip}


def check_depth_model(frames: list[Frame], spec: str | None) -> None:
    """Refuse 3D camera frames that move through depth without a depth model, or with one that
    can't be found (before anything loads)."""
    deep = next((f for f in frames if (motion_3d(f.motion) or {}).get("depth_warping")), None)
    if deep is None:
        return
    if not spec:
        raise FramereelError(f'frame {deep.index}: a "mode": "3D" camera moves through each frame\'s depth; pass '
                             '--depth-model PATH_OR_ID (a Depth Anything or DPT model), or set "depth_warping": false')
    depth_model_name(spec)


class Backend(ABC):
    """Base class of every backend. ``name``, ``device`` and ``dtype`` are set by the subclass."""

    name: str = "backend"
    device: str = "cpu"
    dtype: str = "float32"
    device_reason: str = ""  # why this device, shown once at the start of a run
    #: frames per render call; the runner groups frames with :func:`framereel.jobs.batch_groups`
    batch: int = 1
    #: frame kinds this backend renders ("key", "morph", "chain", …)
    kinds: tuple[str, ...] = ("key", "morph", "chain")
    #: whether frames may carry "control" (ControlNets)
    takes_control: bool = False
    #: whether --batch N, --compile, --tiny-vae and --step-cache apply (refused up front if not)
    takes_speed_options: bool = False
    #: why not, in the refusal: "<flags>: <this>; drop them or use --backend diffusers"
    speed_refusal: str = "this backend renders one frame at a time and doesn't take these"

    #: what ``--scheduler auto`` means here ("auto": the backend resolves it from its model)
    default_scheduler: str = "dpm++"

    def __init__(self, settings: RenderSettings):
        if settings.scheduler == "auto" and self.default_scheduler != "auto":
            from dataclasses import replace

            settings = replace(settings, scheduler=self.default_scheduler)
        self.settings = settings
        self.notes: list[str] = []  # facts about how frames were made, recorded in run.json
        self.batches: dict[tuple[int, int], int] = {}  # --batch auto, per frame size (see resolve_batch)

    @property
    def pixel_options(self) -> dict[str, Any]:
        """Options that change pixels beyond the frame's own parameters: part of each frame's hash."""
        return {}

    def frame_options(self, frame: Frame) -> dict[str, Any]:
        """What changes this one frame's pixels beyond its parameters, as the backend resolves it
        (a frame's own LoRAs, by their files' contents): part of its hash, over ``pixel_options``
        (a ``None`` value drops that key)."""
        return {}

    def run_facts(self) -> dict[str, Any]:
        """Run-wide facts about how frames are made that leave their pixels alone (not in a frame's
        hash), recorded in run.json: e.g. the diffusers backend's ``"fast_path"``."""
        return {}

    @property
    def clip_options(self) -> dict[str, Any]:
        """Options that change clip frames only (a motion adapter, motion LoRAs): part of their hash."""
        return {}

    @abstractmethod
    def describe(self) -> ModelInfo:
        """Resolve the model (download if needed) without loading weights."""

    @abstractmethod
    def load(self) -> None:
        """Load the weights once; called only if some frame needs rendering."""

    @abstractmethod
    def render(self, frame: Frame, on_step: StepCallback | None = None, init_image: Image.Image | None = None
               ) -> Rendered:
        """Render one frame; a chained frame starts from ``init_image``."""

    def resolve_batch(self, frames: list[Frame]) -> dict[tuple[int, int], int]:
        """Settle the batch size of each frame size among ``frames`` before jobs are planned (a
        backend may measure it); returns ``{(width, height): batch}``, empty where :attr:`batch` holds."""
        return {}

    def batch_for(self, frame: Frame) -> int:
        """Frames per call for ``frame``'s size: measured by :meth:`resolve_batch`, else :attr:`batch`."""
        return self.batches.get((frame.width, frame.height), self.batch)

    def render_batch(self, frames: list[Frame], on_step: StepCallback | None = None) -> list[Rendered]:
        """Render frames that may share a call (same size, steps, guidance; never chained)."""
        return [self.render(f, on_step=on_step) for f in frames]

    def render_clip(self, frames: list[Frame], on_step: StepCallback | None = None) -> list[Rendered]:
        """Render one whole clip (all of its frames, in order; see :mod:`framereel.clips`), for
        backends whose :attr:`kinds` include ``"clip"``."""
        raise FramereelError(f"frame {frames[0].index}: the {self.name} backend can't render clip frames; "
                             "use --backend diffusers")

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Check the frames to render before any device opens (:meth:`check`, and what only a run
        needs); raise FramereelError to refuse, return warnings to show."""
        return self.check(frames)

    def check(self, frames: list[Frame]) -> list[str]:
        """Refuse what this backend would refuse of ``frames`` later in the run, without loading
        weights, opening a device or writing anything: ``--dry-run`` and the run both call it, so a
        dry run passes only what the run renders. Returns warnings to show."""
        for f in frames:
            if f.kind not in self.kinds:
                raise FramereelError(f"frame {f.index}: the {self.name} backend can't render {f.kind} frames; "
                                     "use --backend diffusers")
            if (f.lora or f.morph_lora) and not self.takes_speed_options:
                raise FramereelError(f'frame {f.index}: "lora": the {self.name} backend takes no LoRAs; '
                                     "drop it or use --backend diffusers")
            if f.control and not self.takes_control:
                raise FramereelError(f'frame {f.index}: "control": the {self.name} backend takes no ControlNets; '
                                     "drop it or use --backend diffusers")
        check_depth_model(frames, self.settings.depth_model)
        return []

    def count_tokens(self, text: str) -> int:
        """How many prompt tokens ``text`` takes, start and end tokens included (0: unknown)."""
        return 0

    def prompt_warnings(self, frames: list[Frame]) -> list[str]:
        """Warnings for prompts longer than the text encoder reads (asked after :meth:`load`)."""
        out, seen = [], set()
        for f in frames:
            if f.prompt in seen:
                continue
            seen.add(f.prompt)
            n = self.count_tokens(f.prompt)
            if n > MAX_PROMPT_TOKENS:
                out.append(f"frame {f.index}: prompt is {n} tokens; CLIP reads only the first {MAX_PROMPT_TOKENS}, "
                           "the rest will be truncated")
        return out

    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler of a loaded model (interactive ``:scheduler``)."""
        raise FramereelError(f"the {self.name} backend can't change its scheduler once loaded")

    def close(self) -> None:
        """Release the device."""
        return None
