"""Rendering while another process competes for a core: how many times slower than on a quiet
machine, for each OpenMP wait policy and torch thread count.

`framereel frames` renders the demo model's frames (float32, `--batch 4`) in a fresh process (timed
from the model being loaded to the last frame), first
on the quiet machine, then while a busy loop (`while True: pass`, at nice 0 and at nice 5) is
pinned to the last core. A process that only loses its share of the CPU would be about
cores ÷ (cores − ½) slower; torch's threads spinning at a barrier for the one that lost its core
make it an order of magnitude slower. Variants:

* `framereel` — what framereel chooses (passive waits when other processes use half a core as it
  starts, else libgomp's default; see framereel/openmp.py);
* `passive` — `OMP_WAIT_POLICY=PASSIVE`;
* `libgomp` — libgomp's own default (spin ~0.3 ms, then sleep): `OMP_WAIT_POLICY` left unset;
* `active` — `OMP_WAIT_POLICY=ACTIVE` (spin until work arrives);
* `1 thread` — `OMP_NUM_THREADS=1`.

Prints and writes benchmarks/results/under-load.json (machine, settings, seconds, ratios).

    python benchmarks/under_load.py [--frames 24] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framereel.bench import machine

RESULTS = Path(__file__).parent / "results"
VARIANTS = {
    "framereel": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "libgomp": {"FRAMEREEL_KEEP_OMP_WAIT_POLICY": "1"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1", "FRAMEREEL_KEEP_OMP_WAIT_POLICY": "1"},
}
LOADS = {"quiet": None, "busy loop, nice 0": 0, "busy loop, nice 5": 5}


def busy_loop(nice: int) -> subprocess.Popen:
    """A process spinning on the last core at ``nice``, until killed."""
    core = str((os.cpu_count() or 1) - 1)
    return subprocess.Popen(["taskset", "-c", core, "nice", "-n", str(nice), sys.executable, "-c", "while True: pass"])


def render_seconds(board: Path, out: Path, env: dict[str, str]) -> float:
    """Seconds from the model being loaded to the last frame written (process start and model
    loading left out: they are the same for every variant and would hide the difference)."""
    cmd = [sys.executable, "-m", "framereel", "frames", str(board), "-o", str(out), "--model", "demo",
           "--dtype", "float32", "--batch", "4", "--json", "--force"]
    clean = {k: v for k, v in os.environ.items()  # this process's own choice (framereel is imported) left out
             if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "FRAMEREEL_KEEP_OMP_WAIT_POLICY")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**clean, **env})
    loaded = last = None
    for line in proc.stdout:
        event = json.loads(line)["event"]
        if event == "model_loaded":
            loaded = time.perf_counter()
        elif event == "frame_done":
            last = time.perf_counter()
    if proc.wait() or loaded is None or last is None:
        raise SystemExit(f"framereel failed ({proc.returncode}):\n{proc.stderr.read()}")
    return last - loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    seconds: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        board = Path(tmp) / "board.json"
        board.write_text(json.dumps([{"prompt": f"a red circle on the left, night sky, shot {i}"}
                                     for i in range(args.frames)]))
        render_seconds(board, Path(tmp) / "warm", {})  # disk caches warm for every variant alike
        for load, nice in LOADS.items():
            loop = busy_loop(nice) if nice is not None else None
            time.sleep(1 if loop else 0)  # the loop is running before framereel looks
            try:
                for name, env in VARIANTS.items():
                    times = [render_seconds(board, Path(tmp) / f"out-{r}", env) for r in range(args.rounds)]
                    seconds.setdefault(name, {})[load] = round(min(times), 2)
                    print(f"{name:10s} {load:18s} {min(times):7.2f} s", flush=True)
            finally:
                if loop is not None:
                    loop.kill()
                    loop.wait()
    ratios = {name: {load: round(t / by_load["quiet"], 2) for load, t in by_load.items()}
              for name, by_load in seconds.items()}
    report = {"machine": machine(), "settings": {"model": "demo", "frames": args.frames, "dtype": "float32",
                                                 "batch": 4, "rounds": args.rounds},
              "seconds": seconds, "slower_than_quiet": ratios}
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "under-load.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
