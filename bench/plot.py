"""The bench's charts, drawn with matplotlib on its headless Agg backend: a latency histogram
and the gateway's resident memory against the messages it received, one panel per burst."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

matplotlib.use("Agg")  # files only, never a display

MB = 1024 * 1024


@dataclass
class Burst:
    """One burst of the memory figure: (messages received since it began, RSS bytes)
    samples, and the RSS once it was over and the gateway had settled."""

    label: str
    samples: list[tuple[int, int]] = field(default_factory=list)
    settled: int | None = None


def latency_histogram(series: dict[str, list[float]], path: Path,
                      goals: Sequence[tuple[float, str]] = ()) -> None:
    """Share of samples per log-spaced bin of latency (ms), one step line per series."""
    samples = {name: np.maximum(np.asarray(values) * 1000, 0.1)
               for name, values in series.items() if values}
    if not samples:
        return
    high = max(max(float(values.max()) for values in samples.values()) * 1.2,
               max((goal for goal, _ in goals), default=1.0) * 1.3)
    bins = np.geomspace(0.5, high, 41)
    figure, axes = plt.subplots(figsize=(9, 5.2), layout="constrained")
    for name, values in samples.items():
        weights = np.full(len(values), 100 / len(values))
        axes.hist(np.clip(values, bins[0], bins[-1]), bins=bins, weights=weights,
                  histtype="step", linewidth=1.6, label=f"{name} (n={len(values)})")
    for goal, label in goals:
        axes.axvline(goal, color="0.35", linestyle="--", linewidth=1)
        axes.annotate(label, (goal, 1), xycoords=("data", "axes fraction"),
                      xytext=(4, -14), textcoords="offset points", color="0.35")
    axes.set(xscale="log", xlabel="milliseconds from press", ylabel="% of samples per bin",
             title="Latency from press (histogram, log scale)")
    axes.grid(True, which="major", color="0.9")
    axes.legend(loc="upper right", fontsize="small")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def memory_chart(bursts: list[Burst], idle: int | None, path: Path,
                 idle_goal_mb: float = 45.0, growth_goal_mb: float = 5.0) -> None:
    """RSS (MB) against messages received, one panel per burst, all on one RSS scale, with
    the goals: idle at most `idle_goal_mb`, and never more than `growth_goal_mb` above idle."""
    shown = [burst for burst in bursts if burst.samples]
    if not shown:
        return
    figure, panels = plt.subplots(1, len(shown), figsize=(4.2 * len(shown) + 1, 5),
                                  sharey=True, layout="constrained", squeeze=False)
    for axes, burst in zip(panels[0], shown, strict=True):
        received, rss = zip(*burst.samples, strict=True)
        axes.plot(received, np.asarray(rss) / MB, linewidth=1.6, label="RSS while receiving")
        if burst.settled is not None:
            axes.plot([received[-1]], [burst.settled / MB], "o", color="tab:red",
                      label="settled after the burst")
        axes.axhline(idle_goal_mb, color="0.5", linestyle=":",
                     label=f"goal: idle ≤ {idle_goal_mb:g} MB")
        if idle is not None:
            axes.axhline(idle / MB + growth_goal_mb, color="tab:green", linestyle="--",
                         label=f"goal: idle + {growth_goal_mb:g} MB")
        axes.set(title=burst.label, xlabel="messages received (the gateway's counter)")
        axes.xaxis.set_major_locator(MaxNLocator(4))
        axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        axes.grid(True, color="0.9")
    top = max(rss for burst in shown for _, rss in burst.samples) / MB
    panels[0][0].set_ylim(0, max(top, idle_goal_mb) * 1.15)
    panels[0][0].set_ylabel("RSS, MB (VmRSS)")
    panels[0][0].legend(loc="lower right", fontsize="small")
    figure.suptitle("Gateway resident memory across bursts")
    figure.savefig(path, dpi=100)
    plt.close(figure)
