"""The layout's promises, held against the code: the controller never imports a host engine's
stages (only their settings and what the engines share) nor the sandbox, the engines' own defaults
are the paths the controller derives (iac/paths.py), and no Python file grows past 700 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from iac.paths import HOST

REPO = Path(__file__).resolve().parents[2]
CONTROLLER = ["deploy", "deploy_keys", "dr_bootstrap", "cli", "stack", "operations", "iac"]


def test_the_controller_imports_no_engine_stage() -> None:
    """Every controller module imported (as a deploy or a command would): of the engines, only
    their settings modules and engine_common are loaded."""
    script = """
import importlib, pkgutil, sys
sys.argv = ["x"]
for top in ("cli", "stack", "operations", "iac"):
    pkg = importlib.import_module(top)
    for info in pkgutil.walk_packages(pkg.__path__, top + "."):
        if not info.name.endswith("plan_runner"):
            importlib.import_module(info.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("release_engine", "backup_engine"))
print("\\n".join(loaded))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert loaded <= {"release_engine", "release_engine.settings", "backup_engine", "backup_engine.settings"}, loaded


def test_the_engines_defaults_are_the_controllers_paths() -> None:
    from backup_engine import lock, offsite
    from release_engine import log as release_log
    from release_engine import settings as release_settings

    assert str(release_settings.SETTINGS_DIR) == HOST.release_settings_dir
    # the release log (iac logs --what release) and the run history share the engines' log directory
    assert str(release_log.LOG_FILE) == HOST.release_log and HOST.history.startswith(HOST.log_dir + "/")
    assert str(lock.LOCK_DIR) == HOST.runtime_dir
    assert str(offsite.MARKERS).startswith(HOST.state_dir + "/")
    engines = REPO / "files" / HOST.engines.lstrip("/")
    assert (engines / Path(HOST.release_engine).name).is_file() and (engines / Path(HOST.backup_engine).name).is_file()
    # certbot's deploy hook (a shell script, put as it is) points the links nginx reads
    hook = (REPO / "templates/usr/local/sbin/iac-tls-deploy-hook").read_text()
    assert f"d={HOST.tls_links}/$domain" in hook and HOST.tls_chain("x") == f"{HOST.tls_links}/x/fullchain.pem"


def test_no_python_file_is_over_700_lines() -> None:
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    long = {f: n for f in files if "fixtures/apps" not in f and (REPO / f).exists()
            and (n := len((REPO / f).read_text().splitlines())) > 700}
    assert not long, long


def test_iac_never_imports_the_sandbox() -> None:
    """The stack code works without the sandbox: nothing under iac/ imports sandbox/."""
    import ast

    offenders = []
    for path in (REPO / "iac").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "sandbox"]
    assert offenders == []
