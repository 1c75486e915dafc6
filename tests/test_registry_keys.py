"""Rotating code keys: the issuer's keyring goes into the central's registry, old keys kept."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cloud_bridge.config import CentralConfig
from cloud_bridge.registry.table import central_registry
from lab.processes import mashang
from mashang.config import load_config

pytestmark = [pytest.mark.system, pytest.mark.central]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(mashang(*args), capture_output=True, text=True, timeout=60)


def central_config(folder: Path, database: str | None) -> Path:
    """A central's configuration as the registry commands need it: its folder, its database."""
    config = folder / "central.toml"
    shared = f"database = {json.dumps(database)}\n" if database else ""
    config.write_text(f'[central]\ndata_dir = "{folder / "central"}"\n{shared}')
    return config


def test_keyring_goes_into_the_registry_and_rotation_keeps_old_keys(tmp_path, central_database):
    keys, config = tmp_path / "keys", central_config(tmp_path, central_database)
    assert run("codes", "keygen", "--dir", str(keys)).returncode == 0
    assert run("registry", "keys", str(keys / "keyring.json"), "--config", str(config)
               ).returncode == 0
    registry = central_registry(load_config(config, CentralConfig))
    assert set(registry.code_keys) == {1}
    assert run("codes", "keygen", "--dir", str(keys)).returncode == 0  # rotation: key 2
    assert run("registry", "keys", str(keys / "keyring.json"), "--config", str(config)
               ).returncode == 0
    rotated = central_registry(load_config(config, CentralConfig))
    assert set(rotated.code_keys) == {1, 2}
    assert rotated.code_keys[1] == registry.code_keys[1]
    assert rotated.version == registry.version + 1


def test_a_bad_keyring_is_refused_with_its_name(tmp_path, central_database):
    config = central_config(tmp_path, central_database)
    bad = tmp_path / "keyring.json"
    bad.write_text('{"keys": {"1": "not base64!"}}')
    result = run("registry", "keys", str(bad), "--config", str(config))
    assert result.returncode == 1
    assert "keyring.json" in result.stderr
