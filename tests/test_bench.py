"""`framereel bench` prints every figure with the machine and settings, and writes them as JSON."""

import json

from conftest import run_cli


def test_bench_prints_every_figure_and_writes_json(tmp_path, tiny_model):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--model", tiny_model, "--steps", "2", "--frames", "1", "--batches", "1,2",
                   "--json-out", out)
    assert proc.returncode == 0, proc.stderr
    for figure in ("machine {", "settings {", "1. overhead", "2. UNet", "3. DPM++ 25 steps", "4. batching",
                   "5. step-cache 2", "5. step-cache 3", "5. tiny-vae", "6. memory"):
        assert figure in proc.stdout
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1 and report["settings"]["size"] == 64
    assert report["overhead"]["ratio"] > 0 and 0 < report["peak"]["fraction"]
    assert report["peak"]["unet_flops_per_call"] > 1e6  # counted from the model's own shapes
    assert set(report["batching"]) == {"1", "2"} and (report["batching"]["2"]["min_psnr_vs_batch_1"] or 99) > 30  # None: identical
    assert report["accelerations"]["step-cache 2"]["time_ratio"] > 0
    assert report["accelerations"]["tiny-vae"]["min_psnr_vs_plain"] is None  # random weights: no similarity claim
    assert report["memory"]["peak_rss_mb_one_frame"] > 50


def test_bench_refuses_an_unknown_figure(tmp_path):
    proc = run_cli("bench", "--only", "speed")
    assert proc.returncode == 2 and "--only: unknown figure 'speed'" in proc.stderr
