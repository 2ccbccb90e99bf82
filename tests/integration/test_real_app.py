"""A Django app shaped like a real one nobody here wrote (sandbox/fixtures/apps/pinger, shaped
like healthchecks.io) deploys through group_data alone: gunicorn from extra_requirements, its own
health URL, `manage.py compress` as a release command (without it every page is a 500), its own
static directory and SECRET_KEY variable (with the wrong name it silently runs on an insecure
default), and a `sendalerts` worker as its own unit. A damaged live release is drift and is
rebuilt; a failing release command keeps the old release serving. Runs on the public host, in
a copy of the repository whose group_data declares the app; afterwards a run of the repository
itself removes the app as an orphan.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, TIMINGS, Run, Sandbox, failure_excerpt, repo_copy
from tests.unit.test_app_extras import PINGER as APP_SHAPE

# the shape the model's tests validate (tests/unit/test_app_extras.py), at the fixture's v2; the
# sandbox puts its forge's URL and host key in place of the source's. A second TLS site on the
# public host: it shares 80 and 443 with chip_dashboard (pravoo.in) by name, its own certificate
# from the sandbox's ACME server
NAME = "pinger.pravoo.in"
PINGER = {**APP_SHAPE, "source": {"url": APP_SHAPE["source"]["url"], "revision": "v2"}, "allowed_hosts": [NAME],
          "nginx": {"name": "pinger", "port": 80, "server_names": [NAME], "tls": True}}
# the worker writes every second: wait for its lock rather than fail with "database is locked"
SQLITE = "sqlite3 -cmd '.timeout 10000' /var/lib/pinger/db.sqlite3"


def _declare(copy: Path, **changes: object) -> None:
    """group_data/public.py of the copy, with the pinger app declared (and ``changes`` to it)."""
    text = (REPO / "group_data/public.py").read_text()
    (copy / "group_data/public.py").write_text(f"{text}\napps['pinger'] = {({**PINGER, **changes})!r}\n")


def _curl(sandbox: Sandbox, *args: str, name: str = NAME) -> subprocess.CompletedProcess:
    ip = sandbox.world.host_ip("public")
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--resolve", f"{name}:443:{ip}", "--resolve",
                           f"{name}:80:{ip}", *args], capture_output=True, text=True, check=False, timeout=60)


def _get(sandbox: Sandbox, path: str = "/") -> subprocess.CompletedProcess:
    """The page through nginx over HTTPS (the certificate is checked in its own test)."""
    return _curl(sandbox, "-k", "-w", "\n%{http_code}", f"https://{NAME}{path}")


@pytest.fixture(scope="module")
def pinger(sandbox: Sandbox, converged: Run, tmp_path_factory) -> Path:
    copy = repo_copy(tmp_path_factory.mktemp("pinger"))
    _declare(copy)
    # as for any new app: its deploy key is made and registered, then the converge
    run = sandbox.command("pinger-first-release", [str(REPO / ".venv/bin/python"), "-m", "sandbox.converge",
                                                   "--limit", "public"], cwd=copy, PYINFRA_PROGRESS="off")
    assert run.returncode == 0, failure_excerpt(run)
    TIMINGS["public: a real-shaped app from group_data, first release"] = run.seconds
    yield copy
    # the repository without the app: the run removes it as an orphan (units, site, files, user)
    # and keeps its data
    removed = sandbox.converge("pinger-removed", "--limit", "public")
    assert removed.returncode == 0, failure_excerpt(removed)
    left = sandbox.ssh("public", "systemctl is-active gunicorn-pinger pinger-sendalerts; ls /etc/nginx/sites-enabled "
                                 "/etc/iac/apps; id pinger", check=False).stdout
    assert "pinger" not in left.replace("inactive", ""), left
    # pravoo.in is 443's only site again: the site for unknown names and pinger's certificate links went too
    assert "iac-unknown-names" not in left and not sandbox.ssh("public", f"ls /etc/iac/tls/{NAME}/ 2>/dev/null",
                                                                  check=False).stdout.strip()


def test_real_shaped_app_serves_with_its_own_settings_names_static_dir_and_release_command(
        sandbox: Sandbox, pinger: Path) -> None:
    page = _get(sandbox)
    assert page.stdout.endswith("\n200"), page.stdout[-500:]  # compress ran: the manifest is there
    assert "<h1>pinger v2</h1>" in page.stdout
    assert "secret key: from the environment" in page.stdout  # SECRET_KEY, not DJANGO_SECRET_KEY
    # DEBUG written off as the app reads it (False: it stops on 0), SITE_ROOT filled from the site
    assert f"site root: https://{NAME}<" in page.stdout
    css = re.search(r"href='(/static/CACHE/app\.[0-9a-f]+\.css)'", page.stdout)
    assert css, page.stdout
    static = _get(sandbox, css.group(1))  # nginx serves static-collected/, where the app collects
    assert "pinger-static-marker" in static.stdout and static.stdout.endswith("\n200")
    assert _get(sandbox, "/api/v3/status/").stdout == "OK\n200"
    # gunicorn came from extra_requirements: the app's requirements.txt has only Django
    assert "gunicorn" not in sandbox.ssh("public", "cat /srv/apps/pinger/requirements.txt").stdout
    assert sandbox.ssh("public", "/srv/venvs/pinger/bin/pip show gunicorn | grep ^Version").stdout.strip() == \
        "Version: 23.0.0"


def test_two_tls_sites_share_443_each_with_its_own_certificate_and_a_third_name_gets_nothing(
        sandbox: Sandbox, pinger: Path, pebble_root: Path) -> None:
    for name, h1 in ((NAME, "<h1>pinger v2</h1>"), ("pravoo.in", "<h1>chip_dashboard v2</h1>")):
        page = _curl(sandbox, "--cacert", str(pebble_root), f"https://{name}/", name=name)
        assert page.returncode == 0, page.stderr  # verified against the ACME server's root, for its own name
        assert h1 in page.stdout
        served = subprocess.run(["openssl", "s_client", "-connect", f"{sandbox.world.host_ip('public')}:443",
                                 "-servername", name], input="", capture_output=True, text=True, timeout=30,
                                check=False)
        names = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=served.stdout,
                               capture_output=True, text=True, timeout=30, check=False).stdout
        assert re.findall(r"DNS:([^,\s]+)", names) == [name], names  # a certificate of its own
        redirect = _curl(sandbox, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://{name}/x",
                         name=name)
        assert redirect.stdout == f"301 https://{name}/x"
    # a name no site serves: HTTPS refuses the handshake (no certificate shown), HTTP closes unanswered
    other = "unknown.pravoo.in"
    tls = _curl(sandbox, "-k", f"https://{other}/", name=other)
    assert tls.returncode == 35 and "chip_dashboard" not in tls.stdout, (tls.returncode, tls.stderr)
    plain = _curl(sandbox, f"http://{other}/", name=other)
    assert plain.returncode == 52 and plain.stdout == "", (plain.returncode, plain.stderr)


def test_worker_process_runs_as_its_own_unit_from_the_release(sandbox: Sandbox, pinger: Path) -> None:
    assert sandbox.ssh("public", "systemctl is-active pinger-sendalerts").stdout.strip() == "active"
    user = sandbox.ssh("public", "ps -o user= -p $(systemctl show -p MainPID --value pinger-sendalerts)").stdout
    assert user.strip() == "pinger"
    cwd = sandbox.ssh("public", "readlink /proc/$(systemctl show -p MainPID --value pinger-sendalerts)/cwd").stdout
    assert cwd.strip() == sandbox.ssh("public", "readlink -f /srv/apps/pinger").stdout.strip()
    # it works: the heartbeat it writes advances
    seen = re.search(r"worker seen: ([^<]+)", _get(sandbox).stdout)
    time.sleep(2.5)
    later = re.search(r"worker seen: ([^<]+)", _get(sandbox).stdout)
    assert seen and later and seen.group(1) != "never" and later.group(1) > seen.group(1)



def _drift(sandbox: Sandbox, copy: Path, label: str) -> Run:
    return sandbox.command(label, [str(REPO / ".venv/bin/python"), "-m", "cli.drift", "sandbox/inventory.py",
                                   "--limit", "public"], cwd=copy)


def test_damaged_release_is_drift_and_a_converge_rebuilds_it(sandbox: Sandbox, pinger: Path) -> None:
    """A package removed from the live virtualenv and a file of the live release edited: the app
    keeps running from memory and would die at the next restart. The gate says so (exit 2, the
    app named); a converge rebuilds the release and the virtualenv."""
    views = "/srv/apps/pinger/hc/api/views.py"
    sandbox.ssh("public", f"/srv/venvs/pinger/bin/pip uninstall -y -q gunicorn && echo '# hotfix' >> {views}")
    drift = _drift(sandbox, pinger, "pinger-drift-damaged")
    assert drift.returncode == 2, drift.output[-3000:]
    assert "pinger: release v2 live" in drift.stdout
    logged = len(sandbox.ssh("public", "cat /var/log/iac/releases.log").stdout.splitlines())
    run = sandbox.converge("pinger-repair", "--limit", "public", cwd=pinger)
    assert run.returncode == 0, failure_excerpt(run)
    steps = "\n".join(sandbox.ssh("public", "cat /var/log/iac/releases.log").stdout.splitlines()[logged:])
    assert "is damaged (changed: hc/api/views.py; virtualenv: gunicorn-23.0.0 missing)" in steps, steps
    assert "# hotfix" not in sandbox.ssh("public", f"cat {views}").stdout
    assert sandbox.ssh("public", "/srv/venvs/pinger/bin/pip show gunicorn | grep ^Version").stdout.strip() == \
        "Version: 23.0.0"
    assert sandbox.ssh("public", "ls -d /srv/releases/pinger/*.damaged /srv/venvs/.pinger-*.damaged",
                       check=False).stdout == ""
    page = _get(sandbox)
    assert "<h1>pinger v2</h1>" in page.stdout and page.stdout.endswith("\n200")


def test_next_run_finds_no_drift(sandbox: Sandbox, pinger: Path) -> None:
    drift = _drift(sandbox, pinger, "pinger-drift")
    assert drift.returncode == 0, drift.output[-3000:]


def test_failing_release_command_keeps_the_old_release_serving(sandbox: Sandbox, pinger: Path) -> None:
    """v1 with a release command that fails: built, migrated (a no-op for v1 on the v2 schema),
    then the command fails; the database is restored and v2 keeps serving. The run says which."""
    before = sandbox.ssh("public", f"{SQLITE} 'select count(*) from django_migrations'")
    alerted = len(sandbox.webhook_messages())
    _declare(pinger, source={**PINGER["source"], "revision": "v1"}, release_commands=[["compress", "--no-such"]])
    run = sandbox.converge("pinger-bad-release-command", "--limit", "public", cwd=pinger)
    _declare(pinger)
    assert run.returncode != 0
    assert "release command manage.py compress --no-such FAILED" in run.output, failure_excerpt(run)
    # exactly one alert, to the host's operator webhook, naming the app, revision and step
    new = sandbox.webhook_messages()[alerted:]
    assert len(new) == 1 and "pinger v1 (" in new[0] and "step: release command" in new[0], new
    page = _get(sandbox)
    assert "<h1>pinger v2</h1>" in page.stdout and page.stdout.endswith("\n200")
    assert sandbox.ssh("public", f"{SQLITE} 'select count(*) from django_migrations'").stdout == before.stdout
    assert sandbox.converge("pinger-after-bad-command", "--limit", "public", cwd=pinger).returncode == 0


@pytest.mark.parametrize(("case", "changes", "step", "says"), [
    ("pip", {"extra_requirements": ["gunicorn==0.0.1"]}, "build (pip install)", "pip install failed"),
    # v1's build without `compress`: the app is up but its health path answers 500
    ("health-500", {"health": {"path": "/"}, "release_commands": []}, "health check", "answered 500"),
])
def test_failed_release_keeps_the_old_release_serving_with_one_alert_naming_the_step(
        sandbox: Sandbox, pinger: Path, case: str, changes: dict, step: str, says: str) -> None:
    before = sandbox.ssh("public", f"{SQLITE} 'select count(*) from django_migrations'").stdout
    alerted = len(sandbox.webhook_messages())
    _declare(pinger, source={**PINGER["source"], "revision": "v1"}, **changes)
    run = sandbox.converge(f"pinger-fails-{case}", "--limit", "public", cwd=pinger)
    _declare(pinger)
    assert run.returncode != 0
    assert says in run.output and f"(step: {step})" in run.output, failure_excerpt(run)
    page = _get(sandbox)
    assert "<h1>pinger v2</h1>" in page.stdout and page.stdout.endswith("\n200")
    assert sandbox.ssh("public", f"{SQLITE} 'select count(*) from django_migrations'").stdout == before
    new = sandbox.webhook_messages()[alerted:]
    assert len(new) == 1 and f"step: {step}" in new[0] and "pinger v1 (" in new[0], new


def test_a_connection_cut_mid_release_does_not_stop_it_and_the_rerun_finds_it_live(
        sandbox: Sandbox, pinger: Path) -> None:
    """The operator's connection dies (here: pyinfra is killed) while a release command runs,
    after migrate and before the switch. The release runs on the host as a unit of its own, so it
    finishes rather than stopping half-way; the rerun waits for it if needed and finds it live."""
    alerted = len(sandbox.webhook_messages())
    logged = len(sandbox.ssh("public", "cat /var/log/iac/releases.log").stdout.splitlines())
    _declare(pinger, source={**PINGER["source"], "revision": "v1"},
             release_commands=[["compress"], ["warm_cache", "--seconds=8"]])
    proc = subprocess.Popen([str(REPO / ".venv/bin/pyinfra"), "sandbox/inventory.py", "deploy.py", "--limit",
                             "public", "-y"], cwd=pinger, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, env={**os.environ, "PYINFRA_PROGRESS": "off"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            log = sandbox.ssh("public", "cat /var/log/iac/releases.log").stdout.splitlines()[logged:]
            if any("release command: manage.py warm_cache" in line for line in log):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before its release command started"
    finally:
        proc.kill()  # the connection is cut: pyinfra's SSH sessions die with it
        proc.wait()
    # the release goes on without anyone connected
    assert sandbox.ssh("public", "systemctl is-active iac-release-pinger", check=False).stdout.strip() == "active"
    run = sandbox.converge("pinger-rerun-after-cut", "--limit", "public", cwd=pinger)
    assert run.returncode == 0, failure_excerpt(run)
    steps = sandbox.ssh("public", "cat /var/log/iac/releases.log").stdout.splitlines()[logged:]
    # its steps ran once, by the run that was cut, and it went live once; the rerun found it live
    # (or waited for it) instead of releasing again
    assert sum("release command: manage.py warm_cache" in line for line in steps) == 1, steps
    assert sum(line.endswith("is live") for line in steps) == 1, steps
    page = _get(sandbox)
    assert "<h1>pinger v1</h1>" in page.stdout and page.stdout.endswith("\n200")
    assert len(sandbox.webhook_messages()) == alerted  # nothing failed: nobody is alerted
