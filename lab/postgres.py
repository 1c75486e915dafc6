"""A private PostgreSQL server for the tests and the benchmarks: Debian's binaries, a cluster
made by `initdb` in a folder of the caller's, started by `pg_ctl` on a free loopback port,
never the system's own server.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user that
Debian's package creates, its commands run as that user, and its folder is one of its own in
the system's temporary folder (the caller's may be closed to other users), removed at stop.
Trust authentication on loopback only: the server listens on 127.0.0.1, its socket in the
cluster's folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from lab.processes import free_port

SERVER_USER = "postgres"


def binaries() -> Path:
    """The newest installed PostgreSQL's bin folder (Debian puts them off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name))
    if not found:
        on_path = shutil.which("initdb")
        if on_path is None:
            raise RuntimeError("PostgreSQL is not installed: run ./scripts/setup")
        return Path(on_path).parent
    return found[-1].parent


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        self._as_root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="mashang-pg-")) if self._as_root else folder
        self.data = self.folder / "cluster"
        self.port = free_port()
        self._bin = binaries()
        self._databases = 0

    def _run(self, *argv: str) -> None:
        command = [str(self._bin / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            server = pwd.getpwnam(SERVER_USER)
            os.chown(self.folder, server.pw_uid, server.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "mashang", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port}"
                   f" -c unix_socket_directories={self.folder}"
                   " -c max_connections=300 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        if self._as_root:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, name: str = "postgres") -> str:
        return f"postgresql://mashang@127.0.0.1:{self.port}/{name}"

    def new_database(self, prefix: str = "central") -> str:
        """A fresh, empty database on this server; its URL."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def size(self, url: str) -> int:
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        assert row is not None
        return int(row[0])
