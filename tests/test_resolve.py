"""Resolve, then render: the model, its options and its LoRAs are settled once, before anything renders."""

import dataclasses

import pytest
from tiny_families import build_tiny_lora

from framereel import FramereelError, RenderSettings
from framereel.backends.common import resolve_source
from framereel.storyboard import Frame


def test_the_backend_renders_with_what_was_resolved_and_describe_changes_nothing(tiny_model, tmp_path):
    from framereel.backends.diffusers_backend import DiffusersBackend
    from framereel.backends.resolve import resolve_model

    lora = build_tiny_lora(tmp_path / "style")
    settings = RenderSettings(model=str(tiny_model), device="cpu", dtype="float32", batch=1,
                              loras=(f"{lora}:0.5",), vae_tiling=True)
    resolved = resolve_model(settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.scheduler = "euler"  # type: ignore[misc]
    assert resolved.source.path == tiny_model and not resolved.source.single_file
    assert resolved.scheduler == resolved.info.scheduler == resolved.family.scheduler  # --scheduler auto
    assert [(x.source, x.weight) for x in resolved.loras] == [(f"{lora}", 0.5)]
    assert resolved.lora_files[str(lora)].name == "pytorch_lora_weights.safetensors"  # found and checked here
    assert set(resolved.pixel_options) == {"lora", "vae_tiling"}

    backend = DiffusersBackend(settings, resolved)
    before = (backend.settings, dict(backend.pixel_options), backend.family, backend.scheduler)
    for _ in range(3):
        assert backend.describe() is resolved.info
    assert (backend.settings, backend.pixel_options, backend.family, backend.scheduler) == before
    assert backend.settings.scheduler == resolved.scheduler  # "auto" is settled when the backend is made
    frame = Frame(0, "a lighthouse", None, 1, 1, 7.5, 64, 64, lora=((str(lora), 0.8),))
    assert backend.frame_options(frame)["lora"][0][1] == 0.8
    backend.check([frame])
    assert backend.model is resolved


@pytest.mark.parametrize("kind_name, flag", [
    ("framereel.backends.resolve:MODEL", "--model"),
    ("framereel.backends.resolve:TINY_VAE", "--tiny-vae"),
    ("framereel.backends.refiner:REFINER", "--refiner"),
    ("framereel.backends.animatediff:MOTION_ADAPTER", "--motion-adapter"),
])
def test_one_function_finds_the_model_the_tiny_vae_the_refiner_and_the_motion_adapter(kind_name, flag, tmp_path):
    import importlib

    module, name = kind_name.split(":")
    kind = getattr(importlib.import_module(module), name)
    assert kind.flag == flag
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "config.json").write_text("{}")
    assert resolve_source(str(folder), kind).path == folder  # a folder holding what this kind holds
    with pytest.raises(FramereelError, match="no such"):
        resolve_source(str(tmp_path / "nowhere" / "x"), kind)
    # a Hub id: fetched into the Hugging Face cache, or one line naming the option (the tests are offline)
    with pytest.raises(FramereelError, match=f"^{flag} nobody/nothing: not in the local Hugging Face cache"):
        resolve_source("nobody/nothing", kind)
