"""What the finishing stages share: model specs, file fingerprints, devices, stage records, events."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..events import EventHandler, StageDone, StageProgress, StageStarted
from ..manifest import TMP_MARK, Manifest

STAGE_KEY = "finishing"  # run.json: {"finishing": {"upscale": {...}, "interpolate": {...}}}

_fingerprints: dict[tuple[str, int, int], str] = {}
_checked: set[tuple[str, str, int, int]] = set()


def split_spec(text: str, option: str) -> tuple[Path, str | None]:
    """``"model.pth:2"`` → (Path("model.pth"), "2"); ``"model.pth"`` → (Path("model.pth"), None).

    Only a suffix without a path separator counts, so ``C:`` or ``dir:x/model.pth`` stay paths.
    """
    path, sep, tail = text.rpartition(":")
    if sep and path and "/" not in tail and "\\" not in tail and tail:
        model, arg = Path(path), tail
    else:
        model, arg = Path(text), None
    if not model.is_file():
        raise FramereelError(f"{option} {text}: no such model file ({model})")
    return model, arg


def model_fingerprint(path: Path) -> str:
    """A short hash of a model file's bytes (memoised per path, size and mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _fingerprints:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _fingerprints[key] = h.hexdigest()[:16]
    return _fingerprints[key]


def check_model_file(path: Path, kind: str, load) -> None:
    """Load ``path`` once with ``load`` to refuse a wrong file before anything renders (remembered
    per kind, path, size and mtime, so a run checks each file once)."""
    st = path.stat()
    key = (kind, str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _checked:
        load(path)
        _checked.add(key)


def why(err: BaseException) -> str:
    """An exception as a short reason in words: its first sentence, or its type's name where its
    text says nothing by itself (a pickle's ``KeyError: 101``)."""
    text = (str(err).strip().splitlines() or [""])[0].split(". ")[0].strip().rstrip(".")
    if sum(c.isalpha() for c in text) < 4:
        return type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def pick_device(device: str = "auto"):
    """``auto`` → cuda, then mps, then cpu. Returns (torch.device, dtype): fp16 on GPUs, fp32 on CPUs."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    dev = torch.device(device)
    return dev, (torch.float16 if dev.type in ("cuda", "mps") else torch.float32)


def remove_temp_files(folder: Path) -> None:
    """Temp files a killed stage left behind (called while holding the folder lock)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if TMP_MARK in p.name:
                p.unlink(missing_ok=True)


def record_stage(manifest: Manifest | None, stage: str, data: dict[str, Any]) -> None:
    """Store a stage's settings and outputs in ``run.json`` (atomically)."""
    if manifest is None:
        return
    manifest.run.setdefault(STAGE_KEY, {})[stage] = data
    manifest.save()


def stage_started(on_event: EventHandler | None, stage: str, total: int) -> None:
    if on_event is not None:
        on_event(StageStarted(stage, total))


def stage_progress(on_event: EventHandler | None, stage: str, done: int, total: int, computed: int, cached: int) -> None:
    if on_event is not None:
        on_event(StageProgress(stage, done, total, computed, cached))


def stage_done(on_event: EventHandler | None, stage: str, computed: int, cached: int, seconds: float,
               model_calls: int) -> None:
    if on_event is not None:
        on_event(StageDone(stage, computed, cached, round(seconds, 3), model_calls))


def require(module: str, feature: str):
    """Import ``module`` or say in one line how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise FramereelError(f"{feature} needs the {module} package: pip install 'framereel[finishing]'") from None
