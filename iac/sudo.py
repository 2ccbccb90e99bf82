"""The admin's sudo password on its way to a host reached through sudo (production's LAN host).

Where it comes from, in this order, when a command first needs it:

+ the secrets file, ``<group>.connection.sudo_password`` (the sandbox's is a generated canary);
+ else a prompt on the operator's terminal (``/dev/tty``), once per run;
+ else the run stops, naming both ways.

Where it goes: only into ``sudo -S`` on the standard input of the SSH channel (``SUDO_FLAGS``),
never into a command line (``ps`` shows every command line to every account on the host), a file
on either side, a log, a plan or a fact record. pyinfra's own way (an ``env`` assignment in front
of ``sudo -A`` and an askpass script) puts it in the command line, so a host's inventory entry
never carries pyinfra's ``_sudo_password``: it carries a ``SudoPassword`` under ``DATA_KEY``, which
iac/pyinfra_ext/sudo_stdin.py (pyinfra's commands) and iac/ssh.py (the operator commands) read.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable

from iac.errors import ConfigError

# the host data key of a host's SudoPassword (stack/inventory.py puts it there)
DATA_KEY = "iac_sudo_password"
# the secrets file's place for it, under the group: {"lan": {"connection": {"sudo_password": "..."}}}
SECRET_PATH = ("connection", "sudo_password")
# sudo reads the password from stdin (-S) without a prompt (-p ''), never from its cache (-k), with
# root's HOME (-H): the first line the command's stdin carries is the password
SUDO_FLAGS = ("-H", "-S", "-p", "''", "-k")
MAX_LENGTH = 1000


def check(value: str, where: str) -> str:
    """``value`` if sudo can read it as one line of stdin, else a ConfigError naming ``where``."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: the sudo password is empty or not a string")
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(f"{where}: the sudo password holds a line break or NUL, which sudo -S cannot read; "
                          "change the admin's password (admin.password_hash) to one without")
    if len(value) > MAX_LENGTH:
        raise ConfigError(f"{where}: the sudo password is longer than {MAX_LENGTH} characters")
    return value


def _terminal() -> bool:
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


class SudoPassword:
    """The sudo password of ``login`` on ``host``: ``stored`` (from the secrets file) or typed at the
    first ``reveal()``. Its repr never shows it (host data is printed by pyinfra's debug options).

    Example: ``SudoPassword("gts-server", "gts", None, "lan.connection.sudo_password in $IAC_SECRETS_FILE")``"""

    def __init__(self, host: str, login: str, stored: str | None, where: str,
                 ask: Callable[[str], str] | None = None) -> None:
        self.host, self.login, self.where = host, login, where
        self._value = check(stored, where) if stored not in (None, "") else None
        self._ask = ask

    def __repr__(self) -> str:
        return f"SudoPassword({self.login}@{self.host}, hidden)"

    __str__ = __repr__

    @property
    def stored(self) -> bool:
        return self._value is not None

    def reveal(self) -> str:
        """The password (asked for on the terminal the first time when it is not stored)."""
        if self._value is None:
            prompt = f"sudo password of {self.login} on {self.host}: "
            if self._ask is not None:
                typed = self._ask(prompt)
            elif _terminal():
                typed = getpass.getpass(prompt)
            else:
                raise ConfigError(
                    f"{self.host} is reached as {self.login} with sudo, which asks for a password: it is not in "
                    f"{self.where}, and there is no terminal to type it on. Add it there, or run from a terminal "
                    "(docs/secrets.md, \"The sudo password\")")
            self._value = check(typed, "the typed password")
        return self._value
