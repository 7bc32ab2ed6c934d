"""Show the library's events to a person (rich progress bars) or to a script (JSON lines)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class JsonLines:
    """One JSON object per event on stdout, for scripts."""

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] in ("step", "encode"):
            return
        print(json.dumps(event, ensure_ascii=False), flush=True)

    def close(self) -> None:
        pass


class Quiet:
    """Only warnings and frame errors, on stderr."""

    def __init__(self) -> None:
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "warning":
            self.err.print(f"[yellow]warning:[/] {event['message']}")
        elif event["event"] == "frame_error":
            self.err.print(f"[red]frame {event['index']} failed:[/] {event['error']}")

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

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind in ("warning", "frame_error"):
            super().__call__(event)
        elif kind == "start":
            self.err.print(
                f"{event['total']} frames: {event['skipped']} already done, {event['todo']} to render "
                f"on {event['device']} ({event['dtype']}{'; ' + event['why'] if event.get('why') else ''}) "
                f"with {event['model']}"
            )
            if event["todo"]:
                self.progress.start()
                self.frames_task = self.progress.add_task("frames", total=event["todo"], rate="")
        elif kind == "model_loaded" and event.get("seconds") is not None:
            self.err.print(f"model loaded in {event['seconds']:.1f}s")
        elif kind == "frame_start" and self.frames_task is not None and "device" not in event:
            if self.step_task is None:
                self.step_task = self.progress.add_task("steps", total=event["steps"], rate="")
            batch = event.get("batch")
            self.progress.update(self.step_task, completed=0, total=event["steps"],
                                 description=f"frames {batch[0]}–{batch[-1]}" if batch else f"frame {event['index']}")
        elif kind == "step" and self.step_task is not None:
            self.progress.update(self.step_task, completed=event["step"], total=event["steps"])
        elif kind in ("frame_done", "frame_error") and self.frames_task is not None:
            if event.get("compile_seconds") is not None:
                self.progress.console.print(f"compiled the model for this frame size in {event['compile_seconds']:.0f}s")
            self.done += 1
            self.render_seconds += event.get("seconds", 0.0)
            rate = f"{self.render_seconds / self.done:.2f}s/frame"
            if "device" in event:
                self.per_device[event["device"]] = self.per_device.get(event["device"], 0) + 1
            if len(self.per_device) > 1:
                rate += " (" + ", ".join(f"{d}: {n}" for d, n in sorted(self.per_device.items())) + ")"
            self.progress.update(self.frames_task, advance=1, rate=rate)
        elif kind == "stage_progress":  # finishing stages: upscale, interpolate
            self._stage(event)
        elif kind == "encode":
            if self.encode_task is None:
                self.progress.start()
                self.encode_task = self.progress.add_task("encoding", total=event["total"], rate="")
            self.progress.update(self.encode_task, completed=event["done"], total=event["total"])

    def _stage(self, event: dict[str, Any]) -> None:
        tasks = self.__dict__.setdefault("stage_tasks", {})
        if event["stage"] not in tasks:
            self.progress.start()
            tasks[event["stage"]] = self.progress.add_task(event["stage"], total=event["total"], rate="")
        self.progress.update(tasks[event["stage"]], completed=event["done"],
                             rate=f"{event['computed']} new, {event['cached']} cached")

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def reporter(json_lines: bool, quiet: bool):
    """The event handler for the CLI's output mode."""
    if json_lines:
        return JsonLines()
    return Quiet() if quiet else ProgressBars()
