"""No secret value appears in any run's output, in the repository, or in its history.

Runs last (file name): it searches every output kept by this session's pyinfra runs, drift
checks and make targets, and the files git tracks plus every commit's diff.
"""

from __future__ import annotations

import json
import re
import subprocess

from iac.pyinfra_ext import fact_batch
from stack.secrets import all_secret_values
from tests.integration.conftest import REPO, Sandbox


def test_canary_secrets_never_appear_in_outputs_or_repository(sandbox: Sandbox, converged) -> None:
    # a --diff run prints old/new file contents: the most likely place for a leak
    sandbox.converge("converge-with-diff", "--diff")
    values = all_secret_values(json.loads((sandbox.world.dir / "secrets.json").read_text()))
    # the canary token itself (a webhook URL carries it as its last part); the admin's password
    # hash is a real crypt(3) hash, searched for whole
    secrets = [m.group(0) if (m := re.search(r"CANARY-[\w.-]+", v)) else v for v in values]
    assert len(secrets) >= 5, "admin password hash, three app secret keys, the webhook URL"

    outputs = sorted(sandbox.outputs.iterdir())
    assert len(outputs) >= 5, "expected the outputs of this session's runs"
    leaks = [(f.name, s[:20]) for f in outputs for s in secrets if s in f.read_text(errors="replace")]
    assert leaks == []
    # the fact records (iac/pyinfra_ext/fact_batch.py) hold fact arguments, never a secret
    records = sorted(fact_batch.RECORD_DIR.glob("*.json"))
    assert records, "the fact records of this session's runs"
    assert [(f.name, s[:20]) for f in records for s in secrets if s in f.read_text(errors="replace")] == []

    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for path in filter(None, tracked.split(b"\0")):
        data = (REPO / path.decode()).read_bytes() if (REPO / path.decode()).is_file() else b""
        assert not any(s.encode() in data for s in secrets), path
    history = subprocess.run(["git", "log", "-p", "--all"], cwd=REPO, capture_output=True,
                             check=True).stdout
    assert not any(s.encode() in history for s in secrets)


def test_secret_reaches_the_host(sandbox: Sandbox, converged) -> None:
    """The canary is really used (so the leak test above is meaningful): the admin password
    hash from the secrets file is what /etc/shadow holds."""
    secrets = json.loads((sandbox.world.dir / "secrets.json").read_text())
    expected = secrets["lan"]["admin"]["password_hash"]
    shadow = sandbox.ssh("lan", "getent shadow gts").stdout.split(":")[1]
    assert shadow == expected
    # it reached the host through a file read by chpasswd, never a command line (`useradd -p`
    # shows it in ps and the journal records it)
    salt = expected.split("$")[2]
    assert sandbox.ssh("lan", f"journalctl --no-pager -o cat | grep -cF {salt} || true").stdout.strip() == "0"
