"""The administrator's account: a real login with SSH keys and (optionally) sudo.

The password hash is a secret: it reaches the host through a root-only file read by `chpasswd -e`
on its stdin, never on a command line (``useradd -p`` shows it in ``ps`` and in the journal),
and is compared by a digest, so no output ever holds it.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, deploy, operation

from iac.ops import server
from iac.pyinfra_ext.sudo_staging import upload
from operations.host import HostConfig


class ShadowHashDigest(FactBase):
    """sha256 of a user's password hash in /etc/shadow (the hash itself never leaves the host);
    the digest of an empty string when the user or hash does not exist."""

    def command(self, user: str) -> str:
        return f"getent shadow {shlex.quote(user)} | cut -d: -f2 | tr -d '\\n' | sha256sum | cut -c1-64"

    def process(self, output: list[str]) -> str:
        return "".join(output).strip()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@operation()
def password_hash_set(user: str, password_hash: str):
    """
    Ensure ``user``'s password hash in /etc/shadow is ``password_hash``, without it ever being
    on a command line or in an output.

    + user: an existing account
    + password_hash: crypt(3) hash (``mkpasswd -m yescrypt``)

    **Example:**

    .. code:: python

        password_hash_set(name="Admin password", user="gts", password_hash=hash_from_secrets)
    """
    if host.get_fact(ShadowHashDigest, user=user) == _digest(password_hash):
        return
    tmp = "/root/.iac-chpasswd"
    yield StringCommand(f"install -m 600 /dev/null {tmp}")
    yield upload(f"{user}:{password_hash}\n".encode(), tmp)
    yield StringCommand(f"chpasswd -e < {tmp}; rc=$?; rm -f {tmp}; exit $rc")


@deploy("Administrator account")
def admin_account(config: HostConfig) -> None:
    admin = config.admin
    groups = (["sudo"] if admin.sudo else []) + list(admin.groups)
    server.user(
        name=f"Admin user {admin.name}",
        user=admin.name,
        home=f"/home/{admin.name}",
        shell=admin.shell,
        groups=groups,
        append=True,  # adopt existing accounts without dropping memberships made by hand
        public_keys=admin.ssh_authorized_keys or None,
        create_home=True,
    )
    # None leaves the password as it is (how existing hosts are adopted)
    if admin.password_hash:
        password_hash_set(name=f"Admin user {admin.name}: password hash (from the secrets file)",
                          user=admin.name, password_hash=admin.password_hash.get_secret_value())
