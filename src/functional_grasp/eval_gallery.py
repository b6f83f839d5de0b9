"""Gallery PNG of ``fgrasp eval``: one captioned thumbnail of the predicted grasp per trial."""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

#: Height of the caption strip under each thumbnail, pixels.
CAPTION_PX = 34
#: Thumbnails per row at most (a row per object otherwise).
MAX_COLUMNS = 10
#: Caption colour by outcome: green success, red failure.
_OK, _FAIL, _TEXT = (90, 220, 110), (240, 90, 80), (210, 210, 210)


def gallery_png(items: Sequence[tuple[str, int, str, str, np.ndarray | None]], title: str) -> bytes:
    """A grid of thumbnails, one row per object (wrapped after :data:`MAX_COLUMNS`); PNG bytes.

    Args:
        items: ``(object, trial, outcome, detail, thumbnail (H, W, 3) uint8 or None)`` in display
            order; thumbnails share one size; a missing one is drawn as a grey tile.
        title: line above the grid.
    """
    from PIL import Image, ImageDraw, ImageFont

    shapes = [t.shape for *_, t in items if t is not None]
    h, w = shapes[0][:2] if shapes else (120, 160)
    rows: list[list] = []
    last = None
    for item in items:
        if item[0] != last or len(rows[-1]) >= MAX_COLUMNS:
            rows.append([])
            last = item[0]
        rows[-1].append(item)
    ncol = max((len(r) for r in rows), default=1)
    head = 30
    try:
        big, small = ImageFont.load_default(size=18), ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        big = small = ImageFont.load_default()
    title_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=big)) + 16
    canvas = Image.new("RGB", (max(ncol * w, title_w), head + len(rows) * (h + CAPTION_PX)), (32, 32, 32))
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), title, fill=_TEXT, font=big)
    for r, row in enumerate(rows):
        y = head + r * (h + CAPTION_PX)
        for c, (obj, trial, outcome, detail, thumb) in enumerate(row):
            x = c * w
            tile = thumb if thumb is not None else np.full((h, w, 3), 90, np.uint8)
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile[:h, :w])), (x, y))
            colour = _OK if outcome == "success" else _FAIL
            draw.text((x + 4, y + h + 2), f"{obj} #{trial}: {outcome}", fill=colour, font=small)
            draw.text((x + 4, y + h + 17), detail[:int(w / 6.5)], fill=_TEXT, font=small)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
