"""``--backend tt`` for SDXL: tt-metal's ``TtSDXLPipeline`` data-parallel on a mesh of every chip.

1. check the frames (1024×1024, the tree's Euler scheduler, one steps/guidance per run, key frames);
2. open the mesh as tt-metal's root conftest ``mesh_device`` fixture does (the tree's device params,
   fabric for cfg-parallel, ``open_mesh_device(mesh_shape=MeshShape(1, N))``, reshaped to 2×N/2 for
   cfg-parallel as the SDXL demo's ``prepare_device``);
3. build ``TtSDXLPipeline`` over the diffusers SDXL pipeline, compile text encoding and image processing;
4. per call, as the demo's loop: ``encode_prompts`` → ``generate_input_tensors`` → ``prepare_input_tensors``
   → ``generate_images``, one prompt per chip (per mesh column with cfg-parallel), the last call padded
   with empty prompts. Each chip's latents are framereel's own for its frame's seed, sharded the way
   the tree shards its own.

tt-metal's API moves between commits, so the tree's signatures are read (:func:`api_of`) and two
shapes are supported: ``current`` (``encode_prompts(prompts, negative_prompts, prompt_2, negative_prompt_2)``,
``generate_input_tensors(all_prompt_embeds_torch, torch_add_text_embeds, start_latent_seed, …)``) and
``earlier`` (``encode_prompts(prompts, negative_prompts)``, four embedding lists). Another is refused.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import ModelInfo
from .common import files_fingerprint
from .tt_base import TtBase
from .tt_chips import check_ttnn, explain_open_failure, import_ttnn
from .tt_models import SDXL_COMMON, SDXL_PIPELINE, TT_MODELS, check_mesh
from .tt_tree import describe_params, open_params

SDXL_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_SIZE = 1024  # the pipeline's generate_input_tensors: height = width = 1024
DEMO_DEFAULTS = {"steps": 50, "guidance": 5.0}  # the SDXL demo's parametrize
# (encode_prompts parameters, generate_input_tensors parameters) of each supported shape, newest first
SDXL_APIS = {
    "current": (("prompts", "negative_prompts", "prompt_2", "negative_prompt_2"),
                ("all_prompt_embeds_torch", "torch_add_text_embeds", "start_latent_seed")),
    "earlier": (("prompts", "negative_prompts"),
                ("prompt_embeds_torch", "negative_prompt_embeds_torch", "pooled_prompt_embeds_torch",
                 "negative_pooled_prompt_embeds_torch")),
}


@dataclasses.dataclass(frozen=True)
class SdxlApi:
    """The SDXL pipeline's shape in one tree: its name in :data:`SDXL_APIS` and the config's fields."""

    name: str | None  # None: a shape framereel doesn't know
    encode: tuple[str, ...]
    generate: tuple[str, ...]
    fields: tuple[str, ...]

    @property
    def cfg_parallel(self) -> bool:
        return "use_cfg_parallel" in self.fields

    def describe(self) -> str:
        if self.name is None:
            return f"unknown: encode_prompts({', '.join(self.encode)}), generate_input_tensors({', '.join(self.generate)})"
        extra = [f for f in ("use_cfg_parallel", "crop_coords_top_left", "guidance_rescale") if f in self.fields]
        return f"{self.name}: encode_prompts({', '.join(self.encode)})" + (f"; config has {', '.join(extra)}" if extra else "")


def classify(encode: tuple[str, ...], generate: tuple[str, ...], fields: tuple[str, ...]) -> SdxlApi:
    for name, (enc, gen) in SDXL_APIS.items():
        if encode == enc and generate[:len(gen)] == gen:
            return SdxlApi(name, encode, generate, fields)
    return SdxlApi(None, encode, generate, fields)


def api_of(pipeline_cls: type, config_cls: type) -> SdxlApi:
    """The shape of the imported ``TtSDXLPipeline`` / ``TtSDXLPipelineConfig``, read with inspect."""
    def params(fn) -> tuple[str, ...]:
        return tuple(p for p in inspect.signature(fn).parameters if p != "self")

    return classify(params(pipeline_cls.encode_prompts), params(pipeline_cls.generate_input_tensors),
                    tuple(f.name for f in dataclasses.fields(config_cls)))


def api_in_source(path: Path) -> SdxlApi:
    """The same, read from the file without importing it (ttnn and the weights stay untouched): for doctor."""
    tree = ast.parse(path.read_text(errors="replace"))
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TtSDXLPipelineConfig":
            found["fields"] = tuple(s.target.id for s in node.body
                                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name))
        if isinstance(node, ast.ClassDef) and node.name == "TtSDXLPipeline":
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name in ("encode_prompts", "generate_input_tensors"):
                    found[fn.name] = tuple(a.arg for a in fn.args.args if a.arg != "self")
    return classify(found.get("encode_prompts", ()), found.get("generate_input_tensors", ()), found.get("fields", ()))


def sdxl_kind_refusal(f: Frame) -> str:
    """Why SDXL on the mesh renders text-to-image frames only, for frame ``f`` (a chain or morph frame)."""
    if f.kind == "morph":
        why = ("a morph's in-between starts from its key frames' blended latents, and tt-metal's TtSDXLPipeline "
               "makes its own latents from a seed (generate_input_tensors takes no latents)")
    else:  # a chain: "init": "previous"
        why = ("tt-metal's SDXL img2img (TtSDXLImg2ImgPipeline) is run by its demo with the refiner's weights "
               "(aesthetic-score time ids) and draws a whole mesh batch's noise from one seed, so the frame's own "
               "seed can't reach it")
    return f"frame {f.index}: --backend tt can't render {f.kind} frames with SDXL: {why}; use --backend diffusers"


def check_sdxl_frames(frames: list[Frame], scheduler: str) -> None:
    """What the tree's SDXL pipeline renders: 1024×1024 text-to-image with its Euler scheduler, one
    steps and guidance per run (set when the pipeline is built)."""
    if scheduler != "euler":
        raise FramereelError(f"--backend tt renders SDXL with tt-metal's Euler scheduler; pass --scheduler euler "
                             f"(got {scheduler})")
    for f in frames:
        if (f.width, f.height) != (SDXL_SIZE, SDXL_SIZE):
            raise FramereelError(f"frame {f.index}: tt-metal's SDXL pipeline renders {SDXL_SIZE}x{SDXL_SIZE} only; "
                                 f"got {f.width}x{f.height}")
        if f.kind != "key":
            raise FramereelError(sdxl_kind_refusal(f))
    steps, guidance = {f.steps for f in frames}, {f.guidance for f in frames}
    if len(steps) > 1 or len(guidance) > 1:
        raise FramereelError("--backend tt builds one SDXL pipeline per run: every frame needs the same steps and "
                             f"guidance (got steps {sorted(steps)}, guidance {sorted(guidance)})")


class TtSdxlBackend(TtBase):
    """SDXL base on a mesh of every Tenstorrent chip, through tt-metal's ``TtSDXLPipeline``."""

    name = "tt"
    kinds = ("key",)
    default_scheduler = "euler"  # the tree's TtEulerDiscreteScheduler

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        self.model = TT_MODELS["sdxl"]
        source = self.home / SDXL_PIPELINE
        if not source.is_file():
            raise FramereelError(f"this tt-metal tree ({self.home}, commit {self.demo.commit}) has no SDXL pipeline "
                                 f"({SDXL_PIPELINE}); update tt-metal")
        self.api = api_in_source(source)
        if self.api.name is None:
            raise FramereelError(f"tt-metal commit {self.demo.commit}: its TtSDXLPipeline has a shape framereel doesn't "
                                 f"know ({self.api.describe()}); use a tt-metal commit framereel supports (README)")
        check_ttnn()
        self.chips = len(self.plan.chips)
        self.cfg_parallel = False
        self.batch = max(self.chips, 1)
        self.device = f"tt:mesh 1x{self.chips}"
        self.device_reason = "Tenstorrent mesh of every chip"
        self.mesh = self.pipeline = self.ttnn = None
        self.fabric = None
        self.call: dict[str, Any] | None = None  # the steps and guidance the pipeline is built with
        self.decisions.update(model="SDXL base 1.0 through tt-metal's TtSDXLPipeline", sdxl_api=self.api.describe())

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or SDXL_MODEL), fingerprint, SDXL_SIZE, SDXL_SIZE, dict(DEMO_DEFAULTS), scheduler="euler")

    def _local_model(self) -> Path | None:
        path = Path(self.settings.model).expanduser()
        return path if path.is_dir() else None

    def check(self, frames: list[Frame]) -> list[str]:
        """Chains and morphs refused naming why tt-metal's SDXL can't render them (before the generic checks)."""
        for f in frames:
            if f.kind in ("chain", "morph"):
                raise FramereelError(sdxl_kind_refusal(f))
        return super().check(frames)

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Refuse what the pipeline or the mesh can't do, and settle the batch, before anything opens."""
        super().prepare(frames, out_dir)
        check_mesh(self.model, self.plan, self.settings.model)
        if self.settings.device not in ("auto", "tt", "tt:0"):
            raise FramereelError(f"SDXL on Tenstorrent renders on one mesh of every chip ({self.plan.reason()}); "
                                 f"drop --device/--devices {self.settings.device}")
        check_sdxl_frames(frames, self.settings.scheduler)
        if frames:
            self.call = {"steps": frames[0].steps, "guidance": frames[0].guidance}
        # cfg-parallel (the two guidance halves on two mesh rows) pays when the frames don't fill a mesh
        # of one prompt per chip: the same calls, each faster
        self.cfg_parallel = (self.api.cfg_parallel and self.chips >= 2 and self.chips % 2 == 0
                             and 0 < len(frames) <= self.chips // 2)
        self.batch = self.chips // 2 if self.cfg_parallel else self.chips
        mesh = f"2x{self.chips // 2}" if self.cfg_parallel else f"1x{self.chips}"
        self.device = f"tt:mesh {mesh}"
        self.decisions.update(mesh=f"{mesh} ({self.plan.boards})", prompts_per_call=str(self.batch),
                              cfg_parallel="on" if self.cfg_parallel else
                              ("off (a prompt per chip renders more frames per call)" if self.api.cfg_parallel
                               else "not in this tree's pipeline"))
        return []

    def count_tokens(self, text: str) -> int:
        return 0

    def _open_mesh(self) -> None:
        """As tt-metal's root conftest ``mesh_device`` fixture: the tree's device params through its
        ``get_updated_device_params``, fabric set before the mesh opens (cfg-parallel), ``MeshShape(1, N)``."""
        ttnn = self.ttnn = import_ttnn()
        common = importlib.import_module(SDXL_COMMON[:-3].replace("/", "."))
        numbers = {"l1_small_size": int(common.SDXL_L1_SMALL_SIZE),
                   "trace_region_size": int(common.SDXL_TRACE_REGION_SIZE)}
        arch, _ = self._arch(ttnn)
        params, how = open_params(self.home, numbers, arch)
        self.decisions.update(open_mesh=describe_params(params), dispatch=how,
                              device_params_from=f"{SDXL_COMMON} (SDXL_L1_SMALL_SIZE, SDXL_TRACE_REGION_SIZE)")
        if self.cfg_parallel:
            self.fabric = getattr(common, "SDXL_FABRIC_CONFIG", None) or ttnn.FabricConfig.FABRIC_1D
            ttnn.set_fabric_config(self.fabric)
        try:
            self.mesh = ttnn.open_mesh_device(mesh_shape=ttnn.MeshShape(1, self.chips), **params)
        except Exception as err:  # ttnn raises RuntimeError with C++ messages
            raise explain_open_failure(err) from err
        if self.cfg_parallel:  # the demo's prepare_device
            self.mesh.reshape(ttnn.MeshShape(2, self.chips // 2))

    def load(self) -> None:
        if self.pipeline is not None:
            return
        import torch
        from diffusers import StableDiffusionXLPipeline

        self._open_mesh()
        module = importlib.import_module(SDXL_PIPELINE[:-3].replace("/", "."))
        api = api_of(module.TtSDXLPipeline, module.TtSDXLPipelineConfig)
        if api.name != self.api.name:
            raise FramereelError(f"tt-metal commit {self.demo.commit}: the imported TtSDXLPipeline ({api.describe()}) "
                                 f"differs from its source ({self.api.describe()}); reinstall tt-metal's Python package")
        local = self._local_model()
        try:
            torch_pipeline = StableDiffusionXLPipeline.from_pretrained(str(local or SDXL_MODEL), torch_dtype=torch.float32)
        except OSError as err:
            raise FramereelError(f"could not get the SDXL weights ({str(err).splitlines()[0]}); run `hf auth login` "
                                 "(or set HF_TOKEN)") from err
        call = self.call or DEMO_DEFAULTS
        wanted = {"num_inference_steps": call["steps"], "guidance_scale": call["guidance"],
                  "is_galaxy": self.chips == 32, "capture_trace": True, "vae_on_device": True,
                  "encoders_on_device": True, "use_cfg_parallel": self.cfg_parallel}
        config = module.TtSDXLPipelineConfig(**{k: v for k, v in wanted.items() if k in api.fields})
        self.pipeline = module.TtSDXLPipeline(ttnn_device=self.mesh, torch_pipeline=torch_pipeline, pipeline_config=config)
        self.torch = torch
        self.pipeline.compile_text_encoding()
        self._encode_and_allocate([""] * self.batch, [""] * self.batch)  # as the demo: allocate, then compile
        self.pipeline.compile_image_processing()

    def _encode_and_allocate(self, prompts: list[str], negatives: list[str]):
        """``encode_prompts`` then ``generate_input_tensors`` in this tree's shape; returns the host tensors
        ``prepare_input_tensors`` takes after the latents."""
        p = self.pipeline
        if self.api.name == "current":
            embeds, text_embeds = p.encode_prompts(prompts, negatives, None, None)
            _, tt_embeds, tt_text = p.generate_input_tensors(embeds, text_embeds)
            return [tt_embeds[0], tt_text[0]]
        encoded = p.encode_prompts(prompts, negatives)
        _, tt_embeds, tt_text = p.generate_input_tensors(*encoded)
        return [*tt_embeds[0], *tt_text[0]]

    def _latents(self, seeds: list[int]):
        """Each chip's latents from its frame's seed, laid out (channels last) and sharded as the tree does."""
        torch, ttnn = self.torch, self.ttnn
        c, h, w = 4, SDXL_SIZE // 8, SDXL_SIZE // 8
        sigma = float(self.pipeline.torch_pipeline.scheduler.init_noise_sigma)
        rows = [torch.randn((1, c, h, w), generator=torch.Generator("cpu").manual_seed(s)) * sigma for s in seeds]
        latents = torch.cat([r.permute(0, 2, 3, 1).reshape(1, 1, h * w, c) for r in rows])
        mapper = (ttnn.ShardTensor2dMesh(self.mesh, list(self.mesh.shape), dims=(None, 0)) if self.api.name == "current"
                  else ttnn.ShardTensorToMesh(self.mesh, dim=0))
        return ttnn.from_torch(latents, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, mesh_mapper=mapper)

    def render(self, frame: Frame, on_step=None, init_image=None):
        return self.render_batch([frame], on_step=on_step)[0]

    def render_batch(self, frames: list[Frame], on_step=None) -> list[tuple[Image.Image, dict[str, Any]]]:
        """One mesh call per ``batch`` frames, padded with empty prompts as the SDXL demo pads."""
        if len(frames) > self.batch:
            return [r for i in range(0, len(frames), self.batch) for r in self.render_batch(frames[i:i + self.batch], on_step)]
        check_sdxl_frames(frames, self.settings.scheduler)
        call = {"steps": frames[0].steps, "guidance": frames[0].guidance}
        if self.call is not None and self.pipeline is not None and call != self.call:
            raise FramereelError(f"frame {frames[0].index}: the SDXL pipeline was built for {self.call}; got {call}")
        self.call = self.call or call
        self.load()
        pad = self.batch - len(frames)
        prompts = [f.prompt for f in frames] + [""] * pad
        negatives = [f.negative_prompt or "" for f in frames] + [""] * pad
        seeds = [f.seed for f in frames] + [frames[-1].seed] * pad
        embeds = self._encode_and_allocate(prompts, negatives)
        self.pipeline.prepare_input_tensors([self._latents(seeds), *embeds])
        images = self.pipeline.generate_images()
        out = []
        for i, _frame in enumerate(frames):
            pil = self.pipeline.torch_pipeline.image_processor.postprocess(images[i].unsqueeze(0), output_type="pil")[0]
            out.append((pil.convert("RGB"), {"mesh_call_prompts": len(frames), "mesh_call_padding": pad}))
        if on_step is not None:
            on_step(len(frames), len(frames))
        return out

    def close(self) -> None:
        if self.mesh is None:
            return
        self.pipeline = None
        self.ttnn.close_mesh_device(self.mesh)
        self.mesh = None
        if self.fabric is not None:
            self.ttnn.set_fabric_config(self.ttnn.FabricConfig.DISABLED)  # the fixture's reset_fabric
            self.fabric = None
