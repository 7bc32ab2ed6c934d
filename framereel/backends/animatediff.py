"""Native video: render a storyboard clip with AnimateDiff on top of the diffusers backend's model.

A clip (see :mod:`framereel.clips`) is one call of diffusers' ``AnimateDiffPipeline`` (or
``AnimateDiffVideoToVideoPipeline`` with ``init_video``) built from the loaded Stable Diffusion
pipeline's parts and a ``MotionAdapter`` (``--motion-adapter``), with the clip's seeded CPU
generator, so a framereel clip is exactly what that pipeline gives. Prompt travel and clips
longer than the context length go through diffusers' FreeNoise (``enable_free_noise``: prompt
interpolation over ``{frame: prompt}``, overlapping context windows, and split inference so that
memory follows the window rather than the clip). ``--motion-lora PATH:WEIGHT`` loads motion
LoRAs through diffusers' LoRA loader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..storyboard import parse_lora_spec
from .common import SourceKind, contents_fingerprint, make_scheduler, resolve_source, step_callback

DEMO_MOTION_DIR = Path(__file__).resolve().parent.parent / "demo_model" / "motion"


MOTION_ADAPTER = SourceKind(
    "--motion-adapter", "config.json",
    not_a_folder="--motion-adapter {spec}: no config.json there; pass a folder saved with "
                 "MotionAdapter.save_pretrained, or a Hub id like guoyww/animatediff-motion-adapter-v1-5-2",
    missing="--motion-adapter {spec}: no such folder; pass a local MotionAdapter folder or a Hub id "
            "like guoyww/animatediff-motion-adapter-v1-5-2",
    demo=DEMO_MOTION_DIR,
    no_demo="the demo motion module is missing from this install; train it with "
            "`python -m framereel.demo_model.train_motion --out DIR` and pass --motion-adapter DIR")


def resolve_motion_adapter(spec: str) -> Path:
    """``--motion-adapter``: ``demo``, a local MotionAdapter folder, or a Hub id (fetched to the cache)."""
    return resolve_source(spec, MOTION_ADAPTER).path


def parse_motion_lora(spec: str) -> tuple[str, float]:
    """``--motion-lora PATH[:WEIGHT]`` (weight 1.0 when left out), read as ``--lora`` reads its
    specs: a weight that is not a finite number is refused, not taken as part of the path."""
    try:
        path, weight = parse_lora_spec(spec)
    except ValueError as err:
        raise FramereelError(f"--motion-lora {spec}: {err}") from None
    p = Path(path).expanduser()
    if not p.exists():
        raise FramereelError(f"--motion-lora {spec}: no such file or folder; pass PATH:WEIGHT, e.g. zoom.safetensors:0.8")
    return str(p.resolve()), weight


def adapter_config(adapter_dir: Path, spec: str) -> dict[str, Any]:
    """A motion adapter folder's ``config.json``; unreadable, or not a ``MotionAdapter``: one line."""
    try:
        adapter = json.loads((adapter_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise FramereelError(f"--motion-adapter {spec}: unreadable config.json ({err})") from err
    if not isinstance(adapter, dict) or adapter.get("_class_name") not in (None, "MotionAdapter"):
        name = adapter.get("_class_name") if isinstance(adapter, dict) else type(adapter).__name__
        raise FramereelError(f"--motion-adapter {spec}: holds a {name}, not a MotionAdapter")
    return adapter


def check_adapter_fits(adapter_dir: Path, unet_config: dict[str, Any], model_id: str, spec: str) -> None:
    """Refuse, in one line, an adapter made for another UNet (AnimateDiff adapters fit SD 1.x-family models)."""
    adapter = adapter_config(adapter_dir, spec)
    if unet_config.get("addition_embed_type") == "text_time":
        raise FramereelError(f"--motion-adapter {spec}: {model_id} is an SDXL-family model; AnimateDiff motion adapters "
                             "here run on SD 1.x-family models (--model demo, or an SD 1.5 checkpoint)")
    want = list(adapter.get("block_out_channels", []))
    have = list(unet_config.get("block_out_channels", []))
    layers = adapter.get("motion_layers_per_block", 2)
    unet_layers = unet_config.get("layers_per_block", 2)
    if want != have or layers != unet_layers:
        raise FramereelError(
            f"--motion-adapter {spec}: made for a UNet with block channels {tuple(want)} and {layers} layers per block, "
            f"but {model_id} has {tuple(have)} and {unet_layers}; use an adapter for this model's family "
            "(SD 1.5 adapters for SD 1.x models, --motion-adapter demo for --model demo)")


def _decode(path: str, label: str, first_only: bool = False) -> list:
    """The frames of the video at ``path`` as images (only the first with ``first_only``); a file PyAV
    can't open or that holds no video frame is a one-line error."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise FramereelError(f"{label} {path}: the file has no video stream; give a video file "
                                     "(mp4, webm, mov, gif …)")
            decoded = []
            for frame in container.decode(video=0):
                decoded.append(frame.to_image())
                if first_only:
                    break
    except (av.error.FFmpegError, IndexError, ValueError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
        raise FramereelError(f"{label} {path}: can't decode it as a video ({why}); give a video file "
                             "(mp4, webm, mov, gif …)") from err
    if not decoded:
        raise FramereelError(f"{label} {path}: the file has no video frames")
    return decoded


def check_video(path: str, label: str = "init_video") -> None:
    """``init_video`` must be a video PyAV decodes (its first frame is decoded; nothing else is read)."""
    _decode(path, label, first_only=True)


def read_video(path: str, frames: int, width: int, height: int):
    """``frames`` frames of the video at ``path`` (decoded with PyAV), evenly spaced over it,
    scaled and centre-cropped to ``width``×``height``."""
    from PIL import Image, ImageOps

    decoded = _decode(path, "init_video")
    picks = [round(i * (len(decoded) - 1) / max(1, frames - 1)) for i in range(frames)]
    return [ImageOps.fit(decoded[i].convert("RGB"), (width, height), Image.Resampling.LANCZOS) for i in picks]


# a clip's pipeline → its ControlNet sibling (diffusers')
CONTROLLED = {"AnimateDiffPipeline": "AnimateDiffControlNetPipeline",
              "AnimateDiffVideoToVideoPipeline": "AnimateDiffVideoToVideoControlNetPipeline"}


@dataclass(frozen=True)
class MotionSource:
    """A resolved ``--motion-adapter`` and its ``--motion-lora`` files and weights."""

    adapter_dir: Path
    loras: tuple[tuple[str, float], ...] = ()


class ClipRenderer:
    """Renders whole clips for a :class:`~framereel.backends.diffusers_backend.DiffusersBackend`."""

    def __init__(self, backend, motion: MotionSource):
        self.backend = backend
        self.adapter_dir = motion.adapter_dir
        self.loras = motion.loras
        self._t2v = None
        self._v2v = None
        self._controlled: dict[tuple, Any] = {}  # ControlNet pipelines by (ControlNets, base pipeline)

    def _pipelines(self):
        if self._t2v is not None:
            return self._t2v
        import torch
        from diffusers import AnimateDiffPipeline, MotionAdapter, UNetMotionModel

        be = self.backend
        be.load()
        base = be.pipe
        dtype = getattr(torch, be.dtype)
        try:
            adapter = MotionAdapter.from_pretrained(str(self.adapter_dir), torch_dtype=dtype)
        except (OSError, ValueError) as err:
            raise FramereelError(f"--motion-adapter {self.adapter_dir}: can't load it ({str(err).splitlines()[0]})") from err
        check_adapter_fits(self.adapter_dir, dict(base.unet.config), be.describe().id, str(self.adapter_dir))
        unet = getattr(base.unet, "_orig_mod", base.unet)  # a --compile'd UNet: the module inside
        motion_unet = UNetMotionModel.from_unet2d(unet, adapter).to(device=be.device, dtype=dtype)
        pipe = AnimateDiffPipeline(
            vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=motion_unet,
            motion_adapter=adapter, scheduler=make_scheduler(be.settings.scheduler, base.scheduler.config),
        )
        pipe.set_progress_bar_config(disable=True)
        if self.loras:
            names = []
            for i, (path, _) in enumerate(self.loras):
                name = f"motion_lora_{i}"
                try:
                    pipe.load_lora_weights(path, adapter_name=name)
                except (OSError, ValueError, KeyError) as err:
                    raise FramereelError(f"--motion-lora {path}: can't load it ({str(err).splitlines()[0]})") from err
                names.append(name)
            pipe.set_adapters(names, [w for _, w in self.loras])
        self._t2v = pipe
        return pipe

    def close(self) -> None:
        self._t2v = self._v2v = None
        self._controlled.clear()

    def _video_pipeline(self):
        if self._v2v is None:
            from diffusers import AnimateDiffVideoToVideoPipeline

            t2v = self._pipelines()
            self._v2v = AnimateDiffVideoToVideoPipeline(**t2v.components)
            self._v2v.set_progress_bar_config(disable=True)
        return self._v2v

    def render(self, frames: list, on_step: Callable[[int, int], None] | None = None) -> list[tuple[Any, dict]]:
        """Render one whole clip (``frames``: all of its frames, in order); returns ``[(image, facts), ...]``."""
        import torch

        first = frames[0]
        spec = first.clip
        if [f.clip_pos for f in frames] != list(range(spec.frames)):
            raise FramereelError(f"clip at frame {first.index}: a clip renders whole ({spec.frames} frames)")
        pipe = self._video_pipeline() if spec.init_video else self._pipelines()
        control = self._control(pipe, frames) if first.control else {}
        if control:
            pipe = control.pop("pipe")
        windowed = spec.travels or spec.windowed
        kwargs: dict[str, Any] = dict(
            prompt=spec.prompts[0][1] if not windowed else {at: p for at, p in spec.prompts},
            negative_prompt=first.negative_prompt or None,
            num_inference_steps=first.steps, guidance_scale=first.guidance, width=first.width, height=first.height,
            generator=torch.Generator("cpu").manual_seed(first.seed),
            decode_chunk_size=min(spec.frames, spec.context_length),
            callback_on_step_end=step_callback(on_step, first.steps), **control,
        )
        if spec.init_video:
            kwargs.update(video=read_video(spec.init_video, spec.frames, first.width, first.height),
                          strength=spec.strength)
        else:
            kwargs["num_frames"] = spec.frames
        if windowed:
            pipe.enable_free_noise(context_length=min(spec.context_length, spec.frames),
                                   context_stride=spec.context_stride)
            if spec.windowed:
                pipe.enable_free_noise_split_inference(temporal_split_size=spec.context_length)
        try:
            with torch.inference_mode():
                out = pipe(**kwargs)
        finally:
            if windowed:  # unwrap first: disable_free_noise misses FreeNoise blocks inside split wrappers
                unsplit(pipe.unet)
                pipe.disable_free_noise()
        images = out.frames[0]
        return [(img, {"control_maps": self.backend.controlnets.maps(f)} if f.control else {})
                for img, f in zip(images, frames, strict=True)]

    def _control(self, pipe, frames: list) -> dict[str, Any]:
        """The clip's ControlNet pipeline (``"pipe"``, sharing ``pipe``'s parts) and its arguments: each
        ControlNet's map of every frame, and the clip's weights and start/end fractions (its first frame's)."""
        import diffusers

        be, specs = self.backend, frames[0].control
        key = (tuple(c.model for c in specs), type(pipe).__name__)
        if key not in self._controlled:
            nets = [be.controlnets.model(c.model, pipe.unet.dtype, be.device) for c in specs]
            cls = getattr(diffusers, CONTROLLED[type(pipe).__name__])
            self._controlled[key] = cls(**pipe.components, controlnet=nets[0] if len(nets) == 1 else nets)
            self._controlled[key].set_progress_bar_config(disable=True)
        maps = [be.controlnets.maps(f) for f in frames]
        single = len(specs) == 1
        return {"pipe": self._controlled[key],
                "conditioning_frames": [m[0] for m in maps] if single else [[m[i] for m in maps]
                                                                           for i in range(len(specs))],
                "controlnet_conditioning_scale": specs[0].weight if single else [c.weight for c in specs],
                "control_guidance_start": specs[0].start if single else [c.start for c in specs],
                "control_guidance_end": specs[0].end if single else [c.end for c in specs]}


def unsplit(module) -> None:
    """Undo ``enable_free_noise_split_inference``: put back the modules it wrapped."""
    from diffusers.pipelines.free_noise_utils import SplitInferenceModule

    for child_name, child in list(module.named_children()):
        if isinstance(child, SplitInferenceModule):
            setattr(module, child_name, child.module)
            child = child.module
        unsplit(child)


def resolve_motion(settings, model_dir: Path | None, model_id: str) -> tuple[MotionSource | None, dict[str, Any]]:
    """Resolve ``--motion-adapter`` / ``--motion-lora`` (before any weights load): the adapter and
    LoRAs, checked to fit the model in ``model_dir`` (None: a single file, not checked here), and
    what goes into every clip frame's hash (the adapter's and LoRAs' fingerprints, the LoRA
    weights). ``(None, {})`` without a motion adapter."""
    if not settings.motion_adapter:
        return None, {}
    adapter_dir = resolve_motion_adapter(settings.motion_adapter)
    if model_dir is not None and (model_dir / "unet" / "config.json").is_file():
        unet_config = json.loads((model_dir / "unet" / "config.json").read_text())
        check_adapter_fits(adapter_dir, unet_config, model_id, settings.motion_adapter)
    loras = tuple(parse_motion_lora(s) for s in settings.motion_loras)
    options = {
        "motion_adapter": contents_fingerprint(adapter_dir),
        **({"motion_loras": [[contents_fingerprint(Path(p)), w] for p, w in loras]} if loras else {}),
    }
    return MotionSource(adapter_dir, loras), options
