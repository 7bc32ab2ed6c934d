"""SDXL's refiner (``--refiner``) and per-frame LoRAs (a storyboard frame's ``"lora"``), with tiny
random-weight models loaded through ``--model PATH`` the way a user's are, checked against
diffusers' own pipelines called directly with the same seeds."""

import io
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import cli, frames_bytes, write_storyboard
from PIL import Image
from tiny_families import build_family, build_tiny_lora, build_tiny_refiner

from framereel import FramereelError, Parallelism, RenderSettings, load_storyboard, render

STEPS = 4


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    root = tmp_path_factory.mktemp("refiner")
    return build_family("sdxl", root / "sdxl"), build_tiny_refiner(root / "sdxl-refiner")


def pixels(path_or_image):
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"))



def diffusers_base_and_refiner(base_dir, refiner_dir, scheduler):
    """Base + refiner as diffusers' docs set them up: the refiner shares text_encoder_2 and the VAE."""
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from framereel.backends.common import make_scheduler

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
    first = frames_bytes(out)
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
    assert again.rendered == [] and frames_bytes(out) == first
    switched = render(load_storyboard(board, overrides={"steps": STEPS}), out,
                      replace(settings, refiner_switch=0.7))
    assert switched.rendered == [0, 1, 2, 3, 4] and frames_bytes(out) != first
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
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "model_index.json").write_text("[]")
    partial = tmp_path / "partial"
    shutil.copytree(refiner_dir, partial)
    for weights in (partial / "unet").glob("*.safetensors"):
        weights.unlink()
    cases = [
        (("--model", tiny_model, "--refiner", refiner_dir), "a refiner finishes an SDXL base model's frames; "
                                                             "this model is SD 1.x"),
        (("--model", base_dir, "--refiner", tiny_model), "model_index.json says StableDiffusionPipeline, not an SDXL "
                                                         "refiner"),
        (("--model", base_dir, "--refiner", tmp_path / "nowhere"), "no such folder or file"),
        (("--model", base_dir, "--refiner", listed), "model_index.json holds a JSON list, not the object"),
        (("--model", base_dir, "--refiner", partial), "incomplete model folder, unet/ weights missing"),
        (("--model", base_dir, "--refiner", refiner_dir, "--refiner-switch", "1.5"), "give a fraction between 0 and 1"),
        (("--model", base_dir, "--refiner-switch", "0.7"), "--refiner-switch needs --refiner"),
        (("--model", refiner_dir), f"pass it as --refiner {refiner_dir} with an SDXL base as --model"),
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


# ------------------------------------------------------------------ a frame's own "lora"


def diffusers_sd(model_dir, scheduler, lora=None, weight=1.0):
    import torch
    from diffusers import StableDiffusionPipeline

    from framereel.backends.common import make_scheduler

    pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="style")
        pipe.set_adapters(["style"], adapter_weights=[weight])
    return pipe


def sd_frame(pipe, params):
    import torch

    return pipe(prompt=params["prompt"], num_inference_steps=params["steps"], guidance_scale=params["guidance"],
                width=params["width"], height=params["height"],
                generator=torch.Generator("cpu").manual_seed(params["seed"])).images[0]


def test_a_frames_own_lora_renders_as_diffusers_with_it_set_and_only_that_frame_rerenders(tiny_model, tmp_path):
    lora = build_tiny_lora(tmp_path / "style")
    frames = [{"prompt": "a red circle", "lora": f"{lora}:0.8"}, {"prompt": "a blue square"}]
    board = write_storyboard(tmp_path / "board.json", frames)
    out = tmp_path / "out"
    args = ("--model", tiny_model, "--steps", 2, "--dtype", "float32", "--device", "cpu", "--quiet")
    cli("frames", board, "-o", out, "--batch", "1", *args, check=True)
    run = json.loads((out / "run.json").read_text())
    p = {f["index"]: f["params"] for f in run["frames"]}
    assert p[0]["lora"][0][1] == 0.8 and "lora" not in p[1]
    styled, plain = diffusers_sd(tiny_model, run["scheduler"], lora, 0.8), diffusers_sd(tiny_model, run["scheduler"])
    assert np.array_equal(pixels(out / "frames" / "frame_000.png"), pixels(sd_frame(styled, p[0])))
    assert np.array_equal(pixels(out / "frames" / "frame_001.png"), pixels(sd_frame(plain, p[1])))
    first = frames_bytes(out)

    settings = RenderSettings(model=str(tiny_model), dtype="float32", device="cpu", batch=1)
    again = render(load_storyboard(board, overrides={"steps": 2}), out, settings)
    assert again.rendered == [] and frames_bytes(out) == first
    frames[0]["lora"] = f"{lora}:0.5"  # one frame's weight changes: that frame alone renders again
    write_storyboard(board, frames)
    changed = render(load_storyboard(board, overrides={"steps": 2}), out, settings)
    assert changed.rendered == [0] and frames_bytes(out)["frame_001.png"] == first["frame_001.png"]
    assert frames_bytes(out)["frame_000.png"] != first["frame_000.png"]

    # batched, frames with other LoRAs never share a call: the same frames as one at a time
    batched = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "batched",
                     replace(settings, batch=2))
    assert batched.rendered == [0, 1]
    for name in ("frame_000.png", "frame_001.png"):
        diff = pixels(tmp_path / "batched" / "frames" / name).astype(int) - pixels(out / "frames" / name).astype(int)
        assert np.abs(diff).max() <= 2


def test_a_frames_lora_list_replaces_the_defaults_and_morphs_blend_the_weights(tiny_model, tmp_path, one_thread):
    from framereel.jobs import batch_groups

    lora = build_tiny_lora(tmp_path / "style")
    board = write_storyboard(tmp_path / "board.json", {
        "defaults": {"lora": f"{lora}:0.8"},
        "frames": [{"prompt": "a red circle", "morph": 1}, {"prompt": "a blue square", "seed": 5, "lora": []},
                   {"prompt": "a blue square", "lora": f"{lora}:0"},
                   {"prompt": "a blue square, inked", "init": "previous", "strength": 0.5, "lora": str(lora)}]})
    plain_board = write_storyboard(tmp_path / "plain.json", [{"prompt": "x"}, {"prompt": "x"},
                                                                      {"prompt": "a blue square", "seed": 5}])
    settings = RenderSettings(model=str(tiny_model), dtype="float32", device="cpu", batch=2)
    result = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "out", settings)
    assert result.rendered == [0, 1, 2, 3, 4] and not result.failed
    render(load_storyboard(plain_board, overrides={"steps": 2}), tmp_path / "plain", settings, only=[2])
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    p = {f["index"]: f["params"] for f in run["frames"]}
    assert p[0]["lora"][0][1] == 0.8 and p[1]["lora"][0][1] == pytest.approx(0.4) and "lora" not in p[2]
    assert p[3]["lora"][0][1] == 0.0 and p[4]["lora"][0][1] == 1.0
    # "lora": [] is a frame without LoRAs: the same hash and bytes as a run that has none
    plain = json.loads((tmp_path / "plain" / "run.json").read_text())["frames"][2]
    assert run["frames"][2]["hash"] == plain["hash"]
    assert frames_bytes(tmp_path / "out")["frame_002.png"] == frames_bytes(tmp_path / "plain")["frame_002.png"]
    frames = list(load_storyboard(board, overrides={"steps": 2, "width": 64, "height": 64}).frames)
    assert [[f.index for f in g] for g in batch_groups(frames, 4)] == [[0], [1], [2], [3], [4]]
    # worker processes load each frame's LoRAs when a frame first needs them: the same bytes
    workers = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "workers", settings,
                     parallelism=Parallelism(workers=2))
    assert not workers.failed and frames_bytes(tmp_path / "workers") == frames_bytes(tmp_path / "out")


def test_frame_lora_refusals_are_one_line_naming_the_frame(tiny_model, tmp_path):
    lora = build_tiny_lora(tmp_path / "style")
    cases = [
        ([{"prompt": "a"}, {"prompt": "b", "lora": str(tmp_path / "missing.safetensors")}],
         'frame 1: "lora" ' + str(tmp_path / "missing.safetensors") + ": no such file or folder"),
        ([{"prompt": "a", "lora": f"{lora}:heavy"}],
         f'frame 0: "lora" {lora}:heavy: the weight after \':\' must be a number, like {lora.name}:0.8'),
        ([{"prompt": "a", "lora": 3}], 'frame 0: "lora" must be a LoRA path'),
        ([{"prompt": "a", "lora": [f"{lora}:1", f"{lora}:0.5"]}], "names the same LoRA twice"),
        ([{"prompt": "a", "lora": str(build_tiny_lora(tmp_path / "lcm-lora-sdv1-5"))}],
         "frame 0: \"lora\" " + str(tmp_path / "lcm-lora-sdv1-5" / "pytorch_lora_weights.safetensors")
         + ": an LCM-LoRA sets the scheduler"),
        ([{"prompt": "a", "lora": str(build_tiny_lora(tmp_path / "xl-style", cross_attention_dim=64))}],
         "frame 0: \"lora\" " + str(tmp_path / "xl-style" / "pytorch_lora_weights.safetensors")
         + ": does not fit this SD 1.x model"),
    ]
    for i, (frames, message) in enumerate(cases):
        board = write_storyboard(tmp_path / f"board{i}.json", frames)
        proc = cli("frames", board, "-o", tmp_path / f"out{i}", "--model", tiny_model, "--steps", 2, "--device", "cpu")
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], proc.stderr  # a wrong base shows when the model loads
        assert not list((tmp_path / f"out{i}").glob("frames/*.png"))


def test_a_lora_that_is_not_one_or_not_in_the_cache_is_named_so_by_the_dry_run_and_the_run(tiny_model, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not a LoRA")
    whole = next((tiny_model / "unet").glob("*.safetensors"))  # a model's weights: no LoRA layer in it
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle"}])
    own = write_storyboard(tmp_path / "own.json", [{"prompt": "a"}, {"prompt": "b", "lora": str(junk)}])
    cases = [
        (board, ("--lora", junk), f"--lora {junk}: not a LoRA file (junk.safetensors can't be read as safetensors"),
        (board, ("--lora", whole), f"--lora {whole}: not a LoRA: none of its"),
        (own, (), f'frame 1: "lora" {junk}: not a LoRA file'),
        (board, ("--lora", "some/hub-lora"), "--lora some/hub-lora: not in the local Hugging Face cache and "
                                             "HF_HUB_OFFLINE is set"),
    ]
    for storyboard, extra, message in cases:
        for dry_run in (("--dry-run",), ()):
            proc = cli("make", storyboard, "-o", tmp_path / "out", "--model", tiny_model, "--steps", 2,
                       "--device", "cpu", *extra, *dry_run)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr, proc.stderr
            assert "another base model" not in proc.stderr
            assert not (tmp_path / "out").exists()  # refused before anything was made


def test_a_hub_lora_the_hub_cannot_be_reached_for_is_one_line(tiny_model, tmp_path, monkeypatch):
    import diffusers.loaders.lora_base
    import httpx2
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise httpx2.ConnectError("[Errno -2] Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE")  # online, but the network is down
    monkeypatch.setattr(diffusers.loaders.lora_base, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(diffusers.loaders.lora_base, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle"}])
    proc = cli("frames", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", 2, "--lora", "some/hub-lora")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ("--lora some/hub-lora: not in the local Hugging Face cache and the Hub can't be reached; go online "
            "to download, or pass a local LoRA .safetensors file instead") in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_lora_that_does_not_fit_leaves_no_new_folder_behind(tiny_model, tmp_path):
    wrong = build_tiny_lora(tmp_path / "xl-style", cross_attention_dim=64)
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle"}])
    proc = cli("make", board, "-o", tmp_path / "out", "--model", tiny_model, "--steps", 2, "--lora", wrong)
    assert proc.returncode == 2 and "does not fit this SD 1.x model" in proc.stderr  # found when the model loads
    assert not (tmp_path / "out").exists()  # no frames/, index.html, run.json or lock left


def test_a_single_file_refiner_is_recognised_from_its_keys(tmp_path):
    import torch
    from safetensors.torch import save_file

    from framereel.backends.families import check_refiner

    refiner, sd1 = tmp_path / "refiner.safetensors", tmp_path / "sd15.safetensors"
    save_file({"conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": torch.zeros(1280)}, refiner)
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.bias": torch.zeros(768)}, sd1)
    check_refiner(str(refiner), refiner, None)
    with pytest.raises(FramereelError, match="look like a v1 checkpoint, not an SDXL refiner"):
        check_refiner(str(sd1), sd1, None)
