"""The sudo password travels on the SSH channel's stdin, never in a command line (iac/sudo.py,
iac/pyinfra_ext/sudo_stdin.py, iac/ssh.py). tests/integration/test_sudo_password.py watches the
command lines on a real host while a run goes through sudo."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pyinfra.api import StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.connectors.util import make_unix_command

from cli.validate import load_inventory
from iac import sudo
from iac.errors import ConfigError
from iac.pyinfra_ext import sudo_stdin
from iac.ssh import as_root
from stack.inventory import host_entry
from stack.secrets import SecretsFile

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw $(touch /tmp/x)`id`'\" %n\\x{}"


def _host(password: sudo.SudoPassword | None = None) -> Any:
    data = {sudo.DATA_KEY: password} if password else {}
    return SimpleNamespace(name="h", data=data, connector_data={})


def _through(arguments: dict[str, Any], password: str | None = PASSWORD, command: str = "id -u") -> dict[str, Any]:
    """What pyinfra's own run_shell_command receives from the wrapper: line, stdin, arguments."""
    seen: dict[str, Any] = {}

    def original(self, command, print_output=False, print_input=False, **kwargs):  # noqa: ANN001, ANN202
        seen.update(line=command, kwargs=kwargs)
        return True, None

    connector = SimpleNamespace(host=_host(sudo.SudoPassword("h", "gts", password, "test") if password else None))
    sudo_stdin.run_shell_command(original)(connector, StringCommand(command), **arguments)
    # what pyinfra then makes of it (no shell around: the line is complete)
    rest = {k: v for k, v in seen["kwargs"].items() if k != "_stdin"}
    seen["sent"] = make_unix_command(seen["line"], **rest).get_raw_value()
    return seen


def test_a_command_through_sudo_sends_the_password_as_stdins_first_line_and_never_in_the_line() -> None:
    seen = _through({"_sudo": True})
    assert seen["sent"] == "sudo -H -S -p '' -k sh -c 'id -u'"
    assert seen["kwargs"]["_stdin"] == [PASSWORD]
    assert PASSWORD not in seen["sent"] and "askpass" not in seen["sent"].lower()
    assert not {"_sudo", "_sudo_password", "_sudo_user"} & set(seen["kwargs"])


def test_sudo_user_env_chdir_and_the_commands_own_stdin_keep_their_meaning() -> None:
    seen = _through({"_sudo": True, "_sudo_user": "postgres", "_env": {"A": "b c"}, "_chdir": "/srv/x y",
                     "_stdin": ["line one", "line two"]})
    assert seen["sent"] == ("sudo -H -S -p '' -k -u postgres sh -c "
                            + "'cd '\"'\"'/srv/x y'\"'\"' && export '\"'\"'A=b c'\"'\"' && id -u'")
    assert seen["kwargs"]["_stdin"] == [PASSWORD, "line one", "line two"]


def test_the_line_runs_as_the_shell_would_run_pyinfras_own() -> None:
    """The same command inside, quoted once: sh parses the wrapped line back to sudo's argv."""
    seen = _through({"_sudo": True, "_env": {"K": "v'v"}}, command="echo \"$K\"")
    argv = subprocess.run(["sh", "-c", "printf '%s\\n' " + seen["sent"].removeprefix("sudo ")],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    assert argv[:6] == ["-H", "-S", "-p", "", "-k", "sh"]
    assert argv[6:] == ["-c", "export 'K=v'\"'\"'v' && echo \"$K\""]


def test_without_sudo_or_without_a_password_pyinfra_runs_its_own_line() -> None:
    seen = _through({})
    assert seen["sent"] == "sh -c 'id -u'" and "_stdin" not in seen["kwargs"]
    seen = _through({"_sudo": True}, password=None)  # root login, or a NOPASSWD rule
    assert seen["sent"] == "sudo -H -n sh -c 'id -u'" and "_stdin" not in seen["kwargs"]


def test_a_pty_is_refused_it_would_echo_the_password() -> None:
    with pytest.raises(PyinfraError, match="pty"):
        _through({"_sudo": True, "_get_pty": True})


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b", "", "x" * 1001])
def test_a_password_sudo_cannot_read_as_one_line_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="lan.connection.sudo_password"):
        sudo.check(bad, "lan.connection.sudo_password in f")


def test_the_password_object_never_shows_it_and_asks_once() -> None:
    asked: list[str] = []
    password = sudo.SudoPassword("gts-server", "gts", None, "w", ask=lambda prompt: asked.append(prompt) or "typed")
    assert "typed" not in repr(password) and "typed" not in str(password) and not password.stored
    assert password.reveal() == "typed" and password.reveal() == "typed"
    assert asked == ["sudo password of gts on gts-server: "]


def test_without_a_stored_password_and_without_a_terminal_the_run_stops_naming_both_ways(monkeypatch) -> None:
    monkeypatch.setattr(sudo, "_terminal", lambda: False)
    password = sudo.SudoPassword("gts-server", "gts", None, "lan.connection.sudo_password in the secrets file x")
    with pytest.raises(ConfigError, match=r"not in lan.connection.sudo_password in the secrets file x, and there is "
                                          r"no terminal to type it on\. Add it there, or run from a terminal"):
        password.reveal()


def test_operator_commands_send_it_on_stdin_too() -> None:
    data = {"_sudo": True, sudo.DATA_KEY: sudo.SudoPassword("h", "gts", PASSWORD, "w")}
    line, stdin = as_root(data, "restic snapshots")
    assert line == "sudo -H -S -p '' -k sh -c 'restic snapshots'" and stdin == PASSWORD + "\n"
    assert as_root({}, "true") == ("true", None)


def test_an_inventory_never_puts_the_password_in_a_connection() -> None:
    with pytest.raises(ConfigError, match="never carries _sudo_password"):
        host_entry("sandbox", "lan", "gts-server", {"ssh_user": "gts", "_sudo": True, "_sudo_password": "x"})


def test_production_reaches_the_lan_host_with_a_password_from_the_secrets_file_or_the_terminal() -> None:
    groups = load_inventory(REPO / "inventory.py")
    lan, public = groups["lan"][0][1], groups["public"][0][1]
    assert isinstance(lan[sudo.DATA_KEY], sudo.SudoPassword) and "_sudo_password" not in lan
    assert sudo.DATA_KEY not in public


def test_the_secrets_file_takes_the_password_under_the_group(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"lan": {"connection": {"sudo_password": PASSWORD}}}))
    path.chmod(0o600)
    secrets = SecretsFile(path, require=False)
    assert secrets.connection_secret("lan", sudo.SECRET_PATH) == PASSWORD
    secrets.provide("lan", [], [])  # not refused as an unknown secret
    path.write_text(json.dumps({"lan": {"connection": {"sudo_pasword": PASSWORD}}}))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="unknown secret 'connection.sudo_pasword'.*connection.sudo_password"):
        SecretsFile(path, require=False).provide("lan", [], [])
