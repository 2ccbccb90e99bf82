"""Post one drift message to a Discord webhook, from a drift report (``make drift JSON_OUT=...``).

Run by the drift job's step (``.github/drift-check.sh``) when the check says drift (exit 2). The
webhook URL is a secret: it comes from the environment (``DRIFT_WEBHOOK_URL``), never from an
argument, and is never printed. The message names the inventory, each drifted host and
operation with what differs (already redacted by the report) and, on GitHub, the run's URL.

Usage: DRIFT_WEBHOOK_URL=... python -m cli.drift_notify drift.json
Exit codes: 0 posted, 1 not posted (no URL, unreadable report, the webhook refused).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cli.drift import DriftReport
from iac.engines import alerts

LIMIT = 1900  # Discord refuses content over 2000 characters


def message(report: DriftReport, run_url: str | None = None) -> str:
    """The one message for a drifted report: what drifted where, cut to Discord's limit."""
    changed = [i for i in report.drift if not i.conditional]
    head = (f"**Drift** in `{report.inventory}` ({report.checked_at}): {len(changed)} operation(s) on "
            f"{', '.join(report.hosts)}")
    tail = f"\nDetails: {run_url}" if run_url else ""
    lines = []
    for item in changed:
        what = f": {'; '.join(item.details)}" if item.details else ""
        lines.append(f"- {item.host}: {item.operation}{what}")
    body = head
    for i, line in enumerate(lines):
        more = f"\n... and {len(lines) - i} more"
        if len(body) + len(line) + len(more) + len(tail) + 1 > LIMIT:
            body += more
            break
        body += "\n" + line
    return body + tail


def run_url(env: dict[str, str]) -> str | None:
    """The GitHub Actions run this job is, when it is one."""
    if all(env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")):
        return f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    return None


def post(url: str, content: str, timeout: float = 20) -> None:
    """Through the engines' one alert client (engine_common/alerts.py): retried after a rate limit
    or a server error; no mention is ever parsed (a name from the report stays text)."""
    alerts.post(url, content, user_agent="iac-drift", timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: DRIFT_WEBHOOK_URL=... python -m cli.drift_notify drift.json", file=sys.stderr)
        return 1
    url = os.environ.get("DRIFT_WEBHOOK_URL", "")
    if not url:
        print("drift-notify: DRIFT_WEBHOOK_URL is not set: no message posted", file=sys.stderr)
        return 1
    try:
        report = DriftReport.model_validate_json(Path(args[0]).read_text())
    except (OSError, ValueError) as exc:
        print(f"drift-notify: cannot read the report {args[0]}: {exc}", file=sys.stderr)
        return 1
    if report.status != "drift":
        print(f"drift-notify: the report says {report.status}: nothing to post", file=sys.stderr)
        return 0
    try:
        post(url, message(report, run_url(dict(os.environ))))
    except alerts.AlertFailed as exc:  # its reason never carries the URL (a secret)
        print(f"drift-notify: the webhook did not take the message ({exc})", file=sys.stderr)
        return 1
    print("drift-notify: one message posted to the drift webhook")
    return 0


if __name__ == "__main__":
    sys.exit(main())
