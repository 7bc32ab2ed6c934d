"""The Tenstorrent backends against fakes of tt-metal (both tree layouts), ttnn and tt-smi.

No chip is here. ``tests/fake_tt/tt_metal_new`` copies the layout of tt-metal's current tree
(``models/demos/vision/generative/stable_diffusion/wormhole``, constants in ``common.py``, device
helpers in ``tests/scripts/common.py``), ``tt_metal_old`` the older one (``models/demos/wormhole/
stable_diffusion``, literal ``device_params``, the root conftest's own helper and its non-MMIO
assertion). Both have a ``pytest.ini`` with ``timeout = 300``, a demo whose ``input_path`` comes
from ``parametrize`` (relative to the working folder) with decoy prompts beside it, and a cold
compile longer than that timeout. The fake demos write each prompt into its image; the fake ttnn
runs the trace with torch on the host and logs what reaches the device.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, frames_bytes, run_cli, write_storyboard
from PIL import Image

FAKES = Path(__file__).parent / "fake_tt"
sys.path.insert(0, str(FAKES))
from fake_sd_images import read_prompt  # noqa: E402

LAYOUTS = {
    "new": ("tt_metal_new", "models/demos/vision/generative/stable_diffusion/wormhole"),
    "old": ("tt_metal_old", "models/demos/wormhole/stable_diffusion"),
}


def make_tree(tmp_path: Path, layout: str = "new", commit: str | None = None) -> Path:
    home = tmp_path / f"tt-metal-{layout}"
    shutil.copytree(FAKES / LAYOUTS[layout][0], home)
    if commit:  # what a clone's .git holds
        (home / ".git" / "refs" / "heads").mkdir(parents=True)
        (home / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (home / ".git" / "refs" / "heads" / "main").write_text(commit + "\n")
    return home


def fake_env(tmp_path: Path, home: Path, boards: str = "n150 L") -> tuple[dict, Path]:
    """Environment for a subprocess that sees a fake tt-metal checkout, ttnn and tt-smi."""
    log = tmp_path / "ttnn.log"
    env = {**os.environ, "TT_METAL_HOME": str(home), "FAKE_TTNN_LOG": str(log), "FAKE_TT_BOARDS": boards,
           "PYTHONPATH": str(FAKES), "PATH": f"{FAKES / 'bin'}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    for key in ("TT_METAL_VISIBLE_DEVICES", "TT_MM_THROTTLE_PERF"):
        env.pop(key, None)
    return env, log


@pytest.fixture()
def tree(tmp_path):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home)
    return home, env, log


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def opened(log: Path) -> list[list[str]]:
    """Each ``open`` the fake ttnn logged: device id, board, l1_small_size, trace_region_size, dispatch, visible=, throttle=."""
    return [line.split()[1:] for line in lines(log) if line.startswith("open ")]



def frame_prompts(out: Path, count: int) -> list[str]:
    return [read_prompt(Image.open(out / "frames" / f"frame_{i:03d}.png").convert("RGB")) for i in range(count)]


PROMPTS = [{"prompt": f"a lighthouse, shot {i}"} for i in range(3)]


def in_process(monkeypatch, env: dict) -> None:
    """Run the backends in this process against the fake tree; everything they set is undone after."""
    for key in ("TT_METAL_HOME", "FAKE_TTNN_LOG", "FAKE_TT_BOARDS", "PATH"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("TT_MM_THROTTLE_PERF", "5")
    monkeypatch.delenv("TT_METAL_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(sys, "path", [str(FAKES), *sys.path])
    _forget_later.append(set(sys.modules))  # the tree's modules (models.*, its conftest) die with this test


_forget_later: list[set] = []


def in_process_demo(monkeypatch, env: dict) -> None:
    """As :func:`in_process`, for ``tt-demo``: the demo's pytest process imports the fake ttnn through
    ``PYTHONPATH``, and ``TT_MM_THROTTLE_PERF`` is framereel's to set, as in a process of its own."""
    in_process(monkeypatch, env)
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])
    monkeypatch.delenv("TT_MM_THROTTLE_PERF")


@pytest.fixture(scope="module")
def tiny_sd14(tmp_path_factory) -> Path:
    """A tiny SD 1.x model of SD 1.4's size: 512×512, 64×64 latents (what tt-metal's SD 1.4 UNet is built for),
    with as few channels and attention heads as load (a render costs a fraction of a second)."""
    from tiny_model import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "sd14", sample_size=64, vae_blocks=(4, 4, 4, 4),
                               unet_blocks=(4, 8), groups=4, heads=1)


@pytest.fixture(autouse=True)
def _forget_tree_modules():
    yield
    while _forget_later:
        before = _forget_later.pop()
        for name in set(sys.modules) - before:
            if name == "models" or name.startswith(("models.", "tests", "_framereel_tt_metal", "ttnn")):
                del sys.modules[name]


# ------------------------------------------------------------------ tt-demo: the unmodified demo gets the user's prompts


@pytest.mark.parametrize("layout", ["new", "old"])
def test_demo_renders_the_users_prompts_in_order_in_both_layouts(tmp_path, monkeypatch, layout):
    home = make_tree(tmp_path, layout)
    env, log = fake_env(tmp_path, home)
    in_process_demo(monkeypatch, env)
    prompts = [{"prompt": f"user shot {i}: a lighthouse, 'quoted' \"twice\" é"} for i in range(12)]
    board = write_storyboard(tmp_path / "b.json", prompts)
    out = tmp_path / "o"
    # a first run renders frames 0-4 (one demo run), the next only the 7 missing ones (one more)
    cli("frames", board, "-o", out, "--backend", "tt-demo", "--frames", "0-4", "--quiet", check=True)
    proc = cli("frames", board, "-o", out, "--backend", "tt-demo")
    assert proc.returncode == 0, proc.stderr
    assert "ignores per-frame seeds, steps and guidance" in proc.stderr
    assert sorted(frames_bytes(out)) == [f"frame_{i:03d}.png" for i in range(12)]
    got = frame_prompts(out, 12)
    assert got == [p["prompt"] for p in prompts]
    assert not any("DECOY" in p for p in got)
    decoys = json.loads((home / LAYOUTS[layout][1] / "demo" / "input_data.json").read_text())
    assert decoys[0]["prompt"].startswith("DECOY")  # they are there, beside the demo, and never used
    # the demo's own device fixture opened the chip with the tree's numbers, once per demo run
    params = {"new": ["20928", "789835776"], "old": ["90112", "789835776"]}[layout]
    assert [o[2:4] for o in opened(log)] == [params, params]
    run = json.loads((out / "run.json").read_text())
    assert "ignores per-frame seeds" in " ".join(run["notes"]) and run["frames"][11]["seed_used"] == 174


def test_demo_on_two_n300_boards_of_an_older_tree_runs_one_demo_per_pcie_chip(tmp_path, monkeypatch):
    home = make_tree(tmp_path, "old")  # its root conftest's device fixture refuses a remote chip
    env, log = fake_env(tmp_path, home, "n300 L,n300 L,n300 R,n300 R")
    in_process_demo(monkeypatch, env)
    prompts = [{"prompt": f"shot {i}"} for i in range(11)]
    board = write_storyboard(tmp_path / "b.json", prompts)
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", "--devices", "all", "--quiet", check=True)
    assert "2 of 4 chip(s) usable by single-chip workers (2× n300 L, 2× n300 R)" in proc.stderr
    assert "root conftest refuses a remote chip" in proc.stderr and "--devices all uses tt:0, tt:1" in proc.stderr
    assert frame_prompts(tmp_path / "o", 11) == [p["prompt"] for p in prompts]
    assert sorted(o[5] for o in opened(log)) == ["visible=0", "visible=1"]  # 10 + 1 prompts, one run per chip


def test_fake_demo_has_the_real_quirks_framereel_works_around(tmp_path):
    """Run from TT_METAL_HOME with the ini's 300 s timeout, the old tree's demo renders its own decoy
    prompts and is killed mid-compile; framereel's run (above) gets neither."""
    home = make_tree(tmp_path, "old")
    env, log = fake_env(tmp_path, home)
    env["PYTHONPATH"] = f"{home}{os.pathsep}{FAKES}"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           f"{LAYOUTS['old'][1]}/demo/demo.py::test_demo"], cwd=home, env=env,
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Timeout (>300.0s) from pytest-timeout" in proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--timeout=0",
                           f"{LAYOUTS['old'][1]}/demo/demo.py::test_demo"], cwd=home, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "input prompt : ['DECOY old demo prompt 1" in proc.stdout + proc.stderr


def test_demo_that_renders_other_prompts_keeps_nothing(tmp_path, monkeypatch):
    home = make_tree(tmp_path, "new")
    env, _ = fake_env(tmp_path, home)
    in_process_demo(monkeypatch, env)
    demo = home / LAYOUTS["new"][1] / "demo" / "demo.py"  # a demo that reads its own file, whatever input_path says
    decoys = home / LAYOUTS["new"][1] / "demo" / "input_data.json"
    demo.write_text(demo.read_text().replace("inputs = load_inputs(input_path)", f"inputs = load_inputs({str(decoys)!r})"))
    board = write_storyboard(tmp_path / "b.json", PROMPTS)
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo")
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert proc.returncode != 0 and "did not render framereel's prompts" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(errors) == 1
    assert frames_bytes(tmp_path / "o") == {}


# ------------------------------------------------------------------ tt: in-process trace with the tree's numbers


def test_in_process_trace_compiled_once_per_run_and_images_reproducible(tmp_path, tiny_sd14, tree, monkeypatch,
                                                                         one_thread):
    home, env, log = tree
    in_process(monkeypatch, env)  # with one torch thread, as the worker processes below
    monkeypatch.delenv("TT_MM_THROTTLE_PERF")  # framereel sets it for a Wormhole chip
    board = write_storyboard(tmp_path / "b.json", PROMPTS + [{"prompt": "a lighthouse, shot 0", "morph": 1}, {"prompt": "end"}])
    args = ["frames", board, "--backend", "tt", "--model", tiny_sd14, "--scheduler", "pndm", "--steps", "4", "--quiet"]
    cli(*args, "-o", tmp_path / "a", check=True)
    calls = lines(log)
    device, board_type, l1, trace, dispatch, visible, throttle = opened(log)[0]
    assert (device, l1, trace) == ("0", "20928", "789835776")  # common.py's Wormhole numbers, via demo.py
    assert dispatch == "DispatchCoreConfig(type=WORKER,axis=default)"  # from tests/scripts/common.py's helper
    assert (visible, throttle) == ("visible=0", "throttle=5")
    assert "program_cache 0" in calls
    assert [c.split()[0] for c in calls].count("capture") == 1
    assert [c.split()[0] for c in calls].count("execute") == 6  # 5 storyboard frames + 1 in-between
    assert calls[-2].startswith("release") and calls[-1] == "close 0"
    a = frames_bytes(tmp_path / "a")
    assert len(a) == 6 and len(set(a.values())) == 6  # per-frame seeds; the morph in-between differs from its ends
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    notes = " ".join(run["notes"])
    assert run["backend"] == "tt" and "789835776" in notes and "common.py" in notes
    # a rerun renders nothing and never opens the chip
    log.unlink()
    cli(*args, "-o", tmp_path / "a", check=True)
    assert lines(log) == []
    # an N300 (in a framereel process of its own): --devices all runs one process per chip, each restricted to the
    # board, the remote chip opened as device 1 of it, each worker with a kernel cache of its own
    run_cli(*args, "-o", tmp_path / "b", "--devices", "all", env={**env, "FAKE_TT_BOARDS": "n300 L,n300 R"}, check=True)
    assert frames_bytes(tmp_path / "b") == a
    assert sorted((o[0], o[1], o[5]) for o in opened(log)) == [("0", "n300_L", "visible=0"), ("1", "n300_R", "visible=0")]
    envs = sorted(line.split()[1:] for line in lines(log) if line.startswith("env "))
    assert envs == [[str(n), "tt_visible=0", f"cache={home / 'built' / f'tt{n}'}"] for n in range(2)]
    assert lines(log).count("close 0") == 1 and lines(log).count("close 1") == 1  # each worker closes its chip


@pytest.mark.parametrize("layout, boards, expected", [
    ("old", "n150 L", ["90112", "789835776", "DispatchCoreConfig(type=WORKER,axis=ROW)", "throttle=5"]),
    ("new", "p150a", ["21760", "920000000", "DispatchCoreConfig(type=WORKER,axis=default)", "throttle=None"]),
])
def test_the_chip_opens_with_the_trees_numbers_for_its_architecture(tmp_path, tiny_sd14, monkeypatch, layout, boards,
                                                                   expected):
    home = make_tree(tmp_path, layout)
    env, log = fake_env(tmp_path, home, boards)
    in_process(monkeypatch, env)
    monkeypatch.delenv("TT_MM_THROTTLE_PERF")  # framereel sets it for a Wormhole chip only
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_sd14, "--scheduler", "pndm",
        "--steps", "4", "--quiet", check=True)
    (device, _, l1, trace, dispatch, _, throttle), = opened(log)
    assert [l1, trace, dispatch, throttle] == expected


def test_device_numbers_come_from_the_tree_else_a_stated_fallback(tmp_path):
    from framereel.backends.tt_tree import device_numbers, find_sd_demo

    new, old = make_tree(tmp_path, "new"), make_tree(tmp_path, "old")
    for home, arch, expected in [(new, "wormhole_b0", (20928, 789835776)), (new, "blackhole", (21760, 920000000)),
                                 (old, "wormhole_b0", (90112, 789835776))]:
        numbers = device_numbers(find_sd_demo(home), arch)
        assert (numbers.params["l1_small_size"], numbers.params["trace_region_size"]) == expected
        assert not numbers.fallback
    common = new / LAYOUTS["new"][1] / "common.py"
    common.write_text(common.read_text().replace("= 920000000 if", "= region_for_board() if"))
    numbers = device_numbers(find_sd_demo(new), "blackhole")
    assert numbers.fallback and "fallback for blackhole" in numbers.source


def test_dispatch_config_comes_from_the_trees_helper_even_one_that_reads_arch_name(tmp_path, monkeypatch):
    from framereel.backends.tt_tree import open_params

    home = make_tree(tmp_path, "new")
    env, _ = fake_env(tmp_path, home)
    in_process(monkeypatch, env)
    monkeypatch.syspath_prepend(str(home))
    monkeypatch.delenv("ARCH_NAME", raising=False)
    (home / "conftest.py").unlink()  # an older tree: the helper in tests/scripts/common.py reads ARCH_NAME
    helper = home / "tests" / "scripts" / "common.py"
    helper.write_text(helper.read_text().replace(
        "if ttnn.device.is_blackhole() and", 'if "blackhole" in os.getenv("ARCH_NAME") and'))
    params, how = open_params(home, {"l1_small_size": 1, "trace_region_size": 2}, "wormhole_b0")
    assert how == "tt-metal's get_updated_device_params (tests/scripts/common.py)"
    assert repr(params["dispatch_core_config"]) == "DispatchCoreConfig(type=WORKER,axis=default)"
    assert "ARCH_NAME" not in os.environ


def test_trace_that_does_not_fit_the_trace_region_fails_in_one_line(tmp_path, tiny_sd14, monkeypatch):
    home = make_tree(tmp_path, "new")
    common = home / LAYOUTS["new"][1] / "common.py"
    common.write_text(common.read_text().replace("else 789835776", "else 100000000"))
    env, log = fake_env(tmp_path, home)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_sd14,
               "--scheduler", "pndm", "--steps", "10")
    assert proc.returncode != 0 and "trace region" in proc.stderr and "trace_region_size=100000000" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert opened(log)[0][3] == "100000000" and lines(log)[-1] == "close 0"


@pytest.mark.parametrize("overrides, scheduler, message", [
    ({"steps": 4}, "dpm++", "PNDM scheduler only; pass --scheduler pndm"),
    ({"steps": 3}, "pndm", "takes 4 to 50 steps"),
    ({"steps": 51}, "pndm", "takes 4 to 50 steps"),
    ({"steps": 4, "width": 128}, "pndm", "renders 512x512 only"),
    ({"steps": 4, "init": "previous"}, "pndm", "can't render chain frames"),
])
def test_unsupported_settings_fail_before_the_chip_opens(tmp_path, tiny_sd14, tree, monkeypatch, overrides,
                                                         scheduler, message):
    from framereel import FramereelError, RenderSettings, load_storyboard, render

    home, env, log = tree
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", PROMPTS)
    settings = RenderSettings(model=str(tiny_sd14), backend="tt", scheduler=scheduler)
    with pytest.raises(FramereelError, match=message):
        render(load_storyboard(board, overrides=overrides), tmp_path / "o", settings)
    assert opened(log) == []


@pytest.mark.parametrize("layout", ["new", "old"])
def test_every_chip_is_used_unless_the_tree_refuses_remote_chips(tmp_path, monkeypatch, layout):
    from framereel import FramereelError
    from framereel.backends import expand_devices

    home = make_tree(tmp_path, layout)
    env, log = fake_env(tmp_path, home)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("TT_METAL_HOME", str(home))
    t3k = "n300 L,n300 L,n300 L,n300 L,n300 R,n300 R,n300 R,n300 R"
    expected = {"new": [("n150 L", 1), ("n300 L,n300 R", 2), (t3k, 8), ("p150a", 1), ("p300c,p300c", 2)],
                "old": [("n150 L", 1), ("n300 L,n300 R", 1), (t3k, 4), ("p150a", 1), ("p300c,p300c", 2)]}[layout]
    for boards, count in expected:
        monkeypatch.setenv("FAKE_TT_BOARDS", boards)
        assert list(expand_devices("all")) == [f"tt:{n}" for n in range(count)]
    monkeypatch.setenv("FAKE_TT_BOARDS", "n300 L,n300 R")
    if layout == "new":
        assert expand_devices("tt:0,tt:1") == ("tt:0", "tt:1")
        return
    with pytest.raises(FramereelError, match=r"tt:1 can't be opened: 1 of 2 chip\(s\).*n300 R.*non-mmio.*use tt:0"):
        expand_devices("tt:0,tt:1")
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", "--devices", "tt:1",
                   env={**env, "FAKE_TT_BOARDS": "n300 L,n300 R"})
    assert proc.returncode == 2 and "tt:1 can't be opened" in proc.stderr and "Traceback" not in proc.stderr


def test_the_non_mmio_refusal_is_in_the_older_root_conftest_not_in_ttnn(tmp_path, monkeypatch):
    """As in tt-metal: ttnn opens an N300's remote chip; an older root conftest's ``device`` fixture
    asserts ``device_id < GetNumPCIeDevices()``, which framereel reads before planning workers."""
    import importlib

    from framereel.backends.tt_tree import remote_chips_open

    monkeypatch.setattr(sys, "path", [str(FAKES), *sys.path])
    monkeypatch.setenv("FAKE_TT_BOARDS", "n300 L,n300 R")
    monkeypatch.delenv("TT_METAL_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("FAKE_TTNN_LOG", str(tmp_path / "log"))
    _forget_later.append(set(sys.modules))
    ttnn = importlib.import_module("ttnn")
    assert ttnn.open_device(device_id=1).id == 1
    assert ttnn.GetNumPCIeDevices() == 1 and ttnn.GetNumAvailableDevices() == 2
    assert remote_chips_open(make_tree(tmp_path, "new")) and not remote_chips_open(make_tree(tmp_path, "old"))
    assert "CreateDevice not supported for non-mmio device" in (FAKES / "tt_metal_old" / "conftest.py").read_text()


def test_a_tree_from_before_the_trace_is_refused_for_tt_and_named_by_doctor(tmp_path, tree):
    home, env, _ = tree
    helper = home / LAYOUTS["new"][1] / "sd_helper_funcs.py"
    helper.write_text(helper.read_text().replace("def compile_trace_sd(", "def _not_yet("))
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env=env)
    assert proc.returncode == 2 and "predates the traced SD demo" in proc.stderr and "--backend tt-demo" in proc.stderr
    report = json.loads(cli("doctor", "--json", env=env, check=True).stdout)
    assert report["--backend tt"]["ok"] is False and report["--backend tt-demo"]["ok"] is True


def test_device_in_bad_state_says_reset_and_reset_device_runs_tt_smi(tmp_path, tiny_sd14, tree, monkeypatch):
    home, env, log = tree
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    args = ["frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_sd14, "--scheduler", "pndm",
            "--steps", "4"]
    proc = cli(*args, env={"FAKE_TTNN_BAD_STATE": "1"})
    assert proc.returncode == 2 and "tt-smi -r" in proc.stderr and "--reset-device" in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    proc = cli(*args, "--reset-device", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert lines(log)[0] == "reset"


def test_environment_problems_are_one_line(tmp_path, tree):
    home, env, _ = tree
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    no_home = {k: v for k, v in env.items() if k != "TT_METAL_HOME"}
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env=no_home)
    assert proc.returncode == 2 and "TT_METAL_HOME is not set" in proc.stderr
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env={**env, "TT_METAL_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "is not a tt-metal tree" in proc.stderr
    assert "models/demos/vision/generative/stable_diffusion/wormhole" in proc.stderr
    proc = run_cli("make", board, "-o", tmp_path / "o", "--backend", "tt", env={**env, "PYTHONPATH": ""})
    assert proc.returncode == 2 and "ttnn is not importable" in proc.stderr and "python_env" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_device_is_closed_on_ctrl_c(tmp_path, tiny_sd14, tree, monkeypatch):
    home, env, log = tree
    in_process(monkeypatch, env)
    from framereel import RenderSettings, load_storyboard, render

    board = write_storyboard(tmp_path / "b.json", PROMPTS)

    def interrupt(event):
        if event.name == "frame_done":
            raise KeyboardInterrupt

    settings = RenderSettings(model=str(tiny_sd14), backend="tt", scheduler="pndm")
    with pytest.raises(KeyboardInterrupt):
        render(load_storyboard(board, overrides={"steps": 4}), tmp_path / "o", settings, on_event=interrupt)
    assert lines(log)[-1] == "close 0"


# ------------------------------------------------------------------ doctor


@pytest.mark.parametrize("layout", ["new", "old"])
def test_doctor_names_layout_commit_params_and_usable_chips(tmp_path, layout):
    home = make_tree(tmp_path, layout, commit="8d02aed977a7c81a1b172585e5e972883ddd8879")
    env, _ = fake_env(tmp_path, home, "n300 L,n300 R")
    report = json.loads(cli("doctor", "--json", env=env, check=True).stdout)
    assert report["SD 1.4 demo"]["detail"].startswith(LAYOUTS[layout][1])
    assert report["tt-metal commit"]["detail"] == "8d02aed977a7"
    params = report["device params wormhole_b0"]["detail"]
    assert params.startswith({"new": "l1_small_size=20928, trace_region_size=789835776",
                              "old": "l1_small_size=90112, trace_region_size=789835776"}[layout])
    usable = {"new": "tt:0, tt:1 ", "old": "tt:0 "}[layout]  # the older tree's root conftest refuses the R chip
    assert report["usable chips"]["detail"].startswith(usable)
    assert {"new": "2 of 2", "old": "1 of 2"}[layout] + " chip(s) usable" in report["tenstorrent boards"]["detail"]


def test_doctor_smoke_renders_through_both_backends_and_writes_a_report(tmp_path, tiny_sd14, tree, monkeypatch):
    home, env, log = tree
    in_process(monkeypatch, env)
    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # the demo's pytest process imports the fake ttnn
    out = tmp_path / "doc"
    proc = cli("doctor", "-o", out, "--smoke", "--smoke-demo", "--model", tiny_sd14)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "tt-smoke-report.json").read_text())
    tt, demo = report["tt"], report["tt-demo"]
    assert tt["ok"] and demo["ok"] and len(tt["frames"]) == 1 and len(demo["frames"]) == 1
    assert tt["decisions"]["dispatch"] == "tt-metal's get_updated_device_params (conftest.py)"
    assert "20928" in str(tt["decisions"]["open_device"]) and tt["decisions"]["program_cache"] == "enabled"
    assert tt["seconds"]["total"] > 0 and "frame" in tt["seconds"]
    assert demo["decisions"]["chip"].startswith("tt:0 (TT_VISIBLE_DEVICES=TT_METAL_VISIBLE_DEVICES=0, opened as device 0")
    assert "report: " in proc.stderr and "--backend tt: ok" in proc.stderr
    assert read_prompt(Image.open(demo["frames"][0]).convert("RGB")).startswith("a lighthouse")
    assert [o[2:4] for o in opened(log)] == [["20928", "789835776"]] * 2


def test_doctor_on_this_machine(tmp_path):
    proc = cli("doctor", "--json", env={**os.environ, "HF_TOKEN": "hf_not_a_real_secret_42"})
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["framereel"]["detail"]
    assert report["ffmpeg"]["ok"] is True and report["libx264"]["ok"] is True
    assert "hf_not_a_real_secret_42" not in proc.stdout and "token set" in report["hugging face login"]["detail"]
    assert report["tenstorrent boards"]["detail"] == "none found"
    assert "backend diffusers on cpu" in report["auto picks"]["detail"]


# ------------------------------------------------------------------ tt: SDXL data-parallel on a mesh of every chip

T3K = ",".join(["n300 L"] * 4 + ["n300 R"] * 4)


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory) -> Path:
    from tiny_families import build_family

    return build_family("sdxl", tmp_path_factory.mktemp("models") / "sdxl")


def mesh_calls(log: Path) -> list[list[str]]:
    """The prompts each ``generate_images`` call of the fake SDXL pipeline drew, chip by chip."""
    return [line.split("prompts=", 1)[1].split("|") for line in lines(log) if line.startswith("generate_images ")]


@pytest.mark.parametrize("layout", ["new", "old"])
def test_sdxl_on_a_t3k_renders_12_prompts_in_two_mesh_calls_of_8(tmp_path, tiny_sdxl, monkeypatch, layout):
    home = make_tree(tmp_path, layout)
    env, log = fake_env(tmp_path, home, T3K)
    in_process(monkeypatch, env)
    prompts = [{"prompt": f"shot {i}: a lighthouse at dusk"} for i in range(12)]
    board = write_storyboard(tmp_path / "b.json", prompts)
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_sdxl, "--quiet", check=True)
    assert frame_prompts(tmp_path / "o", 12) == [p["prompt"] for p in prompts]
    assert mesh_calls(log) == [[p["prompt"] for p in prompts[:8]], [p["prompt"] for p in prompts[8:]] + [""] * 4]
    (mesh,) = [line.split() for line in lines(log) if line.startswith("open_mesh ")]
    assert mesh[1] == "1x8" and mesh[3:5] == {"new": ["30000", "34000000"], "old": ["47000", "34000000"]}[layout]
    assert lines(log)[-1] == "close_mesh 1x8"
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    notes = " ".join(run["notes"])
    assert run["device"] == "tt:mesh 1x8" and "prompts_per_call: 8" in notes
    assert {"new": "sdxl_api: current", "old": "sdxl_api: earlier"}[layout] in notes
    assert len(set(frames_bytes(tmp_path / "o").values())) == 12 and proc.returncode == 0


def test_sdxl_frames_carry_their_own_seeds_and_rerender_to_the_same_bytes(tmp_path, tiny_sdxl, monkeypatch):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, "n300 L,n300 R")
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "the same prompt"}] * 3)
    cli("frames", board, "-o", tmp_path / "a", "--backend", "tt", "--model", tiny_sdxl, "--quiet", check=True)
    cli("frames", board, "-o", tmp_path / "b", "--backend", "tt", "--model", tiny_sdxl, "--quiet", check=True)
    a = frames_bytes(tmp_path / "a")
    assert a == frames_bytes(tmp_path / "b") and len(set(a.values())) == 3  # seeds differ, prompts don't


def test_sdxl_with_few_frames_on_a_galaxy_uses_cfg_parallel(tmp_path, tiny_sdxl, monkeypatch):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, ",".join(["tt-galaxy-wh L"] * 32))
    in_process(monkeypatch, env)
    prompts = [{"prompt": f"shot {i}"} for i in range(12)]
    board = write_storyboard(tmp_path / "b.json", prompts)
    cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_sdxl, "--quiet", check=True)
    assert frame_prompts(tmp_path / "o", 12) == [p["prompt"] for p in prompts]
    assert mesh_calls(log) == [[p["prompt"] for p in prompts] + [""] * 4]  # 16 mesh columns, one call
    assert "fabric=FABRIC_1D" in next(line for line in lines(log) if line.startswith("open_mesh 1x32"))
    assert "reshape 2x16" in lines(log) and "cfg_parallel=True" in " ".join(lines(log))


@pytest.mark.parametrize("model, boards, frame, message", [
    ("tiny_sdxl", T3K, {"width": 512, "height": 512}, "tt-metal's SDXL pipeline renders 1024x1024 only; got 512x512"),
    ("tiny_sdxl", T3K, {"init": "previous"}, "can.t render chain frames"),
    ("stabilityai/stable-diffusion-3.5-large", "n150 L",
     {}, r"SD 3.5 Large \(TT-DiT\) \(stabilityai/stable-diffusion-3.5-large\) needs a 2x4 or 4x8 mesh on wormhole_b0; "
         r"attached: 1 chip\(s\) \(1× n150 L\)"),
    ("black-forest-labs/FLUX.1-schnell", "n150 L", {}, r"FLUX.1 \(TT-DiT\) \(black-forest-labs/FLUX.1-schnell\) needs "
     r"a 1x4 or 2x4 or 4x4 or 4x8 mesh on wormhole_b0; attached: 1 chip\(s\)"),
])
def test_what_a_model_or_mesh_cannot_do_is_refused_before_loading(tmp_path, tiny_sdxl, monkeypatch, model, boards,
                                                                  frame, message):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, boards)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a"}, {"prompt": "b", **frame}])
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt",
               "--model", tiny_sdxl if model == "tiny_sdxl" else model)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(errors) == 1 and re.search(message, errors[0]), proc.stderr
    assert lines(log) == []  # nothing opened


def test_an_sdxl_pipeline_of_unknown_shape_is_refused_naming_the_commit(tmp_path, tiny_sdxl, monkeypatch):
    home = make_tree(tmp_path, commit="8d02aed977a7c81a1b172585e5e972883ddd8879")
    source = home / "models/experimental/stable_diffusion_xl_base/tt/tt_sdxl_pipeline.py"
    source.write_text(source.read_text().replace(
        "def encode_prompts(self, prompts, negative_prompts, prompt_2=None, negative_prompt_2=None):",
        "def encode_prompts(self, prompts):"))
    env, log = fake_env(tmp_path, home, T3K)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", PROMPTS)
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", tiny_sdxl)
    assert proc.returncode == 2 and "tt-metal commit 8d02aed977a7" in proc.stderr
    assert "encode_prompts(prompts)" in proc.stderr and lines(log) == []


# ------------------------------------------------------------------ fixes from reading the real source


def test_demo_of_a_non_square_size_names_its_files_height_by_width(tmp_path, monkeypatch):
    """run_demo_inference unpacks ``height, width = image_size`` and saves ``input_data_{i}_{height}x{width}``."""
    home = make_tree(tmp_path, "new")
    demo = home / LAYOUTS["new"][1] / "demo" / "demo.py"
    demo.write_text(demo.read_text().replace("((512, 512),)", "((256, 384),)"))
    env, _ = fake_env(tmp_path, home)
    in_process_demo(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:2])
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert frame_prompts(tmp_path / "o", 2) == [p["prompt"] for p in PROMPTS[:2]]
    assert Image.open(tmp_path / "o" / "frames" / "frame_000.png").size == (384, 256)  # width 384, height 256


def test_demo_gets_arch_name_for_a_tree_whose_device_helper_reads_it(tmp_path, monkeypatch):
    home = make_tree(tmp_path, "new")
    helper = home / "tests" / "scripts" / "common.py"
    helper.write_text(helper.read_text().replace(
        "if ttnn.device.is_blackhole() and", 'if "blackhole" in os.getenv("ARCH_NAME") and'))
    env, log = fake_env(tmp_path, home)
    in_process_demo(monkeypatch, env)
    monkeypatch.delenv("ARCH_NAME", raising=False)
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert frame_prompts(tmp_path / "o", 1) == [PROMPTS[0]["prompt"]]


def test_doctor_on_an_n300_names_both_chips_the_mesh_and_what_the_tree_runs_there(tmp_path):
    home = make_tree(tmp_path, "new")
    env, _ = fake_env(tmp_path, home, "n300 L,n300 R")
    report = json.loads(cli("doctor", "--json", env=env, check=True).stdout)
    assert report["usable chips"]["detail"].startswith("tt:0, tt:1 ")
    assert report["tenstorrent mesh"]["detail"] == "1x2 (2 chip(s): 1× n300 L, 1× n300 R)"
    assert report["tt-metal models"]["detail"] == ("Stable Diffusion 1.4, SDXL base 1.0, SD 3.5 Large (TT-DiT), "
                                                   "FLUX.1 (TT-DiT), Wan 2.2 T2V (TT-DiT)")
    assert report["runs here: SDXL base 1.0"]["ok"] is True
    assert report["runs here: Wan 2.2 T2V (TT-DiT)"]["ok"] is False  # it needs 2x4 or 4x8
    assert report["runs here: Wan 2.2 T2V (TT-DiT)"]["detail"].startswith("needs 2x4 or 4x8")
    assert report["SDXL pipeline API"]["detail"].startswith("current: encode_prompts(prompts, negative_prompts, prompt_2")
    old = make_tree(tmp_path, "old")
    report = json.loads(cli("doctor", "--json", env={**env, "TT_METAL_HOME": str(old)}, check=True).stdout)
    assert report["SDXL pipeline API"]["detail"] == "earlier: encode_prompts(prompts, negative_prompts)"


@pytest.mark.parametrize("family", ["tiny sd1 at 64x64", "sd-turbo"])
def test_tt_refuses_a_model_its_sd14_pipeline_is_not_built_for_before_the_chip_opens(tmp_path, tiny_model, tree,
                                                                                    monkeypatch, family):
    if family.startswith("tiny"):
        model, message = tiny_model, "built for 512x512 models (its UNet at 64x64 latents); this one is 64x64"
    else:
        from tiny_families import build_family

        model = build_family(family, tmp_path / family)
        message = "tt-metal has no SD-Turbo pipeline"
    home, env, log = tree
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", PROMPTS[:1])
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", model, "--scheduler", "pndm")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert lines(log) == []


# ------------------------------------------------------------------ tt: Wan 2.2 clips through TT-DiT

WAN = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"


@pytest.mark.parametrize("boards, mesh, fabric, config", [
    (T3K, "2x4", "FABRIC_1D", "links=1 topology=Linear fsdp=True dynamic_load=True"),
    (",".join(["tt-galaxy-wh L"] * 32), "4x8", "FABRIC_1D_RING", "links=4 topology=Ring fsdp=True dynamic_load=False"),
])
def test_wan_clips_render_through_tt_dit_on_a_loudbox_and_a_galaxy(tmp_path, monkeypatch, boards, mesh, fabric, config):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, boards)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a lighthouse in a storm", "clip": 5},
                                                   {"prompt": "the sea at night", "clip": 9}])
    cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", WAN, "--steps", "4", "--quiet", check=True)
    assert frame_prompts(tmp_path / "o", 14) == ["a lighthouse in a storm"] * 5 + ["the sea at night"] * 9
    (opened_mesh,) = [line for line in lines(log) if line.startswith("open_mesh ")]
    assert opened_mesh.split()[1] == mesh and f"fabric={fabric}" in opened_mesh
    assert [line.split(" ", 2)[2] for line in lines(log) if line.startswith("wan_pipeline ")] == [
        f"checkpoint={WAN} {config}"]
    assert [line.split()[1] for line in lines(log) if line.startswith("wan_call ")] == ["frames=5", "frames=9"]
    assert lines(log)[-1] == f"close_mesh {mesh}"


@pytest.mark.parametrize("boards, entries, message", [
    ("n300 L,n300 R", [{"prompt": "a", "clip": 5}],
     r"Wan 2.2 T2V \(TT-DiT\) \(Wan-AI/Wan2.2-T2V-A14B-Diffusers\) needs a 2x4 or 4x8 mesh on wormhole_b0; "
     r"attached: 2 chip\(s\) \(1× n300 L, 1× n300 R\)"),
    (T3K, [{"prompt": "a", "clip": 8}], r"renders 4k\+1 frames .* got 8, use 9"),
    (T3K, [{"prompt": "a still"}, {"prompt": "a", "clip": 5}], r"frame 0: the tt backend can't render key frames"),
])
def test_what_wan_on_tenstorrent_cannot_do_is_refused_before_the_mesh_opens(tmp_path, monkeypatch, boards, entries,
                                                                             message):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, boards)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", entries)
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", WAN)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(errors) == 1 and re.search(message, errors[0]), proc.stderr
    assert lines(log) == []


def test_sd35_stills_render_through_tt_dit_on_a_loudbox_each_with_its_seed(tmp_path, monkeypatch):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, T3K)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", [{"prompt": f"shot {i}"} for i in range(3)])
    cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", "stabilityai/stable-diffusion-3.5-large",
        "--steps", "4", "--quiet", check=True)
    assert frame_prompts(tmp_path / "o", 3) == ["shot 0", "shot 1", "shot 2"]
    assert [line.split()[1:3] for line in lines(log) if line.startswith(("open_mesh", "sd35_pipeline"))] == [
        ["2x4", T3K.replace(" ", "_")], ["2x4", "links=1"]]
    seeds = [line.split()[2] for line in lines(log) if line.startswith("sd35_call ")]
    assert seeds == [f"seed={Image.open(tmp_path / 'o' / 'frames' / f'frame_{i:03d}.png').info['seed']}" for i in range(3)]
    assert len(set(seeds)) == 3
    sd35 = tmp_path / "weights" / "my-sd35"  # an SD 3.5 folder at a path the tree's assert rejects
    (sd35 / "transformer").mkdir(parents=True)
    (sd35 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    (sd35 / "transformer" / "config.json").write_text(json.dumps({"qk_norm": "rms_norm"}))
    proc = cli("frames", board, "-o", tmp_path / "p", "--backend", "tt", "--model", sd35, env=None)
    assert proc.returncode == 2 and "asserts that the checkpoint path contains" in proc.stderr


def test_doctor_smoke_renders_sdxl_on_the_mesh_with_its_own_scheduler(tmp_path, tiny_sdxl, monkeypatch):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, T3K)
    in_process(monkeypatch, env)
    proc = cli("doctor", "-o", tmp_path / "doc", "--smoke", "--model", tiny_sdxl)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "doc" / "tt-smoke-report.json").read_text())["tt"]
    assert report["ok"] and len(report["frames"]) == 1, report
    # one frame doesn't fill a prompt per chip: cfg-parallel, a 2x4 mesh of 4 prompts per call
    assert report["decisions"]["mesh"].startswith("2x4") and report["decisions"]["sdxl_api"].startswith("current")
    assert mesh_calls(log) == [["a lighthouse on a cliff at dusk, oil painting"] + [""] * 3]


@pytest.mark.parametrize("boards, mesh", [("n300 L,n300 L,n300 R,n300 R", "1x4"), ("p300c,p300c", "1x2")])
def test_flux_stills_render_through_tt_dit_on_the_meshes_its_pipeline_configures(tmp_path, monkeypatch, boards, mesh):
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, boards)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "shot 0"}, {"prompt": "shot 1", "guidance": 2.5}])
    cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", "black-forest-labs/FLUX.1-schnell",
        "--steps", "4", "--width", "512", "--height", "384", "--quiet", check=True)
    assert frame_prompts(tmp_path / "o", 2) == ["shot 0", "shot 1"]
    assert Image.open(tmp_path / "o" / "frames" / "frame_001.png").size == (512, 384)
    calls = [line.split()[1:4] for line in lines(log) if line.startswith("flux_call ")]
    assert calls == [["512x384", "steps=4", "guidance=3.5"], ["512x384", "steps=4", "guidance=2.5"]]
    assert next(line for line in lines(log) if line.startswith("flux_pipeline ")).split()[1] == mesh
