"""What the rotations share: the operator's own new secret, read and checked; a group's hosts."""

from __future__ import annotations

from pathlib import Path

from cli.backups import Target
from cli.secrets import read_values
from cli.validate import load_inventory
from iac import sudo
from iac.errors import ConfigError


def given_secret(label: str, least: int) -> str:
    """A new secret the operator brings on stdin (e.g. from their password manager), checked as
    ``checked_secret`` does."""
    return checked_secret(read_values([label])[0], label, least)


def checked_secret(value: str, label: str, least: int) -> str:
    """``value`` if it is at least ``least`` characters, one line that sudo, systemd and sh all read as
    itself (at most sudo's MAX_LENGTH), else a ConfigError naming ``label`` (and not naming sudo:
    most of these secrets are not its password)."""
    if not value:
        raise ConfigError(f"{label}: empty; nothing changed")
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(f"{label}: holds a line break or NUL, which sudo, systemd and sh would not read as one "
                          "value; give one line; nothing changed")
    if len(value) > sudo.MAX_LENGTH:
        raise ConfigError(f"{label}: longer than {sudo.MAX_LENGTH} characters; nothing changed")
    if len(value) < least:
        raise ConfigError(f"{label}: give at least {least} characters (e.g. `openssl rand -base64 {least}`); "
                          "nothing changed")
    return value


def group_targets(inventory: str, group: str) -> list[Target]:
    """The hosts of ``group`` in ``inventory``, or an error if it has none."""
    hosts = [Target(group, name, data) for name, data in load_inventory(Path(inventory)).get(group, [])]
    if not hosts:
        raise ConfigError(f"{inventory}: no group {group!r}")
    return hosts
