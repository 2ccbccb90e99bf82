"""The canary search (tests/canary_search.py) finds a planted canary, so finding none means
something: in a file, in a tracked file, in a commit's diff only, and, through the integration
suite's own session fixture (canary_search in tests/integration/conftest.py, run here in a small
pytest session of its own with a stand-in sandbox), in an output kept by any test of a session,
whichever ran first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.canary_search import canaries, canaries_of, leaks_in_files, leaks_in_git, session_files

REPO = Path(__file__).resolve().parents[2]
TOKEN = "CANARY-apps.shop.secret_key-8f3a9c1e2d"
HASH = "$6$0123456789abcdef$" + "x" * 86
SECRETS = {"lan": {"admin": {"password_hash": HASH}, "apps": {"shop": {
    "secret_key": TOKEN + " $(touch /tmp/pwned)`id`", "discord_alerts": {
        "webhook_url": "http://10.213.0.1:8056/api/webhooks/2/CANARY-backups.alerts.webhook_url-77aa"}}}}}


def test_canaries_are_the_tokens_or_the_whole_value() -> None:
    assert canaries(SECRETS) == [HASH, TOKEN, "CANARY-backups.alerts.webhook_url-77aa"]


def test_a_planted_canary_is_found_and_named_by_its_file(tmp_path: Path) -> None:
    outputs, records = tmp_path / "outputs", tmp_path / "facts"
    outputs.mkdir()
    records.mkdir()
    (outputs / "001-first-converge.log").write_text("changed: env file\n")
    (outputs / "002-drift.log").write_text(f"SECRET_KEY differs: was {TOKEN} $(touch /tmp/pwned)\n")
    (records / "gts-server@10.213.2.2.deploy.json").write_text(json.dumps([["server.Users", {}], HASH]))
    (records / "notes.txt").write_text(TOKEN)  # not a record: not searched
    files = session_files(outputs, records)
    assert [f.name for f in files] == ["001-first-converge.log", "002-drift.log", "gts-server@10.213.2.2.deploy.json"]
    secrets = canaries(SECRETS)
    assert leaks_in_files(files, secrets) == [("002-drift.log", TOKEN[:20]), ("gts-server@10.213.2.2.deploy.json",
                                                                              HASH[:20])]
    assert leaks_in_files(files[:1], secrets) == []
    assert session_files(tmp_path / "none", tmp_path / "none") == []


def test_no_secrets_file_yet_means_nothing_to_search_for(tmp_path: Path) -> None:
    assert canaries_of(tmp_path / "secrets.json") == []
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    assert canaries_of(tmp_path / "secrets.json") == canaries(SECRETS)


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def test_a_canary_in_a_tracked_file_or_only_in_history_is_found(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("nothing secret\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "clean")
    assert leaks_in_git(repo, [TOKEN]) == []
    (repo / "settings.py").write_text(f"SECRET_KEY = {TOKEN!r}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "oops")
    assert leaks_in_git(repo, [TOKEN]) == ["settings.py", "history"]
    (repo / "settings.py").write_text("SECRET_KEY = os.environ['SECRET_KEY']\n")
    _git(repo, "commit", "-q", "-am", "removed again")
    assert leaks_in_git(repo, [TOKEN]) == ["history"]  # the file is clean, the history is not
    (repo / "untracked.log").write_text(TOKEN)
    assert leaks_in_git(repo, [TOKEN]) == ["history"]  # git ls-files: tracked files only


CONFTEST = '''
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.integration.conftest import _outputs_searched_at_the_end, canary_search  # noqa: F401

WORLD = Path(__file__).parent / "world"


@pytest.fixture(scope="session")
def sandbox():
    """A stand-in: the secrets (decrypted, as World.secret_values gives them) and the outputs
    directory of a sandbox, no hosts."""
    (WORLD / "outputs").mkdir(parents=True, exist_ok=True)
    secrets = json.loads((WORLD / "secrets.json").read_text())
    world = SimpleNamespace(dir=WORLD, secret_values=lambda: secrets)
    return SimpleNamespace(world=world, outputs=WORLD / "outputs", kept=[])
'''

TESTS = '''
import os


def test_a_run_that_leaks(sandbox):
    path = sandbox.outputs / "001-run.log"
    path.write_text("exit 0\\n" + os.environ["PRINTED"] + "\\n")
    sandbox.kept.append(path)


def test_b_a_run_kept_where_nobody_searches(sandbox):
    if os.environ["ELSEWHERE"]:
        path = sandbox.world.dir / "002-elsewhere.log"
        path.write_text("exit 0\\n")
        sandbox.kept.append(path)


def test_c_no_sandbox_needed():
    pass
'''


@pytest.mark.parametrize("leaked", [False, True])
def test_the_session_fails_at_its_end_when_any_test_leaked(tmp_path: Path, leaked: bool) -> None:
    """The first test leaks and two more run after it: the session still ends in an error naming
    the file (and an output kept outside the searched directory); a clean session passes."""
    session = tmp_path / "session"
    (session / "world").mkdir(parents=True)
    (session / "world" / "secrets.json").write_text(json.dumps(SECRETS))
    (session / "conftest.py").write_text(CONFTEST)
    (session / "test_runs.py").write_text(TESTS)
    env = {**os.environ, "PYTHONPATH": str(REPO), "IAC_FACT_RECORDS": str(tmp_path / "facts"),
           "PRINTED": f"SECRET_KEY={TOKEN}" if leaked else "changed: 3 operations", "ELSEWHERE": "1" if leaked else ""}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(session)], cwd=session,
                         env=env, capture_output=True, text=True, check=False)
    if not leaked:
        assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-3000:]
        return
    assert run.returncode == 1 and "3 passed, 1 error" in run.stdout, run.stdout[-3000:]
    assert "ERROR at teardown of test_c_no_sandbox_needed" in run.stdout, run.stdout[-3000:]
    assert ("Failed: outputs of this session missing from the canary search: ['002-elsewhere.log']; canary "
            f"secrets found in this session's outputs or fact records: [('001-run.log', '{TOKEN[:20]}')]"
            in run.stdout), run.stdout[-3000:]
