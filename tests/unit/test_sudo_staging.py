"""Uploads through sudo are staged in the login's private directory (iac/pyinfra_ext/sudo_staging.py), without a host.

No pyinfra patch does it: pyinfra's ``_temp_dir`` global argument in the host's data does. The
tests below pin the pyinfra 3.10 behaviour that relies on (facts, the SSH connector's staged
upload), so that an upgrade which changes it fails here, not on production.
tests/integration/test_sudo_uploads.py watches a real converge through sudo.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyinfra.api import Config, FileUploadCommand, Inventory, State, StringCommand
from pyinfra.api.facts import _handle_fact_kwargs
from pyinfra.connectors.util import CommandOutput, OutputLine, make_unix_command
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import File

from cli.validate import load_inventory
from iac.errors import ConfigError
from iac.pyinfra_ext import sudo_staging

REPO = Path(__file__).resolve().parents[2]
STAGING = "/home/gts/.cache/iac-staging"


def test_production_reaches_the_lan_host_through_sudo_with_a_private_staging_directory() -> None:
    groups = load_inventory(REPO / "inventory.py")
    lan, public = groups["lan"][0][1], groups["public"][0][1]
    assert (lan["ssh_user"], lan["_sudo"], lan["_temp_dir"]) == ("gts", True, STAGING)
    assert "_temp_dir" not in public  # reached as root: pyinfra uploads in place, nothing is staged


@pytest.mark.parametrize("user", ["gts x", "../root", "$(id)", "a}b", "Gts", "", "x" * 40])
def test_the_staging_path_is_made_of_a_login_name_only(user: str) -> None:
    """The path goes into pyinfra's temporary file names and its shell commands: only a login name is taken."""
    with pytest.raises(ConfigError, match="not a login name"):
        sudo_staging.staging_dir(user)


def test_staging_follows_sudo() -> None:
    assert sudo_staging.host_data({"ssh_user": "gts"}) == {}
    assert sudo_staging.host_data({"ssh_user": "gts", "_sudo": True}) == {"_temp_dir": STAGING}
    assert sudo_staging.host_data({"ssh_user": "root", "_sudo": True}) == {"_temp_dir": "/root/.cache/iac-staging"}
    with pytest.raises(ConfigError, match="needs ssh_user"):
        sudo_staging.host_data({"_sudo": True})


def _state(data: dict) -> tuple[State, object]:
    inventory = Inventory(([("h", data)], {}))
    state = State(inventory, Config())
    return state, inventory.get_host("h")


def test_pyinfra_gives_facts_the_staging_directory() -> None:
    state, host = _state({"_sudo": True, "_temp_dir": STAGING})
    _, global_kwargs = _handle_fact_kwargs(state, host, File, None, {"path": "/etc/hosts"})
    assert global_kwargs["_temp_dir"] == STAGING


def test_pyinfras_own_sudo_with_a_password_puts_it_in_the_command_line() -> None:
    """Why iac/pyinfra_ext/sudo_stdin.py exists: pyinfra's own line carries the password (tested there)."""
    line = make_unix_command(StringCommand("true"), _sudo=True, _sudo_password="pw-123",
                             _sudo_askpass_path=f"{STAGING}/askpass").get_raw_value()
    assert "PYINFRA_SUDO_PASSWORD=pw-123" in line and line.startswith("env SUDO_ASKPASS=")


def test_pyinfra_stages_an_upload_through_sudo_where_it_is_told(monkeypatch: pytest.MonkeyPatch) -> None:
    state, host = _state({})
    connector = host.connector
    staged, commands = [], []
    monkeypatch.setattr(connector, "_put_file", lambda _io, path: staged.append(path))
    monkeypatch.setattr(connector, "run_shell_command",
                        lambda command, **_kw: (commands.append(str(command)), (True, CommandOutput([])))[1])
    temp = f"{STAGING}/pyinfra-abc"
    assert connector.put_file(b"x", "/etc/x", remote_temp_filename=temp, _sudo=True)
    assert staged == [temp] and commands == [f"cp {temp} /etc/x", f"rm -f {temp}"]


@pytest.mark.parametrize("temp_dir", [STAGING, None])
def test_the_repositorys_uploads_are_staged_like_pyinfras(temp_dir: str | None) -> None:
    state, host = _state({"_temp_dir": temp_dir} if temp_dir else {})
    host.current_op_global_arguments = {"_temp_dir": temp_dir}
    with ctx_state.use(state), ctx_host.use(host):
        command = sudo_staging.upload(b"secret", "/etc/gts/apps/x.env")
    assert isinstance(command, FileUploadCommand) and command.dest == "/etc/gts/apps/x.env"
    if temp_dir:
        assert re.fullmatch(rf"{STAGING}/pyinfra-[0-9a-f]{{40}}", command.remote_temp_filename)
    else:  # reached as root: pyinfra writes the file in place, as before
        assert command.remote_temp_filename is None


def test_every_upload_of_this_repository_goes_through_the_staging_helper() -> None:
    """A bare FileUploadCommand ignores ``_temp_dir``: through sudo it would stage in /tmp."""
    files = [*REPO.glob("*.py"), *REPO.glob("operations/*.py"), *REPO.glob("iac/*.py")]
    bare = [f"{f.relative_to(REPO)}:{node.lineno}" for f in files if f.name != "sudo_staging.py"
            for node in ast.walk(ast.parse(f.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "FileUploadCommand", "put_file")]
    assert bare == []


def test_every_deploy_file_makes_the_staging_directory_before_anything_else() -> None:
    deploy_files = [f for f in REPO.glob("*.py") if "host_config(host)" in f.read_text()]
    assert {f.name for f in deploy_files} >= {"deploy.py", "deploy_keys.py", "dr_bootstrap.py"}
    for f in deploy_files:
        text = f.read_text()
        assert 0 <= text.find("sudo_staging.prepare(host)") < text.find("host_config(host)"), f.name


def _prepare_here(path: Path) -> tuple[bool, list[str]]:
    """sudo_staging.prepare's command, run by this machine's sh on ``path``."""
    ran: list[str] = []

    def run(command: StringCommand, **kwargs) -> tuple[bool, CommandOutput]:  # noqa: ANN003
        assert not kwargs, "made as the login user: no sudo"
        proc = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, text=True, check=False)
        ran.append(command.get_raw_value())
        return proc.returncode == 0, CommandOutput([OutputLine("stderr", proc.stderr)])

    host = SimpleNamespace(name="h", data={"_temp_dir": str(path)}, run_shell_command=run)
    try:
        sudo_staging.prepare(host)
    except Exception:  # noqa: BLE001
        return False, ran
    return True, ran


def test_prepare_makes_a_private_directory_and_refuses_a_link(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".cache" / "iac-staging"
    assert _prepare_here(target)[0] and (target.stat().st_mode & 0o777) == 0o700
    target.chmod(0o755)
    assert _prepare_here(target)[0] and (target.stat().st_mode & 0o777) == 0o700  # made private again
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    assert not _prepare_here(link)[0]
    assert (elsewhere.stat().st_mode & 0o777) == 0o755  # not followed


def test_prepare_does_nothing_on_a_host_reached_as_root() -> None:
    host = SimpleNamespace(name="h", data={}, run_shell_command=lambda *a, **k: pytest.fail("no command"))
    sudo_staging.prepare(host)
