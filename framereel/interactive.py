"""``framereel interactive``: type prompts with the model loaded, keep the good ones as a storyboard.

A thin loop over the library: every prompt becomes a :class:`~framereel.storyboard.Frame`,
rendered by the same backend call as ``make`` and written with the same PNG metadata, under
``DIR/interactive/NNNN-slug.png`` (never overwritten). ``:keep`` appends the last frame to
``DIR/storyboard.json``; ``:make`` renders and stitches it with ``render``/``stitch``, reusing the
interactive images whose parameters match.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .backends import Backend, create_backend
from .errors import FramereelError
from .identity import RunIdentity
from .loader import load_storyboard
from .manifest import (
    FRAMES_DIR,
    atomic_write_bytes,
    atomic_write_json,
    frame_name,
    read_png_hash,
    write_frame_file,
)
from .runner import render
from .settings import SCHEDULERS, RenderSettings
from .storyboard import DEFAULT_RUN_SEED, SIDE_RULE, Frame, check_setting, resolve_frame

STORYBOARD = "storyboard.json"
KEPT_KEYS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height")
PARAM_KEYS = ("steps", "guidance", "width", "height", "negative_prompt")  # Session.params: unset → the model's
SETTING_KEYS = ("seed", "scheduler", *PARAM_KEYS)  # what Session.apply takes

COMMANDS = {
    ":seed": ":seed N | :seed random — the seed of the next images",
    ":steps": ":steps N — denoising steps",
    ":guidance": ":guidance G — classifier-free guidance scale",
    ":size": f":size WxH — image size (each side {SIDE_RULE})",
    ":neg": ":neg TEXT — negative prompt (:neg alone clears it)",
    ":scheduler": f":scheduler NAME — one of {', '.join(SCHEDULERS)}",
    ":again": ":again — the last prompt again with the next seed",
    ":keep": f":keep — append the last image's prompt and exact parameters to {STORYBOARD}",
    ":list": ":list — the kept frames",
    ":undo": ":undo — drop the last kept frame",
    ":make": ":make — render and stitch the kept storyboard into the output folder (resumable)",
    ":help": ":help — this list",
    ":quit": ":quit | q — leave (end of input or Ctrl-C at the prompt leave too; Ctrl-C while rendering cancels)",
}


def slug(text: str, length: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].rstrip("-") or "image"


@dataclass
class Session:
    """The state of one interactive session; ``handle(line)`` does what a typed line asks."""

    out_dir: Path
    settings: RenderSettings
    seed: int | None = DEFAULT_RUN_SEED  # None: a random seed per image
    params: dict[str, Any] = field(default_factory=dict)  # steps, guidance, width, height, negative_prompt
    say: Callable[[str], None] = print  # result lines (stdout)
    tell: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)  # help, notes, errors
    backend: Backend | None = None
    last: Frame | None = None
    last_scheduler: str | None = None  # the scheduler that made ``last``

    def __post_init__(self) -> None:
        self.folder = self.out_dir / "interactive"  # made with the first image: a refused start leaves nothing
        self.backend = self.backend or create_backend(self.settings)
        self.identity = RunIdentity.of(self.backend, self.settings)
        self.settings = self.identity.settings  # "auto" resolved: the scheduler the images are made with
        self.backend.load()

    # ------------------------------------------------------------ the loop's one entry point

    def handle(self, line: str, progress: Callable[[Frame], Any] | None = None) -> bool:
        """Act on one line; returns False when the session should end."""
        line = line.strip()
        if not line:
            return True
        if line in ("q", ":q", ":quit", ":exit"):
            return False
        if not line.startswith(":"):
            self.render(line, progress)
            return True
        name, _, arg = line.partition(" ")
        action = getattr(self, "cmd_" + name[1:], None) if name in COMMANDS else None
        if action is None:
            self.tell(f"unknown command {name}; type :help for the list")
            return True
        try:
            action(arg.strip(), progress)
        except (ValueError, FramereelError) as err:
            self.tell(f"{COMMANDS[name]}  ({err})" if isinstance(err, ValueError) else str(err))
        return True

    # ------------------------------------------------------------ rendering

    def frame_for(self, prompt: str, seed: int) -> Frame:
        p = self.params
        frame = Frame(index=0, prompt=prompt, negative_prompt=p.get("negative_prompt"), seed=seed,
                      steps=p.get("steps"), guidance=p.get("guidance"), width=p.get("width"), height=p.get("height"))
        return resolve_frame(frame, self.identity.model.defaults())

    def render(self, prompt: str, progress=None, seed: int | None = None,
               on_step: Callable[[int, int], None] | None = None) -> Path | None:
        """Render ``prompt`` with the session's settings to a new file in ``interactive/``; returns
        its path (None if cancelled). ``on_step(i, n)`` hears each denoising step."""
        if seed is None:
            seed = self.seed if self.seed is not None else random.randrange(2**32)
        frame = self.frame_for(prompt, seed)
        digest = self.identity.digest(frame)
        t0 = time.perf_counter()
        step = {"on_step": on_step} if on_step is not None else {}
        try:
            if progress is not None:
                with progress(frame):
                    image, _ = self.backend.render(frame, **step)
            else:
                image, _ = self.backend.render(frame, **step)
        except KeyboardInterrupt:
            self.tell("cancelled")
            return None
        path = self._next_path(prompt)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.identity.png(image, frame, digest))
        self.last = frame
        self.last_scheduler = self.settings.scheduler
        self.say(f"{path}  seed={seed}  {time.perf_counter() - t0:.2f}s")
        return path

    def _next_path(self, prompt: str) -> Path:
        numbers = [int(p.name[:4]) for p in self.folder.glob("[0-9][0-9][0-9][0-9]-*.png")]
        return self.folder / f"{max(numbers, default=0) + 1:04d}-{slug(prompt)}.png"

    # ------------------------------------------------------------ commands

    # ------------------------------------------------------------ settings: typed, for the REPL and the studio

    def set_seed(self, seed: int | None) -> None:
        """The seed of the next images (None: a random one per image)."""
        self.apply({"seed": seed})

    def set_steps(self, steps: int) -> None:
        self.apply({"steps": steps})

    def set_guidance(self, guidance: float) -> None:
        self.apply({"guidance": guidance})

    def set_size(self, width: int, height: int) -> None:
        self.apply({"width": width, "height": height})

    def set_negative_prompt(self, text: str) -> None:
        self.apply({"negative_prompt": text})

    def set_scheduler(self, name: str) -> None:
        """Swap the loaded model's scheduler ("auto": its family's)."""
        self.apply({"scheduler": name})

    def schedulers(self) -> tuple[str, ...]:
        """The schedulers this model takes ("auto" first); a backend without a known family keeps its own."""
        from .backends.families import FAMILIES, schedulers_for

        family = FAMILIES.get((self.identity.model.family or {}).get("family"))
        return ("auto", *schedulers_for(family)) if family else (self.settings.scheduler,)

    def current(self) -> dict[str, Any]:
        """The settings of the next image: the seed, the scheduler and the parameters set so far."""
        return {"seed": self.seed, "scheduler": self.settings.scheduler, **self.params}

    def checked(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (keys of ``SETTING_KEYS``) checked by the storyboard's rules, the one set of limits
        of every interface; one line on the first refusal. Changes nothing."""
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key == "scheduler":
                if value != self.settings.scheduler and value not in self.schedulers():
                    raise FramereelError(f"scheduler {value!r}: this model takes {', '.join(self.schedulers())}")
                out[key] = value
            elif key in SETTING_KEYS:
                out[key] = None if key == "seed" and value is None else check_setting(key, value)
            else:
                raise FramereelError(f"{key!r} is not a setting; the settings are {', '.join(SETTING_KEYS)}")
        return out

    def apply(self, values: dict[str, Any]) -> None:
        """Set several settings at once: all of them, or none when one is refused."""
        values = self.checked(values)
        if "scheduler" in values and values["scheduler"] != self.settings.scheduler:
            self.backend.set_scheduler(values["scheduler"])
            self.settings = replace(self.settings, scheduler=self.backend.settings.scheduler)  # auto → the family's
            self.identity = replace(self.identity, settings=self.settings)
        if "seed" in values:
            self.seed = values["seed"]
        self.params.update({k: v for k, v in values.items() if k in PARAM_KEYS})

    def restore(self, saved: dict[str, Any]) -> None:
        """Go back to settings taken by :meth:`current` (a parameter unset there is unset again)."""
        self.apply(saved)
        for key in set(PARAM_KEYS) - set(saved):
            self.params.pop(key, None)

    # ------------------------------------------------------------ commands: typed lines, parsed onto the settings

    def cmd_seed(self, arg: str, progress=None) -> None:
        self.set_seed(None if arg == "random" else _whole(arg, "a seed"))
        self.tell(f"seed {arg}")

    def cmd_steps(self, arg: str, progress=None) -> None:
        self.set_steps(_whole(arg, "a step count"))

    def cmd_guidance(self, arg: str, progress=None) -> None:
        self.set_guidance(float(arg))

    def cmd_size(self, arg: str, progress=None) -> None:
        m = re.fullmatch(r"([0-9]+)x([0-9]+)", arg.lower())
        if not m:
            raise ValueError(f"not a size like 512x512: {arg!r}")
        self.set_size(int(m[1]), int(m[2]))

    def cmd_neg(self, arg: str, progress=None) -> None:
        self.set_negative_prompt(arg)

    def cmd_scheduler(self, arg: str, progress=None) -> None:
        self.set_scheduler(arg)

    def cmd_again(self, arg: str, progress=None) -> None:
        if self.last is None:
            raise FramereelError("nothing to do again yet: type a prompt first")
        self.render(self.last.prompt, progress, seed=(self.last.seed + 1) % 2**32)

    def cmd_keep(self, arg: str, progress=None) -> None:
        if self.last is None:
            raise FramereelError("nothing to keep yet: type a prompt first")
        kept = self.keep(self.last)
        self.tell(f"kept as frame {len(kept) - 1} in {self.out_dir / STORYBOARD}")

    def keep(self, frame: Frame) -> list[dict[str, Any]]:
        """Append ``frame``'s prompt and exact parameters to the kept storyboard; returns it.
        The storyboard records the scheduler its images were made with; an image made with
        another one is refused (one storyboard renders with one scheduler)."""
        kept = self.kept()
        made_with = (self.last_scheduler if frame is self.last else None) or self.settings.scheduler
        if kept and self.kept_scheduler() not in (None, made_with):
            raise FramereelError(
                f"the kept frames use the {self.kept_scheduler()} scheduler and this image {made_with}; a storyboard "
                f"renders with one scheduler: type `:scheduler {self.kept_scheduler()}` and `:again`, or :undo them")
        kept.append({k: v for k, v in asdict(frame).items() if k in KEPT_KEYS})
        self.save_kept(kept, made_with)
        return kept

    def cmd_list(self, arg: str, progress=None) -> None:
        for i, f in enumerate(self.kept()):
            self.say(f"{i}: {f['prompt']}  seed={f['seed']} steps={f['steps']} guidance={f['guidance']:g}")

    def cmd_undo(self, arg: str, progress=None) -> None:
        kept = self.kept()
        if not kept:
            raise FramereelError("nothing kept yet")
        dropped = kept.pop()
        self.save_kept(kept)
        self.tell(f"dropped: {dropped['prompt']}")

    def cmd_make(self, arg: str, progress=None) -> None:
        video, result, reused = self.make()
        self.say(f"{video}  frames={result.total} rendered={len(result.rendered)} reused={reused}")

    def make(self, on_event: Callable[[Any], None] | None = None, **stitch_options: Any):
        """Render and stitch the kept storyboard into the output folder (resumable; kept images are
        reused byte for byte) and update its gallery page. Returns (video path, RunResult, reused)."""
        from .gallery import LiveGallery
        from .video import stitch

        if not self.kept():
            raise FramereelError("nothing kept yet: :keep some images first")
        board = load_storyboard(self.out_dir / STORYBOARD)
        current = self.settings.scheduler
        if board.scheduler and board.scheduler != current:  # render with the kept images' scheduler
            self.set_scheduler(board.scheduler)
        events = LiveGallery(self.out_dir, on_event)
        try:
            reused = self._reuse_interactive_images(board)
            result = render(board, self.out_dir, self.settings, backend=self.backend, on_event=events)
            video = stitch(self.out_dir, on_event=events, **stitch_options)
        finally:
            events.close()
            if self.settings.scheduler != current:
                self.set_scheduler(current)
        return video, result, reused

    def cmd_help(self, arg: str = "", progress=None) -> None:
        for line in COMMANDS.values():
            self.tell(line)

    # ------------------------------------------------------------ the kept storyboard

    def _kept_document(self) -> dict[str, Any]:
        path = self.out_dir / STORYBOARD
        if not path.exists():
            return {"frames": []}
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
            if isinstance(doc, list):
                doc = {"frames": doc}
            if not isinstance(doc.get("frames"), list):
                raise ValueError("no frames list")
        except (OSError, ValueError, AttributeError) as err:
            raise FramereelError(f"{path}: not a storyboard framereel can add to ({err}); move it away") from None
        return doc

    def kept(self) -> list[dict[str, Any]]:
        return self._kept_document()["frames"]

    def kept_scheduler(self) -> str | None:
        """The scheduler the kept frames were made with (a storyboard renders with one)."""
        return self._kept_document().get("scheduler")

    def save_kept(self, frames: list[dict[str, Any]], scheduler: str | None = None) -> None:
        """Write the kept storyboard (atomically) with the scheduler its images were made with
        (default: the one it has, while it keeps any frame)."""
        scheduler = scheduler or (self.kept_scheduler() if frames else None)
        doc: dict[str, Any] = {"scheduler": scheduler, "frames": frames} if scheduler else {"frames": frames}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out_dir / STORYBOARD, doc)

    def _reuse_interactive_images(self, board) -> int:
        """Copy interactive images whose parameters match a kept frame into frames/, so render skips them."""
        by_hash = {}
        for p in sorted(self.folder.glob("*.png")):
            digest = read_png_hash(p)
            if digest:
                by_hash[digest] = p
        reused = 0
        for f in board.resolved(self.identity.model.defaults()).frames:
            source = by_hash.get(self.identity.digest(f))
            if source is not None and read_png_hash(self.out_dir / FRAMES_DIR / frame_name(f.index)) is None:
                write_frame_file(self.out_dir, f.index, source.read_bytes())
                reused += 1
        return reused


def _whole(arg: str, what: str) -> int:
    """A typed whole number (ASCII digits only), else a ValueError naming ``what``."""
    if not (arg.isascii() and arg.isdigit()):
        raise ValueError(f"not {what}: {arg!r}")
    return int(arg)


def run_interactive(session: Session, interactive_terminal: bool | None = None) -> None:
    """Read lines until ``q``/``:quit``/end of input; with a terminal, edit lines and keep history."""
    tty = sys.stdin.isatty() if interactive_terminal is None else interactive_terminal
    if not tty:
        try:
            for line in sys.stdin:
                if not session.handle(line):
                    break
        except KeyboardInterrupt:
            pass
        return
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from rich.console import Console

    console = Console(stderr=True)

    def spinner(frame: Frame):
        return console.status(f"rendering {frame.width}x{frame.height}, {frame.steps} steps, seed {frame.seed}…")

    session.out_dir.mkdir(parents=True, exist_ok=True)  # for the history file
    prompt = PromptSession(history=FileHistory(str(session.out_dir / ".history")))
    session.tell("type a prompt, or :help for commands; q, Ctrl-D or Ctrl-C to leave")
    while True:
        try:
            line = prompt.prompt("framereel> ")
        except (KeyboardInterrupt, EOFError):
            break
        if not session.handle(line, spinner):
            break
