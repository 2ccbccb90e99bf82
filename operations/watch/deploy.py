"""The watch: what an operator must hear about before users do, told once each through the host's
alert webhook (backups.alerts): a certificate close to its end (once per certificate), a failed
certbot renewal, a disk above its declared use, backups that stopped arriving.

Stages:
  configure  the engine's settings (/etc/iac/watch.json, from the model, no secrets)
  units      iac-watch.service + .timer, verified by systemd before they go live; the service
             reads the alert env file and names the alert unit in OnFailure= (an alert that could
             not be sent still reaches the webhook through it, or the journal); certbot.service
             gets a drop-in naming the alert unit too (a failed renewal alerts at once)
  activate   the timer enabled and running

Needs the backups' alert unit (iac-backup-alert@.service): the watch is declared with backups.
All logic that runs on the host is in files/usr/local/lib/iac/watch_engine/.
"""

from __future__ import annotations

import json

from iac.engines import WatchSettings, contract
from iac.guarded import units_verified, validated_files
from iac.ops import files, systemd
from iac.paths import HOST, STAGED
from iac.render import render, text_file
from iac.upgrading import until_switch
from operations.host import HostConfig
from operations.tls.deploy import tls_domains

UNIT = "iac-watch"
CERTBOT_DROP_IN = "/etc/systemd/system/certbot.service.d/iac-alert.conf"
CERTBOT_UNIT = "/lib/systemd/system/certbot.service"  # Debian's certbot package


def watched_disks(config: HostConfig) -> list[str]:
    """``/`` and the dump disk (status reports the same)."""
    local = config.backups.local if config.backups else None
    return ["/"] + ([local.mount] if local and local.mount else [])


def watch_settings(config: HostConfig) -> WatchSettings:
    """The engine's settings (watch_engine/settings.py): every path and number from the model."""
    return contract.load(WatchSettings, {
        "host": config.host.hostname,
        "certificates": [{"name": d, "chain": HOST.tls_chain(d)} for d in tls_domains(config)],
        "cert_days": config.watch.cert_days,
        "disks": watched_disks(config),
        "disk_percent": config.watch.disk_percent,
        "backup_engine": HOST.backup_engine if config.backups is not None else "",
        "state": HOST.watch_state,
    })


def watch(config: HostConfig) -> None:
    """The watch's settings, units and timer (after the backups: it uses their alert unit)."""
    if config.backups is None:
        return
    alerts = config.backups.alerts
    settings = contract.dump(watch_settings(config))
    files.put(name=f"Watch settings {HOST.watch_settings}", src=text_file(json.dumps(settings, indent=2) + "\n"),
              dest=HOST.watch_settings, mode="644")
    common = {"description": "iac-watch: certificates, disks, backups", "unit": UNIT}
    units = {f"/etc/systemd/system/{UNIT}.service": render(
                 "etc/systemd/system/iac-watch.service.j2", engine=HOST.watch_engine, settings=HOST.watch_settings,
                 env_file=alerts.env_file if alerts else None, on_failure=HOST.alert_on_failure, **common),
             f"/etc/systemd/system/{UNIT}.timer": render(
                 "etc/systemd/system/iac-watch.timer.j2", schedule=config.watch.schedule, **common)}
    validated_files(name="Watch units (verified by systemd, live)", files=units,
                    validate=units_verified(),
                    activate="systemctl daemon-reload", staging=f"{STAGED}/watch-units")
    if tls_domains(config):
        # one operation: compared, and only when it differs uploaded, verified with the unit it
        # extends, and read by systemd (no conditional step: a converged host plans nothing here)
        validated_files(name="certbot.service: a failed renewal alerts (drop-in, verified by systemd)",
                        files={CERTBOT_DROP_IN: render("etc/systemd/system/certbot.service.d/iac-alert.conf.j2",
                                                       on_failure=HOST.alert_on_failure)},
                        validate=units_verified(CERTBOT_UNIT),
                        activate="systemctl daemon-reload", staging=f"{STAGED}/watch-certbot")
    # on the new machine of an upgrade it waits for the switch with the backups it watches (iac/upgrading.py)
    paused = until_switch()
    systemd.service(name=f"Timer {UNIT}.timer " + ("waits for the switch" if paused else "enabled and running"),
                    service=f"{UNIT}.timer", running=not paused, enabled=not paused)


