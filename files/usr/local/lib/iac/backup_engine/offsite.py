"""Offsite copies with restic: backup, forget with the declared policy, check; the repository's state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from engine_common.envfile import env_with, parse_env_file

from . import proc
from .dumps import layout, require_mount
from .lock import locked
from .proc import BackupError, log
from .settings import BackupSettings, Offsite


def restic(args: list[str], env_file: str | None = None, env: dict[str, str] | None = None,
           **kw) -> subprocess.CompletedProcess:
    """restic with ``env_file``'s variables (or exactly ``env``)."""
    env = dict(env) if env is not None else env_with(env_file)
    env.setdefault("RESTIC_CACHE_DIR", "/var/cache/restic")
    return proc.run(["restic", *args], env=env, **kw)


def forget_args(target: Offsite) -> list[str]:
    keep = target.keep
    args = ["forget", "--tag", target.tag, "--group-by", "host,tags", "--prune"]
    for period in ("hourly", "daily", "weekly", "monthly"):
        if getattr(keep, period):
            args += [f"--keep-{period}", str(getattr(keep, period))]
    return args


def write_inventory(directory: Path) -> None:
    """The runbook's inventory snapshot, regenerated before each system-state backup."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    commands = {
        "packages.txt": ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"],
        "enabled-services.txt": ["systemctl", "list-unit-files", "--state=enabled", "--no-legend", "--no-pager"],
        "mounts.txt": ["findmnt", "--real", "-l"],
        "nginx-T.txt": ["nginx", "-T"],
    }
    for name, cmd in commands.items():
        done = proc.run(cmd) if shutil.which(cmd[0]) else None
        text = (done.stdout + done.stderr) if done else f"{cmd[0]} is not installed\n"
        (directory / name).write_text(text)
    (directory / "generated_at.txt").write_text(datetime.now(UTC).isoformat() + "\n")


def cmd_offsite(settings: BackupSettings, name: str, time_override: str | None = None) -> int:
    target = settings.offsite.get(name)
    if not target:
        raise BackupError(f"no offsite repository '{name}' is declared on this host")
    with locked(f"offsite-{name}"):
        host = settings.host
        if name == "system_state":
            write_inventory(Path(target.inventory_dir))
            paths = ["--files-from", target.includes_file, "--exclude-file", target.excludes_file]
        else:
            require_mount(settings)
            lay = layout(settings)
            paths = [str(lay["db"]), str(lay["globals"])] if settings.local.globals else [str(lay["db"])]
            paths = [p for p in paths if Path(p).is_dir()]
            if not paths:
                raise BackupError(f"no local dumps under {lay['root']} to send offsite")
        extra = ["--time", time_override] if time_override else []
        # a run that was killed (a host reboot, a cut operator session) leaves its lock in the
        # repository, and every later forget fails until someone removes it. This host is the
        # repository's only writer and holds the lock above: `unlock` removes only stale locks
        # (of processes gone on this host, or older than restic's limit), never a live one
        restic(["unlock"])
        done = restic(["backup", "--tag", target.tag, "--host", host, *extra, *paths])
        if done.returncode != 0:
            raise BackupError(f"restic backup to {target.repository} failed: "
                              f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
        log(f"restic backup ({target.tag}): {(done.stdout.strip().splitlines() or ['done'])[-1]}")
        forgot = restic(forget_args(target))
        if forgot.returncode != 0:
            raise BackupError(f"restic forget failed: {(forgot.stderr.strip().splitlines() or ['?'])[-1]}")
        policy = next((line for line in forgot.stdout.splitlines() if line.startswith("Applying Policy")), "")
        removed = sum(int(n) for n in re.findall(r"^remove (\d+) snapshots?", forgot.stdout, re.M))
        log(f"restic forget --prune: {policy}; removed {removed} snapshot(s)")
    return 0


MISSING_PATTERNS = ("Is there a repository at the following location?", "The specified key does not exist",
                    "The specified bucket does not exist", "NoSuchBucket")


def repo_state(env_file: str) -> str:
    """``exists``, ``missing`` (restic finds no repository there) or ``unreachable: why``."""
    try:
        done = restic(["cat", "config"], env_file=env_file, timeout=90)
    except subprocess.TimeoutExpired as exc:
        # restic 0.17 and later retry for minutes: what it was retrying says why (a missing bucket)
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        retried = [line.rpartition(": ")[2] for line in err.splitlines() if "retrying after" in line]
        why = f" (restic kept retrying: {retried[-1].strip()[:200]})" if retried else ""
        hint = "; create the bucket at the provider" if "bucket does not exist" in err else ""
        return f"unreachable: no answer within 90 s{why}{hint}"
    if done.returncode == 0:
        return "exists"
    err = done.stderr.strip()
    if any(p in err for p in MISSING_PATTERNS) and "wrong password" not in err:
        return "missing"
    return "unreachable: " + " ".join(err.splitlines()[-2:])[:300]


MARKERS = Path("/var/lib/iac/restic")


def repo_marker(env_file: str) -> tuple[Path, str]:
    """Where ensure-repo notes that the repository of this env file was opened, and the note:
    the env file's digest (another URL, password or key makes it check again)."""
    text = Path(env_file).read_text()
    url = parse_env_file(text).get("RESTIC_REPOSITORY", "")
    return MARKERS / hashlib.sha256(url.encode()).hexdigest()[:16], hashlib.sha256(text.encode()).hexdigest()


def repo_known(env_file: str) -> str:
    """``exists`` when ensure-repo opened this repository with exactly this env file before
    (no network, no key derivation: what a converged run asks), else ``unverified``."""
    with contextlib.suppress(OSError):
        marker, digest = repo_marker(env_file)
        if marker.read_text().strip() == digest:
            return "exists"
    return "unverified"


def ensure_repo(env_file: str) -> int:
    """Initialise the repository only when restic finds none; anything else is an error."""
    state = repo_state(env_file)
    if state == "missing":
        proc.must(["restic", "init"], "restic init", env=env_with(env_file))
        log("restic repository initialised")
    elif state != "exists":
        raise BackupError(f"restic repository: {state} (it is not initialised while it cannot be read)")
    marker, digest = repo_marker(env_file)
    MARKERS.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest + "\n")
    return 0


def cmd_check(settings: BackupSettings, name: str) -> int:
    target = settings.offsite[name]
    done = restic(["check"])
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise BackupError(f"restic check of {target.repository} failed: {done.stderr.strip()[-300:]}")
    return 0


def latest_snapshot(target: Offsite) -> dict | None:
    done = restic(["snapshots", "--json", "--tag", target.tag], env_file=target.env_file, timeout=120)
    if done.returncode != 0:
        raise BackupError((done.stderr.strip().splitlines() or ["restic snapshots failed"])[-1])
    snaps = json.loads(done.stdout or "[]") or []
    return max(snaps, key=lambda s: s["time"]) if snaps else None
