"""`make preflight`'s checks that fail before any host is reached, each shown failing and passing:
secrets (all groups at once), the items to confirm, the pinned host key, a host that does not
answer (with the Tailscale hint for the LAN host), a name that resolves elsewhere (against a real
DNS server on loopback: pebble-challtestsrv, the sandbox's ACME DNS). The production inventory is
only loaded offline here: nothing connects to it. On the sandbox: tests/integration/test_preflight.py."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cli import preflight, secrets_template
from iac.errors import ConfigError
from stack.load import checked_confirm, load_layers
from stack.secrets import SecretsFile

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def production() -> tuple[dict, list]:
    return preflight.load(str(REPO / "inventory.py"))


def _fill(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _fill(v) if isinstance(v, dict) else "filled-in-value-long-enough-0123456789" for k, v in node.items()}


def test_every_missing_secret_of_every_group_is_named_at_once(production, tmp_path: Path) -> None:
    _, hosts = production
    found = preflight.secrets(SecretsFile(None, require=False), hosts)
    failed = {f.subject: f for f in found if not f.ok}
    assert set(failed) == {"public", "lan", "gts-server"}, found
    assert "apps.chip_dashboard.secret_key" in failed["public"].detail
    assert "backups.offsite.system_state.password" in failed["lan"].detail
    assert "secrets-template" in failed["public"].fix and "IAC_SECRETS_FILE" in failed["public"].fix
    assert "lan.connection.sudo_password" in failed["gts-server"].detail
    tree, _ = secrets_template.skeleton()
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({g: _fill(v) for g, v in tree.items()}))
    path.chmod(0o600)
    assert all(f.ok for f in preflight.secrets(SecretsFile(path, require=False), hosts))


def test_open_confirm_items_are_named_with_how_to_confirm_them(production) -> None:
    _, hosts = production
    found = [f for f in preflight.confirm(hosts) if not f.ok]
    assert sorted(f.subject for f in found) == [
        "gts-server apps.rental_scheduler.source.url", "gts-server apps.shop_scheduler.source.url",
        "gts-server backups.local.disk_uuid", "srv1178562 apps.chip_dashboard.source.url"]
    disk = next(f for f in found if f.subject.endswith("disk_uuid"))
    assert "blkid" in disk.detail and "group_data/lan.py" in disk.fix and "remove its entry" in disk.fix


def test_a_confirm_item_naming_no_option_stops_the_load_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"group_data/lan.py: confirm\['backups.local.disk_uid'\] names no option"):
        checked_confirm("lan", {"backups.local.disk_uid": "blkid"})
    with pytest.raises(ConfigError, match="maps an option's path to how to confirm"):
        checked_confirm("lan", {"backups.local.disk_uuid": ""})
    group_data = tmp_path / "group_data"
    group_data.mkdir()
    for name in ("all", "public", "lan"):
        text = (REPO / "group_data" / f"{name}.py").read_text()
        (group_data / f"{name}.py").write_text(text.replace("backups.local.disk_uuid", "backups.locale.disk_uuid"))
    with pytest.raises(ConfigError, match=r"group_data/lan.py: confirm\['backups.locale.disk_uuid'\]"):
        load_layers("lan", None, group_data)


def test_a_host_key_not_pinned_is_named_with_how_to_pin_it(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    data = {"ssh_hostname": "203.0.113.7", "ssh_known_hosts_file": str(known), "ssh_strict_host_key_checking": "yes"}
    missing = preflight.host_key("srv1178562", data)
    assert not missing.ok and "no key for 203.0.113.7" in missing.detail and "ssh-keyscan" in missing.fix
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    known.write_text(f"203.0.113.7 {(tmp_path / 'k.pub').read_text()}")
    assert preflight.host_key("srv1178562", data).ok
    assert not preflight.host_key("srv1178562", {**data, "ssh_strict_host_key_checking": "accept-new"}).ok


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_host_that_does_not_answer_is_named_with_the_tailscale_hint(production) -> None:
    _, hosts = production
    lan = next(data for _, name, data in hosts if name == "gts-server")
    data = {**lan, "ssh_hostname": "127.0.0.1", "ssh_port": _closed_port()}
    found = preflight.reachable("gts-server", data, lan["config"])
    assert len(found) == 1 and not found[0].ok and "refused" in found[0].detail.lower()
    assert "tailscale status" in found[0].fix
    public = next(data for _, name, data in hosts if name == "srv1178562")
    other = preflight.reachable("srv1178562", {**public, "ssh_hostname": "127.0.0.1", "ssh_port": _closed_port()},
                                public["config"])
    assert "Tailscale" not in other[0].fix and "firewall" in other[0].fix


@pytest.fixture()
def acme_dns():
    """pebble-challtestsrv on loopback, answering every name with 127.0.0.9 (as the sandbox's
    answers with its public host)."""
    port, management = _closed_port(), _closed_port()
    proc = subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.9", "-defaultIPv6", "",
                             "-dns01", f"127.0.0.1:{port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                             "-management", f"127.0.0.1:{management}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", management), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_name_that_resolves_elsewhere_is_named_with_its_fix(production, acme_dns: str) -> None:
    _, hosts = production
    public = next(data for _, name, data in hosts if name == "srv1178562")
    assert [f.ok for f in preflight.names("srv1178562", {"ssh_hostname": "127.0.0.9"}, public["config"],
                                          acme_dns)] == [True]
    wrong = preflight.names("srv1178562", {"ssh_hostname": "127.0.0.8"}, public["config"], acme_dns)
    assert len(wrong) == 1 and not wrong[0].ok
    assert wrong[0].detail.startswith("resolves to 127.0.0.9; srv1178562 is 127.0.0.8")
    assert "A record of pravoo.in" in wrong[0].fix
