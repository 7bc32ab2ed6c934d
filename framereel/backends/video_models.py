"""Clips from video diffusion transformers: Wan 2.1/2.2 and LTX-Video through ``--video-model``.

Resolve, then render, as for image models:

1. :func:`resolve_video_model` finds the model (a diffusers folder or a Hub id) and reads its
   family from ``model_index.json`` (``_class_name``, ``expand_timesteps``, ``boundary_ratio``) and
   the component configs (the transformer's input channels and image embedding, the VAE's
   compression), or from a ``"family"`` in the folder's ``framereel.json``: a frozen
   :class:`VideoModel` that says what it takes (a prompt alone, a first frame, a last frame),
   its frame-count step and size multiple, and its defaults;
2. :func:`clip_problems` holds every clip to that family's rules before anything loads (one line
   naming the frame; ``--dry-run`` says the same);
3. :class:`VideoRenderer` loads the pipeline once and renders a whole clip in one call of the
   family's diffusers pipeline: ``WanPipeline`` (text), ``WanImageToVideoPipeline`` (a first
   frame; with ``last_image``: first-last-frame), ``LTXPipeline``, ``LTXImageToVideoPipeline``,
   ``LTXConditionPipeline`` (first and last key frames at frame 0 and N-1), with the clip's seeded
   CPU generator, so a framereel clip is exactly what that pipeline gives for the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from .common import SourceKind, files_fingerprint, resolve_source, step_callback
from .families import family_override, json_config

VIDEO_MODEL = SourceKind(
    "--video-model", "model_index.json",
    not_a_folder="--video-model {path}: not a diffusers model folder (no model_index.json); pass a folder saved "
                 "with save_pretrained or a Hub id like Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    missing="--video-model {spec}: no such model folder; check the path, or pass a Hub id like "
            "Wan-AI/Wan2.2-TI2V-5B-Diffusers or Lightricks/LTX-Video",
    whole_pipeline=True)


@dataclass(frozen=True)
class VideoFamily:
    """What framereel knows of a video model family: what it conditions on and a model card's defaults."""

    key: str  # e.g. "wan2.2-ti2v"
    label: str  # e.g. "Wan 2.2 TI2V-5B"
    kind: str  # "wan" or "ltx": which diffusers pipelines render it
    text: bool  # renders from a prompt alone
    first: bool  # takes a first key frame (image-to-video)
    last: bool  # takes a last key frame too (first-last-frame)
    steps: int
    guidance: float
    fps: int  # what it is trained at
    native_frames: int  # the clip length it is trained on
    pair: bool = False  # key frames only in pairs (its image embedding takes two images)


VIDEO_FAMILIES: dict[str, VideoFamily] = {f.key: f for f in (
    VideoFamily("wan2.1-t2v", "Wan 2.1 T2V", "wan", True, False, False, 50, 5.0, 16, 81),
    VideoFamily("wan2.1-i2v", "Wan 2.1 I2V", "wan", False, True, False, 50, 5.0, 16, 81),
    VideoFamily("wan2.1-flf2v", "Wan 2.1 FLF2V", "wan", False, True, True, 50, 5.0, 16, 81, pair=True),
    VideoFamily("wan2.2-t2v", "Wan 2.2 T2V-A14B", "wan", True, False, False, 40, 4.0, 16, 81),
    VideoFamily("wan2.2-i2v", "Wan 2.2 I2V-A14B", "wan", False, True, True, 40, 3.5, 16, 81),
    VideoFamily("wan2.2-ti2v", "Wan 2.2 TI2V-5B", "wan", True, True, False, 50, 5.0, 24, 121),
    VideoFamily("ltx", "LTX-Video", "ltx", True, True, True, 50, 3.0, 25, 161),
)}
VIDEO_PIPELINES = ("WanPipeline", "WanImageToVideoPipeline", "LTXPipeline", "LTXImageToVideoPipeline",
                   "LTXConditionPipeline")
SUPPORTED_VIDEO = "Wan 2.1/2.2 (T2V, I2V, FLF2V, TI2V-5B) and LTX-Video"


@dataclass(frozen=True)
class VideoModel:
    """A resolved ``--video-model``: where it is, its family, and the shapes its clips must have."""

    id: str  # the Hub id or the absolute path
    path: Path
    fingerprint: str
    family: VideoFamily
    frame_step: int  # a clip has k * frame_step + 1 frames (the VAE's temporal compression)
    size_multiple: int  # width and height are multiples of this (VAE compression x patch size)
    native_frames: int = 81  # longer clips continue from their last frame (framereel.json "native_frames")
    config: dict[str, Any] = field(default_factory=dict, compare=False)  # model_index.json

    @property
    def continues(self) -> bool:
        """Whether a clip longer than the native length can continue from its last frame (image-to-video)."""
        return self.family.first and not self.family.pair

    def describe(self) -> dict[str, Any]:
        """For ``run.json`` and ``doctor``: the video model, its family and its rules."""
        f = self.family
        return {"id": self.id, "family": f.key, "label": f.label, "takes": takes(f),
                "frames": f"{self.frame_step}k+1", "size_multiple": self.size_multiple,
                "steps": f.steps, "guidance": f.guidance, "fps": f.fps, "native_frames": self.native_frames,
                "long_clips": (f"beyond {self.native_frames} frames: continued from the last frame (image-to-video), "
                               "segment i seeded with the clip's seed + i") if self.continues else
                              f"refused beyond {self.native_frames} frames"}


def takes(family: VideoFamily) -> str:
    """What a family's clips start from, in words."""
    parts = (["a prompt"] if family.text else []) + (["a first frame"] if family.first and not family.pair else []) + \
        (["first and last frames"] if family.last else [])
    return ", ".join(parts)


def resolve_video_model(spec: str) -> VideoModel:
    """``--video-model``: a diffusers folder or Hub id → a :class:`VideoModel` (nothing loaded)."""
    from . import families as fam

    source = resolve_source(spec, VIDEO_MODEL)
    folder = source.path
    try:
        index = fam.model_index(folder)
    except ValueError as err:
        raise FramereelError(f"--video-model {spec}: {err}") from None
    family = detect_video(folder, index, spec)
    fam.check_complete(folder, f"--video-model {spec}")
    step, multiple = _shape_rules(folder, family)
    fingerprint = folder.name if source.hub_id else files_fingerprint(folder)
    native = json_config(folder / "framereel.json").get("native_frames", family.native_frames)
    if not isinstance(native, int) or isinstance(native, bool) or native < 1 or (native - 1) % step:
        raise FramereelError(f'{folder / "framereel.json"}: "native_frames" must be a clip length of {step}k+1 frames '
                             f"(got {native!r})")
    return VideoModel(source.name, folder, fingerprint, family, step, multiple, native, index)


def detect_video(folder: Path, index: dict[str, Any], spec: str) -> VideoFamily:
    """The family of a video model folder, from ``model_index.json`` and the transformer's config."""
    override = family_override(folder, VIDEO_FAMILIES, "video")
    if override:
        return override
    cls = index["_class_name"]
    if cls not in VIDEO_PIPELINES:
        raise FramereelError(f"--video-model {spec}: model_index.json says {cls}, which is not a video model "
                             f"framereel renders; supported: {SUPPORTED_VIDEO} ({', '.join(VIDEO_PIPELINES)})")
    if cls.startswith("LTX"):
        return VIDEO_FAMILIES["ltx"]
    transformer = json_config(folder / "transformer" / "config.json")
    if index.get("expand_timesteps"):
        return VIDEO_FAMILIES["wan2.2-ti2v"]
    two_stage = index.get("boundary_ratio") is not None or _has_part(index, "transformer_2")
    if cls == "WanPipeline":
        return VIDEO_FAMILIES["wan2.2-t2v" if two_stage else "wan2.1-t2v"]
    if two_stage or transformer.get("image_dim") is None:
        return VIDEO_FAMILIES["wan2.2-i2v"]
    return VIDEO_FAMILIES["wan2.1-flf2v" if transformer.get("pos_embed_seq_len") else "wan2.1-i2v"]


def _has_part(index: dict[str, Any], part: str) -> bool:
    entry = index.get(part)
    return isinstance(entry, list) and None not in entry


def _shape_rules(folder: Path, family: VideoFamily) -> tuple[int, int]:
    """(frame-count step, size multiple) from the VAE's and transformer's configs."""
    vae = json_config(folder / "vae" / "config.json")
    transformer = json_config(folder / "transformer" / "config.json")
    if family.kind == "wan":
        patch = transformer.get("patch_size") or [1, 2, 2]
        return int(vae.get("scale_factor_temporal", 4)), int(vae.get("scale_factor_spatial", 8)) * int(patch[1])
    scaling = sum(bool(s) for s in vae.get("spatio_temporal_scaling", (True, True, True, False)))
    spatial = vae.get("spatial_compression_ratio") or vae.get("patch_size", 4) * 2 ** scaling
    temporal = vae.get("temporal_compression_ratio") or vae.get("patch_size_t", 1) * 2 ** scaling
    return int(temporal) * int(transformer.get("patch_size_t", 1)), int(spatial) * int(transformer.get("patch_size", 1))


# ---------------------------------------------------------------- the family's rules, up front

def clip_problems(model: VideoModel, frames: list) -> list[str]:
    """What ``model`` can't render among ``frames``' clips, one line each naming the frame and the fix."""
    problems = []
    for f in frames:
        if f.kind == "clip" and f.clip_pos == 0:
            problem = clip_problem(model, f)
            if problem:
                problems.append(f"frame {f.index}: {problem}")
    return problems


def clip_problem(model: VideoModel, f) -> str | None:
    """The first rule of ``model``'s family that clip ``f`` (its first frame) breaks, or None."""
    fam, spec, step, m = model.family, f.clip, model.frame_step, model.size_multiple
    first, last = spec.first_frame, spec.last_frame
    if (spec.frames - 1) % step:
        lo = (spec.frames - 1) // step * step + 1
        return (f'{fam.label} makes clips of {step}k+1 frames; "clip": {spec.frames} is not one (framereel '
                f'refuses rather than rounds): use {max(lo, 1)} or {lo + step}')
    if spec.frames > model.native_frames and not model.continues:
        return (f"{fam.label} makes up to {model.native_frames} frames per clip and can't continue a clip from its "
                f'last frame; split "clip": {spec.frames} into clips of at most {model.native_frames}')
    if f.width % m or f.height % m:
        w, h = max(m, round(f.width / m) * m), max(m, round(f.height / m) * m)
        return (f"{fam.label} needs a width and height that are multiples of {m} (VAE compression x patch size); "
                f"{f.width}x{f.height} is not: use {w}x{h}")
    if spec.travels:
        return f'{fam.label} takes one prompt per clip; "travel" and "clip_group" are AnimateDiff\'s (--motion-adapter)'
    if spec.init_video:
        return f'"init_video" (video-to-video) is AnimateDiff\'s (--motion-adapter); {fam.label} clips start from noise'
    if first is None and last is None and not fam.text:
        return (f'{fam.label} is an image-to-video model: give the clip a "first_frame" ("previous", "next" or an '
                'image path), or use a text-to-video model')
    if first is None and last is not None:
        return '"last_frame" needs a "first_frame" too (a clip animates from its first key frame to its last)'
    if first is not None and not fam.first:
        return f'{fam.label} renders from a prompt only; drop "first_frame"/"last_frame" or use an image-to-video model'
    if fam.pair and (first is None or last is None):
        return (f'{fam.label} animates from a first to a last key frame: give the clip both "first_frame" and '
                '"last_frame" (for a first frame alone use an I2V model)')
    if last is not None and not fam.last:
        return (f'{fam.label} has no last-frame conditioning; drop "last_frame" or use Wan 2.1 FLF2V, '
                'Wan 2.2 I2V-A14B or LTX-Video')
    if f.steps < 2 and json_config(model.path / "scheduler" / "scheduler_config.json").get("shift_terminal"):
        return (f"{fam.label}'s scheduler stretches its steps to shift_terminal, which 1 step turns into NaN "
                '(blank frames): use "steps": 2 or more')
    if f.negative_prompt and f.guidance <= 1:
        return f"a negative prompt needs guidance above 1 (it is {f.guidance:g}); raise guidance or drop it"
    return None


# ---------------------------------------------------------------- rendering


class VideoRenderer:
    """Renders whole clips with a :class:`VideoModel`'s diffusers pipelines (loaded once)."""

    def __init__(self, model: VideoModel, settings, device: str, dtype: str):
        self.model = model
        self.settings = settings
        self.device = device
        self.dtype = dtype
        self.pipe = None
        self._siblings: dict[str, Any] = {}

    def check(self, frames: list) -> None:
        problems = clip_problems(self.model, frames)
        if problems:
            raise FramereelError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))

    def load(self):
        if self.pipe is None:
            import torch
            from diffusers import DiffusionPipeline

            from .common import quiet_libraries

            quiet_libraries()
            try:
                pipe = DiffusionPipeline.from_pretrained(str(self.model.path), torch_dtype=getattr(torch, self.dtype))
            except (OSError, ValueError) as err:
                raise FramereelError(f"--video-model {self.model.id}: can't load it "
                                     f"({str(err).splitlines()[0]})") from err
            self.pipe = self._place(pipe)
        return self.pipe

    def _place(self, pipe):
        """On the device, or offloaded (``--offload``); the VAE decodes in tiles with ``--vae-tiling``."""
        pipe.set_progress_bar_config(disable=True)
        if self.settings.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.settings.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if self.settings.vae_tiling:
            pipe.vae.enable_tiling()
        return pipe

    def close(self) -> None:
        self.pipe = None
        self._siblings.clear()

    def pipeline(self, name: str):
        """The loaded pipeline as ``name`` (a diffusers class of its family), sharing its weights."""
        pipe = self.load()
        if type(pipe).__name__ == name:
            return pipe
        if name not in self._siblings:
            import diffusers

            cls = getattr(diffusers, name)
            parts = {k: v for k, v in pipe.components.items() if k in _init_parts(cls)}
            extra = {k: pipe.config[k] for k in ("boundary_ratio", "expand_timesteps")
                     if k in _init_parts(cls) and k in pipe.config}
            sibling = cls(**parts, **extra)
            sibling.set_progress_bar_config(disable=True)
            self._siblings[name] = sibling
        return self._siblings[name]

    def render(self, frames: list, on_step: Callable[[int, int], None] | None = None,
               first=None, last=None) -> list[tuple[Any, dict]]:
        """Render one whole clip (``frames``: all of its frames, in order), from its key frames'
        images ``first``/``last`` when it has them; returns ``[(image, facts), ...]``."""
        head = frames[0]
        spec = head.clip
        if [f.clip_pos for f in frames] != list(range(spec.frames)):
            raise FramereelError(f"clip at frame {head.index}: a clip renders whole ({spec.frames} frames)")
        lengths = segments(spec.frames, self.model.native_frames, self.model.frame_step)
        images: list = []
        for i, length in enumerate(lengths):  # beyond the native length: each segment from the last frame
            start = first if i == 0 else images[-1]
            out = self._call(head, length, head.seed + i, start, last if i == len(lengths) - 1 else None, on_step)
            images += out if i == 0 else out[1:]
        facts = {"segments": lengths} if len(lengths) > 1 else {}
        return [(img, facts if n == 0 else {}) for n, img in enumerate(images)]

    def _call(self, head, frames: int, seed: int, first, last, on_step) -> list:
        """One call of the family's pipeline: ``frames`` frames from ``seed`` (and key frames)."""
        import torch

        name, keys = call_for(self.model.family, head, first, last, frames)
        kwargs: dict[str, Any] = dict(
            prompt=head.prompt, negative_prompt=head.negative_prompt or None, num_inference_steps=head.steps,
            guidance_scale=head.guidance, width=head.width, height=head.height, num_frames=frames,
            generator=torch.Generator("cpu").manual_seed(seed), output_type="pil",
            callback_on_step_end=step_callback(on_step, head.steps), **keys)
        if name == "WanImageToVideoPipeline":
            kwargs.update(self._wan_prompt_embeds(kwargs.pop("prompt"), kwargs.pop("negative_prompt"), head.guidance))
        with torch.inference_mode():
            return self.pipeline(name)(**kwargs).frames[0]

    def _wan_prompt_embeds(self, prompt: str, negative: str | None, guidance: float) -> dict[str, Any]:
        """Wan prompts encoded as ``WanPipeline`` encodes them: diffusers' image-to-video pipeline
        cleans prompts with ftfy without checking it is installed (its text-to-video one checks)."""
        text = self.pipeline("WanPipeline")
        embeds, negative_embeds = text.encode_prompt(prompt, negative, do_classifier_free_guidance=guidance > 1.0,
                                                     device=text._execution_device)
        return {"prompt_embeds": embeds, "negative_prompt_embeds": negative_embeds}


def _init_parts(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def segments(frames: int, native: int, step: int) -> list[int]:
    """A clip's calls: one of ``frames`` frames, or beyond ``native`` frames, segments of at most
    ``native`` frames, each of ``step``k+1 frames and starting on the previous one's last frame."""
    longest = (native - 1) // step * step
    rest, out = frames - 1, []
    while rest > 0 or not out:
        take = min(rest, longest)
        out.append(take + 1)
        rest -= take
    return out


def call_for(family: VideoFamily, head, first, last, frames: int) -> tuple[str, dict[str, Any]]:
    """The diffusers pipeline a clip renders with, and the key-frame arguments it takes."""
    if family.kind == "wan":
        if first is None:
            return "WanPipeline", {}
        return "WanImageToVideoPipeline", {"image": first, **({"last_image": last} if last is not None else {})}
    if first is None:
        return "LTXPipeline", {}
    if last is None:
        return "LTXImageToVideoPipeline", {"image": first}
    from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

    return "LTXConditionPipeline", {"conditions": [LTXVideoCondition(image=first, frame_index=0),
                                                   LTXVideoCondition(image=last, frame_index=frames - 1)]}
