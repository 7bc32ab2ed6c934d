"""Faults while writing: a full disk, damaged run records and frames, ffmpeg dying or missing,
kill -9 at random moments, signals, two runs at once, unwritable folders, hostile text.

Each test checks what the user sees (one line, an exit code) and that no finished frame is lost
or changed, and that the next run completes with what an uninterrupted run gives.
``FRAMEREEL_FUZZ=20`` (``make fuzz``) kills the run at 20 random moments instead of 5.
"""

import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FILM, ONE_THREAD, frames_bytes, run_cli, write_storyboard
from PIL import Image

from framereel import FramereelError, RenderSettings, load_storyboard, render
from framereel.video import stitch

SCALE = int(os.environ.get("FRAMEREEL_FUZZ", "1") or 1)
PROMPTS = [{"prompt": f"a lighthouse, shot {i}"} for i in range(5)]



def digest(path: Path) -> str:
    """A file's SHA-256: videos are compared by it (pytest's diff of two videos' bytes takes minutes)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def backend(tiny_model):
    """The tiny model, loaded once, rendering on one thread: the same bytes as ONE_THREAD subprocesses."""
    import torch

    from framereel.backends import create_backend

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield create_backend(RenderSettings(model=str(tiny_model)))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model, backend):
    """The five-frame storyboard rendered once, uninterrupted: what every faulted run must end as."""
    folder = tmp_path_factory.mktemp("reference")
    board = write_storyboard(folder / "board.json", PROMPTS)
    render(load_storyboard(board, overrides={"steps": 2}), folder / "out", RenderSettings(model=str(tiny_model)),
           backend=backend)
    return board, frames_bytes(folder / "out")


def run(board, out, tiny_model, backend, events=None, **kw):
    return render(load_storyboard(board, overrides={"steps": 2}), out, RenderSettings(model=str(tiny_model)),
                  backend=backend, on_event=events.append if events is not None else None, **kw)


# ------------------------------------------------------------------ a full disk


@contextlib.contextmanager
def small_disk(folder: Path, kilobytes: int):
    """A tmpfs of ``kilobytes`` mounted at ``folder`` (root with mount rights), else None."""
    folder.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs", str(folder)],
                        capture_output=True).returncode == 0
    try:
        yield folder if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def file_size_limit(limit: int):
    """RLIMIT_FSIZE for this process: a bigger write fails with EFBIG (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def leave_free(disk: Path, pages: int) -> Path:
    """Fill ``disk`` so that only ``pages`` 4 KiB pages are free; returns the filler to delete."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(0, free - pages * 4096))
    return filler


@pytest.mark.parametrize("pages", [0, 4, 9])
def test_disk_full_while_rendering_loses_nothing_and_the_next_run_completes(tmp_path, tiny_model, backend, reference,
                                                                            pages):
    board, expected = reference
    with small_disk(tmp_path / "disk", 512) as disk:
        if disk is None:  # no mount rights: a per-file size limit gives the same error (EFBIG)
            disk = tmp_path / "disk"
            with file_size_limit(8000), pytest.raises(FramereelError, match="a file-size limit .* stopped writing") \
                    as err:
                run(board, disk / "out", tiny_model, backend)
            filler = None
        else:
            filler = leave_free(disk, pages)
            with pytest.raises(FramereelError, match="no space left to write") as err:
                run(board, disk / "out", tiny_model, backend)
        message = str(err.value)
        assert str(disk / "out") in message and "needs about" in message and "kB" in message
        out = disk / "out"
        finished = frames_bytes(out)
        assert all(expected[name] == data for name, data in finished.items())  # whole, and the right pixels
        assert no_temp_files(out)
        if filler is not None:
            filler.unlink()
        resumed = run(board, out, tiny_model, backend)
        assert set(resumed.skipped) >= {int(name[6:9]) for name in finished}  # nothing finished is redone
        assert frames_bytes(out) == expected
        assert json.loads((out / "run.json").read_text())["frames"][4]["status"] == "done"


def test_disk_full_while_encoding_keeps_the_old_video(tmp_path, reference):
    board, expected = reference
    with small_disk(tmp_path / "disk", 1024) as disk:
        if disk is None:
            pytest.skip("needs a tmpfs mount (root)")
        out = disk / "out"
        (out / "frames").mkdir(parents=True)
        for name, data in expected.items():
            (out / "frames" / name).write_bytes(data)
        stitch(out, fps=2)
        old = (out / "video.mp4").read_bytes()
        filler = leave_free(disk, 1)
        with pytest.raises(FramereelError, match="no space left to write the video") as err:
            stitch(out, fps=2, size="1024x1024", crf=0)
        assert str(out) in str(err.value)
        assert (out / "video.mp4").read_bytes() == old and no_temp_files(out)
        filler.unlink()
        assert stitch(out, fps=2).read_bytes() == old  # with space again, the same video as before


# ------------------------------------------------------------------ damaged records and frames


@pytest.mark.parametrize("damage", [
    lambda raw: raw[: len(raw) // 2],  # truncated
    lambda raw: b"",  # emptied
    lambda raw: os.urandom(300),  # garbage
    lambda raw: b'{"frames": [{"index": "x"}], "video": 3}',  # JSON, but not a run record
], ids=["truncated", "empty", "garbage", "wrong-shape"])
def test_a_damaged_run_json_is_rebuilt_from_the_frames(tmp_path, tiny_model, backend, reference, damage):
    board, expected = reference
    out = tmp_path / "out"
    run(board, out, tiny_model, backend, only=[0, 1, 2])
    run_json = out / "run.json"
    run_json.write_bytes(damage(run_json.read_bytes()))
    # stitch works from what is on disk, with a warning
    events = []
    stitch(out, fps=2, on_event=events.append)
    assert any("rebuilt it from the 3 frames' PNG metadata" in e.message for e in events if e.name == "warning")
    run_json.write_bytes(damage(b'{"frames": []}' * 40))
    events = []
    result = run(board, out, tiny_model, backend, events)
    assert any("was damaged" in e.message for e in events if e.name == "warning")
    assert result.skipped == [0, 1, 2] and result.rendered == [3, 4]  # nothing finished was redone
    assert frames_bytes(out) == expected
    assert [f["status"] for f in json.loads(run_json.read_text())["frames"]] == ["done"] * 5
    assert (out / "run.json.damaged").exists()


@pytest.mark.parametrize("how", ["truncated", "another image", "not an image"])
def test_a_damaged_frame_is_set_aside_and_rendered_again(tmp_path, tiny_model, backend, reference, how):
    board, expected = reference
    out = tmp_path / "out"
    run(board, out, tiny_model, backend)
    target = out / "frames" / "frame_002.png"
    if how == "truncated":
        target.write_bytes(expected["frame_002.png"][:300])
    elif how == "another image":
        Image.new("RGB", (64, 64), (255, 0, 0)).save(target)
    else:
        target.write_text("hello")
    damaged = target.read_bytes()
    result = run(board, out, tiny_model, backend)
    assert result.rendered == [2]
    assert frames_bytes(out) == expected
    kept = [p.read_bytes() for p in (out / "superseded").iterdir()]
    assert kept == [damaged]  # the old file is kept, never deleted


# ------------------------------------------------------------------ ffmpeg dying or missing


FAKE_FFMPEG = """#!/bin/sh
# Like ffmpeg killed mid-encode (OOM killer, kill -9): half a file at the output path, then SIGKILL.
for last; do :; done
case "$last" in
  *.tmp-*) head -c 1000 /dev/urandom > "$last"; cat > /dev/null & kill -9 $$ ;;
  *) exec "{real}" "$@" ;;
esac
"""


def test_ffmpeg_killed_mid_encode_leaves_no_partial_video(tmp_path, reference, monkeypatch):
    from framereel.video import find_ffmpeg

    board, expected = reference
    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    for name, data in expected.items():
        (out / "frames" / name).write_bytes(data)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ffmpeg"
    fake.write_text(FAKE_FFMPEG.replace("{real}", find_ffmpeg()))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    with pytest.raises(FramereelError, match="ffmpeg was killed .* video.mp4 was not changed"):
        stitch(out, fps=2)
    assert not (out / "video.mp4").exists() and no_temp_files(out)


def test_ffmpeg_missing_is_one_line_before_anything_happens(tmp_path, reference, monkeypatch):
    import imageio_ffmpeg

    board, expected = reference
    out = tmp_path / "out"
    (out / "frames").mkdir(parents=True)
    (out / "frames" / "frame_000.png").write_bytes(expected["frame_000.png"])

    def missing():  # what imageio-ffmpeg raises when its binary is absent
        raise RuntimeError("No ffmpeg exe could be found. Install ffmpeg on your system, or set the "
                           "IMAGEIO_FFMPEG_EXE environment variable.")

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    with pytest.raises(FramereelError, match="ffmpeg not found; install it"):
        stitch(out, fps=2)
    assert not (out / "video.mp4").exists() and not (out / ".framereel.lock").exists()


# ------------------------------------------------------------------ kill -9 at random moments


def test_kill_9_at_random_moments_then_resume_is_byte_identical(tmp_path, tiny_model, backend):
    """A run with morphs, a chain and 2 workers, killed with SIGKILL (workers too) at random moments,
    again and again; then resumed: frames and video are byte for byte an uninterrupted run's."""
    board = write_storyboard(tmp_path / "film.json", FILM)
    ref = tmp_path / "ref"
    render(load_storyboard(board, overrides={"steps": 2}), ref, RenderSettings(model=str(tiny_model)), backend=backend)
    ref_video = digest(stitch(ref, fps=4, transition="crossfade", crossfade=0.25))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "framereel", "make", str(board), "-o", str(out), "--model", str(tiny_model),
           "--steps", "2", "--workers", "2", "--fps", "4", "--transition", "crossfade", "--crossfade", "0.25", "-q"]
    rng = random.Random(21 if SCALE == 1 else None)
    moments = 5 if SCALE == 1 else 20
    for _ in range(moments):
        # a random moment: once the k-th frame is on disk (k = 0: while starting and loading), plus a random delay
        k, delay = rng.randrange(0, 9), rng.uniform(0.0, 0.4)
        proc = subprocess.Popen(cmd, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and len(list(out.glob("frames/frame_*.png"))) < k:
            time.sleep(0.01)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # unless the run finished first
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its two workers, whatever they are doing
        proc.wait()
        for p in (out / "frames").glob("frame_*.png") if (out / "frames").exists() else []:
            Image.open(p).load()  # every frame on disk is whole
        assert not (out / "video.mp4").exists() or digest(out / "video.mp4") == ref_video
    # and once during stitching
    if (out / "video.mp4").exists():
        (out / "video.mp4").unlink()
    resumed = render(load_storyboard(board, overrides={"steps": 2}), out, RenderSettings(model=str(tiny_model)),
                     backend=backend)
    assert sorted(resumed.skipped + resumed.rendered) == list(range(8))
    stitcher = subprocess.Popen([sys.executable, "-m", "framereel", "stitch", str(out), "--fps", "4",
                                 "--transition", "crossfade", "--crossfade", "0.25", "--size", "1024x1024", "-q"],
                                env=ONE_THREAD, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("video.mp4.tmp-*")) and stitcher.poll() is None:
        time.sleep(0.005)
    finished = stitcher.poll() is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stitcher.pid, signal.SIGKILL)
    stitcher.wait()
    assert finished or not (out / "video.mp4").exists()  # never a partial video at the video's path
    assert digest(stitch(out, fps=4, transition="crossfade", crossfade=0.25)) == ref_video
    assert frames_bytes(out) == frames_bytes(ref)
    assert no_temp_files(out)


@pytest.mark.slow
def test_a_killed_ray_actor_gives_its_frames_back(tmp_path, tiny_model, reference):
    pytest.importorskip("ray")
    board, expected = reference
    out = tmp_path / "out"
    proc = run_cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "2", "--workers", "2",
                   "--executor", "ray", env={**ONE_THREAD, "FRAMEREEL_FAULT": "crash:2"})
    assert proc.returncode == 0, proc.stderr
    assert "Ray actor" in proc.stderr and "failed" in proc.stderr and "go back to the queue" in proc.stderr
    assert frames_bytes(out) == expected


# ------------------------------------------------------------------ signals, locks


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and not path.exists():
        time.sleep(0.02)
    assert path.exists(), f"{path} never appeared"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, tiny_model, sig):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": f"shot {i}"} for i in range(40)])
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "framereel", "frames", str(board), "-o", str(out), "--model",
                             str(tiny_model), "--steps", "2", "--batch", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    wait_for(out / "frames" / "frame_000.png")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    assert f"interrupted ({signal.Signals(sig).name}); finished frames are kept" in err and "Traceback" not in err
    done = frames_bytes(out)
    assert 1 <= len(done) < 40 and no_temp_files(out)
    run_json = json.loads((out / "run.json").read_text())
    assert sum(f["status"] == "done" for f in run_json["frames"]) == len(done)


def test_a_second_run_is_refused_and_a_stale_lock_is_taken_over(tmp_path, tiny_model, backend, reference):
    from framereel.manifest import folder_lock

    board, expected = reference
    out = tmp_path / "out"
    with folder_lock(out):  # a live run holds the folder: the second is refused in one line
        proc = run_cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "2")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert f"{out} is in use by another framereel run (pid {os.getpid()}" in proc.stderr
    # a lock file left by a process that died (its pid no longer runs) does not block
    (out / ".framereel.lock").write_text("pid 999999 on elsewhere\n")
    assert run(board, out, tiny_model, backend).rendered == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ paths and permissions


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI as an unprivileged user (setpriv), the way a user without write access runs it."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**ONE_THREAD, "HOME": str(cwd), "PYTHONPATH": os.environ.get("PYTHONPATH", repo)}
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    if subprocess.run([*user, "-c", "import framereel.cli"], cwd=cwd, env=env, capture_output=True).returncode:
        pytest.skip("the unprivileged user cannot read this Python environment or checkout")
    return subprocess.run([*user, "-m", "framereel", *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.fixture()
def public(tmp_path_factory):
    folder = Path(tmp_path_factory.mktemp("public"))
    for p in [folder, *folder.parents]:
        if p == Path("/"):
            break
        with contextlib.suppress(PermissionError):
            p.chmod(p.stat().st_mode | stat.S_IXOTH)
    folder.chmod(0o755)
    return folder


def test_unwritable_folder_and_unreadable_storyboard_as_a_user(public):
    board = write_storyboard(public / "board.json", [{"prompt": "a"}])
    board.chmod(0o644)
    locked = public / "locked"
    locked.mkdir(mode=0o755)  # owned by root: another user may not write here
    proc = as_nobody("make", str(board), "-o", str(locked / "out"), "--model", "demo", cwd=public)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: -o {locked / 'out'}: {locked} is not writable by this user; "
                                                "give a folder you can write in"]
    secret = write_storyboard(public / "secret.json", [{"prompt": "a"}])
    secret.chmod(0o600)
    proc = as_nobody("make", str(secret), "-o", str(public / "out"), "--model", "demo", cwd=public)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {secret}: not readable by this user (permission denied)"
    assert not (locked / "out").exists() and not (public / "out").exists()


# ------------------------------------------------------------------ hostile text

HOSTILE = [
    'she said "hi" and \'bye\'',
    "two\nlines\r\nand a tab\t",
    "nul \x00 inside",
    "right-to-left \u202e txet \u200f שלום",
    "emoji 🎬🌊 and a ZWJ 👩‍🚀",
    "x" * 10_000,
    "<script>alert('x')</script> &amp; <b>bold</b>",
    "$(touch pwned) `id` ; rm -rf / && echo | cat > /tmp/x ../../etc/passwd",
]
MARKER = "hf_FRAMEREELMARKER0123456789"


def test_hostile_prompts_go_unchanged_into_metadata_and_never_leak_the_token(tmp_path, tiny_model):
    board = tmp_path / "hostile.json"
    board.write_text(json.dumps([{"prompt": p} for p in HOSTILE]))
    out = tmp_path / "out"
    env = {**ONE_THREAD, "HF_TOKEN": MARKER}
    proc = run_cli("make", board, "-o", out, "--model", tiny_model, "--steps", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "pwned").exists()
    for i, prompt in enumerate(HOSTILE):
        with Image.open(out / "frames" / f"frame_{i:03d}.png") as im:
            assert im.text["prompt"] == prompt.strip()
    records = json.loads((out / "run.json").read_text())["frames"]
    assert [r["params"]["prompt"] for r in records] == [p.strip() for p in HOSTILE]
    sheet = run_cli("sheet", out, env=env)
    assert sheet.returncode == 0, sheet.stderr
    # interactive file names: no separators, bounded, whatever the prompt
    script = "\n".join(p.replace("\n", " ").replace("\r", " ") for p in HOSTILE[:1] + HOSTILE[4:]) + "\n"
    inter = run_cli("interactive", "-o", out, "--model", tiny_model, "--steps", "1", input=script, env=env)
    assert inter.returncode == 0, inter.stderr
    names = [p.name for p in (out / "interactive").iterdir() if p.suffix == ".png"]
    assert len(names) == 5 and all(len(n) <= 60 and n.isascii() and "/" not in n for n in names)
    # the token appears nowhere: not in output, logs, run.json, PNGs, the video or the sheet
    for text in (proc.stdout, proc.stderr, sheet.stderr, inter.stdout, inter.stderr):
        assert MARKER not in text
    for p in out.rglob("*"):
        if p.is_file():
            assert MARKER.encode() not in p.read_bytes(), p


@pytest.mark.parametrize("moment", ["start", "frame_start", "frame_done"])
def test_ctrl_c_is_honoured_at_any_moment(tmp_path, tiny_model, moment):
    """Ctrl-C while the model loads, in the middle of a frame and between frames: the run stops
    there (the frame rendering at the signal, 1000 steps long, never finishes) and says how to resume."""
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "shot 0", "steps": 2}, {"prompt": "shot 1"},
                                                   {"prompt": "shot 2"}])
    proc = subprocess.Popen([sys.executable, "-m", "framereel", "frames", str(board), "-o", str(tmp_path / "out"),
                             "--model", str(tiny_model), "--steps", "1000", "--batch", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD)
    index = {"start": None, "frame_start": 1, "frame_done": 0}[moment]
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == moment and event.get("index") == index:
            break
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=600)
    assert proc.returncode == 130 and "interrupted (SIGINT)" in err and "Traceback" not in err, err
    later = [json.loads(line) for line in rest.splitlines()]
    assert not [e for e in later if e["event"] == "frame_done" and e["index"] >= (index or 0) + (moment != "frame_start")]
