"""Facts answered together in a batch (iac/shared_facts.py): the same value as each fact's own command.

Every comparison runs real commands in a real ``sh`` on this machine (Debian 12, as the hosts): the
shared ``stat``/``sha1sum``/``sha256sum`` of many paths, and pyinfra's own command for each path,
over regular files, directories, links (to a file, dangling), absent paths and modes.
"""

from __future__ import annotations

import os
import subprocess
import types
from pathlib import Path

import pytest
from pyinfra.api import facts as pyinfra_facts
from pyinfra.api.command import StringCommand

from iac import fact_batch, shared_facts
from iac.fact_batch import FactCall, split_lines

FILE_FACTS = ["File", "Link", "Directory", "Socket"]
HASH_FACTS = ["Sha1File", "Sha256File"]


class LocalHost:
    """Runs a batch in ``sh`` here; counts the commands."""

    name = "local"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run_shell_command(self, command: StringCommand, **_: object):  # noqa: ANN201
        self.commands.append(command.get_raw_value())
        proc = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, check=False)
        return True, types.SimpleNamespace(stdout_lines=split_lines(proc.stdout))


def own_value(call: FactCall):  # noqa: ANN201
    """The value pyinfra's own command and process() give, run here."""
    fact = fact_batch.fact_class(call.fact)()
    command = pyinfra_facts._make_command(fact.command, dict(call.kwargs))
    proc = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, check=False)
    lines = split_lines(proc.stdout)
    return fact.process(lines) if lines else fact.default()


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "file.conf").write_text("listen 80;\n")
    (tmp_path / "secret.env").write_text("A=1\n")
    (tmp_path / "secret.env").chmod(0o600)
    (tmp_path / "empty").write_text("")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "file.conf")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "with space").write_text("x\n")
    return {name: str(tmp_path / name) for name in
            ("file.conf", "secret.env", "empty", "dir", "link", "dangling", "absent", "with space")}


def test_pyinfras_commands_are_the_ones_the_shared_commands_stand_in_for() -> None:
    """If a pyinfra upgrade changes a command, nothing is shared any more and this says so."""
    for name in FILE_FACTS + HASH_FACTS:
        call = FactCall(f"pyinfra.facts.files:{name}", {"path": "/etc/nginx/nginx.conf"}, {})
        assert shared_facts.shared_for(call) is not None, f"{name}: pyinfra's command changed; update shared_facts"


def test_every_file_fact_gets_the_value_its_own_command_gives(tree: dict[str, str]) -> None:
    calls = [FactCall(f"pyinfra.facts.files:{name}", {"path": path}, {})
             for name in FILE_FACTS + HASH_FACTS for path in tree.values()]
    host = LocalHost()
    values = fact_batch.gather(None, host, calls)
    assert len(host.commands) == 1
    for call in calls:
        if call.fact.endswith(("Sha1File", "Sha256File")) and call.kwargs["path"] == tree["dir"]:
            assert call.key not in values  # fetched the normal way (the test below)
            continue
        assert call.key in values, f"{call.fact} {call.kwargs}: not answered"
        assert values[call.key] == own_value(call), f"{call.fact} {call.kwargs}"
    # the values are real: a file's size and mode, a link's target, a hash
    file_fact = values[FactCall("pyinfra.facts.files:File", {"path": tree["secret.env"]}, {}).key]
    assert file_fact["mode"] == 600 and file_fact["size"] == 4
    link = values[FactCall("pyinfra.facts.files:Link", {"path": tree["link"]}, {}).key]
    assert link["link_target"] == tree["file.conf"]
    assert values[FactCall("pyinfra.facts.files:Sha1File", {"path": tree["empty"]}, {}).key] == \
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"


def test_only_paths_the_shell_reads_as_themselves_are_shared(tree: dict[str, str]) -> None:
    spaced = FactCall("pyinfra.facts.files:File", {"path": tree["with space"]}, {})
    assert shared_facts.shared_for(spaced) is None  # its own command, quoted, in the batch
    for path in ("~/x", "relative", "/a'b", "/a\nb", "/a;b", "/$HOME"):
        assert shared_facts.shared_for(FactCall("pyinfra.facts.files:File", {"path": path}, {})) is None, path
    assert shared_facts.shared_for(FactCall("pyinfra.facts.files:FindInFile",
                                            {"path": "/etc/x", "pattern": "a"}, {})) is None


def test_stat_output_nobody_asked_for_is_not_used() -> None:
    stats = shared_facts.FileStats()
    keys = ["/etc/a", "/etc/b"]
    good = ["+/etc/a user=root group=root mode=-rw-r--r-- atime=1 mtime=1 ctime=1 size=1 '/etc/a'", "-/etc/b"]
    assert stats.split(good, keys) == {"/etc/a": [good[0][len("+/etc/a "):]], "/etc/b": []}
    assert stats.split([*good, "+/etc/c user=root"], keys) is None  # a path nobody asked for
    assert stats.split([*good, "-/etc/a"], keys) is None  # both present and absent
    assert stats.split(["stat: cannot statx"], keys) is None
    # a path stat printed nothing for and the shell did not find absent: its own command decides
    call = FactCall("pyinfra.facts.files:File", {"path": "/etc/b"}, {})
    assert stats.lines(call, ["/etc/b"], stats.split(good[:1], keys)) is None


def test_hash_output_nobody_asked_for_is_not_used() -> None:
    hashes = shared_facts.FileHashes("pyinfra.facts.files:Sha1File", "sha1")
    keys = ["/etc/a", "/etc/b"]
    line = "da39a3ee5e6b4b0d3255bfef95601890afd80709  /etc/a"
    assert hashes.split([line, "-/etc/b"], keys) == {"/etc/a": [line], "/etc/b": []}
    assert hashes.split([line, "da39a3ee5e6b4b0d3255bfef95601890afd80709  /etc/c"], keys) is None
    assert hashes.split([line, "-/etc/a"], keys) is None
    assert hashes.split(["sha1sum: /etc/a: Is a directory"], keys) is None


def test_a_directory_asked_for_a_hash_runs_its_own_command(tree: dict[str, str]) -> None:
    """sha1sum prints nothing for a directory, and the shell does not list it as absent: not
    answered by the shared command (pyinfra's own command, which also tries shasum, decides)."""
    call = FactCall("pyinfra.facts.files:Sha1File", {"path": tree["dir"]}, {})
    hashes = shared_facts.FileHashes("pyinfra.facts.files:Sha1File", "sha1")
    proc = subprocess.run(["sh", "-c", hashes.command([tree["dir"]]).get_raw_value()], capture_output=True,
                          check=False)
    parts = hashes.split(split_lines(proc.stdout), [tree["dir"]])
    assert parts == {} and hashes.lines(call, [tree["dir"]], parts) is None


def test_a_missing_hash_program_fails_the_shared_command(tmp_path: Path) -> None:
    """Where sha256sum is missing, every fact runs its own command (which tries shasum and sha256)."""
    hashes = shared_facts.FileHashes("pyinfra.facts.files:Sha256File", "sha256")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "test", "echo"):
        target = subprocess.run(["sh", "-c", f"command -v {tool} || true"], capture_output=True, text=True,
                                check=False).stdout.strip()
        if target.startswith("/"):
            (bin_dir / tool).symlink_to(target)
    proc = subprocess.run(["/bin/sh", "-c", hashes.command(["/etc/hostname"]).get_raw_value()],
                          capture_output=True, check=False, env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode != 0 and proc.stdout == b""
