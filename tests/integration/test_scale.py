"""A second host of the public group is a configuration change, proven on a real machine.

The sandbox makes a replica of its public host (bare Debian, the public host's release, with an address of its own:
``python -m sandbox.world public-hosts 2``). With ``SANDBOX_PUBLIC_HOSTS=2`` the sandbox
inventory holds it in the public group as ``public-r2``, with the values a second VPS would set
under ``hosts`` in group_data/public.py: its own domain and offsite repository. No code knows
about it. Its preview on the bare machine lists creations (no error: a fresh server cannot ask
the git remote yet), one bootstrap converge serves the app over HTTPS for its own domain with a
certificate from the ACME stand-in, and then the whole group (both hosts) is in sync. The
replica is stopped at the end; its disk is removed by teardown with the rest of the sandbox.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, TIMINGS, Run, Sandbox, failure_excerpt

REPLICA = "public-r2"
TWO = {"SANDBOX_PUBLIC_HOSTS": "2"}


@pytest.fixture(scope="module")
def replica(sandbox: Sandbox, converged) -> Iterator[str]:
    world = sandbox.world
    world.ensure_public_hosts(2)
    world.reset_host("public2")  # bare, whatever an earlier session left on its disk
    world.ensure_replica_dns()
    yield "public2"
    world.ensure_public_hosts(1)


@pytest.fixture(scope="module")
def replica_converged(sandbox: Sandbox, replica: str) -> Run:
    run = sandbox.command("replica-converge", [str(REPO / ".venv/bin/python"), "-m", "sandbox.converge",
                                               "--limit", REPLICA], PYINFRA_PROGRESS="off", **TWO)
    assert run.returncode == 0, failure_excerpt(run)
    TIMINGS["second public host: bare Debian to HTTPS (its own domain)"] = run.seconds
    return run


def test_the_preview_of_a_bare_second_host_lists_what_it_will_create(sandbox: Sandbox, replica: str) -> None:
    run = sandbox.drift("replica-preview", "--limit", REPLICA, **TWO)
    assert run.returncode == 2, run.output[-3000:]
    assert "ERROR" not in run.output, run.output[-3000:]
    assert f"+ {REPLICA}: chip_dashboard" in run.stdout and "to add" in run.stdout, run.stdout[-3000:]
    assert "srv1178562:" not in run.stdout  # --limit: the first host is not in this preview


def test_the_second_host_serves_its_own_domain_over_https(sandbox: Sandbox, replica_converged: Run,
                                                          pebble_root: Path) -> None:
    world = sandbox.world
    domain, ip = world.replica_domain(2), world.host_ip("public2")
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "--resolve", f"{domain}:443:{ip}",
                        "--cacert", str(pebble_root), f"https://{domain}/"],
                       capture_output=True, text=True, check=False, timeout=60)
    assert r.returncode == 0, r.stderr  # a certificate for its own name, verified against pebble's root
    assert "<h1>chip_dashboard" in r.stdout
    host = sandbox.host("public2")
    assert host.check_output("cat /etc/hostname") == REPLICA
    assert host.service("broker_portal.socket").is_running


def test_the_whole_group_is_in_sync_after_one_converge(sandbox: Sandbox, replica_converged: Run) -> None:
    run = sandbox.drift("drift-public-group", "--limit", "public", **TWO)
    assert run.returncode == 0, run.output[-3000:]
    assert "in sync" in run.stdout
