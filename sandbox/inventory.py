"""Sandbox inventory: the same groups and hosts as inventory.py, on the local sandbox.

Differs from production only in connection details and in the overrides below, each of which
must be listed in iac.inventory.ALLOWED_OVERRIDES. SANDBOX_NAME / SANDBOX_SUBNET select which
sandbox (see sandbox/world/). Use: pyinfra sandbox/inventory.py deploy.py
"""

import json
import os

from iac.inventory import host_entry
from iac.secrets import SecretsFile
from iac.stack import GROUP_DATA, ConfigError, deep_merge, read_group_file
from sandbox.world import World

_world = World()
if not _world.ssh_key.exists():
    raise ConfigError(f"sandbox {_world.name} does not exist: run `make sandbox` (or `make sandbox-up`) first")

# appended to canary secrets: $( and a backtick (shell), & ; # (shell, env files), quotes, %
# (systemd specifiers), backslash, { } (nginx), spaces
HOSTILE = " $(touch /tmp/pwned)`id`&;#'\" %n\\x{}"

# Throwaway canary secrets, generated on first use. The Discord webhook must reach the stand-in.
_secrets = SecretsFile(
    _world.dir / "secrets.json", generate=True,
    special={("apps", "*", "discord_alerts", "webhook_url"):
             lambda token: f"{_world.webhook_base}/api/webhooks/1/{token}",
             ("backups", "alerts", "webhook_url"):
             lambda token: f"{_world.webhook_base}/api/webhooks/2/{token}",
             # real secrets have shell, systemd, nginx and quoting metacharacters: none may be
             # interpreted anywhere (tests/integration/test_hostile_secrets.py)
             ("backups", "offsite", "*", "password"): lambda token: f"{token}{HOSTILE}",
             ("apps", "*", "secret_key"): lambda token: f"{token}{HOSTILE}"},
)


def _s3(path: str) -> str:
    """A restic repository on the sandbox's S3 stand-in, shaped like production's URL."""
    return f"s3:{_world.s3_endpoint}/iac-{_world.name}/backups/{path}"


def _connection(role: str) -> dict:
    return {
        "ssh_hostname": _world.host_ip(role),
        "ssh_user": "root",
        "ssh_key": str(_world.ssh_key),
        "ssh_known_hosts_file": str(_world.known_hosts),
        "ssh_strict_host_key_checking": "yes",
    }


def _overrides(group: str) -> dict:
    """The sandbox's differences from production (each allowed in iac.inventory.ALLOWED_OVERRIDES)."""
    values: dict = {
        "admin": {"ssh_authorized_keys": [_world.ssh_key.with_suffix(".pub").read_text().strip()]},
        "apps": {
            name: {"source": {"url": _world.repo_url(name), "host_key": _world.forge_host_key()}}
            for name in read_group_file(GROUP_DATA / f"{group}.py").get("apps", {})
        },
    }
    if group == "public":
        # production has no offsite repository for this host yet; the sandbox proves the mechanism
        values["backups"] = {"offsite": {"postgres": {
            "repository": _s3("srv1178562/chip_dashboard"), "unit": "restic-chip-dashboard",
            "script": "/usr/local/sbin/restic_backup_chip_dashboard.sh", "env_file": "/etc/iac/backup/restic.env",
            "check_unit": "restic-chip-dashboard-check", "tag": "chip-dashboard"}}}
        values["tls"] = {"acme_directory": _world.acme_directory,
                         "acme_ca_bundle": _world.acme_ca_file.read_text()}
    if group == "lan":
        values["network"] = {"address": f"{_world.host_ip('lan')}/24", "gateway": _world.gateway_ip("lan"),
                             "dns": _world.resolvers()}
        values["node"] = {"source": "debian"}
        values["tailscale"] = {"enabled": False}
        values["backups"] = {
            "local": {"disk_uuid": _world.backup_disk_uuid()},
            "offsite": {"postgres": {"repository": _s3("gts-server/postgres")},
                        "system_state": {"repository": _s3("gts-server/system-state")}},
        }
    # tests pick other revisions: SANDBOX_OVERRIDES='{"public": {"apps": {...}}}'
    extra = json.loads(os.environ.get("SANDBOX_OVERRIDES") or "{}").get(group, {})
    return deep_merge(values, extra)


# this stack's own values: revisions pinned by `make release` on the sandbox (never group_data)
_stack_values = _world.dir / "stack.json"
public = [host_entry("sandbox", "public", _connection("public"), _overrides("public"), _secrets, _stack_values)]
lan = [host_entry("sandbox", "lan", _connection("lan"), _overrides("lan"), _secrets, _stack_values)]
