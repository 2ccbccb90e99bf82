"""pyinfra's own CLI, with a plan (``--json``) that names each operation as each host declared it.

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

Usage: python -m iac.pyinfra_ext.plan_runner INVENTORY deploy.py --dry --json   (any pyinfra arguments)
"""

from __future__ import annotations

import logging
import re
import sys

import pyinfra_cli.prints as prints
from pyinfra.api.host import Host
from pyinfra.context import ctx_host
from pyinfra_cli.main import main

_build_plan_json = prints.build_plan_json
_noop = Host.noop
# (host name, operation hash) -> what the operation said while deciding
DETAILS: dict[tuple[str, str], list[str]] = {}


def noop(self: Host, description: str) -> None:
    if self.current_op_hash:
        DETAILS.setdefault((self.name, self.current_op_hash), []).append(description)
    _noop(self, description)


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


def build_plan_json(state) -> list[dict]:  # noqa: ANN001 (pyinfra's State)
    plan = _build_plan_json(state)
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


prints.build_plan_json = build_plan_json
Host.noop = noop
logging.getLogger("pyinfra").addHandler(DiffCapture())

if __name__ == "__main__":
    sys.argv = ["pyinfra", *sys.argv[1:]]
    sys.exit(main())
