"""Every path of one app on its host (AppPaths), derived once, and the sandboxing of everything
the app runs."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from iac.paths import (
    GUNICORN_CONFIG,
    NGINX_SITES_AVAILABLE,
    NGINX_SITES_ENABLED,
    RELEASE_SETTINGS_DIR,
    RELEASE_STATE_DIR,
    RUNTIME_DIR,
)
from operations.app.options import DjangoApp

# The sandboxing of everything an app runs: its gunicorn and process units (the templates write
# these lines) and the release engine's transient units for builds, manage.py steps and the
# candidate gunicorn (passed in the release settings). One list: a package's install script or a
# manage.py command runs as confined as the app itself, and the two cannot drift apart.
APP_SANDBOXING = (
    "NoNewPrivileges=yes", "PrivateTmp=yes", "PrivateDevices=yes", "ProtectSystem=strict", "ProtectHome=yes",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
    "ProtectClock=yes", "ProtectHostname=yes", "RestrictSUIDSGID=yes", "RestrictRealtime=yes",
    "RestrictNamespaces=yes", "LockPersonality=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures=native", "CapabilityBoundingSet=", "UMask=0027",
)


@dataclass(frozen=True)
class AppPaths:
    """Every path of one app on its host, derived here only and passed to templates, facts and
    the release engine (which reads them from its settings file)."""

    env_file: str          # EnvironmentFile= of every unit of the app (secrets; root:<user> 0640)
    release_settings: str  # the release engine's settings (JSON, no secrets)
    releases: str          # release directories, the git mirror, caches (the app user's: it builds there)
    state_dir: str         # root's records of the app's releases (root 0700; the app can forge none)
    deployed: str          # what the last release made live (read by the DeployedRelease fact), in state_dir
    lock: str              # one release engine run at a time per app (root-only RUNTIME_DIR)
    deploy_key: str        # the app's deploy key (made on the host as the app user, never replaced)
    known_hosts: str       # the git host's pinned key: root's file, the app cannot change it
    app_link: str          # -> the live release
    venv_link: str         # -> the live release's virtualenv
    code_dir: str          # manage.py's directory in the live release (WorkingDirectory=)
    static_root: str       # collectstatic's target in the live release (nginx's /static/)
    gunicorn: str          # ExecStart's program
    gunicorn_config: str   # settings some gunicorn versions lack (files/usr/local/lib/iac/gunicorn_conf.py)
    runtime_dir: str       # RuntimeDirectory= name (under /run)
    socket: str            # gunicorn's socket, held by systemd (socket_unit): nginx and the health check connect
    socket_unit: str       # <unit>.socket: keeps the socket (and queued connections) across restarts
    socket_unit_file: str
    unit_file: str
    backup_dir: str        # pre-migrate database snapshots
    site_enabled: str      # the app's nginx site as enabled (the release checks through it once it exists)
    site_available: str    # the app's nginx site
    logrotate: str | None  # /etc/logrotate.d/<log dir's parent>-<app>, when the app has a log_dir
    venvs: str             # its virtualenvs, one per requirements (the release engine names them)
    process_units: dict[str, str]  # process name -> unit name
    process_unit_files: dict[str, str]  # unit name -> unit file
    candidate_unit: str    # the new release's gunicorn, checked before the switch (a transient unit)
    candidate_socket: str  # its own socket


def app_paths(name: str, app: DjangoApp, app_env_dir: str) -> AppPaths:
    """The paths of app ``name`` (see AppPaths), derived here only."""
    # manage.py's directory; '/srv/apps/<app>/' for an app at the top (as units always had it)
    code = f"/srv/apps/{name}/{app.manage_dir}"
    units = {proc: p.unit or f"{name}-{proc}" for proc, p in app.processes.items()}
    return AppPaths(
        env_file=f"{app_env_dir}/{name}.env",
        release_settings=f"{RELEASE_SETTINGS_DIR}/{name}.release",
        releases=f"/srv/releases/{name}",
        state_dir=f"{RELEASE_STATE_DIR}/{name}",
        deployed=f"{RELEASE_STATE_DIR}/{name}/deployed.json",
        lock=f"{RUNTIME_DIR}/release-{name}.lock",
        deploy_key=f"/home/{app.user}/.ssh/id_ed25519",
        known_hosts=f"{RELEASE_SETTINGS_DIR}/{name}.known_hosts",
        app_link=f"/srv/apps/{name}",
        venv_link=f"/srv/venvs/{name}",
        code_dir=code,
        static_root=posixpath.join(code, app.static_dir),
        gunicorn=f"/srv/venvs/{name}/bin/gunicorn",
        gunicorn_config=GUNICORN_CONFIG,
        runtime_dir=app.unit,
        socket=f"/run/{app.unit}/gunicorn.sock",
        socket_unit=f"{app.unit}.socket",
        socket_unit_file=f"/etc/systemd/system/{app.unit}.socket",
        unit_file=f"/etc/systemd/system/{app.unit}.service",
        backup_dir=f"/var/backups/iac/{name}",
        site_enabled=f"{NGINX_SITES_ENABLED}/{app.nginx.name}",
        site_available=f"{NGINX_SITES_AVAILABLE}/{app.nginx.name}",
        logrotate=(f"/etc/logrotate.d/{posixpath.basename(posixpath.dirname(app.log_dir))}-{name}"
                   if app.log_dir else None),
        venvs=f"/srv/venvs/.{name}-*",
        process_units=units,
        process_unit_files={u: f"/etc/systemd/system/{u}.service" for u in units.values()},
        candidate_unit=f"iac-candidate-{name}",
        candidate_socket=f"/run/iac-candidate-{name}/gunicorn.sock",
    )
