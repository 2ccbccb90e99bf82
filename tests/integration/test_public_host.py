"""The public host (pravoo.in) rebuilt on Debian 13 from a bare box and its backups, after an upgrade
drill that an app's requirement stopped: HTTPS, the app, its unit, its files."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from engine_common import envfile
from iac.debian import RELEASES
from tests.integration.conftest import (
    REPO,
    TIMINGS,
    Run,
    Sandbox,
    changed_operations,
    failure_excerpt,
    repo_copy,
    serial_after_change,
    served_serial,
)
from tests.integration.load import Load

APP = "chip_dashboard"
DEPLOYED = f"/var/lib/iac/releases/{APP}/deployed.json"


OLDPYTHON = json.dumps({"public": {"apps": {APP: {"source": {"revision": "oldpython"}}}}})
UPGRADE: dict = {}
# what waits for the switch on the new machine: backups into the old host's repositories, the watch
TIMERS = "chip-dashboard-backup.timer restic-chip-dashboard.timer restic-chip-dashboard-check.timer iac-watch.timer"


def _serves(sandbox: Sandbox) -> str:
    """What https://pravoo.in/ answers on the public host's address: status and page."""
    r = curl(sandbox, "-k", "-w", "\n%{http_code}", "https://pravoo.in/")
    return r.stdout


@pytest.fixture(scope="module")
def bare_public(sandbox: Sandbox, converged: Run) -> Run:
    """The public host moves to the next Debian release as production's would (`make upgrade`):
    1. serving a revision whose requirements have wheels for older Pythons only (fixture tag
       `oldpython`: typed-ast), `make upgrade-drill` and `make upgrade` both stop before anything
       changes, naming the app and the requirement;
    2. with the good revision declared and released again, `make upgrade HOST=public TO=<new
       machine>` backs the host up, prints the new machine's deploy key (exit 3; registered on the
       forge), and the
       second run rebuilds the new machine (a bare Debian 13 replica) from the backups, in sync,
       while the old host serves on;
    3. the switch: the new machine takes the old one's address, and the first run after it issues
       the certificate. Every test below looks at that host. (When the public host runs the
       newest release already, it is rebuilt from bare with one converge instead.)"""
    if sandbox.world.debian("public") == max(RELEASES):
        sandbox.world.reset_host("public")
        run = sandbox.command("public-from-bare", [str(REPO / ".venv/bin/python"), "-m", "sandbox.converge"],
                              PYINFRA_PROGRESS="off")
        assert run.returncode == 0, failure_excerpt(run)
        TIMINGS["public: bare Debian to HTTPS"] = run.seconds
        return run
    started = time.monotonic()
    old = sandbox.converge("public-oldpython", "--limit", "public", SANDBOX_OVERRIDES=OLDPYTHON)
    assert old.returncode == 0, failure_excerpt(old)
    new = sandbox.world.ensure_public_hosts(2, debian=max(RELEASES))[0]
    to = f"TO={sandbox.world.host_ip(new)}"
    UPGRADE["drill"] = sandbox.command("upgrade-drill-oldpython", ["make", "-s", "upgrade-drill", "HOST=public"],
                                       SANDBOX_OVERRIDES=OLDPYTHON)
    UPGRADE["stopped"] = sandbox.command("upgrade-oldpython", ["make", "-s", "upgrade", "HOST=public", to],
                                         SANDBOX_OVERRIDES=OLDPYTHON)
    UPGRADE["old serves"] = _serves(sandbox)
    # the operator declares a revision whose requirements have wheels, and releases it on the old host
    good = sandbox.converge("public-good-again", "--limit", "public")
    assert good.returncode == 0, failure_excerpt(good)
    keys = sandbox.command("upgrade-keys", ["make", "-s", "upgrade", "HOST=public", to], PYINFRA_PROGRESS="off")
    UPGRADE["keys"] = keys
    for app, key in re.findall(r"^  (\w+): (ssh-ed25519 \S+)$", keys.stderr, re.M):
        sandbox.world.register_key(app, key)
    run = sandbox.command("upgrade", ["make", "-s", "upgrade", "HOST=public", to, "KEYS_REGISTERED=yes"],
                          PYINFRA_PROGRESS="off")
    assert run.returncode == 0, failure_excerpt(run)
    UPGRADE["upgraded"], UPGRADE["old serves after"] = run, _serves(sandbox)
    UPGRADE["timers before switch"] = sandbox.world.ssh(new, f"systemctl is-enabled {TIMERS}", check=False).stdout
    TIMINGS["public: make upgrade (rebuilt on the new machine)"] = run.seconds
    sandbox.world.switch_host("public", new)
    after = sandbox.converge("public-after-switch", "--limit", "public")
    assert after.returncode == 0, failure_excerpt(after)
    UPGRADE["after switch"] = after
    UPGRADE["timers after switch"] = sandbox.ssh("public", f"systemctl is-enabled {TIMERS}", check=False).stdout
    TIMINGS["public: to Debian 13 (checks, upgrade, switch, first run)"] = time.monotonic() - started
    return after


@pytest.fixture
def upgraded(bare_public: Run) -> dict[str, Run]:
    if not UPGRADE:
        pytest.skip("the public host runs the newest release: there is nothing to upgrade to")
    return UPGRADE


def test_an_upgrade_stops_before_any_change_naming_the_app_and_requirement_the_new_python_lacks(
        sandbox: Sandbox, upgraded: dict) -> None:
    newest = RELEASES[max(RELEASES)]
    reason = (rf"{APP}: its requirements do not install on Python {re.escape(newest.python)} from wheels: "
              r"ERROR: No matching distribution found for typed-ast==1\.5\.5")
    for name, says in (("drill", "upgrade-drill: FAILED: the apps' requirements"),
                       ("stopped", "upgrade: FAILED: the apps' requirements")):
        run = upgraded[name]
        assert run.returncode == 2, failure_excerpt(run)  # make's code for the command's 1
        assert says in run.stderr and re.search(reason, run.stderr), run.stderr[-2000:]
        assert "nothing was changed" in run.stderr
    assert "<h1>chip_dashboard v2</h1>" in upgraded["old serves"] and upgraded["old serves"].endswith("\n200")


def test_an_upgrade_rebuilds_the_new_machine_in_sync_while_the_old_host_serves_on(
        sandbox: Sandbox, upgraded: dict) -> None:
    keys = upgraded["keys"]
    assert keys.returncode == 2 and "register each deploy key" in keys.stderr, failure_excerpt(keys)
    report = json.loads(upgraded["upgraded"].stdout)
    assert (report["from"], report["to"]) == (12, 13)
    for step in ("srv1178562: backups now (it keeps serving)", "converge from bare (deploy.py)",
                 "databases restored from offsite (1)", "apps answer through nginx + drift check"):
        assert step in report["seconds"], report
    assert upgraded["old serves after"].endswith("\n200")
    # certificates waited for the switch (the name pointed at the old host): its first run issued one
    assert "Certificate for pravoo.in" in upgraded["after switch"].output
    assert sandbox.ssh("public", "cut -d. -f1 /etc/debian_version").stdout.strip() == "13"
    # the new machine ran no backups into the old host's repositories before the switch; after it, it does
    assert upgraded["timers before switch"].split() == ["disabled"] * 4, upgraded["timers before switch"]
    assert upgraded["timers after switch"].split() == ["enabled"] * 4, upgraded["timers after switch"]


def _load(sandbox: Sandbox) -> Load:
    """Two clients asking https://pravoo.in/ through nginx on the sandbox host (only there)."""
    return Load(sandbox.world.host_ip("public"), 443, "pravoo.in", tls=True)


def curl(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess:
    ip = sandbox.world.host_ip("public")
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--resolve", f"pravoo.in:443:{ip}",
                           "--resolve", f"pravoo.in:80:{ip}", *args], capture_output=True, text=True,
                          check=False, timeout=60)


def test_site_answers_over_https_with_a_chain_from_the_local_acme_server(
        sandbox: Sandbox, bare_public: Run, pebble_root: Path) -> None:
    r = curl(sandbox, "--cacert", str(pebble_root), "https://pravoo.in/")
    assert r.returncode == 0, r.stderr  # verified against pebble's root: no -k
    assert "<h1>chip_dashboard v2</h1>" in r.stdout


def test_http_redirects_to_https_except_acme_challenges(sandbox: Sandbox, bare_public: Run) -> None:
    r = curl(sandbox, "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://pravoo.in/some/page?x=1")
    assert r.stdout == "301 https://pravoo.in/some/page?x=1"
    r = curl(sandbox, "-o", "/dev/null", "-w", "%{http_code}", "http://pravoo.in/.well-known/acme-challenge/none")
    assert r.stdout == "404"


def test_csrf_post_through_nginx_works_and_cookies_are_secure(sandbox: Sandbox, bare_public: Run,
                                                              tmp_path: Path) -> None:
    jar = tmp_path / "jar"
    page = curl(sandbox, "-k", "-c", str(jar), "-D", "-", "https://pravoo.in/")
    assert re.search(r"set-cookie: csrftoken=[^;]+;.*Secure", page.stdout, re.I), "CSRF cookie not Secure"
    before = int(re.search(r"rows: (\d+)", page.stdout).group(1))
    token = next(line.split("\t")[6] for line in jar.read_text().splitlines() if "\tcsrftoken\t" in line)
    post = curl(sandbox, "-k", "-b", str(jar), "-H", "Referer: https://pravoo.in/", "-o", "/dev/null",
                "-w", "%{http_code}", "--data", f"csrfmiddlewaretoken={token}&name=from-test",
                "https://pravoo.in/items/")
    assert post.stdout == "302", post.stderr
    after = int(re.search(r"rows: (\d+)", curl(sandbox, "-k", "https://pravoo.in/").stdout).group(1))
    assert after == before + 1
    forged = curl(sandbox, "-k", "-o", "/dev/null", "-w", "%{http_code}", "--data", "name=x",
                  "https://pravoo.in/items/")
    assert forged.stdout == "403"


def test_static_files_are_served_by_nginx_from_static_root(sandbox: Sandbox, bare_public: Run) -> None:
    r = curl(sandbox, "-k", "-D", "-", "https://pravoo.in/static/core/app.css")
    assert "chip_dashboard-static-marker" in r.stdout
    assert re.search(r"^server: nginx", r.stdout, re.I | re.M)
    assert re.search(r"^expires:", r.stdout, re.I | re.M), "served by nginx's static location"


SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "SAMEORIGIN",
                    "referrer-policy": "same-origin"}


def _headers(response: str) -> list[tuple[str, str]]:
    """(name lowercased, value) of each header line of the last response in ``curl -D -`` output."""
    head = response.split("\r\n\r\n")[0]
    return [(n.strip().lower(), v.strip()) for n, _, v in (line.partition(":") for line in head.splitlines()[1:])]


def test_every_answer_through_nginx_carries_the_security_headers_and_no_nginx_version(
        sandbox: Sandbox, bare_public: Run) -> None:
    """The app's page, a static file, nginx's own 404 and the HTTP redirect: each header exactly
    once (the app's own X-Frame-Options is hidden: two that disagree are ignored by browsers),
    HSTS on HTTPS only, and `Server: nginx` without a version."""
    answers = {"app page": ("-k", "https://pravoo.in/"),
               "static file": ("-k", "https://pravoo.in/static/core/app.css"),
               "nginx 404": ("-k", "https://pravoo.in/static/no-such-file"),
               "redirect": ("http://pravoo.in/some/page",)}
    for what, args in answers.items():
        r = curl(sandbox, "-o", "/dev/null", "-D", "-", *args)
        assert r.returncode == 0, (what, r.stderr)
        headers = _headers(r.stdout)
        for name, value in SECURITY_HEADERS.items():
            assert [v for n, v in headers if n == name] == [value], (what, name, headers)
        hsts = [v for n, v in headers if n == "strict-transport-security"]
        assert hsts == ([] if what == "redirect" else ["max-age=31536000"]), (what, headers)
        assert [v for n, v in headers if n == "server"] == ["nginx"], (what, headers)
    page = curl(sandbox, "-k", "https://pravoo.in/static/no-such-file")
    assert "404" in page.stdout and "nginx/" not in page.stdout  # no version in nginx's error page


def test_gunicorn_runs_as_the_app_user_on_a_socket_only(sandbox: Sandbox, bare_public: Run) -> None:
    host = sandbox.host("public")
    users = set(host.check_output("ps -o user= -C gunicorn").split())
    assert users == {APP}
    listening = host.check_output("ss -ltnH")
    assert ":8001" not in listening
    public_ports = {line.split()[3].rsplit(":", 1)[1] for line in listening.splitlines()
                    if not re.search(r"127\.0\.0\.\d+:|\[::1\]:", line.split()[3])}
    assert public_ports <= {"22", "80", "443"}, listening
    assert host.socket("unix:///run/broker_portal/gunicorn.sock").is_listening


def test_unit_is_hardened_and_restarts_on_failure(sandbox: Sandbox, bare_public: Run) -> None:
    props = dict(line.split("=", 1) for line in sandbox.ssh(
        "public", "systemctl show broker_portal -p User -p Restart -p ProtectSystem -p NoNewPrivileges "
                  "-p UnitFileState -p ActiveState").stdout.splitlines())
    assert props == {"User": APP, "Restart": "on-failure", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
                     "UnitFileState": "enabled", "ActiveState": "active"}
    unit = sandbox.ssh("public", "cat /etc/systemd/system/broker_portal.service").stdout
    assert "--workers 3" in unit and "--timeout 60" in unit and "--name broker_portal" in unit


def test_env_file_is_readable_by_root_and_the_app_only(sandbox: Sandbox, bare_public: Run) -> None:
    f = sandbox.host("public").file("/etc/iac/apps/chip_dashboard.env")
    assert (f.user, f.group, f.mode) == ("root", APP, 0o640)
    env = envfile.parse_env_file(f.content_string)
    assert env["DJANGO_SETTINGS_MODULE"] == "broker_portal.settings"
    assert env["DJANGO_ALLOWED_HOSTS"] == "pravoo.in,72.61.148.117"
    assert sandbox.ssh("public", f"runuser -u {APP} -- head -c1 /etc/iac/apps/chip_dashboard.env",
                       check=False).returncode == 0
    assert sandbox.ssh("public", "runuser -u nobody -- head -c1 /etc/iac/apps/chip_dashboard.env",
                       check=False).returncode != 0


def test_certificate_renewal_runs_the_deploy_hook(sandbox: Sandbox, bare_public: Run) -> None:
    host = sandbox.host("public")
    assert host.service("certbot.timer").is_enabled and host.service("certbot.timer").is_running
    assert host.check_output("crontab -l 2>/dev/null | grep -c certbot || true") == "0"
    before = served_serial(sandbox)
    renew = sandbox.ssh("public", "systemctl cat certbot.service | grep -q REQUESTS_CA_BUNDLE && "
                                  "REQUESTS_CA_BUNDLE=/etc/iac/acme-ca.pem certbot renew -q --force-renewal "
                                  # as the timer does, without its random wait of up to 8 minutes
                                  "--no-random-sleep-on-renew --cert-name pravoo.in", check=False)
    assert renew.returncode == 0, renew.stderr
    assert serial_after_change(sandbox, before) != before, \
        "nginx still serves the old certificate: the deploy hook did not reload it"
    assert sandbox.drift("drift-after-renewal", "--limit", "public").returncode == 0


def test_second_run_changes_nothing_and_drift_is_zero(sandbox: Sandbox, bare_public: Run) -> None:
    run, results = sandbox.converge_json("public-second-run")
    assert changed_operations(results) == []
    assert sandbox.drift("public-drift", "--limit", "public").returncode == 0


EDITED = {
    "/etc/nginx/sites-available/django": "nginx site django (checked with nginx -t, live)",
    "/etc/systemd/system/broker_portal.service": "chip_dashboard: unit broker_portal (verified, live)",
    "/etc/systemd/system/broker_portal.socket": "chip_dashboard: unit broker_portal (verified, live)",
}


def test_edited_site_or_unit_is_drift_and_a_run_restores_it(sandbox: Sandbox, bare_public: Run) -> None:
    """Hand edits of the site and of both units: one check names each, one run restores all."""
    for path in EDITED:
        sandbox.ssh("public", f"echo '# edited by hand' >> {path}")
    run = sandbox.drift("drift-edited-site-and-units", "--limit", "public")
    assert run.returncode == 2, run.output
    for op in EDITED.values():
        assert f"srv1178562: {op}" in run.stdout, (op, run.stdout)
    assert sandbox.converge("restore-site-and-units", "--limit", "public").returncode == 0
    for path in EDITED:
        assert "# edited by hand" not in sandbox.ssh("public", f"cat {path}").stdout
    assert sandbox.drift("drift-restored-site-and-units", "--limit", "public").returncode == 0


def test_broken_nginx_template_fails_before_reload_and_site_keeps_serving(
        sandbox: Sandbox, bare_public: Run, tmp_path: Path) -> None:
    copy = repo_copy(tmp_path)
    tpl = copy / "templates/etc/nginx/sites-available/app.conf.j2"
    directive = "client_max_body_size 20m;"
    broken = tpl.read_text().replace(directive, directive + "\n    no_such_directive on;")
    tpl.write_text(broken)
    live_before = sandbox.ssh("public", "sha256sum /etc/nginx/sites-available/django").stdout
    run = sandbox.converge("broken-nginx-template", "--limit", "public", cwd=copy)
    assert run.returncode != 0
    assert "REFUSED: nginx -t rejected site django" in run.output
    assert sandbox.ssh("public", "sha256sum /etc/nginx/sites-available/django").stdout == live_before
    assert "chip_dashboard v2" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert sandbox.converge("after-broken-template", "--limit", "public").returncode == 0
    assert sandbox.drift("drift-after-broken-template", "--limit", "public").returncode == 0


def test_broken_unit_template_is_refused_and_the_app_keeps_serving(
        sandbox: Sandbox, bare_public: Run, tmp_path: Path) -> None:
    """A unit systemd would half-ignore (a misspelt value, a wrong path) never goes live."""
    copy = repo_copy(tmp_path)
    tpl = copy / "templates/etc/systemd/system/gunicorn.service.j2"
    tpl.write_text(tpl.read_text().replace("Restart=on-failure", "Restart=sometimes")
                   .replace("ExecStart={{ paths.gunicorn | unit }}", "ExecStart=/srv/vnevs/{{ name }}/bin/gunicorn"))
    assert "/srv/vnevs/" in tpl.read_text()
    unit = "/etc/systemd/system/broker_portal.service"
    live_before = sandbox.ssh("public", f"sha256sum {unit}").stdout
    run = sandbox.converge("broken-unit-template", "--limit", "public", cwd=copy)
    assert run.returncode != 0
    assert f"REFUSED: {unit} failed validation" in run.output
    # systemd 252 (Debian 12) and 257 (13) word it differently
    assert re.search(r"Failed to parse (service restart specifier|Restart=sometimes)", run.output), run.output[-2000:]
    assert sandbox.ssh("public", f"sha256sum {unit}").stdout == live_before
    assert "chip_dashboard v" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert sandbox.converge("after-broken-unit", "--limit", "public").returncode == 0
    assert sandbox.drift("drift-after-broken-unit", "--limit", "public").returncode == 0


def test_site_nginx_accepts_but_that_cannot_reach_the_app_fails_the_run(
        sandbox: Sandbox, bare_public: Run, tmp_path: Path) -> None:
    """`nginx -t` cannot know that the upstream socket is wrong; the check through nginx can."""
    copy = repo_copy(tmp_path)
    tpl = copy / "templates/etc/nginx/sites-available/app.conf.j2"
    upstream = "server unix:{{ paths.socket | nginx }}"
    assert upstream in tpl.read_text()
    tpl.write_text(tpl.read_text().replace(upstream, "server unix:/run/no-such-app/gunicorn.sock"))
    run = sandbox.converge("unreachable-upstream", "--limit", "public", cwd=copy)
    assert run.returncode != 0
    assert "https://pravoo.in:443/ through nginx answered HTTP 502" in run.output
    # the broken site is not "in sync" just because it is already in place: the check runs on
    # every run, so the gate (a run's change detection) names it
    drift = sandbox.drift("drift-unreachable-upstream", "--limit", "public")
    assert drift.returncode == 2 and "srv1178562: chip_dashboard: pravoo.in answers through nginx" in drift.stdout
    # the next run from this repository puts the right site back and the check (which runs on
    # every run) passes
    restore = sandbox.converge("after-unreachable-upstream", "--limit", "public")
    assert restore.returncode == 0, restore.output[-3000:]
    assert "chip_dashboard v" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert sandbox.drift("drift-after-unreachable-upstream", "--limit", "public").returncode == 0


def _rows(sandbox: Sandbox) -> int:
    return int(sandbox.ssh("public", "sqlite3 /var/lib/chip_dashboard/db.sqlite3 'select count(*) from core_chip'")
               .stdout.strip())


def test_broken_release_keeps_the_old_one_serving_and_the_database_as_it_was(
        sandbox: Sandbox, bare_public: Run) -> None:
    rows = _rows(sandbox)
    migrations = sandbox.ssh("public", "sqlite3 /var/lib/chip_dashboard/db.sqlite3 "
                                       "'select count(*) from django_migrations'").stdout
    deployed = json.loads(sandbox.ssh("public", "cat /var/lib/iac/releases/chip_dashboard/deployed.json").stdout)
    alerted = len(sandbox.webhook_messages())
    overrides = json.dumps({"public": {"apps": {APP: {"source": {"revision": "broken"}}}}})
    run = sandbox.converge("deploy-broken-release", "--limit", "public", SANDBOX_OVERRIDES=overrides)
    assert run.returncode != 0
    assert "migration FAILED" in run.output and "(step: migrate)" in run.output
    new = sandbox.webhook_messages()[alerted:]  # exactly one alert, naming app, revision and step
    assert len(new) == 1 and "chip_dashboard broken (" in new[0] and "step: migrate" in new[0], new
    assert "chip_dashboard v2" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert _rows(sandbox) == rows
    assert sandbox.ssh("public", "sqlite3 /var/lib/chip_dashboard/db.sqlite3 "
                                 "'select count(*) from django_migrations'").stdout == migrations
    assert json.loads(sandbox.ssh("public", f"cat {DEPLOYED}").stdout) == deployed
    # the host still carries the broken declaration's settings: the gate says so, a run fixes it
    drift = sandbox.drift("drift-after-broken-release", "--limit", "public")
    assert drift.returncode == 2 and "chip_dashboard: release settings" in drift.stdout
    assert sandbox.converge("after-broken-release", "--limit", "public").returncode == 0
    assert sandbox.drift("drift-after-broken-release-fixed", "--limit", "public").returncode == 0


def _unit_state(sandbox: Sandbox) -> dict[str, str]:
    out = sandbox.ssh("public", "systemctl show broker_portal -p ActiveState -p UnitFileState -p NRestarts").stdout
    return dict(line.split("=", 1) for line in out.split())


def test_release_that_cannot_boot_never_reaches_users_and_the_old_one_serves(
        sandbox: Sandbox, bare_public: Run) -> None:
    """importfail: build and migrate pass, gunicorn cannot import the app. The new release is
    started beside the live one on a socket of its own and fails its health check there: nothing
    switches, and two clients asking through nginx all along get every answer."""
    rows = _rows(sandbox)
    deployed = json.loads(sandbox.ssh("public", "cat /var/lib/iac/releases/chip_dashboard/deployed.json").stdout)
    alerted = len(sandbox.webhook_messages())
    overrides = json.dumps({"public": {"apps": {APP: {"source": {"revision": "importfail"}}}}})
    with _load(sandbox) as load:
        run = sandbox.converge("deploy-importfail", "--limit", "public", SANDBOX_OVERRIDES=overrides)
    TIMINGS["public: failed release under load, longest gap"] = load.result.longest_gap
    assert load.result.failures == [], load.result.summary()
    assert run.returncode != 0
    assert "health check FAILED" in run.output and "before the switch" in run.output, failure_excerpt(run)
    new = sandbox.webhook_messages()[alerted:]
    assert len(new) == 1 and "chip_dashboard importfail (" in new[0] and "step: health check" in new[0], new
    assert "chip_dashboard v2" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert _rows(sandbox) == rows
    assert json.loads(sandbox.ssh("public", f"cat {DEPLOYED}").stdout) == deployed
    assert sandbox.converge("after-importfail", "--limit", "public").returncode == 0


def test_failed_first_release_leaves_the_unit_stopped_and_disabled(sandbox: Sandbox, bare_public: Run) -> None:
    """With nothing to go back to, the unit is not left restarting every 2 s for ever."""
    # as on a new host: no live release (the stable links, the record and the unit gone)
    sandbox.ssh("public", "systemctl disable --now --quiet broker_portal && rm -f /srv/apps/chip_dashboard "
                          "/srv/venvs/chip_dashboard /var/lib/iac/releases/chip_dashboard/deployed.json")
    overrides = json.dumps({"public": {"apps": {APP: {"source": {"revision": "importfail"}}}}})
    run = sandbox.converge("first-release-importfail", "--limit", "public", SANDBOX_OVERRIDES=overrides)
    assert run.returncode != 0 and "first release failed" in run.output, run.output[-3000:]
    state = _unit_state(sandbox)
    assert state["ActiveState"] in ("inactive", "failed") and state["UnitFileState"] == "disabled", state
    time.sleep(5)  # RestartSec is 2 s: a unit left to crash-loop would have restarted meanwhile
    assert _unit_state(sandbox) == state
    assert sandbox.ssh("public", "test -e /srv/apps/chip_dashboard", check=False).returncode != 0
    # the declared revision goes live with the next run
    fixed = sandbox.converge("after-first-release-importfail", "--limit", "public")
    assert fixed.returncode == 0, fixed.output[-3000:]
    assert "chip_dashboard v2" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert _unit_state(sandbox)["UnitFileState"] == "enabled"


def test_new_revision_deploys_and_an_old_one_rolls_back(sandbox: Sandbox, bare_public: Run) -> None:
    """Both switches under two clients asking through nginx all along: no request fails (the
    socket, held by systemd, queues connections while gunicorn restarts)."""
    v1 = json.dumps({"public": {"apps": {APP: {"source": {"revision": "v1"}}}}})
    with _load(sandbox) as load:
        run = sandbox.converge("deploy-v1", "--limit", "public", SANDBOX_OVERRIDES=v1)
    TIMINGS["public: release under load, longest gap"] = load.result.longest_gap
    TIMINGS["public: converge releasing a new revision (dependencies unchanged)"] = run.seconds
    assert load.result.failures == [], load.result.summary()
    # v1 has no v2 migration to undo: Django keeps the newer schema, the old code still serves
    assert run.returncode == 0, run.output[-3000:]
    assert "chip_dashboard v1" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    started = time.monotonic()
    with _load(sandbox) as load:
        back = sandbox.converge("deploy-v2-again", "--limit", "public")
    TIMINGS["public: switch to an already built release"] = time.monotonic() - started
    TIMINGS["public: switch back under load, longest gap"] = load.result.longest_gap
    assert load.result.failures == [], load.result.summary()
    assert back.returncode == 0
    assert "chip_dashboard v2" in curl(sandbox, "-k", "https://pravoo.in/").stdout
    assert sandbox.drift("drift-after-redeploy", "--limit", "public").returncode == 0
