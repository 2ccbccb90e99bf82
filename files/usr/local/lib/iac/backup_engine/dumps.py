"""Local dumps: written, validated, checksummed, published by a rename; pruned by the declared retention.
"""

from __future__ import annotations

import grp
import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import proc
from .lock import locked
from .proc import PSQL, STAMP_FORMAT, STAMP_RE, BackupError, log
from .settings import BackupSettings
from .sqlite import as_user, sqlite_copy, sqlite_integrity, sqlite_user


@dataclass(frozen=True)
class Dump:
    path: Path
    stamp: datetime

    @property
    def checksum_file(self) -> Path:
        return self.path.with_name(self.path.name + ".sha256")


def stamp_of(name: str) -> datetime | None:
    m = STAMP_RE.search(name)
    return datetime.strptime(m.group(1), STAMP_FORMAT).replace(tzinfo=UTC) if m else None


def dumps_in(directory: Path) -> list[Dump]:
    """Completed dumps in a directory (temporary files excluded), newest first."""
    found = []
    if directory.is_dir():
        for p in directory.iterdir():
            st = stamp_of(p.name)
            if st is not None and p.is_file():
                found.append(Dump(p, st))
    return sorted(found, key=lambda d: d.stamp, reverse=True)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksum_ok(dump: Dump) -> bool:
    """``sha256sum -c`` of the file written beside the dump."""
    try:
        want = dump.checksum_file.read_text().split()[0]
    except (OSError, IndexError):
        return False
    return want == sha256_of(dump.path)


def expired(paths: list[Path], keep_days: int, now: float) -> list[Path]:
    """Files whose modification time is more than ``keep_days`` days before ``now``."""
    limit = now - keep_days * 86400
    return [p for p in paths if p.stat().st_mtime < limit]


def require_mount(settings: BackupSettings) -> None:
    mount = settings.local.mount
    if mount and not os.path.ismount(mount):
        raise BackupError(f"{mount} is not a mount point (is the backup disk attached?); nothing was written")


def layout(settings: BackupSettings) -> dict[str, Path]:
    root = Path(settings.local.root)
    return {"root": root, "db": root / "db", "globals": root / "globals", "logs": root / "logs"}


def ensure_dirs(settings: BackupSettings, databases: list[str]) -> None:
    """root:GROUP 2750: the group (postgres, which the admin is in) reads, app users do not."""
    gid = grp.getgrnam(settings.local.group).gr_gid
    paths = layout(settings)
    for d in [paths["root"], paths["db"], paths["globals"], paths["logs"],
              *(paths["db"] / db for db in databases)]:
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, 0, gid)
        os.chmod(d, 0o2750)


def finish(tmp: Path, final: Path, gid: int) -> None:
    """Checksum beside the file, both 0640 root:GROUP, then the rename that publishes them."""
    digest = sha256_of(tmp)
    sumfile = final.with_name(final.name + ".sha256")
    sum_tmp = sumfile.with_name(sumfile.name + ".partial")
    sum_tmp.write_text(f"{digest}  {final.name}\n")
    for p in (tmp, sum_tmp):
        os.chown(p, 0, gid)
        os.chmod(p, 0o640)
    os.replace(tmp, final)
    os.replace(sum_tmp, sumfile)


def validate_dump(engine: str, path: Path) -> None:
    if path.stat().st_size == 0:
        raise BackupError(f"{path.name} is empty")
    if engine == "postgresql":
        proc.must(["pg_restore", "--list", str(path)], f"pg_restore --list {path.name}")
    elif engine == "sqlite":
        result = sqlite_integrity(str(path))
        if result != "ok":
            raise BackupError(f"integrity check of {path.name}: {result[:200]}")
    elif engine == "globals":
        head = path.read_text(errors="replace")[:4000]
        if "PostgreSQL database cluster dump" not in head:
            raise BackupError(f"{path.name} is not a pg_dumpall output")


def open_new(path: Path, mode: int = 0o600) -> int:
    """A file descriptor for writing ``path`` from its start, never through a symbolic link."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def write_dump(engine: str, source: str, tmp: Path, owner: str | None = None) -> None:
    """Dump one database into ``tmp`` (root-owned; the PostgreSQL tools run as postgres, an SQLite
    file is read by its app's user ``owner``, see ``sqlite_user``)."""
    with os.fdopen(open_new(tmp), "wb") as out:
        if engine == "postgresql":
            done = subprocess.run([*PSQL, "pg_dump", "-Fc", source], stdout=out, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
        elif engine == "globals":
            done = subprocess.run([*PSQL, "pg_dumpall", "--globals-only"], stdout=out, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
        else:
            user = sqlite_user(source, owner)
            if user is None:  # root's own file in root's own directory
                out.write(sqlite_copy(source))
                return
            done = subprocess.run(as_user(user, "sqlite-copy", source), stdout=out, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
    if done.returncode != 0:
        raise BackupError(f"dump of {source or engine} failed: {done.stderr.decode(errors='replace').strip()[-300:]}")


def dump_one(engine: str, source: str, directory: Path, name: str, stamp: str, gid: int,
             owner: str | None = None) -> Path:
    """Write, validate, checksum, publish. A failure leaves no file behind."""
    ext = {"postgresql": "dump", "sqlite": "sqlite3", "globals": "sql"}[engine]
    final = directory / f"{name}_{stamp}.{ext}"
    tmp = directory / f".{final.name}.partial"
    try:
        write_dump(engine, source, tmp, owner)
        validate_dump(engine, tmp)
        finish(tmp, final, gid)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def prune(settings: BackupSettings, now: float) -> list[Path]:
    """Delete what the declared retention no longer keeps; never the newest dump of a database."""
    local, paths = settings.local, layout(settings)
    removed: list[Path] = []

    def remove(dumps: list[Path], keep_days: int) -> None:
        for p in expired(dumps, keep_days, now):
            for f in (p, p.with_name(p.name + ".sha256")):
                f.unlink(missing_ok=True)
                removed.append(f)

    for db in local.databases:
        remove([d.path for d in dumps_in(paths["db"] / db)[1:]], local.keep_dump_days)
    remove([d.path for d in dumps_in(paths["globals"])[1:]], local.keep_globals_days)
    remove([d.path for d in dumps_in(paths["root"] / "pre-restore")], local.keep_dump_days)
    logs = sorted(paths["logs"].glob("*.log")) if paths["logs"].is_dir() else []
    for p in expired(logs, local.keep_log_days, now):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def cmd_dump(settings: BackupSettings) -> int:
    local = settings.local
    with locked("dump"):
        require_mount(settings)  # before anything is created: nothing lands on the root filesystem
        dbs = local.databases
        ensure_dirs(settings, list(dbs))
        gid = grp.getgrnam(local.group).gr_gid
        paths = layout(settings)
        stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
        logfile = paths["logs"] / f"pg_backup_{stamp}.log"
        failures: list[str] = []
        started = time.monotonic()
        with open(logfile, "a") as lf:
            os.fchown(lf.fileno(), 0, gid)
            os.fchmod(lf.fileno(), 0o640)

            def note(msg: str) -> None:
                lf.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {msg}\n")
                lf.flush()
                log(msg)

            jobs = [(db.engine, db.path or name, paths["db"] / name, name,
                     db.owner if db.engine == "sqlite" else None) for name, db in dbs.items()]
            if local.globals:
                jobs.append(("globals", "", paths["globals"], "globals", None))
            for engine, source, directory, name, owner in jobs:
                try:
                    out = dump_one(engine, source, directory, name, stamp, gid, owner)
                    note(f"ok {name}: {out.name} {out.stat().st_size} bytes, validated, sha256 written")
                except (BackupError, OSError) as exc:
                    failures.append(name)
                    note(f"FAILED {name}: {exc}")
            removed = prune(settings, time.time())
            note(f"pruned {len(removed)} file(s); {len(jobs) - len(failures)}/{len(jobs)} dumps in "
                 f"{time.monotonic() - started:.1f}s")
        if failures:
            raise BackupError(f"dumps failed: {', '.join(failures)} (log: {logfile})")
    return 0
