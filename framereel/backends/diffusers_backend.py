"""The diffusers backend: SD 1.x/2.x, SDXL, Turbo, LCM, SD 3/3.5 and FLUX.1 on CUDA, MPS or the CPU.

Detects the model's family (``families``), loads that family's pipeline once, swaps in the
asked-for scheduler, encodes each distinct prompt once, and renders a frame by calling the
pipeline itself with that frame's conditioning and seeded starting latents, so a framereel frame
is exactly what the family's diffusers pipeline gives for the same seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from . import families as fam
from .base import Backend, ModelInfo
from .common import (
    EmbeddingCache,
    file_sha256,
    files_fingerprint,
    measured,
    native_size,
    quiet_libraries,
    recommended_settings,
    seeded_noise,
    slerp,
)
from .lora import Lora, blend, load_lora, parse_lora, text_encoder_adapters, weights_file
from .lora import fingerprint as lora_fingerprint

DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "demo_model" / "weights"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX512-BF16 or AMX on x86, BF16 on Arm)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16", " bf16"))


def pick_device(requested: str) -> tuple[str, str]:
    """Resolve ``auto`` to cuda → mps → cpu; returns (device, why)."""
    import torch

    if requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise FramereelError(f"--device {requested}: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
        if requested == "mps" and not torch.backends.mps.is_available():
            raise FramereelError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
        return requested, "asked for"
    if torch.cuda.is_available():
        return "cuda", f"CUDA GPU found ({torch.cuda.get_device_name(0)})"
    if torch.backends.mps.is_available():
        return "mps", "Apple GPU (MPS) found"
    return "cpu", "no CUDA or MPS GPU found"


def pick_dtype(requested: str, device: str) -> str:
    """fp16 on GPUs, bf16 on CPUs that have it, else fp32; ``requested`` overrides."""
    if requested != "auto":
        if requested not in ("float32", "bfloat16", "float16"):
            raise FramereelError(f"--dtype {requested}: choose float32, bfloat16, float16 or auto")
        return requested
    if device.startswith("cuda") or device == "mps":
        return "float16"
    return "bfloat16" if cpu_supports_bf16() else "float32"


BATCH_CANDIDATES = (1, 2, 4)
BATCH_GAIN = 1.25  # a batch size must give this many times the frames/s of batch 1 to be picked
PROBE_LIMIT_SECONDS = 1.0  # a UNet call slower than this at batch 1: batching is not probed (CPU, SD-sized)


def time_unet(pipe, rows: int, size: tuple[int, int], repeats: int = 2) -> float:
    """Seconds per UNet call for ``rows`` frames of ``size`` (width, height) with classifier-free
    guidance (best of ``repeats``)."""
    import time

    import torch

    unet = pipe.unet
    width, height = (side // pipe.vae_scale_factor for side in size)
    sample = torch.zeros(2 * rows, unet.config.in_channels, height, width, dtype=unet.dtype, device=unet.device)
    context = torch.zeros(2 * rows, 77, unet.config.cross_attention_dim, dtype=unet.dtype, device=unet.device)
    best = math.inf
    with torch.inference_mode():
        for i in range(repeats + 1):  # the first call warms up
            if unet.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            unet(sample, 500, encoder_hidden_states=context)
            if unet.device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                best = min(best, time.perf_counter() - t0)
    return best


def measure_batch(pipe, size: tuple[int, int]) -> dict[str, Any]:
    """``--batch auto``: time the UNet at batch 1, 2 and 4 for frames of ``size`` (width, height, as
    rendered) and pick the batch with the most frames/s,
    if it gives at least ``BATCH_GAIN``× batch 1's (padding a short run's last call must not eat the
    gain); 1 without probing when one call already takes over a second (SD-sized models on a CPU)."""
    seconds = {1: time_unet(pipe, 1, size)}
    if seconds[1] <= PROBE_LIMIT_SECONDS:
        for rows in BATCH_CANDIDATES[1:]:
            seconds[rows] = time_unet(pipe, rows, size)
    per_frame = {rows: t / rows for rows, t in seconds.items()}
    best = min(per_frame, key=per_frame.get)
    batch = best if per_frame[1] / per_frame[best] >= BATCH_GAIN else 1
    return {"batch": batch, "seconds_per_call": {str(k): round(v, 4) for k, v in seconds.items()}}


HUB_FIXES = {  # what to pass instead of a Hub id the Hub can't give, per option
    "--model": "pass --model PATH to a local diffusers folder or .safetensors file, or try --model demo "
               "(offline demo model)",
    "--motion-adapter": "pass --motion-adapter PATH to a local MotionAdapter folder, or try --motion-adapter demo "
                        "(with --model demo)",
    "--refiner": "pass --refiner PATH to a local SDXL refiner folder or .safetensors file",
    "--tiny-vae": "pass --tiny-vae PATH to a local AutoencoderTiny folder",
    "--lora": "pass a local LoRA .safetensors file instead",
}


def _hub_error(spec: str, err: Exception, flag: str = "--model") -> FramereelError:
    """One line for a Hub id the Hub could not give (``flag``: the option, or a frame's ``"lora"``, that
    named it): what went wrong and what to pass instead."""
    name = type(err).__name__
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if "Gated" in name or "401" in str(err) or "403" in str(err):
        why = "needs a Hugging Face login: run `hf auth login` (or set HF_TOKEN) and accept its licence on the Hub"
    elif "RepositoryNotFound" in name:
        why = "not a repository on the Hugging Face Hub, nor a local folder or file"
    elif offline or "LocalEntryNotFound" in name or "Offline" in name or "Connect" in name:
        why = ("not in the local Hugging Face cache and HF_HUB_OFFLINE is set; unset it to download" if offline
               else "not in the local Hugging Face cache and the Hub can't be reached; go online to download")
    else:
        why = f"could not fetch it from the Hugging Face Hub ({name}); try again online"
    fix = HUB_FIXES.get(flag) or HUB_FIXES["--lora" if "lora" in flag else "--model"]
    return FramereelError(f"{flag} {spec}: {why}, or {fix}")


class DiffusersBackend(Backend):
    """A diffusers model of any family in ``families`` (SD 1.x/2.x, SDXL, Turbo, LCM, SD 3, FLUX.1),
    on CUDA, MPS or the CPU."""

    name = "diffusers"
    takes_speed_options = True
    default_scheduler = "auto"  # the model family's, settled by describe()
    kinds = ("key", "morph", "chain", "clip")  # clips: with --motion-adapter (framereel.backends.animatediff)

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        self.device, self.device_reason = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self.pipe = None
        self._source: Path | None = None
        self._single_file = False
        self._info: ModelInfo | None = None
        self.batch = settings.batch or 1  # --batch auto: measured per frame size (see resolve_batch)
        self.batches = {(w, h): b for w, h, b in settings.batch_sizes}  # as the driver measured them
        self._pixel_options: dict[str, Any] = {}
        self._tiny_vae_dir: Path | None = None
        self._step_cache = None
        self._warmed_up: set[tuple] = set()
        self._embed = EmbeddingCache(self._encode)
        self._standalone_tokenizer = None
        self._compiled = False
        self._img2img_pipe = None
        self._negative = EmbeddingCache(self._encode_negative)
        self.family: fam.Family = fam.FAMILIES["sd1"]
        self.loras: list[Lora] = [parse_lora(spec) for spec in settings.loras]
        self.scheduler = settings.scheduler  # "auto" settled by describe()
        self._clips = None  # an animatediff.ClipRenderer, with --motion-adapter
        self._clip_options: dict[str, Any] = {}
        self._refiner_source: Path | None = None  # --refiner: an SDXL refiner (see _refine)
        self._adapters: dict[str, str] = {}  # a loaded LoRA's source → its adapter name
        self._frame_loras: dict[str, tuple[Lora, str]] = {}  # frames' own LoRAs to load: source → (LoRA, label)
        self._active_loras: tuple | None = None  # the adapters and weights set now
        self._lora_fingerprints: dict[str, str] = {}
        self._lora_files: dict[str, Path] = {}  # a LoRA's source → its checked weights file
        self._refiner_pipe = None
        self._refiner_embed = EmbeddingCache(self._encode_for_refiner)
        self._refiner_negative = EmbeddingCache(self._encode_negative_for_refiner)

    @property
    def pixel_options(self) -> dict[str, Any]:
        self.describe()
        return self._pixel_options

    @property
    def clip_options(self) -> dict[str, Any]:
        self.describe()
        return self._clip_options

    # -------------------------------------------------------------- model resolution

    def describe(self) -> ModelInfo:
        if self._info is None:
            self._info = self._resolve(self.settings.model)
            if self.settings.tiny_vae:
                self._tiny_vae_dir = resolve_tiny_vae(self.settings.tiny_vae)
                self._pixel_options["tiny_vae"] = files_fingerprint(self._tiny_vae_dir)
            if self.settings.step_cache > 1:
                self._pixel_options["step_cache"] = self.settings.step_cache
            self._apply_family()
            from .animatediff import clip_renderer

            self._clips, self._clip_options = clip_renderer(self, None if self._single_file else self._source,
                                                            self._info.id)
        return self._info

    def _apply_family(self) -> None:
        """Fold the model family (and LoRAs, memory options) into what the run reports and hashes."""
        if self.settings.fast and not self.family.steps_range:
            if self.family.key not in fam.FAST_LORA:
                raise FramereelError(f"--fast: no LCM-LoRA is known for {self.family.label}; "
                                     "use a few-step model instead (SD-Turbo, SDXL-Turbo, FLUX.1 schnell)")
            if not any(lora.is_lcm for lora in self.loras):
                self.loras.append(parse_lora(fam.FAST_LORA[self.family.key]))
        if any(lora.is_lcm for lora in self.loras):
            self.family = fam.with_lcm_lora(self.family)
        info = self._info
        recommended = {**self.family.defaults(), **info.recommended}
        scheduler = recommended.pop("scheduler", None) or self.family.scheduler
        if self.scheduler == "auto":
            self.scheduler = scheduler
        fam.check_scheduler(self.family, self.scheduler)
        self.settings = replace(self.settings, scheduler=self.scheduler)
        if self.settings.step_cache > 1 and self.family.kind in ("sd3", "flux"):
            raise FramereelError(f"--step-cache works on UNet models; {self.family.label} is a transformer model, "
                                 "drop --step-cache")
        if self.settings.offload and not self.device.startswith("cuda"):
            raise FramereelError(f"--offload moves weights between the CPU and a CUDA GPU; the device here is "
                                 f"{self.device}, drop --offload")
        if self.loras:
            self._pixel_options["lora"] = [[lora_fingerprint(lora), lora.weight] for lora in self.loras]
        if self.settings.vae_tiling:
            self._pixel_options["vae_tiling"] = True
        described = {**self.family.describe(), "scheduler": scheduler,
                     **{k: recommended[k] for k in ("steps", "guidance") if k in recommended}}
        if self.settings.refiner:
            described["refiner"] = self._resolve_refiner(self.settings.refiner)
        self._info = replace(info, recommended=recommended, scheduler=scheduler, family=described)

    def _resolve_refiner(self, spec: str) -> dict[str, Any]:
        """``--refiner``: find the refiner (folder, single file or Hub id), refuse one that does not
        fit the base, and put it and its switch point into every frame's hash; returns what
        ``run.json`` and ``doctor`` say of it."""
        fam.check_refiner_base(self.family, spec)  # before looking for (or downloading) the refiner
        path = Path(spec).expanduser()
        if path.exists():
            source, name = path, str(path.resolve())
        elif spec.startswith((".", "/", "~")) or spec.endswith(SINGLE_FILE_SUFFIXES) or spec.count("/") != 1:
            raise FramereelError(f"--refiner {spec}: no such folder or file; pass an SDXL refiner folder, "
                                 f".safetensors file or Hub id like {fam.REFINER_EXAMPLE}")
        else:
            quiet_libraries()
            from diffusers import DiffusionPipeline

            try:
                source = Path(DiffusionPipeline.download(spec))
            except Exception as err:  # the Hub raises many kinds; each becomes one line for the user
                raise _hub_error(spec, err, "--refiner") from err
            name = spec
        fam.check_refiner(spec, source, None if self._single_file else self._source)
        self._refiner_source = source
        fingerprint = file_sha256(source) if source.is_file() else files_fingerprint(source)
        switch = self.settings.refiner_switch
        self._pixel_options["refiner"] = {"model": fingerprint, "switch": switch}
        return {"id": name, "switch": switch}

    def _resolve(self, model: str) -> ModelInfo:
        if model == "demo":
            if not (DEMO_MODEL_DIR / "unet").is_dir():
                raise FramereelError(
                    "the demo model's weights are missing from this install; "
                    "train them with `python -m framereel.demo_model.train --out DIR` and pass --model DIR"
                )
            self._source = DEMO_MODEL_DIR
            self.family = fam.detect_folder(DEMO_MODEL_DIR)
            n = native_size(DEMO_MODEL_DIR)
            return ModelInfo("demo", files_fingerprint(DEMO_MODEL_DIR), n, n, recommended_settings(DEMO_MODEL_DIR))
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "model_index.json").exists():
                raise FramereelError(
                    f"{path} is not a diffusers model folder (no model_index.json); "
                    "pass a folder saved with save_pretrained, a .safetensors/.ckpt file, or a Hub id"
                )
            self._source = path
            self.family = fam.detect_folder(path)
            fam.check_complete(path, f"--model {model}")
            n = fam.native_size(path, self.family)
            return ModelInfo(str(path.resolve()), files_fingerprint(path), n, n, recommended_settings(path))
        if path.suffix in SINGLE_FILE_SUFFIXES:
            if not path.is_file():
                raise FramereelError(f"{path}: no such model file; check the path")
            self._source, self._single_file = path, True
            self.family = fam.detect_file(path)
            n = self.family.size
            return ModelInfo(str(path.resolve()), file_sha256(path), n, n)
        if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
            raise FramereelError(f"{model}: no such model folder or file; check the path")
        return self._resolve_hub(model)

    def _resolve_hub(self, repo_id: str) -> ModelInfo:
        quiet_libraries()
        from diffusers import DiffusionPipeline

        try:
            folder = Path(DiffusionPipeline.download(repo_id))
        except Exception as err:  # the Hub raises many kinds; each becomes one line for the user
            raise _hub_error(repo_id, err) from err
        self._source = folder
        self.family = fam.detect_folder(folder, repo_id)
        fam.check_complete(folder, f"--model {repo_id}")
        n = fam.native_size(folder, self.family)
        return ModelInfo(repo_id, folder.name, n, n, recommended_settings(folder))

    # -------------------------------------------------------------- loading

    def load(self) -> None:
        self._load_weights()
        if self.settings.compile and not self._compiled:
            compile_pipeline(self.pipe, self.device)
            self._compiled = True

    def _load_weights(self) -> None:
        if self.pipe is not None:
            return
        self.describe()
        quiet_libraries()
        import torch

        dtype = getattr(torch, self.dtype)
        cls = fam.pipeline_class(self.family)
        extra: dict[str, Any] = {}
        if not self.settings.safety_checker and self.family.kind == "sd":
            extra = {"safety_checker": None, "requires_safety_checker": False}
        try:
            if self._single_file:
                pipe = cls.from_single_file(str(self._source), torch_dtype=dtype, **extra)
            else:
                pipe = cls.from_pretrained(str(self._source), torch_dtype=dtype, **extra)
        except (OSError, ValueError, TypeError) as err:
            raise FramereelError(
                f"could not load the model from {self._source}: {str(err).splitlines()[0]}; "
                f"check it is a complete {self.family.label} model in diffusers format"
            ) from err
        pipe.scheduler = make_scheduler(self.scheduler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if self._tiny_vae_dir is not None:
            pipe.vae = load_tiny_vae(self._tiny_vae_dir, dtype, pipe)
        for lora in self.loras:
            self._load_adapter(pipe, lora, "--lora")
        for lora, label in self._frame_loras.values():
            self._load_adapter(pipe, lora, label)
        self._active_loras = None
        self._activate(self.loras, pipe)
        if self.settings.step_cache > 1:
            from .step_cache import StepCache

            self._step_cache = StepCache(pipe.unet, self.settings.step_cache)
        self.pipe = place_pipeline(pipe, self.device, self.settings)
        if self._refiner_source is not None:
            self._refiner_pipe = place_pipeline(self._load_refiner(dtype), self.device, self.settings)

    def _load_refiner(self, dtype):
        """The SDXL refiner as a ``StableDiffusionXLImg2ImgPipeline`` sharing the base's second text
        encoder and VAE (diffusers' "ensemble of expert denoisers"), with the run's scheduler."""
        from diffusers import StableDiffusionXLImg2ImgPipeline

        shared = {"text_encoder_2": self.pipe.text_encoder_2, "vae": self.pipe.vae, "torch_dtype": dtype}
        source = self._refiner_source
        try:
            if source.is_file():
                refiner = StableDiffusionXLImg2ImgPipeline.from_single_file(str(source), **shared)
            else:
                refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(str(source), **shared)
        except (OSError, ValueError, TypeError) as err:
            raise FramereelError(f"--refiner {self.settings.refiner}: could not load it ({str(err).splitlines()[0]}); "
                                 "check it is a complete SDXL refiner in diffusers format") from err
        refiner.scheduler = make_scheduler(self.scheduler, refiner.scheduler.config)
        refiner.set_progress_bar_config(disable=True)
        return refiner

    def resolve_batch(self, frames: list[Frame]) -> dict[tuple[int, int], int]:
        """``--batch auto``: the batch size for each size the key and morph frames among ``frames``
        render at, measured at that size for this model, device, dtype and thread count once per
        machine (see :func:`measure_batch`; the model loads to be measured the first time)."""
        self.describe()
        if self.settings.batch or self.family.kind != "sd":
            return {}  # measured for SD-shaped UNets; other families render one at a time
        sizes = {(f.width, f.height) for f in frames if f.kind in ("key", "morph")} - self.batches.keys()
        for size in sorted(sizes):
            self.batches[size] = self._measured_batch(size)
        return dict(self.batches)

    def _measured_batch(self, size: tuple[int, int]) -> int:
        import torch

        threads = torch.get_num_threads()
        key = f"{self.describe().fingerprint}/{size[0]}x{size[1]}/{self.device}/{self.dtype}/{threads}"

        def probe() -> dict[str, Any]:
            self._load_weights()  # measured uncompiled: compiling for every batch size would take minutes
            return {**measure_batch(self.pipe, size), "threads": threads}

        return int(measured("batch", key, probe)["batch"])

    def count_tokens(self, text: str) -> int:
        """CLIP tokens in ``text``; before the model loads, from the model folder's tokenizer alone."""
        tok = self.pipe.tokenizer if self.pipe is not None else self._tokenizer()
        if tok is None:
            return 0
        return len(tok(text, truncation=False).input_ids)

    def _tokenizer(self):
        self.describe()
        folder = self._source / "tokenizer" if self._source is not None and not self._single_file else None
        if self._standalone_tokenizer is None and folder is not None and folder.is_dir():
            quiet_libraries()
            from transformers import CLIPTokenizer

            self._standalone_tokenizer = CLIPTokenizer.from_pretrained(str(folder))
        return self._standalone_tokenizer

    # -------------------------------------------------------------- LoRAs per frame

    def frame_loras(self, frame: Frame) -> list[Lora]:
        """The LoRAs and weights ``frame`` renders with: its own ``"lora"`` list in place of the run's
        (``--lora`` and the storyboard defaults'; an LCM-LoRA of the run stays, it set the run's
        scheduler and steps), else the run's. A morph's in-betweens blend the weights of the key
        frames on either side (see :func:`~framereel.backends.lora.blend`)."""
        self.describe()
        own = self._lora_list(frame.lora)
        if frame.kind != "morph" or frame.lora == frame.morph_lora:
            return own
        return blend(own, self._lora_list(frame.morph_lora), frame.morph[2])

    def _lora_list(self, specs: tuple[tuple[str, float], ...] | None) -> list[Lora]:
        if specs is None:
            return list(self.loras)
        return [lora for lora in self.loras if lora.is_lcm] + [Lora(source, weight) for source, weight in specs]

    def frame_options(self, frame: Frame) -> dict[str, Any]:
        """A frame with its own LoRAs: them, by file contents and weights, in its hash (in place of
        the run's ``"lora"``; ``None`` for none, which hashes like a run without LoRAs)."""
        if frame.lora is None and (frame.kind != "morph" or frame.morph_lora is None):
            return {}
        label = f'frame {frame.index}: "lora"'
        return {"lora": [[self._lora_fingerprint(lora, label), lora.weight] for lora in self.frame_loras(frame)]
                or None}

    def _lora_fingerprint(self, lora: Lora, label: str) -> str:
        if lora.source not in self._lora_fingerprints:
            self._lora_fingerprints[lora.source] = lora_fingerprint(lora, label)
        return self._lora_fingerprints[lora.source]

    def _load_adapter(self, pipe, lora: Lora, label: str) -> str:
        """Load a LoRA once, as its own PEFT adapter; returns the adapter's name."""
        if lora.source not in self._adapters:
            name = f"lora{len(self._adapters)}"
            load_lora(pipe, lora, name, self.family.label, label, self._lora_file(lora, label))
            self._adapters[lora.source] = name
        return self._adapters[lora.source]

    def _activate(self, loras: list[Lora], pipe=None) -> None:
        """Set the LoRAs (and weights) the next pipeline call renders with: ``set_adapters``, or
        ``disable_lora`` for none (the model exactly as it is without LoRAs). A frame's LoRA not loaded
        yet (a worker process) is loaded now. Prompt embeddings made with other LoRAs active are
        dropped when a LoRA touches a text encoder."""
        pipe = pipe if pipe is not None else self.pipe
        names = [self._load_adapter(pipe, lora, '"lora"') for lora in loras]
        key = tuple(zip(names, (lora.weight for lora in loras), strict=True))
        if key == self._active_loras:
            return
        if self._adapters:
            if names:
                pipe.enable_lora()
                pipe.set_adapters(names, adapter_weights=[lora.weight for lora in loras])
            else:
                pipe.disable_lora()
            if self._active_loras is not None and text_encoder_adapters(pipe):
                self._embed.clear()
                self._negative.clear()
        self._active_loras = key

    # -------------------------------------------------------------- rendering

    def _encode(self, text: str) -> dict[str, Any]:
        """The conditioning tensors of ``text``: every one the family's pipeline takes (cached per
        distinct text by ``self._embed``)."""
        import torch

        with torch.inference_mode():
            return fam.encode(self.pipe, self.family, text, self._execution_device())

    def _encode_negative(self, text: str) -> dict[str, Any]:
        """The negative conditioning (``negative_*`` arguments) for classifier-free guidance."""
        import torch

        with torch.inference_mode():
            return fam.encode_negative(self.pipe, self.family, text, self._execution_device())

    def _encode_for_refiner(self, text: str) -> dict[str, Any]:
        """The refiner's conditioning of ``text`` (its own text encoder set: SDXL's refiner reads only
        the second one)."""
        import torch

        with torch.inference_mode():
            return fam.encode(self._refiner_pipe, self.family, text, self._execution_device())

    def _encode_negative_for_refiner(self, text: str) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            return fam.encode_negative(self._refiner_pipe, self.family, text, self._execution_device())

    def _execution_device(self):
        return getattr(self.pipe, "_execution_device", None) or self.device

    def initial_noise(self, seed: int, width: int, height: int):
        """The float32 starting latents a seed gives (drawn on the CPU, as the pipeline draws them),
        in the layout the pipeline's ``latents`` argument takes."""
        noise = seeded_noise(seed, fam.noise_shape(self.pipe, self.family, width, height))
        return fam.pack(self.pipe, self.family, noise)

    def render(self, frame: Frame, on_step: Callable[[int, int], None] | None = None, init_image=None):
        """Render one frame: text-to-image for key frames, a latent in-between for morphs
        (slerped noise, lerped prompt embedding), img2img from ``init_image`` for chained frames."""
        if frame.kind == "chain":
            return self._render_chain(frame, init_image, on_step)
        return self.render_batch([frame], on_step)[0]

    def render_batch(self, frames: list[Frame], on_step: Callable[[int, int], None] | None = None):
        """Render key and morph frames that share size, steps and guidance in one pipeline call.

        The call always has ``self.batch_for(frames[0])`` rows (the last group is padded with copies of its first
        frame): a frame's pixels then do not depend on which frames share its call, so a run, a
        resumed run and ``--frames N`` give the same bytes. Returns ``[(image, facts), ...]``.
        """
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        self.load()
        sets: dict[tuple, list[int]] = {}  # frames with other LoRAs never share a call
        for i, f in enumerate(frames):
            sets.setdefault(tuple((x.source, x.weight) for x in self.frame_loras(f)), []).append(i)
        if len(sets) > 1:
            done: dict[int, Any] = {}
            for positions in sets.values():
                done.update(zip(positions, self.render_batch([frames[i] for i in positions], on_step), strict=True))
            return [done[i] for i in range(len(frames))]
        first = frames[0]
        self._activate(self.frame_loras(first))
        rows = list(frames) + [first] * (self.batch_for(first) - len(frames))
        cond = fam.cat_conditioning([self._prompt_embeds(f) for f in rows])
        if fam.uses_cfg(self.pipe, self.family, first.guidance):
            cond.update(fam.cat_conditioning([self._negative(f.negative_prompt or "") for f in rows]))
        dtype = cond["prompt_embeds"].dtype
        device = self._execution_device()
        latents, generators = [], []
        for f in rows:
            generator = torch.Generator("cpu").manual_seed(f.seed)
            if f.kind == "morph":  # slerped noise; the generator stays fresh for stochastic schedulers
                noise = slerp(self.initial_noise(f.seed, f.width, f.height),
                              self.initial_noise(f.morph_seed, f.width, f.height), f.morph[2])
            else:  # drawn exactly as the family's pipeline draws it
                noise = fam.pack(self.pipe, self.family, randn_tensor(
                    fam.noise_shape(self.pipe, self.family, f.width, f.height), generator=generator,
                    device=torch.device(device), dtype=dtype))
            latents.append(noise.to(device=device, dtype=dtype))
            generators.append(generator)
        compile_seconds = self._warm_up(len(rows), first) if self.settings.compile else None
        if self._step_cache is not None:
            self._step_cache.reset()
        step_end = _step_callback(on_step, first.steps)
        refine = {"denoising_end": self.settings.refiner_switch, "output_type": "latent"} if self._refiner_pipe else {}
        with torch.inference_mode():
            out = self.pipe(
                **cond, latents=torch.cat(latents), **fam.call_kwargs(self.family),
                generator=generators, num_inference_steps=first.steps, guidance_scale=first.guidance,
                width=first.width, height=first.height, callback_on_step_end=step_end, **refine,
            )
            if refine:
                out = self._refine(rows, out.images, generators, step_end)
        results = [(out.images[i], _facts(out, i)) for i in range(len(frames))]
        if compile_seconds is not None:
            results[0][1]["compile_seconds"] = round(compile_seconds, 1)
        return results

    def _warm_up(self, rows: int, frame: Frame) -> float | None:
        """Compile the UNet and VAE decoder for this batch and size before the first frame needs
        them, through the pipeline itself (2 steps), so the compiled graphs see exactly the calls
        a render makes; returns the seconds it took (None if already done for this shape)."""
        import time

        import torch

        key = (rows, frame.width, frame.height, frame.guidance > 1)
        if key in self._warmed_up:
            return None
        self._warmed_up.add(key)
        cond = fam.cat_conditioning([self._embed("")] * rows)
        if fam.uses_cfg(self.pipe, self.family, frame.guidance):
            cond.update(fam.cat_conditioning([self._negative("")] * rows))
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.pipe(**cond, **fam.call_kwargs(self.family),
                      num_inference_steps=2, guidance_scale=frame.guidance, width=frame.width, height=frame.height,
                      generator=torch.Generator("cpu").manual_seed(0))
        return time.perf_counter() - t0

    def _prompt_embeds(self, frame: Frame, embed: EmbeddingCache | None = None) -> dict[str, Any]:
        """A frame's conditioning; a morph's has every tensor lerped between its two prompts'
        (SDXL's size and crop time ids need nothing: both ends of a morph share one size)."""
        embed = embed or self._embed
        cond = embed(frame.prompt)
        if frame.kind == "morph":
            cond = fam.lerp_conditioning(cond, embed(frame.morph_prompt), frame.morph[2])
        return cond

    def _refine(self, rows: list[Frame], latents, generators, step_end, strength: float | None = None):
        """``--refiner``: the refiner finishes what the base left at the switch point (``latents``,
        from a base call with ``denoising_end``), as diffusers' base + refiner do: the refiner is
        called with ``denoising_start`` and the same prompts (its own conditioning of them, lerped
        for morphs), guidance and generators. ``strength`` (img2img with nothing left for the
        base): the refiner alone runs the img2img from the image ``latents``."""
        first = rows[0]
        refiner = self._refiner_pipe
        cond = fam.cat_conditioning([self._prompt_embeds(f, self._refiner_embed) for f in rows])
        if fam.uses_cfg(refiner, self.family, first.guidance):
            cond.update(fam.cat_conditioning([self._refiner_negative(f.negative_prompt or "") for f in rows]))
        where = {"denoising_start": self.settings.refiner_switch} if strength is None else {"strength": strength}
        return refiner(**cond, image=latents, **where, num_inference_steps=first.steps,
                       guidance_scale=first.guidance, generator=generators, callback_on_step_end=step_end)

    def _render_chain(self, frame: Frame, init_image, on_step):
        """img2img from ``init_image`` (the parent's warped image); strength 0 keeps it exactly."""
        import torch

        self.load()
        if frame.strength == 0:
            return init_image.convert("RGB").copy(), {}
        self._activate(self.frame_loras(frame))
        if self._step_cache is not None:
            self._step_cache.reset()
        cond = dict(self._embed(frame.prompt))
        if fam.uses_cfg(self.pipe, self.family, frame.guidance):
            cond.update(self._negative(frame.negative_prompt or ""))
        if self.family.kind == "flux":  # FluxImg2ImgPipeline sizes its output from these, not from the image
            cond.update(width=frame.width, height=frame.height)
        generator = torch.Generator("cpu").manual_seed(frame.seed)
        step_end = _step_callback(on_step, frame.steps)
        image = init_image.convert("RGB")
        refine = {}
        if self._refiner_pipe is not None:
            base_steps, _ = fam.refiner_steps(make_scheduler(self.scheduler, self.pipe.scheduler.config),
                                              frame.steps, self.settings.refiner_switch, frame.strength)
            if not base_steps:  # all of this img2img lies past the switch point: the refiner's alone
                with torch.inference_mode():
                    out = self._refine([frame], image, [generator], step_end, strength=frame.strength)
                return out.images[0], _facts(out, 0)
            refine = {"denoising_end": self.settings.refiner_switch, "output_type": "latent"}
        with torch.inference_mode():
            out = self._img2img()(
                **cond, **fam.call_kwargs(self.family),
                image=image, strength=frame.strength, num_inference_steps=frame.steps,
                guidance_scale=frame.guidance, generator=generator, callback_on_step_end=step_end, **refine,
            )
            if refine:
                out = self._refine([frame], out.images, [generator], step_end)
        return out.images[0], _facts(out, 0)

    def check(self, frames: list[Frame]) -> list[str]:
        """Everything the run would refuse of ``frames`` before it renders one, without loading
        weights: a clip without a motion model or with an ``init_video`` that is no video, a LoRA
        that is missing or not a LoRA (a Hub LoRA is fetched), and what this model family can't do
        with these frames, in one line naming the frame; what it can but should not (a Turbo model
        at 50 steps): warnings."""
        warnings = super().check(frames)
        self.describe()
        clip = next((f for f in frames if f.kind == "clip"), None)
        if clip is not None and self._clips is None:
            raise FramereelError(f'frame {clip.index}: "clip" needs --motion-adapter PATH_OR_ID (an AnimateDiff '
                                 "MotionAdapter; --motion-adapter demo with --model demo)")
        from .animatediff import check_video

        for f in frames:
            if f.kind == "clip" and f.clip_pos == 0 and f.clip.init_video:
                check_video(f.clip.init_video, f"frame {f.index}: init_video")
        for lora in self.loras:
            self._lora_file(lora, "--lora")
        self._check_frame_loras(frames)
        errors, more = fam.frame_problems(self.family, frames, self.scheduler)
        if errors:
            raise FramereelError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        return warnings + more

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        warnings = super().prepare(frames, out_dir)
        if self.pipe is not None:  # a loaded model (interactive) takes the frames' own LoRAs now
            for lora, label in self._frame_loras.values():
                self._load_adapter(self.pipe, lora, label)
        return warnings

    def _check_frame_loras(self, frames: list[Frame]) -> None:
        """Frames' own LoRAs: a missing file, a file that is not a LoRA or an LCM-LoRA (it sets the
        whole run's scheduler) is refused in one line naming the frame; the others load with the
        model (each one once), or in :meth:`prepare` if it is loaded already, so one that does not
        fit the model stops the run before any frame renders."""
        for f in frames:
            for specs in (f.lora, f.morph_lora if f.kind == "morph" else None):
                for source, weight in specs or ():
                    lora, label = Lora(source, weight), f'frame {f.index}: "lora"'
                    if lora.is_lcm:
                        raise FramereelError(f"{label} {source}: an LCM-LoRA sets the scheduler and steps of the "
                                             'whole run; put it in the storyboard\'s "defaults" (or use --lora)')
                    self._lora_file(lora, label)
                    self._frame_loras.setdefault(source, (lora, label))

    def _lora_file(self, lora: Lora, label: str) -> Path:
        """A LoRA's weights file, found (a Hub LoRA fetched) and checked once per run."""
        if lora.source not in self._lora_files:
            self._lora_files[lora.source] = weights_file(lora, label)
        return self._lora_files[lora.source]

    def render_clip(self, frames: list[Frame], on_step: Callable[[int, int], None] | None = None):
        """Render one whole clip with AnimateDiff (see :mod:`framereel.backends.animatediff`)."""
        self.describe()
        if self._clips is None:
            return super().render_clip(frames, on_step)
        self.load()
        self._activate(self.loras)  # a clip renders with the run's LoRAs
        return self._clips.render(frames, on_step)

    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler of a loaded model (interactive ``:scheduler``; ``auto``: the family's)."""
        if name == "auto":
            name = self.describe().scheduler
        fam.check_scheduler(self.family, name)
        self.settings = replace(self.settings, scheduler=name)
        self.scheduler = name
        self.pipe.scheduler = make_scheduler(name, self.pipe.scheduler.config)
        if self._refiner_pipe is not None:
            self._refiner_pipe.scheduler = make_scheduler(name, self._refiner_pipe.scheduler.config)
        self._img2img_pipe = None

    def _img2img(self):
        if self._img2img_pipe is None:  # the family's img2img pipeline, sharing the loaded weights
            # (from_pipe casts to float32 unless told the dtype, which would change the shared weights)
            self._img2img_pipe = fam.pipeline_class(self.family, img2img=True).from_pipe(
                self.pipe, torch_dtype=self.pipe.dtype)
            self._img2img_pipe.set_progress_bar_config(disable=True)
        return self._img2img_pipe

    def close(self) -> None:
        self.pipe = self._img2img_pipe = self._refiner_pipe = None
        self._adapters.clear()
        self._active_loras = None
        self._refiner_embed.clear()
        self._refiner_negative.clear()
        self._compiled = False
        self._embed.clear()
        if self._clips is not None:
            self._clips.close()
        self._negative.clear()


def resolve_tiny_vae(spec: str) -> Path:
    """``--tiny-vae``: a local AutoencoderTiny folder, or a Hub id fetched into the Hugging Face cache."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FramereelError(f"--tiny-vae {spec}: no config.json there; pass a folder saved with "
                                 "AutoencoderTiny.save_pretrained, or a Hub id like madebyollin/taesd")
        return path
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise FramereelError(f"--tiny-vae {spec}: no such folder; pass a local folder or a Hub id like madebyollin/taesd")
    quiet_libraries()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as err:  # the Hub raises many kinds; each becomes one line for the user
        raise _hub_error(spec, err, "--tiny-vae") from err


def load_tiny_vae(folder: Path, dtype, pipe):
    """An AutoencoderTiny that fits ``pipe``'s latents (same channels and scale), else a one-line error."""
    from diffusers import AutoencoderTiny

    try:
        vae = AutoencoderTiny.from_pretrained(str(folder), torch_dtype=dtype)
    except (OSError, ValueError) as err:
        raise FramereelError(f"--tiny-vae {folder}: not an AutoencoderTiny ({str(err).splitlines()[0]})") from err
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    channels = pipe.vae.config.latent_channels
    if vae.config.latent_channels != channels or scale != pipe.vae_scale_factor:
        raise FramereelError(
            f"--tiny-vae {folder}: it decodes {vae.config.latent_channels}-channel latents at 1/{scale} scale, "
            f"the model makes {channels}-channel latents at 1/{pipe.vae_scale_factor}; use the tiny VAE made for "
            "this model family (madebyollin/taesd for SD 1.x/2.x, taesdxl for SDXL, taesd3 for SD 3, taef1 for FLUX)")
    if "shift_factor" not in vae.config:  # SD 3 and FLUX pipelines read it; TAESD3/TAEF1 latents are unshifted
        vae.register_to_config(shift_factor=0.0)
    return vae


VAE_TILE = 512  # --vae-tiling decodes frames larger than this in tiles of this size (pixels)


def place_pipeline(pipe, device: str, settings: RenderSettings):
    """Move the pipeline to its device, or set up accelerate's CPU offload (``--offload``), and
    the memory savers (``--vae-tiling``, ``--attention-slicing``)."""
    if settings.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif settings.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe = pipe.to(device)
    if settings.vae_tiling:
        pipe.vae.enable_tiling()
        vae = pipe.vae
        if hasattr(vae, "tile_sample_min_size") and hasattr(vae, "tile_latent_min_size"):
            # diffusers' tile is the VAE's sample_size (1024 for SDXL's), which never tiles a 1024² frame
            vae.tile_sample_min_size = min(vae.tile_sample_min_size, VAE_TILE)
            vae.tile_latent_min_size = vae.tile_sample_min_size // (2 ** (len(vae.config.block_out_channels) - 1))
    if settings.attention_slicing:
        pipe.enable_attention_slicing()
    return pipe


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile would build CPU kernels with ($CXX, g++, c++ or clang++), if any."""
    import shutil

    found = (shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)
    return next((path for path in found if path), None)


def compile_pipeline(pipe, device: str) -> None:
    """``--compile``: torch.compile the UNet and the VAE decoder in place; on CPUs with weight
    freezing (constant-folded, pre-packed weights: the TORCHINDUCTOR_FREEZING=1 setting)."""
    if device == "cpu" and cxx_compiler() is None:
        raise FramereelError("--compile on a CPU needs a C++ compiler and none was found; "
                             "install one (apt install g++, or set CXX) or drop --compile")
    if device == "cpu" and "TORCHINDUCTOR_FREEZING" not in os.environ:  # the user's setting wins
        import torch._inductor.config

        torch._inductor.config.freezing = True
    (pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer).compile()
    pipe.vae.decoder.compile()


def _step_callback(on_step: Callable[[int, int], None] | None, steps: int):
    """A ``callback_on_step_end`` reporting steps done of ``steps``, counted across the calls it is
    passed to (an SDXL base and its refiner share one count)."""
    done = [0]

    def step_end(pipe, step, timestep, kwargs):
        done[0] += 1
        if on_step is not None:
            on_step(min(done[0], steps), steps)
        return kwargs

    return step_end


def _facts(out, i: int) -> dict[str, Any]:
    flagged = getattr(out, "nsfw_content_detected", None)
    return {"nsfw_blacked_out": True} if flagged and flagged[i] else {}


def make_scheduler(name: str, config: Any):
    """A diffusers scheduler by framereel's short name, built from the model's scheduler config."""
    import diffusers

    table = {
        "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
        "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
        "ddim": ("DDIMScheduler", {}),
        "euler": ("EulerDiscreteScheduler", {}),
        "euler-a": ("EulerAncestralDiscreteScheduler", {}),
        "heun": ("HeunDiscreteScheduler", {}),
        "unipc": ("UniPCMultistepScheduler", {}),
        "lcm": ("LCMScheduler", {}),
        "flow-euler": ("FlowMatchEulerDiscreteScheduler", {}),
    }
    cls_name, kwargs = table[name]
    return getattr(diffusers, cls_name).from_config(config, **kwargs)
