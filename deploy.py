"""What the hosts are: read top to bottom, this is the table of contents.

Run: pyinfra sandbox/inventory.py deploy.py   (production: pyinfra inventory.py deploy.py)
Each step reads the host's validated configuration (operations/host.py).
"""

from pyinfra import host, state

from iac import pyinfra_ext
from iac.engines import host_engines
from iac.pyinfra_ext import run_lock, sudo_staging
from operations.admin.deploy import admin_account
from operations.app.deploy import django_app
from operations.app.release import release_engine
from operations.backups.deploy import backups
from operations.base.deploy import base_system, release_matches
from operations.baseline.deploy import baseline
from operations.exposure.deploy import exposure
from operations.host import HostConfig
from operations.network.deploy import static_network
from operations.nginx.deploy import nginx_sites, sites_answer
from operations.node.deploy import nodejs
from operations.orphans.deploy import managed_manifest, orphans
from operations.postgres.deploy import postgresql
from operations.tailscale.deploy import tailscale
from operations.tls.deploy import certificate_links, certificates
from operations.watch.deploy import watch
from stack.load import host_config, release_only, run_purpose

# while pyinfra decides what to change: facts in a few batched commands per host, and less CPU
# (iac/pyinfra_ext/__init__.py: only on the pyinfra it was tested with; IAC_PYINFRA_EXT=off: none)
pyinfra_ext.install()


def whole_host(config: HostConfig) -> None:
    """Everything the host is, in the order it must happen."""
    base_system(config)
    # early: sshd keys-only and the packet filter before services listen; each change is proven by a
    # new SSH connection before it stays (a change that would lock the operator out is reverted)
    exposure(config)
    static_network(config)
    tailscale(config)
    postgresql(config)
    # after the services: the admin joins groups they create (postgres, for the dump disk)
    admin_account(config)
    nodejs(config)

    # nginx reads certificates through links that exist before the first certificate does
    certificate_links(config)
    # the host engines: one dump and restore implementation (the scheduled backups, each release's
    # pre-migrate backup and its restore use it) and the release engine every app's release runs
    host_engines()
    release_engine()
    # apps before their sites: a new release is checked on its own socket, and on an adopted host
    # the old site keeps proxying to the old process until the new one is up
    for name, app in config.apps.items():
        django_app(config, name, app)
    # what an earlier run managed and the configuration no longer declares: units, files, users
    # removed, data reported as retained
    orphans(config)
    nginx_sites(config)
    # certbot answers its HTTP-01 challenge through the nginx site above
    certificates(config)
    # after the apps and their databases: dumps of every declared database, offsite copies, alerts
    backups(config)
    # after the backups (their alert unit): certificates, disks and backups watched, each condition told once
    watch(config)
    # only a run that got this far records what it manages (the next run's orphans)
    managed_manifest(config)
    # when every concern above has declared what it writes: the rest of the host is held against
    # Debian's packages and that declaration (undeclared configuration quarantined, units that a
    # drop-in made run as root restarted as declared)
    baseline(config)
    # last: each app answers through nginx with the Host header its users send (pravoo.in)
    sites_answer(config)


def one_app(config: HostConfig, app: str) -> None:
    """`make release APP=x` (cli/release.py): that app's own steps and its check through nginx;
    everything else of the host waits for a whole run (`make apply`)."""
    host_engines()
    release_engine()
    django_app(config, app, config.apps[app])
    sites_answer(config, only=app)


# first, before any fact or upload: through sudo, files are staged in the login's private directory
sudo_staging.prepare(host)
config = host_config(host)
# before anything changes: the host runs the Debian release everything below is derived for
release_matches(config, host.data.get("group"))
# a run that changes the host holds its lock first, and ends with a line in its history (a plan
# takes no lock)
if app := release_only(config):
    run_lock.hold(state, host, run_purpose(f"release {app} {config.apps[app].source.revision}"), limit=False)
    one_app(config, app)
else:
    run_lock.hold(state, host, "apply")
    whole_host(config)
pyinfra_ext.deploy_loaded(host)
