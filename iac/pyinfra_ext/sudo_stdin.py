"""pyinfra's commands through sudo with a password: the password on the SSH channel's stdin.

Why: pyinfra 3.10 sends ``env SUDO_ASKPASS=<script> PYINFRA_SUDO_PASSWORD='<password>' sudo -A -k
sh -c '...'``. sshd runs that whole line as ``sh -c '<line>'``, so for as long as each command runs
the password is in two command lines on the host (the login shell's and env's), which ``ps`` shows
to every account, app users included; and it uploads an askpass script first.

What runs instead, for a command with ``_sudo`` on a host whose data carries a ``SudoPassword``
(iac/sudo.py): ``sudo -H -S -p '' -k [-u user] sh -c '...'`` with the password as the first line of
the channel's stdin (then the command's own stdin, if any). sudo reads exactly that line; the
command line holds no secret; no askpass script is made. A command without ``_sudo``, or on a host
reached as root, runs exactly as pyinfra makes it.

Installed by iac/pyinfra_ext/__init__.py (part ``sudo``, on even with ``IAC_PYINFRA_EXT=off``: it
changes how, not what); ``sudo_staging.prepare`` refuses to go on with a password-protected sudo
when it is not in place, so the password never falls back to pyinfra's command line.
"""

from __future__ import annotations

import functools
from typing import Any

from pyinfra.api import QuoteString, StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.util import make_unix_command

from iac import sudo

# the arguments that shape the command inside sudo (make_unix_command's), taken out of the
# connector's arguments and applied here
_SHAPING = ("_env", "_chdir", "_shell_executable", "_su_user", "_use_su_login", "_su_shell", "_preserve_su_env")
_SUDO = ("_sudo", "_sudo_user", "_use_sudo_login", "_preserve_sudo_env", "_sudo_password")


def password_of(host: Any, arguments: dict[str, Any]) -> str | None:
    """The sudo password a command of ``host`` with these arguments sends, or None (no sudo, or a
    sudo that needs none: pyinfra's own ``sudo -n``)."""
    if not arguments.get("_sudo"):
        return None
    if arguments.get("_sudo_password"):
        return sudo.check(str(arguments["_sudo_password"]), f"{host.name}: _sudo_password")
    source = host.data.get(sudo.DATA_KEY)
    if isinstance(source, sudo.SudoPassword):
        return source.reveal()
    return host.connector_data.get("prompted_sudo_password") or None


def _stdin_lines(stdin: Any) -> list[str]:
    if stdin is None:
        return []
    if hasattr(stdin, "readlines"):
        stdin = stdin.readlines()
    return list(stdin) if isinstance(stdin, (list, tuple)) else [stdin]


def command_and_stdin(command: Any, password: str, arguments: dict[str, Any]) -> tuple[StringCommand, list[str]]:
    """The command line and the stdin lines of a command through ``sudo -S``; ``arguments`` loses
    what they already apply (sudo's, the shaping ones, ``_stdin``), and gets ``_shell_executable=None``
    (the line is complete)."""
    if arguments.get("_su_password"):
        raise PyinfraError("su with a password inside sudo is not supported (iac/pyinfra_ext/sudo_stdin.py)")
    if arguments.get("_get_pty"):
        raise PyinfraError("a command through sudo with a password cannot have a pty: the pty would echo the "
                           "password into the command's output")
    bits: list[Any] = ["sudo", *sudo.SUDO_FLAGS]
    if arguments.get("_use_sudo_login"):
        bits.append("-i")
    if arguments.get("_preserve_sudo_env"):
        bits.append("-E")
    if arguments.get("_sudo_user"):
        bits.extend(["-u", QuoteString(str(arguments["_sudo_user"]))])
    shaping = {k: arguments.pop(k) for k in _SHAPING if k in arguments}
    for key in _SUDO:
        arguments.pop(key, None)
    stdin = [password, *_stdin_lines(arguments.pop("_stdin", None))]
    arguments["_shell_executable"] = None
    return StringCommand(*bits, make_unix_command(command, **shaping)), stdin


def run_shell_command(original: Any) -> Any:
    """``SSHConnector.run_shell_command``, sending the sudo password on stdin (see the module)."""

    @functools.wraps(original)
    def wrapper(self: Any, command: Any, print_output: bool = False, print_input: bool = False,
                **arguments: Any) -> Any:
        password = password_of(self.host, arguments)
        if password is None:
            arguments.pop("_sudo_password", None)
            return original(self, command, print_output, print_input, **arguments)
        line, stdin = command_and_stdin(command, password, arguments)
        return original(self, line, print_output, print_input, _stdin=stdin, **arguments)

    wrapper.iac_sudo_stdin = True  # type: ignore[attr-defined]
    return wrapper


def active() -> bool:
    """Whether pyinfra's SSH connector sends sudo passwords this way now."""
    from pyinfra.connectors.ssh import SSHConnector

    return bool(getattr(SSHConnector.run_shell_command, "iac_sudo_stdin", False))
