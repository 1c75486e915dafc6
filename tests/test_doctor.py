"""`mashang doctor`, run as an operator would, against a real broker and central: all pass
when all is well; a wrong key, an unreachable central, a missing broker and a disk too small
for the outbox each reported with a fix and a non-zero exit."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.config import CENTRAL_KEY_ENV
from edge.gateway import REGISTRY_FILE
from edge.registry_store import RegistryStore
from mashang.registry import Building, Butler, Button, Registry, Resident
from tests.helpers.support import GATEWAY_ID, Gateway, free_port, mashang, set_option

pytestmark = pytest.mark.system


def registry() -> Registry:
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Registry(
        version=3,
        butlers=[Butler(id="b1", name="王管家", phone="13800000000")],
        buildings=[Building(id="B1", name="1号楼", primary_butler="b1")],
        buttons=[Button(device_id="btn-0001",
                        resident=Resident(name="张奶奶", building="B1", room="302"))],
        code_keys={1: base64.b64encode(public).decode()},
    )


def configured(folder: Path, broker_port: int, central_url: str, **kwargs) -> Gateway:
    """A gateway's config and data dir as an installer leaves them (the gateway not started)."""
    gateway = Gateway(folder, broker_port, central_url, **kwargs)
    gateway.data_dir.mkdir(parents=True, exist_ok=True)
    RegistryStore(gateway.data_dir / REGISTRY_FILE).replace(registry())
    return gateway


def doctor(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(mashang("doctor", "--config", str(config), "--timeout", "3"),
                          capture_output=True, text=True, timeout=60)


def finding(output: str, check: str) -> tuple[str, str]:
    """(status, the finding's text with its fix line) for one check in the doctor's report."""
    match = re.search(rf"^\[\s*(ok|warn|FAIL)\s*\] {re.escape(check)}\s+(.*?)(?=^\[|\n\n|\Z)",
                      output, re.MULTILINE | re.DOTALL)
    assert match, f"no {check!r} finding in:\n{output}"
    return match.group(1), match.group(2)


def test_all_pass(tmp_path, broker, central):
    gateway = configured(tmp_path / "gw", broker.port, central.url)
    result = doctor(gateway.config)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("config", "broker", "central", "clock", "central key", "data dir", "disk",
                  "registry", "public keys"):
        status, text = finding(result.stdout, check)
        assert status == "ok", f"{check}: {text}"
    assert "all checks pass" in result.stdout
    assert GATEWAY_ID in finding(result.stdout, "central key")[1]


def test_a_wrong_key(tmp_path, broker, central):
    gateway = configured(tmp_path / "gw", broker.port, central.url, key="not-the-key")
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "central key")
    assert status == "FAIL"
    assert "refuses our key" in text and "fix:" in text and "central.key" in text
    # Everything else is fine, and says so.
    assert finding(result.stdout, "central")[0] == "ok"
    assert finding(result.stdout, "broker")[0] == "ok"
    assert "not-the-key" not in result.stdout + result.stderr


def test_an_unreachable_central(tmp_path, broker):
    gateway = configured(tmp_path / "gw", broker.port, f"http://127.0.0.1:{free_port()}")
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "central")
    assert status == "FAIL"
    assert "cannot reach the central" in text and "connection refused" in text
    assert "fix:" in text and "central.url" in text
    assert finding(result.stdout, "broker")[0] == "ok"


def test_a_missing_broker(tmp_path, central):
    gateway = configured(tmp_path / "gw", free_port(), central.url)
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "broker")
    assert status == "FAIL"
    assert "cannot reach the broker" in text and "fix:" in text and "mosquitto" in text.lower()
    assert finding(result.stdout, "central key")[0] == "ok"


def test_a_disk_too_small_for_the_outbox(tmp_path, broker, central):
    gateway = configured(tmp_path / "gw", broker.port, central.url)
    set_option(gateway.config, "outbox", "max_bytes", str(2**62))
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "disk")
    assert status == "FAIL" and "outbox.max_bytes" in text and "fix:" in text


def test_a_missing_registry_and_a_bad_config(tmp_path, broker, central):
    gateway = Gateway(tmp_path / "gw", broker.port, central.url)
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "registry")
    assert status == "FAIL" and "fix:" in text and "registry import" in text

    set_option(gateway.config, "mqtt", "prot", "1883")
    result = doctor(gateway.config)
    assert result.returncode != 0
    status, text = finding(result.stdout, "config")
    assert status == "FAIL" and "mqtt.prot" in text and "fix:" in text


def test_without_the_key_the_doctor_says_so_and_runs_the_local_checks(tmp_path, broker, central):
    """The key is needed only to sign: the doctor reports it missing, as a finding with its
    fix, and every check that does not sign still runs and passes."""
    gateway = configured(tmp_path / "gw", broker.port, central.url)
    text = gateway.config.read_text()
    gateway.config.write_text("\n".join(line for line in text.splitlines()
                                        if not line.replace(" ", "").startswith("key=")) + "\n")
    environment = {k: v for k, v in os.environ.items() if k != CENTRAL_KEY_ENV}
    result = subprocess.run(mashang("doctor", "--config", str(gateway.config), "--timeout", "3"),
                            capture_output=True, text=True, timeout=60, env=environment)
    assert result.returncode != 0
    status, detail = finding(result.stdout, "central key")
    assert status == "FAIL" and CENTRAL_KEY_ENV in detail and "fix:" in detail
    for check in ("config", "broker", "data dir", "disk", "registry", "public keys"):
        assert finding(result.stdout, check)[0] == "ok", check
    assert "Traceback" not in result.stderr
