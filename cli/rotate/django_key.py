"""`iac rotate-django-key APP`: the app's Django secret key replaced.

1. a new key is made here (64 random URL-safe characters: no comma, which separates fallbacks),
   never printed (``--stdin``: the operator's own, at least 50 characters); the old key joins
   ``secret_key_fallbacks`` until now + ``secret_key_fallback_days`` (where the app reads
   fallbacks: settings_env.secret_key_fallbacks), expired fallbacks are dropped. An app that
   reads none is told, before anything changes, that every session ends;
2. the stack's ``apps.APP.secret_key`` (and fallbacks) become them (encrypted, checked by the
   stack's inventory: cli/secrets.py); production asks first (type the app's name, or --yes);
3. that app's steps only are applied (as `make release`: the env file changes, so the release
   engine restarts the app behind its socket: no request is lost);
4. if the apply fails, the stack is put back and applied again: the old key serves alone.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta

from cli.release import apply
from cli.rollback import find_app
from cli.rotate.common import given_secret
from cli.secrets import current, load_stack, put, save
from iac.errors import ConfigError
from operations.app.options import UNTIL_FORMAT, DjangoApp, until_time
from stack.load import RELEASE_ONLY_ENV, RUN_PURPOSE_ENV


def kept_fallbacks(app: DjangoApp, old_key: str, now: datetime) -> dict[str, str]:
    """The fallbacks after a rotation at ``now``: the unexpired ones, and ``old_key`` until now +
    ``secret_key_fallback_days`` where the app reads fallbacks at all (and the days are not 0)."""
    kept = {until: key.get_secret_value() for until, key in app.secret_key_fallbacks.items()
            if until_time(until) > now}
    if app.settings_env.secret_key_fallbacks is not None and app.secret_key_fallback_days > 0:
        until = (now + timedelta(days=app.secret_key_fallback_days)).strftime(UNTIL_FORMAT)
        kept[until] = old_key
    return kept


def sessions_note(name: str, app: DjangoApp, now: datetime) -> str:
    """What a rotation of ``name``'s key means for its users, said before anything changes."""
    variable = app.settings_env.secret_key_fallbacks
    if variable is None:
        return (f"{name} reads no fallback keys (settings_env.secret_key_fallbacks is None): when the new key "
                "is live, every session ends (users log in again) and password-reset links stop working; "
                "if its settings read SECRET_KEY_FALLBACKS from a variable, declare its name there first")
    if app.secret_key_fallback_days == 0:
        return f"{name}: secret_key_fallback_days is 0: sessions signed with the old key end when the new one is live"
    until = now + timedelta(days=app.secret_key_fallback_days)
    return (f"{name}: the old key stays in {variable} until {until:%Y-%m-%d %H:%M} UTC "
            f"(secret_key_fallback_days {app.secret_key_fallback_days}): sessions and reset links signed with it "
            "keep working until then")


def rotate_django_key(inventory: str, name: str, yes: bool, now: datetime | None = None,
                      given: bool = False) -> int:
    target = find_app(inventory, name)
    app = target.config.apps[name]
    moment = now or datetime.now(UTC)
    key = given_secret(f"the new secret key of {name}", 50) if given else secrets.token_urlsafe(48)
    if "," in key:
        raise ConfigError("the new key holds a comma, which separates fallback keys: give one without")
    print(f"rotate: {sessions_note(name, app, moment)}")
    if target.production and not yes:
        answer = input(f"Rotate {name}'s secret key on {target.name}? Type the app name: ") \
            if sys.stdin.isatty() else ""
        if answer.strip() != name:
            raise ConfigError("not confirmed; nothing changed")
    vault, _ = load_stack(inventory)
    before = current(vault)
    data = json.loads(before)
    put(data, (target.group, "apps", name, "secret_key"), key)
    fallbacks = kept_fallbacks(app, app.secret_key.get_secret_value(), moment)
    put(data, (target.group, "apps", name, "secret_key_fallbacks"), fallbacks)
    if not fallbacks:
        del data[target.group]["apps"][name]["secret_key_fallbacks"]
    dropped = sum(until_time(until) <= moment for until in app.secret_key_fallbacks)
    save(inventory, vault, json.dumps(data, indent=2).encode() + b"\n")
    print(f"rotate: the stack's {target.group}.apps.{name}.secret_key is a new key; {len(fallbacks)} fallback(s)"
          + (f", {dropped} expired one(s) dropped" if dropped else "") + f" ({vault.cipher})")
    started = time.monotonic()
    os.environ.update({RELEASE_ONLY_ENV: name, RUN_PURPOSE_ENV: f"rotate the secret key of {name}"})
    proc = apply(inventory, target.name)
    if proc.returncode != 0:
        save(inventory, vault, before)
        again = apply(inventory, target.name)
        raise ConfigError(f"applying the new key failed on {target.name} (pyinfra exit {proc.returncode}); the "
                          "stack is put back and " + ("the old key serves alone" if again.returncode == 0 else
                                                      f"applying it failed too (exit {again.returncode}): run "
                                                      "`make apply`"))
    print(f"rotate: {name}'s new key live on {target.name} in {time.monotonic() - started:.1f} s; "
          f"commit {vault.cipher.name}")
    return 0
