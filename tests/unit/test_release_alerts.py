"""One alert per failed release, without a host: what it says, that it goes out once through the
alert env file (the webhook URL never on a command line), and what happens before that file exists."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from release_engine import cli, codes, commands, decisions, engine, log, records
from release_engine.settings import Settings
from tests.unit.release_demo import fake_release, settings


def test_alert_names_host_app_revision_step_and_what_serves() -> None:
    text = decisions.alert_text("srv1", "pinger", "v1", "d" * 40, codes.EXIT_COMMAND,
                                     "release command manage.py compress --no-such FAILED", "e" * 40 + "-0123")
    assert text.startswith("Release FAILED on srv1: pinger v1 (dddddddddddd), step: release command.")
    assert "release eeeeeeeeeeee still serves" in text
    first = decisions.alert_text("srv1", "pinger", "v1", None, codes.EXIT_FETCH, "cannot fetch", None)
    assert "pinger v1, step: fetch" in first and "nothing serves" in first


def test_a_failed_release_sends_exactly_one_alert_through_the_alert_env_file(tmp_path: Path, monkeypatch) -> None:
    """main(): the failure is logged and posted once; the webhook URL (a secret) reaches only the
    notifier's environment, through systemd's EnvironmentFile=, never the command line."""
    alert_env = tmp_path / "backup-alert.env"
    alert_env.write_text('IAC_ALERT_WEBHOOK_URL="https://discord.invalid/api/webhooks/1/t"\n')
    s = settings(tmp_path, alert_env_file=str(alert_env))
    Path(s.env_file).write_text('A="1"\n')
    Path(s.unit_file).write_text("[Service]\n")
    s.releases.mkdir()
    calls: list[tuple[list[str], dict]] = []

    def fake_run(cmd, check=True, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    def failing_run(self):
        self.commit = "f" * 40
        raise codes.ReleaseFailed(codes.EXIT_HEALTH, "health check FAILED")

    monkeypatch.setattr(commands, "run", fake_run)
    load = Settings.load
    monkeypatch.setattr(Settings, "load", lambda app: load(app, tmp_path))
    monkeypatch.setattr(engine.Release, "run", failing_run)
    monkeypatch.setattr(log, "LOG_FILE", tmp_path / "releases.log")
    assert cli.main(["release", "demo"]) == codes.EXIT_HEALTH
    sent = [(cmd, kw) for cmd, kw in calls if cmd[0] == "systemd-run"]
    assert len(sent) == 1
    cmd, kw = sent[0]
    assert f"EnvironmentFile={alert_env}" in cmd and cmd[-2:] == ["notify", "demo"]
    assert "demo v2 (ffffffffffff), step: health check" in kw["input"]
    # the same release failing again (the next run retries it): logged with the count, not re-alerted
    assert cli.main(["release", "demo"]) == codes.EXIT_HEALTH
    assert len([c for c, _ in calls if c[0] == "systemd-run"]) == 1
    failed = json.loads((s.state_dir / "failed.json").read_text())
    assert failed["attempts"] == 2 and failed["step"] == "health check" and failed["commit"] == "f" * 40


def test_failure_record_counts_attempts_of_the_same_release_only() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    first = records.failure_after(None, "a" * 40, "h", "migrate", now)
    assert first["attempts"] == 1 and first["first_at"] == "2026-11-29T12:00:00+00:00"
    again = records.failure_after(first, "a" * 40, "h", "migrate", now.replace(hour=13))
    assert again["attempts"] == 2 and again["first_at"] == first["first_at"]
    assert records.failure_after(again, "b" * 40, "h", "migrate", now)["attempts"] == 1
    assert records.failure_after(again, "a" * 40, "other", "migrate", now)["attempts"] == 1


def test_notify_posts_the_message_to_the_webhook(monkeypatch, capsys) -> None:
    import http.server
    import io
    import threading
    got: list[bytes] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    monkeypatch.setenv("IAC_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/api/webhooks/1/t")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Release FAILED on h: demo"))
    assert cli.main(["notify", "demo"]) == 0
    server.server_close()
    assert json.loads(got[0]) == {"content": "Release FAILED on h: demo", "allowed_mentions": {"parse": []}}
    monkeypatch.setenv("IAC_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/api/webhooks/1/secret-token")
    monkeypatch.setattr(sys, "stdin", io.StringIO("x"))
    assert cli.main(["notify", "demo"]) == 1
    assert "secret-token" not in capsys.readouterr().err


def test_an_alert_before_the_alert_settings_exist_says_so_instead_of_failing_silently(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """A host's first run releases its apps before it writes backups.alerts' env file."""
    release, calls = fake_release(tmp_path, alert_env_file=str(tmp_path / "not-yet.env"))
    ran: list[list[str]] = []
    monkeypatch.setattr(commands, "run", lambda cmd, **kw: ran.append(cmd))
    cli.alert(release, codes.EXIT_HEALTH, "health check FAILED")
    assert ran == []
    assert any("not written yet" in c[1] for c in calls if c[0] == "log"), calls
