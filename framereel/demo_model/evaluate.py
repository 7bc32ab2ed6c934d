"""Measure the demo model: render the held-out prompts through framereel and read every image back.

``python -m framereel.demo_model.evaluate [--model demo] [--out DIR]`` prints JSON: the share of
images whose main shape has the asked colour, whose background is the asked one, whose shape is
the asked kind and sits at the asked position, and the seconds per frame. The tests hold the
model to the thresholds below.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image

from . import scenes
from .train import eval_prompts

THRESHOLDS = {"colour": 0.85, "background": 0.85, "shape": 0.60, "position": 0.80}


def evaluate(model: str = "demo", out_dir: Path | None = None, seed: int = 0, steps: int | None = None) -> dict:
    """Render ``eval_prompts()`` with ``model`` at its default settings (or ``steps``); return accuracy figures."""
    from ..backends import RenderSettings
    from ..loader import load_storyboard
    from ..runner import render

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(out_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        board = work / "eval.json"
        prompts = eval_prompts()
        board.write_text(json.dumps([{"prompt": p} for p in prompts]))
        overrides = {"steps": steps} if steps else None
        result = render(load_storyboard(board, overrides=overrides, run_seed=seed), work / "run",
                        RenderSettings(model=model))
        hits = {k: 0 for k in THRESHOLDS}
        rows = []
        for i, prompt in enumerate(prompts):
            want = scenes.parse_caption(prompt)
            got = scenes.classify_image(Image.open(work / "run" / "frames" / f"frame_{i:03d}.png"))
            for key in hits:
                hits[key] += got[key] == want[key]
            rows.append({"prompt": prompt, "got": got})
    n = len(prompts)
    return {
        "prompts": n,
        **{f"{k}_accuracy": round(v / n, 3) for k, v in hits.items()},
        "seconds_per_frame": round(result.seconds_per_frame or 0.0, 3),
        "images": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--out", type=Path, default=None, help="keep the rendered frames here")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps  [default: the model's]")
    args = parser.parse_args()
    report = evaluate(args.model, args.out, steps=args.steps)
    print(json.dumps({k: v for k, v in report.items() if k != "images"}, indent=2))


if __name__ == "__main__":
    main()
