"""Encrypted stacks (stack/vault.py) and `iac secrets` (cli/secrets.py), with the real age.

Each test makes its own stack in a temporary directory: an identity, a recipients file, the
ciphertext, and a small inventory whose secrets source is that stack (what sandbox/inventory.py
and inventory.py are to theirs), so that edit and set are checked the way they are for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli import secrets as cli_secrets
from iac.errors import ConfigError
from stack.vault import Recipient, Vault, decrypt, new_identity, own_vault, parse_recipients, write_recipients

pytestmark = pytest.mark.skipif(shutil.which("age") is None, reason="age is installed by sandbox/install-deps.sh")
REPO = Path(__file__).resolve().parents[2]
SECRETS = {"lan": {"apps": {"rental_scheduler": {"secret_key": "CANARY-vault-one"}}}}
INVENTORY = """
from pathlib import Path
from stack.secrets import SecretsFile
from stack.vault import own_vault
_secrets = SecretsFile(None, vault=own_vault(Path({dir!r})))
_secrets.provide("lan", [("apps", "rental_scheduler", "secret_key")], [])
"""


@pytest.fixture
def stack(tmp_path: Path) -> tuple[Path, Vault]:
    """(an inventory, its stack) holding SECRETS."""
    vault = own_vault(tmp_path / "stack")
    vault.write(json.dumps(SECRETS).encode())
    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY.format(dir=str(tmp_path / "stack")))
    return inventory, vault


def run_cli(inventory: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.secrets", str(inventory), *args], input=stdin, text=True,
                          capture_output=True, cwd=REPO, env={**os.environ, **env}, check=False, timeout=60)


def shm_leftovers() -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob("iac-secrets-*"))


def test_a_stack_is_armoured_ciphertext_only_its_recipients_read(stack, tmp_path: Path) -> None:
    _, vault = stack
    text = vault.cipher.read_text()
    assert text.startswith("-----BEGIN AGE ENCRYPTED FILE-----") and "CANARY" not in text
    assert json.loads(vault.read()) == SECRETS
    other = tmp_path / "other.key"
    new_identity(other)
    with pytest.raises(ConfigError, match=r"cannot decrypt .*is your key one of the stack's recipients"):
        decrypt(vault.cipher, [other])
    with pytest.raises(ConfigError, match="no identity: set IAC_AGE_IDENTITY"):
        decrypt(vault.cipher, [])


@pytest.mark.parametrize(("line", "said"), [
    ("age1notakey alice", "not a recipient: want `age1...`"),
    ("ssh-rsa AAAAB3NzaC1yc2E alice", "not a recipient"),
    ("{key}", "one name"),
    ("{key} alice bob", "one name"),
    ("{key} alice\n{key} bob", "listed twice"),
])
def test_a_bad_recipients_line_is_refused_naming_the_file_and_line(tmp_path: Path, line: str, said: str) -> None:
    key = new_identity(tmp_path / "k").key
    path = tmp_path / "x.recipients"
    path.write_text("# who\n" + line.format(key=key) + "\n")
    with pytest.raises(ConfigError, match=f"{path}:[23]: .*{said}"):
        parse_recipients(path)


def test_an_ssh_ed25519_key_is_a_recipient_and_its_private_key_decrypts(tmp_path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    public = " ".join((tmp_path / "id.pub").read_text().split()[:2])
    recipients = tmp_path / "s.recipients"
    write_recipients(recipients, [Recipient(public, "alice")])
    assert parse_recipients(recipients) == [Recipient(public, "alice")]
    vault = Vault(tmp_path / "s.age", recipients, (tmp_path / "id",))
    vault.write(b'{"lan": {}}')
    assert vault.read() == b'{"lan": {}}'


def test_set_takes_the_value_from_stdin_and_checks_it(stack) -> None:
    inventory, vault = stack
    hostile = "CANARY-vault-two$(touch /tmp/iac-vault-pwned)`id`\"'"
    run = run_cli(inventory, "set", "lan.apps.rental_scheduler.secret_key", stdin=hostile + "\n")
    assert run.returncode == 0, run.stderr
    assert json.loads(vault.read())["lan"]["apps"]["rental_scheduler"]["secret_key"] == hostile
    assert "CANARY" not in run.stdout + run.stderr and not Path("/tmp/iac-vault-pwned").exists()
    before = vault.cipher.read_bytes()
    typo = run_cli(inventory, "set", "lan.apps.rental_scheduler.secret_kye", stdin="x")
    assert typo.returncode == 1 and "did you mean 'apps.rental_scheduler.secret_key'" in typo.stderr
    assert run_cli(inventory, "set", "lan.apps", stdin="").returncode == 1
    assert run_cli(inventory, "set", "pubic.x", stdin="x").returncode == 1
    assert vault.cipher.read_bytes() == before  # refused: the stack is as it was


EDITOR = """import json, os, signal, sys
path = sys.argv[1]
data = json.load(open(path))
what = os.environ["WHAT"]
if what == "change":
    data["lan"]["apps"]["rental_scheduler"]["secret_key"] = "CANARY-vault-edited"
elif what == "typo":
    data["lan"]["apps"]["rental_scheduler"]["secret_kye"] = "x"
elif what == "broken":
    open(path, "w").write("{not json")
    sys.exit(0)
elif what == "interrupt":
    open(os.environ["SEEN"], "w").write(path)
    os.kill(os.getppid(), signal.SIGINT)
    sys.exit(130)
elif what == "terminate":
    open(os.environ["SEEN"], "w").write(path)
    os.kill(os.getppid(), signal.SIGTERM)
    sys.exit(143)
json.dump(data, open(path, "w"))
"""


@pytest.mark.parametrize("what", ["change", "unchanged", "typo", "broken", "interrupt", "terminate"])
def test_edit_saves_only_a_checked_file_and_leaves_no_plaintext(stack, tmp_path: Path, what: str) -> None:
    inventory, vault = stack
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    before, seen = vault.cipher.read_bytes(), tmp_path / "seen"
    leftovers = shm_leftovers()
    run = run_cli(inventory, "edit", EDITOR=f"{sys.executable} {editor}", VISUAL="", WHAT=what, SEEN=str(seen))
    assert shm_leftovers() == leftovers  # saved, refused or interrupted: the plaintext is gone
    value = json.loads(vault.read())["lan"]["apps"]["rental_scheduler"]["secret_key"]
    if what == "change":
        assert run.returncode == 0 and "saved, encrypted to 1 recipient" in run.stdout, run.stderr
        assert value == "CANARY-vault-edited"
        return
    assert vault.cipher.read_bytes() == before and value == "CANARY-vault-one"
    if what == "unchanged":
        assert run.returncode == 0 and "no change" in run.stdout
        return
    assert run.returncode != 0
    said = {"typo": "unknown secret 'apps.rental_scheduler.secret_kye'", "broken": "not valid JSON",
            "interrupt": "interrupted; nothing saved", "terminate": ""}[what]
    assert said in run.stderr
    if what in ("interrupt", "terminate"):
        assert seen.read_text().startswith("/dev/shm/iac-secrets-") and not Path(seen.read_text()).exists()
    assert "CANARY" not in run.stdout + run.stderr


def test_recipients_are_added_and_removed_and_the_stack_follows(stack, tmp_path: Path) -> None:
    inventory, vault = stack
    alice_key = tmp_path / "alice.key"
    alice = new_identity(alice_key, "alice")
    assert run_cli(inventory, "recipients").stdout.split() == ["sandbox", parse_recipients(vault.recipients)[0].key]
    added = run_cli(inventory, "recipients", "--add", f"{alice.key} alice")
    assert added.returncode == 0 and "2 recipient(s): sandbox, alice; re-encrypted" in added.stdout, added.stderr
    assert json.loads(decrypt(vault.cipher, [alice_key])) == SECRETS
    assert run_cli(inventory, "recipients", "--add", f"{alice.key} alice2").returncode == 1  # the same key
    removed = run_cli(inventory, "recipients", "--remove", "alice")
    assert removed.returncode == 0 and "alice may have kept a copy" in removed.stdout
    with pytest.raises(ConfigError, match="cannot decrypt"):
        decrypt(vault.cipher, [alice_key])
    assert json.loads(vault.read()) == SECRETS
    assert run_cli(inventory, "recipients", "--remove", "sandbox").returncode == 1  # nobody left
    assert run_cli(inventory, "recipients", "--remove", "bob").returncode == 1


def test_production_names_its_stack_in_the_repository_and_lists_no_reader_yet() -> None:
    vault, _ = cli_secrets.load_stack(str(REPO / "inventory.py"))
    assert (vault.cipher, vault.recipients) == (REPO / "secrets/production.age", REPO / "secrets/production.recipients")
    assert parse_recipients(vault.recipients) == []
    with pytest.raises(ConfigError, match="no recipients: nobody could read it"):
        Vault(Path("/nonexistent/x.age"), vault.recipients).write(b"{}")


def test_a_plaintext_stack_is_moved_into_the_vault_once(tmp_path: Path) -> None:
    """The sandbox's secrets.json from before encryption (sandbox/world/addresses.py World.secrets)."""
    from sandbox.world import World

    world = World("vaulttest")
    world.dir = tmp_path
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    source = world.secrets()
    assert source.data == SECRETS and not (tmp_path / "secrets.json").exists()
    assert world.secret_values() == SECRETS
    assert (tmp_path / "secrets.age").read_text().startswith("-----BEGIN AGE ENCRYPTED FILE-----")


def test_an_edit_of_a_generated_stack_keeps_an_earlier_configurations_keys_and_adds_none(tmp_path: Path) -> None:
    """The sandbox's stack keeps secrets of apps an earlier test declared; editing another value
    still works, while a key the edit itself adds and nothing uses is refused."""
    vault = own_vault(tmp_path / "stack")
    leftover = {"lan": {"apps": {**SECRETS["lan"]["apps"], "gone": {"secret_key": "CANARY-gone-0123456789"}}}}
    vault.write(json.dumps(leftover).encode())
    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY.format(dir=str(tmp_path / "stack")).replace("vault=own_vault", "generate=True, "
                                                                                "vault=own_vault"))
    done = run_cli(inventory, "set", "lan.apps.rental_scheduler.secret_key", stdin="CANARY-vault-after-0123456789")
    assert done.returncode == 0, done.stderr
    assert json.loads(vault.read())["lan"]["apps"]["gone"] == {"secret_key": "CANARY-gone-0123456789"}
    added = run_cli(inventory, "set", "lan.apps.other.secret_key", stdin="CANARY-vault-other-0123456789")
    assert added.returncode == 1 and "unknown secret 'apps.other.secret_key'" in added.stderr


def test_a_stack_is_decrypted_once_per_process_until_it_changes(tmp_path: Path, monkeypatch) -> None:
    import stack.vault as vault_module

    vault = own_vault(tmp_path / "stack")
    vault.write(b'{"lan": {}}\n')
    calls = []
    real = vault_module.decrypt
    monkeypatch.setattr(vault_module, "decrypt", lambda *a: calls.append(a) or real(*a))
    assert vault.read() == own_vault(tmp_path / "stack").read() == b'{"lan": {}}\n'
    assert len(calls) == 1  # a second Vault of the same file, unchanged: the same plaintext, no age
    vault.write(b'{"lan": {"x": 1}}\n')
    assert vault.read() == b'{"lan": {"x": 1}}\n' and len(calls) == 2
    monkeypatch.setenv("IAC_AGE_IDENTITY", str(tmp_path / "stack" / "age-identity.txt"))
    vault.read()
    assert len(calls) == 3  # another reader's identity is tried for real, never answered from memory
