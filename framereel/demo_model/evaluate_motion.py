"""Measure the demo motion module: render held-out prompts as clips and read the motion back.

``python -m framereel.demo_model.evaluate_motion [--adapter demo] [--out DIR]`` prints JSON:

* ``direction_accuracy``: the share of held-out clips (``motion_scenes.eval_motions()``: moving
  to the right / left, falling, rising) whose shape travels the asked way by ≥ 6 px
  (``motion_scenes.track`` + ``moved_as_asked``);
* smoothness against a latent morph over the same prompts (the morph goes from the shape at its
  start position to its end position, e.g. ``… on the left, …`` → ``… on the right, …``, with
  as many frames): per prompt, the variance of the mean absolute difference between consecutive
  frames (``clip_change_variance`` vs ``morph_change_variance``), and the share of clips where
  no frame changes more than twice the median change (``clips_without_jumps``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from PIL import Image

from . import motion_scenes, scenes

FRAMES = 8  # the clip length the demo motion module is trained on
EVAL_PROMPTS = 12
THRESHOLDS = {"direction_accuracy": 0.70}
POSITION_WORDS = {"right": ("left", "right"), "left": ("right", "left"),
                  "falling": ("top", "bottom"), "rising": ("bottom", "top")}


def morph_ends(m: motion_scenes.Motion) -> tuple[str, str]:
    """Still prompts for a clip's start and end: the same shape at its start and end positions."""
    bg = scenes.BACKGROUND_PHRASES[m.background][0]
    a, b = POSITION_WORDS[m.kind]
    article = "an" if m.colour[0] in "aeiou" else "a"
    return tuple(f"{article} {m.colour} {m.shape} {scenes.POSITION_PHRASES[p][0]}{bg}" for p in (a, b))


def evaluate(adapter: str = "demo", out_dir: Path | None = None, count: int = EVAL_PROMPTS, seed: int = 0,
             dtype: str = "auto", model: str = "demo") -> dict:
    """Render ``count`` held-out motion prompts as clips and as latent morphs; return the figures.

    ``model``: the demo model, or a copy of it with a retrained text encoder (``train_motion`` writes
    one beside the adapter when it teaches the motion words)."""
    motions = motion_scenes.eval_motions()[:count]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(out_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        write_storyboards(work, motions)
        render_storyboards(work, adapter, seed, dtype, model)
        rows = [clip_row(work, k, m) for k, m in enumerate(motions)]
    return summary(rows)


def write_storyboards(work: Path, motions: list[motion_scenes.Motion]) -> None:
    """``work/clips.json`` (one clip per motion) and ``work/morphs.json`` (a morph between its ends)."""
    clips = [{"prompt": motion_scenes.motion_caption(m), "clip": FRAMES} for m in motions]
    morphs = []
    for m in motions:
        a, b = morph_ends(m)
        morphs += [{"prompt": a, "morph": FRAMES - 2}, {"prompt": b}]
    (work / "clips.json").write_text(json.dumps(clips))
    (work / "morphs.json").write_text(json.dumps(morphs))


def render_storyboards(work: Path, adapter: str, seed: int, dtype: str, model: str = "demo") -> None:
    """Render both storyboards into ``work/clips`` and ``work/morphs`` with one demo backend."""
    from ..backends import RenderSettings, create_backend
    from ..loader import load_storyboard
    from ..runner import render

    backend = create_backend(RenderSettings(model=model, motion_adapter=adapter, dtype=dtype))
    try:
        for name in ("clips", "morphs"):
            render(load_storyboard(work / f"{name}.json", run_seed=seed), work / name, backend.settings,
                   backend=backend)
    finally:
        backend.close()


def clip_row(work: Path, k: int, m: motion_scenes.Motion) -> dict:
    """The ``k``-th clip and morph read back: whether it moved as asked, its path and frame changes."""

    def frames(name: str) -> list[Image.Image]:
        return [Image.open(work / name / "frames" / f"frame_{k * FRAMES + j:03d}.png").convert("RGB")
                for j in range(FRAMES)]

    clip, morph = frames("clips"), frames("morphs")
    tracked = motion_scenes.track(clip)
    clip_changes, morph_changes = motion_scenes.frame_changes(clip), motion_scenes.frame_changes(morph)
    return {
        "prompt": motion_scenes.motion_caption(m),
        "moved": motion_scenes.moved_as_asked(m.kind, tracked),
        "path": [None if t is None else (round(t["x"], 1), round(t["y"], 1)) for t in tracked],
        "clip_changes": [round(c, 2) for c in clip_changes],
        "morph_changes": [round(c, 2) for c in morph_changes],
    }


def summary(rows: list[dict]) -> dict:
    """The figures over all clips (see the module's docstring), with the rows under ``clips``."""
    n = len(rows)

    def var(xs):
        return statistics.pvariance(xs)

    def no_jump(xs):
        return max(xs) <= 2 * statistics.median(xs)

    return {
        "prompts": n,
        "frames": FRAMES,
        "direction_accuracy": round(sum(r["moved"] for r in rows) / n, 3),
        "clip_change_variance": round(statistics.mean(var(r["clip_changes"]) for r in rows), 3),
        "morph_change_variance": round(statistics.mean(var(r["morph_changes"]) for r in rows), 3),
        "clips_smoother_than_morph": round(sum(var(r["clip_changes"]) < var(r["morph_changes"]) for r in rows) / n, 3),
        "clips_without_jumps": round(sum(no_jump(r["clip_changes"]) for r in rows) / n, 3),
        "morphs_without_jumps": round(sum(no_jump(r["morph_changes"]) for r in rows) / n, 3),
        "clips": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="demo", help="motion adapter folder  [default: the shipped demo one]")
    parser.add_argument("--model", default="demo", help="image model  [default: the shipped demo model]")
    parser.add_argument("--out", type=Path, default=None, help="keep the rendered frames here")
    parser.add_argument("--count", type=int, default=EVAL_PROMPTS, help="held-out prompts to render")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16 or auto (as framereel picks)")
    parser.add_argument("--all", action="store_true", help="also print every clip's track and changes")
    args = parser.parse_args()
    report = evaluate(args.adapter, args.out, args.count, dtype=args.dtype, model=args.model)
    print(json.dumps(report if args.all else {k: v for k, v in report.items() if k != "clips"}, indent=2))


if __name__ == "__main__":
    main()
