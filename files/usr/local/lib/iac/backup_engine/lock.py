"""One backup task of a kind at a time (a lock in root-only /run/iac).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from engine_common import locks
from engine_common.safefs import UnsafePath

from .proc import BackupError

LOCK_DIR = Path(os.environ.get("IAC_BACKUP_LOCK_DIR", "/run/iac"))


@contextlib.contextmanager
def locked(name: str):
    """One run at a time per kind: a second run waits for the first (never overlaps). The lock is
    in a root-only directory (``/run/iac``): no other user can create, replace or hold it."""
    try:
        lock = locks.locked(LOCK_DIR / f"iac-backup-{name}.lock")
        lock.__enter__()
    except UnsafePath as e:
        raise BackupError(str(e)) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)
