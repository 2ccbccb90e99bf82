"""One changing run on a host: its lock, and its record in the host's history.

Every run that changes a host (an apply, a release, a rollback, a restore, a rebuild) holds the
host's run lock for as long as it runs, and appends one line to the host's history when it ends:

+ **the lock** (``LOCK``): ``flock`` on a file in /run, held by a shell on the host whose stdin is
  this process's SSH session. It is released when the run ends, and also when the run is killed
  (the session closes, the shell's ``cat`` reads end-of-file, the lock goes with the process), so a
  lock is never left behind by a dead run. A second run refuses at once, naming the holder (who,
  from which machine, since when, doing what: ``HOLDER``); ``IAC_LOCK_WAIT=<seconds>`` waits for it
  instead (a plan made before the wait would be stale: only commands that plan after taking the
  lock wait).
+ **the history** (``HISTORY``): JSON lines, root 0640, appended only: when, who (the operator's
  name and the fingerprint of the key the inventory logs in with), from which machine, what,
  result, the operations that changed something, and how long it took. ``make history`` reads it.

Who: ``IAC_OPERATOR``, else git's ``user.name``, else the login name. None of it is a secret; all
of it is escaped for where it lands (JSON, then one quoted shell word).
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import json
import os
import select
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from iac import ssh
from iac.errors import ConfigError
from iac.paths import HOST

LOCK = HOST.run_lock
HOLDER = HOST.run_holder
HISTORY = HOST.history
WAIT_ENV = "IAC_LOCK_WAIT"
# the lock script's first line: LOCKED, or HELD <holder json>
_LOCKED, _HELD = "LOCKED", "HELD"
_CONTROL = {c: None for c in range(32)}


class LockHeld(ConfigError):
    """Another run holds the host's lock."""


def _clean(text: str, limit: int = 200) -> str:
    return str(text).translate(_CONTROL)[:limit]


def operator() -> str:
    """Who runs this: ``IAC_OPERATOR``, else git's ``user.name``, else the login name."""
    if name := os.environ.get("IAC_OPERATOR"):
        return _clean(name, 80)
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=5,
                              check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    return _clean(name or getpass.getuser(), 80)


def key_fingerprint(data: Mapping[str, Any]) -> str:
    """The SHA256 fingerprint of the key the inventory logs in with (``ssh_key``), else of the
    agent's first key, else ``unknown``."""
    key = data.get("ssh_key")
    argv = ["ssh-keygen", "-lf", str(key)] if key else ["ssh-add", "-l"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return _clean(out[1], 100) if len(out) > 1 and out[1].startswith("SHA256:") else "unknown"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_script(holder: dict[str, Any], wait: int) -> str:
    """The shell run as root that takes the lock, says so on its first line, and holds it until
    its stdin ends. ``holder`` goes in as one quoted word of JSON."""
    take = f"flock -w {int(wait)} 9" if wait > 0 else "flock -n 9"
    return (f"umask 077 && mkdir -p {os.path.dirname(LOCK)} && exec 9>>{LOCK} && "
            f"if ! {take}; then printf '{_HELD} '; cat {HOLDER} 2>/dev/null; echo; exit 75; fi && "
            f"printf '%s\\n' {shlex.quote(json.dumps(holder, sort_keys=True))} > {HOLDER} && "
            f"echo {_LOCKED} && cat >/dev/null")


def describe_holder(line: str) -> str:
    """``HELD <json>`` as a sentence: who holds the lock, from where, since when, doing what."""
    try:
        h = json.loads(line.removeprefix(_HELD).strip() or "{}")
    except json.JSONDecodeError:
        h = {}
    if not isinstance(h, dict) or not h:
        return "another run (it did not say who)"
    return (f"{_clean(h.get('who', '?'))} ({_clean(h.get('key', '?'))}) from {_clean(h.get('from', '?'))}, "
            f"since {_clean(h.get('since', '?'))}: {_clean(h.get('what', '?'))}")


@dataclass
class HostRun:
    """The lock and the history record of one changing run on one host (``data``: its inventory
    entry, as iac/ssh.py reaches it)."""

    name: str
    data: Mapping[str, Any]
    what: str
    who: str = field(default_factory=operator)
    started: float = field(default_factory=time.time)
    result: str | None = None  # what the history says; set by the run (else applied, or failed on an error)
    _session: subprocess.Popen | None = None

    @property
    def holder(self) -> dict[str, Any]:
        return {"who": self.who, "key": key_fingerprint(self.data), "from": _clean(socket.gethostname(), 100),
                "pid": os.getpid(), "since": _now(), "what": _clean(self.what, 300)}

    def acquire(self, timeout: float = 60) -> None:
        """Take the host's lock, or raise LockHeld naming its holder (ConfigError when the host
        cannot be reached)."""
        wait = int(os.environ.get(WAIT_ENV) or 0)
        remote, password = ssh.as_root(self.data, lock_script(self.holder, wait))
        session = subprocess.Popen([*ssh.ssh_argv(self.data), remote], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert session.stdin is not None and session.stdout is not None
        if password:
            session.stdin.write(password)
            session.stdin.flush()
        ready, _, _ = select.select([session.stdout], [], [], timeout + wait)
        first = session.stdout.readline().strip() if ready else ""
        if first == _LOCKED:
            self._session = session
            return
        try:
            _, err = session.communicate(timeout=10)  # closes its stdin: the script ends
        except subprocess.TimeoutExpired:
            session.kill()
            _, err = session.communicate()
        if first.startswith(_HELD):
            raise LockHeld(f"{self.name}: another run holds the host's lock: {describe_holder(first)}. Wait for it "
                           f"to end (or set {WAIT_ENV}=<seconds>); a killed run's lock goes with its connection")
        raise ConfigError(f"{self.name}: cannot take the host's run lock: {_clean(err.strip()[-300:], 300)}")

    def record(self, result: str, changed: list[str] | None = None) -> dict[str, Any]:
        """The history line of this run."""
        holder = self.holder
        return {"when": datetime.datetime.fromtimestamp(self.started, datetime.UTC)
                .strftime("%Y-%m-%dT%H:%M:%SZ"), "host": self.name, "who": holder["who"], "key": holder["key"],
                "from": holder["from"], "what": holder["what"], "result": result,
                "changed": [_clean(c, 200) for c in (changed or [])][:50],
                "seconds": round(time.time() - self.started, 1)}

    def finish(self, result: str, changed: list[str] | None = None) -> None:
        """Append the run's line to the host's history, then release the lock. A history that
        cannot be written is said on stderr; the lock is released whatever happens."""
        try:
            line = json.dumps(self.record(result, changed), sort_keys=True)
            command = (f"umask 027 && mkdir -p {os.path.dirname(HISTORY)} && chmod 0750 {os.path.dirname(HISTORY)} "
                       f"&& cat >> {HISTORY} && chmod 0640 {HISTORY}")
            done = ssh.run_as_root(self.data, command, timeout=60, input=line + "\n")
            if done.returncode != 0:
                print(f"{self.name}: the history line was not written: {done.stderr.strip()[-200:]}",
                      file=sys.stderr)
        finally:
            self.release()

    def release(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        assert session.stdin is not None
        try:
            session.stdin.close()
            session.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            session.kill()


@contextlib.contextmanager
def held(name: str, data: Mapping[str, Any], what: str) -> Iterator[HostRun]:
    """The host's run lock around a block, and its history line after it: ``result`` as the block
    set it (else ``applied``), ``failed`` when it raised.

    Example: ``with held(t.name, t.data, "restore gts_rental") as run: ... run.result = "failed"``"""
    run = HostRun(name, data, what)
    run.acquire()
    result = "failed"
    try:
        yield run
        result = run.result or "applied"
    finally:
        run.finish(result)


def read_history(data: Mapping[str, Any], lines: int = 50) -> list[dict[str, Any]]:
    """The host's last ``lines`` history records (a line that is not a record is skipped)."""
    done = ssh.run_as_root(data, f"tail -n {int(lines)} {HISTORY} 2>/dev/null || true", timeout=60)
    if done.returncode != 0:
        raise ConfigError(f"cannot read {HISTORY}: {done.stderr.strip()[-300:]}")
    out = []
    for line in done.stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out
