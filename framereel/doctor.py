"""``framereel doctor``: what this machine can render with, and the fix for each problem found."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._version import __version__


@dataclass
class Check:
    name: str
    ok: bool | None  # None: informational
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, **({"fix": self.fix} if self.fix else {})}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python_checks() -> list[Check]:
    out = [Check("framereel", None, __version__)]
    for pkg in ("torch", "diffusers", "transformers"):
        v = _version(pkg)
        out.append(Check(pkg, v is not None, v or "not installed", "" if v else f"pip install {pkg}"))
    return out


def _gpu_checks() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("cuda", False, "torch missing", "pip install torch")]
    cuda = torch.cuda.is_available()
    detail = f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}" if cuda else "no CUDA GPU visible"
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    from .backends.diffusers_backend import cpu_supports_bf16, cxx_compiler

    cxx = cxx_compiler()
    return [
        Check("cuda", None, detail),
        Check("mps", None, "available" if mps else "not available"),
        Check("cpu", None, f"{os.cpu_count()} cores, bf16 {'yes' if cpu_supports_bf16() else 'no'}"),
        Check("--compile on cpu", True if cxx else None, f"C++ compiler {cxx}" if cxx else "no C++ compiler",
              "" if cxx else "for --compile on a CPU: apt install g++ (or set CXX)"),
    ]


def _tt_checks() -> list[Check]:
    from .backends.tt import SD_DEMO, board_info, is_blackhole

    out = []
    ttnn_version = _version("ttnn")
    try:
        import ttnn  # noqa: F401

        out.append(Check("ttnn", True, ttnn_version or "importable"))
    except ImportError:
        out.append(Check("ttnn", None, "not importable",
                         "only needed for --backend tt: activate tt-metal's python_env ($TT_METAL_HOME/python_env)"))
    home = os.environ.get("TT_METAL_HOME")
    if not home:
        out.append(Check("TT_METAL_HOME", None, "not set", "for Tenstorrent: export TT_METAL_HOME=~/tt-metal"))
    elif (Path(home).expanduser() / SD_DEMO / "demo" / "demo.py").is_file():
        out.append(Check("TT_METAL_HOME", True, home))
    else:
        out.append(Check("TT_METAL_HOME", False, f"{home} has no {SD_DEMO}/demo/demo.py",
                         "point TT_METAL_HOME at a tt-metal checkout"))
    smi = shutil.which("tt-smi")
    boards = board_info() if smi else []
    out.append(Check("tt-smi", None if not smi else True, smi or "not found",
                     "" if smi else "for Tenstorrent: pip install tt-smi"))
    out.append(Check("tenstorrent boards", None, f"{len(boards)} chip(s): {', '.join(boards)}" if boards else "none found"))
    arch = os.environ.get("TT_METAL_ARCH_NAME")
    if is_blackhole(boards) and arch != "blackhole":
        out.append(Check("TT_METAL_ARCH_NAME", False, arch or "not set",
                         "Blackhole board: framereel sets TT_METAL_ARCH_NAME=blackhole for its runs; export it for others"))
    else:
        out.append(Check("TT_METAL_ARCH_NAME", None, arch or "not set"))
    return out


def _hf_checks() -> list[Check]:
    token = os.environ.get("HF_TOKEN")
    logged_in = False
    try:
        from huggingface_hub import get_token

        logged_in = bool(get_token())
    except ImportError:
        pass
    out = [Check("hugging face login", logged_in or None,
                 "token set (HF_TOKEN)" if token else "logged in" if logged_in else "not logged in",
                 "" if logged_in else "for SD 1.4 from the Hub: hf auth login (or set HF_TOKEN)")]
    cached = False
    try:
        from huggingface_hub import scan_cache_dir

        cached = any(r.repo_id == "CompVis/stable-diffusion-v1-4" for r in scan_cache_dir().repos)
    except Exception:  # no cache folder yet, or an unreadable one: both mean "not cached"
        cached = False
    out.append(Check("SD 1.4 cached", cached or None, "yes" if cached else "no",
                     "" if cached else "first run downloads ~4 GB; offline, use --model demo"))
    out.append(Check("HF_HUB_OFFLINE", None, os.environ.get("HF_HUB_OFFLINE", "not set")))
    return out


def _ffmpeg_checks() -> list[Check]:
    from .errors import FramereelError
    from .video import find_ffmpeg

    try:
        ffmpeg = find_ffmpeg()
    except FramereelError as err:
        return [Check("ffmpeg", False, "not found", str(err))]
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    encoders = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    out = [Check("ffmpeg", True, f"{ffmpeg} ({version.removeprefix('ffmpeg version ').split(' ')[0]})")]
    for enc, use in (("libx264", ".mp4"), ("libvpx-vp9", ".webm"), ("libwebp", ".webp")):
        present = enc in encoders
        out.append(Check(enc, present if enc != "libwebp" else (present or None), "present" if present else "missing",
                         "" if present else f"{use} output needs it: install an ffmpeg built with {enc}"))
    return out


def _disk_check(out_dir: Path) -> Check:
    probe = out_dir if out_dir.exists() else Path.cwd()
    free = shutil.disk_usage(probe).free / 2**30
    return Check("free disk", free > 1 or None, f"{free:.1f} GiB at {probe}",
                 "" if free > 1 else "SD frames are ~0.5 MB each; free some space")


def _model_checks(model: str) -> list[Check]:
    """``doctor --model``: the model's family, the defaults it brings, and the memory options a
    GPU here would need for it."""
    from .backends import RenderSettings
    from .backends.diffusers_backend import DiffusersBackend
    from .backends.families import component_bytes, memory_advice
    from .errors import FramereelError

    backend = DiffusersBackend(RenderSettings(model=model, device="cpu"))
    try:
        info = backend.describe()
    except FramereelError as err:
        return [Check("model", False, str(err))]
    fam = info.family or {}
    out = [Check("model family", True, f"{fam.get('label')} ({fam.get('family')}) at {info.id}"),
           Check("model defaults", None, f"{info.native_width}x{info.native_height}, {fam.get('steps')} steps, "
                 f"guidance {fam.get('guidance'):g}, scheduler {fam.get('scheduler')}"
                 + (f" (made for {fam['steps_range'][0]}–{fam['steps_range'][1]} steps)" if fam.get("steps_range") else ""))]
    source = backend._source
    if source is not None and source.is_dir():
        import torch

        free = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
        need, flags = memory_advice(component_bytes(source), free, info.native_width)
        if free is None:
            out.append(Check("gpu memory", None, f"{need}; no CUDA GPU here (--offload, --vae-tiling and "
                             "--attention-slicing are for GPUs short of memory)"))
        else:
            out.append(Check("gpu memory", None if flags else True, need, f"add {flags}" if flags else ""))
    return out


def diagnose(out_dir: Path = Path("out"), model: str | None = None) -> list[Check]:
    """Every check, in the order ``framereel doctor`` prints them (``model``: also that model's
    family, defaults and memory needs)."""
    from .backends import RenderSettings
    from .backends.tt import tenstorrent_present

    checks = _python_checks() + _gpu_checks()
    if tenstorrent_present():
        auto = Check("auto picks", None, "backend tt (a Tenstorrent board is present)")
    else:
        try:
            from .backends.diffusers_backend import pick_device, pick_dtype

            device, why = pick_device(RenderSettings().device)
            auto = Check("auto picks", None, f"backend diffusers on {device} ({why}), {pick_dtype('auto', device)}")
        except ImportError:
            auto = Check("auto picks", False, "no backend: torch is missing", "pip install torch")
    extra = _model_checks(model) if model else []
    return checks + [auto] + extra + _tt_checks() + _hf_checks() + _ffmpeg_checks() + [_disk_check(out_dir)]
