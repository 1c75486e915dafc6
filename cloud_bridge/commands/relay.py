"""The relay of registry imports to the gateways' command queues."""

from __future__ import annotations

import asyncio

from cloud_bridge.commands.queue import CommandQueue
from cloud_bridge.registry.source import RegistrySource


async def relay_registry_changes(
    registry: RegistrySource, queue: CommandQueue, interval: float
) -> None:
    """Watch the registry file; when an import replaces it, queue it for every gateway. The
    first pass catches an import made while the central was down."""
    changed = True
    while True:
        if changed:
            for gateway_id in await asyncio.to_thread(queue.queue_registry):
                queue.wake(gateway_id)
        await asyncio.sleep(interval)
        changed = await asyncio.to_thread(registry.refresh)
