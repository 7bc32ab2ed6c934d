"""Helpers every backend shares: model-folder inspection, seeded noise, slerp, a prompt-embedding cache."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

SD1_NATIVE = 512
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx")


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
