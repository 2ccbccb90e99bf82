"""Decisions without side effects (unit-tested): keys, what to prune, what to roll back to."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .codes import EXIT_ROLLBACK, STEPS, ReleaseFailed
from .settings import Settings

RELEASE_DIR_RE = re.compile(r"^[0-9a-f]{40}(-[0-9a-f]{12})?$")


# part of every build and virtualenv key: directories made before root kept its own records
# (their marks lived where the app could forge them) are never taken for built; they are pruned
RECORDS_VERSION = "root-records-2"


def sha256_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def short(commit: str) -> str:
    return commit[:12]


def inputs_hash(s: Settings) -> str:
    """What, besides the commit, a live release was made with: env file, units, settings (the
    converge hashes the same texts in the same order: operations/app/deploy.py)."""
    units = [s.unit_file, *([s.socket_unit_file] if s.socket_unit_file else []), *s.process_units.values()]
    return sha256_files([Path(s.env_file), *map(Path, units), s.settings_file])


def venv_key(requirements: bytes, python_version: str, extra: list[str] | None = None) -> str:
    """Releases with the same requirements.txt, extra requirements and python share one virtualenv."""
    extras = "".join(f"\n+{r}" for r in extra or []).encode()
    return hashlib.sha256(requirements + python_version.encode() + extras + RECORDS_VERSION.encode()).hexdigest()[:16]


def build_key(s: Settings) -> str:
    """The settings a built release directory depends on, besides its commit: a change of any
    of them builds a new directory instead of changing one that may be live."""
    built_from = {"manage_dir": s.manage_dir, "static_dir": s.static_dir, "static_root_env": s.static_root_env,
                  "extra_requirements": s.extra_requirements, "frontend_inputs": s.frontend_inputs,
                  "frontend_outputs": s.frontend_outputs, "records": RECORDS_VERSION}
    return hashlib.sha256(json.dumps(built_from, sort_keys=True).encode()).hexdigest()[:12]


def site_proxies_to(site: str, socket_path: str) -> bool:
    """Whether the enabled nginx site at ``site`` is the one this repo wrote for the app: it
    proxies to the app's gunicorn socket."""
    try:
        return bool(site and socket_path) and f"unix:{socket_path}" in Path(site).read_text()
    except OSError:
        return False


def alert_text(host: str, app: str, revision: str, commit: str | None, code: int, detail: str,
               live: str | None) -> str:
    """The one message a failed release posts: host, app, revision, the failed step, what serves."""
    what = f"{revision} ({short(commit)})" if commit else revision
    serving = f"release {short(live)} still serves" if live else "nothing serves (no release was live)"
    return (f"Release FAILED on {host}: {app} {what}, step: {STEPS.get(code, 'unknown')}. {detail}. {serving}."
            f"\nSee: /var/log/iac/releases.log")[:1900]


def migrate_wrote(returncode: int, stdout: str) -> bool:
    """Whether a `manage.py migrate` run may have changed the database: it failed, or it did
    not say that it had nothing to apply."""
    return returncode != 0 or "No migrations to apply." not in stdout


def release_dir_name(commit: str, key: str) -> str:
    return f"{commit}-{key}"


def is_live_and_unchanged(live_target: Path | None, release: Path, deployed: dict | None, inputs: str,
                          unit_active: bool) -> bool:
    return (live_target == release and deployed is not None and deployed.get("inputs") == inputs
            and unit_active)


def releases_to_prune(release_dirs: list[tuple[Path, float]], keep: int, live: Path) -> list[Path]:
    """The release directories beyond the newest ``keep`` (by mtime); never the live one."""
    newest_first = [p for p, _ in sorted(release_dirs, key=lambda item: item[1], reverse=True)]
    return [p for p in newest_first[keep:] if p != live]


def venvs_to_prune(venvs: list[Path], used: list[Path]) -> list[Path]:
    """The app's virtualenvs no kept release links to (one set aside as damaged stays to its owner)."""
    return sorted(v for v in venvs if v not in used and not v.name.endswith(".damaged"))


def caches_to_prune(cache_dirs: list[tuple[Path, float]], keep: int) -> list[Path]:
    newest_first = [p for p, _ in sorted(cache_dirs, key=lambda item: item[1], reverse=True)]
    return newest_first[keep:]


def rollback_target(history: list[dict], kept: list[str], live: str, to: str | None) -> str:
    """The release directory to go back to: the one whose commit starts with ``to``, else the
    newest one that was live before ``live``; only among directories still on disk."""
    if to:
        found = [name for name in kept if name.startswith(to) and name != live]
        if len(found) != 1:
            raise ReleaseFailed(EXIT_ROLLBACK, f"{'no' if not found else 'more than one'} kept release matches {to!r}; "
                                               f"kept: {', '.join(short(n) for n in kept if n != live) or 'none'}")
        return found[0]
    for entry in reversed(history):
        name = entry.get("release", "")
        if name and name != live and name in kept:
            return name
    raise ReleaseFailed(EXIT_ROLLBACK, "no release that was live before this one is kept on disk (keep_releases); "
                                       "deploy the wanted revision instead")


def health_verdict(answers: list[str], settled: int = 5) -> bool | None:
    """False once the app has answered the same wrong status ``settled`` times in a row (it is
    up and says no: waiting longer changes nothing); None while it may still be starting (no
    answer yet: '000')."""
    tail = answers[-settled:]
    return False if len(tail) == settled and tail[0] != "000" and len(set(tail)) == 1 else None


def showmigrations_plan(output: str) -> list[tuple[str, bool]]:
    """`manage.py showmigrations --plan` -> [("label.name", applied)] in plan order."""
    found = []
    for line in output.splitlines():
        m = re.match(r"^\[([ X])\]\s+(\w+)\.(\w+)\s*$", line.strip())
        if m:
            found.append((f"{m.group(2)}.{m.group(3)}", m.group(1) == "X"))
    return found


def reversal_targets(applied: list[str], known_by_target: list[str]) -> dict[str, str]:
    """For each app whose applied migrations include some the target release's code does not
    know: the migration to go back to (the last the target knows of that app, or 'zero')."""
    known = set(known_by_target)
    last_known: dict[str, str] = {}
    for migration in known_by_target:
        label, name = migration.split(".", 1)
        last_known[label] = name
    return {m.split(".", 1)[0]: last_known.get(m.split(".", 1)[0], "zero") for m in applied if m not in known}


def irreversible_migrations(plan_output: str) -> list[str]:
    """The migrations `migrate APP TARGET --plan` shows with an operation it cannot undo."""
    found, current = [], None
    for line in plan_output.splitlines():
        if re.match(r"^\w+\.\w+\s*$", line):
            current = line.strip()
        elif current and line.startswith(" ") and "IRREVERSIBLE" in line and current not in found:
            found.append(current)
    return found


def _mtimes(paths: list[Path]) -> list[tuple[Path, float]]:
    return [(p, p.stat().st_mtime) for p in paths if p.exists()]
