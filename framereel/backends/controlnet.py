"""ControlNets for the diffusers backend: a frame's ``"control"`` (see :mod:`framereel.control`)
found, checked against the model's family, turned into maps and into the family's ControlNet
pipeline arguments.

1. check (before anything loads): each ControlNet is a folder or Hub id whose ``config.json`` names a
   ControlNet made for this model (its cross-attention width is the UNet's); a depth model resolves;
   a ``video:`` image lies inside its video;
2. identity: each ControlNet by its files' contents, each control image by its bytes (a frame's hash);
3. maps: the control image fitted to the frame's size, then preprocessed (``canny``: OpenCV edges;
   ``depth``: :func:`framereel.depth.estimate_depth`, normalised; ``tile``/``none``: as it is),
   cached by the input's hash;
4. the pipeline: the family's ControlNet pipeline (text-to-image, or img2img for chained frames)
   sharing the loaded model's weights, called with the maps, weights and start/end fractions.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..control import ControlSpec
from ..errors import FramereelError
from .common import HUB_FIXES, Source, SourceKind, contents_fingerprint, resolve_source

FLAG = '"control" model'
HUB_FIXES.setdefault(FLAG, 'give the control\'s "model" as a local ControlNet folder')
CONTROLNET = SourceKind(
    flag=FLAG, marker="config.json",
    not_a_folder=FLAG + " {spec}: {path} has no config.json; pass a ControlNet folder saved with save_pretrained",
    missing=FLAG + " {spec}: no such folder; pass a local ControlNet folder or a Hub id (owner/name)",
)
# the model family's kind → (ControlNet classes it takes, text-to-image pipeline, img2img pipeline or
# None where diffusers has none, the text-to-image pipeline's name for the control image)
PIPELINES = {
    "sd": (("ControlNetModel",), "StableDiffusionControlNetPipeline", "StableDiffusionControlNetImg2ImgPipeline",
           "image"),
    "sdxl": (("ControlNetModel", "ControlNetUnionModel"), "StableDiffusionXLControlNetPipeline",
             "StableDiffusionXLControlNetImg2ImgPipeline", "image"),
    "sd3": (("SD3ControlNetModel",), "StableDiffusion3ControlNetPipeline", None, "control_image"),
    "flux": (("FluxControlNetModel",), "FluxControlNetPipeline", "FluxControlNetImg2ImgPipeline", "control_image"),
}
# config keys a ControlNet shares with the transformer it steers (SD 3, FLUX)
SHARED_WIDTHS = ("joint_attention_dim", "in_channels", "pooled_projection_dim")
CANNY_THRESHOLDS = (100, 200)  # OpenCV's low and high hysteresis thresholds, as diffusers' ControlNet docs use
MAP_CACHE = 64  # preprocessed maps kept in memory


def controlnet_config(source: Source, spec: str) -> dict[str, Any]:
    try:
        config = json.loads((source.path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise FramereelError(f"{FLAG} {spec}: config.json can't be read ({err}); pass a ControlNet folder") from None
    return config if isinstance(config, dict) else {}


def check_fits(config: dict[str, Any], spec: str, family, denoiser: dict[str, Any]) -> None:
    """A ControlNet must be one for the model's family (its class, its widths: ``denoiser`` is the
    model's UNet or transformer config), else one line."""
    classes = PIPELINES[family.kind][0]
    cls = config.get("_class_name", "?")
    if cls not in classes:
        raise FramereelError(f"{FLAG} {spec}: its config.json says {cls}, not a ControlNet for {family.label} "
                             f"({' or '.join(classes)})")
    if family.kind in ("sd3", "flux"):
        for key in SHARED_WIDTHS:
            if key in config and key in denoiser and config[key] != denoiser[key]:
                raise FramereelError(f"{FLAG} {spec}: its {key} is {config[key]}, the model's is {denoiser[key]}: a "
                                     f"ControlNet made for another {family.label} model; use one trained for this one")
        return
    unet = denoiser
    want, have = unet.get("cross_attention_dim"), config.get("cross_attention_dim")
    sdxl_net = config.get("addition_embed_type") == "text_time"
    if (want is not None and have is not None and want != have) or sdxl_net != (family.kind == "sdxl"):
        made_for = "SDXL" if sdxl_net else {768: "SD 1.x", 1024: "SD 2.x"}.get(have, f"a {have}-wide text encoder")
        raise FramereelError(f"{FLAG} {spec}: a ControlNet made for {made_for}, but the model is {family.label}; "
                             f"use a ControlNet trained for {family.label}")


@lru_cache(maxsize=16)
def _video_times(path: str, size: int, mtime_ns: int) -> tuple[tuple[float, ...], float]:
    """The start time of every frame of a video (from its packets, nothing decoded) and its length."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        step = 1 / float(stream.average_rate or 25)
        times = sorted(float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None)
    if not times:
        raise ValueError("no video frames")
    return tuple(t - times[0] for t in times), times[-1] - times[0] + step


def video_frame(path: str, seconds: float, label: str, decode: bool = True):
    """The frame of the video at ``path`` shown at ``seconds`` (PIL; with ``decode=False`` only checked
    to exist), or one line when the video is shorter or no video."""
    import av

    try:
        st = Path(path).stat()
        times, length = _video_times(path, st.st_size, st.st_mtime_ns)
    except (av.error.FFmpegError, IndexError, ValueError, OSError) as err:
        raise FramereelError(f"{label}: {path}: can't decode it as a video ({str(err).splitlines()[0]}); "
                             "give a video file (mp4, webm, mov …)") from err
    if seconds > length - 1e-6:  # the last frame ends the video
        raise FramereelError(f"{label}: {Path(path).name} is {length:g}s long, shorter than the film: no frame at "
                             f"{seconds:g}s; use a longer video or fewer frames")
    if not decode:
        return None
    position = max(i for i, t in enumerate(times) if t <= seconds + 1e-6)  # frames in display order
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == position:
                return frame.to_image().convert("RGB")
    raise FramereelError(f"{label}: {path}: frame {position} could not be decoded; re-encode the video")


def image_digest(image) -> str:
    """A short hash of a PIL image's pixels (and size and mode)."""
    h = hashlib.sha256(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:16]


def preprocess(image, spec: ControlSpec, width: int, height: int, device: str, depth_model: str | None = None):
    """The ControlNet map of ``image`` (PIL) for a frame of ``width``×``height``: the image fitted
    (scaled and centre-cropped) to that size, then run through ``spec.preprocess`` (``depth``: with
    ``depth_model``)."""
    import numpy as np
    from PIL import Image, ImageOps

    fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    if spec.preprocess == "canny":
        import cv2

        edges = cv2.Canny(np.asarray(fitted), *CANNY_THRESHOLDS)
        return Image.fromarray(np.stack([edges] * 3, axis=-1))
    if spec.preprocess == "depth":
        from ..depth import estimate_depth

        depth = estimate_depth(fitted, depth_model, device)
        lo, hi = float(depth.min()), float(depth.max())
        scaled = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
        gray = (scaled * 255.0).round().astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1))
    return fitted  # "tile" and "none": the image itself


@contextmanager
def seeded_global_rng(seed: int | None):
    """torch's global generators seeded with ``seed`` inside, as they were after (None: untouched).
    SD 3's ControlNet pipeline samples the control image's latents from them."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else []):
        torch.manual_seed(seed)
        yield


class ControlNets:
    """The ControlNets of a run: found once, checked, fingerprinted, loaded once each."""

    def __init__(self, family, unet_config: dict[str, Any], device: str, depth_model: str | None = None):
        self.family, self.unet_config, self.device = family, unet_config, device
        self.depth_model = depth_model  # the run's, for "depth" entries that name none
        self._sources: dict[str, Source] = {}
        self._fingerprints: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}
        self._pipes: dict[tuple, Any] = {}
        self._maps: OrderedDict[tuple, Any] = OrderedDict()

    def source(self, spec: str, frame=None) -> Source:
        """The ControlNet ``spec`` names, checked against the model; errors name ``frame``."""
        if spec not in self._sources:
            try:
                source = resolve_source(spec, CONTROLNET)
                check_fits(controlnet_config(source, spec), spec, self.family, self.unet_config)
            except FramereelError as err:
                raise FramereelError(f"frame {frame.index}: {err}" if frame is not None else str(err)) from None
            self._sources[spec] = source
        return self._sources[spec]

    def check(self, frames) -> None:
        """Every ControlNet, depth model and video frame the frames need, found and fitting; one line if not."""
        for f in frames:
            if f.control and f.kind == "chain" and PIPELINES[self.family.kind][2] is None:
                raise FramereelError(f'frame {f.index}: "control" on a chained frame: diffusers has no ControlNet '
                                     f'img2img pipeline for {self.family.label}; drop "init" or "control" here')
            for c in f.control or ():
                self.source(c.model, f)
                if c.preprocess == "depth":
                    self.depth_source(c, f)
                if c.source == "video":
                    video_frame(*c.video, f'frame {f.index}: "control" image', decode=False)

    def options(self, frame) -> dict[str, Any]:
        """A frame's ControlNets in its hash: each by its files' contents, with its settings."""
        if not frame.control:
            return {}
        return {"control": [{"model": self.fingerprint(c.model, frame), "preprocess": c.preprocess, "weight": c.weight,
                             "start": c.start, "end": c.end,
                             **({"depth_model": self._depth_fingerprint(c, frame)}
                                if c.preprocess == "depth" else {})}
                            for c in frame.control]}

    def fingerprint(self, spec: str, frame=None) -> str:
        if spec not in self._fingerprints:
            self._fingerprints[spec] = contents_fingerprint(self.source(spec, frame).path)
        return self._fingerprints[spec]

    def depth_of(self, spec: ControlSpec, frame) -> str:
        """The depth model of a ``"depth"`` entry: its own, else the run's; one line if neither."""
        if spec.depth_model or self.depth_model:
            return spec.depth_model or self.depth_model
        from dataclasses import fields

        from ..settings import RenderSettings

        flag = " (or --depth-model)" if "depth_model" in {f.name for f in fields(RenderSettings)} else ""
        raise FramereelError(f'frame {frame.index}: "control": "preprocess": "depth" needs "depth_model"{flag}: a '
                             "depth-estimation model folder or Hub id, like depth-anything/Depth-Anything-V2-Small-hf")

    def depth_source(self, spec: ControlSpec, frame) -> Source:
        """The depth model of a ``"depth"`` entry, found and checked; errors name the frame and who named it."""
        from ..depth import CONTROL_DEPTH_MODEL, DEPTH_MODEL, find_depth_model

        name = self.depth_of(spec, frame)
        key = f"depth:{name}"
        if key not in self._sources:
            try:
                self._sources[key] = find_depth_model(name, CONTROL_DEPTH_MODEL if spec.depth_model else DEPTH_MODEL)
            except FramereelError as err:
                raise FramereelError(f"frame {frame.index}: {err}") from None
        return self._sources[key]

    def _depth_fingerprint(self, spec: ControlSpec, frame) -> str:
        key = f"depth:{self.depth_of(spec, frame)}"
        if key not in self._fingerprints:
            self._fingerprints[key] = contents_fingerprint(self.depth_source(spec, frame).path)
        return self._fingerprints[key]

    # ------------------------------------------------------------ maps

    def input_image(self, spec: ControlSpec, frame, image_of: Callable[[int], Any] | None):
        """The control image as given, before preprocessing."""
        from PIL import Image

        if spec.source == "previous":
            if image_of is None:
                raise FramereelError(f'frame {frame.index}: "control" image "previous" needs frame {frame.index - 1}')
            return image_of(frame.index - 1).convert("RGB")
        if spec.source == "video":
            return video_frame(*spec.video, f'frame {frame.index}: "control" image')
        with Image.open(spec.image) as im:
            return im.convert("RGB")

    def maps(self, frame, image_of: Callable[[int], Any] | None = None) -> list:
        """The frame's ControlNet maps, one per entry of its ``"control"``, at the frame's size."""
        out = []
        for spec in frame.control:
            image = self.input_image(spec, frame, image_of)
            depth = self.depth_of(spec, frame) if spec.preprocess == "depth" else None
            key = (image_digest(image), spec.preprocess, depth, frame.width, frame.height)
            if key not in self._maps:
                self._maps[key] = preprocess(image, spec, frame.width, frame.height, self.device, depth)
                while len(self._maps) > MAP_CACHE:
                    self._maps.popitem(last=False)
            out.append(self._maps[key])
        return out

    # ------------------------------------------------------------ the pipeline

    def model(self, spec: str, dtype, device):
        if spec not in self._loaded:
            import diffusers

            source = self.source(spec)
            cls = getattr(diffusers, controlnet_config(source, spec)["_class_name"])
            self._loaded[spec] = cls.from_pretrained(str(source.path), torch_dtype=dtype).to(device)
        return self._loaded[spec]

    def pipeline(self, pipe, frame, img2img: bool, device):
        """The family's ControlNet pipeline for ``frame``'s ControlNets, sharing ``pipe``'s weights."""
        import diffusers

        key = (tuple(c.model for c in frame.control), img2img)
        if key not in self._pipes:
            nets = [self.model(c.model, pipe.dtype, device) for c in frame.control]
            cls = getattr(diffusers, PIPELINES[self.family.kind][2 if img2img else 1])
            # from_pipe casts to float32 unless told the dtype, which would change the shared weights
            self._pipes[key] = cls.from_pipe(pipe, controlnet=nets[0] if len(nets) == 1 else nets,
                                             torch_dtype=pipe.dtype)
            self._pipes[key].set_progress_bar_config(disable=True)
        return self._pipes[key]

    def call_kwargs(self, rows: list, image_of=None, img2img: bool = False) -> dict[str, Any]:
        """The ControlNet arguments of one call over ``rows`` (frames sharing one control set): each
        ControlNet's maps, one per row, and its weight, start and end."""
        per_row = [self.maps(f, image_of) for f in rows]
        specs, image_key = rows[0].control, "control_image" if img2img else PIPELINES[self.family.kind][3]
        if len(specs) == 1:
            return {image_key: [m[0] for m in per_row], "controlnet_conditioning_scale": specs[0].weight,
                    "control_guidance_start": specs[0].start, "control_guidance_end": specs[0].end}
        if len(rows) == 1:  # one image per ControlNet
            images: list = per_row[0]
        elif self.family.kind == "sd" and not img2img:  # this pipeline alone takes nested lists row by row
            images = per_row
        else:  # the others: one list of rows per ControlNet
            images = [[m[i] for m in per_row] for i in range(len(specs))]
        return {image_key: images,
                "controlnet_conditioning_scale": [c.weight for c in specs],
                "control_guidance_start": [c.start for c in specs], "control_guidance_end": [c.end for c in specs]}

    def close(self) -> None:
        self._loaded.clear()
        self._pipes.clear()
        self._maps.clear()
