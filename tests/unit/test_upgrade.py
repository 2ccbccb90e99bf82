"""`make upgrade` without a host: the inventory's view of the new machine (IAC_UPGRADE), the
requirements check the release engine runs on the old host, and certificates that wait for the
switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.dr import deploy_keys
from iac.declared import Declared
from iac.errors import ConfigError
from operations.baseline.deploy import baseline_settings, tls_sites
from operations.host import HostConfig
from release_engine.wheels import pip_command, platforms, wheels_command
from stack.inventory import group_entries
from stack.upgrade import UPGRADE_ENV, check_address, upgrade_target
from tests.unit.release_demo import settings

OLD = {"srv1178562": {"ssh_hostname": "203.0.113.5", "ssh_user": "root"}}


def test_without_an_upgrade_the_inventory_is_as_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(UPGRADE_ENV, raising=False)
    (name, data), = group_entries("production", "public", OLD)
    assert data["ssh_hostname"] == "203.0.113.5" and data["config"].host.debian == 12 and "upgrade" not in data


def test_the_new_machine_is_the_group_s_host_at_its_address_on_the_next_release(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPGRADE_ENV, "public=198.51.100.9")
    (name, data), = group_entries("production", "public", OLD)
    config: HostConfig = data["config"]
    assert name == "srv1178562" and data["ssh_hostname"] == "198.51.100.9" and data["ssh_user"] == "root"
    assert config.host.debian == 13 and config.debian().postgres == 17 and data["upgrade"] is True
    # every other value is the group's
    assert config.apps["chip_dashboard"].nginx.server_names == ["pravoo.in"]
    # another group is untouched
    (_, lan), = group_entries("production", "lan", {"gts-server": {"ssh_hostname": "gts-server", "ssh_user": "gts"}})
    assert lan["ssh_hostname"] == "gts-server" and lan["config"].host.debian == 12


def test_an_upgrade_to_where_the_host_serves_today_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPGRADE_ENV, "public=203.0.113.5")
    with pytest.raises(ConfigError, match="203.0.113.5 is where srv1178562 serves today"):
        group_entries("production", "public", OLD)


def test_a_group_of_several_hosts_is_upgraded_one_host_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPGRADE_ENV, "public=198.51.100.9")
    with pytest.raises(ConfigError, match="group public has 2 hosts .*one host at a time"):
        group_entries("sandbox", "public", lambda name: {"ssh_hostname": f"10.0.0.{len(name)}"},
                      overrides={"hosts": {"public2": {}}})


def test_a_host_on_the_newest_release_has_nothing_to_upgrade_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UPGRADE_ENV, "public=198.51.100.9")
    with pytest.raises(ConfigError, match="Debian 13 is the newest release this repository knows"):
        group_entries("sandbox", "public", lambda name: {"ssh_hostname": "10.0.0.2"},
                      overrides={"host": {"debian": 13}})


@pytest.mark.parametrize("value, says", [
    ("public", "give <group>=<address of the new machine>"),
    ("db=10.0.0.1", "group one of public, lan"),
    ("public=10.0.0.1;reboot", "neither an IP address nor a host name"),
    ("public=-oProxyCommand=x", "neither an IP address nor a host name"),
])
def test_a_wrong_upgrade_target_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, value: str, says: str) -> None:
    monkeypatch.setenv(UPGRADE_ENV, value)
    with pytest.raises(ConfigError, match="IAC_UPGRADE") as err:
        upgrade_target(("public", "lan"))
    assert says in str(err.value)


def test_addresses_are_ip_addresses_or_host_names() -> None:
    assert check_address("192.168.1.231", "TO") == "192.168.1.231"
    assert check_address("GTS-Server-2.lan", "TO") == "gts-server-2.lan"
    assert check_address("2001:db8::5", "TO") == "2001:db8::5"
    with pytest.raises(ConfigError, match="TO: 'a b' is neither"):
        check_address("a b", "TO")


def test_the_requirements_check_takes_every_wheel_the_new_release_can_run() -> None:
    tags = platforms("2.41", "x86_64")
    assert tags[0] == "manylinux_2_41_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux_2_5_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"} <= set(tags)
    assert "manylinux_2_42_x86_64" not in tags


def test_the_requirements_check_resolves_for_the_new_python_from_wheels_without_installing(tmp_path: Path) -> None:
    s = settings(tmp_path, extra_requirements=["gunicorn==27.0.1"])
    cmd = pip_command(s, "requirements.txt", "3.13", "2.41", "x86_64")
    assert cmd[:3] == [f"{s.venv_link}/bin/pip", "install", "--dry-run"]
    assert "--only-binary=:all:" in cmd and "--ignore-installed" in cmd
    pairs = list(zip(cmd, cmd[1:], strict=False))
    assert ("--python-version", "3.13") in pairs and ("--implementation", "cp") in pairs
    assert {("--abi", "cp313"), ("--abi", "abi3"), ("--abi", "none")} <= set(pairs)
    assert cmd[-3:] == ["-r", "requirements.txt", "gunicorn==27.0.1"]


def test_certificates_wait_for_the_switch_on_the_new_machine(public_config: HostConfig) -> None:
    assert [site["name"] for site in tls_sites(public_config)] == ["pravoo.in"]
    assert tls_sites(public_config, deferred=True) == []
    settings_now = baseline_settings(public_config, Declared(), "srv1178562", certificates_deferred=True)
    assert settings_now.tls == []


def test_the_deploy_keys_a_rebuild_prints_are_read_per_host_and_app() -> None:
    out = ("noise\nDEPLOY-KEY srv1178562 chip_dashboard git@github.com:x/y.git ssh-ed25519 AAAAC3Nz c@srv\n"
           "DEPLOY-KEY srv1178562 broken git@github.com:x/z.git\n")
    assert deploy_keys(out) == [("srv1178562", "chip_dashboard", "ssh-ed25519 AAAAC3Nz")]


@pytest.mark.parametrize("args", [[], ["--python", "3.13"], ["--python", "3.13;id", "--glibc", "2.41"],
                                  ["--python", "3.13", "--glibc", "x"]])
def test_the_requirements_check_refuses_arguments_it_cannot_trust(tmp_path: Path, args: list[str]) -> None:
    assert wheels_command(settings(tmp_path), args) == 2


def test_the_requirements_check_passes_an_app_with_nothing_live(tmp_path: Path) -> None:
    assert wheels_command(settings(tmp_path), ["--python", "3.13", "--glibc", "2.41"]) == 0


def test_make_upgrade_refuses_a_preset_target_and_a_host_name_before_anything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import upgrade

    monkeypatch.setenv(UPGRADE_ENV, "public=10.0.0.9")
    with pytest.raises(ConfigError, match="IAC_UPGRADE is set in this shell"):
        upgrade.upgrade("inventory.py", "public", "10.0.0.9", {})
    monkeypatch.delenv(UPGRADE_ENV)
    with pytest.raises(ConfigError, match="HOST=srv1178562: give a group"):
        upgrade.upgrade("inventory.py", "srv1178562", "10.0.0.9", {})


def test_make_upgrade_knows_an_address_that_is_the_old_host_s() -> None:
    from cli.upgrade import addresses

    assert addresses("127.0.0.1") == {"127.0.0.1"}
    assert addresses("no-such-name.invalid") == set()
