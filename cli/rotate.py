"""Rotations, one command per kind of secret, each leaving the host serving and nothing lost.

`iac rotate-django-key APP`: the app's Django secret key replaced.

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

`iac rotate-secret GROUP.PATH`: a secret a provider issues (a Discord webhook URL, an S3 access
key: the operator makes the new one there) replaced, checked working, then the old one revoked there.

1. the new value is read from stdin (unechoed at a terminal; an S3 key is two lines: id, secret);
2. the stack holds it (checked, encrypted); the hosts of the group are converged (`make apply`'s
   preview and, on production, its question; an app's webhook: that app's steps only);
3. it is checked from each host, through the file the host reads it from: a webhook gets a test
   message, an S3 key lists the repository's snapshots;
4. only then is the operator told to revoke the old one at the provider (which this cannot do).
If the apply or the check fails, the stack is put back and applied again: the old value serves.

`iac rotate-deploy-key APP`: the app's deploy key replaced, in two runs around the git host.

1. first run: a new key is made on the host beside the old one (as the app user, in its ~/.ssh:
   the private key never leaves the host); its public half is printed to register as a read-only
   deploy key of the repository; the old key still serves every fetch (exit 3: waiting);
2. once it is registered, the same command again: the new key must fetch (``git ls-remote`` as the
   app user, with the pinned host key) before it replaces the old one (a rename by the app user);
   then it fetches again as the app's key, and the old public key is printed to delete on the git
   host. Releases before, between and after fetch; the apps serve throughout.

`iac rotate-sudo-password GROUP`: the admin's password on the group's hosts reached through sudo.

1. the new password is read from stdin (at a terminal: typed twice, not echoed); its hash is made
   here (SHA-512 crypt, a random salt), the host's present hash is read and kept in memory;
2. on each host, through sudo with the old password: ``chpasswd -e`` (the hash on stdin); then a
   new login proves the new password opens sudo; if it does not, the old hash is put back;
3. the stack takes ``admin.password_hash`` and, where it keeps one, ``connection.sudo_password``
   (checked, encrypted); if it cannot, every host gets its old hash back.
Then `make drift` is in sync (the host's hash is the declared one) and the old password opens nothing.

`iac rotate-restic TARGET --limit HOST`: a restic repository's password rotated, nothing lost.

1. a new password is made here (48 random URL-safe characters), never printed (``--stdin``: the
   operator's own, at least 32 characters);
2. on the host (``iac-backup rekey ENV add``, the password on stdin): restic adds a key for it beside
   the old one, and the env file switches to it;
3. the stack's secret ``backups.offsite.TARGET.password`` becomes it (encrypted, checked by the
   stack's inventory: cli/secrets.py); if that fails, the host is put back (``rekey ... revert``);
4. on the host (``rekey ... finish``): the old key is removed: the old password opens nothing;
5. the repository answers with the new one (its snapshots are listed).

Every snapshot stays readable: restic encrypts the repository's master key once per password, and
the data never changes. The run holds the host's lock and leaves a history line. Then `make drift`
is in sync: the env file on the host is the one the stack now declares.

Usage: python -m cli.rotate INVENTORY restic TARGET [--limit HOST]
       python -m cli.rotate INVENTORY django-key APP [--yes]
       python -m cli.rotate INVENTORY secret GROUP.PATH [--yes]   (the new value on stdin)
       python -m cli.rotate INVENTORY deploy-key APP
       python -m cli.rotate INVENTORY sudo-password GROUP   (the new password on stdin)
Exit codes: 0 rotated, 3 a new deploy key waits to be registered, 1 refused or failed (the old secret
still serves: both passwords, or the old alone, still open the repository; the old Django key is live).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli import apply as apply_command
from cli.backups import Target, targets
from cli.release import apply
from cli.rollback import find_app
from cli.secrets import current, load_stack, put, read_values, save
from cli.validate import load_inventory
from iac import sudo
from iac.errors import ConfigError
from iac.host_run import held
from iac.ssh import run_as_root
from operations.app.facts import GitRemoteCommit
from operations.app.options import UNTIL_FORMAT, DjangoApp, until_time
from operations.app.release import RELEASE_ENGINE
from operations.backups.deploy import OPERATOR_COMMAND, offsite_targets
from stack.load import RELEASE_ONLY_ENV, RUN_PURPOSE_ENV
from stack.secrets import MIN_CONNECTION_SECRET, crypt_sha512, value_at


def _engine(target: Target, args: str, stdin: str = "") -> dict:
    done = target.ssh(f"{OPERATOR_COMMAND} {args}", input=stdin, timeout=900)
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: iac-backup {args.split()[0]} failed: "
                          + " ".join(done.stderr.strip().splitlines()[-2:])[-400:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _given_secret(label: str, least: int) -> str:
    """A new secret the operator brings (``--stdin``: from their password manager), at least ``least``
    characters, one line that sudo, systemd and sh all read as itself (iac/sudo.py check)."""
    value = read_values([label])[0]
    sudo.check(value, label)
    if len(value) < least:
        raise ConfigError(f"{label}: give at least {least} characters (e.g. `openssl rand -base64 {least}`); "
                          "nothing changed")
    return value


def rotate_restic(inventory: str, name: str, limit: str | None, given: bool = False) -> int:
    found = [t for t in targets(inventory, limit) if name in offsite_targets(t.config.backups)]
    if len(found) != 1:
        hosts = ", ".join(t.name for t in found) or "none"
        raise ConfigError(f"offsite target {name!r}: {len(found)} host(s) declare it ({hosts}); "
                          "name one with --limit HOST")
    target = found[0]
    env_file = offsite_targets(target.config.backups)[name].env_file
    vault, _ = load_stack(inventory)
    password = _given_secret(f"the new password of {name}", 32) if given else secrets.token_urlsafe(36)
    rekey = f"rekey {shlex.quote(env_file)}"
    with held(target.name, target.data, f"rotate restic password of {name}") as run:
        added = _engine(target, f"{rekey} add", stdin=password + "\n")
        print(f"rotate: {target.name}: key {added['new_key']} added beside {added['old_key']}; {env_file} uses it")
        try:
            data = json.loads(current(vault))
            put(data, (target.group, "backups", "offsite", name, "password"), password)
            save(inventory, vault, json.dumps(data, indent=2).encode() + b"\n")
        except (ConfigError, OSError, ValueError) as exc:
            _engine(target, f"{rekey} revert")
            run.result = "failed"
            raise ConfigError(f"the stack could not take the new password ({exc}); {target.name} is back on "
                              "the old one alone") from None
        print(f"rotate: the stack's {target.group}.backups.offsite.{name}.password is the new one ({vault.cipher})")
        finished = _engine(target, f"{rekey} finish")
        print(f"rotate: {target.name}: old key {finished['removed']} removed; the old password opens nothing")
        listed = target.ssh(f"{OPERATOR_COMMAND} env-exec {shlex.quote(env_file)} -- restic snapshots --json",
                            timeout=300)
        if listed.returncode != 0:
            run.result = "failed"
            raise ConfigError(f"{target.name}: the repository does not answer with the new password: "
                              + listed.stderr.strip()[-300:])
        print(f"rotate: {len(json.loads(listed.stdout or '[]'))} snapshot(s) readable with the new password; "
              f"commit {vault.cipher.name} (and run `make drift`: in sync)")
        run.result = "rotated"
    return 0


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
    key = _given_secret(f"the new secret key of {name}", 50) if given else secrets.token_urlsafe(48)
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
    hosts = [Target(group, name, data) for name, data in load_inventory(Path(inventory)).get(group, [])]
    if not hosts:
        raise ConfigError(f"{inventory}: no group {group!r}")
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


WAITING = 3  # rotate-deploy-key: the new key is made and printed, not yet registered on the git host


def _as_app(target: Target, user: str, command: str, what: str) -> str:
    """``command`` run as the app user (root never touches a path in the user's own tree)."""
    done = target.ssh(f"runuser -u {shlex.quote(user)} -- sh -c {shlex.quote(command)}", timeout=120)
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: {what} failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def _fetches(target: Target, name: str, key: str) -> dict:
    """What ``git ls-remote`` with ``key`` says of the app's declared revision (GitRemoteCommit)."""
    app, paths, fact = target.config.apps[name], target.config.app_paths(name), GitRemoteCommit()
    done = target.ssh(fact.command(url=app.source.url, revision=app.source.revision, user=app.user, key=key,
                                   known_hosts=paths.known_hosts), timeout=120)
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: git ls-remote could not run: {done.stderr.strip()[-300:]}")
    return fact.process(done.stdout.splitlines())


def rotate_deploy_key(inventory: str, name: str) -> int:
    target = find_app(inventory, name)
    app, key = target.config.apps[name], target.config.app_paths(name).deploy_key
    new = f"{key}.new"
    with held(target.name, target.data, f"rotate the deploy key of {name}") as run:
        if not _fetches(target, name, key)["asked"]:
            raise ConfigError(f"{name} has no deploy key on {target.name} yet: run `make apply` (it makes one)")
        made = _as_app(target, app.user, f"test -f {shlex.quote(new)} || ssh-keygen -q -t ed25519 -N '' -C "
                       f"{shlex.quote(f'{app.user}@{target.config.host.hostname} {datetime.now(UTC):%Y-%m-%d}')} "
                       f"-f {shlex.quote(new)}; cat {shlex.quote(new + '.pub')}", "making the new key")
        answer = _fetches(target, name, new)
        if answer["error"]:
            run.result = "waiting"
            print(f"rotate: {target.name}: a new deploy key for {name} is made beside the old one, which still "
                  f"serves. Register it as a read-only deploy key of {app.source.url} (GitHub: the "
                  f"repository's Settings, Deploy keys, Add), then run this again:\n{made.splitlines()[-1]}")
            return WAITING
        old = _as_app(target, app.user, f"cat {shlex.quote(key + '.pub')}", "reading the old public key")
        _as_app(target, app.user, f"mv -f {shlex.quote(new + '.pub')} {shlex.quote(key + '.pub')} && "
                f"mv -f {shlex.quote(new)} {shlex.quote(key)}", "putting the new key in place")
        after = _fetches(target, name, key)
        if after["error"]:
            raise ConfigError(f"{target.name}: the new key in place does not fetch: {after['error']}")
        print(f"rotate: {target.name}: {name} fetches {app.source.url} with its new deploy key; the old private "
              "key is gone from the host. Now delete the old deploy key on the git host:\n"
              f"{' '.join(old.split()[:2])} {' '.join(old.split()[2:])}")
        run.result = "rotated"
    return 0


def _new_password(label: str) -> str:
    """The new sudo password: typed twice at a terminal (they must match), else stdin's line."""
    if sys.stdin.isatty():
        first, second = getpass.getpass(f"{label} (not echoed): "), getpass.getpass("again: ")
        if first != second:
            raise ConfigError("the two passwords differ; nothing changed")
        value = first
    else:
        value = read_values([label])[0]
    sudo.check(value, label)
    if len(value) < MIN_CONNECTION_SECRET:
        raise ConfigError(f"{label}: give at least {MIN_CONNECTION_SECRET} characters (e.g. `openssl rand -base64 "
                          "24`); nothing changed")
    return value


def _with_password(target: Target, password: str) -> dict:
    """The host's connection data with another sudo password (a login that proves it works)."""
    login = target.data.get("ssh_user") or "?"
    return {**target.data, sudo.DATA_KEY: sudo.SudoPassword(target.name, login, password, "the new password")}


def rotate_sudo_password(inventory: str, group: str) -> int:
    hosts = [Target(group, name, data) for name, data in load_inventory(Path(inventory)).get(group, [])]
    if not hosts:
        raise ConfigError(f"{inventory}: no group {group!r}")
    through_sudo = [t for t in hosts if t.data.get("_sudo")]
    if len(through_sudo) != len(hosts):
        raise ConfigError(f"{group}: {', '.join(t.name for t in hosts if t not in through_sudo)} "
                          "is reached as root, not through sudo: there is no sudo password to rotate")
    login = hosts[0].config.admin.name
    password = _new_password(f"new sudo password of {login} on {group}")
    hashed = crypt_sha512(password, secrets.token_urlsafe(12).replace("-", ".").replace("_", "/")[:16])
    vault, _ = load_stack(inventory)
    before = current(vault)
    data = json.loads(before)
    stored = value_at(data.get(group, {}), sudo.SECRET_PATH) is not None
    changed: list[tuple[Target, str]] = []  # (host, its old hash), to put back

    def put_back() -> list[str]:
        """The old hash back on each host changed so far (through sudo with the new password, which
        is the one that opens it now); the hosts where that failed."""
        return [t.name for t, old_hash in reversed(changed)
                if run_as_root(_with_password(t, password), "chpasswd -e", timeout=60,
                               input=f"{login}:{old_hash}\n").returncode != 0]

    for t in hosts:
        with held(t.name, t.data, f"rotate the sudo password of {login}") as run:
            shadow = t.ssh(f"getent shadow {shlex.quote(login)}", timeout=60)
            if shadow.returncode != 0 or shadow.stdout.count(":") < 2:
                run.result = "failed"
                failed = put_back()
                raise ConfigError(f"{t.name}: cannot read {login}'s password entry through sudo (exit "
                                  f"{shadow.returncode}); nothing changed there" + _left(failed))
            old_hash = shadow.stdout.split(":")[1]
            done = t.ssh("chpasswd -e", input=f"{login}:{hashed}\n", timeout=60)
            if done.returncode != 0:
                run.result = "failed"
                failed = put_back()
                raise ConfigError(f"{t.name}: chpasswd failed: {done.stderr.strip()[-300:]}" + _left(failed))
            changed.append((t, old_hash))
            run.data = _with_password(t, password)  # the history line is written through sudo: the new one opens it
            proof = run_as_root(run.data, "true", timeout=60)
            if proof.returncode != 0:
                run.result = "failed"
                failed = put_back()
                run.data = run.data if t.name in failed else t.data
                raise ConfigError(f"{t.name}: the new password does not open sudo (exit {proof.returncode}); the "
                                  "old one is back" + _left(failed))
            run.result = "rotated"
        print(f"rotate: {t.name}: {login}'s new password opens sudo; the old one no longer does")
    try:
        put(data, (group, "admin", "password_hash"), hashed)
        if stored:
            put(data, (group, *sudo.SECRET_PATH), password)
        save(inventory, vault, json.dumps(data, indent=2).encode() + b"\n")
    except (ConfigError, OSError, ValueError) as exc:
        failed = put_back()
        raise ConfigError(f"the stack could not take the new password ({exc}); the old one is back"
                          + _left(failed)) from None
    print(f"rotate: the stack's {group}.admin.password_hash" + (f" and {group}.connection.sudo_password are"
          if stored else " is") + f" the new ones ({vault.cipher}); commit {vault.cipher.name}"
          + ("" if stored else "; type the new password when a run asks for it"))
    return 0


def _left(failed: list[str]) -> str:
    return f"; putting the old password back failed on {', '.join(failed)}: log in there and run `passwd`" \
        if failed else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.rotate", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("kind", choices=["restic", "django-key", "secret", "deploy-key", "sudo-password"])
    parser.add_argument("target", help="restic: the offsite target (postgres or system_state); django-key, "
                                       "deploy-key: the app; sudo-password: the group; secret: GROUP.PATH "
                                       "(e.g. lan.backups.alerts.webhook_url)")
    parser.add_argument("--limit", help="restic: the host (when more than one declares the target)")
    parser.add_argument("--yes", action="store_true", help="django-key: do not ask on production")
    parser.add_argument("--stdin", action="store_true", help="restic, django-key: the new secret from stdin "
                        "(e.g. a password manager's) instead of one made here")
    args = parser.parse_args(argv)
    try:
        if args.kind == "django-key":
            return rotate_django_key(args.inventory, args.target, args.yes, given=args.stdin)
        if args.kind == "deploy-key":
            return rotate_deploy_key(args.inventory, args.target)
        if args.kind == "sudo-password":
            return rotate_sudo_password(args.inventory, args.target)
        if args.kind == "secret":
            return rotate_secret(args.inventory, args.target, args.yes)
        return rotate_restic(args.inventory, args.target, args.limit, given=args.stdin)
    except ConfigError as exc:
        print(f"rotate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
