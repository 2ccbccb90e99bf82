"""The last drift report of an inventory, kept on this machine (standard library only: cli/drift.py
imports it before its early start). `iac status` shows it per host."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iac" / "drift"


def record_path(inventory: str) -> Path:
    """Where the last report of ``inventory`` (by its absolute path) is kept."""
    name = str(Path(inventory).resolve()).strip("/").replace("/", "_")
    return cache_dir() / f"{name}.json"


def remember(inventory: str, report_json: str) -> None:
    """Keep a drift report (already redacted: it is what the command printed) as the last one; a
    cache that cannot be written is not an error of the check."""
    path = record_path(inventory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(report_json)
        tmp.replace(path)
    except OSError:
        pass
