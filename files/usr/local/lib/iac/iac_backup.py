#!/usr/bin/python3
# Managed by this repo (files/usr/local/lib/iac/iac_backup.py). Do not edit on the host.
"""iac-backup: the host side of the backups declared in the repo's model (BackupsSection).

Reads one settings file written by the converge (``/etc/iac/backup.json``, no secrets). Secrets
(restic password, S3 keys, webhook) reach it only through the environment, which systemd loads
from root-only ``EnvironmentFile=`` files; the ``env-exec`` command applies the same files for an
operator's shell, with the parser below (never by sourcing them in a shell).

Commands (each a stage function below; exit 0 success, 1 failure, 2 stale/mismatch):
  dump          local dumps of every declared database + globals, validated, then pruned
  offsite NAME  restic backup of the local dumps (NAME=postgres) or of the system state
                (NAME=system_state), then forget --prune with the declared policy
  check NAME    restic check of a repository
  status        JSON: newest dump per database, newest snapshot per repository, units
  restore DB    the runbook's local-first restore, from local or offsite, newest or at a time
  drill         restore newest local and offsite dumps into scratch databases, compare rows
  alert UNIT    one message to the webhook about a failed unit (run by OnFailure=)
  counts        JSON: rows per table of every backed-up database (the disaster-recovery drill)
  stage-state DIR   the newest system-state snapshot of this host, restored into DIR (not over
                the live system): what a rebuild takes from it that the model does not declare
  snapshot ENGINE SOURCE DIR NAME   one validated, checksummed dump (a release's pre-migrate
                backup: ENGINE postgresql|sqlite, SOURCE the database name or file); prints its path
  pg-restore DB DUMP --role ROLE [--clean]   restore a dump into an existing database connected
                as ROLE (never a superuser): a release's restore after a failed migration
  sqlite-restore DUMP TARGET --owner USER   a dump put in place of an app's SQLite file, owned by
                USER, through a temporary file root creates exclusively (the release's restore)
  sqlite-counts PATH / sqlite-copy PATH   internal: run as an app's user by the commands above
  env-exec FILE -- CMD...   run CMD with FILE's variables (restic-system-state-env.sh)

Root never works on what an app can write as root: PostgreSQL content is restored and counted in
a session of the database's owner role (never a superuser session: ``SET ROLE`` under a superuser
can be undone by the app's own functions), SQLite files in an app's directory are read by the
app's own user, and a restored file reaches an app's directory only through a file created
exclusively by root and renamed into place.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SETTINGS = Path(os.environ.get("IAC_BACKUP_SETTINGS", "/etc/iac/backup.json"))
STAMP_FORMAT = "%Y%m%d_%H%M%S"
STAMP_RE = re.compile(r"_(\d{8}_\d{6})\.(dump|sqlite3|sql)$")
PSQL = ["runuser", "-u", "postgres", "--"]
LOCK_DIR = Path(os.environ.get("IAC_BACKUP_LOCK_DIR", "/run/iac"))
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


def load_settings(path: Path = SETTINGS) -> dict:
    return json.loads(path.read_text())


# ---- environment files ---------------------------------------------------------------------

def quote_env_value(value: str) -> str:
    """A value for a systemd EnvironmentFile= line: double-quoted, \\ and " and $ escaped.

    systemd unquotes and unescapes it and never expands anything; ``parse_env_file`` reads it back
    the same way."""
    if "\n" in value or "\0" in value:
        raise ValueError("environment values cannot contain a newline or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=value lines as systemd's EnvironmentFile= reads them (the subset this repo writes:
    comments, bare values, double- or single-quoted values with backslash escapes)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not a KEY=value line: {key[:40]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, body, chars, i = value[0], value[1:-1], [], 0
            while i < len(body):
                if body[i] == "\\" and i + 1 < len(body) and quote == '"':
                    chars.append(body[i + 1])
                    i += 2
                    continue
                chars.append(body[i])
                i += 1
            value = "".join(chars)
        out[key] = value
    return out


def env_with(path: str | None) -> dict[str, str]:
    """This process's environment plus an env file's variables (as systemd's EnvironmentFile= would)."""
    return {**os.environ, **(parse_env_file(Path(path).read_text()) if path else {})}


def env_exec(path: str, argv: list[str]) -> int:
    os.execvpe(argv[0], argv, env_with(path))
    return 127  # not reached


# ---- SQLite files an app can write -------------------------------------------------------------

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


def as_user(user: str, command: str, path: str) -> list[str]:
    """This engine's ``command PATH`` run as ``user`` (isolated Python, nothing from the user's
    environment or home)."""
    return ["runuser", "-u", user, "--", sys.executable, "-I", "-S", str(Path(__file__).resolve()), command, path]


def live_sqlite_counts(path: str, owner: str | None = None) -> dict[str, int]:
    """``sqlite_row_counts`` of a live file, counted by its app's user. What comes back is checked
    to be a JSON object of table names and integers (the app can change only its own numbers)."""
    user = sqlite_user(path, owner)
    if user is None:
        return sqlite_row_counts(path)
    out = must(as_user(user, "sqlite-counts", path), f"counting rows of {path} as {user}", cwd="/").stdout
    try:
        counts = json.loads(out)
    except json.JSONDecodeError as exc:
        raise BackupError(f"counting rows of {path} as {user}: not JSON ({exc})") from None
    if not isinstance(counts, dict) or not all(isinstance(k, str) and type(v) is int for k, v in counts.items()):
        raise BackupError(f"counting rows of {path} as {user}: not a table -> rows object")
    return counts


def install_file(src: Path, target: Path, owner: str, mode: int = 0o640) -> list[str]:
    """Put a copy of ``src`` at ``target`` (in a directory its app can write), owned by ``owner``.

    Nothing in that directory is followed: the copy is written into a file root creates there
    exclusively (``O_EXCL|O_NOFOLLOW``, relative to a descriptor of the directory), owned and
    moded through its descriptor, then renamed over ``target`` (a rename replaces a link planted
    there instead of following it). The old file's journal, WAL and shared-memory files are
    unlinked first (unlink removes a link, never its target): they would be replayed into the new
    file. Returns the names it unlinked."""
    try:
        pw = pwd.getpwnam(owner)
    except KeyError:
        raise BackupError(f"no user {owner!r} to own {target}") from None
    dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    tmp = ""
    try:
        for _ in range(20):
            tmp = f".{target.name}.restore-{os.urandom(6).hex()}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=dfd)
                break
            except FileExistsError:
                continue
        else:
            raise BackupError(f"cannot create a temporary file in {target.parent}")
        with open(src, "rb") as source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fchown(out.fileno(), pw.pw_uid, pw.pw_gid)
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        removed = []
        for suffix in SQLITE_SIDECARS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target.name + suffix, dir_fd=dfd)
                removed.append(target.name + suffix)
        os.rename(tmp, target.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        tmp = ""
        os.fsync(dfd)
        return removed
    finally:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        os.close(dfd)


# ---- local dumps ---------------------------------------------------------------------------

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


def require_mount(settings: dict) -> None:
    mount = settings["local"].get("mount")
    if mount and not os.path.ismount(mount):
        raise BackupError(f"{mount} is not a mount point (is the backup disk attached?); nothing was written")


def layout(settings: dict) -> dict[str, Path]:
    root = Path(settings["local"]["root"])
    return {"root": root, "db": root / "db", "globals": root / "globals", "logs": root / "logs"}


def ensure_dirs(settings: dict, databases: list[str]) -> None:
    """root:GROUP 2750: the group (postgres, which the admin is in) reads, app users do not."""
    gid = grp.getgrnam(settings["local"]["group"]).gr_gid
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
        must(["pg_restore", "--list", str(path)], f"pg_restore --list {path.name}")
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
            proc = subprocess.run([*PSQL, "pg_dump", "-Fc", source], stdout=out, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
        elif engine == "globals":
            proc = subprocess.run([*PSQL, "pg_dumpall", "--globals-only"], stdout=out, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
        else:
            user = sqlite_user(source, owner)
            if user is None:  # root's own file in root's own directory
                out.write(sqlite_copy(source))
                return
            proc = subprocess.run(as_user(user, "sqlite-copy", source), stdout=out, stderr=subprocess.PIPE,
                                  check=False, cwd="/")
    if proc.returncode != 0:
        raise BackupError(f"dump of {source or engine} failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")


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


def prune(settings: dict, now: float) -> list[Path]:
    """Delete what the declared retention no longer keeps; never the newest dump of a database."""
    local, paths = settings["local"], layout(settings)
    removed: list[Path] = []

    def remove(dumps: list[Path], keep_days: int) -> None:
        for p in expired(dumps, keep_days, now):
            for f in (p, p.with_name(p.name + ".sha256")):
                f.unlink(missing_ok=True)
                removed.append(f)

    for db in local["databases"]:
        remove([d.path for d in dumps_in(paths["db"] / db)[1:]], local["keep_dump_days"])
    remove([d.path for d in dumps_in(paths["globals"])[1:]], local["keep_globals_days"])
    remove([d.path for d in dumps_in(paths["root"] / "pre-restore")], local["keep_dump_days"])
    logs = sorted(paths["logs"].glob("*.log")) if paths["logs"].is_dir() else []
    for p in expired(logs, local["keep_log_days"], now):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def private_dir(path: Path) -> Path:
    """``path`` as a directory that only this process's user can write: created 0700 if missing,
    refused if it is a link, belongs to another user or is writable by group or others."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise BackupError(f"{path} must be a directory of uid {os.geteuid()} that no one else can write")
    return path


@contextlib.contextmanager
def locked(name: str):
    """One run at a time per kind: a second run waits for the first (never overlaps). The lock is
    in a root-only directory (``/run/iac``): no other user can create, replace or hold it."""
    fd = os.open(private_dir(LOCK_DIR) / f"iac-backup-{name}.lock",
                 os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def cmd_dump(settings: dict) -> int:
    local = settings["local"]
    with locked("dump"):
        require_mount(settings)  # before anything is created: nothing lands on the root filesystem
        dbs = local["databases"]
        ensure_dirs(settings, list(dbs))
        gid = grp.getgrnam(local["group"]).gr_gid
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

            jobs = [(db["engine"], db.get("path") or name, paths["db"] / name, name,
                     db.get("owner") if db["engine"] == "sqlite" else None) for name, db in dbs.items()]
            if local.get("globals"):
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


# ---- restic --------------------------------------------------------------------------------

def restic(args: list[str], env_file: str | None = None, **kw) -> subprocess.CompletedProcess:
    env = env_with(env_file)
    env.setdefault("RESTIC_CACHE_DIR", "/var/cache/restic")
    return run(["restic", *args], env=env, **kw)


def forget_args(target: dict) -> list[str]:
    keep = target["keep"]
    args = ["forget", "--tag", target["tag"], "--group-by", "host,tags", "--prune"]
    for period in ("hourly", "daily", "weekly", "monthly"):
        if keep.get(period):
            args += [f"--keep-{period}", str(keep[period])]
    return args


def write_inventory(directory: Path) -> None:
    """The runbook's inventory snapshot, regenerated before each system-state backup."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    commands = {
        "packages.txt": ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
        "enabled-services.txt": ["systemctl", "list-unit-files", "--state=enabled", "--no-legend", "--no-pager"],
        "mounts.txt": ["findmnt", "--real", "-l"],
        "nginx-T.txt": ["nginx", "-T"],
    }
    for name, cmd in commands.items():
        proc = run(cmd) if shutil.which(cmd[0]) else None
        text = (proc.stdout + proc.stderr) if proc else f"{cmd[0]} is not installed\n"
        (directory / name).write_text(text)
    (directory / "generated_at.txt").write_text(datetime.now(UTC).isoformat() + "\n")


def cmd_offsite(settings: dict, name: str, time_override: str | None = None) -> int:
    target = settings["offsite"].get(name)
    if not target:
        raise BackupError(f"no offsite repository '{name}' is declared on this host")
    with locked(f"offsite-{name}"):
        host = settings["host"]
        if name == "system_state":
            write_inventory(Path(target["inventory_dir"]))
            paths = ["--files-from", target["includes_file"], "--exclude-file", target["excludes_file"]]
        else:
            require_mount(settings)
            lay = layout(settings)
            paths = [str(lay["db"]), str(lay["globals"])] if settings["local"].get("globals") else [str(lay["db"])]
            paths = [p for p in paths if Path(p).is_dir()]
            if not paths:
                raise BackupError(f"no local dumps under {lay['root']} to send offsite")
        extra = ["--time", time_override] if time_override else []
        # a run that was killed (a host reboot, a cut operator session) leaves its lock in the
        # repository, and every later forget fails until someone removes it. This host is the
        # repository's only writer and holds the lock above: `unlock` removes only stale locks
        # (of processes gone on this host, or older than restic's limit), never a live one
        restic(["unlock"])
        proc = restic(["backup", "--tag", target["tag"], "--host", host, *extra, *paths])
        if proc.returncode != 0:
            raise BackupError(f"restic backup to {target['repository']} failed: "
                              f"{(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        log(f"restic backup ({target['tag']}): {(proc.stdout.strip().splitlines() or ['done'])[-1]}")
        forgot = restic(forget_args(target))
        if forgot.returncode != 0:
            raise BackupError(f"restic forget failed: {(forgot.stderr.strip().splitlines() or ['?'])[-1]}")
        policy = next((line for line in forgot.stdout.splitlines() if line.startswith("Applying Policy")), "")
        removed = sum(int(n) for n in re.findall(r"^remove (\d+) snapshots?", forgot.stdout, re.M))
        log(f"restic forget --prune: {policy}; removed {removed} snapshot(s)")
    return 0


MISSING_PATTERNS = ("Is there a repository at the following location?", "The specified key does not exist",
                    "The specified bucket does not exist", "NoSuchBucket")


def repo_state(env_file: str) -> str:
    """``exists``, ``missing`` (restic finds no repository there) or ``unreachable: why``."""
    try:
        proc = restic(["cat", "config"], env_file=env_file, timeout=90)
    except subprocess.TimeoutExpired:
        return "unreachable: no answer within 90 s"
    if proc.returncode == 0:
        return "exists"
    err = proc.stderr.strip()
    if any(p in err for p in MISSING_PATTERNS) and "wrong password" not in err:
        return "missing"
    return "unreachable: " + " ".join(err.splitlines()[-2:])[:300]


MARKERS = Path("/var/lib/iac/restic")


def repo_marker(env_file: str) -> tuple[Path, str]:
    """Where ensure-repo notes that the repository of this env file was opened, and the note:
    the env file's digest (another URL, password or key makes it check again)."""
    text = Path(env_file).read_text()
    url = parse_env_file(text).get("RESTIC_REPOSITORY", "")
    return MARKERS / hashlib.sha256(url.encode()).hexdigest()[:16], hashlib.sha256(text.encode()).hexdigest()


def repo_known(env_file: str) -> str:
    """``exists`` when ensure-repo opened this repository with exactly this env file before
    (no network, no key derivation: what a converged run asks), else ``unverified``."""
    with contextlib.suppress(OSError):
        marker, digest = repo_marker(env_file)
        if marker.read_text().strip() == digest:
            return "exists"
    return "unverified"


def ensure_repo(env_file: str) -> int:
    """Initialise the repository only when restic finds none; anything else is an error."""
    state = repo_state(env_file)
    if state == "missing":
        must(["restic", "init"], "restic init", env=env_with(env_file))
        log("restic repository initialised")
    elif state != "exists":
        raise BackupError(f"restic repository: {state} (it is not initialised while it cannot be read)")
    marker, digest = repo_marker(env_file)
    MARKERS.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest + "\n")
    return 0


def cmd_check(settings: dict, name: str) -> int:
    target = settings["offsite"][name]
    proc = restic(["check"])
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise BackupError(f"restic check of {target['repository']} failed: {proc.stderr.strip()[-300:]}")
    return 0


def latest_snapshot(target: dict) -> dict | None:
    proc = restic(["snapshots", "--json", "--tag", target["tag"]], env_file=target["env_file"], timeout=120)
    if proc.returncode != 0:
        raise BackupError((proc.stderr.strip().splitlines() or ["restic snapshots failed"])[-1])
    snaps = json.loads(proc.stdout or "[]") or []
    return max(snaps, key=lambda s: s["time"]) if snaps else None


# ---- status --------------------------------------------------------------------------------

def unit_state(unit: str) -> dict:
    props = "Result,ActiveState,ExecMainStatus,ExecMainExitTimestamp,UnitFileState"
    out = run(["systemctl", "show", "-p", props, f"{unit}.service"]).stdout
    timer = run(["systemctl", "show", "-p", "ActiveState,UnitFileState,LastTriggerUSec",
                 f"{unit}.timer"]).stdout
    svc = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    tmr = dict(line.split("=", 1) for line in timer.splitlines() if "=" in line)
    return {"unit": unit, "result": svc.get("Result"), "exit_status": svc.get("ExecMainStatus"),
            "last_run": svc.get("ExecMainExitTimestamp") or None,
            "timer_enabled": tmr.get("UnitFileState") == "enabled",
            "timer_active": tmr.get("ActiveState") == "active",
            "ok": svc.get("Result") == "success" and tmr.get("ActiveState") == "active"}


def elapse_interval(analyze_output: str) -> float | None:
    """Seconds between the first two elapses in `systemd-analyze calendar --iterations=2` output
    (the UTC lines when the host's zone is not UTC, else the elapse lines themselves)."""
    utc = re.findall(r"\(in UTC\): \w+ (\S+ \S+) UTC", analyze_output)
    local = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) \S+", analyze_output)
    times = utc if len(utc) >= 2 else local
    if len(times) < 2:
        return None
    a, b = (datetime.strptime(t, "%Y-%m-%d %H:%M:%S") for t in times[:2])
    return (b - a).total_seconds()


def schedule_seconds(expr: str) -> float:
    """Interval between the next two elapses of an OnCalendar= expression."""
    interval = elapse_interval(run(["systemd-analyze", "calendar", "--iterations=2", expr]).stdout)
    if interval is None:
        raise BackupError(f"cannot read the schedule {expr!r} with systemd-analyze calendar")
    return interval


def status(settings: dict, now: float | None = None) -> dict:
    """Everything `make backup-status` reports; ``stale`` is older than twice the schedule."""
    now = now or time.time()
    local, lay = settings["local"], layout(settings)
    limit = 2 * schedule_seconds(local["schedule"])
    mounted = not local.get("mount") or os.path.ismount(local["mount"])
    report: dict = {"host": settings["host"], "mount": local.get("mount"), "mounted": mounted,
                    "databases": {}, "repositories": {}, "units": {}}
    problems: list[str] = []
    if not mounted:
        problems.append(f"{local['mount']} is not mounted")
    names = list(local["databases"]) + (["globals"] if local.get("globals") else [])
    for name in names:
        dumps = dumps_in(lay["globals"] if name == "globals" else lay["db"] / name) if mounted else []
        entry: dict = {"newest": None}
        if dumps:
            d = dumps[0]
            age = now - d.path.stat().st_mtime
            entry = {"newest": str(d.path), "age_seconds": round(age), "size": d.path.stat().st_size,
                     "sha256_ok": checksum_ok(d), "count": len(dumps),
                     "stale": age > (limit if name != "globals" else max(limit, 86400 * 2))}
            if not entry["sha256_ok"]:
                problems.append(f"{name}: newest dump fails its sha256 check")
            if entry["stale"]:
                problems.append(f"{name}: newest dump is {age / 3600:.1f} h old")
        else:
            problems.append(f"{name}: no dump")
        report["databases"][name] = entry
    for name, target in settings["offsite"].items():
        entry = {"repository": target["repository"], "tag": target["tag"]}
        try:
            snap = latest_snapshot(target)
        except (BackupError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            entry["error"] = str(exc)
            problems.append(f"offsite {name}: {exc}")
        else:
            entry["newest"] = snap["time"] if snap else None
            if snap is None:
                problems.append(f"offsite {name}: no snapshot")
            else:
                taken = datetime.fromisoformat(re.sub(r"\.\d+", "", snap["time"]).replace("Z", "+00:00"))
                age = now - taken.timestamp()
                entry["age_seconds"] = round(age)
                if age > 2 * schedule_seconds(target["schedule"]):
                    problems.append(f"offsite {name}: newest snapshot is {age / 3600:.1f} h old")
        report["repositories"][name] = entry
    for unit in settings["units"]:
        st = unit_state(unit)
        report["units"][unit] = st
        if st["result"] not in ("success", None) or not st["timer_active"]:
            timer = "active" if st["timer_active"] else "INACTIVE"
            problems.append(f"unit {unit}: result {st['result']}, timer {timer}")
    report["problems"] = problems
    report["ok"] = not problems
    return report


# ---- alerts --------------------------------------------------------------------------------

def alert_message(host: str, unit: str, detail: str) -> str:
    return (f"Backup FAILED on {host}: {unit}. {detail}".strip()
            + f"\nSee: journalctl -u {unit} -n 50 --no-pager")[:1900]


def cmd_alert(settings: dict, unit: str) -> int:
    url = os.environ.get("IAC_ALERT_WEBHOOK_URL")
    if not url:
        log("no webhook configured (backups.alerts); the failure is in the journal only")
        return 0
    result = run(["systemctl", "show", "-p", "Result", "--value", unit]).stdout.strip()
    lines = run(["journalctl", "-u", unit, "-n", "200", "--no-pager", "-o", "cat"]).stdout.splitlines()
    reason = next((line for line in reversed(lines) if "[iac-backup]" in line), "")
    detail = f"Result: {result or 'failed'}. {reason.replace('[iac-backup] ', '')}"
    # no mention in a message (a unit or host name) can ever ping anyone
    body = json.dumps({"content": alert_message(settings["host"], unit, detail),
                       "allowed_mentions": {"parse": []}}).encode()
    import urllib.request  # only alerts need it: 17 ms saved on every start (drift checks)
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                          "User-Agent": "iac-backup"})
    with urllib.request.urlopen(req, timeout=15):
        pass
    log(f"alert sent for {unit}")
    return 0


# ---- restore -------------------------------------------------------------------------------

def pick_dump(dumps: list[Dump], at: datetime | None) -> Dump:
    """The newest dump, or the newest taken at or before ``at``."""
    for d in dumps:
        if at is None or d.stamp <= at:
            return d
    raise BackupError("no dump" + (f" taken at or before {at:%Y-%m-%d %H:%M:%S} UTC" if at else ""))


def parse_at(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", STAMP_FORMAT):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
    raise BackupError(f"AT={text!r}: give a UTC time like '2026-11-23 14:00:00'")


@contextlib.contextmanager
def offsite_dumps(settings: dict, db: str):
    """The db's dumps from the newest offsite snapshot, restored into a temporary directory."""
    target = settings["offsite"].get("postgres")
    if not target:
        raise BackupError("FROM=offsite: this host declares no offsite repository for its dumps")
    snap = latest_snapshot(target)
    if snap is None:
        raise BackupError(f"no snapshot in {target['repository']}")
    with tempfile.TemporaryDirectory(prefix="iac-restore-", dir="/var/tmp") as tmp:
        sub = layout(settings)["db"] / db
        must(["restic", "restore", snap["short_id"], "--target", tmp, "--include", str(sub)],
             "restic restore", env=env_with(target["env_file"]))
        yield dumps_in(Path(tmp + str(sub))), snap


def choose(settings: dict, db: str, source: str, at: datetime | None, stack: contextlib.ExitStack) -> Dump:
    if source == "offsite":
        dumps, _snap = stack.enter_context(offsite_dumps(settings, db))
    else:
        require_mount(settings)
        dumps = dumps_in(layout(settings)["db"] / db)
    dump = pick_dump(dumps, at)
    if not checksum_ok(dump):
        raise BackupError(f"{dump.path.name} does not match its .sha256: refusing to restore it")
    return dump


# ---- PostgreSQL as the database's owner --------------------------------------------------------

def psql_as(role: str, db: str, *args: str) -> list[str]:
    """psql in a session of ``role`` on ``db`` (run as the postgres system user, which the peer map
    lets connect as each owner role; no psqlrc; stop at the first error)."""
    return [*PSQL, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", role, "-d", db, *args]


def psql_script(role: str, database: str, script: str, what: str,
                variables: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``script`` (from stdin) as ``role`` on ``database``; names reach it only as psql
    variables, which it quotes itself (``:"name"`` an identifier, ``:'name'`` a literal)."""
    args = psql_as(role, database)
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    return must([*args, "-f", "-"], what, input=script, cwd="/")


def restore_role(db: str, info: dict) -> str:
    """The role whose session restores and counts ``db``: its owner; for a database the superuser
    owns, the one app role that writes into it (its tables are that role's). Never the superuser
    on content an app wrote: its functions (a CHECK constraint, a generated column) run as the
    session, and ``SET ROLE``/``pg_restore --role`` under a superuser session can be reset by them."""
    owner, users = info["owner"], list(info.get("users") or [])
    if owner != SUPERUSER or not users:
        return owner
    if len(users) == 1:
        return users[0]
    raise BackupError(f"{db} is owned by {SUPERUSER} and written by several roles ({', '.join(users)}): "
                      "no single role can restore it without the superuser; restore it by hand")


GRANTS_SQL = """REVOKE CONNECT ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"owner";
"""
USER_GRANTS_SQL = """GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"{v}";
GRANT USAGE, CREATE ON SCHEMA public TO :"{v}";
"""


def grant_access(db: str, info: dict) -> None:
    """What the converge grants on a database (operations/postgres/deploy.py), on a new one: no CONNECT
    for PUBLIC, CONNECT for the owner, and for each app role that writes into another role's
    database CONNECT, TEMPORARY and CREATE in its public schema (run as the superuser: nothing
    from the dump is involved)."""
    users = list(info.get("users") or [])
    script = GRANTS_SQL + "".join(USER_GRANTS_SQL.format(v=f"u{i}") for i in range(len(users)))
    psql_script(SUPERUSER, db, script, f"grants on {db}",
                {"db": db, "owner": info["owner"], **{f"u{i}": u for i, u in enumerate(users)}})


def is_superuser(role: str) -> bool:
    """Whether ``role`` is a superuser (an unknown role is not)."""
    out = psql_script(SUPERUSER, "postgres", "select rolsuper from pg_catalog.pg_roles where rolname = :'role';\n",
                      f"looking up role {role}", {"role": role})
    return "t" in out.stdout.split()


def pg_restore_as(db: str, role: str, dump: Path, clean: bool = False) -> None:
    """Restore ``dump`` into ``db`` in a session of ``role`` (``--no-owner``: every object is
    ``role``'s). ``clean``: into a database that has the objects already, dropped and recreated
    in one transaction (a release's restore after a failed migration)."""
    args = [*PSQL, "pg_restore", "--exit-on-error", "--no-owner", "-U", role, "-d", db]
    if clean:
        args += ["--clean", "--if-exists", "--single-transaction"]
    with open(dump, "rb") as f:
        proc = subprocess.run(args, stdin=f, capture_output=True, check=False, cwd="/")
    if proc.returncode != 0:
        raise BackupError(f"pg_restore into {db} as {role} failed: "
                          f"{proc.stderr.decode(errors='replace').strip()[-300:]}")


def recreate_database(db: str, info: dict) -> None:
    """``db`` dropped (its sessions ended) and created again, empty, owned by its owner, with the
    converge's grants."""
    terminate = ("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                 "WHERE datname = :'db' AND pid <> pg_catalog.pg_backend_pid();\n")
    psql_script(SUPERUSER, "postgres", terminate, "terminating sessions", {"db": db})
    must([*PSQL, "dropdb", "--if-exists", db], f"dropdb {db}", cwd="/")
    must([*PSQL, "createdb", "-O", info["owner"], db], f"createdb {db}", cwd="/")
    grant_access(db, info)


def restore_postgres(db: str, info: dict, dump: Path) -> None:
    """The runbook's restore: the database recreated, then the dump restored as its owner."""
    role = restore_role(db, info)
    recreate_database(db, info)
    pg_restore_as(db, role, dump)


def cmd_pg_restore(db: str, dump: str, role: str, clean: bool) -> int:
    """``pg-restore``: a dump into an existing database, as ``role``, which must not be a superuser."""
    if is_superuser(role):
        raise BackupError(f"{role} is a superuser: a dump an app wrote is restored as the app's role")
    pg_restore_as(db, role, Path(dump), clean)
    log(f"restored {Path(dump).name} into {db} as {role}")
    return 0


def safety_dump(settings: dict, db: str, info: dict) -> Path | None:
    """The database as it is now, before a restore replaces it (kept under pre-restore/); none
    when the disk is not mounted, or an SQLite path holds no regular file (lost, or a link)."""
    if settings["local"].get("mount") and not os.path.ismount(settings["local"]["mount"]):
        return None
    if info["engine"] == "sqlite":
        try:
            regular = stat.S_ISREG(os.lstat(info["path"]).st_mode)
        except FileNotFoundError:
            regular = False
        if not regular:
            log(f"{info['path']} is not a regular file: there is no current copy to keep")
            return None
    directory = layout(settings)["root"] / "pre-restore"
    gid = grp.getgrnam(settings["local"]["group"]).gr_gid
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o2750)
    stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
    return dump_one(info["engine"], info.get("path") or db, directory, db, stamp, gid,
                    info.get("owner") if info["engine"] == "sqlite" else None)


def cmd_restore(settings: dict, db: str, source: str, at_text: str | None) -> int:
    dbs = settings["local"]["databases"]
    if db not in dbs:
        raise BackupError(f"DB={db!r} is not a backed-up database here; known: {', '.join(dbs)}")
    info, at = dbs[db], parse_at(at_text)
    units = [u for u, used in settings["app_units"].items() if db in used]
    with contextlib.ExitStack() as stack:
        dump = choose(settings, db, source, at, stack)
        if info["engine"] == "postgresql":
            restore_role(db, info)  # refused before anything is stopped
        log(f"restoring {db} from {source} dump {dump.path.name} (taken {dump.stamp:%Y-%m-%d %H:%M:%S} UTC)")
        safety = safety_dump(settings, db, info)
        if safety:
            log(f"the current {db} is kept in {safety}")
        for unit in units:
            log(f"stopping {unit}")
            must(["systemctl", "stop", unit], f"systemctl stop {unit}")
        try:
            if info["engine"] == "postgresql":
                restore_postgres(db, info, dump.path)
            else:
                removed = install_file(dump.path, Path(info["path"]), info["owner"])
                if removed:
                    log(f"removed the old file's {', '.join(removed)}")
        finally:
            for unit in units:
                log(f"starting {unit}")
                run(["systemctl", "start", unit])
    print(json.dumps({"database": db, "from": source, "dump": dump.path.name,
                      "taken": dump.stamp.isoformat(), "units": units}))
    return 0


# ---- drill ---------------------------------------------------------------------------------

COUNT_SQL = """select coalesce(pg_catalog.json_object_agg(t.name, t.n), '{}')
from (select pg_catalog.format('%I.%I', s.schemaname, s.relname) as name,
             (pg_catalog.xpath('/row/n/text()', pg_catalog.query_to_xml(pg_catalog.format(
                 'select pg_catalog.count(*) as n from %I.%I', s.schemaname, s.relname), false, true, '')))[1]
             ::text::bigint as n
      from pg_catalog.pg_stat_user_tables s) t"""


def pg_row_counts(db: str, role: str) -> dict[str, int]:
    """Rows per table of ``db``, counted in a session of ``role``: every name is quoted by the
    server (``format('%I')``), the result comes back as one JSON object."""
    out = must(psql_as(role, db, "-tA", "-c", "SET search_path = pg_catalog", "-c", COUNT_SQL),
               f"counting rows of {db} as {role}", cwd="/").stdout
    try:
        counts = json.loads(out.strip() or "{}")
    except json.JSONDecodeError as exc:
        raise BackupError(f"counting rows of {db}: not JSON ({exc})") from None
    if not isinstance(counts, dict):
        raise BackupError(f"counting rows of {db}: not a table -> rows object")
    return {str(name): int(n) for name, n in counts.items()}


def drill_one(db: str, info: dict, dump: Dump) -> dict:
    if not checksum_ok(dump):
        return {"dump": dump.path.name, "ok": False, "error": "sha256 mismatch"}
    if info["engine"] == "postgresql":
        role = restore_role(db, info)
        scratch = f"iac_drill_{db}"[:63]
        try:
            recreate_database(scratch, info)
            pg_restore_as(scratch, role, dump.path)
            restored, live = pg_row_counts(scratch, role), pg_row_counts(db, role)
        finally:
            run([*PSQL, "dropdb", "--if-exists", scratch], cwd="/")
    else:
        with tempfile.TemporaryDirectory(prefix="iac-drill-", dir="/var/tmp") as tmp:
            copy = Path(tmp) / "db.sqlite3"
            shutil.copyfile(dump.path, copy)
            restored = sqlite_row_counts(str(copy), immutable=True)
        live = live_sqlite_counts(info["path"], info.get("owner"))
    differing = {t: [restored.get(t), live.get(t)] for t in sorted(set(restored) | set(live))
                 if restored.get(t) != live.get(t)}
    return {"dump": dump.path.name, "taken": dump.stamp.isoformat(), "ok": True, "tables": len(restored),
            "rows": sum(restored.values()), "rows_equal": not differing, "differing": differing}


def cmd_drill(settings: dict) -> int:
    report: dict = {"host": settings["host"], "databases": {}, "system_state": None}
    failed = False
    dbs = settings["local"]["databases"]
    for db, info in dbs.items():
        entry: dict = {}
        with contextlib.ExitStack() as stack:
            for source in ["local"] + (["offsite"] if settings["offsite"].get("postgres") else []):
                started = time.monotonic()
                try:
                    entry[source] = drill_one(db, info, choose(settings, db, source, None, stack))
                except BackupError as exc:
                    entry[source] = {"ok": False, "error": str(exc)}
                entry[source]["seconds"] = round(time.monotonic() - started, 1)
                failed |= not (entry[source]["ok"] and entry[source].get("rows_equal"))
        report["databases"][db] = entry
    target = settings["offsite"].get("system_state")
    if target:
        with tempfile.TemporaryDirectory(prefix="iac-drill-state-", dir="/var/tmp") as tmp:
            env = env_with(target["env_file"])
            proc = run(["restic", "restore", "latest", "--tag", target["tag"], "--target", tmp], env=env)
            wanted = [p for p in target["includes"] if "*" not in p]
            missing = [p for p in wanted if not Path(tmp + p).exists()]
            report["system_state"] = {"ok": proc.returncode == 0 and not missing, "missing": missing,
                                      "error": proc.stderr.strip()[-300:] if proc.returncode else None}
            failed |= not report["system_state"]["ok"]
    report["ok"] = not failed
    print(json.dumps(report, indent=2))
    return 2 if failed else 0


def row_counts(settings: dict) -> dict[str, dict[str, int]]:
    """Rows per table of every backed-up database, each counted as its owner (``counts``)."""
    return {db: (pg_row_counts(db, restore_role(db, info)) if info["engine"] == "postgresql"
                 else live_sqlite_counts(info["path"], info.get("owner")))
            for db, info in settings["local"]["databases"].items()}


def stage_state(settings: dict, directory: str) -> int:
    """Restore the newest system-state snapshot of this host (by its declared name) into a
    staging directory, marked complete only when restic succeeded."""
    target = settings["offsite"].get("system_state")
    if not target:
        raise BackupError("no system-state repository is declared for this host")
    staging = Path(directory)
    if (staging / ".iac-complete").exists():
        log(f"system state already staged in {staging}")
        return 0
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o700)
    env = env_with(target["env_file"])
    must(["restic", "restore", "latest", "--tag", target["tag"], "--host", settings["host"],
          "--target", str(staging)], "restic restore of the system state", env=env)
    (staging / ".iac-complete").write_text(datetime.now(UTC).isoformat() + "\n")
    log(f"system state of {settings['host']} staged in {staging}")
    return 0


# ---- command line ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iac-backup", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("dump")
    for name in ("offsite", "check"):
        s = sub.add_parser(name)
        s.add_argument("target", choices=["postgres", "system_state"])
        if name == "offsite":
            s.add_argument("--time", help="snapshot time (tests of the forget policy)")
    sub.add_parser("status")
    r = sub.add_parser("restore")
    r.add_argument("database")
    r.add_argument("--from", dest="source", choices=["local", "offsite"], default="local")
    r.add_argument("--at")
    sub.add_parser("drill")
    a = sub.add_parser("alert")
    a.add_argument("unit")
    sub.add_parser("counts")
    sub.add_parser("stage-state").add_argument("directory")
    snap = sub.add_parser("snapshot")
    snap.add_argument("engine", choices=["postgresql", "sqlite"])
    snap.add_argument("source")
    snap.add_argument("directory")
    snap.add_argument("name")
    pgr = sub.add_parser("pg-restore")
    pgr.add_argument("database")
    pgr.add_argument("dump")
    pgr.add_argument("--role", required=True)
    pgr.add_argument("--clean", action="store_true")
    sqr = sub.add_parser("sqlite-restore")
    sqr.add_argument("dump")
    sqr.add_argument("target")
    sqr.add_argument("--owner", required=True)
    for name in ("sqlite-counts", "sqlite-copy"):
        sub.add_parser(name).add_argument("path")
    for name in ("repo-state", "ensure-repo"):
        sub.add_parser(name).add_argument("env_file")
    sub.add_parser("repo-known").add_argument("env_file")
    e = sub.add_parser("env-exec")
    e.add_argument("env_file")
    e.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        if args.cmd == "env-exec":
            cmdline = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not cmdline:
                raise BackupError("env-exec FILE -- COMMAND [ARGS...]")
            return env_exec(args.env_file, cmdline)
        if args.cmd == "repo-state":
            print(repo_state(args.env_file))
            return 0
        if args.cmd == "repo-known":
            print(repo_known(args.env_file))
            return 0
        if args.cmd == "ensure-repo":
            return ensure_repo(args.env_file)
        if args.cmd == "sqlite-counts":
            print(json.dumps(sqlite_row_counts(args.path)))
            return 0
        if args.cmd == "sqlite-copy":
            sys.stdout.buffer.write(sqlite_copy(args.path))
            return 0
        if args.cmd == "pg-restore":
            return cmd_pg_restore(args.database, args.dump, args.role, args.clean)
        if args.cmd == "sqlite-restore":
            removed = install_file(Path(args.dump), Path(args.target), args.owner)
            log(f"restored {Path(args.dump).name} to {args.target} (owner {args.owner}; removed: "
                f"{', '.join(removed) or 'nothing'})")
            return 0
        if args.cmd == "snapshot":
            stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
            print(dump_one(args.engine, args.source, Path(args.directory), args.name, stamp, 0))
            return 0
        settings = load_settings()
        settings.setdefault("host", socket.gethostname())
        if args.cmd == "dump":
            return cmd_dump(settings)
        if args.cmd == "offsite":
            return cmd_offsite(settings, args.target, args.time)
        if args.cmd == "check":
            return cmd_check(settings, args.target)
        if args.cmd == "status":
            rep = status(settings)
            print(json.dumps(rep, indent=2))
            return 0 if rep["ok"] else 2
        if args.cmd == "restore":
            return cmd_restore(settings, args.database, args.source, args.at)
        if args.cmd == "drill":
            return cmd_drill(settings)
        if args.cmd == "counts":
            print(json.dumps(row_counts(settings), indent=2))
            return 0
        if args.cmd == "stage-state":
            return stage_state(settings, args.directory)
        if args.cmd == "alert":
            return cmd_alert(settings, args.unit)
    except (BackupError, OSError, sqlite3.Error) as exc:
        log(f"ERROR: {exc}")
        return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
