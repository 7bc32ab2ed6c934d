"""ControlNets per frame ("control" in a storyboard, --control): tiny random ControlNets built here,
rendered through the tiny SD model and compared with diffusers' ControlNet pipelines called directly."""

import json

import numpy as np
import pytest
from conftest import cli, write_storyboard
from PIL import Image, ImageDraw
from tiny_controlnet import build_tiny_controlnet
from tiny_depth import build_tiny_depth

from framereel import FramereelError, RenderSettings, load_storyboard, render
from framereel.gallery import gallery_data
from framereel.jobs import batch_groups


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Two tiny ControlNets for the tiny model, one made for another text encoder, a tiny depth model,
    two control images and a one-second video."""
    root = tmp_path_factory.mktemp("control")
    build_tiny_controlnet(root / "cn")
    build_tiny_controlnet(root / "cn2", seed=1)
    build_tiny_controlnet(root / "wide", cross_attention_dim=64)
    build_tiny_depth(root / "depth")
    for name, box in (("a.png", (10, 10, 40, 50)), ("b.png", (30, 5, 60, 30))):
        image = Image.new("RGB", (64, 64), "black")
        ImageDraw.Draw(image).rectangle(box, fill="white")
        image.save(root / name)
    _write_video(root / "walk.mp4", seconds=1, fps=4)
    return root


def _write_video(path, seconds: int, fps: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(seconds * fps):
            image = Image.new("RGB", (64, 64), "black")
            ImageDraw.Draw(image).ellipse((4 * i, 8, 4 * i + 24, 40), fill="white")
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def backend(tiny_model):
    from framereel.backends import create_backend

    return create_backend(RenderSettings(model=str(tiny_model), dtype="float32", batch=1))


def _board(kit, frames, defaults=None):
    data = {"defaults": {"steps": 3, **(defaults or {})}, "frames": frames}
    return write_storyboard(kit / f"board{abs(hash(json.dumps(data)))}.json", data)


def _pixels(out, index):
    return np.asarray(Image.open(out / "frames" / f"frame_{index:03d}.png"))


def _canny(path):
    import cv2

    edges = cv2.Canny(np.asarray(Image.open(path).convert("RGB")), 100, 200)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def test_frames_are_what_the_controlnet_pipelines_give_one_or_several(kit, tiny_model, backend, tmp_path):
    import torch
    from diffusers import ControlNetModel, DPMSolverMultistepScheduler, StableDiffusionControlNetPipeline

    board = _board(kit, [
        {"prompt": "a red circle", "control": {"model": "cn", "image": "a.png", "preprocess": "canny", "weight": 0.8}},
        {"prompt": "a blue square", "control": [
            {"model": "cn", "image": "a.png", "end": 0.5}, {"model": "cn2", "image": "b.png", "weight": 1.3}]},
    ])
    render(load_storyboard(board), tmp_path / "out", backend=backend)
    nets = [ControlNetModel.from_pretrained(str(kit / name)) for name in ("cn", "cn2")]
    expected = []
    for i, (prompt, controlnet, call) in enumerate((
        ("a red circle", nets[0], dict(image=_canny(kit / "a.png"), controlnet_conditioning_scale=0.8)),
        ("a blue square", nets, dict(image=[Image.open(kit / "a.png").convert("RGB"),
                                            Image.open(kit / "b.png").convert("RGB")],
                                     controlnet_conditioning_scale=[1.0, 1.3], control_guidance_end=[0.5, 1.0])),
    )):
        pipe = StableDiffusionControlNetPipeline.from_pretrained(str(tiny_model), controlnet=controlnet,
                                                                 safety_checker=None)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
        expected.append(pipe(prompt, num_inference_steps=3, guidance_scale=7.5, width=64, height=64,
                             generator=torch.Generator().manual_seed(174 + i), **call).images[0])
    for i in range(2):
        assert np.array_equal(_pixels(tmp_path / "out", i), np.asarray(expected[i]))


def test_control_images_change_frames_resume_is_exact_and_a_new_image_rerenders_only_its_frame(
        kit, backend, tmp_path):
    (tmp_path / "edges.png").write_bytes((kit / "a.png").read_bytes())
    frames = [
        {"prompt": "x", "seed": 1},
        {"prompt": "x", "seed": 1, "control": {"model": str(kit / "cn"), "image": "edges.png"}},
        {"prompt": "x", "seed": 1, "control": {"model": str(kit / "cn"), "image": str(kit / "b.png")}},
        {"prompt": "x", "seed": 1, "control": {"model": str(kit / "cn"), "image": str(kit / "b.png"),
                                               "preprocess": "depth", "depth_model": str(kit / "depth")}},
        {"prompt": "x", "seed": 1, "control": {"model": str(kit / "cn"), "image": f"video:{kit / 'walk.mp4'}@0.5"}},
    ]
    board = write_storyboard(tmp_path / "board.json", {"defaults": {"steps": 3}, "frames": frames})
    out = tmp_path / "out"
    render(load_storyboard(board), out, backend=backend)
    images = [_pixels(out, i) for i in range(5)]
    assert all(not np.array_equal(images[i], images[j]) for i in range(5) for j in range(i))
    shown = gallery_data(out)["frames"]  # the gallery shows each map beside its frame
    assert shown[0]["control"] == [] and shown[3]["control"][0]["preprocess"] == "depth"
    assert np.array_equal(np.asarray(Image.open(out / shown[2]["control"][0]["file"])),
                          np.asarray(Image.open(kit / "b.png").convert("RGB")))  # "none": the image as it is
    before = {p.name: p.read_bytes() for p in (out / "frames").glob("*.png")}
    assert render(load_storyboard(board), out, backend=backend).rendered == []
    (tmp_path / "edges.png").write_bytes((kit / "b.png").read_bytes())
    again = render(load_storyboard(board), out, backend=backend)
    assert again.rendered == [1]
    assert np.array_equal(_pixels(out, 1), images[2])  # the same image gives the same frame
    assert all((out / "frames" / name).read_bytes() == data for name, data in before.items() if name != "frame_001.png")


def test_frames_share_a_call_only_with_the_same_controlnets_and_weights(kit, tiny_model, tmp_path):
    cn = {"model": str(kit / "cn"), "image": str(kit / "a.png")}
    frames = [{"prompt": "x", "control": cn}, {"prompt": "y", "control": {**cn, "image": str(kit / "b.png")}},
              {"prompt": "z", "control": {**cn, "weight": 0.5}}, {"prompt": "w"}, {"prompt": "v"}]
    board = write_storyboard(tmp_path / "board.json", {"defaults": {"steps": 3, "width": 64, "height": 64},
                                                       "frames": frames})
    storyboard = load_storyboard(board)
    assert [[f.index for f in g] for g in batch_groups(list(storyboard.frames), 4)] == [[0, 1], [2], [3, 4]]
    settings = RenderSettings(model=str(tiny_model), dtype="float32", batch=2)
    render(storyboard, tmp_path / "all", settings)
    render(storyboard, tmp_path / "one", settings, only=[1])
    assert (tmp_path / "one" / "frames" / "frame_001.png").read_bytes() == (
        tmp_path / "all" / "frames" / "frame_001.png").read_bytes()


def test_storyboard_control_keys(kit):
    board = _board(kit, ["a", {"prompt": "b", "control": []}, "c"],
                   {"control": {"model": "owner/canny", "image": "a.png", "weight": "0:(1.0), 2:(0.5)"}})
    frames = load_storyboard(board).frames
    assert [f.control[0].weight if f.control else None for f in frames] == [1.0, None, 0.5]
    assert frames[0].control[0].image == str(kit / "a.png") and frames[0].control[0].model == "owner/canny"
    video = {"model": "owner/canny", "image": "video:walk.mp4"}  # a morph's in-betweens: each its own moment
    morph = load_storyboard(_board(kit, [{"prompt": "a", "morph": 2, "control": video},
                                         {"prompt": "b", "control": {**video, "weight": 0.4}}], {"duration": 0.25}))
    assert [(f.control[0].video[1], f.control[0].weight) for f in morph.frames] == [
        (0, 1.0), (0.25, 0.8), (0.5, 0.6), (0.75, 0.4)]


@pytest.mark.parametrize("control, message", [
    ({"model": "cn", "image": "missing.png"}, 'frame 1: "control": "image": missing.png: no such file'),
    ({"model": "cn", "image": "a.png", "preprocess": "openpose"}, "make the openpose map yourself"),
    ({"model": "cn", "image": "a.png", "wieght": 1}, 'did you mean "weight"'),
    ({"model": "cn", "image": "a.png", "start": 0.6, "end": 0.5}, '"start" (0.6) must be before "end" (0.5)'),
    ({"model": "cn", "image": "video:walk.mp4@soon"}, 'write a video frame as "video:PATH@SECONDS"'),
])
def test_storyboard_refusals(kit, control, message):
    with pytest.raises(FramereelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_storyboard(_board(kit, ["a", {"prompt": "b", "control": control}]))


@pytest.mark.parametrize("frames, message", [
    ([{"prompt": "a", "control": {"model": "wide", "image": "a.png"}}],
     'frame 0: "control" model .*wide: a ControlNet made for a 64-wide text encoder, but the model is SD 1.x'),
    (["a", "b", {"prompt": "c", "control": {"model": "cn", "image": "video:walk.mp4@1.5"}}],
     r'frame 2: "control" image: walk.mp4 is 1s long, shorter than the film: no frame at 1.5s'),
    (["a", {"prompt": "b", "control": {"model": "cn", "image": "a.png", "preprocess": "depth"}}],
     r'frame 1: "control": "preprocess": "depth" needs "depth_model".*: a depth-estimation model folder or Hub id'),
    (["a", {"prompt": "b", "control": {"model": "cn", "image": "a.png", "preprocess": "depth", "depth_model": "cn"}}],
     r'^error: frame 1: "control" "depth_model" \S+/cn: not a transformers depth-estimation model \(ControlNetModel\)'),
    (["a", {"prompt": "b", "control": {"model": "cn", "image": "a.png", "preprocess": "depth", "depth_model": "./gone"}}],
     r'^error: frame 1: "control" "depth_model" \S+/gone: no such folder; pass a local depth-estimation model folder'),
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_run_refusals_are_one_line_also_in_a_dry_run(kit, tiny_model, tmp_path, frames, message, dry_run):
    board = _board(kit, frames)
    result = cli("frames", board, "--model", tiny_model, "-o", tmp_path / "out", *(["--dry-run"] if dry_run else []))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    import re

    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out" / "frames").exists() or not list((tmp_path / "out" / "frames").iterdir())


def test_control_flag_steers_every_frame_a_frames_own_wins(kit, tiny_model, tmp_path):
    board = _board(kit, ["a", {"prompt": "b", "control": []}])
    flag = json.dumps({"model": str(kit / "cn"), "image": str(kit / "a.png"), "preprocess": "canny"})
    result = cli("frames", board, "--model", tiny_model, "-o", tmp_path / "out", "--control", flag, "--dry-run")
    assert result.returncode == 0, result.stderr
    frames = load_storyboard(board, overrides={"control": json.loads(f"[{flag}]")}).frames
    assert frames[0].control[0].preprocess == "canny" and frames[1].control is None
    bad = cli("frames", board, "--model", tiny_model, "--control", "{model", "--dry-run")
    assert bad.returncode == 2 and "--control {model: not JSON" in bad.stderr


def test_previous_frames_chains_morphs_and_a_source_video(kit, tiny_model, backend, tmp_path):
    import torch
    from diffusers import ControlNetModel, DPMSolverMultistepScheduler, StableDiffusionControlNetImg2ImgPipeline

    cn = str(kit / "cn")
    board = write_storyboard(tmp_path / "board.json", {"defaults": {"steps": 3}, "frames": [
        {"prompt": "a", "morph": 1, "control": {"model": cn, "image": str(kit / "a.png")}},
        {"prompt": "b", "control": {"model": cn, "image": str(kit / "a.png"), "weight": 0.5}},
        {"prompt": "c", "control": {"model": cn, "image": "previous", "preprocess": "canny"}},
        {"prompt": "d", "init": "previous", "strength": 0.6, "control": {"model": cn, "image": str(kit / "b.png")}},
        {"prompt": "e", "control": {"model": cn, "image": str(kit / "walk.mp4").join(("video:", ""))}},
    ]})
    storyboard = load_storyboard(board, fps=8)
    frames = storyboard.frames
    assert frames[1].kind == "morph" and frames[1].control[0].weight == 0.75  # halfway from 1.0 to 0.5
    assert [f.depends_on for f in frames] == [None, None, None, 2, 3, None]
    assert frames[5].control[0].video == (str(kit / "walk.mp4"), 5 / 8)  # its time in the film at 8 fps
    out = tmp_path / "out"
    assert render(storyboard, out, backend=backend).rendered == [0, 1, 2, 3, 4, 5]
    assert render(storyboard, out, backend=backend, redo=[2]).rendered == [2, 3, 4]  # what starts from it follows
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
        str(tiny_model), controlnet=ControlNetModel.from_pretrained(cn), safety_checker=None)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    seed = int(Image.open(out / "frames" / "frame_004.png").text["seed"])
    expected = pipe("d", image=Image.open(out / "frames" / "frame_003.png").convert("RGB"),
                    control_image=Image.open(kit / "b.png").convert("RGB"), strength=0.6, num_inference_steps=3,
                    guidance_scale=7.5, controlnet_conditioning_scale=1.0,
                    generator=torch.Generator().manual_seed(seed)).images[0]
    assert np.array_equal(_pixels(out, 4), np.asarray(expected))


def test_a_cadence_blocks_diffused_frame_is_steered_by_the_frame_before_it(kit, backend, tmp_path):
    previous = {"model": str(kit / "cn"), "image": "previous", "preprocess": "canny"}
    board = write_storyboard(tmp_path / "board.json", {
        "defaults": {"steps": 3, "init": "previous", "strength": 0.5, "cadence": 2, "motion": {"zoom": 1.1},
                     "control": previous}, "frames": [{"prompt": "a", "control": []}, "b", "c", "d"]})
    storyboard = load_storyboard(board)
    assert storyboard.frames[2].cadence == (2, 2)  # the second block's diffused frame: frame 1 is rendered before it
    out = tmp_path / "out"
    assert render(storyboard, out, backend=backend).rendered == [0, 1, 2, 3]
    steered = np.asarray(Image.open(out / "control" / "frame_002_0.png").convert("RGB"))
    assert np.array_equal(steered, np.asarray(_canny(out / "frames" / "frame_001.png")))


def test_control_video_flag_samples_a_source_video_at_the_films_fps(kit, tiny_model, tmp_path):
    board = _board(kit, ["a", "b", "c"])
    flag = json.dumps({"model": str(kit / "cn"), "preprocess": "canny"})
    args = ("make", board, "--model", tiny_model, "-o", tmp_path / "out", "--control", flag, "--dry-run")
    assert cli(*args, "--control-video", kit / "walk.mp4", "--fps", "4").returncode == 0
    short = cli(*args, "--control-video", kit / "walk.mp4", "--fps", "2")  # frame 2 at 1 s: past its end
    assert short.returncode == 2 and "frame 2: \"control\" image: walk.mp4 is 1s long" in short.stderr
    alone = cli("frames", board, "--model", tiny_model, "--control-video", kit / "walk.mp4", "--dry-run")
    assert alone.returncode == 2 and "--control-video" in alone.stderr and "needs --control" in alone.stderr


def test_a_video_frame_is_the_one_shown_at_that_time(kit):
    from framereel.backends.animatediff import read_video
    from framereel.backends.controlnet import video_frame

    decoded = read_video(str(kit / "walk.mp4"), 4, 64, 64)  # its 4 frames, at 0, 0.25, 0.5 and 0.75 s
    for seconds, index in ((0, 0), (0.24, 0), (0.25, 1), (0.7, 2), (0.99, 3)):
        assert np.array_equal(np.asarray(video_frame(str(kit / "walk.mp4"), seconds, "x")), np.asarray(decoded[index]))


def test_sdxl_frames_are_what_the_sdxl_controlnet_pipeline_gives_and_families_dont_mix(kit, tiny_model, tmp_path):
    import torch
    from diffusers import ControlNetModel, DPMSolverMultistepScheduler, StableDiffusionXLControlNetPipeline
    from tiny_families import build_family

    sdxl, sdxl_cn = build_family("sdxl", tmp_path / "sdxl"), build_tiny_controlnet(tmp_path / "sdxl-cn", sdxl=True)
    board = write_storyboard(tmp_path / "board.json", {"defaults": {"steps": 3, "width": 64, "height": 64}, "frames": [
        {"prompt": "a red circle", "control": {"model": str(sdxl_cn), "image": str(kit / "a.png"), "weight": 0.9}}]})
    out = tmp_path / "out"
    render(load_storyboard(board), out, RenderSettings(model=str(sdxl), dtype="float32", batch=1))
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(str(sdxl), controlnet=ControlNetModel.from_pretrained(
        str(sdxl_cn)))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    expected = pipe("a red circle", image=Image.open(kit / "a.png").convert("RGB"), controlnet_conditioning_scale=0.9,
                    num_inference_steps=3, guidance_scale=5.0, width=64, height=64,
                    generator=torch.Generator().manual_seed(174)).images[0]
    assert np.array_equal(_pixels(out, 0), np.asarray(expected))
    for model, net, made_for in ((sdxl, kit / "cn", "a 32-wide text encoder, but the model is SDXL"),
                                 (tiny_model, sdxl_cn, "SDXL, but the model is SD 1.x")):
        board = _board(kit, [{"prompt": "a", "control": {"model": str(net), "image": "a.png"}}])
        result = cli("frames", board, "--model", model, "-o", tmp_path / "refused", "--dry-run")
        assert result.returncode == 2 and f"a ControlNet made for {made_for}" in result.stderr


@pytest.mark.parametrize("family", ["sd3", "flux-schnell"])
def test_sd3_and_flux_frames_are_what_their_controlnet_pipelines_give(kit, family, tmp_path):
    import diffusers
    import torch
    from tiny_controlnet import build_tiny_transformer_controlnet
    from tiny_families import build_family

    from framereel.backends.controlnet import seeded_global_rng

    kind = family.split("-")[0]
    model, net = build_family(family, tmp_path / family), build_tiny_transformer_controlnet(tmp_path / "cn", kind)
    guidance = 0.0 if kind == "flux" else 7.0
    control = {"model": str(net), "image": str(kit / "a.png"), "weight": 0.7}
    frames = [{"prompt": "a red circle", "control": control}, {"prompt": "b", "init": "previous", "control": control}]
    defaults = {"steps": 2, "guidance": guidance, "width": 64, "height": 64}
    board = write_storyboard(tmp_path / "board.json", {"defaults": defaults, "frames": frames})
    settings, out = RenderSettings(model=str(model), dtype="float32", batch=1), tmp_path / "out"
    if kind == "sd3":  # diffusers has no SD 3 ControlNet img2img: refused before anything renders
        with pytest.raises(FramereelError, match='frame 1: "control" on a chained frame: diffusers has no ControlNet'):
            render(load_storyboard(board), out, settings)
        board = write_storyboard(tmp_path / "board.json", {"defaults": defaults, "frames": frames[:1]})
    assert render(load_storyboard(board), out, settings).rendered == ([0] if kind == "sd3" else [0, 1])
    cls = getattr(diffusers, "StableDiffusion3ControlNetPipeline" if kind == "sd3" else "FluxControlNetPipeline")
    net_cls = getattr(diffusers, "SD3ControlNetModel" if kind == "sd3" else "FluxControlNetModel")
    pipe = cls.from_pretrained(str(model), controlnet=net_cls.from_pretrained(str(net)))
    with seeded_global_rng(174):
        expected = pipe("a red circle", control_image=Image.open(kit / "a.png").convert("RGB"),
                        controlnet_conditioning_scale=0.7, num_inference_steps=2, guidance_scale=guidance, width=64,
                        height=64, max_sequence_length=256, generator=torch.Generator().manual_seed(174)).images[0]
    assert np.array_equal(_pixels(out, 0), np.asarray(expected))


def test_the_example_storyboard_renders_offline_with_a_tiny_controlnet(tiny_model, tmp_path):
    import shutil
    from pathlib import Path

    from conftest import probe_video

    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("control.json", "control-lighthouse.png", "control-walk.mp4"):
        shutil.copy(examples / name, tmp_path / name)
    build_tiny_controlnet(tmp_path / "models" / "sd-controlnet-canny")
    out = tmp_path / "out"
    cli("make", tmp_path / "control.json", "--model", tiny_model, "--steps", "3", "-o", out, "--quiet", check=True)
    run = json.loads((out / "run.json").read_text())
    assert [f["kind"] for f in run["frames"]] == ["key", "morph", "morph", "key", "chain", "key", "key", "key"]
    assert all(len(f["control_maps"]) == 1 and (out / f["control_maps"][0]).is_file() for f in run["frames"])
    assert probe_video(out / "video.mp4")["seconds"] == pytest.approx(2.0, abs=0.1)  # 8 frames of 0.25 s


def test_a_clip_follows_a_source_video_as_animatediff_controlnet_pipeline_does(kit, tiny_model, tmp_path):
    import torch
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel, DPMSolverMultistepScheduler, MotionAdapter
    from tiny_motion import build_tiny_motion_adapter

    adapter = build_tiny_motion_adapter(tmp_path / "adapter")
    control = {"model": str(kit / "cn"), "image": f"video:{kit / 'walk.mp4'}", "weight": 0.8}
    board = write_storyboard(tmp_path / "board.json", {"defaults": {"steps": 2, "duration": 0.25}, "frames": [
        {"prompt": "a dancer", "clip": 4, "seed": 7, "control": control}]})
    out = tmp_path / "out"
    settings = RenderSettings(model=str(tiny_model), dtype="float32", motion_adapter=str(adapter))
    assert render(load_storyboard(board), out, settings).rendered == [0, 1, 2, 3]
    pipe = AnimateDiffControlNetPipeline.from_pretrained(
        str(tiny_model), motion_adapter=MotionAdapter.from_pretrained(str(adapter)),
        controlnet=ControlNetModel.from_pretrained(str(kit / "cn")))
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, algorithm_type="dpmsolver++")
    from framereel.backends.animatediff import read_video

    video = read_video(str(kit / "walk.mp4"), 4, 64, 64)  # its frames at 0, 0.25, 0.5, 0.75 s: the clip's times
    direct = pipe("a dancer", num_frames=4, conditioning_frames=video, controlnet_conditioning_scale=0.8,
                  num_inference_steps=2, guidance_scale=7.5, width=64, height=64, decode_chunk_size=4,
                  generator=torch.Generator("cpu").manual_seed(7)).frames[0]
    for i, image in enumerate(direct):
        assert np.array_equal(_pixels(out, i), np.asarray(image)), f"frame {i}"
    shown = gallery_data(out)["frames"]
    assert all(len(f["control"]) == 1 for f in shown)


def test_make_help_says_depth_model_also_serves_depth_control_maps():
    text = " ".join(cli("make", "--help").stdout.split())
    depth = text[text.index("--depth-model PATH|HUB_ID"):text.index("--devices")]
    assert '"preprocess": "depth"' in depth and '"mode": "3D"' in depth
