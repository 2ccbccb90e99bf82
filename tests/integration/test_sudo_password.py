"""The LAN host's sudo password is never in a command line, an environment or the journal.

The sandbox reaches the LAN host as production does, as its admin ``gts`` with sudo and a password
(sandbox/inventory.py). While a drift check (pyinfra's facts, batched, through sudo) and an
operator command (`make backup-status`, iac/ssh.py) run, a poller on the host reads every
process's command line (which every local account can read) and environment, as fast as it can.
Then:

+ the poller saw the commands go through sudo (``sudo -H -S -p  -k ...``): it sampled while they ran;
+ no command line or environment it saw held the password, nor does the journal of that time;
+ pyinfra made no askpass script;
+ a run whose password sudo refuses stops with sudo's answer and changes nothing.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from stack.vault import own_vault
from tests.integration.conftest import REPO, SANDBOX_INVENTORY, TIMINGS, Run, Sandbox

POLL = "/root/iac-proc-poll"
POLLER = r"""
import os, sys
out, stop = sys.argv[1], sys.argv[2]
seen, scans = set(), 0
open(out + ".ready", "w").close()
while not os.path.exists(stop):
    scans += 1
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for kind in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{kind}", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if data:
                seen.add(kind.encode() + b" " + data.replace(b"\0", b" ").replace(b"\n", b" "))  # one line each
with open(out + ".tmp", "wb") as f:
    f.write(str(scans).encode() + b"\n" + b"\n".join(sorted(seen)))
os.rename(out + ".tmp", out)
"""


def password_of(sandbox: Sandbox) -> str:
    return sandbox.world.secret_values()["lan"]["connection"]["sudo_password"]


@pytest.fixture(scope="module")
def polled(sandbox: Sandbox, converged: Run) -> tuple[list[Run], int, list[bytes], str]:
    """(the runs, the poller's scans, every command line and environment it saw, the journal then)."""
    sandbox.world.ssh("lan", f"rm -rf {POLL}*; cat > {POLL}.py", input=POLLER)
    since = int(sandbox.ssh("lan", "date +%s").stdout)
    sandbox.ssh("lan", f"setsid python3 {POLL}.py {POLL}.out {POLL}.stop </dev/null >{POLL}.log 2>&1 &")
    runs = []
    try:
        sandbox.ssh("lan", f"for i in $(seq 100); do [ -e {POLL}.out.ready ] && exit 0; sleep 0.1; done; exit 1")
        started = time.monotonic()
        runs.append(sandbox.drift("drift-through-sudo-polled", "--limit", "lan"))
        TIMINGS["LAN: drift through sudo, host polled"] = time.monotonic() - started
        runs.append(sandbox.command("backup-status-through-sudo",
                                    [str(REPO / ".venv/bin/python"), "-m", "cli.backups", SANDBOX_INVENTORY,
                                     "status", "--format", "json"]))
    finally:
        sandbox.ssh("lan", f"touch {POLL}.stop; for i in $(seq 100); do [ -e {POLL}.out ] && exit 0; sleep 0.1; "
                           f"done; cat {POLL}.log >&2; exit 1")
        raw = sandbox.world.ssh("lan", f"base64 -w0 {POLL}.out; rm -rf {POLL}*").stdout
    scans, *seen = base64.b64decode(raw).split(b"\n")
    journal = sandbox.ssh("lan", f"journalctl --no-pager -o cat --since @{since}").stdout
    return runs, int(scans), seen, journal


def test_the_runs_went_through_sudo_and_the_poller_saw_them(polled) -> None:
    runs, scans, seen, _ = polled
    drift, status = runs
    assert drift.returncode == 0, drift.output[-3000:]
    assert status.returncode in (0, 2), status.output[-3000:]  # fresh or stale: it answered from the host
    assert json.loads(status.stdout)
    through_sudo = [line for line in seen if line.startswith(b"cmdline sudo -H -S -p  -k ")]
    assert scans > 20 and len(through_sudo) >= 2, (scans, len(seen))
    # the PostgreSQL fact too: as postgres (runuser) inside the admin's sudo
    assert any(b"runuser -u postgres -- psql" in line for line in through_sudo)


def test_no_command_line_environment_or_journal_line_held_the_password(sandbox: Sandbox, polled) -> None:
    _, _, seen, journal = polled
    password = password_of(sandbox)
    token = password.split(" ", 1)[0]  # CANARY-connection.sudo_password-<random>
    assert token.startswith("CANARY-connection.sudo_password-")
    assert [line[:80] for line in seen if token.encode() in line] == []
    assert not [line[:80] for line in seen if b"askpass" in line.lower()]
    assert token not in journal and "sudo" in journal  # sudo logged its commands, without the password


def test_a_wrong_password_stops_the_run_with_sudos_answer(sandbox: Sandbox, converged: Run, tmp_path) -> None:
    """The inventory reads the password from the secrets file; a copy of the sandbox with a wrong
    one in its file gets sudo's refusal, and the host is left as it was."""
    vault = own_vault(sandbox.world.dir)  # the sandbox's encrypted stack (stack/vault.py)
    original = vault.cipher.read_bytes()
    data = json.loads(vault.read())
    data["lan"]["connection"]["sudo_password"] = "CANARY-connection.sudo_password-wrong"
    try:
        vault.write(json.dumps(data).encode())
        run = sandbox.drift("drift-wrong-sudo-password", "--limit", "lan")
    finally:
        vault.cipher.write_bytes(original)
    assert run.returncode == 1, run.output[-2000:]
    assert "incorrect password" in run.output or "Sorry, try again" in run.output or "no password" in run.output, \
        run.output[-2000:]
