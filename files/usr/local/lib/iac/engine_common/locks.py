"""One lock per engine task: a file in root-only /run/iac, never opened through a link."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from engine_common.safefs import root_dir


@contextmanager
def locked(path: Path):
    """One engine run at a time for an app: a lock file in a root-only directory (never opened
    through a link, never in a directory another user can write)."""
    root_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
