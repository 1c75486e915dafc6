"""Test support: the lab's real processes, and helpers to publish and inspect."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab.processes import (  # noqa: F401  (re-exported for the tests)
    ADMIN_TOKEN,
    COMMAND_KEY,
    GATEWAY_ID,
    GATEWAY_KEY,
    Broker,
    Central,
    Gateway,
    Process,
    free_port,
    get_json,
    mashang,
    mosquitto_binary,
    wait_for,
)


def refusal_tally(where: str):
    """(a list each refused attack is appended to, an autouse fixture that prints how many
    each test saw refused: the counts quoted in docs/reliability.md)."""
    refused: list[str] = []

    @pytest.fixture(autouse=True)
    def count_refusals(capsys):
        before = len(refused)
        yield
        with capsys.disabled():
            print(f" [{len(refused) - before} refused {where}]", end="")

    return refused, count_refusals


# -- Publishing and inspection helpers (real clients and the operator's own commands) ------

TOPIC_ROOT = "mashang/v1"


def device_topic(device_id: str, channel: str = "events", kind: str = "buttons") -> str:
    return f"{TOPIC_ROOT}/{kind}/{device_id}/{channel}"


def mosquitto_pub_binary() -> str:
    found = shutil.which("mosquitto_pub")
    if found is None:
        raise RuntimeError("mosquitto_pub is not installed: run ./scripts/setup")
    return found


def start_mosquitto_pub(port: int, topic: str, lines: list[str], folder: Path) -> subprocess.Popen:
    """`mosquitto_pub -l` at QoS 1, one message per line, in the background (stdin: a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"pub-{abs(hash(topic))}-{time.monotonic_ns()}.txt"
    source.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    argv = [mosquitto_pub_binary(), "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    with source.open("rb") as stdin:
        return subprocess.Popen(
            [*argv, "-t", topic, "-l"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )


def mosquitto_pub(port: int, topic: str, lines: list[str], folder: Path) -> None:
    """Publish one message per line and wait until the broker has acked them all."""
    proc = start_mosquitto_pub(port, topic, lines, folder)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"mosquitto_pub failed: {output.decode(errors='replace')}"


def publish(port: int, messages: list[tuple[str, bytes | str]]) -> None:
    """Publish (topic, payload) pairs in order at QoS 1 with a real paho client, waiting for
    every PUBACK; for payloads `mosquitto_pub -l` cannot carry (binary, empty, multi-line)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{os.getpid()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published(), "the broker did not ack a publish"
    finally:
        client.disconnect()
        client.loop_stop()


def set_option(config: Path, section: str, key: str, value: str) -> None:
    """Set `key = value` (value as TOML) in [section] of a config file, adding what is missing."""
    lines = config.read_text().splitlines()
    header = f"[{section}]"
    if header not in lines:
        lines += [header, f"{key} = {value}"]
    else:
        start = lines.index(header) + 1
        end = next(
            (i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines)
        )
        for i in range(start, end):
            if lines[i].split("=")[0].strip() == key:
                lines[i] = f"{key} = {value}"
                break
        else:
            lines.insert(start, f"{key} = {value}")
    config.write_text("\n".join(lines) + "\n")


def outbox_report(config: Path) -> str:
    """What `mashang outbox --config FILE` prints, as an operator would run it."""
    result = subprocess.run(
        mashang("outbox", "--config", str(config)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"mashang outbox failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def outbox_depth(config: Path) -> dict[str, int]:
    """{'alerts': n, 'logs': n, 'dead_letters': n} from `mashang outbox`."""
    import re

    report = outbox_report(config)
    depth = {}
    for name, pattern in (
        ("alerts", r"alerts\s+([\d,]+) events"),
        ("logs", r"logs\s+([\d,]+) events"),
        ("dead_letters", r"dead letters:\s*([\d,]+)"),
    ):
        found = re.search(pattern, report)
        assert found, f"`mashang outbox` no longer says how many {name}:\n{report}"
        depth[name] = int(found.group(1).replace(",", ""))
    return depth
