"""Tenstorrent environment and chips: the tt-metal checkout from ``TT_METAL_HOME``, ttnn, tt-smi, and
which chips (``tt:N``) single-chip workers can open. Used by both Tenstorrent backends, ``--devices`` and
``framereel doctor``; imports neither ttnn nor torch.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import FramereelError
from .tt_tree import check_chips, chip_plan

THROTTLE = "5"  # what tt-metal's SD demo sets on Wormhole "until di/dt issues are resolved"


def tt_metal_home() -> Path:
    """The tt-metal checkout from ``TT_METAL_HOME``."""
    home = os.environ.get("TT_METAL_HOME")
    if not home:
        raise FramereelError(
            "TT_METAL_HOME is not set; point it at your tt-metal checkout (export TT_METAL_HOME=~/tt-metal)"
        )
    return Path(home).expanduser()


def board_info() -> list[str]:
    """Board types from ``tt-smi -s`` (e.g. ``["n300 L", "n300 R"]``); empty when tt-smi is missing or fails."""
    return [c.board_type for c in chip_plan().chips]


def tenstorrent_present() -> bool:
    """True when a tt-metal checkout is configured and tt-smi sees at least one chip."""
    return bool(os.environ.get("TT_METAL_HOME")) and bool(board_info())


def usable_devices() -> tuple[list[str], str]:
    """``--devices all`` on Tenstorrent: ``tt:N`` for each chip a single-chip worker can open, and why."""
    plan = chip_plan()
    return plan.usable, plan.reason()


def check_devices(devices: list[str]) -> None:
    """Refuse, in one line, a ``tt:N`` no worker can open."""
    if any(d.startswith("tt:") for d in devices):
        check_chips(devices)


def prepare_environment(home: Path) -> dict[str, str]:
    """Put tt-metal on ``sys.path`` and ``PYTHONPATH`` (as its setup does); returns what it set."""
    changed: dict[str, str] = {}
    if str(home) not in sys.path:
        sys.path.insert(0, str(home))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(home) not in paths:
        os.environ["PYTHONPATH"] = changed["PYTHONPATH"] = os.pathsep.join([str(home), *paths])
    os.environ.setdefault("TT_METAL_HOME", str(home))
    return changed


def check_ttnn() -> None:
    """Fail early, without importing it, when ttnn isn't there (importing it can take the chips)."""
    if importlib.util.find_spec("ttnn") is None:
        raise FramereelError(
            "ttnn is not importable here; activate tt-metal's environment "
            "(source $TT_METAL_HOME/python_env/bin/activate) and install framereel into it"
        )


def import_ttnn():
    try:
        import ttnn
    except ImportError as err:
        raise FramereelError(
            f"ttnn is not importable here ({err}); activate tt-metal's environment "
            "(source $TT_METAL_HOME/python_env/bin/activate) and install framereel into it"
        ) from None
    return ttnn


def reset_device(on_event: Callable[[str], None] | None = None) -> None:
    """Run ``tt-smi -r`` once (``--reset-device``)."""
    smi = shutil.which("tt-smi")
    if not smi:
        raise FramereelError("--reset-device needs tt-smi on PATH; install tt-smi (pip install tt-smi)")
    proc = subprocess.run([smi, "-r"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise FramereelError(f"tt-smi -r failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def explain_open_failure(err: Exception) -> FramereelError:
    text = str(err)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    if "non-mmio" in text.lower():
        return FramereelError(f"this chip can't be opened alone ({first}); pick a PCIe chip (framereel doctor lists them)")
    if any(k in text.lower() for k in ("no devices", "no tenstorrent", "device not found", "0 devices")):
        return FramereelError(f"no Tenstorrent chip found ({first}); check `tt-smi -s` and the driver")
    return FramereelError(
        f"could not open the Tenstorrent chip ({first}); "
        "a killed run can leave it in a bad state: run `tt-smi -r` (or pass --reset-device) and try again"
    )


def chip_index(spec: str) -> int:
    """``tt:N`` → N (``auto``/``tt`` → 0)."""
    tail = spec.split(":")[-1]
    return int(tail) if spec.startswith("tt:") and tail.isdigit() else 0

