"""The database the central's configuration names: PostgreSQL at `central.database`, shared by
any number of central processes, else the SQLite file in its data folder."""

from __future__ import annotations

from cloud_bridge.config import CentralConfig
from cloud_bridge.receiver.store import Database, SQLiteDatabase


def open_database(config: CentralConfig) -> Database:
    if config.central.database is not None:
        from cloud_bridge.receiver.postgres import PostgresDatabase  # psycopg only where used

        return PostgresDatabase(config.central.database.get_secret_value())
    return SQLiteDatabase(config.database_path)
