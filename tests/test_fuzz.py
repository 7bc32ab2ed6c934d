"""Fuzzing every input a user writes, with Hypothesis: storyboards (JSON and .txt, structured and
raw bytes), keyframe schedules, --frames/--redo lists, --size, and interactive commands.

The property is the same everywhere: the input gives a valid result, or one FramereelError whose
message is one line — never another exception. The default run tries over 10,000 inputs in a few
seconds (derandomized, so it is the same run every time); ``make fuzz`` runs 20× as many, with
fresh random inputs each time (``FRAMEREEL_FUZZ=20``).
"""

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from framereel import FramereelError
from framereel.backends import Backend, ModelInfo
from framereel.loader import parse_storyboard
from framereel.settings import SCHEDULERS
from framereel.storyboard import FRAME_KEYS, MOTION_KEYS
from framereel.validate import parse_indices, parse_size

SCALE = int(os.environ.get("FRAMEREEL_FUZZ", "1") or 1)


def fuzz(examples: int):
    """Hypothesis settings for ``examples`` inputs (× FRAMEREEL_FUZZ), no deadline, reproducible by default."""
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=SCALE == 1, database=None,
                    suppress_health_check=list(HealthCheck))


def assert_one_line(err: FramereelError) -> None:
    message = str(err)
    assert message and message.splitlines() == [message], repr(message)
    assert len(message) <= 2000


def parses_or_one_line_error(text: str, name: str):
    try:
        board = parse_storyboard(text, name)
    except FramereelError as err:
        assert_one_line(err)
        return None
    # a valid storyboard: consecutive frames, each parameter in range
    assert len(board) >= 1
    for i, f in enumerate(board.frames):
        assert f.index == i and f.prompt.strip() and 0 <= f.seed < 2**32
        assert f.steps is None or 1 <= f.steps <= 1000
        assert f.guidance is None or (math.isfinite(f.guidance) and 0 <= f.guidance <= 50)
        assert f.width is None or (64 <= f.width <= 4096 and f.width % 8 == 0)
        assert f.duration is None or 0 < f.duration <= 3600
        assert f.strength is None or 0 <= f.strength <= 1
    return board


# ------------------------------------------------------------------ values a storyboard may hold

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
schedule_text = st.lists(st.tuples(st.integers(0, 50), st.floats(-2, 60, allow_nan=False)), min_size=1, max_size=4).map(
    lambda keys: ", ".join(f"{k}:({v:g})" for k, v in keys))
NEAR_VALID = {
    "prompt": st.text(max_size=30) | st.sampled_from(["a lighthouse", " ", "café ☕ שלום", "<b>&amp;</b>", "$(rm -rf /)"]),
    "negative_prompt": st.text(max_size=10),
    "seed": st.integers(-5, 2**32 + 5),
    "steps": st.integers(-2, 1002),
    "guidance": st.floats(-1, 51) | schedule_text,
    "width": st.integers(0, 5000) | st.sampled_from([64, 512, 4096]),
    "height": st.integers(0, 5000) | st.sampled_from([64, 512]),
    "duration": st.floats(-1, 4000) | st.sampled_from([0.5, 1e9, math.nan, math.inf]),
    "morph": st.integers(-1, 3),
    "init": st.sampled_from(["previous", None, "next"]),
    "strength": st.floats(-0.5, 1.5) | schedule_text,
    "motion": st.dictionaries(st.sampled_from([*MOTION_KEYS, "zoom2"]), st.floats(-500, 500) | schedule_text, max_size=3),
    "shared_noise": st.booleans() | st.integers(0, 1),
    "color_match": st.sampled_from(["first", None, "last"]),
}
keys = st.sampled_from(sorted(FRAME_KEYS)) | st.sampled_from(["sed", "prompts", "Prompt", "\n", ""])


@st.composite
def frames(draw):
    frame = {}
    for key in draw(st.lists(keys, max_size=5, unique=True)):
        frame[key] = draw(NEAR_VALID[key] if key in NEAR_VALID and draw(st.booleans()) else json_values)
    if draw(st.integers(0, 9)) > 0:
        frame.setdefault("prompt", draw(NEAR_VALID["prompt"]))
    return frame


storyboards = st.one_of(
    st.lists(frames(), max_size=4),
    st.fixed_dictionaries({"frames": st.lists(frames() | st.text(max_size=10), max_size=4)},
                          optional={"defaults": st.dictionaries(keys, json_values, max_size=3),
                                    "scheduler": st.sampled_from(SCHEDULERS) | json_values,
                                    "notes": st.lists(st.text(max_size=10), max_size=2) | json_values,
                                    "extra": json_values}),
    json_values,
)


@fuzz(2500)
@given(storyboards)
def test_structured_json_storyboards(doc):
    parses_or_one_line_error(json.dumps(doc), "board.json")


@fuzz(3500)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_raw_bytes_as_a_json_storyboard(data):
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return  # read_text refuses it in one line: see test_undecodable_bytes_are_one_line
    parses_or_one_line_error(text, "board.json")


@fuzz(2000)
@given(st.lists(st.text(max_size=40) | st.sampled_from(["# note", "", "  ", "\ufeffa", "\x00", "a\u2028b"]), max_size=6))
def test_txt_storyboards(lines):
    board = parses_or_one_line_error("\n".join(lines), "board.txt")
    if board is not None:
        assert all("\n" not in f.prompt and not f.prompt.startswith("#") for f in board.frames)


@fuzz(1000)
@given(st.text(alphabet="0123456789:(),. -+eE", max_size=30) | st.text(max_size=30) | schedule_text)
def test_schedule_strings(text):
    parses_or_one_line_error(json.dumps([{"prompt": "a"}, {"prompt": "b", "init": "previous", "strength": text}]),
                             "board.json")


@fuzz(1000)
@given(st.text(alphabet="0123456789,- ", max_size=20) | st.text(max_size=20), st.none() | st.integers(1, 50))
def test_frame_lists(spec, count):
    try:
        out = parse_indices(spec, count)
    except FramereelError as err:
        assert_one_line(err)
        return
    assert out == sorted(set(out)) and all(0 <= i < (count or 100_000) for i in out)


@fuzz(500)
@given(st.text(alphabet="0123456789xX -", max_size=14) | st.text(max_size=14))
def test_sizes(text):
    try:
        w, h = parse_size(text)
    except FramereelError as err:
        assert_one_line(err)
        return
    assert 2 <= w <= 8192 and 2 <= h <= 8192 and w % 2 == h % 2 == 0


def test_undecodable_bytes_are_one_line(tmp_path):
    from framereel.loader import load_storyboard

    path = tmp_path / "bad.json"
    path.write_bytes(b'[{"prompt": "caf\xe9"}]')
    with pytest.raises(FramereelError, match="not UTF-8 text") as err:
        load_storyboard(path)
    assert_one_line(err.value)


# ------------------------------------------------------------------ interactive commands


class FakeBackend(Backend):
    """Just enough of a backend for the command loop: a grey image per prompt, no model."""

    name, device, dtype = "fake", "cpu", "float32"

    def describe(self):
        return ModelInfo("fake", "fake", 64, 64)

    def load(self):
        pass

    def set_scheduler(self, name):
        pass

    def render(self, frame, on_step=None, init_image=None):
        return Image.new("RGB", (8, 8), (128, 128, 128)), {}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from framereel.backends import RenderSettings
    from framereel.interactive import Session

    told = []
    s = Session(tmp_path_factory.mktemp("interactive"), RenderSettings(model="fake"),
                backend=FakeBackend(RenderSettings(model="fake")),
                say=told.append, tell=told.append)
    s.render("a first image")
    return s


commands = st.tuples(st.sampled_from([":seed", ":steps", ":guidance", ":size", ":neg", ":scheduler", ":again", ":keep",
                                      ":list", ":undo", ":help", ":bogus", ":", "::"]),
                     st.text(max_size=12) | st.sampled_from(["12", "-1", "nan", "1e400", "512x512", "65x64", "random",
                                                              "euler", "4294967296", "²", "٣", "100000x100000", "4104x64"]))


@fuzz(600)
@given(st.lists(commands, max_size=4))
def test_interactive_commands(session, lines):
    for name, arg in lines:
        assert session.handle(f"{name} {arg}") is True  # errors are told, the session goes on
    assert 0 <= (session.seed or 0) < 2**32
    p = session.params
    assert 1 <= p.get("steps", 1) <= 1000 and 0 <= p.get("guidance", 0) <= 50
    assert all(p.get(k, 64) % 8 == 0 and 64 <= p.get(k, 64) <= 4096 for k in ("width", "height"))
    names = [q.name for q in Path(session.folder).iterdir()]
    assert all(len(n) <= 64 and "/" not in n for n in names)
