"""The hook ``stitch()`` calls: upscaled frames and learned in-betweens in place of the plain frames."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..manifest import Manifest
from ..settings import StitchSettings
from .common import EventHandler
from .interpolate import interpolate_shots, parse_interpolate
from .upscale import parse_upscale, upscale_sources

BLEND_FPS = 24


def finish_shots(
    out: Path,
    manifest: Manifest | None,
    shots: list,
    fps: float,
    settings: StitchSettings,
    *,
    on_event: EventHandler | None = None,
) -> tuple[list, frozenset[int], float, int]:
    """Run the finishing stages ``settings`` asks for (the caller holds the folder lock).

    Returns the shots to encode, the positions after which the next shot continues a run (no
    crossfade there), the frame rate to pace them at and the film rate for blends.
    """
    joined: frozenset[int] = frozenset()
    rate = fps
    upscale, interpolate = settings.upscale, settings.interpolate
    if isinstance(upscale, (str, Path)):
        upscale = parse_upscale(str(upscale), settings.upscale_tile, settings.upscale_overlap)
    if isinstance(interpolate, (str, Path)):
        interpolate = parse_interpolate(str(interpolate))
    if interpolate is not None and settings.transition == "smooth":
        raise FramereelError("--interpolate and --transition smooth both make in-betweens; choose one")
    if upscale is not None:
        paths = upscale_sources(out, upscale, [(s.index, s.path) for s in shots], manifest=manifest,
                                device=settings.finish_device, on_event=on_event)
        shots = [replace(s, path=paths[s.index]) for s in shots]
    if interpolate is not None:
        records = manifest.frames if manifest is not None else {}
        shots, joined, rate = interpolate_shots(out, shots, records, interpolate, fps, loop=settings.loop,
                                                manifest=manifest, device=settings.finish_device, on_event=on_event)
    return shots, joined, rate, blend_rate(rate)


def blend_rate(rate: float) -> int:
    """The film rate for crossfades and zooms: a whole multiple of ``rate`` (when it is whole) of at least 24."""
    if rate > 0 and float(rate).is_integer():
        return int(rate) * math.ceil(BLEND_FPS / rate)
    return BLEND_FPS


def options_used(upscale: Any, interpolate: Any, loop: bool) -> dict[str, Any]:
    """What run.json's ``video`` record says about finishing."""
    facts: dict[str, Any] = {}
    for key, spec in (("upscale", upscale), ("interpolate", interpolate)):  # a spec string or a parsed spec
        if spec is not None:
            facts[key] = spec if isinstance(spec, str) else str(spec.model)
    if loop:
        facts["loop"] = True
    return facts
