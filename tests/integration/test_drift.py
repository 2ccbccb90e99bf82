"""The drift gate: 0 in sync, 2 when a host differs (naming what), 1 on error."""

from __future__ import annotations

from tests.integration.conftest import REPO, SANDBOX_INVENTORY, TIMINGS, Run, Sandbox


def test_converged_hosts_are_in_sync(sandbox: Sandbox, converged: Run) -> None:
    sandbox.converge("pre-drift-converge")
    run = sandbox.drift("drift-converged")
    TIMINGS["drift gate on converged hosts"] = run.seconds
    assert run.returncode == 0, run.output
    assert "in sync" in run.stdout


def test_changed_file_and_removed_package_are_drift_and_a_run_restores_them(
        sandbox: Sandbox, converged: Run) -> None:
    """One scenario, one check: each change is named; the check repairs nothing; one run does."""
    sandbox.ssh("lan", "echo Europe/Paris > /etc/timezone")
    sandbox.ssh("public", "sed -i 's/^127.0.1.1.*/127.0.1.1 somethingelse/' /etc/hosts")
    sandbox.ssh("public", "DEBIAN_FRONTEND=noninteractive apt-get -qq remove -y rsync >/dev/null")
    run = sandbox.drift("drift-after-edit")
    assert run.returncode == 2, run.output
    assert "gts-server: Base system | Time zone name in /etc/timezone" in run.stdout
    assert "srv1178562: Base system | Local names in /etc/hosts" in run.stdout
    assert "srv1178562: Base system | Packages for the base system" in run.stdout
    # the drift check itself must not have repaired anything
    assert sandbox.ssh("lan", "cat /etc/timezone").stdout == "Europe/Paris\n"

    restore = sandbox.converge("restore-after-drift")
    assert restore.returncode == 0, restore.output[-3000:]
    assert sandbox.ssh("lan", "cat /etc/timezone").stdout == "Etc/UTC\n"
    assert sandbox.drift("drift-after-restore").returncode == 0


def test_unreachable_git_remote_is_an_error_not_drift(sandbox: Sandbox, converged: Run) -> None:
    """The revision's commit cannot be asked: the gate cannot tell, so it says so (exit 1, with
    ssh's reason), instead of reporting a release as pending."""
    forge = sandbox.world.host_ip("forge")
    sandbox.ssh("public", f"ip route add blackhole {forge}/32")
    try:
        run = sandbox.command("drift-forge-down", [str(REPO / ".venv/bin/python"), "-m", "iac.drift",
                                                   SANDBOX_INVENTORY, "--limit", "public"])
    finally:
        sandbox.ssh("public", f"ip route del blackhole {forge}/32", check=False)
    assert run.returncode == 1, run.output
    assert "chip_dashboard: cannot ask" in run.stderr and "ssh: connect to host" in run.stderr, run.stderr


def test_unreachable_host_is_an_error_not_in_sync(sandbox: Sandbox, converged: Run) -> None:
    world = sandbox.world
    world.stop_host("public")
    try:
        run = sandbox.drift("drift-host-down")
        assert run.returncode == 1, run.output
        assert "srv1178562" in run.stderr and "Could not connect" in run.stderr
    finally:
        world.boot("public")
        world.wait_booted("public")
    assert sandbox.drift("drift-host-back").returncode == 0
