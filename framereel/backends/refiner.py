"""``--refiner``: an SDXL refiner that finishes what the SDXL base left at the switch point.

Resolved with the model (:func:`resolve_refiner`: found, checked to fit the base, fingerprinted
into every frame's hash), loaded with it as a ``StableDiffusionXLImg2ImgPipeline`` sharing the
base's second text encoder and VAE (diffusers' "ensemble of expert denoisers"), and called
after the base's ``denoising_end`` with ``denoising_start`` and the same prompts, guidance and
generators, as diffusers' base + refiner do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from . import families as fam
from .common import EmbeddingCache, SourceKind, file_sha256, files_fingerprint, make_scheduler, resolve_source

REFINER = SourceKind(
    "--refiner", None, not_a_folder="",
    missing="--refiner {spec}: no such folder or file; pass an SDXL refiner folder, .safetensors file or Hub id "
            f"like {fam.REFINER_EXAMPLE}",
    files=True, whole_pipeline=True)


@dataclass(frozen=True)
class RefinerSource:
    """A resolved refiner: where it lies, how run.json names it, and where the base hands over."""

    spec: str  # as given to --refiner
    path: Path
    name: str
    fingerprint: str
    switch: float

    def described(self) -> dict[str, Any]:
        """What ``run.json`` and ``doctor`` say of it."""
        return {"id": self.name, "switch": self.switch}

    def pixel_option(self) -> dict[str, Any]:
        """What goes into every frame's hash."""
        return {"model": self.fingerprint, "switch": self.switch}


def resolve_refiner(spec: str, switch: float, family: fam.Family, base: Path | None) -> RefinerSource:
    """Find the refiner (folder, single file or Hub id) and refuse one that does not fit the
    ``family`` base model (its folder ``base``; None for a single file)."""
    fam.check_refiner_base(family, spec)  # before looking for (or downloading) the refiner
    source = resolve_source(spec, REFINER)
    fam.check_refiner(spec, source.path, base)
    path = source.path
    fingerprint = file_sha256(path) if path.is_file() else files_fingerprint(path)
    return RefinerSource(spec, path, source.name, fingerprint, switch)


class Refiner:
    """The loaded refiner of one backend, with its own prompt-embedding caches."""

    def __init__(self, source: RefinerSource, family: fam.Family, execution_device: Callable[[], Any]):
        self.source = source
        self.family = family
        self.pipe = None
        self._device = execution_device  # where prompts are encoded: the base pipeline's device
        self.embed = EmbeddingCache(self._encode)
        self.negative = EmbeddingCache(self._encode_negative)

    def load(self, base, dtype, scheduler: str) -> Any:
        """The refiner as a ``StableDiffusionXLImg2ImgPipeline`` sharing ``base``'s second text
        encoder and VAE, with the run's scheduler (placed by the caller)."""
        from diffusers import StableDiffusionXLImg2ImgPipeline

        shared = {"text_encoder_2": base.text_encoder_2, "vae": base.vae, "torch_dtype": dtype}
        path = self.source.path
        try:
            if path.is_file():
                refiner = StableDiffusionXLImg2ImgPipeline.from_single_file(str(path), **shared)
            else:
                refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(path), **shared)
        except (OSError, ValueError, TypeError) as err:
            raise FramereelError(f"--refiner {self.source.spec}: could not load it ({str(err).splitlines()[0]}); "
                                 "check it is a complete SDXL refiner in diffusers format") from err
        refiner.scheduler = make_scheduler(scheduler, refiner.scheduler.config)
        refiner.set_progress_bar_config(disable=True)
        return refiner

    def attach(self, pipe) -> None:
        """Take the loaded and placed pipeline (see :meth:`load`)."""
        self.pipe = pipe

    def set_scheduler(self, name: str) -> None:
        if self.pipe is not None:
            self.pipe.scheduler = make_scheduler(name, self.pipe.scheduler.config)

    def base_steps(self, scheduler: str, config, steps: int, strength: float) -> int:
        """How many of an img2img call's steps fall to the base (0: the refiner runs it alone)."""
        base, _ = fam.refiner_steps(make_scheduler(scheduler, config), steps, self.source.switch, strength)
        return base

    def handover(self) -> dict[str, Any]:
        """The base call's arguments that stop it at the switch point and keep its latents."""
        return {"denoising_end": self.source.switch, "output_type": "latent"}

    def __call__(self, rows: list, latents, generators, step_end, strength: float | None = None):
        """Finish what the base left at the switch point (``latents``, from a base call with
        :meth:`handover`): the refiner is called with ``denoising_start`` and the same prompts (its
        own conditioning of them, lerped for morphs), guidance and generators. ``strength``
        (img2img with nothing left for the base): the refiner alone runs the img2img from the
        image ``latents``."""
        first = rows[0]
        cond = fam.cat_conditioning([fam.frame_conditioning(f, self.embed) for f in rows])
        if fam.uses_cfg(self.pipe, self.family, first.guidance):
            cond.update(fam.cat_conditioning([self.negative(f.negative_prompt or "") for f in rows]))
        where = {"denoising_start": self.source.switch} if strength is None else {"strength": strength}
        return self.pipe(**cond, image=latents, **where, num_inference_steps=first.steps,
                         guidance_scale=first.guidance, generator=generators, callback_on_step_end=step_end)

    def _encode(self, text: str) -> dict[str, Any]:
        """The refiner's conditioning of ``text`` (SDXL's refiner reads only the second text encoder)."""
        import torch

        with torch.inference_mode():
            return fam.encode(self.pipe, self.family, text, self._device())

    def _encode_negative(self, text: str) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            return fam.encode_negative(self.pipe, self.family, text, self._device())

    def close(self) -> None:
        self.pipe = None
        self.embed.clear()
        self.negative.clear()
