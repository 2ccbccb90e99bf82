"""A Django app under gunicorn and systemd, deployed in releases. One implementation, both hosts.

Stages, and why in this order:
  install   packages (python3-venv, git, sqlite3, node when building a front end)
  identity  system user and group, deploy key (made on the host once, never overwritten),
            the git host's key pinned in known_hosts
  configure env file (secrets, 0640 root:<app>), release settings, the unit (verified), and
            the app's state/log directories
  activate  iac-app-release (the release engine, files/usr/local/lib/iac/iac_release.py):
            fetch, build, back up + migrate, switch, restart, health check. It runs only when
            the revision or an input (env file, unit, release settings) differs from what is
            live, which a fact reads from the host.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import OperationError, StringCommand, operation
from pyinfra.facts.files import Directory, File
from pyinfra.operations import files, server, systemd

from iac.guarded import secret_file, validated_file, validated_files
from iac.packages import packages_present
from iac.paths import GUNICORN_CONFIG, STAGED
from iac.render import render, text_file
from iac.repo import FILES, TEMPLATES
from operations.app.facts import COMMIT_RE, DeployedRelease, GitRemoteCommit, ReleaseDamage
from operations.app.options import DjangoApp, PostgresDatabase, SqliteDatabase
from operations.app.paths import APP_SANDBOXING
from operations.host import HostConfig

RELEASE_SCRIPT = "/usr/local/sbin/iac-app-release"
RELEASE_ENGINE = "/usr/local/lib/iac/iac_release.py"
# the commands an operator types; each a two-line wrapper of the engine (files/usr/local/sbin/)
RELEASE_COMMANDS = (RELEASE_SCRIPT, "/usr/local/sbin/iac-manage")

def env_file_path(config: HostConfig, name: str) -> str:
    return config.app_paths(name).env_file


def _context(config: HostConfig, name: str, app: DjangoApp) -> dict:
    paths = config.app_paths(name)
    pg = [db for db in [app.database, *app.extra_databases.values()] if isinstance(db, PostgresDatabase)]
    canonical = app.nginx.server_names[0]
    host_header = canonical if canonical != "_" else "localhost"
    allowed = list(app.allowed_hosts)
    if config.network is not None and (ip := config.network.address.split("/")[0]) not in allowed:
        allowed.append(ip)  # the address the host is reached by on the LAN
    # the origins browsers send for the site's names: with the port unless it is the scheme's own
    scheme, port = ("https", 443) if app.nginx.tls else ("http", app.nginx.port)
    suffix = "" if port in (80, 443) else f":{port}"
    csrf_origins = [f"{scheme}://{'*' + h if h.startswith('.') else h}{suffix}"
                    for h in app.nginx.server_names if h != "_"]
    return {
        "name": name,
        "app": app,
        "paths": paths,
        "environment": app_environment(app, name, allowed, csrf_origins),
        "allowed_hosts": allowed,
        "env_file": paths.env_file,
        "csrf_origins": csrf_origins,
        "pg_databases": [db.name for db in pg],
        "migrate_databases": ["default", *app.extra_databases],
        "uses_postgres": bool(pg),
        "host_header": host_header,
        # ExecStart's program: the unit runs it, the unit check accepts its absence before release 1
        "gunicorn": paths.gunicorn,
        # the release is checked on gunicorn's socket, as nginx will call it
        "health_url": f"http://localhost{app.health.path}",
        "health_socket": paths.socket,
        "health_headers": [f"Host:{host_header}", *(["X-Forwarded-Proto:https"] if app.nginx.tls else [])],
        # after the switch, through nginx as users reach it (once the site exists)
        "nginx_health_url": (f"https://{host_header}{app.health.path}" if app.nginx.tls
                             else f"http://{host_header}:{app.nginx.port}{app.health.path}"),
        "nginx_resolve": f"{host_header}:{443 if app.nginx.tls else app.nginx.port}:127.0.0.1",
        "sqlite_state_dir": (app.database.path.removeprefix("/var/lib/").rsplit("/", 1)[0]
                             if app.database.engine == "sqlite" else ""),
        "logs_directory": (app.log_dir or "").removeprefix("/var/log/"),
        # the unit lines that confine the app (the release engine's transient units get the same)
        "sandboxing": APP_SANDBOXING,
    }


def app_environment(app: DjangoApp, name: str, allowed_hosts: list[str], csrf_origins: list[str]) -> dict[str, str]:
    """The app's environment, in the order the env file lists it: what the repo derives from the
    model, under the names the app reads (``settings_env``; ``DjangoApp.managed_env_keys``
    reserves them), then ``env``, then ``secret_env``."""
    names = app.settings_env
    env = {"DJANGO_SETTINGS_MODULE": app.settings_module, names.secret_key: app.secret_key.get_secret_value()}

    def put(variable: str | None, value: str) -> None:
        if variable is not None:  # None: the app reads no such variable
            env[variable] = value

    put(names.debug, "0")
    put(names.allowed_hosts, ",".join(allowed_hosts))
    if csrf_origins:
        put(names.csrf_trusted_origins, ",".join(csrf_origins))
    put(names.secure_cookies, "1" if app.nginx.tls else "0")
    if isinstance(app.database, SqliteDatabase):
        put(names.use_sqlite, "1")
        put(names.sqlite_path, app.database.path)
    else:
        put(names.use_sqlite, "0")
        put(names.postgres_db, app.database.name)
        put(names.postgres_user, app.database.role)
        put(names.postgres_host, "")
    for prefix, db in app.extra_databases.items():
        env |= {f"{prefix.upper()}_POSTGRES_DB": db.name, f"{prefix.upper()}_POSTGRES_USER": db.role,
                f"{prefix.upper()}_POSTGRES_HOST": ""}
    if app.discord_alerts:
        alerts = app.discord_alerts
        env |= {
            "DISCORD_WEBHOOK_URL": alerts.webhook_url.get_secret_value(),
            "DISCORD_ALERTS_ENABLED": "true" if alerts.enabled else "false",
            "DISCORD_ALERTS_DEDUP_SECONDS": str(alerts.dedup_seconds),
            "DISCORD_ALERTS_TIMEOUT_SECONDS": str(alerts.timeout_seconds),
            "DISCORD_ALERTS_APP_NAME": name,
            "DISCORD_ALERTS_ENV": alerts.environment,
        }
    # the model refuses env/secret_env names that the repo sets: nothing below overrides the above
    env |= dict(app.env)
    env |= {k: v.get_secret_value() for k, v in app.secret_env.items()}
    return env


def release_settings(config: HostConfig, name: str, app: DjangoApp, ctx: dict) -> dict:
    """What the release engine reads (``AppPaths.release_settings``, JSON, no secrets)."""
    db = app.database
    paths = config.app_paths(name)
    return {
        "app": name,
        "user": app.user,
        "repo_url": app.source.url,
        "revision": app.source.revision,
        "manage_dir": app.manage_dir,
        "env_file": paths.env_file,
        "unit": app.unit,
        "unit_file": paths.unit_file,
        "releases": paths.releases,
        "state_dir": paths.state_dir,
        "lock_file": paths.lock,
        "key_path": paths.deploy_key,
        "known_hosts": paths.known_hosts,
        "app_link": paths.app_link,
        "venv_link": paths.venv_link,
        "keep_releases": app.keep_releases,
        "backup_dir": paths.backup_dir,
        "db_engine": db.engine,
        "sqlite_path": db.path if isinstance(db, SqliteDatabase) else "",
        "adopt_sqlite_from": (db.adopt_from or "") if isinstance(db, SqliteDatabase) else "",
        "pg_databases": ctx["pg_databases"],
        "pg_main_db": db.name if isinstance(db, PostgresDatabase) else "",
        # a restore runs as the database's owner, never as the superuser on the app's content
        "pg_owners": {d.name: d.role for d in [db, *app.extra_databases.values()] if isinstance(d, PostgresDatabase)},
        "import_sqlite_from": (db.import_sqlite_from or "") if isinstance(db, PostgresDatabase) else "",
        "migrate_databases": ctx["migrate_databases"],
        "frontend_inputs": list(app.frontend_build.inputs) if app.frontend_build else None,
        "frontend_outputs": list(app.frontend_build.outputs) if app.frontend_build else [],
        "health_url": ctx["health_url"],
        "health_status": app.health.status,
        "health_socket": ctx["health_socket"],
        "health_headers": ctx["health_headers"],
        "nginx_site": paths.site_enabled,
        "nginx_health_url": ctx["nginx_health_url"],
        "nginx_resolve": ctx["nginx_resolve"],
        "extra_requirements": list(app.extra_requirements),
        "static_dir": app.static_dir,
        "static_root_env": app.settings_env.static_root or "",
        "sqlite_env": [app.settings_env.use_sqlite or "", app.settings_env.sqlite_path or ""],
        "release_commands": [list(c) for c in app.release_commands],
        "process_units": paths.process_unit_files,
        "socket_unit": paths.socket_unit,
        "socket_unit_file": paths.socket_unit_file,
        "wsgi_app": app.wsgi_app,
        "gunicorn_config": paths.gunicorn_config,
        "timeout": app.timeout,
        # builds, manage.py steps and the candidate gunicorn run as confined as the app's units
        "sandboxing": list(APP_SANDBOXING),
        # what those may write besides the release being built: the app's state and log directories
        "state_paths": [*([str(Path(db.path).parent)] if isinstance(db, SqliteDatabase) else []),
                        # moving from SQLite: the first migrate runs on the old file
                        *([str(Path(db.import_sqlite_from).parent)] if isinstance(db, PostgresDatabase)
                          and db.import_sqlite_from else []),
                        *([app.log_dir] if app.log_dir else [])],
        # a failed release posts one message to the host's operator webhook (backups.alerts)
        "alert_env_file": config.backups.alerts.env_file if config.backups and config.backups.alerts else "",
    }


def release_engine() -> None:
    """The release engine and its commands, on every host with apps (before the apps: each
    app's release runs it)."""
    files.directory(name="Directory /usr/local/lib/iac", path="/usr/local/lib/iac", mode="755")
    files.put(name="Release engine iac_release.py", src=str(FILES / RELEASE_ENGINE.lstrip("/")),
              dest=RELEASE_ENGINE, mode="755")
    files.put(name="gunicorn settings of every app", src=str(FILES / GUNICORN_CONFIG.lstrip("/")),
              dest=GUNICORN_CONFIG, mode="644")
    for script in RELEASE_COMMANDS:
        files.put(name=f"Command {script}", src=str(FILES / script.lstrip("/")), dest=script, mode="755")
    files.put(name="Command /usr/local/sbin/iac-alert-test",
              src=str(TEMPLATES / "usr/local/sbin/iac-alert-test"), dest="/usr/local/sbin/iac-alert-test", mode="755")


def _inputs_hash(*texts: str) -> str:
    return hashlib.sha256("".join(texts).encode()).hexdigest()


@operation()
def release_live(app: str, revision: str, repo_url: str, user: str, key: str, known_hosts: str, inputs: str,
                 deployed: str):
    """
    Ensure the app's declared revision is live with the declared inputs, and intact: a live
    release whose files or virtualenv differ from what went live is rebuilt (runs iac-app-release).

    + app: app name (``/etc/iac/apps/APP.release`` holds its settings)
    + revision: tag, branch or commit that must be live
    + repo_url: the repository (asked for the commit the revision names)
    + user: the app user, whose deploy key reads the repository
    + key: its deploy key (``AppPaths.deploy_key``)
    + known_hosts: the git host's pinned key (``AppPaths.known_hosts``)
    + inputs: sha256 of env file + unit files + release settings as declared
    + deployed: the file the engine records what it made live in (``AppPaths.deployed``)

    **Example:**

    .. code:: python

        release_live(name="Release chip_dashboard", app="chip_dashboard", revision="v2",
                     repo_url="git@github.com:o/r.git", user="chip_dashboard",
                     key="/home/chip_dashboard/.ssh/id_ed25519",
                     known_hosts="/etc/iac/apps/chip_dashboard.known_hosts", inputs=digest,
                     deployed="/var/lib/iac/releases/chip_dashboard/deployed.json")
    """
    live = host.get_fact(DeployedRelease, path=deployed)
    if not live:
        # a first release is a change whatever commit the revision names; a bare host cannot ask
        # the remote yet (no git, no deploy key), so a fresh server's preview does not try
        host.noop(release_difference(app, revision, None, live, inputs, []))
        yield StringCommand(RELEASE_SCRIPT, app)
        return
    if COMMIT_RE.match(revision):
        wanted = revision
    else:
        remote = host.get_fact(GitRemoteCommit, url=repo_url, revision=revision, user=user, key=key,
                               known_hosts=known_hosts)
        if remote["error"]:
            # an error, not a change: the drift gate must say "cannot tell" (exit 1), not "drift"
            raise OperationError(f"{app}: cannot ask {repo_url} which commit {revision!r} is: {remote['error']}")
        if remote["asked"] and remote["commit"] is None:
            raise OperationError(f"{app}: {repo_url} has no tag or branch {revision!r} (source.revision)")
        wanted = remote["commit"]
    damaged = host.get_fact(ReleaseDamage, engine=RELEASE_ENGINE, app=app)
    if live and wanted and live.get("commit") == wanted and live.get("inputs") == inputs and not damaged:
        return
    host.noop(release_difference(app, revision, wanted, live, inputs, damaged))
    yield StringCommand(RELEASE_SCRIPT, app)


def release_difference(app: str, revision: str, wanted: str | None, live: dict | None, inputs: str,
                       damaged: list[str]) -> str:
    """What differs between the live release and the declared one, in the drift report's words.

    Tells apart a change upstream ("release pending": the declared branch moved, nothing on the
    host changed) from a change made on the host (a rollback, a damaged release) and from a
    change of the stack (another revision or other settings declared)."""
    if not live:
        return f"{app}: nothing live yet: first release of {revision!r}"
    commit = live.get("commit") or ""
    if commit == wanted:
        if damaged:
            # paths and package names, never contents
            return f"{app}: live release damaged (changed on the host): {'; '.join(damaged)}"
        if live.get("inputs") != inputs:
            return f"{app}: settings changed in the stack (env file, units or release settings): released again"
        return f"{app}: release {commit[:12]} to be checked again"
    if live.get("rolled_back_from"):
        return (f"{app}: changed on the host: live release {commit[:12]} was rolled back from "
                f"{live['rolled_back_from'][:12]} (make rollback); the stack declares {revision!r} "
                f"({(wanted or '')[:12]}): set source.revision to keep it, or converge to release the declared one")
    if live.get("revision") == revision and not COMMIT_RE.match(revision):
        return (f"{app}: release pending: {revision!r} moved upstream from {commit[:12]} (live) to "
                f"{(wanted or '')[:12]}; nothing changed on the host. `make release APP={app}` pins and releases it")
    declared = repr(revision) if COMMIT_RE.match(revision) else f"{revision!r} ({(wanted or '')[:12]})"
    return f"{app}: the stack declares {declared}; live is {live.get('revision')!r} ({commit[:12]})"


def _verify_units(binaries: list[str]) -> str:
    # `systemd-analyze verify` also says that ExecStart's binary is not executable, which is
    # true until the first release makes the virtualenv; that line, for these binaries only, is
    # accepted. Every other line (a parse error, a misspelt path) refuses the units.
    accepted = " ".join(f"-e {shlex.quote(f'Command {b} is not executable: No such file or directory')}"
                        for b in binaries)
    return ("out=$(systemd-analyze verify {paths} 2>&1); "
            f"if printf '%s\\n' \"$out\" | grep -vF {accepted} | grep -q .; "
            "then printf '%s\\n' \"$out\"; exit 1; fi")


def app_identity(config: HostConfig, name: str, app: DjangoApp) -> None:
    """The app's system user, its deploy key (made once on the host) and the pinned git host key.

    The app's home is the app's: everything root does there (the ~/.ssh directory, a restored
    key) runs as the app user, so a link the app plants there is never followed by root. The
    pinned host key is root's file outside it: the app can neither redirect nor change it."""
    server.group(name=f"App group {app.user}", group=app.user, system=True)
    if config.apps_group:
        server.group(name=f"Group {config.apps_group} of all apps", group=config.apps_group, system=True)
    server.user(
        name=f"App user {app.user}", user=app.user, group=app.user, system=True,
        groups=[config.apps_group] if config.apps_group else None,
        home=f"/home/{app.user}", shell="/usr/sbin/nologin", create_home=True, ensure_home=True,
    )
    paths = config.app_paths(name)
    key = paths.deploy_key
    app_user_directory(name=f"{app.user}: ~/.ssh (made as the app user)", user=app.user,
                       path=str(Path(key).parent), mode="700")
    # Made on the host, once: the private key never leaves it. `make deploy-keys` shows the
    # public half for registering on the git host.
    # a rebuild after a disaster (`make dr`) staged the old host's state: its key is still the one
    # registered on the git host
    ss = config.backups.offsite.system_state if config.backups else None
    deploy_key(name=f"{app.user}: deploy key (made once, never replaced)", user=app.user, path=key,
               comment=f"{app.user}@{config.host.hostname}", restored=f"{ss.staging_dir}{key}" if ss else None)
    git_host = _git_host(app.source.url)
    files.put(
        name=f"{name}: pinned host key of {git_host}",
        src=text_file(f"{git_host} {app.source.host_key}\n"),
        dest=paths.known_hosts, user="root", group="root", mode="644",
    )


def django_app(config: HostConfig, name: str, app: DjangoApp) -> None:
    """Declare one app, from packages to a live release (see module docstring for stages)."""
    ctx = _context(config, name, app)

    # ---- install
    # (Node.js for front-end builds comes from operations/node/deploy.py, before the apps)
    pkgs = ["python3-venv", "git", "curl", "sqlite3", "util-linux"] + (["logrotate"] if app.log_dir else [])
    packages_present(pkgs, config.base.apt_cache_hours, f"app {name}")

    # ---- identity
    app_identity(config, name, app)

    # ---- configure
    files.directory(name="Directory for app env files", path=config.app_env_dir, user="root",
                    group="root", mode="755")
    env_text = render("etc/iac/apps/app.env.j2", **ctx)
    secret_file(name=f"{name}: env file (secrets)", dest=ctx["env_file"], content=env_text,
                user="root", group=app.user, mode="640", env=True)
    paths = ctx["paths"]
    release_text = json.dumps(release_settings(config, name, app, ctx), indent=2) + "\n"
    files.directory(name="Directory for release settings", path=str(Path(paths.release_settings).parent),
                    mode="755")
    files.put(name=f"{name}: release settings", src=text_file(release_text),
              dest=paths.release_settings, mode="644")

    files.directory(name="Staging directory for units", path=f"{STAGED}/etc/systemd/system", mode="755")
    # the socket first: the service requires it, and its check by systemd looks the socket up
    socket_text = render("etc/systemd/system/gunicorn.socket.j2", **ctx)
    service_text = render("etc/systemd/system/gunicorn.service.j2", **ctx)
    units = [(paths.socket_unit, paths.socket_unit_file, socket_text), (app.unit, paths.unit_file, service_text)]
    # the release engine hashes the same texts in the same order (iac_release.py inputs_hash)
    unit_texts = [service_text, socket_text]
    for proc, unit in paths.process_units.items():
        text = render("etc/systemd/system/app-process.service.j2", process=proc, process_unit=unit,
                      command=app.processes[proc].command, **ctx)
        unit_texts.append(text)
        units.append((unit, paths.process_unit_files[unit], text))
    # Checked together by systemd (the service requires the socket, the socket activates the
    # service), so a set that does not load together never goes live. daemon-reload only: the
    # release step below restarts the units (they are among its inputs) after the new release is
    # built, so a changed unit costs one restart, which the socket makes invisible to users.
    others = [u for u, _, _ in units if u != app.unit]
    validated_files(
        name=f"{name}: unit {app.unit} (verified, live) with {', '.join(others)}",
        files={path: text for _, path, text in units},
        validate=_verify_units([paths.gunicorn, f"{paths.venv_link}/bin/python"]),
        activate="systemctl daemon-reload", staging=f"{STAGED}/app-units-{name}",
    )
    for d in ("/srv/apps", "/srv/venvs", "/srv/releases"):
        files.directory(name=f"Directory {d}", path=d, mode="755")
    if app.database.engine == "sqlite":
        files.directory(name=f"{name}: SQLite directory", path=str(Path(app.database.path).parent),
                        user=app.user, group=app.user, mode="750")
    if app.log_dir:
        files.directory(name=f"{name}: log directory", path=app.log_dir, user=app.user,
                        group=app.user, mode="750")
        rotate = paths.logrotate
        files.directory(name="Staging directory for logrotate", path=f"{STAGED}/etc/logrotate.d", mode="755")
        files.put(name=f"{name}: log rotation (staged)", src=text_file(render("etc/logrotate.d/gts-app.j2", **ctx)),
                  dest=f"{STAGED}{rotate}", mode="644")
        validated_file(name=f"{name}: log rotation (checked with logrotate -d, live)", staged=f"{STAGED}{rotate}",
                       dest=rotate, validate="logrotate -d {path}", activate="true")

    # ---- activate
    release_live(
        name=f"{name}: release {app.source.revision} live", app=name, revision=app.source.revision,
        repo_url=app.source.url, user=app.user, key=paths.deploy_key, known_hosts=paths.known_hosts,
        inputs=_inputs_hash(env_text, *unit_texts, release_text), deployed=paths.deployed,
    )
    for unit in (paths.socket_unit, app.unit, *paths.process_units.values()):
        systemd.service(name=f"{name}: {unit} running and enabled", service=unit, running=True, enabled=True)


def _git_host(url: str) -> str:
    """known_hosts name of the git server in an SSH URL (with [host]:port for other ports)."""
    m = re.match(r"^ssh://(?:[^@/]+@)?([^/:]+)(?::(\d+))?/", url) or re.match(r"^[^@]+@([^:]+):", url)
    if not m:
        raise ValueError(f"cannot find the host in git URL {url!r}")
    port = m.group(2) if m.re.groups > 1 else None
    return f"[{m.group(1)}]:{port}" if port and port != "22" else m.group(1)


@operation()
def deploy_key(user: str, path: str, comment: str, restored: str | None = None):
    """
    Ensure an SSH key pair exists for ``user``; an existing key is never replaced.

    + user: owner of the key (the key is made as this user)
    + path: private key path; the public key is ``path + ".pub"``
    + comment: key comment
    + restored: where a disaster-recovery restore staged the old host's key: used, if there,
      instead of making a new one (which would have to be registered on the git host again)

    **Example:**

    .. code:: python

        deploy_key(name="Deploy key", user="shop_scheduler",
                   path="/home/shop_scheduler/.ssh/id_ed25519", comment="shop_scheduler@gts-server")
    """
    if host.get_fact(File, path=path):
        return
    if restored and host.get_fact(File, path=restored):
        # root reads the staged copy; the app user writes its own file (root never writes there)
        for src, dest, mode in ((restored, path, "600"), (f"{restored}.pub", f"{path}.pub", "644")):
            write = shlex.quote(f"umask 077 && cat > {dest} && chmod {mode} {dest}")
            yield StringCommand(f"runuser -u {user} -- sh -c {write} < {shlex.quote(src)}")
        return
    yield StringCommand(f"runuser -u {user} -- ssh-keygen -q -t ed25519 -N '' -C {comment} -f {path}")


@operation()
def app_user_directory(user: str, path: str, mode: str):
    """
    Ensure a directory in an app user's own tree exists with ``mode``, made by that user: root
    never creates, chowns or chmods a path the app could have replaced with a link.

    + user: the app user (owner of the directory and of its parent)
    + path: the directory
    + mode: its permissions (octal string)

    **Example:**

    .. code:: python

        app_user_directory(name="~/.ssh", user="shop_scheduler", path="/home/shop_scheduler/.ssh", mode="700")
    """
    info = host.get_fact(Directory, path=path)
    if info and info["user"] == user and info["mode"] == int(mode):
        return
    if info is False:
        raise OperationError(f"{path} exists and is not a directory (a link?): remove it, then run again")
    yield StringCommand(f"runuser -u {user} -- sh -c {shlex.quote(f'mkdir -p {path} && chmod {mode} {path}')}")
