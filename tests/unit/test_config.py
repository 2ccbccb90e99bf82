"""The typed configuration (the model in operations/, its values in group_data/): bad input is
named precisely, with the file, the option and a valid example. The inventories that load it:
test_inventories.py; secrets: test_secrets.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iac.errors import ConfigError
from iac.values import Strict
from operations.host import HostConfig
from stack.load import build_host_config


def test_unknown_key_is_named_with_file_path_and_suggestion(group_data: Path) -> None:
    (group_data / "lan.py").write_text(
        (group_data / "lan.py").read_text() + '\nadmin["shel"] = "/bin/zsh"\n')
    with pytest.raises(ConfigError) as err:
        build_host_config("lan", "gts-server", group_data=group_data)
    msg = str(err.value)
    assert "group_data/lan.py" in msg and "'admin.shel'" in msg and "did you mean 'shell'" in msg


def test_unknown_top_level_section_is_named(group_data: Path) -> None:
    (group_data / "all.py").write_text('basee = {"extra_packages": []}\n')
    with pytest.raises(ConfigError, match=r"group_data/all.py: unknown option 'basee'; did you mean 'base'"):
        build_host_config("public", "srv1178562", group_data=group_data)


def test_wrong_type_is_named_with_an_example(group_data: Path) -> None:
    (group_data / "all.py").write_text('base = {"apt_cache_hours": "daily"}\n')
    with pytest.raises(ConfigError) as err:
        build_host_config("public", "srv1178562", group_data=group_data)
    msg = str(err.value)
    assert "group_data/all.py: option 'base.apt_cache_hours'" in msg
    assert "valid integer" in msg and "example of a valid value: 24" in msg


def test_invalid_value_is_explained(group_data: Path) -> None:
    path = group_data / "lan.py"
    path.write_text(path.read_text().replace('"gts-server": {}', '"gts-server": {"host": {"hostname": "gts_server"}}'))
    with pytest.raises(ConfigError, match=r"group_data/lan.py hosts\['gts-server'\]: option 'host.hostname': "
                                          r"'gts_server' is not a valid host name"):
        build_host_config("lan", "gts-server", group_data=group_data)


def test_a_host_name_that_is_no_dns_label_is_refused_naming_the_file(group_data: Path) -> None:
    path = group_data / "lan.py"
    path.write_text(path.read_text().replace('"gts-server": {}', '"gts_server": {}'))
    with pytest.raises(ConfigError, match=r"group_data/lan.py: hosts\['gts_server'\]: a host's name is one DNS label"):
        build_host_config("lan", "gts_server", group_data=group_data)


def test_missing_required_value_says_where_to_set_it(group_data: Path) -> None:
    text = (group_data / "public.py").read_text()
    (group_data / "public.py").write_text(text[: text.index("admin = {")])
    with pytest.raises(ConfigError) as err:
        build_host_config("public", "srv1178562", group_data=group_data)
    msg = str(err.value)
    assert "required option 'admin' has no value" in msg
    assert "group_data/public.py" in msg


def test_every_option_is_described_and_exemplified() -> None:
    """NixOS-style: no option without a description and an example."""
    def walk(m: type, prefix: str = "") -> list[str]:
        bad = []
        for name, info in m.model_fields.items():
            sub = info.annotation
            if isinstance(sub, type) and issubclass(sub, Strict):
                bad += walk(sub, f"{prefix}{name}.")
                continue
            if not info.description or not info.examples:
                bad.append(prefix + name)
        return bad

    assert walk(HostConfig) == []


def test_secret_in_group_data_is_refused(group_data: Path) -> None:
    (group_data / "lan.py").write_text(
        (group_data / "lan.py").read_text() + '\nadmin["password_hash"] = "$y$leak"\n')
    with pytest.raises(ConfigError, match=r"group_data/lan.py: option 'admin.password_hash' is a secret"):
        build_host_config("lan", "gts-server", group_data=group_data)


def test_public_domain_must_be_an_allowed_host(group_data: Path) -> None:
    """ALLOWED_HOSTS without pravoo.in would make every request through nginx a 400."""
    text = (group_data / "public.py").read_text()
    assert '"pravoo.in", "72.61.148.117"' in text
    (group_data / "public.py").write_text(text.replace('"pravoo.in", "72.61.148.117"', '"72.61.148.117"', 1))
    with pytest.raises(ConfigError) as err:
        build_host_config("public", "srv1178562", group_data=group_data)
    msg = str(err.value)
    assert "group_data/public.py: option 'apps.chip_dashboard.allowed_hosts': must contain 'pravoo.in'" in msg


def test_front_end_build_needs_its_outputs_declared(group_data: Path) -> None:
    text = (group_data / "lan.py").read_text()
    outputs = '"outputs": ["shop/static/shop/dist"]'
    assert outputs in text
    (group_data / "lan.py").write_text(re.sub(r",\s*" + re.escape(outputs), "", text))
    with pytest.raises(ConfigError) as err:
        build_host_config("lan", "gts-server", group_data=group_data)
    assert "apps.shop_scheduler.frontend_build.outputs" in str(err.value)


def test_cross_field_rule_names_the_option_and_its_file(group_data: Path) -> None:
    text = (group_data / "lan.py").read_text()
    (group_data / "lan.py").write_text(text.replace('"port": 8002', '"port": 8001', 1))
    with pytest.raises(ConfigError) as err:
        build_host_config("lan", "gts-server", group_data=group_data)
    assert ("group_data/lan.py: option 'apps.shop_scheduler.nginx.port': port 8001 is already taken by "
            "apps.rental_scheduler") in str(err.value)
