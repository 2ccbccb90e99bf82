"""Paths on the hosts that more than one part of the repository names, derived here once."""

from __future__ import annotations

# rendered files wait here until their check passes (iac/guarded.py validated_file(s))
STAGED = "/etc/iac/staged"

# Where the release engine's settings live on a host (its own default, files/usr/local/lib/iac/
# iac_release.py SETTINGS_DIR, is checked equal by tests/unit/test_release_engine.py)
RELEASE_SETTINGS_DIR = "/etc/iac/apps"


# what root records about each app's releases (what is live, what was built, the manifests): a
# directory only root can write, so that no app can forge a record root later acts on
RELEASE_STATE_DIR = "/var/lib/iac/releases"


# root-only runtime directory of the host engines: their locks (never in world-writable /run/lock)
RUNTIME_DIR = "/run/iac"


NGINX_SITES_AVAILABLE = "/etc/nginx/sites-available"


NGINX_SITES_ENABLED = "/etc/nginx/sites-enabled"


# what the repository manages on a host (HostConfig.managed), written there by every whole run
MANAGED_MANIFEST = "/etc/iac/managed.json"


# shared by every app's gunicorn; shipped by operations/app/deploy.py release_engine()
GUNICORN_CONFIG = "/usr/local/lib/iac/gunicorn_conf.py"
