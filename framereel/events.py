"""What the library tells its caller while it works: one frozen dataclass per kind of event.

``render``, ``stitch`` and the executors call ``on_event(event)`` with these objects; the CLI
shows them as progress bars, or with ``--json`` prints ``event.to_json()`` — one JSON object per
line, ``{"event": NAME, "v": EVENTS_VERSION, ...fields}``. That JSON is an interface: fields are
only ever added within a version. ``Step`` events are not printed as JSON (too many).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

EVENTS_VERSION = 1


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        facts = data.pop("facts", None) or {}
        return {"event": self.name, "v": EVENTS_VERSION, **data, **facts}


@dataclass(frozen=True)
class RunStarted(Event):
    """Planning is done: ``todo`` frames will render, ``skipped`` are already finished."""

    name: ClassVar[str] = "start"
    total: int
    todo: int
    skipped: int
    device: str
    dtype: str
    model: str
    why: str = ""  # why this device was picked


@dataclass(frozen=True)
class WorkersStarted(Event):
    name: ClassVar[str] = "workers_started"
    workers: list[str]
    threads: int
    executor: str = "local"


@dataclass(frozen=True)
class ModelLoaded(Event):
    name: ClassVar[str] = "model_loaded"
    device: str
    dtype: str
    seconds: float | None = None  # None: loaded in a worker, which does not time it
    worker: bool = False


@dataclass(frozen=True)
class FrameStarted(Event):
    """A job starts: ``index`` is its first frame, ``batch`` every frame sharing its UNet call."""

    name: ClassVar[str] = "frame_start"
    index: int
    prompt: str
    steps: int
    device: str = ""
    batch: list[int] | None = None
    worker: bool = False


@dataclass(frozen=True)
class Step(Event):
    name: ClassVar[str] = "step"
    index: int
    step: int
    steps: int


@dataclass(frozen=True)
class FrameDone(Event):
    name: ClassVar[str] = "frame_done"
    index: int
    file: str
    seconds: float
    device: str
    facts: dict[str, Any] = field(default_factory=dict)  # e.g. compile_seconds, nsfw_blacked_out


@dataclass(frozen=True)
class FrameSkipped(Event):
    name: ClassVar[str] = "frame_skipped"
    index: int
    file: str


@dataclass(frozen=True)
class FrameFailed(Event):
    name: ClassVar[str] = "frame_error"
    index: int
    error: str


@dataclass(frozen=True)
class Warning(Event):  # noqa: A001 - the event's name, shadowing only inside this module
    name: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True)
class Encoding(Event):
    """Stitching progress: ``done`` of ``total`` output frames sent to ffmpeg."""

    name: ClassVar[str] = "encode"
    done: int
    total: int


@dataclass(frozen=True)
class VideoWritten(Event):
    name: ClassVar[str] = "video_written"
    file: str
    seconds: float
    frames: int
    size: str


@dataclass(frozen=True)
class StageStarted(Event):
    """A finishing stage (``upscale``, ``interpolate``) starts on ``total`` outputs."""

    name: ClassVar[str] = "stage_start"
    stage: str
    total: int


@dataclass(frozen=True)
class StageProgress(Event):
    """``done`` of ``total`` outputs of a finishing stage: ``computed`` now, ``cached`` reused."""

    name: ClassVar[str] = "stage_progress"
    stage: str
    done: int
    total: int
    computed: int
    cached: int


@dataclass(frozen=True)
class StageDone(Event):
    """A finishing stage is done; ``model_calls`` counts runs of its model (0 when all was cached)."""

    name: ClassVar[str] = "stage_done"
    stage: str
    computed: int
    cached: int
    seconds: float
    model_calls: int = 0


EVENT_TYPES: tuple[type[Event], ...] = (RunStarted, WorkersStarted, ModelLoaded, FrameStarted, Step, FrameDone,
                                        FrameSkipped, FrameFailed, Warning, Encoding, VideoWritten,
                                        StageStarted, StageProgress, StageDone)
EventHandler = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The handler used when the caller passes none."""


def event_fields(cls: type[Event]) -> list[str]:
    """The JSON fields an event type carries (for the README's table and its test)."""
    return [f.name for f in fields(cls) if f.name != "facts"]
