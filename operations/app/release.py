"""An app's release: the release engine and its commands on the host, the settings it reads
(the typed contract, release_engine/settings.py), and the operation that makes the declared
revision live when it is not (release_live), saying what differs in drift's words."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pyinfra import host
from pyinfra.api import OperationError, StringCommand, operation

from iac.engines import ReleaseSettings
from iac.ops import files
from iac.paths import GUNICORN_CONFIG, HOST
from iac.repo import FILES, TEMPLATES
from operations.app.facts import COMMIT_RE, DeployedRelease, GitRemoteCommit, ReleaseDamage
from operations.app.options import DjangoApp, PostgresDatabase, SqliteDatabase
from operations.app.paths import APP_SANDBOXING
from operations.host import HostConfig

RELEASE_SCRIPT = "/usr/local/sbin/iac-app-release"


RELEASE_ENGINE = HOST.release_engine


# the commands an operator types; each a two-line wrapper of the engine (files/usr/local/sbin/)
RELEASE_COMMANDS = (RELEASE_SCRIPT, "/usr/local/sbin/iac-manage")


def release_settings(config: HostConfig, name: str, app: DjangoApp, ctx: dict) -> ReleaseSettings:
    """What the release engine reads (``AppPaths.release_settings``, JSON, no secrets): its typed
    settings (release_engine/settings.py), refused here if a value has the wrong type."""
    db = app.database
    paths = config.app_paths(name)
    return ReleaseSettings.from_dict({
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
        "candidate_unit": paths.candidate_unit,
        "candidate_socket": paths.candidate_socket,
    })


def release_engine() -> None:
    """The release engine's commands, on every host with apps (before the apps: each app's release
    runs them; the engine itself is shipped with the other host engines: iac/engines.py)."""
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
