"""Facts answered together in a batch (iac/pyinfra_ext/shared_facts.py): the same value as each fact's own command.

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
from pyinfra.api import FactBase
from pyinfra.api import facts as pyinfra_facts
from pyinfra.api.command import StringCommand

from iac.pyinfra_ext import fact_batch, fact_calls, shared_facts
from iac.pyinfra_ext.fact_batch import FactCall, split_lines

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


def own_command(call: FactCall) -> str:
    """The text of the fact's own command (what the batch passes to ``shared_for``)."""
    command = pyinfra_facts._make_command(fact_calls.fact_class(call.fact)().command, dict(call.kwargs))
    return command if isinstance(command, str) else command.get_raw_value()


def shared_for(call: FactCall):  # noqa: ANN201
    """The shared command for this call, as the batch finds it."""
    return shared_facts.shared_for(call, own_command(call))


def own_value(call: FactCall):  # noqa: ANN201
    """The value pyinfra's own command and process() give, run here."""
    fact = fact_calls.fact_class(call.fact)()
    command = pyinfra_facts._make_command(fact.command, dict(call.kwargs))
    raw = command if isinstance(command, str) else command.get_raw_value()
    proc = subprocess.run(["sh", "-c", raw], capture_output=True, check=False)
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
        assert shared_for(call) is not None, f"{name}: pyinfra's command changed; update shared_facts"


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
    assert shared_for(spaced) is None  # its own command, quoted, in the batch
    for path in ("~/x", "relative", "/a'b", "/a\nb", "/a;b", "/$HOME"):
        assert shared_for(FactCall("pyinfra.facts.files:File", {"path": path}, {})) is None, path
    assert shared_for(FactCall("pyinfra.facts.files:FindInFile",
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


# -- host engines' read-only commands: one python3 for all -------------------------------------------

ENGINE_SOURCE = '''
import os, subprocess, sys

def main(argv=None):
    kind, arg = sys.argv[1:] if argv is None else argv
    if kind == "print":
        print("line one")
        print(arg, end="")  # no final newline
        return 0
    if kind == "child":  # a child process writing to the same stdout
        sys.stdout.flush()
        subprocess.run(["echo", "from a child"], check=True)
        print("after")
        return 0
    if kind == "fail":
        print("partial")
        print("oops", file=sys.stderr)
        return 3
    if kind == "raise":
        print("before the exception")
        raise RuntimeError("boom")
    if kind == "exit":
        sys.exit(int(arg) if arg.isdigit() else arg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


class FakeEngineFact(FactBase):
    """A fact an engine answers (test only): its own command is its EngineCall's shell()."""

    @staticmethod
    def engine_call(engine: str, kind: str, arg: str, tolerate: bool = False) -> shared_facts.EngineCall:
        return shared_facts.EngineCall(engine, [kind, arg], otherwise="not installed", tolerate_failure=tolerate)

    def command(self, engine: str, kind: str, arg: str, tolerate: bool = False) -> str:
        return self.engine_call(engine, kind, arg, tolerate).shell()

    def process(self, output: list[str]) -> list[str]:
        return output


def test_our_engine_facts_are_answered_together() -> None:
    from operations.app.facts import ReleaseDamage
    from operations.app.release import RELEASE_ENGINE
    from operations.backups.deploy import ENGINE, ResticRepositoryState

    for cls, kwargs in ((ReleaseDamage, {"engine": RELEASE_ENGINE, "app": "shop"}),
                        (ResticRepositoryState, {"env_file": "/etc/gts/backup/restic.env"})):
        found = shared_for(FactCall(fact_calls.fact_path(cls), kwargs, {}))
        assert found is not None and isinstance(found[0], shared_facts.EngineCalls), cls
    assert ENGINE in ResticRepositoryState().command(env_file="/etc/x.env")


def test_the_baseline_check_runs_beside_the_other_engine_calls_not_after_them() -> None:
    """The whole host's check is the batch's longest job: its own python3 (a background job of the
    one batch command), never queued in the shared runner behind the other engines' calls."""
    from operations.baseline.deploy import BaselineFindings

    call = FactCall(fact_calls.fact_path(BaselineFindings), {"settings": '{"host": "h"}'}, {})
    assert shared_for(call) is None
    assert BaselineFindings().command(settings='{"host": "h"}').startswith("if ")


def test_every_engine_call_gets_what_its_own_python3_prints(tmp_path: Path) -> None:
    """Output with and without a final newline, a child's output, a failure (tolerated or not),
    an exception, sys.exit with a code and with a message, a missing engine: each fact's value
    from the one shared python3 equals its own command's, run in sh."""
    engine = tmp_path / "engine.py"
    engine.write_text(ENGINE_SOURCE)
    fact = fact_calls.fact_path(FakeEngineFact)
    cases = [{"kind": "print", "arg": "x y $(id)"}, {"kind": "child", "arg": ""},
             {"kind": "fail", "arg": "", "tolerate": True}, {"kind": "raise", "arg": "", "tolerate": True},
             {"kind": "exit", "arg": "0"}, {"kind": "exit", "arg": "256"},  # python3 exits 0 for 256
             {"kind": "exit", "arg": "why", "tolerate": True}]
    calls = [FactCall(fact, {"engine": str(engine), **case}, {}) for case in cases]
    calls.append(FactCall(fact, {"engine": str(tmp_path / "absent.py"), "kind": "print", "arg": "a"}, {}))
    failing = [FactCall(fact, {"engine": str(engine), "kind": kind, "arg": "", "tolerate": False}, {})
               for kind in ("fail", "raise")]
    host = LocalHost()
    values = fact_batch.gather(None, host, calls + failing)
    assert len(host.commands) == 1 and "engine.py" in host.commands[0]
    for call in calls:
        assert call.key in values, call.kwargs
        assert values[call.key] == own_value(call), call.kwargs
    assert values[calls[0].key] == ["line one", "x y $(id)"]
    assert values[calls[1].key] == ["from a child", "after"]
    assert values[calls[-1].key] == ["not installed"]
    # an engine failing where the fact does not tolerate it: its own command runs (and fails)
    assert not any(call.key in values for call in failing)


def test_engine_runner_output_that_is_not_one_frame_per_call_is_not_used() -> None:
    runner = shared_facts.EngineCalls()
    keys = ['[{"argv": ["a"]}, false]', '[{"argv": ["b"]}, true]']
    assert runner.split(["0 0 eA==", "1 5 eQ=="], keys) == {keys[0]: ["x"], keys[1]: ["y"]}
    assert runner.split(["0 0 eA==", "0 0 eA=="], keys) is None  # twice
    assert runner.split(["2 0 eA=="], keys) is None  # nobody asked
    assert runner.split(["0 0 not-base64!"], keys) is None
    assert runner.split(["Traceback (most recent call last):"], keys) is None
    assert runner.split(["0 1 eA=="], keys) == {}  # failed, not tolerated: its own command decides


def test_a_shared_command_that_cannot_be_read_costs_only_its_own_facts(tree: dict[str, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception while reading a shared command's output loses only the facts it answers (each
    is then fetched on its own), never the rest of the batch or the run."""
    def broken(self, lines, keys):  # noqa: ANN001, ANN202
        raise RuntimeError("unreadable")

    monkeypatch.setattr(shared_facts.FileStats, "split", broken)
    calls = [FactCall("pyinfra.facts.files:File", {"path": tree["file.conf"]}, {}),
             FactCall("pyinfra.facts.server:Hostname", {}, {})]
    values = fact_batch.gather(None, LocalHost(), calls)
    assert calls[0].key not in values and calls[1].key in values
