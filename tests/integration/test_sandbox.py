"""The sandbox world itself: hosts, stand-ins and the git forge behave like the real things."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path

import boto3
import pytest

from tests.integration.conftest import REPO, Sandbox


def test_status_json_lists_every_host_and_standin_up(sandbox: Sandbox) -> None:
    run = sandbox.command("status-json", [str(REPO / ".venv/bin/python"), "-m", "sandbox.world",
                                          "status", "--json"])
    assert run.returncode == 0, run.output
    status = json.loads(run.stdout)
    assert {r: h["up"] for r, h in status["hosts"].items()} == {"public": True, "lan": True,
                                                                "forge": True}
    assert all(s["up"] for s in status["standins"].values()), status["standins"]
    assert status["hosts"]["lan"]["interface"] == "eno1"


def test_hosts_run_systemd_as_pid1_and_lan_interface_is_eno1(sandbox: Sandbox) -> None:
    assert sandbox.ssh("public", "cat /proc/1/comm").stdout.strip() == "systemd"
    for role in ("public", "lan"):
        state = sandbox.ssh(role, "systemctl is-system-running; systemctl --failed --no-legend", check=False)
        assert state.stdout.startswith("running"), f"{role}: {state.stdout}"
    addr = sandbox.ssh("lan", "ip -o -4 addr show dev eno1").stdout
    assert f"{sandbox.world.host_ip('lan')}/24" in addr


def _dns_a(server: str, port: int, name: str) -> str:
    """One A query over UDP (no dig on the machine); returns the first answer's address."""
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    question += struct.pack(">HH", 1, 1)
    query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(query, (server, port))
        reply = s.recv(512)
    assert struct.unpack(">H", reply[6:8])[0] >= 1, "no answer"
    pos = 12 + len(question)
    pos += 2 if reply[pos] & 0xC0 == 0xC0 else reply.index(b"\0", pos) + 1 - pos  # answer name
    rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[pos:pos + 10])
    assert rtype == 1 and length == 4
    return socket.inet_ntoa(reply[pos + 10:pos + 14])


def test_acme_standin_serves_a_directory_and_dns_points_pravoo_at_public(sandbox: Sandbox) -> None:
    world = sandbox.world
    proc = subprocess.run(["curl", "-sS", "--cacert", str(world.acme_ca_file), world.acme_directory],
                          capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "newOrder" in json.loads(proc.stdout)
    assert _dns_a(world.svc_ip, 8053, "pravoo.in") == world.host_ip("public")


def test_webhook_standin_records_a_post_from_a_host(sandbox: Sandbox) -> None:
    world = sandbox.world
    before = world.webhook_log.read_text().count("\n") if world.webhook_log.exists() else 0
    sandbox.ssh("lan", f"curl -sS -X POST -H 'Content-Type: application/json' "
                       f"-d '{{\"content\": \"sandbox-test\"}}' {world.webhook_base}/api/webhooks/1/t")
    lines = world.webhook_log.read_text().splitlines()
    assert len(lines) == before + 1
    assert json.loads(json.loads(lines[-1])["body"]) == {"content": "sandbox-test"}


def test_s3_standin_stores_objects(sandbox: Sandbox) -> None:
    s3 = boto3.client("s3", endpoint_url=sandbox.world.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="sandbox", aws_secret_access_key="sandbox")
    s3.create_bucket(Bucket="sandbox-test")
    s3.put_object(Bucket="sandbox-test", Key="k", Body=b"v")
    assert s3.get_object(Bucket="sandbox-test", Key="k")["Body"].read() == b"v"


def _git_ls_remote(sandbox: Sandbox, key: Path, app: str, known_hosts: Path) -> subprocess.CompletedProcess:
    ssh = (f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes "
           f"-o UserKnownHostsFile={known_hosts}")
    return subprocess.run(["git", "ls-remote", "--tags", sandbox.world.repo_url(app)],
                          env={"GIT_SSH_COMMAND": ssh, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def deploy_key(tmp_path: Path) -> Path:
    key = tmp_path / "deploy_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture
def forge_known_hosts(sandbox: Sandbox, tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(f"{sandbox.world.host_ip('forge')} {sandbox.world.forge_host_key()}\n")
    return path


def test_forge_serves_fixture_tags_to_a_registered_deploy_key_only(
        sandbox: Sandbox, deploy_key: Path, forge_known_hosts: Path) -> None:
    denied = _git_ls_remote(sandbox, deploy_key, "chip_dashboard", forge_known_hosts)
    assert denied.returncode != 0  # not registered yet

    sandbox.world.register_key("chip_dashboard", deploy_key.with_suffix(".pub").read_text())
    ok = _git_ls_remote(sandbox, deploy_key, "chip_dashboard", forge_known_hosts)
    assert ok.returncode == 0, ok.stderr
    tags = {line.split("refs/tags/")[1] for line in ok.stdout.splitlines()}
    assert {"v1", "v2", "broken"} <= tags

    other = _git_ls_remote(sandbox, deploy_key, "rental_scheduler", forge_known_hosts)
    assert other.returncode != 0 and "may only fetch chip_dashboard.git" in other.stderr


def test_forge_host_key_is_pinned(sandbox: Sandbox, deploy_key: Path, tmp_path: Path) -> None:
    sandbox.world.register_key("shop_scheduler", deploy_key.with_suffix(".pub").read_text())
    wrong = tmp_path / "wrong_known_hosts"
    other_key = sandbox.world.rootfs("lan") / "etc/ssh/ssh_host_ed25519_key.pub"
    wrong.write_text(f"{sandbox.world.host_ip('forge')} {' '.join(other_key.read_text().split()[:2])}\n")
    proc = _git_ls_remote(sandbox, deploy_key, "shop_scheduler", wrong)
    assert proc.returncode != 0 and "Host key verification failed" in proc.stderr


def test_fixture_tags_have_stable_commit_ids(sandbox: Sandbox, tmp_path: Path) -> None:
    """make_repos.sh is deterministic: two builds give the same commit for each tag."""
    script = REPO / "sandbox/fixtures/make_repos.sh"
    ids = []
    for n in (1, 2):
        out = tmp_path / f"build{n}"
        subprocess.run(["bash", str(script), str(out)], check=True, capture_output=True)
        ids.append(subprocess.run(["git", "-C", str(out / "chip_dashboard.git"), "rev-parse",
                                   "v1", "v2", "broken"], capture_output=True, text=True,
                                  check=True).stdout)
    assert ids[0] == ids[1]
