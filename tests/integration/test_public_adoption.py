"""Taking over the public host as the runbook built it, without losing a row.

The sandbox rebuilds the public host by hand the runbook's way (root, 0.0.0.0:8001, SQLite in
/root, nginx site `django`, a certbot certificate); one converge then adopts it while a client
keeps asking the site over HTTPS, and the longest outage is measured.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest

from tests.integration.conftest import (
    REPO,
    TIMINGS,
    Run,
    Sandbox,
    changed_operations,
    failure_excerpt,
    serial_after_change,
    served_serial,
)

ROWS = 25
SERIALS: dict[str, str] = {}


def _get(sandbox: Sandbox, path: str) -> subprocess.CompletedProcess:
    ip = sandbox.world.host_ip("public")
    return subprocess.run(["curl", "-sS", "-k", "--max-time", "3", "--resolve", f"pravoo.in:443:{ip}",
                           f"https://pravoo.in{path}"], capture_output=True, text=True, check=False)


class Prober(threading.Thread):
    """Asks https://pravoo.in/healthz every 0.2 s; records the longest run of failures."""

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.stop, self.longest, self.failures, self.requests = sandbox, False, 0.0, 0, 0

    def run(self) -> None:
        down_since = None
        deadline = time.monotonic() + 900  # bounded, whatever happens
        while not self.stop and time.monotonic() < deadline:
            ok = _get(self.sandbox, "/healthz").stdout == "ok"
            self.requests += 1
            now = time.monotonic()
            if ok and down_since is not None:
                self.longest = max(self.longest, now - down_since)
                down_since = None
            elif not ok:
                self.failures += 1
                down_since = down_since or now
            time.sleep(0.2)
        if down_since is not None:
            self.longest = max(self.longest, time.monotonic() - down_since)


@pytest.fixture(scope="module")
def adopted(sandbox: Sandbox, converged: Run) -> Run:
    legacy = sandbox.command("build-legacy-public", [str(REPO / ".venv/bin/python"), "-m", "sandbox.legacy",
                                                     "--rows", str(ROWS)])
    assert legacy.returncode == 0, legacy.output[-3000:]
    # the runbook's host, as it is today
    assert "<h1>chip_dashboard v1</h1>" in _get(sandbox, "/").stdout
    port = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                           "-H", "Host: pravoo.in", f"http://{sandbox.world.host_ip('public')}:8001/healthz"],
                          capture_output=True, text=True, check=False)
    assert port.stdout == "200", "the legacy host should expose gunicorn on 0.0.0.0:8001"

    SERIALS["before"] = served_serial(sandbox)
    prober = Prober(sandbox)
    prober.start()
    run = sandbox.command("adopt-public", [str(REPO / ".venv/bin/python"), "-m", "sandbox.converge"],
                          PYINFRA_PROGRESS="off")
    time.sleep(2)
    prober.stop = True
    prober.join()
    assert run.returncode == 0, failure_excerpt(run)
    TIMINGS["public: adoption converge"] = run.seconds
    TIMINGS["public: adoption, longest outage"] = prober.longest
    return run


def test_every_row_survives_and_the_new_release_serves(sandbox: Sandbox, adopted: Run) -> None:
    page = _get(sandbox, "/").stdout
    assert "<h1>chip_dashboard v2</h1>" in page
    assert int(re.search(r"rows: (\d+)", page).group(1)) == ROWS


def test_sqlite_file_was_backed_up_and_the_old_one_left_alone(sandbox: Sandbox, adopted: Run) -> None:
    backups = sandbox.ssh("public", "ls /var/backups/iac/chip_dashboard/").stdout.split()
    adopted_copies = [b for b in backups if b.startswith("adopted.db.sqlite3.")]
    assert len(adopted_copies) == 1
    count = sandbox.ssh("public", f"sqlite3 /var/backups/iac/chip_dashboard/{adopted_copies[0]} "
                                  "'select count(*) from core_chip'").stdout.strip()
    assert count == str(ROWS)
    assert sandbox.ssh("public", "test -f /root/Chips_dashboard/chip_dashboard/db.sqlite3",
                       check=False).returncode == 0


def test_port_8001_is_closed_and_gunicorn_is_not_root(sandbox: Sandbox, adopted: Run) -> None:
    port = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5",
                           f"http://{sandbox.world.host_ip('public')}:8001/"], capture_output=True, check=False)
    assert port.returncode != 0
    assert set(sandbox.ssh("public", "ps -o user= -C gunicorn").stdout.split()) == {"chip_dashboard"}
    assert "default" not in sandbox.ssh("public", "ls /etc/nginx/sites-enabled").stdout.split()


def test_certificate_renews_through_the_new_site_after_adoption(sandbox: Sandbox, adopted: Run) -> None:
    # The hand-made lineage renewed through /var/www/html, which the new `django` site does not
    # serve, and had no hook to reload nginx: the takeover re-issued it with the declared settings.
    assert serial_after_change(sandbox, SERIALS["before"]) != SERIALS["before"]
    conf = sandbox.ssh("public", "cat /etc/letsencrypt/renewal/pravoo.in.conf").stdout
    assert "webroot_path = /var/www/acme," in conf and "/var/www/html" not in conf
    assert "renew_hook = /usr/local/sbin/iac-tls-deploy-hook" in conf
    links = sandbox.ssh("public", "readlink /etc/iac/tls/pravoo.in/fullchain.pem").stdout.strip()
    assert links == "/etc/letsencrypt/live/pravoo.in/fullchain.pem"
    # what certbot.timer will do in 60 days, now: it succeeds and nginx serves the new certificate
    before = served_serial(sandbox)
    renew = sandbox.ssh("public", "REQUESTS_CA_BUNDLE=/etc/iac/acme-ca.pem certbot renew -q --force-renewal "
                                  # as the timer does, without its random wait of up to 8 minutes
                                  "--no-random-sleep-on-renew --cert-name pravoo.in", check=False)
    assert renew.returncode == 0, renew.stderr
    assert serial_after_change(sandbox, before) != before
    assert sandbox.ssh("public", "crontab -l 2>/dev/null | grep -c certbot || true").stdout.strip() == "0"


def test_adopted_host_is_converged(sandbox: Sandbox, adopted: Run) -> None:
    run, results = sandbox.converge_json("adopted-second-run")
    assert changed_operations(results) == []
    assert sandbox.drift("adopted-drift", "--limit", "public").returncode == 0
