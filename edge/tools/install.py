"""`mashang install`: a gateway on a fresh Debian or Raspberry Pi OS, in one command, as root.

What it does, in order, each step printed (and with `--dry-run` only printed):

1. Mosquitto and its clients from Debian's packages, if missing (`apt-get install`).
2. The `mashang` system user (no login, no home), `/etc/mashang` (0750 root:mashang) and
   `/var/lib/mashang` (0750 mashang:mashang).
3. The central's key, read from `--key-file FILE` (or stdin, `-`), never from the command
   line, into `/etc/mashang/gateway.env` as `MASHANG_CENTRAL_KEY=…` (0600, owned by mashang:
   systemd reads it for the unit, and only the gateway's user can).
4. The gateway's broker account `mashang-gateway` with a random password, in Mosquitto's
   password file (`mosquitto_passwd -b`), and the same password in the gateway's TOML.
5. `/etc/mashang/gateway.toml` (0640 root:mashang) from the flags: gateway id, the central's
   address, the broker account, the data folder. No key in it.
6. Mosquitto's configuration (`conf.d/mashang.conf`) and ACL (`mashang.acl`, with the
   gateway's and the Zigbee2MQTT bridge's blocks; device blocks already there are kept), from
   the templates inside this package (`edge/deploy/`).
7. The systemd unit, with ExecStart pointing at this installation's `mashang`; under systemd,
   `daemon-reload`, enable, and a (re)start of Mosquitto and the gateway when their files
   changed.
8. `mashang doctor`, as the gateway's user, with the key.

Run again, it changes nothing that is already right: the broker password and the key are
kept (a new `--key-file` replaces the key), a file is rewritten only when its content would
differ (the old one kept beside it as `….before-install`), and services restart only when
their files changed. `--root DIR` writes the same tree below DIR and changes nothing else (no
user, no chown, no services, no doctor): the owners each path would get are in
DIR/install-owners.txt. `--dry-run` prints every file and command it would touch.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from edge.config import CENTRAL_KEY_ENV
from edge.tools.broker_accounts import (
    BROKER_ACL,
    BROKER_CONF,
    BROKER_PASSWD,
    new_password,
    own_passwd,
    passwd_users,
    set_password,
)
from edge.tools.broker_acl import (
    GATEWAY_ACCOUNT,
    SHIPPED_ACCOUNTS,
    AclError,
    check_topic_root,
    shipped_acl,
    with_account,
)
from edge.tools.system import ChangeError, System, systemd_running
from mashang.cli import COMMANDS

__all__ = ["add_parser", "deploy_template", "render_config", "render_unit", "run_install"]

USER = "mashang"
CONFIG_DIR = "/etc/mashang"
DATA_DIR = "/var/lib/mashang"
CONFIG_FILE = f"{CONFIG_DIR}/gateway.toml"
ENV_FILE = f"{CONFIG_DIR}/gateway.env"
UNIT_FILE = "/etc/systemd/system/mashang-gateway.service"
UNIT_EXEC = "/opt/mashang/venv/bin/mashang"  # the shipped unit's ExecStart, replaced
OWNERS_FILE = "install-owners.txt"
BACKUP = ".before-install"
DEFAULT_LISTEN = "127.0.0.1:8181"
# A key as systemd's EnvironmentFile and a shell's `.` read it alike: no quotes, spaces, $, \.
KEY_PATTERN = re.compile(r"[!#%&()*+,\-./0-9:;<=>?@A-Z\[\]^_a-z{|}~]{8,512}")
GATEWAY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

NEEDS = (
    "Needs: root on the gateway (sudo), or --root DIR / --dry-run, which need nothing. The key "
    "is read from --key-file FILE or from stdin (`-`, or piped), never from the command line; "
    "a re-run without it keeps the key already installed. Debian's apt-get brings Mosquitto "
    "if it is missing. Nothing here asks the central anything but the doctor at the end."
)


def deploy_template(name: str) -> str:
    """A file of `deploy/`, from the installed package itself (edge/deploy/), not a clone."""
    return (resources.files("edge") / "deploy" / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Settings:
    gateway_id: str
    central: str
    listen: str
    mqtt_port: int
    topic_root: str


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string


def render_config(settings: Settings, password: str) -> str:
    return f"""\
# The gateway's configuration, written by `mashang install` (every key: docs/operations.md).
# The central's key is not here: systemd gives the gateway MASHANG_CENTRAL_KEY from
# {ENV_FILE}. A re-run of `mashang install` keeps this file as long as the values it
# manages (gateway id, central, broker account, listen address) stay the same.

[gateway]
id = {_toml_string(settings.gateway_id)}
data_dir = {_toml_string(DATA_DIR)}
topic_root = {_toml_string(settings.topic_root)}

[mqtt]
host = "127.0.0.1"
port = {settings.mqtt_port}
username = {_toml_string(GATEWAY_ACCOUNT)}
password = {_toml_string(password)}

[central]
url = {_toml_string(settings.central)}

[http]
listen = {_toml_string(settings.listen)}
"""


def managed(document: dict[str, Any]) -> dict[str, Any]:
    """The values `mashang install` writes, from a parsed gateway TOML."""
    def get(section: str, key: str) -> Any:
        value = document.get(section, {})
        return value.get(key) if isinstance(value, dict) else None

    return {
        "id": get("gateway", "id"), "data_dir": get("gateway", "data_dir"),
        "topic_root": get("gateway", "topic_root") or "mashang/v1",
        "host": get("mqtt", "host") or "127.0.0.1", "port": get("mqtt", "port") or 1883,
        "username": get("mqtt", "username"), "password": get("mqtt", "password"),
        "url": get("central", "url"), "listen": get("http", "listen") or DEFAULT_LISTEN,
        "key": get("central", "key"),
    }


def render_unit(executable: str) -> str:
    unit = deploy_template("mashang-gateway.service")
    assert UNIT_EXEC in unit, "the shipped unit's ExecStart changed: update UNIT_EXEC"
    return unit.replace(f"ExecStart={UNIT_EXEC} ", f"ExecStart={executable} ")


def wait_for_file(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)


def this_mashang() -> str:
    """The `mashang` of the installation this runs from (the unit starts that one)."""
    beside = Path(sys.executable).with_name("mashang")
    if beside.exists():
        return str(beside)
    return shutil.which("mashang") or UNIT_EXEC


def read_key(source: str | None, stdin: TextIO) -> str | None:
    """The key from a file or stdin ("-"); None when none was given and stdin is a terminal
    nobody types into (a re-run keeping the installed key)."""
    if source is None:
        return None
    if source == "-":
        text = getpass.getpass("the central's key for this gateway: ") if stdin.isatty() \
            else stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ChangeError(f"--key-file {source}: {exc.strerror}") from exc
    key = text.strip()
    if not KEY_PATTERN.fullmatch(key):
        raise ChangeError("the key must be one line of 8 to 512 printable characters without "
                          "spaces, quotes, $ or \\ (as the central gave it)")
    return key


def installed_key(system: System) -> str | None:
    data = system.read(ENV_FILE)
    if data is None:
        return None
    for line in data.decode(errors="replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == CENTRAL_KEY_ENV and value.strip():
            return value.strip()
    return None


def choose_settings(args: argparse.Namespace, existing: dict[str, Any]) -> Settings:
    gateway_id = args.gateway_id or existing.get("id")
    central = args.central or existing.get("url")
    missing = [flag for flag, value in (("--gateway-id", gateway_id), ("--central", central))
               if not value]
    if missing:
        raise ChangeError(f"{' and '.join(missing)} needed (no {CONFIG_FILE} to take them "
                          "from yet)")
    assert isinstance(gateway_id, str) and isinstance(central, str)
    if not GATEWAY_ID.fullmatch(gateway_id):
        raise ChangeError(f"--gateway-id {gateway_id!r}: 1 to 64 of A-Z a-z 0-9 . _ -")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", central):
        raise ChangeError(f"--central {central!r}: the central's base address, such as "
                          "https://central.example")
    try:
        topic_root = check_topic_root(args.topic_root or existing.get("topic_root")
                                      or "mashang/v1")
    except AclError as exc:
        raise ChangeError(str(exc)) from exc
    return Settings(gateway_id=gateway_id, central=central.rstrip("/"),
                    listen=args.http_listen or existing.get("listen") or DEFAULT_LISTEN,
                    mqtt_port=args.mqtt_port or existing.get("port") or 1883,
                    topic_root=topic_root)


def run_install(args: argparse.Namespace, out: TextIO | None = None,
                stdin: TextIO | None = None) -> int:
    out = out or sys.stdout
    root = Path(args.root).resolve() if args.root else None
    system = System(out=out, root=root, dry_run=args.dry_run)
    if root is None and not args.dry_run and os.geteuid() != 0:
        print("mashang install: run it as root (sudo mashang install …), or with --root DIR "
              "or --dry-run", file=sys.stderr)
        return 2
    try:
        return _install(system, args, stdin or sys.stdin, out)
    except ChangeError as exc:
        print(f"mashang install: {exc}", file=sys.stderr)
        return 1


def _install(system: System, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    existing_text = system.read(CONFIG_FILE)
    try:
        existing = managed(tomllib.loads(existing_text.decode())) if existing_text else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        existing = {}
    settings = choose_settings(args, existing)
    key_source = args.key_file
    if key_source is None and installed_key(system) is None and not existing.get("key"):
        key_source = "-"  # nothing installed yet: the key must come now, on stdin
    key = read_key(key_source, stdin)
    mode = ("dry run: nothing is changed" if system.dry_run else
            f"into {system.root} (no chown, no services)" if system.root else "this machine")
    print(f"mashang install: gateway {settings.gateway_id}, central {settings.central} "
          f"({mode})", file=out)

    # 1. Mosquitto.
    if system.root is None:
        missing = [package for package, tool in (("mosquitto", "mosquitto"),
                                                 ("mosquitto-clients", "mosquitto_pub"))
                   if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists())]
        if missing and shutil.which("apt-get") is None:
            raise ChangeError(f"{', '.join(missing)} missing and no apt-get to install them")
        if missing:
            system.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        else:
            system.say("package", "mosquitto, mosquitto-clients", "installed")

    # 2. The user and the folders.
    if system.may_chown and not system.user_exists(USER):
        system.run(["useradd", "--system", "--no-create-home", "--home-dir", DATA_DIR,
                    "--shell", "/usr/sbin/nologin", USER])
    elif system.root is not None or os.geteuid() != 0:
        system.say("skip", f"system user {USER}", "(recorded as owner; created on the target)")
    else:
        system.say("user", USER, "exists")
    system.ensure_dir(CONFIG_DIR, 0o750, "root", USER)
    system.ensure_dir(DATA_DIR, 0o750, USER, USER)

    # 3. The key, for the gateway's user only.
    key = key or installed_key(system) or existing.get("key")
    if not key:
        raise ChangeError("no key: give --key-file FILE (or - for stdin)")
    source = ("from stdin" if key_source == "-" else f"from {key_source}") if key_source \
        else "kept"
    env_changed = system.write_file(ENV_FILE, f"{CENTRAL_KEY_ENV}={key}\n", 0o600, USER, USER,
                                    what=f"{CENTRAL_KEY_ENV}, {source}")

    # 4. The gateway's broker account.
    users = passwd_users(system, BROKER_PASSWD)
    password = existing.get("password") if existing.get("username") == GATEWAY_ACCOUNT else None
    broker_changed = False
    system.ensure_dir("/etc/mosquitto", 0o755, "root", "root", keep_mode=True)
    if not isinstance(password, str) or not password or GATEWAY_ACCOUNT not in users:
        password = password if isinstance(password, str) and password else new_password()
        set_password(system, BROKER_PASSWD, GATEWAY_ACCOUNT, password)
        broker_changed = True
    else:
        own_passwd(system, BROKER_PASSWD, f"{GATEWAY_ACCOUNT} is there, its password kept")

    # 5. The gateway's TOML.
    wanted = render_config(settings, password)
    if existing and managed(tomllib.loads(wanted)) == {**existing, "key": None}:
        system.own_file(CONFIG_FILE, 0o640, "root", USER,
                        note="unchanged (it already has these values)")
        config_changed = False
    else:
        config_changed = system.write_file(CONFIG_FILE, wanted, 0o640, "root", USER,
                                           what="broker password inside, no key",
                                           backup=BACKUP)

    # 6. Mosquitto's configuration and ACL.
    system.ensure_dir("/etc/mosquitto/conf.d", 0o755, "root", "root", keep_mode=True)
    broker_changed |= system.write_file(BROKER_CONF, deploy_template("mosquitto.conf"), 0o644,
                                        "root", "root", what="deploy/mosquitto.conf",
                                        backup=BACKUP)
    acl = system.read(BROKER_ACL)
    text = acl.decode() if acl is not None else shipped_acl(topic_root=settings.topic_root)
    for role, account in SHIPPED_ACCOUNTS:  # device blocks already in the file stay
        text = with_account(text, role, account, topic_root=settings.topic_root)
    broker_changed |= system.write_file(
        BROKER_ACL, text, 0o644, "root", "root",
        what="deploy/mosquitto.acl" if acl is None else "gateway and bridge blocks ensured")

    # 7. systemd.
    unit_changed = system.write_file(UNIT_FILE, render_unit(this_mashang()), 0o644, "root",
                                     "root", what=f"ExecStart={this_mashang()}")
    if system.root is not None:
        path = system.root / OWNERS_FILE
        if not system.dry_run:
            lines = {owner.path: owner.line() for owner in system.owners}
            path.write_text("".join(f"{lines[key]}\n" for key in sorted(lines)))
        print(f"\nowners (not applied under --root): {path}", file=out)
        for owner in system.owners:
            print(f"  {owner.line()}", file=out)
        done = "dry run, nothing was changed" if system.dry_run else \
            f"done: the tree is in {system.root}"
        print(f"\n{done}. On the target, the doctor: mashang doctor --config {CONFIG_FILE}",
              file=out)
        return 0
    gateway_changed = env_changed or config_changed or unit_changed
    if systemd_running() or system.dry_run:
        if not systemd_running():
            system.say("note", "systemd is not running here: these would run under systemd")
        if unit_changed:
            system.run(["systemctl", "daemon-reload"])
        system.run(["systemctl", "enable", "mosquitto", "mashang-gateway"])
        system.run(["systemctl", "restart" if broker_changed else "start", "mosquitto"])
        system.run(["systemctl", "restart" if gateway_changed else "start", "mashang-gateway"])
    else:
        system.say("note", "systemd is not running: start `mosquitto -c "
                           "/etc/mosquitto/mosquitto.conf` and `mashang gateway --config "
                           f"{CONFIG_FILE}` (as {USER}, with {ENV_FILE}) yourself")

    # 8. The doctor, as the gateway will run: its user, its key.
    doctor = [this_mashang(), "doctor", "--config", CONFIG_FILE]
    if args.skip_doctor:
        system.say("skip", " ".join(doctor), "(--skip-doctor)")
        return 0
    if system.real and systemd_running() and gateway_changed:
        # The gateway fetches the registry with its first command poll: give it a moment,
        # so that the doctor judges the gateway as it runs, not as it starts.
        wait_for_file(system.path(f"{DATA_DIR}/registry.json"), 15.0)
    print("", file=out)
    as_user = USER if system.dry_run or system.user_exists(USER) else None
    try:
        result = system.run(doctor, env={**os.environ, CENTRAL_KEY_ENV: key}, user=as_user,
                            check=False, capture=False)
    except ChangeError as exc:
        print(f"\nmashang install: installed, but {exc}. Is this installation readable by "
              f"{USER} (a venv under /opt, not under /root)? Then run the doctor by hand "
              "(docs/install.md, step 3).", file=out)
        return 0
    if result is None:
        print("\nmashang install: dry run, nothing was changed", file=out)
    elif result.returncode != 0:
        print("\nmashang install: installed; the doctor found problems, each with its fix "
              "above. Run it again once they are fixed (docs/install.md, troubleshooting).",
              file=out)
    else:
        print("\nmashang install: done", file=out)
    return 0


class _RefuseKey(argparse.Action):
    """`--key VALUE`: refused without repeating VALUE (shell history and `ps` would keep it)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        parser.error(f"{option_string}: the key is never given on the command line (the shell "
                     "history and ps would keep it): use --key-file FILE, or --key-file - and "
                     "stdin")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
               name: str) -> None:
    parser = subparsers.add_parser(name, help=COMMANDS[name][1], description=NEEDS,
                                   allow_abbrev=False)  # `--key X` must not be --key-file X
    parser.add_argument("--key", "--central-key", nargs="?", action=_RefuseKey,
                        help=argparse.SUPPRESS)
    parser.add_argument("--gateway-id", help="this gateway's id at the central "
                                             "(kept from an existing config when left out)")
    parser.add_argument("--central", metavar="URL",
                        help="the central's base address, e.g. https://central.example")
    parser.add_argument("--key-file", metavar="FILE",
                        help="a file holding the central's key for this gateway; - for stdin")
    parser.add_argument("--http-listen", metavar="HOST:PORT",
                        help=f"/healthz, /metrics and the LAN page (default {DEFAULT_LISTEN}; "
                             "0.0.0.0:8181 for phones on the LAN)")
    parser.add_argument("--mqtt-port", type=int, help="the broker's port (default 1883)")
    parser.add_argument("--topic-root", help="gateway.topic_root (default mashang/v1)")
    parser.add_argument("--root", metavar="DIR",
                        help="write the same tree below DIR instead (no chown, no services)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every file and command it would touch, change nothing")
    parser.add_argument("--skip-doctor", action="store_true", help="no doctor at the end")
    parser.set_defaults(func=run_install)
