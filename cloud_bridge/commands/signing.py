"""The central's command signing key (PROTOCOL §6): every command it serves carries an Ed25519
signature by it, so that a gateway holding the public key (`central.command_key` in its TOML)
trusts no command that was forged or changed on the way.

The key is `central.command_signing_key` when set, else one made on first use and kept as
`cloud_bridge.kept_secrets` says: beside the SQLite database in `command.key` (mode 0600), or
in the PostgreSQL database, the same for every central process on it. `mashang central
command-key --config FILE` prints the public key for installers.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_bridge.config import CentralConfig
from cloud_bridge.kept_secrets import kept_secret
from cloud_bridge.receiver.store import Database

KEY_FILE = "command.key"


def command_signing_key(config: CentralConfig, db: Database) -> Ed25519PrivateKey:
    configured = config.central.command_signing_key
    if configured is not None:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(configured.get_secret_value()))
    seed = kept_secret(db, config.central.data_dir, KEY_FILE,
                       lambda: Ed25519PrivateKey.generate().private_bytes_raw().hex())
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
    except ValueError as exc:
        where = db.shown if db.shared else config.central.data_dir / KEY_FILE
        raise ValueError(f"the command key kept in {where} is not an Ed25519 key in hex ({exc}):"
                         " remove it to make a new one, and give the gateways its public key"
                         ) from None
