"""Options of the watch: when a certificate, a disk or the backups alert (watch)."""

from __future__ import annotations

from pydantic import Field

from iac.values import OnCalendar, Strict


class WatchSection(Strict):
    """What the host's watch (iac-watch.timer) tells the alert webhook (backups.alerts), once per
    condition: a certificate close to its end, a disk filling up, backups that stopped arriving.
    `make status` flags the same thresholds."""

    cert_days: int = Field(default=14, ge=1, le=60,
                           description="A served certificate with fewer days left alerts (once per certificate). "
                                       "certbot renews 30 days before the end: an alert means renewal is failing.",
                           examples=[14])
    disk_percent: int = Field(default=90, ge=50, le=99,
                              description="A watched disk (/ and the dump disk) used above this percentage alerts "
                                          "(once, until it drops below).", examples=[90])
    schedule: OnCalendar = Field(default="*-*-* *:20:00", description="OnCalendar= of the watch's timer.",
                                 examples=["*-*-* *:20:00"])
