"""Running the engine's commands: errors the operator must see, the log, a failing step named.
"""

from __future__ import annotations

import re
import subprocess
import sys

STAMP_FORMAT = "%Y%m%d_%H%M%S"


STAMP_RE = re.compile(r"_(\d{8}_\d{6})\.(dump|sqlite3|sql)$")


PSQL = ["runuser", "-u", "postgres", "--"]


SUPERUSER = "postgres"  # the model's only superuser; every other owner is a declared login role


SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


class BackupError(Exception):
    """A failure the operator must see; the message says what and where."""


def log(msg: str) -> None:
    print(f"[iac-backup] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)


def must(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = run(cmd, **kw)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise BackupError(f"{what} failed (exit {proc.returncode}): {' | '.join(detail)}")
    return proc
