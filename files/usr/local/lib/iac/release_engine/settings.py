"""The release engine's settings: the contract between the converge (operations/app/release.py
builds it from the model) and the engine (reads it on the host, /etc/iac/apps/<app>.release).
Standard library only; unknown or missing keys are refused."""

from __future__ import annotations

import json
import os
import pwd
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SETTINGS_DIR = Path(os.environ.get("IAC_RELEASE_SETTINGS_DIR", "/etc/iac/apps"))


class SettingsError(ValueError):
    """A settings file this engine cannot take as it is (another version of the repository wrote it)."""


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
    settings_file: Path = Path()

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if not _is(getattr(self, f.name), hints[f.name]):
                raise SettingsError(f"{f.name}: {getattr(self, f.name)!r} is not {hints[f.name]}")

    @classmethod
    def from_dict(cls, data: dict, settings_file: Path = Path()) -> Settings:
        names = {f.name for f in fields(cls)} - {"settings_file"}
        if unknown := sorted(set(data) - names):
            raise SettingsError(f"unknown settings {', '.join(unknown)} (written by another version of the repo?)")
        hints = typing.get_type_hints(cls)
        values = {k: Path(v) if hints[k] is Path and isinstance(v, str) else v for k, v in data.items()}
        try:
            return cls(**values, settings_file=settings_file)
        except TypeError as e:  # a required key missing
            raise SettingsError(str(e)) from None

    def to_dict(self) -> dict:
        """What the converge writes (JSON: paths as strings; the file's own path left out)."""
        out = asdict(self)
        out.pop("settings_file")
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}

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


def _is(value: object, hint: object) -> bool:
    """Whether ``value`` has the type ``hint`` names (str, int, Path, list[...], dict[...], X | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_is(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_is(k, args[0]) and _is(v, args[1]) for k, v in value.items())
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)  # type: ignore[arg-type]
