"""Base system: host name, local names, time zone, packages.

Stages: install (packages) -> configure (identity, time zone). Packages go first because tzdata
provides the zone files the time zone link points at.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution

from iac.errors import ConfigError
from iac.ops import files, server
from iac.packages import packages_present
from operations.host import HostConfig


def release_matches(config: HostConfig, group: str) -> None:
    """Stop before anything changes when the host runs another Debian release than it is declared
    on: every path and package derived from ``host.debian`` would be wrong there. A host moves to a
    new release by being rebuilt (`make upgrade`), never by a run or an in-place dist-upgrade."""
    distro = host.get_fact(LinuxDistribution) or {}
    runs = distro.get("major")
    declared = config.debian()
    if distro.get("name") != "Debian" or runs != declared.version:
        seen = f"{distro.get('name') or 'an unknown system'} {runs or ''}".strip()
        if host.data.get("upgrade"):
            raise ConfigError(
                f"{host.name}: the machine at {host.data.get('ssh_hostname')} runs {seen}, but `make upgrade` "
                f"rebuilds it on Debian {declared.version} ({declared.codename}): nothing was changed. Give TO= "
                f"the address of a fresh Debian {declared.version} install, not the old host")
        raise ConfigError(
            f"{host.name} runs {seen}, but is declared on Debian {declared.version} ({declared.codename}: "
            f"host.debian, group_data/{group}.py): nothing was changed. If the host was rebuilt on another release on "
            "purpose (make upgrade), declare that release in host.debian; a run never upgrades a host in place")


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
