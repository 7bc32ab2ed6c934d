"""The finishing stages' command-line options and commands (``upscale``, ``beats``).

``framereel.cli`` decorates ``make``/``stitch`` with :func:`finishing_options` (and ``make`` with
:func:`beat_options`) and calls :func:`register` to add the commands. Nothing heavy is imported
until a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import FramereelError

ON_BEAT_FPS = 8.0


def finishing_options(f):
    opts = [
        click.option("--upscale", default=None, metavar="MODEL[:SCALE]",
                     help="Upscale every frame with a super-resolution model file spandrel loads (Real-ESRGAN, "
                          "SwinIR, HAT …), e.g. 4x.pth or 4x.pth:2; frames go to OUT/upscaled/ and the video uses them."),
        click.option("--upscale-tile", type=int, default=256, show_default=True,
                     help="Upscale in tiles of this many source pixels (memory is bounded by the tile); 0: whole frames."),
        click.option("--upscale-overlap", type=int, default=16, show_default=True,
                     help="Context pixels around each tile, cut away after the model (hides seams)."),
        click.option("--interpolate", default=None, metavar="MODEL[:FACTOR|FPSfps]",
                     help="Learned in-betweens (a RIFE 4.x flownet.pkl) inside morphs, chains and clips only — "
                          "never across a cut; :2 (default) doubles the frame rate there, :24fps fills 24 fps."),
        click.option("--loop", is_flag=True, help="The film loops: with --interpolate, add in-betweens from the "
                                                  "last frame back to the first."),
        click.option("--finish-device", default="auto", show_default=True, metavar="DEVICE",
                     help="Device for --upscale and --interpolate: auto (cuda → mps → cpu; fp16 on GPUs), cpu, cuda …"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def beat_options(f):
    opts = [
        click.option("--on-beat", is_flag=True,
                     help="Time the storyboard to --audio's beats first (writes OUT/timed.json; see `framereel beats`)."),
        click.option("--every", type=click.Choice(["1", "2", "4", "8"]), default="1", show_default=True,
                     help="With --on-beat: a cut every N beats."),
        click.option("--bpm", type=float, default=None, help="With --on-beat: this tempo instead of beat detection."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def on_beat_storyboard(storyboard: Path, opts: dict[str, Any], echo) -> Path:
    """``make --audio song --on-beat``: write OUT/timed.json timed to the song; returns its path.
    Sets ``opts["fps"]`` (8 unless given) so the stitch paces in-betweens as the timing assumed.
    With ``--dry-run`` nothing is written: ``opts["storyboard_text"]`` holds what would be."""
    from ..manifest import atomic_write_bytes
    from .beats import format_report, same_file, timed_text

    if not opts.get("audio"):
        raise FramereelError("--on-beat needs the song: add --audio song.mp3")
    check_finishing_options(opts)
    target = Path(opts["out"]) / "timed.json"
    if same_file(target, storyboard):
        raise FramereelError(f"{target} is where --on-beat writes the timed storyboard; time the original "
                             "storyboard, or render this one without --on-beat")
    opts["fps"] = opts.get("fps") or ON_BEAT_FPS
    text, grid, report = timed_text(opts["audio"], storyboard, target, every=int(opts.get("every") or 1),
                                    fps=opts["fps"], bpm=opts.get("bpm"))
    for line in format_report(report, grid, opts["fps"]):
        echo(line)
    if opts.get("dry_run"):
        opts["storyboard_text"] = text
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, text.encode("utf-8"))
    return target


# flags that do something only with another option: (flag, its default, the option, what the flag does)
NEEDS = (
    ("upscale_tile", 256, "upscale", "the tile size of upscaling"),
    ("upscale_overlap", 16, "upscale", "the context around upscaling tiles"),
    ("loop", False, "interpolate", "in-betweens from the last frame back to the first"),
    ("every", "1", "on_beat", "a cut every N beats of the song"),
    ("bpm", None, "on_beat", "the song's tempo for the beat timing"),
)


def check_finishing_options(opts: dict[str, Any]) -> None:
    """Refuse before anything renders: a flag given without the option it works with, and an
    ``--upscale``/``--interpolate`` whose spec, file or model would fail only after the frames."""
    from .interpolate import check_interpolator, parse_interpolate
    from .upscale import check_upscaler, parse_upscale

    for flag, default, option, does in NEEDS:
        if flag in opts and not opts.get(option) and _given(flag, opts[flag], default):
            raise FramereelError(f"--{flag.replace('_', '-')} needs --{option.replace('_', '-')} ({does}); "
                                 f"add --{option.replace('_', '-')} or drop --{flag.replace('_', '-')}")
    if opts.get("upscale"):
        check_upscaler(parse_upscale(opts["upscale"], opts.get("upscale_tile", 256), opts.get("upscale_overlap", 16)))
    if opts.get("interpolate"):
        if opts.get("transition") == "smooth":
            raise FramereelError("--interpolate and --transition smooth both make in-betweens; choose one")
        check_interpolator(parse_interpolate(opts["interpolate"]))


def _given(name: str, value: Any, default: Any) -> bool:
    """Whether option ``name`` was given (on the command line or by the environment), not left at its default."""
    from click.core import ParameterSource

    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source(name) if ctx is not None else None
    if source is None:
        return value != default
    return source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def register(main: click.Group, handle_errors) -> None:
    """Add ``framereel upscale`` and ``framereel beats`` to ``main``."""
    _register_upscale(main, handle_errors)
    _register_beats(main, handle_errors)


def _register_upscale(main: click.Group, handle_errors) -> None:
    """Add ``framereel upscale`` to ``main``."""

    @main.command()
    @click.argument("out", type=click.Path(file_okay=False, path_type=Path))
    @click.argument("model", metavar="MODEL[:SCALE]")
    @click.option("--tile", type=int, default=256, show_default=True, help="Tile side in source pixels; 0: whole frames.")
    @click.option("--tile-overlap", type=int, default=16, show_default=True, help="Context pixels around each tile.")
    @click.option("--device", default="auto", show_default=True, help="auto (cuda → mps → cpu), cpu, cuda, cuda:N, mps.")
    @click.option("--frames", "frame_list", default=None, metavar="LIST", help="Only these frames, e.g. 0-4,7.")
    @click.option("--json", "json_lines", is_flag=True, help="Print one JSON object per event (for scripts).")
    @click.option("-q", "--quiet", is_flag=True, help="No progress output.")
    @handle_errors
    def upscale(out: Path, model: str, tile: int, tile_overlap: int, device: str, frame_list: str | None,
                json_lines: bool, quiet: bool) -> None:
        """Upscale the frames in OUT/frames/ into OUT/upscaled/ with MODEL, any super-resolution model
        file spandrel loads (.pth/.safetensors: Real-ESRGAN, SwinIR, HAT …); :SCALE resizes its result
        (e.g. a 4x model at :2). Only frames whose source, model or settings changed are computed.

        \b
          framereel upscale out/ RealESRGAN_x4plus.pth
          framereel stitch out/ --upscale RealESRGAN_x4plus.pth:2   # the video from upscaled frames
        """
        from ..progress import reporter
        from .upscale import parse_upscale
        from .upscale import upscale as run_upscale

        report = reporter(json_lines, quiet)
        try:
            done = run_upscale(out, parse_upscale(model, tile, tile_overlap), frames=frame_list, device=device,
                               on_event=report)
        finally:
            report.close()
        if not (quiet or json_lines):
            click.echo(f"upscaled: {len(done)} frames in {out / 'upscaled'}", err=True)


def _register_beats(main: click.Group, handle_errors) -> None:
    """Add ``framereel beats`` to ``main``."""

    @main.command()
    @click.argument("song", type=click.Path(dir_okay=False, path_type=Path))
    @click.argument("storyboard", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--every", type=click.Choice(["1", "2", "4", "8"]), default="1", show_default=True,
                  help="A cut every N beats (entries with their own duration keep about that many seconds, "
                       "in multiples of N beats).")
    @click.option("--fps", type=float, default=ON_BEAT_FPS, show_default=True,
                  help="Frame rate the video will be stitched at: sets morph in-between counts.")
    @click.option("--bpm", type=float, default=None, help="Use this tempo instead of detecting beats.")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Timed storyboard to write.  [default: STORYBOARD's name + .timed.json]")
    @click.option("--json", "json_out", is_flag=True, help="Print the timing report as JSON.")
    @handle_errors
    def beats(song: Path, storyboard: Path, every: str, fps: float, bpm: float | None, output: Path | None,
              json_out: bool) -> None:
        """Time STORYBOARD to SONG's beats (librosa beat tracking): write a storyboard whose durations
        (and morph in-between counts at --fps) put every cut on a beat, and print each cut's time and
        its beat. Then: framereel make TIMED.json --fps FPS --audio SONG.

        \b
          framereel beats song.mp3 storyboard.json --every 2 -o timed.json
          framereel make storyboard.json -o out --audio song.mp3 --on-beat     # both in one go
        """
        import json

        from .beats import cut_report, format_report, time_storyboard

        target = output or storyboard.with_name(storyboard.stem + ".timed.json")
        path, grid, report = time_storyboard(song, storyboard, target, every=int(every), fps=fps, bpm=bpm)
        if json_out:
            click.echo(json.dumps({"storyboard": str(path), "bpm": round(grid.bpm, 2), "source": grid.source,
                                   "beats": [round(t, 4) for t in grid.times], "entries": report,
                                   "cuts": cut_report(report, grid)}, indent=2))
            return
        for line in format_report(report, grid, fps):
            click.echo(line)
        click.echo(f"wrote {path}; render it with: framereel make {path} --fps {fps:g} --audio {song}", err=True)
