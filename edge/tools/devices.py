"""`mashang device add|remove|list|rotate|sync`: onboarding a device, as root on the gateway.

    mashang device add btn-0042 --role button --resident 张奶奶 --building B1 --room 302
    mashang device add shellybutton1-E8DB84AA1234 --role shelly-gen1 --resident … --qr
    mashang device rotate btn-0042          # a new password, printed once
    mashang device remove btn-0042          # its account, its ACL block, its registry entry
    mashang device list                     # local: the password file, the ACL, the queue
    mashang device sync                     # send what was queued for the central

`add` gives the device a broker account named with its id (`mosquitto_passwd -b`, a random
password printed once, or as a QR code with `--qr` for a Shelly's web page), appends its ACL
block for its role (rendered by edge/tools/broker_acl.py; a second `add` changes nothing),
makes Mosquitto reread both (SIGHUP to `--broker-pid-file`'s pid, else `systemctl reload
mosquitto` under systemd, else SIGHUP to `pidof mosquitto`), and registers a button with the
central's registry (`PUT /v1/registry/buttons/{id}`, the admin token): resident, building,
kind. A central out of reach (or no admin token here) does not stop the onboarding: the
registration waits in `{data_dir}/pending-registrations.json` and goes with the next
`mashang device` command or `mashang device sync`. The central relays the new registry to
its gateways, this one included, within seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from edge.config import ConfigError, GatewayConfig, load_config
from edge.tools.broker_accounts import (
    BROKER_ACL,
    BROKER_PASSWD,
    delete_account,
    new_password,
    passwd_users,
    set_password,
)
from edge.tools.broker_acl import (
    ROLES,
    SHIPPED_ACCOUNTS,
    AclError,
    account_role,
    acl_accounts,
    check_account_id,
    shipped_acl,
    with_account,
    without_account,
)
from edge.tools.system import ChangeError, System, broker_reload
from mashang.cli import COMMANDS
from mashang.files import atomic_write

__all__ = ["PENDING_FILE", "add_parser", "run_device"]

DEFAULT_CONFIG = "/etc/mashang/gateway.toml"
PENDING_FILE = "pending-registrations.json"
ADMIN_TOKEN_ENV = "MASHANG_ADMIN_TOKEN"
# Roles whose device is a button in the registry, and the kind the central is told.
BUTTON_KINDS = {"button": "button", "shelly-gen1": "shelly-gen1", "shelly-gen2": "shelly-gen2"}
DEVICE_ROLES = [role for role in ROLES if role != "gateway"]
PROTECTED = {account for _, account in SHIPPED_ACCOUNTS}

NEEDS = (
    "Needs: root (the broker's password file and ACL, /etc/mosquitto), or --root DIR, "
    "--passwd and --acl for other places; the gateway's config (--config, for the central's "
    "address and the data folder; not its key). Registering a button with the central needs "
    f"its admin token ({ADMIN_TOKEN_ENV}, or --admin-token-file); without it, or with the "
    "central out of reach, the registration is queued and sent by a later `mashang device` "
    "command. `list` reads local files only."
)


class Registrar:
    """The central's registry admin API, with a local queue for when it cannot be reached."""

    def __init__(self, config: GatewayConfig | None, queue_path: Path | None,
                 token: str | None, timeout: float, out: TextIO) -> None:
        self.config = config
        self.queue_path = queue_path
        self.token = token
        self.timeout = timeout
        self.out = out

    # -- the queue -------------------------------------------------------------------------

    def pending(self) -> list[dict[str, Any]]:
        if self.queue_path is None:
            return []
        try:
            document = json.loads(self.queue_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ChangeError(f"{self.queue_path} is damaged ({exc}): fix or remove it") from exc
        return [entry for entry in document if isinstance(entry, dict)] \
            if isinstance(document, list) else []

    def _save(self, entries: list[dict[str, Any]]) -> None:
        if self.queue_path is None:
            return
        if not entries and not self.queue_path.exists():
            return
        atomic_write(self.queue_path, json.dumps(entries, ensure_ascii=False, indent=1) + "\n",
                     mode=0o600)

    def queue(self, entry: dict[str, Any], why: str) -> None:
        if self.queue_path is None:
            raise ChangeError(f"cannot queue the registration ({why}): no gateway config to "
                              "find the data folder in")
        # The newest request for a device replaces an older one still waiting.
        entries = [e for e in self.pending() if e.get("device_id") != entry["device_id"]]
        entries.append({**entry, "queued_at": time.time(), "why": why})
        self._save(entries)
        print(f"  queued   registration of {entry['device_id']} ({why}); "
              "`mashang device sync` sends it", file=self.out)

    # -- the central -----------------------------------------------------------------------

    def _call(self, entry: dict[str, Any]) -> tuple[int | None, str]:
        """(HTTP status, reason) of one request; status None when the central is out of reach
        or there is no token to ask it with."""
        if self.config is None:
            return None, "no gateway config: the central's address is unknown"
        if not self.token:
            return None, f"no admin token ({ADMIN_TOKEN_ENV} or --admin-token-file)"
        base = self.config.central.base_url
        url = f"{base}/v1/registry/buttons/{urllib.parse.quote(entry['device_id'])}"
        body = json.dumps(entry["body"]).encode() if entry["op"] == "put" else None
        request = urllib.request.Request(url, data=body, method=entry["op"].upper(), headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        context = None
        if base.startswith("https"):
            from edge.sink.central import ssl_context

            context = ssl_context(self.config.central.ca_file)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,
                                        context=context) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                reason = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                reason = text[:200]
            return exc.code, str(reason)
        except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, f"the central at {base} is out of reach: {reason}"

    def send(self, entry: dict[str, Any]) -> bool:
        """Send one registration now, or queue it; False when the central refused it."""
        status, reason = self._call(entry)
        what = f"{entry['op'].upper()} {entry['device_id']}"
        if status is None or status >= 500 or status in (408, 429):
            self.queue(entry, reason if status is None else f"HTTP {status}: {reason}")
            return True
        if entry["op"] == "delete" and status == 404:
            print(f"  central  {entry['device_id']} was not in the registry", file=self.out)
            return True
        if status >= 300:
            print(f"  central  refused {what}: HTTP {status}: {reason}", file=self.out)
            return False
        try:
            version = json.loads(reason).get("version")
        except (ValueError, AttributeError):
            version = "?"
        done = "registered" if entry["op"] == "put" else "taken out of the registry"
        print(f"  central  {entry['device_id']} {done} (registry version {version}); the "
              "central relays it to its gateways", file=self.out)
        return True

    def sync(self) -> bool:
        """Send everything queued; what still cannot go stays. False when some was refused."""
        entries = self.pending()
        if not entries:
            return True
        if self.config is None or not self.token:
            print(f"  queued   {len(entries)} registration(s) still wait: no admin token here "
                  f"({ADMIN_TOKEN_ENV} or --admin-token-file)", file=self.out)
            return True
        print(f"  sync     {len(entries)} queued registration(s)", file=self.out)
        self._save([])
        refused = False
        for entry in entries:
            entry = {key: value for key, value in entry.items() if key in ("op", "device_id",
                                                                            "body")}
            refused |= not self.send(entry)
        return not refused


# -- the commands ---------------------------------------------------------------------------

def _system(args: argparse.Namespace, out: TextIO) -> System:
    return System(out=out, root=Path(args.root).resolve() if args.root else None)


def _files(args: argparse.Namespace, system: System) -> tuple[str, str]:
    """(password file, ACL file) as paths on the target (below --root when given)."""
    return args.passwd or BROKER_PASSWD, args.acl or BROKER_ACL


def _config(args: argparse.Namespace, system: System) -> GatewayConfig | None:
    path = Path(args.config) if args.config else system.path(DEFAULT_CONFIG)
    if args.config is None and not path.exists():
        return None
    return load_config(path)  # no key needed: nothing here signs as the gateway


def _registrar(args: argparse.Namespace, system: System, config: GatewayConfig | None,
               out: TextIO) -> Registrar:
    token = os.environ.get(ADMIN_TOKEN_ENV)
    if args.admin_token_file:
        try:
            token = Path(args.admin_token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ChangeError(f"--admin-token-file {args.admin_token_file}: "
                              f"{exc.strerror}") from exc
    queue_path = system.path(config.gateway.data_dir / PENDING_FILE) if config else None
    return Registrar(config, queue_path, token, args.timeout, out)


def _show_password(account: str, password: str, config: GatewayConfig | None, qr: bool,
                   out: TextIO) -> None:
    port = config.mqtt.port if config else 1883
    print(f"\n  MQTT user     {account}\n  MQTT password {password}\n"
          f"  broker        this gateway's LAN address, port {port}\n"
          "  (shown once: it is kept only as a hash; `mashang device rotate` makes a new one)",
          file=out)
    if qr:
        import segno

        print("\n  the password as a QR code (scan it into the device's web page):", file=out)
        segno.make(password, error="m").terminal(out=out, compact=True)
    out.flush()


def _edit_acl(system: System, acl: str, change: Callable[[str], str], what: str) -> bool:
    data = system.read(acl)
    text = data.decode() if data is not None else shipped_acl()
    return system.write_file(acl, change(text), 0o644, "root", "root", what=what)


def cmd_add(args: argparse.Namespace, system: System, registrar: Registrar,
            config: GatewayConfig | None) -> int:
    account, role = args.device_id, args.role
    passwd, acl = _files(args, system)
    kind = BUTTON_KINDS.get(role)
    entry = None
    if kind is not None and not args.no_register:
        if not (args.resident and args.building):
            raise ChangeError(f"a {role} is registered with its resident: give --resident and "
                              "--building (or --no-register to register it at the central "
                              "yourself)")
        resident = {"name": args.resident, "building": args.building, "room": args.room,
                    "phone": args.phone, "household": args.household}
        body: dict[str, Any] = {"resident": {k: v for k, v in resident.items() if v},
                                "kind": kind}
        if args.supervision_hours:
            body["supervision_hours"] = args.supervision_hours
        entry = {"op": "put", "device_id": args.registry_id or account, "body": body}
    data = system.read(acl)
    present = account_role(data.decode(), account) if data is not None else None
    if present not in (None, "", role):
        raise ChangeError(f"{account} is already a {present} in {acl}: `mashang device remove "
                          f"{account}` first to make it a {role}")
    print(f"mashang device add: {account} as {role}", file=system.out)
    # The registration first: a refusal (an unknown building) stops before the broker changes.
    if entry is not None and not registrar.send(entry):
        return 1
    topic_root = config.gateway.topic_root if config else "mashang/v1"
    changed = _edit_acl(system, acl, lambda text: with_account(
        text, role, account, topic_root=topic_root), f"{role} block for {account}")
    password = None
    if account in passwd_users(system, passwd):
        system.say("account", f"{account} in {passwd}",
                   "exists, password kept (`mashang device rotate` for a new one)")
    else:
        password = new_password()
        set_password(system, passwd, account, password)
        changed = True
    if changed:
        broker_reload(system, Path(args.broker_pid_file) if args.broker_pid_file else None)
    if password is not None:
        _show_password(account, password, config, args.qr, system.out)
    return 0


def cmd_remove(args: argparse.Namespace, system: System, registrar: Registrar,
               config: GatewayConfig | None) -> int:
    account = args.device_id
    if account in PROTECTED:
        raise ChangeError(f"{account} is a shipped account (the gateway's or the Zigbee2MQTT "
                          "bridge's): it stays")
    passwd, acl = _files(args, system)
    data = system.read(acl)
    role = account_role(data.decode(), account) if data is not None else None
    print(f"mashang device remove: {account}" + (f" ({role})" if role else ""), file=system.out)
    changed = delete_account(system, passwd, account)
    if not changed:
        system.say("account", f"{account} in {passwd}", "not there")
    changed |= _edit_acl(system, acl, lambda text: without_account(text, account),
                         f"without {account}'s block")
    if changed:
        broker_reload(system, Path(args.broker_pid_file) if args.broker_pid_file else None)
    # Only a button has an entry to take out (a block without a role comment may be one).
    if not args.keep_registry and (role in BUTTON_KINDS or not role):
        registrar.send({"op": "delete", "device_id": args.registry_id or account})
    return 0


def cmd_rotate(args: argparse.Namespace, system: System, registrar: Registrar,
               config: GatewayConfig | None) -> int:
    account = args.device_id
    passwd, _ = _files(args, system)
    if account not in passwd_users(system, passwd):
        raise ChangeError(f"no account {account} in {passwd}: `mashang device add` it")
    print(f"mashang device rotate: {account}", file=system.out)
    password = new_password()
    set_password(system, passwd, account, password)
    broker_reload(system, Path(args.broker_pid_file) if args.broker_pid_file else None)
    _show_password(account, password, config, args.qr, system.out)
    print("  its current connection stays until it reconnects; then only the new password "
          "works", file=system.out)
    return 0


def cmd_list(args: argparse.Namespace, system: System, registrar: Registrar,
             config: GatewayConfig | None) -> int:
    passwd, acl = _files(args, system)
    users = passwd_users(system, passwd)
    data = system.read(acl)
    blocks = acl_accounts(data.decode()) if data is not None else []
    pending = {str(entry.get("device_id")): entry for entry in registrar.pending()}
    rows = [(role or "(no role comment)", account) for role, account in blocks]
    rows += [("(no ACL block)", user) for user in sorted(users - {a for _, a in blocks})]
    print(f"{'account':<32} {'role':<18} {'password':<9} registration", file=system.out)
    for role, account in rows:
        waiting = pending.get(account)
        registration = f"queued ({waiting.get('op')}: {waiting.get('why')})" if waiting \
            else "-"
        print(f"{account:<32} {role:<18} {'yes' if account in users else 'NO':<9} "
              f"{registration}", file=system.out)
    for device_id in sorted(set(pending) - {account for _, account in rows}):
        print(f"{device_id:<32} {'':<18} {'':<9} queued ({pending[device_id].get('op')})",
              file=system.out)
    print(f"\n{len(rows)} accounts in {passwd} and {acl}; {len(pending)} registration(s) "
          "queued", file=system.out)
    return 0


def cmd_sync(args: argparse.Namespace, system: System, registrar: Registrar,
             config: GatewayConfig | None) -> int:
    if not registrar.pending():
        print("mashang device sync: nothing queued", file=system.out)
    return 0  # the queue was sent before this command ran (run_device)


COMMAND_FUNCS = {"add": cmd_add, "remove": cmd_remove, "rotate": cmd_rotate, "list": cmd_list,
                 "sync": cmd_sync}


def run_device(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    system = _system(args, out)
    if args.device_command != "list" and system.root is None and os.geteuid() != 0 \
            and not (args.passwd and args.acl):
        print("mashang device: run it as root (sudo), or give --root DIR or --passwd and --acl",
              file=sys.stderr)
        return 2
    try:
        if getattr(args, "device_id", None):
            check_account_id(args.device_id)
        config = _config(args, system)
        registrar = _registrar(args, system, config, out)
        synced = True
        if args.device_command != "list" and registrar.pending():
            synced = registrar.sync()  # every run first sends what earlier ones queued
        result = COMMAND_FUNCS[args.device_command](args, system, registrar, config)
        return result if synced else max(result, 1)
    except (ChangeError, AclError, ConfigError) as exc:
        print(f"mashang device: {exc}", file=sys.stderr)
        return 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
               name: str) -> None:
    parser = subparsers.add_parser(name, help=COMMANDS[name][1], description=NEEDS)
    actions = parser.add_subparsers(dest="device_command", required=True, metavar="ACTION")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", help=f"the gateway's TOML (default {DEFAULT_CONFIG})")
        sub.add_argument("--passwd", help=f"Mosquitto's password file (default {BROKER_PASSWD}; "
                                          "below --root when given)")
        sub.add_argument("--acl", help=f"Mosquitto's ACL file (default {BROKER_ACL})")
        sub.add_argument("--root", metavar="DIR",
                         help="the system's files are below DIR (a `mashang install --root` "
                              "tree); no broker is signalled but --broker-pid-file's")
        sub.add_argument("--broker-pid-file", metavar="FILE",
                         help="SIGHUP this pid to reload the broker (default: systemctl "
                              "reload mosquitto, else pidof mosquitto)")
        sub.add_argument("--admin-token-file", metavar="FILE",
                         help=f"the central's admin token (or {ADMIN_TOKEN_ENV})")
        sub.add_argument("--timeout", type=float, default=10.0,
                         help="seconds for the central to answer")
        sub.set_defaults(func=run_device)

    add = actions.add_parser("add", help="an account, its ACL block, its registration",
                             description=NEEDS)
    add.add_argument("device_id", help="its device id, which is its MQTT user name (a "
                                       "Shelly: its own id, e.g. shellybutton1-E8DB84AA1234)")
    add.add_argument("--role", required=True, choices=DEVICE_ROLES)
    add.add_argument("--resident", help="the resident's name (a button's registration)")
    add.add_argument("--building", help="the resident's building id in the registry")
    add.add_argument("--room")
    add.add_argument("--phone")
    add.add_argument("--household")
    add.add_argument("--supervision-hours", type=float,
                     help="silence before the button counts as offline (default 25)")
    add.add_argument("--registry-id", help="its device id in the registry, when that is not "
                                           "its account (a Shelly mapped in [adapters.devices])")
    add.add_argument("--no-register", action="store_true",
                     help="do not register it with the central")
    add.add_argument("--qr", action="store_true",
                     help="also show the password as a QR code (a Shelly's web setup)")
    common(add)

    remove = actions.add_parser("remove", help="its account, its ACL block, its registration",
                                description=NEEDS)
    remove.add_argument("device_id")
    remove.add_argument("--registry-id")
    remove.add_argument("--keep-registry", action="store_true",
                        help="leave its entry in the central's registry")
    common(remove)

    rotate = actions.add_parser("rotate", help="a new password for its account",
                                description=NEEDS)
    rotate.add_argument("device_id")
    rotate.add_argument("--qr", action="store_true")
    common(rotate)

    listing = actions.add_parser(
        "list", help="accounts, roles and queued registrations (local files only)",
        description="Needs: read access to the password file and ACL (and the data folder "
                    "for the queue). No key, no token, no network.")
    common(listing)
    sync = actions.add_parser("sync", help="send the registrations queued for the central",
                              description=NEEDS)
    common(sync)
