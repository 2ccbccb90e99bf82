"""iac-baseline: the whole host held against Debian's packages and this repository's declaration.

Usage: iac_baseline.py check|repair|timings SETTINGS_JSON

SETTINGS_JSON is the declaration (baseline_engine/settings.py), built by the controller from the
model on every run and passed whole: a check is held against what the repository declares now,
never against a copy on the host someone could edit. It holds no secrets.

Commands:
  check    every finding as JSON lines (a drift check's fact: nothing is changed)
  timings  the CPU seconds each check costs (make bench)
  repair   what a converge repairs here: undeclared files moved to the quarantine
           (/var/lib/iac/quarantine/<utc>/<path>, with MANIFEST.json), package files put back
           (the changed one kept in the quarantine), held files restored; daemon-reload and
           nginx/sshd reloads as needed; the access category's keys and certificates are the
           converge's own steps (commit-confirm, certbot). Prints what it did as JSON.
Exit codes: 0 done, 1 error, 2 usage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from engine_common.contract import SettingsError

from . import accounts, held, places, setuid, sockets, systemd
from .findings import Finding
from .quarantine import Quarantine
from .settings import BaselineSettings, settings_from

# repaired here by moving the thing away; then what has to read its configuration again
RELOAD = {"systemd": ["systemctl", "daemon-reload"], "units": ["systemctl", "daemon-reload"],
          "nginx": ["sh", "-c", "nginx -t && systemctl reload nginx"],
          "sshd": ["sh", "-c", "sshd -t && systemctl reload ssh"]}


def findings(settings: BaselineSettings, timings: dict[str, float] | None = None) -> list[Finding]:
    """Every check, in the order the report lists categories."""
    from . import packages, tls  # the two heaviest: loaded only when checking

    checks = [
        ("systemd", lambda: systemd.files(settings) + systemd.properties(settings)),
        ("places", lambda: places.check(settings) + places.nginx(settings) + places.postgres(settings)),
        ("held", lambda: held.check(settings)),
        ("accounts", lambda: accounts.check(settings)),
        ("sockets", lambda: sockets.check(settings)),
        ("setuid", lambda: setuid.check(settings)),
        ("packages", lambda: packages.check(set(settings.files), {a.path for a in settings.allowed},
                                            cache=_cache(settings))),
        ("tls", lambda: tls.check([tls.Site(s.name, s.port, s.ca_bundle, s.key_path) for s in settings.tls],
                                  settings.tls_min_days) + (tls.timer_check() if settings.tls else [])),
    ]
    out: list[Finding] = []
    for name, run in checks:
        started = time.process_time()
        out += run()
        if timings is not None:
            timings[name] = round(time.process_time() - started, 3)
    return out


def _cache(settings: BaselineSettings):
    from pathlib import Path

    return Path(settings.state) / "packages.cache"


def repair(settings: BaselineSettings) -> dict:
    """The repairs this engine does itself (see the module docstring)."""
    from . import packages

    quarantine = Quarantine(settings.quarantine)
    done: dict[str, list[str]] = {"quarantined": [], "reinstalled": [], "restored": [], "left": []}
    reload: set[str] = set()
    reinstall: dict[str, list[Finding]] = {}
    for f in findings(settings):
        if f.repair == "quarantine":
            quarantine.keep(f)
            done["quarantined"].append(f.path)
            if f.category in RELOAD:
                reload.add(f.category)
        elif f.repair == "reinstall":
            reinstall.setdefault(f.argument, []).append(f)
        elif f.repair == "restore":
            quarantine.keep(f, move=False)
            held.restore(settings, f.path)
            done["restored"].append(f.path)
        else:
            done["left"].append(f.line())
    conffiles = []
    known_conffiles = packages.conffile_paths() if reinstall else set()
    for items in reinstall.values():
        for f in items:
            if f.path in known_conffiles:
                # dpkg puts back a conffile only when it is missing: the changed one is moved away
                if f.mark == "~":
                    quarantine.keep(f, move=True)
                conffiles.append(f.path)
            elif f.mark == "~":
                quarantine.keep(f, move=False)  # a copy: the reinstall writes over it in place
    if reinstall:
        proc = subprocess.run(packages.reinstall_command(sorted(reinstall), conffiles), capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"putting package files back failed: {proc.stderr.strip()[-300:]}")
        done["reinstalled"] = sorted(reinstall)
    for category in sorted(reload):
        subprocess.run(RELOAD[category], check=False)
    done["recorded"] = held.record_missing(settings)
    manifest = quarantine.write_manifest()
    done["manifest"] = [str(manifest)] if manifest else []
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("check", "repair", "timings"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        settings = settings_from(args[1])
    except (ValueError, SettingsError) as e:
        print(f"iac-baseline: the settings argument: {e}", file=sys.stderr)
        return 2
    if args[0] == "check":
        for f in findings(settings):
            print(json.dumps(f.to_dict(), sort_keys=True))
        return 0
    if args[0] == "timings":
        timings: dict[str, float] = {}
        started = time.process_time()
        found = findings(settings, timings)
        print(json.dumps({"findings": len(found), "cpu_seconds": timings,
                          "cpu_seconds_total": round(time.process_time() - started, 3)}, indent=2))
        return 0
    print(json.dumps(repair(settings), indent=2))
    return 0
