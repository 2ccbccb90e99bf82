"""Backups: local dumps on a timer, offsite copies with restic, one alert per failed run.

Stages, and why in this order:
  install    restic and the dump tools (the engine itself is Python, which every host has)
  configure  the dump disk's fstab line and a check that it is mounted (never formatted or
             mounted by the converge: it holds data), the engine and its settings file (written
             from the model, no secrets), the runbook's command names, the root-only env files
             with the secrets, the system-state include/exclude lists
  units      services + timers, each verified by systemd before it goes live; the alert unit
             first, because every backup unit names it in OnFailure=
  activate   restic repositories initialised once (an existing one is never re-created), the
             timers enabled and started

All logic that runs on the host is in files/usr/local/lib/iac/iac_backup.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation
from pyinfra.facts.files import File

from iac.engines import BackupSettings, contract, host_engines
from iac.errors import ConfigError
from iac.formats import env_value
from iac.guarded import differing_files, secret_file, units_verified, validated_files
from iac.ops import files, systemd
from iac.packages import packages_present
from iac.paths import HOST, STAGED
from iac.pyinfra_ext.shared_facts import EngineCall
from iac.render import render, text_file
from iac.upgrading import until_switch
from operations.backups.options import BackupsSection, ResticTarget
from operations.host import HostConfig

ENGINE = HOST.backup_engine
OPERATOR_COMMAND = "/usr/local/sbin/iac-backup"




def env_file_text(values: dict[str, str]) -> str:
    lines = ["# Managed by this repo (operations/backups/deploy.py). root 0600: secrets. "
             "systemd EnvironmentFile= format."]
    lines += [f"{k}={env_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def restic_env(target: ResticTarget) -> dict[str, str]:
    return {
        "RESTIC_REPOSITORY": target.repository,
        "RESTIC_PASSWORD": target.password.get_secret_value(),
        "AWS_ACCESS_KEY_ID": target.access_key_id.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": target.secret_access_key.get_secret_value(),
        "RESTIC_CACHE_DIR": "/var/cache/restic",
    }


def offsite_targets(backups: BackupsSection) -> dict[str, ResticTarget]:
    out: dict[str, ResticTarget] = {}
    if backups.offsite.postgres is not None:
        out["postgres"] = backups.offsite.postgres
    if backups.offsite.system_state is not None:
        out["system_state"] = backups.offsite.system_state
    return out


def backup_settings(config: HostConfig) -> BackupSettings:
    """What the engine on the host reads (its typed settings, backup_engine/settings.py): every
    path, name and number comes from the model."""
    backups = config.backups
    assert backups is not None
    local = backups.local
    offsite = {}
    for name, t in offsite_targets(backups).items():
        entry = {"repository": t.repository, "tag": t.tag, "env_file": t.env_file, "schedule": t.schedule,
                 "keep": {"hourly": t.keep_hourly, "daily": t.keep_daily, "weekly": t.keep_weekly,
                          "monthly": t.keep_monthly}}
        if name == "system_state":
            ss = backups.offsite.system_state
            assert ss is not None
            entry |= {"includes_file": f"{ss.lists_dir}/includes.txt", "excludes_file": f"{ss.lists_dir}/excludes.txt",
                      "inventory_dir": ss.inventory_dir, "includes": ss.includes}
        offsite[name] = entry
    # every unit of an app that can touch its databases, in the order a restore stops them: the
    # socket first (a connection would start gunicorn again), then gunicorn, then its processes
    app_units: dict[str, list[str]] = {}
    for name, app in config.apps.items():
        used = [db.name if db.engine == "postgresql" else name
                for db in [app.database, *app.extra_databases.values()]]
        paths = config.app_paths(name)
        for unit in (paths.socket_unit, app.unit, *paths.process_units.values()):
            app_units[unit] = used
    return contract.load(BackupSettings, {
        "host": config.host.hostname,
        "local": {"unit": local.unit, "schedule": local.schedule, "mount": local.mount, "root": local.root,
                  "group": local.group, "databases": config.backup_databases(),
                  "globals": config.postgres is not None, "keep_dump_days": local.keep_dump_days,
                  "keep_globals_days": local.keep_globals_days, "keep_log_days": local.keep_log_days},
        "offsite": offsite,
        "units": backup_units(backups),
        "app_units": app_units,
    })


def backup_units(backups: BackupsSection) -> list[str]:
    """Every service/timer pair, in the order status reports them."""
    units = [backups.local.unit]
    for name, t in offsite_targets(backups).items():
        units.append(t.unit)
        if name == "postgres" and backups.offsite.postgres is not None:
            units.append(backups.offsite.postgres.check_unit)
    return units


def unit_specs(config: HostConfig) -> list[dict]:
    """(unit, description, command, env file, schedule, after) of every service/timer pair."""
    backups = config.backups
    assert backups is not None
    local = backups.local
    specs = [{"unit": local.unit, "description": f"Local database dumps into {local.root}",
              "command": local.script, "env_file": None, "schedule": local.schedule,
              "after": "postgresql.service" if config.postgres else None, "timeout": "2h",
              "args": "dump", "script": local.script}]
    for name, t in offsite_targets(backups).items():
        specs.append({"unit": t.unit, "description": f"restic backup ({t.tag}) to {t.repository}",
                      "command": t.script, "env_file": t.env_file, "schedule": t.schedule,
                      "after": "network-online.target", "timeout": "6h", "args": f"offsite {name}",
                      "script": t.script})
        if name == "postgres" and backups.offsite.postgres is not None:
            pg = backups.offsite.postgres
            specs.append({"unit": pg.check_unit, "description": f"restic check of {t.repository}",
                          "command": f"/usr/bin/python3 {ENGINE} check postgres", "env_file": t.env_file,
                          "schedule": pg.check_schedule, "after": "network-online.target", "timeout": "6h",
                          "args": None, "script": None})
    return specs


# ---- facts + operations ----------------------------------------------------------------------

class MountPoint(FactBase):
    """Whether a path is a mount point right now."""

    def command(self, path: str) -> str:
        return f"mountpoint -q {shlex.quote(path)} && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return output[-1].strip() == "yes"


class ResticRepositoryState(FactBase):
    """``exists`` when the repository was opened before with exactly this env file (the engine's
    note of it, read without touching the network), else ``unverified`` or ``unknown`` (restic, the
    engine or the env file is not on the host yet)."""

    @staticmethod
    def engine_call(env_file: str) -> EngineCall:
        """Also how a fact batch answers it, with the other engine calls in one python3."""
        return EngineCall(ENGINE, ["repo-known", env_file], files=[env_file], programs=["restic"], otherwise="unknown")

    def command(self, env_file: str) -> str:
        return self.engine_call(env_file).shell()

    def process(self, output: list[str]) -> str:
        return (output[-1] if output else "unknown").strip()


@operation()
def mounted(path: str, uuid: str | None):
    """
    Check that the dump disk is mounted; never mount, format or touch it.

    + path: the mount point
    + uuid: its filesystem UUID (named in the message)

    **Example:**

    .. code:: python

        mounted(name="Dump disk mounted", path="/mnt/pg_backups", uuid="3f0a...")
    """
    if host.get_fact(MountPoint, path=path):
        return
    disk = f"the disk UUID={uuid}" if uuid else "the backup disk"
    yield StringCommand(
        f"mountpoint -q {shlex.quote(path)} || {{ echo '{path} is not a mount point: attach {disk} and run "
        f"`mount {path}` (the converge never formats or mounts it; backups refuse to run meanwhile)' >&2; exit 1; }}")


@operation()
def restic_repository(env_file: str):
    """
    Ensure a restic repository exists: initialised once; an existing one is never re-created.

    + env_file: the root-only env file with its URL, password and keys

    **Example:**

    .. code:: python

        restic_repository(name="restic repository", env_file="/etc/gts/backup/restic.env")
    """
    if host.get_fact(ResticRepositoryState, env_file=env_file) == "exists":
        return
    # decided again on the host when this runs: init only if restic says nothing is there
    yield StringCommand(f"python3 {ENGINE} ensure-repo {shlex.quote(env_file)}")


# ---- the component ----------------------------------------------------------------------------

def settings_file(config: HostConfig) -> None:
    """/etc/iac/backup.json: what the engine reads (no secrets)."""
    b = config.backups
    assert b is not None
    files.directory(name=f"Directory {Path(b.settings_file).parent}", path=str(Path(b.settings_file).parent),
                    mode="755")
    files.put(name=f"Backup settings {b.settings_file}",
              src=text_file(json.dumps(contract.dump(backup_settings(config)), indent=2) + "\n"),
              dest=b.settings_file, mode="644")


def restic_env_file(target: ResticTarget) -> None:
    files.directory(name=f"Directory {Path(target.env_file).parent}", path=str(Path(target.env_file).parent),
                    mode="700")
    secret_file(name=f"restic env file {target.env_file}", dest=target.env_file,
                content=env_file_text(restic_env(target)), mode="600")


@operation()
def system_state_staged(staging_dir: str):
    """
    Ensure the newest system-state snapshot of this host is restored into ``staging_dir``.

    + staging_dir: where it goes (never over the live system)

    **Example:**

    .. code:: python

        system_state_staged(name="System state staged", staging_dir=f"{HOST.state_dir}/restore/system-state")
    """
    if host.get_fact(File, path=f"{staging_dir}/.iac-complete"):
        return
    yield StringCommand(f"python3 {ENGINE} stage-state {shlex.quote(staging_dir)}")


def dr_bootstrap(config: HostConfig) -> None:
    """Disaster recovery, step 1 of the runbook's sequence on a bare Debian 12 box: restic, the
    system-state repository's env file (from the secrets file: the runbook's "password
    manager"), and the newest snapshot staged, so the converge that follows can take the old
    host's deploy keys from it. Nothing live is overwritten."""
    b = config.backups
    if b is None or b.offsite.system_state is None:
        raise ConfigError(f"{config.host.hostname}: no backups.offsite.system_state to rebuild from")
    packages_present(["restic", "python3"], config.base.apt_cache_hours, "disaster recovery")
    host_engines()
    settings_file(config)
    restic_env_file(b.offsite.system_state)
    system_state_staged(name=f"Newest system state staged in {b.offsite.system_state.staging_dir}",
                        staging_dir=b.offsite.system_state.staging_dir)


def backups(config: HostConfig) -> None:
    """The host's backups, if it declares any (see the module docstring for the stages)."""
    b = config.backups
    if b is None:
        return
    local = b.local
    targets = offsite_targets(b)
    dbs = config.backup_databases()

    # ---- install
    pkgs = ["python3", "util-linux"] + (["restic"] if targets else [])
    if any(d["engine"] == "sqlite" for d in dbs.values()):
        pkgs.append("sqlite3")
    if any(d["engine"] == "postgresql" for d in dbs.values()):
        pkgs.append("postgresql-client")
    packages_present(pkgs, config.base.apt_cache_hours, "backups")

    # ---- configure: the dump disk
    if local.mount:
        files.directory(name=f"Mount point {local.mount}", path=local.mount)
        if local.disk_uuid:
            opts = "defaults,nofail,x-systemd.device-timeout=10s"
            files.line(name=f"fstab: dump disk UUID={local.disk_uuid} at {local.mount}", path="/etc/fstab",
                       line=rf"^\S+\s+{local.mount}\s.*$",
                       replace=f"UUID={local.disk_uuid} {local.mount} {local.fstype} {opts} 0 2")

    # ---- configure: settings, commands (the engine itself: backup_engine, before the apps)
    settings_file(config)
    commands = [(OPERATOR_COMMAND, "", "The operator's command")]
    commands += [(s["script"], s["args"], s["description"]) for s in unit_specs(config) if s["script"]]
    for t_name, t in targets.items():  # each repository's helper: its environment, never a sourced file
        commands.append((t.env_helper, f"env-exec {t.env_file} --",
                         f"Runs a command with the {t_name.replace('_', '-')} repository's environment"))
    for path, args, purpose in commands:
        files.put(name=f"Command {path}", dest=path, mode="755",
                  src=text_file(render("usr/local/sbin/iac-backup-command.sh.j2", args=args, purpose=purpose,
                                        settings_file=b.settings_file)))

    # ---- configure: secrets (root 0600) and lists
    for t in targets.values():
        restic_env_file(t)
    if b.alerts is not None:
        files.directory(name=f"Directory {Path(b.alerts.env_file).parent}", path=str(Path(b.alerts.env_file).parent),
                        mode="755")
        secret_file(name=f"Alert env file {b.alerts.env_file}", dest=b.alerts.env_file, mode="600",
                    content=env_file_text({"IAC_ALERT_WEBHOOK_URL": b.alerts.webhook_url.get_secret_value()}))
    if b.offsite.system_state is not None:
        ss = b.offsite.system_state
        files.directory(name=f"Directory {ss.lists_dir}", path=ss.lists_dir, mode="700")
        for fname, items in (("includes.txt", ss.includes), ("excludes.txt", ss.excludes)):
            files.put(name=f"System-state {fname}", src=text_file("\n".join(items) + "\n"),
                      dest=f"{ss.lists_dir}/{fname}", mode="600")

    # ---- units: checked together by systemd (the services name the alert unit in OnFailure=, the
    # timers their services), so a set that does not load together never goes live
    units = {f"/etc/systemd/system/{HOST.alert_unit}": render(
        "etc/systemd/system/iac-backup-alert@.service.j2", env_file=b.alerts.env_file if b.alerts else None)}
    for spec in unit_specs(config):
        for kind in ("service", "timer"):
            units[f"/etc/systemd/system/{spec['unit']}.{kind}"] = render(
                f"etc/systemd/system/iac-backup.{kind}.j2", **spec)
    changed = [Path(p).name for p in differing_files(units)]
    validated_files(name="Backup units (verified by systemd, live)" + (f": {', '.join(changed)}" if changed else ""),
                    files=units, validate=units_verified(), activate="systemctl daemon-reload",
                    staging=f"{STAGED}/backup-units")

    # ---- activate
    if local.mount:
        mounted(name=f"Dump disk mounted at {local.mount}", path=local.mount, uuid=local.disk_uuid)
    for t in targets.values():
        restic_repository(name=f"restic repository {t.repository} initialised", env_file=t.env_file)
    paused = until_switch()  # the old host's repositories are this one's until the switch (iac/upgrading.py)
    for spec in unit_specs(config):
        systemd.service(name=f"Timer {spec['unit']}.timer " + ("waits for the switch" if paused else
                                                               "enabled and running"),
                        service=f"{spec['unit']}.timer", running=not paused, enabled=not paused)
