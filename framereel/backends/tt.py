"""Tenstorrent backends: Stable Diffusion 1.4 on N150 / N300 / T3K (Wormhole) and P100 / P150 / P300c (Blackhole).

Two ways in, both through tt-metal's SD 1.4 demo code from a checkout at ``TT_METAL_HOME``, in
either of its layouts (see :mod:`.tt_tree`):

* ``tt`` (in-process, the main path): opens one chip with the tree's own device numbers, compiles
  the demo's trace (UNet denoise loop plus VAE decode) once, then per frame copies that frame's own
  seeded latents and its prompt's CLIP embeddings (encoded on the host, cached) into the trace's
  inputs and executes it. Key frames and latent morphs work; img2img chains are refused up front.
* ``tt-demo`` (when a tt-metal version's internals differ): runs the unmodified demo with pytest,
  one run per group of ``num_prompts`` prompts (10), writing them where its ``input_path``
  parametrize points (a path relative to pytest's working folder), and checks its log before
  taking its ``input_data_{i}_512x512_ttnn.png`` files as frames. It cannot set seeds, steps or
  guidance; ``run.json`` says so.

Several chips: one process per chip that can be opened alone, each restricted to it with
``TT_METAL_VISIBLE_DEVICES``. tt-metal has no multi-chip SD 1.4 pipeline.

NOTE: this code has been tested against fakes of ttnn, tt-metal and tt-smi only; it has not yet
run on Tenstorrent hardware.
"""

from __future__ import annotations

import ast
import atexit
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import Backend, ModelInfo
from .common import files_fingerprint, native_size, slerp
from .tt_tree import (
    BLACKHOLE,
    WORMHOLE,
    ChipPlan,
    SdDemo,
    check_chips,
    chip_plan,
    describe_params,
    device_numbers,
    find_sd_demo,
    open_params,
    pytest_timeout_present,
)

SD_MODEL = "CompVis/stable-diffusion-v1-4"
CLIP_MODEL = "openai/clip-vit-large-patch14"
TRACE_TOKENS = 96  # the trace's text-embedding input is padded from 77 to 96 tokens
MIN_STEPS = 4  # PNDM
THROTTLE = "5"  # what tt-metal's SD demo sets on Wormhole "until di/dt issues are resolved"


# ------------------------------------------------------------------ environment


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
    """``--devices all`` on Tenstorrent: ``tt:N`` for each chip that can be opened alone, and why."""
    plan = chip_plan()
    return plan.usable, plan.reason()


def check_devices(devices: list[str]) -> None:
    """Refuse, in one line, a ``tt:N`` this host can't open alone."""
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


def check_frames(frames: list[Frame], scheduler: str, size: int, max_steps: int | None) -> None:
    """What the compiled trace supports: PNDM, one step count in 4..the demo's (50) and one guidance
    per run, the model's native size (512×512 for SD 1.4)."""
    if scheduler != "pndm":
        raise FramereelError(f"--backend tt runs the demo's PNDM scheduler only; pass --scheduler pndm (got {scheduler})")
    top = max_steps or 50
    for f in frames:
        if (f.width, f.height) != (size, size):
            raise FramereelError(
                f"frame {f.index}: --backend tt renders {size}x{size} only (the trace's size); got {f.width}x{f.height}")
        if not MIN_STEPS <= f.steps <= top:
            raise FramereelError(
                f"frame {f.index}: --backend tt takes {MIN_STEPS} to {top} steps (PNDM needs ≥ {MIN_STEPS}; the tree's "
                f"trace region is sized for its demo's {top}); got {f.steps}")
        if f.kind == "chain":
            raise FramereelError(f"frame {f.index}: --backend tt can't render {f.kind} frames; render them with --backend diffusers")
    steps = {f.steps for f in frames}
    guidance = {f.guidance for f in frames}
    if len(steps) > 1 or len(guidance) > 1:
        raise FramereelError(
            "--backend tt compiles one trace per run: every frame needs the same steps and guidance "
            f"(got steps {sorted(steps)}, guidance {sorted(guidance)})"
        )


class _TtBase(Backend):
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
        self.user_visible = os.environ.get("TT_METAL_VISIBLE_DEVICES")
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
        """``TT_METAL_VISIBLE_DEVICES`` restricting this process to its chip (left alone if the user set it)."""
        if self.user_visible is not None:
            self.decisions["chip"] = f"tt:{self.chip} within TT_METAL_VISIBLE_DEVICES={self.user_visible} (yours)"
            return {}
        self.decisions["chip"] = f"tt:{self.chip} (TT_METAL_VISIBLE_DEVICES={self.chip}, opened as device 0)"
        return {"TT_METAL_VISIBLE_DEVICES": str(self.chip)}

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


# ------------------------------------------------------------------ in-process: one chip, one trace


class TtBackend(_TtBase):
    """SD 1.4 on one Tenstorrent chip, through tt-metal's demo modules and a compiled trace."""

    name = "tt"
    kinds = ("key", "morph")  # img2img chains need the full pipeline

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        self.device = f"tt:{self.chip}"
        self.device_reason = "Tenstorrent chip" + (" (auto: tt-smi found a board)" if settings.backend == "auto" else "")
        if not self.demo.traced:
            raise FramereelError(
                f"this tt-metal tree ({self.demo.describe()}) predates the traced SD demo (no compile_trace_sd in "
                "sd_helper_funcs.py); update tt-metal, or use --backend tt-demo")
        check_ttnn()
        self.ttnn = None
        self.tt_device = None
        self.trace = None
        self._embeds: dict[str, Any] = {}
        self._compiled_for: tuple[int, float] | None = None
        self._numbers()

    def _numbers(self, ttnn=None) -> None:
        arch, why = self._arch(ttnn)
        numbers = device_numbers(self.demo, arch)
        self.arch, self.numbers = arch, numbers
        self.decisions.update(arch=f"{arch} ({why})", device_params=describe_params(numbers.params),
                              device_params_from=numbers.source)

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        size = native_size(folder) if folder else self.demo.image_size[0]
        fingerprint = f"tt-metal:{self.demo.commit}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or SD_MODEL), fingerprint, size, size,
                         {"steps": self.demo.steps or 50, "guidance": self.demo.body.get("guidance", 7.5)})

    def _local_model(self) -> Path | None:
        """A local diffusers folder given with --model, else None (SD 1.4 from the Hub, as the demo)."""
        path = Path(self.settings.model).expanduser()
        return path if path.is_dir() else None

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Refuse what the compiled trace can't do before the chip is opened."""
        super().prepare(frames, out_dir)
        check_frames(frames, self.settings.scheduler, self.describe().native_width, self.demo.steps)
        self._check_chip()
        self._throttle(self.arch)  # before worker processes start: they inherit it
        self.decisions["dispatch"] = "the tree's get_updated_device_params when the chip opens (doctor --smoke shows it)"
        warnings = self._chip_warning()
        if self.numbers.fallback:
            warnings.append(f"device params: {self.numbers.source}; using {self.numbers.params}")
        return warnings

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False).input_ids) if self.tt_device is not None else 0

    def _import(self, module: str):
        return importlib.import_module(f"{self.demo.prefix}.{module}")

    def _open_chip(self) -> None:
        """Restrict this process to its chip, import ttnn and open the chip with the tree's device params."""
        self._check_chip()
        if self.reset_first:
            reset_device()
            self.reset_first = False
        already = "ttnn" in sys.modules
        env = self._visible_env() if not already else {}
        if already and self.user_visible is None:
            self.decisions["chip"] = f"tt:{self.chip} (ttnn was already imported here: opened as device {self.chip})"
        os.environ.update(env)
        self._set_env = env
        ttnn = self.ttnn = import_ttnn()
        if not self.plan.arch:
            self._numbers(ttnn)
        self._throttle(self.arch)
        params, how = open_params(self.home, self.numbers.params, self.arch)
        self.decisions["dispatch"] = how
        self.decisions["open_device"] = describe_params(params)
        device_id = 0 if env else self.chip
        try:
            self.tt_device = ttnn.open_device(device_id=device_id, **params)
        except Exception as err:  # ttnn raises RuntimeError with C++ messages
            raise explain_open_failure(err) from err
        atexit.register(self.close)  # a worker process that just returns still closes its chip
        if hasattr(self.tt_device, "enable_program_cache"):  # default-on (and gone) in newer ttnn
            self.tt_device.enable_program_cache()
            self.decisions["program_cache"] = "enabled"
        else:
            self.decisions["program_cache"] = "ttnn's default"

    def load(self) -> None:
        if self.tt_device is not None:
            return
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        self._open_chip()
        custom_preprocessor = self._import("custom_preprocessing").custom_preprocessor
        TtPNDMScheduler = self._import("sd_pndm_scheduler").TtPNDMScheduler
        TtUNet = self._import("tt.ttnn_functional_unet_2d_condition_model_new_conv").UNet2DConditionModel
        Vae = self._import("tt.vae.ttnn_vae").Vae
        from ttnn.model_preprocessing import preprocess_model_parameters

        local = self._local_model()
        try:
            vae = AutoencoderKL.from_pretrained(str(local or SD_MODEL), subfolder="vae")
            self.unet = UNet2DConditionModel.from_pretrained(str(local or SD_MODEL), subfolder="unet")
            self.tokenizer = CLIPTokenizer.from_pretrained(str(local / "tokenizer") if local else CLIP_MODEL)
            self.text_encoder = CLIPTextModel.from_pretrained(str(local / "text_encoder") if local else CLIP_MODEL)
        except OSError as err:
            raise FramereelError(
                f"could not get the SD 1.4 weights ({str(err).splitlines()[0]}); run `hf auth login` "
                "(or set HF_TOKEN) and accept the model's licence on the Hub"
            ) from err
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.tt_vae = Vae(torch_vae=vae, device=self.tt_device)
        params = preprocess_model_parameters(
            initialize_model=lambda: self.unet, custom_preprocessor=custom_preprocessor, device=self.tt_device
        )
        self.size = self.describe().native_width
        self.tt_unet = TtUNet(self.tt_device, params, 2, self.size // self.vae_scale, self.size // self.vae_scale)
        self.scheduler = TtPNDMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
            skip_prk_steps=True, steps_offset=1, device=self.tt_device,
        )
        self.torch = torch

    def _compile(self, steps: int, guidance: float) -> float:
        """Capture the denoise loop + VAE decode as a trace once (per steps/guidance); returns seconds spent."""
        if self._compiled_for == (steps, guidance):
            return 0.0
        t0 = time.perf_counter()
        compile_trace_sd = self._import("sd_helper_funcs").compile_trace_sd
        ttnn, torch = self.ttnn, self.torch
        self._release_trace()
        self.scheduler.set_timesteps(steps)
        shape = (1, self.unet.config.in_channels, self.size // self.vae_scale, self.size // self.vae_scale)
        self.latents_device = ttnn.from_torch(torch.zeros(shape), dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT,
                                              device=self.tt_device)
        doubled = ttnn.concat([self.latents_device, self.latents_device], dim=0)
        tlist = []
        for t in self.scheduler.timesteps:
            emb = self.unet.time_proj(t[None].expand(doubled.shape[0])).unsqueeze(0).unsqueeze(0).permute(2, 0, 1, 3)
            tlist.append(ttnn.from_torch(emb, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=self.tt_device))
        try:
            self.embeds_device, self.output, self.trace = compile_trace_sd(
                self.tt_device, self.tt_unet, self.unet.config, self.tt_vae, self.latents_device, tlist,
                self.scheduler.timesteps.tolist(), guidance, self.scheduler, steps,
            )
        except RuntimeError as err:
            if "trace region" in str(err):
                raise FramereelError(
                    f"the {steps}-step trace doesn't fit the chip's trace region "
                    f"(trace_region_size={self.numbers.params['trace_region_size']} from {self.numbers.source}): "
                    f"{str(err).strip().splitlines()[0]}") from err
            raise
        self._compiled_for = (steps, guidance)
        return time.perf_counter() - t0

    def _embed(self, text: str):
        if text not in self._embeds:
            ids = self.tokenizer([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            with self.torch.inference_mode():
                self._embeds[text] = self.text_encoder(ids.input_ids)[0]
        return self._embeds[text]

    def render(self, frame: Frame, on_step=None, init_image=None):
        check_frames([frame], self.settings.scheduler, self.describe().native_width, self.demo.steps)
        self.load()
        torch, ttnn = self.torch, self.ttnn
        compile_seconds = self._compile(frame.steps, frame.guidance)
        self.scheduler.set_timesteps(frame.steps)
        shape = (1, self.unet.config.in_channels, frame.height // self.vae_scale, frame.width // self.vae_scale)
        noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(frame.seed), dtype=torch.float32)
        cond = self._embed(frame.prompt)
        if frame.kind == "morph":
            t = frame.morph[2]
            other = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(frame.morph_seed), dtype=torch.float32)
            noise = slerp(noise, other, t)
            cond = torch.lerp(cond, self._embed(frame.morph_prompt), t)
        latents = noise * float(self.scheduler.init_noise_sigma)
        embeds = torch.cat([self._embed(frame.negative_prompt or ""), cond])
        embeds = torch.nn.functional.pad(embeds, (0, 0, 0, TRACE_TOKENS - embeds.shape[1]))
        ttnn.copy_host_to_device_tensor(ttnn.from_torch(latents, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT),
                                        self.latents_device, cq_id=0)
        ttnn.copy_host_to_device_tensor(ttnn.from_torch(embeds, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT),
                                        self.embeds_device, cq_id=0)
        ttnn.execute_trace(self.tt_device, self.trace, cq_id=0, blocking=False)
        image = ttnn.to_torch(self.output.cpu(blocking=True))
        ttnn.synchronize_device(self.tt_device)
        pixels = ((image / 2 + 0.5).clamp(0, 1).float().permute(0, 2, 3, 1)[0].numpy() * 255).round().astype("uint8")
        return Image.fromarray(pixels), ({"compile_seconds": round(compile_seconds, 3)} if compile_seconds else {})

    def _release_trace(self) -> None:
        if self.trace is not None:
            self.ttnn.release_trace(self.tt_device, self.trace)
            self.trace = None
            self._compiled_for = None

    def close(self) -> None:
        for key in getattr(self, "_set_env", {}):  # what load() set for its chip, not the user's
            os.environ.pop(key, None)
        if self.tt_device is None:
            return
        try:
            self._release_trace()
        finally:
            self.ttnn.close_device(self.tt_device)
            self.tt_device = None


# ------------------------------------------------------------------ the unmodified demo, num_prompts at a time

PROMPT_LOG = re.compile(r"input prompt : (\[.*\])\s*$")  # run_demo_inference: logger.info(f"input prompt : {input_prompt}")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def logged_prompts(log: str) -> list[str]:
    """The prompts the demo says it rendered, in order, from its log."""
    out = []
    for line in ANSI.sub("", log).splitlines():
        m = PROMPT_LOG.search(line)
        if m:
            try:
                value = ast.literal_eval(m.group(1))
            except (ValueError, SyntaxError):
                continue
            out.extend(str(v) for v in value)
    return out


class TtDemoBackend(_TtBase):
    """Runs tt-metal's own ``test_demo`` with pytest, ``num_prompts`` prompts a run, and maps its files to frames."""

    name = "tt-demo"
    kinds = ("key",)

    def __init__(self, settings: RenderSettings):
        super().__init__(settings)
        self.device = f"tt:{self.chip}"
        self.input_path = self.demo.input_path  # refuses a demo whose prompts framereel can't hand over
        self.batch = self.demo.num_prompts  # the runner groups frames by this: one pytest run each
        self.work_dir: Path | None = None  # out/.tt-demo once prepared; a temporary folder in a worker process
        w, h = self.demo.image_size
        self.fixed = {"seed_used": self.demo.body.get("seed"), "steps_used": self.demo.steps,
                      "guidance_used": self.demo.body.get("guidance")}
        self.decisions.update(
            input_path=f"{self.input_path} (relative to pytest's working folder, from test_demo's parametrize)",
            prompts_per_run=str(self.batch),
            pytest_timeout="--timeout=0" if pytest_timeout_present() else "pytest-timeout not installed",
            fixed=f"the unmodified demo ignores per-frame seeds, steps and guidance: every frame uses seed "
                  f"{self.fixed['seed_used']}, PNDM {self.fixed['steps_used']} steps, guidance "
                  f"{self.fixed['guidance_used']}, {w}x{h}",
        )

    @property
    def pixel_options(self) -> dict[str, Any]:
        return {"tt_demo": self.fixed}

    def describe(self) -> ModelInfo:
        w, h = self.demo.image_size
        return ModelInfo(SD_MODEL, f"tt-metal:{self.demo.commit}", w, h,
                         {"steps": self.demo.steps or 50, "guidance": self.demo.body.get("guidance", 7.5)})

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Validate before any demo runs; returns warnings for the user."""
        super().prepare(frames, out_dir)
        w, h = self.demo.image_size
        for f in frames:
            if f.kind != "key":
                raise FramereelError(f"frame {f.index}: --backend tt-demo renders plain text-to-image frames only")
            if (f.width, f.height) != (w, h):
                raise FramereelError(f"frame {f.index}: --backend tt-demo renders {w}x{h} only; got {f.width}x{f.height}")
        self._check_chip()
        self.work_dir = out_dir / ".tt-demo"
        return ([self.decisions["fixed"]] + self._chip_warning()) if frames else []

    def count_tokens(self, text: str) -> int:
        return 0

    def load(self) -> None:
        self._check_chip()
        if self.reset_first:
            reset_device()
            self.reset_first = False

    def render(self, frame: Frame, on_step=None, init_image=None):
        return self.render_batch([frame], on_step=on_step)[0]

    def render_batch(self, frames: list[Frame], on_step=None) -> list[tuple[Image.Image, dict[str, Any]]]:
        """One run of the demo for up to ``num_prompts`` frames (the rest of its prompts repeat the last)."""
        if len(frames) > self.batch:
            return [r for i in range(0, len(frames), self.batch) for r in self.render_batch(frames[i:i + self.batch], on_step)]
        images = self._run_demo([f.prompt for f in frames], f"frames_{frames[0].index:05d}", on_step)
        return [(images[i], dict(self.fixed)) for i in range(len(frames))]

    def _run_demo(self, prompts: list[str], name: str, on_step) -> list[Image.Image]:
        folder = (self.work_dir / name if self.work_dir
                  else Path(tempfile.gettempdir()) / "framereel-tt-demo" / f"{name}-{os.getpid()}")  # a worker process
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        padded = prompts + [prompts[-1]] * (self.batch - len(prompts))  # the demo indexes exactly num_prompts
        target = folder / self.input_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps([{"prompt": p} for p in padded], indent=1, ensure_ascii=False))
        env = {**os.environ, "TT_METAL_HOME": str(self.home)}
        env.update(self._visible_env())
        cmd = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", f"--rootdir={self.home}",
               *(["--timeout=0"] if pytest_timeout_present() else []),
               *([f"--device-id={self.chip}"] if self.user_visible is not None and self.chip else []), self.demo.test_node]
        self._throttle_for_env(env)
        log_path = folder / "demo.log"
        w, h = self.demo.image_size
        names = [folder / f"input_data_{i}_{h}x{w}_ttnn.png" for i in range(1, self.batch + 1)]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env)
            seen = 0
            try:
                while proc.poll() is None:
                    now = sum(1 for p in names[:len(prompts)] if p.exists())
                    if now != seen and on_step is not None:
                        on_step(now, len(prompts))
                    seen = now
                    time.sleep(0.2)
            except BaseException:
                proc.terminate()
                proc.wait(timeout=30)
                raise
        text = log_path.read_text(errors="replace")
        if proc.returncode != 0:
            tail = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise FramereelError(f"the tt-metal demo failed (exit {proc.returncode}): {tail[0]}; full log: {log_path}")
        said = logged_prompts(text)
        if said[:len(padded)] != padded:
            why = next((f"its prompt {i + 1} was {s!r}, not {p!r}" for i, (s, p) in enumerate(zip(said, padded)) if s != p),
                       f"its log names {len(said)} of the {len(padded)} prompts")
            raise FramereelError(
                f"the tt-metal demo did not render framereel's prompts ({why}); no frame of this run was kept; "
                f"full log: {log_path}")
        images = []
        for path in names[:len(prompts)]:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        shutil.rmtree(folder, ignore_errors=True)  # the frames hold the images now; a failed run's folder stays
        return images

    def _throttle_for_env(self, env: dict[str, str]) -> None:
        arch, _ = self._arch()
        self.decisions["arch"] = arch
        if arch == WORMHOLE and "TT_MM_THROTTLE_PERF" not in env:
            env["TT_MM_THROTTLE_PERF"] = THROTTLE  # the demo sets it too; this covers demos from before it did

    def close(self) -> None:
        pass
