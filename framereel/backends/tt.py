"""Tenstorrent backends: Stable Diffusion 1.4 on N150 / N300 / T3K (Wormhole) and P100 / P150 / P300c (Blackhole).

``--backend tt`` picks tt-metal's implementation from the model's family (:func:`tt_backend_class`):
SD 1.4 here, SDXL on a mesh (:mod:`.tt_sdxl`), SD 3.5 Large and FLUX.1 stills and Wan 2.2 clips through
TT-DiT (:mod:`.tt_sd35`, :mod:`.tt_flux`, :mod:`.tt_wan`); what it can't run is refused before anything loads.

Two ways in, both through tt-metal's SD 1.4 demo code from a checkout at ``TT_METAL_HOME``, in
either of its layouts (see :mod:`.tt_tree`):

* ``tt`` (in-process, the main path): opens one chip with the tree's own device numbers, compiles
  the demo's trace (UNet denoise loop plus VAE decode) once, then per frame copies that frame's own
  seeded latents and its prompt's CLIP embeddings (encoded on the host, cached) into the trace's
  inputs and executes it. Key frames and latent morphs work; img2img chains are refused up front.
* ``tt-demo`` (when a tt-metal version's internals differ): runs the unmodified demo with pytest,
  one run per group of ``num_prompts`` prompts (10), writing them where its ``input_path``
  parametrize points (a path relative to pytest's working folder), and checks its log before
  taking its ``input_data_{i}_512x512_ttnn.png`` files as frames. It cannot set seeds, steps or
  guidance; ``run.json`` says so.

Several chips: one process per chip (remote chips too, unless the tree's root conftest still refuses
them), each restricted to its board with ``TT_VISIBLE_DEVICES`` / ``TT_METAL_VISIBLE_DEVICES`` and
given its own ``TT_METAL_CACHE``, as tt-inference-server's workers are. tt-metal has no multi-chip
SD 1.4 pipeline; SDXL renders data-parallel on a mesh (:mod:`.tt_sdxl`).

Modules: :mod:`.tt_chips` (the environment and which chips open alone), :mod:`.tt_tree` (the
checkout's layout and device numbers), :mod:`.tt_base` (what both backends share), this one
(``tt``) and :mod:`.tt_demo` (``tt-demo``); both classes are importable from here.

NOTE: this code has been tested against fakes of ttnn, tt-metal and tt-smi only; it has not yet
run on Tenstorrent hardware.
"""

from __future__ import annotations

import atexit
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import ModelInfo
from .common import files_fingerprint, native_size, slerp
from .tt_base import SD_MODEL, TtBase
from .tt_chips import check_ttnn, explain_open_failure, import_ttnn, reset_device
from .tt_demo import TtDemoBackend
from .tt_models import tt_model_key
from .tt_tree import describe_params, device_numbers, open_params

__all__ = ["TtBackend", "TtDemoBackend"]

CLIP_MODEL = "openai/clip-vit-large-patch14"
TRACE_TOKENS = 96  # the trace's text-embedding input is padded from 77 to 96 tokens
MIN_STEPS = 4  # PNDM


def check_frames(frames: list[Frame], scheduler: str, size: int, max_steps: int | None) -> None:
    """What the compiled trace supports: PNDM, one step count in 4..the demo's (50) and one guidance
    per run, the model's native size (512×512 for SD 1.4)."""
    if scheduler != "pndm":
        raise FramereelError(f"--backend tt runs the demo's PNDM scheduler only; pass --scheduler pndm (got {scheduler})")
    top = max_steps or 50
    for f in frames:
        if (f.width, f.height) != (size, size):
            raise FramereelError(
                f"frame {f.index}: --backend tt renders {size}x{size} only (the trace's size); got {f.width}x{f.height}")
        if not MIN_STEPS <= f.steps <= top:
            raise FramereelError(
                f"frame {f.index}: --backend tt takes {MIN_STEPS} to {top} steps (PNDM needs ≥ {MIN_STEPS}; the tree's "
                f"trace region is sized for its demo's {top}); got {f.steps}")
        if f.kind == "chain":
            raise FramereelError(f"frame {f.index}: --backend tt can't render {f.kind} frames; render them with --backend diffusers")
    steps = {f.steps for f in frames}
    guidance = {f.guidance for f in frames}
    if len(steps) > 1 or len(guidance) > 1:
        raise FramereelError(
            "--backend tt compiles one trace per run: every frame needs the same steps and guidance "
            f"(got steps {sorted(steps)}, guidance {sorted(guidance)})"
        )



def tt_backend_class(settings: RenderSettings) -> type[TtBase]:
    """``--backend tt``'s implementation for the model's family: SD 1.4 (:class:`TtBackend`), SDXL
    (:class:`~.tt_sdxl.TtSdxlBackend`), SD 3.5 Large, FLUX.1 and Wan 2.2 through TT-DiT."""
    key = tt_model_key(settings.model)
    if key == "sd1":
        return TtBackend
    if key == "sdxl":
        from .tt_sdxl import TtSdxlBackend

        return TtSdxlBackend
    if key in ("wan", "wan-i2v"):
        from .tt_wan import TtWanBackend, TtWanI2VBackend

        return TtWanI2VBackend if key == "wan-i2v" else TtWanBackend
    if key == "sd3.5":
        from .tt_sd35 import TtSd35Backend

        return TtSd35Backend
    from .tt_flux import TtFluxBackend

    return TtFluxBackend


class TtBackend(TtBase):
    """SD 1.4 on one Tenstorrent chip, through tt-metal's demo modules and a compiled trace. Built for
    another model family, ``TtBackend(settings)`` returns that family's backend (:func:`tt_backend_class`)."""

    name = "tt"
    kinds = ("key", "morph")  # img2img chains need the full pipeline

    def __new__(cls, settings: RenderSettings):
        if cls is TtBackend:
            target = tt_backend_class(settings)
            if target is not TtBackend:
                return target(settings)
        return super().__new__(cls)

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        self.device = f"tt:{self.chip}"
        self.device_reason = "Tenstorrent chip" + (" (auto: tt-smi found a board)" if settings.backend == "auto" else "")
        if not self.demo.traced:
            raise FramereelError(
                f"this tt-metal tree ({self.demo.describe()}) predates the traced SD demo (no compile_trace_sd in "
                "sd_helper_funcs.py); update tt-metal, or use --backend tt-demo")
        check_ttnn()
        self.ttnn = None
        self.tt_device = None
        self.trace = None
        self._embeds: dict[str, Any] = {}
        self._compiled_for: tuple[int, float] | None = None
        self._set_env: dict[str, str | None] = {}  # what opening the chip changed in os.environ: the values before
        self._numbers()

    def _numbers(self, ttnn=None) -> None:
        arch, why = self._arch(ttnn)
        numbers = device_numbers(self.demo, arch)
        self.arch, self.numbers = arch, numbers
        self.decisions.update(arch=f"{arch} ({why})", device_params=describe_params(numbers.params),
                              device_params_from=numbers.source)

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        size = native_size(folder) if folder else self.demo.image_size[0]
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or SD_MODEL), fingerprint, size, size,
                         {"steps": self.demo.steps or 50, "guidance": self.demo.body.get("guidance", 7.5)})

    def _check_model_size(self) -> None:
        """The tree's SD 1.4 UNet is built for 64×64 latents (512×512, its demo's image_size): refuse another size."""
        size = self.describe().native_width
        h, w = self.demo.image_size
        if (size, size) != (w, h):
            raise FramereelError(
                f"{self.settings.model}: tt-metal's SD 1.4 pipeline is built for {w}x{h} models (its UNet at "
                f"{w // 8}x{h // 8} latents); this one is {size}x{size}; use --backend diffusers")

    def _local_model(self) -> Path | None:
        """A local diffusers folder given with --model, else None (SD 1.4 from the Hub, as the demo)."""
        path = Path(self.settings.model).expanduser()
        return path if path.is_dir() else None

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Refuse what the compiled trace can't do before the chip is opened."""
        super().prepare(frames, out_dir)
        self._check_model_size()
        check_frames(frames, self.settings.scheduler, self.describe().native_width, self.demo.steps)
        self._check_chip()
        self._throttle(self.arch)  # before worker processes start: they inherit it
        self.decisions["dispatch"] = "the tree's get_updated_device_params when the chip opens (doctor --smoke shows it)"
        warnings = self._chip_warning()
        if self.numbers.fallback:
            warnings.append(f"device params: {self.numbers.source}; using {self.numbers.params}")
        return warnings

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False).input_ids) if self.tt_device is not None else 0

    def _import(self, module: str):
        return importlib.import_module(f"{self.demo.prefix}.{module}")

    def _open_chip(self) -> None:
        """Restrict this process to its chip, import ttnn and open the chip with the tree's device params."""
        self._check_chip()
        if self.reset_first:
            reset_device()
            self.reset_first = False
        already = "ttnn" in sys.modules
        env = self._visible_env() if not already else {}
        if already and self.user_visible is None:
            self.decisions["chip"] = f"tt:{self.chip} (ttnn was already imported here: opened as device {self.chip})"
        self._set_env = {k: os.environ.get(k) for k in env}  # what was there before, put back on close
        os.environ.update(env)
        ttnn = self.ttnn = import_ttnn()
        if not self.plan.arch:
            self._numbers(ttnn)
        self._throttle(self.arch)
        params, how = open_params(self.home, self.numbers.params, self.arch)
        self.decisions["dispatch"] = how
        self.decisions["open_device"] = describe_params(params)
        device_id = self.open_id if env else self.chip
        try:
            self.tt_device = ttnn.open_device(device_id=device_id, **params)
        except Exception as err:  # ttnn raises RuntimeError with C++ messages
            raise explain_open_failure(err) from err
        atexit.register(self.close)  # a worker process that just returns still closes its chip
        if hasattr(self.tt_device, "enable_program_cache"):  # default-on (and gone) in newer ttnn
            self.tt_device.enable_program_cache()
            self.decisions["program_cache"] = "enabled"
        else:
            self.decisions["program_cache"] = "ttnn's default"

    def load(self) -> None:
        if self.tt_device is not None:
            return
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        self._open_chip()
        custom_preprocessor = self._import("custom_preprocessing").custom_preprocessor
        TtPNDMScheduler = self._import("sd_pndm_scheduler").TtPNDMScheduler
        TtUNet = self._import("tt.ttnn_functional_unet_2d_condition_model_new_conv").UNet2DConditionModel
        Vae = self._import("tt.vae.ttnn_vae").Vae
        from ttnn.model_preprocessing import preprocess_model_parameters

        local = self._local_model()
        try:
            vae = AutoencoderKL.from_pretrained(str(local or SD_MODEL), subfolder="vae")
            self.unet = UNet2DConditionModel.from_pretrained(str(local or SD_MODEL), subfolder="unet")
            self.tokenizer = CLIPTokenizer.from_pretrained(str(local / "tokenizer") if local else CLIP_MODEL)
            self.text_encoder = CLIPTextModel.from_pretrained(str(local / "text_encoder") if local else CLIP_MODEL)
        except OSError as err:
            raise FramereelError(
                f"could not get the SD 1.4 weights ({str(err).splitlines()[0]}); run `hf auth login` "
                "(or set HF_TOKEN) and accept the model's licence on the Hub"
            ) from err
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.tt_vae = Vae(torch_vae=vae, device=self.tt_device)
        params = preprocess_model_parameters(
            initialize_model=lambda: self.unet, custom_preprocessor=custom_preprocessor, device=self.tt_device
        )
        self.size = self.describe().native_width
        self.tt_unet = TtUNet(self.tt_device, params, 2, self.size // self.vae_scale, self.size // self.vae_scale)
        self.scheduler = TtPNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            skip_prk_steps=True, steps_offset=1, device=self.tt_device,
        )
        self.torch = torch

    def _compile(self, steps: int, guidance: float) -> float:
        """Capture the denoise loop + VAE decode as a trace once (per steps/guidance); returns seconds spent."""
        if self._compiled_for == (steps, guidance):
            return 0.0
        t0 = time.perf_counter()
        compile_trace_sd = self._import("sd_helper_funcs").compile_trace_sd
        ttnn, torch = self.ttnn, self.torch
        self._release_trace()
        self.scheduler.set_timesteps(steps)
        shape = (1, self.unet.config.in_channels, self.size // self.vae_scale, self.size // self.vae_scale)
        self.latents_device = ttnn.from_torch(torch.zeros(shape), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                                              device=self.tt_device)
        doubled = ttnn.concat([self.latents_device, self.latents_device], dim=0)
        tlist = []
        for t in self.scheduler.timesteps:
            emb = self.unet.time_proj(t[None].expand(doubled.shape[0])).unsqueeze(0).unsqueeze(0).permute(2, 0, 1, 3)
            tlist.append(ttnn.from_torch(emb, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=self.tt_device))
        try:
            self.embeds_device, self.output, self.trace = compile_trace_sd(
                self.tt_device, self.tt_unet, self.unet.config, self.tt_vae, self.latents_device, tlist,
                self.scheduler.timesteps.tolist(), guidance, self.scheduler, steps,
            )
        except RuntimeError as err:
            if "trace region" in str(err):
                raise FramereelError(
                    f"the {steps}-step trace doesn't fit the chip's trace region "
                    f"(trace_region_size={self.numbers.params['trace_region_size']} from {self.numbers.source}): "
                    f"{str(err).strip().splitlines()[0]}") from err
            raise
        self._compiled_for = (steps, guidance)
        return time.perf_counter() - t0

    def _embed(self, text: str):
        if text not in self._embeds:
            ids = self.tokenizer([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            with self.torch.inference_mode():
                self._embeds[text] = self.text_encoder(ids.input_ids)[0]
        return self._embeds[text]

    def render(self, frame: Frame, on_step=None, init_image=None):
        check_frames([frame], self.settings.scheduler, self.describe().native_width, self.demo.steps)
        self.load()
        torch, ttnn = self.torch, self.ttnn
        compile_seconds = self._compile(frame.steps, frame.guidance)
        self.scheduler.set_timesteps(frame.steps)
        shape = (1, self.unet.config.in_channels, frame.height // self.vae_scale, frame.width // self.vae_scale)
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(frame.seed), dtype=torch.float32)
        cond = self._embed(frame.prompt)
        if frame.kind == "morph":
            t = frame.morph[2]
            other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(frame.morph_seed), dtype=torch.float32)
            noise = slerp(noise, other, t)
            cond = torch.lerp(cond, self._embed(frame.morph_prompt), t)
        latents = noise * float(self.scheduler.init_noise_sigma)
        embeds = torch.cat([self._embed(frame.negative_prompt or ""), cond])
        embeds = torch.nn.functional.pad(embeds, (0, 0, 0, TRACE_TOKENS - embeds.shape[1]))
        ttnn.copy_host_to_device_tensor(ttnn.from_torch(latents, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT),
                                        self.latents_device, cq_id=0)
        ttnn.copy_host_to_device_tensor(ttnn.from_torch(embeds, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT),
                                        self.embeds_device, cq_id=0)
        ttnn.execute_trace(self.tt_device, self.trace, cq_id=0, blocking=False)
        image = ttnn.to_torch(self.output.cpu(blocking=True))
        ttnn.synchronize_device(self.tt_device)
        pixels = ((image / 2 + 0.5).clamp(0, 1).float().permute(0, 2, 3, 1)[0].numpy() * 255).round().astype("uint8")
        return Image.fromarray(pixels), ({"compile_seconds": round(compile_seconds, 3)} if compile_seconds else {})

    def _release_trace(self) -> None:
        if self.trace is not None:
            self.ttnn.release_trace(self.tt_device, self.trace)
            self.trace = None
            self._compiled_for = None

    def close(self) -> None:
        for key, value in self._set_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.tt_device is None:
            return
        try:
            self._release_trace()
        finally:
            self.ttnn.close_device(self.tt_device)
            self.tt_device = None

