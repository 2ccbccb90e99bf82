"""A pyinfra run that changes hosts holds each host's run lock, and ends with a history line per host
(iac/host_run.py says what both are).

Each deploy file calls ``hold(state, host, what)`` first, while pyinfra prepares (before any fact,
so the plan is made under the lock): a run that only plans (``--dry``: ``make plan``, ``make
drift``) takes no lock and writes no history. When the process ends, each host's line says what
happened: ``applied``, ``failed`` (the host failed, or the run stopped during it), or ``not applied``
(the run ended before executing, a change declined at the prompt). ``IAC_RUN_WHAT`` names the run
for the history (cli/release.py and cli/dr.py set it); else it is the deploy file and the limit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.state import StateStage

from iac import sudo
from iac.host_run import HostRun, LockHeld

WHAT_ENV = "IAC_RUN_WHAT"
# what iac/ssh.py reads of a host's data to reach it
_CONNECTION = ("ssh_hostname", "ssh_user", "ssh_port", "ssh_key", "ssh_known_hosts_file",
               "ssh_strict_host_key_checking", "_sudo", sudo.DATA_KEY)

_RUNS: dict[str, tuple[Any, HostRun]] = {}


def dry_run(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> bool:
    """Whether this pyinfra process only plans: ``--dry`` on its command line, or ``PYINFRA_DRY``
    (click reads pyinfra's options from ``PYINFRA_<OPTION>`` too)."""
    argv = sys.argv[1:] if argv is None else argv
    environ = dict(os.environ) if environ is None else environ
    return "--dry" in argv or environ.get("PYINFRA_DRY", "").lower() in ("1", "true", "yes", "on")


def connection(host: Any) -> dict[str, Any]:
    """The host's connection settings as iac/ssh.py takes them."""
    data = {k: host.data.get(k) for k in _CONNECTION if host.data.get(k) not in (None, False, "")}
    data.setdefault("ssh_hostname", host.name)
    return data


def describe(what: str, limit: bool = True) -> str:
    """What the history calls this run: ``IAC_RUN_WHAT``, else ``what`` (and pyinfra's limit, when
    ``limit``: a release names its app, which says more than the host it is limited to)."""
    if named := os.environ.get(WHAT_ENV):
        return named
    if not limit:
        return what
    argv = sys.argv[1:]
    limit = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--limit"), None)
    return f"{what}{f' --limit {limit}' if limit else ''}"


def hold(state: Any, host: Any, what: str, limit: bool = True) -> None:
    """Take ``host``'s run lock for the rest of this process (nothing in a run that only plans);
    a lock held by another run stops this one before anything is changed, naming its holder.
    ``what`` (with pyinfra's ``--limit`` unless ``limit`` is false) names the run in the history."""
    if dry_run() or host.name in _RUNS:
        return
    run = HostRun(host.name, connection(host), describe(what, limit))
    try:
        run.acquire()
    except LockHeld as exc:
        raise PyinfraError(str(exc)) from None
    if not _RUNS:
        atexit.register(finish_all)
    _RUNS[host.name] = (state, run)


def result_of(state: Any, host: Any) -> tuple[str, list[str]]:
    """What happened on ``host`` in this run, and the operations that changed (or would have)."""
    changed = []
    for op_hash in state.get_op_order():
        op_data = state.ops.get(host, {}).get(op_hash)
        if op_data is not None and op_data.operation_meta.changed:
            changed.append(", ".join(sorted(state.op_meta[op_hash].names)))
    if state.current_stage < StateStage.Execute:
        return "not applied", changed
    if host in state.failed_hosts:
        return "failed", changed
    results = state.get_results_for_host(host)
    return ("applied" if results.error_ops == 0 else "failed"), changed


def finish_all() -> None:
    """Each held host's history line, then its lock released (side by side)."""
    runs = list(_RUNS.values())
    _RUNS.clear()

    def finish(item: tuple[Any, HostRun]) -> None:
        state, run = item
        host = next((h for h in state.inventory if h.name == run.name), None)
        try:
            result, changed = result_of(state, host) if host is not None else ("failed", [])
        except Exception:  # noqa: BLE001  (the lock must be released whatever the state says)
            result, changed = "failed", []
        run.finish(result, changed)

    # plain threads: at exit, concurrent.futures takes no new work
    threads = [threading.Thread(target=finish, args=(item,)) for item in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
