"""Tenstorrent backends: Stable Diffusion 1.4 on N150 / N300 / T3K (Wormhole) and P100 / P300c (Blackhole).

Two ways in, both through tt-metal's SD 1.4 demo code from a checkout at ``TT_METAL_HOME``:

* ``tt`` (in-process, the main path): opens one chip, compiles the demo's trace (UNet denoise loop
  plus VAE decode) once, then per frame copies that frame's own seeded latents and its prompt's
  CLIP embeddings (encoded on the host, cached) into the trace's inputs and executes it. Key frames
  and latent morphs work; img2img chains need the full pipeline and are refused up front.
* ``tt-demo`` (fallback when a tt-metal version's internals differ): runs the unmodified demo with
  pytest in chunks of exactly 10 prompts and renames its ``input_data_{1..10}_512x512_ttnn.png``
  files into frames. It cannot set seeds, steps or guidance; ``run.json`` says so.

NOTE: this code has been tested against fakes of ttnn, tt-metal and tt-smi only; it has not yet
run on Tenstorrent hardware.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import FramereelError
from ..settings import RenderSettings
from ..storyboard import Frame
from .base import Backend, ModelInfo
from .common import files_fingerprint, native_size, slerp

SD_DEMO = Path("models/demos/wormhole/stable_diffusion")
DEMO_TEST = f"{SD_DEMO}/demo/demo.py::test_demo"
SD_MODEL = "CompVis/stable-diffusion-v1-4"
CLIP_MODEL = "openai/clip-vit-large-patch14"
DEVICE_PARAMS = {"l1_small_size": 11 * 8192, "trace_region_size": 789835776}
NATIVE = 512
TRACE_TOKENS = 96  # the trace's text-embedding input is padded from 77 to 96 tokens
DEMO_CHUNK = 10  # the demo renders exactly this many prompts per run
BLACKHOLE_BOARDS = ("p100", "p150", "p300")


# ------------------------------------------------------------------ environment


def tt_metal_home() -> Path:
    """The tt-metal checkout from ``TT_METAL_HOME``, checked to hold the SD demo."""
    home = os.environ.get("TT_METAL_HOME")
    if not home:
        raise FramereelError(
            "TT_METAL_HOME is not set; point it at your tt-metal checkout (export TT_METAL_HOME=~/tt-metal)"
        )
    path = Path(home).expanduser()
    if not (path / SD_DEMO / "demo" / "demo.py").is_file():
        raise FramereelError(
            f"TT_METAL_HOME={home} is not a tt-metal tree with the Stable Diffusion demo ({SD_DEMO}/demo/demo.py); "
            "point it at your tt-metal checkout"
        )
    return path


def board_info() -> list[str]:
    """Board types from ``tt-smi -s`` (e.g. ``["n300 L"]``); empty when tt-smi is missing or fails."""
    smi = shutil.which("tt-smi")
    if not smi:
        return []
    try:
        proc = subprocess.run([smi, "-s"], capture_output=True, text=True, timeout=60)
        data = json.loads(proc.stdout[proc.stdout.find("{"):])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return [str((d.get("board_info") or {}).get("board_type", "unknown")) for d in data.get("device_info", [])]


def tenstorrent_present() -> bool:
    """True when a tt-metal checkout is configured and tt-smi sees at least one board."""
    return bool(os.environ.get("TT_METAL_HOME")) and bool(board_info())


def is_blackhole(boards: list[str]) -> bool:
    return any(b.lower().startswith(BLACKHOLE_BOARDS) for b in boards)


def prepare_environment(home: Path, boards: list[str] | None = None) -> dict[str, str]:
    """Put tt-metal on ``sys.path`` and ``PYTHONPATH``; set ``TT_METAL_ARCH_NAME=blackhole`` for
    Blackhole boards unless the user set it. Returns what it set."""
    changed: dict[str, str] = {}
    if str(home) not in sys.path:
        sys.path.insert(0, str(home))
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(home) not in paths:
        os.environ["PYTHONPATH"] = changed["PYTHONPATH"] = os.pathsep.join([str(home), *paths])
    boards = board_info() if boards is None else boards
    if is_blackhole(boards) and "TT_METAL_ARCH_NAME" not in os.environ:
        os.environ["TT_METAL_ARCH_NAME"] = changed["TT_METAL_ARCH_NAME"] = "blackhole"
    return changed


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
    if any(k in text.lower() for k in ("no devices", "no tenstorrent", "device not found", "0 devices")):
        return FramereelError(f"no Tenstorrent chip found ({text.splitlines()[0]}); check `tt-smi -s` and the driver")
    return FramereelError(
        f"could not open the Tenstorrent chip ({text.splitlines()[0] if text else type(err).__name__}); "
        "a killed run can leave it in a bad state: run `tt-smi -r` (or pass --reset-device) and try again"
    )


def check_frames(frames: list[Frame], scheduler: str, size: int = NATIVE) -> None:
    """What the compiled trace supports: PNDM, one step count ≥ 4 and one guidance per run, the
    model's native size (512×512 for SD 1.4)."""
    if scheduler != "pndm":
        raise FramereelError(f"--backend tt runs the demo's PNDM scheduler only; pass --scheduler pndm (got {scheduler})")
    steps = {f.steps for f in frames}
    guidance = {f.guidance for f in frames}
    for f in frames:
        if (f.width, f.height) != (size, size):
            raise FramereelError(
                f"frame {f.index}: --backend tt renders {size}x{size} only (the trace's size); got {f.width}x{f.height}")
        if f.steps < 4:
            raise FramereelError(f"frame {f.index}: --backend tt needs steps >= 4 (PNDM); got {f.steps}")
        if f.kind == "chain":
            raise FramereelError(f"frame {f.index}: --backend tt can't render {f.kind} frames; render them with --backend diffusers")
    if len(steps) > 1 or len(guidance) > 1:
        raise FramereelError(
            "--backend tt compiles one trace per run: every frame needs the same steps and guidance "
            f"(got steps {sorted(steps)}, guidance {sorted(guidance)})"
        )


# ------------------------------------------------------------------ in-process: one chip, one trace


class TtBackend(Backend):
    """SD 1.4 on one Tenstorrent chip, through tt-metal's demo modules and a compiled trace."""

    speed_refusal = "the Tenstorrent backends render one traced frame at a time and don't take these"

    name = "tt"
    dtype = "bfloat16"

    def __init__(self, settings: RenderSettings, on_event: Callable[..., None] | None = None):
        super().__init__(settings)
        spec = settings.device
        self.chip = int(spec.split(":")[-1]) if spec not in ("auto", "tt") and spec.split(":")[-1].isdigit() else 0
        self.device = f"tt:{self.chip}"
        self.device_reason = "Tenstorrent chip" + (" (auto: tt-smi found a board)" if settings.backend == "auto" else "")
        self.home = tt_metal_home()
        prepare_environment(self.home)
        self.ttnn = import_ttnn()
        self.reset_first = settings.reset_device
        self.tt_device = None
        self.trace = None
        self._embeds: dict[str, Any] = {}
        self._compiled_for: tuple[int, float] | None = None

    def describe(self) -> ModelInfo:
        folder = self._local_model()
        size = native_size(folder) if folder else NATIVE
        fingerprint = f"tt-metal:{_git_head(self.home)}" + (f"+{files_fingerprint(folder)}" if folder else "")
        return ModelInfo(str(folder or SD_MODEL), fingerprint, size, size, {"steps": 50, "guidance": 7.5})

    def _local_model(self) -> Path | None:
        """A local diffusers folder given with --model, else None (SD 1.4 from the Hub, as the demo)."""
        path = Path(self.settings.model).expanduser()
        return path if path.is_dir() else None

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Refuse what the compiled trace can't do before the chip is opened."""
        info = self.describe()
        check_frames(frames, self.settings.scheduler, size=info.native_width)
        return []

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False).input_ids) if self.tt_device is not None else 0

    def load(self) -> None:
        if self.tt_device is not None:
            return
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        ttnn = self.ttnn
        if self.reset_first:
            reset_device()
        try:
            self.tt_device = ttnn.open_device(device_id=self.chip, **DEVICE_PARAMS)
        except Exception as err:  # ttnn raises RuntimeError with C++ messages
            raise explain_open_failure(err) from err
        from models.demos.wormhole.stable_diffusion.custom_preprocessing import custom_preprocessor
        from models.demos.wormhole.stable_diffusion.sd_pndm_scheduler import TtPNDMScheduler
        from models.demos.wormhole.stable_diffusion.tt.ttnn_functional_unet_2d_condition_model_new_conv import (
            UNet2DConditionModel as TtUNet,
        )
        from models.demos.wormhole.stable_diffusion.tt.vae.ttnn_vae import Vae
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

    def _compile(self, steps: int, guidance: float) -> None:
        """Capture the denoise loop + VAE decode as a trace once (per steps/guidance)."""
        if self._compiled_for == (steps, guidance):
            return
        from models.demos.wormhole.stable_diffusion.sd_helper_funcs import compile_trace_sd

        ttnn, torch = self.ttnn, self.torch
        self._release_trace()
        self.scheduler.set_timesteps(steps)
        shape = (1, self.unet.config.in_channels, self.size // self.vae_scale, self.size // self.vae_scale)
        host = torch.zeros(shape)
        self.latents_device = ttnn.from_torch(host, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=self.tt_device)
        doubled = ttnn.concat([self.latents_device, self.latents_device], dim=0)
        tlist = []
        for t in self.scheduler.timesteps:
            emb = self.unet.time_proj(t[None].expand(doubled.shape[0])).unsqueeze(0).unsqueeze(0).permute(2, 0, 1, 3)
            tlist.append(ttnn.from_torch(emb, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT, device=self.tt_device))
        self.embeds_device, self.output, self.trace = compile_trace_sd(
            self.tt_device, self.tt_unet, self.unet.config, self.tt_vae, self.latents_device, tlist,
            self.scheduler.timesteps.tolist(), guidance, self.scheduler, steps,
        )
        self._compiled_for = (steps, guidance)

    def _embed(self, text: str):
        if text not in self._embeds:
            ids = self.tokenizer([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
            with self.torch.inference_mode():
                self._embeds[text] = self.text_encoder(ids.input_ids)[0]
        return self._embeds[text]

    def render(self, frame: Frame, on_step=None, init_image=None):

        self.load()
        torch, ttnn = self.torch, self.ttnn
        self._compile(frame.steps, frame.guidance)
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
        return Image.fromarray(pixels), {}

    def _release_trace(self) -> None:
        if self.trace is not None:
            self.ttnn.release_trace(self.tt_device, self.trace)
            self.trace = None
            self._compiled_for = None

    def close(self) -> None:
        if self.tt_device is None:
            return
        try:
            self._release_trace()
        finally:
            self.ttnn.close_device(self.tt_device)
            self.tt_device = None


def _git_head(home: Path) -> str:
    head = home / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (home / ".git" / ref[5:]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return "unknown"


# ------------------------------------------------------------------ fallback: the unmodified demo in chunks of 10


class TtDemoBackend(Backend):
    """Runs tt-metal's own ``test_demo`` with pytest, 10 prompts a run, and maps its files to frames."""

    name = "tt-demo"
    dtype = "bfloat16"
    kinds = ("key",)
    speed_refusal = TtBackend.speed_refusal
    NOTE = ("the unmodified tt-metal demo ignores per-frame seeds, steps and guidance: every frame uses "
            "its fixed seed 174, PNDM 50 steps, guidance 7.5, 512x512")

    def __init__(self, settings: RenderSettings, on_event: Callable[..., None] | None = None):
        super().__init__(settings)
        self.notes = [self.NOTE]
        self.device = "tt:0"
        self.home = tt_metal_home()
        prepare_environment(self.home)
        self.work_dir: Path | None = None
        self.chunks: list[list[Frame]] = []
        self.images: dict[int, Image.Image] = {}
        self.reset_first = settings.reset_device

    def describe(self) -> ModelInfo:
        return ModelInfo(SD_MODEL, f"tt-metal:{_git_head(self.home)}", NATIVE, NATIVE, {"steps": 50, "guidance": 7.5})

    def prepare(self, frames: list[Frame], out_dir: Path) -> list[str]:
        """Validate, plan chunks of exactly 10 prompts; returns warnings for the user."""
        for f in frames:
            if f.kind != "key":
                raise FramereelError(f"frame {f.index}: --backend tt-demo renders plain text-to-image frames only")
            if (f.width, f.height) != (NATIVE, NATIVE):
                raise FramereelError(f"frame {f.index}: --backend tt-demo renders 512x512 only; got {f.width}x{f.height}")
        self.work_dir = out_dir / ".tt-demo"
        self.chunks = [frames[i:i + DEMO_CHUNK] for i in range(0, len(frames), DEMO_CHUNK)]
        return [self.NOTE] if frames else []

    def count_tokens(self, text: str) -> int:
        return 0

    def load(self) -> None:
        if self.reset_first:
            reset_device()
            self.reset_first = False

    def render(self, frame: Frame, on_step=None, init_image=None):
        if frame.index not in self.images:
            chunk = next(c for c in self.chunks if any(f.index == frame.index for f in c))
            self._run_chunk(chunk, on_step)
        return self.images.pop(frame.index), {"seed_used": 174, "steps_used": 50, "guidance_used": 7.5}

    def _run_chunk(self, chunk: list[Frame], on_step) -> None:
        import time

        first = chunk[0].index
        folder = self.work_dir / f"chunk_{first:03d}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        prompts = [{"prompt": f.prompt} for f in chunk]
        prompts += [prompts[-1]] * (DEMO_CHUNK - len(prompts))  # the demo needs exactly 10; padding is discarded
        (folder / "prompts.json").write_text(json.dumps(prompts, indent=1))
        cmd = [sys.executable, "-m", "pytest", "--disable-warnings", f"--input-path={folder / 'prompts.json'}",
               str(self.home / DEMO_TEST)]
        with open(folder / "demo.log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
            seen = 0
            while proc.poll() is None:
                now = sum(1 for i in range(1, DEMO_CHUNK + 1) if (folder / f"input_data_{i}_512x512_ttnn.png").exists())
                if now != seen and on_step is not None:
                    on_step(now, DEMO_CHUNK)
                seen = now
                time.sleep(0.2)
        if proc.returncode != 0:
            tail = (folder / "demo.log").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise FramereelError(f"the tt-metal demo failed (exit {proc.returncode}): {tail[0]}; full log: {folder / 'demo.log'}")
        for i, f in enumerate(chunk, start=1):
            with Image.open(folder / f"input_data_{i}_512x512_ttnn.png") as im:
                self.images[f.index] = im.convert("RGB")

    def close(self) -> None:
        self.images.clear()
