"""Temporal coherence: latent morphs, img2img chains, camera motion, keyframe schedules."""

import json

import numpy as np
import pytest
from conftest import cli, write_storyboard
from PIL import Image

from framereel import FramereelError, RenderSettings, load_storyboard, render
from framereel.coherence import match_colours, warp
from framereel.schedule import ScheduleError, parse_schedule


@pytest.fixture(scope="module")
def backend(tiny_model):
    from framereel.backends import create_backend

    return create_backend(RenderSettings(model=str(tiny_model)))


def run(board, out, backend, **kw):
    return render(load_storyboard(board, overrides={"steps": 3}), out, backend.settings, backend=backend, **kw)


def pixels(out, index):
    return np.asarray(Image.open(out / "frames" / f"frame_{index:03d}.png"))


def test_morph_inbetweens_sit_between_key_frames_which_are_unchanged(tmp_path, backend):
    morph = write_storyboard(tmp_path / "m.json", [{"prompt": "red circle", "morph": 3}, {"prompt": "blue circle"}])
    plain = write_storyboard(tmp_path / "p.json", [{"prompt": "red circle"}, {"prompt": "blue circle"}])
    assert run(morph, tmp_path / "m", backend).rendered == [0, 1, 2, 3, 4]
    run(plain, tmp_path / "p", backend)
    records = json.loads((tmp_path / "m" / "run.json").read_text())["frames"]
    assert [r["kind"] for r in records] == ["key", "morph", "morph", "morph", "key"]
    assert [r["derived_from"]["t"] for r in records[1:4]] == [0.25, 0.5, 0.75]
    assert np.array_equal(pixels(tmp_path / "m", 0), pixels(tmp_path / "p", 0))
    assert np.array_equal(pixels(tmp_path / "m", 4), pixels(tmp_path / "p", 1))
    # in-betweens differ from both ends and from each other
    mids = [pixels(tmp_path / "m", i) for i in range(1, 4)]
    assert not np.array_equal(mids[0], mids[1]) and not np.array_equal(mids[1], pixels(tmp_path / "m", 0))


def test_morph_inbetweens_last_the_defaults_duration_not_their_key_frames(tmp_path, backend):
    from conftest import probe_video

    from framereel import stitch

    board = tmp_path / "d.json"
    board.write_text(json.dumps({"defaults": {"duration": 0.5}, "frames": [
        {"prompt": "red circle", "morph": 2, "duration": 1}, {"prompt": "blue circle"}]}))
    run(board, tmp_path / "d", backend)
    records = json.loads((tmp_path / "d" / "run.json").read_text())["frames"]
    assert [r.get("duration") for r in records] == [1.0, 0.5, 0.5, 0.5]
    video = stitch(tmp_path / "d", fps=4)  # --fps paces only frames without a duration: none here
    assert probe_video(video)["seconds"] == pytest.approx(2.5, abs=0.05)


def test_slerp_midpoint_matches_the_formula():
    import torch

    from framereel.backends.common import slerp

    a, b = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    theta = torch.acos(torch.sum(a * b) / (a.norm() * b.norm()))
    expected = (torch.sin(0.5 * theta) * a + torch.sin(0.5 * theta) * b) / torch.sin(theta)
    assert torch.allclose(slerp(a, b, 0.5), expected, atol=1e-6)
    assert torch.equal(slerp(a, b, 0.0), a) or torch.allclose(slerp(a, b, 0.0), a, atol=1e-6)
    assert torch.allclose(slerp(a, a, 0.3), a)


def test_strength_zero_chain_frame_equals_its_parent(tmp_path, backend):
    board = write_storyboard(tmp_path / "c.json", [{"prompt": "a lighthouse"}, {"prompt": "a storm", "init": "previous", "strength": 0}])
    run(board, tmp_path / "c", backend)
    assert np.array_equal(pixels(tmp_path / "c", 1), pixels(tmp_path / "c", 0))


CHAIN = [{"prompt": f"shot {i}"} for i in range(5)] + [
    {"prompt": f"shot {i}", "init": "previous", "strength": 0.6, "motion": {"zoom": 1.1}} for i in range(5, 8)]


def test_changing_a_chained_frame_rerenders_only_its_descendants(tmp_path, backend):
    board = write_storyboard(tmp_path / "c.json", CHAIN)
    out = tmp_path / "out"
    assert run(board, out, backend).rendered == list(range(8))
    changed = [dict(f) for f in CHAIN]
    changed[5]["prompt"] = "shot five, changed"
    write_storyboard(board, changed)
    assert run(board, out, backend).rendered == [5, 6, 7]
    changed[2]["prompt"] = "shot two, changed"
    write_storyboard(board, changed)
    assert run(board, out, backend).rendered == [2]
    assert run(board, out, backend, redo=[4]).rendered == [4, 5, 6, 7]
    assert run(board, out, backend).rendered == []


def test_resume_mid_chain_equals_the_uninterrupted_run(tmp_path, backend):
    board = write_storyboard(tmp_path / "c.json", CHAIN)
    run(board, tmp_path / "whole", backend)

    def stop_after_six(event):
        if event.name == "frame_done" and event.index == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(board, tmp_path / "cut", backend, on_event=stop_after_six)
    assert run(board, tmp_path / "cut", backend).rendered == [7]
    for i in range(8):
        assert np.array_equal(pixels(tmp_path / "cut", i), pixels(tmp_path / "whole", i))


def test_chain_needs_its_parent(tmp_path, backend):
    board = write_storyboard(tmp_path / "c.json", CHAIN)
    with pytest.raises(FramereelError, match="chains from frame 5"):
        run(board, tmp_path / "out", backend, only=[6])


def test_warp_zoom_two_doubles_a_centred_square():
    im = Image.new("RGB", (100, 100), (0, 0, 0))
    im.paste((255, 255, 255), (40, 40, 60, 60))
    white = np.asarray(warp(im, zoom=2.0))[..., 0] > 128
    ys, xs = np.nonzero(white)
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (40, 40)
    shifted = np.asarray(warp(im, tx=10, ty=-5))[..., 0] > 128
    ys, xs = np.nonzero(shifted)
    assert (xs.min(), ys.min()) == (50, 35)
    # borders are mirrored, not black: zooming out of a bright image keeps it bright
    assert np.asarray(warp(Image.new("RGB", (50, 50), (200, 10, 10)), zoom=0.5)).min(axis=(0, 1))[0] > 150


def test_colour_match_moves_histogram_to_reference():
    rng = np.random.default_rng(0)
    src = Image.fromarray(rng.integers(0, 128, (32, 32, 3), dtype=np.uint8))
    ref = Image.fromarray(rng.integers(128, 256, (32, 32, 3), dtype=np.uint8))
    out = np.asarray(match_colours(src, ref)).astype(float)
    assert abs(out.mean() - np.asarray(ref).mean()) < 3


@pytest.mark.parametrize("text, at, expected", [
    ("0:(0.65), 10:(0.45), 20:(0.65)", [0, 5, 10, 15, 20, 30], [0.65, 0.55, 0.45, 0.55, 0.65, 0.65]),
    ("5:(1)", [0, 5, 9], [1.0, 1.0, 1.0]),
    ("0:(-2.5),4:(0.25)", [2], [-1.125]),
    ("0:(-2.5e-1),4:(0.25)", [2], [-0.25]),  # an exponent is an expression to Deforum: held, not ramped
    (0.3, [7], [0.3]),
])
def test_schedule_interpolates_linearly(text, at, expected):
    sched = parse_schedule(text)
    assert [round(sched.at(i), 6) for i in at] == expected


@pytest.mark.parametrize("text, message", [
    ("0:0.5", "expected FRAME:(VALUE) at character 1"),
    ("0:(0.5) 10:(0.2)", "expected ',' at character 9"),
    ("0:(0.5), x:(0.2)", 'keyframe x:(0.2): unknown name "x"'),  # frames may be expressions like max_f-1
    ("", "empty schedule"),
])
def test_schedule_errors_say_where(text, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(text)


@pytest.mark.parametrize("frame, message", [
    ({"prompt": "b", "init": "previous", "strength": "0:(1.5)"}, 'frame 1: "strength" schedule: value 1.5 is outside 0 to 1'),
    ({"prompt": "b", "init": "next"}, 'frame 1: "init" must be "previous" or null'),
    ({"prompt": "b", "motion": {"zom": 1.1}}, 'frame 1: motion: unknown key "zom"; did you mean "zoom"?'),
    ({"prompt": "b", "motion": {"angle": "0:(5"}}, 'frame 1: "motion.angle" schedule: unclosed \'(\' at character 3'),
    ({"prompt": "b", "morph": 2}, 'frame 1: "morph" needs a next frame'),
])
def test_coherence_keys_are_validated(tmp_path, frame, message):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a"}, frame])
    with pytest.raises(FramereelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_storyboard(board)


def test_first_frame_cannot_chain(tmp_path):
    board = write_storyboard(tmp_path / "b.json", [{"prompt": "a", "init": "previous"}])
    with pytest.raises(FramereelError, match="the first frame has none"):
        load_storyboard(board)


def test_shared_noise_gives_every_frame_the_run_seed(tmp_path):
    board = write_storyboard(tmp_path / "b.json", {"defaults": {"shared_noise": True}, "frames": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c", "seed": 3}]})
    assert [f.seed for f in load_storyboard(board, run_seed=9).frames] == [9, 9, 3]


def test_schedules_resolve_per_frame_index(tmp_path):
    frames = [{"prompt": "a"}] + [{"prompt": "b", "init": "previous"} for _ in range(4)]
    board = write_storyboard(tmp_path / "b.json", {"defaults": {"strength": "0:(0.8), 4:(0.4)", "guidance": "0:(7), 4:(3)"}, "frames": frames})
    sb = load_storyboard(board)
    assert [round(f.strength, 3) for f in sb.frames[1:]] == [0.7, 0.6, 0.5, 0.4]
    assert [f.guidance for f in sb.frames] == [7.0, 6.0, 5.0, 4.0, 3.0]


def test_cadence_frames_blend_the_previous_and_next_diffused_images_as_deforum_does(tmp_path):
    """Deforum's render loop with diffusion_cadence N: frame kN+j shows (1-(j+1)/N)·previous + ((j+1)/N)·next
    diffused image (both moved by the frames' motion; none here, so they are frames kN-1 and kN+N-1 themselves)."""
    board = tmp_path / "cadence.json"
    board.write_text(json.dumps({"defaults": {"width": 64, "height": 64, "steps": 4, "init": "previous",
                                              "strength": 0.5, "cadence": 3},
                                 "frames": [{"prompt": "a red barn"}] * 9}))
    out = tmp_path / "out"
    cli("make", board, "-o", out, "--model", "demo", "-q", check=True)

    def frame(i):
        return np.asarray(Image.open(out / "frames" / f"frame_{i:03d}.png"), dtype=np.float64)

    assert np.array_equal(frame(1), frame(0)) and np.array_equal(frame(2), frame(0))  # the first block: copies
    for start in (3, 6):
        before, diffused = frame(start - 1), frame(start + 2)
        for j in range(2):
            t = (j + 1) / 3
            assert np.array_equal(frame(start + j), np.clip(np.rint(before * (1 - t) + diffused * t), 0, 255)), start + j
    # a lost in-between brings back its block from the diffused frame, to the same pixels
    kept = [frame(i) for i in range(9)]
    (out / "frames" / "frame_004.png").unlink()
    proc = cli("make", board, "-o", out, "--model", "demo", "--json", check=True)
    done = [json.loads(line)["index"] for line in proc.stdout.splitlines() if '"frame_done"' in line]
    assert done == [3, 4, 5, 6, 7, 8] and all(np.array_equal(frame(i), kept[i]) for i in range(9))
