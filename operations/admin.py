"""The administrator's account: a real login with SSH keys and (optionally) sudo."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import server

from iac.model import HostConfig


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
        # None leaves the password as it is; the hash is compared, so this is not re-applied
        password=admin.password_hash.get_secret_value() if admin.password_hash else None,
    )
