"""Base system: host name, local names, time zone, packages.

Stages: install (packages) -> configure (identity, time zone). Packages go first because tzdata
provides the zone files the time zone link points at.
"""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy

from iac.ops import files, server
from iac.packages import packages_present
from operations.host import HostConfig


@deploy("Base system")
def base_system(config: HostConfig) -> None:
    packages_present(config.base.packages + config.base.extra_packages,
                     config.base.apt_cache_hours, "the base system")

    host_cfg = config.host
    server.hostname(name=f"Host name {host_cfg.hostname}", hostname=host_cfg.hostname)
    # Debian resolves its own name through the 127.0.1.1 line; aliases (gts-server.lan) go there.
    names = " ".join([*host_cfg.aliases, host_cfg.hostname])
    files.line(
        name="Local names in /etc/hosts",
        path="/etc/hosts",
        line=r"^127\.0\.1\.1\s.*$",
        replace=f"127.0.1.1\t{names}",
    )

    files.link(
        name=f"Time zone {host_cfg.timezone}",
        path="/etc/localtime",
        target=f"/usr/share/zoneinfo/{host_cfg.timezone}",
    )
    files.put(
        name="Time zone name in /etc/timezone",
        src=StringIO(f"{host_cfg.timezone}\n"),
        dest="/etc/timezone",
        mode="644",
    )
