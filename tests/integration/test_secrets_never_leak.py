"""No secret value appears in any run's output, in the repository, or in its history.

Order does not matter here: every output a session keeps (every pyinfra run, drift check and make
target) and every fact record is searched for the sandbox's canaries when the session ends, after
all tests (canary_search in tests/integration/conftest.py; tests/unit/test_canary_search.py proves
the search finds a planted canary). This file checks what can be checked at any time: a --diff
run, the fact records, the files git tracks and every commit's diff; and that the canary really
reaches a host (else finding none would prove nothing).
"""

from __future__ import annotations

from iac.pyinfra_ext import fact_batch
from tests.canary_search import canaries, leaks_in_files, leaks_in_git
from tests.integration.conftest import REPO, Sandbox


def test_canary_secrets_never_appear_in_outputs_or_repository(sandbox: Sandbox, converged) -> None:
    # a --diff run prints old/new file contents: the most likely place for a leak
    sandbox.converge("converge-with-diff", "--diff")
    secrets = canaries(sandbox.world.secret_values())
    assert len(secrets) >= 5, "admin password hash, three app secret keys, the webhook URL"

    outputs = sorted(sandbox.outputs.iterdir())
    kept = [p.name.split("-", 1)[1] for p in sandbox.kept]
    assert {"first-converge.log", "converge-with-diff.log"} <= set(kept), "the outputs of this test's runs"
    assert leaks_in_files(outputs, secrets) == []
    # the fact records (iac/pyinfra_ext/fact_batch.py) hold fact arguments, never a secret
    records = sorted(fact_batch.RECORD_DIR.glob("*.json"))
    assert records, "the fact records of this session's runs"
    assert leaks_in_files(records, secrets) == []

    assert leaks_in_git(REPO, secrets) == []


def test_secret_reaches_the_host(sandbox: Sandbox, converged) -> None:
    """The canary is really used (so the leak search is meaningful): the admin password
    hash from the secrets file is what /etc/shadow holds."""
    secrets = sandbox.world.secret_values()
    expected = secrets["lan"]["admin"]["password_hash"]
    shadow = sandbox.ssh("lan", "getent shadow gts").stdout.split(":")[1]
    assert shadow == expected
    # it reached the host through a file read by chpasswd, never a command line (`useradd -p`
    # shows it in ps and the journal records it)
    salt = expected.split("$")[2]
    assert sandbox.ssh("lan", f"journalctl --no-pager -o cat | grep -cF {salt} || true").stdout.strip() == "0"
