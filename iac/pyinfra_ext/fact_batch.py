"""Facts in a few remote commands per host, not one command per fact.

pyinfra 3 runs one remote command for every fact an operation asks for, and keeps no cache: a
converged drift check of both hosts ran 402 commands (``dpkg -l`` 30 times, 108 directory
stats). Each costs an SSH round trip. This module, installed by ``iac.pyinfra_ext.install()``
(deploy.py calls it), changes two things
(a fact cannot go stale while nothing changes the host; see below for what does):

1. **Cache**: a fact asked for twice with the same arguments (and the same sudo/user settings) is
   fetched once.
2. **Batch**: every fact a host asked for during its last run is recorded on the controller
   (``.cache/facts/<host>@<address>.<deploy file>.json``: fact names and arguments such as paths,
   never results, never secrets). The next run gathers all of them in one command per sudo/user
   setting, for every host in parallel, as soon as the first fact is asked for. Each fact runs
   its own ``command()`` and its own ``process()``, so a value is exactly what pyinfra would
   have read. A fact the record does not hold, or whose batched command failed, is fetched on
   its own, the normal way (and recorded for next time). A record is hostile input (CI restores
   it from a shared cache): only this repo's fact classes with arguments of the declared kinds
   are read back (iac/pyinfra_ext/fact_policy.py); any other entry is ignored, never run, and said.

With ``-y`` pyinfra decides each operation while it executes, after the operations above it ran.
There the cache holds until something changes the host: a command that is not a fact's, or an
upload, forgets every cached fact of that host (``_changes_host``). A converged host changes
nothing, so its whole apply is served from the batch; a host being changed reads fresh facts after
each change, as pyinfra alone would.

``IAC_PYINFRA_EXT=off`` turns both off (pyinfra's own behaviour, iac/pyinfra_ext/__init__.py);
``IAC_FACT_RECORDS`` moves the record directory.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import copy
import functools
import json
import os
import pickle
import secrets
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from pyinfra import logger
from pyinfra.api import facts as pyinfra_facts
from pyinfra.api.command import StringCommand
from pyinfra.api.facts import FactBase
from pyinfra.api.state import StateStage
from pyinfra.context import ContextObject

from iac import pyinfra_ext
from iac.pyinfra_ext import fact_policy
from iac.pyinfra_ext.fact_calls import FactCall, fact_class, split_lines
from iac.pyinfra_ext.shared_facts import Shared, shared_for
from iac.repo import REPO

RECORD_DIR = Path(os.environ.get("IAC_FACT_RECORDS") or REPO / ".cache" / "facts")
STALE_AFTER = 3  # runs: a recorded fact nobody asked for in that many runs is no longer gathered
_get_fact_one = pyinfra_facts._get_fact


# -- the batched command, and reading its output back into each fact's lines ----------------------


# Reads the batch's output files and prints one frame per fact: one process for all of them.
ENCODE_PY = """import binascii, sys
d, n, nonce = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    try:
        out, status = open(f"{d}/{i}", "rb").read(), open(f"{d}/{i}.s", "rb").read().strip()
    except OSError:
        continue
    print(f"@@{nonce} {i} " + binascii.b2a_base64(out + b"\\n" + status, newline=False).decode())
"""


def batch_script(commands: list[StringCommand | str], nonce: str) -> StringCommand:
    """One shell command running the fact commands side by side; each one's stdout comes back whole.

    Facts wait on different things (the network for ``git ls-remote``, S3 for restic, the CPU for
    hashing), so they run as background jobs and the slowest, not the sum, sets the time. Each
    writes its stdout and exit status to files in a private temporary directory; then one
    ``python3`` (a shell loop where there is none, on a bare host) prints a frame per fact:
    ``@@<nonce> <index> <base64>``, the base64 holding stdout, a newline and the status. Output
    without a final newline, empty output and the status survive intact, and nothing a fact prints
    can be mistaken for a frame. (Framing costs about 1 ms of host CPU per fact.)
    """
    n = len(commands)
    parts: list[Any] = ["d=$(mktemp", "-d)", "||", "exit", "1;", "trap", "'rm -rf \"$d\"'", "EXIT;"]
    for index, command in enumerate(commands):
        parts += ["{", "(", command, ")", f'>"$d/{index}"', "2>/dev/null", "</dev/null;", "echo", '"$?"',
                  f'>"$d/{index}.s";', "}", "&"]
    # -I -S: the standard library only (no site directories to scan: 3 ms less per start)
    parts += ["wait;", "if", "command", "-v", "python3", ">/dev/null;", "then", "python3", "-I", "-S", "-c",
              shlex.quote(ENCODE_PY),
              '"$d"', str(n), f"'{nonce}';", "else", "i=0;", "while", "[", '"$i"', "-lt", str(n), "];", "do",
              "printf", "'%s %s %s\\n'", f"'@@{nonce}'", '"$i"',
              '"$({', "cat", '"$d/$i";', "printf", "'\\n%s'", '"$(cat', '"$d/$i.s")";', "}", "|", "base64", '-w0)";',
              "i=$((i+1));", "done;", "fi"]
    return StringCommand(*parts)


def parse_batch(lines: list[str], nonce: str, count: int) -> dict[int, tuple[int, list[str]]]:
    """index -> (exit status, stdout lines) for each fact whose frame came back whole."""
    results: dict[int, tuple[int, list[str]]] = {}
    for line in lines:
        tag, _, rest = line.partition(" ")
        if tag != f"@@{nonce}":
            continue
        index_text, _, encoded = rest.partition(" ")
        try:
            index, raw = int(index_text), base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        body, sep, status = raw.rpartition(b"\n")
        if not sep or not status.isdigit() or not 0 <= index < count:
            continue
        results[index] = (int(status), split_lines(body))
    return results


# -- the cache, per pyinfra state ------------------------------------------------------------------


@dataclass
class HostFacts:
    values: dict[str, Any] = field(default_factory=dict)
    asked: dict[str, FactCall] = field(default_factory=dict)
    deploy: str = "deploy"
    recorded: dict[str, tuple[FactCall, int]] = field(default_factory=dict)
    prefetch: Any = None  # the greenlet gathering the recorded facts
    reading: int = 0  # > 0 while a fact's own command runs (not a change)
    loaded: bool = False  # the deploy file ran to its end for this host


def record_file(host: Any, deploy: str) -> Path:
    """Where a host's fact record for one deploy file lives (a host, an address, a deploy file)."""
    address = host.data.get("ssh_hostname") or host.name
    port = host.data.get("ssh_port")
    return RECORD_DIR / f"{host.name}@{address}{f':{port}' if port else ''}.{Path(deploy).stem}.json"


def read_record(host: Any, deploy: str) -> dict[str, tuple[FactCall, int]]:
    """key -> (call, runs since it was last asked for); empty when missing or damaged.

    A record is hostile input (in CI it comes back from a shared cache): an entry is used only when
    iac/pyinfra_ext/fact_policy.py allows its class, each argument and how it runs. Anything else in it is
    ignored, never imported or run, and the run says so once for the file (a warning naming the
    file and the first such entry); the next record written for the host leaves it out.
    """
    path = record_file(host, deploy)
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        _refuse(path, "not read: " + ("not JSON" if isinstance(e, ValueError) else e.strerror or type(e).__name__))
        return {}
    if not isinstance(entries, list):
        _refuse(path, "not read: not a list of entries")
        return {}
    found: dict[str, tuple[FactCall, int]] = {}
    refused: list[str] = []
    for entry in entries:
        why = entry_refusal(entry)
        if why is not None:
            refused.append(f"{_shown(entry)} ({why})")
            continue
        call = FactCall(entry["fact"], entry["kwargs"], entry["executor"])
        found[call.key] = (call, entry.get("unused", 0))
    if refused:
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        _refuse(path, f"entry ignored, never run: {refused[0]}{more}")
    return found


RECORD_FIELDS = {"fact", "kwargs", "executor", "unused"}


def entry_refusal(entry: Any) -> str | None:
    """Why one record entry may not be used (None when it may): its shape, then fact_policy."""
    if not isinstance(entry, dict) or not {"fact", "kwargs", "executor"} <= set(entry) <= RECORD_FIELDS:
        return "not an entry of fact, kwargs, executor"
    unused = entry.get("unused", 0)
    if isinstance(unused, bool) or not isinstance(unused, int) or not 0 <= unused <= STALE_AFTER:
        return "its age is not a small int"
    return fact_policy.refusal(entry["fact"], entry["kwargs"], entry["executor"])


_WARNED: set[str] = set()


def _refuse(path: Path, what: str) -> None:
    """Say once per run (process) that a record file held something that is not used."""
    shown = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    if shown not in _WARNED:
        _WARNED.add(shown)
        logger.warning("%s%s: %s", fact_policy.WARNING_PREFIX, shown, what)


def _shown(entry: Any) -> str:
    """An entry as one line of printable ASCII, cut short (it is hostile: no control characters)."""
    text = json.dumps(entry, sort_keys=True, ensure_ascii=True, default=repr)
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= 200 else text[:200] + "..."


def write_record(host: Any, deploy: str, asked: list[FactCall], before: dict[str, tuple[FactCall, int]],
                 age: bool = True) -> None:
    """What this run asked for, plus what earlier runs asked for within the last STALE_AFTER runs.

    Keeping recent entries lets a run that asks for less (``--limit``, a release of one app) not
    slow the next full run down; dropping old ones keeps removed resources from being gathered
    forever.
    """
    keys = {c.key for c in asked}
    entries = [{**c.as_json(), "unused": 0} for c in asked if c.allowed]
    step = 1 if age else 0
    entries += [{**c.as_json(), "unused": n + step} for key, (c, n) in before.items()
                if key not in keys and n + step < STALE_AFTER and c.allowed]
    path = record_file(host, deploy)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError as e:  # the record only saves time: never fail a run over it
        logger.debug("fact record not written for %s: %s", host.name, e)


def gather(state: Any, host: Any, calls: list[FactCall], entry: HostFacts | None = None) -> dict[str, Any]:
    """Run the recorded facts in one command per executor setting; key -> processed value."""
    if isinstance(host, ContextObject):
        host = host._get_module()  # the host itself: the context is not set in the greenlets below
    if entry is not None:
        entry.reading += 1  # the batch reads, it changes nothing
    try:
        return _gather(state, host, calls)
    except Exception as e:  # noqa: BLE001 (the batch only saves time: each fact is then fetched on its own)
        logger.debug("batched facts failed on %s: %r", getattr(host, "name", host), e)
        return {}
    finally:
        if entry is not None:
            entry.reading -= 1


@dataclass(frozen=True)
class SharedJob:
    """A batch job answering several facts with one command (iac/pyinfra_ext/shared_facts.py)."""

    shared: Shared
    keys: list[str]
    members: list[tuple[FactCall, FactBase, list[str]]]


@dataclass(frozen=True)
class Prepared:
    """A fact's instance and command for one call, computed once per run (pyinfra's command
    builders cost a shlex parse each)."""

    fact: FactBase  # command() was called on it, as pyinfra does before process() (hashes keep the path)
    command: StringCommand | str | None  # None when a shared command answers it
    shared: tuple[Shared, list[str]] | None


_PREPARED: dict[tuple[str, str], Prepared] = {}


def prepare(host_name: str, call: FactCall) -> Prepared:
    """The call prepared for this host. A fact a shared command answers has a fixed command text
    (checked against it), so it is prepared once for every host: 8 hosts ask for the same paths.
    Any other is prepared per host: a few of pyinfra's facts choose their command by asking the
    host (its kernel) inside ``command()``."""
    found = _PREPARED.get(("", call.key)) or _PREPARED.get((host_name, call.key))
    if found is None:
        fact = fact_class(call.fact)()
        command = pyinfra_facts._make_command(fact.command, dict(call.kwargs))
        shared = shared_for(call, command if isinstance(command, str) else command.get_raw_value())
        if shared is not None:
            command = None
        elif requires := pyinfra_facts._make_command(fact.requires_command, dict(call.kwargs)):
            command = StringCommand("if", "command", "-v", requires, ">/dev/null", "2>&1;", "then", "(", command,
                                    ");", "else", "echo", f"'{pyinfra_facts._MISSING_COMMAND_MARKER}';", "fi")
        found = _PREPARED["" if shared else host_name, call.key] = Prepared(fact, command, shared)
    return found


def _gather(state: Any, host: Any, calls: list[FactCall]) -> dict[str, Any]:
    by_executor: dict[str, list[tuple[FactCall | SharedJob, FactBase | None, StringCommand | str]]] = {}
    shared: dict[tuple[str, str], tuple[Shared, list[tuple[FactCall, FactBase, list[str]]]]] = {}
    for call in calls:
        executor_key = json.dumps(call.executor, sort_keys=True)
        try:
            prepared = prepare(host.name, call)
            if prepared.shared is not None:
                kind, keys = prepared.shared
                shared.setdefault((executor_key, kind.name), (kind, []))[1].append((call, prepared.fact, keys))
                continue
            if prepared.fact.check_preconditions(state, host):
                continue
        except Exception as e:  # noqa: BLE001 (a stale record entry: fetched the normal way if asked)
            logger.debug("fact record entry %s skipped: %s", call.fact, e)
            continue
        by_executor.setdefault(executor_key, []).append((call, prepared.fact, prepared.command))
    for (executor_key, _), (kind, members) in shared.items():
        keys = list(dict.fromkeys(k for _, _, member_keys in members for k in member_keys))
        by_executor.setdefault(executor_key, []).append((SharedJob(kind, keys, members), None, kind.command(keys)))
    # one command per sudo/user setting, side by side (they are separate SSH channels)
    jobs = [gevent.spawn(_run_batch, host, json.loads(key), group) for key, group in by_executor.items()]
    gevent.joinall(jobs)
    values: dict[str, Any] = {}
    for job in jobs:
        values.update(job.value or {})
    return values


def _run_batch(host: Any, executor: dict, group: list) -> dict[str, Any]:
    try:
        return _run_one_batch(host, executor, group)
    except Exception as e:  # noqa: BLE001 (the batch only saves time: each fact is then fetched on its own)
        logger.debug("batched facts failed on %s: %r", getattr(host, "name", host), e)
        return {}


def _run_one_batch(host: Any, executor: dict, group: list) -> dict[str, Any]:
    nonce = secrets.token_hex(8)
    started = time.monotonic()
    ok, output = host.run_shell_command(batch_script([c for _, _, c in group], nonce),
                                        print_output=False, print_input=False, **executor)
    logger.debug("batched %d facts on %s in %.2f s", len(group), host.name, time.monotonic() - started)
    success = set(executor.get("_success_exit_codes") or [0])
    values: dict[str, Any] = {}
    for index, (status, lines) in parse_batch(output.stdout_lines, nonce, len(group)).items():
        call, fact, _ = group[index]
        if status not in success or lines == [pyinfra_facts._MISSING_COMMAND_MARKER]:
            continue  # the normal path reports the error or the missing command
        if isinstance(call, SharedJob):
            try:
                parts = call.shared.split(lines, call.keys)
            except Exception as e:  # noqa: BLE001 (its facts are fetched on their own)
                logger.debug("shared %s on %s not read: %r", call.shared.name, host.name, e)
                continue
            for member, member_fact, member_keys in call.members if parts is not None else ():
                try:
                    own = call.shared.lines(member, member_keys, parts)
                    if own is not None:
                        values[member.key] = member_fact.process(own) if own else member_fact.default()
                except Exception:  # noqa: BLE001, S112 (the normal path reports it)
                    continue
            continue
        try:
            values[call.key] = fact.process(lines) if lines else fact.default()
        except Exception:  # noqa: BLE001, S112 (the normal path reports it)
            continue
    return values


def _host_facts(state: Any, host: Any) -> HostFacts:
    table = state.__dict__.setdefault("_iac_fact_batch", {})
    if not table:
        # first fact of the run: gather every host's recorded facts at once, in parallel
        deploy = state.current_deploy_filename or "deploy"
        for other in state.inventory.get_active_hosts():
            entry = table.setdefault(other.name, HostFacts(deploy=deploy))
            entry.recorded = read_record(other, deploy)
            if other.connected and entry.recorded:
                entry.prefetch = gevent.spawn(gather, state, other, [c for c, _ in entry.recorded.values()], entry)
        atexit.register(_write_records, state)
    return table.setdefault(host.name, HostFacts(deploy=state.current_deploy_filename or "deploy"))


def _write_records(state: Any) -> None:
    for host in state.inventory:
        entry = state.__dict__.get("_iac_fact_batch", {}).get(host.name)
        if entry and entry.asked:
            # only a whole run shows what is no longer asked for: after a failed or cut-short one,
            # entries it did not reach keep their age
            whole = entry.loaded and host not in state.failed_hosts
            write_record(host, entry.deploy, list(entry.asked.values()), entry.recorded, age=whole)


def deploy_loaded(host: Any) -> None:
    """Say that the deploy file ran to its end for this host (deploy.py's last line)."""
    entry = host.state.__dict__.get("_iac_fact_batch", {}).get(host.name)
    if entry is not None:
        entry.loaded = True


def _get_fact(state, host, cls, args=None, kwargs=None, ensure_hosts=None, apply_failed_hosts=True):  # noqa: ANN001, ANN202
    """pyinfra's ``_get_fact``, served from the batch or the cache when it can be."""
    if state.current_stage not in (StateStage.Prepare, StateStage.Execute) or not enabled():
        return _get_fact_one(state, host, cls, args, kwargs, ensure_hosts, apply_failed_hosts)
    fact_kwargs, global_kwargs = pyinfra_facts._handle_fact_kwargs(state, host, cls, args, kwargs)
    call = FactCall.describe(cls, fact_kwargs, global_kwargs)
    if call is None:
        return _get_fact_one(state, host, cls, args, kwargs, ensure_hosts, apply_failed_hosts)
    entry = _host_facts(state, host)
    entry.asked[call.key] = call
    if entry.prefetch is not None:
        entry.values.update(prefetched(entry))
    if call.key not in entry.values:
        failed_before = host in state.failed_hosts
        entry.reading += 1
        try:
            value = _get_fact_one(state, host, cls, args, kwargs, ensure_hosts, apply_failed_hosts)
        finally:
            entry.reading -= 1
        if host in state.failed_hosts and not failed_before:
            return value
        entry.values[call.key] = value
    return fresh_copy(entry.values, call.key)


def prefetched(entry: HostFacts) -> dict[str, Any]:
    """The batch's values once it is done; none if it failed (each fact is then fetched on its own)."""
    greenlet, entry.prefetch = entry.prefetch, None
    try:
        return greenlet.get()
    except Exception as e:  # noqa: BLE001 (the batch only saves time)
        logger.debug("batched facts failed: %r", e)
        return {}


def enabled() -> bool:
    return pyinfra_ext.enabled()


def _changes_host(method: Any) -> Any:
    """Wrap a Host method that may change the host: every cached fact of that host is forgotten.

    pyinfra's ``-y`` runs decide each operation just before executing it, after the operations
    above have run. Until a command (other than a fact's) or an upload reaches a host, nothing has
    changed there, so its cached facts still hold; after one, they are fetched again. A converged
    host never runs one: its whole apply is served from the batch.
    """

    @functools.wraps(method)
    def wrapper(host: Any, *args: Any, **kwargs: Any) -> Any:
        entry = host.state.__dict__.get("_iac_fact_batch", {}).get(host.name)
        if entry is not None and not entry.reading:
            if entry.prefetch is not None:
                entry.prefetch.join()  # gathered before this change: discarded with the rest
                entry.prefetch = None
            entry.values.clear()
        return method(host, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def not_a_change(host: Any) -> Iterator[None]:
    """Around a command that changes nothing a fact reads (making the private staging directory,
    sudo_staging.prepare): the host's cached and prefetched facts stay (a change would discard
    them, and every fact would be fetched on its own, as happened at random on a host reached
    through sudo, whenever the batch was done before the directory was made)."""
    if isinstance(host, ContextObject):
        host = host._get_module()
    state = getattr(host, "state", None)
    entry = state.__dict__.get("_iac_fact_batch", {}).get(host.name) if state is not None else None
    if entry is not None:
        entry.reading += 1
    try:
        yield
    finally:
        if entry is not None:
            entry.reading -= 1


def fresh_copy(values: dict[str, Any], key: str) -> Any:
    """A copy of a cached value (operations may change what a fact returned), kept pickled: a
    pickle round trip is several times cheaper than ``deepcopy`` for the large facts (``dpkg -l``)."""
    value = values[key]
    if not isinstance(value, Pickled):
        try:
            value = values[key] = Pickled(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:  # noqa: BLE001 (not picklable: copied the slow way)
            return copy.deepcopy(value)
    return pickle.loads(value)  # noqa: S301 (bytes this process pickled itself)


class Pickled(bytes):
    """A cached fact value, pickled."""
