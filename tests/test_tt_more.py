"""More of the Tenstorrent backends against the fakes in ``tests/fake_tt`` (see ``test_tt.py``): Wan 2.2
image-to-video through TT-DiT, SDXL chains and morphs, one chip of a P300 board."""

import json
import re
import shutil

import pytest
from conftest import cli, run_cli, write_storyboard
from PIL import Image, ImageOps
from test_tt import (
    FAKES,
    T3K,
    _forget_tree_modules,  # noqa: F401  (test_tt's autouse fixture, here too)
    fake_env,
    frame_prompts,
    in_process,
    lines,
    make_tree,
    opened,
)

WAN_T2V = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
WAN_I2V = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"


def i2v_tree(tmp_path):
    """The fake current tree with tt-metal's Wan 2.2 image-to-video pipeline beside the text-to-video one."""
    home = make_tree(tmp_path)
    shutil.copy(FAKES / "tt_dit_i2v" / "pipeline_wan_i2v.py",
                home / "models" / "experimental" / "tt_dit" / "pipelines" / "wan" / "pipeline_wan_i2v.py")
    return home


def key_image(path):
    """A 1000x600 key frame (another size than the clip's: framereel fits it) with a pattern to find again."""
    image = Image.new("RGB", (1000, 600))
    image.putdata([(x % 256, y % 256, (x * y) % 256) for y in range(600) for x in range(1000)])
    image.save(path)
    return path


def test_a_wan_clip_with_a_first_frame_animates_it_through_tt_dits_i2v_pipeline(tmp_path, monkeypatch):
    env, log = fake_env(tmp_path, i2v_tree(tmp_path), T3K)
    in_process(monkeypatch, env)
    key_image(tmp_path / "key.png")
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "the lighthouse wakes", "clip": 5,
                                                    "first_frame": "key.png"}])
    cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", WAN_I2V, "--steps", "4", "--quiet",
        check=True)
    frames = tmp_path / "o" / "frames"
    fitted = ImageOps.fit(Image.open(tmp_path / "key.png"), (832, 480), Image.Resampling.LANCZOS)
    assert Image.open(frames / "frame_000.png").convert("RGB").tobytes() == fitted.tobytes()  # the clip starts there
    assert frame_prompts(tmp_path / "o", 5)[1:] == ["the lighthouse wakes"] * 4
    log_lines = lines(log)
    assert [line.split(" ", 2)[2].split()[0] for line in log_lines if line.startswith("wan_pipeline ")] == [
        f"checkpoint={WAN_I2V}"]
    assert [line for line in log_lines if line.startswith("wan_i2v_images ")] == ["wan_i2v_images frame_pos=0:832x480"]
    assert [line.split()[1] for line in log_lines if line.startswith("wan_call ")] == ["frames=5"]


@pytest.mark.parametrize("model, entry, message", [
    (WAN_T2V, {"first_frame": "key.png"}, r"Wan 2.2 T2V renders from a prompt only; for a clip with \"first_frame\" "
                                          r"use --model Wan-AI/Wan2.2-I2V-A14B-Diffusers"),
    (WAN_I2V, {}, r"Wan 2.2 I2V animates from an image: give the clip a \"first_frame\""),
    (WAN_I2V, {"first_frame": "key.png", "last_frame": "key2.png"}, r"take no \"last_frame\""),
])
def test_what_wan_i2v_on_tenstorrent_cannot_do_is_refused_before_the_mesh_opens(tmp_path, monkeypatch, model, entry,
                                                                                message):
    env, log = fake_env(tmp_path, i2v_tree(tmp_path), T3K)
    in_process(monkeypatch, env)
    key_image(tmp_path / "key.png")
    shutil.copy(tmp_path / "key.png", tmp_path / "key2.png")
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a", "clip": 5, **entry}])
    proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", model)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2 and len(errors) == 1 and re.search(message, errors[0]), proc.stderr
    assert lines(log) == []


# ------------------------------------------------------------------ tt: SDXL chains and morphs

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


@pytest.mark.parametrize("entries, message", [
    ([{"prompt": "a"}, {"prompt": "b", "init": "previous"}],
     r"frame 1: --backend tt can't render chain frames with SDXL: tt-metal's SDXL img2img \(TtSDXLImg2ImgPipeline\) "
     r"is run by its demo with the refiner's weights .* use --backend diffusers"),
    ([{"prompt": "a", "morph": 2}, {"prompt": "b"}],
     r"frame 1: --backend tt can't render morph frames with SDXL: a morph's in-between starts from its key frames' "
     r"blended latents, .*generate_input_tensors takes no latents"),
])
def test_sdxl_chains_and_morphs_on_tenstorrent_are_refused_naming_why(tmp_path, monkeypatch, entries, message):
    env, log = fake_env(tmp_path, make_tree(tmp_path), T3K)
    in_process(monkeypatch, env)
    board = write_storyboard(tmp_path / "b.json", entries)
    for extra in ((), ("--dry-run",)):
        proc = cli("frames", board, "-o", tmp_path / "o", "--backend", "tt", "--model", SDXL, *extra)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert proc.returncode == 2 and len(errors) == 1 and re.search(message, errors[0]), proc.stderr
    assert lines(log) == []


# ------------------------------------------------------------------ tt: one chip of a P300 board

def test_a_worker_on_one_chip_of_a_p300c_opens_it_with_the_mesh_graph_descriptor(tmp_path):
    """tt-metal refuses one visible P300 chip without a fabric mesh graph descriptor (its CUSTOM cluster
    type); tt-inference-server points TT_MESH_GRAPH_DESC_PATH at the tree's P150 descriptor, as framereel does."""
    home = make_tree(tmp_path)
    env, log = fake_env(tmp_path, home, "p300c,p300c")
    env.pop("TT_MESH_GRAPH_DESC_PATH", None)
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a lighthouse on a P300c"}])
    proc = run_cli("frames", board, "-o", tmp_path / "o", "--backend", "tt-demo", "--device", "tt:1", "--quiet",
                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert frame_prompts(tmp_path / "o", 1) == ["a lighthouse on a P300c"]
    assert "mesh_graph_desc p150_mesh_graph_descriptor.textproto" in lines(log)
    assert [o[5] for o in opened(log)] == ["visible=1"]


def test_doctor_smoke_renders_a_wan_i2v_clip_from_a_first_frame(tmp_path, monkeypatch):
    env, log = fake_env(tmp_path, i2v_tree(tmp_path), T3K)
    in_process(monkeypatch, env)
    cli("doctor", "-o", tmp_path / "doc", "--smoke", "--model", WAN_I2V, env=env, check=True)
    report = json.loads((tmp_path / "doc" / "tt-smoke-report.json").read_text())["tt"]
    assert report["ok"] and len(report["frames"]) == 5, report
    assert [line for line in lines(log) if line.startswith("wan_i2v_images ")] == ["wan_i2v_images frame_pos=0:832x480"]
