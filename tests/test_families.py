"""Model families beyond SD 1.x, LoRA and memory options, with tiny random-weight pipelines of each
family loaded through --model PATH the way a user's model is."""

import json

import numpy as np
import pytest
from conftest import frames_bytes, run_cli, write_storyboard
from PIL import Image
from tiny_families import FAMILY_BUILDS, build_family, build_tiny_lora

from framereel import FramereelError, RenderSettings, load_storyboard, render
from framereel.backends import create_backend

BOARD = [{"prompt": "a red circle", "morph": 1}, {"prompt": "a blue square"},
         {"prompt": "a blue square at night", "init": "previous", "strength": 0.5}]
SIZE = {"flux-schnell": 64, "flux-dev": 64}  # FLUX's native size is 128 latents × the VAE's scale


@pytest.fixture(scope="session")
def family_model(tmp_path_factory):
    built = {}

    def get(family):
        if family not in built:
            built[family] = build_family(family, tmp_path_factory.mktemp("families") / family)
        return built[family]

    return get



def pixels(path_or_image):
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("family", FAMILY_BUILDS)
def test_family_renders_morphs_chains_resumes_and_matches_its_own_pipeline(family, family_model, tmp_path):
    import torch
    from diffusers import DiffusionPipeline

    from framereel.backends.common import make_scheduler

    folder = family_model(family)
    settings = RenderSettings(model=str(folder), dtype="float32", batch=1)
    backend = create_backend(settings)
    info = backend.describe()
    assert info.family["family"] == family
    size = SIZE.get(family)
    board = write_storyboard(tmp_path / "board.json", BOARD)
    overrides = {"steps": 2, "width": size, "height": size}
    first = render(load_storyboard(board, overrides=overrides), tmp_path / "a", settings, backend=backend)
    assert first.rendered == [0, 1, 2, 3] and not first.failed
    again = render(load_storyboard(board, overrides=overrides), tmp_path / "a", settings, backend=backend)
    assert again.rendered == [] and again.skipped == [0, 1, 2, 3]
    render(load_storyboard(board, overrides=overrides), tmp_path / "b", settings, backend=backend)
    assert frames_bytes(tmp_path / "a") == frames_bytes(tmp_path / "b")
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["family"]["family"] == family and run["scheduler"] == info.scheduler
    images = [pixels(p) for p in sorted((tmp_path / "a" / "frames").glob("*.png"))]
    assert all(not np.array_equal(images[i], images[j]) for i in range(4) for j in range(i))  # morph, chain: new images

    # frame 0 is what the family's own diffusers pipeline gives for its seed and parameters
    record = run["frames"][0]
    params = record["params"]
    pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=getattr(torch, backend.dtype))
    pipe.scheduler = make_scheduler(run["scheduler"], pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    extra = {"sd3": {"max_sequence_length": 256}, "sd3.5": {"max_sequence_length": 256}, "flux-schnell": {"max_sequence_length": 256},
             "flux-dev": {"max_sequence_length": 512}}.get(family, {})  # the model cards' T5 lengths
    expected = pipe(prompt=params["prompt"], generator=torch.Generator("cpu").manual_seed(params["seed"]),
                    num_inference_steps=params["steps"], guidance_scale=params["guidance"], width=params["width"],
                    height=params["height"], **extra).images[0]
    assert np.array_equal(images[0], pixels(expected))


def test_unsupported_pipeline_is_one_line_naming_what_was_found(tmp_path):
    folder = tmp_path / "kandinsky"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyV22Pipeline"}))
    with pytest.raises(FramereelError, match="KandinskyV22Pipeline.*supported: SD 1.x"):
        create_backend(RenderSettings(model=str(folder))).describe()


def test_turbo_asked_for_50_steps_warns_with_its_range(family_model, tmp_path):
    settings = RenderSettings(model=str(family_model("sd-turbo")), batch=1)
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle", "steps": 50}])
    events = []
    result = render(load_storyboard(board), tmp_path / "out", settings, on_event=events.append)
    warnings = [e.message for e in events if e.name == "warning"]
    assert result.rendered == [0]
    assert any("SD-Turbo is made for 1–4 steps; 50 asked for" in w for w in warnings)


def test_turbo_defaults_and_refusals_are_one_line(family_model, tmp_path):
    turbo = RenderSettings(model=str(family_model("sd-turbo")))
    backend = create_backend(turbo)
    info = backend.describe()
    assert (info.recommended["steps"], info.recommended["guidance"], info.scheduler) == (1, 0.0, "euler")
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle", "steps": 6},
                                                        {"prompt": "b", "init": "previous", "strength": 0.5, "steps": 1}])
    with pytest.raises(FramereelError, match="frame 1: img2img at strength 0.5 with 1 steps runs no step"):
        render(load_storyboard(board), tmp_path / "out", turbo, backend=backend)
    with pytest.raises(FramereelError, match="flow-matching"):
        create_backend(RenderSettings(model=str(family_model("sd-turbo")), scheduler="flow-euler")).describe()
    with pytest.raises(FramereelError, match="FLUX.1 schnell is a flow-matching model"):
        create_backend(RenderSettings(model=str(family_model("flux-schnell")), scheduler="dpm++")).describe()


def test_flux_refuses_a_negative_prompt_before_loading(family_model, tmp_path):
    settings = RenderSettings(model=str(family_model("flux-schnell")))
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a", "negative_prompt": "blurry"}])
    with pytest.raises(FramereelError, match="frame 0: FLUX.1 schnell takes no negative prompt"):
        render(load_storyboard(board), tmp_path / "out", settings)


def test_lora_changes_frames_is_part_of_their_hash_and_a_wrong_base_is_one_line(tiny_model, tmp_path):
    lora = build_tiny_lora(tmp_path / "style")
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle"}])
    plain = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "out", RenderSettings(model=str(tiny_model), batch=1))
    before = frames_bytes(tmp_path / "out")
    with_lora = RenderSettings(model=str(tiny_model), batch=1, loras=(f"{lora}:0.8",))
    styled = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "out", with_lora)
    assert plain.rendered == [0] and styled.rendered == [0]  # the LoRA is part of the frame's identity
    after = frames_bytes(tmp_path / "out")
    assert not np.array_equal(pixels(tmp_path / "out" / "frames" / "frame_000.png"),
                              pixels(Image.open(__import__("io").BytesIO(before["frame_000.png"]))))
    again = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "out", with_lora)
    assert again.rendered == [] and frames_bytes(tmp_path / "out") == after
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    record = run["frames"][0]
    assert record["params"]["lora"][0][1] == 0.8
    in_file = write_storyboard(tmp_path / "styled.json", {"defaults": {"lora": f"{lora}:0.8"},
                                                           "frames": [{"prompt": "a red circle"}]})
    render(load_storyboard(in_file, overrides={"steps": 2}), tmp_path / "from-file", RenderSettings(model=str(tiny_model), batch=1))
    assert frames_bytes(tmp_path / "from-file") == after  # the storyboard's "lora" is the same as --lora

    wrong = build_tiny_lora(tmp_path / "xl-style", cross_attention_dim=64)
    with pytest.raises(FramereelError, match="does not fit this SD 1.x model"):
        render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "out2",
               RenderSettings(model=str(tiny_model), batch=1, loras=(str(wrong),)))


def test_an_lcm_lora_brings_the_lcm_scheduler_and_few_step_defaults(tiny_model, tmp_path):
    lora = build_tiny_lora(tmp_path / "lcm-lora-sdv1-5")
    backend = create_backend(RenderSettings(model=str(tiny_model), batch=1, loras=(str(lora.parent),)))
    info = backend.describe()
    assert info.family["family"] == "lcm-lora"
    assert (info.scheduler, info.recommended["steps"], info.recommended["guidance"]) == ("lcm", 4, 1.0)


def test_memory_options(tiny_model, tmp_path):
    with pytest.raises(FramereelError, match="--offload moves weights between the CPU and a CUDA GPU"):
        create_backend(RenderSettings(model=str(tiny_model), device="cpu", offload="model")).describe()
    board = write_storyboard(tmp_path / "board.json", [{"prompt": "a red circle"}])
    plain = RenderSettings(model=str(tiny_model), device="cpu", dtype="float32", batch=1)
    low = RenderSettings(model=str(tiny_model), device="cpu", dtype="float32", batch=1, vae_tiling=True, attention_slicing=True)
    render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "a", plain)
    result = render(load_storyboard(board, overrides={"steps": 2}), tmp_path / "b", low)
    assert result.rendered == [0]
    a, b = pixels(tmp_path / "a" / "frames" / "frame_000.png"), pixels(tmp_path / "b" / "frames" / "frame_000.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # small frames: one tile, same image


@pytest.mark.parametrize("keys, family", [
    ({"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)}, "sd2"),
    ({"conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)}, "sdxl"),
    ({"cond_stage_model.transformer.text_model.final_layer_norm.bias": (768,)}, "sd1"),
])
def test_a_single_file_checkpoints_family_comes_from_its_keys(tmp_path, keys, family):
    import torch
    from safetensors.torch import save_file

    from framereel.backends.families import detect_file

    path = tmp_path / "model.safetensors"
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))
    assert detect_file(path).key == family


def test_doctor_names_the_models_family_and_defaults(family_model):
    proc = run_cli("doctor", "--json", "--model", family_model("sdxl"), check=True)
    checks = json.loads(proc.stdout)
    assert "SDXL (sdxl)" in checks["model family"]["detail"]
    assert "25 steps, guidance 5, scheduler dpm++" in checks["model defaults"]["detail"]
    assert "weights" in checks["gpu memory"]["detail"]
