"""Rotations under load, each while two clients ask both LAN apps through nginx (no request fails),
each followed by a drift check that is in sync (the host holds what the stack now declares):

- `make rotate-restic` on the LAN host's offsite repository: the oldest and the newest snapshot
  restore with the new password, the old password opens nothing, the stack holds the new one;
- `make rotate-django-key` on rental_scheduler: a logged-in session made before is still logged in
  after (the old key is a fallback), the stack holds a new key and the old one as its fallback;
- `make rotate-secret` of two provider-issued secrets, the LAN host's alert webhook URL and the
  system-state repository's S3 key: each is checked from the host before the old one is to be
  revoked (the test message reaches the new URL only; restic answers with the new key)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shlex
import subprocess
import time
from datetime import UTC, datetime

from sandbox.world.common import HOSTILE
from tests.integration.conftest import REPO, Run, Sandbox
from tests.integration.load import Load

ENV_FILE = "/etc/gts/backup/restic.env"
ENGINE = "/usr/local/sbin/iac-backup"


def restic_on_lan(sandbox: Sandbox, args: str, password: str | None = None) -> subprocess.CompletedProcess:
    """restic on the LAN host with the env file's settings; ``password`` (on stdin) instead of its own."""
    if password is None:  # the repository's own helper (operations/backups: env_helper)
        return sandbox.world.ssh("lan", f"cd / && /usr/local/sbin/restic-postgres-env.sh restic {args}", check=False)
    inner = f'IFS= read -r p; RESTIC_PASSWORD="$p" exec restic {args}'
    return sandbox.world.ssh("lan", f"cd / && {ENGINE} env-exec {ENV_FILE} -- sh -c {shlex.quote(inner)}",
                             check=False, input=password + "\n")


def test_a_restic_password_rotation_under_load_loses_nothing(sandbox: Sandbox, converged: Run) -> None:
    old = sandbox.world.secret_values()["lan"]["backups"]["offsite"]["postgres"]["password"]
    for _ in range(2):  # two snapshots at least (through the unit, with its env file): oldest and newest differ
        sandbox.ssh("lan", f"{ENGINE} dump >/dev/null")  # new dumps: restic skips a copy of unchanged files
        sandbox.ssh("lan", "systemctl start restic-postgres.service")
    snapshots = sorted(json.loads(restic_on_lan(sandbox, "snapshots --json").stdout), key=lambda s: s["time"])
    assert len(snapshots) >= 2
    ip = sandbox.world.host_ip("lan")
    started = time.monotonic()
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        proc = subprocess.run(["make", "-s", "rotate-restic", "TARGET=postgres", "HOST=lan"], cwd=REPO,
                              capture_output=True, text=True, timeout=900, check=False,
                              env={k: v for k, v in os.environ.items() if k != "PYINFRA_YES"})
        run = sandbox.keep("rotate-restic", Run(["make", "rotate-restic"], proc.returncode, proc.stdout,
                                                proc.stderr, time.monotonic() - started))
    assert run.returncode == 0, run.output[-3000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    assert rental.result.answered > 10 and shop.result.answered > 10
    new = sandbox.world.secret_values()["lan"]["backups"]["offsite"]["postgres"]["password"]
    assert new != old and len(new) >= 32 and new not in run.output and old not in run.output
    assert "wrong password" in restic_on_lan(sandbox, "cat config", password=old).stderr
    for snap in (snapshots[0], snapshots[-1]):
        target = f"/var/tmp/iac-rotation-restore-{snap['short_id']}"
        restored = restic_on_lan(sandbox, f"restore {snap['id']} --target {target}")
        try:
            assert restored.returncode == 0, restored.stderr[-1000:]
            assert sandbox.ssh("lan", f"find {target} -name '*.dump' | wc -l").stdout.strip() != "0"
        finally:
            sandbox.ssh("lan", f"rm -rf {target}")
    assert restic_on_lan(sandbox, "key list --json").stdout.count('"id"') == 1  # only the new key is left
    assert sandbox.drift("drift-after-restic-rotation", "--limit", "lan").returncode == 0


def _session(ip: str, port: int, cookie: str | None, query: str = "") -> tuple[dict, str | None]:
    """GET /session/ through nginx as the LAN name, with ``cookie``; the answer and the session cookie."""
    connection = http.client.HTTPConnection(ip, port, timeout=30)
    try:
        headers = {"Host": "gts-server.lan"} | ({"Cookie": f"sessionid={cookie}"} if cookie else {})
        connection.request("GET", f"/session/{query}", headers=headers)
        answer = connection.getresponse()
        body = answer.read().decode()
        assert answer.status == 200, (answer.status, body[:500])
        set_cookie = [v for k, v in answer.getheaders() if k.lower() == "set-cookie" and v.startswith("sessionid=")]
        return json.loads(body), set_cookie[0].split(";")[0].split("=", 1)[1] if set_cookie else cookie
    finally:
        connection.close()


def test_a_django_key_rotation_under_load_keeps_logged_in_sessions(sandbox: Sandbox, converged: Run) -> None:
    ip = sandbox.world.host_ip("lan")
    old = sandbox.world.secret_values()["lan"]["apps"]["rental_scheduler"]["secret_key"]
    before, cookie = _session(ip, 8001, None, "?login=1")
    assert before["user"] == "fixture-session" and cookie
    started = time.monotonic()
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        proc = subprocess.run(["make", "-s", "rotate-django-key", "APP=rental_scheduler"], cwd=REPO,
                              capture_output=True, text=True, timeout=900, check=False,
                              env={k: v for k, v in os.environ.items() if k != "PYINFRA_YES"})
        run = sandbox.keep("rotate-django-key", Run(["make", "rotate-django-key"], proc.returncode, proc.stdout,
                                                    proc.stderr, time.monotonic() - started))
    assert run.returncode == 0, run.output[-3000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    assert rental.result.answered > 10 and shop.result.answered > 10
    assert "stays in DJANGO_SECRET_KEY_FALLBACKS until" in run.output
    stack = sandbox.world.secret_values()["lan"]["apps"]["rental_scheduler"]
    assert stack["secret_key"] != old and len(stack["secret_key"]) >= 50 and stack["secret_key"] not in run.output
    assert old in stack["secret_key_fallbacks"].values() and old not in run.output
    until = max(stack["secret_key_fallbacks"])
    assert datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) > datetime.now(UTC)
    # the new key is live (the app's process has it, the old one as its fallback; compared on the host,
    # the values on stdin) and the session signed with the old one holds
    code = ("import sys; want = set(sys.stdin.read().split('\\n')); "
            "env = open(f'/proc/{sys.argv[1]}/environ', 'rb').read().decode().split('\\0'); "
            "print(len(want & set(env)))")
    pid = "$(systemctl show -p MainPID --value gunicorn-rental_scheduler)"
    live = sandbox.world.ssh("lan", f"python3 -c {shlex.quote(code)} {pid}", check=False,
                             input=f"DJANGO_SECRET_KEY={stack['secret_key']}\nDJANGO_SECRET_KEY_FALLBACKS={old}")
    assert live.stdout.strip() == "2", live.stderr[-500:]
    after, kept = _session(ip, 8001, cookie)
    assert after["user"] == "fixture-session" and after["n"] == before["n"] + 1, (before, after)
    history = sandbox.ssh("lan", "tail -n 3 /var/log/iac/history.jsonl").stdout
    assert "rotate the secret key of rental_scheduler" in history, history
    assert sandbox.drift("drift-after-django-key-rotation", "--limit", "lan").returncode == 0


def _webhook_paths(sandbox: Sandbox) -> list[str]:
    log = sandbox.world.webhook_log
    return [json.loads(line)["path"] for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def test_provider_issued_secrets_rotate_under_load_checked_from_the_host(sandbox: Sandbox, converged: Run) -> None:
    ip = sandbox.world.host_ip("lan")
    stack = sandbox.world.secret_values()["lan"]
    old_url = stack["backups"]["alerts"]["webhook_url"]
    new_url = f"{sandbox.world.webhook_base}/api/webhooks/2/rotated-{secrets.token_urlsafe(24)}"
    new_id, new_secret = f"CANARY-s3-id-{secrets.token_hex(8)}", f"CANARY-s3-{secrets.token_urlsafe(16)}{HOSTILE}"
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    seen = len(_webhook_paths(sandbox))
    runs = []
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        for key, value in (("lan.backups.alerts.webhook_url", new_url + "\n"),
                           ("lan.backups.offsite.system_state.access_key", f"{new_id}\n{new_secret}\n")):
            started = time.monotonic()
            proc = subprocess.run(["make", "-s", "rotate-secret", f"KEY={key}"], cwd=REPO, input=value,
                                  capture_output=True, text=True, timeout=900, check=False, env=env)
            runs.append(sandbox.keep(f"rotate-secret-{key}", Run(["make", "rotate-secret", key], proc.returncode,
                                                                 proc.stdout, proc.stderr,
                                                                 time.monotonic() - started)))
    for run in runs:
        assert run.returncode == 0, run.output[-3000:]
        assert "now delete the old" in run.output
        assert new_url not in run.output and new_secret not in run.output and old_url not in run.output
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    # the test message went to the new URL, and nothing more to the old one since
    posted = _webhook_paths(sandbox)[seen:]
    assert posted and all(p.endswith(new_url.rsplit("/", 1)[1]) for p in posted), posted
    assert "the repository answers" in runs[1].output
    now = sandbox.world.secret_values()["lan"]
    assert now["backups"]["alerts"]["webhook_url"] == new_url
    assert now["backups"]["offsite"]["system_state"]["access_key_id"] == new_id
    assert now["backups"]["offsite"]["system_state"]["secret_access_key"] == new_secret
    assert sandbox.drift("drift-after-secret-rotations", "--limit", "lan").returncode == 0
