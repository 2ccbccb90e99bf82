"""The watch engine's settings: the contract between the converge (operations/watch/deploy.py
builds them from the model) and the engine (reads them from its settings file). Standard library
only; an unknown, missing or mistyped key is refused (engine_common/contract.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine_common import contract


@dataclass(frozen=True)
class WatchedCertificate:
    """A certificate nginx serves: its name and the chain file nginx reads."""

    name: str
    chain: str


@dataclass(frozen=True)
class WatchSettings:
    """What the watch checks on every run of its timer, and where it keeps what it already said."""

    host: str
    certificates: list[WatchedCertificate]
    cert_days: int  # a certificate with fewer days left alerts (once per serial)
    disks: list[str]  # mount points whose use is watched
    disk_percent: int  # a disk used above this alerts (once until it drops below)
    backup_engine: str  # the backup engine's launcher ("" : no backups declared on this host)
    state: str  # the alerts already sent (root-only JSON), so each condition is told once


def load_settings(path: Path) -> WatchSettings:
    """The settings file the converge wrote, checked key by key."""
    return contract.load(WatchSettings, json.loads(path.read_text()))
