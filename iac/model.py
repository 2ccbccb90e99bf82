"""The one typed model of everything a host declares.

Every option is typed, described and exemplified here; a default lives here and nowhere else.
``group_data/`` holds values only. Operations read a validated ``HostConfig`` (see
``iac.stack.host_config``), never raw ``host.data``.

Secrets are ``SecretStr`` fields: they print as ``**********``, are never taken from
``group_data/`` and reach a run only through the secrets source (``iac.secrets``).
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import zoneinfo
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

HOSTNAME_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
FQDN_RE = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+( .*)?$"
)
USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def _check(pattern: re.Pattern[str], what: str, example: str):
    def validate(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what} (example: {example!r})")
        return value

    return AfterValidator(validate)


def _check_timezone(value: str) -> str:
    if value not in zoneinfo.available_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone (example: 'Etc/UTC', 'America/New_York')")
    return value


Hostname = Annotated[str, _check(HOSTNAME_RE, "host name (one DNS label)", "gts-server")]
Fqdn = Annotated[str, _check(FQDN_RE, "DNS name", "gts-server.lan")]
SshPublicKey = Annotated[str, _check(SSH_KEY_RE, "OpenSSH public key line", "ssh-ed25519 AAAAC3... ops@laptop")]
Username = Annotated[str, _check(USERNAME_RE, "user name", "gts")]
PackageName = Annotated[str, _check(PACKAGE_RE, "Debian package name", "git")]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]


def option_error(at: str, detail: str) -> PydanticCustomError:
    """A cross-field rule's error, placed at option ``at`` (relative to the model that checks
    it) so that the message names the full option path and the file that set it."""
    return PydanticCustomError("option", "{detail}", {"detail": detail, "at": at})


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSection(Strict):
    hostname: Hostname = Field(
        description="The host's name, written to /etc/hostname and applied live.",
        examples=["gts-server"],
    )
    aliases: list[Fqdn] = Field(
        default=[],
        description="Extra names for the host in /etc/hosts (for example its LAN name).",
        examples=[["gts-server.lan"]],
    )
    timezone: TimeZone = Field(
        default="Etc/UTC",
        description="IANA time zone of the host (/etc/localtime, /etc/timezone).",
        examples=["Etc/UTC", "America/New_York"],
    )


DEFAULT_BASE_PACKAGES = [
    "ca-certificates", "curl", "git", "less", "openssh-server", "rsync", "sudo", "tzdata",
]


class BaseSection(Strict):
    packages: list[PackageName] = Field(
        default=DEFAULT_BASE_PACKAGES,
        description="Debian packages every host has; services add their own packages.",
        examples=[DEFAULT_BASE_PACKAGES],
    )
    extra_packages: list[PackageName] = Field(
        default=[],
        description="Further packages for this host or group, on top of `packages`.",
        examples=[["htop", "tmux"]],
    )
    apt_cache_hours: int = Field(
        default=24, ge=1, le=24 * 14,
        description="apt-get update runs only when the package lists are older than this.",
        examples=[24],
    )


class AdminSection(Strict):
    name: Username = Field(
        description="Login of the human administrator (a real account with a home directory).",
        examples=["gts"],
    )
    ssh_authorized_keys: list[SshPublicKey] = Field(
        default=[],
        description=(
            "Public keys allowed to log in as the admin. Keys are added, never removed: an empty "
            "list leaves existing keys alone (how the production hosts are adopted)."
        ),
        examples=[["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@laptop"]],
    )
    sudo: bool = Field(
        default=True,
        description="Member of group sudo (password required: the account has no NOPASSWD rule).",
        examples=[True],
    )
    groups: list[Username] = Field(
        default=[],
        description="Further supplementary groups, created by the services that own them.",
        examples=[["postgres"]],
    )
    shell: str = Field(default="/bin/bash", description="Login shell.", examples=["/bin/bash"])
    password_hash: SecretStr | None = Field(
        default=None,
        description=(
            "SECRET. crypt(3) hash of the admin's password (for sudo), from the secrets file. "
            "Unset leaves the current password alone (how existing hosts are adopted)."
        ),
        examples=["$y$j9T$...(mkpasswd -m yescrypt)"],
    )


GIT_URL_RE = re.compile(r"^(ssh://[^\s]+|[a-z0-9_.-]+@[a-z0-9.-]+:[^\s]+)$")
HOST_KEY_RE = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$")
IDENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
GitUrl = Annotated[str, _check(GIT_URL_RE, "SSH git URL", "git@github.com:owner/repo.git")]
HostKey = Annotated[str, _check(HOST_KEY_RE, "SSH host key (type and base64)", "ssh-ed25519 AAAAC3Nza...")]
Ident = Annotated[str, _check(IDENT_RE, "lower-case identifier", "rental_scheduler")]

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
    revision: str = Field(
        description="What to deploy: a tag, a branch or a full commit id.",
        examples=["v2", "main", "4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e"],
        min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
    )


class SqliteDatabase(Strict):
    engine: Literal["sqlite"] = Field(description="SQLite file (USE_SQLITE=1).", examples=["sqlite"])
    path: str = Field(
        description="The database file, under /var/lib/<dir>/ (the unit's StateDirectory, owned by the app user).",
        examples=["/var/lib/chip_dashboard/db.sqlite3"], pattern=r"^/var/lib/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
    )
    adopt_from: str | None = Field(
        default=None,
        description=(
            "A database file of a hand-built install to take over on the first deploy: when `path` does "
            "not exist yet, the old file is backed up and copied there (the old file is left as it was)."
        ),
        examples=["/root/Chips_dashboard/chip_dashboard/db.sqlite3"], pattern=r"^/",
    )


class PostgresDatabase(Strict):
    engine: Literal["postgresql"] = Field(description="A local PostgreSQL database.", examples=["postgresql"])
    name: Ident = Field(description="Database name.", examples=["gts_scheduler"])
    role: Ident = Field(
        description="Role the app connects as (peer authentication over the unix socket, no password).",
        examples=["rental_scheduler_user"],
    )
    import_sqlite_from: str | None = Field(
        default=None,
        description=(
            "Moving from SQLite: on the first deploy that finds this database without Django's tables, "
            "the app is stopped, this SQLite file is backed up, brought to the release's migrations and its "
            "data moved in with dumpdata/loaddata. The file is kept."
        ),
        examples=["/var/lib/chip_dashboard/db.sqlite3"], pattern=r"^/",
    )


Database = Annotated[SqliteDatabase | PostgresDatabase, Field(discriminator="engine")]


class DiscordAlerts(Strict):
    webhook_url: SecretStr = Field(
        description="SECRET. Discord webhook URL (DISCORD_WEBHOOK_URL), from the secrets file.",
        examples=["https://discord.com/api/webhooks/<id>/<token>"],
    )
    enabled: bool = Field(default=True, description="DISCORD_ALERTS_ENABLED", examples=[True])
    dedup_seconds: int = Field(default=300, ge=0, description="DISCORD_ALERTS_DEDUP_SECONDS", examples=[300])
    timeout_seconds: int = Field(default=2, ge=1, le=30, description="DISCORD_ALERTS_TIMEOUT_SECONDS",
                                 examples=[2])
    environment: str = Field(default="prod", description="DISCORD_ALERTS_ENV", examples=["prod"])


_REPO_PATH = r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]*$"


class FrontendBuild(Strict):
    """`npm ci` + `npm run build` as the app user, for a release whose build inputs changed."""

    inputs: list[Annotated[str, Field(pattern=_REPO_PATH)]] = Field(
        min_length=1,
        description="Paths in the repository the build reads (package files, CSS, templates, the "
                    "tailwind or build config). A release whose inputs are the same, file for file, "
                    "as an already built one reuses that build's outputs instead of running npm. "
                    "package.json and package-lock.json are always inputs.",
        examples=[["tailwind.config.js", "frontend", "scheduler/templates"]],
    )
    outputs: list[Annotated[str, Field(pattern=_REPO_PATH)]] = Field(
        min_length=1,
        description="Paths in the release that `npm run build` writes. Each must exist after a build, "
                    "or the release fails and the live one keeps serving.",
        examples=[["scheduler/static/scheduler/dist"]],
    )


class NginxSite(Strict):
    name: str = Field(description="File name in /etc/nginx/sites-available.", examples=["django"],
                      pattern=r"^[A-Za-z0-9_.-]+$")
    port: int = Field(default=80, ge=1, le=65535, description="Port nginx listens on (plain HTTP).",
                      examples=[80, 8001])
    server_names: list[str] = Field(
        default=["_"], min_length=1,
        description="server_name values; the first is the canonical name (and the TLS certificate's).",
        examples=[["pravoo.in"]],
    )
    tls: bool = Field(
        default=False,
        description="Serve HTTPS on 443 with a certificate from certbot for server_names[0]; HTTP redirects.",
        examples=[True],
    )


class DjangoApp(Strict):
    """One Django app: code, virtualenv, env file, gunicorn unit, nginx site."""

    user: Username = Field(description="Unprivileged system user (and group) the app runs as.",
                           examples=["rental_scheduler"])
    source: GitSource = Field(description="Where the code comes from.")
    manage_dir: str = Field(
        default="", description="Subdirectory of the repository that holds manage.py ('' for the top).",
        examples=["chip_dashboard"], pattern=r"^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$",
    )
    settings_module: str = Field(description="DJANGO_SETTINGS_MODULE.", examples=["broker_portal.settings"])
    wsgi_app: str = Field(description="gunicorn's WSGI application.", examples=["broker_portal.wsgi:application"])
    unit: str = Field(description="systemd unit (service) name.", examples=["gunicorn-rental_scheduler"],
                      pattern=r"^[A-Za-z0-9_.@-]+$")
    workers: int = Field(default=3, ge=1, le=32, description="gunicorn --workers.", examples=[3])
    timeout: int = Field(default=60, ge=5, le=3600, description="gunicorn --timeout (seconds).", examples=[60])
    allowed_hosts: list[str] = Field(min_length=1, description="DJANGO_ALLOWED_HOSTS.",
                                     examples=[["pravoo.in", "72.61.148.117"]])
    secret_key: SecretStr = Field(description="SECRET. DJANGO_SECRET_KEY, from the secrets file.",
                                  examples=["(50 random characters)"])
    database: Database = Field(description="Where the app keeps its data.")
    extra_databases: dict[Ident, PostgresDatabase] = Field(
        default={},
        description="Further databases; the key is the env prefix (ACCOUNTING -> ACCOUNTING_POSTGRES_DB, ...).",
        examples=[{"accounting": {"engine": "postgresql", "name": "gingerich_trailer_rentals",
                                  "role": "rental_scheduler_user"}}],
    )
    env: dict[str, str] = Field(
        default={}, description="Further non-secret environment variables for the app.",
        examples=[{"FEATURE_X": "1"}],
    )
    discord_alerts: DiscordAlerts | None = Field(
        default=None, description="Discord error alerts (DISCORD_* variables); None turns them off.",
        examples=[None],
    )
    frontend_build: FrontendBuild | None = Field(
        default=None, description="The Node front-end build; None: the app has none.",
        examples=[{"inputs": ["frontend", "scheduler/templates"], "outputs": ["scheduler/static/scheduler/dist"]}],
    )
    nginx: NginxSite = Field(description="The nginx site in front of the app.")
    log_dir: str | None = Field(
        default=None, description="gunicorn access.log/error.log directory under /var/log; None: the journal.",
        examples=["/var/log/gts/rental_scheduler"], pattern=r"^/var/log/[A-Za-z0-9_./-]+$",
    )
    keep_releases: int = Field(default=3, ge=2, le=20, description="Releases kept on disk for rollback.",
                               examples=[3])

    @model_validator(mode="after")
    def _names_consistent(self) -> DjangoApp:
        if self.nginx.tls and self.nginx.server_names[0] not in self.allowed_hosts:
            name = self.nginx.server_names[0]
            raise option_error("allowed_hosts", (
                f"must contain {name!r}, the site's name (nginx.server_names[0]) that users reach the "
                f"app by, or Django refuses their requests; add {name!r} to {self.allowed_hosts}"))
        return self


class TlsSection(Strict):
    email: str = Field(description="Account e-mail for the ACME CA (expiry notices).",
                       examples=["admin@pravoo.in"], pattern=r"^[^@\s]+@[^@\s]+$")
    acme_directory: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description="ACME directory URL (Let's Encrypt in production).",
        examples=["https://acme-v02.api.letsencrypt.org/directory"],
    )
    acme_ca_bundle: str | None = Field(
        default=None,
        description="PEM of the CA that signs the ACME server's own HTTPS certificate, if not a public one.",
        examples=[None],
    )


class PostgresSection(Strict):
    """The local PostgreSQL server. Apps connect over the unix socket with peer authentication:
    no passwords exist to leak or rotate. Which system user may act as which role follows from the
    apps (an app's user may use the roles of its databases; pg_ident.conf map `iac`)."""

    roles: list[Ident] = Field(default=[], description="Login roles (no passwords: peer auth).",
                               examples=[["rental_scheduler_user"]])
    databases: dict[Ident, Ident] = Field(
        default={}, description="Database name -> owner role ('postgres' or one of `roles`).",
        examples=[{"gts_scheduler": "rental_scheduler_user", "gingerich_trailer": "postgres"}],
    )

    @model_validator(mode="after")
    def _owners_declared(self) -> PostgresSection:
        for db, owner in self.databases.items():
            if owner != "postgres" and owner not in self.roles:
                raise option_error(f"databases.{db}", f"owner {owner!r} is not in postgres.roles "
                                   f"{self.roles}: add it there, or make 'postgres' the owner")
        return self


class NodeSection(Strict):
    source: Literal["nodesource", "debian"] = Field(
        default="nodesource",
        description="Where nodejs comes from: NodeSource's apt repository (runbook) or Debian's own package.",
        examples=["nodesource"],
    )
    major: int = Field(default=20, ge=18, le=30, description="NodeSource major version (node_<major>.x).",
                       examples=[20])


class NetworkSection(Strict):
    """A static address, applied with ifupdown (/etc/network/interfaces.d/), as Debian 12 servers
    installed without a desktop do."""

    interface: str = Field(description="Interface name.", examples=["eno1"], pattern=r"^[a-z0-9]{1,15}$")
    address: str = Field(description="Address with prefix length.", examples=["192.168.1.230/24"],
                         pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")
    gateway: str = Field(description="Default gateway.", examples=["192.168.1.1"],
                         pattern=r"^\d{1,3}(\.\d{1,3}){3}$")
    dns: list[str] = Field(min_length=1, description="DNS servers (resolv.conf).", examples=[["192.168.1.1"]])
    search: list[str] = Field(default=[], description="DNS search domains.", examples=[["lan"]])


class TailscaleSection(Strict):
    enabled: bool = Field(default=True, description="Install tailscale from its apt repository.",
                          examples=[True])


# ---- backups ---------------------------------------------------------------------------------

UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
UnitName = Annotated[str, _check(UNIT_NAME_RE, "systemd unit name (without .service)", "pg-backup-gts")]
FS_UUID_RE = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                        r"|[0-9A-F]{4}-[0-9A-F]{4})$")
FsUuid = Annotated[str, _check(FS_UUID_RE, "filesystem UUID (as `blkid` prints it)",
                               "3f0a3c2e-5b7d-4e0f-9a51-0c8e6b9d2a11")]
RESTIC_S3_RE = re.compile(r"^s3:https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._-]+)+$")
ResticRepository = Annotated[str, _check(
    RESTIC_S3_RE, "restic S3 repository",
    "s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/postgres")]


def _check_abs_path(value: str) -> str:
    """An absolute, normalised path without `..`, spaces or shell/unit metacharacters."""
    if not value.startswith("/") or value != posixpath.normpath(value) or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute, normalised path (example: '/mnt/pg_backups')")
    if not re.fullmatch(r"/[A-Za-z0-9_./-]*", value):
        raise ValueError(f"{value!r} may only contain letters, digits and _ . / - (example: '/mnt/pg_backups')")
    return value


def _check_calendar(value: str) -> str:
    """An OnCalendar= expression, checked by systemd's own parser when it is on this machine."""
    if not value.strip() or "\n" in value or "\x00" in value or ";" in value:
        raise ValueError(f"{value!r} is not a systemd calendar expression (example: 'hourly', '*-*-* 02:30:00')")
    analyze = shutil.which("systemd-analyze")
    if analyze:
        proc = subprocess.run([analyze, "calendar", value], capture_output=True, text=True, check=False,
                              timeout=10)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["rejected"])[-1]
            raise ValueError(f"{value!r} is not a systemd calendar expression ({why}; check with "
                             f"`systemd-analyze calendar`; example: '*-*-* 02:30:00')")
    return value


AbsPath = Annotated[str, AfterValidator(_check_abs_path)]
OnCalendar = Annotated[str, AfterValidator(_check_calendar)]
Days = Annotated[int, Field(ge=1, le=3660)]
Keep = Annotated[int, Field(ge=0, le=10000)]


class LocalBackups(Strict):
    """Scheduled, validated database dumps on this host (runbook: "Local Postgres backups").

    Every PostgreSQL database the host declares (postgres.databases) and every app's SQLite
    database is dumped, unless `databases` names a subset."""

    unit: UnitName = Field(default="pg-backup-gts", description="Name of the .service/.timer pair.",
                           examples=["pg-backup-gts"])
    script: AbsPath = Field(default="/usr/local/sbin/pg_backup_gts_databases.sh",
                            description="The backup command the service runs (a file of this repo).",
                            examples=["/usr/local/sbin/pg_backup_gts_databases.sh"])
    schedule: OnCalendar = Field(default="hourly", description="OnCalendar= of the timer.",
                                 examples=["hourly", "*-*-* 03:10:00"])
    mount: AbsPath | None = Field(
        default="/mnt/pg_backups",
        description="Mount point of the dump disk. The converge declares its fstab line and checks that it is "
                    "mounted; it never formats or mounts anything. A backup run refuses to write when it is "
                    "not a mount point (nothing lands on the root filesystem). None: no separate disk.",
        examples=["/mnt/pg_backups", None])
    disk_uuid: FsUuid | None = Field(
        default=None,
        description="Filesystem UUID of the dump disk, for its fstab line (`blkid` on the host). None: the "
                    "fstab line is not managed.",
        examples=["3f0a3c2e-5b7d-4e0f-9a51-0c8e6b9d2a11"])
    fstype: Literal["ext4", "xfs", "btrfs"] = Field(default="ext4", description="Filesystem of the dump disk.",
                                                     examples=["ext4"])
    root: AbsPath = Field(default="/mnt/pg_backups/postgres",
                          description="Where db/<name>/, globals/ and logs/ are kept (under `mount` if set).",
                          examples=["/mnt/pg_backups/postgres"])
    databases: list[Ident] | None = Field(
        default=None,
        description="Databases to dump; None: every PostgreSQL database in postgres.databases and every "
                    "app's SQLite database (named after the app).",
        examples=[None, ["gts_scheduler", "gts_shop_scheduler"]])
    keep_dump_days: Days = Field(default=7, description="Dumps and their .sha256 older than this are deleted.",
                                 examples=[7])
    keep_globals_days: Days = Field(default=30, description="Globals dumps (roles, grants) kept this long.",
                                    examples=[30])
    keep_log_days: Days = Field(default=30, description="Backup logs kept this long.", examples=[30])
    group: Username = Field(default="postgres", description="Group that may read the dumps (the admin is in it).",
                            examples=["postgres"])

    @model_validator(mode="after")
    def _root_on_disk(self) -> LocalBackups:
        if self.mount and not (self.root + "/").startswith(self.mount.rstrip("/") + "/"):
            raise option_error("root", f"{self.root!r} is not on the dump disk mounted at {self.mount!r}; "
                               f"use e.g. {self.mount.rstrip('/')}/postgres")
        return self


DEFAULT_SYSTEM_STATE_INCLUDES = [
    "/etc/gts", "/etc/nginx", "/etc/systemd/system", "/etc/ssh", "/home", "/root", "/etc/fstab",
    "/usr/local/sbin", "/etc/gts/bootstrap",
]
DEFAULT_SYSTEM_STATE_EXCLUDES = [
    "/mnt/pg_backups", "/var/lib/postgresql", "/var/log", "/tmp", "/var/cache", "/root/.cache",
    "/home/*/.cache", "/srv/apps", "/srv/venvs", "**/.venv", "**/venv",
]


class ResticTarget(Strict):
    """One restic repository on S3 and the timer that backs up into it."""

    repository: ResticRepository = Field(
        description="restic repository URL (RESTIC_REPOSITORY).",
        examples=["s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/postgres"])
    password: SecretStr = Field(description="SECRET. RESTIC_PASSWORD, from the secrets file (password manager).",
                                examples=["(a long random passphrase)"])
    access_key_id: SecretStr = Field(description="SECRET. AWS_ACCESS_KEY_ID of the bucket.",
                                     examples=["DO00EXAMPLE"])
    secret_access_key: SecretStr = Field(description="SECRET. AWS_SECRET_ACCESS_KEY of the bucket.",
                                         examples=["(the key's secret)"])
    unit: UnitName = Field(description="Name of the .service/.timer pair.", examples=["restic-postgres"])
    script: AbsPath = Field(description="The command the service runs.",
                            examples=["/usr/local/sbin/restic_backup_postgres_dumps.sh"])
    env_file: AbsPath = Field(description="root 0600 KEY=value file (systemd EnvironmentFile=).",
                              examples=["/etc/gts/backup/restic.env"])
    schedule: OnCalendar = Field(description="OnCalendar= of the backup timer.", examples=["*-*-* 02:30:00"])
    tag: str = Field(description="restic tag of the snapshots.", examples=["postgres"],
                     pattern=r"^[a-z0-9-]{1,40}$")
    keep_hourly: Keep = Field(default=0, description="forget --keep-hourly", examples=[48])
    keep_daily: Keep = Field(default=30, description="forget --keep-daily", examples=[30])
    keep_weekly: Keep = Field(default=12, description="forget --keep-weekly", examples=[12])
    keep_monthly: Keep = Field(default=12, description="forget --keep-monthly", examples=[12])

    @model_validator(mode="after")
    def _keeps_something(self) -> ResticTarget:
        if not (self.keep_hourly or self.keep_daily or self.keep_weekly or self.keep_monthly):
            raise option_error("keep_daily", "every keep_* is 0: `restic forget` would delete every snapshot; "
                               "keep at least one, e.g. keep_daily = 30")
        return self


class ResticPostgres(ResticTarget):
    """The local dumps, offsite (runbook: "Offsite backups")."""

    unit: UnitName = Field(default="restic-postgres", description="Name of the .service/.timer pair.",
                           examples=["restic-postgres"])
    script: AbsPath = Field(default="/usr/local/sbin/restic_backup_postgres_dumps.sh",
                            description="The command the service runs.",
                            examples=["/usr/local/sbin/restic_backup_postgres_dumps.sh"])
    env_file: AbsPath = Field(default="/etc/gts/backup/restic.env", description="root 0600 KEY=value file.",
                              examples=["/etc/gts/backup/restic.env"])
    schedule: OnCalendar = Field(default="*-*-* 02:30:00", description="OnCalendar= of the backup timer.",
                                 examples=["*-*-* 02:30:00"])
    tag: str = Field(default="postgres", description="restic tag of the snapshots.", examples=["postgres"],
                     pattern=r"^[a-z0-9-]{1,40}$")
    keep_hourly: Keep = Field(default=48, description="forget --keep-hourly", examples=[48])
    check_unit: UnitName = Field(default="restic-postgres-check", description="The weekly `restic check`.",
                                 examples=["restic-postgres-check"])
    check_schedule: OnCalendar = Field(default="Sun *-*-* 03:30:00", description="OnCalendar= of the check.",
                                       examples=["Sun *-*-* 03:30:00"])


class ResticSystemState(ResticTarget):
    """Configuration and state to rebuild the server from (runbook: "System-state backups")."""

    unit: UnitName = Field(default="restic-system-state-backup", description="Name of the .service/.timer pair.",
                           examples=["restic-system-state-backup"])
    script: AbsPath = Field(default="/usr/local/sbin/restic-system-state-backup.sh",
                            description="The command the service runs.",
                            examples=["/usr/local/sbin/restic-system-state-backup.sh"])
    env_file: AbsPath = Field(default="/etc/gts/backup/restic-system-state.env",
                              description="root 0600 KEY=value file.",
                              examples=["/etc/gts/backup/restic-system-state.env"])
    schedule: OnCalendar = Field(default="*-*-* 02:20:00", description="OnCalendar= of the backup timer.",
                                 examples=["*-*-* 02:20:00"])
    tag: str = Field(default="system-state", description="restic tag of the snapshots.",
                     examples=["system-state"], pattern=r"^[a-z0-9-]{1,40}$")
    includes: list[AbsPath] = Field(default=DEFAULT_SYSTEM_STATE_INCLUDES, min_length=1,
                                    description="includes.txt: what is backed up.",
                                    examples=[DEFAULT_SYSTEM_STATE_INCLUDES])
    excludes: list[Annotated[str, Field(pattern=r"^(/|\*\*/)[A-Za-z0-9_./*-]*$")]] = Field(
        default=DEFAULT_SYSTEM_STATE_EXCLUDES, description="excludes.txt: restic --exclude-file patterns.",
        examples=[DEFAULT_SYSTEM_STATE_EXCLUDES])
    lists_dir: AbsPath = Field(default="/etc/gts/backup/system-state",
                               description="Where includes.txt and excludes.txt live.",
                               examples=["/etc/gts/backup/system-state"])
    inventory_dir: AbsPath = Field(
        default="/etc/gts/bootstrap",
        description="The inventory snapshot (packages, enabled services, mounts, nginx -T), regenerated "
                    "before each run.", examples=["/etc/gts/bootstrap"])
    staging_dir: AbsPath = Field(
        default="/var/lib/iac/restore/system-state",
        description="Where a rebuild (`make dr`) restores the newest snapshot before the converge; the "
                    "converge takes what the model does not declare from there (the apps' deploy keys).",
        examples=["/var/lib/iac/restore/system-state"])
    env_helper: AbsPath = Field(default="/usr/local/sbin/restic-system-state-env.sh",
                                description="Runs a command with this repository's environment "
                                            "(runbook: \"View snapshots (helper method)\").",
                                examples=["/usr/local/sbin/restic-system-state-env.sh"])


class OffsiteBackups(Strict):
    postgres: ResticPostgres | None = Field(default=None, description="The dumps, offsite (None: none).",
                                            examples=[None])
    system_state: ResticSystemState | None = Field(default=None, description="System state, offsite "
                                                   "(None: none).", examples=[None])


class BackupAlerts(Strict):
    webhook_url: SecretStr = Field(
        description="SECRET. Discord webhook that receives one message per failed backup unit.",
        examples=["https://discord.com/api/webhooks/<id>/<token>"])
    env_file: AbsPath = Field(default="/etc/iac/backup-alert.env",
                              description="root 0600 file holding the webhook for the alert unit.",
                              examples=["/etc/iac/backup-alert.env"])


class BackupsSection(Strict):
    """Backups of the host's data: local dumps on a timer, offsite copies with restic, alerts."""

    local: LocalBackups = Field(default=LocalBackups(), description="Local dumps.")
    offsite: OffsiteBackups = Field(default=OffsiteBackups(), description="restic repositories.")
    alerts: BackupAlerts | None = Field(default=None, description="Where failures are reported (None: the "
                                        "journal only).", examples=[None])
    settings_file: AbsPath = Field(default="/etc/iac/backup.json",
                                   description="What the backup engine reads (written from this model).",
                                   examples=["/etc/iac/backup.json"])


class HostConfig(Strict):
    """Everything one host declares. Sections are added as services are declared."""

    host: HostSection = Field(description="Identity of the host.")
    base: BaseSection = Field(default=BaseSection(), description="Base system.")
    admin: AdminSection = Field(description="The administrator's account.")
    apps: dict[Ident, DjangoApp] = Field(default={}, description="Django apps on this host, by name.",
                                         examples=[{}])
    tls: TlsSection | None = Field(default=None, description="certbot settings, for sites with tls.",
                                   examples=[None])
    postgres: PostgresSection | None = Field(default=None, description="Local PostgreSQL server.",
                                             examples=[None])
    app_env_dir: str = Field(default="/etc/iac/apps", description="Directory of the apps' env files.",
                             examples=["/etc/gts/apps"], pattern=r"^/")
    apps_group: Username | None = Field(
        default=None,
        description=(
            "A group every app user belongs to (the runbook's gtsapps). It grants nothing by itself: "
            "env files are readable by their own app's group only."
        ),
        examples=["gtsapps"],
    )
    node: NodeSection = Field(default=NodeSection(), description="Node.js for front-end builds.")
    network: NetworkSection | None = Field(default=None, description="Static network configuration "
                                           "(None: left as the provider set it up).", examples=[None])
    tailscale: TailscaleSection | None = Field(default=None, description="Tailscale (None: not managed).",
                                               examples=[None])
    backups: BackupsSection | None = Field(default=None, description="Backups of the host's data "
                                           "(None: none are made).", examples=[None])

    @model_validator(mode="after")
    def _cross_checks(self) -> HostConfig:
        for name, app in self.apps.items():
            if app.nginx.tls and self.tls is None:
                raise option_error(f"apps.{name}.nginx.tls", "is on but the host has no `tls` section; "
                                   "set tls = {'email': ...} in group_data, or turn tls off")
            for db in [app.database, *app.extra_databases.values()]:
                if isinstance(db, PostgresDatabase):
                    pg = self.postgres
                    if pg is None or db.name not in pg.databases or db.role not in pg.roles:
                        raise option_error(f"apps.{name}", (
                            f"uses PostgreSQL database {db.name!r} as {db.role!r}: declare them in "
                            f"postgres.roles and postgres.databases"))
        ports = [(a.nginx.port, n) for n, a in self.apps.items()]
        seen: dict[int, str] = {}
        for port, name in ports:
            if port in seen:
                raise option_error(f"apps.{name}.nginx.port",
                                   f"{port} is already used by apps.{seen[port]}; pick another port")
            seen[port] = name
        if self.backups is not None and self.backups.local.databases is not None:
            known = self.backup_databases(declared_only=True)
            for db in self.backups.local.databases:
                if db not in known:
                    raise option_error("backups.local.databases", (
                        f"{db!r} is not a database of this host; declared: {', '.join(known) or 'none'} "
                        "(postgres.databases, or an app name for its SQLite database)"))
        return self

    def backup_databases(self, declared_only: bool = False) -> dict[str, dict[str, str]]:
        """Databases the local backups dump: name -> {"engine", "path" or "owner"}.

        PostgreSQL databases are named as in postgres.databases; an app's SQLite database by the
        app's name. ``declared_only``: every candidate, ignoring backups.local.databases."""
        found: dict[str, dict[str, str]] = {}
        if self.postgres is not None:
            for db, owner in self.postgres.databases.items():
                found[db] = {"engine": "postgresql", "owner": owner}
        for name, app in self.apps.items():
            if isinstance(app.database, SqliteDatabase):
                found[name] = {"engine": "sqlite", "path": app.database.path, "owner": app.user}
        if declared_only or self.backups is None or self.backups.local.databases is None:
            return found
        return {k: v for k, v in found.items() if k in self.backups.local.databases}

