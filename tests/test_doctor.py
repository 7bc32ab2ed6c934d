"""``framereel doctor``: the feature packages, and a motion module checked as ``make`` checks it."""

from __future__ import annotations

import json

from conftest import cli
from tiny_motion import build_tiny_motion_adapter

from framereel import doctor


def checks(*args: str) -> dict:
    return json.loads(cli("doctor", "--json", *args, check=True).stdout)


def test_doctor_names_each_feature_package_its_version_and_what_it_enables(monkeypatch):
    report = checks()
    for name, package, feature, _ in doctor.FEATURE_PACKAGES:
        version = doctor._version(package)
        assert report[name]["detail"] == (f"{version}: {feature}" if version else f"not installed: needed for {feature}")
    assert {"spandrel", "librosa", "uvicorn", "PyAV", "peft"} <= set(report)
    assert "--upscale" in report["spandrel"]["detail"] and "beats" in report["librosa"]["detail"]
    assert "studio" in report["uvicorn"]["detail"] and "init_video" in report["PyAV"]["detail"]
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda p: None if p == "librosa" else real(p))
    missing = checks()["librosa"]
    assert missing["ok"] is None and missing["detail"].startswith("not installed")
    assert missing["fix"] == "pip install 'framereel[finishing]'"


def test_doctor_checks_a_motion_adapter_as_make_would(tmp_path, tiny_model):
    report = checks("--motion-adapter", "demo", "--model", "demo")
    assert report["motion adapter"]["ok"] is True
    assert "MotionAdapter at" in report["motion adapter"]["detail"] and "block channels 32/64/128" in report["motion adapter"]["detail"]
    assert report["motion adapter fit"] == {"name": "motion adapter fit", "ok": True, "detail": "fits demo (SD 1.x)"}
    # made for another UNet: the line make prints
    wide = build_tiny_motion_adapter(tmp_path / "wide", block_out_channels=(32, 64))
    report = checks("--motion-adapter", wide, "--model", tiny_model)
    assert report["motion adapter"]["ok"] is True and report["motion adapter fit"]["ok"] is False
    assert "made for a UNet with block channels (32, 64)" in report["motion adapter fit"]["detail"]
    # without --model: what it is, and how to check the fit
    report = checks("--motion-adapter", wide)
    assert report["motion adapter fit"]["ok"] is None and "--model" in report["motion adapter fit"]["fix"]
    # not a motion adapter at all
    (tmp_path / "empty").mkdir()
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "config.json").write_text("[]")
    for folder, message in (("empty", "no config.json"), ("unet", "holds a UNet2DConditionModel"),
                            ("list", "holds a list"), ("nowhere/x/y", "no such folder")):
        report = checks("--motion-adapter", tmp_path / folder)
        assert report["motion adapter"]["ok"] is False and message in report["motion adapter"]["detail"], folder
