"""The diffusers backend: Stable Diffusion 1.x (or any model in its layout) on CUDA, MPS or the CPU.

Loads ``StableDiffusionPipeline`` once, swaps in the asked-for scheduler, encodes each distinct
prompt once, and renders a frame by calling the pipeline itself with that frame's seeded CPU
generator, so a framereel frame is exactly what ``StableDiffusionPipeline`` gives.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..storyboard import Frame
from . import ModelInfo, RenderSettings

DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "demo_model" / "weights"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SD1_NATIVE = 512


def quiet_libraries() -> None:
    """Keep diffusers/transformers chatter (deprecations, optional-package notes) off the user's screen."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


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
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")


def files_fingerprint(folder: Path) -> str:
    """Hash of a model folder's config files and its weight files' names and sizes (a model card
    or other notes in the folder can change without making its frames stale)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or p.suffix not in (".json", ".txt", *WEIGHT_SUFFIXES):
            continue
        rel = p.relative_to(folder).as_posix()
        h.update(rel.encode())
        if p.suffix in (".json", ".txt"):
            h.update(p.read_bytes())
        else:
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()[:16]


SMALL_UNET_PARAMETERS = 100_000_000
SMALL_UNET_BATCH = 4


def unet_parameters(folder: Path | None) -> int | None:
    """The UNet's parameter count, read from its safetensors header (no weights loaded)."""
    files = sorted((folder / "unet").glob("*.safetensors")) if folder else []
    if not files:
        return None
    from safetensors import safe_open

    with safe_open(str(files[0]), "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def auto_batch(folder: Path | None) -> int:
    """``--batch auto``: 4 frames per UNet call for small UNets (measured ~2.5x the frames/s of
    batch 1 for the demo model on a 2-core CPU); 1 for SD-sized ones, where a bigger batch gains
    ~10 % on a CPU but multiplies the memory and the cost of a padded last batch."""
    n = unet_parameters(folder)
    return SMALL_UNET_BATCH if n is not None and n < SMALL_UNET_PARAMETERS else 1


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def native_size(folder: Path) -> int:
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, KeyError, ValueError, TypeError):
        return SD1_NATIVE


def _recommended(folder: Path) -> dict[str, Any]:
    path = folder / "framereel.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("defaults", {}))


def _hub_error(model: str, err: Exception) -> FramereelError:
    name = type(err).__name__
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if "Gated" in name or "401" in str(err) or "403" in str(err):
        why = f"{model} needs a Hugging Face login: run `hf auth login` (or set HF_TOKEN) and accept its licence on the Hub"
    elif "RepositoryNotFound" in name:
        why = f"{model} is not a model on the Hugging Face Hub nor a local folder or file"
    elif offline or "LocalEntryNotFound" in name or "Offline" in name:
        why = f"{model} is not in the local Hugging Face cache and the Hub can't be reached"
    else:
        why = f"could not fetch {model} from the Hugging Face Hub ({name})"
    return FramereelError(
        f"{why}; go online (unset HF_HUB_OFFLINE), pass --model PATH to a local diffusers folder "
        "or .safetensors file, or try --model demo (offline demo model)"
    )


class DiffusersBackend:
    name = "diffusers"

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        self.device, self.device_reason = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        self.pipe = None
        self._source: Path | None = None
        self._single_file = False
        self._info: ModelInfo | None = None
        self.batch = settings.batch or 1  # resolved by describe() when 0 (auto)
        self.pixel_options: dict[str, Any] = {}  # options that change pixels: part of each frame's hash
        self._tiny_vae_dir: Path | None = None
        self._step_cache = None
        self._warmed_up: set[tuple] = set()
        self._embeds: dict[str, Any] = {}
        self._img2img_pipe = None
        self.clip_options: dict[str, Any] = {}  # motion adapter + LoRAs: part of each clip frame's hash
        self._clips = None  # framereel.backends.animatediff.ClipRenderer, with --motion-adapter

    # -------------------------------------------------------------- model resolution

    def describe(self) -> ModelInfo:
        if self._info is None:
            self._info = self._resolve(self.settings.model)
            if not self.settings.batch:
                self.batch = auto_batch(self._source if not self._single_file else None)
            if self.settings.tiny_vae:
                self._tiny_vae_dir = resolve_tiny_vae(self.settings.tiny_vae)
                self.pixel_options["tiny_vae"] = files_fingerprint(self._tiny_vae_dir)
            if self.settings.step_cache > 1:
                self.pixel_options["step_cache"] = self.settings.step_cache
            from .animatediff import clip_renderer

            self._clips, self.clip_options = clip_renderer(self, None if self._single_file else self._source,
                                                           self._info.id)
        return self._info

    def _resolve(self, model: str) -> ModelInfo:
        if model == "demo":
            if not (DEMO_MODEL_DIR / "unet").is_dir():
                raise FramereelError(
                    "the demo model's weights are missing from this install; "
                    "train them with `python -m framereel.demo_model.train --out DIR` and pass --model DIR"
                )
            self._source = DEMO_MODEL_DIR
            n = native_size(DEMO_MODEL_DIR)
            return ModelInfo("demo", files_fingerprint(DEMO_MODEL_DIR), n, n, _recommended(DEMO_MODEL_DIR))
        path = Path(model).expanduser()
        if path.is_dir():
            if not (path / "model_index.json").exists():
                raise FramereelError(
                    f"{path} is not a diffusers model folder (no model_index.json); "
                    "pass a folder saved with save_pretrained, a .safetensors/.ckpt file, or a Hub id"
                )
            self._source = path
            n = native_size(path)
            return ModelInfo(str(path.resolve()), files_fingerprint(path), n, n, _recommended(path))
        if path.suffix in SINGLE_FILE_SUFFIXES:
            if not path.is_file():
                raise FramereelError(f"{path}: no such model file; check the path")
            self._source, self._single_file = path, True
            return ModelInfo(str(path.resolve()), _file_sha256(path), SD1_NATIVE, SD1_NATIVE)
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
        n = native_size(folder)
        return ModelInfo(repo_id, folder.name, n, n, _recommended(folder))

    # -------------------------------------------------------------- loading

    def load(self) -> None:
        if self.pipe is not None:
            return
        self.describe()
        quiet_libraries()
        import torch
        from diffusers import StableDiffusionPipeline

        dtype = getattr(torch, self.dtype)
        extra: dict[str, Any] = {}
        if not self.settings.safety_checker:
            extra = {"safety_checker": None, "requires_safety_checker": False}
        try:
            if self._single_file:
                pipe = StableDiffusionPipeline.from_single_file(str(self._source), torch_dtype=dtype, **extra)
            else:
                pipe = StableDiffusionPipeline.from_pretrained(str(self._source), torch_dtype=dtype, **extra)
        except (OSError, ValueError) as err:
            raise FramereelError(
                f"could not load the model from {self._source}: {str(err).splitlines()[0]}; "
                "check it is a Stable Diffusion 1.x model in diffusers format"
            ) from err
        pipe.scheduler = make_scheduler(self.settings.scheduler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        if self._tiny_vae_dir is not None:
            pipe.vae = load_tiny_vae(self._tiny_vae_dir, dtype, pipe)
        if self.settings.step_cache > 1:
            from .step_cache import StepCache

            self._step_cache = StepCache(pipe.unet, self.settings.step_cache)
        self.pipe = pipe.to(self.device)
        if self.settings.compile:
            compile_pipeline(self.pipe, self.device)

    def count_tokens(self, text: str) -> int:
        tok = self.pipe.tokenizer if self.pipe is not None else None
        if tok is None:
            return 0
        return len(tok(text, truncation=False).input_ids)

    # -------------------------------------------------------------- rendering

    def _embed(self, text: str):
        """CLIP embedding of ``text``, computed once per distinct text."""
        if text not in self._embeds:
            import torch

            with torch.inference_mode():
                embeds, _ = self.pipe.encode_prompt(text, self.device, 1, False)
            self._embeds[text] = embeds
        return self._embeds[text]

    def initial_noise(self, seed: int, width: int, height: int):
        """The float32 starting latents a seed gives (drawn on the CPU, as the pipeline draws them)."""
        import torch

        vsf = self.pipe.vae_scale_factor
        shape = (1, self.pipe.unet.config.in_channels, height // vsf, width // vsf)
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)

    def render(self, frame: Frame, on_step: Callable[[int, int], None] | None = None, init_image=None):
        """Render one frame: text-to-image for key frames, a latent in-between for morphs
        (slerped noise, lerped prompt embedding), img2img from ``init_image`` for chained frames."""
        if frame.kind == "chain":
            return self._render_chain(frame, init_image, on_step)
        return self.render_batch([frame], on_step)[0]

    def render_batch(self, frames: list[Frame], on_step: Callable[[int, int], None] | None = None):
        """Render key and morph frames that share size, steps and guidance in one pipeline call.

        The call always has ``self.batch`` rows (the last group is padded with copies of its first
        frame): a frame's pixels then do not depend on which frames share its call, so a run, a
        resumed run and ``--frames N`` give the same bytes. Returns ``[(image, facts), ...]``.
        """
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        self.load()
        first = frames[0]
        rows = list(frames) + [first] * (self.batch - len(frames))
        embeds = torch.cat([self._prompt_embeds(f) for f in rows])
        negative = torch.cat([self._embed(f.negative_prompt or "") for f in rows]) if first.guidance > 1 else None
        latents, generators = [], []
        for f in rows:
            generator = torch.Generator("cpu").manual_seed(f.seed)
            if f.kind == "morph":  # slerped noise; the generator stays fresh for stochastic schedulers
                noise = slerp(self.initial_noise(f.seed, f.width, f.height),
                              self.initial_noise(f.morph_seed, f.width, f.height), f.morph[2])
            else:  # drawn exactly as StableDiffusionPipeline draws it
                vsf = self.pipe.vae_scale_factor
                noise = randn_tensor((1, self.pipe.unet.config.in_channels, f.height // vsf, f.width // vsf),
                                     generator=generator, device=torch.device(self.device), dtype=embeds.dtype)
            latents.append(noise.to(device=self.device, dtype=embeds.dtype))
            generators.append(generator)
        compile_seconds = self._warm_up(len(rows), first) if self.settings.compile else None
        if self._step_cache is not None:
            self._step_cache.reset()
        with torch.inference_mode():
            out = self.pipe(
                prompt_embeds=embeds, negative_prompt_embeds=negative, latents=torch.cat(latents),
                generator=generators, num_inference_steps=first.steps, guidance_scale=first.guidance,
                width=first.width, height=first.height, callback_on_step_end=_step_callback(on_step, first.steps),
            )
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
        empty = self._embed("").expand(rows, -1, -1)
        t0 = time.perf_counter()
        with torch.inference_mode():
            self.pipe(prompt_embeds=empty, negative_prompt_embeds=empty if frame.guidance > 1 else None,
                      num_inference_steps=2, guidance_scale=frame.guidance, width=frame.width, height=frame.height,
                      generator=torch.Generator("cpu").manual_seed(0))
        return time.perf_counter() - t0

    def _prompt_embeds(self, frame: Frame):
        """A frame's prompt embedding; a morph's is lerped between its two prompts."""
        import torch

        embeds = self._embed(frame.prompt)
        if frame.kind == "morph":
            embeds = torch.lerp(embeds, self._embed(frame.morph_prompt), frame.morph[2])
        return embeds

    def _render_chain(self, frame: Frame, init_image, on_step):
        """img2img from ``init_image`` (the parent's warped image); strength 0 keeps it exactly."""
        import torch

        self.load()
        if frame.strength == 0:
            return init_image.convert("RGB").copy(), {}
        if self._step_cache is not None:
            self._step_cache.reset()
        negative = self._embed(frame.negative_prompt or "") if frame.guidance > 1 else None
        with torch.inference_mode():
            out = self._img2img()(
                prompt_embeds=self._embed(frame.prompt), negative_prompt_embeds=negative,
                image=init_image.convert("RGB"), strength=frame.strength, num_inference_steps=frame.steps,
                guidance_scale=frame.guidance, generator=torch.Generator("cpu").manual_seed(frame.seed),
                callback_on_step_end=_step_callback(on_step, frame.steps),
            )
        return out.images[0], _facts(out, 0)

    def render_clip(self, frames: list[Frame], on_step: Callable[[int, int], None] | None = None):
        """Render one whole clip with AnimateDiff (see :mod:`framereel.backends.animatediff`)."""
        self.describe()
        if self._clips is None:
            raise FramereelError(f'frame {frames[0].index}: "clip" needs --motion-adapter PATH_OR_ID '
                                 "(an AnimateDiff MotionAdapter; --motion-adapter demo with --model demo)")
        return self._clips.render(frames, on_step)

    def set_scheduler(self, name: str) -> None:
        """Swap the scheduler of a loaded model (interactive ``:scheduler``)."""
        self.settings = replace(self.settings, scheduler=name)
        self.pipe.scheduler = make_scheduler(name, self.pipe.scheduler.config)
        self._img2img_pipe = None

    def _img2img(self):
        if self._img2img_pipe is None:
            from diffusers import StableDiffusionImg2ImgPipeline

            self._img2img_pipe = StableDiffusionImg2ImgPipeline(**self.pipe.components)
            self._img2img_pipe.set_progress_bar_config(disable=True)
        return self._img2img_pipe

    def close(self) -> None:
        self.pipe = self._img2img_pipe = None
        self._embeds.clear()
        if self._clips is not None:
            self._clips._t2v = self._clips._v2v = None


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
        raise _hub_error(spec, err) from err


def load_tiny_vae(folder: Path, dtype, pipe):
    """An AutoencoderTiny that fits ``pipe``'s latents (same channels and scale), else a one-line error."""
    from diffusers import AutoencoderTiny

    try:
        vae = AutoencoderTiny.from_pretrained(str(folder), torch_dtype=dtype)
    except (OSError, ValueError) as err:
        raise FramereelError(f"--tiny-vae {folder}: not an AutoencoderTiny ({str(err).splitlines()[0]})") from err
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    if vae.config.latent_channels != pipe.unet.config.in_channels or scale != pipe.vae_scale_factor:
        raise FramereelError(
            f"--tiny-vae {folder}: it decodes {vae.config.latent_channels}-channel latents at 1/{scale} scale, "
            f"the model makes {pipe.unet.config.in_channels}-channel latents at 1/{pipe.vae_scale_factor}; "
            "use the tiny VAE made for this model family (madebyollin/taesd for SD 1.x)")
    return vae


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
    pipe.unet.compile()
    pipe.vae.decoder.compile()


def _step_callback(on_step: Callable[[int, int], None] | None, steps: int):
    def step_end(pipe, step, timestep, kwargs):
        if on_step is not None:
            on_step(step + 1, steps)
        return kwargs

    return step_end


def _facts(out, i: int) -> dict[str, Any]:
    flagged = getattr(out, "nsfw_content_detected", None)
    return {"nsfw_blacked_out": True} if flagged and flagged[i] else {}


def slerp(a, b, t: float, dot_threshold: float = 0.9995):
    """Spherical interpolation between two noise tensors (linear when they are nearly parallel)."""
    import torch

    dot = torch.sum(a * b) / (a.norm() * b.norm())
    if abs(float(dot)) > dot_threshold:
        return torch.lerp(a, b, t)
    theta = torch.acos(dot)
    return (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)


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
    }
    cls_name, kwargs = table[name]
    return getattr(diffusers, cls_name).from_config(config, **kwargs)
