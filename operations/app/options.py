"""Options of a Django app under gunicorn (apps.<name>): its source, databases, site, health
check, environment, processes, alerts."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from iac.values import (
    FOREIGN_TREES,
    OFFLINE_URL,
    SYSTEM_DIRS,
    AllowedHost,
    AnyFile,
    EnvKey,
    GitUrl,
    HostKey,
    Ident,
    ManageCommand,
    ModulePath,
    PipPin,
    RepoPath,
    Revision,
    Strict,
    UnitName,
    UrlPath,
    Username,
    WsgiTarget,
    _check,
    _check_abs_path,
    _check_https_url,
    _check_repo_path,
    option_error,
    path_under,
    secret,
    type_name,
)
from operations.nginx.options import NginxSite

# github.com's published ed25519 host key (docs.github.com, "GitHub's SSH key fingerprints")
GITHUB_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class GitSource(Strict):
    url: GitUrl = Field(
        description="Repository, fetched over SSH with the app's deploy key.",
        examples=["git@github.com:RockSolid-Data/gts-rental-scheduler.git"],
    )
    host_key: HostKey = Field(
        default=GITHUB_HOST_KEY,
        description="The git server's SSH host key, pinned in the app user's known_hosts.",
        examples=[GITHUB_HOST_KEY],
    )
    revision: Revision = Field(
        description="What to deploy: a tag, a branch or a full commit id.",
        examples=["v2", "main", "4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e"],
    )


@type_name("path /var/lib/<dir>/<file>")
def _check_sqlite_path(value: str) -> str:
    _check_abs_path(value, "/var/lib/chip_dashboard/db.sqlite3")
    parts = value.split("/")
    if len(parts) != 5 or parts[1:3] != ["var", "lib"]:
        raise ValueError(f"{value!r} must be /var/lib/<dir>/<file>: <dir> becomes the unit's StateDirectory "
                         "(example: '/var/lib/chip_dashboard/db.sqlite3')")
    if f"/var/lib/{parts[3]}" in SYSTEM_DIRS or f"/var/lib/{parts[3]}" in FOREIGN_TREES:
        raise ValueError(f"{value!r}: /var/lib/{parts[3]} belongs to the system or another service "
                         "(example: '/var/lib/chip_dashboard/db.sqlite3')")
    return value


@type_name("relative path inside the repository, or '' for its top")
def _check_manage_dir(value: str) -> str:
    return value and _check_repo_path(value)


class SqliteDatabase(Strict):
    engine: Literal["sqlite"] = Field(description="SQLite file (USE_SQLITE=1).", examples=["sqlite"])
    path: Annotated[str, AfterValidator(_check_sqlite_path)] = Field(
        description="The database file, /var/lib/<dir>/<file> (<dir> is the unit's StateDirectory, owned by "
                    "the app user).",
        examples=["/var/lib/chip_dashboard/db.sqlite3"],
    )
    adopt_from: AnyFile | None = Field(
        default=None,
        description=(
            "A database file of a hand-built install to take over on the first deploy: when `path` does "
            "not exist yet, the old file is backed up and copied there (the old file is left as it was)."
        ),
        examples=["/root/Chips_dashboard/chip_dashboard/db.sqlite3"],
    )


class PostgresDatabase(Strict):
    engine: Literal["postgresql"] = Field(description="A local PostgreSQL database.", examples=["postgresql"])
    name: Ident = Field(description="Database name.", examples=["gts_scheduler"])
    role: Ident = Field(
        description="Role the app connects as (peer authentication over the unix socket, no password).",
        examples=["rental_scheduler_user"],
    )
    import_sqlite_from: AnyFile | None = Field(
        default=None,
        description=(
            "Moving from SQLite: on the first deploy that finds this database without Django's tables, "
            "the app is stopped, this SQLite file is backed up, brought to the release's migrations and its "
            "data moved in with dumpdata/loaddata. The file is kept."
        ),
        examples=["/var/lib/chip_dashboard/db.sqlite3"],
    )


Database = Annotated[SqliteDatabase | PostgresDatabase, Field(discriminator="engine")]


class DiscordAlerts(Strict):
    webhook_url: SecretStr = Field(
        description="SECRET. Discord webhook URL (DISCORD_WEBHOOK_URL), from the secrets file.",
        examples=["https://discord.com/api/webhooks/<id>/<token>"], json_schema_extra={"placeholder": OFFLINE_URL},
    )
    enabled: bool = Field(default=True, description="DISCORD_ALERTS_ENABLED", examples=[True])
    dedup_seconds: int = Field(default=300, ge=0, description="DISCORD_ALERTS_DEDUP_SECONDS", examples=[300])
    timeout_seconds: int = Field(default=2, ge=1, le=30, description="DISCORD_ALERTS_TIMEOUT_SECONDS",
                                 examples=[2])
    environment: Annotated[str, _check(re.compile(r"[A-Za-z0-9_.-]{1,32}"), "environment label", "prod")] = Field(
        default="prod", description="DISCORD_ALERTS_ENV", examples=["prod"])

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        _check_https_url(value.get_secret_value(), "https://discord.com/api/webhooks/<id>/<token>", secret=True)
        return value


class FrontendBuild(Strict):
    """`npm ci` + `npm run build` as the app user, for a release whose build inputs changed."""

    inputs: list[RepoPath] = Field(
        min_length=1,
        description="Paths in the repository the build reads (package files, CSS, templates, the "
                    "tailwind or build config). A release whose inputs are the same, file for file, "
                    "as an already built one reuses that build's outputs instead of running npm. "
                    "package.json and package-lock.json are always inputs.",
        examples=[["tailwind.config.js", "frontend", "scheduler/templates"]],
    )
    outputs: list[RepoPath] = Field(
        min_length=1,
        description="Paths in the release that `npm run build` writes. Each must exist after a build, "
                    "or the release fails and the live one keeps serving.",
        examples=[["scheduler/static/scheduler/dist"]],
    )


# variables of the process itself (systemd, the loader, gunicorn), never the app's settings
PROCESS_ENV_KEYS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "GUNICORN_CMD_ARGS", "INVOCATION_ID",
                              "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "TZ"})


class HealthCheck(Strict):
    """What a release must answer before it stays live (asked on gunicorn's socket with the site's Host)."""

    path: UrlPath = Field(default="/healthz", description="URL path the release is asked for.",
                          examples=["/healthz", "/api/v3/status/"])
    status: int = Field(default=200, ge=200, le=399, description="The HTTP status it must answer with.",
                        examples=[200])


class SettingsEnv(Strict):
    """The environment variable names the app reads for the settings the repo derives from the
    model. None: the app reads no such variable (the repo writes none)."""

    secret_key: EnvKey = Field(default="DJANGO_SECRET_KEY", description="Name of the secret key variable.",
                               examples=["SECRET_KEY"])
    secret_key_fallbacks: EnvKey | None = Field(
        default=None, description="Name of the variable the app reads Django's SECRET_KEY_FALLBACKS from "
        "(comma-separated: older keys still accepted for sessions, password resets and signed values), "
        "e.g. `SECRET_KEY_FALLBACKS = [k for k in os.environ.get('DJANGO_SECRET_KEY_FALLBACKS', '').split(',') "
        "if k]`. None: the app reads none, so a key rotation ends every session at once (`make "
        "rotate-django-key` says so before it starts).",
        examples=["DJANGO_SECRET_KEY_FALLBACKS", None])
    debug: EnvKey | None = Field(default="DJANGO_DEBUG", description="Name of the debug flag (always written "
                                 "off: production never runs with DEBUG).", examples=["DEBUG"])
    debug_format: Literal["0/1", "False/True", "false/true"] = Field(
        default="0/1", description="How the app reads its debug flag, off/on: the off value is what the repo "
        "writes (0, False or false). An app that accepts only True/False reads 0 as a string it rejects.",
        examples=["False/True"])
    public_url: EnvKey | None = Field(
        default=None, description="Name of the variable the app reads its public URL from (links in mails, "
        "absolute URLs), filled from the site: its scheme (https with nginx.tls), first server name and "
        "port unless the scheme's own, e.g. https://pravoo.in. None: the app reads none.",
        examples=["SITE_ROOT", None])
    allowed_hosts: EnvKey | None = Field(default="DJANGO_ALLOWED_HOSTS", description="Name of the "
                                         "comma-separated allowed hosts.", examples=["ALLOWED_HOSTS"])
    csrf_trusted_origins: EnvKey | None = Field(default="DJANGO_CSRF_TRUSTED_ORIGINS", description="Name of "
                                                "the comma-separated trusted origins.",
                                                examples=["CSRF_TRUSTED_ORIGINS", None])
    secure_cookies: EnvKey | None = Field(default="DJANGO_SECURE_COOKIES", description="Name of the 1/0 flag "
                                          "for Secure session and CSRF cookies (on for TLS sites).",
                                          examples=["SECURE_COOKIES", None])
    static_root: EnvKey | None = Field(default="STATIC_ROOT", description="Name of the variable collectstatic "
                                       "reads its target from; None: the app's settings fix it (static_dir "
                                       "must then say where).", examples=["STATIC_ROOT", None])
    use_sqlite: EnvKey | None = Field(default="USE_SQLITE", description="Name of the 1/0 SQLite switch.",
                                      examples=["USE_SQLITE", None])
    sqlite_path: EnvKey | None = Field(default="SQLITE_PATH", description="Name of the SQLite file's path.",
                                       examples=["DB_PATH"])
    postgres_db: EnvKey | None = Field(default="POSTGRES_DB", description="Name of the PostgreSQL database "
                                       "name variable.", examples=["DB_NAME"])
    postgres_user: EnvKey | None = Field(default="POSTGRES_USER", description="Name of the PostgreSQL role "
                                         "variable.", examples=["DB_USER"])
    postgres_host: EnvKey | None = Field(default="POSTGRES_HOST", description="Name of the PostgreSQL host "
                                         "variable (written empty: the local socket).", examples=["DB_HOST"])

    def names(self) -> dict[str, str]:
        """Option -> variable name, for the names the app reads (``debug_format`` is no name)."""
        return {k: v for k, v in self.model_dump().items() if v is not None and k != "debug_format"}

    def debug_off(self) -> str:
        """The value that turns the app's debug flag off, in the format it reads."""
        return self.debug_format.split("/")[0]

    @model_validator(mode="after")
    def _distinct(self) -> SettingsEnv:
        seen: dict[str, str] = {}
        for option, name in self.names().items():
            if name in seen:
                raise option_error(option, f"{name!r} is already the name of {seen[name]}: each setting needs "
                                   "its own variable")
            if name in PROCESS_ENV_KEYS or name == "DJANGO_SETTINGS_MODULE" or name.startswith(("LD_", "PYTHON")):
                raise option_error(option, f"{name!r} controls how the process starts; name the app's own variable")
            seen[name] = option
        return self


class AppProcess(Strict):
    """A long-running manage.py command beside gunicorn (a queue worker, an alert sender): its own
    systemd unit, from the same release, user and environment, restarted with every release."""

    command: ManageCommand = Field(description="manage.py subcommand and arguments (no shell).",
                                   examples=[["sendalerts"]])
    unit: UnitName | None = Field(default=None, description="systemd unit name; None: '<app>-<process>'.",
                                  examples=["healthchecks-sendalerts"])


# the least a secret of each kind may hold (iac/values.py secret())
DjangoSecretKey = secret(32, "Django secret key")

UNTIL_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@type_name("UTC time (YYYY-MM-DDTHH:MM:SSZ)")
def _check_until(value: str) -> str:
    try:
        datetime.strptime(value, UNTIL_FORMAT)
    except ValueError:
        raise ValueError(f"{value!r} is not a UTC time written YYYY-MM-DDTHH:MM:SSZ "
                         "(example: 2026-12-12T10:00:00Z)") from None
    return value


FallbackUntil = Annotated[str, AfterValidator(_check_until)]


def until_time(until: str) -> datetime:
    """The moment a fallback key (keyed by its ``until``) stops being written."""
    return datetime.strptime(until, UNTIL_FORMAT).replace(tzinfo=UTC)
SecretValue = secret(8, "secret variable")


class DjangoApp(Strict):
    """One Django app: code, virtualenv, env file, gunicorn unit, nginx site."""

    user: Username = Field(description="Unprivileged system user (and group) the app runs as.",
                           examples=["rental_scheduler"])
    source: GitSource = Field(description="Where the code comes from.")
    manage_dir: Annotated[str, AfterValidator(_check_manage_dir)] = Field(
        default="", description="Subdirectory of the repository that holds manage.py ('' for the top).",
        examples=["chip_dashboard"],
    )
    settings_module: ModulePath = Field(description="DJANGO_SETTINGS_MODULE.", examples=["broker_portal.settings"])
    wsgi_app: WsgiTarget = Field(description="gunicorn's WSGI application.",
                                 examples=["broker_portal.wsgi:application"])
    unit: UnitName = Field(description="systemd unit (service) name, without .service.",
                           examples=["gunicorn-rental_scheduler"])
    workers: int = Field(default=3, ge=1, le=32, description="gunicorn --workers.", examples=[3])
    timeout: int = Field(default=60, ge=5, le=3600, description="gunicorn --timeout (seconds).", examples=[60])
    allowed_hosts: list[AllowedHost] = Field(
        min_length=1, description="DJANGO_ALLOWED_HOSTS: every name nginx serves the app by must be here.",
        examples=[["pravoo.in", "72.61.148.117"]])
    secret_key: DjangoSecretKey = Field(
        description="SECRET. Django's SECRET_KEY (the variable settings_env.secret_key names), from the secrets "
                    "file; at least 32 characters.",
                                  examples=["(50 random characters)"])
    secret_key_fallbacks: dict[FallbackUntil, DjangoSecretKey] = Field(
        default={},
        description="SECRET. Older secret keys the app still accepts, each keyed by the UTC time it stops "
                    "being written (YYYY-MM-DDTHH:MM:SSZ); only unexpired ones reach the variable "
                    "settings_env.secret_key_fallbacks names. `make rotate-django-key` adds the key it "
                    "replaces and drops expired ones; from the secrets file only.",
        examples=[{"2026-12-12T10:00:00Z": "(the key before the last rotation)"}])
    secret_key_fallback_days: int = Field(
        default=7, ge=0, le=90, description="How long `make rotate-django-key` keeps the replaced key as a "
        "fallback (days; 0: sessions signed with it end at once). Django's advice: long enough for the "
        "sessions and password-reset links you want to survive.", examples=[7])
    database: Database = Field(description="Where the app keeps its data (engine 'sqlite' or 'postgresql').",
                               examples=[{"engine": "sqlite", "path": "/var/lib/chip_dashboard/db.sqlite3"},
                                         {"engine": "postgresql", "name": "gts_scheduler",
                                          "role": "rental_scheduler_user"}])
    extra_databases: dict[Ident, PostgresDatabase] = Field(
        default={},
        description="Further databases; the key is the env prefix (ACCOUNTING -> ACCOUNTING_POSTGRES_DB, ...).",
        examples=[{"accounting": {"engine": "postgresql", "name": "gingerich_trailer_rentals",
                                  "role": "rental_scheduler_user"}}],
    )
    env: dict[EnvKey, Annotated[str, Field(max_length=4096)]] = Field(
        default={}, description="Further non-secret environment variables for the app. Names the repo sets "
                                "itself (DJANGO_SECRET_KEY, ...) and names of secrets are refused.",
        examples=[{"FEATURE_X": "1"}],
    )
    secret_env: dict[EnvKey, SecretValue] = Field(
        default={}, description="SECRET. Further secret environment variables (API tokens, DSNs), from the "
                                "secrets file under apps.<name>.secret_env; never from group_data.",
        examples=[{"SENTRY_DSN": "(from the secrets file)"}],
    )
    discord_alerts: DiscordAlerts | None = Field(
        default=None, description="Discord error alerts (DISCORD_* variables); None turns them off.",
        examples=[None],
    )
    frontend_build: FrontendBuild | None = Field(
        default=None, description="The Node front-end build; None: the app has none.",
        examples=[{"inputs": ["frontend", "scheduler/templates"], "outputs": ["scheduler/static/scheduler/dist"]}],
    )
    extra_requirements: list[PipPin] = Field(
        default=[], description="pip requirements installed after the app's own requirements.txt, for what "
                                "it lacks (gunicorn, a database driver); each pinned to one version.",
        examples=[["gunicorn==23.0.0"]])
    static_dir: RepoPath = Field(
        default="staticfiles", description="Where collectstatic writes, relative to manage_dir (the app's "
                                           "STATIC_ROOT); nginx serves /static/ from it.",
        examples=["staticfiles", "static-collected"])
    health: HealthCheck = Field(default=HealthCheck(), description="The check a release must pass to stay live.")
    release_commands: list[ManageCommand] = Field(
        default=[], description="manage.py commands run after migrate and before the switch, as the app user "
                                "with its environment (e.g. compress); one failing keeps the old release live.",
        examples=[[["compress", "--force"]]])
    settings_env: SettingsEnv = Field(default=SettingsEnv(), description="The variable names the app reads "
                                      "its standard settings from.")
    processes: dict[Ident, AppProcess] = Field(
        default={}, description="Long-running manage.py commands beside gunicorn, each its own unit.",
        examples=[{"sendalerts": {"command": ["sendalerts"]}}])
    nginx: NginxSite = Field(description="The nginx site in front of the app.")
    log_dir: Annotated[str, path_under("/var/log", example="/var/log/gts/rental_scheduler")] | None = Field(
        default=None, description="gunicorn access.log/error.log directory under /var/log; None: the journal.",
        examples=["/var/log/gts/rental_scheduler"],
    )
    keep_releases: int = Field(default=3, ge=2, le=20, description="Releases kept on disk for rollback.",
                               examples=[3])

    def live_fallbacks(self, now: datetime | None = None) -> list[str]:
        """The fallback keys not yet expired at ``now`` (UTC; default: this moment), newest first."""
        moment = now or datetime.now(UTC)
        return [self.secret_key_fallbacks[until].get_secret_value()
                for until in sorted(self.secret_key_fallbacks, reverse=True) if until_time(until) > moment]

    def managed_env_keys(self) -> set[str]:
        """Environment variables the repo itself sets for the app (templates/etc/iac/apps/app.env.j2);
        `env` and `secret_env` may not override them."""
        keys = {"DJANGO_SETTINGS_MODULE", *self.settings_env.names().values(), "DISCORD_WEBHOOK_URL",
                "DISCORD_ALERTS_ENABLED", "DISCORD_ALERTS_DEDUP_SECONDS", "DISCORD_ALERTS_TIMEOUT_SECONDS",
                "DISCORD_ALERTS_APP_NAME", "DISCORD_ALERTS_ENV"}
        for prefix in self.extra_databases:
            keys |= {f"{prefix.upper()}_POSTGRES_{k}" for k in ("DB", "USER", "HOST")}
        return keys

    @model_validator(mode="after")
    def _names_consistent(self) -> DjangoApp:
        names = [n for n in self.nginx.server_names if n != "_"]
        if self.nginx.tls and not names:
            raise option_error("nginx.server_names", (
                "a TLS site needs the domain its certificate is for as the first server name; '_' (any "
                "name) cannot have a certificate (example: ['pravoo.in'])"))
        if self.nginx.tls and self.nginx.server_names[0] == "_":
            raise option_error("nginx.server_names", f"the first name is the certificate's: put the domain "
                               f"first, e.g. {[*names, '_']}")
        for server_name in names:
            bare = server_name.lstrip("*.")
            covered = any(h == server_name or (h.startswith(".") and (bare == h[1:] or bare.endswith(h)))
                          for h in self.allowed_hosts)
            if not covered:
                want = f".{bare}" if server_name.startswith(("*.", ".")) else server_name
                raise option_error("allowed_hosts", (
                    f"must contain {want!r}: nginx serves the app as {server_name!r} (nginx.server_names) "
                    f"and Django answers 400 to a Host it does not allow; add it to {self.allowed_hosts}"))
        if self.secret_key_fallbacks and self.settings_env.secret_key_fallbacks is None:
            raise option_error("secret_key_fallbacks", (
                "the app reads no fallback keys (settings_env.secret_key_fallbacks is None), so these would "
                "reach nothing: name the variable its settings read SECRET_KEY_FALLBACKS from, or remove them"))
        for until, key in self.secret_key_fallbacks.items():
            if "," in key.get_secret_value():
                raise option_error(f"secret_key_fallbacks.{until}", (
                    "holds a comma, which separates the keys in the variable: rotate with `make "
                    "rotate-django-key` (its keys have none) instead of keeping this one"))
        if self.settings_env.public_url and self.nginx.public_url() is None:
            raise option_error("settings_env.public_url", (
                "the site answers any name ('_' first in nginx.server_names), so there is no public URL to write; "
                "put the site's name first (e.g. ['pravoo.in']) or set settings_env.public_url to None"))
        reserved = self.managed_env_keys()
        sources = {name: _ENV_SOURCES.get(option, f"settings_env.{option}")
                   for option, name in self.settings_env.names().items()} | _ENV_SOURCES
        for key in self.env:
            if key in reserved:
                raise option_error(f"env.{key}", (
                    f"is set by the repo from the model ({sources.get(key, 'see app.env.j2')}); "
                    f"set that option instead of overriding the variable, e.g. remove env.{key}"))
            if key in PROCESS_ENV_KEYS or key.startswith(("LD_", "PYTHON", "SYSTEMD_")):
                raise option_error(f"env.{key}", "controls how the process starts (loader, interpreter or "
                                   "systemd), not the app: it cannot be set through env")
            if DEBUG_NAME_RE.search(key) and self.env[key].strip().lower() in TRUTHY:
                raise option_error(f"env.{key}", (
                    f"turns debug on ({self.env[key]!r}), which production never runs with (Django then shows "
                    "settings and tracebacks to anyone); if it is the app's debug flag, name it in "
                    f"settings_env.debug (e.g. debug: {key!r}, debug_format: 'False/True') and the repo writes it off"))
            if SECRET_NAME_RE.search(key):
                raise option_error(f"env.{key}", (
                    "looks like a secret: group_data is in the repository; put it in the secrets file as "
                    f"apps.<name>.secret_env.{key} (see docs/secrets.md), or rename it if it is not one"))
        for key in self.secret_env:
            if key in reserved or key in self.env or key in PROCESS_ENV_KEYS or key.startswith(("LD_", "PYTHON")):
                raise option_error(f"secret_env.{key}", "is already set by the repo or by `env`; use another name")
        return self


# where a managed variable's value comes from (for the message refusing an override): by
# settings_env option, and by the names the repo alone sets
_ENV_SOURCES = {
    "secret_key": "secret_key in the secrets file",
    "secret_key_fallbacks": "secret_key_fallbacks in the secrets file",
    "debug": "always off, in settings_env.debug_format", "public_url": "nginx.server_names, nginx.port and nginx.tls",
    "allowed_hosts": "allowed_hosts",
    "csrf_trusted_origins": "nginx.server_names", "secure_cookies": "nginx.tls", "static_root": "static_dir",
    "use_sqlite": "database.engine", "sqlite_path": "database.path", "postgres_db": "database.name",
    "postgres_user": "database.role", "postgres_host": "the local socket",
    "DJANGO_SETTINGS_MODULE": "settings_module",
    "DISCORD_WEBHOOK_URL": "discord_alerts.webhook_url in the secrets file",
}


# a variable named like a debug flag, and the values that would turn one on
DEBUG_NAME_RE = re.compile(r"(^|_)DEBUG$")
TRUTHY = frozenset({"1", "true", "yes", "on", "t", "y"})

SECRET_NAME_RE = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|WEBHOOK|CREDENTIAL|"
                            r"(^|_)DSN$|(^|_)AUTH$")
