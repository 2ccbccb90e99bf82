"""Every path of one app on its host (AppPaths), derived once, and the sandboxing of everything
the app runs."""

from __future__ import annotations

from dataclasses import dataclass

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
