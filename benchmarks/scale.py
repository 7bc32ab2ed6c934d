"""Frames per second with 1 vs 2 worker processes on the CPU (each with its share of the cores),
and 2 local workers vs 2 Ray actors (a local Ray cluster; skipped when Ray isn't installed).

    python benchmarks/scale.py [--model demo] [--frames 16]

Same storyboard, fresh output folders, wall time of the whole render including model loading
(reported separately as the 1-worker load time), printed as a ratio.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from framereel import RenderSettings, load_storyboard, render
from framereel.bench import PROMPTS, machine

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1, help="frames per UNet call (1: scale-out alone)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "board.json"
        board.write_text(json.dumps([{"prompt": PROMPTS[i % len(PROMPTS)]} for i in range(args.frames)]))
        results = {}
        runs = [("1 local", 1, "local"), ("2 local", 2, "local")]
        try:
            import ray  # noqa: F401

            runs.append(("2 ray", 2, "ray"))
        except ImportError:
            pass
        for name, workers, executor in runs:
            t0 = time.perf_counter()
            result = render(load_storyboard(board, overrides={"steps": args.steps}), Path(tmp) / name.replace(" ", "-"),
                            RenderSettings(model=args.model, device="cpu", batch=args.batch), workers=workers, executor=executor)
            wall = time.perf_counter() - t0
            results[name] = {"wall_s": round(wall, 2), "frames_per_s": round(args.frames / wall, 3),
                             "devices": result.devices}
        fps = {k: v["frames_per_s"] for k, v in results.items()}
        report = {"machine": machine(), "model": args.model, "frames": args.frames, "steps": args.steps, "batch": args.batch,
                  "runs": results, "speedup_2_local_over_1": round(fps["2 local"] / fps["1 local"], 3),
                  "cores": os.cpu_count()}
        if "2 ray" in fps:
            report["ray_over_local_2_workers"] = round(fps["2 ray"] / fps["2 local"], 3)
        print(json.dumps(report, indent=2))
        out = Path(__file__).parent / "results" / "scale.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
