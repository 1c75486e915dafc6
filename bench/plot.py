"""Two small charts drawn with Pillow (already the central's imaging library): a latency
histogram and resident memory against buffered events. No plotting library needed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
WIDTH, HEIGHT = 900, 520
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 50, 70


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: one bitmap size
        return ImageFont.load_default()


class Chart:
    def __init__(self, title: str, x_label: str, y_label: str, x_range: tuple[float, float],
                 y_range: tuple[float, float], x_log: bool = False,
                 legend_bottom: bool = False) -> None:
        self.image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.x_log = x_log
        self.x0, self.x1 = (math.log10(v) for v in x_range) if x_log else x_range
        self.y0, self.y1 = y_range
        self.draw.text((LEFT, 15), title, fill="black", font=font(18))
        self.draw.text((LEFT + (WIDTH - LEFT - RIGHT) // 2, HEIGHT - 25), x_label,
                       fill="black", font=font(14), anchor="mm")
        label = Image.new("RGBA", (300, 24), (255, 255, 255, 0))
        ImageDraw.Draw(label).text((150, 12), y_label, fill="black", font=font(14), anchor="mm")
        rotated = label.rotate(90, expand=True)
        self.image.paste(rotated, (8, TOP + (HEIGHT - TOP - BOTTOM) // 2 - 150), rotated)
        self.draw.rectangle((LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM), outline="black")
        self.legend_rows = 0
        self.legend_bottom = legend_bottom

    def px(self, x: float, y: float) -> tuple[float, float]:
        if self.x_log:
            x = math.log10(max(x, 10**self.x0))
        fx = (x - self.x0) / ((self.x1 - self.x0) or 1)
        fy = (y - self.y0) / ((self.y1 - self.y0) or 1)
        return (LEFT + fx * (WIDTH - LEFT - RIGHT),
                HEIGHT - BOTTOM - fy * (HEIGHT - TOP - BOTTOM))

    def ticks(self, xs: Sequence[float], ys: Sequence[float], x_text, y_text) -> None:
        small = font(12)
        for x in xs:
            px, py = self.px(x, self.y0)
            self.draw.line((px, TOP, px, py), fill="#e5e5e5")
            self.draw.line((px, py, px, py + 5), fill="black")
            self.draw.text((px, py + 8), x_text(x), fill="black", font=small, anchor="mt")
        for y in ys:
            px, py = self.px(10**self.x0 if self.x_log else self.x0, y)
            self.draw.line((px, py, WIDTH - RIGHT, py), fill="#e5e5e5")
            self.draw.line((px - 5, py, px, py), fill="black")
            self.draw.text((px - 8, py), y_text(y), fill="black", font=small, anchor="rm")
        self.draw.rectangle((LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM), outline="black")

    def line(self, points: Sequence[tuple[float, float]], colour: str, width: int = 2) -> None:
        if len(points) >= 2:
            self.draw.line([self.px(x, y) for x, y in points], fill=colour, width=width)

    def dots(self, points: Sequence[tuple[float, float]], colour: str, radius: int = 6) -> None:
        for x, y in points:
            px, py = self.px(x, y)
            self.draw.ellipse((px - radius, py - radius, px + radius, py + radius),
                              fill=colour, outline="black")

    def vline(self, x: float, colour: str, label: str) -> None:
        px, _ = self.px(x, self.y0)
        for y in range(TOP, HEIGHT - BOTTOM, 8):
            self.draw.line((px, y, px, min(y + 4, HEIGHT - BOTTOM)), fill=colour, width=1)
        self.draw.text((px + 4, TOP + 4), label, fill=colour, font=font(12))

    def legend(self, text: str, colour: str) -> None:
        x, y = LEFT + 12, TOP + 10 + 20 * self.legend_rows
        if self.legend_bottom:
            x, y = WIDTH - RIGHT - 330, HEIGHT - BOTTOM - 90 + 20 * self.legend_rows
        self.draw.rectangle((x, y + 3, x + 14, y + 13), fill=colour)
        self.draw.text((x + 20, y), text, fill="black", font=font(13))
        self.legend_rows += 1

    def save(self, path: Path) -> None:
        self.image.save(path, optimize=True)


def latency_histogram(series: dict[str, list[float]], path: Path,
                      goals: Sequence[tuple[float, str]] = ()) -> None:
    """Share of samples per log-spaced bin of latency (ms), one line per series."""
    samples = {name: [max(v * 1000, 0.1) for v in values]
               for name, values in series.items() if values}
    if not samples:
        return
    low = 0.5
    high = max(max(values) for values in samples.values()) * 1.2
    high = max(high, max((goal for goal, _ in goals), default=1) * 1.3)
    edges = [low * (high / low) ** (i / 40) for i in range(41)]
    curves, top = {}, 0.0
    for name, values in samples.items():
        counts = [0] * 40
        for value in values:
            share = math.log(max(value, low) / low) / math.log(high / low)
            index = max(0, min(39, int(40 * share)))
            counts[index] += 1
        shares = [100 * c / len(values) for c in counts]
        top = max(top, *shares)
        points = []
        for i, share in enumerate(shares):
            points += [(edges[i], share), (edges[i + 1], share)]
        curves[name] = points
    chart = Chart("Latency from press (histogram, log scale)", "milliseconds",
                  "% of samples per bin", (low, high), (0, top * 1.1), x_log=True)
    decades = [v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
               if low <= v <= high]
    steps = nice_steps(top * 1.1)
    chart.ticks(decades, steps, lambda v: f"{v:g}", lambda v: f"{v:g}")
    for index, (name, points) in enumerate(curves.items()):
        colour = COLOURS[index % len(COLOURS)]
        chart.line(points, colour)
        chart.legend(f"{name} (n={len(samples[name])})", colour)
    for goal, label in goals:
        chart.vline(goal, "#555555", label)
    chart.save(path)


def memory_chart(curve: list[tuple[int, int]], points: list[tuple[int, int]], path: Path,
                 goal_mb: float = 50.0) -> None:
    """RSS (MB) against buffered events, log x axis (0 drawn at 1)."""
    everything = curve + points
    if not everything:
        return
    most = max(depth for depth, _ in everything)
    high = 10 ** math.ceil(math.log10(max(10, most)))
    top = max(goal_mb * 1.2, max(rss for _, rss in everything) / 2**20 * 1.15)
    chart = Chart("Gateway resident memory against buffered events", "events in the outbox",
                  "RSS, MB", (1, high), (0, top), x_log=True, legend_bottom=True)
    xs = [10**k for k in range(0, int(math.log10(high)) + 1)]
    chart.ticks(xs, nice_steps(top), lambda v: "0" if v == 1 else f"{int(v):,}",
                lambda v: f"{v:g}")
    limit = [(1, goal_mb), (high, goal_mb)]
    chart.line(limit, "#999999", 1)
    chart.legend(f"goal: at most {goal_mb:g} MB", "#999999")
    if curve:
        chart.line([(max(1, d), r / 2**20) for d, r in curve], COLOURS[0])
        chart.legend("while buffering an outage (ingesting)", COLOURS[0])
    if points:
        chart.dots([(max(1, d), r / 2**20) for d, r in points], COLOURS[1])
        chart.legend("idle with that backlog", COLOURS[1])
    chart.save(path)


def nice_steps(top: float) -> list[float]:
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(int(top / step) + 1)]
