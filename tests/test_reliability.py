"""What a new user runs into first: every option checked before any model loads, one line per
mistake, nothing created by a command that is refused, and the answers the README promises."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import probe_video, run_cli, write_storyboard
from PIL import Image, ImageDraw

from framereel import FramereelError, RenderSettings, load_storyboard, render
from framereel.cli import main
from framereel.sheet import caption_font, contact_sheet
from framereel.video import stitch


def cli(*args, **kw):
    """The real command line, in this process (cheap: no interpreter start, no torch import)."""
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def one_line_error(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def frames_folder(out: Path, sizes=((64, 64),) * 3) -> Path:
    (out / "frames").mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        im = Image.new("RGB", size, (30, 30, 30))
        ImageDraw.Draw(im).ellipse((size[0] // 2 - 24, size[1] // 2 - 24, size[0] // 2 + 24, size[1] // 2 + 24),
                                   fill=(250, 250, 250))
        im.save(out / "frames" / f"frame_{i:03d}.png")
    return out


@pytest.fixture()
def board(tmp_path):
    return write_storyboard(tmp_path / "p.json", [{"prompt": "a red circle"}, {"prompt": "a blue square"}])


# ---------------------------------------------------------------- 1, 2, 9: options checked before anything runs


@pytest.mark.parametrize("extra, needles", [
    (["--video", "v.avi"], ["--video", "unknown video format .avi"]),
    (["--crf", "-5"], ["--crf -5", "0 (best) to 51"]),
    (["--crf", "100"], ["--crf 100"]),
    (["--video", "v.webm", "--crf", "64"], ["--crf 64", "libvpx-vp9 takes 0 (best) to 63"]),
    (["--codec", "nosuch"], ["--codec nosuch", "no such video encoder"]),
    (["--audio", "p.json"], ["--audio", "not a sound file"]),
    (["--audio", "missing.mp3"], ["--audio", "no such file"]),
    (["--size", "100000x100000"], ["--size 100000x100000", "8192"]),
    (["--fps", "0"], ["--fps 0"]),
    (["--fps", "nan"], ["--fps nan"]),
    (["--crossfade", "nan", "--transition", "crossfade"], ["--crossfade nan"]),
    (["--seed", "-1"], ["--seed must be an integer from 0"]),
    (["--workers", "0"], ["--workers 0"]),
    (["--model", "p.json"], ["--model p.json", "not a model"]),
    (["--device", "nonsense"], ["--device nonsense: use auto, cpu"]),
    (["--device", "cuda:7"], ["--device cuda:7"]),
    (["--dtype", "f8"], ["--dtype f8"]),
    (["--scheduler", "nonsense"], ['unknown scheduler "nonsense"; choose one of']),
    (["--tiny-vae", "/no/such/vae"], ["--tiny-vae /no/such/vae: no such folder"]),
    (["--executor", "ray", "--ray-address", "bogus"], ["--ray-address bogus"]),
    (["--width", "100000"], ["--width must be a multiple of 8 from 64 to 4096"]),
    (["--model", "./no/such/model"], ["no such model folder or file"]),
])
def test_make_refuses_bad_options_before_creating_anything(tmp_path, board, monkeypatch, extra, needles):
    monkeypatch.chdir(tmp_path)
    result = cli("make", board, "-o", "out", "--model", "demo", *extra)
    one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()  # no folder, no lock, no model loaded


def test_a_fake_checkpoint_is_one_line(tmp_path, board):
    fake = tmp_path / "model.safetensors"
    fake.write_text("this is not a checkpoint")
    one_line_error(cli("make", board, "-o", tmp_path / "out", "--model", fake), "not a .safetensors checkpoint")
    folder = tmp_path / "notamodel"
    folder.mkdir()
    one_line_error(cli("frames", board, "-o", tmp_path / "out", "--model", folder), "no model_index.json")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("index, needle", [
    ("[]", "model_index.json holds a JSON list, not the object naming the pipeline"),
    ('"StableDiffusionPipeline"', "model_index.json holds a JSON string"),
    ("{not json", "model_index.json is not valid JSON"),
    ('{"unet": ["diffusers", "UNet2DConditionModel"]}', 'model_index.json names no pipeline (no "_class_name")'),
])
def test_a_broken_model_index_is_named_by_the_dry_run_the_run_and_doctor(tmp_path, board, index, needle):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(index)
    for command in (("make", board, "--dry-run"), ("frames", board)):
        one_line_error(cli(*command, "-o", tmp_path / "out", "--model", folder), f"{folder}: {needle}")
        assert not (tmp_path / "out").exists()
    doctor = json.loads(cli("doctor", "--json", "--model", folder).stdout)
    assert doctor["model"]["ok"] is False and needle in doctor["model"]["detail"]


def test_a_model_folder_without_its_weights_says_what_is_missing(tmp_path, board, tiny_model):
    only_index = tmp_path / "only-index"
    only_index.mkdir()
    shutil.copy(tiny_model / "model_index.json", only_index)
    no_unet = tmp_path / "no-unet"
    shutil.copytree(tiny_model, no_unet)
    for weights in (no_unet / "unet").glob("*.safetensors"):
        weights.unlink()
    for folder, needle in ((only_index, "unet/, vae/, text_encoder/, tokenizer/, scheduler/ missing"),
                           (no_unet, "incomplete model folder, unet/ weights missing")):
        for command in (("make", board, "--dry-run"), ("frames", board)):
            one_line_error(cli(*command, "-o", tmp_path / "out", "--model", folder), f"--model {folder}", needle)
            assert not (tmp_path / "out").exists()
        doctor = json.loads(cli("doctor", "--json", "--model", folder).stdout)
        assert doctor["model"]["ok"] is False and needle in doctor["model"]["detail"]
        assert "gpu memory" not in doctor  # no "weights 0.0 GiB" for a model that has none


def test_a_run_refused_before_its_first_frame_leaves_a_new_folder_as_it_found_it(tmp_path, board, tiny_model):
    broken = tmp_path / "broken"  # complete on disk, but its UNet's weights don't load
    shutil.copytree(tiny_model, broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not weights")

    def refused(out):
        result = cli("make", board, "-o", out, "--model", broken, "--steps", 2)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert result.stderr.strip().splitlines()[-1].startswith("error: could not load the model"), result.stderr

    refused(tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()  # no lock, run.json, frames/ or gallery page; not even the parent
    kept = tmp_path / "kept"  # a folder that was there keeps what it held
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    refused(kept)
    assert (kept / "notes.txt").read_text() == "mine"


def test_undoing_a_new_folder_keeps_frames_and_what_the_run_did_not_write(tmp_path):
    from framereel.manifest import missing_folders, undo_new_folder

    out = tmp_path / "a" / "b"
    made = missing_folders(out)
    assert made == [out, tmp_path / "a"]
    frames_folder(out, sizes=((64, 64),))
    (out / "run.json").write_text("{}")
    undo_new_folder(made)
    assert (out / "frames" / "frame_000.png").exists() and (out / "run.json").exists()  # a frame: all stays
    (out / "frames" / "frame_000.png").unlink()
    (out / "other.txt").write_text("not the run's")
    undo_new_folder(made)
    assert not (out / "run.json").exists() and not (out / "frames").exists() and (out / "other.txt").exists()
    (out / "other.txt").unlink()
    undo_new_folder(made)
    assert not (tmp_path / "a").exists() and tmp_path.is_dir()


def test_huge_duration_is_refused_in_the_storyboard(tmp_path):
    path = write_storyboard(tmp_path / "big.json", [{"prompt": "a", "duration": 1e9}])
    with pytest.raises(FramereelError, match='frame 0: "duration" must be a number of seconds greater than 0, at most 3600'):
        load_storyboard(path)


# ---------------------------------------------------------------- 4, 11: bad paths are one line and create nothing


@pytest.mark.parametrize("out, needle", [
    ("/proc/framereel-x", "/proc is a system folder"),
    ("/dev/null", "is not a folder"),
    ("notes.txt/out", "notes.txt is a file"),
])
def test_bad_output_folders_are_one_line(tmp_path, board, monkeypatch, out, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("notes")
    one_line_error(cli("make", board, "-o", out, "--model", "demo"), needle)
    assert (tmp_path / "notes.txt").read_text() == "notes"


def test_stitch_of_a_missing_or_system_folder_creates_nothing(tmp_path):
    one_line_error(cli("stitch", tmp_path / "nodir"), "no such folder")
    assert not (tmp_path / "nodir").exists()
    one_line_error(cli("stitch", "/proc/framereel-x"), "system folder")


@pytest.mark.parametrize("args, needle", [
    (["--frames", "0"], "--frames 0"), (["--steps", "0"], "--steps 0"), (["--size", "100000"], "--size 100000"),
    (["--batches", "0"], "--batches 0: each batch size is a whole number from 1"),
    (["--batches", "1,-2"], "--batches 1,-2"), (["--batches", "1,x"], "--batches 1,x: give whole numbers"),
])
def test_bench_refuses_bad_counts(args, needle):
    one_line_error(cli("bench", *args), needle)


def test_unreadable_frame_is_skipped_with_a_warning_by_stitch_and_sheet(tmp_path):
    out = frames_folder(tmp_path / "out")
    (out / "frames" / "frame_000.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = cli("stitch", out)
    assert result.exit_code == 0, result.output
    assert "do not decode" in result.stderr and "Traceback" not in result.output
    assert probe_video(out / "video.mp4")["frames"] == 2
    result = cli("sheet", out)
    assert result.exit_code == 0 and "warning: frames that do not decode as images: 0" in result.stderr


# ---------------------------------------------------------------- 5, 6: what stitch does with odd frames and fps


def test_a_frame_of_another_shape_is_fitted_not_stretched(tmp_path):
    out = frames_folder(tmp_path / "out", sizes=[(64, 64), (128, 64), (64, 64)])
    events = []
    video = stitch(out, fps=1, on_event=events.append)
    assert any("128x64" in e.message and "without stretching" in e.message for e in events if e.name == "warning")
    wide = probe_video(video)["pixels"][1].astype(int)  # 256×256; the 2:1 frame sits in a 256×128 band
    assert wide[:50].mean() < 5 and wide[-50:].mean() < 5  # dark bars above and below
    row = wide[128, :, 0] > 128  # the circle is as wide as it is tall: ~96 px at this scale
    col = wide[64:192, 128, 0] > 128
    assert abs(int(row.sum()) - int(col.sum())) <= 6


def test_fps_zero_is_refused_like_negative_and_help_says_what_the_default_is(tmp_path):
    out = frames_folder(tmp_path / "out")
    for fps in ("0", "-1", "inf"):
        one_line_error(cli("stitch", out, "--fps", fps), f"--fps {fps}")
    assert "the fps of this folder's last video, else 2" in " ".join(cli("stitch", "--help").output.split())


# ---------------------------------------------------------------- 7: byte-order marks


def test_storyboards_with_a_byte_order_mark(tmp_path):
    js = tmp_path / "bom.json"
    js.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"prompt": "a lighthouse"}]).encode())
    assert load_storyboard(js).frames[0].prompt == "a lighthouse"
    txt = tmp_path / "bom.txt"
    txt.write_bytes("\ufeffa lighthouse\n# a comment\nthe sea\n".encode())
    assert [f.prompt for f in load_storyboard(txt).frames] == ["a lighthouse", "the sea"]


def test_txt_comments_are_documented():
    assert "lines starting with # (comments) are skipped" in " ".join(cli("--help").output.split())


# ---------------------------------------------------------------- 10: contact sheets


def test_sheet_fills_large_cells_writes_the_asked_format_and_draws_accents(tmp_path):
    out = frames_folder(tmp_path / "out", sizes=[(64, 64)] * 2)
    sheet = contact_sheet(out, tmp_path / "s.jpg", thumb=300, columns=2)
    with Image.open(sheet) as im:
        assert im.format == "JPEG"
        cell = np.asarray(im.convert("L"))[4:304, 4:304]
    lit = np.argwhere(cell > 128)  # the circle, 48/64 of the frame: ~225 px wide in a 300 px cell
    assert lit[:, 1].max() - lit[:, 1].min() > 200
    with pytest.raises(FramereelError, match="unknown image format .bmp"):
        contact_sheet(out, tmp_path / "s.bmp")
    font = caption_font(14)

    def drawn(text):
        return bytes(font.getmask(text))

    assert drawn("é") != drawn("\U0010fffd") and drawn("é") != drawn("e")  # a real glyph, not the missing-glyph box


# ---------------------------------------------------------------- also confusing: help, seeds, dry runs


def test_help_does_not_claim_sd_defaults_for_every_model():
    text = " ".join(cli("make", "--help").output.split())
    assert "[default: 25]" not in text and "[default: 7.5]" not in text
    assert "15 for the demo model" in text and "2 for the demo model" in text


def test_seed_minus_one_is_refused_on_the_command_line_as_in_the_file(tmp_path, board):
    in_file = write_storyboard(tmp_path / "s.json", [{"prompt": "a", "seed": -1}])
    with pytest.raises(FramereelError, match='"seed" must be an integer from 0'):
        load_storyboard(in_file)
    with pytest.raises(FramereelError, match="--seed must be an integer from 0"):
        load_storyboard(board, run_seed=-1)


# ---------------------------------------------------------------- with the tiny model


@pytest.fixture(scope="module")
def backend(tiny_model):
    from framereel.backends import create_backend

    return create_backend(RenderSettings(model=str(tiny_model)))


def test_a_renamed_or_copied_storyboard_is_the_same_run(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    first = render(load_storyboard(board, overrides={"steps": 2}), out, RenderSettings(model=str(tiny_model)),
                   backend=backend)
    assert first.rendered == [0, 1]
    copy = tmp_path / "copy.json"
    shutil.copy(board, copy)
    again = render(load_storyboard(copy, overrides={"steps": 2}), out, RenderSettings(model=str(tiny_model)),
                   backend=backend)
    assert again.rendered == [] and again.skipped == [0, 1]
    other = write_storyboard(tmp_path / "other.json", [{"prompt": "something else"}])
    with pytest.raises(FramereelError, match="holds a run of another storyboard"):
        render(load_storyboard(other), out, RenderSettings(model=str(tiny_model)), backend=backend)


def test_dry_run_plans_estimates_and_writes_nothing(tmp_path, board, tiny_model, backend):
    out = tmp_path / "out"
    result = cli("make", board, "-o", out, "--model", tiny_model, "--steps", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "2 frames, 0 already done, 2 to render" in result.stdout and not out.exists()
    render(load_storyboard(board, overrides={"steps": 2}), out, RenderSettings(model=str(tiny_model)),
           backend=backend, only=[0])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = cli("frames", board, "-o", out, "--model", tiny_model, "--steps", "2", "--dry-run", "--json")
    plan = json.loads(result.stdout)
    assert (plan["done"], plan["todo"]) == ([0], [1]) and plan["estimate_seconds"] > 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_interactive_keeps_the_scheduler_of_the_kept_images(tmp_path, tiny_model):
    script = ":scheduler euler\na red circle\n:keep\n:scheduler dpm++\na blue square\n:keep\n:make\n"
    proc = run_cli("interactive", "-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", input=script)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    board = json.loads((out / "storyboard.json").read_text())
    assert board["scheduler"] == "euler" and len(board["frames"]) == 1
    assert "one scheduler" in proc.stderr  # the dpm++ image was not kept silently into an euler storyboard
    euler_image = sorted((out / "interactive").glob("*.png"))[0]
    assert (out / "frames" / "frame_000.png").read_bytes() == euler_image.read_bytes()
    assert Image.open(out / "frames" / "frame_000.png").text["scheduler"] == "euler"
    assert "reused=1" in proc.stdout and "rendered=0" in proc.stdout
    # the saved storyboard renders with its scheduler from the command line too: nothing to redo
    again = run_cli("frames", out / "storyboard.json", "-o", out, "--model", tiny_model, "--json")
    assert json.loads(again.stdout.splitlines()[0])["todo"] == 0, again.stderr


def test_end_of_run_seconds_per_frame_leave_out_model_loading(tmp_path, board, tiny_model):
    proc = run_cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", "2", check=True)
    line = proc.stderr.strip().splitlines()[-1]
    assert "2 rendered" in line and "loading the model)" in line
    total = float(line.split(" in ")[1].split("s ")[0])
    per_frame = float(line.split("(")[1].split("s/frame")[0])
    load = float(line.split("after ")[1].split("s loading")[0])
    assert per_frame == pytest.approx((total - load) / 2, abs=0.06)  # each figure is printed rounded to 0.1 s
    assert per_frame < total / 2 - 0.1  # not the wall time per frame, which includes loading


@pytest.mark.parametrize("args, needle", [
    (["make", "p.json", "--steps", "abc"], "Invalid value for '--steps': 'abc' is not a valid integer"),
    (["make"], "Missing argument 'STORYBOARD'"),
    (["nosuch"], "No such command 'nosuch'"),
    (["make", "p.json", "--batch", "1000"], "--batch"),
])
def test_usage_mistakes_are_one_line_too(args, needle):
    one_line_error(cli(*args), needle, "--help`)")
