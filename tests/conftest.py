from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny_model import build_tiny_pipeline  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
# compiled code (--compile, --fast-path) shared by test sessions, as torch's own default folder was:
# framereel keeps it in its cache folder otherwise, which each session makes anew
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"framereel-tests-inductor-{os.getuid()}"))

# A small film with morphs, a chain with motion and plain key frames (8 frames), for tests that
# compare whole runs across processes, executors and faults.
FILM = [
    {"prompt": "a red circle", "morph": 2},
    {"prompt": "a blue circle"},
    {"prompt": "a green square"},
    {"prompt": "the square drifts", "init": "previous", "strength": 0.5, "motion": {"zoom": 1.1}},
    {"prompt": "the square drifts more", "init": "previous", "strength": 0.5},
    {"prompt": "a yellow star"},
]


class _EnvWith(Mapping):
    """``os.environ`` as it is when a process starts, with ``overrides``. Read at use, not at import:
    a copy taken when this file loads would miss what session fixtures set later (the measurement
    cache folder), and its subprocesses would measure ``--batch auto`` on their own, pick another
    batch under load, and render other bytes."""

    def __init__(self, **overrides: str):
        self.overrides = overrides

    def _now(self) -> dict[str, str]:
        return {**os.environ, **self.overrides}

    def __getitem__(self, key: str) -> str:
        return self._now()[key]

    def __iter__(self):
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


# bf16 convolutions on the CPU round differently with different thread counts, so byte-identity
# across processes holds for equal threads per process: pin one thread each, as `--workers 2` gives
# on 2 cores.
ONE_THREAD = _EnvWith(OMP_NUM_THREADS="1")


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread in this process and in worker processes it starts (``OMP_NUM_THREADS``), so
    frames are byte-equal to ONE_THREAD subprocesses' and to recorded ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def frames_bytes(out: Path) -> dict[str, bytes]:
    """Every frame PNG of the output folder ``out``, by file name: for byte-for-byte comparisons of runs."""
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


@pytest.fixture(scope="session", autouse=True)
def measurement_cache(tmp_path_factory):
    """What framereel measures (the --batch auto probe) is cached per test session, not in the
    user's cache folder, so a test run neither reads nor leaves a machine's measurements."""
    folder = tmp_path_factory.mktemp("framereel-cache")
    old = os.environ.get("FRAMEREEL_CACHE_DIR")
    os.environ["FRAMEREEL_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("FRAMEREEL_CACHE_DIR", None)
    else:
        os.environ["FRAMEREEL_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight SD pipeline folder (native 64×64), built once per test session."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny")


def write_storyboard(path: Path, frames) -> Path:
    path.write_text(json.dumps(frames))
    return path


def run_cli(*args: str, cwd: Path | None = None, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run the real ``framereel`` command in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "framereel", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"framereel {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def cli(*args: str, check: bool = False, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``framereel`` in this process with click's CliRunner, where a process boundary is not what
    is tested (kill -9, workers, a terminal, environment read at import time keep :func:`run_cli`)."""
    from click.testing import CliRunner

    from framereel.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], env=env, input=input, catch_exceptions=False)
    proc = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"framereel {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def probe_video(path: Path) -> dict:
    """What ffprobe would say of a video's first stream: codec, pix_fmt, size, frame count, rate, duration."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        facts = {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.format.name if stream.codec_context.format else None,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "rate": Fraction(stream.average_rate) if stream.average_rate else None,
            "audio": [s.codec_context.name for s in container.streams.audio],
        }
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    facts["frames"] = len(frames)
    facts["pixels"] = frames
    facts["seconds"] = len(frames) / float(facts["rate"]) if facts["rate"] else None
    return facts


def audio_seconds(path: Path) -> float:
    """Seconds of decoded audio in a file's first audio stream."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.codec_context.sample_rate
