"""The backend contract is enough: a backend defined only in this file, registered by name through
the ``framereel.backends`` entry-point group the way a third-party package would, renders through
each executor — in this process, in worker processes and as Ray actors — with the same retries,
failures and device attribution."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import write_storyboard
from PIL import Image

from framereel import Parallelism, RenderSettings, load_storyboard, render
from framereel.backends import backend_names
from framereel.backends.base import Backend, ModelInfo
from framereel.errors import FramereelError

HERE = Path(__file__).resolve().parent


class EchoBackend(Backend):
    """Paints each frame a colour derived from its seed and prompt; chained frames darken their parent.

    A prompt containing ``flaky`` fails on its first try (a marker file remembers the try, across
    processes); ``broken`` always fails; ``refused`` is refused as a user's mistake (FramereelError).
    """

    name = "echo"
    batch = 2

    def describe(self) -> ModelInfo:
        return ModelInfo("echo", "echo-1", 16, 16)

    def load(self) -> None:
        self.loaded = True

    def render(self, frame, on_step=None, init_image=None):
        if "broken" in frame.prompt:
            raise RuntimeError("this prompt always fails")
        if "refused" in frame.prompt:
            raise FramereelError(f"frame {frame.index}: refused; write another prompt")
        if "flaky" in frame.prompt:
            marker = Path(os.environ["ECHO_MARKERS"]) / f"tried-{frame.index}"
            if not marker.exists():
                marker.write_text("once")
                raise RuntimeError("failed on its first try")
        if init_image is not None:
            return init_image.point(lambda v: v // 2), {"pid": os.getpid()}
        rgb = hashlib.sha256(f"{frame.seed}{frame.prompt}".encode()).digest()[:3]
        return Image.new("RGB", (frame.width, frame.height), tuple(rgb)), {"pid": os.getpid()}


@pytest.fixture
def echo_plugin(tmp_path, monkeypatch):
    """Install EchoBackend as a plugin: a dist-info folder with an entry point, on the path of this
    process and of every process it starts."""
    site = tmp_path / "site"
    info = site / "echo_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[framereel.backends]\necho = test_contract:EchoBackend\n")
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(HERE), *sys.path]))
    monkeypatch.setenv("ECHO_MARKERS", str(markers))
    return markers


BOARD = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "flaky c"}, {"prompt": "d"},
         {"prompt": "e", "init": "previous", "strength": 0.5},
         {"prompt": "broken f"}, {"prompt": "g", "init": "previous", "strength": 0.5}]


@pytest.mark.parametrize("parallelism", [Parallelism(), Parallelism(workers=2),
                                         Parallelism(workers=2, executor="ray")], ids=["here", "processes", "ray"])
def test_a_backend_registered_by_name_renders_through_every_executor(tmp_path, echo_plugin, parallelism):
    if parallelism.executor == "ray":
        pytest.importorskip("ray")
    assert "echo" in backend_names()
    board = load_storyboard(write_storyboard(tmp_path / "b.json", BOARD))
    events = []
    result = render(board, tmp_path / "out", RenderSettings(backend="echo", model="echo"),
                    parallelism=parallelism, on_event=events.append)
    assert sorted(result.rendered) == [0, 1, 2, 3, 4]
    assert result.failed == {5: "failed 3 times; last: RuntimeError: this prompt always fails",
                             6: "its parent frame 5 failed"}
    assert any(e.name == "warning" and "frame 2 goes back to the queue (RuntimeError: failed on its first try)"
               in e.message for e in events)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    records = {f["index"]: f for f in run["frames"]}
    assert [records[i]["status"] for i in range(7)] == ["done"] * 5 + ["failed"] * 2
    assert {records[i]["device"] for i in range(5)} <= set(result.devices)
    pids = {records[i]["pid"] for i in range(5)}
    assert (os.getpid() in pids) == (parallelism.workers == 1)  # workers render in their own processes
    # the chained frame starts from its parent's image, whatever process rendered each
    parent = Image.open(tmp_path / "out" / "frames" / "frame_003.png").convert("RGB")
    child = Image.open(tmp_path / "out" / "frames" / "frame_004.png").convert("RGB")
    assert child.getpixel((0, 0)) == tuple(v // 2 for v in parent.getpixel((0, 0)))
    # resume: nothing finished renders again; the failed frames are tried again
    again = render(board, tmp_path / "out", RenderSettings(backend="echo", model="echo"), parallelism=parallelism)
    assert again.rendered == [] and sorted(again.skipped) == [0, 1, 2, 3, 4] and set(again.failed) == {5, 6}


@pytest.mark.parametrize("parallelism", [Parallelism(), Parallelism(workers=2),
                                         Parallelism(workers=2, executor="ray")], ids=["here", "processes", "ray"])
def test_a_refusal_inside_a_worker_stops_the_run_in_one_line_as_in_process(tmp_path, echo_plugin, parallelism):
    """A FramereelError raised while rendering is the user's input refused: retrying it cannot help, so
    in a worker process or a Ray actor it stops the run with that same one line, not three tries."""
    if parallelism.executor == "ray":
        pytest.importorskip("ray")
    board = load_storyboard(write_storyboard(tmp_path / "b.json", [{"prompt": "a"}, {"prompt": "refused b"}]))
    events = []
    with pytest.raises(FramereelError) as err:
        render(board, tmp_path / "out", RenderSettings(backend="echo", model="echo"), parallelism=parallelism,
               on_event=events.append)
    assert str(err.value) == "frame 1: refused; write another prompt"
    assert not any(e.name == "warning" and "back to the queue" in e.message for e in events)


def test_an_unknown_backend_is_one_line_naming_the_known_ones(tmp_path, tiny_model):
    from conftest import run_cli

    board = write_storyboard(tmp_path / "b.json", [{"prompt": "x"}])
    proc = run_cli("frames", board, "-o", tmp_path / "out", "--backend", "nosuch", "--model", tiny_model)
    assert proc.returncode == 2
    assert 'unknown backend "nosuch"; choose auto, diffusers, tt, tt-demo' in proc.stderr
    assert "Traceback" not in proc.stderr
