"""Bad values in group_data/ stop a real pyinfra run before any host is contacted.

Each case runs `pyinfra sandbox/inventory.py deploy.py` from a copy of the repository whose
group_data/lan.py is broken, against the running sandbox. Proof that nothing ran remotely: the
hosts' sshd logs no new login during the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import REPO, Sandbox, repo_copy

CASES = {
    "unknown-key": ('admin["shel"] = "/bin/zsh"\n',
                    ["group_data/lan.py", "unknown option 'admin.shel'", "did you mean 'shell'"]),
    "wrong-type": ('base = {"apt_cache_hours": "daily"}\n',
                   ["group_data/lan.py", "option 'base.apt_cache_hours'", "valid integer",
                    "example of a valid value: 24"]),
    "missing-required": ("del admin\n",
                         ["required option 'admin.name' has no value", "group_data/lan.py",
                          "admin = {'name': 'gts'}"]),
}


def logins(sandbox: Sandbox, role: str) -> int:
    """sshd's count of accepted logins so far (the counting login itself included)."""
    out = sandbox.world.ssh(role, "journalctl -u ssh.service --no-pager -o cat | grep -c '^Accepted' || true",
                            multiplex=False)
    return int(out.stdout.strip() or 0)


@pytest.fixture
def copy(tmp_path: Path, sandbox: Sandbox) -> Path:
    return repo_copy(tmp_path)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_group_data_stops_before_any_host_is_contacted(sandbox: Sandbox, copy: Path,
                                                           case: str) -> None:
    addition, expected = CASES[case]
    lan = copy / "group_data/lan.py"
    lan.write_text(lan.read_text() + addition)
    before = {role: logins(sandbox, role) for role in ("public", "lan")}

    run = sandbox.command(f"bad-input-{case}", [str(REPO / ".venv/bin/pyinfra"),
                                                "sandbox/inventory.py", "deploy.py", "-y"],
                          cwd=copy)

    assert run.returncode != 0
    for text in expected:
        assert text in run.output, f"{text!r} missing from:\n{run.output}"
    assert "Traceback" not in run.output
    assert "Connecting to hosts" not in run.output
    after = {role: logins(sandbox, role) for role in ("public", "lan")}
    # exactly one new login per host: the one that counted
    assert {r: after[r] - before[r] for r in after} == {"public": 1, "lan": 1}


def test_drift_gate_reports_bad_config_as_error(sandbox: Sandbox, copy: Path) -> None:
    lan = copy / "group_data/lan.py"
    lan.write_text(lan.read_text() + CASES["unknown-key"][0])
    run = sandbox.command("drift-bad-config", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                               "sandbox/inventory.py"], cwd=copy)
    assert run.returncode == 1
    assert "unknown option 'admin.shel'" in run.stderr
