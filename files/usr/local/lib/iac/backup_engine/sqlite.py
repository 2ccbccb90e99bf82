"""SQLite files an app owns: read, copied and counted by the app's own user, never by root.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sqlite3
import sys
from pathlib import Path

from . import proc
from .proc import BackupError


def sqlite_uri(path: str, mode: str = "ro", immutable: bool = False) -> str:
    """A ``file:`` URI for ``path`` (``%``, ``?`` and ``#`` escaped) opened with ``mode``;
    ``immutable``: a copy nothing writes (no lock, no journal, WAL or shared-memory file)."""
    quoted = path.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    return f"file:{quoted}?mode={mode}" + ("&immutable=1" if immutable else "")


def quote_sqlite_ident(name: str) -> str:
    """An SQLite identifier in double quotes, each embedded double quote doubled."""
    return '"' + name.replace('"', '""') + '"'


def sqlite_open(path: str, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``, ``query_only``) that runs no function the file's schema
    names from a view, trigger or constraint (``trusted_schema`` off). ``immutable`` for a copy
    root made (a dump): nothing is created beside it, even for a file in WAL mode."""
    con = sqlite3.connect(sqlite_uri(path, immutable=immutable), uri=True, isolation_level=None)
    con.execute("PRAGMA trusted_schema = OFF")
    con.execute("PRAGMA query_only = ON")
    return con


def sqlite_row_counts(path: str, immutable: bool = False) -> dict[str, int]:
    """Rows per table of the SQLite file at ``path``: table names are read from the file and
    quoted as identifiers, never pasted into SQL (virtual tables are skipped: their rows live in
    their shadow tables, which are counted). ``immutable``: see ``sqlite_open``."""
    con = sqlite_open(path, immutable)
    try:
        names = [row[0] for row in con.execute(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite\\_%' escape '\\' "
            "and coalesce(sql, '') not like 'create virtual table%' order by name")]
        return {name: int(con.execute(f"select count(*) from {quote_sqlite_ident(name)}").fetchone()[0])
                for name in names}
    finally:
        con.close()


def sqlite_integrity(path: str) -> str:
    """``ok``, or what ``PRAGMA integrity_check`` (or opening the file) reports, for a dump."""
    try:
        con = sqlite_open(path, immutable=True)
        try:
            return "\n".join(str(row[0]) for row in con.execute("PRAGMA integrity_check"))
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"


def sqlite_copy(path: str) -> bytes:
    """A consistent copy of a live SQLite file (the online backup API honours the app's locks, its
    journal and its WAL), as the bytes of a database file. Run as the app's user: those files are
    the app's, and root never opens them (``sqlite_user``)."""
    src = sqlite3.connect(sqlite_uri(path, "rw"), uri=True)
    try:
        src.execute("PRAGMA trusted_schema = OFF")
        dst = sqlite3.connect(":memory:")
        src.backup(dst)
        return dst.serialize()
    finally:
        src.close()


def sqlite_user(path: str, owner: str | None = None) -> str | None:
    """Who reads a live SQLite file: the declared ``owner``, else the owner of the file's directory
    or of the file (only root can give either away); None when root owns both (root reads it)."""
    if owner:
        return owner
    for candidate in (os.path.dirname(os.path.abspath(path)), path):
        with contextlib.suppress(OSError):
            uid = os.lstat(candidate).st_uid
            if uid != 0:
                return pwd.getpwuid(uid).pw_name
    return None


# the file the engine runs from (the package is beside it)
LAUNCHER = Path(__file__).resolve().parent.parent / "iac_backup.py"


def as_user(user: str, command: str, path: str) -> list[str]:
    """This engine's ``command PATH`` run as ``user`` (isolated Python, nothing from the user's
    environment or home)."""
    return ["runuser", "-u", user, "--", sys.executable, "-I", "-S", str(LAUNCHER), command, path]


def live_sqlite_counts(path: str, owner: str | None = None) -> dict[str, int]:
    """``sqlite_row_counts`` of a live file, counted by its app's user. What comes back is checked
    to be a JSON object of table names and integers (the app can change only its own numbers)."""
    user = sqlite_user(path, owner)
    if user is None:
        return sqlite_row_counts(path)
    out = proc.must(as_user(user, "sqlite-counts", path), f"counting rows of {path} as {user}", cwd="/").stdout
    try:
        counts = json.loads(out)
    except json.JSONDecodeError as exc:
        raise BackupError(f"counting rows of {path} as {user}: not JSON ({exc})") from None
    if not isinstance(counts, dict) or not all(isinstance(k, str) and type(v) is int for k, v in counts.items()):
        raise BackupError(f"counting rows of {path} as {user}: not a table -> rows object")
    return counts
