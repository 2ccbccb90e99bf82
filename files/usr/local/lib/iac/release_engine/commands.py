"""The commands the engine runs: as the app user, confined as its units are (transient systemd
units), the candidate gunicorn, the health check, restores through the backup engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .codes import ReleaseFailed
from .settings import Settings

# the backup engine beside this package: one implementation of restores
BACKUP_ENGINE = Path(__file__).resolve().parent.parent / "iac_backup.py"


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
            "-p", f"WorkingDirectory={release / s.manage_dir}", "-p", f"RuntimeDirectory={Path(sock).parent.name}",
            "-p", "RuntimeDirectoryMode=0755", f"--setenv=HOME=/home/{s.user}", "--",
            f"{venv}/bin/gunicorn", s.wsgi_app, *(["--config", s.gunicorn_config] if s.gunicorn_config else []),
            "--bind", f"unix:{sock}", "--workers", "1", "--timeout", str(s.timeout),
            "--access-logfile", "-", "--error-logfile", "-"]


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
