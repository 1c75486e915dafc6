"""`mashang gateway --config FILE`: a config it cannot use stops it with exit status 2 and a
message naming the key; the central key may come from MASHANG_CENTRAL_KEY instead. The same
for the central's storage keys: `central.database` (PostgreSQL only) and `reuse_port`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from edge.buffer.outbox import Outbox
from edge.config import CENTRAL_KEY_ENV
from lab.postgres import PostgresServer
from tests.helpers.support import GATEWAY_KEY, device_topic, free_port, mashang, publish, wait_for

pytestmark = pytest.mark.system

GOOD = {
    "gateway": 'id = "gw-test"\ndata_dir = "{data}"',
    "mqtt": 'host = "127.0.0.1"\nport = 1883',
    "central": 'url = "http://127.0.0.1:8080"\nkey = "secret"',
    "http": 'listen = "127.0.0.1:{http}"',
}


def config_text(tmp_path: Path, **sections: str | None) -> str:
    """The good config with some sections replaced (a string) or left out (None)."""
    chosen = {**GOOD, **sections}
    text = "".join(f"[{name}]\n{body}\n" for name, body in chosen.items() if body is not None)
    return text.replace("{data}", str(tmp_path / "data")).replace("{http}", str(free_port()))


def central_config(tmp_path: Path, lines: str) -> Path:
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path / "central"}"\n{lines}\n')
    return config


def run_central(config: Path, action: str = "serve") -> subprocess.CompletedProcess:
    return subprocess.run(mashang("central", action, "--config", str(config)),
                          capture_output=True, text=True, timeout=60)


def run_gateway(config: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != CENTRAL_KEY_ENV}
    return subprocess.run(
        mashang("gateway", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **(env or {})},
    )


BAD_CONFIGS = [
    # (what is wrong, sections changed, words the message must contain)
    (
        "central.url missing",
        {"central": 'key = "secret"'},
        ["central.url"],
    ),
    ("no [central] at all", {"central": None}, ["central"]),
    ("gateway.id missing", {"gateway": 'data_dir = "{data}"'}, ["gateway.id"]),
    (
        "a misspelt key",
        {"mqtt": 'hots = "127.0.0.1"\nport = 1883'},
        ["mqtt.hots", "unknown key"],
    ),
    (
        "a misspelt section",
        {"centrl": 'url = "http://127.0.0.1:8080"'},
        ["centrl", "unknown key"],
    ),
    ("mqtt.port out of range", {"mqtt": "port = 70000"}, ["mqtt.port"]),
    ("mqtt.port zero", {"mqtt": "port = 0"}, ["mqtt.port"]),
    ("mqtt.port not a number", {"mqtt": 'port = "eighteen"'}, ["mqtt.port"]),
    ("http.listen without a port", {"http": 'listen = "127.0.0.1"'}, ["http.listen"]),
    ("http.listen port out of range", {"http": 'listen = "127.0.0.1:99999"'}, ["http.listen"]),
    (
        "central.url not a URL",
        {"central": 'url = "not a url"\nkey = "secret"'},
        ["central.url"],
    ),
    (
        "central.key missing, no environment variable",
        {"central": 'url = "http://127.0.0.1:8080"'},
        ["central.key", CENTRAL_KEY_ENV],
    ),
]


@pytest.mark.parametrize(
    ("what", "sections", "words"), BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS]
)
def test_a_bad_config_names_the_key_and_exits_2(tmp_path, what, sections, words):
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, **sections))
    result = run_gateway(config)
    assert result.returncode == 2, f"{what}: exit {result.returncode}\n{result.stderr}"
    for word in words:
        assert word in result.stderr, f"{what}: {word!r} not named in:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists(), f"{what}: the gateway started anyway"


def test_a_file_that_is_not_toml_exits_2(tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway\nid = "gw-test"\n')
    result = run_gateway(config)
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_exits_2(tmp_path):
    config = tmp_path / "nowhere.toml"
    result = run_gateway(config)
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "Traceback" not in result.stderr


def test_the_central_key_can_come_from_the_environment(broker, central, make_gateway):
    gateway = make_gateway(central.url)
    text = gateway.config.read_text()
    without_key = "\n".join(
        line for line in text.splitlines() if not line.replace(" ", "").startswith("key=")
    )
    assert without_key != text
    gateway.config.write_text(without_key + "\n")
    # First without the variable: it refuses to start, naming both ways to give the key.
    gateway.env.pop(CENTRAL_KEY_ENV, None)
    result = run_gateway(gateway.config)
    assert result.returncode == 2
    assert "central.key" in result.stderr and CENTRAL_KEY_ENV in result.stderr
    # With it, the gateway signs with that key: the central, which knows it, takes the press.
    gateway.env[CENTRAL_KEY_ENV] = GATEWAY_KEY
    gateway.start()
    publish(broker.port, [(device_topic("btn-0300"), json.dumps({"seq": 3}))])
    wait_for(
        lambda: any(e.get("device_id") == "btn-0300" for e in central.events()),
        what="the press signed with the key from the environment",
    )
    assert gateway.terminate() == 0


def test_local_commands_run_without_the_key(tmp_path):
    """Only `mashang gateway` signs requests: `mashang outbox` reads the outbox without the
    key, and each command's --help says what it needs."""
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(tmp_path, central='url = "http://127.0.0.1:8080"'))
    (tmp_path / "data").mkdir()
    Outbox(tmp_path / "data" / "outbox.sqlite", max_bytes=2**20, log_ttl=60.0).close()
    environment = {k: v for k, v in os.environ.items() if k != CENTRAL_KEY_ENV}
    outbox = subprocess.run(mashang("outbox", "--config", str(config)), capture_output=True,
                            text=True, timeout=60, env=environment)
    assert outbox.returncode == 0, outbox.stderr
    assert "alerts" in outbox.stdout and "Traceback" not in outbox.stderr
    for command, words in (("gateway", ["Needs:", CENTRAL_KEY_ENV]),
                           ("outbox", ["Needs:", "Not the central's key"]),
                           ("doctor", ["Needs:", "local checks"]),
                           ("install", ["Needs:", "root"]),
                           ("device", ["Needs:", "admin token"])):
        shown = subprocess.run(mashang(command, "--help"), capture_output=True, text=True,
                               timeout=60, env={**environment, "COLUMNS": "200"})
        assert shown.returncode == 0, shown.stderr
        for word in words:
            assert word in shown.stdout, f"`mashang {command} --help` lacks {word!r}"


@pytest.mark.central
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_the_central_takes_a_postgresql_url_as_its_database(
    tmp_path: Path, postgres_server: PostgresServer, scheme: str
) -> None:
    url = postgres_server.new_database().replace("postgresql://", f"{scheme}://", 1)
    result = run_central(central_config(tmp_path, f"database = {json.dumps(url)}"), "migrate")
    assert result.returncode == 0, result.stderr
    assert "events 1" in result.stdout.splitlines()
    assert not (tmp_path / "central" / "central.sqlite").exists()  # not beside it: instead


BAD_CENTRAL_CONFIGS = [
    # (what is wrong, lines in [central], words the message must contain)
    ("an SQLite URL", 'database = "sqlite:///central.sqlite"', ["central.database", "postgresql://"]),
    ("another server's URL", 'database = "mysql://u:Pw-mysql-secret@db/central"',
     ["central.database", "postgresql://"]),
    ("no database name", 'database = "postgresql://mashang@127.0.0.1:5432"',
     ["central.database", "postgresql://"]),
    ("not a string", "database = 5", ["central.database"]),
    ("reuse_port without a shared database", "reuse_port = true",
     ["reuse_port", "central.database"]),
]


@pytest.mark.central
@pytest.mark.parametrize(("what", "lines", "words"), BAD_CENTRAL_CONFIGS,
                         ids=[case[0] for case in BAD_CENTRAL_CONFIGS])
def test_a_bad_central_storage_config_names_the_key_and_exits_2(
    tmp_path: Path, what: str, lines: str, words: list[str]
) -> None:
    result = run_central(central_config(tmp_path, lines))
    assert result.returncode == 2, (what, result.stderr)
    for word in words:
        assert word in result.stderr, (what, word, result.stderr)
    assert "Traceback" not in result.stderr and "Pw-mysql-secret" not in result.stderr
