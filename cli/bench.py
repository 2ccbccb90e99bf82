"""`make bench`: the drift check's cost against pyinfra's own floor, on the same hosts, in one run.

Prints, as medians of ``--runs`` paired runs (floor and drift alternate, so a busy machine slows
both alike):

* floor: ``pyinfra INVENTORY fact server.Hostname`` (start, connect every host, one command each);
* drift: ``iac -i INVENTORY drift`` (``python -m cli.main``: what ``make drift`` runs), and its ratio
  to the floor;
* converged apply: ``pyinfra INVENTORY deploy.py -y`` on hosts already converged (not on
  production: there an apply is never a measurement);
* remote commands per host during one drift check (counted from pyinfra's ``--debug`` output;
  only counted, never printed: commands may name secret paths);
* the same check once with ``IAC_PYINFRA_EXT=off`` (pyinfra's own code: one command per fact, no
  cache), its time and commands per host: the "before" of iac/pyinfra_ext/, in the same run;
* ms per checked operation (drift time / operations in the plan, all hosts);
* the host CPU the baseline's checks cost per host (what its engine recorded of its last check,
  ``/var/lib/iac/baseline/last-check.json``: its own CPU and the programs it ran), by check.

With ``--scale GROUP`` it measures how the check grows with hosts instead: floor and drift on the
group's first host alone (``--limit``) and on every host of the group, paired, and the ratio
(hosts are checked in parallel: the goal is at most 2x for 8 hosts). ``make bench HOSTS=N``
makes the sandbox's group of N public hosts first (sandbox/scale.py).

Usage: python -m cli.bench INVENTORY [--runs N] [--scale GROUP]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cli.drift import plan
from cli.validate import load_inventory
from iac.repo import REPO

COMMAND_RE = re.compile(r"Running command on (\S+?):")


def timed(argv: list[str]) -> tuple[float, int]:
    return timed_cpu(argv)[:2]


def timed_cpu(argv: list[str]) -> tuple[float, int, float]:
    """Wall seconds, exit code, and the controller's CPU seconds (the command and its children)."""
    started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          env={**env, "PYINFRA_PROGRESS": "off"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.monotonic() - started, proc.returncode, cpu


def remote_commands(debug_stderr: str) -> Counter:
    """Commands pyinfra ran per host, from its --debug log."""
    return Counter(m.group(1) for m in COMMAND_RE.finditer(debug_stderr))


def scale(inventory: str, group: str, names: list[str], runs: int) -> int:
    """Drift on one host of ``group`` against drift on all of them, paired; prints the ratio."""
    py, pyinfra = str(REPO / ".venv/bin/python"), str(REPO / ".venv/bin/pyinfra")
    one, many = names[0], group
    times: dict[str, list[float]] = {"floor 1": [], "floor N": [], "drift 1": [], "drift N": []}
    cpu: dict[str, list[float]] = {"drift 1": [], "drift N": []}
    for _ in range(runs):
        for key, argv in (("floor 1", [pyinfra, inventory, "--limit", one, "fact", "server.Hostname"]),
                          ("floor N", [pyinfra, inventory, "--limit", many, "fact", "server.Hostname"]),
                          ("drift 1", [py, "-m", "cli.main", "-i", inventory, "drift", "--limit", one]),
                          ("drift N", [py, "-m", "cli.main", "-i", inventory, "drift", "--limit", many])):
            seconds, code, used = timed_cpu(argv)
            if code != 0:
                print(f"bench: {key.replace('N', str(len(names)))} hosts did not succeed (exit {code}); "
                      "converge the group first", file=sys.stderr)
                return 1
            times[key].append(seconds)
            if key in cpu:
                cpu[key].append(used)
    m = {k: statistics.median(v) for k, v in times.items()}
    n = len(names)
    print(f"bench: group {group}, {n} hosts against 1 ({one}), {inventory}, medians of {runs} paired runs")
    print(f"  floor, 1 host                          {m['floor 1']:6.2f} s")
    print(f"  floor, {n} hosts                        {m['floor N']:6.2f} s   {m['floor N'] / m['floor 1']:4.1f}x")
    print(f"  drift, 1 host                          {m['drift 1']:6.2f} s")
    print(f"  drift, {n} hosts                        {m['drift N']:6.2f} s   {m['drift N'] / m['drift 1']:4.1f}x "
          f"the 1-host check (goal: at most 2x)")
    c1, cn = statistics.median(cpu["drift 1"]), statistics.median(cpu["drift N"])
    print(f"  controller CPU of the check, 1 / {n} hosts  {c1:5.2f} s / {cn:5.2f} s")
    print(f"  cores on this machine: {os.cpu_count()}; the {n} sandbox hosts' own work (their batches) runs on "
          "them too, while production hosts each use their own")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scale", metavar="GROUP", help="time the check on 1 host of GROUP against all of it")
    args = parser.parse_args(argv)
    groups = load_inventory(Path(args.inventory))
    if args.scale:
        if args.scale not in groups:
            print(f"bench: --scale {args.scale}: no such group (groups: {', '.join(groups)})", file=sys.stderr)
            return 1
        return scale(args.inventory, args.scale, [name for name, _ in groups[args.scale]], args.runs)
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
        seconds, code = timed([py, "-m", "cli.main", "-i", args.inventory, "drift"])
        if code != 0:
            print(f"bench: the drift check did not say 'in sync' (exit {code}): converge first", file=sys.stderr)
            return 1
        drift.append(seconds)
    code, data, stderr = plan(args.inventory, extra_args=["--debug"])
    counts = remote_commands(stderr)
    os.environ["IAC_PYINFRA_EXT"] = "off"
    try:
        started = time.monotonic()
        _, _, alone_stderr = plan(args.inventory, extra_args=["--debug"])
        alone_s, alone_counts = time.monotonic() - started, remote_commands(alone_stderr)
    finally:
        del os.environ["IAC_PYINFRA_EXT"]
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
    print(f"  drift unbatched (IAC_PYINFRA_EXT=off: one command per fact, no cache; 1 run) {alone_s:6.2f} s")
    if n_ops:
        print(f"  per checked operation                  {1000 * d / n_ops:6.1f} ms ({n_ops} operations)")
    for host, cost in baseline_cpu(args.inventory).items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cost["cpu_seconds"].items(), key=lambda kv: -kv[1]))
        print(f"  baseline host CPU, {host:<20}{cost['cpu_seconds_total']:6.2f} s   ({parts})")
    return 0


def baseline_cpu(inventory: str) -> dict[str, dict]:
    """Each host's record of its last baseline check (after the drift runs above)."""
    from iac.paths import HOST

    proc = subprocess.run([str(REPO / ".venv/bin/pyinfra"), inventory, "fact", "files.FileContents",
                           f"path={HOST.baseline_state}/last-check.json", "--json"], cwd=REPO, capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("{")), "{}")
    try:
        answers = next(iter(json.loads(line).values()), {})
    except json.JSONDecodeError:
        return {}
    out = {}
    for host, lines in (answers or {}).items():
        try:
            record = json.loads("\n".join(lines or []))
            out[host] = {"cpu_seconds": dict(record["cpu_seconds"]),
                         "cpu_seconds_total": float(record["cpu_seconds_total"])}
        except (ValueError, KeyError, TypeError):
            continue
    return out


if __name__ == "__main__":
    sys.exit(main())
