"""`iac status` (cli/status.py): how it reads what the host printed and the host's history."""

from __future__ import annotations

from datetime import UTC, datetime

from cli import status
from iac import drift_record


def test_sections_are_read_by_their_markers() -> None:
    out = "@@deployed a@@\n{\"commit\": \"c\"}\n@@units a@@\nactive\ninactive\n@@updates@@\n3\n"
    assert status.parse(out) == {"deployed a": ['{"commit": "c"}'], "units a": ["active", "inactive"],
                                 "updates": ["3"]}


def test_the_run_that_made_a_release_live_is_the_one_running_then() -> None:
    history = [{"when": "2026-12-05T04:00:00Z", "seconds": 30, "who": "asha", "what": "apply"},
               {"when": "2026-12-05T05:00:00Z", "seconds": 10, "who": "ben", "what": "release app abc"},
               {"when": "2026-12-05T06:00:00Z", "seconds": 5, "who": "carl", "what": "apply"}]
    assert status.made_live_by(history, "2026-12-05T05:00:07+00:00")["who"] == "ben"
    assert status.made_live_by(history, "2026-12-05T04:00:29+00:00")["who"] == "asha"
    assert status.made_live_by(history, "2026-12-05T03:00:00+00:00") is None  # before the history began
    assert status.made_live_by(history, None) is None


def test_days_left_of_a_certificate() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    assert status._days_left("notAfter=Dec 19 00:00:00 2026 GMT", now) == 14
    assert status._days_left("garbage", now) is None


def test_the_last_drift_report_is_kept_per_inventory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    drift_record.remember("sandbox/inventory.py", '{"status": "in_sync"}')
    assert drift_record.record_path("sandbox/inventory.py").read_text() == '{"status": "in_sync"}'
    assert drift_record.record_path("inventory.py") != drift_record.record_path("sandbox/inventory.py")
