"""Which tt-metal implementation renders a model on Tenstorrent, what mesh it needs, and which of them a
checkout holds; read without opening a chip (``--backend tt`` picks from here, ``doctor`` lists it).

* SD 1.4: tt-metal's SD 1.4 demo (one chip; one framereel worker per chip that opens alone).
* SDXL base 1.0: ``models/experimental/stable_diffusion_xl_base`` (``TtSDXLPipeline``), data-parallel on
  a mesh of every chip: one prompt per chip per call (half as many with cfg-parallel).
* SD 3.5 Large, FLUX.1 and Wan 2.2 (T2V / I2V): TT-DiT (``models/experimental/tt_dit/pipelines``), on
  2×4 (LoudBox / T3K) and 4×8 (Galaxy) meshes (Wan 2.2 also 1×4 and 1×8 on Blackhole). SD 3.5 Large
  and FLUX.1 render stills (:mod:`.tt_sd35`, :mod:`.tt_flux`), Wan 2.2 ``"clip"`` entries (:mod:`.tt_wan`: T2V,
  and I2V for clips with a ``"first_frame"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import FramereelError
from .tt_tree import LAYOUTS, ChipPlan

SDXL_FOLDER = "models/experimental/stable_diffusion_xl_base"
SDXL_PIPELINE = f"{SDXL_FOLDER}/tt/tt_sdxl_pipeline.py"
SDXL_COMMON = f"{SDXL_FOLDER}/tests/test_common.py"
TT_DIT = "models/experimental/tt_dit/pipelines"
DIT_MESHES = ((2, 4), (4, 8))  # LoudBox / T3K, Galaxy


@dataclass(frozen=True)
class TtModel:
    key: str  # "sd1", "sdxl", "sd3.5", "flux", "wan", "wan-i2v"
    label: str
    paths: tuple[str, ...]  # any of these in the tree means it holds the model
    meshes: tuple[tuple[int, int], ...] | None  # the mesh shapes it runs on; None: one chip, or any mesh
    size: int  # the frame size the tree's pipeline is built for (0: its own)
    mesh_parallel: bool  # one call renders one prompt per chip of the mesh

    def needs(self) -> str:
        if self.meshes is None:
            return "a mesh of every chip (1 or more)" if self.mesh_parallel else "one chip per worker"
        return " or ".join(f"{r}x{c}" for r, c in self.meshes)

    def runs_on(self, plan: ChipPlan) -> bool:
        chips = len(plan.chips)
        if self.meshes is None:
            return chips > 0
        return any(r * c == chips for r, c in self.meshes)


TT_MODELS: dict[str, TtModel] = {m.key: m for m in (
    TtModel("sd1", "Stable Diffusion 1.4", tuple(f for f, _ in LAYOUTS), None, 512, False),
    TtModel("sdxl", "SDXL base 1.0", (SDXL_PIPELINE,), None, 1024, True),
    TtModel("sd3.5", "SD 3.5 Large (TT-DiT)", (f"{TT_DIT}/stable_diffusion_35_large",), DIT_MESHES, 1024, False),
    TtModel("flux", "FLUX.1 (TT-DiT)", (f"{TT_DIT}/flux1",), ((1, 4), (2, 4), (4, 4), (4, 8)), 1024, False),
    TtModel("wan", "Wan 2.2 T2V (TT-DiT)", (f"{TT_DIT}/wan/pipeline_wan.py",), DIT_MESHES, 0, False),
    TtModel("wan-i2v", "Wan 2.2 I2V (TT-DiT)", (f"{TT_DIT}/wan/pipeline_wan_i2v.py",), DIT_MESHES, 0, False),
)}
FAMILY_TO_TT = {"sd1": "sd1", "sdxl": "sdxl", "sd3.5": "sd3.5", "flux-dev": "flux", "flux-schnell": "flux"}


def tt_model_key(model: str) -> str:
    """The tt-metal implementation for ``--model``: a local diffusers folder by its family, a Hub id by
    its name (anything else stays SD 1.4, the demo's own weights, as before). Refuses a family tt-metal
    has no implementation of, in one line."""
    folder = Path(model).expanduser()
    if "wan2.2" in model.lower():  # diffusers' WanPipeline folders are no family framereel's diffusers path knows
        return "wan-i2v" if "i2v" in model.lower() else "wan"
    if folder.is_dir():
        from .families import detect_folder

        family = detect_folder(folder, model)
        if family.key not in FAMILY_TO_TT:
            supported = ", ".join(m.label for m in TT_MODELS.values())
            raise FramereelError(f"--backend tt: tt-metal has no {family.label} pipeline ({model}); it runs {supported}; "
                                 "use --backend diffusers")
        return FAMILY_TO_TT[family.key]
    name = model.lower()
    if "stable-diffusion-xl-base" in name or name.endswith("sdxl"):
        return "sdxl"
    if "stable-diffusion-3.5" in name:
        return "sd3.5"
    if "flux.1" in name:
        return "flux"
    return "sd1"


def models_in_tree(home: Path) -> list[TtModel]:
    """The tt-metal models this checkout holds."""
    return [m for m in TT_MODELS.values() if any((home / p).exists() for p in m.paths)]


def mesh_shape(plan: ChipPlan) -> str:
    """The mesh every chip tt-smi lists makes, as tt-metal's mesh_device fixture opens it by default (1×N)."""
    return f"1x{len(plan.chips)}" if plan.chips else "none"


def check_mesh(model: TtModel, plan: ChipPlan, model_name: str) -> None:
    """Refuse, before anything loads, a model the attached chips can't run: one line naming the model,
    the mesh it needs and the one attached."""
    if not model.runs_on(plan):
        attached = f"{len(plan.chips)} chip(s) ({plan.boards})" if plan.chips else "no chip (tt-smi lists none)"
        raise FramereelError(f"{model.label} ({model_name}) needs {model.needs()}; attached: {attached}")
