"""framereel vs the plain diffusers loop, for the demo model and an SD-1.x-shaped model.

    python benchmarks/bench.py [--quick]

Writes benchmarks/results/bench-<model>.json and prints every figure with the machine and settings.
"""

import argparse
from pathlib import Path

from framereel.bench import run_bench

RESULTS = Path(__file__).parent / "results"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and steps")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    frames = 2 if args.quick else 3
    run_bench("demo", steps=25, frames=frames, out=RESULTS / "bench-demo.json")
    run_bench("sd-shaped", size=256, steps=4 if args.quick else 5, frames=2, batches=(1, 2),
              compare_schedulers=False, out=RESULTS / "bench-sd-shaped-256.json")
