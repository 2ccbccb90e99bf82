"""Every value from group_data or the secrets file is hostile until typed: a value that could
become a command, a wrong path or a collision is refused before any host is contacted, and the
message names the file, the option and a valid example.

All of this runs offline (``build_host_config`` on a scratch copy of group_data/).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from iac.errors import ConfigError
from stack.load import build_host_config
from stack.secrets import SecretsFile

HOSTS = {"public": "srv1178562", "lan": "gts-server"}


def refusal(group_data: Path, group: str, snippet: str) -> str:
    """The operator-facing message for group_data/<group>.py with ``snippet`` appended."""
    path = group_data / f"{group}.py"
    path.write_text(path.read_text() + "\n" + snippet + "\n")
    with pytest.raises(ConfigError) as err:
        build_host_config(group, HOSTS[group], group_data=group_data)
    return str(err.value)


# (group, what is appended to its group_data file, fragments the message must hold)
CASES = [
    # values that reached a root shell, a unit or an nginx site
    ("lan", """apps["rental_scheduler"]["source"]["url"] = "git@github.com:o/r.git';touch${IFS}/tmp/x;'" """,
     ["apps.rental_scheduler.source.url", "example: 'git@github.com:owner/repo.git'"]),
    ("public", 'apps["chip_dashboard"]["source"]["url"] = "ssh://git@github.com:22/-oProxyCommand=x"',
     ["apps.chip_dashboard.source.url", "no leading '-'"]),
    ("public", 'apps["chip_dashboard"]["source"]["url"] = "https://github.com/o/r.git"',
     ["apps.chip_dashboard.source.url", "only SSH URLs"]),
    ("public", 'apps["chip_dashboard"]["source"]["revision"] = "--upload-pack=touch"',
     ["apps.chip_dashboard.source.revision", "example: 'v2'"]),
    ("lan", 'apps["rental_scheduler"]["settings_module"] = "x.settings\\nExecStartPre=+/bin/sh -c id"',
     ["apps.rental_scheduler.settings_module", "control character", "example of a valid value"]),
    ("public", 'apps["chip_dashboard"]["wsgi_app"] = "a.wsgi:app --bind=0.0.0.0:9"',
     ["apps.chip_dashboard.wsgi_app", "example: 'broker_portal.wsgi:application'"]),
    ("lan", 'apps["rental_scheduler"]["nginx"]["server_names"] = ["gts-server.lan;include /etc/passwd"]',
     ["apps.rental_scheduler.nginx.server_names.0", "example: 'pravoo.in'"]),
    ("lan", 'apps["rental_scheduler"]["discord_alerts"]["environment"] = "$(id)"',
     ["apps.rental_scheduler.discord_alerts.environment", "example: 'prod'"]),
    ("lan", 'app_env_dir = "/etc/gts/$(id)"', ["option 'app_env_dir'", "example: '/etc/gts/apps'"]),
    # paths: absolute, normalised, under the option's root, not a system directory
    ("lan", 'app_env_dir = "/tmp"', ["option 'app_env_dir'", "must be under /etc"]),
    ("lan", 'app_env_dir = "/etc"', ["option 'app_env_dir'", "must be under /etc"]),
    ("lan", 'app_env_dir = "/etc/ssh"', ["option 'app_env_dir'", "system directory"]),
    ("lan", 'app_env_dir = "/etc/systemd/system/x"', ["option 'app_env_dir'", "inside /etc/systemd"]),
    ("lan", 'apps["rental_scheduler"]["log_dir"] = "/var/log/../../etc"',
     ["apps.rental_scheduler.log_dir", "normalised", "example: '/var/log/gts/rental_scheduler'"]),
    ("lan", 'apps["rental_scheduler"]["log_dir"] = "/var/log/nginx"', ["apps.rental_scheduler.log_dir", "system"]),
    ("public", 'apps["chip_dashboard"]["database"]["path"] = "/var/lib/../etc/shadow"',
     ["apps.chip_dashboard.database.path", "example: '/var/lib/chip_dashboard/db.sqlite3'"]),
    ("public", 'apps["chip_dashboard"]["database"]["path"] = "/var/lib/postgresql/db.sqlite3"',
     ["apps.chip_dashboard.database.path", "another service"]),
    ("lan", 'apps["rental_scheduler"]["manage_dir"] = "../../../etc"',
     ["apps.rental_scheduler.manage_dir", "no '..'"]),
    ("lan", 'apps["rental_scheduler"]["frontend_build"]["outputs"] = ["../../etc"]',
     ["apps.rental_scheduler.frontend_build.outputs.0", "no '..'"]),
    ("public", 'backups["local"]["root"] = "/etc"', ["backups.local.root", "must be under"]),
    ("lan", 'admin["shell"] = "/tmp/sh"', ["admin.shell", "example: '/bin/bash'"]),
    # the env map
    ("lan", 'apps["rental_scheduler"]["env"] = {"BAD-KEY": "1"}',
     ["'BAD-KEY' under 'apps.rental_scheduler.env'", "example: 'FEATURE_X'"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"X": "a\\nDJANGO_DEBUG=1"}',
     ["apps.rental_scheduler.env", "control character", "in entry 'X'"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"X": "a\\x00b"}', ["apps.rental_scheduler.env", "'\\x00'"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"DJANGO_DEBUG": "1"}',
     ["apps.rental_scheduler.env.DJANGO_DEBUG", "set by the repo"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"DJANGO_SECRET_KEY": "x"}',
     ["apps.rental_scheduler.env.DJANGO_SECRET_KEY", "secrets file"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"ACCOUNTING_POSTGRES_DB": "x"}',
     ["apps.rental_scheduler.env.ACCOUNTING_POSTGRES_DB", "set by the repo"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"LD_PRELOAD": "/tmp/x.so"}',
     ["apps.rental_scheduler.env.LD_PRELOAD", "cannot be set"]),
    ("lan", 'apps["rental_scheduler"]["env"] = {"STRIPE_API_KEY": "sk_live_x"}',
     ["apps.rental_scheduler.env.STRIPE_API_KEY", "looks like a secret", "secret_env.STRIPE_API_KEY"]),
    ("lan", 'apps["rental_scheduler"]["secret_env"] = {"SENTRY_DSN": "x"}',
     ["group_data/lan.py: option 'apps.rental_scheduler.secret_env' is a secret"]),
    # collisions between apps, and with the system
    ("lan", 'apps["shop_scheduler"]["user"] = "rental_scheduler"',
     ["apps.shop_scheduler.user", "already the user of apps.rental_scheduler"]),
    ("lan", 'apps["shop_scheduler"]["user"] = "postgres"', ["apps.shop_scheduler.user", "system"]),
    ("lan", 'apps["shop_scheduler"]["user"] = "gts"', ["apps.shop_scheduler.user", "the admin"]),
    ("lan", 'apps["shop_scheduler"]["unit"] = "gunicorn-rental_scheduler"',
     ["apps.shop_scheduler.unit", "already the unit of apps.rental_scheduler", "e.g. 'gunicorn-shop_scheduler'"]),
    ("lan", 'apps["shop_scheduler"]["unit"] = "nginx"', ["apps.shop_scheduler.unit", "another service"]),
    ("lan", 'apps["shop_scheduler"]["unit"] = "pg-backup-gts"', ["apps.shop_scheduler.unit", "another service"]),
    ("lan", 'apps["shop_scheduler"]["nginx"]["name"] = "rental_scheduler"',
     ["apps.shop_scheduler.nginx.name", "would overwrite the first"]),
    ("lan", 'apps["shop_scheduler"]["nginx"]["name"] = "default"', ["apps.shop_scheduler.nginx.name", "Debian"]),
    ("lan", 'apps["shop_scheduler"]["nginx"]["port"] = 22', ["apps.shop_scheduler.nginx.port", "sshd"]),
    ("lan", 'apps["shop_scheduler"]["nginx"]["port"] = 5432', ["apps.shop_scheduler.nginx.port", "PostgreSQL"]),
    ("public", 'apps["chip_dashboard"]["nginx"]["port"] = 443',
     ["apps.chip_dashboard.nginx.tls", "port 443 is already taken"]),
    ("lan", 'apps["shop_scheduler"]["nginx"]["port"] = 8001',
     ["apps.shop_scheduler.nginx.port", "taken by apps.rental_scheduler", "default server"]),
    ("lan", 'apps["shop_scheduler"]["log_dir"] = "/var/log/gts/rental_scheduler"',
     ["apps.shop_scheduler.log_dir", "already the state or log directory of apps.rental_scheduler"]),
    # names nginx serves must be allowed by Django; a TLS site needs its domain first
    ("lan", 'apps["rental_scheduler"]["allowed_hosts"] = ["gts-server", "192.168.1.230"]',
     ["apps.rental_scheduler.allowed_hosts", "must contain 'gts-server.lan'", "answers 400"]),
    ("lan", 'apps["rental_scheduler"]["allowed_hosts"] = ["*"]', ["apps.rental_scheduler.allowed_hosts.0", "'*'"]),
    ("public", 'apps["chip_dashboard"]["nginx"]["server_names"] = ["_"]',
     ["apps.chip_dashboard.nginx.server_names", "cannot have a certificate", "['pravoo.in']"]),
    # other typed values
    ("lan", 'network["address"] = "999.1.1.1/24"', ["network.address", "example: '192.168.1.230/24'"]),
    ("lan", 'network["gateway"] = "10.0.0.1"', ["network.gateway", "not in 192.168.1.0/24"]),
    ("lan", 'network["dns"] = ["192.168.1.1; nameserver 6.6.6.6"]', ["network.dns.0", "example: '192.168.1.1'"]),
    ("public", 'tls["email"] = "admin@pravoo.in\\nX"', ["tls.email", "control character"]),
    ("public", 'tls["acme_directory"] = "http://acme.example/dir"', ["tls.acme_directory", "https://"]),
    ("public", 'apps["chip_dashboard"]["database"]["engine"] = "mysql"',
     ["apps.chip_dashboard.database", "'sqlite', 'postgresql'", "example of a valid value"]),
    ("lan", 'backups["offsite"]["postgres"]["repository"] = "s3:https://x.example/b/../../other"',
     ["backups.offsite.postgres.repository", "example"]),
    # did you mean, at every depth; names of apps are attributed to their file
    ("lan", 'apps["rental_scheduler"]["nginx"]["prot"] = 1',
     ["group_data/lan.py: unknown option 'apps.rental_scheduler.nginx.prot'; did you mean 'port'?"]),
    ("lan", 'apps["rental_scheduler"]["setings_module"] = "x"',
     ["unknown option 'apps.rental_scheduler.setings_module'; did you mean 'settings_module'?"]),
    ("lan", 'backups["offsite"]["postgres"]["keep_dialy"] = 3', ["did you mean 'keep_daily'?"]),
    ("lan", 'apps["Bad-Name"] = dict(apps["rental_scheduler"])',
     ["group_data/lan.py: 'Bad-Name' under 'apps' is not a valid name", "example: 'rental_scheduler'"]),
]


@pytest.mark.parametrize(("group", "snippet", "fragments"), CASES, ids=[c[1][:60] for c in CASES])
def test_hostile_value_is_refused_naming_file_option_and_fix(group_data: Path, group: str, snippet: str,
                                                             fragments: list[str]) -> None:
    message = refusal(group_data, group, snippet)
    assert f"group_data/{group}.py" in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert "pattern" not in message.lower() or "example" in message  # never a bare regex


def test_underscore_names_in_group_data_are_refused(group_data: Path) -> None:
    """pyinfra would apply `_ignore_errors = True` to every operation of the group."""
    message = refusal(group_data, "lan", "_ignore_errors = True")
    assert "group_data/lan.py: '_ignore_errors' starts with '_'" in message and "global argument" in message


def test_unknown_group_file_is_refused_with_the_closest_name(group_data: Path) -> None:
    (group_data / "publc.py").write_text("apps = {}\n")
    with pytest.raises(ConfigError, match=r"group_data/publc.py: not a group of this repository \(did you mean "
                                          r"group_data/public.py\?\)"):
        build_host_config("lan", "gts-server", group_data=group_data)


def test_unknown_secrets_key_is_refused_with_the_closest_name(secrets_file: Callable[[dict], SecretsFile]) -> None:
    source = secrets_file({"lan": {"apps": {"rental_scheduler": {"secret_kye": "x"}}}})
    with pytest.raises(ConfigError, match=r"unknown secret 'apps.rental_scheduler.secret_kye'.*did you mean "
                                          r"'apps.rental_scheduler.secret_key'\?"):
        build_host_config("lan", "gts-server", secrets=source)


def test_unknown_secrets_group_is_refused(secrets_file: Callable[[dict], SecretsFile]) -> None:
    with pytest.raises(ConfigError, match=r"unknown group 'pubic'; did you mean 'public'\?"):
        secrets_file({"pubic": {}})


def test_secret_env_comes_from_the_secrets_file(secrets_file: Callable[[dict], SecretsFile]) -> None:
    source = secrets_file({"lan": {"apps": {"rental_scheduler": {
        "secret_env": {"SENTRY_DSN": "https://k@sentry.example/1"}}}}})
    config = build_host_config("lan", "gts-server", secrets=source)
    assert config.apps["rental_scheduler"].secret_env["SENTRY_DSN"].get_secret_value() == "https://k@sentry.example/1"


@pytest.mark.parametrize("value", ["s3cr3t-part\nbreak", "s3cr3t-part\x00byte"])
def test_secret_with_a_newline_or_nul_is_refused_without_showing_it(secrets_file: Callable[[dict], SecretsFile],
                                                                    value: str) -> None:
    source = secrets_file({"public": {"apps": {"chip_dashboard": {"secret_key": value}}}})
    with pytest.raises(ConfigError) as err:
        build_host_config("public", "srv1178562", secrets=source)
    assert "apps.chip_dashboard.secret_key" in str(err.value) and "control character" in str(err.value)
    assert "s3cr3t-part" not in str(err.value)


def test_plain_password_is_not_taken_for_a_hash(secrets_file: Callable[[dict], SecretsFile]) -> None:
    source = secrets_file({"lan": {"admin": {"password_hash": "hunter2"}}})
    with pytest.raises(ConfigError, match=r"admin.password_hash': is not a crypt\(3\) hash"):
        build_host_config("lan", "gts-server", secrets=source)


@pytest.mark.parametrize(("group", "host", "path", "value", "kind", "least"), [
    ("public", "srv1178562", ("apps", "chip_dashboard", "secret_key"), "short-key-0123", "Django secret key", 32),
    ("lan", "gts-server", ("backups", "offsite", "postgres", "password"), "hunter2", "restic repository password", 12),
    ("lan", "gts-server", ("apps", "rental_scheduler", "secret_env", "SENTRY_DSN"), "x", "secret variable", 8),
])
def test_a_secret_shorter_than_its_kind_allows_is_refused_without_showing_it(
        secrets_file: Callable[[dict], SecretsFile], group: str, host: str, path: tuple, value: str, kind: str,
        least: int) -> None:
    data: dict = {}
    node = data.setdefault(group, {})
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        build_host_config(group, host, secrets=secrets_file(data))
    said = str(err.value)
    assert f"'{'.'.join(path)}': a {kind} of {len(value)} characters is too short: give at least {least}" in said
    assert "openssl rand" in said and value not in said.replace(kind, "")


def test_a_short_sudo_password_is_refused_naming_where_to_change_it(
        secrets_file: Callable[[dict], SecretsFile]) -> None:
    from iac.sudo import SECRET_PATH

    source = secrets_file({"lan": {"connection": {"sudo_password": "gts123"}}})
    with pytest.raises(ConfigError, match=r"lan.connection.sudo_password has 6 characters: give at least 8 "
                                          r"\(change it on the host with `passwd`"):
        source.connection_secret("lan", SECRET_PATH)


# ---- every string option, fuzzed ---------------------------------------------------------------

# payload classes: a newline or NUL is refused everywhere; quotes, $() and .. segments wherever a
# value is a name, a path, a URL or an identifier. Free text (env values) may hold them: it is
# written escaped (tests/unit/test_rendering.py proves the escaping).
PAYLOADS = {"newline": "\nX=1", "nul": "\x00", "quote": "'\"", "subshell": "$(id)", "dotdot": "/../x"}
FREE_TEXT = ("apps.*.env.*",)


def _string_leaves(node: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(node, str):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _string_leaves(v, path + (k,))]
    if isinstance(node, list) and node:
        return _string_leaves(node[0], path + (0,))
    return []


def _explicit_values(group: str) -> dict[str, Any]:
    return copy.deepcopy(_explicit_values_cached(group))


@functools.cache
def _explicit_values_cached(group: str) -> dict[str, Any]:
    """Every option of the group's validated configuration, defaults included, as a group_data
    file would set it (secrets left out: they come from the secrets file)."""
    config = build_host_config(group, HOSTS[group])

    def plain(node: Any) -> Any:
        if isinstance(node, SecretStr):
            return None
        if isinstance(node, dict):
            return {k: v for k, v in ((k, plain(v)) for k, v in node.items())
                    if v is not None and k not in ("secret_env", "secret_key_fallbacks")}
        if isinstance(node, list):
            return [plain(v) for v in node]
        return node

    dump = config.model_dump(mode="python")
    return {k: v for k, v in plain(dump).items() if v is not None}


def _fuzz_cases() -> list[tuple[str, tuple, str]]:
    cases = []
    for group in HOSTS:
        for path in _string_leaves(_explicit_values(group)):
            for kind in PAYLOADS:
                cases.append((group, path, kind))
    return cases


FUZZ = _fuzz_cases()


def _free_text(path: tuple) -> bool:
    from fnmatch import fnmatchcase
    dotted = ".".join(map(str, path))
    return any(fnmatchcase(dotted, pattern) for pattern in FREE_TEXT)


@pytest.mark.parametrize(("group", "path", "kind"), FUZZ, ids=[f"{g}:{'.'.join(map(str, p))}:{k}" for g, p, k in FUZZ])
def test_every_string_option_refuses_hostile_values(group_data: Path, group: str, path: tuple, kind: str) -> None:
    values = _explicit_values(group)
    node: Any = values
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = node[path[-1]] + PAYLOADS[kind]
    # the host's name is its key under `hosts` (or set in its entry there, as here)
    values["hosts"] = {HOSTS[group]: {"host": {"hostname": values["host"].pop("hostname")}}}
    (group_data / f"{group}.py").write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    dotted = ".".join(map(str, path))
    if _free_text(path) and kind not in ("newline", "nul"):
        build_host_config(group, HOSTS[group], group_data=group_data)  # accepted: written escaped
        return
    with pytest.raises(ConfigError) as err:
        build_host_config(group, HOSTS[group], group_data=group_data)
    message = str(err.value)
    assert f"group_data/{group}.py" in message, message
    # the option (a list's item or the list itself; a map's key or the map)
    assert dotted in message or dotted.rsplit(".", 1)[0] in message, message
    assert "example" in message or "e.g." in message, message
