"""Rotations (cli/rotate/). A Django secret key: the old key stays a fallback for the declared
days where the app reads fallbacks, expired ones are neither written nor kept, and an app that
reads none is told that sessions end. A provider-issued secret: named by its option, the others
sent to their own command. The sandbox runs under load are tests/integration/test_rotation.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from cli.rotate.django_key import kept_fallbacks, sessions_note
from cli.rotate.issued import _declared, issued
from cli.secrets import read_values
from iac.errors import ConfigError
from operations.app.context import app_environment, app_view
from operations.app.options import DjangoApp
from stack.load import config_secret_values
from tests.unit.test_app_extras import PINGER

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
OLD = "o" * 40
CURRENT = "c" * 40


def _app(**changes: Any) -> DjangoApp:
    settings_env = {**PINGER["settings_env"], "secret_key_fallbacks": "SECRET_KEY_FALLBACKS"}
    return DjangoApp.model_validate({**PINGER, "secret_key": CURRENT, "settings_env": settings_env, **changes})


def _env(app: DjangoApp, now: datetime = NOW) -> dict[str, str]:
    return app_environment(app, "pinger", ["pinger.example"], [], now=now)


def test_a_rotation_keeps_the_old_key_for_the_declared_days_and_drops_expired_ones() -> None:
    app = _app(secret_key_fallback_days=3, secret_key_fallbacks={"2026-12-01T00:00:00Z": "e" * 40,
                                                                 "2026-12-06T00:00:00Z": "l" * 40})
    assert kept_fallbacks(app, OLD, NOW) == {"2026-12-06T00:00:00Z": "l" * 40, "2026-12-08T12:00:00Z": OLD}


def test_an_app_without_fallbacks_keeps_none_and_is_told_sessions_end() -> None:
    settings_env = dict(PINGER["settings_env"])
    app = DjangoApp.model_validate({**PINGER, "secret_key": CURRENT, "settings_env": settings_env})
    assert kept_fallbacks(app, OLD, NOW) == {}
    assert "every session ends" in sessions_note("pinger", app, NOW)
    assert "SECRET_KEY_FALLBACKS" not in _env(app)
    zero = _app(secret_key_fallback_days=0)
    assert kept_fallbacks(zero, OLD, NOW) == {}
    assert "end when the new one is live" in sessions_note("pinger", zero, NOW)


def test_the_note_names_the_variable_and_the_day_the_old_key_stops() -> None:
    note = sessions_note("pinger", _app(), NOW)
    assert "SECRET_KEY_FALLBACKS until 2026-12-12 12:00 UTC" in note and "keep working" in note


def test_only_unexpired_fallbacks_reach_the_env_file_newest_first() -> None:
    app = _app(secret_key_fallbacks={"2026-12-06T00:00:00Z": "a" * 40, "2026-12-09T00:00:00Z": "b" * 40,
                                     "2026-12-05T11:59:59Z": "x" * 40})
    assert _env(app)["SECRET_KEY_FALLBACKS"] == f"{'b' * 40},{'a' * 40}"
    assert _env(app, NOW + timedelta(days=2))["SECRET_KEY_FALLBACKS"] == "b" * 40
    # the variable is always written (empty when none is live): the file's shape never depends on time
    assert _env(app, NOW + timedelta(days=9))["SECRET_KEY_FALLBACKS"] == ""
    assert _env(_app())["SECRET_KEY"] == CURRENT


def test_fallbacks_are_secrets_redacted_everywhere_and_seen_only_by_the_env_file() -> None:
    app = _app(secret_key_fallbacks={"2026-12-09T00:00:00Z": "b" * 40})
    assert "b" * 40 not in repr(app) and "b" * 40 not in app_view(app).model_dump_json()
    assert "b" * 40 in config_secret_values(app)  # what reports redact


@pytest.mark.parametrize(("changes", "option", "words"), [
    ({"secret_key_fallbacks": {"2026-12-09": "b" * 40}}, "secret_key_fallbacks", "YYYY-MM-DDTHH:MM:SSZ"),
    ({"secret_key_fallbacks": {"2026-12-09T00:00:00Z": "short"}}, "secret_key_fallbacks", "too short"),
    ({"secret_key_fallbacks": {"2026-12-09T00:00:00Z": "b" * 20 + "," + "b" * 20}},
     "secret_key_fallbacks.2026-12-09T00:00:00Z", "comma"),
    ({"secret_key_fallback_days": 91}, "secret_key_fallback_days", "less than or equal to 90"),
    ({"secret_key_fallback_days": True}, "secret_key_fallback_days", ""),
])
def test_bad_fallbacks_are_refused_naming_the_option(changes: dict, option: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        _app(**changes)
    assert words in str(err.value), str(err.value)


def test_fallbacks_for_an_app_that_reads_none_are_refused_with_the_fix() -> None:
    settings_env = dict(PINGER["settings_env"])
    with pytest.raises(ValidationError) as err:
        DjangoApp.model_validate({**PINGER, "secret_key": CURRENT, "settings_env": settings_env,
                                  "secret_key_fallbacks": {"2026-12-09T00:00:00Z": "b" * 40}})
    assert "reads no fallback keys" in str(err.value) and "settings_env.secret_key_fallbacks" in str(err.value)


@pytest.mark.parametrize(("dotted", "leaves"), [
    ("lan.backups.alerts.webhook_url", ("webhook_url",)),
    ("lan.apps.rental_scheduler.discord_alerts.webhook_url", ("webhook_url",)),
    ("lan.backups.offsite.postgres.access_key", ("access_key_id", "secret_access_key")),
])
def test_provider_issued_secrets_are_named_by_their_option(dotted: str, leaves: tuple) -> None:
    group, path, kind = issued(dotted)
    assert group == "lan" and ".".join(path) == dotted.split(".", 1)[1] and kind.leaves == leaves


@pytest.mark.parametrize(("dotted", "said"), [
    ("lan.apps.rental_scheduler.secret_key", "make rotate-django-key"),
    ("lan.backups.offsite.postgres.password", "make rotate-restic"),
    ("lan.backups.offsite.a.b.access_key", "not a secret a provider issues"),  # '*' is one name
    ("lan.apps.x.secret_env.TOKEN", "example: lan.backups.alerts.webhook_url"),
])
def test_other_secrets_are_refused_naming_their_command(dotted: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        issued(dotted)


def test_an_option_not_declared_on_a_host_is_named(production) -> None:
    lan = production["lan"]
    assert _declared(lan, ("backups", "offsite", "postgres"))
    assert _declared(lan, ("apps", "rental_scheduler", "discord_alerts", "webhook_url"))
    assert not _declared(lan, ("apps", "nope", "discord_alerts", "webhook_url"))
    assert not _declared(production["public"], ("backups", "offsite", "postgres"))


def test_several_values_are_read_one_line_each(monkeypatch) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("id-1234567\nsecret-value-123456\n"))
    assert read_values(["id", "secret"]) == ["id-1234567", "secret-value-123456"]
    monkeypatch.setattr("sys.stdin", io.StringIO("only-one\n"))
    with pytest.raises(ConfigError, match="want 2 non-empty lines"):
        read_values(["id", "secret"])


@pytest.mark.parametrize("value, says", [
    ("", "new restic password: empty; nothing changed"),
    ("abc\ndefghijklmnop", "new restic password: holds a line break or NUL"),
    ("x" * 5000, "new restic password: longer than"),
    ("short", "new restic password: give at least 12 characters"),
])
def test_an_operator_s_new_secret_is_one_line_of_enough_characters(value: str, says: str) -> None:
    from cli.rotate.common import checked_secret

    with pytest.raises(ConfigError) as err:
        checked_secret(value, "new restic password", 12)
    assert str(err.value).startswith(says) and "sudo password" not in str(err.value)
    assert checked_secret("a" * 12, "new restic password", 12) == "a" * 12
