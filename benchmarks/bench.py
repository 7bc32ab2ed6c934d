"""framereel vs the plain diffusers loop, for the demo model and an SD-1.x-shaped model.

    python benchmarks/bench.py [--quick] [--no-compile]

Writes benchmarks/results/bench-<model>.json and prints every figure with the machine and settings.
The SD-1.x-shaped model has SD 1.4's UNet/VAE/CLIP shapes with random weights: its FLOPs, time and
memory are SD 1.4's; image similarity on it means nothing, so similarity figures come from the demo model.
"""

import argparse
from pathlib import Path

from framereel.bench import BenchOptions, run_bench

RESULTS = Path(__file__).parent / "results"

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and steps, no compile")
    parser.add_argument("--no-compile", action="store_true", help="skip measuring --compile (minutes per model)")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    compile_ = not (args.quick or args.no_compile)
    # SD 1.4 at its native 512×512: does one frame render in ≤ 6 GB of RAM on a CPU?
    run_bench(BenchOptions("sd-shaped", size=512, only=("memory",), safety_checker=True),
              out=RESULTS / "memory-sd-shaped-512.json")
    # the demo model at its own default steps (15), similarity as the worst of 8 frames
    run_bench(BenchOptions("demo", steps=15, frames=3 if args.quick else 8, compile=compile_),
              out=RESULTS / "bench-demo.json")
    run_bench(BenchOptions("sd-shaped", size=256, steps=4 if args.quick else 5, frames=2, batches=(1, 2),
                           only=("overhead", "peak", "batching", "accelerations", "memory"), compile=compile_),
              out=RESULTS / "bench-sd-shaped-256.json")
