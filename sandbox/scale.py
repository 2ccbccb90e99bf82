"""`make bench HOSTS=N`: the drift check over N public hosts against 1, on this sandbox.

1. the sandbox makes N-1 replicas of its public host (``python -m sandbox.world public-hosts N``):
   bare Debian machines (the public host's release) with their own addresses and DNS names;
2. the inventory then holds them in the public group (``SANDBOX_PUBLIC_HOSTS=N``), each with the
   values a second VPS would set in group_data/public.py's ``hosts`` (domain, offsite repository);
3. they are converged the way a fresh server is (sandbox/converge.py, ``--limit`` to the group);
4. cli/bench.py times the check on 1 host and on N (``--scale public``) and prints the ratio;
5. the replicas are stopped again (their disks stay, so the next run converges nothing), and the
   inventory without SANDBOX_PUBLIC_HOSTS is the usual two hosts.

Usage: python -m sandbox.scale N [--runs R] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from sandbox.world import World, WorldError

REPO = Path(__file__).resolve().parent.parent
PY = str(REPO / ".venv/bin/python")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.scale", description=__doc__.splitlines()[0])
    parser.add_argument("hosts", type=int, help="public hosts in all (the sandbox's one and N-1 replicas)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="leave the replicas running afterwards")
    args = parser.parse_args(argv)
    world = World()
    try:
        started = time.monotonic()
        roles = world.ensure_public_hosts(args.hosts)
        print(f"[scale] {args.hosts} public hosts up ({', '.join(['public', *roles])}) in "
              f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    except WorldError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    env = {**os.environ, "SANDBOX_PUBLIC_HOSTS": str(args.hosts)}
    try:
        if roles:
            started = time.monotonic()
            converge = subprocess.run([PY, "-m", "sandbox.converge", "--limit", "public"], cwd=REPO, env=env,
                                      capture_output=True, text=True, check=False)
            if converge.returncode != 0:
                sys.stderr.write(converge.stdout[-4000:] + converge.stderr[-4000:])
                print(f"bench: converging the replicas failed (exit {converge.returncode})", file=sys.stderr)
                return 1
            print(f"[scale] replicas converged in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return subprocess.run([PY, "-m", "cli.bench", "sandbox/inventory.py", "--runs", str(args.runs),
                               "--scale", "public"], cwd=REPO, env=env, check=False).returncode
    finally:
        if not args.keep:
            world.ensure_public_hosts(1)


if __name__ == "__main__":
    sys.exit(main())
