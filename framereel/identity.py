"""A frame's identity: everything that decides its pixels, its hash, and the metadata its PNG carries.

:class:`RunIdentity` joins the run's :class:`~framereel.settings.RenderSettings`, the model the
backend resolved (:class:`~framereel.backends.base.ModelInfo`) and what the backend resolved
itself (dtype, options that change pixels). ``render``, interactive mode and the tests all ask it,
so "is this frame finished?" has one answer everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from ._version import __version__
from .backends.base import Backend, ModelInfo
from .backends.common import contents_fingerprint
from .control import ControlSpec
from .depth import find_depth_model
from .manifest import FRAMES_DIR, HASH_KEY, file_digest, frame_name, params_hash, png_bytes
from .settings import RenderSettings
from .storyboard import Frame, motion_3d


@dataclass(frozen=True)
class RunIdentity:
    settings: RenderSettings
    model: ModelInfo
    backend: str
    dtype: str
    pixel_options: dict[str, Any] = field(default_factory=dict)  # e.g. a tiny VAE, step caching
    clip_options: dict[str, Any] = field(default_factory=dict)  # clip frames only: motion adapter, LoRAs
    # one frame's own options (its LoRAs), from the backend: Backend.frame_options
    frame_options: Callable[[Frame], dict[str, Any]] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, backend: Backend, settings: RenderSettings | None = None) -> RunIdentity:
        """The identity of frames ``backend`` renders (it resolves its model without loading it)."""
        settings = settings or backend.settings
        model = backend.describe()
        if settings.scheduler == "auto":  # the model family's scheduler
            settings = replace(settings, scheduler=model.scheduler)
        return cls(settings, model, backend.name, backend.dtype, dict(backend.pixel_options),
                   dict(backend.clip_options), backend.frame_options)

    @cached_property
    def depth_model(self) -> dict[str, str]:
        """The 3D camera's depth model in its frames' hash: its name and its files' contents (a model
        replaced in its folder re-renders them); found on first use, so runs without 3D frames never look."""
        source = find_depth_model(self.settings.depth_model)
        return {"depth_model": source.name, "depth_model_files": contents_fingerprint(source.path)}

    def params(self, frame: Frame) -> dict[str, Any]:
        """Everything that decides a frame's pixels."""
        params = {
            **frame.render_params(),
            "scheduler": self.settings.scheduler,
            "model": self.model.fingerprint,
            "dtype": self.dtype,
            "backend": self.backend,
            **self.pixel_options,
            **(self.clip_options if frame.kind == "clip" else {}),
        }
        camera = motion_3d(frame.motion)
        if camera is not None and camera["depth_warping"] and self.settings.depth_model:
            params.update(self.depth_model)
        for key, value in (self.frame_options(frame) if self.frame_options else {}).items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return params

    def digest(self, frame: Frame, frames_dir: Path | None = None,
               image_digest: Callable[[int], str | None] | None = None) -> str:
        """The hash that tells whether a frame is finished. A chained frame's includes its parent's
        (and colour reference's) image, a clip's its key frames' images — from ``image_digest(index)``,
        else the file in ``frames_dir`` — so redoing a frame invalidates its chain and the clips
        that start or end on it."""
        params = self.params(frame)

        def image(ref: int) -> str | None:
            return image_digest(ref) if image_digest else file_digest(frames_dir / frame_name(ref))

        for key, ref in (("parent_image", frame.parent), ("colour_image", frame.color_ref)):
            if ref is not None:
                params[key] = image(ref)
        if frame.kind == "clip" and frame.clip.init_video:  # video-to-video: the input video's bytes
            params["init_video_file"] = input_digest(Path(frame.clip.init_video))
        if frame.control:  # each control image by its bytes (a video's, with the time; the previous frame's)
            params["control_images"] = [_control_image_digest(c, frame.index, image) for c in frame.control]
        for key, ref in frame.clip.keys if frame.kind == "clip" else ():  # a key frame: a still's or a file's
            params[f"{key}_image"] = input_digest(Path(ref)) if isinstance(ref, str) else image(ref)
        return params_hash(params)

    def metadata(self, frame: Frame, digest: str) -> dict[str, str]:
        """The PNG text chunks every frame carries."""
        meta = {
            "prompt": frame.prompt,
            "negative_prompt": frame.negative_prompt or "",
            "seed": str(frame.seed),
            "steps": str(frame.steps),
            "guidance": f"{frame.guidance:g}",
            "size": f"{frame.width}x{frame.height}",
            "scheduler": self.settings.scheduler,
            "model": self.model.id,
            "software": f"framereel {__version__}",
            HASH_KEY: digest,
        }
        if frame.kind in DERIVED:
            meta.update(DERIVED[frame.kind](frame)[0])
        return meta

    def png(self, image: Image.Image, frame: Frame, digest: str) -> bytes:
        """The PNG bytes of a rendered frame, with its metadata: the same for every command."""
        return png_bytes(image, self.metadata(frame, digest))

    def record(self, frame: Frame, digest: str) -> dict[str, Any]:
        """A frame's entry in run.json, before it is rendered."""
        record = {
            "index": frame.index,
            "file": f"{FRAMES_DIR}/{frame_name(frame.index)}",
            "kind": frame.kind,
            "status": "pending",
            "hash": digest,
            "params": self.params(frame),
            "duration": frame.duration,
            "seconds": None,
        }
        if frame.kind in DERIVED:
            record.update(DERIVED[frame.kind](frame)[1])
        return record


def _control_image_digest(spec: ControlSpec, index: int, image: Callable[[int], str | None]) -> str | None:
    if spec.source == "previous":
        return image(index - 1)
    digest = input_digest(Path(spec.video[0] if spec.source == "video" else spec.image))
    return f"{digest}@{spec.video[1]:g}" if spec.source == "video" else digest


def input_digest(path: Path) -> str | None:
    """:func:`file_digest` of an input file many frames share (a source video, a clip's init video or
    key image): read once per run while its size and time stay the same, not once per frame."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _file_digest(path, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str | None:
    return file_digest(path)


Facts = tuple[dict[str, str], dict[str, Any]]  # (PNG text chunks, run.json entries)


def _morph(f: Frame) -> Facts:
    a, b, t = f.morph
    return ({"morph": f"frame {a} → frame {b} at t={t:.4f}: {f.morph_prompt}"},
            {"derived_from": {"morph": [a, b], "t": round(t, 6)}})


def _chain(f: Frame) -> Facts:
    return ({"init": f"frame {f.parent}, strength {f.strength:g}"},
            {"derived_from": {"parent": f.parent, "strength": f.strength}})


def _clip(f: Frame) -> Facts:
    keys = dict(f.clip.keys)  # key frames: an output frame's index or an image path
    return ({"clip": f"clip {f.clip.id}, frame {f.clip_pos + 1} of {f.clip.frames}"},
            {"clip": {"id": f.clip.id, "position": f.clip_pos, "frames": f.clip.frames, **keys},
             **({"derived_from": {"key_frames": list(keys.values())}} if keys else {})})


# what a frame that is not a plain key frame says about where it comes from, by kind: one table
# for its PNG's metadata and its run.json record
DERIVED: dict[str, Callable[[Frame], Facts]] = {"morph": _morph, "chain": _chain, "clip": _clip}
