"""Changes that could lock the operator out (sshd, the packet filter), applied commit-confirm.

A change is checked on the host (`sshd -t`, `nft -c`), a revert is armed there (a timer), the new
configuration goes live, and then a second, NEW SSH connection from this machine must get in.
Only then is the revert disarmed. If the connection fails, the revert runs at once over the
still-open connection (which sshd's reload and an established-traffic rule keep alive), and the
operation fails saying so; if this machine vanishes mid-change, the timer reverts on its own.
The host side is files/usr/local/sbin/iac-confirmed-change.
"""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import time
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, StringCommand, operation

from iac.declared import declares
from iac.paths import HOST, STAGED
from iac.pyinfra_ext.sudo_staging import upload
from iac.ssh import ssh_argv

SCRIPT = "/usr/local/sbin/iac-confirmed-change"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-iac.conf"
NFTABLES_CONF = "/etc/nftables.conf"
NFT_RECORD = f"{HOST.state_dir}/nft-iac.sha256"


class ExposureState(FactBase):
    """In one command: digests of the sshd drop-in and the ruleset file, sshd's effective login
    settings (`sshd -T`), and the live `table inet iac` against the digest recorded when it was
    applied (a rule added by hand changes it)."""

    def command(self) -> str:
        return (f"for f in {SSHD_DROPIN} {NFTABLES_CONF}; do "
                "printf 'file %s %s\\n' \"$f\" \"$(sha256sum < \"$f\" 2>/dev/null | cut -c1-64)\"; done; "
                "sshd -T 2>/dev/null | grep -E '^(port|permitrootlogin|passwordauthentication|"
                "kbdinteractiveauthentication) ' | sed 's/^/sshd /'; "
                "printf 'nft-live %s\\n' \"$(nft list table inet iac 2>/dev/null | sha256sum | cut -c1-64)\"; "
                f"printf 'nft-recorded %s\\n' \"$(cat {NFT_RECORD} 2>/dev/null)\"; "
                "printf 'nft-present %s\\n' \"$(nft list table inet iac >/dev/null 2>&1 && echo yes || echo no)\"")

    def process(self, output: list[str]) -> dict[str, Any]:
        state: dict[str, Any] = {"files": {}, "sshd": {}}
        for line in output:
            parts = line.split()
            if parts[:1] == ["file"] and len(parts) >= 2:
                state["files"][parts[1]] = parts[2] if len(parts) > 2 else None
            elif parts[:1] == ["sshd"] and len(parts) == 3:
                state["sshd"][parts[1]] = parts[2]
            elif parts and parts[0] in ("nft-live", "nft-recorded", "nft-present"):
                state[parts[0]] = parts[1] if len(parts) > 1 else ""
        return state


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def second_login(port: int) -> list[str]:
    """The ssh command line of a new connection to the current host, made the way the inventory
    says pyinfra connects (user, key, known hosts), on the port sshd is declared to listen on."""
    data = {k: host.data.get(k) for k in ("ssh_key", "ssh_known_hosts_file", "ssh_strict_host_key_checking",
                                          "ssh_user")}
    data["ssh_hostname"] = host.data.get("ssh_hostname") or host.name
    return [*ssh_argv(data, port=port, connect_timeout=8, keepalive=True), "true"]


def _confirm(state, host, kind: str, dest: str, login: list[str], deadline: float = 25.0) -> bool:  # noqa: ARG001
    """Runs on this machine, between `begin` and `commit`: can a new connection get in?

    Tried until ``deadline`` seconds have passed: sshd re-executes itself on reload, and for
    that instant a new connection is refused; a configuration that locks out fails every try."""
    started, why = time.monotonic(), ""
    while True:
        try:
            proc = subprocess.run(login, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                                  check=False)
            if proc.returncode == 0:
                return True
            why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        except subprocess.TimeoutExpired:
            why = "no answer"
        if time.monotonic() - started > deadline:
            break
        time.sleep(2)
    host.run_shell_command(StringCommand(f"{SCRIPT} revert {kind} {shlex.quote(dest)}"),
                           _sudo=bool(host.data.get("_sudo")))
    host.log_styled(f"REVERTED: with the new {dest} a new SSH connection ({' '.join(login[-2:])}) could not get in "
                    f"({why}); the previous configuration is live again", fg="red")
    return False


@declares("dest")
@operation()
def confirmed_file(kind: str, dest: str, content: str, in_sync: bool, login: list[str], revert_seconds: int = 45):
    """
    Ensure ``dest`` holds ``content`` and is live, proven by a new SSH connection, else reverted.

    + kind: ``sshd`` (checked with ``sshd -t``, applied by reloading ssh) or ``nft`` (``nft -c``, ``nft -f``)
    + dest: the live file
    + content: what it must hold
    + in_sync: the caller's facts say the file and its live effect are as declared (nothing to do)
    + login: argv of the second connection (``second_login(port)``); its success commits the change
    + revert_seconds: the armed revert fires after this long if nothing commits

    **Example:**

    .. code:: python

        confirmed_file(name="sshd: keys only", kind="sshd", dest=SSHD_DROPIN, content=text,
                       in_sync=False, login=second_login(22))
    """
    if in_sync:
        return
    staged = f"{STAGED}{dest}"
    yield StringCommand(f"mkdir -p {shlex.quote(staged.rsplit('/', 1)[0])}")
    yield upload(content.encode(), staged)
    yield StringCommand(f"{SCRIPT} begin {kind} {shlex.quote(staged)} {shlex.quote(dest)} {revert_seconds}")
    yield FunctionCommand(_confirm, (kind, dest, login), {})
    yield StringCommand(f"{SCRIPT} commit {kind} {shlex.quote(dest)}")
