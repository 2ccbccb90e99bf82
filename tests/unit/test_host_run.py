"""The run lock and the history line (iac/host_run.py, iac/pyinfra_ext/run_lock.py), the lock's
script run by this machine's sh and flock on files in a temporary directory.
tests/integration/test_host_run.py holds a lock on the sandbox's LAN host and applies beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from iac import host_run
from iac.pyinfra_ext import run_lock

HOSTILE = "eve $(touch /tmp/pwned) `id` ' \" \\ ; \n\x1b[31m"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(host_run, "LOCK", str(tmp_path / "run" / "run.lock"))
    monkeypatch.setattr(host_run, "HOLDER", str(tmp_path / "run" / "run.holder"))
    return tmp_path


def _hold(holder: dict, wait: int = 0) -> subprocess.Popen:
    proc = subprocess.Popen(["sh", "-c", host_run.lock_script(holder, wait)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc


def test_one_run_holds_the_lock_a_second_is_refused_naming_the_first(here: Path) -> None:
    first = _hold({"who": HOSTILE, "from": "laptop", "since": "2026-12-05T04:00:00Z", "what": "apply", "key": "k"})
    assert first.stdout.readline().strip() == "LOCKED"
    second = _hold({"who": "bob"})
    out, _ = second.communicate(timeout=10)
    assert second.returncode == 75 and out.startswith("HELD ")
    said = host_run.describe_holder(out.strip())
    assert said.startswith("eve $(touch /tmp/pwned) `id` ' \" \\ ; [31m (k) from laptop, since 2026-12-05T04:00:00Z")
    assert not (Path("/tmp/pwned").exists() and Path("/tmp/pwned").stat().st_mtime > time.time() - 60)
    first.stdin.close()  # the run ends: its session's stdin closes
    assert first.wait(timeout=10) == 0
    third = _hold({"who": "carol"})
    assert third.stdout.readline().strip() == "LOCKED"
    third.stdin.close()
    third.wait(timeout=10)


def test_a_killed_runs_lock_goes_with_its_session(here: Path) -> None:
    first = _hold({"who": "alice"})
    assert first.stdout.readline().strip() == "LOCKED"
    os.killpg(first.pid, signal.SIGKILL)  # the run and its session die at once
    first.wait(timeout=10)
    # the shell is reaped at once; its child holding the lock a moment later (the kernel kills a
    # group's processes one by one): the lock is free within a second, never left behind
    deadline = time.monotonic() + 5
    while True:
        second = _hold({"who": "bob"})
        if second.stdout.readline().strip() == "LOCKED":
            break
        second.wait(timeout=10)
        assert time.monotonic() < deadline, "the killed run's lock was left behind"
        time.sleep(0.1)
    second.stdin.close()
    second.wait(timeout=10)


def test_with_a_wait_the_second_run_takes_the_lock_when_the_first_ends(here: Path) -> None:
    first = _hold({"who": "alice"})
    assert first.stdout.readline().strip() == "LOCKED"
    second = _hold({"who": "bob"}, wait=20)
    time.sleep(0.5)
    assert second.poll() is None  # waiting
    first.stdin.close()
    assert second.stdout.readline().strip() == "LOCKED"
    second.stdin.close()
    second.wait(timeout=10)
    first.wait(timeout=10)


def test_a_holder_that_did_not_say_who_is_still_named_as_a_run() -> None:
    assert host_run.describe_holder("HELD ") == "another run (it did not say who)"
    assert host_run.describe_holder("HELD {not json") == "another run (it did not say who)"


def test_the_history_line_has_who_what_result_and_time_and_no_control_characters(monkeypatch) -> None:
    monkeypatch.setenv("IAC_OPERATOR", HOSTILE)
    run = host_run.HostRun("gts-server", {"ssh_hostname": "x"}, "release app " + "v" * 500, started=time.time() - 3)
    record = run.record("applied", ["Base | packages", "x\ny"])
    assert set(record) == {"when", "host", "who", "key", "from", "what", "result", "changed", "seconds"}
    assert record["who"] == "eve $(touch /tmp/pwned) `id` ' \" \\ ; [31m" and len(record["what"]) == 300
    assert record["changed"] == ["Base | packages", "xy"] and 2.5 < record["seconds"] < 10
    assert "\n" not in json.dumps(record)


def test_a_plan_takes_no_lock() -> None:
    assert run_lock.dry_run(["sandbox/inventory.py", "deploy.py", "--dry", "--json"], {})
    assert run_lock.dry_run(["inventory.py", "deploy.py"], {"PYINFRA_DRY": "true"})
    assert not run_lock.dry_run(["inventory.py", "deploy.py", "-y"], {})


def test_the_operator_is_named_by_the_environment_else_git_else_the_login(monkeypatch) -> None:
    monkeypatch.setenv("IAC_OPERATOR", "Asha")
    assert host_run.operator() == "Asha"
    monkeypatch.delenv("IAC_OPERATOR")
    assert host_run.operator()
