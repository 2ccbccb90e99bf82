"""The backup engine's settings: the contract between the converge (operations/backups/deploy.py
``backup_settings`` builds them from the model) and the engine (reads them on the host,
/etc/iac/backup.json). Standard library only; an unknown, missing or mistyped key is refused
(engine_common/contract.py)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine_common import contract

SETTINGS = Path(os.environ.get("IAC_BACKUP_SETTINGS", "/etc/iac/backup.json"))


@dataclass(frozen=True)
class Database:
    """A database the local backups dump: PostgreSQL (by name; its owner role, and the app roles
    that write into it when the superuser owns it) or an app's SQLite file (by the app's name)."""

    engine: str  # "postgresql" | "sqlite"
    owner: str = ""
    path: str = ""  # SQLite only
    users: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Local:
    unit: str
    schedule: str
    mount: str | None
    root: str
    group: str
    databases: dict[str, Database]
    globals: bool
    keep_dump_days: int
    keep_globals_days: int
    keep_log_days: int


@dataclass(frozen=True)
class Keep:
    hourly: int
    daily: int
    weekly: int
    monthly: int


@dataclass(frozen=True)
class Offsite:
    """A restic repository: the local dumps (``postgres``) or the system state (``system_state``)."""

    repository: str
    tag: str
    env_file: str
    schedule: str
    keep: Keep
    includes_file: str = ""  # system state only
    excludes_file: str = ""
    inventory_dir: str = ""
    includes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BackupSettings:
    """Everything the backup engine reads: every path, name and number comes from the model."""

    host: str
    local: Local
    offsite: dict[str, Offsite]
    units: list[str]
    app_units: dict[str, list[str]]


def load_settings(path: Path = SETTINGS) -> BackupSettings:
    return contract.load(BackupSettings, json.loads(path.read_text()))
