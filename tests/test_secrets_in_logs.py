"""No secret in any log: a full run with distinctive secret values, then a grep of every line.

The run: the shipped broker configuration with per-device passwords, the central (at debug
level) with its admin token, a gateway key and a console session secret, the gateway (at debug
level) with its broker password, central key and LAN-page password; presses from a device
account; a gateway with a wrong central key and one with a wrong broker password; the duty
room's console login (wrong password, then right, a session, a logout), the LAN page with and
without its password, `mashang butler passwd`, `mashang doctor` and `mashang outbox`. On
PostgreSQL the central's database URL carries a password, and MASHANG_DATABASE_PASSWORD another;
a central whose database cannot be reached names it without either.

Then every log file and every command's output is searched for each secret: the configured
ones, and those made during the run (the session cookie, the CSRF token, the HTTP basic and
bearer credentials as they travel).
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from cloud_bridge.receiver.postgres import PASSWORD_VARIABLE
from tests.helpers.secure_broker import SecureBroker, clients
from tests.helpers.support import (
    ADMIN_TOKEN,
    GATEWAY_ID,
    GATEWAY_KEY,
    Central,
    Gateway,
    free_port,
    get_json,
    mashang,
    set_option,
    wait_for,
)

pytestmark = [pytest.mark.system, pytest.mark.central]

SECRETS = {
    "central key": "Kc-7f3a9c51e2-central-key",
    "wrong central key": "Kw-4d2f9a0b77-wrong-key",
    "gateway's broker password": "Pg-91b2e4d0c3-mqtt-gateway",
    "button's broker password": "Pb-5c8d11aa90-mqtt-button",
    "wrong broker password": "Pw-83ab7c22f1-mqtt-wrong",
    "admin token": "Ta-0e7b22c4d8-admin-token",
    "LAN page password": "Pp-6a1f03be55-page",
    "console password": "Pc-2c9e77f014-console",
    "wrong console password": "Px-e5a0d93b12-console-wrong",
    "console session secret": "Ss-b41d5e6f70-session-secret",
}
DATABASE_SECRETS = {
    "database URL's password": "Pd-3e8c5a17b9-database-url",
    "database password variable": "Pv-d06f4b92a8-database-env",
}


def request(url: str, *, method: str = "GET", body: dict | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def run(argv: list[str], log: Path, stdin: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120,
                            env=env)
    log.write_text(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}")
    return result


def debug(argv: list[str]) -> list[str]:
    """The same command at debug level: secrets must stay out of the chattiest logs too."""
    return [*argv[:3], "--log-level", "debug", *argv[3:]]


def with_password(url: str) -> str:
    """The URL with the user's password in it (the test server trusts loopback: any works)."""
    password = DATABASE_SECRETS["database URL's password"]
    return url.replace("://mashang@", f"://mashang:{password}@")


def central_with_database_secrets(folder: Path, database: str | None) -> Central:
    """On PostgreSQL, both ways of giving the database's password at once."""
    if database is None:
        return Central(folder)
    central = Central(folder, database=with_password(database))
    central.env[PASSWORD_VARIABLE] = DATABASE_SECRETS["database password variable"]
    return central


def test_no_secret_appears_in_any_log_line(tmp_path: Path, central_database: str | None):
    accounts = {"mashang-gateway": SECRETS["gateway's broker password"],
                "btn-0007": SECRETS["button's broker password"]}
    broker = SecureBroker(tmp_path / "broker", accounts)
    central = central_with_database_secrets(tmp_path / "central", central_database)
    config = central.config.read_text()
    assert ADMIN_TOKEN in config and GATEWAY_KEY in config
    config = config.replace(ADMIN_TOKEN, SECRETS["admin token"])
    config = config.replace(GATEWAY_KEY, SECRETS["central key"])
    config = config.replace("[gateways]", "[console]\nsession_secret = "
                            f'"{SECRETS["console session secret"]}"\n\n[gateways]')
    central.config.write_text(config)
    central.argv = debug(central.argv)
    commands = tmp_path / "commands"
    commands.mkdir()
    made: dict[str, str] = {}
    started: list = []
    try:
        broker.start()
        started.append(broker)
        central.start()
        started.append(central)
        result = run(mashang("butler", "passwd", "duty", "--config", str(central.config),
                             "--password-stdin"), commands / "butler-passwd.log",
                     stdin=SECRETS["console password"] + "\n", env=central.env)
        assert result.returncode == 0, result.stderr

        gateway = Gateway(tmp_path / "gateway", broker.port, central.url,
                          key=SECRETS["central key"])
        set_option(gateway.config, "mqtt", "username", '"mashang-gateway"')
        set_option(gateway.config, "mqtt", "password",
                   json.dumps(SECRETS["gateway's broker password"]))
        set_option(gateway.config, "http", "page_password",
                   json.dumps(SECRETS["LAN page password"]))
        gateway.argv = debug(gateway.argv)
        gateway.start()
        started.append(gateway)

        wrong_key = Gateway(tmp_path / "wrong-key", broker.port, central.url,
                            key=SECRETS["wrong central key"])
        set_option(wrong_key.config, "mqtt", "client_id", '"wrong-key-gateway"')
        set_option(wrong_key.config, "mqtt", "username", '"mashang-gateway"')
        set_option(wrong_key.config, "mqtt", "password",
                   json.dumps(SECRETS["gateway's broker password"]))
        wrong_key.argv = debug(wrong_key.argv)
        wrong_key.start()
        started.append(wrong_key)

        wrong_mqtt = Gateway(tmp_path / "wrong-mqtt", broker.port, central.url,
                             key=SECRETS["central key"])
        set_option(wrong_mqtt.config, "mqtt", "client_id", '"wrong-mqtt-gateway"')
        set_option(wrong_mqtt.config, "mqtt", "username", '"mashang-gateway"')
        set_option(wrong_mqtt.config, "mqtt", "password",
                   json.dumps(SECRETS["wrong broker password"]))
        wrong_mqtt.argv = debug(wrong_mqtt.argv)
        wrong_mqtt.start(wait_ready=False)
        started.append(wrong_mqtt)

        # Presses from the device's own account; both gateways take them, one delivers.
        with clients(broker.port, accounts, "btn-0007") as (button,):
            for seq in (1, 2, 3):
                assert button.publish("mashang/v1/buttons/btn-0007/events",
                                      json.dumps({"seq": seq, "action": "long"})) == 0
        admin = {"Authorization": f"Bearer {SECRETS['admin token']}"}
        made["admin header"] = admin["Authorization"]

        def delivered() -> bool:
            page = get_json(f"{central.url}/v1/events?limit=1000", token=SECRETS["admin token"])
            seqs = {e["data"].get("seq") for e in (page or {"events": []})["events"]
                    if e["device_id"] == "btn-0007"}
            return seqs == {1, 2, 3}

        wait_for(delivered, 30, what="the presses at the central")
        wait_for(lambda: "central refused our credentials" in wrong_key.output(), 30,
                 what="the wrong key refused")
        wait_for(lambda: "refused the connection" in wrong_mqtt.output()
                 or "Not authorized" in wrong_mqtt.output()
                 or "not authori" in wrong_mqtt.output().lower(), 30,
                 what="the wrong broker password refused")

        # The LAN page, without, with a wrong and with the right password.
        page = f"http://127.0.0.1:{gateway.http_port}/?login"
        for password in ("guess", SECRETS["LAN page password"]):
            credentials = base64.b64encode(f"duty:{password}".encode()).decode()
            made[f"basic auth ({password[:5]})"] = credentials
            request(page, headers={"Authorization": f"Basic {credentials}"})
        request(page)

        # The duty room's console: a wrong password, the right one, a session, a logout.
        login = f"{central.url}/v1/console/login"
        status, _, _ = request(login, method="POST",
                               body={"account": "duty",
                                     "password": SECRETS["wrong console password"]})
        assert status == 401
        status, headers, answer = request(login, method="POST",
                                          body={"account": "duty",
                                                "password": SECRETS["console password"]})
        assert status == 200, answer
        cookie = SimpleCookie(headers["Set-Cookie"])
        session_cookie = next(iter(cookie.values()))
        made["session cookie"] = session_cookie.value
        made["csrf token"] = json.loads(answer)["csrf"]
        sent_cookie = {"Cookie": f"{session_cookie.key}={session_cookie.value}"}
        status, _, _ = request(f"{central.url}/v1/console/session", headers=sent_cookie)
        assert status == 200
        status, _, _ = request(f"{central.url}/v1/console/logout", method="POST", body={},
                               headers={**sent_cookie, "X-CSRF-Token": made["csrf token"]})
        assert status == 200

        # The operator's commands, with the good and the bad configuration.
        for name, target in (("doctor", gateway), ("doctor-wrong-key", wrong_key),
                             ("doctor-wrong-mqtt", wrong_mqtt)):
            run(debug(mashang("doctor", "--config", str(target.config), "--timeout", "5")),
                commands / f"{name}.log")
        run(mashang("outbox", "--config", str(gateway.config)), commands / "outbox.log")
    finally:
        for process in reversed(started):
            if process.running():
                try:
                    process.terminate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()

    logs = sorted(path for path in tmp_path.rglob("*.log"))
    assert len(logs) >= 9, logs
    lines = [(path, line) for path in logs
             for line in path.read_text(errors="replace").splitlines()]
    assert len(lines) > 50, "the run logged too little to prove anything"
    secrets = {**SECRETS, **DATABASE_SECRETS, **made}
    found = [(name, path.relative_to(tmp_path), line[:200])
             for name, value in secrets.items()
             for path, line in lines if value in line]
    assert not found, "secrets in logs:\n" + "\n".join(map(str, found))
    print(f"\n{len(lines)} log lines from {len(logs)} files: none holds any of "
          f"{len(secrets)} secrets")
    assert GATEWAY_ID in "".join(line for _, line in lines)  # the grep saw the real logs


def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path: Path) -> None:
    """Serving and `mashang central migrate`, each refused by a database that is not there."""
    where = f"127.0.0.1:{free_port()}"
    central = central_with_database_secrets(tmp_path / "central",
                                            f"postgresql://mashang@{where}/central")
    for argv in (central.argv, mashang("central", "migrate", "--config", str(central.config))):
        result = run(argv, tmp_path / "refused.log", env=central.env)
        assert result.returncode != 0
        said = result.stdout + result.stderr
        assert where in said, said
        for name, value in DATABASE_SECRETS.items():
            assert value not in said, f"the {name} in: {said}"
