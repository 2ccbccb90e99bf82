"""Options of the backups: local dumps, offsite restic repositories, alerts (backups)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    model_validator,
)

from iac.values import (
    OFFLINE_URL,
    AbsPath,
    Days,
    EtcFile,
    FsUuid,
    Ident,
    Keep,
    OnCalendar,
    ResticRepository,
    Script,
    Strict,
    UnitName,
    Username,
    option_error,
    path_under,
    secret,
    type_name,
)


class LocalBackups(Strict):
    """Scheduled, validated database dumps on this host (runbook: "Local Postgres backups").

    Every PostgreSQL database the host declares (postgres.databases) and every app's SQLite
    database is dumped, unless `databases` names a subset."""

    unit: UnitName = Field(default="iac-db-dumps", description="Name of the .service/.timer pair.",
                           examples=["pg-backup-gts"])
    script: Script = Field(default="/usr/local/sbin/iac-db-dumps.sh",
                            description="The backup command the service runs (a file of this repo).",
                            examples=["/usr/local/sbin/pg_backup_gts_databases.sh"])
    schedule: OnCalendar = Field(default="hourly", description="OnCalendar= of the timer.",
                                 examples=["hourly", "*-*-* 03:10:00"])
    mount: Annotated[str, path_under("/mnt", "/media", "/srv", example="/mnt/pg_backups",
                                     owned=False)] | None = Field(
        default=None,
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
    root: Annotated[str, path_under("/mnt", "/media", "/srv", "/var/backups", "/var/lib",
                                    example="/mnt/pg_backups/postgres")] = Field(
        default="/var/backups/db-dumps",
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
    "/etc/iac", "/etc/nginx", "/etc/systemd/system", "/etc/ssh", "/home", "/root", "/etc/fstab",
    "/usr/local/sbin",
]


DEFAULT_SYSTEM_STATE_EXCLUDES = [
    "/var/lib/postgresql", "/var/log", "/tmp", "/var/cache", "/root/.cache",
    "/home/*/.cache", "/srv/apps", "/srv/venvs", "**/.venv", "**/venv",
]


@type_name("restic exclude pattern")
def _check_exclude(value: str) -> str:
    """A restic --exclude-file pattern: absolute or **/, components of [A-Za-z0-9_.*-], which may
    start with a dot (/root/.cache, **/.venv) but never be . or .. (no way out of what is named)."""
    rest = value[3:] if value.startswith("**/") else value[1:] if value.startswith("/") else None
    parts = (rest or "").rstrip("/").split("/")
    if rest is None or not all(re.fullmatch(r"[A-Za-z0-9_.*-]+", p) and p not in (".", "..") for p in parts):
        raise ValueError(f"{value!r} is not an exclude pattern (an absolute path or **/name, without . or .. "
                         "components; example: '/root/.cache')")
    return value


ExcludePattern = Annotated[str, AfterValidator(_check_exclude)]


# the least a secret of each kind may hold (iac/values.py secret())
ResticPassword = secret(12, "restic repository password")
S3KeyId = secret(8, "S3 access key id")
S3SecretKey = secret(16, "S3 secret access key")


class ResticTarget(Strict):
    """One restic repository on S3 and the timer that backs up into it."""

    repository: ResticRepository = Field(
        description="restic repository URL (RESTIC_REPOSITORY).",
        examples=["s3:https://nyc3.digitaloceanspaces.com/rocksolid-storage/backups/gts-server/postgres"])
    password: ResticPassword = Field(
        description="SECRET. RESTIC_PASSWORD, from the secrets file (password manager); at least 12 characters.",
                                examples=["(a long random passphrase)"])
    access_key_id: S3KeyId = Field(
        description="SECRET. AWS_ACCESS_KEY_ID of the bucket; at least 8 characters.",
                                     examples=["DO00EXAMPLE"])
    secret_access_key: S3SecretKey = Field(
        description="SECRET. AWS_SECRET_ACCESS_KEY of the bucket; at least 16 characters.",
                                         examples=["(the key's secret)"])
    unit: UnitName = Field(description="Name of the .service/.timer pair.", examples=["restic-postgres"])
    script: Script = Field(description="The command the service runs.",
                            examples=["/usr/local/sbin/restic_backup_postgres_dumps.sh"])
    env_file: EtcFile = Field(description="root 0600 KEY=value file (systemd EnvironmentFile=).",
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
    script: Script = Field(default="/usr/local/sbin/restic_backup_postgres_dumps.sh",
                            description="The command the service runs.",
                            examples=["/usr/local/sbin/restic_backup_postgres_dumps.sh"])
    env_file: EtcFile = Field(default="/etc/iac/backup/restic.env", description="root 0600 KEY=value file.",
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
    env_helper: Script = Field(default="/usr/local/sbin/restic-postgres-env.sh",
                                description="Runs a command with this repository's environment, never through a "
                                            "shell that reads the env file (`restic-postgres-env.sh restic "
                                            "snapshots`).",
                                examples=["/usr/local/sbin/restic-postgres-env.sh"])


class ResticSystemState(ResticTarget):
    """Configuration and state to rebuild the server from (runbook: "System-state backups")."""

    unit: UnitName = Field(default="restic-system-state-backup", description="Name of the .service/.timer pair.",
                           examples=["restic-system-state-backup"])
    script: Script = Field(default="/usr/local/sbin/restic-system-state-backup.sh",
                            description="The command the service runs.",
                            examples=["/usr/local/sbin/restic-system-state-backup.sh"])
    env_file: EtcFile = Field(default="/etc/iac/backup/restic-system-state.env",
                              description="root 0600 KEY=value file.",
                              examples=["/etc/gts/backup/restic-system-state.env"])
    schedule: OnCalendar = Field(default="*-*-* 02:20:00", description="OnCalendar= of the backup timer.",
                                 examples=["*-*-* 02:20:00"])
    tag: str = Field(default="system-state", description="restic tag of the snapshots.",
                     examples=["system-state"], pattern=r"^[a-z0-9-]{1,40}$")
    includes: list[AbsPath] = Field(default=DEFAULT_SYSTEM_STATE_INCLUDES, min_length=1,
                                    description="includes.txt: what is backed up.",
                                    examples=[DEFAULT_SYSTEM_STATE_INCLUDES])
    excludes: list[ExcludePattern] = Field(
        default=DEFAULT_SYSTEM_STATE_EXCLUDES, description="excludes.txt: restic --exclude-file patterns.",
        examples=[DEFAULT_SYSTEM_STATE_EXCLUDES])
    lists_dir: EtcFile = Field(default="/etc/iac/backup/system-state",
                               description="Where includes.txt and excludes.txt live.",
                               examples=["/etc/gts/backup/system-state"])
    inventory_dir: EtcFile = Field(
        default="/etc/iac/bootstrap",
        description="The inventory snapshot (packages, enabled services, mounts, nginx -T), regenerated "
                    "before each run.", examples=["/etc/gts/bootstrap"])
    staging_dir: Annotated[str, path_under("/var/lib", example="/var/lib/iac/restore/system-state")] = Field(
        default="/var/lib/iac/restore/system-state",
        description="Where a rebuild (`make dr`) restores the newest snapshot before the converge; the "
                    "converge takes what the model does not declare from there (the apps' deploy keys).",
        examples=["/var/lib/iac/restore/system-state"])
    env_helper: Script = Field(default="/usr/local/sbin/restic-system-state-env.sh",
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
        examples=["https://discord.com/api/webhooks/<id>/<token>"], json_schema_extra={"placeholder": OFFLINE_URL})
    env_file: EtcFile = Field(default="/etc/iac/backup-alert.env",
                              description="root 0600 file holding the webhook for the alert unit.",
                              examples=["/etc/iac/backup-alert.env"])


class BackupsSection(Strict):
    """Backups of the host's data: local dumps on a timer, offsite copies with restic, alerts."""

    local: LocalBackups = Field(default=LocalBackups(), description="Local dumps.")
    offsite: OffsiteBackups = Field(default=OffsiteBackups(), description="restic repositories.")
    alerts: BackupAlerts | None = Field(default=None, description="Where failures are reported (None: the "
                                        "journal only).", examples=[None])
    settings_file: EtcFile = Field(default="/etc/iac/backup.json",
                                   description="What the backup engine reads (written from this model).",
                                   examples=["/etc/iac/backup.json"])
