"""`make release APP=x [REV=y]`: the declared revision is the truth, so a release changes it.

1. resolve  REV (tag, branch, or the app's declared revision when REV is not given) to a commit,
            asked on the app's host with the app's deploy key (the machine running this may have
            no access to the repository); a full commit id is taken as it is
2. declare  write the commit into the stack's own configuration: group_data/<group>.py for
            production (one line, layout and other apps untouched: commit it), the stack's own
            values file for any other stack (the sandbox's .sandbox/<name>/stack.json), never
            production's group_data from a sandbox release
3. preview  the plan of that app's steps only (``cli.drift`` with IAC_RELEASE_ONLY), with what
            differs ("the stack declares v2 ...")
4. apply    ``pyinfra INVENTORY deploy.py --limit HOST -y`` with IAC_RELEASE_ONLY=APP: only that
            app's steps (deploy.py ``one_app``); production asks first

If the release fails, the release engine has kept the old release serving; the stack's revision
is put back to what it was, so that what is declared is again what serves.

Usage: python -m cli.release INVENTORY APP [--rev REV] [--yes]
Exit codes: 0 released (or already live), 1 refused or failed (the old release serves).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cli.backups import Target
from cli.drift import DRIFT, IN_SYNC, check, redact
from cli.rollback import find_app
from iac import progress
from iac.repo import REPO
from operations.app.facts import COMMIT_RE, GitRemoteCommit
from stack.load import (
    GROUP_DATA,
    RELEASE_ONLY_ENV,
    ConfigError,
    config_secret_values,
    pin_group_file_revision,
    pin_stack_revision,
    unpin_stack_revision,
)


def resolve(target: Target, app: str, revision: str) -> str:
    """The commit ``revision`` names on the app's remote, asked on its host as the app user."""
    if COMMIT_RE.match(revision):
        return revision
    spec = target.config.apps[app]
    fact = GitRemoteCommit()
    paths = target.config.app_paths(app)
    proc = target.ssh(fact.command(url=spec.source.url, revision=revision, user=spec.user, key=paths.deploy_key,
                                   known_hosts=paths.known_hosts), timeout=120)
    if proc.returncode != 0:
        raise ConfigError(f"{target.name}: cannot run git ls-remote there (ssh exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-300:]}")
    found = fact.process(proc.stdout.splitlines())
    if not found["asked"]:
        raise ConfigError(f"{target.name}: {app} has no deploy key yet: run `make apply` first (it makes the key)")
    if found["error"]:
        raise ConfigError(f"{target.name}: cannot ask {spec.source.url} which commit {revision!r} is: "
                          f"{found['error']}")
    if found["commit"] is None:
        hint = " (a commit id must be given in full, 40 characters)" if all(
            c in "0123456789abcdef" for c in revision) else ""
        raise ConfigError(f"{spec.source.url} has no tag or branch {revision!r}{hint}")
    return found["commit"]


def apply(inventory: str, host: str) -> subprocess.CompletedProcess:
    """The app-only run (RELEASE_ONLY_ENV is set in this process's environment), each operation
    shown as it starts (a build takes minutes)."""
    return progress.run([str(REPO / ".venv/bin/pyinfra"), inventory, "deploy.py", "--limit", host, "-y"],
                        "release", cwd=REPO, env={**os.environ, "PYINFRA_PROGRESS": "off"})


class Declared:
    """Where this stack keeps the app's revision, and how to put the old value back."""

    def __init__(self, target: Target, app: str) -> None:
        self.target, self.app = target, app
        values = target.data.get("stack_values")
        self.values_file = Path(values) if values else None
        self.group_file = GROUP_DATA / f"{target.group}.py"
        self._before: str | None = None
        self._group_text: str | None = None

    @property
    def where(self) -> str:
        return str(self.values_file) if self.values_file else f"group_data/{self.group_file.name}"

    def pin(self, commit: str, revision: str) -> str:
        """Write ``commit``; return a line saying what changed where."""
        if self.values_file:
            self._before = pin_stack_revision(self.values_file, self.target.group, self.app, commit)
            return f"{self.where}: {self.target.group}.apps.{self.app}.source.revision = {commit}"
        if not self.target.production:
            raise ConfigError(f"stack {self.target.data.get('stack')}: its inventory gives no stack values file "
                              "(host_entry(..., stack_values=...)); a release there must not edit group_data/")
        self._group_text = self.group_file.read_text()
        note = f"{revision} on {datetime.now(UTC):%Y-%m-%d}, by make release"
        old, new = pin_group_file_revision(self.group_file, self.app, commit, note)
        return f"{self.where}:\n  - {old.strip()}\n  + {new.strip()}"

    def put_back(self) -> None:
        if self.values_file:
            unpin_stack_revision(self.values_file, self.target.group, self.app, self._before)
        elif self._group_text is not None:
            self.group_file.write_text(self._group_text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("app")
    parser.add_argument("--rev", help="tag, branch or full commit to release (default: the declared revision, "
                                      "resolved to its current commit and pinned)")
    parser.add_argument("--yes", action="store_true", help="do not ask on production")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        target = find_app(args.inventory, args.app)
        revision = args.rev or target.config.apps[args.app].source.revision
        commit = resolve(target, args.app, revision)
    except ConfigError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    declared = Declared(target, args.app)
    print(f"release: {args.app} on {target.name}: {revision} is {commit}")
    try:
        print(f"release: declared in {declared.pin(commit, revision)}")
    except ConfigError as e:
        print(f"release: {e}", file=sys.stderr)
        return 1

    env = {RELEASE_ONLY_ENV: args.app}
    os.environ.update(env)  # the preview's pyinfra run inherits it
    secrets = list(config_secret_values(target.config))
    code, report = check(args.inventory, secrets, ["--limit", target.name])
    if code == IN_SYNC:
        print(f"release: {args.app} {commit[:12]} is already live on {target.name}; nothing to apply")
        return 0
    print(report, file=sys.stdout if code == DRIFT else sys.stderr)
    if code != DRIFT:
        declared.put_back()
        print(f"release: no preview, nothing applied; {declared.where} put back", file=sys.stderr)
        return 1
    if target.production and not args.yes:
        answer = input(f"Release {args.app} {commit[:12]} on {target.name}? Type the app name: ") \
            if sys.stdin.isatty() else ""
        if answer.strip() != args.app:
            declared.put_back()
            print(f"release: not confirmed; nothing applied, {declared.where} put back", file=sys.stderr)
            return 1
    proc = apply(args.inventory, target.name)
    if proc.returncode != 0:
        declared.put_back()
        tail = redact("\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                                 if "release" in line or "error" in line.lower())[-3000:], secrets)
        # the host's release settings name the failed revision: the same app-only run with the
        # stack put back writes them back (the old release is live, so nothing is released)
        again = apply(args.inventory, target.name)
        print(f"{tail}\nrelease: {args.app} {commit[:12]} FAILED on {target.name} (pyinfra exit {proc.returncode}); "
              f"the release engine kept the old release serving; {declared.where} put back to it"
              + ("" if again.returncode == 0 else f"; putting its settings back failed too (exit "
                 f"{again.returncode}): run `make apply`"), file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    print(f"release: {args.app} {commit[:12]} live on {target.name} in {seconds:.1f} s")
    if target.production:
        print(f"release: commit {declared.where} (the stack now declares {commit[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
