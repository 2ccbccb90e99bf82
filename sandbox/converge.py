"""Converge the sandbox the way a fresh production server is bootstrapped.

1. deploy_keys.py: app users and their deploy keys are made on the hosts;
2. each printed public key is registered, read-only, for its repository on the sandbox forge
   (in production a person adds it on GitHub);
3. deploy.py: everything else.

Usage: python -m sandbox.converge [extra pyinfra args]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli.dr import deploy_keys
from sandbox.world import World

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(REPO / ".venv/bin/pyinfra")


def register_deploy_keys(world: World, output: str) -> list[str]:
    """Register on the forge every key deploy_keys.py printed (cli/dr.py deploy_keys reads them)."""
    registered = []
    for host, app, key in deploy_keys(output):
        world.register_key(app, key)
        registered.append(f"{host}/{app}")
    return registered


def main(argv: list[str]) -> int:
    world = World()
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    keys = subprocess.run([PYINFRA, "sandbox/inventory.py", "deploy_keys.py", "-y"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=False)
    sys.stderr.write(keys.stderr)
    if keys.returncode != 0:
        sys.stdout.write(keys.stdout)
        return keys.returncode
    print(f"[sandbox] deploy keys registered on the forge: {', '.join(register_deploy_keys(world, keys.stdout))}",
          file=sys.stderr)
    return subprocess.run([PYINFRA, "sandbox/inventory.py", "deploy.py", "-y", *argv], cwd=REPO, env=env,
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
