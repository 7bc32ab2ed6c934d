"""``--dry-run``: what a run would do — which frames are finished, which would be rendered, and
about how long it would take — without loading a model, rendering, or writing anything."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import RenderSettings, create_backend
from .manifest import FRAMES_DIR, HASH_KEY, MANIFEST, Manifest, frame_name, read_png_metadata
from .runner import frame_digest, model_defaults
from .storyboard import Storyboard


@dataclass
class RunPlan:
    total: int
    done: list[int] = field(default_factory=list)
    todo: list[int] = field(default_factory=list)
    seconds_per_frame: float | None = None  # from this folder's earlier frames on the same model
    device: str = ""
    model: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def estimate_seconds(self) -> float | None:
        return None if self.seconds_per_frame is None else self.seconds_per_frame * len(self.todo)

    def as_dict(self) -> dict[str, Any]:
        return {"event": "plan", "total": self.total, "done": self.done, "todo": self.todo,
                "seconds_per_frame": self.seconds_per_frame, "estimate_seconds": self.estimate_seconds,
                "device": self.device, "model": self.model, "notes": self.notes}

    def summary(self) -> str:
        line = (f"dry run: {self.total} frames, {len(self.done)} already done, {len(self.todo)} to render"
                f" on {self.device} with {self.model}")
        if self.todo and self.estimate_seconds is not None:
            line += f"; about {self.estimate_seconds:.0f}s at {self.seconds_per_frame:.2f}s/frame (this folder's last run)"
        elif self.todo:
            line += "; no timing yet (estimate after a first run, or see `framereel bench`)"
        return line + "; nothing was rendered or written"


def plan_run(storyboard: Storyboard, out_dir: str | Path, settings: RenderSettings | None = None, *,
             redo: Iterable[int] = (), force: bool = False, only: Iterable[int] | None = None) -> RunPlan:
    """What :func:`~framereel.runner.render` would do with these arguments, found without loading
    weights or writing a byte (the model is only described: its config and files' hashes)."""
    settings = settings or RenderSettings()
    out = Path(out_dir)
    frames_dir = out / FRAMES_DIR
    backend = create_backend(settings)
    try:
        info = backend.describe()
        frames = storyboard.resolved(model_defaults(info)).frames
        selected = set(only) if only is not None else {f.index for f in frames}
        redo = set(redo)
        plan = RunPlan(total=len(selected), device=backend.device, model=info.id)
        todo: set[int] = set()
        for f in frames:
            if f.parent is not None and f.parent in todo:
                todo.add(f.index)  # its parent changes, so it does too
                continue
            meta = read_png_metadata(frames_dir / frame_name(f.index)) if frames_dir.is_dir() else None
            done = meta is not None and meta.get(HASH_KEY) == frame_digest(f, settings, info, backend, frames_dir)
            if f.index not in selected:
                continue
            if done and not force and f.index not in redo:
                plan.done.append(f.index)
            else:
                todo.add(f.index)
        plan.todo = sorted(todo)
        if (out / MANIFEST).exists():
            manifest = Manifest.load(out, readonly=True)
            plan.notes.extend(manifest.warnings)
            times = [r["seconds"] for r in manifest.frames.values()
                     if isinstance(r.get("seconds"), (int, float)) and r.get("status") == "done"]
            if times and (manifest.run.get("model") or {}).get("fingerprint") == info.fingerprint:
                plan.seconds_per_frame = statistics.median(times)
        return plan
    finally:
        backend.close()
