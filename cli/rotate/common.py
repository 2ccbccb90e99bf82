"""What every rotation shares: the operator's own new secret, read and checked."""

from __future__ import annotations

from cli.secrets import read_values
from iac import sudo
from iac.errors import ConfigError


def given_secret(label: str, least: int) -> str:
    """A new secret the operator brings on stdin (e.g. from their password manager), checked as
    ``checked_secret`` does."""
    return checked_secret(read_values([label])[0], label, least)


def checked_secret(value: str, label: str, least: int) -> str:
    """``value`` if it is at least ``least`` characters, one line that sudo, systemd and sh all read as
    itself (iac/sudo.py check), else a ConfigError naming ``label``."""
    sudo.check(value, label)
    if len(value) < least:
        raise ConfigError(f"{label}: give at least {least} characters (e.g. `openssl rand -base64 {least}`); "
                          "nothing changed")
    return value
