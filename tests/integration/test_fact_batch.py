"""Batched facts on the real sandbox hosts: the same values as pyinfra's own, in a few commands.

iac/pyinfra_ext/fact_batch.py gathers every fact a host asked for last time in one command per sudo/user
setting. These tests prove, on both converged hosts, that (1) each batched value equals what
pyinfra's own one-command fetch returns, and (2) a converged drift check then runs at most 12
remote commands per host (the issue's goal; it was 92 and 177 before batching) and still says
"in sync".
"""

from __future__ import annotations

import ipaddress
import json

from cli.bench import remote_commands
from iac.pyinfra_ext import fact_batch, fact_calls
from tests.integration.conftest import HOSTNAMES, REPO, SANDBOX_INVENTORY, Sandbox


def test_every_batched_fact_equals_pyinfras_own_fetch(sandbox: Sandbox, converged) -> None:
    run = sandbox.command("fact-batch-check", [str(REPO / ".venv/bin/pyinfra"), SANDBOX_INVENTORY,
                                               "tests/fixtures/deploys/fact_batch_check.py", "--dry"],
                          PYINFRA_PROGRESS="off")
    assert run.returncode == 0, run.output[-3000:]
    checks = {c["host"]: c for line in run.stdout.splitlines() if line.startswith("FACT-BATCH-CHECK ")
              for c in [json.loads(line.split(" ", 1)[1])]}
    assert set(checks) == set(HOSTNAMES.values())
    for host, check in checks.items():
        assert check["differ"] == [], f"{host}: batched values differ from pyinfra's own"
        # every recorded fact came back from the batch (none failed into the slow path)
        assert check["recorded"] >= 50 and check["batched"] == check["recorded"], check


def test_a_converged_drift_check_runs_at_most_12_remote_commands_per_host(sandbox: Sandbox, converged) -> None:
    run = sandbox.command("plan-debug", [str(REPO / ".venv/bin/python"), "-m", "iac.pyinfra_ext.plan_runner",
                                         SANDBOX_INVENTORY,
                                         "deploy.py", "--dry", "--json", "--debug"], PYINFRA_PROGRESS="off")
    assert run.returncode == 0, run.stderr[-3000:]
    plan = json.loads(run.stdout)["plan"]
    assert not any(op["hosts_with_change"] for op in plan), "the sandbox should be converged here"
    counts = remote_commands(run.stderr)
    assert set(counts) == set(HOSTNAMES.values())
    assert all(n <= 12 for n in counts.values()), counts


def test_without_batching_the_plan_is_the_same(sandbox: Sandbox, converged) -> None:
    """IAC_PYINFRA_EXT=off: pyinfra's own code paths, one command per fact; the same operations and verdict
    (the plan runner's report hooks stay: iac/pyinfra_ext/__init__.py)."""
    def plan(label: str, **env: str) -> dict:
        run = sandbox.command(label, [str(REPO / ".venv/bin/python"), "-m", "iac.pyinfra_ext.plan_runner",
                                      SANDBOX_INVENTORY,
                                      "deploy.py", "--dry", "--diff", "--json", "--limit", "public"],
                              PYINFRA_PROGRESS="off", **env)
        assert run.returncode == 0, run.stderr[-3000:]
        ops = json.loads(run.stdout)["plan"]
        return {(name, op["op_hash"].count("-")): (h in op["hosts_with_change"], op["host_details"].get(h))
                for op in ops for h, name in op["host_names"].items()}

    assert plan("plan-unbatched", IAC_PYINFRA_EXT="off") == plan("plan-batched")


def test_records_hold_fact_names_and_arguments_only(sandbox: Sandbox, converged) -> None:
    records = [p for p in sorted(fact_batch.RECORD_DIR.glob("*@*.json"))
               if ipaddress.ip_address(p.name.split("@")[1].rsplit(".", 2)[0].split(":")[0]) in sandbox.world.subnet]
    # both hosts (and any replica of the public one that test_scale.py or a bench made)
    assert {p.name.split("@")[0] for p in records} >= set(HOSTNAMES.values()), records
    for path in records:
        for entry in json.loads(path.read_text()):
            assert set(entry) == {"fact", "kwargs", "executor", "unused"}
            assert fact_batch.entry_refusal(entry) is None, entry  # what a run records, the next accepts
            assert not any(word in name for name in entry["kwargs"] for word in fact_calls.SECRET_ARGUMENTS
                           if entry["kwargs"][name])


def test_a_poisoned_fact_record_is_refused_with_a_message_and_never_runs(sandbox: Sandbox, converged) -> None:
    """A record entry naming pyinfra's Command fact (CI restores records from a shared cache): the
    drift gate says it ignored it, naming the file, and the host never runs it."""
    path = next(p for p in sorted(fact_batch.RECORD_DIR.glob("srv1178562@*.deploy.json"))
                if p.name.split("@")[1].startswith(sandbox.world.host_ip("public") + "."))
    marker = "/root/iac-poisoned-record"
    sandbox.ssh("public", f"rm -f {marker}")
    entries = json.loads(path.read_text())
    entries.append({"fact": "pyinfra.facts.server:Command", "kwargs": {"command": f"touch {marker}"},
                    "executor": {"_sudo": True}, "unused": 0})
    path.write_text(json.dumps(entries))
    run = sandbox.drift("drift-poisoned-record", "--limit", "public")
    assert run.returncode == 0, run.output[-3000:]
    [said] = [line for line in run.stderr.splitlines() if "fact record" in line]
    assert f"fact record .cache/facts/{path.name}: entry ignored, never run:" in said
    assert "pyinfra.facts.server:Command" in said and "(not a fact class of this repository)" in said
    assert sandbox.ssh("public", f"test -e {marker}", check=False).returncode == 1
    # the record written after the run leaves it out
    assert "pyinfra.facts.server:Command" not in path.read_text()
