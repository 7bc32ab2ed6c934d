"""``--dry-run``: what a run would do — which frames are finished, which would be rendered, and
about how long it would take — without loading a model, rendering, or writing anything."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import create_backend
from .backends.lora import with_storyboard_loras
from .events import EVENTS_VERSION
from .identity import RunIdentity
from .manifest import (
    FRAMES_DIR,
    MANIFEST,
    Manifest,
    check_same_storyboard,
    file_digest,
    frame_index,
    read_png_hash,
)
from .runner import OnDisk, plan
from .settings import RenderSettings
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
        return {"event": "plan", "v": EVENTS_VERSION, "total": self.total, "done": self.done, "todo": self.todo,
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


def look_at_output_folder(out: Path) -> OnDisk:
    """What :func:`~framereel.runner.read_output_folder` sees, without tidying anything: temp files
    stay and a damaged ``run.json`` stays where it is."""
    manifest = Manifest.load(out, readonly=True) if (out / MANIFEST).exists() else Manifest(out / MANIFEST, {}, {})
    hashes, files = {}, {}
    for path in sorted((out / FRAMES_DIR).glob("frame_*.png")) if (out / FRAMES_DIR).is_dir() else []:
        index = frame_index(path)
        digest = read_png_hash(path) if index is not None else None
        if digest is not None:
            hashes[index], files[index] = digest, file_digest(path)
    return OnDisk(manifest, hashes, files)


def plan_run(storyboard: Storyboard, out_dir: str | Path, settings: RenderSettings | None = None, *,
             redo: Iterable[int] = (), force: bool = False, only: Iterable[int] | None = None) -> RunPlan:
    """What :func:`~framereel.runner.render` would do with these arguments — its own planning
    stage on what is on disk — found without loading weights or writing a byte (the model is only
    described: its config and its files' hashes)."""
    settings = with_storyboard_loras(settings or RenderSettings(), storyboard)  # as render() does
    out = Path(out_dir)
    backend = create_backend(settings)
    try:
        identity = RunIdentity.of(backend, settings)
        frames = list(storyboard.resolved(identity.model.defaults()).frames)
        on_disk = look_at_output_folder(out)
        check_same_storyboard(on_disk.manifest, storyboard, out)
        the_plan = plan(frames, on_disk, identity, redo=set(redo), force=force, only=only)
        result = RunPlan(total=len(the_plan.todo) + len(the_plan.skipped), done=sorted(the_plan.skipped),
                         todo=[f.index for f in the_plan.todo], device=backend.device, model=identity.model.id,
                         notes=list(on_disk.manifest.warnings))
        times = [r["seconds"] for r in on_disk.manifest.frames.values()
                 if isinstance(r.get("seconds"), (int, float)) and r.get("status") == "done"]
        if times and (on_disk.manifest.run.get("model") or {}).get("fingerprint") == identity.model.fingerprint:
            result.seconds_per_frame = statistics.median(times)
        return result
    finally:
        backend.close()
