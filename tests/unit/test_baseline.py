"""The baseline on the controller: what the concerns declare (iac.declared, iac.ops), the model's
allowances (baseline.allow), the engine's settings built from the whole declaration, and the drift
report's findings. The engine itself: test_baseline_engine.py; on real hosts:
tests/integration/test_baseline.py."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from pydantic import ValidationError

from cli.drift import DriftReport, host_findings, report
from iac import declared, ops
from iac.declared import BASELINE_OPERATION, Declared, declares
from operations.baseline.deploy import BaselineFindings, baseline_settings
from operations.baseline.options import BaselineSection
from operations.host import HostConfig


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> Declared:
    """The record the operations declared below note into (as one host's deploy would)."""
    mine = Declared()
    monkeypatch.setattr(declared, "current", lambda: mine)
    return mine


def test_pyinfras_file_operations_note_their_target_before_they_run(record: Declared,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    for name in ("put", "directory", "link", "file"):
        monkeypatch.setattr(ops._files, name, lambda *a, _n=name, **k: calls.append((_n, a, k)))
    ops.files.put(name="x", src="a", dest="/etc/x.conf")
    ops.files.put("src", "/etc/positional.conf")
    ops.files.directory(name="d", path="/srv/apps/")
    ops.files.link(name="l", path="/etc/nginx/sites-enabled/x", target="/etc/nginx/sites-available/x")
    ops.files.file(name="gone", path="/etc/apt/apt.conf.d/old", present=False)
    assert record.files == {"/etc/x.conf", "/etc/positional.conf", "/etc/nginx/sites-enabled/x"}
    assert record.directories == {"/srv/apps"} and record.absent == {"/etc/apt/apt.conf.d/old"}
    assert [c[0] for c in calls] == ["put", "put", "directory", "link", "file"]  # pyinfra's own, called once each


def test_enabling_a_unit_declares_it(record: Declared, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops._systemd, "service", lambda *a, **k: None)
    ops.systemd.service(name="n", service="nginx", running=True, enabled=True)
    ops.systemd.service(name="t", service="certbot.timer", enabled=True)
    ops.systemd.service(name="s", service="postgresql", running=False, enabled=False)
    assert record.enabled == {"nginx.service", "certbot.timer"}


def test_this_repositorys_operations_note_at_the_call_not_in_their_body(record: Declared) -> None:
    body_ran = []

    @declares("dest", files=lambda kw: [f"/etc/iac/staged{kw['dest']}"])
    def operation(dest: str, files: dict | None = None):
        body_ran.append(dest)  # pyinfra runs a body later (an apply) or not past its first command

    @declares("files")
    def several(files: dict):
        return None

    operation(dest="/etc/ssh/sshd_config.d/00-iac.conf")
    several(files={"/etc/systemd/system/a.timer": "", "/etc/systemd/system/a.service": ""})
    assert record.files == {"/etc/ssh/sshd_config.d/00-iac.conf", "/etc/iac/staged/etc/ssh/sshd_config.d/00-iac.conf",
                            "/etc/systemd/system/a.timer", "/etc/systemd/system/a.service"}


def test_operations_import_pyinfras_writing_operations_through_iac_ops() -> None:
    found = subprocess.run(["git", "grep", "-lE", r"from pyinfra\.operations import", "--", "operations", "iac",
                            "deploy.py"], capture_output=True, text=True, check=False).stdout.split()
    assert found == ["iac/ops.py"], "import files, systemd, server from iac.ops: what they write is declared there"


@pytest.mark.parametrize(("entry", "complaint"), [
    ({"path": "/etc/cron.d/*", "reason": "x"}, "a pattern would allow"),
    ({"path": "/etc/sudoers.d", "reason": "x"}, "a whole directory"),
    ({"path": "/root/.ssh/authorized_keys", "reason": "x"}, "keys are declared with their account"),
    ({"path": "etc/cron.d/x", "reason": "x"}, "absolute, normalised path"),
    ({"path": "/etc/cron.d/../shadow", "reason": "x"}, "absolute, normalised path"),
    ({"path": "/etc/cron.d/x", "reason": ""}, "why the host holds it"),
])
def test_an_allowance_is_one_exact_path_with_a_reason(entry: dict, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint.replace("(", r"\(")):
        BaselineSection(allow=[entry])


def test_the_settings_hold_the_whole_declaration(lan_config: HostConfig) -> None:
    record = Declared(files={"/etc/systemd/system/gunicorn-shop_scheduler.service",
                             "/etc/systemd/system/certbot.service.d/iac-acme-ca.conf", "/etc/nftables.conf"},
                      enabled={"nginx.service"}, absent={"/etc/nftables.conf"})
    settings = baseline_settings(lan_config, record, "gts-server")
    units = {u.name: u for u in settings.units}
    assert (units["gunicorn-shop_scheduler.service"].user, units["gunicorn-shop_scheduler.service"].group) == \
        ("shop_scheduler", "shop_scheduler")
    assert units["certbot.service"].drop_ins == ["/etc/systemd/system/certbot.service.d/iac-acme-ca.conf"]
    assert "/etc/nftables.conf" not in settings.files  # removed by the run: never declared
    assert {(p.port, p.address) for p in settings.ports} >= {(22, "*"), (8001, "*"), (8002, "*"),
                                                            (5432, "127.0.0.1"), (5432, "::1")}
    accounts = {a.name: a for a in settings.accounts}
    assert accounts["shop_scheduler"].keys == []  # an app user: no key at all
    # production declares no keys yet: reported naming the option, never removed
    assert (accounts["gts"].keys, accounts["gts"].option) == (None, "admin.ssh_authorized_keys")
    assert (accounts["root"].keys, accounts["root"].option) == (None, "ssh.root_authorized_keys")
    assert settings.privileged_groups["sudo"] == ["gts"]


def test_the_engine_fact_quotes_the_settings_whole(public_config: HostConfig) -> None:
    settings = baseline_settings(public_config, Declared(files={"/etc/x'; touch /tmp/pwned; echo '"}), "srv1178562")
    from iac.engines import contract

    text = json.dumps(contract.dump(settings))
    command = BaselineFindings().command(settings=text)
    run = command.split("; then ", 1)[1].split("; else ", 1)[0]
    assert shlex.split(run) == ["python3", "/usr/local/lib/iac/iac_baseline.py", "check", text]  # one argument
    assert [t.name for t in settings.tls] == ["pravoo.in"] and settings.tls_min_days == 20


def test_the_report_carries_each_finding_and_its_diff() -> None:
    details = ["allowed /etc/x: why", "+ systemd /etc/systemd/system/app.service.d/override.conf: drop-in for app",
               "    @@ -0,0 +1,2 @@", "    +[Service]", "    +User=root", "~ keys /root/.ssh/authorized_keys: 1 key(s)"]
    found = host_findings(details)
    assert [(f.mark, f.category, f.path) for f in found] == [
        ("+", "systemd", "/etc/systemd/system/app.service.d/override.conf"),
        ("~", "keys", "/root/.ssh/authorized_keys")]
    assert found[0].diff == ["@@ -0,0 +1,2 @@", "+[Service]", "+User=root"]
    plan = {"plan": [{"name": BASELINE_OPERATION, "hosts_with_change": ["srv1178562"],
                      "hosts_with_conditional_change": [], "host_details": {"srv1178562": details * 30}}]}
    result = report("sandbox/inventory.py", 0, plan, "")
    assert result.exit_code == 2 and len(result.drift[0].findings) == 60  # never cut at 40 lines
    markdown = result.markdown()
    assert "### The hosts beyond their declaration" in markdown
    assert "| + | srv1178562 | systemd | /etc/systemd/system/app.service.d/override.conf |" in markdown
    assert DriftReport.model_validate_json(result.model_dump_json(by_alias=True)) == result
