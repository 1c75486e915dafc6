"""`mashang device add|remove|list|rotate|sync`, as an operator onboards a button: a real
Mosquitto with the shipped configuration and a password file (tests/helpers/secure_broker.py),
the real central with its registry, and the real gateway logged in as mashang-gateway.

- `add` makes the button's account and ACL block, reloads the broker (SIGHUP to its pid) and
  registers the resident at the central (`PUT /v1/registry/buttons/{id}`); the central relays
  the registry to the gateway; a press published with the new credentials becomes an alert at
  the central with the resident's name. A second `add` changes nothing.
- `remove` takes all of it back: the next connection with those credentials is refused.
- `rotate`: the old password stops working, the new one works.
- With the central out of reach the registration waits in a local queue; `device sync` sends
  it once the central is back. A registration the central refuses stops `add` before the
  broker is touched.
- The admin endpoint refuses with reasons: no token, not JSON, invalid fields, a building
  the registry lacks (409), a bad id; its OpenAPI entry is fuzzed by test_central_openapi.py.
- Unit: the ACL file is edited idempotently (add twice = once; add then remove = nothing).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.tools.broker_acl import render_acl, shipped_acl, with_account, without_account
from tests.helpers.console import REGISTRY, admin_cli, start_central, wait_alert
from tests.helpers.secure_broker import Client, SecureBroker
from tests.helpers.support import (
    ADMIN_TOKEN,
    Central,
    Gateway,
    free_port,
    mashang,
    set_option,
    wait_for,
)

GATEWAY_PASSWORD = "gw-pass-5d1e"
DEVICE = "btn-0042"
RESIDENT = "孙桂芳"


# -- unit: the ACL file, edited in place ---------------------------------------------------

@pytest.mark.unit
def test_acl_edits_are_idempotent_and_keep_the_rendered_shape() -> None:
    shipped = shipped_acl()
    one = with_account(shipped, "button", "btn-1")
    assert with_account(one, "button", "btn-1") == one  # a second add changes nothing
    two = with_account(one, "shelly-gen1", "shellybutton1-AA")
    assert two == shipped + render_acl([("button", "btn-1"), ("shelly-gen1", "shellybutton1-AA")],
                                       header=False)
    assert without_account(two, "shellybutton1-AA") == one
    assert without_account(without_account(one, "btn-1"), "btn-1") == shipped
    # The commented examples are no blocks: removing btn-0007 (an example) changes nothing.
    assert without_account(shipped, "btn-0007") == shipped
    # Another role for the same account replaces its block, never adds a second one.
    swapped = with_account(one, "scanner", "btn-1")
    assert swapped.count("user btn-1\n") == 1 and "scanners/btn-1/scans" in swapped
    assert with_account(shipped, "gateway", "mashang-gateway") == shipped


# -- system: the onboarding ----------------------------------------------------------------

def device(*words: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(mashang("device", *words), capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def password_of(result: subprocess.CompletedProcess) -> str:
    found = re.search(r"MQTT password (\S+)", result.stdout)
    assert found, f"no password printed:\n{result.stdout}{result.stderr}"
    return found.group(1)


class Site:
    """A gateway's machine: the secure broker, its files, the gateway, and its central."""

    def __init__(self, folder: Path, central: Central) -> None:
        self.central = central
        self.broker = SecureBroker(folder / "broker", {"mashang-gateway": GATEWAY_PASSWORD},
                                   devices=[])
        self.broker.start()
        assert self.broker.proc is not None
        self.pid_file = folder / "mosquitto.pid"
        self.pid_file.write_text(f"{self.broker.proc.pid}\n")
        self.gateway = Gateway(folder / "gateway", self.broker.port, central.url)
        set_option(self.gateway.config, "mqtt", "username", '"mashang-gateway"')
        set_option(self.gateway.config, "mqtt", "password", f'"{GATEWAY_PASSWORD}"')
        self.files = ["--config", str(self.gateway.config),
                      "--passwd", str(self.broker.folder / "passwd"),
                      "--acl", str(self.broker.acl), "--broker-pid-file", str(self.pid_file)]

    def device(self, *words: str, token: bool = True) -> subprocess.CompletedProcess:
        return device(*words, *self.files,
                      env={"MASHANG_ADMIN_TOKEN": ADMIN_TOKEN} if token else {})

    def can_connect(self, user: str, password: str) -> bool:
        client = Client(self.broker.port, user, password)
        try:
            return client.accepted
        finally:
            client.close()

    def close(self) -> None:
        self.gateway.kill()
        self.broker.kill()


@pytest.fixture
def site(tmp_path: Path):
    central = start_central(tmp_path / "central")
    site = Site(tmp_path / "site", central)
    yield site
    site.close()
    central.kill()


def central_registry(central: Central) -> dict:
    exported = admin_cli("registry", "export", "--config", str(central.config))
    assert exported.returncode == 0, exported.stderr
    return json.loads(exported.stdout)


@pytest.mark.system
def test_onboard_a_button_press_it_and_remove_it(site: Site) -> None:
    site.gateway.start()
    added = site.device("add", DEVICE, "--role", "button", "--resident", RESIDENT,
                        "--building", "B3", "--room", "502", "--phone", "13900000042")
    assert added.returncode == 0, added.stdout + added.stderr
    password = password_of(added)
    assert "registered" in added.stdout and "SIGHUP" in added.stdout
    assert f"user {DEVICE}\n" in site.broker.acl.read_text()
    registered = {b["device_id"]: b for b in central_registry(site.central)["buttons"]}
    assert registered[DEVICE]["resident"]["name"] == RESIDENT
    assert central_registry(site.central)["version"] == REGISTRY["version"] + 1

    # Again: nothing changes at the broker, the password stays the one printed before.
    acl_before = site.broker.acl.read_text()
    again = site.device("add", DEVICE, "--role", "button", "--resident", RESIDENT,
                        "--building", "B3", "--room", "502", "--phone", "13900000042")
    assert again.returncode == 0, again.stderr
    assert "MQTT password" not in again.stdout and "password kept" in again.stdout
    assert site.broker.acl.read_text() == acl_before

    # The central relays the registry to the gateway; then the button presses, as itself.
    registry_file = site.gateway.data_dir / "registry.json"
    wait_for(lambda: registry_file.exists() and DEVICE in registry_file.read_text(), 30,
             what="the gateway to receive the registry with the new button")
    wait_for(lambda: site.can_connect(DEVICE, password), 10,
             what="the broker to take the new account")
    button = Client(site.broker.port, DEVICE, password)
    try:
        assert button.publish(f"mashang/v1/buttons/{DEVICE}/events",
                              json.dumps({"seq": 1, "action": "long"})) == 0
    finally:
        button.close()
    alert = wait_alert(site.central, DEVICE)
    assert alert["data"]["resident"]["name"] == RESIDENT
    assert alert["building"] == "B3"

    listed = site.device("list")
    assert listed.returncode == 0 and re.search(rf"^{DEVICE}\s+button\s+yes", listed.stdout,
                                                re.MULTILINE), listed.stdout

    removed = site.device("remove", DEVICE)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"user {DEVICE}" not in site.broker.acl.read_text()
    assert DEVICE not in {b["device_id"] for b in central_registry(site.central)["buttons"]}
    wait_for(lambda: not site.can_connect(DEVICE, password), 10,
             what="the broker to refuse the removed account")
    assert site.can_connect("mashang-gateway", GATEWAY_PASSWORD)


@pytest.mark.system
def test_rotate_replaces_the_password(site: Site) -> None:
    added = site.device("add", "gate-n", "--role", "scanner")
    assert added.returncode == 0, added.stderr
    old = password_of(added)
    wait_for(lambda: site.can_connect("gate-n", old), 10, what="the first password to work")
    rotated = site.device("rotate", "gate-n", "--qr")
    assert rotated.returncode == 0, rotated.stderr
    new = password_of(rotated)
    assert new != old and "█" in rotated.stdout  # the QR code, in the terminal
    wait_for(lambda: site.can_connect("gate-n", new) and not site.can_connect("gate-n", old),
             10, what="only the new password to work")


@pytest.mark.system
def test_a_registration_waits_while_the_central_is_away(tmp_path: Path) -> None:
    away = Central(tmp_path / "central", port=free_port())  # configured, not started yet
    source = tmp_path / "registry.json"
    source.write_text(json.dumps(REGISTRY, ensure_ascii=False), encoding="utf-8")
    assert admin_cli("registry", "import", str(source), "--config",
                     str(away.config)).returncode == 0
    site = Site(tmp_path / "site", away)
    try:
        added = site.device("add", DEVICE, "--role", "button", "--resident", RESIDENT,
                            "--building", "B3")
        assert added.returncode == 0, added.stdout + added.stderr
        assert "queued" in added.stdout and "out of reach" in added.stdout
        password_of(added)  # the broker side is done all the same
        listed = site.device("list")
        assert re.search(rf"^{DEVICE}\s+button\s+yes\s+queued", listed.stdout, re.MULTILINE), \
            listed.stdout

        away.start()
        try:
            synced = site.device("sync")
            assert synced.returncode == 0, synced.stdout + synced.stderr
            assert "registered" in synced.stdout
            assert DEVICE in {b["device_id"] for b in central_registry(away)["buttons"]}
            assert "; 0 registration(s) queued" in site.device("list").stdout
        finally:
            away.kill()
    finally:
        site.close()


@pytest.mark.system
def test_a_refused_registration_leaves_the_broker_alone(site: Site) -> None:
    refused = site.device("add", DEVICE, "--role", "button", "--resident", RESIDENT,
                          "--building", "B99")
    assert refused.returncode == 1
    assert "no building 'B99'" in refused.stdout
    assert DEVICE not in (site.broker.folder / "passwd").read_text()
    assert f"user {DEVICE}" not in site.broker.acl.read_text()
    missing = site.device("add", DEVICE, "--role", "button")
    assert missing.returncode == 1 and "--resident" in missing.stderr


def put(central: Central, device_id: str, body: bytes, token: str | None = ADMIN_TOKEN,
        method: str = "PUT") -> tuple[int, dict]:
    request = urllib.request.Request(f"{central.url}/v1/registry/buttons/{device_id}",
                                     data=body if method == "PUT" else None, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.system
def test_the_registry_endpoint_refuses_with_reasons(tmp_path: Path) -> None:
    central = start_central(tmp_path / "central")
    try:
        good = json.dumps({"resident": {"name": RESIDENT, "building": "B5"}}).encode()
        assert put(central, DEVICE, good, token=None)[0] == 401
        assert put(central, DEVICE, good, token="wrong")[0] == 401
        status, body = put(central, DEVICE, b"{not json")
        assert (status, body["error"]) == (400, "body is not JSON")
        status, body = put(central, DEVICE, json.dumps({"resident": {"name": "x"}}).encode())
        assert status == 422 and "resident.building" in body["error"]
        status, body = put(central, DEVICE, json.dumps(
            {"resident": {"name": "x", "building": "B5"}, "colour": "red"}).encode())
        assert status == 422 and "colour" in body["error"]
        status, body = put(central, DEVICE, json.dumps(
            {"resident": {"name": "x", "building": "B99"}}).encode())
        assert status == 409 and "no building 'B99'" in body["error"]
        status, body = put(central, "bad%20id", good)
        assert status == 422 and "device_id" in body["error"]
        version = central_registry(central)["version"]
        status, body = put(central, DEVICE, good)
        assert status == 200 and body["created"] and body["version"] == version + 1
        status, body = put(central, DEVICE, good)
        assert status == 200 and not body["created"] and body["version"] == version + 2
        assert put(central, DEVICE, b"", method="DELETE")[0] == 200
        status, body = put(central, DEVICE, b"", method="DELETE")
        assert status == 404 and DEVICE in body["error"]
        assert "Traceback" not in central.output()
    finally:
        central.kill()
