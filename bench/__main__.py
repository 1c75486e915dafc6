"""`python -m bench [--quick] [--only FIGURE ...] [--profile]`: run the figures, write
bench/results/latest.md and the plots, print the table.

Exit status: 0 when every figure was measured, whatever the numbers; 1 when one could not be
measured (the table says why), so that a broken harness does not pass unnoticed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

from bench import drivers, figures, fleet, peer, plot, report
from bench.procs import REPO

FIGURES = {
    "ingest": figures.figure_ingest,
    "cpu": figures.figure_cpu,
    "latency": figures.figure_latency,
    "drain": figures.figure_drain,
    "footprint": figures.figure_footprint,
    "peer": peer.figure_peer,
    "recovery": figures.figure_recovery,
    "fleet": fleet.figure_fleet,
    "drivers": drivers.figure_drivers,
}
SKIPPED_WHEN_QUICK = {"peer", "drivers"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 to 2 minutes: smaller counts, "
                        "no peers, no 1,000,000-event footprint, a 5 s outage for recovery, a "
                        "small fleet, no drivers")
    parser.add_argument("--only", action="append", choices=sorted(FIGURES),
                        help="run only this figure (repeatable)")
    parser.add_argument("--profile", action="store_true",
                        help="record the gateway with py-spy during the ingest figure")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs)")
    args = parser.parse_args(argv)
    # Stopped from outside: unwind, so that every process a figure started is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)

    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="mashang-bench-"))
    ctx = figures.Context(root=root, quick=args.quick, profile=args.profile,
                          results_dir=args.out)
    started_at = datetime.now().astimezone().isoformat(timespec="seconds")
    load_before = report.loadavg()
    started = time.monotonic()
    results: dict = {}
    chosen = args.only or [name for name in FIGURES
                           if not (args.quick and name in SKIPPED_WHEN_QUICK)]
    for name in chosen:
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            results[name] = FIGURES[name](ctx)
        except Exception as exc:
            results[f"{name}_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            print(f"bench: {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
        print(f"bench: {name} took {time.monotonic() - began:.1f} s", file=sys.stderr)

    plots = []
    try:
        if ctx.latencies:
            plot.latency_histogram(ctx.latencies, args.out / "latency.png",
                                   goals=[(20, "20 ms"), (250, "250 ms")])
            plots.append("latency.png")
        if ctx.memory:
            plot.memory_chart(ctx.memory, ctx.rss_idle, args.out / "memory.png")
            plots.append("memory.png")
    except Exception:
        results["plots_error"] = traceback.format_exc().splitlines()[-1]
        print(f"bench: plots failed:\n{traceback.format_exc()}", file=sys.stderr)

    sections = [("The central under a fleet (issue 11)", fleet.table(results)),
                ("PostgreSQL drivers on the ingest path (issue 11)", drivers.table(results))]
    text = report.render(results, args.quick, started_at, time.monotonic() - started,
                         load_before, plots, sections)
    (args.out / "latest.md").write_text(text, encoding="utf-8")
    print(text)
    if args.keep:
        print(f"bench: run folder kept at {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    unmeasured = any(key.endswith("_error") for key in results) or any(
        isinstance(figure, dict) and figure.get("not_measured") for figure in results.values())
    return 1 if unmeasured else 0


if __name__ == "__main__":
    sys.exit(main())
