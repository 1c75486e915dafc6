"""`mashang outbox --config FILE`: what waits in the outbox, read from the file alone."""

from __future__ import annotations

from edge.buffer.outbox import Outbox
from edge.config import GatewayConfig
from edge.gateway import OUTBOX_FILE


def print_outbox(config: GatewayConfig, *, show: int) -> int:
    path = config.gateway.data_dir / OUTBOX_FILE
    if not path.exists():
        print(f"no outbox at {path} yet")
        return 0
    outbox = Outbox(path, max_bytes=config.outbox.max_bytes, log_ttl=config.outbox.log_ttl)
    try:
        stats = outbox.stats()
        print(f"outbox {path}: {stats.used_bytes:,} bytes used of a {stats.max_bytes:,} byte cap")
        for name, depth in (("alerts", stats.alerts), ("logs", stats.logs)):
            age = "-" if depth.oldest_age is None else f"{depth.oldest_age:.1f} s"
            print(f"  {name:<7} {depth.events:>9,} events  oldest {age}")
        print(f"  dead letters: {stats.dead_letters}")
        for letter in outbox.dead_letters(limit=show):
            print(f"    {letter.id}  HTTP {letter.status}  {letter.reason[:120]}")
    finally:
        outbox.close()
    return 0
