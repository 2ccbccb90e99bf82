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
  5. record   what is live in <releases>/deployed.json (read by the converge's facts), prune.

A live release that `verify` finds damaged (a file edited, a package removed from its
virtualenv) is rebuilt beside the damaged one, which is moved aside until the rebuilt one is
live (and put back if the rebuild fails).

Exit codes: 0 live, 3 cannot fetch, 4 unknown revision, 5 migration (or data import) failed,
6 health check failed, 7 pip failed, 8 front-end build failed, 9 a release command failed,
10 collectstatic did not fill static_dir, 2 usage.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
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


class ReleaseFailed(Exception):
    """A stage failed; ``code`` is the exit status, the message says what and what is live."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ---- settings ----------------------------------------------------------------------------------


@dataclass
class Settings:
    """What the model declares for one app (written by operations/django_app.py)."""

    app: str
    user: str
    repo_url: str
    revision: str
    manage_dir: str
    env_file: str
    unit: str
    unit_file: str
    releases: Path
    app_link: Path
    venv_link: Path
    keep_releases: int
    backup_dir: Path
    db_engine: str
    sqlite_path: str = ""
    adopt_sqlite_from: str = ""
    pg_databases: list[str] = field(default_factory=list)
    pg_main_db: str = ""
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
    settings_file: Path = Path()

    @classmethod
    def load(cls, app: str, directory: Path = SETTINGS_DIR) -> Settings:
        path = directory / f"{app}.release"
        data = json.loads(path.read_text())
        for key in ("releases", "app_link", "venv_link", "backup_dir"):
            data[key] = Path(data[key])
        return cls(**data, settings_file=path)

    @property
    def key_path(self) -> str:
        return f"/home/{self.user}/.ssh/id_ed25519"

    @property
    def known_hosts(self) -> str:
        return f"/home/{self.user}/.ssh/known_hosts"

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
            with self.path.open("a") as f:
                f.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {self.app}: {msg}\n")
        except OSError:
            pass


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, **kw)


def as_user(user: str, cmd: list[str]) -> list[str]:
    """``cmd`` as ``user`` with its home (git, pip, npm)."""
    return ["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", *cmd]


def with_app_env(s: Settings, cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> list[str]:
    """``cmd`` as the app user with exactly its unit's environment: systemd reads the env file
    (``EnvironmentFile=``), so a secret holding $ ` # ; or quotes arrives as written; no shell
    ever sources it. Extra variables (STATIC_ROOT, a SQLite import's USE_SQLITE) go through
    env(1) inside the unit, so they win over the file's."""
    extra = [f"{k}={v}" for k, v in (extra_env or {}).items()]
    return ["systemd-run", "--quiet", "--pipe", "--wait", "--collect", "--service-type=exec",
            f"--uid={s.user}", f"--gid={s.user}", "-p", f"EnvironmentFile={s.env_file}",
            "-p", f"WorkingDirectory={cwd}", f"--setenv=HOME=/home/{s.user}", "--",
            *(["/usr/bin/env", *extra] if extra else []), *cmd]


def sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def short(commit: str) -> str:
    return commit[:12]


@contextmanager
def locked(path: Path):
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# ---- decisions (pure, unit-tested) ----------------------------------------------------------


def inputs_hash(s: Settings) -> str:
    """What, besides the commit, a live release was made with: env file, units, settings (the
    converge hashes the same texts in the same order: operations/django_app.py)."""
    units = [s.unit_file, *([s.socket_unit_file] if s.socket_unit_file else []), *s.process_units.values()]
    return sha256_files([Path(s.env_file), *map(Path, units), s.settings_file])


def venv_key(requirements: bytes, python_version: str, extra: list[str] | None = None) -> str:
    """Releases with the same requirements.txt, extra requirements and python share one virtualenv."""
    extras = "".join(f"\n+{r}" for r in extra or []).encode()
    return hashlib.sha256(requirements + python_version.encode() + extras).hexdigest()[:16]


def build_key(s: Settings) -> str:
    """The settings a built release directory depends on, besides its commit: a change of any
    of them builds a new directory instead of changing one that may be live."""
    built_from = {"manage_dir": s.manage_dir, "static_dir": s.static_dir, "static_root_env": s.static_root_env,
                  "extra_requirements": s.extra_requirements, "frontend_inputs": s.frontend_inputs,
                  "frontend_outputs": s.frontend_outputs}
    return hashlib.sha256(json.dumps(built_from, sort_keys=True).encode()).hexdigest()[:12]


MANIFEST, PACKAGES = ".iac-manifest.json", ".iac-packages"


def release_manifest(release: Path) -> dict[str, str]:
    """Every file of a release by relative path: sha256 of a regular file, '-> target' of a
    symlink (the virtualenv and node_modules links are not followed). The engine's own marks
    (.iac-*) and bytecode caches (written whenever Python imports) are left out."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(release):
        here = Path(root)
        rel = here.relative_to(release)
        for d in list(dirs):
            if (here / d).is_symlink():
                found[str(rel / d)] = "-> " + os.readlink(here / d)
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (here / d).is_symlink())
        for name in files:
            path, key = here / name, str(rel / name)
            if (rel == Path(".") and name.startswith(".iac-")) or name.endswith(".pyc"):
                continue
            found[key] = "-> " + os.readlink(path) if path.is_symlink() else hashlib.sha256(
                path.read_bytes()).hexdigest()
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


def damage(release: Path) -> list[str]:
    """What differs in a release from what went live: its files (against its manifest) and its
    virtualenv's distributions (against those installed when it was built)."""
    problems: list[str] = []
    manifest = release / MANIFEST
    # a release or virtualenv made before the engine recorded manifests cannot be checked: it is
    # rebuilt once (trusting what is on disk now would take any damage for the truth)
    if manifest.is_file():
        problems += manifest_differences(json.loads(manifest.read_text()), release_manifest(release))
    else:
        problems.append(f"no manifest of the release's files ({MANIFEST})")
    link = release / ".venv"
    if link.is_symlink():
        venv = link.resolve()
        if not (venv / "bin/python").exists():
            problems.append(f"virtualenv missing: {venv}")
        elif not (venv / PACKAGES).is_file():
            problems.append(f"virtualenv: no record of its packages ({PACKAGES})")
        else:
            want, have = (venv / PACKAGES).read_text().split(), venv_packages(venv)
            problems += [f"virtualenv: {d} missing" for d in want if d not in have]
            problems += [f"virtualenv: {d} added" for d in have if d not in want]
    return problems


def candidate_command(s: Settings, unit: str, sock: str, release: Path, venv: Path) -> list[str]:
    """A transient unit running the new release's gunicorn as the app, with its environment file,
    on a socket of its own (one worker: it only has to answer the health check)."""
    return ["systemd-run", "--quiet", "--collect", f"--unit={unit}", "--service-type=exec", f"--uid={s.user}",
            f"--gid={s.user}", "-p", f"EnvironmentFile={s.env_file}",
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
    return [p for p in newest_first[keep:] if p.resolve() != live.resolve()]


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
        self.mirror = s.releases / "repo.git"
        self.backups: list[tuple[str, str, Path]] = []  # (engine, target, file)
        # whether migrate (or a data import) wrote to the database: only then does a later failure
        # restore the pre-migrate backup (which would lose rows the live release wrote since)
        self.schema_changed = False
        self.stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.commit: str | None = None  # once fetched

    # 1. fetch
    def git(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        return run(as_user(self.s.user, ["env", f"GIT_SSH_COMMAND={self.s.git_ssh_command()}", "git", *args]),
                   check=check, capture_output=capture, text=True)

    def fetch(self) -> str:
        s = self.s
        if not self.mirror.is_dir():
            tmp = Path(f"{self.mirror}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            if self.git("clone", "--quiet", "--mirror", s.repo_url, str(tmp), check=False).returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise ReleaseFailed(EXIT_FETCH, f"cannot fetch {s.repo_url} with {s.key_path}: is the deploy key "
                                                "registered? (make deploy-keys)")
            tmp.rename(self.mirror)
        else:
            self.git("-C", str(self.mirror), "remote", "set-url", "origin", s.repo_url)
            if self.git("-C", str(self.mirror), "fetch", "--quiet", "--prune", "--prune-tags", "origin",
                        check=False).returncode != 0:
                raise ReleaseFailed(EXIT_FETCH, f"cannot fetch {s.repo_url}: the live release is untouched")
        out = self.git("-C", str(self.mirror), "rev-parse", "--verify", "--quiet", f"{s.revision}^{{commit}}",
                       check=False, capture=True)
        if out.returncode != 0:
            raise ReleaseFailed(EXIT_REVISION, f"revision '{s.revision}' does not exist in {s.repo_url}")
        return out.stdout.strip()

    # 2. build
    def build(self, commit: str, release: Path) -> None:
        s = self.s
        if (release / ".iac-built").is_file():
            return
        self.log(f"building release {short(commit)} ({s.revision})")
        shutil.rmtree(release, ignore_errors=True)
        run(as_user(s.user, ["mkdir", str(release)]))
        run(as_user(s.user, ["bash", "-c", 'git -C "$0" archive "$1" | tar -x -C "$2"',
                             str(self.mirror), commit, str(release)]))
        venv = self.virtualenv(release)
        (release / ".venv").unlink(missing_ok=True)
        (release / ".venv").symlink_to(venv)
        if s.frontend_inputs is not None:
            self.frontend(commit, release)
        self.log("collectstatic")
        code = release / s.manage_dir
        static_root = code / s.static_dir
        run(with_app_env(s, [f"{venv}/bin/python", "manage.py", "collectstatic", "--noinput", "-v", "0"], code,
                         {s.static_root_env: str(static_root)} if s.static_root_env else None))
        if not static_root.is_dir() or not any(static_root.iterdir()):
            raise ReleaseFailed(EXIT_STATIC, f"collectstatic wrote nothing to {s.static_dir} (static_dir): set it to "
                                             "the app's STATIC_ROOT; the live release is untouched")
        run(as_user(s.user, ["touch", str(release / ".iac-built")]))

    def virtualenv(self, release: Path) -> Path:
        s = self.s
        req = release / "requirements.txt"
        python = run(["python3", "--version"], capture_output=True, text=True).stdout.strip()
        key = venv_key(req.read_bytes() if req.exists() else b"", python + chr(10), s.extra_requirements)
        venv = s.venv_link.parent / f".{s.app}-{key}"
        if (venv / ".iac-complete").is_file():
            return venv
        # a virtualenv is not relocatable: it is built at its final path, marked when complete
        self.log(f"creating virtualenv {venv} (requirements changed)")
        shutil.rmtree(venv, ignore_errors=True)
        run(["install", "-d", "-o", s.user, "-g", s.user, "-m", "0755", str(venv)])
        pip = [f"{venv}/bin/pip", "install", "--quiet", "--disable-pip-version-check"]
        steps = [["python3", "-m", "venv", str(venv)], *([[*pip, "-r", str(req)]] if req.exists() else []),
                 *([[*pip, *s.extra_requirements]] if s.extra_requirements else [])]
        ok = all(run(as_user(s.user, step), check=False).returncode == 0 for step in steps)
        if not ok:
            shutil.rmtree(venv, ignore_errors=True)
            raise ReleaseFailed(EXIT_PIP, "pip install failed; the live release is untouched")
        (venv / PACKAGES).write_text("\n".join(venv_packages(venv)) + "\n")
        run(as_user(s.user, ["touch", str(venv / ".iac-complete")]))
        return venv

    def frontend(self, commit: str, release: Path) -> None:
        """npm ci / npm run build, or the outputs of a build with the same inputs (by content:
        git's object ids of every file under the declared paths in this commit)."""
        s = self.s
        tree = self.git("-C", str(self.mirror), "ls-tree", "-r", commit, "--", "package.json", "package-lock.json",
                        *(s.frontend_inputs or []), capture=True).stdout
        buildhash = hashlib.sha256(tree.encode()).hexdigest()[:16]
        built = s.releases / f".frontend-{buildhash}"
        if (built / ".iac-complete").is_file():
            self.log(f"front-end build reused: its inputs are unchanged (build {buildhash})")
            os.utime(built)
        else:
            lock = b"".join((release / n).read_bytes() for n in ("package.json", "package-lock.json")
                            if (release / n).exists())
            modules = s.releases / f".node_modules-{hashlib.sha256(lock).hexdigest()[:16]}"
            if not modules.is_dir():
                self.log("npm ci (package.json or package-lock.json changed)")
                if run(as_user(s.user, ["bash", "-c", 'cd "$0" && npm ci --no-audit --no-fund --loglevel=error '
                                        '&& mkdir -p node_modules', str(release)]), check=False).returncode != 0:
                    raise ReleaseFailed(EXIT_FRONTEND, "npm ci failed; the live release is untouched")
                (release / "node_modules").rename(modules)
            os.utime(modules)
            (release / "node_modules").unlink(missing_ok=True)
            (release / "node_modules").symlink_to(modules)
            self.log(f"npm run build (inputs changed: build {buildhash})")
            if run(as_user(s.user, ["bash", "-c", 'cd "$0" && npm run --silent build', str(release)]),
                   check=False).returncode != 0:
                raise ReleaseFailed(EXIT_FRONTEND, "npm run build failed; the live release is untouched")
            shutil.rmtree(built, ignore_errors=True)
            run(as_user(s.user, ["mkdir", str(built)]))
            for out in s.frontend_outputs:
                if not (release / out).exists():
                    raise ReleaseFailed(EXIT_FRONTEND, f"npm run build did not write {out} (frontend_build.outputs); "
                                                       "the live release is untouched")
                run(as_user(s.user, ["mkdir", "-p", str((built / out).parent)]))
                run(as_user(s.user, ["cp", "-a", str(release / out), str(built / out)]))
            run(as_user(s.user, ["touch", str(built / ".iac-complete")]))
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
        shutil.copy2(src, s.backup_dir / f"adopted.{Path(src).name}.{self.stamp}")
        run(["install", "-d", "-o", s.user, "-g", s.user, "-m", "0750", str(Path(dest).parent)])
        run(["sqlite3", src, f".backup '{dest}'"])
        shutil.chown(dest, s.user, s.user)
        os.chmod(dest, 0o640)

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
            if engine == "sqlite":
                run(["install", "-o", self.s.user, "-g", self.s.user, "-m", "0640", str(dump), target])
            else:
                run(["runuser", "-u", "postgres", "--", "pg_restore", "--clean", "--if-exists", "--single-transaction",
                     "-d", target, str(dump)])

    def manage_run(self, release: Path, venv: Path, args: list[str], extra_env: dict[str, str] | None = None,
                   **kw) -> subprocess.CompletedProcess:
        """manage.py ARGS of ``release`` with ``venv``, as the app with its environment."""
        cmd = with_app_env(self.s, [f"{venv}/bin/python", "manage.py", *args], release / self.s.manage_dir, extra_env)
        return run(cmd, check=False, **kw)

    def manage(self, release: Path, venv: Path, args: list[str], extra_env: dict[str, str] | None = None,
               **kw) -> bool:
        return self.manage_run(release, venv, args, extra_env, **kw).returncode == 0

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
            shutil.copy2(s.import_sqlite_from, s.backup_dir / f"import.{Path(s.import_sqlite_from).name}.{self.stamp}")
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
            if not self.manage(release, venv, command):
                self.log(f"release command manage.py {command[0]} FAILED: restoring the database(s)")
                self.restore_databases()
                raise ReleaseFailed(EXIT_COMMAND, f"release command manage.py {' '.join(command)} FAILED; the live "
                                                  "release is untouched")

    # 4. switch + restart + health
    def switch_to(self, release: Path) -> None:
        s = self.s
        for link, target in ((s.app_link, release), (s.venv_link, (release / ".venv").resolve())):
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

    def go_live(self, commit: str, release: Path, previous: Path | None) -> None:
        s = self.s
        # what `verify` compares the live release with (after the release commands, which may
        # write into it)
        (release / MANIFEST).write_text(json.dumps(release_manifest(release), sort_keys=True) + "\n")
        if s.wsgi_app and not self.candidate_healthy(release, (release / ".venv").resolve()):
            self.log(f"health check FAILED for {short(commit)} at {s.health_url}, before the switch: users "
                     "never reached it")
            self.restore_databases()
            if previous is None:
                self.log(f"first release failed: nothing is live; {' '.join(self.all_units)} stay stopped and "
                         "disabled; fix the revision and run again")
                run(["systemctl", "disable", "--now", "--quiet", *self.all_units], check=False)
                run(["systemctl", "reset-failed", *self.units], check=False, stderr=subprocess.DEVNULL)
            raise ReleaseFailed(EXIT_HEALTH, "health check FAILED before the switch; the live release is untouched")
        self.switch_to(release)
        os.utime(release)  # releases are pruned oldest-live first
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
        if previous is not None and previous.is_dir():
            self.log(f"rolling back to {short(previous.name)}")
            self.restore_databases()
            self.switch_to(previous)
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
        path = self.deployed_file
        previous = json.loads(path.read_text()) if path.is_file() else None
        backups = [[e, t, str(f)] for e, t, f in self.backups] if self.schema_changed else []
        tmp = path.with_name(f"{path.name}.new")
        tmp.write_text(json.dumps(deployed_record(commit, s.revision, inputs, datetime.now(UTC), release.name,
                                                  previous, backups, rolled_back_from)) + "\n")
        os.replace(tmp, path)

    def prune(self, release: Path) -> None:
        s = self.s
        dirs = [p for p in s.releases.iterdir() if p.is_dir() and RELEASE_DIR_RE.match(p.name)]
        for old in releases_to_prune(_mtimes(dirs), s.keep_releases, release):
            shutil.rmtree(old, ignore_errors=True)
        for prefix in (".frontend-", ".node_modules-"):
            caches = [p for p in s.releases.iterdir() if p.is_dir() and p.name.startswith(prefix)]
            for old in caches_to_prune(_mtimes(caches), s.keep_releases):
                shutil.rmtree(old, ignore_errors=True)
        # a virtualenv goes with the last kept release that uses it
        kept = [p for p in s.releases.iterdir() if p.is_dir() and RELEASE_DIR_RE.match(p.name)]
        venvs = [p for p in s.venv_link.parent.glob(f".{s.app}-*") if p.is_dir() and not p.is_symlink()]
        for old in venvs_to_prune(venvs, [(p / ".venv").resolve() for p in kept if (p / ".venv").is_symlink()]):
            self.log(f"removing virtualenv {old} (no kept release uses it)")
            shutil.rmtree(old, ignore_errors=True)
        cutoff = time.time() - 30 * 86400
        for f in s.backup_dir.iterdir():
            if f.is_file() and f.stat().st_mtime < cutoff:
                f.unlink()

    def run(self) -> int:
        s = self.s
        for d in (s.releases, s.app_link.parent, s.venv_link.parent):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(s.releases, s.user, s.user)
        with locked(s.releases / ".lock"):
            commit = self.commit = self.fetch()
            release = s.releases / release_dir_name(commit, build_key(s))
            inputs = inputs_hash(s)
            previous = s.app_link.resolve() if s.app_link.is_symlink() else None
            deployed = json.loads(self.deployed_file.read_text()) if self.deployed_file.is_file() else None
            active = run(["systemctl", "is-active", "--quiet", s.unit], check=False).returncode == 0
            damaged = damage(release) if previous == release else []
            if is_live_and_unchanged(previous, release, deployed, inputs, active) and not damaged:
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
            aside = self.set_aside(release, damaged)
            try:
                code = self.make_live(commit, release, previous, inputs)
            except ReleaseFailed:
                self.put_back(aside)
                raise
            for path in aside.values():
                shutil.rmtree(path, ignore_errors=True)
            return code
        return 0

    @property
    def failed_file(self) -> Path:
        return self.s.releases / "failed.json"

    @property
    def deployed_file(self) -> Path:
        """What is live (the converge reads it: AppPaths.deployed is the same path)."""
        return self.s.releases / "deployed.json"

    def failed_before(self, commit: str, inputs: str) -> dict | None:
        """The record of an earlier failure of this very release (same commit and inputs)."""
        if not self.failed_file.is_file():
            return None
        record = json.loads(self.failed_file.read_text())
        return record if record.get("commit") == commit and record.get("inputs") == inputs else None

    def note_failure(self, code: int) -> int:
        """Record a failed release; return the attempt count (1: the first failure, alerted)."""
        if not self.commit:
            return 1
        try:
            previous = json.loads(self.failed_file.read_text()) if self.failed_file.is_file() else None
            record = failure_after(previous, self.commit, inputs_hash(self.s), STEPS.get(code, "unknown"),
                                   datetime.now(UTC))
            self.failed_file.write_text(json.dumps(record) + "\n")
        except (OSError, ValueError) as e:  # the record is a courtesy: never hide the failure itself
            self.log(f"could not record the failure: {e}")
            return 1
        return record["attempts"]

    def set_aside(self, release: Path, damaged: list[str]) -> dict[Path, Path]:
        """Move a damaged live release (and its virtualenv, if ``damaged`` names it) aside, so
        that the rebuild makes new ones at the same paths; the running app keeps what it loaded."""
        moved = {}
        venv = (release / ".venv").resolve()
        targets = [release] + ([venv] if any(line.startswith("virtualenv") for line in damaged) else [])
        for path in targets:
            aside = path.with_name(f"{path.name}.damaged")
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(path, aside)
            moved[path] = aside
        return moved

    def put_back(self, moved: dict[Path, Path]) -> None:
        """The rebuild failed: the damaged release is live again, as it was before this run."""
        for path, aside in moved.items():
            shutil.rmtree(path, ignore_errors=True)
            os.rename(aside, path)
        self.restart()
        self.log("the rebuild failed: the damaged release is back in place")

    # rollback: a kept release, its migrations reversed (or the pre-migrate backup), no rebuild
    def migrations(self, release: Path, alias: str) -> list[tuple[str, bool]]:
        """`showmigrations --plan` of ``release``'s own code against the database."""
        done = self.manage_run(release, (release / ".venv").resolve(),
                               ["showmigrations", "--plan", "--database", alias], capture_output=True, text=True)
        if done.returncode != 0:
            raise ReleaseFailed(EXIT_ROLLBACK, f"showmigrations failed in {short(release.name)}: "
                                               f"{done.stderr.strip()[-300:]}")
        return showmigrations_plan(done.stdout)

    def rollback(self, to: str | None, from_backup: bool) -> int:
        s = self.s
        started = time.monotonic()
        with locked(s.releases / ".lock"):
            if not s.app_link.is_symlink():
                raise ReleaseFailed(EXIT_ROLLBACK, "nothing is live: there is nothing to roll back")
            live = s.app_link.resolve()
            live_venv = (live / ".venv").resolve()
            record = json.loads(self.deployed_file.read_text()) if self.deployed_file.is_file() else {}
            kept = [p.name for p in s.releases.iterdir() if p.is_dir() and RELEASE_DIR_RE.match(p.name)
                    and (p / ".iac-built").is_file() and ((p / ".venv").resolve() / ".iac-complete").is_file()]
            target = s.releases / rollback_target(record.get("history", []), kept, live.name, to)
            self.commit = target.name[:40]
            self.log(f"rolling back from {short(live.name)} to {short(target.name)}")
            # what the older code does not know, per database and app, and whether it can be undone
            steps: list[tuple[str, str, str]] = []
            for alias in s.migrate_databases:
                applied = [m for m, done in self.migrations(live, alias) if done]
                known = [m for m, _ in self.migrations(target, alias)]
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
            s.backup_dir.mkdir(parents=True, exist_ok=True)
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
            self.go_live(self.commit, target, live)
            self.record(self.commit, inputs_hash(s), target, rolled_back_from=live.name[:40])
            self.log(f"rolled back to {short(target.name)} in {time.monotonic() - started:.1f} s; the declared "
                     f"revision is still {s.revision!r}: set source.revision = {self.commit!r} to keep it")
        print(json.dumps({"app": s.app, "commit": self.commit, "from": live.name[:40], "reversed": [] if from_backup
                          else [f"{label} -> {name}" for _, label, name in steps], "from_backup": from_backup,
            "seconds": round(time.monotonic() - started, 1)}))
        return 0

    def make_live(self, commit: str, release: Path, previous: Path | None, inputs: str) -> int:
        """Stages 2-5 (see the module docstring)."""
        s = self.s
        self.build(commit, release)
        venv = (release / ".venv").resolve()
        s.backup_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(s.backup_dir, 0o700)
        self.adopt_sqlite()
        self.back_up()
        self.migrate(release, venv, previous)
        self.release_commands(release, venv)
        self.go_live(commit, release, previous)
        self.record(commit, inputs, release)
        self.failed_file.unlink(missing_ok=True)
        self.prune(release)
        self.log(f"release {short(commit)} ({s.revision}) is live")
        return 0


def alert(release: Release, code: int, detail: str) -> None:
    """One message to the host's alert webhook; a failure to send is logged, never raised."""
    s = release.s
    live = s.app_link.resolve().name if s.app_link.is_symlink() and s.app_link.resolve().is_dir() else None
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
    body = json.dumps({"content": sys.stdin.read()}).encode()
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
    """Print what differs in the live release (nothing when it is intact or nothing is live)."""
    if s.app_link.is_symlink() and s.app_link.resolve().is_dir():
        for line in damage(s.app_link.resolve()):
            print(line)
    return 0


def manage_command(s: Settings, args: list[str]) -> int:
    """manage.py ARGS in the live release, as the app, with its unit's environment."""
    cmd = with_app_env(s, [f"{s.venv_link}/bin/python", "manage.py", *args], s.app_link / s.manage_dir)
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
