"""Deploy keys: make each app's user and SSH key on its host (once), then print the public keys.

Run: make deploy-keys [INVENTORY=inventory.py]. Register each printed key as a read-only deploy
key of its repository (GitHub: Settings -> Deploy keys); the sandbox registers them on its forge.
This is also the first step of bootstrapping a fresh server: deploy.py fetches code with these.
"""

from pyinfra import host, state
from pyinfra.facts.files import FileContents
from pyinfra.operations import python

from iac.pyinfra_ext import run_lock, sudo_staging
from operations.app.identity import app_identity
from operations.base.deploy import release_matches
from stack.load import host_config

# first, before any fact or upload: through sudo, files are staged in the login's private directory
sudo_staging.prepare(host)
config = host_config(host)
# before anything changes: the host runs the release it is declared on (a wrong TO= of `make upgrade`
# names the old host, which runs the release before)
release_matches(config, host.data.get("group"))
run_lock.hold(state, host, "deploy-keys")

for app_name, app in config.apps.items():
    app_identity(config, app_name, app)

    def _show(app_name: str = app_name, key: str = config.app_paths(app_name).deploy_key,
              url: str = app.source.url) -> None:
        lines = host.get_fact(FileContents, path=f"{key}.pub") or []
        print(f"DEPLOY-KEY {host.name} {app_name} {url} {' '.join(lines).strip()}", flush=True)

    python.call(name=f"Show the deploy key of {app_name}", function=_show)
