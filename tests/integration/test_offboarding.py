"""An operator leaves: their key comes out of ``admin.ssh_authorized_keys`` and one converge takes
it off the host (the baseline's key repair, commit-confirm: a wrong list cannot lock the operator
out), kept in the quarantine; the key that stays declared still logs in, the removed one cannot.

On the LAN host, as production reaches it: the admin ``gts`` with sudo, while two clients ask both
apps through nginx (no request fails).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.conftest import Run, Sandbox
from tests.integration.load import Load


def logs_in(sandbox: Sandbox, key: Path, user: str = "gts") -> subprocess.CompletedProcess:
    world = sandbox.world
    return subprocess.run(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                           "-o", f"UserKnownHostsFile={world.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                           "-o", "ConnectTimeout=10", f"{user}@{world.host_ip('lan')}", "id -un"],
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def test_a_departed_operators_key_no_longer_logs_in_and_the_declared_one_does(sandbox: Sandbox, converged: Run,
                                                                                tmp_path: Path) -> None:
    leaver = tmp_path / "leaver"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "leaver@laptop", "-f", str(leaver)],
                   check=True)
    declared = sandbox.world.ssh_key.with_suffix(".pub").read_text().strip()
    both = json.dumps({"lan": {"admin": {"ssh_authorized_keys": [declared, leaver.with_suffix(".pub").read_text()
                                                                 .strip()]}}})
    onboard = sandbox.converge("admin-keys-two-operators", "--limit", "lan", SANDBOX_OVERRIDES=both)
    assert onboard.returncode == 0, onboard.output[-3000:]
    assert logs_in(sandbox, leaver).stdout.strip() == "gts"

    ip = sandbox.world.host_ip("lan")
    with Load(ip, 8001, "gts-server.lan") as rental, Load(ip, 8002, "gts-server.lan") as shop:
        offboard = sandbox.converge("admin-keys-leaver-removed", "--limit", "lan")
    assert offboard.returncode == 0, offboard.output[-3000:]
    assert rental.result.failures == [] and shop.result.failures == [], (rental.result.summary(),
                                                                          shop.result.summary())
    refused = logs_in(sandbox, leaver)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused
    assert logs_in(sandbox, sandbox.world.ssh_key).stdout.strip() == "gts"
    kept = sandbox.ssh("lan", "grep -l leaver@laptop /var/lib/iac/quarantine/*/home/gts/.ssh/authorized_keys",
                       check=False)
    assert kept.returncode == 0, "the removed key line is kept in the quarantine"
    assert sandbox.drift("drift-after-offboarding", "--limit", "lan").returncode == 0
