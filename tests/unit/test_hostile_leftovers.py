"""The last hostile-input gaps (issue 22), each refused before any host is touched with a message
naming the file, the option and the fix: a group_data file that is not valid Python, a yes/no
value where a number is expected, a list that names something twice, a Unicode line separator or
C1 control character in a value that lands in a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from iac.errors import ConfigError
from stack.load import load_layers
from tests.unit.test_hostile_values import refusal


@pytest.mark.parametrize(("group", "snippet", "fragments"), [
    ("public", 'apps["chip_dashboard"]["nginx"]["port"] = True',
     ["apps.chip_dashboard.nginx.port", "a yes/no value where a number is expected"]),
    ("lan", 'ssh = {"port": False}', ["ssh.port", "yes/no"]),
    ("lan", 'firewall["extra_tcp_ports"] = [True]', ["firewall.extra_tcp_ports", "yes/no"]),
    ("lan", 'host["aliases"] = ["gts-server.lan", "gts-server.lan"]',
     ["host.aliases", "lists 'gts-server.lan' twice"]),
    ("lan", 'postgres["roles"] = ["rental_scheduler_user", "shop_scheduler_user", "rental_scheduler_user"]',
     ["postgres.roles", "lists 'rental_scheduler_user' twice"]),
    ("lan", 'apps["rental_scheduler"]["settings_module"] = "rental_scheduler.settings\\u2028ExecStartPre=/bin/id"',
     ["apps.rental_scheduler.settings_module", "control character"]),
    ("public", 'apps["chip_dashboard"]["allowed_hosts"] = ["pravoo.in\\x85x"]',
     ["apps.chip_dashboard.allowed_hosts", "control character"]),
])
def test_a_leftover_hostile_value_is_refused_naming_the_option(group_data: Path, group: str, snippet: str,
                                                              fragments: list[str]) -> None:
    message = refusal(group_data, group, snippet)
    for fragment in fragments:
        assert fragment in message, message
    assert f"group_data/{group}.py" in message


def test_a_group_file_with_a_syntax_error_names_the_file_line_and_error_without_a_traceback(group_data: Path) -> None:
    path = group_data / "lan.py"
    lines = path.read_text().splitlines()
    lines.append('apps["rental_scheduler"]["workers"] = (3')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_layers("lan", None, group_data)
    message = str(err.value)
    assert message.startswith(f"group_data/lan.py, line {len(lines)}: ") and "syntax error" in message, message
    assert err.value.__cause__ is None and err.value.__suppress_context__
