"""Depth maps of frames, through transformers' depth-estimation models (Depth Anything V2, DPT,
MiDaS-style checkpoints: a Hub id or a local folder holding ``config.json`` and
``preprocessor_config.json``).

One loaded model per (model, device) is kept for the run. :func:`estimate_depth` gives the model's own
prediction at the picture's size: these models predict *relative inverse depth* (larger = nearer),
which is what Deforum's 3D warp and a ControlNet's depth map start from; callers turn it into the
depth they need.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .backends.common import HUB_FIXES, WEIGHT_SUFFIXES, Source, SourceKind, quiet_libraries, resolve_source
from .errors import FramereelError

HUB_FIXES.setdefault("--depth-model", "pass --depth-model PATH to a local depth-estimation model folder "
                                      "(config.json, preprocessor_config.json and its weights)")

DEPTH_MODEL = SourceKind(
    flag="--depth-model",
    marker="config.json",
    not_a_folder="--depth-model {spec}: {path} has no config.json; pass a transformers depth-estimation model folder",
    missing="--depth-model {spec}: no such folder; pass a local depth-estimation model folder or a Hub id "
            "(owner/name)",
)
CONTROL_FLAG = '"control" "depth_model"'  # a control entry's own depth model
HUB_FIXES.setdefault(CONTROL_FLAG, 'give the control\'s "depth_model" as a local depth-estimation model folder')
CONTROL_DEPTH_MODEL = SourceKind(
    flag=CONTROL_FLAG,
    marker="config.json",
    not_a_folder=CONTROL_FLAG + " {spec}: {path} has no config.json; give a transformers depth-estimation model folder",
    missing=CONTROL_FLAG + " {spec}: no such folder; pass a local depth-estimation model folder or a Hub id (owner/name)",
)
_LOCK = threading.Lock()


def find_depth_model(spec: str, kind: SourceKind = DEPTH_MODEL) -> Source:
    """The depth model ``spec`` names, found and checked to be a transformers depth-estimation model
    (its ``config.json``: a ``model_type``, and an architecture ``…ForDepthEstimation`` when it names one).
    ``kind``: who named it, for errors (``--depth-model``, or a control's ``"depth_model"``)."""
    if Path(spec).expanduser().is_file():
        raise FramereelError(f"{kind.flag} {spec}: is a file; pass the depth-estimation model's folder "
                             "(config.json, preprocessor_config.json and its weights) or a Hub id")
    source = resolve_source(spec, kind)
    try:
        config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict):
        names = config.get("architectures") or [config.get("_class_name") or "no model_type"]
        if "model_type" not in config or (config.get("architectures") and
                                          not any(str(n).endswith("ForDepthEstimation") for n in names)):
            raise FramereelError(f"{kind.flag} {spec}: not a transformers depth-estimation model "
                                 f"({', '.join(map(str, names))}); pass a Depth Anything or DPT model folder or Hub id")
    if source.hub_id is None and not any(p.suffix in WEIGHT_SUFFIXES for p in source.path.iterdir()):
        raise FramereelError(f"{kind.flag} {spec}: {source.path} holds no weights (model.safetensors); "
                             "download the whole model folder")
    return source


def depth_model_name(spec: str) -> str:
    """How run.json and frame hashes name the depth model (a Hub id, or the folder's absolute path)."""
    return find_depth_model(spec).name


@lru_cache(maxsize=4)
def load_depth_model(spec: str, device: str = "cpu") -> Any:
    """transformers' ``depth-estimation`` pipeline of ``spec`` on ``device`` (kept for the run)."""
    source = find_depth_model(spec)
    quiet_libraries()
    from transformers import pipeline

    try:
        return pipeline("depth-estimation", model=str(source.path), device=device)
    except (OSError, ValueError, KeyError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FramereelError(f"--depth-model {spec}: not a depth-estimation model transformers can load "
                             f"({reason}); pass a Depth Anything / DPT folder") from err


def estimate_depth(image: Any, spec: str, device: str = "cpu") -> np.ndarray:
    """The model's relative inverse depth (larger = nearer) of a PIL ``image``, float32 of shape
    (height, width) at the picture's own size."""
    estimator = load_depth_model(spec, device)
    import torch

    with _LOCK, torch.inference_mode():
        out = estimator(image.convert("RGB"))
    depth = out["predicted_depth"].float().cpu().numpy()
    if depth.ndim == 3:
        depth = depth[0]
    if depth.shape != (image.height, image.width):  # older transformers give the model's own size
        t = torch.from_numpy(depth)[None, None]
        depth = torch.nn.functional.interpolate(t, size=(image.height, image.width), mode="bicubic",
                                                align_corners=False)[0, 0].numpy()
    return depth.astype(np.float32)


_CACHE: dict[tuple[str, str], np.ndarray] = {}
_CACHE_SIZE = 8  # a chain needs its parent's map; a few more cover retries and cadence blocks


def cached_depth(image: Any, spec: str, device: str = "cpu") -> np.ndarray:
    """:func:`estimate_depth` of ``image``, kept by the picture's hash (sha256 of its pixels) and the
    model, so a frame's map is estimated once however often it is asked for. ``device``: the backend's;
    devices torch can't run the model on (a Tenstorrent chip) estimate on the CPU."""
    import hashlib

    rgb = image.convert("RGB")
    key = (hashlib.sha256(rgb.tobytes() + repr(rgb.size).encode()).hexdigest(), spec)
    if key not in _CACHE:
        device = device if device.split(":")[0] in ("cpu", "cuda", "mps", "xpu") else "cpu"
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = estimate_depth(rgb, spec, device)
    return _CACHE[key]


def depth_picture(depth: np.ndarray) -> Any:
    """A depth map as an 8-bit greyscale picture, scaled to its own range (near bright, as Deforum saves them)."""
    from PIL import Image

    d = np.asarray(depth, np.float64)
    span = float(d.max() - d.min()) if np.isfinite(d).all() and d.size else 0.0
    scaled = (d - d.min()) / span * 255 if span > 0 else np.zeros_like(d)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
