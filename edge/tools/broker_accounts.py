"""The broker's accounts: Mosquitto's password file, edited with `mosquitto_passwd -b`, and
the files' places on a Debian system (deploy/mosquitto.conf names them)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from edge.tools.system import ChangeError, System

__all__ = [
    "BROKER_ACL",
    "BROKER_CONF",
    "BROKER_PASSWD",
    "delete_account",
    "new_password",
    "own_passwd",
    "passwd_users",
    "set_password",
]

BROKER_CONF = "/etc/mosquitto/conf.d/mashang.conf"
BROKER_PASSWD = "/etc/mosquitto/passwd"
BROKER_ACL = "/etc/mosquitto/mashang.acl"
# Read by the broker (which drops to the `mosquitto` user), by nobody else.
PASSWD_MODE, PASSWD_USER, PASSWD_GROUP = 0o640, "root", "mosquitto"
SHOWN_PASSWORD = "<random password>"


def new_password() -> str:
    """24 characters of A-Z a-z 0-9 - _: easy to type into a Shelly's web page."""
    return secrets.token_urlsafe(18)


def passwd_users(system: System, passwd: str) -> set[str]:
    """The account names in the password file (none when there is no file yet)."""
    data = system.read(passwd)
    if data is None:
        return set()
    return {line.split(":", 1)[0] for line in data.decode(errors="replace").splitlines()
            if ":" in line and not line.startswith("#")}


def _tool() -> str:
    found = shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").exists() else None)
    if found is None:
        raise ChangeError("mosquitto_passwd is not installed: `sudo apt-get install -y "
                          "mosquitto` (it comes with the broker)")
    return found


def _group(system: System) -> str:
    # Debian's mosquitto package creates the group; a tree under --root records it as is.
    if not system.may_chown or system.group_exists(PASSWD_GROUP):
        return PASSWD_GROUP
    return "root"


def own_passwd(system: System, passwd: str, note: str) -> None:
    """The password file's mode and owner (root:mosquitto, 0640), as they are made."""
    system.own_file(passwd, PASSWD_MODE, PASSWD_USER, _group(system), note=note)


def set_password(system: System, passwd: str, account: str, password: str) -> None:
    """Add `account` to the password file, or give it a new password (`mosquitto_passwd -b`;
    `-c` creates the file when there is none)."""
    create = ["-c"] if system.read(passwd) is None else []
    tool = "mosquitto_passwd" if system.dry_run else _tool()
    target = str(system.path(passwd))
    system.run([tool, *create, "-b", target, account, password],
               shown=["mosquitto_passwd", *create, "-b", target, account, SHOWN_PASSWORD])
    system.own_file(passwd, PASSWD_MODE, PASSWD_USER, _group(system))


def delete_account(system: System, passwd: str, account: str) -> bool:
    """Take `account` out of the password file; False when it was not there."""
    if account not in passwd_users(system, passwd):
        return False
    tool = "mosquitto_passwd" if system.dry_run else _tool()
    target = str(system.path(passwd))
    system.run([tool, "-D", target, account], shown=["mosquitto_passwd", "-D", target, account])
    system.own_file(passwd, PASSWD_MODE, PASSWD_USER, _group(system))
    return True
