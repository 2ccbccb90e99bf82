"""Sandbox inventory: the same groups and hosts as inventory.py, on the local sandbox.

Differs from production only in connection details and in the overrides below, each of which
must be listed in stack.inventory.ALLOWED_OVERRIDES. SANDBOX_NAME / SANDBOX_SUBNET select which
sandbox (see sandbox/world/). Use: pyinfra sandbox/inventory.py deploy.py
"""

import json
import os

from iac.errors import ConfigError
from sandbox.world import World
from sandbox.world.common import HOSTILE
from stack.inventory import group_entries
from stack.load import GROUP_DATA, declared_hosts, deep_merge, read_group_file

_world = World()
if not _world.ssh_key.exists():
    raise ConfigError(f"sandbox {_world.name} does not exist: run `make sandbox` (or `make sandbox-up`) first")

# The LAN host is reached as production reaches it: as its admin (group_data/lan.py) with sudo,
# which asks for a password (the admin has no NOPASSWD rule). The bare host has that admin already,
# as a Debian installer makes it (sandbox/world/hosts.py); its password is a hostile canary in the
# sandbox's secrets file (lan.connection.sudo_password, where production's operator may keep
# theirs), read by stack/inventory.py as production's is. Read (or made) before the file is loaded
# below; admin.password_hash is derived from it.
_ADMIN, _, _ADMIN_HASH = _world.lan_admin()

# Throwaway canary secrets, generated on first use. The Discord webhook must reach the stand-in.
_secrets = _world.secrets(
    special={("apps", "*", "discord_alerts", "webhook_url"):
             lambda token: f"{_world.webhook_base}/api/webhooks/1/{token}",
             ("backups", "alerts", "webhook_url"):
             lambda token: f"{_world.webhook_base}/api/webhooks/2/{token}",
             # real secrets have shell, systemd, nginx and quoting metacharacters: none may be
             # interpreted anywhere (tests/integration/test_hostile_secrets.py)
             ("backups", "offsite", "*", "password"): lambda token: f"{token}{HOSTILE}",
             ("apps", "*", "secret_key"): lambda token: f"{token}{HOSTILE}"},
)
_secrets.keep("lan", ("admin", "password_hash"), _ADMIN_HASH)


def _s3(path: str) -> str:
    """A restic repository on the sandbox's S3 stand-in, shaped like production's URL."""
    return f"s3:{_world.s3_endpoint}/{_world.s3_bucket}/backups/{path}"


# `make bench HOSTS=N`: the public group holds N hosts here, the declared one and N-1 replicas
# (made by `python -m sandbox.world public-hosts N`); they share the group's values and secrets.
_PUBLIC_HOSTS = int(os.environ.get("SANDBOX_PUBLIC_HOSTS") or 1)
if _PUBLIC_HOSTS > 1 and _world.replica_role(_PUBLIC_HOSTS) not in _world.replica_roles():
    raise ConfigError(f"SANDBOX_PUBLIC_HOSTS={_PUBLIC_HOSTS}: the sandbox has not made these replicas; run "
                      f"`python -m sandbox.world public-hosts {_PUBLIC_HOSTS}` (make bench HOSTS=N does)")


def _role(group: str, name: str) -> str:
    """The sandbox host that stands in for a host of a group: the group's first declared host is
    the host named like the group; a replica public-rN is publicN."""
    if name == next(iter(declared_hosts(group))):
        return group
    for n in range(2, _PUBLIC_HOSTS + 1):
        if group == "public" and name == _world.replica_name(n):
            return _world.replica_role(n)
    raise ConfigError(f"group_data/{group}.py declares host {name}, which this sandbox has no machine for "
                      "(it stands in for the first host of each group, and for replicas of the public one)")


def _connection_of(group: str):
    return lambda name: _connection(_role(group, name))


def _connection(role: str) -> dict:
    connection = {
        "ssh_hostname": _world.host_ip(role),
        "ssh_user": "root",
        "ssh_key": str(_world.ssh_key),
        "ssh_known_hosts_file": str(_world.known_hosts),
        "ssh_strict_host_key_checking": "yes",
    }
    if role == "lan":
        # as inventory.py reaches gts-server (the sandbox key is among admin.ssh_authorized_keys)
        connection.update(ssh_user=_ADMIN, _sudo=True)
    return connection


# what the sandbox's systemd-nspawn image holds that a VPS does not (baseline.allow)
_NSPAWN_IMAGE = [
    {"path": "/etc/systemd/system/console-getty.service",
     "reason": "systemd-nspawn: the container's login prompt is on /dev/console"},
    {"path": "/etc/systemd/system/getty@tty1.service", "reason": "systemd-nspawn: a container has no tty1 (masked)"},
    {"path": "/etc/systemd/system/getty.target.wants/getty@tty1.service",
     "reason": "systemd-nspawn: the image's getty link, to the masked tty1"},
]


def _overrides(group: str) -> dict:
    """The sandbox's differences from production (each allowed in stack.inventory.ALLOWED_OVERRIDES)."""
    declared = read_group_file(GROUP_DATA / f"{group}.py")
    values: dict = {
        # the release this sandbox's host was made from (SANDBOX_DEBIAN, sandbox/world/image.py)
        "host": {"debian": _world.debian(group)},
        "admin": {"ssh_authorized_keys": [_world.ssh_key.with_suffix(".pub").read_text().strip()]},
        "ssh": {"root_authorized_keys": [_world.ssh_key.with_suffix(".pub").read_text().strip()]},
        # the group's own allowances stay; the image's are added (a list override would replace them)
        "baseline": {"allow": [*declared.get("baseline", {}).get("allow", []), *_NSPAWN_IMAGE]},
        "apps": {
            name: {"source": {"url": _world.repo_url(name), "host_key": _world.forge_host_key()}}
            for name in declared.get("apps", {})
        },
    }
    if group == "public":
        # production has no offsite repository for this host yet; the sandbox proves the mechanism
        values["backups"] = {"offsite": {"postgres": {
            "repository": _s3("srv1178562/chip_dashboard"), "unit": "restic-chip-dashboard",
            "script": "/usr/local/sbin/restic_backup_chip_dashboard.sh", "env_file": "/etc/iac/backup/restic.env",
            "check_unit": "restic-chip-dashboard-check", "tag": "chip-dashboard"}}}
        values["tls"] = {"acme_directory": _world.acme_directory,
                         "acme_ca_bundle": _world.acme_ca_file.read_text(),
                         "issuer_ca_bundle": _world.acme_issuer_file.read_text()}
    if group == "lan":
        values["network"] = {"address": f"{_world.host_ip('lan')}/24", "gateway": _world.gateway_ip("lan"),
                             "dns": _world.resolvers()}
        values["node"] = {"source": "debian"}
        # the fixture apps read their older keys from here (sandbox/fixtures/README.md)
        for name in values["apps"]:
            values["apps"][name]["settings_env"] = {"secret_key_fallbacks": "DJANGO_SECRET_KEY_FALLBACKS"}
        values["tailscale"] = {"enabled": False}
        values["backups"] = {
            "local": {"disk_uuid": _world.backup_disk_uuid()},
            "offsite": {"postgres": {"repository": _s3("gts-server/postgres")},
                        "system_state": {"repository": _s3("gts-server/system-state")}},
        }
    if group == "public" and _PUBLIC_HOSTS > 1:
        values["hosts"] = {_world.replica_name(n): _replica(n) for n in range(2, _PUBLIC_HOSTS + 1)}
    # tests pick other revisions: SANDBOX_OVERRIDES='{"public": {"apps": {...}}}'
    extra = json.loads(os.environ.get("SANDBOX_OVERRIDES") or "{}").get(group, {})
    return deep_merge(values, extra)


def _replica(n: int) -> dict:
    """What differs on replica n of the public host, as it would for a second VPS in
    group_data/public.py: its domain, and its own offsite repository."""
    domain = _world.replica_domain(n)
    return {
        "host": {"debian": _world.debian(_world.replica_role(n))},
        "apps": {"chip_dashboard": {"allowed_hosts": [domain], "nginx": {"server_names": [domain]}}},
        "backups": {"offsite": {"postgres": {"repository": _s3(f"{_world.replica_name(n)}/chip_dashboard")}}},
    }


# the DNS server the sandbox's ACME server resolves names with (`make preflight`'s name check);
# production's is the public DNS
_acme_dns = f"{_world.svc_ip}:8053"

# this stack's own values: revisions pinned by `make release` on the sandbox (never group_data)
_stack_values = _world.dir / "stack.json"
public = group_entries("sandbox", "public", _connection_of("public"), _overrides("public"), _secrets, _stack_values)
lan = group_entries("sandbox", "lan", _connection_of("lan"), _overrides("lan"), _secrets, _stack_values)
