"""`iac rotate-secret GROUP.PATH`: a secret a provider issues (a Discord webhook URL, an S3 access
key: the operator makes the new one there) replaced, checked working, then the old one revoked there.

1. the new value is read from stdin (unechoed at a terminal; an S3 key is two lines: id, secret);
2. the stack holds it (checked, encrypted); the hosts of the group are converged (`make apply`'s
   preview and, on production, its question; an app's webhook: that app's steps only);
3. it is checked from each host, through the file the host reads it from: a webhook gets a test
   message, an S3 key lists the repository's snapshots;
4. only then is the operator told to revoke the old one at the provider (which this cannot do).
If the apply or the check fails, the stack is put back and applied again: the old value serves.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from cli import apply as apply_command
from cli.backups import Target
from cli.release import apply
from cli.rotate.common import group_targets
from cli.secrets import current, load_stack, put, read_values, save
from iac.errors import ConfigError
from operations.app.release import RELEASE_ENGINE
from operations.backups.deploy import OPERATOR_COMMAND, offsite_targets
from stack.load import RELEASE_ONLY_ENV, RUN_PURPOSE_ENV


def _notify(target: Target, env_file: str, url_variable: str, what: str) -> str:
    """A test message through the host's one alert client (the release engine's ``notify``), with
    the URL from ``env_file``'s ``url_variable``, read there: it never leaves the host's files."""
    inner = f'IAC_ALERT_WEBHOOK_URL="${url_variable}" exec /usr/bin/python3 {RELEASE_ENGINE} notify rotation'
    done = target.ssh(f"{OPERATOR_COMMAND} env-exec {shlex.quote(env_file)} -- sh -c {shlex.quote(inner)}",
                      input=f"Test message from {target.name}: {what} was rotated; alerts reach this webhook.",
                      timeout=120)
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: the test message through the new {what} failed: "
                          + done.stderr.strip()[-300:])
    return "a test message was delivered"


def _restic_answers(target: Target, env_file: str, what: str) -> str:
    done = target.ssh(f"{OPERATOR_COMMAND} env-exec {shlex.quote(env_file)} -- restic snapshots --json", timeout=300)
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: the repository does not answer with the new {what}: "
                          + " ".join(done.stderr.strip().splitlines()[-2:])[-300:])
    return f"the repository answers ({len(json.loads(done.stdout or '[]'))} snapshot(s))"


@dataclass(frozen=True)
class Issued:
    """A kind of secret a provider issues: the option (``*`` for a name), the leaves set together
    (one stdin line each), how a host proves the new one works, and how to revoke the old one."""

    pattern: str
    leaves: tuple[str, ...]
    check: Callable[[Target, tuple[str, ...], str], str]
    revoke: str
    app_only: bool = False  # set in one app's env file: that app's steps are applied alone


ISSUED = (
    Issued("backups.alerts.webhook_url", ("webhook_url",),
           lambda t, path, what: _notify(t, t.config.backups.alerts.env_file, "IAC_ALERT_WEBHOOK_URL", what),
           "delete the old webhook in Discord (channel settings, Integrations, Webhooks)"),
    Issued("apps.*.discord_alerts.webhook_url", ("webhook_url",),
           lambda t, path, what: _notify(t, t.config.app_paths(path[1]).env_file, "DISCORD_WEBHOOK_URL", what),
           "delete the old webhook in Discord (channel settings, Integrations, Webhooks)", app_only=True),
    Issued("backups.offsite.*.access_key", ("access_key_id", "secret_access_key"),
           lambda t, path, what: _restic_answers(t, offsite_targets(t.config.backups)[path[2]].env_file, what),
           "delete the old key at the provider (DigitalOcean: API, Spaces Keys)"),
)

# secrets with a command of their own, or rotated by hand for now
ELSEWHERE = {"apps.*.secret_key": "make rotate-django-key APP=<app>",
             "backups.offsite.*.password": "make rotate-restic TARGET=<target> HOST=<host>"}


def issued(dotted: str) -> tuple[str, tuple[str, ...], Issued]:
    """(group, option path, kind) of GROUP.PATH, or an error naming the kinds this rotates."""
    group, _, rest = dotted.partition(".")
    path = tuple(rest.split("."))

    def matches(pattern: str) -> bool:  # '*' stands for one name
        wanted = pattern.split(".")
        return len(wanted) == len(path) and all(w in ("*", p) for w, p in zip(wanted, path, strict=True))

    for kind in ISSUED:
        if matches(kind.pattern):
            return group, path, kind
    for pattern, command in ELSEWHERE.items():
        if matches(pattern):
            raise ConfigError(f"{dotted}: rotated by `{command}`")
    raise ConfigError(f"{dotted}: not a secret a provider issues; these are: "
                      + ", ".join(f"GROUP.{k.pattern}" for k in ISSUED) + " (example: lan.backups.alerts.webhook_url)")


def rotate_secret(inventory: str, dotted: str, yes: bool) -> int:
    group, path, kind = issued(dotted)
    hosts = group_targets(inventory, group)
    missing = [t.name for t in hosts if not _declared(t.config, path[:-1] if len(kind.leaves) > 1 else path)]
    if missing:
        raise ConfigError(f"{dotted}: not declared for {', '.join(missing)} (group_data/{group}.py): nothing to rotate")
    values = read_values([dotted] if len(kind.leaves) == 1 else [f"{dotted} {leaf}" for leaf in kind.leaves])
    vault, _ = load_stack(inventory)
    before = current(vault)
    data = json.loads(before)
    for leaf, value in zip(kind.leaves, values, strict=True):
        put(data, (group, *path[:-1], leaf) if len(kind.leaves) > 1 else (group, *path), value)
    save(inventory, vault, json.dumps(data, indent=2).encode() + b"\n")
    print(f"rotate: the stack's {dotted} is the new value ({vault.cipher})")

    def converge() -> bool:
        if kind.app_only:
            os.environ.update({RELEASE_ONLY_ENV: path[1], RUN_PURPOSE_ENV: f"rotate {dotted}"})
            try:
                return all(apply(inventory, t.name).returncode == 0 for t in hosts)
            finally:
                os.environ.pop(RELEASE_ONLY_ENV), os.environ.pop(RUN_PURPOSE_ENV)
        return apply_command.main([inventory, "--limit", group, *(["--yes"] if yes else [])]) == 0

    try:
        if not converge():
            raise ConfigError(f"applying the new {dotted} failed")
        for t in hosts:
            print(f"rotate: {t.name}: {kind.check(t, path, dotted)} with the new value")
    except ConfigError as exc:
        save(inventory, vault, before)
        back = converge()
        raise ConfigError(f"{exc}; the stack is put back and " + ("the old value serves again" if back else
                          "applying it failed too: run `make apply`")) from None
    print(f"rotate: now {kind.revoke}; then commit {vault.cipher.name}")
    return 0


def _declared(config: object, path: tuple[str, ...]) -> bool:
    """Whether the option at ``path`` is set in a host's configuration (sections and maps walked)."""
    node = config
    for part in path:
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return False
    return True
