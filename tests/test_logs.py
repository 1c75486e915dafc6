"""Logs: JSON lines with --log-format json, secrets never in them; SIGHUP rereads the registry
from disk and the log level from the config file while presses keep flowing, none lost."""

from __future__ import annotations

import io
import json
import logging
import signal
import threading

import paho.mqtt.client as mqtt
import pytest

from edge.gateway import REGISTRY_FILE
from edge.registry_store import RegistryStore
from mashang import logs
from mashang.registry import Building, Butler, Button, Registry, Resident
from tests.helpers.support import GATEWAY_KEY, device_topic, mashang, publish, set_option, wait_for

PAGE_PASSWORD = "page-password-1234"


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.system
def test_json_lines_without_secrets(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    set_option(gateway.config, "http", "page_password", json.dumps(PAGE_PASSWORD))
    gateway.argv = mashang("--log-format", "json", "--log-level", "debug",
                           "gateway", "--config", str(gateway.config))
    gateway.start()
    publish(broker.port, [(device_topic("btn-log"), json.dumps({"seq": 1})),
                          (device_topic("btn-log"), b"\xff not json")])
    wait_for(lambda: any(e["type"] == "gateway.rejected" for e in central.events()),
             what="the rejected message at the central")
    assert gateway.terminate() == 0

    output = gateway.output()
    entries = json_lines(output)  # every line parses, or this raises
    assert len(entries) >= 5
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= set(entry), entry
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}
    messages = [entry["msg"] for entry in entries]
    assert any("running" in message for message in messages)
    assert any(message.startswith("stopped") for message in messages)
    assert GATEWAY_KEY not in output and PAGE_PASSWORD not in output


@pytest.mark.unit
def test_the_redactor_on_real_log_records():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("mashang.test.redaction")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    logs.redactor.add("sekrit-central-key")
    try:
        log.info("key is %s", "sekrit-central-key")
        log.warning("POST https://mashang:hunter2@central.example/v1/ingest failed")
        log.warning("webhook https://oapi.dingtalk.com/robot/send?access_token=abc123&sign=zz9")
        log.error("header Authorization: Basic bWFzaGFuZzpodW50ZXIy")
        try:
            raise RuntimeError("boom with sekrit-central-key inside")
        except RuntimeError:
            log.exception("it failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    for secret in ("sekrit-central-key", "hunter2", "abc123", "zz9", "bWFzaGFuZzpodW50ZXIy"):
        assert secret not in text, secret
    entries = json_lines(text)
    assert len(entries) == 5
    assert entries[1]["msg"] == "POST https://[redacted]@central.example/v1/ingest failed"
    assert "RuntimeError" in entries[4]["exc"]


def registry_naming(device_id: str, resident: str, version: int) -> Registry:
    return Registry(
        version=version,
        butlers=[Butler(id="b1", name="王管家")],
        buildings=[Building(id="B1", name="1号楼", primary_butler="b1")],
        buttons=[Button(device_id=device_id, resident=Resident(name=resident, building="B1"))],
    )


def pressed(central) -> list[dict]:
    return [e for e in central.events() if e["type"] in ("button.press", "button.repeat")]


class Presser:
    """Presses from two buttons with consecutive seq numbers, on a thread of its own."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-presser")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.sent = 0

    def press(self, first: int, count: int) -> None:
        infos = []
        for seq in range(first, first + count):
            topic = device_topic("btn-reload" if seq % 2 else "btn-other")
            infos.append(self.client.publish(topic, json.dumps({"seq": seq}), qos=1))
            self.sent += 1
        for info in infos:
            info.wait_for_publish(20)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.system
def test_sighup_reloads_registry_and_level_without_losing_a_press(broker, central,
                                                                  make_gateway):
    gateway = make_gateway(central.url)
    set_option(gateway.config, "logging", "level", '"info"')
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    store = RegistryStore(gateway.data_dir / REGISTRY_FILE)
    store.replace(registry_naming("btn-other", "李爷爷", 1))
    gateway.start()
    presser = Presser(broker.port)
    try:
        presser.press(0, 200)
        # Judged by the first registry: the broker's ack to the publisher is not enough, these
        # must have been through the rules before the reload.
        wait_for(lambda: len(pressed(central)) >= 200, 60, interval=0.2,
                 what="the first 200 presses at the central")
        # The new registry names btn-reload's resident; the level goes to debug. Presses keep
        # arriving while the gateway rereads both.
        store.replace(registry_naming("btn-reload", "张奶奶", 2))
        set_option(gateway.config, "logging", "level", '"debug"')
        during = threading.Thread(target=presser.press, args=(200, 400))
        during.start()
        gateway.proc.send_signal(signal.SIGHUP)
        during.join(60)
        wait_for(lambda: "reloaded: registry version 2" in gateway.output(),
                 what="the reload to be logged")
        presser.press(600, 20)  # surely after the reload
    finally:
        presser.close()

    def all_pressed():
        events = pressed(central)
        seqs = {e["data"]["seq"] for e in events}
        return events if seqs == set(range(620)) else None

    events = wait_for(all_pressed, 60, interval=0.5, what="all 620 presses at the central")
    assert len({e["id"] for e in events}) == 620
    assert gateway.running()
    after = [e for e in events if e["device_id"] == "btn-reload" and e["data"]["seq"] >= 600]
    assert after and all(e["data"]["resident"]["name"] == "张奶奶" for e in after)
    before = [e for e in events if e["device_id"] == "btn-reload" and e["data"]["seq"] < 200]
    assert before and all(e["data"].get("unregistered") for e in before)

    output = gateway.output()
    assert "log level debug" in output
    assert "DEBUG" not in output.split("SIGHUP", 1)[0]
    after_reload = output.split("SIGHUP", 1)[1]
    assert "DEBUG edge.ops.operations: registered buttons now: btn-reload" in after_reload
