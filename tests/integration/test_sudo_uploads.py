"""Through sudo, as production reaches the LAN host, no file pyinfra uploads is readable by other accounts.

The LAN host is reached as its admin ``gts`` with ``_sudo`` and the sandbox's canary sudo password
(as every sandbox run does, sandbox/inventory.py). pyinfra stages each upload as ``gts`` and then
``sudo cp``s it into place; by default it staged in /tmp, readable by every local account
(iac/pyinfra_ext/sudo_staging.py says why it no longer does). Here three secret files on the host differ from
the declared ones, so the converge must upload each again, while a watcher on the host
(inotify_capture.py, as root) copies every file written under /tmp, /var/tmp, /dev/shm and the
admin's home. Then:

+ the run succeeded, through sudo with the password (sudo logged gts's commands);
+ each secret file was uploaded in this run: its canary is in a file the watcher copied from the
  private staging directory (so the same watch on /tmp would have caught it there);
+ no file written under /tmp, /var/tmp or /dev/shm held any canary of the secrets file, and the
  sudo password is in no file written anywhere watched;
+ a drift check through sudo finds the host in sync.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
import time
from pathlib import Path

import pytest

from iac.pyinfra_ext import sudo_staging
from stack.secrets import all_secret_values
from tests.integration.conftest import TIMINGS, Run, Sandbox, failure_excerpt

ADMIN = "gts"
STAGING = sudo_staging.staging_dir(ADMIN)
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
# each holds secrets of its own: an app's secret key, the restic password, the alert webhook URL
SECRET_FILES = {"/etc/gts/apps/rental_scheduler.env": ("apps", "rental_scheduler", "secret_key"),
                "/etc/gts/backup/restic.env": ("backups", "offsite", "postgres", "password"),
                "/etc/iac/backup-alert.env": ("backups", "alerts", "webhook_url")}
OUT = "/root/iac-inotify-capture"


def canary(value: str) -> str:
    """What is searched for: the canary token (a hostile value is escaped in an env file, a URL
    carries the token as its last part), else the value whole (the admin's password hash)."""
    return m.group(0) if (m := re.search(r"CANARY-[\w.-]+", value)) else value


def lookup(values: dict, path: tuple) -> str:
    for part in path:
        values = values[part]
    return values  # type: ignore[return-value]


@pytest.fixture(scope="module")
def watched(sandbox: Sandbox, converged: Run) -> tuple[Run, list[dict], dict[int, bytes], float]:
    """The converge through sudo, watched: (run, the watcher's index, captures by number, start)."""
    for path in SECRET_FILES:  # still valid, but no longer what is declared: uploaded again
        sandbox.ssh("lan", f"echo '# changed by test_sudo_uploads' >> {path}")
    sandbox.ssh("lan", f"rm -rf {OUT} {OUT}.py && install -d -m 700 {OUT}")
    sandbox.world.ssh("lan", f"cat > {OUT}.py", input=(Path(__file__).parent / "inotify_capture.py").read_text())
    # the admin's whole home: the staging directory may not exist yet (the run makes it)
    dirs = " ".join([*WORLD_WRITABLE, f"/home/{ADMIN}"])
    pid = sandbox.ssh("lan", f"setsid python3 {OUT}.py {OUT} {dirs} </dev/null >{OUT}.log 2>&1 & echo $!").stdout
    pid = pid.strip()
    try:
        sandbox.ssh("lan", f"for i in $(seq 100); do [ -e {OUT}/ready ] && exit 0; sleep 0.1; done; "
                           f"cat {OUT}.log >&2; exit 1")
        started = time.time()
        run = sandbox.converge("converge-through-sudo-watched", "--limit", "lan")
        TIMINGS["LAN: converge through sudo (3 secret files)"] = run.seconds
    finally:
        sandbox.ssh("lan", f"kill {pid}; for i in $(seq 100); do [ -e {OUT}/done ] && exit 0; sleep 0.1; done; "
                           f"cat {OUT}.log >&2; exit 1")
        packed = sandbox.ssh("lan", f"tar -C {OUT} -cf - . | base64 -w0; rm -rf {OUT} {OUT}.py {OUT}.log").stdout
    captures: dict[int, bytes] = {}
    index: list[dict] = []
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(packed))) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name.isdigit():
                captures[int(name)] = tar.extractfile(member).read()  # type: ignore[union-attr]
            elif name == "index.jsonl":
                index = [json.loads(line) for line in tar.extractfile(member).read().splitlines()]  # type: ignore[union-attr]
    return run, index, captures, started


def secrets_of(sandbox: Sandbox) -> dict:
    return sandbox.world.secret_values()


def test_converge_through_sudo_succeeds_as_the_admin(sandbox: Sandbox, watched) -> None:
    run, index, _, started = watched
    assert run.returncode == 0, failure_excerpt(run)
    # it was gts, with sudo and the password (the admin has no NOPASSWD rule): sudo logged its commands
    log = sandbox.ssh("lan", f"journalctl --no-pager -o cat --since @{int(started)} _COMM=sudo").stdout
    assert f"{ADMIN} : PWD=" in log and "USER=root" in log, log[-2000:]
    assert sandbox.ssh("lan", f"sudo -l -U {ADMIN}").stdout.count("NOPASSWD") == 0
    # the files it uploaded are back as declared
    for path in SECRET_FILES:
        assert sandbox.ssh("lan", f"grep -c 'changed by test_sudo_uploads' {path}", check=False).stdout.strip() == "0"
    assert not [e for e in index if e["event"] in ("overflow", "unwatchable")], "the watcher saw everything"


def test_each_secret_file_was_uploaded_through_the_private_staging_directory(sandbox: Sandbox, watched) -> None:
    """The positive control: the watcher read every secret file this run uploaded, in the
    staging directory. Staged in /tmp, as pyinfra does by default, the test below would fail."""
    _, index, captures, _ = watched
    secrets = secrets_of(sandbox)["lan"]
    staged = [e for e in index if e["path"].startswith(f"{STAGING}/") and "n" in e]
    for path, option in SECRET_FILES.items():
        token = canary(lookup(secrets, option)).encode()
        holders = [e for e in staged if token in captures[e["n"]]]
        assert holders, f"{path}: no staged upload held its secret (was it uploaded in this run?)"
        assert all(e["path"].rsplit("/", 1)[1].startswith("pyinfra-") for e in holders)
    # the directory is the admin's alone, and pyinfra left nothing in it
    mode = sandbox.ssh("lan", f"stat -c '%U %a' {STAGING}").stdout.strip()
    assert mode == f"{ADMIN} 700"
    assert sandbox.ssh("lan", f"ls -A {STAGING}").stdout == ""
    assert sandbox.ssh("lan", f"runuser -u www-data -- ls {STAGING}", check=False).returncode != 0


def test_no_world_writable_directory_ever_held_a_secret(sandbox: Sandbox, watched) -> None:
    _, index, captures, _ = watched
    secrets = secrets_of(sandbox)
    tokens = [canary(v) for v in all_secret_values(secrets)]
    password = secrets["lan"]["connection"]["sudo_password"]
    assert canary(password) in tokens and len(tokens) >= 8
    public = [e for e in index if e["path"].startswith(tuple(f"{d}/" for d in WORLD_WRITABLE))]
    leaks = [(e["path"], t[:30]) for e in public if "n" in e for t in tokens if t.encode() in captures[e["n"]]]
    assert leaks == []
    assert not [e["path"] for e in public if e["event"] == "missed"], "files gone before the watcher opened them"
    assert not [e["path"] for e in public if "/pyinfra-" in e["path"]], "pyinfra staged a file in a public directory"
    # the sudo password is in no file at all, the staging directory's included (it goes to sudo -S
    # on stdin; no askpass script is made)
    everywhere = [e["path"] for e in index if "n" in e and
                  any(p.encode() in captures[e["n"]] for p in (password, canary(password)))]
    assert everywhere == []
    # and not in what sudo logged of the commands it ran
    log = sandbox.ssh("lan", f"journalctl --no-pager -o cat --since @{int(watched[3])}").stdout
    assert [t[:30] for t in tokens if t in log] == []


def test_drift_through_sudo_is_zero_after_the_converge(sandbox: Sandbox, watched) -> None:
    assert watched[0].returncode == 0
    run = sandbox.drift("drift-through-sudo", "--limit", "lan")
    TIMINGS["LAN: drift through sudo"] = run.seconds
    assert run.returncode == 0, run.output[-3000:]
