"""Show the library's events to a person (rich progress bars) or to a script (JSON lines)."""

from __future__ import annotations

import json

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .events import (
    Encoding,
    Event,
    FrameDone,
    FrameFailed,
    FrameStarted,
    ModelLoaded,
    RunStarted,
    StageProgress,
    Step,
    Warning,
)


class JsonLines:
    """One JSON object per event on stdout, for scripts."""

    def __call__(self, event: Event) -> None:
        if isinstance(event, Step | Encoding):
            return
        print(json.dumps(event.to_json(), ensure_ascii=False), flush=True)

    def close(self) -> None:
        pass


class Quiet:
    """Only warnings and frame errors, on stderr."""

    def __init__(self) -> None:
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Warning):
            self.err.print(f"[yellow]warning:[/] {event.message}")
        elif isinstance(event, FrameFailed):
            self.err.print(f"[red]frame {event.index} failed:[/] {event.error}")

    def close(self) -> None:
        pass


class ProgressBars(Quiet):
    """Rich progress: frames i/N with ETA and seconds per frame, steps of the current frame, encoding."""

    def __init__(self) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.err,
            transient=False,
        )
        self.frames_task = None
        self.step_task = None
        self.encode_task = None
        self.done = 0
        self.render_seconds = 0.0
        self.per_device: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Warning | FrameFailed):
            super().__call__(event)
            if isinstance(event, FrameFailed):
                self._frame_finished(0.0, "")
        elif isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, ModelLoaded) and event.seconds is not None:
            self.err.print(f"model loaded in {event.seconds:.1f}s")
        elif isinstance(event, FrameStarted) and self.frames_task is not None and not event.worker:
            if self.step_task is None:
                self.step_task = self.progress.add_task("steps", total=event.steps, rate="")
            batch = event.batch
            self.progress.update(self.step_task, completed=0, total=event.steps,
                                 description=f"frames {batch[0]}–{batch[-1]}" if batch else f"frame {event.index}")
        elif isinstance(event, Step) and self.step_task is not None:
            self.progress.update(self.step_task, completed=event.step, total=event.steps)
        elif isinstance(event, FrameDone) and self.frames_task is not None:
            if event.facts.get("compile_seconds") is not None:
                self.progress.console.print(
                    f"compiled the model for this frame size in {event.facts['compile_seconds']:.0f}s")
            self._frame_finished(event.seconds, event.device)
        elif isinstance(event, StageProgress):  # finishing stages: upscale, interpolate
            self._stage(event)
        elif isinstance(event, Encoding):
            if self.encode_task is None:
                self.progress.start()
                self.encode_task = self.progress.add_task("encoding", total=event.total, rate="")
            self.progress.update(self.encode_task, completed=event.done, total=event.total)

    def _start(self, event: RunStarted) -> None:
        why = f"; {event.why}" if event.why else ""
        self.err.print(f"{event.total} frames: {event.skipped} already done, {event.todo} to render "
                       f"on {event.device} ({event.dtype}{why}) with {event.model}")
        if event.todo:
            self.progress.start()
            self.frames_task = self.progress.add_task("frames", total=event.todo, rate="")

    def _frame_finished(self, seconds: float, device: str) -> None:
        if self.frames_task is None:
            return
        self.done += 1
        self.render_seconds += seconds
        rate = f"{self.render_seconds / self.done:.2f}s/frame"
        if device:
            self.per_device[device] = self.per_device.get(device, 0) + 1
        if len(self.per_device) > 1:
            rate += " (" + ", ".join(f"{d}: {n}" for d, n in sorted(self.per_device.items())) + ")"
        self.progress.update(self.frames_task, advance=1, rate=rate)

    def _stage(self, event: StageProgress) -> None:
        tasks = self.__dict__.setdefault("stage_tasks", {})
        if event.stage not in tasks:
            self.progress.start()
            tasks[event.stage] = self.progress.add_task(event.stage, total=event.total, rate="")
        self.progress.update(tasks[event.stage], completed=event.done, rate=f"{event.computed} new, {event.cached} cached")

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def reporter(json_lines: bool, quiet: bool):
    """The event handler for the CLI's output mode."""
    if json_lines:
        return JsonLines()
    return Quiet() if quiet else ProgressBars()
