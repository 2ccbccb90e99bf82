"""Paths on every host that are not one app's (those are AppPaths, operations/app/paths.py),
derived here once and passed on: to operations, templates, the engines' settings and the tests
that hold the engines' own defaults equal to them (tests/unit/test_layout.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostPaths:
    """Where this repository keeps its own things on a host."""

    # rendered files wait here until their check passes (iac/guarded.py validated_file(s))
    staged: str = "/etc/iac/staged"
    # the host engines: packages and their launchers (files/usr/local/lib/iac/, iac/engines.py)
    engines: str = "/usr/local/lib/iac"
    # each app's release settings, env-free JSON the release engine reads, and its pinned host key
    release_settings_dir: str = "/etc/iac/apps"
    # what root records about each app's releases: only root can write there, so no app can
    # forge a record root later acts on
    release_state_dir: str = "/var/lib/iac/releases"
    # the engines' records of other kinds (the packet filter's digest, restic repositories seen)
    state_dir: str = "/var/lib/iac"
    # root-only runtime directory of the host engines: their locks (never world-writable /run/lock)
    runtime_dir: str = "/run/iac"
    nginx_sites_available: str = "/etc/nginx/sites-available"
    nginx_sites_enabled: str = "/etc/nginx/sites-enabled"
    # what the repository manages on a host (HostConfig.managed), written by every whole run
    managed_manifest: str = "/etc/iac/managed.json"
    # what a converge takes away from a host (undeclared configuration), kept: <utc>/<path> + MANIFEST.json
    quarantine: str = "/var/lib/iac/quarantine"
    # the baseline engine's own records (the package check's cache, the held copies of installer files)
    baseline_state: str = "/var/lib/iac/baseline"
    # nginx reads each TLS name's certificate through links here (<name>/fullchain.pem, privkey.pem),
    # pointed at certbot's live files by its deploy hook (operations/tls/deploy.py)
    tls_links: str = "/etc/iac/tls"
    # the CA certificates a served certificate must chain to (tls.issuer_ca_bundle)
    tls_issuers: str = "/etc/iac/tls-issuers.pem"
    # this repository's logs on a host: the release engine's steps, every run's history line
    log_dir: str = "/var/log/iac"
    # the template unit that posts one message about a failed unit to the host's alert webhook
    alert_unit: str = "iac-backup-alert@.service"

    @property
    def alert_on_failure(self) -> str:
        """``OnFailure=`` of a unit whose failure alerts (``%n``: the failed unit's name)."""
        return self.alert_unit.replace("@.", "@%n.")

    def tls_chain(self, domain: str) -> str:
        """The certificate chain nginx serves for ``domain`` (a link, see ``tls_links``)."""
        return f"{self.tls_links}/{domain}/fullchain.pem"

    def tls_key(self, domain: str) -> str:
        """The private key nginx uses for ``domain`` (a link, see ``tls_links``)."""
        return f"{self.tls_links}/{domain}/privkey.pem"

    @property
    def release_log(self) -> str:
        """The release engine's log (release_engine/log.py), one line per step of every app."""
        return f"{self.log_dir}/releases.log"

    @property
    def history(self) -> str:
        """Every changing run's line: when, who, what, result (iac/host_run.py)."""
        return f"{self.log_dir}/history.jsonl"

    @property
    def run_lock(self) -> str:
        """The lock one changing run at a time holds (iac/host_run.py)."""
        return f"{self.runtime_dir}/run.lock"

    @property
    def run_holder(self) -> str:
        """Who holds ``run_lock``, as the holder wrote it."""
        return f"{self.runtime_dir}/run.holder"

    @property
    def release_engine(self) -> str:
        return f"{self.engines}/iac_release.py"

    @property
    def backup_engine(self) -> str:
        return f"{self.engines}/iac_backup.py"

    @property
    def baseline_engine(self) -> str:
        return f"{self.engines}/iac_baseline.py"

    @property
    def watch_engine(self) -> str:
        return f"{self.engines}/iac_watch.py"

    @property
    def watch_settings(self) -> str:
        """What the watch engine reads (operations/watch/deploy.py writes it from the model)."""
        return "/etc/iac/watch.json"

    @property
    def watch_state(self) -> str:
        """The conditions the watch already told (so each is told once)."""
        return f"{self.state_dir}/watch/told.json"

    @property
    def gunicorn_config(self) -> str:
        """Settings some gunicorn versions lack, shared by every app's gunicorn."""
        return f"{self.engines}/gunicorn_conf.py"


HOST = HostPaths()

# the names the rest of the repository imports (each is HOST's)
STAGED = HOST.staged
RELEASE_SETTINGS_DIR = HOST.release_settings_dir
RELEASE_STATE_DIR = HOST.release_state_dir
RUNTIME_DIR = HOST.runtime_dir
NGINX_SITES_AVAILABLE = HOST.nginx_sites_available
NGINX_SITES_ENABLED = HOST.nginx_sites_enabled
MANAGED_MANIFEST = HOST.managed_manifest
GUNICORN_CONFIG = HOST.gunicorn_config
