"""The typed configuration: both inventories validate offline, bad input is named precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.validate import load_inventory
from iac.errors import ConfigError
from iac.values import Strict
from operations.host import HostConfig
from stack.inventory import check_overrides
from stack.load import build_host_config, secret_paths
from stack.secrets import SecretsFile, production_secrets

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


class _Inner(Strict):
    token: SecretStr
    maybe: SecretStr | None = None


class _WithSecret(Strict):
    inner: _Inner
    plain: str = "x"


def test_secret_fields_are_found_in_the_model_tree() -> None:
    from stack.load import secret_paths as paths

    assert paths(_WithSecret) == [("inner", "token"), ("inner", "maybe")]
    assert paths(_WithSecret, required_only=True) == [("inner", "token")]
    assert ("admin", "password_hash") in paths()


def test_secret_paths_follow_declared_apps() -> None:
    data = {"apps": {"shop": {"user": "shop"}, "rental": {"discord_alerts": {"enabled": True}}}}
    found = secret_paths(data=data, required_only=True)
    assert ("apps", "shop", "secret_key") in found and ("apps", "rental", "secret_key") in found
    assert ("apps", "rental", "discord_alerts", "webhook_url") in found
    assert ("apps", "shop", "discord_alerts", "webhook_url") not in found


def test_sandbox_canaries_are_generated_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    paths = [("inner", "token"), ("hook", "url")]
    source = SecretsFile(path, generate=True, special={("hook", "url"): lambda t: f"http://x/{t}"})
    first = source.provide("lan", paths, required=paths)
    token = first["inner"]["token"]
    assert token.startswith("CANARY-inner.token-") and len(token) > 30
    assert first["hook"]["url"].startswith("http://x/CANARY-hook.url-")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = SecretsFile(path, generate=True).provide("lan", paths, required=paths)
    assert again == first, "a second load must not regenerate secrets"


def test_the_secrets_file_is_0600_from_its_first_byte_whatever_the_umask(tmp_path: Path, monkeypatch) -> None:
    """Created exclusively with mode 0600 beside the file, then renamed over it: at no moment is
    a file there readable by others, even under umask 000, and a planted link is never followed."""
    import os

    from stack import secrets as secrets_module

    path = tmp_path / "sbx" / "secrets.json"
    seen: list[tuple[str, int, int]] = []  # (what, flags or 0, mode of the file at that moment)
    real_open, real_replace = os.open, os.replace

    def watched_open(file, flags, mode=0o777, *args, **kwargs):  # noqa: ANN001, ANN202
        fd = real_open(file, flags, mode, *args, **kwargs)
        seen.append(("open", flags, os.fstat(fd).st_mode & 0o777))
        return fd

    def watched_replace(src, dst):  # noqa: ANN001, ANN202
        seen.append(("replace", 0, os.stat(src).st_mode & 0o777))
        assert Path(src).parent == Path(dst).parent  # same directory: an atomic rename
        return real_replace(src, dst)

    monkeypatch.setattr(secrets_module.os, "open", watched_open)
    monkeypatch.setattr(secrets_module.os, "replace", watched_replace)
    old = os.umask(0)
    try:
        SecretsFile(path, generate=True).provide("lan", [("inner", "token")], required=[("inner", "token")])
        # a second write replaces the first the same way
        SecretsFile(path, generate=True).provide("lan", [("inner", "other")], required=[("inner", "other")])
    finally:
        os.umask(old)
    assert [what for what, _, _ in seen] == ["open", "replace", "open", "replace"]
    for what, flags, mode in seen:
        assert mode == 0o600, (what, oct(mode))
        if what == "open":
            assert flags & os.O_CREAT and flags & os.O_EXCL and flags & os.O_NOFOLLOW
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json"]  # no temporary left


def test_a_failed_secrets_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    from stack import secrets as secrets_module

    path = tmp_path / "secrets.json"
    secrets_module.write_private(path, '{"lan": {}}')

    def broken(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(secrets_module.os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        secrets_module.write_private(path, '{"lan": {"x": 1}}')
    assert path.read_text() == '{"lan": {}}' and [p.name for p in tmp_path.iterdir()] == ["secrets.json"]


def test_missing_required_secret_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_text('{"lan": {}}')
    with pytest.raises(ConfigError, match=r"group lan: missing secrets in the secrets file .*\n  inner.token"):
        SecretsFile(path).provide("lan", [("inner", "token")], required=[("inner", "token")])
    offline = SecretsFile(path, require=False).provide("lan", [("inner", "token")], [("inner", "token")])
    assert offline == {"inner": {"token": "(not provided: offline validation)"}}


def test_secrets_never_print() -> None:
    cfg = _WithSecret(inner=_Inner(token=SecretStr("CANARY-x-123")))
    for text in (repr(cfg), str(cfg), str(cfg.model_dump()), cfg.model_dump_json()):
        assert "CANARY-x-123" not in text


def test_secret_in_group_data_is_refused(group_data: Path) -> None:
    (group_data / "lan.py").write_text(
        (group_data / "lan.py").read_text() + '\nadmin["password_hash"] = "$y$leak"\n')
    with pytest.raises(ConfigError, match=r"group_data/lan.py: option 'admin.password_hash' is a secret"):
        build_host_config("lan", "gts-server", group_data=group_data)


def test_production_run_without_secrets_file_is_refused(monkeypatch) -> None:
    """Under pyinfra (required=True) a host whose model needs a secret refuses to load."""
    monkeypatch.delenv("IAC_SECRETS_FILE", raising=False)
    source = production_secrets(required=True)
    with pytest.raises(ConfigError, match="IAC_SECRETS_FILE"):
        source.provide("public", [("apps", "x", "secret_key")], [("apps", "x", "secret_key")])


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
