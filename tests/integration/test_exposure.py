"""What each host exposes: exactly the declared TCP ports, sshd by key only, and changes to sshd
or the packet filter that would lock the operator out are reverted.

The port scan runs from this machine against each sandbox host's address (bounded: ports
1-1024, the usual service ranges, every 97th port above and the declared ones, in parallel,
short timeouts); a listener started on the host on
an undeclared port proves the scan would see one that the filter let through.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from stack.load import build_host_config
from tests.integration.conftest import REPO, Run, Sandbox

DECLARED = {"public": {22, 80, 443}, "lan": {22, 8001, 8002}}
GROUP_HOST = {"public": "srv1178562", "lan": "gts-server"}


async def _open_ports(address: str, ports: list[int], timeout: float = 0.7, parallel: int = 400) -> set[int]:
    gate = asyncio.Semaphore(parallel)

    async def probe(port: int) -> int | None:
        async with gate:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            except (TimeoutError, OSError):
                return None
            writer.close()
            return port

    return {p for p in await asyncio.gather(*(probe(p) for p in ports)) if p is not None}


def test_declared_ports_are_derived_from_the_model() -> None:
    for group, ports in DECLARED.items():
        assert set(build_host_config(group, GROUP_HOST[group]).open_tcp_ports()) == ports


@pytest.mark.parametrize("role", ["public", "lan"])
def test_only_the_declared_ports_answer_from_outside(sandbox: Sandbox, converged: Run, role: str) -> None:
    # an undeclared listener on the host: the filter, not its absence, must hide it
    sandbox.ssh(role, "systemd-run --unit=iac-test-listener --quiet python3 -m http.server 8765 --bind 0.0.0.0")
    try:
        assert sandbox.ssh(role, "for i in $(seq 50); do curl -s -o /dev/null localhost:8765 && exit 0; "
                                 "sleep 0.1; done; exit 1", check=False).returncode == 0
        # every privileged port, the usual service ranges, the listener and the declared ones, and
        # a fixed sample of the rest (a full 1-65535 scan costs ~2 min per host at the filter's
        # silent drop; the filter's rule is one default, not a list of ports)
        sample = set(range(1, 1025)) | set(range(3000, 3010)) | set(range(5000, 5010)) | set(range(5432, 5440)) | \
            set(range(8000, 8100)) | set(range(8765, 8766)) | set(range(9000, 9010)) | set(range(1025, 65536, 97))
        ports = sorted(sample | DECLARED[role])
        found = asyncio.run(_open_ports(sandbox.world.host_ip(role), ports))
    finally:
        sandbox.ssh(role, "systemctl stop iac-test-listener", check=False)
    assert found == DECLARED[role], f"{role}: reachable {sorted(found)}"


@pytest.mark.parametrize("role", ["public", "lan"])
def test_sshd_refuses_password_login(sandbox: Sandbox, converged: Run, role: str) -> None:
    r = subprocess.run(["ssh", "-F", str(sandbox.world.ssh_config), "-o", "BatchMode=yes", "-o", "ControlPath=none",
                        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive",
                        f"{sandbox.world.name}-{role}", "true"],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode != 0 and "Permission denied (publickey)" in r.stderr, r.stderr
    effective = sandbox.ssh(role, "sshd -T | grep -E '^(passwordauthentication|kbdinteractiveauthentication) '").stdout
    assert effective.split() == ["passwordauthentication", "no", "kbdinteractiveauthentication", "no"]


def _lockout(sandbox: Sandbox, kind: str) -> Run:
    return sandbox.command(f"lockout-{kind}", [str(REPO / ".venv/bin/pyinfra"), "sandbox/inventory.py",
                                               "tests/fixtures/deploys/lockout.py", "--limit", "public", "-y"],
                           LOCKOUT_KIND=kind, PYINFRA_PROGRESS="off")


@pytest.mark.parametrize(("kind", "path"), [("sshd", "/etc/ssh/sshd_config.d/00-iac.conf"),
                                            ("nft", "/etc/nftables.conf")])
def test_a_change_that_locks_the_operator_out_is_reverted(sandbox: Sandbox, converged: Run, kind: str,
                                                          path: str) -> None:
    before = sandbox.ssh("public", f"sha256sum {path}").stdout
    table = sandbox.ssh("public", "nft list table inet iac").stdout
    run = _lockout(sandbox, kind)
    assert run.returncode != 0
    assert "REVERTED" in run.output and "could not get in" in run.output, run.output[-3000:]
    # the host is reachable with a new connection, and holds the previous configuration
    assert sandbox.ssh("public", f"sha256sum {path}").stdout == before
    assert sandbox.ssh("public", "nft list table inet iac").stdout == table
    assert sandbox.ssh("public", "systemctl list-timers --all | grep -c iac-revert || true").stdout.strip() == "0"


def test_drift_names_a_reenabled_password_login_and_an_opened_port(sandbox: Sandbox, converged: Run) -> None:
    sandbox.ssh("public", "sed -i 's/^PasswordAuthentication no/PasswordAuthentication yes/' "
                          "/etc/ssh/sshd_config.d/00-iac.conf && systemctl reload ssh && "
                          "nft add rule inet iac input tcp dport 8080 accept")
    drift = sandbox.command("drift-exposure", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                               "sandbox/inventory.py", "--limit", "public"])
    assert drift.returncode == 2, drift.output[-2000:]
    assert "srv1178562: sshd: password login refused" in drift.stdout
    assert "srv1178562: packet filter: inbound dropped except tcp 22, 80, 443" in drift.stdout
    fixed = sandbox.converge("repair-exposure", "--limit", "public")
    assert fixed.returncode == 0, fixed.output[-3000:]
    assert "passwordauthentication no" in sandbox.ssh("public", "sshd -T").stdout
    assert "8080" not in sandbox.ssh("public", "nft list table inet iac").stdout
    again = sandbox.command("drift-exposure-repaired", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                                        "sandbox/inventory.py", "--limit", "public"])
    assert again.returncode == 0, again.output[-2000:]
