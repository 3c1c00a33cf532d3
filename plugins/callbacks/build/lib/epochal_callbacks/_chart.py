"""Line charts drawn straight into a PNG with Pillow: learning curves at ~15 ms a redraw.

matplotlib costs about 0.3 s to import and 35 to 150 ms a redraw; for a plot that is rewritten
after every epoch of a small job that is more than the training. This draws only what learning
curves need: panels with axes, nice ticks, grid, solid and dashed lines with markers, a star,
a dotted vertical line, a title and a legend.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["Panel", "Series", "render_png"]

PANEL_SIZE = (450, 340)  # pixels: matplotlib's 4.5 x 3.4 in at 100 dpi
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 62, 14, 30, 42
COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189))
GRID, FRAME, TEXT, BEST_LINE, STAR = (
    (228, 228, 228),
    (60, 60, 60),
    (20, 20, 20),
    (128, 128, 128),
    (220, 20, 60),
)


@dataclass
class Series:
    """One curve: ``ys[i]`` at epoch ``xs[i]`` (NaN leaves a gap)."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    dashed: bool = False


@dataclass
class Panel:
    """One chart: its curves, an optional starred point and a dotted line at ``best_epoch``."""

    title: str
    series: list[Series] = field(default_factory=list)
    star: tuple[float, float, str] | None = None  # (epoch, value, legend label)
    best_epoch: int | None = None
    x_label: str = "epoch"


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """About ``count`` round ticks within ``[low, high]`` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + (1.0 if integer else max(abs(low) * 0.1, 1e-9))
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * power for m in steps if m * power >= raw * 0.7)  # ~count ticks, or a few more
    if integer:
        step = max(1, round(step))
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick step needs (0.25 -> two)."""
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}"


class _Canvas:
    def __init__(self, draw: Any, font: Any, small: Any) -> None:
        self.draw, self.font, self.small = draw, font, small

    def text(self, xy: tuple[float, float], text: str, anchor: str, small: bool = False) -> None:
        self.draw.text(xy, text, fill=TEXT, font=self.small if small else self.font, anchor=anchor)

    def dashed(
        self, points: list[tuple[float, float]], color: tuple, dash: float, gap: float, width: int
    ) -> None:
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            length = math.hypot(x1 - x0, y1 - y0)
            position = 0.0
            while position < length:
                end = min(position + dash, length)
                a, b = position / length, end / length
                self.draw.line(
                    [
                        (x0 + (x1 - x0) * a, y0 + (y1 - y0) * a),
                        (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b),
                    ],
                    fill=color,
                    width=width,
                )
                position = end + gap


def _star(cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    points = []
    for index in range(10):
        r = radius if index % 2 == 0 else radius * 0.45
        angle = -math.pi / 2 + index * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _panel(canvas: _Canvas, panel: Panel, left: int, top: int) -> None:
    draw = canvas.draw
    width, height = PANEL_SIZE
    x0, y0 = left + MARGIN_LEFT, top + MARGIN_TOP
    x1, y1 = left + width - MARGIN_RIGHT, top + height - MARGIN_BOTTOM
    xs = [x for series in panel.series for x in series.xs]
    ys = [y for series in panel.series for y in series.ys if math.isfinite(y)]
    if panel.star is not None:
        ys.append(panel.star[1])
    canvas.text((left + width / 2, top + 6), panel.title, "mt")
    canvas.text(((x0 + x1) / 2, y1 + 24), panel.x_label, "mt", small=True)
    if not xs or not ys:
        draw.rectangle([x0, y0, x1, y1], outline=FRAME)
        return
    x_low, x_high = min(xs), max(xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    x_pad = (x_high - x_low) * 0.04  # keep the first and last markers off the frame
    x_low, x_high = x_low - x_pad, x_high + x_pad
    y_low, y_high = min(ys), max(ys)
    pad = (y_high - y_low) * 0.06 or max(abs(y_low) * 0.05, 0.05)
    y_low, y_high = y_low - pad, y_high + pad

    def to_x(value: float) -> float:
        return x0 + (value - x_low) / (x_high - x_low) * (x1 - x0)

    def to_y(value: float) -> float:
        return y1 - (value - y_low) / (y_high - y_low) * (y1 - y0)

    y_ticks = [t for t in nice_ticks(y_low, y_high) if y_low <= t <= y_high]
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for tick in y_ticks:
        draw.line([(x0, to_y(tick)), (x1, to_y(tick))], fill=GRID)
        canvas.text((x0 - 5, to_y(tick)), _label(tick, y_step), "rm", small=True)
    for tick in nice_ticks(x_low, x_high, count=6, integer=True):
        if x_low <= tick <= x_high:
            draw.line([(to_x(tick), y0), (to_x(tick), y1)], fill=GRID)
            canvas.text((to_x(tick), y1 + 5), str(int(tick)), "mt", small=True)
    draw.rectangle([x0, y0, x1, y1], outline=FRAME)
    legend: list[tuple[str, tuple, str]] = []  # (label, colour, kind)
    if panel.best_epoch is not None and x_low <= panel.best_epoch <= x_high:
        bx = to_x(panel.best_epoch)
        canvas.dashed([(bx, y0), (bx, y1)], BEST_LINE, 2, 3, 1)
    for index, series in enumerate(panel.series):
        color = COLORS[index % len(COLORS)]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in zip(series.xs, series.ys, strict=True):
            if math.isfinite(y):
                runs[-1].append((to_x(x), to_y(y)))
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if len(run) > 1:
                if series.dashed:
                    canvas.dashed(run, color, 6, 4, 2)
                else:
                    draw.line(run, fill=color, width=2, joint="curve")
            for px, py in run:
                draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=color)
        legend.append((series.label, color, "dashed" if series.dashed else "solid"))
    if panel.star is not None:
        sx, sy = to_x(panel.star[0]), to_y(panel.star[1])
        draw.polygon(_star(sx, sy, 9), fill=STAR)
        legend.append((panel.star[2], STAR, "star"))
    if panel.best_epoch is not None and x_low <= panel.best_epoch <= x_high:
        legend.append((f"best epoch {panel.best_epoch}", BEST_LINE, "dotted"))
    _legend(
        canvas,
        legend,
        (x0, y0, x1, y1),
        [p for s in panel.series for p in zip(map(to_x, s.xs), map(to_y, s.ys), strict=True)],
    )


def _legend(
    canvas: _Canvas,
    entries: list[tuple[str, tuple, str]],
    box: tuple[float, float, float, float],
    points: list[tuple[float, float]],
) -> None:
    """A legend in the corner of ``box`` that covers the fewest data points."""
    if not entries:
        return
    line_height, sample = 15, 22
    text_width = max(canvas.draw.textlength(label, font=canvas.small) for label, _, _ in entries)
    width, height = sample + 10 + text_width + 8, line_height * len(entries) + 8
    x0, y0, x1, y1 = box
    corners = [
        (x1 - width - 6, y0 + 6),
        (x1 - width - 6, y1 - height - 6),
        (x0 + 6, y0 + 6),
        (x0 + 6, y1 - height - 6),
    ]

    def covered(corner: tuple[float, float]) -> int:
        cx, cy = corner
        return sum(
            cx <= px <= cx + width and cy <= py <= cy + height
            for px, py in points
            if math.isfinite(py)
        )

    left, top = min(corners, key=covered)
    canvas.draw.rectangle(
        [left, top, left + width, top + height], fill=(255, 255, 255), outline=(200, 200, 200)
    )
    for index, (label, color, kind) in enumerate(entries):
        cy = top + 4 + line_height * index + line_height / 2
        sx0, sx1 = left + 5, left + 5 + sample
        if kind == "star":
            canvas.draw.polygon(_star((sx0 + sx1) / 2, cy, 6), fill=color)
        elif kind == "solid":
            canvas.draw.line([(sx0, cy), (sx1, cy)], fill=color, width=2)
        else:
            dash, gap, width_px = (6, 4, 2) if kind == "dashed" else (2, 3, 1)
            canvas.dashed([(sx0, cy), (sx1, cy)], color, dash, gap, width_px)
        canvas.text((sx1 + 6, cy), label, "lm", small=True)


def render_png(panels: Sequence[Panel], handle: IO[bytes], columns: int = 3) -> tuple[int, int]:
    """Draw ``panels`` in a grid of ``columns`` and write a PNG to ``handle``; returns its
    ``(width, height)``."""
    from PIL import Image, ImageDraw, ImageFont

    columns = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    size = (PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows)
    image = Image.new("RGBA", size, (255, 255, 255, 255))
    try:
        font, small = ImageFont.load_default(size=14), ImageFont.load_default(size=12)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = small = ImageFont.load_default()
    canvas = _Canvas(ImageDraw.Draw(image), font, small)
    for index, panel in enumerate(panels):
        _panel(canvas, panel, PANEL_SIZE[0] * (index % columns), PANEL_SIZE[1] * (index // columns))
    image.save(handle, format="PNG", compress_level=3)
    return size
