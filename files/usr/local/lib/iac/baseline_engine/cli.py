"""iac-baseline: the whole host held against Debian's packages and this repository's declaration.

Usage: iac_baseline.py check|repair|timings SETTINGS_JSON

SETTINGS_JSON is the declaration (baseline_engine/settings.py), built by the controller from the
model on every run and passed whole: a check is held against what the repository declares now,
never against a copy on the host someone could edit. It holds no secrets.

Commands:
  check        every finding as JSON lines (a drift check's fact: nothing is changed)
  repair       what a converge repairs here, each thing taken away kept in the quarantine
               (/var/lib/iac/quarantine/<utc>/<path>, with MANIFEST.json): undeclared files, units,
               drop-ins and links moved there, package files put back (the changed one kept),
               held files restored, units restarted, undeclared listeners' units stopped,
               accounts locked or taken out of privileged groups; then daemon-reload and the
               reloads each place needs. Certificates are the converge's certbot step. Prints what
               it did as JSON.
  repair-keys  the access category alone: only declared key lines stay; the files as they were
               are recorded for keys-revert until keys-commit (the converge arms a revert first
               and commits after a second login)
  keys-revert STATE / keys-commit STATE   (STATE: the settings' state directory)
  timings      the CPU seconds each check costs (make bench)
Exit codes: 0 done, 1 error, 2 usage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from engine_common.contract import SettingsError
from engine_common.safefs import UnsafePath, write_record

from . import accounts, held, owners, places, setuid, sockets, systemd, ucf
from .findings import Finding
from .quarantine import Quarantine
from .settings import BaselineSettings, settings_from

# repaired here by moving the thing away; then what has to read its configuration again
RELOAD = {"systemd": ["systemctl", "daemon-reload"], "units": ["systemctl", "daemon-reload"],
          "nginx": ["sh", "-c", "nginx -t && systemctl reload nginx"],
          "sshd": ["sh", "-c", "sshd -t && systemctl reload ssh"],
          "postgres": ["systemctl", "reload", "postgresql"],
          "libraries": ["ldconfig"]}


def findings(settings: BaselineSettings, timings: dict[str, float] | None = None) -> list[Finding]:
    """Every check; the report lists them in this order."""
    from . import packages, tls  # the two heaviest: loaded only when checking

    accepted = set(settings.files) | {a.path for a in settings.allowed}
    sites = [tls.Site(name=s.name, port=s.port, ca_bundle=s.ca_bundle, key_path=s.key_path) for s in settings.tls]
    checks = [
        ("systemd", lambda: systemd.files(settings) + systemd.properties(settings)),
        ("places", lambda: places.check(settings) + places.nginx(settings) + places.postgres(settings)),
        ("held", lambda: held.check(settings)),
        ("accounts", lambda: accounts.check(settings)),
        ("sockets", lambda: sockets.check(settings)),
        ("packages", lambda: packages.check(set(settings.files), {a.path for a in settings.allowed},
                                            cache=_cache(settings)) + ucf.check(accepted)),
        ("tls", lambda: tls.check(sites, settings.tls_min_days, memo=Path(settings.state) / "tls-verdicts.json")
         + (tls.timer_check() if sites else [])),
        ("setuid", lambda: setuid.check(settings)),
    ]
    out: list[Finding] = []
    for name, run in checks:
        started = _cpu()
        out += run()
        if timings is not None:
            timings[name] = round(_cpu() - started, 3)
    return [_with_content(f) for f in out]


def _cpu() -> float:
    """CPU seconds of this process and the programs it ran (find, openssl, systemctl)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _record_timings(settings: BaselineSettings, timings: dict[str, float], found: int) -> None:
    """The last check's cost, for ``make bench`` (root's state directory; no finding is named)."""
    with contextlib.suppress(OSError, UnsafePath):
        write_record(Path(settings.state) / "last-check.json",
                     {"cpu_seconds": timings, "cpu_seconds_total": round(sum(timings.values()), 3),
                      "findings": found, "at": int(time.time())})


def _with_content(finding: Finding) -> Finding:
    """An undeclared text file's lines as its diff (what it would add), at most 40 (held.text_diff)."""
    if finding.mark != "+" or finding.repair != "quarantine" or finding.diff:
        return finding
    path = Path(finding.path)
    if path.is_symlink():
        return dataclasses.replace(finding, diff=f"+-> {os.readlink(path)}")
    if not path.is_file():
        return finding
    return dataclasses.replace(finding, diff=held.text_diff(Path(os.devnull), path))


def _cache(settings: BaselineSettings) -> Path:
    return Path(settings.state) / "packages.cache"


def repair(settings: BaselineSettings, only_keys: bool = False) -> dict:
    """The repairs this engine does itself (see the module docstring), each keeping what it takes
    away in the quarantine. The keys (``only_keys``: the access category, its own command, between
    a revert armed on the host and the converge's second login) and certificates (the converge's
    certbot step) are left to the converge; what nothing may safely repair is returned as ``left``."""
    from . import packages

    quarantine = Quarantine(settings.quarantine)
    done: dict[str, list[str]] = {"quarantined": [], "reinstalled": [], "restored": [], "restarted": [],
                                  "stopped": [], "accounts": [], "keys": [], "left": []}
    reload: set[str] = set()
    restart: set[str] = set()
    reinstall: dict[str, list[Finding]] = {}
    found = [f for f in findings(settings) if (f.repair == "remove-keys") == only_keys]
    for f in found:
        if f.repair == "remove-keys":
            accounts.keep_keys(f, quarantine, _pending_keys(settings))
            done["keys"].append(f.path)
        elif f.repair == "quarantine":
            quarantine.keep(f)
            done["quarantined"].append(f.path)
            reload.add(f.category)
            unit = systemd.unit_of_drop_in(f.path)
            if unit:
                restart.add(unit)  # it still runs as the drop-in made it
        elif f.repair == "reinstall":
            reinstall.setdefault(f.argument, []).append(f)
        elif f.repair == "restore" and f.argument == "ucf":
            if f.mark == "~":
                quarantine.keep(f, move=False)
            ucf.restore(f.path)
            reload.add({"/etc/ssh/sshd_config": "sshd"}.get(f.path, f.category))
            done["restored"].append(f.path)
        elif f.repair == "restore":
            if f.mark == "~":
                quarantine.keep(f, move=False)
            if held.restore(settings, f.path):
                done["restored"].append(f.path)
        elif f.repair == "restart":
            restart.add(f.argument)
        elif f.repair == "stop-unit":
            quarantine.note(f, f"unit {f.argument} was running; stopped")
            subprocess.run(["systemctl", "stop", "--", f.argument], check=False, capture_output=True)
            done["stopped"].append(f.argument)
        elif f.repair == "leave-group":
            accounts.leave_group(f, quarantine)
            done["accounts"].append(f"{f.path}: {json.loads(f.argument)['user']}")
        elif f.repair == "lock-account":
            accounts.lock_account(f, quarantine)
            done["accounts"].append(f.path)
        elif f.repair == "remove-account":
            accounts.remove_account(f, quarantine)
            done["accounts"].append(f.path)
        elif f.repair == "reset-settings":
            quarantine.keep(f, move=False)
            places.reset_postgres_settings()
            reload.add("postgres")
            done["restored"].append(f.path)

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
            tail = (proc.stdout.strip()[-300:] + " / " + proc.stderr.strip()[-300:]).strip(" /")
            raise RuntimeError(f"putting package files back failed: {tail}")
        done["reinstalled"] = sorted(reinstall)
        reload.update(f.category for items in reinstall.values() for f in items)
    if reload & {"systemd", "units"} or restart:
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    for category in sorted(reload & set(RELOAD)):
        if category not in ("systemd", "units"):
            subprocess.run(RELOAD[category], check=False, capture_output=True)
    for unit in sorted(restart):
        # only a unit that runs: a stopped one starts as declared the next time it is started
        subprocess.run(["systemctl", "try-restart", "--", unit], check=False, capture_output=True)
        done["restarted"].append(unit)
    done["recorded"] = held.record_missing(settings)
    manifest = quarantine.write_manifest()
    done["manifest"] = [str(manifest)] if manifest else []
    # what is still there once the rest is repaired (an undeclared listener may have been an
    # undeclared site's): what nothing here may safely repair
    if not only_keys:
        _clear_caches()
        done["left"] = [f.line() for f in findings(settings) if f.repair == "report"]
    return done


def _clear_caches() -> None:
    """What a repair changed is read again: the package owners, ucf's records, enablement."""
    for module in (owners, systemd, ucf, held):
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


def _pending_keys(settings: BaselineSettings) -> Path:
    return Path(settings.state) / "keys-pending.json"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["keys-revert"], ["keys-commit"]) and len(args) == 2:
        return _keys_end(args[0], Path(args[1]))
    if len(args) != 2 or args[0] not in ("check", "repair", "repair-keys", "timings"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        settings = settings_from(args[1])
    except (ValueError, SettingsError) as e:
        print(f"iac-baseline: the settings argument: {e}", file=sys.stderr)
        return 2
    if args[0] in ("check", "timings"):
        timings: dict[str, float] = {}
        found = findings(settings, timings)
        _record_timings(settings, timings, len(found))
        if args[0] == "timings":
            print(json.dumps({"findings": len(found), "cpu_seconds": timings,
                              "cpu_seconds_total": round(sum(timings.values()), 3)}, indent=2))
        for f in found if args[0] == "check" else []:
            print(json.dumps(f.to_dict(), sort_keys=True))
        return 0
    done = repair(settings, only_keys=args[0] == "repair-keys")
    print(json.dumps(done, indent=2))
    if done.get("left"):
        print("NOT REPAIRED (an operator must look): " + "; ".join(done["left"]), file=sys.stderr)
        return 1
    return 0


def _keys_end(command: str, state: Path) -> int:
    """keys-revert STATE: the last key repair undone (the second login failed, or nobody came back
    to commit it: the armed timer runs this); keys-commit STATE: it stays."""
    pending = state / "keys-pending.json"
    if command == "keys-revert":
        print(json.dumps({"reverted": accounts.revert_keys(pending)}))
    else:
        pending.unlink(missing_ok=True)
    return 0
