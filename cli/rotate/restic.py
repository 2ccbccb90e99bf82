"""`iac rotate-restic TARGET --limit HOST`: a restic repository's password rotated, nothing lost.

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
"""

from __future__ import annotations

import json
import secrets
import shlex

from cli.backups import Target, targets
from cli.rotate.common import given_secret
from cli.secrets import current, load_stack, put, save
from iac.errors import ConfigError
from iac.host_run import held
from operations.backups.deploy import OPERATOR_COMMAND, offsite_targets


def _engine(target: Target, args: str, stdin: str = "") -> dict:
    done = target.ssh(f"{OPERATOR_COMMAND} {args}", input=stdin, timeout=900)
    if done.returncode != 0:
        raise ConfigError(f"{target.name}: iac-backup {args.split()[0]} failed: "
                          + " ".join(done.stderr.strip().splitlines()[-2:])[-400:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def rotate_restic(inventory: str, name: str, limit: str | None, given: bool = False) -> int:
    found = [t for t in targets(inventory, limit) if name in offsite_targets(t.config.backups)]
    if len(found) != 1:
        hosts = ", ".join(t.name for t in found) or "none"
        raise ConfigError(f"offsite target {name!r}: {len(found)} host(s) declare it ({hosts}); "
                          "name one with --limit HOST")
    target = found[0]
    env_file = offsite_targets(target.config.backups)[name].env_file
    vault, _ = load_stack(inventory)
    password = given_secret(f"the new password of {name}", 32) if given else secrets.token_urlsafe(36)
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
