"""`framereel frames` on 6 frames of a small model, default settings, against a plain
`StableDiffusionPipeline` loop doing the same frames — whole-process wall time, alternated.

The model: a small random-weight SD pipeline (the test suite's tiny architecture with a 16×16 native
size), rendered at 128×128 (so `--batch auto` must measure at the size rendered, not the native one),
PNDM 20 steps, float32, default settings otherwise. Both sides are fresh processes that load the model and render the
same 6 prompts and seeds; framereel also writes PNGs with metadata and run.json. Prints the ratio
and writes benchmarks/results/frames-vs-diffusers.json.

    python benchmarks/frames_vs_diffusers.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_model import build_tiny_pipeline  # noqa: E402

from framereel.bench import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PROMPTS = [f"a lighthouse at dusk, shot {i}" for i in range(6)]
STEPS = 20
SIZE = 128

PLAIN = """
import sys, torch
from diffusers import PNDMScheduler, StableDiffusionPipeline
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], torch_dtype=torch.float32)
pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True)
pipe.set_progress_bar_config(disable=True)
for i, prompt in enumerate(sys.argv[3:]):
    image = pipe(prompt, num_inference_steps=int(sys.argv[2]), guidance_scale=7.5, width=SIZE, height=SIZE,
                 generator=torch.Generator("cpu").manual_seed(174 + i)).images[0]
    image.save(f"{sys.argv[1]}/../plain_{i}.png")
""".replace("SIZE", str(SIZE))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "model"
        build_tiny_pipeline(model)
        unet = json.loads((model / "unet" / "config.json").read_text())
        unet["sample_size"] = 8  # 16×16 native with the tiny VAE's 1/2 scale; rendered at 128×128
        (model / "unet" / "config.json").write_text(json.dumps(unet))
        board = tmp / "board.json"
        board.write_text(json.dumps([{"prompt": p} for p in PROMPTS]))
        ours_cmd = lambda r: [sys.executable, "-m", "framereel", "frames", str(board), "-o", str(tmp / f"out{r}"),  # noqa: E731
                              "--model", str(model), "--scheduler", "pndm", "--steps", str(STEPS), "--dtype",
                              "float32", "--guidance", "7.5", "--width", str(SIZE), "--height", str(SIZE), "--quiet"]
        plain_cmd = [sys.executable, "-c", PLAIN, str(model), str(STEPS), *PROMPTS]
        timed(ours_cmd("warm"))  # first run: measures --batch auto once for this model (cached, as for a user)
        ours, plain = [], []
        for r in range(args.rounds):
            plain.append(timed(plain_cmd))
            ours.append(timed(ours_cmd(r)))
        batch = json.loads((tmp / "out0" / "run.json").read_text())["batch"]
    ratio = statistics.median(ours) / statistics.median(plain)
    report = {"machine": machine(), "frames": len(PROMPTS), "size": SIZE, "native_size": 16, "steps": STEPS, "scheduler": "pndm",
              "dtype": "float32", "auto_batch": batch, "framereel_s": [round(t, 2) for t in ours],
              "diffusers_s": [round(t, 2) for t in plain], "ratio": round(ratio, 3),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frames-vs-diffusers.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
