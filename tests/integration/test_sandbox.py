"""The sandbox world itself: hosts, stand-ins and the git forge behave like the real things."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest

from sandbox.world import World
from tests.integration.conftest import REPO, TIMINGS, Sandbox


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


# ---- the LAN host's dump disk ------------------------------------------------------------------

DISK = "/mnt/pg_backups"
FSTAB_LINE = "UUID={uuid} /mnt/pg_backups ext4 defaults,nofail,x-systemd.device-timeout=5s 0 2"


def _running(sandbox: Sandbox, role: str) -> str:
    return sandbox.ssh(role, "systemctl is-system-running --wait", check=False).stdout.strip()


def test_dump_disk_is_an_ext4_filesystem_of_its_own_mounted_in_the_lan_host(sandbox: Sandbox) -> None:
    world = sandbox.world
    image = world.backup_disk_image
    assert image.stat().st_size == 512 * 1024 * 1024
    probe = subprocess.run(["blkid", "-o", "export", str(image)], capture_output=True, text=True, check=True).stdout
    assert "LABEL=pg_backups" in probe and "TYPE=ext4" in probe
    uuid = world.backup_disk_uuid()
    assert f"UUID={uuid}" in probe and len(uuid) == 36
    resources = json.loads(world.state_file.read_text())["resources"]
    assert {"kind": "file", "path": str(image)} in resources
    assert {"kind": "mount", "path": str(world.backup_disk_mount)} in resources
    assert Path(world.backup_disk_mount).is_mount()

    assert sandbox.ssh("lan", f"mountpoint -q {DISK}", check=False).returncode == 0
    assert sandbox.ssh("lan", f"findmnt -n -o FSTYPE {DISK}").stdout.strip() == "ext4"
    # a filesystem of its own, not a directory of the host's root filesystem
    devices = sandbox.ssh("lan", f"stat -c %d / {DISK}").stdout.split()
    assert devices[0] != devices[1]
    assert sandbox.ssh("public", f"mountpoint -q {DISK}", check=False).returncode != 0  # the LAN host's only

    # The converge declares it in fstab by UUID: systemd in the container neither fails nor waits on
    # that line (no device units in a container), and the disk stays mounted.
    fstab = sandbox.ssh("lan", "cat /etc/fstab").stdout
    declared = f"UUID={uuid} {DISK} ext4 " in fstab  # a converged host has it already
    try:
        if not declared:
            sandbox.ssh("lan", f"echo '{FSTAB_LINE.format(uuid=uuid)}' >> /etc/fstab")
        sandbox.ssh("lan", "systemctl daemon-reload && timeout 30 systemctl restart local-fs.target")
        assert _running(sandbox, "lan") == "running"
        assert sandbox.ssh("lan", f"mountpoint -q {DISK}", check=False).returncode == 0
    finally:
        if not declared:
            world.ssh("lan", "cat > /etc/fstab && systemctl daemon-reload", input=fstab)


def test_dump_disk_detaches_and_attaches_again_with_its_data(sandbox: Sandbox) -> None:
    world = sandbox.world
    token = uuid.uuid4().hex
    sandbox.ssh("lan", f"echo {token} > {DISK}/sandbox-test-attach && sync")
    world.detach_backup_disk()
    try:
        assert sandbox.ssh("lan", f"mountpoint -q {DISK}", check=False).returncode != 0
        assert sandbox.ssh("lan", f"ls -A {DISK}").stdout == ""  # a bare directory on the root fs
        # the disk itself is intact, only out of the host's reach
        assert (world.backup_disk_mount / "sandbox-test-attach").read_text().strip() == token
    finally:
        world.attach_backup_disk()
    assert sandbox.ssh("lan", f"mountpoint -q {DISK}", check=False).returncode == 0
    assert sandbox.ssh("lan", f"cat {DISK}/sandbox-test-attach").stdout.strip() == token
    world.detach_backup_disk()
    world.detach_backup_disk()  # both idempotent
    world.attach_backup_disk()
    world.attach_backup_disk()
    assert sandbox.ssh("lan", f"cat {DISK}/sandbox-test-attach").stdout.strip() == token
    sandbox.ssh("lan", f"rm {DISK}/sandbox-test-attach")


# ---- the subnet a sandbox was created with -----------------------------------------------------

def _machine_network() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    return {"lo": out(["ip", "-o", "addr", "show", "dev", "lo"]), "nat": out(["iptables", "-t", "nat", "-S"]),
            "netns": out(["ip", "netns", "list"]), "links": out(["ip", "-o", "link", "show"])}


def test_up_with_another_subnet_is_refused_and_changes_nothing(sandbox: Sandbox) -> None:
    world = sandbox.world
    assert json.loads(world.state_file.read_text())["subnet"] == str(world.subnet)
    _name, other = World.free_slot(avoid=(str(world.subnet),))
    files = [world.state_file, world.ssh_config, world.known_hosts, World.REGISTRY / f"{world.name}.json"]
    before = ([f.read_bytes() for f in files], _machine_network())

    run = sandbox.command("up-other-subnet", [str(REPO / ".venv/bin/python"), "-m", "sandbox.world", "up"],
                          SANDBOX_NAME=world.name, SANDBOX_SUBNET=other)
    assert run.returncode == 1, run.output
    assert run.seconds < 10, "refused before doing anything"
    assert f"SANDBOX_SUBNET={world.subnet}" in run.stderr and f"SANDBOX_SUBNET={other}" in run.stderr
    assert f"make sandbox-down SANDBOX_NAME={world.name}" in run.stderr
    assert ([f.read_bytes() for f in files], _machine_network()) == before
    assert sandbox.ssh("lan", "true").returncode == 0


# ---- a host that reboots itself ----------------------------------------------------------------

def test_host_that_reboots_itself_comes_back_up(sandbox: Sandbox) -> None:
    """`systemctl reboot` on the LAN host: its supervisor boots the container again (network and
    dump disk included), as a real server comes back; it does not stay down."""
    world = sandbox.world
    supervisor = world.find_process("nspawn-lan")
    init_before = world.container_pid("lan")
    started = time.monotonic()
    back = world.reboot("lan", timeout=90)
    TIMINGS["sandbox: lan host reboots itself, back in"] = time.monotonic() - started
    assert back == "running", f"lan host not back within 90 s (last state {back!r})"
    assert world.process_alive(supervisor) and world.find_process("nspawn-lan") == supervisor
    assert world.container_pid("lan") != init_before
    assert f"{world.host_ip('lan')}/24" in sandbox.ssh("lan", "ip -o -4 addr show dev eno1").stdout
    assert sandbox.ssh("lan", f"mountpoint -q {DISK}", check=False).returncode == 0
    assert "rebooted itself (systemd-nspawn exit 133)" in (world.dir / "logs/nspawn-lan.log").read_text(
        errors="replace")


def test_a_new_apps_repository_goes_on_the_forge_with_one_command(sandbox: Sandbox, deploy_key: Path,
                                                                  forge_known_hosts: Path, tmp_path: Path) -> None:
    source = tmp_path / "demo"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(source)], check=True)
    (source / "manage.py").write_text("# a new app\n")
    subprocess.run([*git, "-C", str(source), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(source), "commit", "-qm", "first"], check=True)
    subprocess.run([*git, "-C", str(source), "tag", "v1"], check=True)
    try:
        added = subprocess.run(["make", "-s", "sandbox-repo", "APP=demo_app", f"SRC={source}"], cwd=REPO,
                               capture_output=True, text=True, timeout=300, check=False)
        assert added.returncode == 0, added.stderr
        assert added.stdout.strip().endswith("/srv/git/demo_app.git")  # named after the app, as the inventory says
        sandbox.world.register_key("demo_app", deploy_key.with_suffix(".pub").read_text())
        listed = _git_ls_remote(sandbox, deploy_key, "demo_app", forge_known_hosts)
        assert listed.returncode == 0, listed.stderr
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert f"{head}\trefs/tags/v1" in listed.stdout
        bad = subprocess.run(["make", "-s", "sandbox-repo", "APP=Demo-App", f"SRC={source}"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, check=False)
        assert bad.returncode != 0 and "is not an app name" in bad.stderr
    finally:
        sandbox.world.unregister_key("demo_app", deploy_key.with_suffix(".pub").read_text())
        sandbox.ssh("forge", "rm -rf /srv/git/demo_app.git")
