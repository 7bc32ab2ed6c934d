"""Deforum's 3D camera: "mode": "3D" motion moves each chained frame through its parent's depth map
(a tiny random Depth Anything here), and Deforum's own 3D settings files import and render."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image
from tiny_depth import build_tiny_depth

from framereel import load_storyboard
from framereel.camera3d import depth_to_z, warp_3d
from framereel.deforum import convert
from framereel.depth import estimate_depth
from framereel.gallery import gallery_data

FIXTURES = Path(__file__).parent / "fixtures" / "deforum"


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory) -> str:
    return str(build_tiny_depth(tmp_path_factory.mktemp("depth")))


def ramp(w: int = 64, h: int = 64) -> Image.Image:
    """A picture whose red channel rises 3 per pixel from left to right (where a pixel came from is readable)."""
    x = np.tile(np.arange(w) * 3 + 30, (h, 1)).astype(np.uint8)
    return Image.fromarray(np.stack([x, x, x], axis=-1))


def near_top_far_bottom(w: int = 64, h: int = 64) -> np.ndarray:
    """A model's inverse depth (larger = nearer): the top half near, the bottom half far."""
    depth = np.zeros((h, w), np.float32)
    depth[: h // 2] = 5.0
    return depth


def test_a_still_camera_is_the_identity_with_or_without_depth():
    image = Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8))
    for depth in (None, np.random.default_rng(1).random((40, 48)).astype(np.float32)):
        assert np.array_equal(np.asarray(warp_3d(image, depth)), np.asarray(image))


def test_deforums_depth_runs_from_1_near_to_2_far_and_a_flat_map_is_flat():
    z = depth_to_z(near_top_far_bottom(), (64, 64))
    assert z[0, 0] == pytest.approx(1.0) and z[-1, 0] == pytest.approx(1.5)  # equalised: half the pixels each
    assert (depth_to_z(np.full((4, 4), 3.0), (4, 4)) == 1).all() and (depth_to_z(None, (4, 4)) == 1).all()


def test_under_a_sideways_move_the_near_half_moves_more_than_the_far_half():
    image = ramp()
    moved = np.asarray(warp_3d(image, near_top_far_bottom(), translation_x=30), dtype=float)[..., 0]
    shift = (moved - np.asarray(image, dtype=float)[..., 0]) / 3  # pixels, from the ramp
    near, far = np.median(shift[8:24, 16:48]), np.median(shift[40:56, 16:48])
    assert abs(near) > 1.4 * abs(far) > 0 and np.sign(near) == np.sign(far)
    # without depth warping both halves move alike
    flat = (np.asarray(warp_3d(image, None, translation_x=30), dtype=float)[..., 0] - np.asarray(image)[..., 0]) / 3
    assert np.median(flat[8:24, 16:48]) == pytest.approx(np.median(flat[40:56, 16:48]), abs=0.01)


def test_moving_forward_pushes_in_and_the_borders_follow_padding_mode():
    image = ramp()
    forward = np.asarray(warp_3d(image, None, translation_z=40), dtype=float)[..., 0]
    # the centre stays, the sides spread outward (a zoom in), as translation_z does in Deforum
    assert forward[32, 2] > np.asarray(image)[32, 2, 0] and forward[32, 61] < np.asarray(image)[32, 61, 0]
    back = {mode: np.asarray(warp_3d(image, None, translation_z=-80, padding_mode=mode)) for mode in ("border", "zeros")}
    assert back["zeros"][0, 0].sum() == 0 and back["border"][0, 0].sum() > 0


def pytorch3d_offsets(points: np.ndarray, rotation: np.ndarray, shift: np.ndarray, fov: float, aspect: float,
                      near: float, far: float) -> np.ndarray:
    """Deforum's offsets the long way, as its py3d_tools (pytorch3d's cameras) compute them: row vectors
    through world-to-view [[R, 0], [T, 1]] and FoVPerspectiveCameras' K (transposed), divided by w."""
    tan_half = np.tan(np.radians(fov) / 2)
    k = np.zeros((4, 4))
    k[0, 0], k[1, 1] = 1 / (tan_half * aspect), 1 / tan_half
    k[2, 2], k[2, 3], k[3, 2] = far / (far - near), -(far * near) / (far - near), 1.0

    def project(world_to_view):
        out = np.c_[points, np.ones(len(points))] @ world_to_view @ k.T
        return out[:, :2] / out[:, 3:]

    moved = np.eye(4)
    moved[:3, :3], moved[3, :3] = rotation, shift
    return project(moved) - project(np.eye(4))


def test_the_camera_matches_pytorch3ds_projection_at_any_near_and_far_plane():
    import math

    import torch

    from framereel.camera3d import _project, rotation_xyz

    rng = np.random.default_rng(3)
    points = np.c_[rng.uniform(-1, 1, (50, 2)), rng.uniform(1, 2, 50)]
    angles = (4.0, -7.0, 10.0)
    rotation = rotation_xyz(*(math.radians(a) for a in angles)).double().numpy()
    # pytorch3d's euler_angles_to_matrix(..., "XYZ") is Rx @ Ry @ Rz
    rx, ry, rz = (math.radians(a) for a in angles)
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    expected = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) \
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    assert np.allclose(rotation, expected, atol=1e-6)
    shift = np.array([-5.0, -3.0, -20.0]) / 200  # translation_x 5, y -3, z 20 in Deforum's units
    t = torch.from_numpy(points).float()
    ours = (_project(t @ torch.from_numpy(rotation).float() + torch.from_numpy(shift).float(), 70, 1.2)
            - _project(t, 70, 1.2)).numpy()
    for near, far in ((200, 10000), (0.1, 5)):
        assert np.allclose(ours, pytorch3d_offsets(points, rotation, shift, 70, 1.2, near, far), atol=1e-5)


def storyboard(tmp_path: Path, **motion) -> Path:
    path = tmp_path / "board.json"
    path.write_text(json.dumps({
        "defaults": {"width": 64, "height": 64, "steps": 4, "init": "previous", "strength": 0.5,
                     "motion": {"mode": "3D", "translation_z": "0:(10)", "rotation_3d_y": "0:(2)", **motion}},
        "frames": [{"prompt": "a lighthouse on a cliff"}] * 3}))
    return path


def test_3d_storyboards_render_through_the_depth_model_and_resume(tmp_path, tiny_depth):
    board = storyboard(tmp_path)
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "-q")
    assert proc.returncode == 2 and "--depth-model" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--depth-model", tiny_depth, "-q", check=True)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    frames = run["frames"] if isinstance(run["frames"], list) else list(run["frames"].values())
    motion = dict(frames[1]["params"]["motion"])
    assert motion["mode"] == "3D" and motion["translation_z"] == 10 and motion["depth_warping"] is True
    assert frames[1]["params"]["depth_model"] == str(Path(tiny_depth).resolve())
    # the gallery's depth layer: each moved picture's depth map, beside the picture it came from
    shown = {f["index"]: f["depth"] for f in gallery_data(tmp_path / "out")["frames"]}
    assert shown[0] == {"file": "depth/frame_000.png", "v": shown[0]["v"]} and shown[1] and shown[2] is None
    assert Image.open(tmp_path / "out" / "depth" / "frame_000.png").size == (64, 64)
    # a rerun finds every frame finished; removing the last renders only it, to the same pixels
    last = tmp_path / "out" / "frames" / "frame_002.png"
    before = np.asarray(Image.open(last))
    last.unlink()
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--depth-model", tiny_depth, "--json", check=True)
    done = [json.loads(line) for line in proc.stdout.splitlines() if '"frame_done"' in line]
    assert [e["index"] for e in done] == [2] and np.array_equal(np.asarray(Image.open(last)), before)


def test_the_storyboard_may_name_its_depth_model_relative_to_itself(tmp_path, tiny_depth):
    board = json.loads(storyboard(tmp_path).read_text())
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "depth").symlink_to(tiny_depth)
    path = tmp_path / "with_depth.json"
    path.write_text(json.dumps({**board, "depth_model": "models/depth"}))
    assert load_storyboard(path).depth_model == str(Path(tiny_depth).resolve())
    proc = cli("make", path, "-o", tmp_path / "out", "--model", "demo", "--dry-run", check=True)
    assert "error" not in proc.stderr


def test_3d_motion_keys_are_checked_in_one_line(tmp_path):
    from framereel import FramereelError

    for motion, message in [({"zoom": 1.1}, 'motion "zoom" is a 2D key'), ({"fov": 200}, "outside 1 to 179"),
                            ({"padding_mode": "mirror"}, 'motion "padding_mode" must be one of border')]:
        with pytest.raises(FramereelError, match=message):
            load_storyboard(storyboard(tmp_path, **motion))
    path = tmp_path / "flat.json"
    path.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b", "init": "previous", "motion": {"translation_z": 5}}]))
    with pytest.raises(FramereelError, match='add "mode": "3D"'):
        load_storyboard(path)


def deforum_default_settings(**changes) -> dict:
    """sd-webui-deforum's own scripts/default_settings.txt (3D mode), shrunk to a few tiny frames."""
    settings = json.loads((FIXTURES / "default_settings.txt").read_text())
    settings.update({"W": 64, "H": 64, "max_frames": 4, "steps": 4, "seed": 5, **changes})
    return settings


def test_deforums_own_default_settings_import_as_3d_and_render_moving_through_depth(tmp_path, tiny_depth):
    settings = tmp_path / "default_settings.txt"
    # its cadence 2: frames 0-1 are the first block, 2-3 blend toward frame 2's diffused image, frame 4 is never written
    settings.write_text(json.dumps(deforum_default_settings(max_frames=5, translation_x="0:(40)")))
    imported = convert(json.loads(settings.read_text()), settings.name)
    motion = imported.storyboard["defaults"]["motion"]
    assert motion == {"mode": "3D", "translation_x": 40.0, "translation_y": 0.0, "translation_z": 1.75,
                      "rotation_3d_x": 0.0, "rotation_3d_y": 0.0, "rotation_3d_z": 0.0, "fov": 70.0, "aspect_ratio": 1.0,
                      "padding_mode": "border", "sampling_mode": "bicubic", "depth_warping": True}
    assert not any("rendered as 2D" in n or "3D keys not carried" in n for n in imported.notes)
    out = tmp_path / "out"
    cli("make", settings, "-o", out, "--model", "demo", "--depth-model", tiny_depth, "-q", check=True)
    assert len(list((out / "frames").glob("frame_*.png"))) == 4 and (out / "video.mp4").exists()
    # frame 1 (the first block's in-between) is frame 0 seen from the moved camera, through frame 0's depth
    first, second = (Image.open(out / "frames" / f"frame_{i:03d}.png").convert("RGB") for i in (0, 1))
    camera = {k: v for k, v in motion.items() if k not in ("mode", "depth_warping")}
    through_depth = warp_3d(first, estimate_depth(first, tiny_depth), **camera)
    assert np.array_equal(np.asarray(second), np.asarray(through_depth))
    assert not np.array_equal(np.asarray(second), np.asarray(warp_3d(first, None, **camera)))


def test_a_notebook_3d_settings_file_with_cond_prompts_renders(tmp_path, tiny_depth):
    settings = {
        "W": 64, "H": 64, "seed": 3, "sampler": "euler_ancestral", "steps": 4, "scale": 7, "seed_behavior": "iter",
        "animation_mode": "3D", "max_frames": 3, "border": "replicate", "angle": "0:(0)", "zoom": "0:(1.04)",
        "translation_x": "0:(0)", "translation_y": "0:(0)", "translation_z": "0:(10)", "rotation_3d_x": "0:(0)",
        "rotation_3d_y": "0:(0)", "rotation_3d_z": "0:(0)", "strength_schedule": "0: (0.65)",
        "color_coherence": "Match Frame 0LAB", "diffusion_cadence": "1", "use_depth_warping": True, "midas_weight": 0.3,
        "near_plane": 200, "far_plane": 10000, "fov": 40, "padding_mode": "border", "sampling_mode": "bicubic",
        "cond_prompts": {"0": "a beautiful lake by Asher Brown Durand", "2": "a misty forest"},
        "uncond_prompts": {"0": "photo, realistic"},
    }
    path = tmp_path / "20230101_settings.txt"
    path.write_text(json.dumps(settings))
    imported = convert(settings, path.name)
    camera = imported.storyboard["defaults"]["motion"]
    assert camera["fov"] == 40 and camera["translation_z"] == 10 and camera["aspect_ratio"] == 1.0
    assert [f["prompt"] for f in imported.storyboard["frames"]] == ["a beautiful lake by Asher Brown Durand"] * 2 + \
        ["a misty forest"]
    assert {f.get("negative_prompt") for f in imported.storyboard["frames"]} == {"photo, realistic"}
    cli("make", path, "-o", tmp_path / "out", "--model", "demo", "--depth-model", tiny_depth, "-q", check=True)
    assert len(list((tmp_path / "out" / "frames").glob("frame_*.png"))) == 3


def test_importing_a_3d_settings_file_says_how_to_render_it_with_a_depth_model(tmp_path):
    settings = tmp_path / "3d_settings.txt"
    settings.write_text(json.dumps(deforum_default_settings()))
    proc = cli("import", "deforum", settings, "-o", tmp_path / "sb.json", check=True)
    hint = proc.stdout.strip().splitlines()[-1]
    assert hint.startswith(f"render it: framereel make {tmp_path / 'sb.json'} -o out --depth-model ")
    assert "3D as 2D" not in cli("import", "deforum", "--help").stdout
    flat = tmp_path / "flat_settings.txt"  # depth warping off: the camera moves a flat picture, no model needed
    flat.write_text(json.dumps(deforum_default_settings(use_depth_warping=False)))
    proc = cli("import", "deforum", flat, "-o", tmp_path / "flat.json", check=True)
    assert proc.stdout.strip().splitlines()[-1] == f"render it: framereel make {tmp_path / 'flat.json'} -o out"


def test_a_depth_model_that_is_not_one_is_refused_in_one_line_also_in_a_dry_run(tmp_path, tiny_depth):
    import shutil

    board = storyboard(tmp_path)
    controlnet = tmp_path / "controlnet"  # a diffusers ControlNet folder: config.json, but no depth model
    controlnet.mkdir()
    (controlnet / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "_diffusers_version": "0.42.1"}))
    picture = tmp_path / "depth.png"
    ramp().save(picture)
    weightless = tmp_path / "weightless"  # a depth model's config files without its weights
    shutil.copytree(tiny_depth, weightless, ignore=shutil.ignore_patterns("*.safetensors"))
    for spec, says in ((controlnet, "not a transformers depth-estimation model (ControlNetModel)"),
                       (picture, "is a file"), (weightless, "holds no weights")):
        for dry_run in ("--dry-run", "-q"):
            proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--depth-model", spec, dry_run)
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
            assert f"--depth-model {spec}: " in proc.stderr and says in proc.stderr, proc.stderr


def test_a_depth_model_replaced_in_its_folder_re_renders_the_frames_it_moved(tmp_path, tiny_depth):
    import shutil

    board, depth, out = storyboard(tmp_path), tmp_path / "depth", tmp_path / "out"
    shutil.copytree(tiny_depth, depth)
    args = ("make", board, "-o", out, "--model", "demo", "--depth-model", depth, "--json")
    cli(*args, check=True)
    build_tiny_depth(depth, seed=1)  # retrained (or another checkpoint) under the same name
    proc = cli(*args, check=True)
    assert [json.loads(line)["index"] for line in proc.stdout.splitlines() if '"frame_done"' in line] == [1, 2]


def test_doctor_names_the_depth_model_as_make_finds_it(tmp_path, tiny_depth):
    report = json.loads(cli("doctor", "--json", "--depth-model", tiny_depth, check=True).stdout)["depth model"]
    assert report["ok"] is True and report["detail"].startswith(f"DepthAnythingForDepthEstimation at {tiny_depth}")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    report = json.loads(cli("doctor", "--json", "--depth-model", tmp_path, check=True).stdout)["depth model"]
    assert report["ok"] is False and "not a transformers depth-estimation model (ControlNetModel)" in report["detail"]


def test_a_3d_chain_may_start_from_a_clips_last_frame(tmp_path, tiny_depth):
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"defaults": {"width": 64, "height": 64, "steps": 2}, "frames": [
        {"prompt": "waves", "clip": 2},
        {"prompt": "the camera flies on", "init": "previous", "strength": 0.5, "motion": {"mode": "3D", "translation_z": 10}}]}))
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--motion-adapter", "demo",
               "--depth-model", tiny_depth, "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    frames = run["frames"] if isinstance(run["frames"], list) else list(run["frames"].values())
    assert [f["kind"] for f in frames] == ["clip", "clip", "chain"] and frames[2]["derived_from"]["parent"] == 1


@pytest.mark.parametrize("before", [{"prompt": "a", "morph": 2}, {"prompt": "waves", "clip": 3}])
def test_a_cadence_chain_after_morph_in_betweens_or_a_clip_counts_its_blocks_from_its_own_start(tmp_path, before):
    chained = {"prompt": "b", "init": "previous", "strength": 0.5, "cadence": 2}
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"defaults": {"width": 64, "height": 64, "steps": 2}, "frames": [before] + [chained] * 3}))
    frames = load_storyboard(board).frames
    assert [(f.index, f.cadence) for f in frames if f.kind == "chain"] == [(3, None), (4, (4, 2)), (5, (4, 2))]
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--motion-adapter", "demo", "-q")
    assert proc.returncode == 0 and len(list((tmp_path / "out" / "frames").glob("*.png"))) == 6, proc.stderr


def test_the_gallery_drops_a_depth_layer_once_no_3d_camera_moves_through_it(tmp_path, tiny_depth):
    board, out = storyboard(tmp_path), tmp_path / "out"
    cli("make", board, "-o", out, "--model", "demo", "--depth-model", tiny_depth, "-q", check=True)
    assert gallery_data(out)["frames"][0]["depth"] is not None
    data = json.loads(board.read_text())
    data["defaults"]["motion"] = {"zoom": 1.05}  # the same chain, now moved in 2D: frame 0 itself stays as it was
    board.write_text(json.dumps(data))
    cli("make", board, "-o", out, "--model", "demo", "-q", check=True)
    assert [f["depth"] for f in gallery_data(out)["frames"]] == [None, None, None]
