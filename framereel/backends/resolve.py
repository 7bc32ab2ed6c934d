"""Resolve, then render: settings + a model source → a frozen :class:`ResolvedModel`.

:func:`resolve_model` is the one stage that finds the model (``demo``, a diffusers folder, a
single ``.safetensors``/``.ckpt`` file or a Hub id, see :func:`~framereel.backends.common.resolve_source`),
its family, the scheduler, the run's LoRAs, the SDXL refiner, the tiny VAE, the motion adapter,
the device and dtype, and everything that goes into a frame's hash, without loading weights.
It is the only stage that may reach the Hugging Face Hub for these; refusals are one line, before
anything renders. :class:`~framereel.backends.diffusers_backend.DiffusersBackend` renders with
what it resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..settings import RenderSettings
from . import families as fam
from .animatediff import MotionSource, resolve_motion
from .base import ModelInfo
from .common import (
    Source,
    SourceKind,
    file_sha256,
    files_fingerprint,
    native_size,
    recommended_settings,
    resolve_source,
)
from .device import pick_device, pick_dtype
from .lora import Lora, parse_lora, weights_file
from .lora import fingerprint as lora_fingerprint
from .refiner import RefinerSource, resolve_refiner
from .video_models import VideoModel, resolve_video_model

DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "demo_model" / "weights"

MODEL = SourceKind(
    "--model", "model_index.json",
    not_a_folder="{path} is not a diffusers model folder (no model_index.json); "
                 "pass a folder saved with save_pretrained, a .safetensors/.ckpt file, or a Hub id",
    missing="{spec}: no such model folder or file; check the path",
    missing_file="{path}: no such model file; check the path",
    files=True, bare_names_on_hub=True, whole_pipeline=True,
    demo=DEMO_MODEL_DIR, demo_part="unet",
    no_demo="the demo model's weights are missing from this install; "
            "train them with `python -m framereel.demo_model.train --out DIR` and pass --model DIR")
TINY_VAE = SourceKind(
    "--tiny-vae", "config.json",
    not_a_folder="--tiny-vae {spec}: no config.json there; pass a folder saved with "
                 "AutoencoderTiny.save_pretrained, or a Hub id like madebyollin/taesd",
    missing="--tiny-vae {spec}: no such folder; pass a local folder or a Hub id like madebyollin/taesd")


@dataclass(frozen=True)
class ResolvedModel:
    """Everything a diffusers run renders with, settled before anything renders."""

    info: ModelInfo  # id, fingerprint, native size, recommended defaults, the family (what describe() says)
    source: Source  # the weights: a folder or a single file
    family: fam.Family  # with an LCM-LoRA: the LCM family
    scheduler: str  # the run's (``--scheduler auto``: the family's)
    loras: tuple[Lora, ...]  # the run's LoRAs (``--lora``, the storyboard defaults', ``--fast``'s LCM-LoRA)
    lora_files: dict[str, Path]  # each run LoRA's source → its checked weights file (a Hub LoRA: fetched)
    device: str
    device_reason: str
    dtype: str
    refiner: RefinerSource | None = None
    tiny_vae: Path | None = None
    motion: MotionSource | None = None
    pixel_options: dict[str, Any] = field(default_factory=dict)  # in every frame's hash
    clip_options: dict[str, Any] = field(default_factory=dict)  # in every clip frame's hash
    video: VideoModel | None = None  # --video-model: renders the clips instead of AnimateDiff

    @property
    def folder(self) -> Path | None:
        """The model's diffusers folder (None for a single file)."""
        return None if self.source.single_file else self.source.path


def resolve_model(settings: RenderSettings) -> ResolvedModel:
    """Resolve ``settings`` (model, scheduler, LoRAs, refiner, tiny VAE, motion adapter, device)
    into a :class:`ResolvedModel`; anything that would be refused later is refused here, in one line."""
    device, device_reason = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    source, family, info = resolve_weights(settings.model)
    pixel: dict[str, Any] = {}
    tiny_vae = resolve_source(settings.tiny_vae, TINY_VAE).path if settings.tiny_vae else None
    if tiny_vae is not None:
        pixel["tiny_vae"] = files_fingerprint(tiny_vae)
    if settings.step_cache > 1:
        pixel["step_cache"] = settings.step_cache
    loras = run_loras(settings, family)
    if any(lora.is_lcm for lora in loras):
        family = fam.with_lcm_lora(family)
    recommended = {**family.defaults(), **info.recommended}
    auto = recommended.pop("scheduler", None) or family.scheduler
    scheduler = auto if settings.scheduler == "auto" else settings.scheduler
    fam.check_scheduler(family, scheduler)
    check_options(settings, family, device)
    if loras:
        pixel["lora"] = [[lora_fingerprint(lora), lora.weight] for lora in loras]
    lora_files = {lora.source: weights_file(lora, "--lora") for lora in loras}
    if settings.vae_tiling:
        pixel["vae_tiling"] = True
    described = {**family.describe(), "scheduler": auto,
                 **{k: recommended[k] for k in ("steps", "guidance") if k in recommended}}
    folder = None if source.single_file else source.path
    refiner = None
    if settings.refiner:
        refiner = resolve_refiner(settings.refiner, settings.refiner_switch, family, folder)
        pixel["refiner"] = refiner.pixel_option()
        described["refiner"] = refiner.described()
    info = replace(info, recommended=recommended, scheduler=auto, family=described)
    motion, clip_options = resolve_motion(settings, folder, info.id)
    video = resolve_video_model(settings.video_model) if settings.video_model else None
    if video is not None:
        clip_options = {"video_model": video.fingerprint, "video_family": video.family.key}
        info = replace(info, family={**described, "video": video.describe()},
                       clip_recommended={"steps": video.family.steps, "guidance": video.family.guidance})
    return ResolvedModel(info, source, family, scheduler, loras, lora_files, device, device_reason, dtype,
                         refiner, tiny_vae, motion, pixel, clip_options, video=video)


def resolve_weights(model: str) -> tuple[Source, fam.Family, ModelInfo]:
    """``--model``: where its weights are, its family (as its files say), and what it says of itself."""
    source = resolve_source(model, MODEL)
    path = source.path
    if source.single_file:
        family = fam.detect_file(path)
        return source, family, ModelInfo(source.name, file_sha256(path), family.size, family.size)
    family = fam.detect_folder(path, source.hub_id or "")
    if source.demo:
        n = native_size(path)
    else:
        fam.check_complete(path, f"--model {model}")
        n = fam.native_size(path, family)
    fingerprint = path.name if source.hub_id else files_fingerprint(path)  # a Hub folder is named by its revision
    return source, family, ModelInfo(source.name, fingerprint, n, n, recommended_settings(path))


def run_loras(settings: RenderSettings, family: fam.Family) -> tuple[Lora, ...]:
    """The run's LoRAs: ``--lora`` (and the storyboard defaults'), and ``--fast``'s LCM-LoRA for a
    model that is not a few-step model already."""
    loras = [parse_lora(spec) for spec in settings.loras]
    if settings.fast and not family.steps_range:
        if family.key not in fam.FAST_LORA:
            raise FramereelError(f"--fast: no LCM-LoRA is known for {family.label}; "
                                 "use a few-step model instead (SD-Turbo, SDXL-Turbo, FLUX.1 schnell)")
        if not any(lora.is_lcm for lora in loras):
            loras.append(parse_lora(fam.FAST_LORA[family.key]))
    return tuple(loras)


def check_options(settings: RenderSettings, family: fam.Family, device: str) -> None:
    """Options this model or device can't take: one line each."""
    if settings.step_cache > 1 and family.kind in ("sd3", "flux"):
        raise FramereelError(f"--step-cache works on UNet models; {family.label} is a transformer model, "
                             "drop --step-cache")
    if settings.offload and not device.startswith("cuda"):
        raise FramereelError(f"--offload moves weights between the CPU and a CUDA GPU; the device here is "
                             f"{device}, drop --offload")
