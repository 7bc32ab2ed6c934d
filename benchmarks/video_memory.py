"""Video-model clips on the CPU: peak resident memory and seconds of one short clip, for LTX-Video-
and Wan 2.2 TI2V-5B-shaped models at their real configs (issue #27, item 5), with and without
``--vae-tiling``.

The models are random weights with the real transformer and VAE configs, built in bfloat16 by
``benchmarks/gpu_video.py``'s builders (its config dicts; text encoders XXL-wide but
``--text-layers`` deep, as there). Each build and each measurement runs in its own process, so
one model's memory never counts in another's figure: a measurement is ``framereel frames`` of a
one-clip storyboard (``--model demo --video-model FOLDER --dtype bfloat16 --device cpu``), the
peak its process reached (``VmHWM``, read by :data:`framereel.bench._PEAK_PROBE` as ``framereel
bench`` does) and its wall seconds (loading included). ``--offload`` does not apply on a CPU (it
moves weights to the CPU between uses: they are there already). The JSON (``--out``) is rewritten
after every measurement; ``--budget-s`` skips what is left once that much time has passed.

    nice -n 10 env PYTHONPATH=. python benchmarks/video_memory.py        # ~1 h on 2 cores (TI2V: ~23 min a clip)
    PYTHONPATH=. python benchmarks/video_memory.py --tiny --out /tmp/vm.json   # check the script
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_families import ROOT, T0, log  # noqa: E402
from gpu_video import BUILDERS, PROMPT, SEED  # noqa: E402

# name: (frames, width, height, steps, guidance). The family's shortest clip (Wan: 4k+1, LTX: 8k+1)
# at the model's default size (TI2V-5B: 1280x704, LTX-Video: 704x480); LTX needs 2 steps (its
# terminal shift), Wan takes 1; guidance 1: one transformer pass per step (no classifier-free
# guidance, so no negative prompt).
SETTINGS = {
    "ltx": (9, 704, 480, 2, 1.0),
    "wan2.2-ti2v": (9, 1280, 704, 1, 1.0),
}
TINY = (9, 64, 64, 2, 1.0)


def build_child(name: str, folder: str, tiny: bool, text_layers: int) -> None:
    """Build ``name`` into ``folder`` with its parameters created in bfloat16 (a 5B model in float32
    would not fit next to its bfloat16 copy in 24 GiB)."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    torch.set_default_dtype(torch.bfloat16)
    BUILDERS[name](Path(folder), tiny, text_layers)


def measure(folder: Path, call: tuple, tiling: bool, work: Path, timeout: float) -> dict:
    """One ``framereel frames`` process rendering one clip of ``folder``: peak RSS (GiB) and seconds."""
    from framereel.bench import _PEAK_PROBE

    frames, width, height, steps, guidance = call
    out = work / f"{folder.name}-tiling-{tiling}"
    board = out.with_suffix(".json")
    board.write_text(json.dumps({"frames": [{"prompt": PROMPT, "seed": SEED,
                                             "clip": frames, "steps": steps, "guidance": guidance,
                                             "width": width, "height": height}]}))
    args = ["frames", str(board), "-o", str(out), "--model", "demo", "--video-model", str(folder),
            "--dtype", "bfloat16", "--device", "cpu", "--quiet"] + (["--vae-tiling"] if tiling else [])
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PEAK_PROBE, *args], capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.perf_counter() - t0
    found = re.search(r"framereel-peak-rss-kb (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        said = [line for line in proc.stderr.splitlines() if line.strip() and "framereel-peak-rss-kb" not in line]
        return {"error": (said or ["no output"])[-1][:500]}
    written = len(list((out / "frames").glob("*.png")))
    return {"peak_rss_gib": round(int(found.group(1)) / 2**20, 2), "seconds": round(seconds, 1),
            "frames_written": written}


def measure_model(name: str, args, work: Path, report: dict, save) -> None:
    entry: dict = report["results"].setdefault(name, {})
    call = TINY if args.tiny else SETTINGS[name]
    entry["call"] = dict(zip(("frames", "width", "height", "steps", "guidance"), call, strict=True))
    folder = work / name
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--build", name, str(folder), "1" if args.tiny else "0",
                    str(args.text_layers)], check=True)
    entry.update(build_s=round(time.perf_counter() - t0, 1),
                 weights_gib=round(sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**30, 2))
    log(f"{name}: built in {entry['build_s']}s ({entry['weights_gib']} GiB); {entry['call']}")
    save()
    for tiling in (False, True):
        key = "with_vae_tiling" if tiling else "without_vae_tiling"
        left = args.budget_s - (time.perf_counter() - T0)
        if left <= 0:
            entry[key] = {"skipped": f"time budget of {args.budget_s}s spent"}
        else:
            try:
                entry[key] = measure(folder, call, tiling, work, timeout=left)
            except subprocess.TimeoutExpired:
                entry[key] = {"skipped": f"stopped at the time budget of {args.budget_s}s"}
        log(f"{name} {key}: {entry[key]}")
        save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "video-memory.json")
    parser.add_argument("--models", default="ltx,wan2.2-ti2v", help="comma-separated: ltx, wan2.2-ti2v")
    parser.add_argument("--text-layers", type=int, default=2, help="text encoder depth (default 2 of the real 24)")
    parser.add_argument("--budget-s", type=float, default=4200.0, help="stop measuring after this many seconds")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny shapes at 64²: checks the script")
    parser.add_argument("--build", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_child(args.build[0], args.build[1], args.build[2] == "1", int(args.build[3]))
        return
    from gpu_families import machine_info

    report = {"script": "benchmarks/video_memory.py",
              "command": " ".join(["python", "benchmarks/video_memory.py", *sys.argv[1:]]),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {**machine_info("cpu"), "cpu_name": cpu_name()},
              "settings": {"device": "cpu", "dtype": "bfloat16", "tiny": args.tiny, "seed": SEED,
                           "weights": "random; transformer and VAE at the real configs (tiny shapes with --tiny)",
                           "text_encoder": f"XXL width (d_model 4096), {args.text_layers} of 24 layers",
                           "measured": "peak RSS (VmHWM) and wall seconds, loading included, of one `framereel "
                                       "frames` process per figure"},
              "results": {}, "complete": False}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_s"] = round(time.perf_counter() - T0, 1)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    save()
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            measure_model(name, args, Path(tmp), report, save)
    report["complete"] = True
    save()
    log(f"done: {args.out}")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
