"""`mashang install`, as an operator runs it, into a tree of its own (`--root DIR`: the same
files a Pi gets, nothing chowned, the owners recorded), and `--dry-run`, which changes nothing:

- the tree: /etc/mashang and /var/lib/mashang, the key only in gateway.env (0600, mashang's),
  a TOML without the key that the gateway's own loader takes, the broker account in the
  password file and in the TOML, Mosquitto's config and ACL as shipped, the unit;
- a second run changes nothing (every file byte for byte), a new key file changes the key only;
- the key never comes from the command line and never appears in what it prints;
- the broker files it wrote work: a real Mosquitto started with them lets the gateway's
  account log in and subscribe to the device topics with the password from the TOML;
- the unit it writes passes `systemd-analyze verify` where the machine has it.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from edge.config import CENTRAL_KEY_ENV, ConfigError, load_config
from edge.tools.broker_acl import shipped_acl
from edge.tools.install import deploy_template, render_unit, run_install
from tests.helpers.secure_broker import Client
from tests.helpers.support import Broker, free_port, mashang

KEY = "k3y-of-gw-kangcheng-01-7f3a9c"
EXPECTED_OWNERS = {
    "/etc/mashang": ("0750", "root:mashang"),
    "/var/lib/mashang": ("0750", "mashang:mashang"),
    "/etc/mashang/gateway.env": ("0600", "mashang:mashang"),
    "/etc/mashang/gateway.toml": ("0640", "root:mashang"),
    "/etc/mosquitto/passwd": ("0640", "root:mosquitto"),
    "/etc/mosquitto/conf.d/mashang.conf": ("0644", "root:root"),
    "/etc/mosquitto/mashang.acl": ("0644", "root:root"),
    "/etc/systemd/system/mashang-gateway.service": ("0644", "root:root"),
}


def install(root: Path, *flags: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(mashang("install", "--root", str(root), *flags), input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=root.parent)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def owners(root: Path) -> dict[str, tuple[str, str]]:
    found = {}
    for line in (root / "install-owners.txt").read_text().splitlines():
        mode, owner, _kind, path = line.split(" ", 3)
        found[path] = (mode, owner)
    return found


def args(**given: object) -> argparse.Namespace:
    defaults = {"gateway_id": "gw-kangcheng-01", "central": "https://central.example",
                "key_file": None, "http_listen": None, "mqtt_port": None, "topic_root": None,
                "root": None, "dry_run": False, "skip_doctor": False}
    return argparse.Namespace(**{**defaults, **given})


# -- in-process: what the dry run says, and what it leaves alone ---------------------------

@pytest.mark.unit
def test_a_dry_run_names_every_file_and_command_and_changes_nothing(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    root = tmp_path / "target"
    out = io.StringIO()
    code = run_install(args(key_file=str(key_file), root=str(root), dry_run=True), out=out)
    text = out.getvalue()
    assert code == 0, text
    assert not root.exists(), "a dry run wrote something"
    for path in EXPECTED_OWNERS:
        assert path in text, f"the dry run does not name {path}:\n{text}"
    assert "mosquitto_passwd -c -b" in text and "<random password>" in text
    assert KEY not in text


@pytest.mark.unit
@pytest.mark.parametrize("flag", ["--key", "--central-key"])
def test_the_key_is_never_an_argument(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mashang.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser("install").parse_args(["install", flag, KEY])
    assert exit_.value.code == 2
    assert KEY not in capsys.readouterr().err


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["", "short", "has space inside it", 'quote"d-key-value',
                                 "dollar$sign-key-value", "two\nlines-of-key"])
def test_a_key_that_systemd_and_sh_would_read_differently_is_refused(tmp_path: Path,
                                                                     bad: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(bad)
    code = run_install(args(key_file=str(key_file), root=str(tmp_path / "t"), dry_run=True),
                       out=io.StringIO())
    assert code == 1


@pytest.mark.unit
def test_the_unit_is_the_shipped_one_but_for_its_executable() -> None:
    shipped = deploy_template("mashang-gateway.service")
    rendered = render_unit("/srv/venv/bin/mashang")
    changed = [(a, b) for a, b in zip(shipped.splitlines(), rendered.splitlines(), strict=True)
               if a != b]
    assert changed == [("ExecStart=/opt/mashang/venv/bin/mashang gateway --config "
                        "/etc/mashang/gateway.toml",
                        "ExecStart=/srv/venv/bin/mashang gateway --config "
                        "/etc/mashang/gateway.toml")]
    assert "EnvironmentFile=-/etc/mashang/gateway.env" in rendered


# -- the real command, into a tree -----------------------------------------------------------

@pytest.mark.system
def test_install_writes_the_tree_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "target"
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    first = install(root, "--gateway-id", "gw-kangcheng-01", "--central",
                    "https://central.example", "--key-file", str(key_file))
    assert first.returncode == 0, first.stdout + first.stderr
    assert KEY not in first.stdout + first.stderr

    # The owners and modes, recorded (not applied under --root).
    recorded = owners(root)
    assert {path: recorded.get(path) for path in EXPECTED_OWNERS} == EXPECTED_OWNERS
    for path, (mode, _) in EXPECTED_OWNERS.items():
        actual = (root / path.lstrip("/")).stat().st_mode & 0o7777
        assert f"{actual:04o}" == mode, path

    # The key only in the env file; the TOML has none, and the gateway's loader takes it.
    env = (root / "etc/mashang/gateway.env").read_text()
    assert env == f"{CENTRAL_KEY_ENV}={KEY}\n"
    config_path = root / "etc/mashang/gateway.toml"
    document = tomllib.loads(config_path.read_text())
    assert KEY not in config_path.read_text() and "key" not in document["central"]
    os.environ.pop(CENTRAL_KEY_ENV, None)
    config = load_config(config_path)
    assert config.gateway.id == "gw-kangcheng-01"
    assert str(config.gateway.data_dir) == "/var/lib/mashang"
    assert config.central.base_url == "https://central.example"
    with pytest.raises(ConfigError, match=CENTRAL_KEY_ENV):
        config.central_key()  # only `mashang gateway` needs it: systemd gives it from the env

    # The broker: the gateway's account in the password file, its password in the TOML.
    password = document["mqtt"]["password"]
    assert document["mqtt"]["username"] == "mashang-gateway" and len(password) >= 20
    passwd = (root / "etc/mosquitto/passwd").read_text()
    assert passwd.startswith("mashang-gateway:$") and password not in passwd
    assert (root / "etc/mosquitto/mashang.acl").read_text() == shipped_acl()
    assert (root / "etc/mosquitto/conf.d/mashang.conf").read_text() == \
        deploy_template("mosquitto.conf")
    unit = (root / "etc/systemd/system/mashang-gateway.service").read_text()
    assert "ExecStart=/opt/mashang" not in unit

    # Again, without the flags: it takes them from the config, and changes nothing.
    before = tree(root)
    second = install(root)
    assert second.returncode == 0, second.stdout + second.stderr
    assert tree(root) == before
    assert not re.search(r"  (create|update)\b", second.stdout), second.stdout
    assert "password kept" in second.stdout

    # A new key: the env file changes, nothing else does.
    key_file.write_text("another-key-for-gw-kangcheng-01\n")
    third = install(root, "--key-file", str(key_file))
    assert third.returncode == 0, third.stderr
    after = tree(root)
    assert after["etc/mashang/gateway.env"] == \
        f"{CENTRAL_KEY_ENV}=another-key-for-gw-kangcheng-01\n".encode()
    assert {k: v for k, v in after.items() if k != "etc/mashang/gateway.env"} == \
        {k: v for k, v in before.items() if k != "etc/mashang/gateway.env"}


@pytest.mark.system
def test_the_key_can_come_on_stdin_and_is_asked_for_when_missing(tmp_path: Path) -> None:
    root = tmp_path / "target"
    flags = ("--gateway-id", "gw-stdin", "--central", "http://127.0.0.1:9")
    missing = install(root, *flags, stdin="")
    assert missing.returncode == 1 and "key" in missing.stderr
    piped = install(root, *flags, "--key-file", "-", stdin=f"{KEY}\n")
    assert piped.returncode == 0, piped.stderr
    assert (root / "etc/mashang/gateway.env").read_text() == f"{CENTRAL_KEY_ENV}={KEY}\n"
    assert "from stdin" in piped.stdout


@pytest.mark.system
def test_the_installed_broker_files_let_the_gateway_log_in(tmp_path: Path) -> None:
    """Mosquitto with the conf.d file, password file and ACL the install wrote (only the port
    and paths swapped, as tests/helpers/secure_broker.py does with deploy/)."""
    root = tmp_path / "target"
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    result = install(root, "--gateway-id", "gw-b", "--central", "http://127.0.0.1:9",
                     "--key-file", str(key_file))
    assert result.returncode == 0, result.stderr
    etc = root / "etc/mosquitto"
    port = free_port()
    conf = (etc / "conf.d/mashang.conf").read_text()
    for shipped, local in {"listener 1883\n": f"listener {port} 127.0.0.1\n",
                           "password_file /etc/mosquitto/passwd\n":
                               f"password_file {etc}/passwd\n",
                           "acl_file /etc/mosquitto/mashang.acl\n":
                               f"acl_file {etc}/mashang.acl\n"}.items():
        assert conf.count(shipped) == 1
        conf = conf.replace(shipped, local)
    folder = tmp_path / "broker"
    folder.mkdir()
    conf += f"\npersistence_location {folder}/\nlog_dest stderr\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    broker = Broker(folder, port)
    (folder / "mosquitto.conf").write_text(conf)
    broker.start()
    try:
        password = tomllib.loads((root / "etc/mashang/gateway.toml").read_text())["mqtt"][
            "password"]
        gateway = Client(port, "mashang-gateway", password)
        intruder = Client(port, "mashang-gateway", "not-its-password")
        try:
            assert gateway.accepted, f"the gateway's login was refused: {gateway.connack}"
            assert gateway.subscribe("mashang/v1/buttons/+/events") == [1]
            assert not intruder.accepted
        finally:
            gateway.close()
            intruder.close()
    finally:
        broker.kill()


@pytest.mark.system
def test_the_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not on this machine (package systemd): the unit "
                    "is not verified here")
    root = tmp_path / "target"
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    result = install(root, "--gateway-id", "gw-u", "--central", "http://127.0.0.1:9",
                     "--key-file", str(key_file))
    assert result.returncode == 0, result.stderr
    unit = root / "etc/systemd/system/mashang-gateway.service"
    verified = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                              timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stderr.strip() == "", verified.stderr


@pytest.mark.system
def test_install_and_device_load_nothing_of_the_central(tmp_path: Path) -> None:
    """`mashang install` and `mashang device` are the gateway's: the real processes, with
    every import logged by Python, load no module of cloud_bridge (docs/architecture.md)."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    loaded: set[str] = set()
    for argv in (mashang("install", "--root", str(tmp_path / "t"), "--gateway-id", "gw-i",
                         "--central", "http://127.0.0.1:9", "--key-file", str(key_file)),
                 mashang("device", "list", "--root", str(tmp_path / "t"))):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        loaded |= {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                   if line.startswith("import time:")}
    # (importlib.import_module, by which mashang.cli loads a command, is not logged; what
    # the command's module imports is.)
    assert {"edge.tools.broker_acl", "edge.tools.system", "edge.config"} <= loaded
    assert sorted(name for name in loaded if name.split(".")[0] in ("cloud_bridge", "lab")) == []
