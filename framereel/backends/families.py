"""Model families: which diffusion model a folder or file holds, what it wants by default, and
how its prompts, starting noise and pipeline call look.

A family is read from the model itself: a diffusers folder's ``model_index.json`` ``_class_name``
plus its component configs (a UNet with ``use_linear_projection`` is SD 2.x, one with
``time_cond_proj_dim`` or a shipped ``LCMScheduler`` is an LCM model, an Euler scheduler with
``trailing`` timesteps or a name with "turbo" is a Turbo model, an SD3 transformer with
``qk_norm`` is SD 3.5, a FLUX transformer with a guidance embedding is FLUX.1 dev), or a
single-file checkpoint's keys (diffusers' own ``infer_diffusers_model_type``). A ``"family"``
key in the folder's ``framereel.json`` overrides the guess.

Each family renders through its own diffusers pipeline, called with framereel's prompt
embeddings (every conditioning tensor the pipeline takes: pooled CLIP embeddings, T5 embeddings)
and seeded starting latents, so a frame is exactly what that pipeline gives for the same seed,
and morphs interpolate every one of those tensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FramereelError

FLOW_SCHEDULERS = ("flow-euler",)


@dataclass(frozen=True)
class Family:
    """What framereel knows of a model family: its pipelines, a model card's defaults, its limits."""

    key: str  # e.g. "sdxl-turbo"
    label: str  # e.g. "SDXL-Turbo"
    kind: str  # how it is conditioned and called: "sd", "sdxl", "sd3" or "flux"
    size: int  # native size when the configs don't say
    steps: int
    guidance: float
    scheduler: str
    steps_range: tuple[int, int] | None = None  # a warning outside it (few-step models)
    guidance_max: float | None = None  # a warning above it (distilled models)
    max_sequence_length: int | None = None  # T5 tokens (SD3, FLUX)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def flow(self) -> bool:
        """Flow-matching models (SD3, FLUX) take only the flow-matching Euler scheduler."""
        return self.kind in ("sd3", "flux")

    def defaults(self) -> dict[str, Any]:
        """The frame parameters a model card gives, as ``ModelInfo.recommended`` entries."""
        return {"steps": self.steps, "guidance": self.guidance}

    def describe(self) -> dict[str, Any]:
        """For ``run.json`` and ``doctor``: the family and the defaults it brings."""
        d = {"family": self.key, "label": self.label, "steps": self.steps, "guidance": self.guidance,
             "scheduler": self.scheduler}
        if self.steps_range:
            d["steps_range"] = list(self.steps_range)
        return d


FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("sd1", "SD 1.x", "sd", 512, 25, 7.5, "dpm++"),
    Family("sd2", "SD 2.x", "sd", 512, 25, 7.5, "dpm++"),
    Family("sd2-v", "SD 2.x (v-prediction)", "sd", 768, 25, 7.5, "dpm++"),
    Family("sd-turbo", "SD-Turbo", "sd", 512, 1, 0.0, "euler", steps_range=(1, 4), guidance_max=1.0),
    Family("lcm", "LCM (SD 1.5)", "sd", 512, 4, 8.0, "lcm", steps_range=(2, 8)),
    Family("lcm-lora", "SD 1.x + LCM-LoRA", "sd", 512, 4, 1.0, "lcm", steps_range=(2, 8), guidance_max=2.0),
    Family("sdxl", "SDXL", "sdxl", 1024, 25, 5.0, "dpm++"),
    Family("sdxl-turbo", "SDXL-Turbo", "sdxl", 512, 1, 0.0, "euler", steps_range=(1, 4), guidance_max=1.0),
    Family("lcm-sdxl", "LCM (SDXL)", "sdxl", 1024, 4, 8.0, "lcm", steps_range=(2, 8)),
    Family("sdxl-lcm-lora", "SDXL + LCM-LoRA", "sdxl", 1024, 4, 1.0, "lcm", steps_range=(2, 8), guidance_max=2.0),
    Family("sd3", "SD 3", "sd3", 1024, 28, 7.0, "flow-euler", max_sequence_length=256),
    Family("sd3.5", "SD 3.5", "sd3", 1024, 28, 3.5, "flow-euler", max_sequence_length=256),
    Family("flux-schnell", "FLUX.1 schnell", "flux", 1024, 4, 0.0, "flow-euler", steps_range=(1, 4),
           max_sequence_length=256, notes=("no negative prompt (guidance-distilled)",)),
    Family("flux-dev", "FLUX.1 dev", "flux", 1024, 28, 3.5, "flow-euler", max_sequence_length=512,
           notes=("no negative prompt (guidance-distilled)",)),
)}

# model_index.json _class_name → conditioning kind
PIPELINE_KINDS = {
    "StableDiffusionPipeline": "sd",
    "LatentConsistencyModelPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
    "FluxPipeline": "flux",
}
TEXT2IMAGE = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
              "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}
IMAGE2IMAGE = {"sd": "StableDiffusionImg2ImgPipeline", "sdxl": "StableDiffusionXLImg2ImgPipeline",
               "sd3": "StableDiffusion3Img2ImgPipeline", "flux": "FluxImg2ImgPipeline"}
SUPPORTED = ("SD 1.x, SD 2.x, SDXL, SD-Turbo, SDXL-Turbo, LCM, SD 3/3.5, FLUX.1 "
             f"({', '.join(sorted(set(PIPELINE_KINDS)))})")
LCM_LORA = {"sd": "lcm-lora", "sdxl": "sdxl-lcm-lora"}
FAST_LORA = {"sd1": "latent-consistency/lcm-lora-sdv1-5", "sdxl": "latent-consistency/lcm-lora-sdxl"}


def family_override(folder: Path, families: Mapping[str, Any], what: str = "") -> Any:
    """The family the folder's ``framereel.json`` names (``"family"``), looked up in ``families``;
    None when it names none. ``what``: the kind of family, for the error ("video")."""
    override = json_config(folder / "framereel.json").get("family")
    if not override:
        return None
    if override not in families:
        kind = f"{what} " if what else ""
        raise FramereelError(f"{folder / 'framereel.json'}: unknown {kind}\"family\" {override!r}; "
                             f"choose one of {', '.join(families)}")
    return families[override]


def json_config(path: Path) -> dict[str, Any]:
    """A component's JSON config; {} when it is missing, unreadable or not a JSON object."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def model_index(folder: Path) -> dict[str, Any]:
    """A diffusers folder's ``model_index.json``; ValueError saying what is wrong with it (missing,
    not JSON, not an object, no ``_class_name``)."""
    path = folder / "model_index.json"
    if not path.is_file():
        raise ValueError("not a diffusers model folder (no model_index.json)")
    try:
        index = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ValueError("model_index.json is not text") from None
    except ValueError as err:
        raise ValueError(f"model_index.json is not valid JSON ({str(err).splitlines()[0][:80]})") from None
    except OSError as err:
        raise ValueError(f"model_index.json can't be read ({err.strerror or err})") from None
    if not isinstance(index, dict):
        raise ValueError(f"model_index.json holds a JSON {_json_kind(index)}, not the object naming the pipeline "
                         "and its parts")
    if not isinstance(index.get("_class_name"), str):
        raise ValueError('model_index.json names no pipeline (no "_class_name")')
    return index


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


WEIGHTED_PARTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
OTHER_PARTS = ("tokenizer", "tokenizer_2", "tokenizer_3", "scheduler")


def missing_parts(folder: Path, index: dict[str, Any]) -> list[str]:
    """The parts ``model_index.json`` names that the folder lacks: a denoiser, VAE or text encoder
    with no weights file, a tokenizer or scheduler with no folder (an interrupted download or copy)."""
    from .common import WEIGHT_SUFFIXES

    missing = []
    for part in (*WEIGHTED_PARTS, *OTHER_PARTS):
        entry = index.get(part)
        if not isinstance(entry, list) or None in entry:
            continue  # not in this pipeline, or left out on purpose ([null, null])
        sub = folder / part
        if not sub.is_dir():
            missing.append(f"{part}/")
        elif part in WEIGHTED_PARTS and not any(p.name.endswith(WEIGHT_SUFFIXES) for p in sub.iterdir()):
            missing.append(f"{part}/ weights")
    return missing


def check_complete(folder: Path, label: str) -> None:
    """A diffusers folder must hold every part its ``model_index.json`` names; else one line naming them."""
    missing = missing_parts(folder, model_index(folder))
    if missing:
        raise FramereelError(f"{label}: incomplete model folder, {', '.join(missing)} missing (model_index.json "
                             "names them); download or copy the whole model again")


def detect_folder(folder: Path, name: str = "") -> Family:
    """The family of a diffusers folder, from its ``model_index.json`` and component configs."""
    try:
        index = model_index(folder)
    except ValueError as err:
        raise FramereelError(f"{folder}: {err}; pass a diffusers folder saved with save_pretrained "
                             "(download it again if it came from the Hub)") from None
    override = family_override(folder, FAMILIES)
    if override:
        return override
    cls = index["_class_name"]
    kind = PIPELINE_KINDS.get(cls)
    if kind is None and cls == "StableDiffusionXLImg2ImgPipeline":
        raise FramereelError(f"{folder}: an SDXL refiner (model_index.json says {cls}) is not a model on its own; "
                             f"pass it as --refiner {folder} with an SDXL base as --model")
    if kind is None:
        raise FramereelError(f"{folder}: model_index.json says {cls}, which framereel does not render; "
                             f"supported: {SUPPORTED}")
    scheduler = json_config(folder / "scheduler" / "scheduler_config.json")
    hint = f"{name} {folder.name}".lower()
    if kind in ("sd", "sdxl"):
        unet = json_config(folder / "unet" / "config.json")
        lcm = (unet.get("time_cond_proj_dim") is not None or scheduler.get("_class_name") == "LCMScheduler"
               or cls == "LatentConsistencyModelPipeline")
        turbo = "turbo" in hint or (scheduler.get("timestep_spacing") == "trailing"
                                    and scheduler.get("_class_name", "").startswith("Euler"))
        if lcm:
            return FAMILIES["lcm" if kind == "sd" else "lcm-sdxl"]
        if turbo:
            return FAMILIES["sd-turbo" if kind == "sd" else "sdxl-turbo"]
        if kind == "sdxl":
            return FAMILIES["sdxl"]
        if unet.get("use_linear_projection"):
            return FAMILIES["sd2-v" if scheduler.get("prediction_type") == "v_prediction" else "sd2"]
        return FAMILIES["sd1"]
    transformer = json_config(folder / "transformer" / "config.json")
    if kind == "sd3":
        return FAMILIES["sd3.5" if transformer.get("qk_norm") else "sd3"]
    if "schnell" in hint:
        return FAMILIES["flux-schnell"]
    return FAMILIES["flux-dev" if transformer.get("guidance_embeds") else "flux-schnell"]


class _LazyCheckpoint(Mapping):
    """A safetensors file's tensors by name, read only when asked for (a checkpoint's keys and a
    shape or two are all detection needs)."""

    def __init__(self, path: Path):
        from safetensors import safe_open

        self._file = safe_open(str(path), "pt")
        self._keys = list(self._file.keys())
        self._set = set(self._keys)

    def __getitem__(self, key):
        return self._file.get_tensor(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)

    def __contains__(self, key):
        return key in self._set


SINGLE_FILE_TYPES = {"v1": "sd1", "v2": "sd2", "xl_base": "sdxl", "sd3": "sd3", "sd35_medium": "sd3.5",
                     "sd35_large": "sd3.5", "flux-dev": "flux-dev", "flux-schnell": "flux-schnell"}


def _checkpoint_type(path: Path) -> str:
    """diffusers' name for what a single-file checkpoint holds ("v1", "xl_base", "xl_refiner" …)."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    try:
        if path.suffix == ".safetensors":
            checkpoint = _LazyCheckpoint(path)
        else:
            import torch

            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            checkpoint = checkpoint.get("state_dict", checkpoint)
        return infer_diffusers_model_type(checkpoint)
    except Exception as err:  # a damaged or foreign file: one line, not a traceback
        raise FramereelError(f"{path}: could not read it as a checkpoint ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from err


def detect_file(path: Path) -> Family:
    """The family of a single-file checkpoint, from its keys (diffusers' own inference)."""
    model_type = _checkpoint_type(path)
    key = SINGLE_FILE_TYPES.get(model_type)
    if key is None:
        raise FramereelError(f"{path}: its weights look like a {model_type} checkpoint, which framereel does not "
                             f"render from a single file; supported: SD 1.x, SD 2.x, SDXL, SD 3/3.5, FLUX.1")
    if "turbo" in path.name.lower() and key in ("sd2", "sdxl"):
        key = "sd-turbo" if key == "sd2" else "sdxl-turbo"
    return FAMILIES[key]


# ---------------------------------------------------------------- SDXL refiner

REFINER_CLASSES = ("StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLPipeline")
REFINER_EXAMPLE = "stabilityai/stable-diffusion-xl-refiner-1.0"


def check_refiner_base(family: Family, spec: str) -> None:
    """A refiner needs an SDXL base model with steps to split; else one line."""
    if family.kind != "sdxl":
        raise FramereelError(f"--refiner {spec}: a refiner finishes an SDXL base model's frames; this model is "
                             f"{family.label}; drop --refiner or use an SDXL base model")
    if family.steps_range:
        raise FramereelError(f"--refiner {spec}: {family.label} makes a frame in {family.steps_range[0]}–"
                             f"{family.steps_range[1]} steps, which leaves nothing to hand over; drop --refiner "
                             "or use the SDXL base model")


def check_refiner(spec: str, refiner: Path, base: Path | None) -> None:
    """A refiner must be an SDXL img2img model (like SDXL's refiner) whose second text encoder is the
    base's: it runs with the base's ``text_encoder_2`` and VAE, as diffusers' docs do; else one line."""
    if refiner.is_file():
        model_type = _checkpoint_type(refiner)
        if model_type not in ("xl_refiner", "xl_base"):
            raise FramereelError(f"--refiner {spec}: its weights look like a {model_type} checkpoint, not an SDXL "
                                 f"refiner; pass an SDXL refiner file, folder or Hub id like {REFINER_EXAMPLE}")
        return
    try:
        index = model_index(refiner)
    except ValueError as err:
        raise FramereelError(f"--refiner {spec}: {err}; pass an SDXL refiner folder, .safetensors file or Hub id "
                             f"like {REFINER_EXAMPLE}") from None
    cls = index["_class_name"]
    unet = json_config(refiner / "unet" / "config.json")
    if cls not in REFINER_CLASSES or unet.get("addition_embed_type") != "text_time":
        raise FramereelError(f"--refiner {spec}: model_index.json says {cls}, not an SDXL refiner "
                             f"(StableDiffusionXLImg2ImgPipeline, like {REFINER_EXAMPLE})")
    check_complete(refiner, f"--refiner {spec}")
    mine, theirs = json_config(refiner / "text_encoder_2" / "config.json"), \
        json_config(base / "text_encoder_2" / "config.json") if base is not None else {}
    keys = ("hidden_size", "projection_dim")
    if mine and theirs and any(mine.get(k) != theirs.get(k) for k in keys):
        raise FramereelError(f"--refiner {spec}: its second text encoder ({', '.join(f'{k} {mine.get(k)}' for k in keys)}) "
                             "is not the base model's, which it shares; use the refiner made for this base model")


def refiner_steps(scheduler, steps: int, switch: float, strength: float | None = None) -> tuple[int, int]:
    """(base steps, refiner steps) of ``steps`` split at ``switch`` the way diffusers splits them
    (``denoising_end`` / ``denoising_start``); ``strength``: of an img2img call's remaining steps."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if strength is not None:
        start = max(steps - min(int(steps * strength), steps), 0)
        timesteps = timesteps[start * scheduler.order:]
    total = scheduler.config.num_train_timesteps
    cutoff = int(round(total - switch * total))
    base = int((timesteps >= cutoff).sum())
    return base, int((scheduler.timesteps < cutoff).sum())


def native_size(folder: Path, family: Family) -> int:
    """The size a model was trained at: its denoiser's sample size × the VAE's downscale."""
    vae = json_config(folder / "vae" / "config.json")
    scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    if family.kind == "flux":  # FluxPipeline's default_sample_size
        return 128 * scale
    denoiser = json_config(folder / ("transformer" if family.kind == "sd3" else "unet") / "config.json")
    try:
        return int(denoiser["sample_size"]) * scale
    except (KeyError, TypeError, ValueError):
        return family.size


def with_lcm_lora(family: Family) -> Family:
    """The family a model becomes with an LCM-LoRA: LCM scheduler, 4 steps, guidance 1."""
    key = LCM_LORA.get(family.kind)
    if key is None or family.key in ("lcm", "lcm-sdxl"):
        return family
    return FAMILIES[key]


# ---------------------------------------------------------------- conditioning


def encode(pipe, family: Family, text: str, device) -> dict[str, Any]:
    """The conditioning tensors a prompt gives, keyed by the family pipeline's argument names
    (batch of 1): what the pipeline would compute from ``prompt=text`` itself."""
    if family.kind == "sd":
        embeds, _ = pipe.encode_prompt(text, device, 1, False)
        return {"prompt_embeds": embeds}
    if family.kind == "sdxl":
        embeds, _, pooled, _ = pipe.encode_prompt(text, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    if family.kind == "sd3":
        embeds, _, pooled, _ = pipe.encode_prompt(text, None, None, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False,
                                                  max_sequence_length=family.max_sequence_length)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    embeds, pooled, _ = pipe.encode_prompt(text, None, device=device, num_images_per_prompt=1,
                                           max_sequence_length=family.max_sequence_length)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}


def encode_negative(pipe, family: Family, text: str, device) -> dict[str, Any]:
    """The negative conditioning for classifier-free guidance, as the pipeline makes it
    (SDXL models that zero an empty negative prompt get zeros)."""
    import torch

    if family.kind == "sdxl" and not text and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        positive = encode(pipe, family, "", device)
        return {f"negative_{k}": torch.zeros_like(v) for k, v in positive.items()}
    return {f"negative_{k}": v for k, v in encode(pipe, family, text, device).items()}


def uses_cfg(pipe, family: Family, guidance: float) -> bool:
    """Whether the pipeline runs classifier-free guidance (a negative branch) at this guidance."""
    if family.kind == "flux":
        return False  # guidance-distilled: the guidance is an embedding, not a second branch
    denoiser = getattr(pipe, "unet", None)
    if denoiser is not None and denoiser.config.get("time_cond_proj_dim") is not None:
        return False  # LCM-distilled UNets embed the guidance
    return guidance > 1


def lerp_conditioning(a: dict[str, Any], b: dict[str, Any], t: float) -> dict[str, Any]:
    """A morph's conditioning: every tensor linearly interpolated."""
    import torch

    return {k: torch.lerp(a[k], b[k], t) for k in a}


def frame_conditioning(frame, embed: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """A frame's conditioning from ``embed(prompt)``; a morph's has every tensor lerped between its
    two prompts' (SDXL's size and crop time ids need nothing: both ends of a morph share one size)."""
    cond = embed(frame.prompt)
    if frame.kind == "morph":
        cond = lerp_conditioning(cond, embed(frame.morph_prompt), frame.morph[2])
    return cond


def cat_conditioning(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


def noise_shape(pipe, family: Family, width: int, height: int) -> tuple[int, ...]:
    """The shape of one frame's starting noise, as the family's pipeline draws it (before packing)."""
    vsf = pipe.vae_scale_factor
    if family.kind == "flux":
        channels = pipe.transformer.config.in_channels // 4
        return (1, channels, 2 * (height // (vsf * 2)), 2 * (width // (vsf * 2)))
    denoiser = pipe.transformer if family.kind == "sd3" else pipe.unet
    return (1, denoiser.config.in_channels, height // vsf, width // vsf)


def pack(pipe, family: Family, noise):
    """Noise in the layout the pipeline's ``latents`` argument takes (FLUX packs 2×2 patches)."""
    if family.kind != "flux":
        return noise
    b, c, h, w = noise.shape
    return pipe._pack_latents(noise, b, c, h, w)


def call_kwargs(family: Family) -> dict[str, Any]:
    """Extra pipeline arguments a family needs on every call."""
    return {"max_sequence_length": family.max_sequence_length} if family.kind in ("sd3", "flux") else {}


def pipeline_class(family: Family, img2img: bool = False):
    import diffusers

    return getattr(diffusers, (IMAGE2IMAGE if img2img else TEXT2IMAGE)[family.kind])


def frame_problems(family: Family, frames, scheduler: str) -> tuple[list[str], list[str]]:
    """What this family cannot do with these frames (errors: refused before loading) and what it
    can but should not (warnings): steps outside a few-step model's range, guidance above a
    distilled model's, img2img with no step left to run."""
    errors: list[str] = []
    warnings: list[str] = []
    warned: set[tuple] = set()
    for f in frames:
        if family.kind == "flux" and f.negative_prompt:
            errors.append(f"frame {f.index}: {family.label} takes no negative prompt (guidance-distilled); "
                          "drop negative_prompt")
        if f.kind == "chain" and f.strength and int(f.steps * f.strength) < 1:
            errors.append(f"frame {f.index}: img2img at strength {f.strength:g} with {f.steps} steps runs no step "
                          f"(steps × strength < 1); use at least {int(1 / f.strength) + 1} steps or a higher strength")
        if family.steps_range and not family.steps_range[0] <= f.steps <= family.steps_range[1] \
                and ("steps", f.steps) not in warned:
            warned.add(("steps", f.steps))
            lo, hi = family.steps_range
            warnings.append(f"{family.label} is made for {lo}–{hi} steps; {f.steps} asked for (frame {f.index}): "
                            "it runs, but slower and rarely better")
        if family.guidance_max is not None and f.guidance > family.guidance_max and ("g", f.guidance) not in warned:
            warned.add(("g", f.guidance))
            warnings.append(f"{family.label} is made for guidance ≤ {family.guidance_max:g}; {f.guidance:g} asked "
                            f"for (frame {f.index}) may burn the image")
    return errors, warnings


def schedulers_for(family: Family) -> tuple[str, ...]:
    """The schedulers to offer for ``family``: flow-matching ones for SD 3/FLUX; the LCM scheduler
    only for LCM models (a model not distilled for it gives a blurred image)."""
    from ..settings import SCHEDULERS

    if family.flow:
        return FLOW_SCHEDULERS
    return tuple(s for s in SCHEDULERS if s not in ("auto", *FLOW_SCHEDULERS) and (s != "lcm" or family.scheduler == "lcm"))


def check_scheduler(family: Family, scheduler: str) -> None:
    if family.flow and scheduler not in FLOW_SCHEDULERS:
        raise FramereelError(f"--scheduler {scheduler}: {family.label} is a flow-matching model and takes only "
                             f"{', '.join(FLOW_SCHEDULERS)} (or leave --scheduler out)")
    if not family.flow and scheduler in FLOW_SCHEDULERS:
        raise FramereelError(f"--scheduler {scheduler} is for flow-matching models (SD 3, FLUX); "
                             f"{family.label} takes dpm++, pndm, ddim, euler, euler-a, heun, unipc or lcm")


# ---------------------------------------------------------------- doctor


def component_bytes(folder: Path, bytes_per_parameter: int = 2) -> dict[str, int]:
    """Each component's weights in bytes at fp16, from the safetensors headers (nothing loaded);
    the largest variant a component ships is counted once."""
    import math

    from safetensors import safe_open

    sizes: dict[str, int] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(sub.glob("*.safetensors"))
        plain = [f for f in files if ".fp16." not in f.name] or files
        total = 0
        for f in plain:
            with safe_open(str(f), "pt") as st:
                total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
        if total:
            sizes[sub.name] = total * bytes_per_parameter
    return sizes


def memory_advice(sizes: dict[str, int], free_bytes: int | None, native: int) -> tuple[str, str]:
    """(what fits, the flags to add) for a GPU with ``free_bytes`` free, from the fp16 weights.

    Rules of thumb: everything on the GPU needs the weights plus ~2 GiB of activations (more at
    1024²: the VAE decode alone takes ~3 GiB there, tiling cuts that to a few hundred MiB);
    ``--offload model`` needs the largest component plus that; ``--offload sequential`` streams
    layer by layer and fits almost anything, slowly."""
    gib = 2**30
    total, largest = sum(sizes.values()), max(sizes.values(), default=0)
    working = 2 * gib + (3 * gib if native >= 1024 else 0)
    need = f"weights {total / gib:.1f} GiB at fp16 (largest part {largest / gib:.1f} GiB)"
    if free_bytes is None:
        return need, ""
    flags = []
    if total + working <= free_bytes:
        return f"{need}: fits in {free_bytes / gib:.1f} GiB free", ""
    if largest + working <= free_bytes:
        flags.append("--offload model")
    elif largest + 2 * gib <= free_bytes:
        flags += ["--offload model", "--vae-tiling"]
    else:
        flags.append("--offload sequential")
    if native >= 1024 and "--vae-tiling" not in flags:
        flags.append("--vae-tiling")
    if free_bytes < 4 * gib:
        flags.append("--attention-slicing")
    return f"{need}: does not fit whole in {free_bytes / gib:.1f} GiB free", " ".join(flags)
