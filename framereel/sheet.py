"""``contact_sheet()``: every frame as a captioned thumbnail on one image, to choose what to redo."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .errors import FramereelError
from .manifest import FRAMES_DIR, atomic_write_bytes, frame_index
from .validate import SHEET_FORMATS, check_output_folder

CAPTION_LINES = 2
MAX_THUMB = 1024
MAX_COLUMNS = 100
# Fonts with wide Unicode coverage (accents, Greek, Cyrillic, Hebrew, Arabic, symbols), tried in order;
# Pillow finds them in the system's font folders. Pillow's own default font covers ASCII only.
CAPTION_FONTS = ("DejaVuSans.ttf", "NotoSans-Regular.ttf", "LiberationSans-Regular.ttf", "Arial.ttf",
                 "Arial Unicode.ttf", "segoeui.ttf")


@lru_cache(maxsize=8)
def caption_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The first of :data:`CAPTION_FONTS` found on this system, else Pillow's built-in font."""
    for name in CAPTION_FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def contact_sheet(out_dir: str | Path, sheet: str | Path | None = None, *, columns: int = 5, thumb: int = 160,
                  on_warning: Callable[[str], None] | None = None) -> Path:
    """Write a grid of the frames in ``out_dir/frames`` captioned with index and prompt start.

    Each frame is scaled (up or down) to fit a ``thumb``-pixel square. The sheet's extension
    picks its format: .png (default), .jpg/.jpeg or .webp. A frame that does not decode is shown
    as a grey cell marked "unreadable" (and reported to ``on_warning``). Returns the sheet's path
    (default ``out_dir/sheet.png``).
    """
    out = Path(out_dir)
    target = Path(sheet) if sheet else out / "sheet.png"
    fmt = SHEET_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise FramereelError(f"--sheet {target}: unknown image format {target.suffix or '(no extension)'}; "
                             f"use {', '.join(SHEET_FORMATS)}")
    if not 1 <= columns <= MAX_COLUMNS or not 32 <= thumb <= MAX_THUMB:
        raise FramereelError(f"--columns must be from 1 to {MAX_COLUMNS} and --thumb from 32 to {MAX_THUMB} pixels")
    check_output_folder(target.parent, "--sheet")
    frames = sorted((frame_index(p), p) for p in (out / FRAMES_DIR).glob("frame_*.png") if frame_index(p) is not None)
    if not frames:
        raise FramereelError(f"{out}: no frames to put on a sheet; render first with `framereel frames`")
    font = caption_font(max(10, thumb // 14))
    line_h = font.getbbox("Ag")[3] + 2
    cell_w, cell_h = thumb + 8, thumb + 8 + line_h * CAPTION_LINES
    rows = math.ceil(len(frames) / columns)
    grid = Image.new("RGB", (cell_w * min(columns, len(frames)), cell_h * rows), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    chars = max(8, int(thumb / (font.getlength("a") or 6)))
    unreadable = []
    for n, (index, path) in enumerate(frames):
        x, y = (n % columns) * cell_w + 4, (n // columns) * cell_h + 4
        try:
            with Image.open(path) as im:
                prompt = im.text.get("prompt", "") if hasattr(im, "text") else ""
                im = fit_thumbnail(im.convert("RGB"), thumb)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            unreadable.append(index)
            prompt = "(unreadable: render it again with --redo)"
            im = Image.new("RGB", (thumb, thumb), (90, 90, 90))
        grid.paste(im, (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2))
        wrapped = textwrap.wrap(f"{index:03d} {' '.join(prompt.split())}", chars)
        lines = wrapped[:CAPTION_LINES]
        if len(wrapped) > CAPTION_LINES:
            lines[-1] = lines[-1][: chars - 1] + "…"
        for k, line in enumerate(lines):
            draw.text((x, y + thumb + 2 + k * line_h), line, fill=(230, 230, 230), font=font)
    if unreadable and on_warning:
        on_warning(f"frames that do not decode as images: {', '.join(map(str, unreadable))} (shown grey)")
    buf = io.BytesIO()
    grid.save(buf, format=fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP") else {}))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, buf.getvalue())
    return target


def fit_thumbnail(im: Image.Image, thumb: int) -> Image.Image:
    """``im`` scaled up or down, keeping its shape, to fit a ``thumb``-pixel square."""
    scale = min(thumb / im.width, thumb / im.height)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im if size == im.size else im.resize(size, Image.Resampling.LANCZOS)
