"""Coming from Deforum: schedule expressions, `framereel import deforum`, settings files rendered directly.

The settings below are shaped like the two projects' own defaults: sd-webui-deforum's ``args.py``
(DeforumArgs / DeforumAnimArgs) and deforum-stable-diffusion's notebook (``DeforumArgs`` /
``DeforumAnimArgs``), shrunk to a few 64×64 frames so the tiny model renders them quickly.
"""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image

from framereel import FramereelError, RenderSettings, load_storyboard, render
from framereel.coherence import match_colours, warp
from framereel.deforum import convert, import_deforum
from framereel.schedule import ScheduleError, parse_schedule

DEFAULT_ZOOM = "0: (1.0025+0.002*sin(1.25*3.14*t/30))"  # both projects' default 2D zoom (webui)


def webui_settings(**changes):
    """sd-webui-deforum's defaults (scripts/deforum_helpers/args.py), as its settings file saves them."""
    s = {
        "W": 64, "H": 64, "seed": 7, "sampler": "Euler a", "steps": 3, "batch_name": "Deforum_{timestring}",
        "seed_behavior": "iter", "seed_iter_N": 1, "use_init": False, "strength": 0.8, "strength_0_no_init": True,
        "use_mask": False, "tiling": False, "restore_faces": False,
        "prompts": {"0": "a red circle --neg blurry, text", "3": "a blue square"},
        "positive_prompts": "", "negative_prompts": "",
        "animation_mode": "2D", "max_frames": 6, "border": "replicate",
        "angle": "0: (0)", "zoom": DEFAULT_ZOOM, "translation_x": "0: (0)", "translation_y": "0: (0)",
        "translation_z": "0: (1.75)", "transform_center_x": "0: (0.5)", "transform_center_y": "0: (0.5)",
        "rotation_3d_x": "0: (0)", "rotation_3d_y": "0: (0)", "rotation_3d_z": "0: (0)",
        "enable_perspective_flip": False, "perspective_flip_theta": "0: (0)", "perspective_flip_phi": "0: (0)",
        "perspective_flip_gamma": "0: (0)", "perspective_flip_fv": "0: (53)",
        "noise_schedule": "0: (0.065)", "strength_schedule": "0: (0.65)", "cfg_scale_schedule": "0: (7)",
        "enable_steps_scheduling": False, "steps_schedule": "0: (25)", "fov_schedule": "0: (70)",
        "aspect_ratio_schedule": "0: (1)", "near_schedule": "0: (200)", "far_schedule": "0: (10000)",
        "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
        "enable_subseed_scheduling": False, "enable_sampler_scheduling": False, "sampler_schedule": '0: ("Euler a")',
        "use_noise_mask": False, "enable_checkpoint_scheduling": False,
        "checkpoint_schedule": '0: ("model1.ckpt"), 100: ("model2.safetensors")',
        "enable_clipskip_scheduling": False, "enable_noise_multiplier_scheduling": True,
        "noise_multiplier_schedule": "0: (1.05)", "resume_from_timestring": False,
        "amount_schedule": "0: (0.1)", "kernel_schedule": "0: (5)", "sigma_schedule": "0: (1)", "threshold_schedule": "0: (0)",
        "color_coherence": "LAB", "color_force_grayscale": False, "legacy_colormatch": False,
        "diffusion_cadence": 2, "optical_flow_cadence": "None", "optical_flow_redo_generation": "None",
        "diffusion_redo": "0", "noise_type": "perlin", "use_depth_warping": True, "depth_algorithm": "Midas-3-Hybrid",
        "midas_weight": 0.2, "padding_mode": "border", "sampling_mode": "bicubic",
        "hybrid_composite": "None", "hybrid_motion": "None", "use_mask_video": False,
        "fps": 15, "add_soundtrack": "None", "frame_interpolation_engine": "None", "r_upscale_video": False,
        "sd_model_name": "v1-5-pruned-emaonly.safetensors",
    }
    s.update(changes)
    return s


def notebook_settings(**changes):
    """deforum-stable-diffusion's notebook defaults (Deforum_Stable_Diffusion.py) in 2D mode."""
    s = {
        "W": 64, "H": 64, "bit_depth_output": 8, "seed": 11, "sampler": "euler_ancestral", "steps": 3, "scale": 7,
        "ddim_eta": 0.0, "n_batch": 1, "n_samples": 1, "seed_behavior": "iter", "seed_iter_N": 1, "use_init": False,
        "strength": 0.65, "strength_0_no_init": True, "use_mask": False,
        "prompts": {"0": "a beautiful lake by Asher Brown Durand", "4": "a beautiful portrait of a woman --neg photo, realistic"},
        "animation_mode": "2D", "max_frames": 6, "border": "replicate", "angle": "0:(0)", "zoom": "0:(1.04)",
        "translation_x": "0:(10*sin(2*3.14*t/10))", "translation_y": "0:(0)", "translation_z": "0:(10)",
        "rotation_3d_x": "0:(0)", "rotation_3d_y": "0:(0)", "rotation_3d_z": "0:(0)", "flip_2d_perspective": False,
        "perspective_flip_theta": "0:(0)", "perspective_flip_phi": "0:(t%15)", "perspective_flip_gamma": "0:(0)",
        "perspective_flip_fv": "0:(53)", "noise_schedule": "0: (0.02)", "strength_schedule": "0: (0.65)",
        "contrast_schedule": "0: (1.0)", "kernel_schedule": "0: (5)", "sigma_schedule": "0: (1.0)",
        "amount_schedule": "0: (0.2)", "threshold_schedule": "0: (0.0)",
        "color_coherence": "Match Frame 0 LAB", "color_force_grayscale": False, "diffusion_cadence": "1",
        "use_depth_warping": True, "midas_weight": 0.3, "near_plane": 200, "far_plane": 10000, "fov": 40,
        "padding_mode": "border", "sampling_mode": "bicubic", "video_init_path": "/content/video_in.mp4",
        "hybrid_composite": False, "hybrid_motion": "None", "resume_from_timestring": False,
    }
    s.update(changes)
    return s


def default_zoom(t):
    return 1.0025 + 0.002 * math.sin(1.25 * 3.14 * t / 30)


# --- schedules ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, frames, expected", [
    (DEFAULT_ZOOM, 61, {0: 1.0025, 12: 1.0025 + 0.002 * math.sin(1.57), 24: 1.0025 + 0.002 * math.sin(3.14)}),
    # a number keyframe runs in a straight line to an expression keyframe's value there, which then holds per frame
    ("0:(0), 10:(t/2), 20:(1)", 30, {5: 2.5, 10: 5.0, 15: 7.5, 19: 9.5, 20: 1.0, 29: 1.0}),
    ("0:(t%3), 6:(2**3)", 8, {0: 0.0, 1: 1.0, 2: 2.0, 3: 0.0, 5: 2.0, 6: 8.0, 7: 8.0}),
    ("0:(abs(-t)*pi)", 3, {2: 2 * math.pi}),
    # frame indices as expressions; max_f is the last frame's index
    ('0:(0), "max_f-1":(10), max_f:(0)', 11, {9: 10.0, 4: 10 * 4 / 9, 10: 0.0}),
    ("0:(s/100)", 1, {0: 0.07}),  # s is the run seed (7 here)
    ("5:(1), 40:(9)", 10, {0: 1.0, 9: 1.0}),  # a keyframe past the end is ignored, as in Deforum
])
def test_expression_schedules_match_values_computed_by_hand(text, frames, expected):
    series = parse_schedule(text).series(frames, seed=7)
    assert len(series) == frames
    for t, value in expected.items():
        assert series[t] == pytest.approx(value, abs=1e-12), t


def test_seed_schedule_with_max_f_keys():
    series = parse_schedule(webui_settings()["seed_schedule"]).series(10, seed=123)
    # 0:(s), 1:(-1), max_f-2 = 7:(-1), max_f-1 = 8:(s); after the last keyframe it holds
    assert series == (123.0, -1, -1, -1, -1, -1, -1, -1, 123.0, 123.0)


@pytest.mark.parametrize("text, message", [
    ("0:(1.0025+0.002*sinn(t))", 'keyframe 0:(1.0025+0.002*sinn(t)): unknown function "sinn"'),
    ("0:(1), 10:(t*)", "keyframe 10:(t*): cannot read 't*' as an expression"),
    ("0:(1), 10:(frame/2)", 'keyframe 10:(frame/2): unknown name "frame" (names: t, max_f, s, pi)'),
    ('0:(1), "max_g-1":(2)', 'keyframe max_g-1:(2): unknown name "max_g"'),
    ("0:(__import__('os').system('x'))", "only arithmetic, comparisons and numexpr's functions are allowed"),
])
def test_a_bad_expression_is_one_line_naming_schedule_keyframe_and_problem(tmp_path, text, message):
    with pytest.raises(ScheduleError) as err:
        parse_schedule(text, name="zoom")
    assert str(err.value).startswith('"zoom" schedule: ') and message in str(err.value)
    # the same through the importer and the CLI: one line on stderr naming the file, exit 2
    path = tmp_path / "deforum_settings.txt"
    path.write_text(json.dumps(webui_settings(zoom=text)))
    with pytest.raises(FramereelError) as err:
        load_storyboard(path)
    assert str(err.value).startswith('deforum_settings.txt: "zoom" schedule: ') and "\n" not in str(err.value)


def test_expression_out_of_range_names_the_frame(tmp_path):
    board = tmp_path / "b.json"
    board.write_text(json.dumps({"defaults": {"init": "previous", "strength": "0:(t/4)"},
                                 "frames": [{"prompt": "a"}] * 7}))
    with pytest.raises(FramereelError, match=r'b.json: "strength" schedule: keyframe 0:\(t/4\): value 1.25 at frame 5 is outside 0 to 1'):
        load_storyboard(board)


# --- the 2D warp --------------------------------------------------------------------------------


def deforum_point(p, w, h, angle, zoom, tx, ty, cx=0.5, cy=0.5):
    """Where Deforum's anim_frame_warp_2d sends point p: cv2.getRotationMatrix2D(centre, angle, zoom)
    (α = zoom·cos, β = zoom·sin; [[α, β, (1-α)cx - β cy], [-β, α, β cx + (1-α) cy]]) after a shift by (tx, ty)."""
    a, b = zoom * math.cos(math.radians(angle)), zoom * math.sin(math.radians(angle))
    c = (w * cx, h * cy)
    x, y = p[0] + tx, p[1] + ty
    return a * x + b * y + (1 - a) * c[0] - b * c[1], -b * x + a * y + b * c[0] + (1 - a) * c[1]


@pytest.mark.parametrize("angle, zoom, tx, ty, cx, cy", [
    (30, 1.0, 0, 0, 0.5, 0.5), (0, 1.5, 10, 0, 0.5, 0.5), (90, 1.2, 8, -6, 0.5, 0.5), (-20, 0.8, 0, 5, 0.25, 0.75),
])
def test_warp_moves_points_where_deforum_does(angle, zoom, tx, ty, cx, cy):
    w = h = 120
    for p in [(70, 40), (30, 85)]:
        im = Image.new("RGB", (w, h))
        im.paste((255, 255, 255), (p[0] - 2, p[1] - 2, p[0] + 3, p[1] + 3))
        out = np.asarray(warp(im, zoom=zoom, angle=angle, dx=tx, dy=ty, cx=cx, cy=cy, border="replicate"))[..., 0].astype(float)
        ys, xs = np.mgrid[:h, :w]
        mass = out * (out > 64)
        got = ((xs * mass).sum() / mass.sum(), (ys * mass).sum() / mass.sum())
        want = deforum_point((p[0] + 0.5, p[1] + 0.5), w, h, angle, zoom, tx, ty, cx, cy)
        assert got == pytest.approx((want[0] - 0.5, want[1] - 0.5), abs=0.6)


def test_warp_borders_wrap_and_replicate():
    im = Image.new("RGB", (40, 40), (0, 0, 0))
    im.paste((255, 0, 0), (30, 0, 40, 40))  # a red band on the right
    wrapped = np.asarray(warp(im, dx=10, border="wrap"))
    assert wrapped[20, 2, 0] > 200  # shifted right by 10: the band wraps round to the left edge
    replicated = np.asarray(warp(im, dx=-10, border="replicate"))
    assert replicated[20, 38, 0] > 200 and replicated[20, 25, 0] > 200  # the right edge is repeated


# --- importing ---------------------------------------------------------------------------------


def test_seed_behaviours_step_like_deforum():
    def seeds(**kw):
        imported = convert(webui_settings(diffusion_cadence=1, seed=100, max_frames=6, **kw))
        return [f["seed"] for f in imported.storyboard["frames"]]

    assert seeds(seed_behavior="iter") == [100, 101, 102, 103, 104, 105]
    assert seeds(seed_behavior="iter", seed_iter_N=2) == [100, 101, 101, 102, 102, 103]
    assert seeds(seed_behavior="fixed") == [100] * 6
    assert seeds(seed_behavior="ladder") == [100, 102, 101, 103, 102, 104]
    assert seeds(seed_behavior="alternate") == [100, 101, 100, 101, 100, 101]
    rnd = seeds(seed_behavior="random")
    assert rnd[0] == 100 and len(set(rnd)) == 6 and rnd == seeds(seed_behavior="random")  # drawn once, reproducibly
    # an expression keyframe holds (evaluated per frame) until the next keyframe
    assert seeds(seed_behavior="schedule", seed_schedule="0:(s), 2:(s+10+t), max_f:(5)") == [100, 100, 112, 113, 114, 5]
    assert seeds(seed_behavior="schedule", seed_schedule="0:(100), 4:(s+4)") == [100, 101, 102, 103, 104, 104]
    # -1 in a seed schedule is A1111's random seed: drawn from the run seed, the same on every import
    default = seeds(seed_behavior="schedule")
    assert default[0] == 100 and default[5] == 100 and default[1] != default[2] and default == seeds(seed_behavior="schedule")
    # with cadence 2 only frames 0, 2, 4 are diffused; the seed steps once per diffused frame
    imported = convert(webui_settings(seed=100, max_frames=6)).storyboard
    assert [f.get("seed") for f in imported["frames"]] == [100, None, 101, None]  # the last block is never written
    assert imported["defaults"]["cadence"] == 2


def test_seed_minus_one_uses_the_run_seed():
    imported = convert(webui_settings(seed=-1), seed=999)
    assert imported.storyboard["frames"][0]["seed"] == 999
    assert any("seed -1" in n for n in imported.notes)


def test_prompts_by_frame_with_neg_and_global_prompts():
    s = webui_settings(prompts={"0": "a red circle --neg blurry", "max_f-2": "a blue square"},
                       positive_prompts="oil painting,", negative_prompts="--neg watermark", diffusion_cadence=1)
    frames = convert(s).storyboard["frames"]
    # max_f = max_frames - 1 = 5, so "max_f-2" is frame 3
    assert [f["prompt"] for f in frames] == ["oil painting, a red circle"] * 3 + ["oil painting, a blue square"] * 3
    assert [f.get("negative_prompt") for f in frames] == ["blurry watermark"] * 3 + ["watermark"] * 3


def test_webui_defaults_import_from_the_cli_then_render_directly_and_resume(tmp_path, tiny_model):
    settings = tmp_path / "deforum_settings.txt"
    settings.write_text(json.dumps(webui_settings(max_frames=7), indent=4))  # cadence 2: the 7th is never written
    proc = cli("import", "deforum", settings, "-o", tmp_path / "storyboard.json", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'storyboard.json'}: 6 frames from deforum_settings.txt (2D mode, scheduler euler-a)")
    board = json.loads((tmp_path / "storyboard.json").read_text())
    notes = board["notes"]
    assert [f"note: {n}" for n in notes] == [ln for ln in lines if ln.startswith("note: ")]
    assert any(n.startswith("3D keys (translation_z, rotation_3d_x, rotation_3d_y, rotation_3d_z") for n in notes)
    assert any(n.startswith("diffusion_cadence 2") for n in notes) and any('color_coherence "LAB"' in n for n in notes)
    assert any(n.startswith("noise_schedule") for n in notes)
    assert board["scheduler"] == "euler-a" and board["defaults"]["motion"]["zoom"] == DEFAULT_ZOOM.replace(" ", "")
    assert cli("import", "deforum", settings, "-o", tmp_path / "storyboard.json").returncode == 2  # never overwritten

    # the settings file itself renders: same storyboard, the notes as warnings
    out = tmp_path / "out"
    proc = cli("make", settings, "-o", out, "--model", tiny_model, "--quiet", check=True)
    assert "warning: note: 3D keys" in proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["scheduler"] == "euler-a"
    frames = run["frames"]
    frames = frames if isinstance(frames, list) else [frames[k] for k in sorted(frames, key=int)]
    assert [f["kind"] for f in frames] == ["key"] + ["chain"] * 5
    for f in frames[1:]:
        t = f["index"]
        zoom, angle, tx, ty, dx, dy, cx, cy, border, style = f["params"]["motion"]
        assert zoom == pytest.approx(default_zoom(t), abs=1e-12) and (angle, tx, ty, dx, dy) == (0, 0, 0, 0, 0)
        assert (cx, cy, border, style) == (0.5, 0.5, "replicate", "deforum")
        # Deforum's strength 0.65 keeps 65 % of the previous frame: framereel redraws 35 %; cadence frames are only warped
        assert f["params"]["strength"] == pytest.approx(0.35 if t % 2 == 0 else 0.0)
        assert f["params"]["guidance"] == 7.0 and f["params"]["steps"] == 3
        if t % 2 == 0:  # diffused frames start from the warped previous frame matched to frame 0 in LAB
            assert f["params"]["color_ref"] == 0 and f["params"]["color_space"] == "lab"
        # from the second block on, frames blend toward their block's diffused frame
        assert f["params"].get("cadence") == (None if t < 2 else [t - t % 2, 2])
    assert [f["params"]["negative_prompt"] for f in frames] == ["blurry, text"] * 3 + [""] * 3
    assert [f["params"]["prompt"] for f in frames] == ["a red circle"] * 3 + ["a blue square"] * 3
    assert [f["params"]["seed"] for f in frames[::2]] == [7, 8, 9]
    assert frames[1]["duration"] == pytest.approx(1 / 15)
    assert (out / "video.mp4").exists()
    # the imported storyboard is the same film as the settings file
    assert load_storyboard(tmp_path / "storyboard.json").frames == load_storyboard(settings).frames


@pytest.fixture(scope="module")
def backend(tiny_model):
    from framereel.backends import create_backend

    return create_backend(RenderSettings(model=str(tiny_model), scheduler="euler-a"))


def test_notebook_defaults_render_and_a_killed_run_resumes_exactly(tmp_path, backend):
    settings = tmp_path / "settings.txt"
    settings.write_text(json.dumps(notebook_settings()))
    imported = import_deforum(settings, tmp_path / "sb.json")
    assert imported.scheduler == "euler-a" and imported.frames == 6
    assert any("3D keys" in n for n in imported.notes)
    sb = load_storyboard(tmp_path / "sb.json")
    assert [f.negative_prompt for f in sb.frames] == [None] * 4 + ["photo, realistic"] * 2
    whole = render(sb, tmp_path / "whole", backend.settings, backend=backend)
    assert whole.rendered == [0, 1, 2, 3, 4, 5]
    frames = json.loads((tmp_path / "whole" / "run.json").read_text())["frames"]
    frames = frames if isinstance(frames, list) else [frames[k] for k in sorted(frames, key=int)]
    for f in frames[1:]:
        t = f["index"]
        zoom, angle, tx, ty, dx, dy, cx, cy, border, style = f["params"]["motion"]
        assert zoom == 1.04 and style == "deforum" and dx == pytest.approx(10 * math.sin(2 * 3.14 * t / 10), abs=1e-12)
        assert f["params"]["strength"] == pytest.approx(0.35) and f["params"]["guidance"] == 7.0
        assert f["params"]["seed"] == 11 + t and f["derived_from"]["parent"] == t - 1
    # killed after frame 2: the rerun renders only the rest, and the frames are the same
    def kill_after_two(event):
        if event.name == "frame_done" and event.index == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render(sb, tmp_path / "part", backend.settings, backend=backend, on_event=kill_after_two)
    rest = render(sb, tmp_path / "part", backend.settings, backend=backend)
    assert rest.rendered == [3, 4, 5] and rest.skipped == [0, 1, 2]
    for i in range(6):
        a = np.asarray(Image.open(tmp_path / "whole" / "frames" / f"frame_{i:03d}.png"))
        b = np.asarray(Image.open(tmp_path / "part" / "frames" / f"frame_{i:03d}.png"))
        assert np.array_equal(a, b), i


def test_3d_mode_carries_the_camera_and_video_input_is_refused(tmp_path):
    imported = convert(webui_settings(animation_mode="3D", rotation_3d_y="0:(2)"))
    motion = imported.storyboard["defaults"]["motion"]
    assert motion["mode"] == "3D" and motion["rotation_3d_y"] == 2 and "zoom" not in motion
    assert any(n.startswith("animation_mode 3D: zoom, angle") for n in imported.notes)
    assert imported.storyboard["defaults"]["init"] == "previous"
    path = tmp_path / "v.txt"
    path.write_text(json.dumps(webui_settings(animation_mode="Video Input")))
    proc = cli("import", "deforum", path, "-o", tmp_path / "sb.json")
    assert proc.returncode == 2 and proc.stderr.startswith('error: v.txt: "animation_mode": "Video Input" renders over')
    assert len(proc.stderr.strip().splitlines()) == 1


def test_features_not_carried_are_listed_one_line_each():
    s = webui_settings(hybrid_composite="Normal", use_mask=True, enable_checkpoint_scheduling=True, cn_1_enabled=True,
                       enable_perspective_flip=True, add_soundtrack="File", color_coherence="Video Input")
    notes = convert(s).notes
    for start in ("hybrid video", "masks", "checkpoint_schedule", "ControlNet", "perspective flip", "soundtrack",
                  'color_coherence "Video Input"'):
        assert sum(n.startswith(start) for n in notes) == 1, start
    assert all("\n" not in n for n in notes)


def test_none_and_interpolation_modes():
    stills = convert(webui_settings(animation_mode="None", seed_behavior="fixed", n_batch=2)).storyboard
    assert [f["prompt"] for f in stills["frames"]] == ["a red circle"] * 2 + ["a blue square"] * 2
    assert {f["seed"] for f in stills["frames"]} == {7} and "init" not in stills["defaults"]
    interp = convert(webui_settings(animation_mode="Interpolation")).storyboard
    assert [(f["prompt"], f.get("morph")) for f in interp["frames"]] == [("a red circle", 2), ("a blue square", None)]


def test_sampler_maps_to_the_nearest_scheduler():
    for sampler, scheduler, exact in [("Euler a", "euler-a", True), ("euler", "euler", True), ("DPM++ 2M", "dpm++", True),
                                      ("plms", "pndm", True), ("DPM++ 2M Karras", "dpm++", False),
                                      ("DPM++ SDE Karras", "euler-a", False), ("klms", "dpm++", False)]:
        imported = convert(webui_settings(sampler=sampler))
        assert imported.scheduler == scheduler, sampler
        assert any(n.startswith(f'sampler "{sampler}"') for n in imported.notes) != exact, sampler


def test_random_is_never_used_at_import(monkeypatch):
    monkeypatch.setattr(random, "randrange", lambda *a: 0)  # only seeded Random instances may be used
    assert convert(webui_settings(seed_behavior="random")).storyboard == convert(webui_settings(seed_behavior="random")).storyboard


def test_strength_outside_0_to_1_is_clamped_like_deforum():
    imported = convert(webui_settings(diffusion_cadence=1, strength_schedule="0:(0.5), 4:(t/2)", max_frames=6))
    # kept: 0.5, then a line to t/2 = 2 at frame 4 (0.875, 1.25, 1.625), then t/2 (2, 2.5); Deforum clamps to 1
    assert [f.get("strength") for f in imported.storyboard["frames"]] == [None, 0.125, 0.0, 0.0, 0.0, 0.0]
    assert any(n.startswith("strength_schedule leaves 0 to 1 at frames 2-5: clamped") for n in imported.notes)


@pytest.mark.parametrize("space", ["lab", "hsv", "rgb"])
def test_colour_match_in_deforums_colour_spaces(space):
    rng = np.random.default_rng(1)
    src = Image.fromarray(rng.integers(0, 100, (32, 32, 3), dtype=np.uint8))
    ref = Image.fromarray(rng.integers(150, 256, (32, 32, 3), dtype=np.uint8))
    out = np.asarray(match_colours(src, ref, space)).astype(float)
    assert abs(out.mean() - np.asarray(ref).mean()) < 12
    assert np.array_equal(np.asarray(match_colours(ref, ref, "rgb")), np.asarray(ref))


def test_plain_chains_keep_their_hash_parameters(tmp_path):
    board = tmp_path / "b.json"
    board.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b", "init": "previous", "color_match": "first",
                                                    "motion": {"zoom": 1.02}}]))
    params = load_storyboard(board).frames[1].render_params()
    assert "color_space" not in params and params["motion"] == (1.02, 0.0, 0.0, 0.0) and params["color_ref"] == 0
    lab = json.loads(board.read_text())
    lab[1]["color_match"] = "first-lab"
    board.write_text(json.dumps(lab))
    assert load_storyboard(board).frames[1].render_params()["color_space"] == "lab"


def test_a_settings_file_saved_with_a_byte_order_mark_imports_and_bad_paths_are_one_line(tmp_path):
    bom = tmp_path / "notepad_settings.txt"  # Windows Notepad's "UTF-8" adds a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(webui_settings()).encode())
    assert cli("import", "deforum", bom, "-o", tmp_path / "sb.json").returncode == 0
    for path, message in [(tmp_path / "missing.txt", "no such file; pass the path of a Deforum settings file"),
                          (tmp_path, "is a folder; pass the path of a Deforum settings file")]:
        proc = cli("import", "deforum", path, "-o", tmp_path / "other.json")
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- expressions that would never finish, and what the importer writes ------------------------


@pytest.mark.parametrize("text", ["0:(9**9**9)", "0:(10**10**10)", "0:(1+sin(9**9**9))", "0:(1<<(1<<40))",
                                  '0:(1), "9**9**9":(2)', "0:('a'*10**9)", "0:((1,)*10**9)", "0:(9**99)"])
def test_a_constant_too_large_for_a_number_is_refused_at_once(tmp_path, text):
    # numexpr folds constants with Python's unbounded whole numbers: 9**9**9 ran at 100 % CPU until killed
    with pytest.raises(ScheduleError) as err:
        parse_schedule(text, name="strength")
    assert str(err.value).startswith('"strength" schedule: keyframe ') and "\n" not in str(err.value)
    board = write_board(tmp_path / "b.json", {"defaults": {"init": "previous", "strength": text},
                                              "frames": [{"prompt": "a"}] * 3})
    proc = cli("make", board, "-o", tmp_path / "out", "--model", "demo", "--dry-run")
    assert proc.returncode == 2 and proc.stderr.startswith('error: b.json: defaults: "strength" schedule: keyframe ')
    assert len(proc.stderr.strip().splitlines()) == 1 and "finished frames" not in proc.stderr
    path = tmp_path / "deforum_settings.txt"
    path.write_text(json.dumps(webui_settings(translation_x=text)))
    proc = cli("import", "deforum", path, "-o", tmp_path / "sb.json")
    assert proc.returncode == 2 and proc.stderr.startswith('error: deforum_settings.txt: "translation_x" schedule: ')
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "sb.json").exists()


def write_board(path, data):
    path.write_text(json.dumps(data))
    return path


def test_an_interrupt_before_anything_renders_promises_no_kept_frames(tmp_path, monkeypatch):
    import framereel.deforum

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    settings = tmp_path / "deforum_settings.txt"
    settings.write_text(json.dumps(webui_settings()))
    monkeypatch.setattr(framereel.deforum, "convert", interrupted)
    proc = cli("import", "deforum", settings, "-o", tmp_path / "sb.json")
    assert proc.returncode == 130 and proc.stderr.strip() == "interrupted (SIGINT)"
    proc = cli("make", settings, "-o", tmp_path / "out", "--model", "demo", "--dry-run")
    assert proc.returncode == 130 and proc.stderr.strip() == "interrupted (SIGINT)"


def test_strength_schedule_above_1_is_clamped_on_import_and_said_so(tmp_path):
    settings = tmp_path / "deforum_settings.txt"
    settings.write_text(json.dumps(webui_settings(strength_schedule="0: (2.5)", diffusion_cadence=1)))
    proc = cli("import", "deforum", settings, "-o", tmp_path / "sb.json")
    assert proc.returncode == 0, proc.stderr
    board = json.loads((tmp_path / "sb.json").read_text())
    assert board["defaults"]["strength"] == 0 and [f.get("strength") for f in board["frames"]] == [None] + [0.0] * 5
    assert any(n.startswith("strength_schedule leaves 0 to 1 at frames 0-5: clamped") for n in board["notes"])
    assert "clamped" in proc.stdout and not list(tmp_path.glob("*.tmp"))
    assert len(load_storyboard(settings).frames) == 6  # the settings file itself renders too


@pytest.mark.parametrize("key, text, message", [
    ("zoom", "0:(t**t**t**t)", '"zoom" schedule: keyframe 0:(t**t**t**t): value 65536 at frame 2 is outside 0.1 to 10'),
    ("zoom", "0:(20)", '"zoom" schedule: keyframe 0:(20): value 20 at frame 0 is outside 0.1 to 10'),
    ("angle", "0:(t*1000)", '"angle" schedule: keyframe 0:(t*1000): value 1000 at frame 1 is outside -360 to 360'),
    ("zoom", "0:(1+" + "t*0+" * 2500 + "0)", '"zoom" schedule: keyframe 0:(1+t*0+t*0+t*0+'),
])
def test_import_errors_name_the_settings_file_and_key_never_a_temporary_file(tmp_path, key, text, message):
    settings = tmp_path / "deforum_settings.txt"
    settings.write_text(json.dumps(webui_settings(**{key: text})))
    proc = cli("import", "deforum", settings, "-o", tmp_path / "sb.json")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: deforum_settings.txt: {message}"), proc.stderr
    assert ".tmp" not in proc.stderr and len(proc.stderr) < 400 and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("sb.json*"))


def test_import_never_writes_onto_its_own_settings_file(tmp_path):
    settings = tmp_path / "deforum_settings.txt"
    settings.write_text(json.dumps(webui_settings()))
    before = settings.read_bytes()
    for out in (settings, tmp_path / "." / "deforum_settings.txt"):
        proc = cli("import", "deforum", settings, "-o", out, "--force")
        assert proc.returncode == 2 and "is the settings file being imported; choose another -o path" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert settings.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


# --- differences found running Deforum's own code beside framereel's -----------------------------


def test_a_saved_settings_files_global_negative_prompt_is_added_once():
    """sd-webui-deforum saves prompts already joined with its positive/negative boxes (process_args), as
    its own scripts/default_settings.txt shows: "... landscape --neg nsfw, nude" with "negative_prompts": "nsfw, nude"."""
    saved = {"0": " tiny cute swamp bunny --neg nsfw, nude", "60": " a beautiful coconut --neg photo, realistic  nsfw, nude"}
    frames = convert(webui_settings(prompts=saved, negative_prompts="nsfw, nude", max_frames=63)).storyboard["frames"]
    assert frames[0]["negative_prompt"] == "nsfw, nude" and frames[60]["negative_prompt"] == "photo, realistic nsfw, nude"
    joined = {"0": "high quality a cat --neg blurry"}  # the positive box joined in front, once
    frames = convert(webui_settings(prompts=joined, positive_prompts="high quality", max_frames=3)).storyboard["frames"]
    assert frames[0]["prompt"] == "high quality a cat"
    raw = {"0": "a cat"}  # a file written by hand: the boxes are still added
    frames = convert(webui_settings(prompts=raw, positive_prompts="high quality", negative_prompts="text",
                                    max_frames=3)).storyboard["frames"]
    assert (frames[0]["prompt"], frames[0]["negative_prompt"]) == ("high quality a cat", "text")


def test_notebook_files_with_cond_and_uncond_prompts_import():
    """deforum-stable-diffusion since 2e19447 saves the prompts as cond_prompts / uncond_prompts."""
    settings = notebook_settings(cond_prompts={"0": "a lake", "3": "a forest"}, uncond_prompts={"0": "blurry"})
    del settings["prompts"]
    frames = convert(settings).storyboard["frames"]
    assert [f["prompt"] for f in frames] == ["a lake"] * 3 + ["a forest"] * 3
    assert {f["negative_prompt"] for f in frames} == {"blurry"}


@pytest.mark.parametrize("text, frame, expected", [
    ("0: ( 1.5 ), 60: ( -2.5 )", 59, 1.5),  # inner spaces: an expression to check_is_number, held until 60
    ("0: (1.5), 60: (-2.5)", 59, 1.5 - 4 * 59 / 60),  # a number: ramped
    ("0:(5.), 10:(0)", 5, 5.0), ("0:(1e-1), 10:(0)", 5, 0.1),  # "5." and "1e-1" are expressions too
    ("60:(5), 0:(1), 100:(0)", 30, 3.0), ("60:(5), 0:(1), 100:(0)", 80, 2.5),  # keys in any order
    ("0:(1), 10:(2), 10:(4)", 5, 2.5),  # a repeated key: the later one wins, as in a Python dict
])
def test_schedules_hold_or_ramp_as_deforums_check_is_number_decides(text, frame, expected):
    assert parse_schedule(text).at(frame, 101) == pytest.approx(expected, abs=1e-12)
    # and an imported schedule keeps holding where Deforum holds
    motion = convert(webui_settings(translation_x=text, max_frames=101, diffusion_cadence=1)).storyboard["defaults"]["motion"]
    assert parse_schedule(motion["translation_x"] if isinstance(motion["translation_x"], str)
                          else f"0:({motion['translation_x']})").at(frame, 101) == pytest.approx(expected, abs=1e-12)


def test_a_far_zoom_out_leaves_no_black_pixels():
    """At zoom 0.3 the old one-frame padding left 732 of 4096 pixels black; Deforum replicates or wraps."""
    image = Image.fromarray(np.full((64, 64, 3), 120, np.uint8))
    for style in ("framereel", "deforum"):
        for border in ("replicate", "wrap", "mirror"):
            out = np.asarray(warp(image, zoom=0.3, border=border, style=style))
            assert (out.sum(axis=-1) == 0).sum() == 0, (style, border)
    shifted = np.asarray(warp(image, tx=200, border="replicate"))  # a shift wider than the frame
    assert (shifted == 120).all()


def test_deforum_warp_is_opencvs_bilinear_on_its_pixel_grid():
    """Deforum's anim_frame_warp_2d: cv2.warpPerspective (bilinear) with getRotationMatrix2D about (W·cx, H·cy)."""
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 200
    image = Image.fromarray(stripes)
    quarter = np.asarray(warp(image, dx=0.25, border="wrap", style="deforum"))[..., 0]
    assert set(np.unique(quarter)) == {50, 150}  # bilinear: ¾ of one neighbour and ¼ of the other
    assert set(np.unique(np.asarray(warp(image, dx=0.25, border="wrap"))[..., 0])) != {50, 150}  # bicubic
    dot = np.zeros((64, 64, 3), np.uint8)
    dot[32, 32] = 255
    zoomed = np.asarray(warp(Image.fromarray(dot), zoom=2.0, style="deforum"))[..., 0]
    assert np.unravel_index(zoomed.argmax(), zoomed.shape) == (32, 32)  # the centre is pixel (32, 32) itself


def test_sd_model_name_is_noted_and_the_example_keys_are_plain_frames():
    notes = convert(webui_settings()).notes
    assert any(n.startswith('sd_model_name "v1-5-pruned-emaonly.safetensors": not carried') for n in notes)
    example = json.loads((Path(__file__).parent.parent / "examples" / "deforum_settings.txt").read_text())
    assert all(key.isdigit() for key in example["prompts"])
