"""Debian packages, declared without false changes.

``apt.update`` reports a change whenever its cache is older than ``cache_time``, which would
make a converged host look drifted once a day. So the package lists are refreshed only when a
declared package is actually missing (known from the DebPackages fact), and never otherwise.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.deb import DebPackages

from iac.ops import apt


def packages_present(packages: list[str], cache_hours: int, purpose: str) -> None:
    """
    Ensure Debian packages are installed, refreshing apt lists only if one is missing.

    + packages: package names that must be installed
    + cache_hours: reuse apt lists younger than this when a refresh is needed
    + purpose: what the packages are for, used in operation names

    **Example:**

    .. code:: python

        packages_present(["nginx"], cache_hours=24, purpose="nginx")
    """
    installed = host.get_fact(DebPackages) or {}
    missing = [p for p in packages if p not in installed]
    if missing:
        apt.update(name=f"Refresh apt lists (missing for {purpose}: {', '.join(missing)})",
                   cache_time=cache_hours * 3600)
    apt.packages(name=f"Packages for {purpose}", packages=packages,
                 extra_install_args="-o Dpkg::Options::=--force-confold")
