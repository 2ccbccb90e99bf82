"""The first converge layer on both hosts: what is declared is what the hosts do."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.conftest import HOSTNAMES, TIMINGS, Run, Sandbox, changed_operations

ROLES = ["public", "lan"]


def test_second_run_reports_zero_changes(sandbox: Sandbox, converged: Run) -> None:
    run, results = sandbox.converge_json("second-converge")
    TIMINGS["converged run (no changes)"] = run.seconds
    assert changed_operations(results) == []
    assert results["results"]["totals"]["error"] == 0


@pytest.mark.parametrize("role", ROLES)
def test_hostname_is_applied_live_and_persisted(sandbox: Sandbox, converged: Run, role: str) -> None:
    host = sandbox.host(role)
    assert host.check_output("hostname") == HOSTNAMES[role]
    assert host.file("/etc/hostname").content_string.strip() == HOSTNAMES[role]
    # the host resolves its own name locally (sudo and many daemons need this)
    assert host.check_output(f"getent hosts {HOSTNAMES[role]}").split()[0] == "127.0.1.1"


def test_lan_friendly_name_resolves_on_the_host(sandbox: Sandbox, converged: Run) -> None:
    host = sandbox.host("lan")
    assert host.check_output("getent hosts gts-server.lan").split()[0] == "127.0.1.1"


@pytest.mark.parametrize("role", ROLES)
def test_time_zone_is_in_effect(sandbox: Sandbox, converged: Run, role: str) -> None:
    host = sandbox.host(role)
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.file("/etc/timezone").content_string == "Etc/UTC\n"
    assert host.check_output("date +%Z") == "UTC"


@pytest.mark.parametrize("role", ROLES)
def test_base_packages_are_installed(sandbox: Sandbox, converged: Run, role: str) -> None:
    host = sandbox.host(role)
    for pkg in ["git", "sudo", "curl", "rsync", "tzdata", "openssh-server"]:
        assert host.package(pkg).is_installed, pkg
    assert host.service("ssh").is_running


@pytest.mark.parametrize(("role", "admin"), [("public", "ops"), ("lan", "gts")])
def test_admin_logs_in_with_key_and_is_in_sudo(sandbox: Sandbox, converged: Run, role: str,
                                               admin: str) -> None:
    host = sandbox.host(role)
    user = host.user(admin)
    assert user.exists and "sudo" in user.groups and user.shell == "/bin/bash"
    assert host.file(f"/home/{admin}").user == admin
    world = sandbox.world
    # Logins by non-root users wait for /run/nologin to go (systemd-user-sessions); seen briefly
    # right after the first converge's package installs on a fresh host.
    sandbox.ssh(role, "for i in $(seq 60); do [ -e /run/nologin ] || exit 0; sleep 0.5; done; exit 1")
    # a real login as the admin with the sandbox key, host key pinned
    proc = subprocess.run(
        ["ssh", "-i", str(world.ssh_key), "-o", f"UserKnownHostsFile={world.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         f"{admin}@{world.host_ip(role)}", "id -un"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == admin
