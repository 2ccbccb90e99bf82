"""`make bench`: the drift check's cost against pyinfra's own floor, on the same hosts, in one run.

Prints, as medians of ``--runs`` paired runs (floor and drift alternate, so a busy machine slows
both alike):

* floor: ``pyinfra INVENTORY fact server.Hostname`` (start, connect every host, one command each);
* drift: ``python -m iac.drift INVENTORY`` (what ``make drift`` runs), and its ratio to the floor;
* converged apply: ``pyinfra INVENTORY deploy.py -y`` on hosts already converged (not on
  production: there an apply is never a measurement);
* remote commands per host during one drift check (counted from pyinfra's ``--debug`` output;
  only counted, never printed: commands may name secret paths);
* the same check once with ``IAC_FACT_BATCH=off`` (one command per fact, no
  cache), its time and commands per host: the "before" of iac/fact_batch.py, in the same run;
* ms per checked operation (drift time / operations in the plan, all hosts).

Usage: python -m iac.bench INVENTORY [--runs N]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from iac.drift import plan
from iac.validate import load_inventory

REPO = Path(__file__).resolve().parent.parent
COMMAND_RE = re.compile(r"Running command on (\S+?):")


def timed(argv: list[str]) -> tuple[float, int]:
    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          env={**env, "PYINFRA_PROGRESS": "off"})
    return time.monotonic() - started, proc.returncode


def remote_commands(debug_stderr: str) -> Counter:
    """Commands pyinfra ran per host, from its --debug log."""
    return Counter(m.group(1) for m in COMMAND_RE.finditer(debug_stderr))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iac.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    groups = load_inventory(Path(args.inventory))
    hosts = [name for entries in groups.values() for name, _ in entries]
    production = any(data.get("stack") == "production" for entries in groups.values() for _, data in entries)
    py, pyinfra = str(REPO / ".venv/bin/python"), str(REPO / ".venv/bin/pyinfra")

    floor, drift = [], []
    for _ in range(args.runs):
        seconds, code = timed([pyinfra, args.inventory, "fact", "server.Hostname"])
        if code != 0:
            print(f"bench: the floor command failed (exit {code}): are the hosts up?", file=sys.stderr)
            return 1
        floor.append(seconds)
        seconds, code = timed([py, "-m", "iac.drift", args.inventory])
        if code != 0:
            print(f"bench: the drift check did not say 'in sync' (exit {code}): converge first", file=sys.stderr)
            return 1
        drift.append(seconds)
    code, data, stderr = plan(args.inventory, extra_args=["--debug"])
    counts = remote_commands(stderr)
    os.environ["IAC_FACT_BATCH"] = "off"
    try:
        started = time.monotonic()
        _, _, alone_stderr = plan(args.inventory, extra_args=["--debug"])
        alone_s, alone_counts = time.monotonic() - started, remote_commands(alone_stderr)
    finally:
        del os.environ["IAC_FACT_BATCH"]
    n_ops = len(data["plan"]) if data and "plan" in data else 0
    apply_s = None
    if not production:
        apply_s, code = timed([pyinfra, args.inventory, "deploy.py", "-y"])
        if code != 0:
            print(f"bench: the converged apply failed (exit {code})", file=sys.stderr)
            return 1

    f, d = statistics.median(floor), statistics.median(drift)
    print(f"bench: {args.inventory}, {len(hosts)} host(s), medians of {args.runs} paired runs")
    print(f"  floor (pyinfra fact server.Hostname)   {f:6.2f} s")
    print(f"  drift (make drift)                     {d:6.2f} s   {d / f:4.1f}x the floor (goal: at most 2x)")
    if apply_s is not None:
        print(f"  converged apply (deploy.py -y)         {apply_s:6.2f} s")
    for host in hosts:
        print(f"  remote commands, {host:<22}{counts.get(host, 0):4d}   (goal: at most 12; unbatched: "
              f"{alone_counts.get(host, 0)})")
    print(f"  drift unbatched (IAC_FACT_BATCH=off: one command per fact, no cache; 1 run) {alone_s:6.2f} s")
    if n_ops:
        print(f"  per checked operation                  {1000 * d / n_ops:6.1f} ms ({n_ops} operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
