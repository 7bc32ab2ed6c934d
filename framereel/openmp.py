"""How torch's CPU threads wait, chosen before torch loads.

torch's CPU kernels run on OpenMP threads (libgomp) that spin at every barrier for the others by
default. On a quiet machine that is the fastest way to wait. When another process keeps one of the
cores busy, the thread sharing that core runs only in the scheduler's time slices and every other
thread spins through each slice waiting for it: a render gets several times slower, not just its
share (``benchmarks/under_load.py``: the demo model 4.6× slower with a busy loop on one of 2 cores;
passive waits: 1.8×). Passive waits cost on a quiet machine (the demo model's small kernels: 2.2×
slower), so framereel chooses them only when, as it starts, other processes are
using at least half a core. The thread count is not changed: bytes depend on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

KEEP = "FRAMEREEL_KEEP_OMP_WAIT_POLICY"  # set: leave libgomp's own default (set by the choice; benchmarks)
BUSY_CORES = 0.5  # other processes using this much CPU (in cores) as framereel starts: passive waits
SAMPLE_SECONDS = 0.05


def cpu_busy_cores(seconds: float = SAMPLE_SECONDS) -> float:
    """How many cores' worth of CPU the machine used over ``seconds`` (from /proc/stat); 0 where
    it cannot be read. This process is idle while it measures, so it is what others use."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return 0.0 if total <= 0 else (os.cpu_count() or 1) * (1 - (idle1 - idle0) / total)


def choose_wait_policy(environ: MutableMapping[str, str] = os.environ, busy: float | None = None) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` when other processes use ``BUSY_CORES`` or more, unless the
    environment already says how OpenMP threads wait. Worker processes inherit it. Takes effect
    only if torch has not been imported yet."""
    if "OMP_WAIT_POLICY" in environ or environ.get(KEEP):
        return
    if (cpu_busy_cores() if busy is None else busy) >= BUSY_CORES:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
    else:  # worker processes inherit the choice: they would see their siblings busy and sample again
        environ[KEEP] = "1"


choose_wait_policy()  # on import: framereel/__init__.py imports this module before anything loads torch
