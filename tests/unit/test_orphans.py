"""Orphans without a host: what the manifest records per app, what removing an app from the
configuration makes the next run delete (units, files, the user) and retain (data), and that a
tampered manifest on the host cannot make a run delete anything an app never had."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from operations.host import HostConfig
from operations.orphans import deploy as orphans
from stack.load import build_host_config, read_group_file


class FakeHost:
    """The two things the operation asks of pyinfra's host: the recorded manifest, and noop()."""

    def __init__(self, manifest: object) -> None:
        self.manifest = manifest
        self.notes: list[str] = []

    def get_fact(self, fact: object, **kwargs: object) -> object:
        return self.manifest

    def noop(self, text: str) -> None:
        self.notes.append(text)


def _plan(monkeypatch: pytest.MonkeyPatch, recorded: object, declared: list[dict], config) -> tuple[list, list]:
    fake = FakeHost(recorded)
    monkeypatch.setattr(orphans, "host", fake)
    commands = [str(c) for c in orphans.orphans_removed._inner(
        manifest="/etc/iac/managed.json", declared=declared, file_dirs=orphans.removable_file_dirs(config))]
    return commands, fake.notes


def test_removing_an_app_deletes_its_units_files_and_user_and_retains_its_data(
        monkeypatch: pytest.MonkeyPatch, lan_config: HostConfig, group_data: Path) -> None:
    before = lan_config
    after = build_host_config("lan", "gts-server", overrides=None, group_data=_group_data_without_shop(group_data))
    commands, notes = _plan(monkeypatch, {"entries": before.managed()}, after.managed(), after)
    deleted = {n for n in notes if n.startswith("- delete")}
    assert {"- delete unit gunicorn-shop_scheduler.service (app shop_scheduler)",
            "- delete unit gunicorn-shop_scheduler.socket (app shop_scheduler)",
            "- delete file /etc/nginx/sites-enabled/shop_scheduler (app shop_scheduler)",
            "- delete file /etc/nginx/sites-available/shop_scheduler (app shop_scheduler)",
            "- delete file /etc/logrotate.d/gts-shop_scheduler (app shop_scheduler)",
            "- delete file /etc/gts/apps/shop_scheduler.env (app shop_scheduler)",
            "- delete user shop_scheduler (app shop_scheduler)"} <= deleted
    assert not any("rental_scheduler" in n for n in notes)  # the other app is not touched
    retained = [n for n in notes if n.startswith("retained")]
    assert "retained database gts_shop_scheduler: data is not deleted; to remove it: runuser -u postgres -- " \
           "dropdb gts_shop_scheduler" in retained
    assert any(n.startswith("retained directory /srv/releases/shop_scheduler (app shop_scheduler)") for n in retained)
    assert any("rm -rf /srv/venvs/.shop_scheduler-*" in n for n in retained)
    # units stopped before their files go, nginx reloaded after its site is gone, the user last
    text = "\n".join(commands)
    assert commands[0] == "systemctl disable --now --quiet gunicorn-shop_scheduler.service 2>/dev/null || true"
    assert text.index("rm -f") < text.index("systemctl daemon-reload") < text.index("nginx -t -q && systemctl reload")
    assert commands[-1] == "if id -u shop_scheduler >/dev/null 2>&1; then userdel shop_scheduler; fi"
    # nothing data-like is in a command: no rm -rf, no dropdb
    assert "rm -rf" not in text and "dropdb" not in text


def test_nothing_to_do_when_the_manifest_matches_or_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                              lan_config: HostConfig) -> None:
    config = lan_config
    assert _plan(monkeypatch, {"entries": config.managed()}, config.managed(), config) == ([], [])
    assert _plan(monkeypatch, None, config.managed(), config) == ([], [])  # first run: nothing recorded


@pytest.mark.parametrize(("entry", "why"), [
    ({"kind": "file", "name": "/etc/passwd"}, "not an app's file"),
    ({"kind": "file", "name": "/etc/systemd/system/../../passwd"}, "not an app's file"),
    ({"kind": "file", "name": "/etc/systemd/system/"}, "not an app's file"),
    ({"kind": "file", "name": "/srv/apps/x; rm -rf /"}, "not an app's file"),
    ({"kind": "user", "name": "root"}, "not an app user"),
    ({"kind": "user", "name": "postgres"}, "not an app user"),
    ({"kind": "unit", "name": "ssh.service; reboot"}, "not a unit name"),
    ({"kind": "unit", "name": "sshd"}, "not a unit name"),
    ({"kind": "package", "name": "nginx"}, "unknown kind 'package'"),
    ("rm -rf /", "not an entry"),
])
def test_a_tampered_manifest_entry_is_ignored_and_said(monkeypatch: pytest.MonkeyPatch, lan_config: HostConfig,
                                                       entry: object, why: str) -> None:
    config = lan_config
    commands, notes = _plan(monkeypatch, {"entries": [entry]}, config.managed(), config)
    assert commands == []
    assert len(notes) == 1 and notes[0].startswith("ignored manifest entry") and notes[0].endswith(why)


def _group_data_without_shop(group_data: Path) -> Path:
    """``group_data`` (a copy of the repository's) with the shop app and its database gone."""
    values = copy.deepcopy(read_group_file(group_data / "lan.py"))
    del values["apps"]["shop_scheduler"]
    values["postgres"]["roles"].remove("shop_scheduler_user")
    del values["postgres"]["databases"]["gts_shop_scheduler"]
    (group_data / "lan.py").write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
    return group_data
