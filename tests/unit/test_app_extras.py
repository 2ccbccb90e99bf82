"""What a Django app nobody here wrote needs, declared through the model alone: pip packages its
requirements lack, its own health URL and status, release commands, its own static directory
and settings variable names, and long-running worker processes. Each is typed and refused with
the option's path and an example; the defaults keep today's apps' files as they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from iac.errors import ConfigError
from iac.render import render
from operations.app.context import app_context, env_context
from operations.app.release import release_settings
from operations.host import HostConfig
from operations.nginx.deploy import site_text
from release_engine.settings import Settings
from stack.load import build_host_config

# shaped like healthchecks.io: no gunicorn in requirements.txt, /api/v3/status/, compress after
# collectstatic, static-collected/, SECRET_KEY/DEBUG/ALLOWED_HOSTS, a sendalerts worker
PINGER: dict[str, Any] = {
    "user": "pinger", "unit": "gunicorn-pinger", "settings_module": "hc.settings", "wsgi_app": "hc.wsgi:application",
    "source": {"url": "git@github.com:example/pinger.git", "revision": "v1",
               "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
    "allowed_hosts": ["pinger.example"],
    "database": {"engine": "sqlite", "path": "/var/lib/pinger/db.sqlite3"},
    "nginx": {"name": "pinger", "port": 8080, "server_names": ["pinger.example"]},
    "extra_requirements": ["gunicorn==23.0.0"],
    "health": {"path": "/api/v3/status/"},
    "release_commands": [["compress", "--force"]],
    "static_dir": "static-collected",
    "settings_env": {"secret_key": "SECRET_KEY", "debug": "DEBUG", "debug_format": "False/True",
                     "public_url": "SITE_ROOT", "allowed_hosts": "ALLOWED_HOSTS",
                     "csrf_trusted_origins": None, "secure_cookies": None, "static_root": None,
                     "use_sqlite": None, "sqlite_path": "DB_NAME"},
    "processes": {"sendalerts": {"command": ["sendalerts"]}},
}


def _public(app: dict[str, Any] | None = None, **changes: Any):
    return build_host_config("public", "srv1178562", overrides={"apps": {"pinger": {**PINGER, **(app or {}),
                                                                                      **changes}}})


def _refused(option: str, **changes: Any) -> str:
    with pytest.raises(ConfigError) as err:
        _public(**changes)
    message = str(err.value)
    assert f"apps.pinger.{option}" in message, message
    assert "example" in message or "e.g." in message, message
    return message


def test_a_real_app_shape_is_declared_through_the_model_alone() -> None:
    config = _public()
    app, paths = config.apps["pinger"], config.app_paths("pinger")
    ctx = app_context(config, "pinger", app)
    env = env_context(config, "pinger", app)["environment"]
    # the names the app reads; none of the repo's defaults it would ignore
    assert env["SECRET_KEY"] and env["DEBUG"] == "False" and env["ALLOWED_HOSTS"] == "pinger.example"
    assert env["SITE_ROOT"] == "http://pinger.example:8080"  # from the site: scheme, first name, port
    assert env["DB_NAME"] == "/var/lib/pinger/db.sqlite3"
    assert not {"DJANGO_SECRET_KEY", "DJANGO_DEBUG", "USE_SQLITE", "DJANGO_SECURE_COOKIES"} & set(env)
    # nginx serves the app's own static directory
    site = site_text(config, "pinger")
    assert "alias /srv/apps/pinger/static-collected/;" in site
    assert f"server unix:{paths.socket} fail_timeout=0;" in site
    # the worker: its own unit, same env file, user and release
    unit = render("etc/systemd/system/app-process.service.j2", process="sendalerts",
                             process_unit="pinger-sendalerts", command=["sendalerts"], **ctx)
    assert "ExecStart=/srv/venvs/pinger/bin/python manage.py sendalerts\n" in unit
    assert f"EnvironmentFile={paths.env_file}\n" in unit and "User=pinger\n" in unit
    assert paths.process_units == {"sendalerts": "pinger-sendalerts"}
    # what the release engine is told
    settings = release_settings(config, "pinger", app, ctx)
    assert settings.extra_requirements == ["gunicorn==23.0.0"]
    assert settings.health_url == "http://localhost/api/v3/status/" and settings.health_status == 200
    assert settings.release_commands == [["compress", "--force"]] and settings.static_root_env == ""
    assert settings.process_units == {"pinger-sendalerts": "/etc/systemd/system/pinger-sendalerts.service"}


def test_release_settings_of_the_real_app_shape_load_in_the_engine(tmp_path: Path) -> None:
    config = _public()
    ctx = app_context(config, "pinger", config.apps["pinger"])
    (tmp_path / "pinger.release").write_text(json.dumps(
        release_settings(config, "pinger", config.apps["pinger"], ctx).to_dict()))
    loaded = Settings.load("pinger", tmp_path)
    assert loaded.static_dir == "static-collected" and loaded.sqlite_env == ["", "DB_NAME"]


@pytest.mark.parametrize(("option", "changes"), [
    ("extra_requirements.0", {"extra_requirements": ["gunicorn"]}),  # unpinned
    ("extra_requirements.0", {"extra_requirements": ["--index-url=https://evil.example/simple"]}),
    ("extra_requirements.0", {"extra_requirements": ["gunicorn @ https://evil.example/g.whl"]}),
    ("health.path", {"health": {"path": "healthz"}}),
    ("health.path", {"health": {"path": "/static/../admin/"}}),
    ("health.status", {"health": {"status": 500}}),
    ("release_commands.0", {"release_commands": [["compress; rm -rf /"]]}),
    ("release_commands.0", {"release_commands": [["compress", "$HOME"]]}),
    ("release_commands.0", {"release_commands": [[]]}),
    ("static_dir", {"static_dir": "../etc"}),
    ("settings_env.debug", {"settings_env": {"secret_key": "DEBUG", "debug": "DEBUG"}}),
    ("settings_env.secret_key", {"settings_env": {"secret_key": "PATH"}}),
    ("settings_env.secret_key", {"settings_env": {"secret_key": None}}),
    ("processes.sendalerts.command", {"processes": {"sendalerts": {"command": ["send alerts"]}}}),
    ("processes.sendalerts.unit", {"processes": {"sendalerts": {"command": ["sendalerts"], "unit": "nginx"}}}),
    ("processes.sendalerts.unit", {"processes": {"sendalerts": {"command": ["sendalerts"],
                                                                  "unit": "gunicorn-pinger"}}}),
    ("env.SECRET_KEY", {"env": {"SECRET_KEY": "x"}}),  # the name the app reads its secret key from
    ("env.SITE_ROOT", {"env": {"SITE_ROOT": "http://x"}}),  # the repo fills the public URL
    ("settings_env.debug_format", {"settings_env": {**PINGER["settings_env"], "debug_format": "no/yes"}}),
    ("settings_env.public_url", {"nginx": {**PINGER["nginx"], "server_names": ["_"]},
                                 "allowed_hosts": ["pinger.example"]}),
])
def test_bad_app_extras_are_refused_with_the_option_and_an_example(option: str, changes: dict) -> None:
    _refused(option, **changes)


def test_a_process_unit_may_not_take_another_apps_unit() -> None:
    with pytest.raises(ConfigError, match=r"apps.pinger.processes.sendalerts.unit.*broker_portal"):
        _public(processes={"sendalerts": {"command": ["sendalerts"], "unit": "broker_portal"}})


def test_unknown_app_option_lists_the_known_ones_and_suggests_the_closest() -> None:
    with pytest.raises(ConfigError) as err:
        _public(health_path="/x")
    assert "did you mean 'health'" in str(err.value) or "health" in str(err.value), str(err.value)
    with pytest.raises(ConfigError, match="extra_requirements"):
        _public(extra_requirement=["gunicorn==23.0.0"])


def test_todays_apps_keep_their_files_byte_for_byte(production: Mapping[str, HostConfig]) -> None:
    """The new options' defaults are today's behaviour: env files, units and sites of the
    declared apps do not change (a change would restart every app on the next run). The golden
    files were rendered before the options existed; one change since is deliberate: the units
    read gunicorn_conf.py (`--config`) instead of passing `--no-control-socket`, which gunicorn
    before 25 refuses (found deploying the pinger fixture with gunicorn 23); and the socket belongs
    to a `<unit>.socket` unit (socket activation: a restart queues connections instead of refusing
    them), so the service requires it and no longer has a RuntimeDirectory= to delete it. The sites
    since carry `server_tokens off` and the security headers in every server block (issue 20), and
    the services `OnFailure=` the host's alert unit (a crash loop posts one message, issue 24)."""
    golden = json.loads((Path(__file__).parent / "golden_app_files.json").read_text())
    for group in ("public", "lan"):
        config = production[group]
        for name, app in config.apps.items():
            ctx = app_context(config, name, app)
            contexts = {"etc/systemd/system/gunicorn.service.j2": ctx, "etc/iac/apps/app.env.j2":
                        env_context(config, name, app)}
            for template, values in contexts.items():
                assert render(template, **values) == golden[f"{name}:{template}"], (name, template)
            site = site_text(config, name)
            assert site == golden[f"{name}:site"], name


@pytest.mark.parametrize("value", ["True", "true", "1", "yes", " on "])
@pytest.mark.parametrize("name", ["DEBUG", "DJANGO_DEBUG", "APP_DEBUG"])
def test_debug_through_env_is_refused_when_it_turns_debug_on(name: str, value: str) -> None:
    settings_env = {**PINGER["settings_env"], "debug": None}  # the workaround: no debug name, DEBUG in env
    with pytest.raises(ConfigError) as err:
        _public(settings_env=settings_env, env={name: value})
    message = str(err.value)
    assert f"apps.pinger.env.{name}" in message and "turns debug on" in message and "debug_format" in message


def test_debug_off_through_env_and_a_debug_free_name_are_accepted() -> None:
    settings_env = {**PINGER["settings_env"], "debug": None}
    assert _public(settings_env=settings_env, env={"DEBUG": "False", "DEBUGGER_HOST": "1"})


@pytest.mark.parametrize(("fmt", "written"), [("0/1", "0"), ("False/True", "False"), ("false/true", "false")])
def test_the_debug_flag_is_written_off_in_the_format_the_app_reads(fmt: str, written: str) -> None:
    config = _public(settings_env={**PINGER["settings_env"], "debug_format": fmt})
    assert env_context(config, "pinger", config.apps["pinger"])["environment"]["DEBUG"] == written


@pytest.mark.parametrize(("nginx", "url"), [
    ({"port": 8080, "server_names": ["pinger.example"]}, "http://pinger.example:8080"),
    ({"port": 80, "server_names": ["pinger.example", "www.pinger.example"]}, "http://pinger.example"),
    ({"port": 8080, "server_names": ["pinger.example"], "tls": True}, "https://pinger.example"),
    ({"port": 8080, "server_names": ["_"]}, None),
])
def test_the_public_url_follows_the_site(nginx: dict, url: str | None) -> None:
    from operations.nginx.options import NginxSite

    assert NginxSite.model_validate({"name": "pinger", **nginx}).public_url() == url


TLS_PINGER = {"nginx": {"name": "pinger", "port": 80, "server_names": ["pinger.pravoo.in"], "tls": True},
              "allowed_hosts": ["pinger.pravoo.in"]}


def test_tls_sites_share_80_and_443_by_name_and_unknown_names_get_a_site_of_their_own() -> None:
    from operations.host import UNKNOWN_NAMES_SITE

    config = _public(**TLS_PINGER)
    assert config.site_ports() == {80: ["chip_dashboard", "pinger"], 443: ["chip_dashboard", "pinger"]}
    assert config.shared_site_ports() == [80, 443]
    for name in ("chip_dashboard", "pinger"):
        site = site_text(config, name)
        assert "default_server" not in site and f"server_name {config.apps[name].nginx.server_names[0]}" in site
        assert f"ssl_certificate /etc/iac/tls/{config.apps[name].nginx.server_names[0]}/" in site  # its own
    unknown = render(f"etc/nginx/sites-available/{UNKNOWN_NAMES_SITE}.j2", http_ports=[80], tls=True)
    assert "listen 80 default_server;" in unknown and "return 444;" in unknown
    assert "listen 443 ssl default_server;" in unknown and "ssl_reject_handshake on;" in unknown
    assert {"kind": "file", "name": f"/etc/nginx/sites-enabled/{UNKNOWN_NAMES_SITE}", "app": "", "keep": False,
            "remove": ""} in config.managed()


def test_one_site_per_port_stays_its_ports_default_server() -> None:
    config = _public()
    assert config.shared_site_ports() == []
    assert not [e for e in config.managed() if "unknown-names" in str(e["name"])]


@pytest.mark.parametrize(("changes", "option", "said"), [
    ({"nginx": {**TLS_PINGER["nginx"], "server_names": ["pravoo.in"]}, "allowed_hosts": ["pravoo.in"]},
     "nginx.server_names", "each name may belong to one site only"),
    ({**TLS_PINGER, "nginx": {**TLS_PINGER["nginx"], "tls": False}}, "nginx.port",
     "a plain-HTTP site is the default server of its own port"),
    ({**TLS_PINGER, "nginx": {**TLS_PINGER["nginx"], "port": 443}}, "nginx.tls", "its nginx.port"),
    ({"nginx": {"name": "default", "port": 8080, "server_names": ["pinger.example"]}}, "nginx.name", "reserved"),
    ({"nginx": {"name": "iac-unknown-names", "port": 8080, "server_names": ["pinger.example"]}}, "nginx.name",
     "reserved"),
])
def test_sites_that_cannot_share_a_port_are_refused_with_the_fix(changes: dict, option: str, said: str) -> None:
    message = _refused(option, **changes)
    assert said in message, message
