"""The exposure model: which ports are open is derived from the model in one place, and the
files that enforce it render as declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from iac.errors import ConfigError
from iac.render import render
from operations.exposure.confirmed import ExposureState
from operations.host import HostConfig
from stack.load import build_host_config


def test_open_ports_public_and_lan(public_config: HostConfig, lan_config: HostConfig) -> None:
    assert public_config.open_tcp_ports() == [22, 80, 443]
    assert lan_config.open_tcp_ports() == [22, 8001, 8002]


def test_extra_port_already_open_is_refused(group_data: Path) -> None:
    lan = group_data / "lan.py"
    lan.write_text(lan.read_text() + '\nfirewall["extra_tcp_ports"] = [8001]\n')
    with pytest.raises(ConfigError, match=r"group_data/lan.py: option 'firewall.extra_tcp_ports.0': port 8001 is "
                                          r"already open"):
        build_host_config("lan", "gts-server", group_data=group_data)


def test_ruleset_opens_exactly_the_declared_ports() -> None:
    text = render("etc/nftables.conf.j2", ports=[22, 8001, 8002], trusted_interfaces=["tailscale0"])
    assert "policy drop;" in text and "tcp dport { 22, 8001, 8002 } accept" in text
    rules = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert 'iifname "tailscale0" accept' in text and not any("flush" in line for line in rules)


def test_sshd_dropin_is_keys_only_by_default(public_config: HostConfig) -> None:
    config = public_config
    text = render("etc/ssh/sshd_config.d/00-iac.conf.j2", ssh=config.ssh)
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                 "Port 22"):
        assert line in text.splitlines()


def test_exposure_fact_parses_its_one_command() -> None:
    out = ["file /etc/ssh/sshd_config.d/00-iac.conf " + "a" * 64, "file /etc/nftables.conf ",
           "sshd port 22", "sshd passwordauthentication no", "nft-live " + "b" * 64, "nft-recorded ", "nft-present no"]
    state = ExposureState().process(out)
    assert state["files"] == {"/etc/ssh/sshd_config.d/00-iac.conf": "a" * 64, "/etc/nftables.conf": None}
    assert state["sshd"] == {"port": "22", "passwordauthentication": "no"}
    assert state["nft-present"] == "no" and state["nft-recorded"] == ""
