"""Drift gate: does any host differ from what deploy.py declares?

Exit codes: 0 in sync, 2 drift (each drifted operation and host is named), 1 error (invalid
configuration, unreachable host, pyinfra failure).

It runs ``pyinfra INVENTORY deploy.py --dry --json`` and reads the plan. It never passes ``-y``
and removes PYINFRA_YES from the environment: with ``--dry`` plus ``-y`` pyinfra skips change
detection and would report every drifted host as in sync.

Operations guarded by ``_if=`` (reloads after a changed file) are listed as "conditional" in the
plan. They run only when an operation they depend on changes, so they are drift only together
with an unconditional change, which the gate already reports; alone they are ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from iac.stack import ConfigError, config_secret_values
from iac.validate import load_inventory

REPO = Path(__file__).resolve().parent.parent
IN_SYNC, ERROR, DRIFT = 0, 1, 2


def redact(text: str, secret_values: list[str]) -> str:
    for value in secret_values:
        if value:
            text = text.replace(value, "**********")
    return text


def plan(inventory: str, deploy: str = "deploy.py", extra_args: list[str] | None = None,
         timeout: int = 900) -> tuple[int, dict | None, str]:
    """Run pyinfra's change detection; return (exit code, parsed JSON or None, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    env["PYINFRA_PROGRESS"] = "off"
    cmd = [str(REPO / ".venv/bin/python"), "-m", "iac.plan_runner", inventory, deploy, "--dry", "--json",
           *(extra_args or [])]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    return proc.returncode, data, proc.stderr


def check(inventory: str, secret_values: list[str] | None = None,
          extra_args: list[str] | None = None) -> tuple[int, str]:
    """Return (exit code, report text)."""
    code, data, stderr = plan(inventory, extra_args=extra_args)
    stderr = redact(stderr, secret_values or [])
    if code != 0 or data is None or "plan" not in data:
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        return ERROR, f"drift: ERROR: pyinfra exited {code} before a complete plan\n{tail}"
    drifted, conditional, n_drifted = [], [], 0
    for op in data["plan"]:
        own = op.get("host_names", {})
        details = op.get("host_details", {})
        for host in op["hosts_with_change"]:
            n_drifted += 1
            drifted.append(f"  {host}: {own.get(host, op['name'])}")
            drifted.extend(f"      {redact(d, secret_values or [])}" for d in details.get(host, []))
        for host in op["hosts_with_conditional_change"]:
            conditional.append(f"  {host}: {own.get(host, op['name'])}")
    n_ops = len(data["plan"])
    if drifted:
        lines = [f"drift: DRIFT in {n_drifted} operation(s) of {n_ops}:", *drifted]
        if conditional:
            lines += ["then, depending on those:", *conditional]
        return DRIFT, "\n".join(lines)
    return IN_SYNC, f"drift: in sync ({n_ops} operations checked, no change pending)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory", help="inventory file, e.g. sandbox/inventory.py")
    parser.add_argument("--limit", help="only these hosts or groups (pyinfra --limit)")
    args = parser.parse_args(argv)
    # the values to redact come from the stack itself, whichever it is (iac/ never imports sandbox/)
    try:
        secret_values = [v for _group, hosts in load_inventory(Path(args.inventory)).items()
                         for _name, data in hosts for v in config_secret_values(data["config"])]
    except ConfigError as exc:
        print(f"drift: ERROR: {exc}", file=sys.stderr)
        return ERROR
    extra = ["--limit", args.limit] if args.limit else None
    code, report = check(args.inventory, secret_values, extra)
    print(report, file=sys.stdout if code != ERROR else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
