"""A restic repository's password changed without losing a snapshot (``iac-backup rekey``).

restic encrypts the repository's master key once per password ("key"); snapshots never depend on
a password. So a rotation is: add a key for the new password (opened with the old one), check the
repository opens with the new one, switch the env file's ``RESTIC_PASSWORD`` (the other lines
untouched, the same quoting the controller writes), and only then, once the operator's stack holds
the new password too, remove the old key. Two stages, so that a failure between them leaves a
repository both passwords open:

* ``rekey ENV_FILE add`` (the new password on stdin): prints ``{"old_key": id, "new_key": id}``
  and keeps the old key's id in ``/var/lib/iac/restic/rekey-<repo>.json``; run again with the same
  password it adds nothing (the repository already opens with it);
* ``rekey ENV_FILE finish``: removes the kept old key (with the new password), if still there;
* ``rekey ENV_FILE revert``: undoes an ``add`` that was not finished (the operator's stack could not
  take the new password): the env file as it was, the new key removed.

The password reaches restic in a root-only file in the engines' runtime directory, removed at
once; never a command line or an environment variable of another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from engine_common.envfile import parse_env_file, quote_env_value

from .lock import LOCK_DIR
from .offsite import MARKERS, repo_marker, restic
from .proc import BackupError, log


def _failed(what: str, done: subprocess.CompletedProcess) -> BackupError:
    """restic WHAT failed: its last two lines of stderr (restic names the cause there)."""
    return BackupError(f"restic {what}: " + " ".join(done.stderr.strip().splitlines()[-2:])[:300])


def _keys(env: dict[str, str] | None, env_file: str) -> list[dict]:
    done = restic(["key", "list", "--json"], env_file=env_file, env=env, timeout=120)
    if done.returncode != 0:
        raise _failed("key list", done)
    return json.loads(done.stdout or "[]")


def _opens_with(env_file: str, password: str) -> bool:
    env = _env(env_file, password)
    return restic(["cat", "config"], env_file=env_file, timeout=120, env=env).returncode == 0


def _env(env_file: str, password: str) -> dict[str, str]:
    values = parse_env_file(Path(env_file).read_text())
    return {**os.environ, **values, "RESTIC_PASSWORD": password}


def _record(env_file: str) -> Path:
    marker, _ = repo_marker(env_file)
    return MARKERS / f"rekey-{marker.name}.json"


def _current_id(keys: list[dict]) -> str:
    found = [k["id"] for k in keys if k.get("current")]
    if len(found) != 1:
        raise BackupError("restic key list names no current key")
    return found[0]


def switch_password(env_file: str, password: str) -> None:
    """Rewrite ``env_file`` with ``RESTIC_PASSWORD`` replaced (atomically, root 0600)."""
    path = Path(env_file)
    lines = path.read_text().split("\n")
    new = [f"RESTIC_PASSWORD={quote_env_value(password)}" if line.startswith("RESTIC_PASSWORD=") else line
           for line in lines]
    if new == lines and not any(line.startswith("RESTIC_PASSWORD=") for line in lines):
        raise BackupError(f"{env_file} has no RESTIC_PASSWORD line")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(new))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def add(env_file: str, password: str) -> dict:
    """Stage one: a key for ``password`` beside the old one; the env file switched to it."""
    if not password or "\n" in password or len(password) < 12:
        raise BackupError("the new password must be one line of at least 12 characters")
    record = _record(env_file)
    old_password = parse_env_file(Path(env_file).read_text()).get("RESTIC_PASSWORD", "")
    if old_password == password:
        kept = json.loads(record.read_text()) if record.exists() else {}
        log("rekey: the env file already holds the new password")
        return {"old_key": kept.get("old_key"), "new_key": kept.get("new_key")}
    old_id = _current_id(_keys(None, env_file))
    if not _opens_with(env_file, password):
        LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, secret = tempfile.mkstemp(dir=LOCK_DIR, prefix="rekey-")
        try:
            os.write(fd, password.encode())
            os.close(fd)
            done = restic(["key", "add", "--new-password-file", secret], env_file=env_file, timeout=300)
        finally:
            os.unlink(secret)
        if done.returncode != 0:
            raise _failed("key add", done)
        if not _opens_with(env_file, password):
            raise BackupError("the repository does not open with the new password after `restic key add`")
    new_id = _current_id(_keys(_env(env_file, password), env_file))
    MARKERS.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"old_key": old_id, "new_key": new_id}) + "\n")
    _copy(env_file, _before(env_file))
    switch_password(env_file, password)
    marker, digest = repo_marker(env_file)  # opened with exactly this env file just now
    marker.write_text(digest + "\n")
    log(f"rekey: key {new_id[:8]} added beside {old_id[:8]}; {env_file} uses it")
    return {"old_key": old_id, "new_key": new_id}


def finish(env_file: str) -> dict:
    """Stage two: the old key removed (the repository opened with the env file's password)."""
    record = _record(env_file)
    if not record.exists():
        return {"removed": None}
    kept = json.loads(record.read_text())
    keys = _keys(None, env_file)
    current = _current_id(keys)
    if kept["old_key"] == current:
        raise BackupError("the env file still opens the repository with the old key: run `rekey add` first")
    if any(k["id"] == kept["old_key"] for k in keys):
        done = restic(["key", "remove", kept["old_key"]], env_file=env_file, timeout=300)
        if done.returncode != 0:
            raise _failed("key remove", done)
    record.unlink()
    _before(env_file).unlink(missing_ok=True)
    log(f"rekey: old key {kept['old_key'][:8]} removed")
    return {"removed": kept["old_key"], "keys": len(keys) - 1}


def revert(env_file: str) -> dict:
    """Undo an unfinished ``add``: the env file as it was before it, the key it added removed."""
    record, before = _record(env_file), _before(env_file)
    if not record.exists() or not before.exists():
        return {"reverted": None}
    kept = json.loads(record.read_text())
    os.replace(before, env_file)
    marker, digest = repo_marker(env_file)
    marker.write_text(digest + "\n")
    if kept["new_key"] != kept["old_key"] and any(k["id"] == kept["new_key"] for k in _keys(None, env_file)):
        done = restic(["key", "remove", kept["new_key"]], env_file=env_file, timeout=300)
        if done.returncode != 0:
            raise _failed("key remove", done)
    record.unlink()
    log(f"rekey: reverted; key {kept['new_key'][:8]} removed, {env_file} as before")
    return {"reverted": kept["new_key"]}


def _before(env_file: str) -> Path:
    return _record(env_file).with_suffix(".env")


def _copy(src: str, dest: Path) -> None:
    """A root-only copy of the env file (it holds the old password until the rotation ends)."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(Path(src).read_text())
