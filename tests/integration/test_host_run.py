"""One run at a time per host, and a history of every run (iac/host_run.py), on the LAN host reached
as production reaches it (its admin, sudo with a password).

+ while another run holds the host's lock, an apply refuses before changing anything, naming the
  holder (who, from where, doing what); once that run ends, the apply goes through;
+ a run killed while it held the lock leaves no lock behind;
+ the apply's line in `make history` names who applied, what and the result; a plan (drift) adds
  no line and takes no lock.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from cli.validate import load_inventory
from iac.host_run import HostRun
from tests.integration.conftest import REPO, TIMINGS, Run, Sandbox, failure_excerpt

HOLD = """
import sys, time
from cli.validate import load_inventory
from iac.host_run import HostRun
name, data = load_inventory(__import__("pathlib").Path("sandbox/inventory.py"))["lan"][0]
HostRun(name, data, "holding for a test").acquire()
print("HELD", flush=True)
time.sleep(600)
"""


def lan_entry() -> tuple[str, dict]:
    return load_inventory(REPO / "sandbox/inventory.py")["lan"][0]


def history(sandbox: Sandbox, label: str) -> list[dict]:
    run = sandbox.command(label, ["make", "-s", "history", "HOST=lan", "FORMAT=json", "LINES=5"], cwd=REPO)
    assert run.returncode == 0, run.output[-2000:]
    return json.loads(run.stdout)["hosts"]["gts-server"]


def test_an_apply_beside_a_running_one_refuses_naming_it_then_goes_through(sandbox: Sandbox, converged: Run,
                                                                           monkeypatch) -> None:
    monkeypatch.setenv("IAC_OPERATOR", "first-operator")
    name, data = lan_entry()
    before = history(sandbox, "history-before-lock")
    holder = HostRun(name, data, "make release APP=rental_scheduler")
    holder.acquire()
    try:
        refused = sandbox.converge("apply-beside-a-holder", "--limit", "lan", IAC_OPERATOR="second-operator")
    finally:
        holder.release()
    assert refused.returncode != 0, failure_excerpt(refused)
    assert "another run holds the host's lock: first-operator (SHA256:" in refused.output
    assert "make release APP=rental_scheduler" in refused.output
    assert history(sandbox, "history-after-refusal") == before  # the refused run changed and wrote nothing

    started = time.monotonic()
    run = sandbox.converge("apply-after-the-holder", "--limit", "lan", IAC_OPERATOR="second-operator")
    TIMINGS["LAN: converged apply with lock and history"] = time.monotonic() - started
    assert run.returncode == 0, failure_excerpt(run)
    last = history(sandbox, "history-after-apply")[-1]
    assert (last["who"], last["what"], last["result"], last["host"]) == (
        "second-operator", "apply --limit lan", "applied", "gts-server")
    assert last["key"].startswith("SHA256:") and last["changed"] == [] and last["seconds"] > 0


def test_a_killed_runs_lock_is_gone_with_it(sandbox: Sandbox, converged: Run) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLD], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "HELD"
        name, data = lan_entry()
        try:
            HostRun(name, data, "second").acquire()
            raise AssertionError("a second run took a held lock")
        except Exception as exc:  # noqa: BLE001
            assert "holding for a test" in str(exc), exc
    finally:
        proc.send_signal(signal.SIGKILL)  # the run dies; its ssh session sees its stdin end
        proc.wait(timeout=10)
    name, data = lan_entry()
    deadline = time.monotonic() + 20
    while True:
        run = HostRun(name, data, "after a killed run")
        try:
            run.acquire()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    run.release()


def test_a_drift_check_takes_no_lock_and_adds_no_history(sandbox: Sandbox, converged: Run) -> None:
    name, data = lan_entry()
    before = history(sandbox, "history-before-drift")
    holder = HostRun(name, data, "a long release")
    holder.acquire()
    try:
        drift = sandbox.drift("drift-beside-a-holder", "--limit", "lan")
    finally:
        holder.release()
    assert drift.returncode == 0, drift.output[-3000:]
    assert history(sandbox, "history-after-drift") == before
