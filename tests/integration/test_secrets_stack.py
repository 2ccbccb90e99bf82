"""The sandbox's stack of secrets, kept encrypted (stack/vault.py) as production's is, changed
through the commands an operator uses (`make secrets-edit`, `make secrets-set`,
`make secrets-recipients`, cli/secrets.py):

+ a refused edit (a misspelt key) changes nothing; an accepted one and a value set from stdin
  reach the stack, and the next drift check names what the host would get (the env file, without
  the value); putting the value back brings the host in sync again;
+ a recipient added can decrypt the stack, and once removed cannot, while the sandbox (and every
  run) still reads it;
+ nothing decrypted is left in a memory-backed directory, and no output holds a value.

Each test puts back what it changed (the stack's values and readers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack.vault import decrypt, new_identity, own_vault
from tests.integration.conftest import REPO, Run, Sandbox
from tests.integration.test_drift import workflow_drift_step, workflow_step

pytestmark = pytest.mark.usefixtures("converged")
KEY = "lan.apps.rental_scheduler.secret_key"
ENV_FILE_OP = "rental_scheduler: env file (secrets)"
EDITOR = """import json, os, sys
data = json.load(open(sys.argv[1]))
app = data["lan"]["apps"]["rental_scheduler"]
if os.environ["WHAT"] == "typo":
    app["secret_kye"] = app["secret_key"]
else:
    app["secret_key"] = app["secret_key"] + "-edited"
json.dump(data, open(sys.argv[1], "w"), indent=2)
"""


def make(sandbox: Sandbox, label: str, *args: str, stdin: str = "", **env: str) -> Run:
    """``make -s ARGS`` on the sandbox's stack (INVENTORY's default), ``stdin`` on its input."""
    started = time.monotonic()
    proc = subprocess.run(["make", "-s", *args], cwd=REPO, input=stdin, text=True, capture_output=True, check=False,
                          timeout=300, env={**{k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}, **env})
    return sandbox.keep(label, Run(["make", *args], proc.returncode, proc.stdout, proc.stderr,
                                   time.monotonic() - started))


def rental_key(sandbox: Sandbox) -> str:
    return sandbox.world.secret_values()["lan"]["apps"]["rental_scheduler"]["secret_key"]


def leftovers() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob("iac-secrets-*"))


def test_edit_and_set_change_the_stack_and_drift_names_the_env_file(sandbox: Sandbox, tmp_path: Path) -> None:
    original, cipher = rental_key(sandbox), sandbox.world.dir / "secrets.age"
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    before = cipher.read_bytes()
    try:
        typo = make(sandbox, "secrets-edit-typo", "secrets-edit", EDITOR=f"{sys.executable} {editor}", VISUAL="",
                    WHAT="typo")
        assert typo.returncode != 0 and "unknown secret 'apps.rental_scheduler.secret_kye'" in typo.stderr
        assert cipher.read_bytes() == before
        edited = make(sandbox, "secrets-edit", "secrets-edit", EDITOR=f"{sys.executable} {editor}", VISUAL="",
                      WHAT="change")
        assert edited.returncode == 0 and "saved, encrypted to 1 recipient" in edited.stdout, edited.output
        assert rental_key(sandbox) == original + "-edited"
        drift = sandbox.drift("drift-after-secrets-edit", "--limit", "lan", "--format", "json")
        assert drift.returncode == 2, drift.output[-3000:]
        said = {i["operation"]: i["details"] for i in json.loads(drift.stdout)["drift"]}
        # the env file, and the app's restart with it (its release inputs include the env file)
        assert ENV_FILE_OP in said and all(op.startswith("rental_scheduler: ") for op in said), said
        assert "DJANGO_SECRET_KEY changed (values not shown)" in said[ENV_FILE_OP][0]
    finally:
        put_back = make(sandbox, "secrets-set-back", "secrets-set", f"KEY={KEY}", stdin=original + "\n")
    assert put_back.returncode == 0 and f"{KEY} set" in put_back.stdout, put_back.output
    assert rental_key(sandbox) == original
    assert sandbox.drift("drift-after-secrets-set", "--limit", "lan").returncode == 0
    assert leftovers() == []
    for run in (typo, edited, put_back):
        assert original[:30] not in run.output


def test_a_recipient_added_reads_the_stack_and_once_removed_cannot(sandbox: Sandbox, tmp_path: Path) -> None:
    key = tmp_path / "operator.key"
    operator = new_identity(key, "operator")
    cipher = sandbox.world.dir / "secrets.age"
    try:
        added = make(sandbox, "secrets-recipients-add", "secrets-recipients", f"ADD={operator.key} operator")
        assert added.returncode == 0 and "2 recipient(s): sandbox, operator; re-encrypted" in added.stdout, \
            added.output
        assert json.loads(decrypt(cipher, [key])) == sandbox.world.secret_values()
        listed = make(sandbox, "secrets-recipients", "secrets-recipients")
        assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["sandbox", "operator"]
    finally:
        removed = make(sandbox, "secrets-recipients-remove", "secrets-recipients", "REMOVE=operator")
    assert removed.returncode == 0 and "operator may have kept a copy" in removed.stdout, removed.output
    with pytest.raises(Exception, match="cannot decrypt"):
        decrypt(cipher, [key])
    assert own_vault(sandbox.world.dir).read() and sandbox.world.secret_values()["lan"]  # the sandbox reads it


def test_the_ci_jobs_key_step_lets_its_drift_step_read_the_stack(sandbox: Sandbox, tmp_path: Path) -> None:
    """The workflow's key step (.github/workflows/drift.yml), given a key that is one of the
    stack's recipients ("ci"), then its drift step with what the key step put in GITHUB_ENV: the
    stack is read with the job's key alone (the sandbox's own identity moved away meanwhile)."""
    ci_key = tmp_path / "ci.key"
    ci = new_identity(ci_key, "ci")
    runner, github_env = tmp_path / "runner", tmp_path / "github_env"
    runner.mkdir()
    own = sandbox.world.dir / "age-identity.txt"
    hidden = own.with_name("age-identity.hidden")
    assert make(sandbox, "secrets-recipients-add-ci", "secrets-recipients", f"ADD={ci.key} ci").returncode == 0
    try:
        step = workflow_step("The job's age key")
        key_step = sandbox.command("workflow-age-key-step", ["bash", "-c", step["run"]], IAC_AGE_KEY=ci_key.read_text(),
                                   RUNNER_TEMP=str(runner), GITHUB_ENV=str(github_env))
        assert key_step.returncode == 0, key_step.output
        written = dict(line.split("=", 1) for line in github_env.read_text().splitlines())
        assert written == {"IAC_AGE_IDENTITY": str(runner / "age-identity.txt")}
        assert (runner / "age-identity.txt").stat().st_mode & 0o777 == 0o600
        own.rename(hidden)
        run, summary, report = workflow_drift_step(sandbox, "drift-with-the-ci-key", tmp_path, **written)
        assert run.returncode == 0 and report["status"] == "in_sync", run.output[-3000:]
    finally:
        if hidden.exists():
            hidden.rename(own)
        removed = make(sandbox, "secrets-recipients-remove-ci", "secrets-recipients", "REMOVE=ci")
    assert removed.returncode == 0, removed.output
    assert "AGE-SECRET-KEY" not in run.output + key_step.output
