"""iac/pyinfra_ext/host_users.py prints what pyinfra's ``server.Users`` loop prints, or steps aside.

The byte-for-byte comparison runs both on this machine (Debian 12, as root: /etc/shadow is read
as on the hosts); the integration test test_fact_batch.py compares the parsed facts on both
sandbox hosts. The stage tests feed the cases a host may have and this machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pyinfra.facts.server import Users

from iac.pyinfra_ext import fact_batch, host_users, shared_facts
from iac.pyinfra_ext.fact_batch import FactCall, split_lines
from iac.pyinfra_ext.host_users import Unsure, dedup_groups, stage_lastlog, stage_read_passwd, stage_shadow

SCRIPT = Path(host_users.__file__)


def _sh(command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False, env=env)


def _differing_users(a: str, b: str) -> list[str]:
    """Names of users whose lines differ (never the lines: they hold password hashes)."""
    la, lb = a.splitlines(), b.splitlines()
    names = [x.split(":", 1)[0] for x, y in zip(la, lb, strict=False) if x != y]
    return names + (["(line count)"] if len(la) != len(lb) else [])


def test_the_script_prints_pyinfras_output_byte_for_byte_here() -> None:
    if os.geteuid() != 0:
        pytest.skip("reads /etc/shadow as the hosts' root does")
    own = _sh(Users().command())
    fast = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout == own.stdout, _differing_users(own.stdout, fast.stdout)
    assert len(fast.stdout.splitlines()) >= 10


class LocalHost:
    """Runs a fact batch in ``sh`` on this machine."""

    name = "local"

    def run_shell_command(self, command, **_: object):  # noqa: ANN001, ANN201
        proc = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, check=False)
        return True, types.SimpleNamespace(stdout_lines=split_lines(proc.stdout))


USERS = FactCall("pyinfra.facts.server:Users", {}, {})


def test_in_a_batch_the_engine_runner_gives_the_same_fact_as_pyinfras_loop() -> None:
    """In a batch the script runs inside the one python3 of the engine runner (iac/pyinfra_ext/shared_facts.py)."""
    own = _sh(Users().command()).stdout
    assert shared_facts.shared_for(USERS, None)[0].name == "engine calls"  # (its own command is not needed)
    values = fact_batch.gather(None, LocalHost(), [USERS])
    assert values[USERS.key] == Users().process(own.splitlines())


def test_where_the_script_steps_aside_pyinfras_own_loop_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    # a script that is "not sure" (exit 3): the batch leaves the fact out, and pyinfra's own loop
    # fetches it the normal way
    monkeypatch.setattr(shared_facts, "_source", lambda fact: "import sys\nprint('partial')\nsys.exit(3)\n")
    assert USERS.key not in fact_batch.gather(None, LocalHost(), [USERS])


@pytest.mark.parametrize(("line", "why"), [
    ("first.last:x:1000:1000::/home/f:/bin/sh", "a '.' is any character to grep"),
    ("a*:x:1000:1000::/home/a:/bin/sh", "a glob in the loop's word list"),
    ("ann:x:1000:1000:C:\\cpath:/home/a:/bin/sh", "dash's echo reads backslashes"),
    ("User:x:1000:1000::/home/u:/bin/sh", "grep ^User also matches lastlog's header"),
    ("short:x:1000", "not 7 fields"),
])
def test_unusual_passwd_entries_make_it_step_aside(line: str, why: str) -> None:
    with pytest.raises(Unsure):
        stage_read_passwd(f"root:x:0:0:root:/root:/bin/bash\n{line}\n")


def test_duplicate_names_make_it_step_aside() -> None:
    with pytest.raises(Unsure):
        stage_read_passwd("a:x:1:1::/:/bin/sh\na:x:2:2::/:/bin/sh\n")
    with pytest.raises(Unsure):
        stage_shadow("a:$6$x:1::::::\na:$6$y:1::::::\n", ["a"])


def test_shadow_and_lastlog_are_read_as_the_loop_reads_them() -> None:
    assert stage_shadow("root:$6$abc:19000:0:99999:7:::\nab:!:1::::::\n", ["root", "a"]) == {"root": "$6$abc"}
    assert stage_shadow(None, ["root"]) == {}  # unreadable: the loop's grep prints nothing
    text = ("Username         Port     From             Latest\n"
            "root             pts/0    10.0.0.1         Thu Dec  3 10:00:00 +0000 2026\n"
            "ab               **Never logged in**\n")
    assert stage_lastlog(text, ["root", "ab", "nobody"]) == {
        "root": "root pts/0 10.0.0.1 Thu Dec 3 10:00:00 +0000 2026", "ab": "ab **Never logged in**"}


def test_group_list_keeps_gnulibs_order_and_drops_only_its_duplicates() -> None:
    assert dedup_groups([100, 27, 100, 4, 4, 27]) == [100, 27, 4, 27]
    assert dedup_groups([5]) == [5]
