"""edge/tools/broker_acl.py, the single source of the broker ACL's shape, and the shipped
deploy/mosquitto.acl, which must be exactly what it renders (tests/test_broker_acl.py attacks
the result on a real Mosquitto)."""

from __future__ import annotations

import re

import pytest

from edge.tools.broker_acl import (
    EXAMPLE_ACCOUNTS,
    ROLES,
    AclError,
    account_block,
    main,
    render_acl,
    shipped_acl,
)
from tests.helpers.secure_broker import SHIPPED_ACL

pytestmark = pytest.mark.unit


def uncommented_examples(text: str) -> str:
    """The shipped file's commented example blocks, as they would be uncommented."""
    return "".join(line[2:] + "\n" for line in text.splitlines()
                   if re.match(r"# (user|topic) ", line))


def test_the_shipped_file_is_what_the_renderer_renders():
    assert SHIPPED_ACL.read_text() == shipped_acl(), (
        "deploy/mosquitto.acl drifted from edge/tools/broker_acl.py: "
        "python -m edge.tools.broker_acl --shipped > deploy/mosquitto.acl")


def test_the_shipped_gateway_and_bridge_blocks_equal_the_rendered_ones():
    shipped = SHIPPED_ACL.read_text()
    live = [line for line in shipped.splitlines() if line and not line.startswith("#")]
    rendered = account_block("gateway", "mashang-gateway") + account_block(
        "zigbee2mqtt", "zigbee2mqtt")
    assert "\n".join(live) + "\n" == rendered
    assert not [line for line in live if line.startswith("pattern")]
    assert uncommented_examples(shipped) == "".join(
        account_block(role, account) for role, account in EXAMPLE_ACCOUNTS)
    assert {role for role, _ in EXAMPLE_ACCOUNTS} | {"gateway", "zigbee2mqtt"} == set(ROLES)


def test_each_role_gets_exactly_its_topics():
    assert account_block("button", "btn-0007") == (
        "user btn-0007\n"
        "topic write mashang/v1/buttons/btn-0007/events\n"
        "topic write mashang/v1/buttons/btn-0007/status\n"
        "topic read mashang/v1/buttons/btn-0007/feedback\n")
    assert account_block("scanner", "gate-north", topic_root="m/v2/") == (
        "user gate-north\n"
        "topic write m/v2/scanners/gate-north/scans\n"
        "topic write m/v2/scanners/gate-north/status\n"
        "topic read m/v2/scanners/gate-north/feedback\n")
    assert account_block("zigbee2mqtt", "z2m") == "user z2m\ntopic readwrite zigbee2mqtt/#\n"
    assert account_block("shelly-gen1", "shellybutton1-E8DB84AA1234") == (
        "user shellybutton1-E8DB84AA1234\n"
        "topic readwrite shellies/shellybutton1-E8DB84AA1234/#\n")
    assert account_block("shelly-gen2", "shellyplusi4-a8032ab12345") == (
        "user shellyplusi4-a8032ab12345\ntopic readwrite shellyplusi4-a8032ab12345/#\n")


def test_the_gateway_writes_only_feedback_and_indicators_commands():
    block = account_block("gateway", "mashang-gateway", topic_root="m/v2")
    writes = [line.split()[2] for line in block.splitlines() if line.startswith("topic write")]
    assert writes == [
        "m/v2/buttons/+/feedback", "m/v2/scanners/+/feedback",
        "zigbee2mqtt/+/set", "zigbee2mqtt/+/get", "shellies/+/color/+/set",
        "shellies/+/relay/+/command", "shellies/+/command", "+/rpc", "+/command",
        "m/v2/speakers/+/play",
    ]
    # None of them is a topic a device publishes on (PROTOCOL §1 and the adapters' topics).
    for topic in writes:
        assert not topic.endswith(("/events", "/status", "/scans", "/online", "/events/rpc"))
    assert "readwrite" not in block
    assert "topic read m/v2/buttons/+/events" in block.splitlines()


@pytest.mark.parametrize("bad", [
    "", "+", "#", "btn/7", "btn-7/#", "btn +", "btn 7", "btn\t7", "btn-7\n", "\nbtn-7",
    "a" * 129, "btn%u", "$SYS", "btn\x00", "btn-７",
])
def test_a_crafted_id_is_refused_in_every_role(bad):
    for role in ROLES:
        with pytest.raises(AclError):
            account_block(role, bad)


@pytest.mark.parametrize("prefix", ["mashang", "zigbee2mqtt", "shellies"])
def test_a_shelly_gen2_prefix_cannot_cover_others_topics(prefix):
    with pytest.raises(AclError, match="would cover"):
        account_block("shelly-gen2", prefix)
    assert account_block("button", prefix)  # a name fine for a button: its topics are its own


@pytest.mark.parametrize("root", ["", "/", "mashang/+", "mashang/#", "a//b", "mashang v1",
                                  "zigbee2mqtt/v1", "shellies"])
def test_a_bad_topic_root_is_refused(root):
    with pytest.raises(AclError):
        account_block("button", "btn-0007", topic_root=root)


def test_unknown_roles_and_twice_the_same_account_are_refused():
    with pytest.raises(AclError, match="unknown role"):
        account_block("admin", "root")
    with pytest.raises(AclError, match="twice"):
        render_acl([("button", "btn-1"), ("scanner", "btn-1")])
    with pytest.raises(AclError, match="twice"):
        render_acl([("gateway", "mashang-gateway"), ("button", "mashang-gateway")])


def test_render_acl_is_the_header_then_each_block_after_its_role():
    text = render_acl([("button", "btn-1"), ("scanner", "gate-1")], topic_root="m/v2")
    assert text.startswith("# Mosquitto ACL")
    assert "Topic root: m/v2 " in text
    assert text.endswith(
        "\n# -- button btn-1: publishes its presses and status, reads its own feedback\n"
        + account_block("button", "btn-1", topic_root="m/v2")
        + "\n# -- scanner gate-1: publishes its scans and status, reads its own feedback\n"
        + account_block("scanner", "gate-1", topic_root="m/v2"))
    assert render_acl([]) + render_acl([("button", "btn-1")], header=False) == render_acl(
        [("button", "btn-1")])


def test_the_command_line(capsys):
    assert main(["button", "btn-0007"]) == 0
    assert capsys.readouterr().out == render_acl([("button", "btn-0007")], header=False)
    assert main(["--shipped"]) == 0
    assert capsys.readouterr().out == shipped_acl()
    assert main(["button", "btn/#"]) == 2
    assert "no valid account id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["button"])
