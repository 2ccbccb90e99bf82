"""The watch engine without a host (files/usr/local/lib/iac/watch_engine/): a certificate close to
its end is found by its serial, a full disk by its mount point, stale backups from the backup
engine's report; each condition is told once while it lasts and again when it returns, to a real
webhook server on loopback. On a host: tests/integration/test_watch.py."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine_common import alerts
from engine_common.contract import SettingsError, dump, load
from watch_engine import checks, cli, state
from watch_engine.settings import WatchedCertificate, WatchSettings


def certificate(directory: Path, days: int, name: str = "pravoo.in") -> Path:
    """A real self-signed certificate that ends in ``days`` days."""
    chain = directory / f"{name}-{days}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(directory / "key.pem"), "-out", str(chain), "-days", str(days),
                    "-subj", f"/CN={name}"], check=True, capture_output=True)
    return chain


def settings(tmp_path: Path, **changes) -> WatchSettings:
    base = WatchSettings(host="srv1178562", certificates=[], cert_days=14, disks=[], disk_percent=90,
                         backup_engine="", state=str(tmp_path / "state" / "told.json"))
    return replace(base, **changes)


def test_a_certificate_inside_its_days_is_one_condition_keyed_by_its_serial(tmp_path: Path) -> None:
    soon, later = certificate(tmp_path, 5), certificate(tmp_path, 90, "b.pravoo.in")
    s = settings(tmp_path, certificates=[WatchedCertificate("pravoo.in", str(soon)),
                                         WatchedCertificate("b.pravoo.in", str(later))])
    found = checks.certificates(s, time.time())
    assert len(found) == 1 and found[0].key.startswith("cert:pravoo.in:"), found
    serial = subprocess.run(["openssl", "x509", "-in", str(soon), "-noout", "-serial"], capture_output=True,
                            text=True, check=True).stdout.strip().split("=")[1]
    assert found[0].key == f"cert:pravoo.in:{serial}"
    assert "expires in 5.0 days" in found[0].message, found[0].message
    assert checks.certificates(s, time.time() + 6 * 86400)[0].message.count("EXPIRED") == 1
    assert checks.certificates(replace(s, cert_days=3), time.time()) == []


def test_a_missing_or_forged_certificate_file_is_a_condition_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\n@@mention\n-----END CERTIFICATE-----\n")
    s = settings(tmp_path, certificates=[WatchedCertificate("pravoo.in", str(tmp_path / "missing.pem")),
                                         WatchedCertificate("x.pravoo.in", str(tmp_path / "junk.pem"))])
    found = checks.certificates(s, time.time())
    assert [c.key for c in found] == ["cert:pravoo.in:unreadable", "cert:x.pravoo.in:unreadable"]


def test_a_disk_above_its_percentage_is_a_condition(tmp_path: Path) -> None:
    used = checks.disk_use("/")
    assert 0 < used < 100
    assert [c.key for c in checks.disks(settings(tmp_path, disks=["/"], disk_percent=int(used) - 1))] == ["disk:/"]
    assert checks.disks(settings(tmp_path, disks=["/"], disk_percent=99 if used < 99 else 100)) == []
    assert checks.disks(settings(tmp_path, disks=[str(tmp_path)], disk_percent=0)) == []  # not a mount point


def test_stale_backups_come_from_the_backup_engine_report(tmp_path: Path) -> None:
    report = {"mount": "/mnt/pg_backups", "mounted": True,
              "databases": {"gts_scheduler": {"newest": "/x", "age_seconds": 9000, "stale": True},
                            "gts_shop": {"newest": "/y", "age_seconds": 10, "stale": False},
                            "globals": {"newest": None}},
              "repositories": {"postgres": {"newest": "2026-12-01T00:00:00Z", "stale": True},
                               "system_state": {"newest": None}},
              "units": {"pg-backup-gts": {"timer_active": False, "last_run": "Sat 2026-12-05 03:00:01 UTC"},
                        "pg-backup-gts-offsite": {"timer_active": True, "last_run": None}}}
    engine = tmp_path / "engine.py"
    engine.write_text(f"import json, sys\nprint(json.dumps({report!r}))\nsys.exit(2)\n")
    found = checks.backups(settings(tmp_path, backup_engine=str(engine)))
    assert [c.key for c in found] == ["backup:db:gts_scheduler", "backup:db:globals", "backup:offsite:postgres",
                                      "backup:offsite:system_state", "backup:timer:pg-backup-gts"]
    assert "2.5 h old" in found[0].message
    report["units"] = {"pg-backup-gts": {"timer_active": True, "last_run": None}}  # a host just built
    report["repositories"] = {"postgres": {"error": "Fatal: wrong password"}}
    engine.write_text(f"import json\nprint(json.dumps({report!r}))\n")
    assert [c.key for c in checks.backups(settings(tmp_path, backup_engine=str(engine)))] == [
        "backup:db:gts_scheduler", "backup:offsite:postgres:unreadable"]
    engine.write_text("import sys\nsys.exit(1)\n")
    with pytest.raises(RuntimeError, match="exit 1"):
        checks.backups(settings(tmp_path, backup_engine=str(engine)))


def test_each_condition_is_told_once_while_it_lasts_and_again_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "state" / "told.json"
    a, b = checks.Condition("disk:/", "full"), checks.Condition("cert:x:01", "soon")
    assert state.new_conditions([a, b, a], {}) == [a, b]
    state.remember(path, [a, b], {}, {"disk:/": 1.0, "cert:x:01": 1.0})
    assert state.new_conditions([a, b], state.told(path)) == []
    state.remember(path, [b], state.told(path), {})  # the disk was cleaned up
    assert state.new_conditions([a, b], state.told(path)) == [a]
    assert path.stat().st_mode & 0o777 == 0o600


class Webhook:
    """A real HTTP server on loopback that records what it is sent."""

    def __init__(self) -> None:
        got = self.got = []

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["content"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/webhooks/1/secret-token"


def test_check_posts_each_new_condition_once_and_never_shows_the_url(tmp_path: Path, monkeypatch, capsys) -> None:
    hook = Webhook()
    chain = certificate(tmp_path, 3)
    s = settings(tmp_path, certificates=[WatchedCertificate("pravoo.in", str(chain))])
    file = tmp_path / "watch.json"
    file.write_text(json.dumps(dump(s)))
    monkeypatch.setenv("IAC_ALERT_WEBHOOK_URL", hook.url)
    try:
        assert cli.main(["--settings", str(file), "check"]) == 2
        assert cli.main(["--settings", str(file), "check"]) == 2
        assert len(hook.got) == 1
        assert hook.got[0].startswith("Certificate for pravoo.in on srv1178562 expires in 3.0 days")
        certificate(tmp_path, 3)  # renewed by hand to another certificate that is just as close to its end
        assert cli.main(["--settings", str(file), "check"]) == 2
        assert len(hook.got) == 2
    finally:
        hook.server.shutdown()
    monkeypatch.setenv("IAC_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/api/webhooks/1/secret-token")
    certificate(tmp_path, 3)  # a third certificate: a new condition
    monkeypatch.setattr(cli.alerts, "post", functools.partial(alerts.post, sleep=lambda _s: None))
    assert cli.main(["--settings", str(file), "check"]) == 1  # not delivered: the unit fails, OnFailure= tells
    assert "secret-token" not in capsys.readouterr().err
    assert cli.main(["--settings", str(file), "status"]) == 2  # and it is still to be told


def test_settings_refuse_an_unknown_key(tmp_path: Path) -> None:
    data = dump(settings(tmp_path))
    assert load(WatchSettings, data) == settings(tmp_path)
    with pytest.raises(SettingsError, match="unknown key"):
        load(WatchSettings, {**data, "cert_dayz": 3})
