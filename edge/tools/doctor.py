"""`mashang doctor --config FILE`: is this gateway set up to work, and if not, what to do.

Each check does the real thing, as the gateway would: an MQTT login and subscription at the
broker, a signed request to the central (a command poll with `wait=0`, signed the v1.1 way as
the downlink signs it: 200 with a valid key, 401 otherwise; the commands it brings are checked
against `central.command_key`), the central's clock from its `Date` header,
the free space under the data directory against the outbox's cap, and the registry and its
public keys as the gateway would load them. Every finding is printed with its fix. Exit code
0 only when nothing failed (warnings are printed, and pass).
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, TypedDict

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.buffer.outbox import OutboxError, check_outbox_file
from edge.config import CENTRAL_KEY_ENV, ConfigError, GatewayConfig, load_config
from edge.registry_store import RegistryStore
from edge.registry_store import describe as describe_registry_problem
from edge.sink.central import ssl_context
from edge.words import describe_os_error
from mashang.registry import Registry
from mashang.signing import (
    MAX_SKEW_SECONDS,
    Refusal,
    command_refusal,
    parse_public_key,
    signed_poll_headers,
)
from mashang.topics import subscriptions

if TYPE_CHECKING:
    # paho is imported only by the check that logs in at the broker.
    from paho.mqtt.client import Client, ConnectFlags
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

Status = Literal["ok", "warn", "fail"]

OUTBOX_FILE = "outbox.sqlite"  # as edge.gateway names them (not imported: it pulls in aiohttp)
REGISTRY_FILE = "registry.json"
CURSOR_FILE = "downlink.cursor"

SKEW_WARN = 5.0
SKEW_FAIL = 60.0
TIME_SYNC_FIX = ("turn on time synchronisation: `sudo timedatectl set-ntp true` "
                 "(systemd-timesyncd), then check with `timedatectl status`")


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str | None = None


def ok(check: str, detail: str) -> Finding:
    return Finding(check, "ok", detail)


def warn(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "warn", detail, fix)


def fail(check: str, detail: str, fix: str) -> Finding:
    return Finding(check, "fail", detail, fix)


# -- the broker -----------------------------------------------------------------------------

def check_broker(config: GatewayConfig, timeout: float) -> Iterator[Finding]:
    mqtt_config = config.mqtt
    where = f"{mqtt_config.host}:{mqtt_config.port}"
    try:
        with socket.create_connection((mqtt_config.host, mqtt_config.port), timeout=timeout):
            pass
    except OSError as exc:
        yield fail("broker", f"cannot reach the broker at {where}: {describe_os_error(exc)}",
                   "start Mosquitto (`sudo systemctl enable --now mosquitto`) and check "
                   "mqtt.host and mqtt.port; with deploy/mosquitto.conf (`mashang install`) it "
                   "listens on port 1883")
        return
    yield from mqtt_login(config, where, timeout)


class _LoginOutcome(TypedDict, total=False):
    """What the broker answered, filled in by paho's callbacks."""

    connect: ReasonCode
    subscribe: list[ReasonCode]


def mqtt_login(config: GatewayConfig, where: str, timeout: float) -> Iterator[Finding]:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    settings = config.mqtt
    user = settings.username or "anonymous"
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"mashang-doctor-{config.gateway.id}-{os.getpid()}",
                         protocol=mqtt.MQTTv5)
    client.connect_timeout = timeout
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.ca_file:
        try:
            client.tls_set(ca_certs=str(settings.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as exc:
            yield fail("broker", f"mqtt.ca_file {settings.ca_file} unusable: {exc}",
                       "point mqtt.ca_file at the PEM file of the CA that signed the broker's "
                       "certificate, readable by the gateway's user")
            return
    connected = threading.Event()
    subscribed = threading.Event()
    outcome: _LoginOutcome = {}

    def on_connect(client: Client, userdata: Any, flags: ConnectFlags, reason_code: ReasonCode,
                   properties: Properties | None) -> None:
        outcome["connect"] = reason_code
        connected.set()

    def on_subscribe(client: Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                     properties: Properties | None) -> None:
        outcome["subscribe"] = reason_codes
        subscribed.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        client.connect(settings.host, settings.port, keepalive=max(10, int(timeout * 2)))
    except ssl.SSLError as exc:
        yield fail("broker", f"TLS with {where} failed: {exc}",
                   "check mqtt.ca_file and that the broker's certificate names mqtt.host")
        return
    except OSError as exc:
        yield fail("broker", f"MQTT connection to {where} failed: {describe_os_error(exc)}",
                   "check mqtt.host, mqtt.port and whether the listener expects TLS")
        return
    client.loop_start()
    try:
        if not connected.wait(timeout):
            yield fail("broker", f"{where} accepts TCP but sent no MQTT answer in {timeout:.0f} s",
                       "is this port an MQTT listener? If it expects TLS, set mqtt.ca_file; "
                       "`sudo journalctl -u mosquitto` shows why it does not answer")
            return
        code = outcome["connect"]
        if code.is_failure:
            yield fail("broker", f"{where} refused the login as {user}: {code}",
                       login_fix(settings.username))
            return
        topics = gateway_topics(config)
        client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(timeout):
            yield fail("broker", f"logged in at {where} as {user}, but no answer to SUBSCRIBE",
                       "check the broker's log: `sudo journalctl -u mosquitto`")
            return
        refused = [topic for topic, reason in zip(topics, outcome["subscribe"], strict=False)
                   if reason.is_failure]
        if refused:
            yield fail("broker", f"logged in as {user}, but the broker refuses the "
                                 f"subscription to {', '.join(refused)}",
                       f"allow the user to read (and write feedback to) "
                       f"{config.gateway.topic_root}/# in the broker's ACL file, then "
                       "`sudo systemctl reload mosquitto`")
            return
        yield ok("broker", f"{where}: logged in as {user}, subscribed to the device topics")
    finally:
        client.disconnect()
        client.loop_stop()


def gateway_topics(config: GatewayConfig) -> list[str]:
    """The topics the gateway subscribes to: its own, and its device adapters' if any."""
    topics = subscriptions(config.gateway.topic_root)
    adapters = getattr(config, "adapters", None)
    if adapters is not None and getattr(adapters, "enabled", False):
        from edge.source.adapters import adapter_subscriptions

        topics += [topic for topic in adapter_subscriptions(adapters) if topic not in topics]
    return topics


def login_fix(username: str | None) -> str:
    if username:
        return ("set mqtt.username and mqtt.password to an account in the broker's password "
                "file (`sudo mosquitto_passwd /etc/mosquitto/passwd " + username + "`), then "
                "`sudo systemctl restart mosquitto`")
    return ("the broker wants a login: create one (`sudo mosquitto_passwd -c "
            "/etc/mosquitto/passwd mashang`) and set mqtt.username and mqtt.password")


# -- the central ----------------------------------------------------------------------------

def check_central(config: GatewayConfig, timeout: float) -> Iterator[Finding]:
    """Reachability, clock and key from one signed request, as the downlink makes it."""
    gateway_id = config.gateway.id
    base = config.central.base_url
    cursor = read_cursor(config.gateway.data_dir / CURSOR_FILE)
    query = urllib.parse.urlencode({"after": cursor, "wait": "0"})
    url = f"{base}/v1/gateways/{urllib.parse.quote(gateway_id)}/commands?{query}"
    try:
        key = config.central_key()
    except ConfigError as exc:
        # Not a reason to stop: the local checks after this one still run and report.
        yield fail("central key", f"{exc}: the central was not asked",
                   f"put {CENTRAL_KEY_ENV}=THE-KEY in /etc/mashang/gateway.env (`mashang "
                   "install --key-file FILE` writes it) and run the doctor with it: `sudo -u "
                   "mashang sh -c 'set -a; . /etc/mashang/gateway.env; exec mashang doctor "
                   "--config /etc/mashang/gateway.toml'`; or set central.key")
        return
    target = f"{urllib.parse.urlsplit(url).path}?{query}"
    request = urllib.request.Request(url, headers=signed_poll_headers(gateway_id, key, target))
    try:
        context = ssl_context(config.central.ca_file) if base.startswith("https") else None
    except (OSError, ssl.SSLError) as exc:
        yield fail("central", f"central.ca_file {config.central.ca_file} unusable: {exc}",
                   "point central.ca_file at the PEM file of the central's CA")
        return
    sent = time.time()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLError):
            yield fail("central", f"TLS with {base} failed: {reason}",
                       "if the central uses a private CA, set central.ca_file to its PEM file; "
                       "check that the certificate names the host in central.url")
        else:
            detail = describe_os_error(reason) if isinstance(reason, OSError) else str(reason)
            yield fail("central", f"cannot reach the central at {base}: {detail}",
                       "check central.url, this machine's network and DNS "
                       "(`curl -sI " + base + "`), and that the central is running")
        return
    except (TimeoutError, OSError) as exc:
        yield fail("central", f"cannot reach the central at {base}: {describe_os_error(exc)}",
                   "check central.url, the network, and that the central is running")
        return
    elapsed = time.time() - sent
    yield from judge_reply(config, base, status, headers.get("Date"), body, elapsed, sent)


def judge_reply(config: GatewayConfig, base: str, status: int, date: str | None, body: bytes,
                elapsed: float, sent: float) -> Iterator[Finding]:
    gateway_id = config.gateway.id
    if status >= 500:
        yield fail("central", f"{base} answered HTTP {status}: {excerpt(body)}",
                   "the central is up but failing: look at its log")
    elif status == 404:
        yield fail("central", f"{base} has no commands endpoint for {gateway_id} (HTTP 404)",
                   "central.url must be the central's base address, without /v1; check it")
    else:
        yield ok("central", f"{base} answered in {elapsed * 1000:.0f} ms")
    yield clock_finding(date, sent + elapsed / 2)
    reason = error_reason(body)
    refusal = refusal_of(body)
    if status == 200:
        try:
            page = json.loads(body)
            valid = isinstance(page, dict) and "cursor" in page and "commands" in page
        except ValueError:
            valid = False
        if valid:
            yield ok("central key", f"the central accepts our signature as {gateway_id}")
            yield command_key_finding(config, page["commands"])
        else:
            yield fail("central key", f"HTTP 200 but not a command page: {excerpt(body)}",
                       "is central.url the Mashang central, not some other web server?")
    elif status == 401 and refusal is Refusal.UNKNOWN_GATEWAY:
        yield fail("central key", f"the central does not know gateway {gateway_id!r}",
                   f"add `{gateway_id} = \"<key>\"` to [gateways] in the central's config, "
                   "or set gateway.id to the id the central has for this gateway")
    elif status == 401 and refusal in (Refusal.BAD_TIMESTAMP, Refusal.STALE_TIMESTAMP):
        yield fail("central key", f"the central refuses our clock: {reason}", TIME_SYNC_FIX)
    elif status == 401:
        yield fail("central key", f"the central refuses our key ({reason or 'HTTP 401'})",
                   f"set central.key (or {CENTRAL_KEY_ENV}) to the key the central holds for "
                   f"{gateway_id} under [gateways]; both sides must match exactly")
    elif status == 403:
        yield fail("central key", f"the central refuses gateway {gateway_id}: {reason}",
                   "gateway.id must be the id the key belongs to at the central")
    elif status < 500 and status != 404:
        yield fail("central key", f"unexpected HTTP {status}: {excerpt(body)}",
                   "check central.url and the central's version")


COMMAND_KEY_FIX = ("set central.command_key in the gateway's TOML to what `mashang central "
                   "command-key --config CENTRAL.toml` prints at the central, then restart the "
                   "gateway")


def command_key_finding(config: GatewayConfig, commands: list[Any]) -> Finding:
    """Whether the gateway can trust the central's commands (PROTOCOL §6), judged on those the
    poll brought, if any."""
    if config.central.command_key is None:
        return warn("command key", "central.command_key is not set: the gateway takes only "
                                   "feedback commands; registry updates and placard "
                                   "revocations from the central are refused", COMMAND_KEY_FIX)
    key = parse_public_key(config.central.command_key)  # the config's validation checked it
    refused = [reason for command in commands if isinstance(command, dict)
               and (reason := command_refusal(key, command)) is not None]
    if refused:
        return fail("command key", f"{len(refused)} of the central's {len(commands)} waiting "
                                   f"commands fail central.command_key ({refused[0]}): the "
                                   "gateway refuses them", COMMAND_KEY_FIX)
    checked = f"; the {len(commands)} waiting commands verify" if commands else ""
    return ok("command key", f"central.command_key is set{checked}")


def clock_finding(date: str | None, local: float) -> Finding:
    if not date:
        return warn("clock", "the central sent no Date header; the clock was not compared",
                    "compare this machine's time with the central's by hand (`date -u`)")
    try:
        theirs = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return warn("clock", f"unreadable Date header {date!r}", "compare the clocks by hand")
    skew = local - theirs
    # Date has whole seconds: a second of difference is rounding, not skew.
    words = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the central"
    if abs(skew) > SKEW_FAIL:
        limit = f"the central refuses requests more than {MAX_SKEW_SECONDS} s off"
        return fail("clock", f"this machine is {words} ({limit}; event times would be wrong)",
                    TIME_SYNC_FIX)
    if abs(skew) > SKEW_WARN:
        return warn("clock", f"this machine is {words}", TIME_SYNC_FIX)
    return ok("clock", f"within {max(abs(skew), 1):.0f} s of the central")


def error_reason(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return excerpt(body)
    if isinstance(document, dict) and isinstance(reason := document.get("error"), str):
        return reason
    return excerpt(body)


def refusal_of(body: bytes) -> Refusal | None:
    """Why the central refused our signature, by the stable code of its 401 answer."""
    try:
        code = json.loads(body).get("code")
        return Refusal(code)
    except (ValueError, AttributeError):
        return None


def excerpt(body: bytes) -> str:
    text = body[:200].decode("utf-8", errors="replace").strip()
    return text or "(empty body)"


def read_cursor(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


# -- the disk -------------------------------------------------------------------------------

def check_disk(config: GatewayConfig) -> Iterator[Finding]:
    data_dir = config.gateway.data_dir
    cap = config.outbox.max_bytes
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != data_dir:
        if not os.access(existing, os.W_OK):
            yield fail("data dir", f"{data_dir} does not exist and {existing} is not writable",
                       f"create it for the gateway's user: `sudo install -d -o mashang -g "
                       f"mashang {data_dir}` (systemd's StateDirectory=mashang does this for "
                       "/var/lib/mashang)")
            return
        yield warn("data dir", f"{data_dir} does not exist yet (the gateway creates it)",
                   "start the gateway once, or create it for the gateway's user")
    else:
        try:
            with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
                pass
        except OSError as exc:
            yield fail("data dir", f"cannot write in {data_dir}: {exc.strerror}",
                       f"run the doctor as the gateway's user (`sudo -u mashang mashang doctor "
                       f"…`), or `sudo chown -R mashang:mashang {data_dir}`")
            return
        yield ok("data dir", f"{data_dir} is writable")
    usage = shutil.disk_usage(existing)
    outbox = sum(
        path.stat().st_size
        for path in data_dir.glob(f"{OUTBOX_FILE}*") if path.is_file()
    ) if data_dir.exists() else 0
    room = usage.free + outbox
    # The WAL needs room beside the database while it checkpoints: ask for a tenth more.
    needed = int(cap * 1.1)
    detail = (f"{human(usage.free)} free on the disk of {data_dir}; the outbox holds "
              f"{human(outbox)} and may grow to {human(cap)} (outbox.max_bytes)")
    if room < cap:
        yield fail("disk", detail,
                   f"lower outbox.max_bytes to at most {max(room * 9 // 10, 64 * 1024):,}, or "
                   "free space (`sudo journalctl --vacuum-size=100M`, a bigger SD card)")
    elif room < needed:
        yield warn("disk", detail, "leave 10% more than outbox.max_bytes free for SQLite's WAL")
    else:
        yield ok("disk", detail)


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


# -- the outbox -----------------------------------------------------------------------------

OUTBOX_DAMAGED_FIX = (
    "restart the gateway (`sudo systemctl restart mashang-gateway`): at its start it moves the "
    "file with its -wal and -shm into outbox.damaged-<moment>/ beside it (kept), starts a fresh "
    "outbox and raises a critical gateway.outbox_replaced alert. The events in the damaged file "
    "are not sent and cannot be trusted; salvage what is readable by hand (docs/reliability.md)")


def check_outbox(config: GatewayConfig) -> Iterator[Finding]:
    """`PRAGMA quick_check`, as the gateway runs it at its start, read-only: nothing moved."""
    path = config.gateway.data_dir / OUTBOX_FILE
    if not path.exists():
        yield ok("outbox", f"no outbox at {path} yet (the gateway creates it)")
        return
    started = time.monotonic()
    try:
        problem = check_outbox_file(path)
    except OutboxError as exc:
        yield warn("outbox", f"not checked: {exc}",
                   "run the doctor as the gateway's user (`sudo -u mashang mashang doctor …`), "
                   "or again once the file is not busy")
        return
    if problem is not None:
        yield fail("outbox", f"damaged: {path} fails PRAGMA quick_check: {problem}",
                   OUTBOX_DAMAGED_FIX)
        return
    yield ok("outbox", f"{path} passes PRAGMA quick_check "
                       f"({human(path.stat().st_size)} in {time.monotonic() - started:.1f} s)")


# -- the registry ---------------------------------------------------------------------------

REGISTRY_FIX = ("import the registry at the central (`mashang registry import FILE` there); "
                "the gateway receives it with its first command poll and keeps it in {path}")


REGISTRY_DAMAGED_FIX = (
    "restart the gateway (`sudo systemctl restart mashang-gateway`): at its start it moves the "
    "file aside (registry.json.damaged-<moment>, kept), starts with no registry (every press "
    "an alert to the duty contact) and asks the central for a fresh copy, which arrives as "
    "soon as the central answers; or put back a good copy of the file while the gateway is "
    "stopped")


def check_registry(config: GatewayConfig) -> Iterator[Finding]:
    path = config.gateway.data_dir / REGISTRY_FILE
    if not path.exists():
        yield fail("registry", f"no registry at {path}: every button counts as unregistered",
                   REGISTRY_FIX.format(path=path))
        return
    try:
        registry = RegistryStore(path).load()  # the gateway's own load, which moves nothing
    except (ValueError, OSError) as exc:
        yield fail("registry", f"damaged: {path} {describe_registry_problem(exc)}",
                   REGISTRY_DAMAGED_FIX)
        return
    yield from registry_findings(registry, path)
    yield from key_findings(registry)


def registry_findings(registry: Registry, path: Path) -> Iterator[Finding]:
    summary = (f"version {registry.version}: {len(registry.buttons)} buttons, "
               f"{len(registry.buildings)} buildings, {len(registry.butlers)} butlers, "
               f"{len(registry.scanners)} scanners, {len(registry.stalls)} stalls")
    problems = []
    for button in registry.buttons:
        if registry.building(button.resident.building) is None:
            problems.append(f"button {button.device_id}: unknown building "
                            f"{button.resident.building!r}")
    for building in registry.buildings:
        if registry.butler(building.primary_butler) is None:
            problems.append(f"building {building.id}: unknown butler {building.primary_butler!r}")
    if problems:
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)"
                                           if len(problems) > 5 else "")
        yield warn("registry", f"{summary}; {shown}",
                   "correct the registry at the central and import it again: alerts from "
                   "these buttons name no butler")
    elif not registry.buttons:
        yield warn("registry", f"{summary}: no button registered yet",
                   "add the residents' buttons at the central (`mashang registry import`)")
    else:
        yield ok("registry", summary)


def key_findings(registry: Registry) -> Iterator[Finding]:
    needs_keys = bool(registry.stalls or registry.households or registry.scanners)
    if not registry.code_keys:
        detail = "no public keys for stall and household codes"
        fix = ("create a signing key at the central (`mashang codes keygen --dir KEYS`) and "
               "put its public key in the registry's code_keys")
        if needs_keys:
            yield fail("public keys", f"{detail}: every scan will be rejected", fix)
        else:
            yield warn("public keys", f"{detail} (no scanners or stalls yet)", fix)
        return
    bad = []
    for key_id, encoded in sorted(registry.code_keys.items()):
        try:
            raw = base64.b64decode(encoded, validate=True)
            if not 0 <= key_id <= 255:
                raise ValueError("key id outside 0-255")
            Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, TypeError) as exc:
            bad.append(f"key {key_id}: {exc}")
    if bad:
        yield fail("public keys", "; ".join(bad),
                   "replace these code_keys with the base64 of the 32-byte Ed25519 public key "
                   "(the keyring `mashang codes keygen` writes) and import the registry again")
    else:
        ids = ", ".join(str(key_id) for key_id in sorted(registry.code_keys))
        yield ok("public keys", f"{len(registry.code_keys)} valid (key ids {ids})")


# -- running --------------------------------------------------------------------------------

MARKS = {"ok": "  ok  ", "warn": " warn ", "fail": " FAIL "}


def report(finding: Finding, out: TextIO) -> None:
    print(f"[{MARKS[finding.status]}] {finding.check:<12} {finding.detail}", file=out)
    if finding.fix and finding.status != "ok":
        print(f"{'':22}fix: {finding.fix}", file=out)
    out.flush()


def checks(config: GatewayConfig, timeout: float) -> list[Callable[[], Iterator[Finding]]]:
    return [
        lambda: check_broker(config, timeout),
        lambda: check_central(config, timeout),
        lambda: check_disk(config),
        lambda: check_outbox(config),
        lambda: check_registry(config),
        lambda: check_zigbee2mqtt(config, timeout),
    ]


def run_doctor(config_path: Path, timeout: float = 5.0, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    print(f"mashang doctor: {config_path}", file=out)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        report(fail("config", str(exc), "correct the file; each problem names its key "
                                        "(see docs/install.md for a complete example)"), out)
        return 1
    report(ok("config", f"valid, gateway {config.gateway.id}"), out)
    findings: list[Finding] = []
    for check in checks(config, timeout):
        try:
            for finding in check():
                findings.append(finding)
                report(finding, out)
        except Exception as exc:  # a bug in one check must not hide the others' findings
            finding = fail("doctor", f"a check crashed: {type(exc).__name__}: {exc}",
                           "report this as a bug in mashang doctor")
            findings.append(finding)
            report(finding, out)
    failed = sum(1 for f in findings if f.status == "fail")
    warned = sum(1 for f in findings if f.status == "warn")
    verdict = "all checks pass" if not failed else f"{failed} failed"
    print(f"\n{verdict} ({len(findings) + 1} checks, {warned} warnings)", file=out)
    return 1 if failed else 0



# -- Zigbee2MQTT (register in checks(): `lambda: check_zigbee2mqtt(config, timeout)`) --------

def check_zigbee2mqtt(config: GatewayConfig, timeout: float) -> Iterator[Finding]:
    """Zigbee2MQTT's retained bridge/info and bridge/devices, as the gateway reads them: with
    an output mode that publishes no JSON every Zigbee press is lost; without the device list
    renamed buttons are not known by model. Says nothing when the adapter is off or the broker
    cannot be reached (the broker check says why)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.source.adapters.bridge import buttons_of, output_problem

    adapters, settings = config.adapters, config.mqtt
    if not (adapters.enabled and adapters.zigbee2mqtt):
        return
    base = adapters.zigbee2mqtt_base
    topics = {f"{base}/bridge/info": "info", f"{base}/bridge/devices": "devices"}
    found: dict[str, Any] = {}
    subscribed, complete = threading.Event(), threading.Event()

    def on_connect(client: Client, userdata: Any, flags: ConnectFlags, reason_code: ReasonCode,
                   properties: Properties | None) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in topics])

    def on_subscribe(client: Client, userdata: Any, mid: int, reason_codes: list[ReasonCode],
                     properties: Properties | None) -> None:
        subscribed.set()

    def on_message(client: Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            found[topics[message.topic]] = json.loads(message.payload)
        except (ValueError, RecursionError):
            found[topics[message.topic]] = None
        if len(found) == len(topics):
            complete.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"mashang-doctor-z2m-{config.gateway.id}-{os.getpid()}")
    client.connect_timeout = timeout
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_message = on_message
    try:
        if settings.ca_file:
            client.tls_set(ca_certs=str(settings.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        client.connect(settings.host, settings.port, keepalive=max(10, int(timeout * 2)))
    except (OSError, ssl.SSLError, ValueError):
        return
    client.loop_start()
    try:
        if not subscribed.wait(timeout):
            return
        complete.wait(min(timeout, 2.0))  # retained messages follow the subscription at once
    finally:
        client.disconnect()
        client.loop_stop()
    info, devices = found.get("info"), found.get("devices")
    if not isinstance(info, dict):
        yield warn("zigbee2mqtt", f"nothing readable retained at {base}/bridge/info: "
                                  "Zigbee2MQTT is not running, or not on this broker",
                   "start Zigbee2MQTT (`sudo systemctl start zigbee2mqtt`) and check its mqtt "
                   "settings; with no Zigbee buttons, set [adapters] zigbee2mqtt = false")
        return
    problem = output_problem(info)
    if problem is not None:
        yield fail("zigbee2mqtt", problem.reason,
                   "in Zigbee2MQTT's data/configuration.yaml set `advanced: output: json`, "
                   "then `sudo systemctl restart zigbee2mqtt`")
    elif not isinstance(devices, list):
        yield warn("zigbee2mqtt", f"nothing readable retained at {base}/bridge/devices: "
                                  "renamed buttons are not known by their model",
                   "the broker's max_packet_size must exceed the device list's size; "
                   "`sudo journalctl -u mosquitto` shows a refused packet")
    else:
        models = sorted({button.model for button in buttons_of(devices)})
        yield ok("zigbee2mqtt", "publishes JSON; known button models: "
                                + (", ".join(models) or "none"))
