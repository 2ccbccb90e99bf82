"""The release engine's settings: the contract between the converge (operations/app/release.py
builds it from the model) and the engine (reads it on the host, /etc/iac/apps/<app>.release).
Standard library only; an unknown, missing or mistyped key is refused (engine_common/contract.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from engine_common import contract
from engine_common.contract import SettingsError

SETTINGS_DIR = Path(os.environ.get("IAC_RELEASE_SETTINGS_DIR", "/etc/iac/apps"))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What the model declares for one app: built by the converge (operations/app/release.py
    ``release_settings``), written as JSON, read back here. Every field typed; an unknown,
    missing or mistyped key is refused, never half-read."""

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
    socket_unit: str = ""  # <unit>.socket, holding gunicorn's socket across restarts
    socket_unit_file: str = ""
    wsgi_app: str = ""
    gunicorn_config: str = ""
    timeout: int = 60
    sandboxing: list[str] = field(default_factory=list)  # the app units' confinement (Key=value lines)
    state_paths: list[str] = field(default_factory=list)  # what manage.py steps may write (state, logs)
    alert_env_file: str = ""  # EnvironmentFile= holding IAC_ALERT_WEBHOOK_URL ('' = no alerts)
    candidate_unit: str  # the new release's gunicorn before the switch (AppPaths.candidate_unit)
    candidate_socket: str  # its own socket (RuntimeDirectory= of that unit)
    settings_file: Path = Path()

    @classmethod
    def from_dict(cls, data: dict, settings_file: Path = Path()) -> Settings:
        """``data`` (the parsed file) checked key by key (engine_common/contract.py)."""
        if "settings_file" in data:
            raise SettingsError("settings_file is not a setting")
        return dataclasses.replace(contract.load(cls, data), settings_file=settings_file)

    def to_dict(self) -> dict:
        """What the converge writes (JSON: paths as strings; the file's own path left out)."""
        out = contract.dump(self)
        out.pop("settings_file")
        return out

    @classmethod
    def load(cls, app: str, directory: Path = SETTINGS_DIR) -> Settings:
        path = directory / f"{app}.release"
        return cls.from_dict(json.loads(path.read_text()), path)

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def git_ssh_command(self) -> str:
        return (f"ssh -i {self.key_path} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
                f"-o UserKnownHostsFile={self.known_hosts}")

