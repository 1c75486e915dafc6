"""The gateway's own work per message, in one process, without MQTT or HTTP: parse, rules,
encode and commit, in CPU microseconds per message. It is what the GIL-bound part of the
ingest costs, measured the same way before and after a change (bench/NOTES.md quotes it), and
it does not move with the other load on the machine as much as wall-clock figures do.

    python -m bench.hotpath [--messages N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge.buffer.outbox import Outbox
from edge.config import RulesSection
from edge.events import now
from edge.source.messages import parse_message
from edge.transform.rules import Rules
from mashang.registry import Registry

ROOT = "mashang/v1"
GROUP = 500


def community(buttons: int = 300) -> Registry:
    """A community of a realistic size: buttons in 10 buildings, two butlers each."""
    butlers = [{"id": f"b-{n}", "name": f"管家{n}", "phone": f"1380000{n:04d}"}
               for n in range(20)]
    buildings = [{"id": f"B{n}", "name": f"{n}号楼", "primary_butler": f"b-{2 * n}",
                  "backup_butler": f"b-{2 * n + 1}"} for n in range(10)]
    devices = [{"device_id": f"btn-{n:04d}",
                "resident": {"name": f"居民{n}", "phone": f"1390000{n:04d}",
                             "building": f"B{n % 10}", "room": f"{n % 30 + 1}01"}}
               for n in range(buttons)]
    return Registry.model_validate({
        "community": {"name": "康城社区", "duty_contact": {"name": "值班室", "phone": "0477"}},
        "butlers": butlers, "buildings": buildings, "buttons": devices,
    })


def messages(kind: str, count: int) -> list[tuple[str, bytes]]:
    if kind == "heartbeat":
        return [(f"{ROOT}/buttons/btn-{n % 300:04d}/status",
                 b'{"state":"online","battery":87,"rssi":-70,"seq":%d}' % n)
                for n in range(count)]
    return [(f"{ROOT}/buttons/btn-{n % 300:04d}/events",
             b'{"seq":%d,"action":"single","battery":87}' % n) for n in range(count)]


def cpu_us(work: Callable[[], object], count: int) -> float:
    started = time.process_time()
    work()
    return (time.process_time() - started) / count * 1e6


def measure(kind: str, count: int) -> dict[str, float]:
    raw = messages(kind, count)
    rules = Rules(RulesSection(), community(), None)
    parsed: list = []
    events: list = []
    results = {}
    results["parse"] = cpu_us(
        lambda: parsed.extend(parse_message(ROOT, t, p, now()) for t, p in raw), count)
    results["rules"] = cpu_us(
        lambda: events.extend(e for m in parsed for e in rules.evaluate(m)), count)
    results["encode"] = cpu_us(lambda: [e.encode() for e in events], count)
    with tempfile.TemporaryDirectory() as folder:
        outbox = Outbox(Path(folder) / "outbox.sqlite", max_bytes=1 << 40, log_ttl=1e9)
        try:
            results["commit"] = cpu_us(
                lambda: [outbox.put(events[i:i + GROUP]) for i in range(0, len(events), GROUP)],
                count) - results["encode"]
        finally:
            outbox.close()
    results["total"] = sum(results.values())
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object, {kind: {step: µs}} (the bench reads it)")
    args = parser.parse_args()
    measure("heartbeat", 2000)  # warm up
    if args.json:
        print(json.dumps({kind: measure(kind, args.messages) for kind in ("heartbeat", "press")}))
        return
    print(f"CPU µs per message ({args.messages:,} messages, commits of {GROUP}):")
    print(f"{'':<10}" + "".join(f"{step:>9}" for step in
                                 ("parse", "rules", "encode", "commit", "total")))
    for kind in ("heartbeat", "press"):
        result = measure(kind, args.messages)
        print(f"{kind:<10}" + "".join(f"{value:>9.1f}" for value in result.values()))


if __name__ == "__main__":
    main()
