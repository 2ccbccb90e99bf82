"""Production inventory: the two real servers.

Tests only load and validate this file offline; nothing in tests or default make targets
connects to these hosts (see docs/security.md, "Safety"). Use: pyinfra inventory.py deploy.py
"""

from pyinfra.context import ctx_state

from stack.inventory import group_entries, strict_ssh
from stack.secrets import production_secrets

# Secrets are required only when pyinfra itself loads this file to run against the hosts.
_secrets = production_secrets(required=ctx_state.isset())
# Every host's SSH key must be in the operator's known_hosts file (IAC_KNOWN_HOSTS_FILE, else
# ~/.ssh/known_hosts, which CI writes from the IAC_KNOWN_HOSTS secret): never trusted on first use.
_ssh = strict_ssh(required=ctx_state.isset())

# How each host group_data declares (``hosts`` in group_data/<group>.py) is reached; a host
# declared there without an entry here (or the reverse) stops the run before any connection.
public = group_entries("production", "public", {
    "srv1178562": {  # pravoo.in
        "ssh_hostname": "72.61.148.117",
        "ssh_user": "root",
        **_ssh,
    },
}, secrets=_secrets)

lan = group_entries("production", "lan", {
    "gts-server": {  # reached over Tailscale: "tailscale ssh gts@gts-server"
        "ssh_hostname": "gts-server",
        "ssh_user": "gts",
        "_sudo": True,
        **_ssh,
    },
}, secrets=_secrets)
