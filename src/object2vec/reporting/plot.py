"""Line charts as PNG files, drawn with numpy and the standard library only (no matplotlib, no Pillow).

    png = render_curves([0, 1, 2], [Panel("loss", [Series("train", [0.9, 0.6, 0.5]),
                                                   Series("validation", [0.8, 0.7, 0.75])])],
                        title="object2vec", best_x=1)
    Path("curves.png").write_bytes(png)

One panel per metric, stacked, each with its own y axis (a loss and an accuracy never share a scale):
a line per series, tick labels, a legend, and a dashed line at ``best_x``. A non-finite value leaves a
gap in its line and a small ``X`` at the top of the panel. Text uses a built-in 5x7 bitmap font of
capitals, digits and a little punctuation; lower case is drawn in capitals.

To look at the output: open the file in any image viewer or browser (``xdg-open training_curves.png``).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Color = tuple[int, int, int]
WHITE, BLACK, GREY, GRID = (255, 255, 255), (0, 0, 0), (120, 120, 120), (228, 228, 228)
SPLIT_COLORS: dict[str, Color] = {"train": (31, 119, 180), "validation": (255, 127, 14),
                                  "test": (44, 160, 44)}
PALETTE: tuple[Color, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                              (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
                              (188, 189, 34), (23, 190, 207))  # matplotlib's tab10
WIDTH, TITLE_HEIGHT, PANEL_HEIGHT = 800, 44, 220
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 26, 34  # plot area margins inside a panel, in pixels
MARKERS_UP_TO = 60  # epochs; with more, points are joined by the line only

# 5x7 glyphs: each is 7 rows of 5 bits (bit 4 = leftmost pixel), as 14 hex digits.
_GLYPHS = """
0 0E11131519110E 1 040C040404040E 2 0E11010204081F 3 1F02040201110E 4 02060A121F0202
5 1F101E0101110E 6 0608101E11110E 7 1F010204080808 8 0E11110E11110E 9 0E11110F01020C
A 0E1111111F1111 B 1E11111E11111E C 0E11101010110E D 1C12111111121C E 1F10101E10101F
F 1F10101E101010 G 0E11101711110F H 1111111F111111 I 0E04040404040E J 0702020202120C
K 11121418141211 L 1010101010101F M 111B1515111111 N 11111915131111 O 0E11111111110E
P 1E11111E101010 Q 0E11111115120D R 1E11111E141211 S 0F10100E01011E T 1F040404040404
U 1111111111110E V 11111111110A04 W 1111111515150A X 11110A040A1111 Y 1111110A040404
Z 1F01020408101F . 00000000000C0C , 000000000C0408 - 0000001F000000 + 0004041F040400
: 000C0C000C0C00 _ 0000000000001F ( 02040808080402 ) 08040202020408 / 00010204081000
= 00001F001F0000 % 18190204081303 ? 0E110102040004 ! 04040404040004 # 0A0A1F0A1F0A0A
"""


def _parse_font(table: str) -> dict[str, np.ndarray]:
    """{character: (7, 5) bool bitmap} from the table's "character hex" pairs, plus the space."""
    tokens = iter(table.split())
    return {" ": np.zeros((7, 5), bool), **{ch: _bitmap(rows) for ch, rows in zip(tokens, tokens)}}


def _bitmap(hex_rows: str) -> np.ndarray:
    rows = bytes.fromhex(hex_rows)
    return np.array([[(r >> (4 - c)) & 1 for c in range(5)] for r in rows], bool)


FONT = _parse_font(_GLYPHS)


@dataclass
class Series:
    """One line: ``values[i]`` belongs to ``x[i]`` (``values`` may be shorter than ``x``: a run that
    stopped early); ``color`` defaults by label (train blue, ...)."""

    label: str
    values: Sequence[float]
    color: Color | None = None


@dataclass
class Panel:
    """One chart with its own y axis."""

    title: str
    series: list[Series]


# -- drawing primitives on an (H, W, 3) uint8 image ---------------------------------------------------


def text_width(text: str, scale: int = 1) -> int:
    return max(0, len(text) * 6 * scale - scale)


def draw_text(img: np.ndarray, x: int, y: int, text: str, color: Color, scale: int = 1) -> None:
    """``text`` with its top-left corner at (x, y); unknown characters are drawn as ``?``."""
    for i, ch in enumerate(text.upper()):
        glyph = FONT.get(ch, FONT["?"]).repeat(scale, 0).repeat(scale, 1)
        _paint(img, x + i * 6 * scale, y, glyph, color)


def _paint(img: np.ndarray, x: int, y: int, mask: np.ndarray, color: Color) -> None:
    """Set the pixels of ``mask`` placed at (x, y), clipped to the image."""
    h, w = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, img.shape[1]), min(y + h, img.shape[0])
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1][mask[y0 - y:y1 - y, x0 - x:x1 - x]] = color


def draw_line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color: Color,
              width: int = 2, dash: int = 0) -> None:
    """A straight line ``width`` pixels thick; ``dash > 0`` draws dashes of that many pixels."""
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs, ys = np.rint(np.linspace(x0, x1, n)).astype(int), np.rint(np.linspace(y0, y1, n)).astype(int)
    if dash:
        keep = (np.arange(n) // dash) % 2 == 0
        xs, ys = xs[keep], ys[keep]
    for dx in range(width):
        for dy in range(width):
            px, py = xs + dx - width // 2, ys + dy - width // 2
            ok = (px >= 0) & (px < img.shape[1]) & (py >= 0) & (py < img.shape[0])
            img[py[ok], px[ok]] = color


def nice_ticks(lo: float, hi: float, target: int = 5, integer: bool = False) -> list[float]:
    """Round values in [lo, hi] at a step of 1, 2 or 5 times a power of ten, about ``target`` of them."""
    raw = max((hi - lo) / target, 1e-300)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    step = max(step, 1.0) if integer else step
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """``value`` with just enough digits to tell neighbouring ticks apart (fixed point when that is
    short, e.g. ``0.85`` or ``14500``, else exponent notation)."""
    if len(ticks) < 2:
        return f"{value:.6g}"
    step, top = abs(ticks[1] - ticks[0]), max(abs(t) for t in ticks)
    value = 0.0 if abs(value) < step * 1e-6 else value
    if 1e-4 <= step and top < 1e7:
        return f"{value:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"
    digits = min(10, max(1, math.floor(math.log10(top)) - math.floor(math.log10(step)) + 1))
    return f"{value:.{digits}g}"


def _padded_range(values: np.ndarray, pad: float = 0.06) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):  # constant: centre it
        half = abs(hi) * 0.1 or 1.0
        return lo - half, hi + half
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


# -- the chart ----------------------------------------------------------------------------------------


def _draw_panel(img: np.ndarray, top: int, x: np.ndarray, panel: Panel, best_x: float | None,
                x_label: str, x_ticks: Sequence[tuple[float, str]] | None = None) -> None:
    px0, px1, py0, py1 = LEFT, img.shape[1] - RIGHT, top + TOP, top + PANEL_HEIGHT - BOTTOM
    draw_text(img, px0, top + 8, panel.title, BLACK, scale=2 if text_width(panel.title, 2) < 320 else 1)
    lx = px1  # legend, right-aligned in the header row
    colors = [s.color or SPLIT_COLORS.get(s.label, PALETTE[i % len(PALETTE)])
              for i, s in enumerate(panel.series)]
    for s, color in reversed(list(zip(panel.series, colors))):
        lx -= text_width(s.label)
        draw_text(img, lx, top + 12, s.label, BLACK)
        draw_line(img, lx - 20, top + 15, lx - 6, top + 15, color, width=3)
        lx -= 34
    ys = [np.asarray(s.values, float) for s in panel.series]
    finite = np.concatenate([v[np.isfinite(v) & (np.abs(v) < 1e300)] for v in ys] + [np.zeros(0)])
    xlo, xhi = _padded_range(x, pad=0.03) if len(x) > 1 else (x[0] - 0.5, x[0] + 0.5)
    ylo, yhi = _padded_range(finite) if finite.size else (0.0, 1.0)
    sx = lambda v: px0 + (v - xlo) / (xhi - xlo) * (px1 - px0)  # noqa: E731
    sy = lambda v: py1 - (v - ylo) / (yhi - ylo) * (py1 - py0)  # noqa: E731
    yticks = nice_ticks(ylo, yhi) if finite.size else []
    for t in yticks:
        y = round(sy(t))
        draw_line(img, px0, y, px1, y, GRID, width=1)
        draw_line(img, px0 - 4, y, px0, y, BLACK, width=1)
        label = tick_label(t, yticks)
        draw_text(img, px0 - 7 - text_width(label), y - 3, label, BLACK)
    xticks = nice_ticks(xlo, xhi, target=8, integer=True)
    labelled = x_ticks if x_ticks is not None else [(t, tick_label(t, xticks)) for t in xticks]
    for t, label in labelled:
        xp = round(sx(t))
        draw_line(img, xp, py1, xp, py1 + 4, BLACK, width=1)
        draw_text(img, xp - text_width(label) // 2, py1 + 8, label, BLACK)
    draw_text(img, (px0 + px1 - text_width(x_label)) // 2, py1 + 20, x_label, GREY)
    if best_x is not None and xlo <= best_x <= xhi:
        bx = round(sx(best_x))
        draw_line(img, bx, py0, bx, py1, GREY, width=1, dash=4)
        label = f"best {best_x:g}"
        draw_text(img, min(bx + 4, px1 - text_width(label) - 2), py0 + 3, label, GREY)
    for values, color in zip(ys, colors):
        ok = np.isfinite(values) & (np.abs(values) < 1e300)
        n = min(len(values), len(x))
        for i in range(n - 1):
            if ok[i] and ok[i + 1]:
                draw_line(img, sx(x[i]), sy(values[i]), sx(x[i + 1]), sy(values[i + 1]), color)
        for i in range(n):
            lonely = not (i > 0 and ok[i - 1]) and not (i + 1 < n and ok[i + 1])
            if ok[i] and (n <= MARKERS_UP_TO or lonely):
                xp, yp = round(sx(x[i])), round(sy(values[i]))
                img[max(yp - 2, 0):yp + 3, max(xp - 2, 0):xp + 3] = color
            elif not ok[i]:
                draw_text(img, round(sx(x[i])) - 2, py0 + 3, "x", color)
    if not finite.size:
        msg = "no finite values"
        draw_text(img, (px0 + px1 - text_width(msg, 2)) // 2, (py0 + py1) // 2 - 7, msg, GREY, 2)
    img[py0:py1 + 1, [px0, px1]] = BLACK  # frame
    img[[py0, py1], px0:px1 + 1] = BLACK


def render_curves(x: Sequence[float], panels: Sequence[Panel], title: str = "",
                  best_x: float | None = None, note: str = "", x_label: str = "epoch",
                  width: int = WIDTH, x_ticks: Sequence[tuple[float, str]] | None = None) -> bytes:
    """A PNG with ``title`` (and a smaller ``note`` line) above one panel per entry of ``panels``.

    ``x_ticks``: ``(position, label)`` pairs to mark on the x axis instead of round numbers, e.g.
    ``[(math.log10(k), str(k)) for k in (1, 5, 10)]`` for a logarithmic axis.
    """
    xs = np.asarray(x, float)
    if xs.size == 0 or not np.isfinite(xs).all():
        raise ValueError("x needs at least one value, all finite")
    img = np.full((TITLE_HEIGHT + PANEL_HEIGHT * max(1, len(panels)), width, 3), WHITE, np.uint8)
    draw_text(img, 12, 8, title, BLACK, scale=2)
    draw_text(img, 12, 28, note, GREY)
    for i, panel in enumerate(panels):
        _draw_panel(img, TITLE_HEIGHT + i * PANEL_HEIGHT, xs, panel, best_x, x_label, x_ticks)
    if not panels:
        draw_text(img, LEFT, TITLE_HEIGHT + PANEL_HEIGHT // 2, "no metrics", GREY, scale=2)
    return encode_png(img)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an (H, W, 3) uint8 array: IHDR, one zlib IDAT (filter 0 rows), IEND."""
    h, w, _ = pixels.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
