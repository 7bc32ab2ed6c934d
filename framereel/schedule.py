"""Keyframe schedules as Deforum writes them: ``"0:(0.65), 10:(0.45), 20:(0.65)"`` or
``"0:(1.0025+0.002*sin(1.25*3.14*t/30))"``.

Each keyframe is ``FRAME:(VALUE)``. ``VALUE`` is a number or an expression of ``t`` (the frame
index), ``max_f`` (the last frame's index), ``s`` (the run seed) and ``pi``, with the functions
numexpr knows (``sin``, ``cos``, ``tan``, ``abs``, ``sqrt``, ``exp``, ``log``, ``where`` …) and the
operators ``+ - * / % **``. ``FRAME`` is a whole number or an expression of ``max_f`` and ``s``,
optionally quoted: ``"max_f-1":(s)``. Expressions are evaluated by numexpr (as Deforum does), never
by Python's ``eval``.

Between keyframes, values follow Deforum's rules exactly: a number keyframe is joined to the next
keyframe by a straight line; an expression keyframe is evaluated at every frame from it up to the
next keyframe; before the first keyframe and after the last number keyframe values are held flat;
keyframes outside frames ``0 … max_f`` are ignored; keyframes may come in any order, and a later one
for the same frame replaces an earlier one. A value is a number only as Deforum's ``check_is_number``
reads it (digits with an optional sign and decimals: ``1.5``, ``-.5``); ``( 1.5 )`` with inner spaces,
``5.`` and ``1e-1`` are expressions, so they hold flat up to the next keyframe. A plain number is a
constant schedule.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import FramereelError

_INT = re.compile(r"\s*\d+\s*$")
# Deforum's check_is_number on the value with quotes and parentheses removed: "( 1.5 )" (inner spaces),
# "5." and "1e-1" are expressions there, evaluated at each frame (so held flat), not numbers (ramped)
_DEFORUM_NUMBER = re.compile(r"[+-]?[0-9]*(\.[0-9]+)?")
VALUE_NAMES = ("t", "max_f", "s", "pi")
MAX_NODES = 1000  # a schedule expression is a formula: refuse anything bigger before evaluating it
MAX_BITS = 1024  # constant whole numbers past this many bits are refused (numexpr's are 64-bit)
SHOWN = 60  # characters of an expression echoed in a message


class ScheduleError(FramereelError, ValueError):
    """A malformed schedule or expression; the message names the keyframe and the problem."""


@dataclass(frozen=True)
class Keyframe:
    frame: str  # as written (quotes removed): "10" or "max_f-1"
    value: str  # the text inside the parentheses
    number: float | None  # the value when it is a plain number, else None (an expression)

    def __str__(self) -> str:
        return f"{self.frame}:({self.value})"

    def shown(self) -> str:
        """The keyframe as written, cut short for a message."""
        return shorten(str(self))


@dataclass(frozen=True)
class Schedule:
    keys: tuple[Keyframe, ...]
    name: str = ""  # for messages: "strength", "motion.zoom" …
    bounds: tuple[float, float] | None = None  # allowed values, checked at every frame

    def series(self, frames: int, seed: int = 0) -> tuple[float, ...]:
        """The value at every frame ``0 … frames-1`` (``max_f = frames-1``, ``s = seed``)."""
        return _series(self, frames, seed)

    def at(self, frame: int, frames: int | None = None, seed: int = 0) -> float:
        """The value at ``frame`` of a film of ``frames`` frames (default: just long enough for
        ``frame`` and every whole-number keyframe)."""
        if frames is None:
            last = max((int(k.frame) for k in self.keys if _INT.match(k.frame)), default=0)
            frames = max(frame, last) + 1
        return self.series(frames, seed)[min(frame, frames - 1)]

    @property
    def constant(self) -> bool:
        return all(k.number is not None for k in self.keys) and len({k.number for k in self.keys}) == 1


def shorten(text: str, limit: int = SHOWN) -> str:
    """``text`` cut to ``limit`` characters for a message (a 10 KB expression is not echoed whole)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(sched: Schedule, key: Keyframe | None = None) -> str:
    name = f'"{sched.name}" schedule: ' if sched.name else ""
    return f"{name}keyframe {key.shown()}: " if key is not None else name


# What a formula is made of; anything else (tuples, lists, attributes, lambdas …) is refused before numexpr sees it
_FORMULA = (ast.Expression, ast.Constant, ast.Name, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Call,
            ast.keyword, ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
              ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
              ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.USub: operator.neg, ast.UAdd: operator.pos,
              ast.Invert: operator.invert, ast.Not: operator.not_}
_NOT_CONSTANT = object()


class _Overflow(Exception):
    pass


@lru_cache(maxsize=512)
def check_formula(expression: str) -> None:
    """Refuse, before numexpr evaluates it, an expression that is no formula or whose constant part
    grows without bound: numexpr folds constants in Python, whose whole numbers have no limit, so
    ``9**9**9`` would run for hours. Constant parts are computed here under a size limit (a number
    beyond ``MAX_BITS`` bits overflows numexpr's 64-bit integers and doubles anyway)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        nodes = list(ast.walk(tree))
        if len(nodes) > MAX_NODES:
            raise ScheduleError(f"expression too long ({len(expression)} characters); a schedule value is a formula")
        if any(not isinstance(n, _FORMULA) or isinstance(n, ast.Call) and not isinstance(n.func, ast.Name)
               for n in nodes):
            raise ScheduleError("only arithmetic, comparisons and numexpr's functions are allowed")
        _constant(tree.body)
    except ScheduleError:
        raise
    except (SyntaxError, ValueError):  # ValueError: a NUL character, a number literal of thousands of digits
        raise ScheduleError(f"cannot read {shorten(expression)!r} as an expression") from None
    except (RecursionError, MemoryError):
        raise ScheduleError(f"expression too long or nested too deeply ({len(expression)} characters)") from None
    except _Overflow:
        raise ScheduleError("overflows: the value is too large for a number") from None


def _constant(node: ast.AST) -> object:
    """The value of ``node`` when it is made of constants only (as numexpr would fold it), else
    ``_NOT_CONSTANT``; raises :class:`_Overflow` instead of computing a number past ``MAX_BITS`` bits."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        args = [_constant(node.left), _constant(node.right)] if isinstance(node, ast.BinOp) else [_constant(node.operand)]
        if any(a is _NOT_CONSTANT for a in args):
            return _NOT_CONSTANT
        _check_size(type(node.op), args)
        try:
            return _OPERATORS[type(node.op)](*args)
        except OverflowError:
            raise _Overflow from None
        except Exception:  # division by zero, a type error …: numexpr reports it as before
            return _NOT_CONSTANT
    for child in ast.iter_child_nodes(node):
        _constant(child)
    return _NOT_CONSTANT


def _check_size(op: type, args: list) -> None:
    """Raise :class:`_Overflow` when ``op`` on ``args`` would make a whole number (or a string) past
    ``MAX_BITS`` bits, before it is computed."""
    ints = [isinstance(a, int) for a in args]
    if op is ast.Pow and all(ints) and args[1] > 0 and abs(args[0]) > 1:
        grows = args[1] * math.log2(abs(args[0]))
    elif op is ast.LShift and all(ints) and args[1] > 0:
        grows = args[0].bit_length() + args[1]
    elif op is ast.Mult and any(isinstance(a, (str, bytes)) for a in args) and any(ints):
        grows = 8 * math.prod(len(a) if isinstance(a, (str, bytes)) else abs(a) for a in args)
    else:
        return
    if grows > MAX_BITS:
        raise _Overflow


def evaluate(expression: str, names: dict[str, object]) -> np.ndarray:
    """Evaluate ``expression`` with numexpr over ``names`` only (no Python ``eval``, no globals),
    after :func:`check_formula` (bounded work: an overflow is refused at once).

    Raises :class:`ScheduleError` with a short, plain description of what is wrong."""
    import numexpr

    check_formula(expression)
    try:
        return np.asarray(numexpr.evaluate(expression, local_dict=names, global_dict={}))
    except OverflowError:  # a constant past 64 bits
        raise ScheduleError("overflows: the value is too large for a number") from None
    except (RecursionError, MemoryError):
        raise ScheduleError(f"expression too long or nested too deeply ({len(expression)} characters)") from None
    except KeyError as e:
        raise ScheduleError(f'unknown name "{e.args[0]}" (names: {", ".join(n for n in VALUE_NAMES if n in names)})') from None
    except SyntaxError:
        raise ScheduleError(f"cannot read {shorten(expression)!r} as an expression") from None
    except ZeroDivisionError:
        raise ScheduleError("division by zero") from None
    except TypeError as e:
        called = [f for f in re.findall(r"([A-Za-z_]\w*)\s*\(", expression) if f not in _functions()]
        if "not callable" in str(e) and called:
            raise ScheduleError(f'unknown function "{called[0]}" (numexpr has sin, cos, tan, abs, sqrt, exp, log, where …)') from None
        raise ScheduleError(f"cannot evaluate {shorten(expression)!r}: {shorten(str(e))}") from None
    except (ValueError, AttributeError, NotImplementedError, RuntimeError) as e:
        msg = str(e).replace("\n", " ")
        if "forbidden" in msg:
            msg = "only arithmetic, comparisons and numexpr's functions are allowed"
        raise ScheduleError(f"cannot evaluate {shorten(expression)!r}: {shorten(msg, 200)}") from None


@lru_cache(maxsize=1)
def _functions() -> frozenset[str]:
    import numexpr.expressions

    return frozenset(numexpr.expressions.functions)


def parse_schedule(text: str | int | float, name: str = "") -> Schedule:
    """Parse ``"0:(0.65), 10:(0.45)"``, ``"0:(1+0.1*sin(t))"`` or a plain number into a
    :class:`Schedule`. Syntax errors and unknown names are found here, before any frame renders;
    messages start with the schedule's ``name`` when given."""
    try:
        return _parse(text, name)
    except ScheduleError as e:
        prefix = _where(Schedule((), name))
        if str(e).startswith(prefix):
            raise
        raise ScheduleError(f"{prefix}{e}") from None


def _parse(text: str | int | float, name: str) -> Schedule:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(text):
            raise ScheduleError(f"{text} is not a finite number")
        return Schedule((Keyframe("0", repr(float(text)), float(text)),), name)
    if not isinstance(text, str):
        raise ScheduleError('expected a number or a string like "0:(0.65), 10:(0.45)"')
    keys = _keyframes(text)
    if not keys:
        raise ScheduleError(f"empty schedule {shorten(text)!r}; write e.g. 0:(0.65), 10:(0.45)")
    sched = Schedule(tuple(keys), name)
    _check_expressions(sched)
    return sched


def _keyframes(text: str) -> list[Keyframe]:
    """The keyframes of ``text``, in the order written, separated by commas."""
    keys: list[Keyframe] = []
    pos, n = 0, len(text)
    while pos < n:
        key, pos = _read_keyframe(text, pos)
        keys.append(key)
        while pos < n and text[pos].isspace():
            pos += 1
        if pos < n:
            if text[pos] != ",":
                raise ScheduleError(f"expected ',' at character {pos + 1} of {shorten(text)!r}")
            pos += 1
    return keys


def _read_keyframe(text: str, pos: int) -> tuple[Keyframe, int]:
    """The ``FRAME:(VALUE)`` keyframe at ``pos`` (after any spaces), and the position just after it."""
    start, n = pos, len(text)
    while pos < n and text[pos].isspace():
        pos += 1
    if pos < n and text[pos] in "\"'":
        close = text.find(text[pos], pos + 1)
        if close < 0:
            raise ScheduleError(f"unclosed quote at character {pos + 1} of {shorten(text)!r}")
        frame, pos = text[pos + 1:close].strip(), close + 1
    else:
        colon = text.find(":", pos)
        frame = text[pos:colon].strip() if colon >= 0 else ""
        pos = colon if colon >= 0 else pos
    while pos < n and text[pos].isspace():
        pos += 1
    if frame and pos < n and text[pos] == ":":
        pos += 1
        while pos < n and text[pos].isspace():
            pos += 1
    if not frame or pos >= n or text[pos] != "(":
        raise ScheduleError(f"expected FRAME:(VALUE) at character {start + 1} of {shorten(text)!r}")
    depth, end = 0, pos
    while end < n:
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            break
        end += 1
    if depth:
        raise ScheduleError(f"unclosed '(' at character {pos + 1} of {shorten(text)!r}")
    inside = re.sub("[\"'()]", "", text[pos + 1:end])
    value = text[pos + 1:end].strip()
    pos = end + 1
    if not value:
        raise ScheduleError(f"empty value at character {pos} of {shorten(text)!r}")
    number = float(inside) if _DEFORUM_NUMBER.fullmatch(inside) and re.search("[0-9]", inside) else None
    if number is not None and not math.isfinite(number):
        raise ScheduleError(f"{shorten(value)} is not a finite number (at character {pos} of {shorten(text)!r})")
    if number is None and _DEFORUM_NUMBER.fullmatch(value.replace("(", "").replace(")", "")):
        value = f"( {value} )"  # "( 1.5 )": stays an expression when the keyframe is written out again
    return Keyframe(frame, value, number), pos


def _check_expressions(sched: Schedule) -> None:
    """Find syntax errors and unknown names in the keyframes' expressions now (values at t=0 may
    legitimately divide by zero)."""
    for key in sched.keys:
        try:
            if not _INT.match(key.frame):
                evaluate(key.frame, _frame_names(0, 0))
            if key.number is None:
                evaluate(key.value, {**_frame_names(0, 0), "t": np.int64(0)})
        except ScheduleError as e:
            if str(e) != "division by zero":
                raise ScheduleError(f"{_where(sched, key)}{e}") from None


def _frame_names(max_f: int, seed: int) -> dict[str, object]:
    return {"max_f": np.int64(max_f), "s": np.int64(seed), "pi": np.float64(math.pi)}


def frame_index(text: str, frames: int, seed: int) -> int:
    """A keyframe's frame written as an expression of ``max_f`` (``frames - 1``) and ``s`` (``seed``),
    rounded toward zero as Deforum does."""
    value = float(evaluate(text.strip("\"'"), _frame_names(frames - 1, seed)))
    if not math.isfinite(value):
        raise ScheduleError(f"frame {shorten(text)!r} is not a finite number ({value})")
    return int(value)


@lru_cache(maxsize=256)
def _series(sched: Schedule, frames: int, seed: int) -> tuple[float, ...]:
    if frames < 1:
        raise ValueError("a schedule needs at least one frame")
    names = _frame_names(frames - 1, seed)
    at: dict[int, Keyframe] = {}
    for key in sched.keys:  # Deforum: a later keyframe with the same frame replaces an earlier one
        if _INT.match(key.frame):
            index = int(key.frame)
        else:
            try:
                index = frame_index(key.frame, frames, seed)
            except ScheduleError as e:
                raise ScheduleError(f"{_where(sched, key)}{e}") from None
        if 0 <= index < frames:
            at[index] = key
    if not at:
        raise ScheduleError(f"{_where(sched)}no keyframe falls within frames 0 to {frames - 1} of {shorten(', '.join(map(str, sched.keys)))}")
    values = np.full(frames, np.nan)
    starts = sorted(at)
    for j, start in enumerate(starts):
        key = at[start]
        if key.number is not None:
            values[start] = key.number
            continue
        stop = starts[j + 1] if j + 1 < len(starts) else frames
        t = np.arange(start, stop, dtype=np.int64)
        try:
            out = np.broadcast_to(evaluate(key.value, {**names, "t": t}), t.shape).astype(float)
        except ScheduleError as e:
            raise ScheduleError(f"{_where(sched, key)}{e}") from None
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            raise ScheduleError(f"{_where(sched, key)}not a finite number at frame {int(t[bad[0]])} ({out[bad[0]]})")
        values[start:stop] = out
    known = np.flatnonzero(~np.isnan(values))
    values = np.interp(np.arange(frames), known, values[known])  # flat before the first, after the last
    if sched.bounds is not None:
        lo, hi = sched.bounds
        bad = np.flatnonzero((values < lo) | (values > hi))
        if bad.size:
            i = int(bad[0])
            key = at[max(k for k in starts if k <= i)] if i >= starts[0] else at[starts[0]]
            raise ScheduleError(f"{_where(sched, key)}value {values[i]:g} at frame {i} is outside {lo:g} to {hi:g}")
    return tuple(float(v) for v in values)
