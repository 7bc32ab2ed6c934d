"""SDXL's refiner (``--refiner``) and per-frame LoRAs (a storyboard frame's ``"lora"``), with tiny
random-weight models loaded through ``--model PATH`` the way a user's are, checked against
diffusers' own pipelines called directly with the same seeds."""

import io
import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import cli, write_storyboard
from PIL import Image
from tiny_families import build_family, build_tiny_refiner

from framereel import FramereelError, RenderSettings, load_storyboard, render

STEPS = 4


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    root = tmp_path_factory.mktemp("refiner")
    return build_family("sdxl", root / "sdxl"), build_tiny_refiner(root / "sdxl-refiner")


def pixels(path_or_image):
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"))


def frame_files(out):
    return {p.name: p.read_bytes() for p in sorted((out / "frames").glob("*.png"))}


def diffusers_base_and_refiner(base_dir, refiner_dir, scheduler):
    """Base + refiner as diffusers' docs set them up: the refiner shares text_encoder_2 and the VAE."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from framereel.backends.diffusers_backend import make_scheduler

    base = StableDiffusionXLPipeline.from_pretrained(str(base_dir), torch_dtype=torch.float32)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        str(refiner_dir), text_encoder_2=base.text_encoder_2, vae=base.vae, torch_dtype=torch.float32)
    for pipe in (base, refiner):
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
    return base, refiner


def test_sdxl_refiner_matches_diffusers_base_plus_refiner_resumes_and_is_in_the_hash(sdxl, tmp_path):
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline

    base_dir, refiner_dir = sdxl
    board = write_storyboard(tmp_path / "board.json", [
        {"prompt": "a red circle", "morph": 1}, {"prompt": "a blue square"},
        {"prompt": "a blue square at night", "init": "previous", "strength": 0.5},
        {"prompt": "a blue square at dawn", "init": "previous", "strength": 0.15, "steps": 8}])
    out = tmp_path / "out"
    args = ("frames", board, "-o", out, "--model", base_dir, "--refiner", refiner_dir, "--steps", STEPS,
            "--dtype", "float32", "--device", "cpu", "--batch", "1", "--quiet")
    cli(*args, check=True)
    run = json.loads((out / "run.json").read_text())
    assert run["refiner"] == {"id": str(refiner_dir.resolve()), "switch": 0.8}
    assert all(f["params"]["refiner"]["switch"] == 0.8 for f in run["frames"])
    first = frame_files(out)
    assert len(first) == 5

    # every kind of frame equals diffusers' base (denoising_end) + refiner (denoising_start)
    base, refiner = diffusers_base_and_refiner(base_dir, refiner_dir, run["scheduler"])
    img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(base, torch_dtype=torch.float32)
    p = {f["index"]: f["params"] for f in run["frames"]}
    common = dict(guidance_scale=p[0]["guidance"])
    g = torch.Generator("cpu").manual_seed(p[0]["seed"])
    latents = base(prompt=p[0]["prompt"], num_inference_steps=STEPS, width=64, height=64, generator=g,
                   denoising_end=0.8, output_type="latent", **common).images
    key = refiner(prompt=p[0]["prompt"], image=latents, num_inference_steps=STEPS, denoising_start=0.8, generator=g,
                  **common).images[0]
    assert np.array_equal(pixels(out / "frames" / "frame_000.png"), pixels(key))
    parent = Image.open(out / "frames" / "frame_002.png").convert("RGB")
    g = torch.Generator("cpu").manual_seed(p[3]["seed"])
    latents = img2img(prompt=p[3]["prompt"], image=parent, strength=0.5, num_inference_steps=STEPS, generator=g,
                      denoising_end=0.8, output_type="latent", **common).images
    chained = refiner(prompt=p[3]["prompt"], image=latents, num_inference_steps=STEPS, denoising_start=0.8,
                      generator=g, **common).images[0]
    assert np.array_equal(pixels(out / "frames" / "frame_003.png"), pixels(chained))
    # strength 0.15 of 8 steps (the last one, t=112) lies past the switch (t=200): the refiner alone runs it
    parent = Image.open(out / "frames" / "frame_003.png").convert("RGB")
    late = refiner(prompt=p[4]["prompt"], image=parent, strength=0.15, num_inference_steps=8,
                   generator=torch.Generator("cpu").manual_seed(p[4]["seed"]), **common).images[0]
    assert np.array_equal(pixels(out / "frames" / "frame_004.png"), pixels(late))

    # resume: nothing re-rendered; another switch point: every frame again; batching gives the same frames
    settings = RenderSettings(model=str(base_dir), refiner=str(refiner_dir), dtype="float32", device="cpu", batch=1)
    again = render(load_storyboard(board, overrides={"steps": STEPS}), out, settings)
    assert again.rendered == [] and frame_files(out) == first
    switched = render(load_storyboard(board, overrides={"steps": STEPS}), out,
                      replace(settings, refiner_switch=0.7))
    assert switched.rendered == [0, 1, 2, 3, 4] and frame_files(out) != first
    batched = render(load_storyboard(board, overrides={"steps": STEPS}), tmp_path / "batched",
                     replace(settings, batch=2))
    assert batched.rendered == [0, 1, 2, 3, 4] and not batched.failed
    for name in ("frame_000.png", "frame_001.png", "frame_002.png"):  # key, morph, key: two calls of two rows
        diff = pixels(tmp_path / "batched" / "frames" / name).astype(int) - pixels(Image.open(
            io.BytesIO(first[name]))).astype(int)
        assert np.abs(diff).max() <= 2


def test_refiner_refusals_are_one_line_before_anything_renders(sdxl, tiny_model, tmp_path):
    base_dir, refiner_dir = sdxl
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle"}])
    cases = [
        (("--model", tiny_model, "--refiner", refiner_dir), "a refiner finishes an SDXL base model's frames; "
                                                             "this model is SD 1.x"),
        (("--model", base_dir, "--refiner", tiny_model), "model_index.json says StableDiffusionPipeline, not an SDXL "
                                                         "refiner"),
        (("--model", base_dir, "--refiner", tmp_path / "nowhere"), "no such folder or file"),
        (("--model", base_dir, "--refiner", refiner_dir, "--refiner-switch", "1.5"), "give a fraction between 0 and 1"),
    ]
    for extra, message in cases:
        proc = cli("frames", board, "-o", tmp_path / "out", "--device", "cpu", "--steps", 2, *extra)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not list((tmp_path / "out").glob("frames/*.png"))
    turbo = build_family("sd-turbo", tmp_path / "turbo")
    with pytest.raises(FramereelError, match="SD-Turbo"):
        render(load_storyboard(board), tmp_path / "t", RenderSettings(model=str(turbo), refiner=str(refiner_dir)))
    doctor = json.loads(cli("doctor", "--json", "--model", base_dir, "--refiner", refiner_dir, check=True).stdout)
    assert doctor["refiner"]["detail"].startswith(str(refiner_dir.resolve()))
