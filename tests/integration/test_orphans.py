"""Removing an app from group_data removes it from the host, keeping its data.

The shop app (and its database and role) taken out of group_data/lan.py in a copy of the
repository: the preview (drift) lists its units, site, logrotate file, env file and user as
deletions and its database and directories as retained; one run removes exactly those while the
rental app keeps answering through nginx; the next check is clean. Afterwards the app is declared
again (its user recreated with its old uid first, as an operator restoring it would) and serves
the same release, which was kept.
"""

from __future__ import annotations

import copy
import subprocess
import threading
import time
from pathlib import Path

from stack.load import read_group_file
from tests.integration.conftest import REPO, Run, Sandbox, failure_excerpt, repo_copy

APP, USER, DB = "shop_scheduler", "shop_scheduler", "gts_shop_scheduler"


def _without_shop(copy_dir: Path) -> None:
    values = copy.deepcopy(read_group_file(REPO / "group_data/lan.py"))
    del values["apps"][APP]
    values["postgres"]["roles"].remove("shop_scheduler_user")
    del values["postgres"]["databases"][DB]
    (copy_dir / "group_data/lan.py").write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))


class Poller(threading.Thread):
    """Asks the rental app through nginx every 0.2 s; counts answers that are not 200."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.ok, self.failed = url, threading.Event(), 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            got = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                  self.url], capture_output=True, text=True, check=False).stdout
            if got == "200":
                self.ok += 1
            else:
                self.failed.append(got)
            time.sleep(0.2)


def test_removing_an_app_deletes_its_units_site_files_and_user_and_keeps_its_data(
        sandbox: Sandbox, converged: Run, tmp_path: Path) -> None:
    copy_dir = repo_copy(tmp_path)
    _without_shop(copy_dir)
    uid, gid = (sandbox.ssh("lan", f"id -{flag} {USER}").stdout.strip() for flag in ("u", "g"))
    try:
        preview = sandbox.command("orphans-preview", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                                      "sandbox/inventory.py", "--limit", "lan"], cwd=copy_dir)
        assert preview.returncode == 2, preview.output[-3000:]
        for line in ("- delete unit gunicorn-shop_scheduler.service (app shop_scheduler)",
                     "- delete unit gunicorn-shop_scheduler.socket (app shop_scheduler)",
                     "- delete file /etc/nginx/sites-enabled/shop_scheduler (app shop_scheduler)",
                     "- delete file /etc/logrotate.d/gts-shop_scheduler (app shop_scheduler)",
                     "- delete file /etc/gts/apps/shop_scheduler.env (app shop_scheduler)",
                     "- delete user shop_scheduler (app shop_scheduler)",
                     "retained database gts_shop_scheduler: data is not deleted; to remove it: "
                     "runuser -u postgres -- dropdb gts_shop_scheduler",
                     "retained directory /srv/releases/shop_scheduler (app shop_scheduler)"):
            assert line in preview.stdout, (line, preview.stdout[-4000:])
        assert "rental_scheduler (app" not in preview.stdout

        poller = Poller(f"http://{sandbox.world.host_ip('lan')}:8001/")
        poller.start()
        try:
            run = sandbox.converge("orphans-apply", "--limit", "lan", cwd=copy_dir)
        finally:
            poller.stop.set()
            poller.join()
        assert run.returncode == 0, failure_excerpt(run)
        assert poller.ok > 0 and poller.failed == [], poller.failed  # the other app never stopped answering

        gone = sandbox.ssh("lan", "for p in /etc/systemd/system/gunicorn-shop_scheduler.service "
                                  "/etc/systemd/system/gunicorn-shop_scheduler.socket /etc/nginx/sites-enabled/"
                                  "shop_scheduler /etc/nginx/sites-available/shop_scheduler "
                                  "/etc/logrotate.d/gts-shop_scheduler /etc/gts/apps/shop_scheduler.env "
                                  "/etc/iac/apps/shop_scheduler.release; do test -e $p && echo $p; done; "
                                  f"id {USER} 2>/dev/null; systemctl is-active gunicorn-shop_scheduler", check=False)
        assert gone.stdout.strip() == "inactive", gone.stdout
        refused = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                  f"http://{sandbox.world.host_ip('lan')}:8002/"], capture_output=True, text=True,
                                 check=False).stdout
        assert refused == "000"  # nothing listens on the shop's port any more
        kept = sandbox.ssh("lan", "ls -d /srv/releases/shop_scheduler /home/shop_scheduler /srv/apps/shop_scheduler "
                                  f"&& runuser -u postgres -- psql -Atc \"select 1 from pg_database where "
                                  f"datname = '{DB}'\"", check=False)
        assert kept.returncode == 0 and kept.stdout.strip().endswith("1"), kept.stdout + kept.stderr

        after = sandbox.command("orphans-drift", [str(REPO / ".venv/bin/python"), "-m", "cli.drift",
                                                  "sandbox/inventory.py", "--limit", "lan"], cwd=copy_dir)
        assert after.returncode == 0, after.output[-3000:]
    finally:
        # declared again: the user with its old ids (its files, home and releases are its own), then a run
        sandbox.ssh("lan", f"getent group {USER} >/dev/null || groupadd -r -g {gid} {USER}; id -u {USER} "
                           f">/dev/null 2>&1 || useradd -r -u {uid} -g {gid} -M -d /home/{USER} "
                           f"-s /usr/sbin/nologin {USER}", check=False)
        back = sandbox.converge("orphans-app-back", "--limit", "lan")
        assert back.returncode == 0, failure_excerpt(back)
    page = subprocess.run(["curl", "-s", "--max-time", "10", f"http://{sandbox.world.host_ip('lan')}:8002/"],
                          capture_output=True, text=True, check=False).stdout
    assert "<h1>shop_scheduler v2</h1>" in page
