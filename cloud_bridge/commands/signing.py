"""The central's command signing key (PROTOCOL §6): every command it serves carries an Ed25519
signature by it, so that a gateway holding the public key (`central.command_key` in its TOML)
trusts no command that was forged or changed on the way.

The key is `central.command_signing_key` when set (the same for every central process on one
database), else one made on first use and kept beside the database in `command.key` (mode
0600). `mashang central command-key --config FILE` prints the public key for installers.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_bridge.config import CentralConfig
from mashang.files import atomic_write

KEY_FILE = "command.key"


def command_signing_key(config: CentralConfig) -> Ed25519PrivateKey:
    configured = config.central.command_signing_key
    if configured is not None:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(configured.get_secret_value()))
    path: Path = config.central.data_dir / KEY_FILE
    if not path.exists():
        # Whole or not at all: a crash mid-write must not leave half a key to sign with.
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        atomic_write(path, seed.hex(), mode=0o600)
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip()))
    except ValueError as exc:
        raise ValueError(f"{path}: not an Ed25519 key in hex ({exc}); move it aside to make a "
                         "new one, and give the gateways its public key") from None
