"""The Debian release a host is declared on: the one table everything release-specific is derived
from (iac/debian.py), the option that names it, the run's refusal to touch a host that runs
another release, and the sandbox's choice of release per host (SANDBOX_DEBIAN)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cli.dr import what_breaks
from iac.debian import RELEASES, next_release, release
from iac.errors import ConfigError
from operations.base import deploy as base_deploy
from operations.host import HostConfig
from operations.nginx.deploy import site_text
from sandbox.world.common import WorldError
from sandbox.world.image import DEFAULT_DEBIAN, image_recipe, wanted_releases
from stack.load import build_host_config


def test_each_release_derives_its_postgres_paths_and_python() -> None:
    bookworm, trixie = release(12), release(13)
    assert (bookworm.codename, bookworm.postgres, bookworm.python) == ("bookworm", 15, "3.11")
    assert (trixie.codename, trixie.postgres, trixie.python) == ("trixie", 17, "3.13")
    assert trixie.postgres_conf_dir == "/etc/postgresql/17/main"
    assert trixie.postgres_data_dir == "/var/lib/postgresql/17/main"
    assert bookworm.postgres_cluster_unit == "postgresql@15-main"
    assert trixie.python_bin == "/usr/bin/python3.13"


def test_a_release_the_repository_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Debian 11 is not a release this repository knows \(known: 12, 13\)"):
        release(11)


def _lan(lan_config: HostConfig, **host: object) -> HostConfig:
    data = lan_config.model_dump(mode="python")
    data = copy.deepcopy(data)
    data["host"].update(host)
    return HostConfig.model_validate(data)


def test_the_option_takes_only_known_releases_and_derives_from_them(lan_config: HostConfig) -> None:
    assert lan_config.host.debian == 12 and lan_config.debian() is RELEASES[12]
    with pytest.raises(ConfigError, match=r"option 'host\.debian': Input should be 12 or 13"):
        build_host_config("lan", "gts-server", overrides={"host": {"debian": 11}})
    with pytest.raises(ConfigError, match=r"option 'host\.debian'"):
        build_host_config("lan", "gts-server", overrides={"host": {"debian": "trixie"}})
    on_13 = build_host_config("lan", "gts-server", overrides={"host": {"debian": 13}})
    assert on_13.debian().postgres == 17


def test_production_declares_its_release_in_group_data(production) -> None:
    text = {group: Path(f"group_data/{group}.py").read_text() for group in ("lan", "public")}
    for config in production.values():
        assert config.host.debian == 12
    assert all('"debian": 12' in t for t in text.values())


class FakeHost:
    name = "gts-server"

    def __init__(self, distro: dict, data: dict | None = None) -> None:
        self.distro, self.data = distro, data or {}

    def get_fact(self, fact: object, **kwargs: object) -> object:
        return self.distro


@pytest.mark.parametrize("distro, runs", [
    ({"name": "Debian", "major": 13, "minor": None}, "Debian 13"),
    ({"name": "Ubuntu", "major": 24, "minor": 4}, "Ubuntu 24"),
    ({}, "an unknown system"),
])
def test_a_run_stops_before_any_change_on_a_host_of_another_release(
        monkeypatch: pytest.MonkeyPatch, lan_config: HostConfig, distro: dict, runs: str) -> None:
    monkeypatch.setattr(base_deploy, "host", FakeHost(distro))
    with pytest.raises(ConfigError) as err:
        base_deploy.release_matches(lan_config, "lan")
    text = str(err.value)
    assert f"gts-server runs {runs}, but is declared on Debian 12 (bookworm: host.debian, group_data/lan.py)" in text
    assert "nothing was changed" in text and "make upgrade" in text


def test_the_new_machine_of_an_upgrade_on_the_old_release_is_refused_naming_to(
        monkeypatch: pytest.MonkeyPatch, lan_config: HostConfig) -> None:
    """A TO= that names the old host (or a machine installed with the old release)."""
    fake = FakeHost({"name": "Debian", "major": 12, "minor": None}, {"upgrade": True, "ssh_hostname": "10.0.0.5"})
    monkeypatch.setattr(base_deploy, "host", fake)
    with pytest.raises(ConfigError, match=r"the machine at 10.0.0.5 runs Debian 12, but `make upgrade` rebuilds it "
                                          r"on Debian 13 \(trixie\): nothing was changed. Give TO="):
        base_deploy.release_matches(_lan(lan_config, debian=13), "lan")


def test_a_host_of_the_declared_release_passes(monkeypatch: pytest.MonkeyPatch, lan_config: HostConfig) -> None:
    monkeypatch.setattr(base_deploy, "host", FakeHost({"name": "Debian", "major": 12, "minor": None}))
    base_deploy.release_matches(lan_config, "lan")
    monkeypatch.setattr(base_deploy, "host", FakeHost({"name": "Debian", "major": 13, "minor": None}))
    base_deploy.release_matches(_lan(lan_config, debian=13), "lan")


def test_sandbox_releases_per_host() -> None:
    assert wanted_releases(None) == {} and wanted_releases("") == {}
    assert wanted_releases("13") == {"public": 13, "lan": 13}
    assert wanted_releases("public=13") == {"public": 13}
    assert wanted_releases("13,lan=12") == {"public": 13, "lan": 12}
    assert DEFAULT_DEBIAN == 12


@pytest.mark.parametrize("value, says", [
    ("11", "Debian 11 is not a release this repository knows"),
    ("forge=13", "hosts: public, lan"),
    ("lan=trixie", "give a release (13) or host=release pairs"),
])
def test_a_wrong_sandbox_release_is_refused_naming_the_variable(value: str, says: str) -> None:
    with pytest.raises(WorldError, match="SANDBOX_DEBIAN=") as err:
        wanted_releases(value)
    assert says in str(err.value)


def test_each_release_has_its_own_golden_image() -> None:
    assert image_recipe(12)["suite"] == "bookworm" and image_recipe(13)["suite"] == "trixie"
    assert {k: v for k, v in image_recipe(12).items() if k != "suite"} == \
        {k: v for k, v in image_recipe(13).items() if k != "suite"}


def test_http2_is_spelled_as_the_release_s_nginx_takes_it() -> None:
    on_12 = build_host_config("public", "srv1178562", overrides=None)
    on_13 = build_host_config("public", "srv1178562", overrides={"host": {"debian": 13}})
    site_12, site_13 = site_text(on_12, "chip_dashboard"), site_text(on_13, "chip_dashboard")
    assert "listen 443 ssl http2 default_server;" in site_12 and "http2 on;" not in site_12
    assert "listen 443 ssl default_server;" in site_13 and "\n    http2 on;\n" in site_13
    assert site_13.replace("\n    http2 on;", "").replace("ssl default", "ssl http2 default") == site_12


def test_the_upgrade_drill_names_the_app_and_the_requirement_that_breaks() -> None:
    output = (
        "    [srv1178562] ERROR: Failed to build installable wheels for some pyproject.toml based projects "
        "(typed-ast)\n"
        "    [srv1178562] [iac-app-release chip_dashboard] pip install failed on Python 3.13.5: ERROR: Failed to "
        "build installable wheels for some pyproject.toml based projects (typed-ast); the live release is untouched "
        "(step: build (pip install))\n"
        "    [srv1178562] [iac-app-release chip_dashboard] alert NOT sent: /etc/iac/backup-alert.env is not written "
        "yet (a first run writes it after the apps): the failure is in this log only\n")
    assert what_breaks(output) == [
        "app chip_dashboard: pip install failed on Python 3.13.5: ERROR: Failed to build installable wheels for "
        "some pyproject.toml based projects (typed-ast); the live release is untouched (step: build (pip install))"]
    assert what_breaks("dr deploy.py: chip_dashboard: release main live\n") == []


def test_the_upgrade_goes_to_the_next_known_release() -> None:
    assert next_release(12) is RELEASES[13]
    with pytest.raises(ValueError, match="Debian 13 is the newest release this repository knows"):
        next_release(13)


def _world(tmp_path: Path):
    from sandbox.world import World

    world = World("reltest")
    world.dir, world.state_file = tmp_path, tmp_path / "state.json"
    return world


def test_each_sandbox_host_runs_the_release_its_disk_was_made_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = _world(tmp_path)
    monkeypatch.delenv("SANDBOX_DEBIAN", raising=False)
    assert world.debian("lan") == 12 and world.release_for_new_disk("public") == 12
    monkeypatch.setenv("SANDBOX_DEBIAN", "lan=13")
    assert world.release_for_new_disk("lan") == 13 and world.release_for_new_disk("public") == 12
    world.record_release("public", 13)
    # a replica made without a release of its own runs the public host's; one made with its own keeps it
    assert world.debian("public") == 13 and world.debian("public3") == 13
    world.record_release("public2", 12)
    assert world.debian("public2") == 12 and world.debian("public") == 13


def test_up_with_another_release_than_an_existing_host_runs_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = _world(tmp_path)
    world.record_release("lan", 12)
    monkeypatch.setenv("SANDBOX_DEBIAN", "13")
    with pytest.raises(WorldError, match="asks for Debian 13 on lan, which runs Debian 12 in sandbox reltest"):
        world.check_releases(["lan"])
    monkeypatch.setenv("SANDBOX_DEBIAN", "public=13")
    world.check_releases(["lan"])  # the LAN host is not asked to change
