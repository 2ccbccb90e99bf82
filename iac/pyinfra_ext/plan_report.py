"""A plan (``--json``) that names each operation as each host declared it, and says what differs.

pyinfra merges operations declared at the same place in the code into one plan entry across
hosts (the same line declares "Host name srv1178562" on one host and "Host name gts-server" on
the other) and names the entry after one of them. The drift gate must say what drifted on which
host, so each entry gets ``host_names``: host -> that host's own name for the operation.

An operation can say *why* it would change (``host.noop(...)`` while it decides, e.g. "live
release damaged: changed hc/api/views.py" or "release pending: main moved upstream"); with
``--diff``, pyinfra's file operations log "Will modify /etc/hosts" and the unified diff. Both are
kept per host and operation as ``host_details``, so that the drift report shows what differs, not
only which operation. (No secret is written through an operation that diffs: secret files go
through ``secret_file``, which compares hashes; tests search every output for canary values.)

Installed by ``iac.pyinfra_ext.install(report=True)``, which the plan runner (plan_runner.py)
calls: each hook wraps pyinfra's own function and only adds to what it returns or logs.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from pyinfra.context import ctx_host

# (host name, operation hash) -> what the operation said while deciding
DETAILS: dict[tuple[str, str], list[str]] = {}


def with_noop_details(noop: Callable[..., None]) -> Callable[..., None]:
    """``Host.noop``, keeping what each host says per operation."""

    @functools.wraps(noop)
    def wrapper(self: Any, description: str) -> None:
        if self.current_op_hash:
            DETAILS.setdefault((self.name, self.current_op_hash), []).append(description)
        noop(self, description)

    return wrapper


ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


class DiffCapture(logging.Handler):
    """pyinfra's --diff lines, logged while an operation decides, kept as that operation's details."""

    def emit(self, record: logging.LogRecord) -> None:
        current = ctx_host.get()
        op_hash = getattr(current, "current_op_hash", None) if current else None
        if not op_hash:
            return
        text = ANSI_RE.sub("", record.getMessage()).rstrip()
        own = text.removeprefix(f"[{current.name}] ").strip()
        if own.startswith(("Will create ", "Will modify ", "Will remove ", "Will delete ")):
            line = own  # the file, then its diff lines (logged as "  " + line)
        elif text.startswith("  ") and text.strip():
            line = text[2:]
        else:
            return
        DETAILS.setdefault((current.name, op_hash), []).append(line)


def with_host_names(build_plan_json: Callable[[Any], list[dict]]) -> Callable[[Any], list[dict]]:
    """``pyinfra_cli.prints.build_plan_json``, each entry with ``host_names`` and ``host_details``."""

    @functools.wraps(build_plan_json)
    def wrapper(state: Any) -> list[dict]:
        plan = build_plan_json(state)
        for entry in plan:
            meta = state.op_meta[entry["op_hash"]]
            names: dict[str, str] = {}
            for host in state.inventory.iter_activated_hosts():
                if entry["op_hash"] not in state.ops[host]:
                    continue
                own = state.get_op_data_for_host(host, entry["op_hash"]).global_arguments.get("name")
                names[host.name] = next((n for n in sorted(meta.names) if own and n.endswith(own)), entry["name"])
            entry["host_names"] = names
            entry["host_details"] = {h: d for h in names if (d := DETAILS.get((h, entry["op_hash"])))}
        return plan

    return wrapper


def attach_diff_capture() -> None:
    """The --diff lines handler on pyinfra's logger, once."""
    pyinfra_logger = logging.getLogger("pyinfra")
    if not any(isinstance(h, DiffCapture) for h in pyinfra_logger.handlers):
        pyinfra_logger.addHandler(DiffCapture())
