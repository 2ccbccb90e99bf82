"""Both inventories without a host: production's (inventory.py) validates offline and trusts no
host key on first use; the sandbox may override only the listed paths (stack/inventory.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.validate import load_inventory
from iac.errors import ConfigError
from operations.host import HostConfig
from stack.inventory import check_overrides
from stack.load import build_host_config, secret_paths
from stack.secrets import SecretsFile

REPO = Path(__file__).resolve().parents[2]


def test_production_inventory_validates_offline() -> None:
    """inventory.py loads and validates both hosts without secrets and without any connection."""
    groups = load_inventory(REPO / "inventory.py")
    assert {g: [h[0] for h in hosts] for g, hosts in groups.items()} == {
        "public": ["srv1178562"], "lan": ["gts-server"]}
    public = groups["public"][0][1]
    assert public["ssh_hostname"] == "72.61.148.117"
    assert public["config"].host.hostname == "srv1178562"
    lan = groups["lan"][0][1]["config"]
    assert lan.host.hostname == "gts-server" and lan.host.aliases == ["gts-server.lan"]
    assert lan.admin.name == "gts"


def test_production_ssh_requires_known_host_keys_on_every_host(tmp_path: Path, monkeypatch) -> None:
    """No production host is trusted on first use: strict checking against the operator's file."""
    from pyinfra.connectors.sshuserclient.client import StrictPolicy, get_missing_host_key_policy

    monkeypatch.delenv("IAC_KNOWN_HOSTS_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    hosts = [data for group in load_inventory(REPO / "inventory.py").values() for _, data in group]
    assert len(hosts) == 2
    for data in hosts:
        assert data["ssh_strict_host_key_checking"] == "yes"
        assert data["ssh_known_hosts_file"] == str(tmp_path / ".ssh" / "known_hosts")  # where CI writes it
        assert isinstance(get_missing_host_key_policy(data["ssh_strict_host_key_checking"]), StrictPolicy)
    pinned = tmp_path / "pinned_hosts"
    monkeypatch.setenv("IAC_KNOWN_HOSTS_FILE", str(pinned))
    for group in load_inventory(REPO / "inventory.py").values():
        assert all(data["ssh_known_hosts_file"] == str(pinned) for _, data in group)


def test_a_real_production_run_without_pinned_host_keys_stops_before_connecting(tmp_path: Path,
                                                                                monkeypatch) -> None:
    from stack.inventory import strict_ssh

    pinned = tmp_path / "known_hosts"
    monkeypatch.setenv("IAC_KNOWN_HOSTS_FILE", str(pinned))
    for content in (None, ""):
        if content is not None:
            pinned.write_text(content)
        with pytest.raises(ConfigError, match=f"no pinned SSH host keys in {re.escape(str(pinned))}"):
            strict_ssh(required=True)
    pinned.write_text("72.61.148.117 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n")
    assert strict_ssh(required=True) == {"ssh_strict_host_key_checking": "yes", "ssh_known_hosts_file": str(pinned)}


def test_sandbox_may_only_override_listed_paths() -> None:
    check_overrides("sandbox", {"admin": {"ssh_authorized_keys": ["k"]}, "apps": {}})
    with pytest.raises(ConfigError, match=r"overrides of host\.hostname are not allowed"):
        check_overrides("sandbox", {"host": {"hostname": "elsewhere"}})


def test_override_comparison_flags_paths_outside_the_allowed_list(public_config: HostConfig,
                                                                   tmp_path: Path) -> None:
    """The comparison the integration test runs on the real inventories, on synthetic stacks."""
    from stack.inventory import unexplained_differences

    prod = public_config.model_dump()
    secrets = SecretsFile(tmp_path / "s.json", generate=True)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl t"
    allowed = build_host_config("public", "srv1178562", {
        "admin": {"ssh_authorized_keys": [key]},
        "apps": {"chip_dashboard": {"source": {"url": "ssh://git@10.0.0.1/srv/git/x.git"}}},
        "tls": {"acme_directory": "https://10.0.0.1:14000/dir"}}, secrets).model_dump()
    secret = {".".join(p) for p in secret_paths(data=allowed)}
    assert unexplained_differences(allowed, prod, secret) == set()
    sneaky = dict(allowed, host={**allowed["host"], "timezone": "Europe/Paris"})
    assert unexplained_differences(sneaky, prod, secret) == {"host.timezone"}
