"""Generated files are written with the escaping of their format: even a value that passes
validation cannot change a file's meaning. Secrets reach systemd byte-exact; the release
settings a script sources only assign variables; nginx and unit files refuse what they cannot
hold as one token.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from engine_common import envfile
from iac.formats import env_lines, nginx_token, shell_word, unit_word
from iac.render import render
from operations.app.context import app_context, env_context
from operations.app.release import release_settings
from operations.host import HostConfig
from operations.nginx.deploy import site_text
from release_engine.settings import Settings
from stack.load import build_host_config
from stack.secrets import SecretsFile

HOSTILE = " $(touch /tmp/pwned-test)`id`&;#'\" %n\\x{}"


def _config(secrets_file: Callable[[dict], SecretsFile], group: str, host: str, secrets: dict) -> HostConfig:
    return build_host_config(group, host, secrets=secrets_file({group: secrets}))


@pytest.fixture
def lan(secrets_file: Callable[[dict], SecretsFile]) -> HostConfig:
    """The LAN host with hostile secrets and hostile (but valid) env values."""
    return _config(secrets_file, "lan", "gts-server", {
        "apps": {"rental_scheduler": {"secret_key": "k" + HOSTILE,
                                      "discord_alerts": {"webhook_url": "https://discord.com/api/webhooks/1/t%n"},
                                      "secret_env": {"SENTRY_DSN": "https://a:b@s.example/1" + HOSTILE}},
                 "shop_scheduler": {"secret_key": "\\\\\"'$$`" * 5}}})  # at least 32 characters


def test_env_file_reads_back_byte_exact_with_every_metacharacter(lan) -> None:
    for name, app in lan.apps.items():
        ctx = env_context(lan, name, app)
        text = render("etc/iac/apps/app.env.j2", **ctx)
        assert envfile.parse_env_file(text) == ctx["environment"]
    rental = env_context(lan, "rental_scheduler", lan.apps["rental_scheduler"])["environment"]
    assert rental["DJANGO_SECRET_KEY"] == "k" + HOSTILE
    assert rental["SENTRY_DSN"].endswith(HOSTILE)


def test_managed_env_names_are_the_ones_the_model_reserves(lan, secrets_file: Callable[[dict], SecretsFile]) -> None:
    public = _config(secrets_file, "public", "srv1178562", {})
    for config in (lan, public):
        for name, app in config.apps.items():
            env = env_context(config, name, app)["environment"]
            assert set(env) - set(app.env) - set(app.secret_env) <= app.managed_env_keys()


def test_release_settings_are_json_the_engine_loads(lan, tmp_path: Path) -> None:
    """The file the release engine reads: JSON from the model (no shell ever sources it)."""
    for name, app in lan.apps.items():
        ctx = app_context(lan, name, app)
        (tmp_path / f"{name}.release").write_text(json.dumps(release_settings(lan, name, app, ctx).to_dict()))
        loaded = Settings.load(name, tmp_path)
        assert (loaded.repo_url, loaded.revision, loaded.user) == (app.source.url, app.source.revision, app.user)
        assert loaded.manage_dir == app.manage_dir


@pytest.mark.parametrize("value", ["a';touch /tmp/pwned-test;'", "$(id)", "`id`", "a b", "x\\"])
def test_shell_word_is_one_word_that_runs_nothing(value: str) -> None:
    out = subprocess.run(["bash", "-c", f"v={shell_word(value)}; printf %s \"$v\""], capture_output=True,
                         text=True, check=True)
    assert out.stdout == value
    assert not Path("/tmp/pwned-test").exists()


@pytest.mark.parametrize("value", ["a;b", "a b", "{x}", "$host", "'q'", "a#b", "a\\b", "x\ny"])
def test_nginx_and_unit_tokens_refuse_what_would_need_quoting(value: str) -> None:
    with pytest.raises(ValueError):
        nginx_token(value)
    with pytest.raises(ValueError):
        unit_word(value)


def test_env_lines_refuse_a_newline_and_a_bad_name() -> None:
    with pytest.raises(ValueError):
        env_lines({"A": "one\ntwo"})
    with pytest.raises(ValueError):
        env_lines({"A B": "x"})
    assert env_lines({"A": "x y"}) == 'A="x y"\n'


def test_unit_and_site_render_for_both_hosts(lan, secrets_file: Callable[[dict], SecretsFile]) -> None:
    """Every value of today's configuration passes the unit and nginx filters (no refusal)."""
    public = _config(secrets_file, "public", "srv1178562", {})
    for config in (lan, public):
        for name, app in config.apps.items():
            ctx = app_context(config, name, app)
            unit = render("etc/systemd/system/gunicorn.service.j2", **ctx)
            site = site_text(config, name)
            assert f"ExecStart=/srv/venvs/{name}/bin/gunicorn {app.wsgi_app}" in unit
            assert f"server_name {' '.join(app.nginx.server_names)};" in site


def test_no_secret_reaches_a_template_that_does_not_write_it(lan) -> None:
    """Units, sites and log rotation are rendered from a context without the app's secrets (only
    the env file gets them): a template that printed ``app.secret_key`` would print nothing."""
    for name, app in lan.apps.items():
        ctx = app_context(lan, name, app)
        secrets = [app.secret_key.get_secret_value(), *(v.get_secret_value() for v in app.secret_env.values()),
                   *([app.discord_alerts.webhook_url.get_secret_value()] if app.discord_alerts else [])]
        assert "environment" not in ctx
        assert ctx["app"].secret_key.get_secret_value() == "" and not ctx["app"].secret_env
        assert ctx["app"].discord_alerts is None
        rendered = [render("etc/systemd/system/gunicorn.service.j2", **ctx),
                    site_text(lan, name),
                    render("etc/systemd/system/gunicorn.socket.j2", **ctx)]
        assert not [s for s in secrets for text in rendered if s in text]
        env = render("etc/iac/apps/app.env.j2", **env_context(lan, name, app))
        assert all(envfile.quote_env_value(s) in env for s in secrets if "\n" not in s)
