"""Helpers every backend shares: finding a model, adapter or VAE (a folder, a single file or a Hub
id: :func:`resolve_source`), model-folder inspection, schedulers by name, seeded noise, slerp, a
prompt-embedding cache."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FramereelError

SD1_NATIVE = 512
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


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


# ------------------------------------------------------------------ finding a model: folder, single file or Hub id


HUB_FIXES = {  # what to pass instead of a Hub id the Hub can't give, per option
    "--model": "pass --model PATH to a local diffusers folder or .safetensors file, or try --model demo "
               "(offline demo model)",
    "--motion-adapter": "pass --motion-adapter PATH to a local MotionAdapter folder, or try --motion-adapter demo "
                        "(with --model demo)",
    "--refiner": "pass --refiner PATH to a local SDXL refiner folder or .safetensors file",
    "--tiny-vae": "pass --tiny-vae PATH to a local AutoencoderTiny folder",
    "--lora": "pass a local LoRA .safetensors file instead",
}


def hub_error(spec: str, err: Exception, flag: str = "--model") -> FramereelError:
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


@dataclass(frozen=True)
class SourceKind:
    """What one option names (a model, a motion adapter, a tiny VAE, a refiner) and how it is found.
    Messages are format strings of ``spec`` (as given) and ``path`` (expanded)."""

    flag: str  # e.g. "--tiny-vae"
    marker: str | None  # the file a folder of this kind holds (None: any existing path is taken)
    not_a_folder: str  # a folder without ``marker``
    missing: str  # a local path that is not there
    missing_file: str = ""  # a single file (``.safetensors``/``.ckpt``) that is not there ("" : ``missing``)
    files: bool = False  # single ``.safetensors``/``.ckpt`` files are taken
    bare_names_on_hub: bool = False  # a name without "/" is a Hub id (else it must be owner/name)
    whole_pipeline: bool = False  # a Hub id downloads as a whole diffusers pipeline (else *.json, *.safetensors)
    demo: Path | None = None  # where ``demo`` points
    demo_part: str = ""  # what the demo folder must hold ("": ``marker``)
    no_demo: str = ""  # the demo's files are missing


@dataclass(frozen=True)
class Source:
    """Where a resolved model, adapter or VAE lies: a local folder or single file (a Hub id: its
    folder in the Hugging Face cache)."""

    path: Path
    single_file: bool = False
    hub_id: str | None = None  # the Hub id it was fetched as
    demo: bool = False  # the demo files shipped with framereel

    @property
    def name(self) -> str:
        """How run.json and doctor name it: ``demo``, the Hub id, else the absolute path."""
        return "demo" if self.demo else self.hub_id or str(self.path.resolve())


def resolve_source(spec: str, kind: SourceKind) -> Source:
    """Find what ``spec`` names: ``demo``, a local folder (holding ``kind.marker``), a single file,
    or a Hub id fetched into the Hugging Face cache (the only step that may reach the network).
    Anything else is a one-line error naming ``kind.flag``."""
    if spec == "demo" and kind.demo is not None:
        if not (kind.demo / (kind.demo_part or kind.marker or "")).exists():
            raise FramereelError(kind.no_demo)
        return Source(kind.demo, demo=True)
    path = Path(spec).expanduser()
    if path.is_dir() or (kind.marker is None and path.exists()):
        if kind.marker is not None and not (path / kind.marker).is_file():
            raise FramereelError(kind.not_a_folder.format(spec=spec, path=path))
        return Source(path, single_file=path.is_file())
    if kind.files and path.suffix in SINGLE_FILE_SUFFIXES:
        if not path.is_file():
            raise FramereelError((kind.missing_file or kind.missing).format(spec=spec, path=path))
        return Source(path, single_file=True)
    if not _hub_like(spec, kind.bare_names_on_hub):
        raise FramereelError(kind.missing.format(spec=spec, path=path))
    return Source(_download(spec, kind), hub_id=spec)


def _hub_like(spec: str, bare_names: bool) -> bool:
    if spec.startswith((".", "/", "~")):
        return False
    if bare_names:
        return os.sep not in spec.strip("/").replace("/", "", 1)
    return spec.count("/") == 1


def _download(spec: str, kind: SourceKind) -> Path:
    quiet_libraries()
    try:
        if kind.whole_pipeline:
            from diffusers import DiffusionPipeline

            return Path(DiffusionPipeline.download(spec))
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as err:  # the Hub raises many kinds; each becomes one line for the user
        raise hub_error(spec, err, kind.flag) from err


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


# ------------------------------------------------------------------ model folders


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


def file_sha256(path: Path) -> str:
    """A short hash of a (possibly large) file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def contents_fingerprint(path: Path) -> str:
    """A hash of a file's, or a folder's config and weight files', bytes (a retrained adapter of
    the same size must re-render its frames)."""
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.suffix in (".json", *WEIGHT_SUFFIXES):
            h.update(p.relative_to(path).as_posix().encode())
            h.update(file_sha256(p).encode())
    return h.hexdigest()[:16]


def native_size(folder: Path) -> int:
    """The image size a diffusers folder's UNet and VAE were made for (SD 1.x's 512 if unknown)."""
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, KeyError, ValueError, TypeError):
        return SD1_NATIVE


def recommended_settings(folder: Path) -> dict[str, Any]:
    """The ``defaults`` of a model folder's ``framereel.json`` (steps, guidance … its author suggests)."""
    path = folder / "framereel.json"
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("defaults", {}))


# ------------------------------------------------------------------ noise and conditioning


def seeded_noise(seed: int, shape: tuple[int, ...]):
    """The float32 noise a seed gives, drawn on the CPU (as diffusers' pipelines draw it), so a
    frame's starting point never depends on the device."""
    import torch

    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


def slerp(a, b, t: float, dot_threshold: float = 0.9995):
    """Spherical interpolation between two noise tensors (linear when they are nearly parallel)."""
    import torch

    dot = torch.sum(a * b) / (a.norm() * b.norm())
    if abs(float(dot)) > dot_threshold:
        return torch.lerp(a, b, t)
    theta = torch.acos(dot)
    return (torch.sin((1 - t) * theta) * a + torch.sin(t * theta) * b) / torch.sin(theta)


class EmbeddingCache:
    """Prompt embeddings computed once per distinct text with ``encode(text)``."""

    def __init__(self, encode: Callable[[str], Any]):
        self.encode = encode
        self._cache: dict[str, Any] = {}

    def __call__(self, text: str):
        if text not in self._cache:
            self._cache[text] = self.encode(text)
        return self._cache[text]

    def clear(self) -> None:
        self._cache.clear()


# ------------------------------------------------------------------ measured settings, cached per machine


def cache_dir() -> Path:
    """Where framereel keeps what it measured on this machine ($FRAMEREEL_CACHE_DIR, else
    $XDG_CACHE_HOME/framereel, else ~/.cache/framereel)."""
    explicit = os.environ.get("FRAMEREEL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "framereel"


def measured(name: str, key: str, measure: Callable[[], Any]) -> Any:
    """``measure()``'s result, cached in ``cache_dir()/name.json`` under ``key``: measured once per
    key, and by one process at a time (others wait on a lock and read its result), so worker
    processes starting together agree."""
    import fcntl

    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / f"{name}.lock", "a+")  # noqa: SIM115 - held until the end of the function
    except OSError:
        return measure()  # an unwritable cache never stops a render: measure every time
    path = folder / f"{name}.json"
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
        if key not in table:
            table[key] = measure()
            tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
            os.replace(tmp, path)
        return table[key]


def step_callback(on_step: Callable[[int, int], None] | None, steps: int):
    """A ``callback_on_step_end`` reporting steps done of ``steps``, counted across the calls it is
    passed to (an SDXL base and its refiner share one count)."""
    done = [0]

    def step_end(pipe, step, timestep, kwargs):
        done[0] += 1
        if on_step is not None:
            on_step(min(done[0], steps), steps)
        return kwargs

    return step_end
