"""Keyframe schedules in the form Deforum users know: ``"0:(0.65), 10:(0.45), 20:(0.65)"``.

Values are linearly interpolated between keyframes by frame index and held flat before the first
and after the last. A plain number is a constant schedule.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

_ENTRY = re.compile(r"\s*([0-9]{1,9})\s*:\s*\(\s*([-+]?(?:[0-9]{1,30}\.?[0-9]{0,30}|\.[0-9]{1,30})(?:[eE][-+]?[0-9]{1,4})?)\s*\)\s*")


class ScheduleError(ValueError):
    """A malformed schedule; the message says which character is wrong."""


@dataclass(frozen=True)
class Schedule:
    keys: tuple[tuple[int, float], ...]

    def at(self, frame: int) -> float:
        frames = [k for k, _ in self.keys]
        i = bisect_right(frames, frame)
        if i == 0:
            return self.keys[0][1]
        if i == len(self.keys):
            return self.keys[-1][1]
        (f0, v0), (f1, v1) = self.keys[i - 1], self.keys[i]
        return v0 + (v1 - v0) * (frame - f0) / (f1 - f0)


def parse_schedule(text: str | int | float) -> Schedule:
    """Parse ``"0:(0.65), 10:(0.45)"`` (or a plain number) into a :class:`Schedule`."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return Schedule(((0, float(text)),))
    pos, keys = 0, []
    while pos < len(text):
        m = _ENTRY.match(text, pos)
        if not m:
            raise ScheduleError(f"expected FRAME:(VALUE) at character {pos + 1} of {_quote(text)}")
        keys.append((int(m.group(1)), float(m.group(2))))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ScheduleError(f"expected ',' at character {pos + 1} of {_quote(text)}")
            pos += 1
    if not keys:
        raise ScheduleError(f"empty schedule {_quote(text)}; write e.g. 0:(0.65), 10:(0.45)")
    frames = [k for k, _ in keys]
    if frames != sorted(set(frames)):
        raise ScheduleError(f"keyframes must be in increasing order without repeats in {_quote(text)}")
    return Schedule(tuple(keys))


def _quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
