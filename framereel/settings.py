"""The settings a run is made of, as frozen dataclasses the CLI, interactive mode and bench all build.

* :class:`RenderSettings` — how frames are rendered (model, backend, device, scheduler, speed options);
* :class:`Parallelism` — where they are rendered (processes, devices, Ray);
* :class:`StitchSettings` — how frames become a video.

Each validates itself (``check()``) with one-line :class:`~framereel.errors.FramereelError` messages, so
every front end refuses the same bad values the same way, before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FramereelError
from .ffmpeg import find_ffmpeg, has_encoder
from .validate import (
    CRF_RANGE,
    DEFAULT_CODEC,
    MAX_CROSSFADE,
    MAX_FPS,
    MAX_SMOOTH_FPS,
    check_audio,
    check_number,
    check_video_path,
    parse_indices,
    parse_size,
)

DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
SCHEDULERS = ("auto", "dpm++", "pndm", "ddim", "euler", "euler-a", "heun", "unipc", "lcm", "flow-euler")
EXECUTORS = ("local", "ray")
FAST_PATH_MODES = ("off", "auto", "on", "max")  # --fast-path (framereel.backends.fast)
TRANSITIONS = ("cut", "crossfade", "smooth")  # how one shot gives way to the next


@dataclass(frozen=True)
class RenderSettings:
    """Run-wide rendering settings (what every frame of a run shares)."""

    model: str = DEFAULT_MODEL
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    scheduler: str = "auto"  # the model family's (see ``backends.families``)
    safety_checker: bool = True
    reset_device: bool = False  # Tenstorrent: `tt-smi -r` before opening the chip
    batch: int = 0  # frames per UNet call; 0 = auto (measured per model, size, device, dtype and threads)
    batch_sizes: tuple[tuple[int, int, int], ...] = ()  # --batch auto as measured: (width, height, batch)
    compile: bool = False  # torch.compile the UNet (and VAE decoder)
    tiny_vae: str | None = None  # a TAESD-style AutoencoderTiny (folder or Hub id) to decode with
    step_cache: int = 0  # DeepCache-style: full UNet every N steps, shallow branch in between; 0/1 = off
    loras: tuple[str, ...] = ()  # LoRA adapters: "PATH_OR_ID[:WEIGHT]" (see ``backends.lora``)
    fast: bool = False  # few-step preset: the family's LCM-LoRA
    fast_path: str = "off"  # off|auto|on|max: channels-last, fused QKV, torch.compile (see ``backends.fast``)
    refiner: str | None = None  # SDXL: a refiner (folder, file or Hub id) that finishes the base's latents
    refiner_switch: float = 0.8  # the fraction of the denoising the base does before the refiner takes over
    offload: str | None = None  # "model" or "sequential": accelerate's CPU offload (CUDA only)
    vae_tiling: bool = False  # decode the latents tile by tile (less memory at large sizes)
    attention_slicing: bool = False  # attention computed in slices (less memory, a little slower)
    motion_adapter: str | None = None  # AnimateDiff MotionAdapter (folder, Hub id or "demo") for "clip" frames
    motion_loras: tuple[str, ...] = ()  # motion LoRAs for clips, "PATH:WEIGHT"
    depth_model: str | None = None  # depth-estimation model (folder or Hub id) for 3D camera motion
    video_model: str | None = None  # a video diffusion model (Wan, LTX-Video; folder or Hub id) for "clip" frames

    def check(self) -> RenderSettings:
        if self.scheduler not in SCHEDULERS:
            raise FramereelError(f'unknown scheduler "{self.scheduler}"; choose one of {", ".join(SCHEDULERS)}')
        if self.batch < 0 or self.step_cache < 0:
            raise FramereelError("--batch and --step-cache take a whole number ≥ 0 (0: auto / off)")
        if self.offload not in (None, "model", "sequential"):
            raise FramereelError(f"--offload {self.offload}: choose model or sequential")
        if self.fast_path not in FAST_PATH_MODES:
            raise FramereelError(f"--fast-path {self.fast_path}: choose {', '.join(FAST_PATH_MODES)}")
        if self.compile and self.step_cache > 1:
            raise FramereelError("--compile and --step-cache don't combine (the cache switches the UNet's graph "
                                 "every step); pick one")
        if not 0 < self.refiner_switch < 1:
            raise FramereelError(f"--refiner-switch {self.refiner_switch:g}: give a fraction between 0 and 1 "
                                 "(0.8: the base denoises the first 80%, the refiner the rest)")
        if self.refiner_switch != 0.8 and not self.refiner:
            raise FramereelError("--refiner-switch needs --refiner (the SDXL refiner that takes over at that point)")
        if self.motion_loras and not self.motion_adapter:
            raise FramereelError("--motion-lora needs --motion-adapter (a LoRA adjusts a motion module)")
        if self.video_model and self.motion_adapter:
            raise FramereelError("--video-model and --motion-adapter both render clips; pick one")
        return self

    def speed_flags(self) -> list[str]:
        """The speed options asked for, as the user typed them (for refusals)."""
        asked = (("--batch N", self.batch > 1), ("--compile", self.compile), ("--tiny-vae", bool(self.tiny_vae)),
                 ("--step-cache", self.step_cache > 1), ("--lora", bool(self.loras)), ("--fast", self.fast),
                 ("--fast-path", self.fast_path != "off"),
                 ("--refiner", bool(self.refiner)),
                 ("--offload", bool(self.offload)), ("--vae-tiling", self.vae_tiling),
                 ("--attention-slicing", self.attention_slicing))
        return [flag for flag, on in asked if on]


@dataclass(frozen=True)
class Parallelism:
    """Where frames render: ``workers`` processes on the backend's device, one per entry of
    ``devices``, or Ray actors (``executor="ray"``, on ``ray_address`` or a local cluster)."""

    workers: int = 1
    devices: tuple[str, ...] | None = None
    executor: str = "local"
    ray_address: str | None = None

    def check(self) -> Parallelism:
        if self.workers < 1:
            raise FramereelError("--workers must be at least 1")
        if self.executor not in EXECUTORS:
            raise FramereelError(f"--executor {self.executor}: choose {' or '.join(EXECUTORS)}")
        return self

    def worker_devices(self, device: str) -> list[str]:
        """One entry per worker: the listed devices, else ``workers`` copies of the backend's device."""
        return list(self.devices) if self.devices else [device] * self.workers

    @property
    def in_process(self) -> bool:
        return self.executor == "local" and (len(self.devices) if self.devices else self.workers) == 1


@dataclass(frozen=True)
class StitchSettings:
    """How ``stitch`` turns frames into a video (see :func:`framereel.video.stitch`)."""

    video: str | Path | None = None  # default: OUT/video.mp4; the extension picks the format
    fps: float | None = None  # frames without their own duration; None: the last stitch's, else 2
    crf: int = 18
    codec: str | None = None
    transition: str = "cut"
    crossfade: float = 0.5
    smooth_fps: int = 24
    size: str | None = None
    frames: str | None = None
    zoom: float = 0.0
    audio: str | Path | None = None
    audio_loop: bool = False
    # finishing (framereel.finishing): model files as "PATH[:ARG]" strings or parsed specs
    upscale: Any = None  # "MODEL[:SCALE]" or an UpscaleSpec: encode upscaled frames from OUT/upscaled/
    upscale_tile: int = 256  # tile side in source pixels (0: whole frames)
    upscale_overlap: int = 16  # context pixels around each tile
    interpolate: Any = None  # "MODEL[:FACTOR|FPSfps]" or an InterpolateSpec: RIFE in-betweens inside runs
    loop: bool = False  # in-betweens across the loop seam too
    finish_device: str = "auto"  # device for upscaling and interpolation

    def check(self, out: str | Path, ffmpeg: str | None = None) -> str:
        """Every option but finishing, checked without reading a frame (``out``: the run folder, where
        the video goes by default); returns the video's format. ``ffmpeg`` is found if a codec or
        soundtrack needs asking it."""
        fmt = check_video_path(Path(self.video) if self.video else Path(out) / "video.mp4")
        check_number("--fps", self.fps, 0, MAX_FPS, above=True)
        if self.transition not in TRANSITIONS:
            raise FramereelError(f"--transition {self.transition}: choose one of {', '.join(TRANSITIONS)}")
        check_number("--crossfade", self.crossfade, 0, MAX_CROSSFADE, above=True, unit=" seconds")
        smooth_fps = self.smooth_fps
        if isinstance(smooth_fps, bool) or not isinstance(smooth_fps, int) or not 1 <= smooth_fps <= MAX_SMOOTH_FPS:
            raise FramereelError(f"--smooth-fps {smooth_fps}: give a whole number from 1 to {MAX_SMOOTH_FPS}")
        check_number("--zoom", self.zoom, 0, 1)
        if self.size:
            parse_size(self.size)
        if self.frames:
            parse_indices(self.frames)
        if fmt in (".gif", ".webp") and self.codec:
            raise FramereelError(f"--codec: {fmt} files have one encoder; drop --codec or write .mp4, .mov or .webm")
        name = self.codec or DEFAULT_CODEC.get(fmt)
        lo, hi = CRF_RANGE.get(name, (0, 63))
        crf = self.crf
        if isinstance(crf, bool) or not isinstance(crf, int) or not lo <= crf <= hi:
            raise FramereelError(f"--crf {crf}: {name or fmt} takes {lo} (best) to {hi} (smallest); 18 looks near lossless")
        if self.audio is not None and fmt in (".gif", ".webp"):
            raise FramereelError(f"--audio: {fmt} files have no sound; write .mp4, .mov or .webm")
        if name or self.audio is not None:
            ffmpeg = ffmpeg or find_ffmpeg()
            if name and not has_encoder(ffmpeg, name):
                hint = {".webp": "; write .gif or .webm instead"}.get(fmt, "; list them with `ffmpeg -encoders`")
                raise FramereelError(f"--codec {name}: this ffmpeg ({Path(ffmpeg).name}) has no such video encoder{hint}")
            if self.audio is not None:
                check_audio(Path(self.audio), ffmpeg)
        return fmt
