"""Several hosts per group: a second VPS of the public stack is a configuration change
(group_data/public.py `hosts` and its address in the inventory), not a code change. Offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from iac.errors import ConfigError
from stack.inventory import check_overrides, group_entries
from stack.load import build_host_config, declared_hosts

SECOND = ('    "srv2": {"apps": {"chip_dashboard": {"allowed_hosts": ["b.pravoo.in"],\n'
          '                                       "nginx": {"server_names": ["b.pravoo.in"]}}}},\n')
CONNECTIONS = {"srv1178562": {"ssh_hostname": "72.61.148.117"}, "srv2": {"ssh_hostname": "203.0.113.7"}}


def _add_second_vps(group_data: Path) -> None:
    path = group_data / "public.py"
    text = path.read_text()
    assert '    "srv1178562": {},\n' in text
    path.write_text(text.replace('    "srv1178562": {},\n', '    "srv1178562": {},\n' + SECOND))


def test_the_repository_declares_one_host_per_group_today() -> None:
    assert list(declared_hosts("public")) == ["srv1178562"]
    assert list(declared_hosts("lan")) == ["gts-server"]


def test_a_second_vps_is_one_entry_in_group_data_and_one_address_in_the_inventory(group_data: Path) -> None:
    before = build_host_config("public", "srv1178562", group_data=group_data)
    _add_second_vps(group_data)
    entries = dict(group_entries("production", "public", CONNECTIONS, group_data=group_data))
    assert list(entries) == ["srv1178562", "srv2"]
    first, second = entries["srv1178562"]["config"], entries["srv2"]["config"]
    # the first host is exactly as before; the second has its own name, domain and address
    assert first.model_dump() == before.model_dump()
    assert second.host.hostname == "srv2" and entries["srv2"]["ssh_hostname"] == "203.0.113.7"
    app = second.apps["chip_dashboard"]
    assert app.nginx.server_names == ["b.pravoo.in"] and app.allowed_hosts == ["b.pravoo.in"]
    # everything else is the group's: same app, revision, unit, backups
    assert app.source == first.apps["chip_dashboard"].source and app.unit == "broker_portal"
    assert second.backups == first.backups


def test_a_declared_host_without_an_address_stops_the_inventory(group_data: Path) -> None:
    _add_second_vps(group_data)
    with pytest.raises(ConfigError, match=r"group public: no connection for srv2 \(declared under 'hosts' in "
                                          r"group_data/public.py\): add its address to the inventory"):
        group_entries("production", "public", {"srv1178562": {}}, group_data=group_data)


def test_an_address_for_an_undeclared_host_stops_the_inventory(group_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"connection for srv2, which group_data/public.py does not declare "
                                          r"\(its hosts: srv1178562\): add it under 'hosts' there"):
        group_entries("production", "public", CONNECTIONS, group_data=group_data)


def test_a_per_host_value_is_validated_and_named_with_its_host(group_data: Path) -> None:
    path = group_data / "public.py"
    path.write_text(path.read_text().replace('    "srv1178562": {},\n',
                                             '    "srv1178562": {"apps": {"chip_dashboard": {"workers": "three"}}},\n'))
    with pytest.raises(ConfigError, match=r"group_data/public.py hosts\['srv1178562'\]: option "
                                          r"'apps.chip_dashboard.workers'"):
        build_host_config("public", "srv1178562", group_data=group_data)


def test_the_host_name_belongs_to_hosts_not_to_the_group(group_data: Path) -> None:
    path = group_data / "public.py"
    path.write_text(path.read_text() + '\nhost = {"hostname": "srv1178562"}\n')
    with pytest.raises(ConfigError, match=r"group_data/public.py: 'host.hostname' is the host's key under 'hosts'"):
        build_host_config("public", "srv1178562", group_data=group_data)


def test_a_host_the_group_does_not_declare_is_refused(group_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"host srv9: group_data/public.py declares no such host \(its hosts: "
                                          r"srv1178562\)"):
        build_host_config("public", "srv9", group_data=group_data)


def test_production_cannot_add_hosts_through_overrides(group_data: Path) -> None:
    with pytest.raises(ConfigError, match="production stack takes its values from group_data/ only"):
        group_entries("production", "public", {"srv1178562": {}, "x": {}}, overrides={"hosts": {"x": {}}},
                      group_data=group_data)


def test_a_sandbox_replica_has_values_of_its_own_but_declared_hosts_keep_to_the_allowed_list() -> None:
    declared = {"srv1178562": {}}
    check_overrides("sandbox", {"hosts": {"public-r2": {"host": {"hostname": "public-r2"}}}}, declared)
    with pytest.raises(ConfigError, match=r"overrides of host\.hostname are not allowed"):
        check_overrides("sandbox", {"hosts": {"srv1178562": {"host": {"hostname": "elsewhere"}}}}, declared)
