"""`iac rotate-sudo-password GROUP`: the admin's password on the group's hosts reached through sudo.

1. the new password is read from stdin (at a terminal: typed twice, not echoed); its hash is made
   here (SHA-512 crypt, a random salt), the host's present hash is read and kept in memory;
2. on each host, through sudo with the old password: ``chpasswd -e`` (the hash on stdin); then a
   new login proves the new password opens sudo; if it does not, the old hash is put back;
3. the stack takes ``admin.password_hash`` and, where it keeps one, ``connection.sudo_password``
   (checked, encrypted); if it cannot, every host gets its old hash back.
Then `make drift` is in sync (the host's hash is the declared one) and the old password opens nothing.
"""

from __future__ import annotations

import getpass
import json
import secrets
import shlex
import sys

from cli.backups import Target
from cli.rotate.common import checked_secret, given_secret, group_targets
from cli.secrets import current, load_stack, put, save
from iac import sudo
from iac.errors import ConfigError
from iac.host_run import held
from iac.ssh import run_as_root
from stack.secrets import MIN_CONNECTION_SECRET, crypt_sha512, value_at


def _new_password(label: str) -> str:
    """The new sudo password: typed twice at a terminal (they must match), else stdin's line; checked
    as every rotation checks the operator's own secret (cli/rotate/common.py)."""
    if not sys.stdin.isatty():
        return given_secret(label, MIN_CONNECTION_SECRET)
    first, second = getpass.getpass(f"{label} (not echoed): "), getpass.getpass("again: ")
    if first != second:
        raise ConfigError("the two passwords differ; nothing changed")
    return checked_secret(first, label, MIN_CONNECTION_SECRET)


def _with_password(target: Target, password: str) -> dict:
    """The host's connection data with another sudo password (a login that proves it works)."""
    login = target.data.get("ssh_user") or "?"
    return {**target.data, sudo.DATA_KEY: sudo.SudoPassword(target.name, login, password, "the new password")}


def rotate_sudo_password(inventory: str, group: str) -> int:
    hosts = group_targets(inventory, group)
    through_sudo = [t for t in hosts if t.data.get("_sudo")]
    if len(through_sudo) != len(hosts):
        raise ConfigError(f"{group}: {', '.join(t.name for t in hosts if t not in through_sudo)} "
                          "is reached as root, not through sudo: there is no sudo password to rotate")
    login = hosts[0].config.admin.name
    password = _new_password(f"new sudo password of {login} on {group}")
    hashed = crypt_sha512(password, secrets.token_urlsafe(12).replace("-", ".").replace("_", "/")[:16])
    vault, _ = load_stack(inventory)
    before = current(vault)
    data = json.loads(before)
    stored = value_at(data.get(group, {}), sudo.SECRET_PATH) is not None
    changed: list[tuple[Target, str]] = []  # (host, its old hash), to put back

    def put_back() -> list[str]:
        """The old hash back on each host changed so far (through sudo with the new password, which
        is the one that opens it now); the hosts where that failed."""
        return [t.name for t, old_hash in reversed(changed)
                if run_as_root(_with_password(t, password), "chpasswd -e", timeout=60,
                               input=f"{login}:{old_hash}\n").returncode != 0]

    for t in hosts:
        with held(t.name, t.data, f"rotate the sudo password of {login}") as run:
            shadow = t.ssh(f"getent shadow {shlex.quote(login)}", timeout=60)
            if shadow.returncode != 0 or shadow.stdout.count(":") < 2:
                run.result = "failed"
                failed = put_back()
                raise ConfigError(f"{t.name}: cannot read {login}'s password entry through sudo (exit "
                                  f"{shadow.returncode}); nothing changed there" + _left(failed))
            old_hash = shadow.stdout.split(":")[1]
            done = t.ssh("chpasswd -e", input=f"{login}:{hashed}\n", timeout=60)
            if done.returncode != 0:
                run.result = "failed"
                failed = put_back()
                raise ConfigError(f"{t.name}: chpasswd failed: {done.stderr.strip()[-300:]}" + _left(failed))
            changed.append((t, old_hash))
            run.data = _with_password(t, password)  # the history line is written through sudo: the new one opens it
            proof = run_as_root(run.data, "true", timeout=60)
            if proof.returncode != 0:
                run.result = "failed"
                failed = put_back()
                run.data = run.data if t.name in failed else t.data
                raise ConfigError(f"{t.name}: the new password does not open sudo (exit {proof.returncode}); the "
                                  "old one is back" + _left(failed))
            run.result = "rotated"
        print(f"rotate: {t.name}: {login}'s new password opens sudo; the old one no longer does")
    try:
        put(data, (group, "admin", "password_hash"), hashed)
        if stored:
            put(data, (group, *sudo.SECRET_PATH), password)
        save(inventory, vault, json.dumps(data, indent=2).encode() + b"\n")
    except (ConfigError, OSError, ValueError) as exc:
        failed = put_back()
        raise ConfigError(f"the stack could not take the new password ({exc}); the old one is back"
                          + _left(failed)) from None
    print(f"rotate: the stack's {group}.admin.password_hash" + (f" and {group}.connection.sudo_password are"
          if stored else " is") + f" the new ones ({vault.cipher}); commit {vault.cipher.name}"
          + ("" if stored else "; type the new password when a run asks for it"))
    return 0


def _left(failed: list[str]) -> str:
    return f"; putting the old password back failed on {', '.join(failed)}: log in there and run `passwd`" \
        if failed else ""
