"""Secrets with shell, systemd and nginx metacharacters reach the apps byte-exact; nothing runs.

The sandbox's canary secret keys end in `` $(touch /tmp/pwned)`id`&;#'" %n\\x{}`` (sandbox/inventory.py).
The converge that built the session's releases (collectstatic, migrate) already ran with them;
here the values the apps hold are compared, by sha256 computed on the host, with the secrets
file: what systemd gave gunicorn (its environment) and what Django's settings hold in a
manage.py run (iac-manage, through systemd-run). Nothing they contain was executed anywhere.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.conftest import Run, Sandbox

APPS = [("public", "chip_dashboard", "broker_portal"),
        ("lan", "rental_scheduler", "gunicorn-rental_scheduler"),
        ("lan", "shop_scheduler", "gunicorn-shop_scheduler")]
SETTINGS_HASH = ("import hashlib; from django.conf import settings; "
                 "print('sha256=' + hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())")


@pytest.mark.parametrize(("role", "app", "unit"), APPS)
def test_hostile_secret_key_reaches_gunicorn_and_django_byte_exact(sandbox: Sandbox, converged: Run, role: str,
                                                                   app: str, unit: str) -> None:
    secret = sandbox.world.secret_values()[role]["apps"][app]["secret_key"]
    for meta in ("$(touch /tmp/pwned)", "`id`", "&", ";", "#", "'", '"', "%n", "\\", "{}", " "):
        assert meta in secret, f"the sandbox's canary lacks {meta!r}: it would prove nothing"
    want = hashlib.sha256(secret.encode()).hexdigest()

    # what systemd's EnvironmentFile= parser gave the running gunicorn (hashed on the host)
    environ = sandbox.ssh(role, f"pid=$(systemctl show -p MainPID --value {unit}); "
                                f"tr '\\0' '\\n' < /proc/$pid/environ | sed -n 's/^DJANGO_SECRET_KEY=//p' "
                                "| tr -d '\\n' | sha256sum | cut -c1-64").stdout.strip()
    assert environ == want, f"{unit}'s DJANGO_SECRET_KEY differs from the secrets file"

    # what Django's settings hold in a manage.py run with the app's environment
    out = sandbox.ssh(role, f"/usr/local/sbin/iac-manage {app} shell -c \"{SETTINGS_HASH}\"").stdout
    assert f"sha256={want}" in out.splitlines(), f"manage.py of {app} read another SECRET_KEY"


def test_nothing_in_a_secret_was_executed(sandbox: Sandbox, converged: Run) -> None:
    """`$(touch /tmp/pwned)` in the canaries: no such file on the hosts (private /tmp of units
    included) nor on this machine."""
    for role in ("public", "lan"):
        found = sandbox.ssh(role, "find / -xdev -name pwned -print 2>/dev/null | head -5").stdout.strip()
        assert found == "", f"{role}: {found}"
    assert sandbox.command("pwned-here", ["find", "/tmp", "-maxdepth", "3", "-name", "pwned"]).stdout.strip() == ""
