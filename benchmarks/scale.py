"""Frames per second with 1 vs 2 worker processes on the CPU (each with its share of the cores).

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "board.json"
        board.write_text(json.dumps([{"prompt": PROMPTS[i % len(PROMPTS)]} for i in range(args.frames)]))
        results = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            result = render(load_storyboard(board, overrides={"steps": args.steps}), Path(tmp) / f"w{workers}",
                            RenderSettings(model=args.model, device="cpu"), workers=workers)
            wall = time.perf_counter() - t0
            results[workers] = {"wall_s": round(wall, 2), "frames_per_s": round(args.frames / wall, 3),
                                "devices": result.devices}
        ratio = results[2]["frames_per_s"] / results[1]["frames_per_s"]
        report = {"machine": machine(), "model": args.model, "frames": args.frames, "steps": args.steps,
                  "workers": results, "speedup_2_over_1": round(ratio, 3), "cores": os.cpu_count()}
        print(json.dumps(report, indent=2))
        out = Path(__file__).parent / "results" / "scale.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
