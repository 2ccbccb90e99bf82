"""iac-watch: what an operator must hear about before users do, told once each through the
host's alert webhook: a certificate close to its end (once per serial), a disk above its declared
use, backups that stopped arriving. Run by iac-watch.timer; ``status`` only reports.

Usage: iac_watch.py [--settings FILE] check|status

Commands:
  check    every condition found now; each new one is posted (IAC_ALERT_WEBHOOK_URL, from the
           unit's EnvironmentFile=), then remembered so that it is not posted again while it lasts
  status   JSON: the conditions found now and the ones already told (nothing is posted)
Exit codes: 0 nothing to tell, 2 conditions present, 1 error (an alert not delivered: the unit's
OnFailure= then tells through the alert unit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from engine_common import alerts
from engine_common.contract import SettingsError

from . import checks, state
from .settings import load_settings

SETTINGS = "/etc/iac/watch.json"


def log(message: str) -> None:
    print(f"[iac-watch] {message}", file=sys.stderr, flush=True)


def cmd_check(settings_file: Path) -> int:
    settings = load_settings(settings_file)
    found = checks.all_conditions(settings)
    before = state.told(Path(settings.state))
    fresh = state.new_conditions(found, before)
    url = os.environ.get("IAC_ALERT_WEBHOOK_URL", "")
    sent: dict[str, float] = {}
    failed = 0
    for condition in fresh:
        log(condition.message)
        if not url:
            log("no webhook configured (backups.alerts): in the journal only")
            sent[condition.key] = time.time()
            continue
        try:
            alerts.post(url, condition.message, user_agent="iac-watch")
        except alerts.AlertFailed as e:  # the URL is a secret: the reason never carries it
            log(f"alert not sent ({e}); tried again next run")
            failed += 1
            continue
        sent[condition.key] = time.time()
    state.remember(Path(settings.state), found, before, sent)
    log(f"{len(found)} condition(s), {len(sent)} told now, {len(found) - len(fresh)} told before")
    if failed:
        return 1
    return 2 if found else 0


def cmd_status(settings_file: Path) -> int:
    settings = load_settings(settings_file)
    found = checks.all_conditions(settings)
    print(json.dumps({"host": settings.host, "conditions": [c.__dict__ for c in found],
                      "told": state.told(Path(settings.state))}, indent=2))
    return 2 if found else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iac-watch", description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=SETTINGS, type=Path)
    p.add_argument("cmd", choices=("check", "status"))
    args = p.parse_args(argv)
    try:
        return cmd_check(args.settings) if args.cmd == "check" else cmd_status(args.settings)
    except (OSError, ValueError, RuntimeError, SettingsError) as exc:
        log(f"ERROR: {type(exc).__name__}: {exc}")
        return 1
