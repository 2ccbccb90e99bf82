"""Where pyinfra stages files on a host it reaches through sudo (production's LAN host: ``gts``).

Why: SFTP runs as the login user, so with ``_sudo`` pyinfra uploads each file first to
``<temp dir>/pyinfra-<hash>`` and then ``sudo cp``s it into place. Its default temp dir is /tmp,
and the login's umask (022) leaves that copy readable by every local account until it is removed:
app env files, restic keys and passwords, the alert URL, the admin's password hash. Its sudo
askpass script is made in the same directory. So a host reached through sudo stages in a
directory of its own: ``_temp_dir`` in its host data (pyinfra's global argument, which its
facts, file operations and askpass script all read), under the login's home, mode 0700: nobody
but that login (and root) can open anything in it, whatever mode each file gets on the way.

+ ``host_data``: the ``_temp_dir`` an inventory entry gets (stack/inventory.py ``host_entry``), the
  one place the path is derived;
+ ``prepare``: makes the directory as the login user; each deploy file calls it first, before
  the first fact (which makes the askpass script) and the first upload;
+ ``upload``: the FileUploadCommand an operation of this repository yields. pyinfra's own file
  operations name their temporary file from ``_temp_dir``; a bare FileUploadCommand does not
  (it would stage in /tmp), so every one goes through here (a unit test holds operations/ to it).

Not covered: an upload as another sudo user (``_sudo_user``) could not read a file staged here
(pyinfra's ``setfacl`` opens the file to it, not the directory); this repository uploads nothing
that way. The sudo password travels on the SSH channel's stdin (sudo_stdin.py): ``prepare`` puts
that in place, and stops the run if it cannot.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from io import BytesIO
from typing import Any

from pyinfra import host as current_host
from pyinfra.api import FileUploadCommand, StringCommand
from pyinfra.api.exceptions import PyinfraError

from iac import sudo
from iac.errors import ConfigError
from iac.pyinfra_ext import fact_batch

# a login name as useradd takes it: the path below goes into pyinfra's temporary file names and commands
_LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
STAGING = ".cache/iac-staging"


def staging_dir(user: str) -> str:
    """The private staging directory of a login: ``<home>/.cache/iac-staging``."""
    if not _LOGIN.fullmatch(user):
        raise ConfigError(f"ssh_user {user!r} is not a login name ([a-z_][a-z0-9_-]*)")
    home = "/root" if user == "root" else f"/home/{user}"
    return f"{home}/{STAGING}"


def host_data(connection: Mapping[str, Any]) -> dict[str, Any]:
    """What a host's inventory entry adds to its connection: on a host reached through sudo, the
    private staging directory as pyinfra's ``_temp_dir``; nothing otherwise."""
    if not connection.get("_sudo"):
        return {}
    user = connection.get("ssh_user")
    if not user:
        raise ConfigError("a host reached with _sudo needs ssh_user: its staging directory is in that login's home")
    return {"_temp_dir": staging_dir(str(user))}


def prepare(host: Any) -> None:
    """Make the host's staging directory (``_temp_dir``) as the login user, mode 0700 (a directory
    of that user, no link); nothing on a host without one. First, on a host whose sudo asks for a
    password, the password's way through stdin is put in place (or the run stops). Raises when it cannot: nothing may be
    uploaded through sudo before it exists. (A drift check makes it too: its facts need it.)"""
    if host.data.get("_sudo") and host.data.get(sudo.DATA_KEY) is not None:
        from iac import pyinfra_ext
        from iac.pyinfra_ext import sudo_stdin

        pyinfra_ext.install()
        if not sudo_stdin.active():
            raise PyinfraError(f"{host.name}: reached through sudo with a password, but the sudo part of "
                               "iac/pyinfra_ext is not in place (see the warning above): pyinfra would put the "
                               "password in a command line; stopped before the first command")
    path = host.data.get("_temp_dir")
    if not path:
        return
    q = shlex.quote(str(path))
    with fact_batch.not_a_change(host):
        ok, output = host.run_shell_command(StringCommand(
            f"umask 077 && mkdir -p {q} && test ! -L {q} && test -d {q} && test -O {q} && chmod 700 {q}"))
    if not ok:
        raise PyinfraError(f"{host.name}: cannot make the private staging directory {path} (uploads through "
                           f"sudo are staged there): {' '.join(output.stderr_lines)[-300:]}")


def upload(data: bytes, dest: str) -> FileUploadCommand:
    """The command an operation yields to upload ``data`` to ``dest``: staged in ``_temp_dir`` as
    pyinfra's own file operations stage theirs (on a host reached as root, nothing changes)."""
    temp_dir = (current_host.current_op_global_arguments or {}).get("_temp_dir") or current_host.data.get("_temp_dir")
    remote_temp = current_host.get_temp_filename(dest, temp_directory=str(temp_dir)) if temp_dir else None
    return FileUploadCommand(BytesIO(data), dest, remote_temp_filename=remote_temp)
