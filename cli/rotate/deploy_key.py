"""`iac rotate-deploy-key APP`: the app's deploy key replaced, in two runs around the git host.

1. first run: a new key is made on the host beside the old one (as the app user, in its ~/.ssh:
   the private key never leaves the host); its public half is printed to register as a read-only
   deploy key of the repository; the old key still serves every fetch (exit 3: waiting);
2. once it is registered, the same command again: the new key must fetch (``git ls-remote`` as the
   app user, with the pinned host key) before it replaces the old one (a rename by the app user);
   then it fetches again as the app's key, and the old public key is printed to delete on the git
   host. Releases before, between and after fetch; the apps serve throughout.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from cli.backups import Target
from cli.rollback import find_app
from iac.errors import ConfigError
from iac.host_run import held
from operations.app.facts import GitRemoteCommit

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
