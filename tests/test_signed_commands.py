"""Commands the gateway can trust (PROTOCOL §6): the central signs every command it serves with
its Ed25519 command key; a gateway holding the public key (`central.command_key`) applies only
what verifies, and one without it takes only `feedback`, and says so.

Real processes: Mosquitto, the central, the gateway, a real HTTP hop in between that plays the
man in the middle, and `mashang doctor`.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cloud_bridge.commands.signing import KEY_FILE
from cloud_bridge.config import CentralConfig
from edge.config import CentralSection
from mashang.config import ConfigError, load_config
from mashang.signing import (
    canonical_command,
    command_refusal,
    parse_public_key,
    public_key_text,
    sign_command,
)
from tests.helpers.central_proxy import CentralProxy
from tests.helpers.console import (
    REGISTRY,
    ConsoleClient,
    admin_cli,
    poll_commands,
    start_central,
    wait_alert,
)
from tests.helpers.e2e import FeedbackLog, buttons, gateway_registry, wait_gateway_registry
from tests.helpers.support import COMMAND_KEY, Broker, Central, Gateway, mashang, wait_for

pytestmark = pytest.mark.central

REGISTERED = [button["device_id"] for button in REGISTRY["buttons"]]


def command_key_of(central: Central) -> str:
    """What an installer copies into the gateway's TOML."""
    result = subprocess.run(mashang("central", "command-key", "--config", str(central.config)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def kept_seed(central: Central) -> str:
    """The private key where the central keeps it: a file only it may read (SQLite), or a row
    of the database that every central process on it shares (PostgreSQL)."""
    key_file = central.folder / KEY_FILE
    if central.database is None:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        return key_file.read_text().strip()
    assert not key_file.exists()
    with psycopg.connect(central.database) as connection:
        row = connection.execute("SELECT value FROM made_secrets WHERE name = %s",
                                 (KEY_FILE,)).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def central(tmp_path: Path, central_database: str | None) -> Iterator[Central]:
    central = start_central(tmp_path / "central", accounts=("b-wang", "duty"),
                            database=central_database)
    yield central
    central.kill()


def acknowledge_press(broker: Broker, central: Central, feedback: FeedbackLog,
                      account: str = "b-wang") -> None:
    """A press of btn-0007 at the gateway, acknowledged at the console by `account` (its
    butler; the duty room when the gateway, holding no registry, sent it as unregistered)."""
    with buttons(broker.port, ["btn-0007"], feedback) as pressable:
        pressable["btn-0007"].press("single")
        alert = wait_alert(central, "btn-0007")
        console = ConsoleClient(central)
        assert console.login(account).status == 200
        answer = console.act(alert["id"], "acknowledge")
        assert answer.status == 200, answer
        feedback.wait("btn-0007", "acknowledged")


# -- the signature itself -------------------------------------------------------------------

@pytest.mark.unit
def test_a_command_verifies_only_as_the_central_signed_it() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = parse_public_key(public_key_text(key.public_key()))
    command = {"id": "c1", "type": "feedback", "device_id": "btn-0007", "alert_id": "a1",
               "state": "acknowledged", "by": "王管家"}
    signed = sign_command(key, command)
    assert command_refusal(public, signed) is None
    # The form signed: without sig, keys sorted, no spaces, UTF-8 as is.
    assert canonical_command(signed) == (
        '{"alert_id":"a1","by":"王管家","device_id":"btn-0007","id":"c1",'
        '"state":"acknowledged","type":"feedback"}'
    ).encode()
    # However the JSON travelled (another key order, escaped characters), the values verify.
    travelled = json.loads(json.dumps(dict(reversed(list(signed.items()))), ensure_ascii=True))
    assert command_refusal(public, travelled) is None
    changed = {**signed, "state": "resolved"}
    assert "bad signature" in (command_refusal(public, changed) or "")
    assert command_refusal(public, command) == "no signature (sig)"
    assert command_refusal(public, {**command, "sig": "zz"}) == "sig is not hex"
    other = Ed25519PrivateKey.generate()
    assert "bad signature" in (command_refusal(public, sign_command(other, command)) or "")


@pytest.mark.unit
def test_a_command_key_that_is_no_key_is_refused_by_name(tmp_path: Path) -> None:
    for bad, why in (("not base64!", "not base64"), ("AAAA", "3 bytes")):
        with pytest.raises(ValueError, match=why):
            CentralSection.model_validate({"url": "http://127.0.0.1:1", "command_key": bad})
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path}"\ncommand_signing_key = "abc"\n')
    with pytest.raises(ConfigError, match=r"central\.command_signing_key"):
        load_config(config, CentralConfig)


# -- the central's key ------------------------------------------------------------------------

@pytest.mark.system
def test_the_central_makes_its_key_once_and_prints_its_public_half(
    tmp_path: Path, central_database: str | None
) -> None:
    central = Central(tmp_path / "central", command_signing_key=None, database=central_database)
    printed = command_key_of(central)
    seed = kept_seed(central)
    assert command_key_of(central) == printed  # made once, kept
    source = tmp_path / "registry.json"
    source.write_text(json.dumps(REGISTRY, ensure_ascii=False))
    result = admin_cli("registry", "import", str(source), "--config", str(central.config))
    assert result.returncode == 0, result.stderr
    central.start()
    try:
        # The helper checks the command's sig against the printed key.
        [command] = poll_commands(central, signed_by=printed)["commands"]
        assert command["type"] == "registry.replace"
        central.terminate()
        central.start()  # a restart signs with the same key
        assert command_key_of(central) == printed
        assert seed not in central.output()  # never logged
    finally:
        central.kill()


# -- a gateway with the central's public key --------------------------------------------------

@pytest.mark.system
def test_commands_arrive_signed_and_are_applied(
    broker: Broker, central: Central, make_gateway
) -> None:
    assert command_key_of(central) == COMMAND_KEY
    # The helper checks each command's sig against the printed key.
    [registry_command] = poll_commands(central, signed_by=COMMAND_KEY)["commands"]
    assert registry_command["type"] == "registry.replace"

    gateway = make_gateway(central.url)
    gateway.start()
    wait_gateway_registry(gateway, REGISTERED)  # registry.replace, verified and applied
    feedback = FeedbackLog()
    acknowledge_press(broker, central, feedback)  # feedback, verified and relayed
    assert "refused command" not in gateway.output()
    assert "central.command_key is not set" not in gateway.output()


@pytest.mark.system
def test_a_command_changed_on_the_way_is_refused_and_logged(
    broker: Broker, central: Central, make_gateway, tmp_path: Path
) -> None:
    def move_the_resident(page: dict) -> None:
        for command in page["commands"]:
            if command["type"] == "registry.replace":
                command["registry"]["buttons"][0]["resident"]["room"] = "0101"

    with CentralProxy(central.url) as proxy:
        proxy.tamper_commands(move_the_resident)
        gateway = make_gateway(proxy.url)
        gateway.start()
        wait_for(lambda: "refused command" in gateway.output(), what="the refusal in the log")
        line = next(line for line in gateway.output().splitlines() if "refused command" in line)
        assert "registry.replace" in line and "bad signature" in line, line
        assert gateway_registry(gateway) is None  # nothing of the forged snapshot applied

        # The same hop, honest again: the next registry is taken.
        proxy.tamper_commands(None)
        source = tmp_path / "registry-2.json"
        source.write_text(json.dumps({**REGISTRY, "version": 2}, ensure_ascii=False))
        result = admin_cli("registry", "import", str(source), "--config", str(central.config))
        assert result.returncode == 0, result.stderr
        wait_gateway_registry(gateway, REGISTERED)
        registry = gateway_registry(gateway)
        assert registry is not None
        assert registry.button("btn-0007").resident.room == "1201"
        assert gateway.running()


# -- a gateway without it ---------------------------------------------------------------------

@pytest.mark.system
def test_a_gateway_without_the_key_takes_only_feedback_and_says_so(
    broker: Broker, central: Central, make_gateway
) -> None:
    gateway = make_gateway(central.url, command_key=None)
    gateway.start()
    wait_for(lambda: "refused command" in gateway.output(), what="the registry's refusal")
    output = gateway.output()
    assert "central.command_key is not set: only feedback commands are taken" in output
    assert "registry.replace" in output.split("refused command", 1)[1].splitlines()[0]
    assert gateway_registry(gateway) is None

    feedback = FeedbackLog()
    acknowledge_press(broker, central, feedback, "duty")  # feedback still reaches the button

    doctor = subprocess.run(mashang("doctor", "--config", str(gateway.config)),
                            capture_output=True, text=True, timeout=120)
    [line] = [line for line in doctor.stdout.splitlines() if "command key" in line]
    assert "warn" in line and "only feedback" in line, doctor.stdout
    assert "mashang central command-key" in doctor.stdout


@pytest.mark.system
def test_the_doctor_checks_the_waiting_commands_against_the_key(
    broker: Broker, central: Central, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    wrong = public_key_text(Ed25519PrivateKey.generate().public_key())
    for key, status in ((COMMAND_KEY, "ok"), (wrong, "FAIL")):
        gateway = Gateway(tmp_path / status, broker.port, central.url, command_key=key)
        doctor = subprocess.run(mashang("doctor", "--config", str(gateway.config)),
                                capture_output=True, text=True, timeout=120)
        [line] = [line for line in doctor.stdout.splitlines() if "command key" in line]
        assert status in line, line
        if status == "FAIL":
            assert "bad signature" in line, line
        else:
            assert "1 waiting commands verify" in line, line
