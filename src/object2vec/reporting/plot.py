"""Line charts as PNG files, drawn with matplotlib (its Agg backend, imported at the first chart).

    png = render_curves([0, 1, 2], [Panel("loss", [Series("train", [0.9, 0.6, 0.5]),
                                                   Series("validation", [0.8, 0.7, 0.75])])],
                        title="object2vec", best_x=1)
    Path("curves.png").write_bytes(png)

One panel per metric, stacked, each with its own y axis (a loss and an accuracy never share a scale):
a line per series, a legend above the frame, and a dashed line at ``best_x``. A non-finite value
leaves a gap in its line and a small ``x`` at the top of the panel.

Every panel's frame sits at a fixed pixel position (``LEFT``, ``TOP``, ... below), so an image is
``width`` x (``TITLE_HEIGHT`` + ``PANEL_HEIGHT`` per panel) pixels whatever its labels. The figure
is a ``matplotlib.figure.Figure`` on its own Agg canvas: no pyplot, no global state, nothing shown.
The pixels are written by :func:`encode_png` as an 8-bit RGB PNG.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Color = tuple[int, int, int]
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (120, 120, 120)
SPLIT_COLORS: dict[str, Color] = {"train": (31, 119, 180), "validation": (255, 127, 14),
                                  "test": (44, 160, 44)}
PALETTE: tuple[Color, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                              (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
                              (188, 189, 34), (23, 190, 207))  # matplotlib's tab10
WIDTH, TITLE_HEIGHT, PANEL_HEIGHT = 800, 44, 220
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 26, 34  # a panel's frame inside its band, in pixels
DPI = 100
MARKERS_UP_TO = 60  # epochs; with more, points are joined by the line only
FONT_SIZE = 8  # points


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


def _rgb(color: Color) -> tuple[float, float, float]:
    return tuple(c / 255 for c in color)


def _draw_panel(fig, box: list[float], x: np.ndarray, panel: Panel, best_x: float | None,
                x_label: str, x_ticks: Sequence[tuple[float, str]] | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_axes(box)
    ax.set_title(panel.title, loc="left", fontsize=FONT_SIZE + 2, pad=4)
    ax.grid(True, color=(0.9, 0.9, 0.9), linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=FONT_SIZE, length=4)
    ax.set_xlabel(x_label, fontsize=FONT_SIZE, color=_rgb(GREY), labelpad=1)
    any_finite = False
    for i, s in enumerate(panel.series):
        color = _rgb(s.color or SPLIT_COLORS.get(s.label, PALETTE[i % len(PALETTE)]))
        values = np.asarray(s.values, float)[:len(x)]
        xs = x[:len(values)]
        ok = np.isfinite(values) & (np.abs(values) < 1e300)
        any_finite |= bool(ok.any())
        shown = np.where(ok, values, np.nan)
        # A point with no finite neighbour has no line: it always gets a marker.
        prev_ok = np.concatenate([[False], ok[:-1]])
        next_ok = np.concatenate([ok[1:], [False]])
        lonely = ok & ~prev_ok & ~next_ok
        marks = ok if len(values) <= MARKERS_UP_TO else lonely
        ax.plot(xs, shown, color=color, linewidth=1.6, label=s.label,
                marker="s", markersize=4, markevery=list(np.flatnonzero(marks)))
        if (~ok).any():  # where a value is not finite: an "x" at the top of the panel
            ax.plot(xs[~ok], np.full((~ok).sum(), 0.96), linestyle="none", marker="x",
                    markersize=4, color=color, transform=ax.get_xaxis_transform(), clip_on=False)
    if len(x) > 1:
        ax.set_xlim(*_padded_range(x, 0.03))
    else:
        ax.set_xlim(x[0] - 0.5, x[0] + 0.5)
    if x_ticks is not None:
        ax.set_xticks([t for t, _ in x_ticks], [label for _, label in x_ticks])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    if not any_finite:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center",
                fontsize=FONT_SIZE + 4, color=_rgb(GREY))
    if best_x is not None:
        lo, hi = ax.get_xlim()
        if lo <= best_x <= hi:
            ax.axvline(best_x, color=_rgb(GREY), linewidth=1, linestyle=(0, (4, 4)),
                       antialiased=False)
            ax.text(best_x, 0.97, f" best {best_x:g}", transform=ax.get_xaxis_transform(),
                    ha="left", va="top", fontsize=FONT_SIZE, color=_rgb(GREY))
    if panel.series:
        _legend(fig, ax, len(panel.series))


def _legend(fig, ax, count: int) -> None:
    """One row right-aligned above the frame, beside the panel's title; when that row would run into
    the title, a framed legend inside the panel (where it covers the least) instead."""
    style = {"fontsize": FONT_SIZE, "handlelength": 1.6, "columnspacing": 1.2}
    legend = ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=count, frameon=False,
                       borderaxespad=0.1, borderpad=0.1, **style)
    renderer = fig.canvas.get_renderer()
    if legend.get_window_extent(renderer).x0 < ax.title.get_window_extent(renderer).x1 + 12:
        legend.remove()
        ax.legend(loc="best", ncol=min(count, 3), framealpha=0.85, **style)


def _padded_range(values: np.ndarray, pad: float) -> tuple[float, float]:
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return lo - 0.5, hi + 0.5
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = TITLE_HEIGHT + PANEL_HEIGHT * max(1, len(panels))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    fig.text(12 / width, 1 - 6 / height, title, ha="left", va="top", fontsize=FONT_SIZE + 4,
             weight="bold")
    if note:
        fig.text(12 / width, 1 - 28 / height, note, ha="left", va="top", fontsize=FONT_SIZE,
                 color=_rgb(GREY))
    for i, panel in enumerate(panels):
        top = TITLE_HEIGHT + i * PANEL_HEIGHT + TOP  # of the frame, in pixels from the top
        frame_height = PANEL_HEIGHT - TOP - BOTTOM
        box = [LEFT / width, 1 - (top + frame_height) / height, (width - LEFT - RIGHT) / width,
               frame_height / height]
        _draw_panel(fig, box, xs, panel, best_x, x_label, x_ticks)
    if not panels:
        fig.text(LEFT / width, 1 - (TITLE_HEIGHT + PANEL_HEIGHT / 2) / height, "no metrics",
                 fontsize=FONT_SIZE + 6, color=_rgb(GREY))
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    assert pixels.shape == (height, width, 3), pixels.shape
    return encode_png(pixels)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an (H, W, 3) uint8 array: IHDR, one zlib IDAT (filter 0 rows), IEND."""
    h, w, _ = pixels.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))
