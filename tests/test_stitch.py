import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import audio_seconds, probe_video
from PIL import Image

from framereel import FramereelError, stitch
from framereel.video import ffmpeg_command, plan_timeline, video_size

COLOURS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 0), (255, 0, 255)]


def make_frames(out: Path, count=3, size=(64, 64), durations=None, skip=()):
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        if i not in skip:
            Image.new("RGB", size, COLOURS[i % len(COLOURS)]).save(out / "frames" / f"frame_{i:03d}.png")
    if durations is not None:
        frames = [{"index": i, "file": f"frames/frame_{i:03d}.png", "duration": d} for i, d in enumerate(durations)]
        (out / "run.json").write_text(json.dumps({"frames": frames}))
    return out


def test_uniform_pacing_is_the_lessons_recipe(tmp_path):
    video = stitch(make_frames(tmp_path, 4), fps=2)
    facts = probe_video(video)
    assert (facts["codec"], facts["pix_fmt"]) == ("h264", "yuv420p")
    assert facts["rate"] == 2 and facts["frames"] == 4 and facts["seconds"] == pytest.approx(2.0)
    assert (facts["width"], facts["height"]) == (256, 256)  # 64×64 frames scaled up ×4


@pytest.mark.parametrize("fps", [1, 4])
def test_fps_sets_seconds_per_frame(tmp_path, fps):
    facts = probe_video(stitch(make_frames(tmp_path, 3), fps=fps))
    assert facts["seconds"] == pytest.approx(3 / fps)


def test_per_frame_durations_are_exact_including_the_last(tmp_path):
    out = make_frames(tmp_path, 3, durations=[3.0, None, 0.3])
    facts = probe_video(stitch(out, fps=2))
    # 0.3 s is not a whole frame at 2 fps, so the video runs at 24 fps: 72 + 12 + 7 frames
    assert facts["rate"] == 24
    assert facts["frames"] == round((3.0 + 0.5 + 0.3) * 24)
    first_colour_change = next(i for i, px in enumerate(facts["pixels"]) if px[128, 128, 2] > 128)
    assert abs(first_colour_change - 72) <= 1
    last = facts["pixels"][-1][128, 128]
    assert last[1] > 200 and last[0] < 60  # the last (green) shot is on screen at the end


def test_plan_timeline_exact_within_one_output_frame():
    durations = [0.37, 1.11, 0.5, 2.0]
    tl = plan_timeline(durations, fps=2)
    assert tl.rate == 24
    counts = [sum(1 for a, _, _ in tl.frames if a == k) for k in range(4)]
    for c, d in zip(counts, durations):
        assert abs(c - d * 24) <= 1
    assert abs(tl.seconds - sum(durations)) <= 1 / 24


def test_crossfade_adds_its_length_per_cut_and_blends(tmp_path):
    facts = probe_video(stitch(make_frames(tmp_path, 2, size=(64, 64)), fps=1, transition="crossfade", crossfade=1.0))
    assert facts["seconds"] == pytest.approx(1 + 1 + 1.0, abs=1 / 24)
    # the middle of the dissolve is between red and blue in both channels
    mid = facts["pixels"][len(facts["pixels"]) // 2][128, 128].astype(int)
    assert 60 < mid[0] < 200 and 60 < mid[2] < 200
    # holds are kept: the first second is pure red
    assert facts["pixels"][10][128, 128][0] > 230


def test_smooth_outputs_requested_fps(tmp_path):
    facts = probe_video(stitch(make_frames(tmp_path, 3), fps=2, transition="smooth", smooth_fps=12))
    assert facts["rate"] == 12
    assert abs(facts["frames"] - 18) <= 2


@pytest.mark.parametrize("name, codec, pix_fmt", [("v.webm", "vp9", "yuv420p"), ("v.gif", "gif", "bgra"), ("v.mov", "h264", "yuv420p")])
def test_formats_by_extension(tmp_path, name, codec, pix_fmt):
    video = stitch(make_frames(tmp_path, 3), tmp_path / name, fps=2)
    facts = probe_video(video)
    assert facts["codec"] == codec and facts["pix_fmt"] == pix_fmt
    assert facts["frames"] >= 3


def test_gaps_are_skipped_with_a_warning(tmp_path):
    out = make_frames(tmp_path, 5, skip=(2,))
    (out / "run.json").write_text(json.dumps({"frames": [{"index": i, "duration": None} for i in range(5)]}))
    events = []
    facts = probe_video(stitch(out, fps=2, on_event=events.append))
    assert facts["frames"] == 4
    assert any(e.name == "warning" and "2" in e.message for e in events)


def test_frames_subset(tmp_path):
    facts = probe_video(stitch(make_frames(tmp_path, 5), fps=1, frames="0-1,4"))
    assert facts["frames"] == 3
    assert facts["pixels"][2][128, 128][0] > 200 and facts["pixels"][2][128, 128][2] > 200  # frame 4 is magenta


def test_size_must_be_even():
    with pytest.raises(FramereelError, match="even"):
        video_size(Image.new("RGB", (64, 64)), "511x512")
    assert video_size(Image.new("RGB", (512, 512)), None) == (512, 512)


def test_ffmpeg_command_is_an_argument_list():
    cmd = ffmpeg_command("ffmpeg", (512, 512), Fraction(2), Path("out dir/it's.mp4"), ".mp4")
    assert cmd[-1] == "out dir/it's.mp4"
    assert cmd[cmd.index("-c:v") + 1] == "libx264" and "+faststart" in cmd
    assert cmd[cmd.index("-crf") + 1] == "18" and cmd[cmd.index("-pix_fmt", cmd.index("-i")) + 1] == "yuv420p"


def test_unknown_format_and_no_frames(tmp_path):
    with pytest.raises(FramereelError, match="unknown video format"):
        stitch(make_frames(tmp_path / "a", 2), tmp_path / "v.avi")
    with pytest.raises(FramereelError, match="no frames/ folder"):
        stitch(tmp_path / "empty")


def test_ffmpeg_failure_is_one_line(tmp_path):
    with pytest.raises(FramereelError, match=r"ffmpeg failed \(exit"):  # an encoder MP4 can't hold
        stitch(make_frames(tmp_path, 2), fps=2, codec="rawvideo")
    assert not (tmp_path / "video.mp4").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_unknown_codec_is_refused_before_encoding(tmp_path):
    with pytest.raises(FramereelError, match="--codec no-such-codec: this ffmpeg .* has no such video encoder"):
        stitch(make_frames(tmp_path, 2), fps=2, codec="no-such-codec")


def test_video_pixels_follow_frames(tmp_path):
    facts = probe_video(stitch(make_frames(tmp_path, 2), fps=1))
    first = facts["pixels"][0][128, 128]
    assert first[0] > 200 and first[2] < 60
    assert np.all(facts["pixels"][-1][128, 128][[0, 1]] < 60)


def test_zoom_pushes_in_over_each_shot(tmp_path):
    out = tmp_path / "z"
    (out / "frames").mkdir(parents=True)
    im = Image.new("RGB", (64, 64), (0, 0, 0))
    im.paste((255, 255, 255), (24, 24, 40, 40))  # a white square in the centre
    im.save(out / "frames" / "frame_000.png")
    facts = probe_video(stitch(out, fps=1, zoom=0.5))
    assert facts["rate"] == 24 and facts["frames"] == 24
    def white_width(px):
        return int((px[128, :, 0] > 128).sum())
    assert white_width(facts["pixels"][-1]) > 1.3 * white_width(facts["pixels"][0])


def test_ken_burns_geometry():
    from framereel.video import ken_burns

    im = Image.new("RGB", (100, 100), (0, 0, 0))
    im.paste((255, 255, 255), (40, 40, 60, 60))
    zoomed = np.asarray(ken_burns(im, 1.0, 1.0, 0))  # scale 2, centred
    assert abs(int((zoomed[50, :, 0] > 128).sum()) - 40) <= 2


def make_tone(path: Path, seconds: float) -> Path:
    import subprocess

    from framereel.video import find_ffmpeg

    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    str(path)], check=True)
    return path


@pytest.mark.parametrize("name, codec", [("v.mp4", "aac"), ("v.webm", "opus")])
def test_audio_is_trimmed_to_the_video(tmp_path, name, codec):
    tone = make_tone(tmp_path / "tone.wav", 5.0)
    video = stitch(make_frames(tmp_path / "f", 3), tmp_path / name, fps=2, audio=tone)
    facts = probe_video(video)
    assert facts["audio"] == [codec]
    assert audio_seconds(video) == pytest.approx(1.5, abs=0.1)


def test_audio_loop_fills_a_longer_video(tmp_path):
    tone = make_tone(tmp_path / "tone.wav", 0.5)
    video = stitch(make_frames(tmp_path / "f", 4), tmp_path / "v.mp4", fps=1, audio=tone, audio_loop=True)
    assert audio_seconds(video) == pytest.approx(4.0, abs=0.1)


def test_audio_errors(tmp_path):
    out = make_frames(tmp_path / "f", 2)
    with pytest.raises(FramereelError, match="no such file"):
        stitch(out, audio=tmp_path / "none.mp3")
    with pytest.raises(FramereelError, match="have no sound"):
        stitch(out, tmp_path / "v.gif", audio=make_tone(tmp_path / "t.wav", 1))


def test_contact_sheet_grid(tmp_path):
    from framereel.sheet import contact_sheet

    out = make_frames(tmp_path, 7)
    sheet = Image.open(contact_sheet(out, columns=3, thumb=64))
    cell_w = 64 + 8
    assert sheet.width == 3 * cell_w
    rows = 3
    assert sheet.height % rows == 0 and sheet.height // rows > 64
    # the first thumbnail is red, the fourth (second row) is yellow
    assert sheet.getpixel((4 + 32, 4 + 32))[0] > 200
    assert sheet.getpixel((4 + 32, sheet.height // rows + 4 + 32))[1] > 200
