"""The watch on the sandbox hosts (iac-watch.service, watch_engine/): each condition an operator
must hear about reaches the host's webhook exactly once, through the real unit, its env file and
the Discord stand-in: a certificate inside the declared days, a full disk, a dump that stopped
arriving, a failed certbot renewal (certbot.service's OnFailure= drop-in).

Each case runs the installed unit with a runtime drop-in (gone at the end) that points it at a
copy of its settings narrowed to the one check and with a threshold the sandbox meets, and its own
record of what was told: the declared settings and record are never touched."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.integration.conftest import Run, Sandbox

UNIT = "iac-watch.service"
DROP_IN = f"/run/systemd/system/{UNIT}.d/iac-test.conf"
WORK = "/run/iac-test-watch"


@contextmanager
def narrowed_watch(sandbox: Sandbox, role: str, **changes: object) -> Iterator[None]:
    """The installed watch unit, run on a copy of its settings with ``changes``."""
    edit = ("import json; s = json.load(open('/etc/iac/watch.json')); "
            f"s.update(json.loads({json.dumps(json.dumps(changes))})); s['state'] = '{WORK}/told.json'; "
            f"json.dump(s, open('{WORK}/watch.json', 'w'))")
    sandbox.ssh(role, f"rm -rf {WORK} && install -d -m 700 {WORK} && python3 -c {shlex.quote(edit)} && "
                      f"mkdir -p {DROP_IN.rsplit('/', 1)[0]} && printf '[Service]\\nExecStart=\\n"
                      f"ExecStart=/usr/bin/python3 /usr/local/lib/iac/iac_watch.py --settings {WORK}/watch.json "
                      "check\\n'"
                      f" > {DROP_IN} && systemctl daemon-reload")
    try:
        yield
    finally:
        sandbox.ssh(role, f"rm -rf {DROP_IN} {WORK} && systemctl daemon-reload && systemctl reset-failed {UNIT}",
                    check=False)


def told_after_two_runs(sandbox: Sandbox, role: str) -> list[str]:
    """What the webhook got from two runs of the watch (the second must add nothing)."""
    before = len(sandbox.webhook_messages())
    for _ in range(2):
        sandbox.ssh(role, f"systemctl start {UNIT}")
        assert sandbox.ssh(role, f"systemctl show -p Result --value {UNIT}").stdout.strip() == "success"
    return sandbox.webhook_messages()[before:]


def test_a_converged_host_has_nothing_to_tell(sandbox: Sandbox, converged: Run) -> None:
    for role in ("public", "lan"):
        out = sandbox.ssh(role, "python3 /usr/local/lib/iac/iac_watch.py status", check=False)
        assert out.returncode == 0, (role, out.stdout, out.stderr)
        state = sandbox.ssh(role, "systemctl is-enabled iac-watch.timer; systemctl is-active iac-watch.timer",
                            check=False).stdout.split()
        assert state == ["enabled", "active"], (role, state)


def test_a_certificate_inside_its_declared_days_is_told_once(sandbox: Sandbox, converged: Run) -> None:
    # the sandbox's certificates (pebble's) are years from their end: a threshold beyond it
    with narrowed_watch(sandbox, "public", cert_days=100000, disks=[], backup_engine=""):
        new = told_after_two_runs(sandbox, "public")
    assert len(new) == 1, new
    assert new[0].startswith("Certificate for pravoo.in on srv1178562 expires in "), new


def test_a_disk_above_its_declared_use_is_told_once(sandbox: Sandbox, converged: Run) -> None:
    with narrowed_watch(sandbox, "lan", certificates=[], disks=["/"], disk_percent=0, backup_engine=""):
        new = told_after_two_runs(sandbox, "lan")
    assert len(new) == 1 and new[0].startswith("Disk / on gts-server is "), new


def test_a_dump_that_stopped_arriving_is_told_once(sandbox: Sandbox, converged: Run) -> None:
    newest = sandbox.ssh("lan", "ls -1t /mnt/pg_backups/postgres/db/gts_scheduler/*.dump 2>/dev/null | head -1 || "
                                "true").stdout.strip()
    if not newest:  # the timer has not run yet on this sandbox: a dump as it makes them
        sandbox.ssh("lan", "iac-backup dump >/dev/null 2>&1")
        newest = sandbox.ssh("lan", "ls -1t /mnt/pg_backups/postgres/db/gts_scheduler/*.dump | head -1").stdout.strip()
    stamp = sandbox.ssh("lan", f"stat -c %Y {shlex.quote(newest)}").stdout.strip()
    sandbox.ssh("lan", f"touch -d '3 days ago' {shlex.quote(newest)}")
    try:
        with narrowed_watch(sandbox, "lan", certificates=[], disks=[]):
            new = told_after_two_runs(sandbox, "lan")
    finally:
        sandbox.ssh("lan", f"touch -d @{stamp} {shlex.quote(newest)}")
    assert len(new) == 1, new
    assert new[0].startswith("Backups on gts-server are STALE: gts_scheduler newest dump is 7"), new


def test_a_failed_certificate_renewal_is_told_once(sandbox: Sandbox, converged: Run) -> None:
    drop_in = "/run/systemd/system/certbot.service.d/iac-test-fail.conf"
    before = len(sandbox.webhook_messages())
    sandbox.ssh("public", f"mkdir -p {drop_in.rsplit('/', 1)[0]} && printf '[Service]\\nExecStart=\\n"
                          f"ExecStart=/bin/false\\n' > {drop_in} && systemctl daemon-reload && "
                          "systemctl start certbot.service || true")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(sandbox.webhook_messages()) == before:
            time.sleep(1)
        time.sleep(5)  # anything more would have come by now
        new = sandbox.webhook_messages()[before:]
    finally:
        sandbox.ssh("public", f"rm -f {drop_in} && systemctl daemon-reload && systemctl reset-failed certbot.service",
                    check=False)
    assert len(new) == 1 and new[0].startswith("Certificate renewal FAILED on srv1178562: certbot.service."), new
