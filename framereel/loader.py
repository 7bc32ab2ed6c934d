"""Storyboard files → :class:`~framereel.storyboard.Storyboard`: read the file, pick its form from
its name, bring another tool's file into the storyboard form, then hand it to the parser
(:func:`framereel.storyboard.build_storyboard`). The dependency runs one way: this module uses the
parser and the converters; they know nothing of it.

The form, by extension:

* ``.json``: JSON: a list of frames, ``{"defaults": …, "frames": […]}``, or a Deforum settings file;
* ``.txt``: one prompt per line, unless the file is a JSON object (Deforum saves its settings as
  ``*_settings.txt``): a prompt may start with ``{`` (``{red|blue} circle, day sky``);
* any other name (the extension says nothing): JSON when the text starts like JSON (``[``, or ``{``
  followed by ``"`` or ``}``), else one prompt per line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from . import deforum
from .storyboard import DEFAULT_RUN_SEED, Storyboard, build_storyboard, prompt_lines, read_json, read_text

_JSON_OBJECT = re.compile(r'\{\s*(?:["}]|$)')  # how a JSON object starts; a prompt like "{red|blue} sky" does not


def load_storyboard(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    run_seed: int | None = None,
    fps: float | None = None,
) -> Storyboard:
    """Read and validate a storyboard; return every frame with its parameters resolved.

    ``overrides`` are run-wide settings (the CLI's flags); a frame's own keys beat them.
    ``run_seed`` derives the seed of frames that set none (see :func:`framereel.storyboard.frame_seed`)
    and stands in for a Deforum file's random seed. Parameters nobody set stay ``None`` until
    :meth:`Storyboard.resolved`. Raises :class:`FramereelError` naming the file, the frame and the problem.
    """
    path = Path(path)
    return parse_storyboard(read_text(path), path, overrides, run_seed, fps)


def parse_storyboard(
    text: str,
    path: str | Path = "storyboard.json",
    overrides: dict[str, Any] | None = None,
    run_seed: int | None = None,
    fps: float | None = None,
) -> Storyboard:
    """:func:`load_storyboard` for text already read; ``path`` names it in errors and picks the form.
    ``fps`` paces frames without a duration, for control videos sampled at the film's rate (default 2)."""
    path = Path(path)
    text = text.removeprefix("\ufeff")
    return build_storyboard(contents(path, text, run_seed), path, text, overrides, run_seed, fps)


def contents(path: Path, text: str, run_seed: int | None = None) -> Any:
    """The file's contents in the storyboard form: a list of frames or a ``{"frames": …}`` object."""
    if form(path, text) == "lines":
        return prompt_lines(text)
    data = read_json(path, text)
    if deforum.is_deforum_settings(data):  # convert it, then read it like any storyboard
        data = deforum.convert(data, path.name, DEFAULT_RUN_SEED if run_seed is None else run_seed).storyboard
    return data


def form(path: Path, text: str) -> str:
    """``"json"`` or ``"lines"`` (one prompt per line): by extension, sniffed only where it says nothing."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    head = text.lstrip()
    if suffix == ".txt":
        return "json" if _JSON_OBJECT.match(head) else "lines"
    return "json" if head.startswith("[") or _JSON_OBJECT.match(head) else "lines"
