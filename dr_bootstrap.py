"""Disaster recovery, first step: on a bare Debian box, stage the old host's system state.

Run by `make dr` (cli/dr.py) before deploy.py; it installs restic, writes the system-state
repository's env file from the secrets file and restores the newest snapshot into a staging
directory (never over the live system). See docs/backups.md, "Disaster recovery".
"""

from pyinfra import host, state

from iac.pyinfra_ext import run_lock, sudo_staging
from operations.backups.deploy import dr_bootstrap
from operations.base.deploy import release_matches
from stack.load import host_config

# first, before any fact or upload: through sudo, files are staged in the login's private directory
sudo_staging.prepare(host)
config = host_config(host)
release_matches(config, host.data.get("group"))
run_lock.hold(state, host, "dr bootstrap")
dr_bootstrap(config)
