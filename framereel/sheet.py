"""``contact_sheet()``: every frame as a captioned thumbnail on one PNG, to choose what to redo."""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .errors import FramereelError
from .manifest import FRAMES_DIR, atomic_write_bytes, frame_index

CAPTION_LINES = 2


def contact_sheet(out_dir: str | Path, sheet: str | Path | None = None, *, columns: int = 5, thumb: int = 160) -> Path:
    """Write a grid of the frames in ``out_dir/frames`` captioned with index and prompt start.

    Returns the sheet's path (default ``out_dir/sheet.png``).
    """
    out = Path(out_dir)
    frames = sorted((frame_index(p), p) for p in (out / FRAMES_DIR).glob("frame_*.png") if frame_index(p) is not None)
    if not frames:
        raise FramereelError(f"{out}: no frames to put on a sheet; render first with `framereel frames`")
    if columns < 1 or thumb < 32:
        raise FramereelError("--columns must be at least 1 and --thumb at least 32 pixels")
    font = ImageFont.load_default(size=max(10, thumb // 14))
    line_h = font.getbbox("Ag")[3] + 2
    cell_w, cell_h = thumb + 8, thumb + 8 + line_h * CAPTION_LINES
    rows = math.ceil(len(frames) / columns)
    grid = Image.new("RGB", (cell_w * min(columns, len(frames)), cell_h * rows), (24, 24, 24))
    draw = ImageDraw.Draw(grid)
    chars = max(8, int(thumb / (font.getlength("a") or 6)))
    for n, (index, path) in enumerate(frames):
        x, y = (n % columns) * cell_w + 4, (n // columns) * cell_h + 4
        with Image.open(path) as im:
            prompt = im.text.get("prompt", "") if hasattr(im, "text") else ""
            im = im.convert("RGB")
            im.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
            grid.paste(im, (x + (thumb - im.width) // 2, y + (thumb - im.height) // 2))
        wrapped = textwrap.wrap(f"{index:03d} {prompt}", chars)
        lines = wrapped[:CAPTION_LINES]
        if len(wrapped) > CAPTION_LINES:
            lines[-1] = lines[-1][: chars - 1] + "…"
        for k, line in enumerate(lines):
            draw.text((x, y + thumb + 2 + k * line_h), line, fill=(230, 230, 230), font=font)
    target = Path(sheet) if sheet else out / "sheet.png"
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write_bytes(target, buf.getvalue())
    return target
