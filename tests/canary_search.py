"""The search for the sandbox's canary secrets in what a test session produced and in the repository.

The sandbox's secrets (.sandbox/<name>/secrets.age, decrypted by World.secret_values()) hold generated canaries
(``CANARY-<path>-<random>``, stack/secrets.py): any of them found in a run's output, a fact
record, a tracked file or a commit is a leak. tests/integration/conftest.py searches every kept
output and fact record when the session ends (whatever ran, in whatever order);
tests/integration/test_secrets_never_leak.py searches the repository and its history;
tests/unit/test_canary_search.py plants canaries to prove the search finds them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stack.secrets import all_secret_values


def canaries(secrets: Mapping[str, Any]) -> list[str]:
    """What to search for, from a secrets structure: the canary token itself where a value
    carries one (a webhook URL carries it as its last part), else the whole value (the admin's
    password hash is a real crypt(3) hash, searched for whole)."""
    return [m.group(0) if (m := re.search(r"CANARY-[\w.-]+", v)) else v for v in all_secret_values(secrets)]


def canaries_of(secrets_file: Path) -> list[str]:
    """The canaries of a sandbox's secrets file (none when the file does not exist yet)."""
    return canaries(json.loads(secrets_file.read_text())) if secrets_file.exists() else []


def leaks_in_files(files: Iterable[Path], secrets: list[str]) -> list[tuple[str, str]]:
    """(file name, the canary's first 20 characters) for every canary found in every file."""
    return [(f.name, s[:20]) for f in files for s in secrets if s in f.read_text(errors="replace")]


def session_files(outputs: Path, records: Path) -> list[Path]:
    """What a session leaves behind to search: every kept output (pyinfra runs, drift checks, make
    targets: .sandbox/<name>/outputs/) and every fact record (iac/pyinfra_ext/fact_batch.py)."""
    kept = sorted(p for p in outputs.iterdir() if p.is_file()) if outputs.is_dir() else []
    return kept + (sorted(records.glob("*.json")) if records.is_dir() else [])


def leaks_in_git(repo: Path, secrets: list[str]) -> list[str]:
    """Each tracked file of ``repo`` that holds a canary, and "history" when a commit's diff (any
    branch) holds one."""
    encoded = [s.encode() for s in secrets]
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    found = []
    for path in filter(None, tracked.split(b"\0")):
        data = (repo / path.decode()).read_bytes() if (repo / path.decode()).is_file() else b""
        if any(s in data for s in encoded):
            found.append(path.decode())
    history = subprocess.run(["git", "log", "-p", "--all"], cwd=repo, capture_output=True, check=True).stdout
    if any(s in history for s in encoded):
        found.append("history")
    return found
