"""What CI's drift job runs is pinned: actions by commit id, Python by hash (issue 20). Offline."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import distribution
from pathlib import Path

import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))
RUN_ROOTS = ("pyinfra", "pydantic", "Jinja2")  # what a drift run imports (requirements-run.in)


def pins(path: Path) -> dict[str, str]:
    """name -> version of each ``name==version`` requirement in a requirements file."""
    text = path.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.split()[0].partition("==")
            found[canonicalize_name(name)] = version
    return found


def test_every_action_is_pinned_by_its_full_commit_id_with_its_tag_in_a_comment() -> None:
    assert WORKFLOWS
    for workflow in WORKFLOWS:
        lines = [line for line in workflow.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
        assert lines, workflow
        for line in lines:
            assert re.fullmatch(r"\s*(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+(\.\d+)*", line), line


def test_the_drift_job_installs_only_the_hash_pinned_run_requirements() -> None:
    steps = yaml.safe_load((REPO / ".github/workflows/drift.yml").read_text())["jobs"]["drift"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "make venv-run" in runs and not any(re.search(r"make venv\b(?!-)|requirements\.txt|pip ", r) for r in runs)
    dry = subprocess.run(["make", "-n", "-B", "VENV=/nonexistent/venv", "venv-run"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    install = next(line for line in dry.replace("\\\n", " ").splitlines() if "pip install" in line)
    for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "-r requirements-run.txt"):
        assert flag in install, install


def test_the_run_requirements_are_the_run_closure_at_requirements_txt_versions_each_with_hashes() -> None:
    full, run = pins(REPO / "requirements.txt"), pins(REPO / "requirements-run.txt")
    environment = default_environment()
    closure: set[str] = set()

    def walk(name: str, extras: tuple[str, ...] = ()) -> None:
        if canonicalize_name(name) in closure:
            return
        closure.add(canonicalize_name(name))
        for text in distribution(name).requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({**environment, "extra": e}) for e in ("", *extras)):
                walk(req.name, tuple(req.extras))

    for root in RUN_ROOTS:
        walk(root)
    assert set(run) == closure, "regenerate requirements-run.txt (docs/drift.md, 'The CI drift job')"
    for name, version in run.items():
        assert full.get(name) == version, (name, version, full.get(name))
    # every requirement carries at least one sha256 (pip refuses the file otherwise, but say which)
    text = (REPO / "requirements-run.txt").read_text()
    hashed = re.findall(r"^([A-Za-z0-9_.-]+)==\S+ \\\n(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+", text, re.M)
    assert sorted(canonicalize_name(n) for n in hashed) == sorted(run)
