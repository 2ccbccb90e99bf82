"""Env files (engine_common/envfile.py, quoted by the converge for systemd's EnvironmentFile=):
every value reads back byte-exact whatever it holds and runs nothing; a changed env file on a host
is named by its variables, never their values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from engine_common import envfile
from iac.engines import ENGINE_DIR
from operations.backups import deploy as ops

HOSTILE = ["plain", "with space", "$(touch /tmp/pwned)", "`id`", "a'b\"c", "semi;colon & amp", "#hash",
           "back\\slash\\", "%percent%n", "trailing\\", '"quoted"', "${HOME}", "tab\there", "=equals="]


@pytest.mark.parametrize("value", HOSTILE)
def test_env_file_values_round_trip_byte_exact(value: str) -> None:
    text = ops.env_file_text({"RESTIC_PASSWORD": value, "OTHER": "x"})
    assert envfile.parse_env_file(text) == {"RESTIC_PASSWORD": value, "OTHER": "x"}
    assert "\n" not in text.splitlines()[1]


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
@pytest.mark.parametrize("value", HOSTILE)
def test_env_exec_passes_values_without_any_shell_reading_them(tmp_path: Path, value: str) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text(ops.env_file_text({"SECRET": value}))
    out = subprocess.run(["python3", str(ENGINE_DIR / "iac_backup.py"), "env-exec", str(env_file), "--",
                          "python3", "-c", "import os,sys; sys.stdout.write(os.environ['SECRET'])"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout == value
    assert not Path("/tmp/pwned").exists()


def test_env_values_with_newlines_are_refused() -> None:
    with pytest.raises(ValueError, match="newline"):
        ops.env_file_text({"A": "one\ntwo"})


@pytest.mark.parametrize("value", HOSTILE)
def test_a_shell_that_sources_an_env_file_reads_each_value_as_itself_and_runs_nothing(tmp_path: Path,
                                                                                        value: str) -> None:
    """Operators source env files (the runbook's `source restic.env && restic snapshots`): a POSIX
    shell and dash read the same bytes systemd does, and expand nothing."""
    env_file = tmp_path / "x.env"
    env_file.write_text(ops.env_file_text({"SECRET": value}))
    for shell in ("sh", "bash"):
        out = subprocess.run([shell, "-c", f'. {env_file}; printf %s "$SECRET"'], capture_output=True, text=True,
                             check=True, cwd=tmp_path)
        assert out.stdout == value, shell
    assert not Path("/tmp/pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("char", ["\r", "\x00", "\x0b", "\x0c", "\x1c", "\x1e", "\x7f", "\x85", "\u2028",
                                  "\u2029"])
def test_line_separators_and_control_characters_are_refused(char: str) -> None:
    """systemd ends a line at a newline only; Python's splitlines (the engines, the digests) also at
    U+2028, U+0085 and more: a value holding one would read differently in each."""
    with pytest.raises(ValueError, match=f"U\\+{ord(char):04X}"):
        ops.env_file_text({"A": f"one{char}two"})


def test_backslashes_before_other_characters_stay_as_systemd_keeps_them() -> None:
    assert envfile.parse_env_file('A="x\\ny\\$z\\`w"\n') == {"A": "x\\ny$z`w"}


def test_a_changed_env_file_names_its_variables_never_their_values(tmp_path: Path) -> None:
    """The host side (EnvFileDigests, run here with sh as pyinfra runs it) and the declared side
    (env_digests) hash each value the same way, whatever it holds; only names come out."""
    import subprocess

    from iac.guarded import EnvFileDigests, env_differences, env_digests

    hostile = "CANARY-x $(touch /tmp/pwned)`id`&;#'\\\" %n\\\\x{}"
    on_host = f'# managed\nDEBUG="false"\nSECRET_KEY="{hostile}"\nOLD="1"\n'
    declared = f'# managed\nDEBUG="true"\nSECRET_KEY="{hostile}"\nNEW="2"\n'
    path = tmp_path / "app.env"
    path.write_text(on_host)
    fact = EnvFileDigests()
    out = subprocess.run(["sh", "-c", fact.command(path=str(path), salt="5a1t")], capture_output=True,
                         text=True, check=True).stdout
    assert "CANARY" not in out and not (tmp_path / "pwned").exists()
    current = fact.process(out.splitlines())
    assert current == env_digests(on_host, "5a1t")  # the two sides agree on every value
    assert env_differences(current, env_digests(declared, "5a1t")) == ["DEBUG changed", "NEW to add",
                                                                        "OLD to remove"]
