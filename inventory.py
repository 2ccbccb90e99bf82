"""Production inventory: the two real servers.

Tests only load and validate this file offline; nothing in tests or default make targets
connects to these hosts (see README, "Safety"). Use: pyinfra inventory.py deploy.py
"""

from pyinfra.context import ctx_state

from iac.inventory import host_entry
from iac.secrets import production_secrets

# Secrets are required only when pyinfra itself loads this file to run against the hosts.
_secrets = production_secrets(required=ctx_state.isset())

public = [
    host_entry("production", "public", {
        "ssh_hostname": "72.61.148.117",  # srv1178562, pravoo.in
        "ssh_user": "root",
    }, secrets=_secrets),
]

lan = [
    host_entry("production", "lan", {
        "ssh_hostname": "gts-server",  # reached over Tailscale: "tailscale ssh gts@gts-server"
        "ssh_user": "gts",
        "_sudo": True,
    }, secrets=_secrets),
]
