"""Rotating code keys: the issuer's keyring goes into the central's registry, old keys kept."""

from __future__ import annotations

import subprocess

import pytest

from cloud_bridge.registry.file import RegistryFile
from lab.processes import mashang

pytestmark = pytest.mark.system


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(mashang(*args), capture_output=True, text=True, timeout=60)


def test_keyring_goes_into_the_registry_and_rotation_keeps_old_keys(tmp_path):
    keys, config = tmp_path / "keys", tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path / "central"}"\n')
    assert run("codes", "keygen", "--dir", str(keys)).returncode == 0
    assert run("registry", "keys", str(keys / "keyring.json"), "--config", str(config)
               ).returncode == 0
    registry = RegistryFile(tmp_path / "central" / "registry.json").load()
    assert set(registry.code_keys) == {1}
    assert run("codes", "keygen", "--dir", str(keys)).returncode == 0  # rotation: key 2
    assert run("registry", "keys", str(keys / "keyring.json"), "--config", str(config)
               ).returncode == 0
    rotated = RegistryFile(tmp_path / "central" / "registry.json").load()
    assert set(rotated.code_keys) == {1, 2}
    assert rotated.code_keys[1] == registry.code_keys[1]
    assert rotated.version == registry.version + 1


def test_a_bad_keyring_is_refused_with_its_name(tmp_path):
    config = tmp_path / "central.toml"
    config.write_text(f'[central]\ndata_dir = "{tmp_path / "central"}"\n')
    bad = tmp_path / "keyring.json"
    bad.write_text('{"keys": {"1": "not base64!"}}')
    result = run("registry", "keys", str(bad), "--config", str(config))
    assert result.returncode == 1
    assert "keyring.json" in result.stderr
