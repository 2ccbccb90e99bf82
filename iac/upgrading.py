"""What waits for the switch on the new machine of an upgrade (`make upgrade`, stack/upgrade.py).

Until the operator switches names and addresses over, the old host still serves: the new machine
must not take its address (the LAN host's static address), ask for its certificates (the names
point at the old host, where the ACME server checks), or run its scheduled backups and watch
(they would write into the old host's offsite repositories, under the same host name and tags,
and be pruned together with its snapshots). The first run after the switch does all of these.
"""

from __future__ import annotations

from pyinfra import host


def until_switch() -> bool:
    """Whether this run's host is the new machine of an upgrade (its inventory entry says so)."""
    return bool(host.data.get("upgrade"))
