"""What both Tenstorrent backends share: the checkout, its SD demo, the chips, and every decision made."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import FramereelError
from ..settings import RenderSettings
from .base import Backend
from .tt_chips import THROTTLE, chip_index, prepare_environment, tt_metal_home
from .tt_tree import BLACKHOLE, WORMHOLE, ChipPlan, SdDemo, check_chips, chip_plan, find_sd_demo

SD_MODEL = "CompVis/stable-diffusion-v1-4"
# what tt-inference-server points TT_MESH_GRAPH_DESC_PATH at for one chip of a P300 board
P300_CHIP_DESCRIPTOR = "tt_metal/fabric/mesh_graph_descriptors/p150_mesh_graph_descriptor.textproto"


class TtBase(Backend):
    """What both backends share: the checkout, its demo, the chips, and every decision made (the
    decisions are the run's ``notes`` in run.json)."""

    dtype = "bfloat16"
    speed_refusal = "the Tenstorrent backends render one traced frame at a time and don't take these"

    def __init__(self, settings: RenderSettings):
        self._notes: list[str] = []
        self.decisions: dict[str, Any] = {}
        super().__init__(settings)
        self.home = tt_metal_home()
        self.demo: SdDemo = find_sd_demo(self.home)
        prepare_environment(self.home)
        self.chip = chip_index(settings.device)
        self.reset_first = settings.reset_device
        self._plan: ChipPlan | None = None
        self.user_visible = next((f"{k}={os.environ[k]}" for k in ("TT_VISIBLE_DEVICES", "TT_METAL_VISIBLE_DEVICES")
                                  if k in os.environ), None)
        self.open_id = self.chip
        self.decisions.update({
            "tt_metal": str(self.home), "commit": self.demo.commit, "layout": f"{self.demo.folder} ({self.demo.layout})",
        })

    @property
    def plan(self) -> ChipPlan:
        if self._plan is None:
            self._plan = chip_plan()
        return self._plan

    def _arch(self, ttnn=None) -> tuple[str, str]:
        if self.plan.arch:
            return self.plan.arch, f"tt-smi: {self.plan.boards}"
        name = getattr(ttnn, "get_arch_name", None) if ttnn is not None else None
        if name is not None:
            arch = str(name())
            return (BLACKHOLE if "blackhole" in arch else WORMHOLE), f"ttnn.get_arch_name() = {arch}"
        return WORMHOLE, "assumed: tt-smi lists no chip"

    def _visible_env(self) -> dict[str, str]:
        """The environment restricting this worker to its chip's board, as tt-inference-server's
        ``setup_worker_environment`` does: ``TT_VISIBLE_DEVICES`` and ``TT_METAL_VISIBLE_DEVICES`` (the board's
        PCIe chip; a remote chip is then device 1) and a ``TT_METAL_CACHE`` of its own (shared kernel caches
        race: "binary not found"). Sets :attr:`open_id`, the device id to open. Left alone if the user set either."""
        if self.user_visible is not None:
            self.open_id = self.chip
            self.decisions["chip"] = f"tt:{self.chip} within {self.user_visible} (yours)"
            return {}
        board, self.open_id = self.plan.placement(self.chip) if self.plan.chips else (self.chip, 0)
        cache = Path(os.environ.get("TT_METAL_CACHE") or self.home / "built") / f"tt{self.chip}"
        self.decisions["chip"] = (f"tt:{self.chip} (TT_VISIBLE_DEVICES=TT_METAL_VISIBLE_DEVICES={board}, opened as "
                                  f"device {self.open_id}; TT_METAL_CACHE={cache})")
        env = {"TT_VISIBLE_DEVICES": str(board), "TT_METAL_VISIBLE_DEVICES": str(board), "TT_METAL_CACHE": str(cache)}
        return {**env, **self._p300_descriptor()}

    def _p300_descriptor(self) -> dict[str, str]:
        """One chip of a P300 board alone makes tt-metal pick its CUSTOM cluster type, which asserts that a
        fabric mesh graph descriptor is set; tt-inference-server's ``setup_runner_environment`` points
        ``TT_MESH_GRAPH_DESC_PATH`` at the tree's single-Blackhole-chip (P150) descriptor, and so does this."""
        if not any(c.board_type.lower().startswith("p300") for c in self.plan.chips):
            return {}
        if "TT_MESH_GRAPH_DESC_PATH" in os.environ:
            self.decisions["TT_MESH_GRAPH_DESC_PATH"] = f"{os.environ['TT_MESH_GRAPH_DESC_PATH']} (yours)"
            return {}
        path = self.home / P300_CHIP_DESCRIPTOR
        if not path.is_file():
            raise FramereelError(f"one chip of a P300 board needs a fabric mesh graph descriptor, and this tt-metal tree "
                                 f"(commit {self.demo.commit}) has no {P300_CHIP_DESCRIPTOR}; update tt-metal or set "
                                 "TT_MESH_GRAPH_DESC_PATH")
        self.decisions["TT_MESH_GRAPH_DESC_PATH"] = f"{path} (one chip of a P300 board, as tt-inference-server sets it)"
        return {"TT_MESH_GRAPH_DESC_PATH": str(path)}

    def _check_chip(self) -> None:
        if self.settings.device.startswith("tt:"):
            check_chips([self.settings.device], self.plan)
        if self.plan.chips:
            self.decisions["chips"] = self.plan.reason()

    def _chip_warning(self) -> list[str]:
        """Said once per run where some chips can't be used: how many are, and why."""
        if len(self.plan.usable) < len(self.plan.chips):
            return [f"{self.plan.reason()}; --devices all uses {', '.join(self.plan.usable)}"]
        return []

    def _throttle(self, arch: str) -> None:
        if "TT_MM_THROTTLE_PERF" in self.decisions:
            return
        if arch != WORMHOLE:
            self.decisions["TT_MM_THROTTLE_PERF"] = "not set (Blackhole)"
        elif "TT_MM_THROTTLE_PERF" in os.environ:
            self.decisions["TT_MM_THROTTLE_PERF"] = f"{os.environ['TT_MM_THROTTLE_PERF']} (yours)"
        else:
            os.environ["TT_MM_THROTTLE_PERF"] = THROTTLE
            self.decisions["TT_MM_THROTTLE_PERF"] = f"{THROTTLE} (Wormhole, as tt-metal's SD demo sets it)"

    @property
    def notes(self) -> list[str]:
        return [*self._notes, *(f"{k}: {v}" for k, v in self.decisions.items())]

    @notes.setter
    def notes(self, value: list[str]) -> None:
        self._notes = list(value)

