"""The training report's charts: PNG charts drawn with matplotlib (checked pixel by pixel after
decoding them chunk by chunk with helpers.decode_png: every panel's frame sits at a fixed pixel
position)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import decode_png

from object2vec.reporting import plot
from object2vec.reporting.plot import (
    BOTTOM,
    LEFT,
    PALETTE,
    PANEL_HEIGHT,
    RIGHT,
    SPLIT_COLORS,
    TITLE_HEIGHT,
    TOP,
    WIDTH,
    Panel,
    Series,
    encode_png,
    render_curves,
)

BLUE, ORANGE = SPLIT_COLORS["train"], SPLIT_COLORS["validation"]
RED = (214, 39, 40)


def has(img: np.ndarray, color) -> np.ndarray:
    """Boolean mask of the pixels that are exactly ``color``."""
    return (img == np.array(color, np.uint8)).all(axis=2)


def dark(img: np.ndarray) -> np.ndarray:
    """Boolean mask of near-black pixels (text: its edges are anti-aliased)."""
    return (img < 100).all(axis=2)


def plot_area(img: np.ndarray, panel: int) -> np.ndarray:
    """The inside of panel ``panel``'s frame."""
    top = TITLE_HEIGHT + panel * PANEL_HEIGHT
    return img[top + TOP + 1:top + PANEL_HEIGHT - BOTTOM, LEFT + 1:img.shape[1] - RIGHT]


def render(x, panels, **kwargs) -> np.ndarray:
    return decode_png(render_curves(x, panels, **kwargs))


def two_panels(n: int) -> list[Panel]:
    loss = np.linspace(1.0, 0.2, n)
    return [Panel("loss", [Series("train", loss), Series("validation", loss + 0.1)]),
            Panel("accuracy", [Series("validation", 1 - loss / 2, color=RED)])]


# -- PNG encoding ---------------------------------------------------------------------------------


def test_encode_png_round_trips_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(pixels)), pixels)


def test_a_corrupted_png_fails_the_crc_check():
    data = bytearray(encode_png(np.zeros((4, 4, 3), np.uint8)))
    data[20] ^= 0xFF  # inside IHDR's data
    with pytest.raises(AssertionError):
        decode_png(bytes(data))


# -- the chart --------------------------------------------------------------------------------------


def test_chart_size_panels_and_series_colours():
    """One panel per entry, each with its own series' colours inside its frame (and no others)."""
    img = render(range(10), two_panels(10), title="a title", best_x=4)
    assert img.shape == (TITLE_HEIGHT + 2 * PANEL_HEIGHT, WIDTH, 3)
    loss, acc = plot_area(img, 0), plot_area(img, 1)
    assert has(loss, BLUE).sum() > 100 and has(loss, ORANGE).sum() > 100
    assert not has(loss, RED).any()
    assert has(acc, RED).sum() > 100 and not has(acc, BLUE).any() and not has(acc, ORANGE).any()
    assert (img[:TITLE_HEIGHT] != 255).any()  # the title was drawn
    for i in range(2):  # every panel has a title and legend above its frame and tick labels
        top = TITLE_HEIGHT + i * PANEL_HEIGHT
        assert dark(img[top:top + TOP]).any()  # black text in the header row
        assert dark(img[top + TOP:top + PANEL_HEIGHT - BOTTOM, :LEFT - 4]).any()  # y tick labels
        assert dark(img[top + PANEL_HEIGHT - BOTTOM + 6:top + PANEL_HEIGHT]).any()  # x tick labels
    header = img[TITLE_HEIGHT:TITLE_HEIGHT + TOP]  # the legend is beside the first panel's title
    assert has(header, BLUE).any() and has(header, ORANGE).any()
    narrow = render(range(10), two_panels(10), width=500)
    assert narrow.shape == (TITLE_HEIGHT + 2 * PANEL_HEIGHT, 500, 3)


def test_a_legend_too_wide_for_the_header_goes_inside_the_panel():
    labels = [f"configuration number {i}" for i in range(8)]
    img = render(range(5), [Panel("validation accuracy",
                                  [Series(label, np.linspace(0, 1, 5) * (i + 1), PALETTE[i])
                                   for i, label in enumerate(labels)])])
    header = img[TITLE_HEIGHT:TITLE_HEIGHT + TOP]
    colours = [c for c in PALETTE[:8] if len(set(c)) > 1]  # not grey: the title's edges are grey
    assert not any(has(header, color).any() for color in colours)  # no legend cut off up there
    assert all(has(plot_area(img, 0), color).sum() > 50 for color in PALETTE[:8])


def test_y_axis_points_up_and_x_axis_right():
    """A rising series has its pixels higher up (smaller row) on the right than on the left."""
    img = render(range(20), [Panel("up", [Series("train", np.arange(20.0))])])
    rows, cols = np.nonzero(has(plot_area(img, 0), BLUE))
    mid = plot_area(img, 0).shape[1] / 2
    assert rows[cols < mid].mean() > rows[cols > mid].mean() + 50


def test_best_epoch_is_marked_where_it_is():
    """The dashed grey line follows best_x from the left half to the right half of the panel."""
    def grey_column(best):
        area = plot_area(render(range(10), two_panels(10), best_x=best), 0)
        per_column = has(area, plot.GREY).sum(axis=0)
        assert per_column.max() > 0.4 * area.shape[0]  # a dashed line, not just the "best" label
        return int(np.argmax(per_column))
    width = WIDTH - LEFT - RIGHT
    assert grey_column(1) < width / 3 < 2 * width / 3 < grey_column(8)
    area = plot_area(render(range(10), two_panels(10)), 0)
    assert has(area, plot.GREY).sum() == 0  # no best_x, no marker


def test_one_epoch_draws_visible_points():
    img = render([0], two_panels(1), best_x=0)
    assert has(plot_area(img, 0), BLUE).sum() >= 9 and has(plot_area(img, 0), ORANGE).sum() >= 9


def test_non_finite_values_leave_gaps_not_errors():
    values = [1.0, math.nan, math.inf, 0.5, -math.inf, 0.25, 1e308, 0.2]
    img = render(range(8), [Panel("loss", [Series("train", values)]),
                            Panel("all nan", [Series("validation", [math.nan] * 8)])])
    assert has(plot_area(img, 0), BLUE).sum() > 20
    assert has(plot_area(img, 1), plot.GREY).sum() > 50  # "no finite values"


def test_a_constant_series_is_a_horizontal_line_across_the_panel():
    area = plot_area(render(range(5), [Panel("flat", [Series("train", [0.5] * 5)])]), 0)
    per_row = has(area, BLUE).sum(axis=1)
    assert per_row.max() > 0.9 * area.shape[1]
    assert abs(int(np.argmax(per_row)) - area.shape[0] / 2) < 10  # centred vertically


def test_many_epochs():
    n = 1000
    values = 1 / (1 + np.arange(n)) + 0.01 * np.sin(np.arange(n))
    area = plot_area(render(range(n), [Panel("loss", [Series("train", values)])], best_x=n - 1), 0)
    assert (has(area, BLUE).any(axis=0)).mean() > 0.9  # the line spans the width (less the margins)


def test_explicit_x_ticks_replace_the_round_numbers():
    """``x_ticks`` marks exactly the given positions (e.g. a log axis labelled 1, 5, 10)."""
    x = [math.log10(k) for k in (1, 5, 10, 20, 50)]
    panels = [Panel("hits", [Series("a", [10, 30, 40, 50, 70])])]
    tick_row = TITLE_HEIGHT + PANEL_HEIGHT - BOTTOM + 2  # between the frame and the tick labels

    def marks(img: np.ndarray) -> list[int]:
        black = has(img[tick_row:tick_row + 1], (0, 0, 0))[0]
        return [int(c) for c in np.flatnonzero(black)]

    default = marks(render(x, panels))
    chosen = marks(render(x, panels, x_ticks=[(v, str(k)) for v, k in zip(x, (1, 5, 10, 20, 50))]))
    assert len(chosen) == 5 and chosen != default
    gaps = np.diff(chosen)
    assert gaps[0] > gaps[3] > gaps[1]  # log spacing: 1->5 wider than 20->50, wider than 5->10


def test_no_panels_and_bad_x():
    img = decode_png(render_curves([0], [], title="nothing yet"))
    assert img.shape[0] == TITLE_HEIGHT + PANEL_HEIGHT
    with pytest.raises(ValueError):
        render_curves([], [])
    with pytest.raises(ValueError):
        render_curves([0, math.nan], [])
