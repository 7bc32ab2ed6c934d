"""What the TT-DiT backends share (tt-metal's ``models/experimental/tt_dit/pipelines``): a mesh of every
chip in a shape the pipeline's ``create_pipeline`` has a configuration for, opened with the fabric its
tests use (``line_params`` / ``ring_params`` in ``tt_dit/utils/test.py``), refused in one line — the
model, the meshes it needs, the chips attached — when the chips make none of them."""

from __future__ import annotations

from pathlib import Path

from ..errors import FramereelError
from ..settings import RenderSettings
from .tt_base import TtBase
from .tt_chips import check_ttnn, explain_open_failure, import_ttnn
from .tt_tree import describe_params, open_params


class TtDitBackend(TtBase):
    """A TT-DiT pipeline on a mesh of every chip. Subclasses set ``label``, ``source`` (the pipeline
    file in the tree) and ``meshes`` (``{arch: {(rows, cols): fabric name}}``)."""

    name = "tt"
    label = "TT-DiT"
    source = ""
    meshes: dict[str, dict[tuple[int, int], str]] = {}

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        if not (self.home / self.source).is_file():
            raise FramereelError(f"this tt-metal tree (commit {self.demo.commit}) has no {self.label} pipeline "
                                 f"({self.source}); update tt-metal")
        check_ttnn()
        self.arch, _ = self._arch()
        chips = len(self.plan.chips)
        shapes = self.meshes.get(self.arch, {})
        self.shape = next((s for s in shapes if s[0] * s[1] == chips), None)
        if self.shape is None:
            needs = " or ".join(f"{r}x{c}" for r, c in shapes) or "a mesh tt-metal doesn't configure"
            raise FramereelError(f"{self.label} ({settings.model}) needs a {needs} mesh on {self.arch}; attached: "
                                 f"{chips} chip(s) ({self.plan.boards or 'none'})")
        self.device = f"tt:mesh {self.shape[0]}x{self.shape[1]}"
        self.device_reason = "Tenstorrent mesh of every chip (TT-DiT)"
        self.mesh = self.pipeline = self.ttnn = None
        self.decisions.update(model=f"{self.label} through tt-metal's TT-DiT pipeline ({self.source})",
                              mesh=f"{self.device[8:]} ({self.plan.boards})")

    def _local_model(self) -> Path | None:
        path = Path(self.settings.model).expanduser()
        return path if path.is_dir() else None

    def count_tokens(self, text: str) -> int:
        return 0

    def _open_mesh(self) -> None:
        ttnn = self.ttnn = import_ttnn()
        fabric = getattr(ttnn.FabricConfig, self.meshes[self.arch][self.shape])
        params, how = open_params(self.home, {}, self.arch)
        self.decisions.update(open_mesh=describe_params(params), dispatch=how, fabric=fabric.name)
        ttnn.set_fabric_config(fabric)  # before the mesh opens, as the root conftest's set_fabric
        try:
            self.mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(*self.shape), **params)
        except Exception as err:  # ttnn raises RuntimeError with C++ messages
            raise explain_open_failure(err) from err

    def close(self) -> None:
        if self.mesh is None:
            return
        self.pipeline = None
        self.ttnn.close_mesh_device(self.mesh)
        self.ttnn.set_fabric_config(self.ttnn.FabricConfig.DISABLED)  # the fixture's reset_fabric
        self.mesh = None
