#!/usr/bin/python3
"""Release engine: make an app's declared revision live, or do nothing if it already is.

Managed by this repo (files/usr/local/lib/iac/iac_release.py). Runs on the host as root, with
only the standard library. It reads one settings file written from the model
(``/etc/iac/apps/<app>.release``, JSON; no secrets) and never sources anything with a shell:
manage.py steps run through ``systemd-run`` with the app's ``EnvironmentFile=``, exactly as its
gunicorn unit does.

Commands:
  release APP            make the declared revision live (iac-app-release APP)
  manage APP ARGS...     manage.py ARGS in the live release, as the app, with its env (iac-manage)
  rollback APP [--to COMMIT] [--from-backup]
                         switch to a kept release without rebuilding (the newest one live before
                         the current one, or the one whose commit starts with COMMIT): migrations
                         the older code does not know are reversed first, or the rollback is
                         refused naming the irreversible ones; --from-backup restores instead
                         the database backup taken before the current release migrated (rows
                         written since are lost; a safety backup is taken first)
  notify APP             post the message on stdin to the host's alert webhook (run by the engine
                         through systemd-run with the alert env file: the URL is a secret)
  verify APP             what differs in the live release from what went live: its files against
                         the manifest of hashes recorded then, its virtualenv's packages against
                         those installed when it was built; one line each, nothing when intact

Stages of a release, and why in this order:
  1. fetch    the declared revision over SSH with the app's deploy key (host key pinned)
  2. build    into <releases>/<commit>-<build key> (the build key hashes the settings a build
              depends on, so a settings change never rebuilds a live directory in place): code,
              virtualenv (shared by releases with the same requirements and extra
              requirements), front-end build (npm ci when the package files changed, npm run
              build when its declared inputs changed, else the outputs of the build with the
              same inputs), collectstatic (which must fill static_dir).
              Nothing live changes here: a failure leaves the old release serving.
  3. migrate  back up the database(s) (the backup engine's validated snapshot), migrate, then
              the declared release commands (manage.py compress, ...). A failure restores the
              backup and stops: the old release keeps serving the database as it was.
  4. switch   the stable links (app, venv) to the new release atomically, restart the unit and
              the app's process units, check the health path answers the declared status through
              nginx with the users' Host (on gunicorn's socket while the site does not exist yet).
              If not: switch back, restore the database, restart; a first
              release (nothing to go back to) leaves the units stopped and disabled.
  5. record   what is live in <state_dir>/deployed.json (read by the converge's facts), prune.

Trust: root never follows, opens, renames, removes or chowns a path an app user can create or
replace, and never trusts a record the app can write. The app's user owns its release
directories, virtualenvs, caches, home and state directory (it builds there); root's records of
what was built and what is live, with the manifests `verify` compares against, live in
<state_dir> (AppPaths.state_dir, root 0700), the lock in /run/iac (root 0700). Inside an
app-writable tree root reads only through file descriptors opened without following links
(os.fwalk, O_NOFOLLOW, never a FIFO or device), places files by an exclusive temporary name and a
rename, and removes only directories it checked are the app's (by owner and type, with
shutil.rmtree's descriptor-based walk); everything else there runs as the app user. Builds,
manage.py steps and the candidate gunicorn run as the app under the same systemd sandboxing as its
units (settings "sandboxing"), able to write only the release being built and the app's state.

A live release that `verify` finds damaged (a file edited, a package removed from its
virtualenv) is rebuilt beside the damaged one, which is moved aside until the rebuilt one is
live (and put back if the rebuild fails).

Exit codes: 0 live, 3 cannot fetch, 4 unknown revision, 5 migration (or data import) failed,
6 health check failed, 7 pip failed, 8 front-end build failed, 9 a release command failed,
10 collectstatic did not fill static_dir, 2 usage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SETTINGS_DIR = Path(os.environ.get("IAC_RELEASE_SETTINGS_DIR", "/etc/iac/apps"))
LOG_FILE = Path(os.environ.get("IAC_RELEASE_LOG", "/var/log/iac/releases.log"))
BACKUP_ENGINE = Path(__file__).resolve().parent / "iac_backup.py"
EXIT_FETCH, EXIT_REVISION, EXIT_MIGRATE, EXIT_HEALTH, EXIT_PIP, EXIT_FRONTEND = 3, 4, 5, 6, 7, 8
EXIT_COMMAND, EXIT_STATIC, EXIT_ROLLBACK = 9, 10, 11
# the stage each exit code names, in the alert and the log
STEPS = {EXIT_FETCH: "fetch", EXIT_REVISION: "fetch (unknown revision)", EXIT_MIGRATE: "migrate",
         EXIT_HEALTH: "health check", EXIT_PIP: "build (pip install)", EXIT_FRONTEND: "build (front end)",
         EXIT_COMMAND: "release command", EXIT_STATIC: "build (collectstatic)", EXIT_ROLLBACK: "rollback",
         1: "a system command"}
HISTORY_KEPT = 20
RELEASE_DIR_RE = re.compile(r"^[0-9a-f]{40}(-[0-9a-f]{12})?$")
# part of every build and virtualenv key: directories made before root kept its own records
# (their marks lived where the app could forge them) are never taken for built; they are pruned
RECORDS_VERSION = "root-records-2"


class ReleaseFailed(Exception):
    """A stage failed; ``code`` is the exit status, the message says what and what is live."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---- settings ----------------------------------------------------------------------------------


@dataclass
class Settings:
    """What the model declares for one app (written by operations/app/deploy.py)."""

    app: str
    user: str
    repo_url: str
    revision: str
    manage_dir: str
    env_file: str
    unit: str
    unit_file: str
    releases: Path
    state_dir: Path  # root's records: what is live, what was built, manifests (root 0700)
    lock_file: Path  # one engine run at a time per app (root-only /run/iac)
    key_path: str    # the deploy key (the app user's)
    known_hosts: str  # the git host's pinned key (root's file)
    app_link: Path
    venv_link: Path
    keep_releases: int
    backup_dir: Path
    db_engine: str
    sqlite_path: str = ""
    adopt_sqlite_from: str = ""
    pg_databases: list[str] = field(default_factory=list)
    pg_main_db: str = ""
    pg_owners: dict[str, str] = field(default_factory=dict)  # database -> owner role (restores run as it)
    import_sqlite_from: str = ""
    migrate_databases: list[str] = field(default_factory=lambda: ["default"])
    frontend_inputs: list[str] | None = None
    frontend_outputs: list[str] = field(default_factory=list)
    health_url: str = "http://localhost/healthz"
    health_status: int = 200
    health_socket: str = ""
    health_headers: list[str] = field(default_factory=list)
    nginx_site: str = ""  # the app's enabled nginx site: once it exists, the switch is checked through it
    nginx_health_url: str = ""  # the health path as users reach it (their Host, nginx's port)
    nginx_resolve: str = ""  # curl --resolve HOST:PORT:127.0.0.1, so the Host is the users' and nginx answers
    extra_requirements: list[str] = field(default_factory=list)
    static_dir: str = "staticfiles"
    static_root_env: str = "STATIC_ROOT"
    sqlite_env: list[str] = field(default_factory=lambda: ["USE_SQLITE", "SQLITE_PATH"])
    release_commands: list[list[str]] = field(default_factory=list)
    process_units: dict[str, str] = field(default_factory=dict)  # unit name -> unit file
    alert_env_file: str = ""  # EnvironmentFile= holding IAC_ALERT_WEBHOOK_URL ('' = no alerts)
    socket_unit: str = ""  # <unit>.socket, holding gunicorn's socket across restarts
    socket_unit_file: str = ""
    wsgi_app: str = ""
    gunicorn_config: str = ""
    timeout: int = 60
    sandboxing: list[str] = field(default_factory=list)  # the app units' confinement (Key=value lines)
    state_paths: list[str] = field(default_factory=list)  # what manage.py steps may write (state, logs)
    settings_file: Path = Path()

    @classmethod
    def load(cls, app: str, directory: Path = SETTINGS_DIR) -> Settings:
        path = directory / f"{app}.release"
        data = json.loads(path.read_text())
        for key in ("releases", "state_dir", "lock_file", "app_link", "venv_link", "backup_dir"):
            data[key] = Path(data[key])
        return cls(**data, settings_file=path)

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def git_ssh_command(self) -> str:
        return (f"ssh -i {self.key_path} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={self.known_hosts}")


# ---- small helpers -----------------------------------------------------------------------------


class Log:
    def __init__(self, app: str, path: Path | None = None) -> None:
        self.app, self.path = app, path or LOG_FILE

    def __call__(self, msg: str) -> None:
        print(f"[iac-app-release {self.app}] {msg}", file=sys.stderr, flush=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # root 0640: steps quote the app's errors (never secrets, but not everyone's business)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
            with os.fdopen(fd, "a") as f:
                if stat.S_IMODE(os.fstat(fd).st_mode) != 0o640:
                    os.fchmod(fd, 0o640)
                f.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.app}: {msg}\n")
        except OSError:
            pass


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, **kw)


def as_user(user: str, cmd: list[str]) -> list[str]:
    """``cmd`` as ``user`` with its home (git, pip, npm)."""
    return ["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", *cmd]


def confined(s: Settings, writable: list[str | Path], home_readable: bool = False) -> list[str]:
    """systemd-run properties that confine a transient unit of the app as its own units are
    (``sandboxing``, from the model's APP_SANDBOXING): only ``writable`` may be written. With
    ``home_readable`` the app's home is visible read-only (git reads the deploy key there)."""
    props = [p for line in s.sandboxing for p in ("-p", line)]
    if home_readable:
        props += ["-p", "ProtectHome=read-only"]
    for path in writable:
        props += ["-p", f"ReadWritePaths={path}"]
    return props


def as_app(s: Settings, cmd: list[str], writable: list[str | Path], cwd: Path | None = None,
           home_readable: bool = False, env: dict[str, str] | None = None) -> list[str]:
    """``cmd`` as the app user in a confined transient unit (a build step: git, pip, npm): it can
    write ``writable`` only, so a package's install script cannot reach outside the release being
    built. Its home is a private /tmp (caches vanish with the unit); files it makes are readable by
    nginx (static files), hence UMask=0022."""
    home = f"/home/{s.user}" if home_readable else "/tmp"
    return ["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "--service-type=exec",
            f"--uid={s.user}", f"--gid={s.user}", *confined(s, writable, home_readable), "-p", "UMask=0022",
            *(["-p", f"WorkingDirectory={cwd}"] if cwd else []), f"--setenv=HOME={home}",
            *(f"--setenv={k}={v}" for k, v in (env or {}).items()), "--", *cmd]


def with_app_env(s: Settings, cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
                 writable: list[str | Path] | None = None) -> list[str]:
    """``cmd`` as the app user with exactly its unit's environment: systemd reads the env file
    (``EnvironmentFile=``), so a secret holding $ ` # ; or quotes arrives as written; no shell
    ever sources it. Extra variables (STATIC_ROOT, a SQLite import's USE_SQLITE) go through
    env(1) inside the unit, so they win over the file's. Confined as the app's units are: it may
    write the app's state and log directories and ``writable`` (a release being built: what it
    writes there is served by nginx, hence UMask=0022 then)."""
    extra = [f"{k}={v}" for k, v in (extra_env or {}).items()]
    return ["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "--service-type=exec",
            f"--uid={s.user}", f"--gid={s.user}", *confined(s, [*s.state_paths, *(writable or [])]),
            *(["-p", "UMask=0022"] if writable else []),
            "-p", f"EnvironmentFile={s.env_file}", "-p", f"WorkingDirectory={cwd}",
            f"--setenv=HOME=/home/{s.user}", "--", *(["/usr/bin/env", *extra] if extra else []), *cmd]


def sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def short(commit: str) -> str:
    return commit[:12]


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


# ---- root's records, and paths an app can write ------------------------------------------------


class UnsafePath(ReleaseFailed):
    """A path root was about to act on is not what it must be (a link, someone else's): refused."""

    def __init__(self, path: Path | str, why: str) -> None:
        super().__init__(1, f"refusing to use {path}: {why} (planted by someone? nothing was done to it)")


def root_dir(path: Path, mode: int = 0o700) -> Path:
    """``path`` as a directory only root writes: made if missing, refused if it is a link, not a
    directory or not root's."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise UnsafePath(path, "not a directory of root's own")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
    return path


def read_record(path: Path) -> dict | None:
    """A JSON record root wrote into a root-only directory; None when there is none. A record that
    cannot be read is an error, never "nothing recorded"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(path, "not a regular file")
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a record")
    return data


def write_record(path: Path, data: dict) -> None:
    """Write a record atomically into its root-only directory (0600, exclusive temporary name)."""
    root_dir(path.parent)
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, sort_keys=True) + "\n")
    os.replace(tmp, path)


def owned_dir(path: Path, uid: int) -> bool:
    """Whether ``path`` is a real directory (not a link) owned by ``uid``; False when missing."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid


def remove_owned_tree(path: Path, uid: int) -> bool:
    """Remove a directory tree root made for the app (a release, a virtualenv, a cache) only if it
    is a real directory of the app's user: shutil.rmtree walks it by file descriptors and never
    follows a link. Anything else at ``path`` is left alone (False)."""
    if not owned_dir(path, uid):
        return False
    shutil.rmtree(path)
    return True


def read_app_file(directory: Path, name: str) -> bytes | None:
    """A regular file's bytes in an app-writable directory, opened relative to that directory
    without following a link at either level, never a FIFO or a device; None when missing."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UnsafePath(directory / name, f"cannot be opened without following a link ({e.strerror})") from e
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(directory / name, "not a regular file")
        return f.read()


def regular_file_source(path: str) -> Path:
    """A file root is about to copy from (an adopted or imported SQLite file): a regular file, not
    a link that would make root copy something else."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(path, "not a regular file")
    return Path(path)


# ---- decisions (pure, unit-tested) ----------------------------------------------------------


def inputs_hash(s: Settings) -> str:
    """What, besides the commit, a live release was made with: env file, units, settings (the
    converge hashes the same texts in the same order: operations/app/deploy.py)."""
    units = [s.unit_file, *([s.socket_unit_file] if s.socket_unit_file else []), *s.process_units.values()]
    return sha256_files([Path(s.env_file), *map(Path, units), s.settings_file])


def venv_key(requirements: bytes, python_version: str, extra: list[str] | None = None) -> str:
    """Releases with the same requirements.txt, extra requirements and python share one virtualenv."""
    extras = "".join(f"\n+{r}" for r in extra or []).encode()
    return hashlib.sha256(requirements + python_version.encode() + extras + RECORDS_VERSION.encode()).hexdigest()[:16]


def build_key(s: Settings) -> str:
    """The settings a built release directory depends on, besides its commit: a change of any
    of them builds a new directory instead of changing one that may be live."""
    built_from = {"manage_dir": s.manage_dir, "static_dir": s.static_dir, "static_root_env": s.static_root_env,
                  "extra_requirements": s.extra_requirements, "frontend_inputs": s.frontend_inputs,
                  "frontend_outputs": s.frontend_outputs, "records": RECORDS_VERSION}
    return hashlib.sha256(json.dumps(built_from, sort_keys=True).encode()).hexdigest()[:12]


def _entry(name: str, dir_fd: int) -> str:
    """What a manifest records of one directory entry, read relative to its directory's
    descriptor: sha256 of a regular file (opened without following a link, never blocking on a
    FIFO), '-> target' of a link, the kind of anything else."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        return "-> " + os.readlink(name, dir_fd=dir_fd)
    if not stat.S_ISREG(st.st_mode):
        return "special: " + ("fifo" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                              else "device")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "special: replaced while read"
        digest = hashlib.sha256()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()


def release_manifest(release: Path) -> dict[str, str]:
    """Every file of a release by relative path: sha256 of a regular file, '-> target' of a link
    (the virtualenv and node_modules links are not followed), the kind of a FIFO, socket or
    device (never opened). Walked by descriptors (os.fwalk): a directory the app swaps for a link
    meanwhile is not followed. Bytecode caches (written whenever Python imports) are left out."""
    found: dict[str, str] = {}
    for root, dirs, files, root_fd in os.fwalk(release, follow_symlinks=False):
        rel = Path(root).relative_to(release)
        for d in list(dirs):
            if stat.S_ISLNK(os.stat(d, dir_fd=root_fd, follow_symlinks=False).st_mode):
                found[str(rel / d)] = _entry(d, root_fd)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and str(rel / d) not in found)
        for name in files:
            if not name.endswith(".pyc"):
                found[str(rel / name)] = _entry(name, root_fd)
    return found


def manifest_differences(recorded: dict[str, str], now: dict[str, str], limit: int = 10) -> list[str]:
    """What differs, one line each (at most ``limit`` lines, then a count)."""
    lines = [f"changed: {p}" for p in sorted(recorded) if p in now and now[p] != recorded[p]]
    lines += [f"missing: {p}" for p in sorted(recorded) if p not in now]
    lines += [f"added: {p}" for p in sorted(now) if p not in recorded]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def venv_packages(venv: Path) -> list[str]:
    """The distributions installed in a virtualenv (their .dist-info directories)."""
    return sorted(p.name.removesuffix(".dist-info") for p in venv.glob("lib/python3*/site-packages/*.dist-info"))


class Records:
    """What root recorded about an app's releases, in a directory only root writes
    (AppPaths.state_dir): what is live (deployed.json, read by the converge's DeployedRelease
    fact), the last failure, each built release (its virtualenv, and the manifest of its files
    once it went live), each virtualenv's packages, each complete front-end build. Nothing the app
    can write is ever taken for one of these."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def deployed_file(self) -> Path:
        return self.dir / "deployed.json"

    @property
    def failed_file(self) -> Path:
        return self.dir / "failed.json"

    def built(self, release: str) -> dict | None:
        return read_record(self.dir / "built" / f"{release}.json")

    def _kind(self, kind: str) -> Path:
        """The records of one kind, in their root-only directory (the top one root-only too)."""
        root_dir(self.dir)
        return root_dir(self.dir / kind)

    def set_built(self, release: str, record: dict) -> None:
        write_record(self._kind("built") / f"{release}.json", record)

    def venv(self, venv: Path) -> dict | None:
        return read_record(self.dir / "venvs" / f"{venv.name}.json")

    def set_venv(self, venv: Path, packages: list[str]) -> None:
        write_record(self._kind("venvs") / f"{venv.name}.json", {"packages": packages})

    def frontend(self, buildhash: str) -> dict | None:
        return read_record(self.dir / "frontend" / f"{buildhash}.json")

    def set_frontend(self, buildhash: str) -> None:
        write_record(self._kind("frontend") / f"{buildhash}.json", {"complete": True})

    def forget(self, kind: str, name: str) -> None:
        (self.dir / kind / f"{name}.json").unlink(missing_ok=True)


def damage(release: Path, records: Records, uid: int) -> list[str]:
    """What differs in a release from what went live: its files (against the manifest root
    recorded then) and its virtualenv's distributions (against those installed when it was
    built). The virtualenv is the one root recorded for the release, never where the release's
    own link points (the manifest holds the link: a changed link is a changed file)."""
    built = records.built(release.name)
    # a release made before root kept records (or whose record is gone) cannot be checked: it is
    # rebuilt once (trusting what is on disk now would take any damage for the truth)
    if not built or built.get("manifest") is None:
        return ["no record of the release's files: it is rebuilt"]
    if not owned_dir(release, uid):
        return [f"release directory missing or replaced: {release}"]
    problems = manifest_differences(built["manifest"], release_manifest(release))
    venv = Path(built["venv"])
    record = records.venv(venv)
    if not owned_dir(venv, uid) or not (venv / "bin/python").exists():
        problems.append(f"virtualenv missing: {venv}")
    elif record is None:
        problems.append("virtualenv: no record of its packages")
    else:
        want, have = record["packages"], venv_packages(venv)
        problems += [f"virtualenv: {d} missing" for d in want if d not in have]
        problems += [f"virtualenv: {d} added" for d in have if d not in want]
    return problems


def restore_command(engine: str, target: str, dump: Path, s: Settings) -> list[str]:
    """The backup engine's restore of a pre-migrate backup over ``target`` (one implementation of
    restores for both engines): a PostgreSQL dump in a session of the database's owner itself,
    never the superuser's (the dump's content is the app's: a CHECK constraint or a default may
    call one of its functions, and ``pg_restore --role`` would still run it in a superuser's
    session, which can reset the role); an SQLite file placed for the app through an exclusive
    temporary name and a rename, never written through what the app put at ``target``."""
    if engine == "sqlite":
        return ["python3", str(BACKUP_ENGINE), "sqlite-restore", str(dump), target, "--owner", s.user]
    owner = s.pg_owners.get(target, "")
    if not owner:
        raise ReleaseFailed(1, f"no owner declared for database {target}: refusing to restore it as the superuser")
    return ["python3", str(BACKUP_ENGINE), "pg-restore", target, str(dump), "--role", owner, "--clean"]


def candidate_command(s: Settings, unit: str, sock: str, release: Path, venv: Path) -> list[str]:
    """A transient unit running the new release's gunicorn as the app, with its environment file,
    on a socket of its own (one worker: it only has to answer the health check), confined as the
    app's own unit is."""
    return ["systemd-run", "--quiet", "--collect", f"--unit={unit}", "--service-type=exec", f"--uid={s.user}",
            f"--gid={s.user}", *confined(s, s.state_paths), "-p", f"EnvironmentFile={s.env_file}",
            "-p", f"WorkingDirectory={release / s.manage_dir}", "-p", f"RuntimeDirectory={unit}",
            "-p", "RuntimeDirectoryMode=0755", f"--setenv=HOME=/home/{s.user}", "--",
            f"{venv}/bin/gunicorn", s.wsgi_app, *(["--config", s.gunicorn_config] if s.gunicorn_config else []),
            "--bind", f"unix:{sock}", "--workers", "1", "--timeout", str(s.timeout),
            "--access-logfile", "-", "--error-logfile", "-"]


def site_proxies_to(site: str, socket_path: str) -> bool:
    """Whether the enabled nginx site at ``site`` is the one this repo wrote for the app: it
    proxies to the app's gunicorn socket."""
    try:
        return bool(site and socket_path) and f"unix:{socket_path}" in Path(site).read_text()
    except OSError:
        return False


def health_command(s: Settings, socket: str | None = None, via_nginx: bool = False) -> list[str]:
    """curl printing the status the health path answers: on gunicorn's socket (``socket``, or the
    app's) with the users' Host header, or through nginx as users reach it."""
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
    if via_nginx:
        # the certificate is certbot's business (and not yet valid on a new host): not checked here
        return [*cmd, "--insecure", "--resolve", s.nginx_resolve, s.nginx_health_url]
    if socket or s.health_socket:
        cmd += ["--unix-socket", socket or s.health_socket]
    for header in s.health_headers:
        cmd += ["-H", header]
    return [*cmd, s.health_url]


def alert_text(host: str, app: str, revision: str, commit: str | None, code: int, detail: str,
               live: str | None) -> str:
    """The one message a failed release posts: host, app, revision, the failed step, what serves."""
    what = f"{revision} ({short(commit)})" if commit else revision
    serving = f"release {short(live)} still serves" if live else "nothing serves (no release was live)"
    return (f"Release FAILED on {host}: {app} {what}, step: {STEPS.get(code, 'unknown')}. {detail}. {serving}."
            f"\nSee: /var/log/iac/releases.log")[:1900]


def migrate_wrote(returncode: int, stdout: str) -> bool:
    """Whether a `manage.py migrate` run may have changed the database: it failed, or it did
    not say that it had nothing to apply."""
    return returncode != 0 or "No migrations to apply." not in stdout


def release_dir_name(commit: str, key: str) -> str:
    return f"{commit}-{key}"


def is_live_and_unchanged(live_target: Path | None, release: Path, deployed: dict | None, inputs: str,
                          unit_active: bool) -> bool:
    return (live_target == release and deployed is not None and deployed.get("inputs") == inputs
            and unit_active)


def releases_to_prune(release_dirs: list[tuple[Path, float]], keep: int, live: Path) -> list[Path]:
    """The release directories beyond the newest ``keep`` (by mtime); never the live one."""
    newest_first = [p for p, _ in sorted(release_dirs, key=lambda item: item[1], reverse=True)]
    return [p for p in newest_first[keep:] if p != live]


def venvs_to_prune(venvs: list[Path], used: list[Path]) -> list[Path]:
    """The app's virtualenvs no kept release links to (one set aside as damaged stays to its owner)."""
    return sorted(v for v in venvs if v not in used and not v.name.endswith(".damaged"))


def caches_to_prune(cache_dirs: list[tuple[Path, float]], keep: int) -> list[Path]:
    newest_first = [p for p, _ in sorted(cache_dirs, key=lambda item: item[1], reverse=True)]
    return newest_first[keep:]


def deployed_record(commit: str, revision: str, inputs: str, now: datetime, release: str = "",
                    previous: dict | None = None, backups: list | None = None,
                    rolled_back_from: str | None = None) -> dict:
    """What is live (read by the converge's DeployedRelease fact: commit and inputs), the
    pre-migrate backups a rollback --from-backup restores, and the releases live before it
    (newest last), which rollback picks from."""
    history = [] if previous is None else [*previous.get("history", []), {
        k: previous[k] for k in ("commit", "release", "deployed_at") if k in previous}]
    record = {"commit": commit, "revision": revision, "inputs": inputs,
              "deployed_at": now.isoformat(timespec="seconds"), "release": release,
              "pre_migrate_backups": backups or [], "history": history[-HISTORY_KEPT:]}
    if rolled_back_from:
        record["rolled_back_from"] = rolled_back_from
    return record


# ---- rollback decisions (pure, unit-tested) ---------------------------------------------------


def rollback_target(history: list[dict], kept: list[str], live: str, to: str | None) -> str:
    """The release directory to go back to: the one whose commit starts with ``to``, else the
    newest one that was live before ``live``; only among directories still on disk."""
    if to:
        found = [name for name in kept if name.startswith(to) and name != live]
        if len(found) != 1:
            raise ReleaseFailed(EXIT_ROLLBACK, f"{'no' if not found else 'more than one'} kept release matches {to!r}; "
                                               f"kept: {', '.join(short(n) for n in kept if n != live) or 'none'}")
        return found[0]
    for entry in reversed(history):
        name = entry.get("release", "")
        if name and name != live and name in kept:
            return name
    raise ReleaseFailed(EXIT_ROLLBACK, "no release that was live before this one is kept on disk (keep_releases); "
                                       "deploy the wanted revision instead")


def health_verdict(answers: list[str], settled: int = 5) -> bool | None:
    """False once the app has answered the same wrong status ``settled`` times in a row (it is
    up and says no: waiting longer changes nothing); None while it may still be starting (no
    answer yet: '000')."""
    tail = answers[-settled:]
    return False if len(tail) == settled and tail[0] != "000" and len(set(tail)) == 1 else None


def failure_after(previous: dict | None, commit: str, inputs: str, step: str, now: datetime) -> dict:
    """The record of a failed release (``<releases>/failed.json``): the same commit and inputs
    failing again counts attempts; anything else starts at one."""
    same = previous is not None and previous.get("commit") == commit and previous.get("inputs") == inputs
    return {"commit": commit, "inputs": inputs, "step": step, "at": now.isoformat(timespec="seconds"),
            "attempts": previous["attempts"] + 1 if same and previous else 1,
            "first_at": previous.get("first_at", previous.get("at")) if same and previous else
            now.isoformat(timespec="seconds")}


def showmigrations_plan(output: str) -> list[tuple[str, bool]]:
    """`manage.py showmigrations --plan` -> [("label.name", applied)] in plan order."""
    found = []
    for line in output.splitlines():
        m = re.match(r"^\[([ X])\]\s+(\w+)\.(\w+)\s*$", line.strip())
        if m:
            found.append((f"{m.group(2)}.{m.group(3)}", m.group(1) == "X"))
    return found


def reversal_targets(applied: list[str], known_by_target: list[str]) -> dict[str, str]:
    """For each app whose applied migrations include some the target release's code does not
    know: the migration to go back to (the last the target knows of that app, or 'zero')."""
    known = set(known_by_target)
    last_known: dict[str, str] = {}
    for migration in known_by_target:
        label, name = migration.split(".", 1)
        last_known[label] = name
    return {m.split(".", 1)[0]: last_known.get(m.split(".", 1)[0], "zero") for m in applied if m not in known}


def irreversible_migrations(plan_output: str) -> list[str]:
    """The migrations `migrate APP TARGET --plan` shows with an operation it cannot undo."""
    found, current = [], None
    for line in plan_output.splitlines():
        if re.match(r"^\w+\.\w+\s*$", line):
            current = line.strip()
        elif current and line.startswith(" ") and "IRREVERSIBLE" in line and current not in found:
            found.append(current)
    return found


def _mtimes(paths: list[Path]) -> list[tuple[Path, float]]:
    return [(p, p.stat().st_mtime) for p in paths if p.exists()]


# ---- the engine ------------------------------------------------------------------------------


class Release:
    def __init__(self, s: Settings, log: Log | None = None) -> None:
        self.s = s
        self.log = log or Log(s.app)
        self.records = Records(s.state_dir)
        self.mirror = s.releases / "repo.git"
        self.backups: list[tuple[str, str, Path]] = []  # (engine, target, file)
        # whether migrate (or a data import) wrote to the database: only then does a later failure
        # restore the pre-migrate backup (which would lose rows the live release wrote since)
        self.schema_changed = False
        self.stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.commit: str | None = None  # once fetched

    # 1. fetch
    def git(self, *args: str, check: bool = True, capture: bool = False,
            writable: list[str | Path] | None = None) -> subprocess.CompletedProcess:
        """git as the app user, confined: it may write ``writable`` only (the mirror, when fetching);
        its home is visible read-only for the deploy key."""
        cmd = as_app(self.s, ["git", *args], writable or [], home_readable=True,
                     env={"GIT_SSH_COMMAND": self.s.git_ssh_command()})
        return run(cmd, check=check, capture_output=capture, text=True)

    def as_user(self, *cmd: str) -> None:
        """A small fixed file operation inside the app's own trees, done as the app user (root
        never renames, links or removes there by path)."""
        run(as_user(self.s.user, list(cmd)))

    def fetch(self) -> str:
        s = self.s
        if not owned_dir(self.mirror, s.uid):
            tmp = Path(f"{self.mirror}.tmp")
            self.as_user("rm", "-rf", "--", str(tmp), str(self.mirror))
            self.as_user("mkdir", "--", str(tmp))
            if self.git("clone", "--quiet", "--mirror", s.repo_url, str(tmp), check=False,
                        writable=[tmp]).returncode != 0:
                self.as_user("rm", "-rf", "--", str(tmp))
                raise ReleaseFailed(EXIT_FETCH, f"cannot fetch {s.repo_url} with {s.key_path}: is the deploy key "
                                                "registered? (make deploy-keys)")
            self.as_user("mv", "-T", "--", str(tmp), str(self.mirror))
        else:
            self.git("-C", str(self.mirror), "remote", "set-url", "origin", s.repo_url, writable=[self.mirror])
            if self.git("-C", str(self.mirror), "fetch", "--quiet", "--prune", "--prune-tags", "origin",
                        check=False, writable=[self.mirror]).returncode != 0:
                raise ReleaseFailed(EXIT_FETCH, f"cannot fetch {s.repo_url}: the live release is untouched")
        out = self.git("-C", str(self.mirror), "rev-parse", "--verify", "--quiet", f"{s.revision}^{{commit}}",
                       check=False, capture=True)
        if out.returncode != 0:
            raise ReleaseFailed(EXIT_REVISION, f"revision '{s.revision}' does not exist in {s.repo_url}")
        return out.stdout.strip()

    # 2. build
    def built_venv(self, release: Path) -> Path | None:
        """The virtualenv of a release root recorded as built, if that release is still the app's
        directory; None when it must be built."""
        built = self.records.built(release.name)
        return Path(built["venv"]) if built and owned_dir(release, self.s.uid) else None

    def build(self, commit: str, release: Path) -> Path:
        """The release directory with its code, virtualenv, front end and static files; returns
        its virtualenv. Every step runs as the app user, confined to what it builds."""
        s = self.s
        if venv := self.built_venv(release):
            return venv
        self.log(f"building release {short(commit)} ({s.revision})")
        self.as_user("rm", "-rf", "--", str(release))
        self.as_user("mkdir", "--", str(release))
        run(as_app(s, ["sh", "-c", 'git -C "$0" archive "$1" | tar -x -C "$2"', str(self.mirror), commit,
                       str(release)], [release]))
        venv = self.virtualenv(release)
        self.as_user("ln", "-sfn", "--", str(venv), str(release / ".venv"))
        if s.frontend_inputs is not None:
            self.frontend(commit, release)
        self.log("collectstatic")
        code = release / s.manage_dir
        static_root = code / s.static_dir
        run(with_app_env(s, [f"{venv}/bin/python", "manage.py", "collectstatic", "--noinput", "-v", "0"], code,
                         {s.static_root_env: str(static_root)} if s.static_root_env else None, writable=[release]))
        if not static_root.is_dir() or not any(static_root.iterdir()):
            raise ReleaseFailed(EXIT_STATIC, f"collectstatic wrote nothing to {s.static_dir} (static_dir): set it to "
                                             "the app's STATIC_ROOT; the live release is untouched")
        # the manifest is recorded when it goes live (release commands may still write into it)
        self.records.set_built(release.name, {"venv": str(venv), "manifest": None, "commit": commit})
        return venv

    def virtualenv(self, release: Path) -> Path:
        s = self.s
        requirements = read_app_file(release, "requirements.txt")
        python = run(["python3", "--version"], capture_output=True, text=True).stdout.strip()
        key = venv_key(requirements or b"", python + chr(10), s.extra_requirements)
        venv = s.venv_link.parent / f".{s.app}-{key}"
        if self.records.venv(venv) is not None and owned_dir(venv, s.uid):
            return venv
        # a virtualenv is not relocatable: it is built at its final path, recorded when complete
        self.log(f"creating virtualenv {venv} (requirements changed)")
        if os.path.lexists(venv) and not remove_owned_tree(venv, s.uid):
            raise UnsafePath(venv, "not a directory of the app's")
        run(["install", "-d", "-o", s.user, "-g", s.user, "-m", "0755", str(venv)])
        pip = [f"{venv}/bin/pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir"]
        steps = [["python3", "-m", "venv", str(venv)],
                 *([[*pip, "-r", str(release / "requirements.txt")]] if requirements is not None else []),
                 *([[*pip, *s.extra_requirements]] if s.extra_requirements else [])]
        # pip may write the virtualenv and the release being built (a local package's build) only
        ok = all(run(as_app(s, step, [venv, release], cwd=release), check=False).returncode == 0 for step in steps)
        if not ok:
            remove_owned_tree(venv, s.uid)
            raise ReleaseFailed(EXIT_PIP, "pip install failed; the live release is untouched")
        self.records.set_venv(venv, venv_packages(venv))
        return venv

    def frontend(self, commit: str, release: Path) -> None:
        """npm ci / npm run build, or the outputs of a build with the same inputs (by content:
        git's object ids of every file under the declared paths in this commit)."""
        s = self.s
        tree = self.git("-C", str(self.mirror), "ls-tree", "-r", commit, "--", "package.json", "package-lock.json",
                        *(s.frontend_inputs or []), capture=True).stdout
        buildhash = hashlib.sha256(tree.encode()).hexdigest()[:16]
        built = s.releases / f".frontend-{buildhash}"
        if self.records.frontend(buildhash) is not None and owned_dir(built, s.uid):
            self.log(f"front-end build reused: its inputs are unchanged (build {buildhash})")
            self.as_user("touch", "--", str(built))
        else:
            lock = b"".join(read_app_file(release, n) or b"" for n in ("package.json", "package-lock.json"))
            modules = s.releases / f".node_modules-{hashlib.sha256(lock).hexdigest()[:16]}"
            if not owned_dir(modules, s.uid):
                self.log("npm ci (package.json or package-lock.json changed)")
                self.as_user("rm", "-rf", "--", str(modules))
                if run(as_app(s, ["sh", "-c", "npm ci --no-audit --no-fund --loglevel=error && mkdir -p node_modules"],
                              [release], cwd=release), check=False).returncode != 0:
                    raise ReleaseFailed(EXIT_FRONTEND, "npm ci failed; the live release is untouched")
                self.as_user("mv", "-T", "--", str(release / "node_modules"), str(modules))
            self.as_user("touch", "--", str(modules))
            self.as_user("ln", "-sfn", "--", str(modules), str(release / "node_modules"))
            self.log(f"npm run build (inputs changed: build {buildhash})")
            # the build may write the release and its node_modules (tools keep caches there)
            if run(as_app(s, ["npm", "run", "--silent", "build"], [release, modules], cwd=release),
                   check=False).returncode != 0:
                raise ReleaseFailed(EXIT_FRONTEND, "npm run build failed; the live release is untouched")
            self.records.forget("frontend", buildhash)
            self.as_user("rm", "-rf", "--", str(built))
            self.as_user("mkdir", "--", str(built))
            for out in s.frontend_outputs:
                if not (release / out).exists():
                    raise ReleaseFailed(EXIT_FRONTEND, f"npm run build did not write {out} (frontend_build.outputs); "
                                                       "the live release is untouched")
                run(as_user(s.user, ["mkdir", "-p", str((built / out).parent)]))
                run(as_user(s.user, ["cp", "-a", str(release / out), str(built / out)]))
            self.records.set_frontend(buildhash)
        for out in s.frontend_outputs:
            if not (release / out).exists():
                run(as_user(s.user, ["mkdir", "-p", str((release / out).parent)]))
                run(as_user(s.user, ["cp", "-a", str(built / out), str(release / out)]))

    # 3. backup + migrate
    def unit(self, *args: str) -> None:
        run(["systemctl", *args, self.s.unit], check=False)

    def snapshot(self, engine: str, source: str, name: str) -> Path:
        out = run(["python3", str(BACKUP_ENGINE), "snapshot", engine, source, str(self.s.backup_dir), name],
                  capture_output=True, text=True)
        return Path(out.stdout.strip())

    def adopt_sqlite(self) -> None:
        """Taking over a hand-built host: the old process writes to the old file until it stops."""
        s = self.s
        src, dest = s.adopt_sqlite_from, s.sqlite_path
        if not (s.db_engine == "sqlite" and src and not Path(dest).exists() and Path(src).is_file()):
            return
        self.log(f"adopting {src} -> {dest} (old file kept as it is)")
        self.unit("stop")
        source = regular_file_source(src)
        shutil.copy2(source, s.backup_dir / f"adopted.{source.name}.{self.stamp}")
        run(["install", "-d", "-o", s.user, "-g", s.user, "-m", "0750", str(Path(dest).parent)])
        # a consistent copy into root's own backup directory, then placed for the app by the backup
        # engine (never written through whatever the app may have put at the destination)
        copy = s.backup_dir / f"adopting.{self.stamp}.sqlite3"
        run(["sqlite3", str(source), f".backup '{copy}'"])
        run(restore_command("sqlite", dest, copy, s))
        copy.unlink()

    def back_up(self) -> None:
        s = self.s
        if s.db_engine == "sqlite" and Path(s.sqlite_path).is_file():
            self.backups.append(("sqlite", s.sqlite_path, self.snapshot("sqlite", s.sqlite_path, "db")))
        for db in s.pg_databases:
            self.backups.append(("postgresql", db, self.snapshot("postgresql", db, db)))
        self.log("database backups: " + (" ".join(f"{e}:{t}:{f}" for e, t, f in self.backups) or "none"))

    def restore_databases(self) -> None:
        if not self.schema_changed:
            if self.backups:
                self.log("migrate applied nothing: the database is not restored (rows written since the backup "
                         "are kept)")
            return
        for engine, target, dump in self.backups:
            self.log(f"restoring {target} from {dump}")
            run(restore_command(engine, target, Path(dump), self.s))

    def manage_run(self, release: Path, venv: Path, args: list[str], extra_env: dict[str, str] | None = None,
                   writes_release: bool = False, **kw) -> subprocess.CompletedProcess:
        """manage.py ARGS of ``release`` with ``venv``, as the app with its environment, confined
        as its units are (``writes_release``: a release command, which may write into the
        release it belongs to, e.g. compressed static files)."""
        cmd = with_app_env(self.s, [f"{venv}/bin/python", "manage.py", *args], release / self.s.manage_dir, extra_env,
                           writable=[release] if writes_release else None)
        return run(cmd, check=False, **kw)

    def manage(self, release: Path, venv: Path, args: list[str], extra_env: dict[str, str] | None = None,
               writes_release: bool = False, **kw) -> bool:
        return self.manage_run(release, venv, args, extra_env, writes_release, **kw).returncode == 0

    def needs_sqlite_import(self) -> bool:
        s = self.s
        if not (s.db_engine == "postgresql" and s.import_sqlite_from and Path(s.import_sqlite_from).is_file()):
            return False
        out = run(["runuser", "-u", "postgres", "--", "psql", "-d", s.pg_main_db, "-tAc",
                   "select to_regclass('public.django_migrations') is null"], capture_output=True, text=True)
        return out.stdout.strip() == "t"

    def migrate(self, release: Path, venv: Path, previous: Path | None) -> None:
        s = self.s
        export = s.backup_dir / f"import.{self.stamp}.json"
        importing = self.needs_sqlite_import()
        if importing:
            # moving from SQLite to PostgreSQL: only into a database Django has never migrated
            self.log(f"moving the data of {s.import_sqlite_from} into PostgreSQL database {s.pg_main_db} "
                     "(the app stops meanwhile)")
            self.unit("stop")
            source = regular_file_source(s.import_sqlite_from)
            shutil.copy2(source, s.backup_dir / f"import.{source.name}.{self.stamp}")
            use_sqlite, sqlite_path = s.sqlite_env
            sqlite_env = {k: v for k, v in ((use_sqlite, "1"), (sqlite_path, s.import_sqlite_from)) if k}
            with export.open("w") as out:
                ok = self.manage(release, venv, ["migrate", "--noinput"], sqlite_env) and self.manage(
                    release, venv, ["dumpdata", "--natural-foreign", "--natural-primary", "-e", "contenttypes",
                                    "-e", "auth.permission", "-e", "sessions"], sqlite_env, stdout=out)
            if not ok:
                self.unit("start")
                raise ReleaseFailed(EXIT_MIGRATE, f"reading {s.import_sqlite_from} FAILED; nothing was written to "
                                                  "PostgreSQL")
        self.schema_changed = importing
        for alias in s.migrate_databases:
            done = self.manage_run(release, venv, ["migrate", "--noinput", "--database", alias],
                                   stdout=subprocess.PIPE, text=True)
            sys.stderr.write(done.stdout)
            self.schema_changed |= migrate_wrote(done.returncode, done.stdout)
            if done.returncode != 0:
                live = f"; the live release stays {short(previous.name)}" if previous else ""
                self.log(f"migration FAILED: restoring the database(s){live}")
                self.restore_databases()
                raise ReleaseFailed(EXIT_MIGRATE, "migration FAILED")
        if importing:
            with export.open() as data:
                if not self.manage(release, venv, ["loaddata", "--format", "json", "-"], stdin=data):
                    self.log("loading the SQLite data into PostgreSQL FAILED: restoring the empty database")
                    self.restore_databases()
                    raise ReleaseFailed(EXIT_MIGRATE, "loading the SQLite data FAILED")
            self.log(f"moved {export.read_text().count(chr(34) + 'model' + chr(34) + ':')} objects from SQLite")

    def release_commands(self, release: Path, venv: Path) -> None:
        """The app's own release steps (manage.py compress, ...), after migrate: they may need the
        new schema. One failing restores the database and stops; the old release keeps serving."""
        for command in self.s.release_commands:
            self.log(f"release command: manage.py {' '.join(command)}")
            if not self.manage(release, venv, command, writes_release=True):
                self.log(f"release command manage.py {command[0]} FAILED: restoring the database(s)")
                self.restore_databases()
                raise ReleaseFailed(EXIT_COMMAND, f"release command manage.py {' '.join(command)} FAILED; the live "
                                                  "release is untouched")

    # 4. switch + restart + health
    def switch_to(self, release: Path, venv: Path) -> None:
        """The stable links (root's, in root's directories) to ``release`` and the virtualenv root
        recorded for it (never where the release's own .venv link points)."""
        s = self.s
        for link, target in ((s.app_link, release), (s.venv_link, venv)):
            tmp = Path(f"{link}.new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)

    @property
    def units(self) -> list[str]:
        """gunicorn's unit, then the app's process units (restarted, enabled, stopped together)."""
        return [self.s.unit, *self.s.process_units]

    @property
    def all_units(self) -> list[str]:
        """The units enabled with the app (and disabled with a failed first release): the socket too."""
        return [*([self.s.socket_unit] if self.s.socket_unit else []), *self.units]

    def restart(self) -> None:
        # a unit that hit its start limit (StartLimitBurst) refuses even a manual start until reset
        run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
        # the socket is not restarted: it keeps the connections that arrive meanwhile
        if self.s.socket_unit:
            run(["systemctl", "start", self.s.socket_unit], check=False)
        run(["systemctl", "restart", *self.units], check=False)

    def candidate_healthy(self, release: Path, venv: Path) -> bool:
        """The new release under gunicorn on a socket of its own, before anything switches:
        users are never sent to a release that cannot answer its health check."""
        s = self.s
        unit = f"iac-candidate-{s.app}"
        sock = f"/run/{unit}/gunicorn.sock"
        run(["systemctl", "stop", unit], check=False, stderr=subprocess.DEVNULL)  # a leftover
        run(["systemctl", "reset-failed", unit], check=False, stderr=subprocess.DEVNULL)
        started = run(candidate_command(s, unit, sock, release, venv), check=False)
        try:
            ok = started.returncode == 0 and self.healthy(socket=sock, attempts=20)
            if not ok:
                run(["journalctl", "-u", unit, "-n", "30", "--no-pager", "-o", "cat"], check=False, stdout=sys.stderr)
        finally:
            run(["systemctl", "stop", unit], check=False, stderr=subprocess.DEVNULL)
        return ok

    def healthy(self, attempts: int = 30, socket: str | None = None, via_nginx: bool = False) -> bool:
        s = self.s
        cmd = health_command(s, socket, via_nginx)
        answers: list[str] = []
        for _ in range(attempts):
            got = run(cmd, check=False, capture_output=True, text=True).stdout.strip()
            if got == str(s.health_status):
                return True
            answers.append(got)
            if health_verdict(answers) is False:
                break
            time.sleep(1)
        self.log(f"{cmd[-1]}{' through nginx' if via_nginx else ''} answered "
                 f"{answers[-1] if answers and answers[-1] != '000' else 'nothing'}, not {s.health_status}")
        return False

    def go_live(self, commit: str, release: Path, venv: Path, previous: tuple[Path, Path] | None,
                rollback: bool = False) -> None:
        """Check the release on its own socket, switch, restart, check through nginx; if that
        fails, back to ``previous`` (its release and virtualenv)."""
        s = self.s
        # what `verify` compares the live release with, in root's records: taken now, after the
        # release commands (which may write into it); a release rolled back to keeps the one it
        # went live with before (what changed in it since is damage, not the new truth)
        built = self.records.built(release.name) or {}
        if not rollback or built.get("manifest") is None:
            self.records.set_built(release.name, {"venv": str(venv), "commit": commit,
                                                  "manifest": release_manifest(release)})
        if s.wsgi_app and not self.candidate_healthy(release, venv):
            self.log(f"health check FAILED for {short(commit)} at {s.health_url}, before the switch: users "
                     "never reached it")
            self.restore_databases()
            if previous is None:
                self.log(f"first release failed: nothing is live; {' '.join(self.all_units)} stay stopped and "
                         "disabled; fix the revision and run again")
                run(["systemctl", "disable", "--now", "--quiet", *self.all_units], check=False)
                run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
            raise ReleaseFailed(EXIT_HEALTH, "health check FAILED before the switch; the live release is untouched")
        self.switch_to(release, venv)
        os.utime(release, follow_symlinks=False)  # releases are pruned oldest-live first
        run(["systemctl", "daemon-reload"])
        run(["systemctl", "enable", "--quiet", *self.all_units])
        self.restart()
        # through nginx with the users' Host once the site is ours (a first release on a new host
        # comes before its site, and on an adopted host the old site still proxies to the old
        # process until the sites step replaces it: then on gunicorn's socket, as the candidate was)
        via_nginx = site_proxies_to(s.nginx_site, s.health_socket) and bool(s.nginx_health_url)
        if self.healthy(via_nginx=via_nginx):
            self.log(f"{s.nginx_health_url + ' through nginx' if via_nginx else s.health_url} answers "
                     f"{s.health_status}")
            return
        self.log(f"health check FAILED for {short(commit)} at "
                 f"{s.nginx_health_url + ' through nginx' if via_nginx else s.health_url}")
        run(["journalctl", "-u", s.unit, "-n", "30", "--no-pager"], check=False, stdout=sys.stderr)
        if previous is not None and owned_dir(previous[0], s.uid):
            self.log(f"rolling back to {short(previous[0].name)}")
            self.restore_databases()
            self.switch_to(*previous)
            self.restart()
        else:
            # a first release has nothing to go back to: the unit is stopped and disabled (not left
            # restarting every RestartSec), the stable links are removed, the database restored
            self.log(f"first release failed: {' '.join(self.all_units)} stopped and disabled, {s.app_link} removed; "
                     "fix the revision and run again")
            run(["systemctl", "disable", "--now", "--quiet", *self.all_units], check=False)
            run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
            s.app_link.unlink(missing_ok=True)
            s.venv_link.unlink(missing_ok=True)
            self.restore_databases()
        raise ReleaseFailed(EXIT_HEALTH, "health check FAILED")

    # 5. record + prune
    def record(self, commit: str, inputs: str, release: Path, rolled_back_from: str | None = None) -> None:
        s = self.s
        backups = [[e, t, str(f)] for e, t, f in self.backups] if self.schema_changed else []
        write_record(self.records.deployed_file, deployed_record(
            commit, s.revision, inputs, datetime.now(UTC), release.name, read_record(self.records.deployed_file),
            backups, rolled_back_from))

    def owned_entries(self, directory: Path, keep: Callable[[str], bool]) -> list[tuple[Path, float]]:
        """The app's own directories in ``directory`` whose names ``keep`` accepts, with their
        mtimes, listed without following any link."""
        uid = self.s.uid
        with os.scandir(directory) as entries:
            return [(Path(e.path), e.stat(follow_symlinks=False).st_mtime) for e in entries
                    if keep(e.name) and e.is_dir(follow_symlinks=False)
                    and e.stat(follow_symlinks=False).st_uid == uid]

    def prune(self, release: Path) -> None:
        """Old releases, caches and virtualenvs beyond keep_releases: only real directories of
        the app's user, removed without following links; root's records of them go too."""
        s = self.s
        dirs = self.owned_entries(s.releases, RELEASE_DIR_RE.match)
        # a release root has no record of cannot be rolled back to (made before root kept
        # records, or its build never finished): pruned at once, it is only code from git
        unrecorded = [p for p, _ in dirs if p != release and self.records.built(p.name) is None]
        for old in [*unrecorded, *releases_to_prune([d for d in dirs if d[0] not in unrecorded], s.keep_releases,
                                                    release)]:
            remove_owned_tree(old, s.uid)
            self.records.forget("built", old.name)
        # what an engine before root's records left in the app's directory (root's files there)
        for name in ("deployed.json", "failed.json", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(s.releases / name)
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                    os.unlink(s.releases / name)
        for prefix in (".frontend-", ".node_modules-"):
            caches = self.owned_entries(s.releases, lambda n, p=prefix: n.startswith(p))
            for old in caches_to_prune(caches, s.keep_releases):
                remove_owned_tree(old, s.uid)
                if prefix == ".frontend-":
                    self.records.forget("frontend", old.name.removeprefix(prefix))
        # a virtualenv goes with the last kept release that uses it (as root recorded it), and the
        # one live now (root's own link) is never removed
        used = [Path(b["venv"]) for p, _ in self.owned_entries(s.releases, RELEASE_DIR_RE.match)
                if (b := self.records.built(p.name))]
        if s.venv_link.is_symlink():
            used.append(Path(os.readlink(s.venv_link)))
        venvs = [p for p, _ in self.owned_entries(s.venv_link.parent, lambda n: n.startswith(f".{s.app}-"))]
        for old in venvs_to_prune(venvs, used):
            self.log(f"removing virtualenv {old} (no kept release uses it)")
            remove_owned_tree(old, s.uid)
            self.records.forget("venvs", old.name)
        cutoff = time.time() - 30 * 86400
        for f in s.backup_dir.iterdir():
            if f.is_file() and f.stat().st_mtime < cutoff:
                f.unlink()

    def run(self) -> int:
        s = self.s
        for d in (s.releases, s.app_link.parent, s.venv_link.parent):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(s.releases, s.user, s.user)
        root_dir(s.state_dir)
        with locked(s.lock_file):
            commit = self.commit = self.fetch()
            release = s.releases / release_dir_name(commit, build_key(s))
            inputs = inputs_hash(s)
            previous = self.live()
            deployed = read_record(self.records.deployed_file)
            active = run(["systemctl", "is-active", "--quiet", s.unit], check=False).returncode == 0
            live_release = previous[0] if previous else None
            damaged = damage(release, self.records, s.uid) if live_release == release else []
            if is_live_and_unchanged(live_release, release, deployed, inputs, active) and not damaged:
                self.log(f"release {short(commit)} is live and unchanged")
                return 0
            failed = self.failed_before(commit, inputs)
            if failed:
                # retried, never silently: each run says so (the alert went out the first time)
                self.log(f"retrying {s.revision} ({short(commit)}): the same release failed at step "
                         f"{failed['step']} {failed['attempts']} time(s) since {failed['first_at']}; fix the "
                         "revision or its settings if it fails again")
            if not damaged:
                return self.make_live(commit, release, previous, inputs)
            self.log(f"the live release {short(commit)} is damaged ({'; '.join(damaged)}): rebuilding it")
            built_before = self.records.built(release.name)
            aside = self.set_aside(release, damaged)
            try:
                code = self.make_live(commit, release, previous, inputs)
            except BaseException:
                self.put_back(aside, release.name, built_before, previous)
                raise
            for path, moved in aside.items():
                self.remove_aside(path, moved)
            return code

    def live(self) -> tuple[Path, Path] | None:
        """The live release and virtualenv, read from root's own links (one level: never through
        a link the app could have put inside its trees)."""
        s = self.s
        if not (s.app_link.is_symlink() and s.venv_link.is_symlink()):
            return None
        return Path(os.readlink(s.app_link)), Path(os.readlink(s.venv_link))

    @property
    def deployed_file(self) -> Path:
        """What is live (the converge reads it: AppPaths.deployed is the same path)."""
        return self.records.deployed_file

    def failed_before(self, commit: str, inputs: str) -> dict | None:
        """The record of an earlier failure of this very release (same commit and inputs)."""
        record = read_record(self.records.failed_file)
        return record if record and record.get("commit") == commit and record.get("inputs") == inputs else None

    def note_failure(self, code: int) -> int:
        """Record a failed release; return the attempt count (1: the first failure, alerted)."""
        if not self.commit:
            return 1
        try:
            previous = read_record(self.records.failed_file)
            record = failure_after(previous, self.commit, inputs_hash(self.s), STEPS.get(code, "unknown"),
                                   datetime.now(UTC))
            write_record(self.records.failed_file, record)
        except (OSError, ValueError) as e:  # the record is a courtesy: never hide the failure itself
            self.log(f"could not record the failure: {e}")
            return 1
        return record["attempts"]

    def set_aside(self, release: Path, damaged: list[str]) -> dict[Path, Path]:
        """Move a damaged live release (and its virtualenv, if ``damaged`` names it: the one root
        recorded for it) aside, so that the rebuild makes new ones at the same paths; the running
        app keeps what it loaded. Only real directories of the app's user are moved."""
        s = self.s
        moved: dict[Path, Path] = {}
        built = self.records.built(release.name)
        venv = Path(built["venv"]) if built else None
        if not owned_dir(release, s.uid):
            raise UnsafePath(release, "the live release is not a directory of the app's")
        aside = release.with_name(f"{release.name}.damaged")
        # inside the app's own tree: as the app user
        self.as_user("rm", "-rf", "--", str(aside))
        self.as_user("mv", "-T", "--", str(release), str(aside))
        moved[release] = aside
        if venv and any(line.startswith("virtualenv") for line in damaged) and owned_dir(venv, s.uid):
            venv_aside = venv.with_name(f"{venv.name}.damaged")
            if os.path.lexists(venv_aside) and not remove_owned_tree(venv_aside, s.uid):
                raise UnsafePath(venv_aside, "not a directory of the app's")
            os.rename(venv, venv_aside)  # in root's /srv/venvs: the names there are root's
            moved[venv] = venv_aside
        return moved

    def remove_aside(self, path: Path, aside: Path) -> None:
        if path.parent == self.s.releases:
            self.as_user("rm", "-rf", "--", str(aside))
        else:
            remove_owned_tree(aside, self.s.uid)

    def put_back(self, moved: dict[Path, Path], release: str, built_before: dict | None,
                 live: tuple[Path, Path] | None) -> None:
        """The rebuild failed: the damaged release is live again, as it was before this run (a
        failure of any kind, not only a failed step)."""
        s = self.s
        for path, aside in moved.items():
            if path.parent == s.releases:
                self.as_user("rm", "-rf", "--", str(path))
                self.as_user("mv", "-T", "--", str(aside), str(path))
            else:
                if os.path.lexists(path):
                    remove_owned_tree(path, s.uid)
                os.rename(aside, path)
        if built_before is not None:
            self.records.set_built(release, built_before)
        if live:
            self.switch_to(*live)
        self.restart()
        self.log("the rebuild failed: the damaged release is back in place")

    # rollback: a kept release, its migrations reversed (or the pre-migrate backup), no rebuild
    def migrations(self, release: Path, venv: Path, alias: str) -> list[tuple[str, bool]]:
        """`showmigrations --plan` of ``release``'s own code against the database."""
        done = self.manage_run(release, venv,
                               ["showmigrations", "--plan", "--database", alias], capture_output=True, text=True)
        if done.returncode != 0:
            raise ReleaseFailed(EXIT_ROLLBACK, f"showmigrations failed in {short(release.name)}: "
                                               f"{done.stderr.strip()[-300:]}")
        return showmigrations_plan(done.stdout)

    def rollback(self, to: str | None, from_backup: bool) -> int:
        s = self.s
        started = time.monotonic()
        with locked(s.lock_file):
            current = self.live()
            if current is None:
                raise ReleaseFailed(EXIT_ROLLBACK, "nothing is live: there is nothing to roll back")
            live, live_venv = current
            record = read_record(self.records.deployed_file) or {}
            # kept: the app's release directories root recorded as built, with a complete virtualenv
            kept = [p.name for p, _ in self.owned_entries(s.releases, RELEASE_DIR_RE.match)
                    if (b := self.records.built(p.name)) and self.records.venv(Path(b["venv"])) is not None
                    and owned_dir(Path(b["venv"]), s.uid)]
            target = s.releases / rollback_target(record.get("history", []), kept, live.name, to)
            target_venv = Path((self.records.built(target.name) or {})["venv"])
            damaged = damage(target, self.records, s.uid)
            if damaged and not damaged[0].startswith("no record"):
                raise ReleaseFailed(EXIT_ROLLBACK, f"the kept release {short(target.name)} changed since it was built "
                                                   f"({'; '.join(damaged[:3])}): release that revision again instead")
            self.commit = target.name[:40]
            self.log(f"rolling back from {short(live.name)} to {short(target.name)}")
            # what the older code does not know, per database and app, and whether it can be undone
            steps: list[tuple[str, str, str]] = []
            for alias in s.migrate_databases:
                applied = [m for m, done in self.migrations(live, live_venv, alias) if done]
                known = [m for m, _ in self.migrations(target, target_venv, alias)]
                for label, name in reversal_targets(applied, known).items():
                    steps.append((alias, label, name))
            if steps and not from_backup:
                blocked = []
                for alias, label, name in steps:
                    plan = self.manage_run(live, live_venv, ["migrate", label, name, "--plan", "--database", alias],
                                           capture_output=True, text=True)
                    blocked += irreversible_migrations(plan.stdout)
                if blocked:
                    when = record.get("deployed_at", "?")
                    raise ReleaseFailed(EXIT_ROLLBACK, (
                        f"refused: {', '.join(blocked)} cannot be reversed. The database backup taken before "
                        f"{short(live.name)} migrated ({when}) can bring back the schema and data as they were then: "
                        "rollback --from-backup (make rollback ... BACKUP=1). WARNING: every row written since "
                        "then is lost (a safety backup of the current database is taken first)."))
            root_dir(s.backup_dir)
            self.back_up()  # safety: the database as it is now
            self.schema_changed = True
            if from_backup:
                saved = record.get("pre_migrate_backups", [])
                if not saved:
                    raise ReleaseFailed(EXIT_ROLLBACK, f"{short(live.name)} left no pre-migrate backup (its migrate "
                                                       "applied nothing): roll back without --from-backup")
                self.log("restoring the pre-migrate backup of the current release: rows written since are lost")
                current, self.backups = self.backups, [(e, tg, Path(f)) for e, tg, f in saved]
                self.restore_databases()
                self.backups = current
            else:
                for alias, label, name in steps:
                    self.log(f"reversing {label} to {name} ({alias})")
                    done = self.manage_run(live, live_venv, ["migrate", label, name, "--noinput", "--database",
                                                             alias], capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.stderr.write(done.stdout + done.stderr)
                        self.restore_databases()
                        raise ReleaseFailed(EXIT_ROLLBACK, f"reversing {label} to {name} FAILED; the database is "
                                                           f"restored and {short(live.name)} stays live")
            self.go_live(self.commit, target, target_venv, current, rollback=True)
            self.record(self.commit, inputs_hash(s), target, rolled_back_from=live.name[:40])
            self.log(f"rolled back to {short(target.name)} in {time.monotonic() - started:.1f} s; the declared "
                     f"revision is still {s.revision!r}: set source.revision = {self.commit!r} to keep it")
        print(json.dumps({"app": s.app, "commit": self.commit, "from": live.name[:40], "reversed": [] if from_backup
                          else [f"{label} -> {name}" for _, label, name in steps], "from_backup": from_backup,
            "seconds": round(time.monotonic() - started, 1)}))
        return 0

    def make_live(self, commit: str, release: Path, previous: tuple[Path, Path] | None, inputs: str) -> int:
        """Stages 2-5 (see the module docstring); ``previous``: the live release and virtualenv."""
        s = self.s
        venv = self.build(commit, release)
        root_dir(s.backup_dir)
        self.adopt_sqlite()
        self.back_up()
        self.migrate(release, venv, previous[0] if previous else None)
        self.release_commands(release, venv)
        self.go_live(commit, release, venv, previous)
        self.record(commit, inputs, release)
        self.records.failed_file.unlink(missing_ok=True)
        self.prune(release)
        self.log(f"release {short(commit)} ({s.revision}) is live")
        return 0


def alert(release: Release, code: int, detail: str) -> None:
    """One message to the host's alert webhook; a failure to send is logged, never raised."""
    s = release.s
    current = release.live()
    live = current[0].name if current else None
    text = alert_text(socket.gethostname(), s.app, s.revision, release.commit, code, detail, live)
    if not s.alert_env_file:
        release.log("no alert webhook configured (backups.alerts): the failure is in this log only")
        return
    if not Path(s.alert_env_file).is_file():
        # a host's first run releases its apps before it writes the alert settings (backups)
        release.log(f"alert NOT sent: {s.alert_env_file} is not written yet (a first run writes it after the "
                    "apps): the failure is in this log only")
        return
    sent = run(["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "-p", f"EnvironmentFile={s.alert_env_file}",
                "/usr/bin/python3", str(Path(__file__).resolve()), "notify", s.app], check=False, input=text,
               text=True, capture_output=True)
    release.log("alert sent" if sent.returncode == 0 else
                f"alert NOT sent (exit {sent.returncode}): {sent.stderr.strip()[-200:] or 'no reason given'}")


def notify_command() -> int:
    url = os.environ.get("IAC_ALERT_WEBHOOK_URL", "")
    if not url:
        print("IAC_ALERT_WEBHOOK_URL is not set", file=sys.stderr)
        return 1
    # no mention in a message (an app name, a path) can ever ping anyone
    body = json.dumps({"content": sys.stdin.read(), "allowed_mentions": {"parse": []}}).encode()
    import urllib.request  # only alerts need it: 17 ms saved on every start (drift checks)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                              "User-Agent": "iac-release"})
    try:
        with urllib.request.urlopen(request, timeout=15):
            return 0
    except OSError as e:  # the URL is a secret: only the kind of failure is shown
        print(f"webhook failed: {type(e).__name__}", file=sys.stderr)
        return 1


def verify_command(s: Settings) -> int:
    """Print what differs in the live release (nothing when it is intact or nothing is live).
    A record that cannot be read is an error (exit 1), never "intact": the drift check then says
    it cannot tell."""
    current = Release(s).live()
    if current is None:
        return 0
    try:
        for line in damage(current[0], Records(s.state_dir), s.uid):
            print(line)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"verify {s.app}: cannot check the live release against root's records: {e}", file=sys.stderr)
        return 1
    return 0


def manage_command(s: Settings, args: list[str]) -> int:
    """manage.py ARGS in the live release, as the app, with its unit's environment and
    confinement; an operator's command may also write the host's /tmp (a report it asks for)."""
    cmd = with_app_env(s, [f"{s.venv_link}/bin/python", "manage.py", *args], s.app_link / s.manage_dir,
                       writable=["/tmp"])
    cmd[cmd.index("--"):cmd.index("--")] = ["-p", "PrivateTmp=no"]
    return run(cmd, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] not in ("release", "manage", "verify", "notify", "rollback"):
        print(__doc__.split("\n\n")[2], file=sys.stderr)
        return 2
    if args[0] == "notify":
        return notify_command()
    settings = Settings.load(args[1])
    if args[0] == "manage":
        return manage_command(settings, args[2:])
    if args[0] == "verify":
        return verify_command(settings)
    os.umask(0o022)
    release = Release(settings)
    try:
        if args[0] == "rollback":
            extra = args[2:]
            to = extra[extra.index("--to") + 1] if "--to" in extra and extra.index("--to") + 1 < len(extra) else None
            return release.rollback(to, "--from-backup" in extra)
        return release.run()
    except ReleaseFailed as failed:
        release.log(f"{failed} (step: {STEPS.get(failed.code)})")
        # a rollback is run by an operator, who sees its answer; a release that failed before is
        # alerted once, its retries are logged with the attempt count
        if args[0] == "release" and release.note_failure(failed.code) == 1:
            alert(release, failed.code, str(failed))
        return failed.code
    except subprocess.CalledProcessError as failed:
        release.log(f"step failed (exit {failed.returncode}): {' '.join(map(str, failed.cmd))[:300]}; "
                    "the live release is untouched unless a message above says otherwise")
        if args[0] == "release" and release.note_failure(1) == 1:
            alert(release, 1, f"{Path(str(failed.cmd[0])).name} exited {failed.returncode}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
