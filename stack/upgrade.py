"""The new host of an upgrade: `make upgrade HOST=<group> TO=<address>` (cli/upgrade.py).

A host moves to the next Debian release by being rebuilt on a new machine from its backups, while
the old one keeps serving until the operator switches names and addresses over (README,
"Upgrading a host to the next Debian release"). During that, ``IAC_UPGRADE=<group>=<address>``
makes the inventory reach the group's host at the new machine's address, declared on the next
release (iac/debian.py next_release); nothing in group_data changes until the switch, and every
other value stays the group's. This is the one value a production run takes from outside
group_data, and it only ever points a run at a machine that is not serving yet.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from iac.errors import ConfigError

UPGRADE_ENV = "IAC_UPGRADE"
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*",
                       re.IGNORECASE)


@dataclass(frozen=True)
class UpgradeTarget:
    group: str
    address: str


def check_address(address: str, where: str) -> str:
    """An IP address or a DNS name (what ssh is given), else a ConfigError naming ``where``."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(address):
        raise ConfigError(f"{where}: {address!r} is neither an IP address nor a host name; give the new "
                          "machine's address, e.g. TO=192.168.1.231")
    return address.lower()


def upgrade_target(groups: tuple[str, ...] | list[str]) -> UpgradeTarget | None:
    """The upgrade a run is part of (``IAC_UPGRADE``), or None."""
    value = os.environ.get(UPGRADE_ENV, "")
    if not value:
        return None
    group, sep, address = value.partition("=")
    if not sep or group not in groups:
        raise ConfigError(f"{UPGRADE_ENV}={value!r}: give <group>=<address of the new machine>, group one of "
                          f"{', '.join(groups)} (make upgrade sets it)")
    return UpgradeTarget(group, check_address(address, UPGRADE_ENV))
