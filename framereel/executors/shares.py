"""How worker processes and Ray actors share this machine: CPU threads each, and a name for each worker."""

from __future__ import annotations

import os


def cpu_threads(devices: list[str], cpus: int | None = None) -> int:
    """Threads for each CPU worker: an equal share of the cores (an explicit OMP_NUM_THREADS, the
    user's choice, wins); 0 when no worker runs on the CPU."""
    cpu_workers = sum(1 for d in devices if d.startswith("cpu"))
    if not cpu_workers:
        return 0
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or max(1, (cpus or os.cpu_count() or 1) // cpu_workers)


def worker_labels(devices: list[str]) -> list[str]:
    """Unique names for workers: ``cpu`` twice becomes ``cpu:0``, ``cpu:1``."""
    return [f"{d}:{devices[:i].count(d)}" if devices.count(d) > 1 and ":" not in d else d
            for i, d in enumerate(devices)]
