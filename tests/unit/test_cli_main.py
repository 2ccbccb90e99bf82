"""`iac` (cli/main.py): every operator command, with its exit codes, and none of make's exit 2 for an
error. tests/integration/test_drift.py runs `iac drift` on a host that is down (1), drifted (2)
and in sync (0)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli import main as iac

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command's module replaced by one that records its argv and exits with its last argument."""
    calls: list[list[str]] = []

    def main(argv: list[str]) -> int:
        calls.append(argv)
        if "--usage-error" in argv:
            raise SystemExit(2)  # what argparse does
        return int(argv[-1]) if argv and argv[-1].isdigit() else 0

    monkeypatch.setattr(iac.importlib, "import_module", lambda name: SimpleNamespace(main=main))
    monkeypatch.chdir(REPO)
    return calls


def test_each_command_gets_the_inventory_and_its_own_arguments(fake: list[list[str]]) -> None:
    assert iac.main(["-i", "inventory.py", "drift", "--limit", "lan"]) == 0
    assert iac.main(["restore", "--db", "gts_rental", "--from", "offsite"]) == 0
    assert iac.main(["validate"]) == 0
    assert fake == [[str(REPO / "inventory.py"), "--limit", "lan"],
                    [str(REPO / "sandbox/inventory.py"), "restore", "--db", "gts_rental", "--from", "offsite"],
                    []]


def test_exit_codes_mean_what_the_help_says(fake: list[list[str]]) -> None:
    assert iac.main(["drift", "2"]) == 2  # drift
    assert iac.main(["drift", "1"]) == 1  # error
    assert iac.main(["plan", "2"]) == 0  # a plan with changes is a plan shown
    assert iac.main(["drift", "--usage-error"]) == 1  # a usage error is an error, never "drift"


def test_help_names_every_command_with_its_exit_codes() -> None:
    text = iac.parser().format_help()
    for name, command in iac.COMMANDS.items():
        assert f"  {name:<14} {command.summary}" in text and command.exits in text
    assert "0 in sync, 2 drift, 1 error" in text


def test_completion_offers_every_command() -> None:
    script = iac.completion()
    assert all(name in script for name in iac.COMMANDS) and "complete -F _iac iac" in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0


def test_iac_is_a_console_script_of_this_repository_and_make_installs_it() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["iac"] == "cli.main:main"
    assert all(v.count("==") == 1 for v in project["build-system"]["requires"])  # pinned
    assert "pip install -q --disable-pip-version-check --no-deps -e ." in (REPO / "Makefile").read_text()


def test_every_make_operator_target_has_an_iac_command() -> None:
    makefile = (REPO / "Makefile").read_text()
    for name in iac.COMMANDS:
        assert f"\n{name}:" in makefile, name


def test_every_iac_command_target_is_a_thin_alias_of_iac() -> None:
    """Each target named like an `iac` command runs that command and nothing else (the same exit
    codes, the same arguments), never the module behind it directly."""
    makefile = (REPO / "Makefile").read_text()
    for name in iac.COMMANDS:
        recipe = makefile.split(f"\n{name}:", 1)[1].split("\n\n", 1)[0]
        runs = [line for line in recipe.splitlines()[1:] if "$(IAC)" in line or "-m cli." in line]
        assert runs and all(f"$(IAC) {name}" in line for line in runs), (name, runs)
    assert "\nIAC = $(PY) -m cli.main -i $(INVENTORY)\n" in makefile


def test_iac_runs_from_anywhere(tmp_path: Path) -> None:
    """The console script make installed, started outside the repository, finds its files."""
    done = subprocess.run([str(REPO / ".venv/bin/iac"), "validate"], cwd=tmp_path, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "valid: lan/gts-server (connects as gts@gts-server)" in done.stdout, done.stderr


def test_iac_drift_starts_the_plan_before_the_reports_slow_imports() -> None:
    """`iac drift` (and so `make drift`) starts pyinfra's plan while cli/drift.py is still being
    imported, before pydantic loads, as `python -m cli.drift` does (cli/early.py)."""
    program = """
import subprocess, sys
order = []
class Proc:
    returncode = 1
    def communicate(self, timeout=None):
        return "", "stubbed"
def popen(argv, **kw):
    order.append(("plan", "pydantic" in sys.modules))
    return Proc()
subprocess.Popen = popen
from cli import main
main.main(["-i", "sandbox/inventory.py", "drift"])
main.main(["-i", "sandbox/inventory.py", "drift"])  # imported already: it starts its own plan
print(order)
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[('plan', False), ('plan', True)]", done.stdout + done.stderr
