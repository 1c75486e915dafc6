"""Changes an operator's command makes to the machine, made one way: files, folders, accounts,
commands; printed as they are made, or only printed (`--dry-run`), or made under another root
(`--root DIR`: the same tree below DIR, for the tests and for preparing an image).

Under `--root`, and when not run as root, nothing is chowned and no system user is created:
the owners each path would have are recorded (`owners`, written to DIR/install-owners.txt by
`mashang install`). Secrets are never printed, only where they go.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mashang.files import atomic_write

__all__ = ["ChangeError", "Owner", "System", "broker_reload", "systemd_running"]

MASKED = "********"


class ChangeError(Exception):
    """A change that cannot be made; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Owner:
    path: str  # as on the target system (without the --root prefix)
    kind: str  # "dir" or "file"
    mode: int
    user: str
    group: str

    def line(self) -> str:
        return f"{self.mode:04o} {self.user}:{self.group} {self.kind} {self.path}"


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


@dataclass
class System:
    out: TextIO
    root: Path | None = None
    dry_run: bool = False
    owners: list[Owner] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    # -- where -------------------------------------------------------------------------------

    def path(self, system_path: str | Path) -> Path:
        """Where `system_path` (absolute, as on the target) is on this machine."""
        text = str(system_path)
        return self.root / text.lstrip("/") if self.root is not None else Path(text)

    @property
    def real(self) -> bool:
        """Changes go to this machine's own system: not a --root tree, not a dry run."""
        return self.root is None and not self.dry_run

    @property
    def may_chown(self) -> bool:
        return self.root is None and os.geteuid() == 0

    def say(self, what: str, subject: str, detail: str = "") -> None:
        print(f"  {what:<8} {subject}" + (f"  {detail}" if detail else ""), file=self.out)
        self.out.flush()

    # -- accounts ----------------------------------------------------------------------------

    @staticmethod
    def user_exists(name: str) -> bool:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return False
        return True

    @staticmethod
    def group_exists(name: str) -> bool:
        try:
            grp.getgrnam(name)
        except KeyError:
            return False
        return True

    # -- folders and files -------------------------------------------------------------------

    def _own(self, target: Path, system_path: str, kind: str, mode: int, user: str,
             group: str) -> None:
        self.owners.append(Owner(system_path, kind, mode, user, group))
        if self.dry_run:
            return
        os.chmod(target, mode)
        if self.may_chown:
            if not self.group_exists(group):
                raise ChangeError(f"cannot give {system_path} to group {group!r}: no such "
                                   "group on this system")
            os.chown(target, pwd.getpwnam(user).pw_uid if self.user_exists(user) else -1,
                     grp.getgrnam(group).gr_gid)

    def ensure_dir(self, system_path: str, mode: int, user: str, group: str, *,
                   keep_mode: bool = False) -> None:
        """A folder with this mode and owner (`keep_mode`: only create it, else leave it)."""
        target = self.path(system_path)
        exists = target.is_dir()
        if exists and keep_mode:
            self.say("dir", system_path, "exists, kept as it is")
            self.owners.append(Owner(system_path, "dir", mode, user, group))  # as if made now
            return
        self.say("dir", system_path, f"{mode:04o} {user}:{group}  "
                                     f"{'exists' if exists else 'create'}")
        if not self.dry_run:
            target.mkdir(parents=True, exist_ok=True)
        if not exists:
            self.changed.append(system_path)
        self._own(target, system_path, "dir", mode, user, group)

    def read(self, system_path: str) -> bytes | None:
        try:
            return self.path(system_path).read_bytes()
        except FileNotFoundError:
            return None

    def write_file(self, system_path: str, content: str | bytes, mode: int, user: str,
                   group: str, *, what: str = "", backup: str | None = None) -> bool:
        """Put `content` at `system_path` (atomically, created with `mode`); True when it was
        created or changed. `backup`: a suffix to keep the previous content under, when it
        changes. `what` is printed instead of the content (never a secret)."""
        data = content.encode() if isinstance(content, str) else content
        target = self.path(system_path)
        old = self.read(system_path)
        state = "create" if old is None else "unchanged" if old == data else "update"
        note = f"{mode:04o} {user}:{group}  {state}" + (f" ({what})" if what else "")
        if state == "update" and backup:
            note += f", the previous one kept as {Path(system_path).name}{backup}"
        self.say("file", system_path, note)
        if state != "unchanged":
            self.changed.append(system_path)
            if not self.dry_run:
                if state == "update" and backup and old is not None:
                    atomic_write(target.with_name(target.name + backup), old, mode=0o600)
                atomic_write(target, data, mode=mode)
        if self.dry_run or target.exists():
            self._own(target, system_path, "file", mode, user, group)
        return state != "unchanged"

    def own_file(self, system_path: str, mode: int, user: str, group: str, *,
                 note: str = "written by the command above") -> None:
        """A file another program writes (mosquitto_passwd), or one left as it is: its mode
        and owner only."""
        target = self.path(system_path)
        self.say("file", system_path, f"{mode:04o} {user}:{group}  {note}")
        if self.dry_run:
            self.owners.append(Owner(system_path, "file", mode, user, group))
            return
        if target.exists():
            self._own(target, system_path, "file", mode, user, group)

    # -- commands ----------------------------------------------------------------------------

    def run(self, argv: Sequence[str], *, shown: Sequence[str] | None = None,
            env: dict[str, str] | None = None, user: str | None = None,
            check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str] | None:
        """Run `argv` (printing `shown` instead when it carries a secret); None in a dry run."""
        words = shlex.join(shown if shown is not None else argv)
        self.say("run", words, f"(as {user})" if user else "")
        if self.dry_run:
            return None
        # As another user: its own group and no supplementary groups of ours (root's).
        try:
            result = subprocess.run(list(argv), capture_output=capture, text=True, env=env,
                                    user=user, group=user, extra_groups=[] if user else None,
                                    check=False, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ChangeError(f"`{words}` could not run"
                              + (f" as {user}" if user else "") + f": {exc}") from exc
        if check and result.returncode != 0:
            detail = ((result.stderr or "") + (result.stdout or "")).strip()
            for secret in set(argv) - set(shown or argv):
                detail = detail.replace(secret, MASKED)
            raise ChangeError(f"`{words}` failed (exit {result.returncode}): {detail}")
        return result


def broker_reload(system: System, pid_file: Path | None) -> None:
    """Make Mosquitto reread its password file and ACL: SIGHUP to the pid in `pid_file`;
    else `systemctl reload mosquitto` under systemd; else SIGHUP to each `pidof mosquitto`.
    Under --root only an explicit pid file is signalled (the machine's brokers are not the
    tree's)."""
    if pid_file is not None:
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            raise ChangeError(f"--broker-pid-file {pid_file}: no pid in it ({exc})") from exc
        system.say("signal", f"SIGHUP to mosquitto, pid {pid} (from {pid_file})")
        if not system.dry_run:
            try:
                os.kill(pid, signal.SIGHUP)
            except OSError as exc:
                raise ChangeError(f"cannot signal mosquitto (pid {pid}): {exc.strerror}") from exc
        return
    if system.root is not None:
        system.say("skip", "reloading mosquitto", "(--root: give --broker-pid-file to signal one)")
        return
    if systemd_running():
        system.run(["systemctl", "reload", "mosquitto"])
        return
    found = subprocess.run(["pidof", "mosquitto"], capture_output=True, text=True, check=False)
    pids = [int(word) for word in found.stdout.split() if word.isdigit()]
    if not pids:
        system.say("skip", "reloading mosquitto", "(not running: it reads the files when it "
                                                  "starts)")
        return
    for pid in pids:
        system.say("signal", f"SIGHUP to mosquitto, pid {pid} (pidof mosquitto)")
        if not system.dry_run:
            os.kill(pid, signal.SIGHUP)
