"""``--upscale MODEL[:SCALE]``: frames → ``out/upscaled/`` through any super-resolution model spandrel loads.

The model runs on tiles of ``tile`` pixels (of the source frame), each with ``overlap`` pixels of
context on every side that are cut away after the model, so memory is bounded by the tile, not
the frame, and tiles meet without seams (exactly so once the overlap covers the model's
receptive field). GPUs run in fp16 where the architecture supports it; CPUs in fp32.

Each upscaled frame is a PNG whose metadata carries the hash of (source frame's bytes, model
file's fingerprint, scale, tile, overlap, dtype): a rerun or a resumed run computes only the
frames whose hash differs, and loads the model only if there is one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import FramereelError
from ..manifest import (
    FRAMES_DIR,
    MANIFEST,
    Manifest,
    atomic_write_bytes,
    file_digest,
    folder_lock,
    frame_index,
    params_hash,
    png_bytes,
    read_png_metadata,
)
from .common import (
    EventHandler,
    check_model_file,
    model_fingerprint,
    pick_device,
    record_stage,
    remove_temp_files,
    require,
    split_spec,
    stage_done,
    stage_progress,
    stage_started,
    why,
)

UPSCALED_DIR = "upscaled"
HASH_KEY = "framereel:upscale"
DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16


@dataclass(frozen=True)
class UpscaleSpec:
    """``model``: a .pth/.pt/.ckpt/.safetensors file; ``scale``: the final factor (None: the model's own);
    ``tile``: tile side in source pixels (0: the whole frame at once); ``overlap``: context pixels per side."""

    model: Path
    scale: float | None = None
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP


def parse_upscale(text: str, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> UpscaleSpec:
    """``"4x-model.pth"`` or ``"4x-model.pth:2"`` → an :class:`UpscaleSpec`."""
    model, arg = split_spec(text, "--upscale")
    scale = None
    if arg is not None:
        try:
            scale = float(arg.rstrip("x"))
        except ValueError:
            raise FramereelError(f"--upscale {text}: the part after ':' is the scale, e.g. {model}:2") from None
        if not 1 <= scale <= 16:
            raise FramereelError(f"--upscale {text}: scale must be from 1 to 16")
    if tile < 0 or overlap < 0:
        raise FramereelError("--upscale: the tile size and its overlap must be 0 or more pixels")
    return UpscaleSpec(model, scale, tile, overlap)


# ------------------------------------------------------------------ the model


def known_architectures() -> list[str]:
    from spandrel import MAIN_REGISTRY

    return sorted({a.architecture.name for a in MAIN_REGISTRY.architectures()}, key=str.lower)


def load_upscaler(path: Path, device: str = "auto"):
    """Load ``path`` with spandrel; a file it cannot read or identify, or a model that is not
    image-to-image super-resolution, is one line naming the file."""
    import torch

    require("spandrel", "--upscale")
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    dev, dtype = pick_device(device)
    loader = ModelLoader(device="cpu")
    try:
        state = loader.load_state_dict_from_file(path)
    except Exception as err:  # torch.load, safetensors and spandrel raise many kinds on a foreign file
        reason = "it holds no state dict" if isinstance(err, (AttributeError, TypeError)) else why(err)
        raise FramereelError(f"{path}: cannot read it as a model file (a .pth, .pt, .ckpt or .safetensors "
                             f"state dict): {reason}") from None
    try:
        model = loader.load_from_state_dict(state)
    except UnsupportedModelError:
        raise FramereelError(
            f"{path}: spandrel cannot identify this model; it knows {', '.join(known_architectures())}"
        ) from None
    except Exception as err:  # an architecture's loader given tensors of other shapes
        raise FramereelError(f"{path}: cannot load it as a super-resolution model: {why(err)}") from None
    if not isinstance(model, ImageModelDescriptor) or model.purpose not in ("SR", "Restoration"):
        raise FramereelError(f"{path}: a {model.architecture.name} model ({model.purpose}), not an upscaler")
    if dtype == torch.float16 and not model.supports_half:
        dtype = torch.float32
    model.to(dev).eval()
    if dtype != torch.float32:
        model.to(dtype)
    return model, dev, dtype


def check_upscaler(spec: UpscaleSpec) -> None:
    """Refuse a model file ``--upscale`` could not use, before anything renders (loaded once, on the CPU)."""
    check_model_file(spec.model, "upscale", lambda path: load_upscaler(path, "cpu"))


def run_tiled(model, image: Any, scale: int, tile: int, overlap: int, on_tile=None) -> Any:
    """``model`` on ``image`` (a 1×C×H×W tensor) tile by tile; returns the 1×C×sH×sW result.

    Each tile of ``tile``×``tile`` source pixels is run with ``overlap`` pixels of neighbouring
    context on each side (fewer at the frame's edge); only its own region of the output is kept.
    """
    import torch

    _, c, h, w = image.shape
    if not tile or (h <= tile and w <= tile):
        return model(image)
    out = torch.empty((1, c, h * scale, w * scale), dtype=image.dtype, device=image.device)
    ys, xs = range(0, h, tile), range(0, w, tile)
    n, total = 0, len(ys) * len(xs)
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            cy0, cx0 = max(0, y0 - overlap), max(0, x0 - overlap)
            cy1, cx1 = min(h, y1 + overlap), min(w, x1 + overlap)
            result = model(image[:, :, cy0:cy1, cx0:cx1])
            oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                result[:, :, oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale]
            n += 1
            if on_tile:
                on_tile(n, total)
    return out


def upscale_image(model, image: Image.Image, spec: UpscaleSpec, device, dtype) -> Image.Image:
    """One PIL image through the model (tiled), then resized to ``spec.scale`` if that differs
    from the model's own factor."""
    import torch

    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=dtype)
    with torch.inference_mode():
        y = run_tiled(model, x, model.scale, spec.tile, spec.overlap)
    y = y.float().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
    result = Image.fromarray((y * 255.0 + 0.5).astype(np.uint8))
    if spec.scale is not None and spec.scale != model.scale:
        size = (round(image.width * spec.scale), round(image.height * spec.scale))
        result = result.resize(size, Image.Resampling.LANCZOS)
    return result


# ------------------------------------------------------------------ the stage


def upscaled_name(index: int) -> str:
    return f"frame_{index:03d}.png"


def upscale_sources(
    out: Path,
    spec: UpscaleSpec,
    sources: list[tuple[int, Path]],
    *,
    manifest: Manifest | None = None,
    device: str = "auto",
    on_event: EventHandler | None = None,
) -> dict[int, Path]:
    """Upscale each (index, frame path) into ``out/upscaled/``; returns index → upscaled path.

    The caller holds the folder lock. Frames already upscaled with the same source bytes, model
    file, scale and tile settings are reused without loading the model.
    """
    folder = out / UPSCALED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(folder)
    fingerprint = model_fingerprint(spec.model)
    _, dtype = pick_device(device)
    settings = {"model": fingerprint, "scale": spec.scale, "tile": spec.tile, "overlap": spec.overlap}
    loaded = None  # (model, device, dtype) once a frame needs the model
    results: dict[int, Path] = {}
    records: dict[str, Any] = {}
    computed = cached = model_calls = 0
    stage: dict[str, Any] = {"model": str(spec.model), "fingerprint": fingerprint, "scale": spec.scale,
                             "tile": spec.tile, "overlap": spec.overlap}
    t0 = time.perf_counter()
    stage_started(on_event, "upscale", len(sources))
    for n, (index, src) in enumerate(sources):
        target = folder / upscaled_name(index)
        source_hash = file_digest(src)
        key = params_hash({**settings, "source": source_hash, "dtype": str(dtype).replace("torch.", "")})
        meta = read_png_metadata(target)
        if meta is None or meta.get(HASH_KEY) != key:
            loaded = _write_upscaled(target, key, src, spec, device, loaded, stage)
            computed += 1
            model_calls += 1
        else:
            cached += 1
        results[index] = target
        records[str(index)] = {"file": f"{UPSCALED_DIR}/{target.name}", "source_hash": source_hash, "key": key,
                               "hash": file_digest(target)}
        if computed and (n % 8 == 0 or n == len(sources) - 1):  # nothing finished is lost if killed
            record_stage(manifest, "upscale", {**stage, "frames": records})
        stage_progress(on_event, "upscale", n + 1, len(sources), computed, cached)
    record_stage(manifest, "upscale", {**stage, "frames": records})
    if loaded is not None:
        del loaded
        _empty_gpu_cache()
    stage_done(on_event, "upscale", computed, cached, time.perf_counter() - t0, model_calls)
    return results


def _write_upscaled(target: Path, key: str, src: Path, spec: UpscaleSpec, device: str,
                    loaded: tuple[Any, Any, Any] | None, stage: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Upscale ``src`` into ``target`` with its hash ``key``, loading the model on first use (and
    noting it in ``stage``); returns (model, device, dtype)."""
    if loaded is None:
        # the key keeps the dtype asked for: a model without fp16 runs in fp32 on a GPU, every time
        loaded = load_upscaler(spec.model, device)
        model, dev, run_dtype = loaded
        stage.update(architecture=model.architecture.name, model_scale=model.scale, device=str(dev),
                     dtype=str(run_dtype).replace("torch.", ""))
    model, dev, run_dtype = loaded
    with Image.open(src) as im:
        image = upscale_image(model, im, spec, dev, run_dtype)
    atomic_write_bytes(target, png_bytes(image, {HASH_KEY: key, "source": f"{FRAMES_DIR}/{src.name}",
                                                 "upscaler": spec.model.name}))
    return loaded


def _empty_gpu_cache() -> None:
    """Give the released model's GPU memory back to the driver."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def frame_sources(out: Path, frames: str | None = None) -> list[tuple[int, Path]]:
    """The frames present in ``out/frames`` (optionally a subset like ``"0-4,7"``), in index order."""
    from ..validate import format_indices, parse_indices

    frames_dir = out / FRAMES_DIR
    if not frames_dir.is_dir():
        raise FramereelError(f"{out}: no frames/ folder; render first with `framereel frames` or `framereel make`")
    present = sorted((frame_index(p), p) for p in frames_dir.glob("frame_*.png") if frame_index(p) is not None)
    if frames and present:
        pick = set(parse_indices(frames))
        missing = sorted(pick - {i for i, _ in present})
        if missing:
            raise FramereelError(f"{out}: --frames {frames}: frames/ has no frame {format_indices(missing)} "
                                 f"(it holds {format_indices([i for i, _ in present])})")
        present = [(i, p) for i, p in present if i in pick]
    if not present:
        raise FramereelError(f"{out}: no frames to upscale (frames/ has no frame_NNN.png files)")
    return present


def upscale(
    out_dir: str | Path,
    spec: UpscaleSpec | str,
    *,
    frames: str | None = None,
    device: str = "auto",
    on_event: EventHandler | None = None,
) -> dict[int, Path]:
    """``framereel upscale OUT MODEL[:SCALE]``: upscale the frames of ``out_dir`` into ``out_dir/upscaled/``.

    Returns index → upscaled file. Only frames whose source, model or settings changed are computed.
    """
    out = Path(out_dir)
    spec = parse_upscale(spec) if isinstance(spec, str) else spec
    with folder_lock(out):
        manifest = Manifest.load(out) if (out / MANIFEST).exists() else None
        return upscale_sources(out, spec, frame_sources(out, frames), manifest=manifest, device=device,
                               on_event=on_event)
