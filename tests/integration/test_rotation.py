"""Rotations under load, each while two clients ask both LAN apps through nginx (no request fails),
each followed by a drift check that is in sync (the host holds what the stack now declares):

- `make rotate-restic` on the LAN host's offsite repository: the oldest and the newest snapshot
  restore with the new password, the old password opens nothing, the stack holds the new one;
- `make rotate-django-key` on rental_scheduler: a logged-in session made before is still logged in
  after (the old key is a fallback), the stack holds a new key and the old one as its fallback;
- `make rotate-secret` of two provider-issued secrets, the LAN host's alert webhook URL and the
  system-state repository's S3 key: each is checked from the host before the old one is to be
  revoked (the test message reaches the new URL only; restic answers with the new key);
- `make rotate-deploy-key` on shop_scheduler: the first run makes a new key and waits (exit 3) until
  it is registered on the forge, the second puts it in place; the old key, once deleted on the
  forge as the command says, fetches nothing;
- `make rotate-sudo-password GROUP=lan`: the admin's new password opens sudo, the old one does not,
  the stack holds both the password and its hash (the next drift check logs in with it)."""

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
    # the operator's own (NEW=stdin), shaped like the sandbox's canaries: hostile tests that run
    # after this one still find their metacharacters
    new = f"CANARY-rotated-restic-{secrets.token_hex(16)}{HOSTILE}"
    started = time.monotonic()
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        proc = subprocess.run(["make", "-s", "rotate-restic", "TARGET=postgres", "HOST=lan", "NEW=stdin"], cwd=REPO,
                              input=new + "\n", capture_output=True, text=True, timeout=900, check=False,
                              env={k: v for k, v in os.environ.items() if k != "PYINFRA_YES"})
        run = sandbox.keep("rotate-restic", Run(["make", "rotate-restic"], proc.returncode, proc.stdout,
                                                proc.stderr, time.monotonic() - started))
    assert run.returncode == 0, run.output[-3000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    assert rental.result.answered > 10 and shop.result.answered > 10
    assert sandbox.world.secret_values()["lan"]["backups"]["offsite"]["postgres"]["password"] == new
    assert new != old and new not in run.output and old not in run.output
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
    new = f"CANARY-rotated-django-key-{secrets.token_hex(24)}{HOSTILE}"  # the canaries' shape (NEW=stdin)
    assert before["user"] == "fixture-session" and cookie
    started = time.monotonic()
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        proc = subprocess.run(["make", "-s", "rotate-django-key", "APP=rental_scheduler", "NEW=stdin"], cwd=REPO,
                              input=new + "\n", capture_output=True, text=True, timeout=900, check=False,
                              env={k: v for k, v in os.environ.items() if k != "PYINFRA_YES"})
        run = sandbox.keep("rotate-django-key", Run(["make", "rotate-django-key"], proc.returncode, proc.stdout,
                                                    proc.stderr, time.monotonic() - started))
    assert run.returncode == 0, run.output[-3000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    assert rental.result.answered > 10 and shop.result.answered > 10
    assert "stays in DJANGO_SECRET_KEY_FALLBACKS until" in run.output
    stack = sandbox.world.secret_values()["lan"]["apps"]["rental_scheduler"]
    assert stack["secret_key"] == new != old and new not in run.output
    assert old in stack["secret_key_fallbacks"].values() and old not in run.output
    until = max(stack["secret_key_fallbacks"])
    # what the variable holds: every unexpired fallback, newest first (earlier rotations' too), the old key first
    fallbacks = ",".join(stack["secret_key_fallbacks"][u] for u in sorted(stack["secret_key_fallbacks"], reverse=True)
                         if datetime.strptime(u, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) > datetime.now(UTC))
    assert fallbacks.startswith(old)
    assert datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) > datetime.now(UTC)
    # the new key is live (the app's process has it, the old one as its fallback; compared on the host,
    # the values on stdin) and the session signed with the old one holds
    code = ("import sys; want = set(sys.stdin.read().split('\\n')); "
            "env = open(f'/proc/{sys.argv[1]}/environ', 'rb').read().decode().split('\\0'); "
            "print(len(want & set(env)))")
    pid = "$(systemctl show -p MainPID --value gunicorn-rental_scheduler)"
    live = sandbox.world.ssh("lan", f"python3 -c {shlex.quote(code)} {pid}", check=False,
                             input=f"DJANGO_SECRET_KEY={stack['secret_key']}\nDJANGO_SECRET_KEY_FALLBACKS={fallbacks}")
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
    old_app_url = stack["apps"]["rental_scheduler"]["discord_alerts"]["webhook_url"]
    new_app_url = f"{sandbox.world.webhook_base}/api/webhooks/1/rotated-{secrets.token_urlsafe(24)}"
    new_id, new_secret = f"CANARY-s3-id-{secrets.token_hex(8)}", f"CANARY-s3-{secrets.token_urlsafe(16)}{HOSTILE}"
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    seen = len(_webhook_paths(sandbox))
    runs = []
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        for key, value in (("lan.backups.alerts.webhook_url", new_url + "\n"),
                           ("lan.apps.rental_scheduler.discord_alerts.webhook_url", new_app_url + "\n"),
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
        assert all(v not in run.output for v in (new_url, new_secret, old_url, new_app_url, old_app_url))
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    # each test message went to its new URL, and nothing more to the old ones since
    posted = _webhook_paths(sandbox)[seen:]
    tokens = [u.rsplit("/", 1)[1] for u in (new_url, new_app_url)]
    assert posted and all(p.endswith(tuple(tokens)) for p in posted), posted
    assert all(any(p.endswith(t) for p in posted) for t in tokens), posted
    assert "the repository answers" in runs[2].output
    assert "rotate lan.apps.rental_scheduler.discord_alerts.webhook_url" in sandbox.ssh(
        "lan", "tail -n 5 /var/log/iac/history.jsonl").stdout
    now = sandbox.world.secret_values()["lan"]
    assert now["backups"]["alerts"]["webhook_url"] == new_url
    assert now["apps"]["rental_scheduler"]["discord_alerts"]["webhook_url"] == new_app_url
    assert now["backups"]["offsite"]["system_state"]["access_key_id"] == new_id
    assert now["backups"]["offsite"]["system_state"]["secret_access_key"] == new_secret
    assert sandbox.drift("drift-after-secret-rotations", "--limit", "lan").returncode == 0


def test_a_deploy_key_rotation_under_load_waits_for_the_git_host_then_switches(sandbox: Sandbox,
                                                                             converged: Run) -> None:
    key = "/home/shop_scheduler/.ssh/id_ed25519"
    old_pub = " ".join(sandbox.ssh("lan", f"cat {key}.pub").stdout.split()[:2])
    # what someone who copied the old key keeps (root's, outside the app's tree; removed below)
    sandbox.ssh("lan", f"install -m 600 {key} /root/iac-test-old-deploy-key")
    ip = sandbox.world.host_ip("lan")
    command = [str(REPO / ".venv/bin/python"), "-m", "cli.main", "-i", "sandbox/inventory.py", "rotate-deploy-key",
               "shop_scheduler"]
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    try:
        with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
            first = _run(sandbox, "rotate-deploy-key-1", command, env)
            assert first.returncode == 3, first.output[-2000:]
            new_pub = first.stdout.strip().splitlines()[-1]
            assert new_pub.startswith("ssh-ed25519 ") and old_pub not in new_pub
            again = _run(sandbox, "rotate-deploy-key-1-again", command, env)  # still unregistered: the same key
            assert again.returncode == 3 and again.stdout.strip().splitlines()[-1] == new_pub
            sandbox.world.register_key("shop_scheduler", new_pub)  # the operator, on the git host
            second = _run(sandbox, "rotate-deploy-key-2", command, env)
            assert second.returncode == 0, second.output[-2000:]
            said_old = second.stdout.strip().splitlines()[-1]
            assert said_old.startswith(old_pub)
            sandbox.world.unregister_key("shop_scheduler", said_old)  # the operator deletes the old one there
        assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                              shop.result.summary())
        assert " ".join(sandbox.ssh("lan", f"cat {key}.pub").stdout.split()[:2]) == " ".join(new_pub.split()[:2])
        assert sandbox.ssh("lan", f"ls {key}.new {key}.new.pub 2>/dev/null | wc -l").stdout.strip() == "0"
        # the copied old key fetches nothing any more; the app's new one does (and the drift check asks it)
        url = sandbox.world.repo_url("shop_scheduler")
        ssh = ("ssh -i /root/iac-test-old-deploy-key -o IdentitiesOnly=yes -o BatchMode=yes "
               "-o UserKnownHostsFile=/etc/iac/apps/shop_scheduler.known_hosts -o StrictHostKeyChecking=yes")
        refused = sandbox.ssh("lan", f"GIT_SSH_COMMAND={shlex.quote(ssh)} git ls-remote {url}", check=False)
        assert refused.returncode != 0 and "denied" in refused.stderr.lower(), refused.stderr[-500:]
        assert "rotate the deploy key of shop_scheduler" in sandbox.ssh(
            "lan", "tail -n 5 /var/log/iac/history.jsonl").stdout
        assert sandbox.drift("drift-after-deploy-key-rotation", "--limit", "lan").returncode == 0
    finally:
        sandbox.ssh("lan", "rm -f /root/iac-test-old-deploy-key")


def _run(sandbox: Sandbox, label: str, command: list[str], env: dict[str, str]) -> Run:
    started = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=env)
    return sandbox.keep(label, Run(command, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started))


def _sudo_opens(sandbox: Sandbox, login: str, password: str) -> bool:
    """Whether ``password`` opens sudo for ``login`` on the LAN host (asked afresh: -k)."""
    return sandbox.world.ssh("lan", f"runuser -u {login} -- sudo -S -k -p '' true", check=False,
                             input=password + "\n").returncode == 0


def test_a_sudo_password_rotation_under_load_proves_the_new_one_first(sandbox: Sandbox, converged: Run) -> None:
    stack = sandbox.world.secret_values()["lan"]
    old, old_hash = stack["connection"]["sudo_password"], stack["admin"]["password_hash"]
    login = sandbox.world.lan_admin()[0]
    assert _sudo_opens(sandbox, login, old)
    new = f"CANARY-connection.sudo_password-{secrets.token_hex(12)}{HOSTILE}"  # the canaries' shape
    ip = sandbox.world.host_ip("lan")
    command = [str(REPO / ".venv/bin/python"), "-m", "cli.main", "-i", "sandbox/inventory.py",
               "rotate-sudo-password", "lan"]
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        started = time.monotonic()
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, check=False, env=env,
                              input=new + "\n")
        run = sandbox.keep("rotate-sudo-password", Run(command, proc.returncode, proc.stdout, proc.stderr,
                                                       time.monotonic() - started))
    assert run.returncode == 0, run.output[-2000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    assert new not in run.output and old not in run.output
    assert _sudo_opens(sandbox, login, new) and not _sudo_opens(sandbox, login, old)
    now = sandbox.world.secret_values()["lan"]
    assert now["connection"]["sudo_password"] == new and now["admin"]["password_hash"] != old_hash
    assert sandbox.world.lan_admin()[1:] == (new, now["admin"]["password_hash"])  # the sandbox keeps the stack's
    assert "rotate the sudo password of gts" in sandbox.ssh("lan", "tail -n 3 /var/log/iac/history.jsonl").stdout
    assert sandbox.drift("drift-after-sudo-rotation", "--limit", "lan").returncode == 0
