"""Every stage is supervised: if the commit thread, the uplink, the downlink or the fallback
ends while the gateway is not stopping, the gateway says why, /healthz turns 503, it stops in
order and exits 1, so that systemd starts it again (deploy/mashang-gateway.service).

The gateway runs in-process here, on a real Mosquitto, so that a stage can be made to end.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from edge.config import GatewayConfig
from edge.gateway import Gateway
from tests.helpers.support import free_port

pytestmark = pytest.mark.system


def gateway_for(tmp_path: Path, broker_port: int) -> Gateway:
    config = GatewayConfig.model_validate({
        "gateway": {"id": "gw-supervised", "data_dir": str(tmp_path / "data")},
        "mqtt": {"host": "127.0.0.1", "port": broker_port},
        "central": {"url": "http://127.0.0.1:9", "key": "k" * 32, "backoff_max": 1.0},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
    })
    return Gateway(config)


async def ends_with(error: Exception) -> None:
    await asyncio.sleep(0.2)
    raise error


@pytest.mark.parametrize("stage", ["uplink", "downlink", "fallback"])
def test_a_stage_that_ends_stops_the_gateway_with_an_error(tmp_path: Path, broker, stage: str,
                                                           caplog):
    gateway = gateway_for(tmp_path, broker.port)
    getattr(gateway, stage).run = lambda session: ends_with(RuntimeError("the bug"))
    with caplog.at_level(logging.CRITICAL):
        code = asyncio.run(asyncio.wait_for(gateway.run(), 60))
    assert code == 1
    assert gateway.failure == f"the {stage} ended: RuntimeError: the bug"
    assert any(gateway.failure in record.getMessage() for record in caplog.records)
    live, detail = gateway.ops.live()
    assert not live and "stages" in " ".join(detail["reasons"])


def test_the_commit_thread_ending_stops_the_gateway_with_an_error(tmp_path: Path, broker):
    gateway = gateway_for(tmp_path, broker.port)

    def broken() -> None:
        raise MemoryError("no more")

    gateway.pipeline._run = broken  # what no message can do: see test_poison_messages.py
    code = asyncio.run(asyncio.wait_for(gateway.run(), 60))
    assert code == 1
    assert gateway.failure == "commit thread ended: MemoryError: no more"
    assert not gateway.ops.live()[0]


def test_a_clean_stop_exits_0_and_frees_the_data_directory(tmp_path: Path, broker):
    gateway = gateway_for(tmp_path, broker.port)

    async def run_then_stop() -> int:
        running = asyncio.ensure_future(gateway.run())
        await asyncio.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)  # as systemd stops it
        return await running

    assert asyncio.run(asyncio.wait_for(run_then_stop(), 60)) == 0
    assert gateway.failure is None
    gateway_for(tmp_path, broker.port).close()  # the lock is free again
