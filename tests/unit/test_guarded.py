"""Validated changes (iac/guarded.py, operations/nginx/deploy.py) run here in sh: a rejected change
is put back and the check's output is shown, through no file with a fixed name (issue 20)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from pyinfra.api import FileUploadCommand, StringCommand

from iac import guarded
from iac.pyinfra_ext import sudo_staging
from operations.nginx import deploy as nginx


class FakeHost:
    """pyinfra's host as the operations ask it: facts by class, and noop()."""

    def __init__(self, facts: dict) -> None:
        self.facts = facts
        self.data: dict = {}  # no _temp_dir: a host reached as root (iac/pyinfra_ext/sudo_staging.py)
        self.current_op_global_arguments: dict = {}

    def get_fact(self, fact: type, **kwargs: object) -> object:
        value = self.facts.get(fact.__name__)
        return value(**kwargs) if callable(value) else value

    def noop(self, text: str) -> None:
        pass


def sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def shell(commands: list, cwd: Path) -> subprocess.CompletedProcess:
    text = "; ".join(c.get_raw_value() for c in commands if isinstance(c, StringCommand))
    assert "/tmp/" not in text.replace(str(cwd), "")  # no file in /tmp (nor elsewhere) holds the check's output
    return subprocess.run(["sh", "-c", text], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("outcome", ["accepted", "rejected"])
def test_a_validated_file_is_put_back_when_rejected_and_its_check_output_shown(
        outcome: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    staged, dest = tmp_path / "staged.conf", tmp_path / "live.conf"
    staged.write_text("new\n")
    dest.write_text("old\n")
    monkeypatch.setattr(guarded, "host", FakeHost({"Sha256File": lambda path: sha256(Path(path))}))
    check = "echo checked {path}; echo complaint >&2" + ("; false" if outcome == "rejected" else "")
    commands = list(guarded.validated_file._inner(staged=str(staged), dest=str(dest), validate=check,
                                                  activate="echo activated"))
    run = shell(commands, tmp_path)
    if outcome == "rejected":
        assert run.returncode == 1 and dest.read_text() == "old\n"
        assert f"checked {dest}\ncomplaint\n" in run.stderr and "REFUSED" in run.stderr
        assert "activated" not in run.stdout
    else:
        assert run.returncode == 0 and dest.read_text() == "new\n" and run.stdout == "activated\n"
        assert run.stderr == ""
    assert not (tmp_path / "live.conf.iac-prev").exists()


def test_a_set_of_validated_files_is_put_back_together_when_rejected(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    a, b = tmp_path / "a.timer", tmp_path / "b.timer"
    a.write_text("a old\n")
    fake = FakeHost({"Sha256Files": {}})
    monkeypatch.setattr(guarded, "host", fake)
    monkeypatch.setattr(sudo_staging, "current_host", fake)
    commands = list(guarded.validated_files._inner(files={str(a): "a new\n", str(b): "b new\n"},
                                                   validate="echo verify {paths}; exit 3",
                                                   activate="echo reloaded", staging=str(tmp_path / "staging")))
    for command in commands:  # the uploads, done here
        if isinstance(command, FileUploadCommand):
            Path(command.dest).parent.mkdir(exist_ok=True)
            Path(command.dest).write_bytes(command.src.read())
    run = shell(commands, tmp_path)
    assert run.returncode == 1 and f"verify {a} {b}" in run.stderr and "REFUSED" in run.stderr
    assert a.read_text() == "a old\n" and not b.exists()


def test_nginx_site_check_keeps_nginx_output_in_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nginx, "host", FakeHost({"Sha256File": lambda path: path, "Link": None}))
    [command] = list(nginx.site_live._inner(site="django"))
    text = command.get_raw_value()
    assert "/tmp/" not in text and ".log" not in text
    assert "if ! iac_out=$( ( nginx -t ) 2>&1 ); then printf '%s\\n' \"$iac_out\" >&2; rm -rf" in text


def test_unless_ok_runs_otherwise_only_on_failure_with_the_output_on_stderr(tmp_path: Path) -> None:
    for check, status in (("echo fine", 0), ("printf 'a\\nb'; echo c >&2; exit 4", 9)):
        text = guarded.unless_ok(check, "echo otherwise; exit 9")
        run = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=False)
        assert run.returncode == status
        if status:
            assert run.stderr == "a\nbc\n" and run.stdout == "otherwise\n"
        else:
            assert run.stdout == run.stderr == ""
