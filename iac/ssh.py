"""Reaching a host over SSH from this machine, the way its inventory entry says pyinfra does
(user, key, known hosts, host key checking, port): the one place the ssh command line is built,
for the operator commands (cli/) and the commit-confirm check of a second login."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping
from typing import Any

from iac import sudo


def ssh_argv(data: Mapping[str, Any], *, port: int | None = None, connect_timeout: int = 15,
             keepalive: bool = False) -> list[str]:
    """``ssh`` with the inventory entry's connection settings and the destination, without a
    command (BatchMode: never a prompt)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}"]
    if keepalive:
        argv += ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]
    if data.get("ssh_key"):
        argv += ["-i", str(data["ssh_key"]), "-o", "IdentitiesOnly=yes"]
    if data.get("ssh_known_hosts_file"):
        argv += ["-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}"]
    if data.get("ssh_strict_host_key_checking"):
        argv += ["-o", f"StrictHostKeyChecking={data['ssh_strict_host_key_checking']}"]
    if port or data.get("ssh_port"):
        argv += ["-p", str(port or data["ssh_port"])]
    user, hostname = data.get("ssh_user"), data["ssh_hostname"]
    return [*argv, f"{user}@{hostname}" if user else str(hostname)]


def as_root(data: Mapping[str, Any], command: str) -> tuple[str, str | None]:
    """The remote command line that runs ``command`` as root, and what goes on its stdin: through
    sudo where the inventory says so, its password (iac/sudo.py) as stdin's only line, never in
    the line; else nothing (stdin stays empty)."""
    if not data.get("_sudo"):
        return command, None
    source = data.get(sudo.DATA_KEY)
    if isinstance(source, sudo.SudoPassword):
        return f"sudo {' '.join(sudo.SUDO_FLAGS)} sh -c {shlex.quote(command)}", source.reveal() + "\n"
    return f"sudo -n sh -c {shlex.quote(command)}", None


def run_as_root(data: Mapping[str, Any], command: str, timeout: float = 3600,
                stream: bool = False, input: str = "") -> subprocess.CompletedProcess:  # noqa: A002
    """Run ``command`` on the host as root (through sudo where the inventory says so); its output
    captured unless ``stream``. The command reads ``input`` on its stdin (sudo reads its password
    first, from the same stdin)."""
    remote, password = as_root(data, command)
    return subprocess.run([*ssh_argv(data), remote], text=True, check=False, timeout=timeout,
                          input=(password or "") + input, capture_output=not stream)
