"""The ``framereel`` command: a thin layer over ``load_storyboard``, ``render`` and ``stitch``."""

from __future__ import annotations

import functools
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from .backends.common import recommended_settings
from .backends.families import FAMILIES
from .backends.resolve import DEMO_MODEL_DIR
from .errors import FramereelError, one_line
from .finishing.cli import beat_options, check_finishing_options, finishing_options, on_beat_storyboard
from .finishing.cli import register as _register_finishing
from .loader import load_storyboard, parse_storyboard
from .settings import TRANSITIONS
from .storyboard import DEFAULT_RUN_SEED, ENTRY_KEYS, TOP_LEVEL_KEYS
from .validate import parse_indices

EXAMPLES = """
\b
Examples:
  framereel make prompts.json -o out/                 # SD 1.4: frames + out/video.mp4
  framereel make examples/demo.json -o out --model demo   # offline demo model, ~1 min on a CPU
  framereel make prompts.json -o out --scheduler pndm --steps 50   # the Tenstorrent lesson's settings
  framereel stitch out/ --fps 4 --video out/fast.mp4  # re-pace without re-rendering
  framereel import deforum deforum_settings.txt -o storyboard.json   # bring a Deforum animation
"""

RENDER_HELP = {
    "model": "Hub id, local diffusers folder, .safetensors/.ckpt file, or 'demo' (offline demo model).",
    "device": "auto (cuda → mps → cpu), cpu, cuda, cuda:N or mps.",
    "dtype": "auto (fp16 on GPU, bf16 on CPUs with bf16, else fp32), float32, bfloat16 or float16.",
}


def _strength(ctx, param, value: str | None) -> float | str | None:
    """``--strength``: a number 0..1, or a schedule string like "0:(0.65), 10:(0.45)"."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _batch(ctx, param, value: str) -> int:
    """``--batch auto|N`` → 0 (auto) or N."""
    if value == "auto":
        return 0
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 64:
        raise click.BadParameter(f"{value!r} is not auto or a whole number of frames from 1 to 64")
    return int(value)


def _model_default(key: str) -> str:
    """The ``[default: …]`` of ``--steps``/``--guidance``: SD 1.x's and the demo model's own values."""
    sd1, demo = FAMILIES["sd1"].defaults()[key], recommended_settings(DEMO_MODEL_DIR).get(key)
    return f"[default: the model's: {sd1:g} for SD 1.x" + (f", {demo:g} for the demo model]" if demo else "]")


def _apply(options):
    """A decorator adding click ``options`` in the order listed."""

    def decorate(f):
        for opt in reversed(options):
            f = opt(f)
        return f

    return decorate


OUT_OPTION = click.option("-o", "--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"),
                          show_default=True, help="Output folder: frames/, run.json, video.mp4.")
MODEL_OPTIONS = [
    click.option("--model", default=None, help=RENDER_HELP["model"] + "  [default: CompVis/stable-diffusion-v1-4]"),
    click.option("--backend", default="auto", show_default=True,
                 help="auto (a Tenstorrent chip when tt-smi sees one, else diffusers), diffusers, tt, tt-demo, "
                      "or a plugin's name."),
    click.option("--reset-device", is_flag=True, help="Tenstorrent: run `tt-smi -r` once before opening the chip."),
    click.option("--device", default="auto", show_default=True, help=RENDER_HELP["device"]),
    click.option("--dtype", default="auto", show_default=True, help=RENDER_HELP["dtype"]),
    click.option("--scheduler", default="auto", show_default=True,
                 help="auto (the model family's: dpm++ for SD 1.x/2.x/SDXL, euler for Turbo, lcm for LCM, "
                      "flow-euler for SD 3/FLUX), dpm++, pndm (the lesson's), ddim, euler, euler-a, heun, unipc, lcm "
                      "or flow-euler (a storyboard's own \"scheduler\" is used when this is not given)."),
    click.option("--no-safety-checker", is_flag=True, help="Turn off the model's safety checker (if it ships one)."),
]
FRAME_OPTIONS = [
    click.option("--steps", type=int, default=None,
                 help="Denoising steps per frame.  " + _model_default("steps")),
    click.option("--guidance", type=float, default=None,
                 help="Classifier-free guidance scale.  " + _model_default("guidance")),
    click.option("--seed", type=int, default=None,
                 help=f"Run seed; frame i without its own seed uses run seed + i.  [default: {DEFAULT_RUN_SEED}]"),
    click.option("--width", type=int, default=None, help="Frame width, a multiple of 8.  [default: the model's native size]"),
    click.option("--height", type=int, default=None, help="Frame height, a multiple of 8.  [default: the model's native size]"),
    click.option("--negative-prompt", default=None, help="Negative prompt for frames that set none."),
]
RENDER_OPTIONS = [
    OUT_OPTION, *MODEL_OPTIONS, *FRAME_OPTIONS,
    click.option("--morph", type=int, default=None, metavar="N",
                 help="N latent in-between frames from each frame to the next (a dissolve through latent space)."),
    click.option("--chain", is_flag=True, help="Each frame starts img2img from the previous frame's image."),
    click.option("--strength", default=None, metavar="S", callback=_strength,
                 help='img2img strength for chained frames, 0..1 or a schedule "0:(0.65), 10:(0.45)".  [default: 0.65]'),
    click.option("--shared-noise", is_flag=True, help="Every frame starts from the same noise (similar compositions)."),
    click.option("--control", "control", multiple=True, metavar="JSON",
                 help='A ControlNet for every frame, as a storyboard\'s "control" entry: \'{"model": "PATH_OR_ID", '
                      '"image": "edges.png", "preprocess": "canny", "weight": 0.8}\'; repeatable (multi-ControlNet). '
                      'A frame\'s own "control" replaces these (see README, Control).'),
    click.option("--control-video", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
                 help="A source video driving the --control entries that give no \"image\": each frame takes the "
                      "video's frame at its time in the film (frames without a duration last 1/--fps; 2 fps for "
                      "`frames`). Keep its sound with --audio PATH (make)."),
    click.option("--batch", default="auto", show_default=True, metavar="auto|N", callback=_batch,
                 help="Frames per UNet call. auto: measured once per model, size and device (the demo model on a "
                      "CPU: 4; SD-sized models on a CPU: 1)."),
    click.option("--compile", is_flag=True,
                 help="torch.compile the UNet and VAE: slower first frame, faster after (see README)."),
    click.option("--fast-path", type=click.Choice(["off", "auto", "on", "max"]), default="off", show_default=True,
                 help="Same frames, faster: channels-last, fused QKV attention projections, torch.compile (cached "
                      "across runs, CUDA graphs on a GPU). auto: what was measured to pay on this kind of device; "
                      "max: also max-autotune on CUDA (see README \"Speed\")."),
    click.option("--tiny-vae", default=None, metavar="PATH|HUB_ID",
                 help="Decode with a TAESD-style tiny VAE (e.g. madebyollin/taesd): faster, slightly softer."),
    click.option("--step-cache", type=int, default=0, metavar="N",
                 help="Run the full UNet every N steps and reuse its deep features in between (DeepCache-style).  [default: off]"),
    click.option("--lora", "loras", multiple=True, metavar="PATH_OR_ID[:WEIGHT]",
                 help="A LoRA (file, folder or Hub id) at a weight (default 1); repeatable. An LCM-LoRA also "
                      "switches to the LCM scheduler and 4 steps. A storyboard frame's own \"lora\" list "
                      "replaces these for that frame."),
    click.option("--fast", is_flag=True,
                 help="Few-step preset: adds the LCM-LoRA for SD 1.x/SDXL (from the Hub) with its defaults."),
    click.option("--refiner", default=None, metavar="PATH_OR_ID",
                 help="SDXL: a refiner model (e.g. stabilityai/stable-diffusion-xl-refiner-1.0) that finishes each "
                      "frame: the base denoises up to --refiner-switch, the refiner the rest (it shares the base's "
                      "second text encoder and VAE)."),
    click.option("--refiner-switch", type=float, default=0.8, show_default=True, metavar="F",
                 help="With --refiner: the fraction of the denoising the base does before the refiner takes over."),
    click.option("--offload", type=click.Choice(["model", "sequential"]), default=None,
                 help="CUDA: keep weights on the CPU and move each model (or each layer) in when needed."),
    click.option("--vae-tiling", is_flag=True, help="Decode in tiles: far less memory at large sizes."),
    click.option("--attention-slicing", is_flag=True, help="Compute attention in slices: less memory, slower."),
    click.option("--motion-adapter", default=None, metavar="PATH|HUB_ID|demo",
                 help='AnimateDiff MotionAdapter for "clip" entries (native video); demo: the demo model\'s.'),
    click.option("--motion-lora", "motion_loras", multiple=True, metavar="PATH:WEIGHT",
                 help="A motion LoRA (pan, zoom …) for clips, with its weight; repeatable."),
    click.option("--depth-model", default=None, metavar="PATH|HUB_ID",
                 help='Depth-estimation model (Depth Anything, DPT) for "mode": "3D" motion (Deforum\'s 3D camera) '
                      'and for "control" entries with "preprocess": "depth" that name no "depth_model".'),
    click.option("--video-model", default=None, metavar="PATH|HUB_ID",
                 help='A video model for "clip" entries: Wan 2.1/2.2 or LTX-Video (diffusers folder or Hub id).'),
    click.option("--devices", default=None, metavar="LIST",
                 help="One worker process per device: cuda:0,cuda:1 or all. Frames are identical to one device's."),
    click.option("--workers", type=int, default=1, show_default=True,
                 help="Worker processes on --device (for CPUs: each gets its share of the cores)."),
    click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="local processes, or Ray actors (pip install 'framereel[ray]')."),
    click.option("--ray-address", default=None, metavar="ADDRESS",
                 help="Ray cluster to join (host:port or auto); none starts a local cluster."),
    click.option("--redo", default=None, metavar="LIST", help="Re-render these frames, e.g. 3,5-7."),
    click.option("--force", is_flag=True, help="Re-render every frame (replaced frames go to superseded/)."),
    click.option("--dry-run", is_flag=True,
                 help="Check everything, say which frames would be rendered and about how long it would take; "
                      "render and write nothing."),
]
_render_options = _apply(RENDER_OPTIONS)


def _stitch_options(f):
    opts = [
        click.option("--fps", type=float, default=None,
                     help="Frames per second for frames without their own duration (1, 2, 4 …).  "
                          "[default: the fps of this folder's last video, else 2]"),
        click.option("--crf", type=int, default=18, show_default=True,
                     help="Quality: lower is better (H.264: 0-51, VP9: 0-63)."),
        click.option("--codec", default=None, help="Video codec (default: libx264 for .mp4/.mov, libvpx-vp9 for .webm)."),
        click.option("--video", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Video path; its extension picks the format: .mp4 .mov .webm .gif .webp.  [default: OUT/video.mp4]"),
        click.option("--transition", type=click.Choice(TRANSITIONS), default="cut", show_default=True,
                     help="cut: back to back; crossfade: a dissolve between shots (adds its length per cut); "
                          "smooth: motion-interpolated in-betweens (minterpolate)."),
        click.option("--crossfade", type=float, default=0.5, show_default=True, help="Seconds per dissolve."),
        click.option("--smooth-fps", type=int, default=24, show_default=True, help="Output fps for --transition smooth."),
        click.option("--zoom", type=float, default=0.0, show_default=True,
                     help="Ken Burns push-in on each still, as a fraction (0.1 = 10%); 0 turns it off."),
        click.option("--audio", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Soundtrack (.mp3, .wav …) cut to the video's length with a fade-out."),
        click.option("--audio-loop", is_flag=True, help="Repeat the soundtrack to fill the video."),
        click.option("--size", default=None, metavar="WxH",
                     help="Video size (even numbers). [default: frame size; tiny frames scaled up to ≥256 px]"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _output_options(f):
    f = click.option("--frames", "frame_list", default=None, metavar="LIST",
                     help="Only these frames, e.g. 0-4,7 (others are left as they are).")(f)
    f = click.option("--json", "json_lines", is_flag=True, help="Print one JSON object per event (for scripts).")(f)
    f = click.option("-q", "--quiet", is_flag=True, help="No progress output; warnings and errors only.")(f)
    return f


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop the way Ctrl-C does (a KeyboardInterrupt), remembering the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on(signum: int, frame) -> None:
    raise Stopped(signum)


UNDERWAY = "framereel.underway"  # context meta: frames are being written, so an interrupt leaves work to resume


def _handle_errors(fn):
    """User mistakes → one line on stderr, exit 2; Ctrl-C, SIGTERM, SIGHUP → exit 128 + the signal's
    number (130, 143, 129), with a resume hint once frames were being written."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = ctx.find_root().params.get("debug") or os.environ.get("FRAMEREEL_DEBUG")
        previous = {sig: signal.signal(sig, _stop_on) for sig in (signal.SIGTERM, signal.SIGHUP)}
        previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
        try:
            return fn(*args, **kwargs)
        except FramereelError as err:
            if debug:
                raise
            click.echo(f"error: {err}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt as err:
            signum = err.signum if isinstance(err, Stopped) else signal.SIGINT
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)  # a second signal during the clean-up changes nothing
            name = signal.Signals(signum).name
            resume = "; finished frames are kept — run the same command again to resume" if ctx.meta.get(UNDERWAY) else ""
            click.echo(f"interrupted ({name}){resume}", err=True)
            sys.exit(128 + signum)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper


NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click ≥ 8.2


class OneLineErrors(click.Group):
    """click's own usage errors (``--steps abc``, a missing argument) as one line too, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NO_ARGS_IS_HELP as err:  # bare `framereel`: the help, as click prints it
            click.echo(err.ctx.get_help() if err.ctx else err.format_message(), err=True)
            sys.exit(err.exit_code)
        except click.UsageError as err:
            command = err.ctx.command_path if err.ctx else "framereel"
            click.echo(f"error: {one_line(err.format_message())} (see `{command} --help`)", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            click.echo(f"error: {one_line(err.format_message())}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


MAIN_HELP = f"""Turn a storyboard of text prompts into a video: one Stable Diffusion frame per prompt,
    stitched with ffmpeg.

    A storyboard is a JSON list like [{{"prompt": "..."}}, ...], an object
    {{"defaults": {{...}}, "frames": [...]}} (top-level keys: {", ".join(sorted(TOP_LEVEL_KEYS))}), or a .txt
    file with one prompt per line. Frame keys (see the README's Storyboards, morphs and chains, and
    native video sections): {", ".join(ENTRY_KEYS)}. A frame's own key wins over the command-line
    flags, which win over the file's defaults. In a .txt storyboard, blank lines and lines starting
    with # (comments) are skipped.

    Runs are resumable: rerunning a command renders only missing or changed frames.
    """


@click.group(cls=OneLineErrors, epilog=EXAMPLES, help=MAIN_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="framereel")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
def main(debug: bool) -> None:
    """The ``framereel`` command group (its help is :data:`MAIN_HELP`)."""


def render_settings(opts: dict[str, Any], **fixed: Any) -> Any:
    """The :class:`~framereel.settings.RenderSettings` the command-line options ask for."""
    from .settings import DEFAULT_MODEL, RenderSettings

    speed = {k: opts[k] for k in SPEED_OPTIONS if k in opts}
    speed.update({k: tuple(opts[k]) if k == "motion_loras" else opts[k] for k in MOTION_OPTIONS if k in opts})
    values = dict(model=opts["model"] or DEFAULT_MODEL, backend=opts["backend"], device=opts["device"],
                  dtype=opts["dtype"], scheduler=opts["scheduler"] or "dpm++", safety_checker=not opts["no_safety_checker"],
                  reset_device=opts.get("reset_device", False), **speed)
    return RenderSettings(**{**values, **fixed}).check()

SPEED_OPTIONS = ("batch", "compile", "fast_path", "tiny_vae", "step_cache", "loras", "fast", "refiner", "refiner_switch",
                 "offload", "vae_tiling", "attention_slicing")


def stitch_settings(opts: dict[str, Any]) -> Any:
    """The :class:`~framereel.settings.StitchSettings` the command-line options ask for."""
    from dataclasses import fields

    from .settings import StitchSettings

    names = {f.name for f in fields(StitchSettings)} - {"frames"}
    return StitchSettings(frames=opts["frame_list"], **{k: opts[k] for k in names})


MOTION_OPTIONS = ("motion_adapter", "motion_loras", "video_model", "depth_model")  # native video (framereel.clips), 3D camera


def _check_command_line(command: str, opts: dict[str, Any]) -> tuple[Any, ...]:
    """Every option of ``make``/``frames``/``stitch``, checked before any folder is made or model
    loaded: the one place the CLI validates. Returns what the run needs: the storyboard, the frame
    lists, the render settings and the parallelism."""
    from click.core import ParameterSource

    from .backends import expand_devices
    from .backends.checks import check_render_settings
    from .settings import Parallelism
    from .validate import check_model, check_output_folder

    checked: tuple[Any, ...] = (None,) * 5
    if command in ("make", "frames"):
        overrides = {k: opts[k] for k in ("steps", "guidance", "width", "height", "negative_prompt", "morph",
                                          "strength")}
        overrides.update(init="previous" if opts["chain"] else None, shared_noise=True if opts["shared_noise"] else None,
                         control=_control_flags(opts["control"], opts["control_video"]))
        fps = opts.get("fps")  # make's: control videos are sampled at the film's pace
        text = opts.get("storyboard_text")  # --dry-run --on-beat: the timed storyboard, not written
        storyboard = (parse_storyboard(text, opts["storyboard"], overrides, opts["seed"], fps) if text is not None
                      else load_storyboard(opts["storyboard"], overrides=overrides, run_seed=opts["seed"], fps=fps))
        redo = parse_indices(opts["redo"], len(storyboard)) if opts["redo"] else ()
        only = parse_indices(opts["frame_list"], len(storyboard)) if opts["frame_list"] else None
        if not 1 <= opts["workers"] <= 256:
            raise FramereelError(f"--workers {opts['workers']}: give a whole number from 1 to 256")
        devices = expand_devices(opts["devices"])
        fixed = {"device": devices[0]} if devices and len(devices) == 1 else {}
        if storyboard.scheduler and click.get_current_context().get_parameter_source("scheduler") == ParameterSource.DEFAULT:
            fixed["scheduler"] = storyboard.scheduler  # the file's scheduler, unless --scheduler was given
        if storyboard.depth_model and not opts.get("depth_model"):
            fixed["depth_model"] = storyboard.depth_model  # likewise the file's depth model
        settings = render_settings(opts, **fixed)
        check_render_settings(settings, opts["executor"], opts["ray_address"])
        parallelism = Parallelism(opts["workers"], devices, opts["executor"], opts["ray_address"]).check()
        check_output_folder(opts["out"])
        check_model(opts["model"])
        checked = (storyboard, redo, only, settings, parallelism)
    if command in ("make", "stitch"):
        frames = opts["frame_list"] if command == "stitch" else None  # make's --frames picks frames to render
        replace(stitch_settings(opts), frames=frames).check(opts["out"])
        check_finishing_options(opts)
    return checked


def _control_flags(values: tuple[str, ...], video: Path | None) -> list[Any] | None:
    """``--control JSON`` (repeatable) → the entries of one ``"control"`` list; None when not given.
    Entries without an ``"image"`` take ``--control-video``'s frames, at each frame's time in the film."""
    import json

    if video is not None and not values:
        raise FramereelError(f"--control-video {video}: needs --control with the ControlNet it drives, like "
                             '--control \'{"model": "PATH_OR_ID", "preprocess": "canny"}\'')
    entries: list[Any] = []
    for text in values:
        try:
            value = json.loads(text)
        except ValueError as err:
            raise FramereelError(f"--control {text}: not JSON ({err}); give an object like "
                                 '\'{"model": "PATH_OR_ID", "image": "edges.png", "preprocess": "canny"}\'') from None
        entries += value if isinstance(value, list) else [value]
    if video is not None:
        entries = [{"image": f"video:{video.resolve()}", **e} if isinstance(e, dict) else e for e in entries]
    return entries or None


def _do_render(checked: tuple[Any, ...], opts: dict[str, Any], report) -> Any:
    from .events import Warning as WarningEvent
    from .runner import render

    storyboard, redo, only, settings, parallelism = checked
    for note in storyboard.notes:  # what an imported file could not carry (e.g. a Deforum settings file)
        report(WarningEvent(f"note: {note}"))
    if opts["dry_run"]:
        from .plan import plan_run

        try:
            return plan_run(storyboard, opts["out"], settings, redo=redo, force=opts["force"], only=only)
        finally:
            report.close()
    report = _with_gallery(opts["out"], report)
    click.get_current_context().meta[UNDERWAY] = True
    try:
        return render(storyboard, opts["out"], settings, redo=redo, force=opts["force"], only=only,
                      parallelism=parallelism, on_event=report)
    finally:
        report.close()


def _do_stitch(out: Path, opts: dict[str, Any], report) -> Path:
    from .video import stitch

    report = _with_gallery(out, report)
    click.get_current_context().meta[UNDERWAY] = True  # finishing stages resume too
    try:
        return stitch(out, stitch_settings(opts), on_event=report)
    finally:
        report.close()


def _with_gallery(out: Path, report):
    """Keep OUT/index.html (the run's gallery page) current while ``report`` shows progress."""
    from .gallery import LiveGallery

    return LiveGallery(out, report)


def _summary(result, video: Path | None, json_lines: bool, quiet: bool) -> None:
    if json_lines or quiet:
        return
    parts = [f"{len(result.rendered)} rendered", f"{len(result.skipped)} skipped"]
    if result.failed:
        parts.append(f"{len(result.failed)} failed ({', '.join(map(str, result.failed))})")
    line = ", ".join(parts) + f" of {result.total} frames"
    if result.rendered:
        load = result.load_seconds
        per_frame = max(result.seconds - load, 0.0) / len(result.rendered)
        line += f" in {result.seconds:.1f}s ({per_frame:.2f}s/frame"
        line += f", after {load:.1f}s loading the model)" if load else ")"
    if len(result.devices) > 1:
        line += "; by device: " + ", ".join(f"{d} {n}" for d, n in sorted(result.devices.items()))
    click.echo(line, err=True)
    if video:
        click.echo(f"video: {video}", err=True)


def _show_plan(plan, json_lines: bool) -> None:
    import json

    if json_lines:
        click.echo(json.dumps(plan.as_dict()))
        return
    for note in plan.notes:
        click.echo(f"warning: {note}", err=True)
    click.echo(plan.summary())


def _exit_for(result) -> None:
    if result.failed:
        sys.exit(1)


@main.command()
@click.argument("storyboard", type=click.Path(path_type=Path, readable=False))
@_render_options
@_stitch_options
@finishing_options
@beat_options
@_output_options
@_handle_errors
def make(storyboard: Path, quiet: bool, json_lines: bool, **opts: Any) -> None:
    """Render STORYBOARD's frames and stitch them into OUT/video.mp4 (frames + stitch)."""
    from .progress import reporter

    if opts["on_beat"]:
        storyboard = on_beat_storyboard(storyboard, opts, lambda line: None if quiet else click.echo(line, err=True))
    checked = _check_command_line("make", {**opts, "storyboard": storyboard})
    result = _do_render(checked, opts, reporter(json_lines, quiet))
    if opts["dry_run"]:
        return _show_plan(result, json_lines)
    video = None
    if not result.failed:
        video = _do_stitch(opts["out"], opts, reporter(json_lines, quiet))
    _summary(result, video, json_lines, quiet)
    _exit_for(result)


@main.command()
@click.argument("storyboard", type=click.Path(path_type=Path, readable=False))
@_render_options
@_output_options
@_handle_errors
def frames(storyboard: Path, quiet: bool, json_lines: bool, **opts: Any) -> None:
    """Render STORYBOARD's frames into OUT/frames/ (no video)."""
    from .progress import reporter

    checked = _check_command_line("frames", {**opts, "storyboard": storyboard})
    result = _do_render(checked, opts, reporter(json_lines, quiet))
    if opts["dry_run"]:
        return _show_plan(result, json_lines)
    _summary(result, None, json_lines, quiet)
    _exit_for(result)


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@_stitch_options
@finishing_options
@_output_options
@_handle_errors
def stitch(out: Path, quiet: bool, json_lines: bool, **opts: Any) -> None:
    """(Re)build a video from the frames in OUT/frames/ (missing frames are skipped with a warning)."""
    from .progress import reporter

    _check_command_line("stitch", {**opts, "out": out})
    video = _do_stitch(out, opts, reporter(json_lines, quiet))
    if not (quiet or json_lines):
        click.echo(f"video: {video}", err=True)


@main.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Folder for interactive/, storyboard.json and what :make writes.")
@_apply(MODEL_OPTIONS + FRAME_OPTIONS)
@_handle_errors
def interactive(out: Path, seed: int | None, **opts: Any) -> None:
    """Type prompts and get images with the model kept loaded; keep the good ones as a storyboard.

    Each image is saved as OUT/interactive/NNNN-slug.png (never overwritten). The options set
    where the session starts; commands starting with ':' change them (:help lists them): :seed,
    :steps, :guidance, :size, :neg, :scheduler, :again, :keep, :list, :undo, :make. Piped input
    gives only result lines on stdout:

    \b
      printf 'a lighthouse at dusk\\n:keep\\n:make\\nq\\n' | framereel interactive -o out
    """
    from .backends.checks import check_render_settings
    from .interactive import Session, run_interactive
    from .validate import check_model, check_output_folder

    probe = {k: opts[k] for k in ("steps", "guidance", "width", "height", "negative_prompt") if opts[k] is not None}
    settings = render_settings(opts, batch=1)  # one image per prompt: no padded batch to wait for
    _validate_frame_flags({**probe, **({"seed": seed} if seed is not None else {})})
    check_render_settings(settings)
    check_output_folder(out)
    check_model(opts["model"])
    run_interactive(Session(out, settings, seed=DEFAULT_RUN_SEED if seed is None else seed, params=probe))


@main.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Folder for interactive/, storyboard.json and the film.")
@_apply(MODEL_OPTIONS + FRAME_OPTIONS)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback requires the printed URL's access token.")
@click.option("--port", type=int, default=8188, show_default=True, help="Port (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the studio in the default browser.")
@_handle_errors
def studio(out: Path, seed: int | None, host: str, port: int, open_browser: bool, **opts: Any) -> None:
    """A local web app over the interactive session: type prompts and watch each image render,
    keep the good ones, arrange the storyboard, render the film and play it. The options set
    where the session starts; the page's controls change them.

    \b
      framereel studio -o out --model demo      # then open the printed http://127.0.0.1:8188/
    """
    from .studio import serve

    session = _page_session(out, seed, host, port, opts)
    serve(session, host=host, port=port, open_browser=open_browser, say=lambda m: click.echo(m, err=True))


@main.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Folder for storyboard.json (what you keep).")
@_apply(MODEL_OPTIONS + FRAME_OPTIONS)
@click.option("--fast-path", type=click.Choice(["off", "auto", "on", "max"]), default="off", show_default=True,
              help="As for make: channels-last, fused QKV, torch.compile (compiled before the first frame).")
@click.option("--tiny-vae", default=None, metavar="PATH|HUB_ID", help="Decode the previews with a TAESD-style tiny VAE.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback requires the printed URL's access token.")
@click.option("--port", type=int, default=8189, show_default=True, help="Port (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
@_handle_errors
def live(out: Path, seed: int | None, host: str, port: int, open_browser: bool, **opts: Any) -> None:
    """Type or edit a prompt (and move a slider towards a second one) and watch frames stream in as
    fast as the device renders them, with the frames/s achieved; keep a frame or an A→B stretch into
    OUT/storyboard.json. SD-shaped models (Turbo too) stream-batch: frames at staggered steps share
    one UNet call. On a CPU it runs with the demo model.

    \b
      framereel live --model demo --steps 4               # then open the printed http://127.0.0.1:8189/
      framereel live --model stabilityai/sd-turbo --fast-path on --tiny-vae madebyollin/taesd
    """
    from .studio.live import serve_live

    session = _page_session(out, seed, host, port, opts)
    serve_live(session, host=host, port=port, open_browser=open_browser, say=lambda m: click.echo(m, err=True))


def _page_session(out: Path, seed: int | None, host: str, port: int, opts: dict[str, Any]):
    """The checked options of a page command (studio, live) → its loaded-on-demand :class:`Session`."""
    from .backends.checks import check_render_settings
    from .interactive import Session
    from .studio import check_address
    from .validate import check_model, check_output_folder

    check_address(host, port)
    probe = {k: opts[k] for k in ("steps", "guidance", "width", "height", "negative_prompt") if opts[k] is not None}
    settings = render_settings(opts, batch=1)  # one image per prompt: no padded batch to wait for
    _validate_frame_flags({**probe, **({"seed": seed} if seed is not None else {})})
    check_render_settings(settings)
    check_output_folder(out)
    check_model(opts["model"])
    click.echo("loading the model…", err=True)
    return Session(out, settings, seed=DEFAULT_RUN_SEED if seed is None else seed, params=probe)


def _validate_frame_flags(values: dict[str, Any]) -> None:
    from .storyboard import check_value

    for key, value in values.items():
        check_value(Path("-"), "command line", key, value)


@main.command()
@click.option("--model", default="demo", show_default=True,
              help="demo, sd-shaped (SD 1.x shapes, random weights: SD 1.4's FLOPs), or any --model value.")
@click.option("--size", type=int, default=None, help="Image size (square).  [default: the model's native size]")
@click.option("--steps", type=int, default=25, show_default=True, help="Denoising steps for the overhead figure.")
@click.option("--frames", type=int, default=3, show_default=True, help="Frames per side for the medians.")
@click.option("--dtype", default="auto", show_default=True, help=RENDER_HELP["dtype"])
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write results here.")
@click.option("--only", default=None, metavar="LIST",
              help="Some of: overhead, peak, schedulers, batching, accelerations, memory (comma-separated).  [default: all]")
@click.option("--batches", default="1,2,4", show_default=True, metavar="LIST", help="Batch sizes to measure.")
@click.option("--compile", "compile_", is_flag=True, help="Also measure --compile (compiling takes minutes).")
@click.option("--fast-path", type=click.Choice(["off", "auto", "on", "max"]), default="off", show_default=True,
              help="Also measure the UNet's fraction of peak and a frame with this --fast-path.")
@click.option("--tiny-vae", default=None, metavar="PATH|HUB_ID",
              help="Measure this tiny VAE (else a random one with TAESD's shapes: timing only).")
@click.option("--safety-checker", is_flag=True,
              help="sd-shaped: add SD 1.4's safety checker (random weights) and run it in the memory figure.")
@_handle_errors
def bench(model: str, size: int | None, steps: int, frames: int, dtype: str, json_out: Path | None,
          only: str | None, batches: str, compile_: bool, fast_path: str, tiny_vae: str | None,
          safety_checker: bool) -> None:
    """Measure framereel against the plain diffusers loop: overhead ratio, fraction of matmul peak,
    DPM-Solver++ 25 vs PNDM 50, batching, the optional accelerations and peak memory. Ratios from
    one run, each printed with the machine and settings; nothing is asserted.

    \b
    framereel bench                                   # the demo model, every figure
    framereel bench --model sd-shaped --size 256 --steps 5 --frames 2
    framereel bench --model sd-shaped --size 256 --steps 5 --only peak --fast-path on   # the UNet, fast path
    framereel bench --model sd-shaped --size 512 --only memory --safety-checker   # SD 1.4's RAM at 512²
    """
    from .bench import FIGURES, BenchOptions, parse_batches, run_bench

    for name, value, lo in (("--frames", frames, 1), ("--steps", steps, 1), ("--size", size, 64)):
        if value is not None and not lo <= value <= 4096:
            raise FramereelError(f"{name} {value}: give a whole number from {lo} to 4096")
    figures = tuple(x.strip() for x in only.split(",")) if only else FIGURES
    unknown = [x for x in figures if x not in FIGURES]
    if unknown:
        raise FramereelError(f"--only: unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    options = BenchOptions(model, size, steps, frames, dtype, batches=parse_batches(batches), only=figures,
                           compile=compile_, tiny_vae=tiny_vae, safety_checker=safety_checker, fast_path=fast_path)
    run_bench(options, out=json_out, log=lambda m: click.echo(m))


@main.command()
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("out"), show_default=True,
              help="Output folder whose free disk space to check.")
@click.option("--json", "json_out", is_flag=True, help="Print the checks as one JSON object.")
@click.option("--smoke", is_flag=True, help="Tenstorrent: also render one 4-step frame with --backend tt and write "
              "OUT/tt-smoke-report.json (timings, every decision) to attach to a bug report.")
@click.option("--smoke-demo", is_flag=True, help="Tenstorrent: also run tt-metal's demo once with --backend tt-demo.")
@click.option("--model", default=None, help="Also name this model's family, its defaults and the memory options a GPU here needs for it; "
              "the model for --smoke.  [default for --smoke: CompVis/stable-diffusion-v1-4]")
@click.option("--refiner", default=None, metavar="PATH_OR_ID",
              help="With --model (SDXL): also check this refiner fits it and name it.")
@click.option("--motion-adapter", default=None, metavar="PATH|HUB_ID|demo",
              help="Also find this motion module as make would, say what it is and (with --model) check it fits.")
@click.option("--video-model", default=None, metavar="PATH|HUB_ID",
              help="Also find this video model as make would: its family and the rules its clips follow.")
@click.option("--depth-model", default=None, metavar="PATH|HUB_ID",
              help="Also find this depth-estimation model as make would (3D camera, depth control maps) and name it.")
@_handle_errors
def doctor(out: Path, json_out: bool, smoke: bool, smoke_demo: bool, model: str | None, refiner: str | None,
           motion_adapter: str | None, video_model: str | None, depth_model: str | None) -> None:
    """Check what this machine can render with: versions, devices, Tenstorrent set-up, Hugging Face,
    ffmpeg and disk. Every problem line ends with its fix."""
    import json

    from .doctor import diagnose

    if smoke or smoke_demo:
        from .doctor import smoke as run_smoke

        path, report = run_smoke(out, model, tt=smoke, demo=smoke_demo)
        if json_out:
            click.echo(json.dumps(report, indent=2, default=str))
        for kind in ("tt", "tt-demo"):
            if kind in report:
                r = report[kind]
                click.echo(f"--backend {kind}: {'ok' if r['ok'] else 'FAILED: ' + r.get('error', '')}; "
                           + ", ".join(f"{k} {v}s" for k, v in r["seconds"].items()), err=True)
                for key, value in r.get("decisions", {}).items():
                    click.echo(f"    {key}: {value}", err=True)
        click.echo(f"report: {path}", err=True)
        if not all(report[k]["ok"] for k in ("tt", "tt-demo") if k in report):
            sys.exit(1)
        return
    checks = diagnose(out, model=model, refiner=refiner, motion_adapter=motion_adapter, video_model=video_model,
                      depth_model=depth_model)
    if json_out:
        click.echo(json.dumps({c.name: c.as_dict() for c in checks}, indent=2))
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    for c in checks:
        mark = {True: "[green]ok[/]  ", False: "[red]fix[/] ", None: "    "}[c.ok]
        line = f"{mark}{c.name:<20} {c.detail}"
        if c.fix and c.ok is not True:
            line += f"  [dim]→ {c.fix}[/]"
        console.print(line)


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@_handle_errors
def gallery(out: Path) -> None:
    """Write OUT/index.html: the run's video, timeline and every frame with its parameters
    (a page that works offline from file://; make, frames and stitch write it too)."""
    from .gallery import write_gallery

    click.echo(f"gallery: {write_gallery(out)}", err=True)


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the PNG.  [default: OUT/sheet.png]")
@click.option("--columns", type=int, default=5, show_default=True, help="Thumbnails per row.")
@click.option("--thumb", type=int, default=160, show_default=True, help="Thumbnail size in pixels.")
@_handle_errors
def sheet(out: Path, sheet: Path | None, columns: int, thumb: int) -> None:
    """Write a contact sheet of OUT/frames/: thumbnails captioned with index and prompt."""
    from .sheet import contact_sheet

    path = contact_sheet(out, sheet, columns=columns, thumb=thumb,
                         on_warning=lambda m: click.echo(f"warning: {m}", err=True))
    click.echo(f"sheet: {path}", err=True)


_register_finishing(main, _handle_errors)  # `framereel upscale`, `framereel beats`

if __name__ == "__main__":
    main()


@main.group("import")
def import_group() -> None:
    """Convert another tool's files into a framereel storyboard."""


@import_group.command("deforum")
@click.argument("settings", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("storyboard.json"),
              show_default=True, help="Storyboard to write.")
@click.option("--seed", type=int, default=DEFAULT_RUN_SEED, show_default=True,
              help="Seed used where the settings say -1 (random in Deforum).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@_handle_errors
def import_deforum_command(settings: Path, out: Path, seed: int, force: bool) -> None:
    """Convert a Deforum settings file (2D, 3D, Interpolation or None mode) into a storyboard.

    Everything it cannot carry is listed, one line each, here and in the storyboard's "notes".
    """
    from .deforum import import_deforum

    imported = import_deforum(settings, out, seed=seed, force=force)
    click.echo(f"{out}: {imported.frames} frames from {settings.name} ({imported.mode} mode, scheduler {imported.scheduler})")
    for note in imported.notes:
        click.echo(f"note: {note}")
    depth = " --depth-model PATH_OR_ID (a Depth Anything or DPT model)" if imported.needs_depth_model else ""
    click.echo(f"render it: framereel make {out} -o out{depth}")
