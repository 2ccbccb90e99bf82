"""`make release` without a host: where the declared revision is written, and how the drift report
tells a release pending upstream from a change made on the host."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from operations.app.release import release_difference
from operations.host import HostConfig
from stack.load import (
    RELEASE_ONLY_ENV,
    ConfigError,
    build_host_config,
    pin_group_file_revision,
    pin_stack_revision,
    read_group_file,
    release_only,
    unpin_stack_revision,
)

C1, C2 = "1" * 40, "2" * 40


def test_pinning_a_production_revision_changes_one_line_of_group_data_and_nothing_else(group_data: Path) -> None:
    before = (group_data / "lan.py").read_text()
    old, new = pin_group_file_revision(group_data / "lan.py", "shop_scheduler", C1,
                                       "main on 2026-12-03, by make release")
    after = (group_data / "lan.py").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [(old, new)]
    assert f"'revision': {C1!r}" in new.replace('"', "'") and new.endswith("# main on 2026-12-03, by make release")
    values = read_group_file(group_data / "lan.py")
    assert values["apps"]["shop_scheduler"]["source"]["revision"] == C1
    assert values["apps"]["rental_scheduler"]["source"]["revision"] == "main"  # the other app untouched
    # the result is still a valid stack
    config = build_host_config("lan", "gts-server", group_data=group_data)
    assert config.apps["shop_scheduler"].source.revision == C1


def test_a_revision_that_is_not_a_literal_is_refused_with_the_value_to_set(tmp_path: Path) -> None:
    path = tmp_path / "public.py"
    path.write_text("REV = 'main'\napps = {'chip_dashboard': {'source': {'revision': REV}}}\n")
    with pytest.raises(ConfigError, match=r"apps\['chip_dashboard'\]\['source'\]\['revision'\] is not a string literal"
                                          rf".*set it by hand to '{C1}'"):
        pin_group_file_revision(path, "chip_dashboard", C1, "note")
    assert "REV = 'main'" in path.read_text()


def test_a_sandbox_pin_goes_to_the_stack_values_file_and_can_be_put_back(tmp_path: Path) -> None:
    values = tmp_path / "stack.json"
    assert pin_stack_revision(values, "public", "chip_dashboard", C1) is None
    assert pin_stack_revision(values, "public", "chip_dashboard", C2) == C1
    assert json.loads(values.read_text()) == {"public": {"apps": {"chip_dashboard": {"source": {"revision": C2}}}}}
    unpin_stack_revision(values, "public", "chip_dashboard", C1)
    assert json.loads(values.read_text())["public"]["apps"]["chip_dashboard"]["source"]["revision"] == C1
    unpin_stack_revision(values, "public", "chip_dashboard", None)
    assert "revision" not in json.loads(values.read_text())["public"]["apps"]["chip_dashboard"]["source"]


def test_a_release_only_run_names_an_app_of_the_host(monkeypatch: pytest.MonkeyPatch,
                                                    public_config: HostConfig) -> None:
    config = public_config
    assert release_only(config) is None
    monkeypatch.setenv(RELEASE_ONLY_ENV, "chip_dashboard")
    assert release_only(config) == "chip_dashboard"
    monkeypatch.setenv(RELEASE_ONLY_ENV, "shop_scheduler")
    with pytest.raises(ConfigError, match="srv1178562 has no such app.*its apps: chip_dashboard"):
        release_only(config)


@pytest.mark.parametrize(("live", "revision", "wanted", "damaged", "says"), [
    (None, "main", C1, [], "nothing live yet: first release of 'main'"),
    ({"commit": C1, "revision": "main", "inputs": "i"}, "main", C2, [],
     "release pending: 'main' moved upstream from 111111111111 (live) to 222222222222; nothing changed on the host"),
    ({"commit": C1, "revision": "main", "inputs": "i", "rolled_back_from": C2}, "main", C2, [],
     "changed on the host: live release 111111111111 was rolled back from 222222222222"),
    ({"commit": C1, "revision": "main", "inputs": "i"}, "main", C1, ["changed: app/views.py"],
     "live release damaged (changed on the host): changed: app/views.py"),
    ({"commit": C1, "revision": "main", "inputs": "old"}, "main", C1, [], "settings changed in the stack"),
    ({"commit": C1, "revision": "v1", "inputs": "i"}, "v2", C2, [],
     "the stack declares 'v2' (222222222222); live is 'v1' (111111111111)"),
    # a pinned commit never is "pending": the stack changed
    ({"commit": C1, "revision": C1, "inputs": "i"}, C2, C2, [], f"the stack declares '{C2}'"),
])
def test_drift_says_whether_upstream_the_host_or_the_stack_changed(live, revision, wanted, damaged, says) -> None:
    assert says in release_difference("app", revision, wanted, live, "i", damaged)


PINNED_INVENTORY = """
from pathlib import Path
from stack.inventory import group_entries
public = group_entries("sandbox", "public", lambda name: {{"ssh_hostname": "10.0.0.9"}}, None, None, Path({path!r}))
"""


def test_a_pin_of_an_app_no_longer_declared_is_named_with_the_command_that_drops_it(tmp_path: Path) -> None:
    from cli.pins import main as pins_main
    from cli.pins import pins
    from stack.inventory import StalePin

    values = tmp_path / "stack.json"
    inventory = tmp_path / "inventory.py"
    inventory.write_text(PINNED_INVENTORY.format(path=str(values)))
    pin_stack_revision(values, "public", "chip_dashboard", C1)
    pin_stack_revision(values, "public", "pinger", C2)  # released once, then taken out of group_data
    with pytest.raises(StalePin) as err:
        runpy.run_path(str(inventory))
    message = str(err.value)
    assert str(values) in message and "public.apps.pinger.source.revision" in message
    assert "make unpin APP=pinger" in message and "required option" not in message
    where = str(values)
    assert pins(str(inventory)) == [("public", "chip_dashboard", C1, where), ("public", "pinger", C2, where)]
    assert pins_main([str(inventory), "unpin", "pinger"]) == 0
    assert json.loads(values.read_text()) == {"public": {"apps": {"chip_dashboard": {"source": {"revision": C1}}}}}
    runpy.run_path(str(inventory))  # loads again; the live app's pin stays
    assert pins_main([str(inventory), "unpin", "pinger"]) == 1  # nothing left to drop
    assert pins_main([str(inventory), "unpin", "chip_dashboard"]) == 0
    assert pins(str(inventory)) == []


def test_production_pins_are_group_data_lines_and_unpin_says_which(group_data: Path, capsys) -> None:
    from cli.pins import main as pins_main

    assert pins_main(["inventory.py", "unpin", "chip_dashboard"]) == 1
    assert "group_data" in capsys.readouterr().err
