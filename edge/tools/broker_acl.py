"""The broker's access list (`deploy/mosquitto.acl`): one `user` block per account, by role.

This module is the single source of the ACL's shape. The shipped file is `shipped_acl()`
(tests/test_broker_acl_render.py fails when the two differ), a device's block is
`account_block(role, id)`, and `render_acl([(role, id), ...])` is a whole file.

Mosquitto applies a `pattern` line to every account whatever its role (with one, a scanner
named `gate-a` could publish `mashang/v1/buttons/gate-a/events`), so there are none: each
account gets `topic` lines under its own `user` line, and an account without a block may
connect and do nothing. Ids are checked before they go into a topic: no `+`, `#`, `/`,
whitespace or anything else outside the gateway's own device id pattern, so a crafted id
cannot widen a grant.

    python -m edge.tools.broker_acl button btn-0007 scanner gate-north   # blocks to append
    python -m edge.tools.broker_acl --shipped > deploy/mosquitto.acl      # the shipped file

An ACL file in use is edited with `with_account(text, role, id)` and `without_account(text,
id)`, both idempotent (`mashang device add|remove` and `mashang install` use them): one block
per account, each after its `# -- ROLE ID: ...` comment line, appended in the very shape
`render_acl(..., header=False)` gives, so a file edited this way is the file rendered whole.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Final, Literal, get_args

from edge.source.adapters.config import DEVICE_ID_PATTERN
from mashang.topics import SUBSCRIBED, feedback_topic, speaker_topic, subscriptions

__all__ = [
    "DEFAULT_TOPIC_ROOT",
    "EXAMPLE_ACCOUNTS",
    "GATEWAY_ACCOUNT",
    "ROLES",
    "SHELLY_GEN1_BASE",
    "SHIPPED_ACCOUNTS",
    "ZIGBEE2MQTT_ACCOUNT",
    "ZIGBEE2MQTT_BASE",
    "AclError",
    "Role",
    "account_block",
    "account_role",
    "acl_accounts",
    "check_account_id",
    "check_topic_root",
    "main",
    "render_acl",
    "shipped_acl",
    "with_account",
    "without_account",
]

Role = Literal["button", "scanner", "zigbee2mqtt", "shelly-gen1", "shelly-gen2", "gateway"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)

DEFAULT_TOPIC_ROOT: Final = "mashang/v1"
GATEWAY_ACCOUNT: Final = "mashang-gateway"
ZIGBEE2MQTT_ACCOUNT: Final = "zigbee2mqtt"
# The adapters' native topic bases (edge/source/adapters): Zigbee2MQTT's base_topic and
# Shelly Gen1's fixed prefix. A Shelly Gen2+ publishes under its own prefix, its id.
ZIGBEE2MQTT_BASE: Final = "zigbee2mqtt"
SHELLY_GEN1_BASE: Final = "shellies"

# The accounts of the shipped file, and the commented examples at its end.
SHIPPED_ACCOUNTS: Final[tuple[tuple[Role, str], ...]] = (
    ("gateway", GATEWAY_ACCOUNT),
    ("zigbee2mqtt", ZIGBEE2MQTT_ACCOUNT),
)
EXAMPLE_ACCOUNTS: Final[tuple[tuple[Role, str], ...]] = (
    ("button", "btn-0007"),
    ("scanner", "gate-north"),
    ("shelly-gen1", "shellybutton1-E8DB84AA1234"),
    ("shelly-gen2", "shellyplusi4-a8032ab12345"),
)

_ID: Final = re.compile(DEVICE_ID_PATTERN)
_LEVEL: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

_SUMMARY: Final[dict[Role, str]] = {
    "button": "publishes its presses and status, reads its own feedback",
    "scanner": "publishes its scans and status, reads its own feedback",
    "zigbee2mqtt": "the Zigbee2MQTT bridge, its native topics only",
    "shelly-gen1": "its native topics only",
    "shelly-gen2": "its native topics only, under its MQTT prefix (its id)",
    "gateway": "reads the device topics, writes only feedback and indicators' commands",
}


class AclError(ValueError):
    """A role, id or topic root that cannot go into the ACL."""


def check_account_id(account_id: str) -> str:
    """`account_id` if it is a valid device id (the gateway's pattern), else AclError."""
    # fullmatch: the pattern's `$` would also match before a trailing newline.
    if not isinstance(account_id, str) or not _ID.fullmatch(account_id):
        raise AclError(
            f"{account_id!r} is no valid account id: 1 to 128 of A-Z a-z 0-9 . _ - "
            "(no +, #, /, whitespace)"
        )
    return account_id


def check_topic_root(topic_root: str) -> str:
    """The topic root without a trailing slash, if every level is a plain name (no wildcards,
    no empty level) and it cannot overlap the adapters' native topics; else AclError."""
    root = topic_root.rstrip("/")
    levels = root.split("/")
    if not root or not all(_LEVEL.fullmatch(level) for level in levels):
        raise AclError(
            f"{topic_root!r} is no valid topic root: levels of A-Z a-z 0-9 . _ - "
            "separated by /"
        )
    if levels[0] in (ZIGBEE2MQTT_BASE, SHELLY_GEN1_BASE):
        raise AclError(f"topic root {topic_root!r} would lie among the adapters' native topics")
    return root


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise AclError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def _channels(kind: str) -> list[str]:
    """What a device of `kind` (`buttons`, `scanners`) publishes, from the gateway's own
    subscriptions (mashang.topics.SUBSCRIBED), so that the two cannot disagree."""
    return [channel for topic_kind, channel in SUBSCRIBED if topic_kind == kind]


def account_block(role: str, account_id: str, *, topic_root: str = DEFAULT_TOPIC_ROOT) -> str:
    """The ACL block of one account: its `user` line and its `topic` lines, nothing else.

    `account_id` is the account's user name: the device id for a button, a scanner or a
    Shelly (a Shelly Gen2+'s MQTT prefix must be its id), `mashang-gateway` and `zigbee2mqtt`
    by default for the gateway and the bridge.
    """
    role = _check_role(role)
    account = check_account_id(account_id)
    root = check_topic_root(topic_root)
    lines: list[str]
    if role in ("button", "scanner"):
        kind = f"{role}s"
        lines = [f"topic write {root}/{kind}/{account}/{channel}" for channel in _channels(kind)]
        lines.append(f"topic read {feedback_topic(root, role, account)}")
    elif role == "zigbee2mqtt":
        lines = [f"topic readwrite {ZIGBEE2MQTT_BASE}/#"]
    elif role == "shelly-gen1":
        lines = [f"topic readwrite {SHELLY_GEN1_BASE}/{account}/#"]
    elif role == "shelly-gen2":
        # <prefix>/# holds <prefix>/events/rpc, <prefix>/online, <prefix>/rpc, <prefix>/status/..
        # A prefix that is a first level of someone else's topics would take those over.
        taken = (root.split("/")[0], ZIGBEE2MQTT_BASE, SHELLY_GEN1_BASE)
        if account in taken:
            raise AclError(f"a Shelly Gen2+ prefix {account!r} would cover {account}/#, which "
                           "is not its own: give the device another MQTT prefix and account")
        lines = [f"topic readwrite {account}/#"]
    else:  # gateway
        lines = [f"topic read {topic}" for topic in subscriptions(root)]
        lines += [
            f"topic read {ZIGBEE2MQTT_BASE}/#",
            f"topic read {SHELLY_GEN1_BASE}/#",
            "topic read +/events/rpc",
            "topic read +/online",
            # Gen2 lights' and switches' state, for indicators (docs/indicators.md)
            "topic read +/status/+",
            f"topic write {feedback_topic(root, 'button', '+')}",
            f"topic write {feedback_topic(root, 'scanner', '+')}",
            # Indicators' commands: never a device's own topic, only what it obeys
            f"topic write {ZIGBEE2MQTT_BASE}/+/set",
            f"topic write {ZIGBEE2MQTT_BASE}/+/get",
            f"topic write {SHELLY_GEN1_BASE}/+/color/+/set",
            f"topic write {SHELLY_GEN1_BASE}/+/relay/+/command",
            f"topic write {SHELLY_GEN1_BASE}/+/command",
            "topic write +/rpc",
            "topic write +/command",
            f"topic write {speaker_topic(root, '+')}",
        ]
    return "\n".join([f"user {account}", *lines]) + "\n"


def _header(root: str) -> str:
    return f"""\
# Mosquitto ACL for a Mashang Edge gateway (码上): /etc/mosquitto/mashang.acl
#
# Rendered by edge/tools/broker_acl.py, the single source of this file's shape
# (tests/test_broker_acl_render.py checks that deploy/mosquitto.acl is what it renders).
#
# One account per device, named with its device id (mosquitto_passwd, see mosquitto.conf),
# and one `user` block per account granting exactly its role:
#   button        writes {root}/buttons/<id>/events and .../status, reads .../feedback
#   scanner       writes {root}/scanners/<id>/scans and .../status, reads .../feedback
#   zigbee2mqtt   reads and writes {ZIGBEE2MQTT_BASE}/# (the bridge's native topics), nothing else
#   shelly-gen1   reads and writes {SHELLY_GEN1_BASE}/<id>/#
#   shelly-gen2   reads and writes <id>/# (its MQTT prefix, which must be its id)
#   gateway       reads the device topics of all of these, writes only .../feedback and
#                 the indicators' commands (.../set, .../rpc, .../play: docs/indicators.md)
# There are no `pattern` lines: Mosquitto applies a pattern to every account whatever its
# role. An account without a block may connect and do nothing, and whatever is not granted
# here is refused (an MQTT 5 client sees "not authorized"; MQTT 3.1.1 has no way to say so,
# and the message is dropped). Anonymous clients cannot connect at all.
#
# Adding a device: `sudo mashang device add btn-0007 --role button …` makes its account,
# adds its block once and reloads the broker (`mashang device remove` takes both away). By
# hand: append its block as rendered (the id is checked: no +, #, / or spaces), then reload
# the broker. Never two blocks for one account: Mosquitto would merge them.
#   /opt/mashang/venv/bin/python -m edge.tools.broker_acl button btn-0007 \\
#       | sudo tee -a /etc/mosquitto/mashang.acl
#   sudo systemctl reload mosquitto
#
# Topic root: {root} (gateway.topic_root). If you change it there, render with --root.
"""


def render_acl(
    accounts: Iterable[tuple[str, str]],
    *,
    topic_root: str = DEFAULT_TOPIC_ROOT,
    header: bool = True,
) -> str:
    """An ACL file (or, without `header`, the blocks to append to one) for `accounts`, a list
    of (role, id), each block after a comment naming its role. Refuses an account twice."""
    root = check_topic_root(topic_root)
    parts = [_header(root)] if header else []
    seen: set[str] = set()
    for role, account_id in accounts:
        block = account_block(role, account_id, topic_root=root)
        if account_id in seen:
            raise AclError(f"account {account_id!r} twice: Mosquitto would merge its blocks")
        seen.add(account_id)
        parts.append(f"\n# -- {role} {account_id}: {_SUMMARY[_check_role(role)]}\n{block}")
    return "".join(parts)


def _commented(text: str) -> str:
    return "".join("#\n" if not line.strip() else line if line.startswith("#") else f"# {line}"
                   for line in text.splitlines(keepends=True))


def shipped_acl(*, topic_root: str = DEFAULT_TOPIC_ROOT) -> str:
    """`deploy/mosquitto.acl`: the gateway's and the bridge's blocks, then each device role's
    block as a commented example."""
    return (
        render_acl(SHIPPED_ACCOUNTS, topic_root=topic_root)
        + "\n# == Devices: one block each, appended as above. Examples (commented out):\n"
        + _commented(render_acl(EXAMPLE_ACCOUNTS, topic_root=topic_root, header=False))
    )


# -- editing an ACL file in place ------------------------------------------------------------

_USER_LINE: Final = re.compile(r"user (\S+)[ \t]*")
_COMMENT_LINE: Final = re.compile(r"# -- (\S+) (\S+):")


def _blocks(lines: list[str]) -> dict[str, tuple[int, int, str | None]]:
    """account → (first line, line after the block, role from its comment line or None), for
    every uncommented `user` block of an ACL file's lines."""
    found: dict[str, tuple[int, int, str | None]] = {}
    for index, line in enumerate(lines):
        match = _USER_LINE.fullmatch(line.rstrip("\n"))
        if not match:
            continue
        account, start, role = match.group(1), index, None
        if index and (comment := _COMMENT_LINE.match(lines[index - 1])) \
                and comment.group(2) == account:
            start, role = index - 1, comment.group(1)
        end = index + 1
        while end < len(lines) and lines[end].startswith("topic "):
            end += 1
        found[account] = (start, end, role)
    return found


def acl_accounts(text: str) -> list[tuple[str | None, str]]:
    """(role, account) of each `user` block in an ACL file, in file order; the role is the one
    its `# -- ROLE ID:` comment names, None for a block written by hand without one."""
    blocks = _blocks(text.splitlines(keepends=True))
    return [(role, account) for account, (_, _, role) in
            sorted(blocks.items(), key=lambda item: item[1][0])]


def account_role(text: str, account_id: str) -> str | None:
    """The role of `account_id`'s block in an ACL file ("" for a block without a role comment),
    None when the file has no block for it."""
    block = _blocks(text.splitlines(keepends=True)).get(account_id)
    return None if block is None else (block[2] or "")


def with_account(text: str, role: str, account_id: str, *,
                 topic_root: str = DEFAULT_TOPIC_ROOT) -> str:
    """The ACL file `text` with `account_id`'s block as `role` renders it: unchanged when it is
    there already, replaced when the account's block differs, else appended at the end."""
    entry = render_acl([(role, account_id)], topic_root=topic_root, header=False)
    lines = text.splitlines(keepends=True)
    block = _blocks(lines).get(account_id)
    if block is None:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + entry
    start, end, _ = block
    own = entry.removeprefix("\n")
    if "".join(lines[start:end]) == own:
        return text
    return "".join([*lines[:start], own, *lines[end:]])


def without_account(text: str, account_id: str) -> str:
    """The ACL file `text` without `account_id`'s block (and the blank line before it); the
    same text when there is none."""
    check_account_id(account_id)
    lines = text.splitlines(keepends=True)
    block = _blocks(lines).get(account_id)
    if block is None:
        return text
    start, end, _ = block
    if start and not lines[start - 1].strip():
        start -= 1
    return "".join([*lines[:start], *lines[end:]])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge.tools.broker_acl",
        description="Print Mosquitto ACL blocks for accounts, by role: "
                    f"{', '.join(ROLES)}.",
    )
    parser.add_argument("pairs", nargs="*", metavar="ROLE ID",
                        help="a role and an account id, as often as needed")
    parser.add_argument("--root", default=DEFAULT_TOPIC_ROOT,
                        help=f"the gateway's topic_root (default {DEFAULT_TOPIC_ROOT})")
    parser.add_argument("--header", action="store_true",
                        help="a whole file: the header before the blocks")
    parser.add_argument("--shipped", action="store_true",
                        help="the shipped deploy/mosquitto.acl (no ROLE ID)")
    args = parser.parse_args(argv)
    pairs: list[str] = args.pairs
    try:
        if args.shipped:
            if pairs:
                parser.error("--shipped takes no ROLE ID")
            sys.stdout.write(shipped_acl(topic_root=args.root))
            return 0
        if not pairs or len(pairs) % 2:
            parser.error("give ROLE ID pairs, e.g. `button btn-0007`")
        accounts = list(zip(pairs[::2], pairs[1::2], strict=True))
        sys.stdout.write(render_acl(accounts, topic_root=args.root, header=args.header))
    except AclError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
