"""How torch's CPU threads wait, set before torch loads.

torch's CPU kernels run on OpenMP threads (libgomp) that spin at every barrier for the others by
default. When another process takes one of the cores, the thread sharing that core runs only in
the scheduler's time slices, and every other thread spins through each slice waiting for it: a
render gets many times slower, not just its share (measured in ``benchmarks/under_load.py``).
Passive waits let a waiting thread give its core away at once.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

KEEP = "FRAMEREEL_KEEP_OMP_WAIT_POLICY"  # set: leave libgomp's own default (for benchmarks/under_load.py)


def prefer_passive_waits(environ: MutableMapping[str, str] = os.environ) -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the environment already says how OpenMP threads wait.
    Worker processes inherit it. Takes effect only if torch has not been imported yet."""
    if "OMP_WAIT_POLICY" not in environ and not environ.get(KEEP):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


prefer_passive_waits()  # on import: framereel/__init__.py imports this module before anything loads torch
