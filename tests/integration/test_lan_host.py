"""The LAN host (gts-server): network, PostgreSQL, two apps behind nginx, logs, alerts, operator commands."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest

from engine_common import envfile
from iac.debian import RELEASES, release
from tests.integration.conftest import TIMINGS, Run, Sandbox, changed_operations, failure_excerpt

APPS = {"rental_scheduler": 8001, "shop_scheduler": 8002}
SURVIVOR: dict[str, str] = {}


@pytest.fixture(scope="module")
def bare_lan(sandbox: Sandbox, converged: Run) -> Run:
    """`make upgrade-drill HOST=lan`: the LAN host is backed up, destroyed, replaced with a bare
    copy of the next Debian release (new root disk, no address of its own configuration) and
    rebuilt with one command from its offsite backups, as after a disaster (`make dr-drill`, the
    same steps on the same release, when the host runs the newest release already). So every test
    of this module, and every later one that uses the LAN host, runs on Debian 13: the suite
    covers both releases. (A bare host without backups is built by the session's first converge:
    deploy keys made and registered, then deploy.py.)"""
    # the dump disk is not part of the system that is destroyed: a real disk outlives a reinstall
    SURVIVOR.update(token=uuid.uuid4().hex, disk=sandbox.world.backup_disk_uuid())
    sandbox.ssh("lan", f"echo {SURVIVOR['token']} > /mnt/pg_backups/sandbox-test-survivor && sync")
    upgrade = sandbox.world.debian("lan") < max(RELEASES)
    drill = ["make", "-s", "upgrade-drill", "HOST=lan"] if upgrade else ["make", "-s", "dr-drill"]
    run = sandbox.command(drill[2], drill, PYINFRA_PROGRESS="off")
    assert run.returncode == 0, failure_excerpt(run)
    TIMINGS[f"LAN: make {drill[2]} (destroy, rebuild from bare + offsite)"] = run.seconds
    return run


# every test below looks at the host that one command rebuilt from bare Debian and its backups
pytestmark = pytest.mark.usefixtures("bare_lan")


def test_lan_host_is_rebuilt_from_bare_and_its_offsite_backups(bare_lan: Run) -> None:
    report = json.loads(bare_lan.stdout)
    assert report["ok"] and report["databases"] == 4 and report["differing"] == {}
    assert report["rows"] > 0
    for step in ("restic + system state staged", "converge from bare (deploy.py)",
                 "databases restored from offsite (4)", "apps answer through nginx + drift check"):
        assert step in report["seconds"], step
    for app, port in APPS.items():
        # the rebuild checked each app through nginx, and drift was 0 (else the drill fails)
        assert f"{app} through nginx (gts-server.lan:{port}) answers HTTP 200" in bare_lan.stderr
    for label, seconds in report["seconds"].items():
        TIMINGS[f"  {'upgrade' if report['debian'][0] != report['debian'][1] else 'dr'}-drill: {label}"] = seconds


def test_the_rebuilt_lan_host_runs_the_newest_release_and_its_postgres(sandbox: Sandbox, bare_lan: Run) -> None:
    """After the drill the host runs Debian 13: its PostgreSQL 17 serves the databases the
    PostgreSQL 15 dumps were restored into, and each app's virtualenv runs Python 3.13."""
    report, newest = json.loads(bare_lan.stdout), RELEASES[max(RELEASES)]
    assert report["debian"][1] == newest.version == sandbox.world.debian("lan")
    assert sandbox.ssh("lan", "cut -d. -f1 /etc/debian_version").stdout.strip() == str(newest.version)
    server = sandbox.ssh("lan", "runuser -u postgres -- psql -XtAc 'show server_version_num'").stdout.strip()
    assert server[:2] == str(newest.postgres), server
    for app in APPS:
        python = sandbox.ssh("lan", f"/srv/venvs/{app}/bin/python --version").stdout.strip()
        assert python.startswith(f"Python {newest.python}."), (app, python)


def test_dump_disk_and_its_data_survive_the_rebuild(sandbox: Sandbox, bare_lan: Run) -> None:
    assert sandbox.world.backup_disk_uuid() == SURVIVOR["disk"]  # the same disk, never re-formatted
    assert sandbox.ssh("lan", "mountpoint -q /mnt/pg_backups", check=False).returncode == 0
    assert sandbox.ssh("lan", "cat /mnt/pg_backups/sandbox-test-survivor").stdout.strip() == SURVIVOR["token"]
    sandbox.ssh("lan", "rm /mnt/pg_backups/sandbox-test-survivor")


def test_rebuilt_host_kept_the_deploy_keys_registered_on_the_git_host(sandbox: Sandbox, bare_lan: Run) -> None:
    """The rebuild took each app's key from the system-state snapshot: the forge's registered
    keys still work, nothing had to be registered again."""
    registered = sandbox.ssh("forge", "cat /srv/git/.ssh/authorized_keys").stdout
    for app in APPS:
        key = sandbox.ssh("lan", f"cat /home/{app}/.ssh/id_ed25519.pub").stdout.split()[1]
        assert registered.count(key) == 1, app
        f = sandbox.host("lan").file(f"/home/{app}/.ssh/id_ed25519")
        assert (f.user, f.mode) == (app, 0o600)


def http(sandbox: Sandbox, port: int, path: str = "/") -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}",
                           f"http://{sandbox.world.host_ip('lan')}:{port}{path}"],
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize(("app", "port"), list(APPS.items()))
def test_app_pages_answer_from_the_machine_side(sandbox: Sandbox, converged: Run, app: str, port: int) -> None:
    r = http(sandbox, port)
    assert r.stdout.endswith("\n200"), r.stdout[-500:]
    assert f"<h1>{app} v2</h1>" in r.stdout
    # the front end was built (npm run build) and collected, and nginx serves it
    label = "scheduler" if app == "rental_scheduler" else "shop"
    css = http(sandbox, port, f"/static/{label}/dist/app.css")
    assert f"{app}-static-marker" in css.stdout and css.stdout.endswith("\n200")


def test_browser_form_post_on_the_lan_port_passes_csrf_through_nginx(sandbox: Sandbox, converged: Run,
                                                                      tmp_path) -> None:
    """A browser on http://gts-server.lan:8001 sends `Origin: http://gts-server.lan:8001`: Django
    must see the port (nginx passes the Host the browser sent, the trusted origins carry it)."""
    base = ["curl", "-sS", "--max-time", "20", "--resolve", f"gts-server.lan:8001:{sandbox.world.host_ip('lan')}"]
    jar = tmp_path / "jar"

    def run(*args: str) -> str:
        return subprocess.run([*base, *args], capture_output=True, text=True, check=True, timeout=60).stdout

    page = run("-c", str(jar), "http://gts-server.lan:8001/")
    before = int(re.search(r"rows: (\d+)", page).group(1))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    post = run("-b", str(jar), "-H", "Origin: http://gts-server.lan:8001", "-o", "/dev/null", "-w", "%{http_code}",
               "--data", f"csrfmiddlewaretoken={token}&customer=from-a-browser", "http://gts-server.lan:8001/items/")
    assert post == "302"
    assert f"rows: {before + 1}" in run("http://gts-server.lan:8001/")
    forged = run("-b", str(jar), "-H", "Origin: http://evil.example", "-o", "/dev/null", "-w", "%{http_code}",
                 "--data", f"csrfmiddlewaretoken={token}&customer=x", "http://gts-server.lan:8001/items/")
    assert forged == "403"


def test_each_app_runs_as_its_own_user(sandbox: Sandbox, converged: Run) -> None:
    for app in APPS:
        user = sandbox.host("lan").user(app)
        assert user.home == f"/home/{app}" and user.shell == "/usr/sbin/nologin"
        assert set(user.groups) == {app, "gtsapps"}
        pid = sandbox.ssh("lan", f"systemctl show -p MainPID --value gunicorn-{app}").stdout.strip()
        assert sandbox.ssh("lan", f"ps -o user= -p {pid}").stdout.strip() == app
    assert sandbox.host("lan").socket("unix:///run/gunicorn-shop_scheduler/gunicorn.sock").is_listening
    assert sandbox.host("lan").socket("unix:///run/gunicorn-rental_scheduler/gunicorn.sock").is_listening


def test_each_env_file_is_readable_by_its_app_and_no_other(sandbox: Sandbox, converged: Run) -> None:
    for app in APPS:
        path = f"/etc/gts/apps/{app}.env"
        f = sandbox.host("lan").file(path)
        assert (f.user, f.group, f.mode) == ("root", app, 0o640)
        assert envfile.parse_env_file(f.content_string)["DJANGO_DEBUG"] == "0"
        for reader in [*APPS, "gts", "www-data"]:
            ok = sandbox.ssh("lan", f"runuser -u {reader} -- head -c1 {path} >/dev/null", check=False).returncode == 0
            assert ok == (reader == app), f"{reader} reading {path}"
    rental = envfile.parse_env_file(sandbox.host("lan").file("/etc/gts/apps/rental_scheduler.env").content_string)
    for line in ["DISCORD_ALERTS_ENABLED=true", "DISCORD_ALERTS_DEDUP_SECONDS=300",
                 "DISCORD_ALERTS_TIMEOUT_SECONDS=2", "DISCORD_ALERTS_APP_NAME=rental_scheduler",
                 "DISCORD_ALERTS_ENV=prod", "POSTGRES_DB=gts_scheduler",
                 "ACCOUNTING_POSTGRES_DB=gingerich_trailer_rentals"]:
        key, value = line.split("=", 1)
        assert rental[key] == value


def test_make_deploy_keys_shows_each_key_and_never_replaces_it(sandbox: Sandbox) -> None:
    on_host = {app: sandbox.ssh("lan", f"cat /home/{app}/.ssh/id_ed25519.pub").stdout.split()[1] for app in APPS}
    run = sandbox.command("make-deploy-keys", ["make", "-s", "deploy-keys"])
    assert run.returncode == 0, run.output[-2000:]
    for app, key in on_host.items():
        assert f"gts-server {app} (" in run.stdout and key in run.stdout
    again = {app: sandbox.ssh("lan", f"cat /home/{app}/.ssh/id_ed25519.pub").stdout.split()[1] for app in APPS}
    assert again == on_host
    assert "PRIVATE KEY" not in run.output


def test_databases_exist_with_the_right_owners(sandbox: Sandbox, converged: Run) -> None:
    out = sandbox.ssh("lan", "runuser -u postgres -- psql -tAF' ' -c "
                             "\"select datname, pg_get_userbyid(datdba) from pg_database\"").stdout
    owners = dict(line.split() for line in out.splitlines() if line.strip())
    assert {k: owners.get(k) for k in ["gts_scheduler", "gingerich_trailer_rentals", "gts_shop_scheduler",
                                        "gingerich_trailer"]} == {
        "gts_scheduler": "rental_scheduler_user", "gingerich_trailer_rentals": "postgres",
        "gts_shop_scheduler": "shop_scheduler_user", "gingerich_trailer": "postgres"}
    # the accounting app's tables were migrated into the accounting database
    sql = "select count(*) from information_schema.tables where table_name='accounting_invoice'"
    tables = sandbox.ssh("lan", f'runuser -u postgres -- psql -d gingerich_trailer_rentals -tAc "{sql}"')
    assert tables.stdout.strip() == "1"


def test_network_is_static_on_eno1(sandbox: Sandbox, converged: Run) -> None:
    world = sandbox.world
    host = sandbox.host("lan")
    assert f"inet {world.host_ip('lan')}/24" in host.check_output("ip -o -4 addr show dev eno1")
    assert host.check_output("ip -4 route show default").startswith(f"default via {world.gateway_ip('lan')} dev eno1")
    resolv = host.file("/etc/resolv.conf").content_string
    assert "search lan" in resolv and f"nameserver {world.resolvers()[0]}" in resolv
    assert "address 10." in host.file("/etc/network/interfaces.d/eno1").content_string
    assert "postgres" in host.user("gts").groups


def test_an_address_change_that_would_cut_ssh_is_refused(sandbox: Sandbox, converged: Run) -> None:
    moved = json.dumps({"lan": {"network": {"address": f"{sandbox.world.host_ip('lan')[:-1]}7/24"}}})
    run = sandbox.converge("lan-readdress", "--limit", "lan", SANDBOX_OVERRIDES=moved)
    assert run.returncode != 0
    assert "refusing to move eno1" in run.output
    assert f"inet {sandbox.world.host_ip('lan')}/24" in sandbox.ssh("lan", "ip -o -4 addr show dev eno1").stdout
    assert sandbox.converge("lan-after-readdress", "--limit", "lan").returncode == 0  # files back as declared
    assert sandbox.drift("drift-after-readdress", "--limit", "lan").returncode == 0


def test_forced_rotation_keeps_gunicorn_logging_to_the_new_file(sandbox: Sandbox, converged: Run) -> None:
    log = "/var/log/gts/rental_scheduler/access.log"
    assert sandbox.ssh("lan", "logrotate -d /etc/logrotate.d/gts-rental_scheduler").returncode == 0
    http(sandbox, 8001, "/?before-rotation")
    sandbox.ssh("lan", "logrotate -f /etc/logrotate.d/gts-rental_scheduler")
    time.sleep(1)
    http(sandbox, 8001, "/?after-rotation")
    time.sleep(1)
    current = sandbox.ssh("lan", f"cat {log}").stdout
    assert "after-rotation" in current and "before-rotation" not in current
    assert "before-rotation" in sandbox.ssh("lan", f"cat {log}.1").stdout


def test_alert_test_sends_exactly_one_message_naming_app_and_env(sandbox: Sandbox, converged: Run) -> None:
    hooks = sandbox.world.webhook_log
    before = hooks.read_text().splitlines() if hooks.exists() else []
    run = sandbox.command("make-alert-test", ["make", "-s", "alert-test", "APP=rental_scheduler"])
    assert run.returncode == 0, run.output[-2000:]
    time.sleep(1)
    new = hooks.read_text().splitlines()[len(before):]
    assert len(new) == 1, new
    content = json.loads(json.loads(new[0])["body"])["content"]
    assert "rental_scheduler" in content and "prod" in content and "Discord alert test" in content
    url = sandbox.world.secret_values()["lan"]["apps"]["rental_scheduler"][
        "discord_alerts"]["webhook_url"]
    assert url not in run.output and url.split("/")[-1] not in run.output


def test_audit_mismatches_writes_its_csv_report(sandbox: Sandbox, converged: Run) -> None:
    run = sandbox.command("make-audit", ["make", "-s", "audit-mismatches", "START=2026-01-01", "END=2026-01-31",
                                         "REPORT=/tmp/mismatch_report.csv"])
    assert run.returncode == 0, run.output[-2000:]
    assert "written to /tmp/mismatch_report.csv" in run.output
    # PrivateTmp does not apply: the command runs outside the unit, as the runbook's does
    head = sandbox.ssh("lan", "head -1 /tmp/mismatch_report.csv").stdout.strip()
    assert head == "contract_id,customer,contract_amount,invoice_amount,problem"


def test_lan_is_converged_and_declared_files_are_watched(sandbox: Sandbox, converged: Run) -> None:
    run, results = sandbox.converge_json("lan-second-run")
    assert changed_operations(results) == []
    assert sandbox.drift("lan-drift", "--limit", "lan").returncode == 0
    edits: list[str] = []
    for path, op in [("/etc/logrotate.d/gts-shop_scheduler", "shop_scheduler: log rotation"),
                     ("/etc/nginx/sites-available/shop_scheduler", "nginx site shop_scheduler"),
                     (f"{release(sandbox.world.debian('lan')).postgres_conf_dir}/pg_ident.conf",
                      "PostgreSQL pg_ident.conf"),
                     ("/etc/gts/apps/rental_scheduler.env", "rental_scheduler: env file (secrets)"),
                     ("/etc/systemd/system/gunicorn-shop_scheduler.service",
                      "shop_scheduler: unit gunicorn-shop_scheduler (verified, live)"),
                     ("/etc/network/interfaces.d/eno1", "ifupdown: static address of eno1"),
                     ("/etc/resolv.conf", "DNS servers and search domain")]:
        edited = sandbox.ssh("lan", f"echo '# hand edit' >> {path}")
        assert edited.returncode == 0
        edits.append(op)
    # one check finds every edit, each named by its operation (one drift run per scenario: each
    # costs ~15 s)
    drift = sandbox.drift("lan-drift-edited", "--limit", "lan")
    assert drift.returncode == 2, drift.output
    for op in edits:
        assert f"gts-server: {op}" in drift.stdout, (op, drift.output)
    # one run puts every file back
    restore = sandbox.converge("lan-restore", "--limit", "lan")
    assert restore.returncode == 0, restore.output[-3000:]
    assert sandbox.drift("lan-drift-restored", "--limit", "lan").returncode == 0


def test_front_end_is_rebuilt_only_when_its_inputs_change(sandbox: Sandbox, converged: Run) -> None:
    v1 = json.dumps({"lan": {"apps": {"shop_scheduler": {"source": {"revision": "v1"}}}}})
    # only the live release stays on disk, so v1 is built now (its node_modules lock is v2's)
    sandbox.ssh("lan", "live=$(readlink -f /srv/apps/shop_scheduler); for d in /srv/releases/shop_scheduler/*/; "
                       "do [ \"${d%/}\" = \"$live\" ] || rm -rf \"$d\"; done")
    logged = len(sandbox.ssh("lan", "cat /var/log/iac/releases.log").stdout.splitlines())
    run = sandbox.converge("shop-v1", "--limit", "lan", SANDBOX_OVERRIDES=v1)
    assert run.returncode == 0, run.output[-3000:]
    steps = "\n".join(sandbox.ssh("lan", "cat /var/log/iac/releases.log").stdout.splitlines()[logged:])
    assert "shop_scheduler: npm run build" in steps
    assert "npm ci" not in steps  # same package.json and lock file: node_modules reused
    assert "<h1>shop_scheduler v1</h1>" in http(sandbox, 8002).stdout
    assert sandbox.converge("shop-back-to-main", "--limit", "lan").returncode == 0
    assert "<h1>shop_scheduler v2</h1>" in http(sandbox, 8002).stdout



def test_a_failing_front_end_build_keeps_v2_serving_with_one_alert(sandbox: Sandbox, converged: Run) -> None:
    """`buildfail` is v2 whose `npm run build` exits 1: nothing live changes (the build comes
    before migrate and the switch), the run fails naming the step, the operator gets one alert.
    The next test's converge puts the declared release's settings back."""
    tables = "psql -Atc \"select count(*) from django_migrations\" gts_shop_scheduler"
    migrations = sandbox.ssh("lan", f"runuser -u postgres -- {tables}").stdout
    alerted = len(sandbox.webhook_messages())
    buildfail = json.dumps({"lan": {"apps": {"shop_scheduler": {"source": {"revision": "buildfail"}}}}})
    run = sandbox.converge("shop-buildfail", "--limit", "lan", SANDBOX_OVERRIDES=buildfail)
    assert run.returncode != 0
    assert "npm run build failed" in run.output and "(step: build (front end))" in run.output, failure_excerpt(run)
    assert "this build fails on purpose" in run.output  # the build's own reason reaches the operator
    page = http(sandbox, 8002).stdout
    assert "<h1>shop_scheduler v2</h1>" in page and "shop_scheduler-static-marker" in \
        http(sandbox, 8002, "/static/shop/dist/app.css").stdout
    assert sandbox.ssh("lan", f"runuser -u postgres -- {tables}").stdout == migrations
    new = sandbox.webhook_messages()[alerted:]
    assert len(new) == 1 and "shop_scheduler buildfail (" in new[0] and "step: build (front end)" in new[0], new


def test_release_with_unchanged_front_end_reuses_its_build_and_a_failed_migration_keeps_v2(
        sandbox: Sandbox, converged: Run) -> None:
    """`broken` is v2 plus a failing migration: the same CSS and templates as v2, so no npm runs;
    its migration fails, and v2 keeps serving the database as it was (Kamal's broken-deploy test)."""
    tables = "psql -Atc \"select count(*) from django_migrations\" gts_shop_scheduler"
    migrations = sandbox.ssh("lan", f"runuser -u postgres -- {tables}").stdout
    logged = len(sandbox.ssh("lan", "cat /var/log/iac/releases.log").stdout.splitlines())
    broken = json.dumps({"lan": {"apps": {"shop_scheduler": {"source": {"revision": "broken"}}}}})
    run = sandbox.converge("shop-broken", "--limit", "lan", SANDBOX_OVERRIDES=broken)
    assert run.returncode != 0
    steps = "\n".join(sandbox.ssh("lan", "cat /var/log/iac/releases.log").stdout.splitlines()[logged:])
    assert "shop_scheduler: front-end build reused" in steps, steps
    assert "npm run build" not in steps and "npm ci" not in steps
    assert "migration FAILED" in steps and "is live" not in steps
    page = http(sandbox, 8002).stdout
    assert "<h1>shop_scheduler v2</h1>" in page and "shop_scheduler-static-marker" in \
        http(sandbox, 8002, "/static/shop/dist/app.css").stdout
    assert sandbox.ssh("lan", f"runuser -u postgres -- {tables}").stdout == migrations
    assert sandbox.converge("shop-after-broken", "--limit", "lan").returncode == 0
    assert sandbox.drift("shop-drift-after-broken", "--limit", "lan").returncode == 0


def test_lan_host_brings_its_own_network_up_after_a_reboot(sandbox: Sandbox, converged: Run) -> None:
    """The sandbox boots the host with a bare eno1 once ifupdown owns it: the address, route and
    DNS come from the declared files alone, as on the real machine after a power cut."""
    world = sandbox.world
    world.stop_host("lan")
    world.boot("lan")
    world.wait_booted("lan")
    assert f"inet {world.host_ip('lan')}/24" in sandbox.ssh("lan", "ip -o -4 addr show dev eno1").stdout
    assert sandbox.ssh("lan", "ip -4 route show default").stdout.startswith(f"default via {world.gateway_ip('lan')}")
    assert sandbox.ssh("lan", "systemctl is-active networking").stdout.strip() == "active"
    assert sandbox.ssh("lan", "systemctl is-system-running", check=False).stdout.strip() == "running"
    assert sandbox.drift("drift-after-lan-reboot", "--limit", "lan").returncode == 0
