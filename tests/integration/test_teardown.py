"""A second sandbox runs beside the first, and `make sandbox-down` removes exactly it."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

from sandbox.world import World
from tests.integration.conftest import REPO, TIMINGS, Sandbox


def machine_snapshot() -> dict[str, set[str]]:
    def lines(cmd: list[str]) -> set[str]:
        return set(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines())

    procs = set()
    for pid in Path("/proc").iterdir():
        if pid.name.isdigit():
            with contextlib.suppress(OSError):
                procs.add(pid.name + " " + (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return {
        "netns": lines(["ip", "netns", "list"]),
        "links": {line.split(":")[1].strip().split("@")[0]
                  for line in lines(["ip", "-o", "link", "show"])},
        "addrs": {" ".join(line.split()[1:4]) for line in lines(["ip", "-o", "addr", "show"])},
        "nat": lines(["iptables", "-t", "nat", "-S"]),
        "mounts": set(Path("/proc/mounts").read_text().splitlines()),
        "procs": procs,
    }


def test_second_sandbox_side_by_side_then_down_leaves_nothing(sandbox: Sandbox) -> None:
    # a name and subnet no sandbox on this machine uses (not fixed: another checkout may be running)
    name, subnet = World.free_slot(sandbox.world.name[:8], avoid=(str(sandbox.world.subnet),))
    env = {"SANDBOX_NAME": name, "SANDBOX_SUBNET": subnet}
    public_addr = subnet.replace(".0.0/16", ".1.2")
    before = machine_snapshot()

    up = sandbox.command("second-sandbox-up", ["make", "sandbox-up"], **env)
    TIMINGS["second sandbox up (image cached)"] = up.seconds
    assert up.returncode == 0, up.output[-3000:]
    status = sandbox.command("second-sandbox-status", ["make", "-s", "sandbox-status", "FORMAT=json"], **env)
    second = json.loads(status.stdout)
    assert second["hosts"]["public"]["address"] == public_addr and second["hosts"]["public"]["up"]
    # the first sandbox is untouched and still answers
    assert sandbox.ssh("public", "true").returncode == 0

    down = sandbox.command("second-sandbox-down", ["make", "sandbox-down"], **env)
    assert down.returncode == 0, down.output
    assert "nothing left behind" in down.stdout
    assert World(name, subnet).leftovers() == []

    after = machine_snapshot()
    for kind in ("netns", "links", "addrs", "nat", "mounts"):
        added, removed = after[kind] - before[kind], before[kind] - after[kind]
        assert not added and not removed, f"{kind} differs: added {added}, removed {removed}"
    new_procs = [p for p in after["procs"] - before["procs"] if f"{name}-" in p or subnet.replace("0.0/16", "") in p]
    assert new_procs == []
    assert sandbox.ssh("lan", "true").returncode == 0


def test_overlapping_subnet_is_refused(sandbox: Sandbox) -> None:
    run = sandbox.command("overlap", [str(REPO / ".venv/bin/python"), "-m", "sandbox.world", "up"],
                          SANDBOX_NAME="sbxthree", SANDBOX_SUBNET=str(sandbox.world.subnet))
    assert run.returncode == 1
    assert "overlaps sandbox" in run.stderr
