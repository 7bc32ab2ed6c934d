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


# the packages that enable one feature each: (name, distribution, what it enables, the fix when it is missing)
FEATURE_PACKAGES = (
    ("spandrel", "spandrel", "--upscale and `framereel upscale`", "pip install 'framereel[finishing]'"),
    ("librosa", "librosa", "`framereel beats` and --on-beat", "pip install 'framereel[finishing]'"),
    ("uvicorn", "uvicorn", "`framereel studio`", "pip install uvicorn"),
    ("PyAV", "av", 'a clip\'s "init_video" (video-to-video)', "pip install av"),
    ("peft", "peft", '--lora, --fast, a storyboard\'s "lora" and --motion-lora', "pip install peft"),
    ("ray", "ray", "--executor ray", "pip install 'framereel[ray]'"),
)


def _feature_checks() -> list[Check]:
    """Each feature package: its version, or that it is missing and the feature it would enable."""
    out = []
    for name, package, feature, fix in FEATURE_PACKAGES:
        v = _version(package)
        out.append(Check(name, True if v else None, f"{v}: {feature}" if v else f"not installed: needed for {feature}",
                         "" if v else fix))
    return out


def _motion_checks(spec: str, model: str | None) -> list[Check]:
    """``doctor --motion-adapter``: found as ``make`` finds it, what it is, and (with ``--model``)
    whether it fits that model, checked as ``make`` checks it."""
    from .backends.animatediff import adapter_config, resolve_motion_adapter
    from .backends.common import WEIGHT_SUFFIXES
    from .errors import FramereelError

    try:
        folder = resolve_motion_adapter(spec)
        config = adapter_config(folder, spec)
    except FramereelError as err:
        return [Check("motion adapter", False, str(err))]
    weights = sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES) / 2**20
    channels = "/".join(str(c) for c in config.get("block_out_channels", [])) or "?"
    what = (f"MotionAdapter at {folder}: UNet block channels {channels}, {config.get('motion_layers_per_block', 2)} "
            f"motion layer(s) per block, windows up to {config.get('motion_max_seq_length', 32)} frames, "
            f"weights {weights:.1f} MiB")
    if not weights:
        return [Check("motion adapter", False, what, "the folder holds no weights: pass a folder saved with "
                      "MotionAdapter.save_pretrained, or a Hub id")]
    if not model:
        return [Check("motion adapter", True, what),
                Check("motion adapter fit", None, "not checked", "add --model M to check it fits that model")]
    return [Check("motion adapter", True, what), _motion_fit(spec, model)]


def _video_checks(spec: str) -> list[Check]:
    """``doctor --video-model``: found as ``make`` finds it, its family and the rules its clips follow."""
    from .backends.common import WEIGHT_SUFFIXES
    from .backends.video_models import resolve_video_model
    from .errors import FramereelError

    try:
        video = resolve_video_model(spec)
    except FramereelError as err:
        return [Check("video model", False, str(err))]
    d = video.describe()
    weights = sum(p.stat().st_size for p in video.path.rglob("*") if p.suffix in WEIGHT_SUFFIXES) / 2**30
    what = (f"{d['label']} at {video.path}: takes {d['takes']}; clips of {d['frames']} frames, sizes in multiples of "
            f"{d['size_multiple']}, {d['long_clips']}; defaults {d['steps']} steps, guidance {d['guidance']:g}, "
            f"trained at {d['fps']} fps; weights {weights:.2f} GiB")
    return [Check("video model", True, what)]


def _depth_checks(spec: str) -> list[Check]:
    """``doctor --depth-model``: found and checked as ``make`` finds it (3D camera, depth control maps), and what it is."""
    import json

    from .backends.common import WEIGHT_SUFFIXES
    from .depth import find_depth_model
    from .errors import FramereelError

    try:
        source = find_depth_model(spec)
    except FramereelError as err:
        return [Check("depth model", False, str(err))]
    config = json.loads((source.path / "config.json").read_text(encoding="utf-8"))
    kind = ", ".join(config.get("architectures") or [config.get("model_type", "?")])
    weights = sum(p.stat().st_size for p in source.path.rglob("*") if p.suffix in WEIGHT_SUFFIXES) / 2**20
    return [Check("depth model", True, f"{kind} at {source.name}, weights {weights:.1f} MiB")]


def _motion_fit(spec: str, model: str) -> Check:
    """Whether the motion adapter fits ``model``: the check ``make`` makes before loading weights."""
    from .backends import RenderSettings
    from .backends.resolve import resolve_model
    from .errors import FramereelError

    try:
        info = resolve_model(RenderSettings(model=model, device="cpu", motion_adapter=spec)).info
    except FramereelError as err:
        return Check("motion adapter fit", False, str(err))
    return Check("motion adapter fit", True, f"fits {info.id} ({(info.family or {}).get('label')})")


def _gpu_checks() -> list[Check]:
    try:
        import torch
    except ImportError:
        return [Check("cuda", False, "torch missing", "pip install torch")]
    cuda = torch.cuda.is_available()
    detail = f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}" if cuda else "no CUDA GPU visible"
    mps = torch.backends.mps.is_available()
    from .backends.device import cpu_supports_bf16, cxx_compiler

    cxx = cxx_compiler()
    return [
        Check("cuda", None, detail),
        Check("mps", None, "available" if mps else "not available"),
        Check("cpu", None, f"{os.cpu_count()} cores, bf16 {'yes' if cpu_supports_bf16() else 'no'}"),
        Check("--compile on cpu", True if cxx else None, f"C++ compiler {cxx}" if cxx else "no C++ compiler",
              "" if cxx else "for --compile on a CPU: apt install g++ (or set CXX)"),
    ]


def _tt_checks() -> list[Check]:
    """tt-metal's SD 1.4 demo (layout, commit, what each backend will use) and the chips tt-smi lists."""
    import importlib.util

    from .backends.tt_tree import WORKER_NOTE, chip_plan, device_numbers, find_sd_demo
    from .errors import FramereelError

    out = []
    if importlib.util.find_spec("ttnn") is not None:  # found, not imported: importing it can take the chips
        out.append(Check("ttnn", True, _version("ttnn") or "importable"))
    else:
        out.append(Check("ttnn", None, "not importable",
                         "only needed for --backend tt: activate tt-metal's python_env ($TT_METAL_HOME/python_env)"))
    smi = shutil.which("tt-smi")
    plan = chip_plan() if smi else None
    out.append(Check("tt-smi", None if not smi else True, smi or "not found",
                     "" if smi else "for Tenstorrent: pip install tt-smi"))
    if plan and plan.chips:
        out.append(Check("tenstorrent boards", None, plan.reason()))
        out.append(Check("usable chips", True if plan.usable else False, ", ".join(plan.usable) + f" ({WORKER_NOTE})"
                         if plan.usable else "none", "" if plan.usable else "tt-smi lists no chip that can be opened alone"))
    else:
        out.append(Check("tenstorrent boards", None, "none found"))
    home = os.environ.get("TT_METAL_HOME")
    if not home:
        out.append(Check("TT_METAL_HOME", None, "not set", "for Tenstorrent: export TT_METAL_HOME=~/tt-metal"))
        return out
    try:
        demo = find_sd_demo(Path(home).expanduser())
    except FramereelError as err:
        out.append(Check("TT_METAL_HOME", False, home, str(err)))
        return out
    out.append(Check("TT_METAL_HOME", True, home))
    out.append(Check("SD 1.4 demo", True, f"{demo.folder} ({demo.layout})"))
    out.append(Check("tt-metal commit", None, demo.commit))
    if demo.traced:
        out.append(Check("--backend tt", True, "traced demo (sd_helper_funcs.compile_trace_sd); "
                         f"steps 4-{demo.steps or 50}, {demo.image_size[1]}x{demo.image_size[0]}, PNDM"))
    else:
        out.append(Check("--backend tt", False, "this tree's demo predates compile_trace_sd",
                         "update tt-metal, or use --backend tt-demo"))
    try:
        out.append(Check("--backend tt-demo", True, f"{demo.num_prompts} prompts per pytest run, written to "
                         f"<run folder>/{demo.input_path}"))
    except FramereelError as err:
        out.append(Check("--backend tt-demo", False, "can't hand the demo its prompts", str(err)))
    arch = plan.arch if plan and plan.arch else None
    for a in [arch] if arch else ["wormhole_b0", "blackhole"]:
        numbers = device_numbers(demo, a)
        out.append(Check(f"device params {a}", False if numbers.fallback else None,
                         f"l1_small_size={numbers.params['l1_small_size']}, "
                         f"trace_region_size={numbers.params['trace_region_size']} from {numbers.source}",
                         "framereel uses its fallback numbers; tell us your tt-metal commit" if numbers.fallback else ""))
    throttle = os.environ.get("TT_MM_THROTTLE_PERF")
    out.append(Check("TT_MM_THROTTLE_PERF", None, f"{throttle} (yours)" if throttle else
                     "not set: framereel sets 5 on Wormhole for its runs, as tt-metal's SD demo does"))
    return out + _tt_model_checks(Path(home).expanduser(), plan, demo.commit)


def _tt_model_checks(home: Path, plan, commit: str) -> list[Check]:
    """The mesh the chips make, the tt-metal models this tree holds, which the attached chips can run,
    and the shape of the tree's SDXL pipeline."""
    from .backends.tt_models import SDXL_PIPELINE, TT_MODELS, mesh_shape, models_in_tree
    from .backends.tt_sdxl import api_in_source

    out = []
    if plan and plan.chips:
        out.append(Check("tenstorrent mesh", None, f"{mesh_shape(plan)} ({len(plan.chips)} chip(s): {plan.boards})"))
    held = models_in_tree(home)
    out.append(Check("tt-metal models", None, ", ".join(m.label for m in held) or "none framereel knows"))
    for model in TT_MODELS.values():
        if model not in held:
            continue
        runs = bool(plan and model.runs_on(plan))
        out.append(Check(f"runs here: {model.label}", runs, f"needs {model.needs()}",
                         "" if runs else f"attached: {plan.boards if plan and plan.chips else 'no chip'}"))
    if any(m.key == "sdxl" for m in held):
        api = api_in_source(home / SDXL_PIPELINE)
        out.append(Check("SDXL pipeline API", api.name is not None, api.describe(),
                         "" if api.name else f"tt-metal commit {commit}: framereel supports "
                         "the current and the earlier TtSDXLPipeline shapes (README)"))
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
    from .ffmpeg import find_ffmpeg

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


def _model_checks(model: str, refiner: str | None = None) -> list[Check]:
    """``doctor --model``: the model's family, the defaults it brings, and the memory options a
    GPU here would need for it; with ``refiner``, whether that SDXL refiner fits it."""
    from .backends import RenderSettings
    from .backends.families import component_bytes, memory_advice
    from .backends.resolve import resolve_model
    from .errors import FramereelError

    try:
        resolved = resolve_model(RenderSettings(model=model, device="cpu", refiner=refiner))
    except FramereelError as err:
        return [Check("model", False, str(err))]
    info = resolved.info
    fam = info.family or {}
    out = [Check("model family", True, f"{fam.get('label')} ({fam.get('family')}) at {info.id}"),
           *([Check("refiner", True, f"{fam['refiner']['id']}: the base denoises the first "
                    f"{fam['refiner']['switch']:.0%}, the refiner the rest")] if "refiner" in fam else []),
           Check("model defaults", None, f"{info.native_width}x{info.native_height}, {fam.get('steps')} steps, "
                 f"guidance {fam.get('guidance'):g}, scheduler {fam.get('scheduler')}"
                 + (f" (made for {fam['steps_range'][0]}–{fam['steps_range'][1]} steps)" if fam.get("steps_range") else ""))]
    source = resolved.folder
    if source is not None:
        import torch

        free = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
        need, flags = memory_advice(component_bytes(source), free, info.native_width)
        if free is None:
            out.append(Check("gpu memory", None, f"{need}; no CUDA GPU here (--offload, --vae-tiling and "
                             "--attention-slicing are for GPUs short of memory)"))
        else:
            out.append(Check("gpu memory", None if flags else True, need, f"add {flags}" if flags else ""))
    return out


def diagnose(out_dir: Path = Path("out"), model: str | None = None, refiner: str | None = None,
             motion_adapter: str | None = None, video_model: str | None = None,
             depth_model: str | None = None) -> list[Check]:
    """Every check, in the order ``framereel doctor`` prints them (``model``: also that model's
    family, defaults and memory needs; ``refiner``: whether that SDXL refiner fits it;
    ``motion_adapter``: what that motion module is, and whether it fits ``model``; ``video_model``:
    that video model's family and the rules its clips follow; ``depth_model``: what that
    depth-estimation model is)."""
    from .backends import RenderSettings
    from .backends.tt_chips import tenstorrent_present

    checks = _python_checks() + _feature_checks() + _gpu_checks()
    if tenstorrent_present():
        auto = Check("auto picks", None, "backend tt (a Tenstorrent board is present)")
    else:
        try:
            from .backends.device import pick_device, pick_dtype

            device, why = pick_device(RenderSettings().device)
            auto = Check("auto picks", None, f"backend diffusers on {device} ({why}), {pick_dtype('auto', device)}")
        except ImportError:
            auto = Check("auto picks", False, "no backend: torch is missing", "pip install torch")
    extra = _model_checks(model, refiner) if model else []
    extra += _motion_checks(motion_adapter, model) if motion_adapter else []
    extra += _video_checks(video_model) if video_model else []
    extra += _depth_checks(depth_model) if depth_model else []
    return checks + [auto] + extra + _tt_checks() + _hf_checks() + _ffmpeg_checks() + [_disk_check(out_dir)]


# ------------------------------------------------------------------ a hardware self-check for people with a board

SMOKE_REPORT = "tt-smoke-report.json"
SMOKE_FIRST_FRAME = "first_frame.png"  # a Wan 2.2 I2V smoke clip's key frame: a plain 832x480 image


def _smoke_frame(kind: str, model: str) -> tuple[dict[str, Any], str]:
    """What the smoke test renders for the model's tt-metal implementation: one still (SD 1.4 with the
    demo's PNDM, others with their pipeline's own scheduler), or one 5-frame clip for Wan 2.2 (for I2V,
    from ``first_frame.png`` beside the storyboard: :data:`SMOKE_FIRST_FRAME`)."""
    from .backends.tt_models import tt_model_key

    key = tt_model_key(model) if kind == "tt" else "sd1"
    entry: dict[str, Any] = {"prompt": "a lighthouse on a cliff at dusk, oil painting"}
    if key in ("wan", "wan-i2v"):
        entry["clip"] = 5
    if key == "wan-i2v":
        entry["first_frame"] = SMOKE_FIRST_FRAME
    return entry, "pndm" if key == "sd1" else "auto"


def _smoke_one(kind: str, out: Path, model: str | None) -> dict[str, Any]:
    """Render one 4-step frame (a clip for Wan 2.2) at the model's size through ``--backend tt`` (kind
    "tt"), or one demo run through ``--backend tt-demo``; returns timings, decisions and any error."""
    import json
    import time

    from .backends import DEFAULT_MODEL, RenderSettings, create_backend
    from .errors import FramereelError
    from .events import FrameDone, ModelLoaded
    from .loader import load_storyboard
    from .runner import render

    folder = out / f"smoke-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    board = folder / "storyboard.json"
    report: dict[str, Any] = {"backend": kind, "ok": False}
    events: list[Any] = []
    t0 = time.perf_counter()
    backend = None
    try:
        entry, scheduler = _smoke_frame(kind, model or DEFAULT_MODEL)
        board.write_text(json.dumps([entry]))
        if "first_frame" in entry:
            from PIL import Image

            Image.new("RGB", (832, 480), (90, 110, 140)).save(folder / SMOKE_FIRST_FRAME)
        settings = RenderSettings(model=model or DEFAULT_MODEL, backend=kind, scheduler=scheduler)
        backend = create_backend(settings)
        report["decisions"] = backend.decisions
        storyboard = load_storyboard(board, overrides={"steps": 4} if kind == "tt" else {})
        result = render(storyboard, folder, settings, force=True, backend=backend, on_event=events.append)
        report["ok"] = not result.failed and bool(result.rendered)
        if result.failed:
            report["error"] = next(iter(result.failed.values()))
    except FramereelError as err:
        report["error"] = str(err)
    except Exception as err:  # noqa: BLE001 - the report is for a bug report: keep what happened
        report["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
    finally:
        if backend is not None:
            backend.close()
            report["decisions"] = backend.decisions
    seconds = {"total": round(time.perf_counter() - t0, 3)}
    for e in events:
        if isinstance(e, ModelLoaded) and e.seconds is not None:
            seconds["open_and_load"] = e.seconds
        if isinstance(e, FrameDone):
            seconds["frame"] = e.seconds
            if e.facts.get("compile_seconds") is not None:
                seconds["compile"] = e.facts["compile_seconds"]
    report["seconds"] = seconds
    report["frames"] = sorted(str(p) for p in (folder / "frames").glob("*.png"))
    return report


def smoke(out: Path, model: str | None = None, tt: bool = True, demo: bool = False) -> tuple[Path, dict[str, Any]]:
    """``framereel doctor --smoke`` / ``--smoke-demo``: the checks, then one real frame through the
    chosen Tenstorrent backend(s); writes ``OUT/tt-smoke-report.json`` (attach it to a bug report)."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"framereel": __version__, "checks": [c.as_dict() for c in diagnose(out)]}
    if tt:
        report["tt"] = _smoke_one("tt", out, model)
    if demo:
        report["tt-demo"] = _smoke_one("tt-demo", out, model)
    path = out / SMOKE_REPORT
    path.write_text(json.dumps(report, indent=2, default=str))
    return path, report

