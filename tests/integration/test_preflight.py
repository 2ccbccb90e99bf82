"""`iac preflight` on the sandbox: every check passes on the converged sandbox (reached as
production is: the LAN host as its admin with sudo), and the checks that read a host each fail,
naming the fix, when what they check is broken: a login key the host does not know, a wrong sudo
password, a deploy key missing, a revision the git host does not have, an ACME server that does
not answer. (The checks that only read files, and a name resolving elsewhere: tests/unit/test_preflight.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cli import preflight
from iac import sudo
from tests.integration.conftest import REPO, SANDBOX_INVENTORY, Run, Sandbox

IAC = str(REPO / ".venv/bin/iac")


@pytest.fixture(scope="module")
def hosts(sandbox: Sandbox) -> dict[str, dict]:
    _, found = preflight.load(str(REPO / SANDBOX_INVENTORY))
    return {name: data for _, name, data in found}


def test_the_converged_sandbox_passes_every_check(sandbox: Sandbox, converged: Run) -> None:
    run = sandbox.command("iac-preflight", [IAC, "-i", str(REPO / SANDBOX_INVENTORY), "preflight", "--format",
                                            "json"], cwd=Path("/"))
    assert run.returncode == 0, run.output[-3000:]
    report = json.loads(run.stdout)
    assert report["ok"] and all(c["ok"] for c in report["checks"])
    seen = {(c["check"], c["subject"]) for c in report["checks"]}
    for check in ("host key", "reachable", "root"):
        assert {(check, "srv1178562"), (check, "gts-server")} <= seen, (check, seen)
    assert ("name", "pravoo.in") in seen and ("acme", "srv1178562") in seen
    assert {("deploy key", "gts-server rental_scheduler"), ("deploy key", "srv1178562 chip_dashboard")} <= seen
    root = next(c for c in report["checks"] if c["check"] == "root" and c["subject"] == "gts-server")
    assert root["detail"] == "root through sudo as gts, its password on stdin"


def test_a_login_key_the_host_does_not_know_is_named(hosts: dict, converged: Run, tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    found = preflight.reachable("srv1178562", {**hosts["srv1178562"], "ssh_key": str(tmp_path / "other")},
                                hosts["srv1178562"]["config"])
    assert [f.ok for f in found] == [True, False], found
    assert "login as root refused" in found[1].detail and "ssh.root_authorized_keys" in found[1].fix


def test_a_wrong_sudo_password_is_named(hosts: dict, converged: Run) -> None:
    data = hosts["gts-server"]
    wrong = sudo.SudoPassword("gts-server", "gts", "CANARY-connection.sudo_password-wrong", "a test")
    found = preflight.root("gts-server", {**data, sudo.DATA_KEY: wrong})
    assert not found.ok and "sudo" in found.fix, found
    assert "password" in found.detail.lower() or "try again" in found.detail.lower(), found


def test_a_missing_deploy_key_and_a_missing_revision_are_named(sandbox: Sandbox, hosts: dict, converged: Run) -> None:
    data = hosts["gts-server"]
    config = data["config"]
    app = config.apps["shop_scheduler"]
    other = app.model_copy(update={"source": app.source.model_copy(update={"revision": "no-such-branch"})})
    changed = config.model_copy(update={"apps": {"shop_scheduler": other}})
    [missing_rev] = preflight.deploy_keys("gts-server", data, changed)
    assert not missing_rev.ok and "has no no-such-branch" in missing_rev.detail, missing_rev
    key = config.app_paths("shop_scheduler").deploy_key
    sandbox.ssh("lan", f"mv {key} {key}.away")
    try:
        found = preflight.deploy_keys("gts-server", data, config)
    finally:
        sandbox.ssh("lan", f"mv {key}.away {key}")
    by_app = {f.subject: f for f in found}
    assert by_app["gts-server rental_scheduler"].ok
    assert not by_app["gts-server shop_scheduler"].ok and "make deploy-keys" in by_app["gts-server shop_scheduler"].fix


def test_an_acme_server_that_does_not_answer_is_named(sandbox: Sandbox, hosts: dict, converged: Run) -> None:
    data = hosts["srv1178562"]
    config = data["config"]
    tls = config.tls.model_copy(update={"acme_directory": f"https://{sandbox.world.svc_ip}:14999/dir"})
    [found] = preflight.acme("srv1178562", data, config.model_copy(update={"tls": tls}))
    assert not found.ok and "does not answer from srv1178562" in found.detail, found
    assert "tls.acme_directory" in found.fix
