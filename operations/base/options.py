"""Options of the base system: the host's identity, packages."""

from __future__ import annotations

from pydantic import (
    Field,
)

from iac.debian import RELEASES, DebianVersion
from iac.values import Fqdn, Hostname, PackageName, Strict, TimeZone


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
    debian: DebianVersion = Field(
        default=12,
        description=(
            "The Debian release the host runs; what differs between releases (PostgreSQL's major and "
            "paths, Python, the archive's codename) is derived from it (iac/debian.py). A run against a "
            "host that runs another release stops before changing anything: moving a host to a new "
            "release is `make upgrade` (a new host, the backups restored), never an edit here. "
            + "; ".join(r.summary() for r in RELEASES.values()) + "."
        ),
        examples=[12, 13],
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
