"""The pyinfra extension layer's one install() (iac/pyinfra_ext/__init__.py), without a host.

What it replaces in pyinfra is found by comparing every attribute of every loaded pyinfra module
(and of the classes they define) before and after: on the tested pyinfra exactly ``PATCHES``
changes; on another version, with the switch off or with a symbol missing, nothing does. Through
the patched path, pyinfra's own API (``host.get_fact`` on the ``@local`` connector, operations
declared in a CLI-mode state) gives the same facts, operation order, hashes and arguments as
pyinfra's own code.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyinfra
import pyinfra_cli.main  # noqa: F401 (loads pyinfra's CLI modules: they are compared too)
import pytest
from pyinfra.api import Config, Inventory, State, deploy, operation
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import Directory, File, Sha256File
from pyinfra.facts.server import Hostname, Users
from pyinfra.operations import server

from iac import pyinfra_ext
from iac.guarded import Sha256Files
from iac.pyinfra_ext import fact_batch, fast_prepare, host_users, plan_report

RUN_TARGETS = {p.target for p in pyinfra_ext.PATCHES if p.part in pyinfra_ext.RUN_PARTS}
REPORT_TARGETS = {p.target for p in pyinfra_ext.PATCHES if p.part in pyinfra_ext.REPORT_PARTS}
# on whatever the switch says: the sudo password's way on stdin
SAFETY_TARGETS = {p.target for p in pyinfra_ext.PATCHES if p.part in pyinfra_ext.SAFETY_PARTS}
OUTSIDE = "is outside the range this extension was tested with (3.10.x): running on pyinfra's own code paths " \
          "(slower, same answers)"


@pytest.fixture(autouse=True)
def pristine(monkeypatch: pytest.MonkeyPatch):
    """Each test starts from pyinfra's own code and leaves it so; every message may be said again."""
    for name in ("IAC_PYINFRA_EXT", "IAC_FACT_BATCH"):
        monkeypatch.delenv(name, raising=False)
    # every module an install imports is loaded before a test compares symbols (run alone, a test
    # would otherwise see the modules its own install loads as changes)
    pyinfra_ext.install(report=True)
    pyinfra_ext.uninstall()
    monkeypatch.setattr(pyinfra_ext, "_SAID", set())
    yield
    pyinfra_ext.uninstall()


def pyinfra_symbols() -> dict[str, int]:
    """``module:name`` and ``module:Class.name`` -> the identity of what is there, for every loaded
    pyinfra module and every class it defines."""
    found: dict[str, int] = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("pyinfra", "pyinfra_cli") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            found[f"{name}:{attr}"] = id(value)
            if inspect.isclass(value) and value.__module__ == name:
                for cls_attr, cls_value in list(vars(value).items()):
                    found[f"{name}:{attr}.{cls_attr}"] = id(cls_value)
    return found


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def pyinfra_version(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version if name == "pyinfra" else real(name))


# -- (a) another pyinfra: nothing is installed, and that is said once --------------------------------


@pytest.mark.parametrize("version", ["3.11.0", "3.9.0", "4.0.0", "3.10.0rc1", "not a version"])
@pytest.mark.parametrize("report", [False, True])
def test_outside_the_tested_range_nothing_is_patched_and_a_warning_says_so_once(version, report, monkeypatch,
                                                                                 caplog) -> None:
    pyinfra_version(monkeypatch, version)
    before = pyinfra_symbols()
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        pyinfra_ext.install(report=report)
        pyinfra_ext.install(report=report)  # deploy.py runs it once per host: still said once
    assert changed(before, pyinfra_symbols()) == set()
    assert pyinfra_ext.installed() == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, f"pyinfra {version} {OUTSIDE}")]
    assert not any(isinstance(h, plan_report.DiffCapture) for h in logging.getLogger("pyinfra").handlers)


def test_the_tested_range_is_one_minor_series() -> None:
    assert pyinfra_ext.TESTED_RANGE == ">=3.10,<3.11" and pyinfra_ext.TESTED_LABEL == "3.10.x"
    assert [v for v in ("3.10", "3.10.0", "3.10.7", "3.10.12.post1") if not pyinfra_ext.tested(v)] == []
    assert [v for v in ("3.9.9", "3.11.0", "3.11.0rc1", "3.10.0rc1", "4.0", "", "x") if pyinfra_ext.tested(v)] == []
    assert pyinfra_ext.tested(importlib.metadata.version("pyinfra")), "requirements.txt pins a tested pyinfra"


@pytest.mark.parametrize(("target", "use"), [
    ("pyinfra.api.deploy:pop_global_arguments", "replaces"),
    ("pyinfra.api.facts:_MISSING_COMMAND_MARKER", "reads"),
    ("pyinfra.api.state:State.get_op_data_for_host", "reads"),
])
def test_a_missing_pyinfra_symbol_installs_nothing_and_is_named(target, use, monkeypatch, caplog) -> None:
    module, _, name = target.partition(":")
    owner: Any = importlib.import_module(module)
    *path, last = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.delattr(owner, last)
    before = pyinfra_symbols()
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        pyinfra_ext.install(report=True)
    assert changed(before, pyinfra_symbols()) == set()
    [message] = [r.getMessage() for r in caplog.records]
    shown = target.replace(":", ".")
    assert f"has no {shown}, which this extension {use}: running on pyinfra's own code paths" in message


# -- (b) switched off: pyinfra's own code paths -------------------------------------------------------


@pytest.mark.parametrize("switch", ["IAC_PYINFRA_EXT", "IAC_FACT_BATCH"])
def test_switched_off_only_the_sudo_password_path_is_patched(switch, monkeypatch, caplog) -> None:
    monkeypatch.setenv(switch, "off")
    before = pyinfra_symbols()
    with caplog.at_level(logging.INFO, logger="pyinfra"):
        pyinfra_ext.install()
    assert changed(before, pyinfra_symbols()) == SAFETY_TARGETS
    assert {"pyinfra.connectors.ssh:SSHConnector.run_shell_command"} == SAFETY_TARGETS
    assert not fact_batch.enabled()
    assert [r.getMessage() for r in caplog.records] == [f"{switch}=off: running on pyinfra's own code paths "
                                                        "(slower, same answers)"]


def test_switched_off_the_plan_runner_keeps_only_its_report_hooks(monkeypatch) -> None:
    """The report hooks wrap pyinfra's own functions and only add to the plan: a plan made with
    the switch off is compared with one made with it on (tests/integration/test_fact_batch.py)."""
    monkeypatch.setenv("IAC_PYINFRA_EXT", "off")
    before = pyinfra_symbols()
    pyinfra_ext.install(report=True)
    assert changed(before, pyinfra_symbols()) == REPORT_TARGETS | SAFETY_TARGETS


@pytest.mark.parametrize(("code", "status"), [(0, 0), (2, 2), (None, 0), ("failed: see above", 1)])
def test_exit_now_ends_as_sys_exit_would_without_the_teardown(tmp_path, code, status) -> None:
    """iac/exits.py, how the plan runner and the read-only checks end: every atexit handler runs
    (the fact records are written in one), buffered output still arrives, the status is sys.exit's."""
    marker = tmp_path / "records"
    program = (f"import atexit, pathlib, sys; from iac.exits import exit_now; "
               f"atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text('written')); "
               f"sys.stdout.write('plan without a newline'); exit_now({code!r})")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=False,
                         cwd=Path(__file__).resolve().parents[2])
    assert (run.returncode, run.stdout, marker.read_text()) == (status, "plan without a newline", "written")
    assert run.stderr == (f"{code}\n" if isinstance(code, str) else "")


# -- (c) the tested pyinfra: exactly the declared symbols, once ---------------------------------------


def test_every_declared_symbol_exists_in_this_pyinfra_and_each_replacement_in_this_package() -> None:
    assert pyinfra_ext._missing(pyinfra_ext.RUN_PARTS + pyinfra_ext.SAFETY_PARTS + pyinfra_ext.REPORT_PARTS) is None
    assert len({p.target for p in pyinfra_ext.PATCHES}) == len(pyinfra_ext.PATCHES)
    for patch in pyinfra_ext.PATCHES:
        assert callable(getattr(importlib.import_module(f"iac.pyinfra_ext.{patch.supplier}"), patch.attribute))


def test_install_patches_exactly_the_declared_symbols_and_is_idempotent() -> None:
    from pyinfra.api.host import Host

    own_run_shell_command = Host.run_shell_command
    before = pyinfra_symbols()
    pyinfra_ext.install()
    after = pyinfra_symbols()
    assert changed(before, after) == RUN_TARGETS | SAFETY_TARGETS
    assert set(pyinfra_ext.installed()) == RUN_TARGETS | SAFETY_TARGETS
    pyinfra_ext.install()  # once per host in a run
    assert changed(after, pyinfra_symbols()) == set()
    assert Host.run_shell_command.__wrapped__ is own_run_shell_command  # wrapped once, not twice
    # the plan runner: the report hooks on top, once
    pyinfra_ext.install(report=True)
    with_report = pyinfra_symbols()
    assert changed(after, with_report) == REPORT_TARGETS
    pyinfra_ext.install(report=True)
    pyinfra_ext.install()
    assert changed(with_report, pyinfra_symbols()) == set()
    assert sum(isinstance(h, plan_report.DiffCapture) for h in logging.getLogger("pyinfra").handlers) == 1
    # and back
    pyinfra_ext.uninstall()
    assert changed(before, pyinfra_symbols()) == set()


def test_each_symbol_gets_its_declared_replacement() -> None:
    from pyinfra.api import facts
    from pyinfra.api.host import Host
    from pyinfra_cli import prints

    pyinfra_ext.install(report=True)
    assert facts._get_fact is fact_batch._get_fact
    # (the module: pyinfra.api exports the decorator under the same name)
    assert importlib.import_module("pyinfra.api.operation").get_operation_order_from_stack is \
        fast_prepare.operation_order_from_stack
    for module in ("arguments", "operation", "facts", "deploy"):
        assert importlib.import_module(f"pyinfra.api.{module}").pop_global_arguments is \
            fast_prepare.pop_global_arguments, module
    assert importlib.import_module("pyinfra.api.arguments").all_global_arguments is fast_prepare.all_global_arguments
    for method in (Host.put_file, Host.run_shell_command):
        assert method.__code__ is fact_batch._changes_host(lambda: None).__code__, method
    assert Host.noop.__wrapped__.__module__ == "pyinfra.api.host"
    assert prints.build_plan_json.__wrapped__.__module__ == "pyinfra_cli.prints"


SNAPSHOT = inspect.getsource(pyinfra_symbols)


def test_importing_the_repository_patches_nothing_only_install_does() -> None:
    """Every module of the layer and of what deploy.py imports, imported in a fresh interpreter:
    no pyinfra symbol changes (a module that patched pyinfra on import, as the plan runner once
    did, would bypass install()'s checks)."""
    repo = Path(__file__).resolve().parents[2]
    modules = sorted(".".join(p.relative_to(repo).with_suffix("").parts).removesuffix(".__init__")
                     for top in ("iac", "operations", "stack") for p in (repo / top).rglob("*.py"))
    script = "\n".join([
        "import importlib, inspect, json, sys",
        "import pyinfra.api, pyinfra.api.host, pyinfra.api.facts, pyinfra.api.deploy, pyinfra_cli.main",
        SNAPSHOT,
        "before = pyinfra_symbols()",
        f"for name in {modules!r}: importlib.import_module(name)",
        "after = pyinfra_symbols()",
        "print(json.dumps(sorted(k for k in before if before[k] != after.get(k))))",
    ])
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == []
    assert "iac.pyinfra_ext.plan_runner" in modules and len(modules) > 30
    deploy = (repo / "deploy.py").read_text()
    assert "pyinfra_ext.install()" in deploy and "fact_batch.install" not in deploy


# -- (d) facts through the patched path equal pyinfra's own -------------------------------------------


def local_host(deploy_file: str = "deploy.py") -> Any:
    """The ``@local`` host of a fresh pyinfra state, connected, as while pyinfra prepares a deploy file."""
    inventory = Inventory((["@local"], {}))
    state = State(inventory, Config())
    state.current_deploy_filename = deploy_file
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host("@local")
    state.activate_host(host)
    host.connect()
    return host


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "stat").mkdir()
    (tmp_path / "hash").mkdir()
    paths = {"file": tmp_path / "stat/file", "dir": tmp_path / "stat/dir", "missing": tmp_path / "stat/missing",
             "a": tmp_path / "hash/a", "b": tmp_path / "hash/b", "gone": tmp_path / "hash/gone"}
    paths["file"].write_text("x\n")
    paths["dir"].mkdir()
    paths["a"].write_text("alpha\n")
    paths["b"].write_bytes(b"\x00beta")
    return paths


def fact_values(host: Any, files: dict[str, Path]) -> dict[str, Any]:
    """A few real facts through pyinfra's own API (stats and hashes read different files: a hash
    read may move a file's atime, which a stat reports)."""
    return {
        "file": host.get_fact(File, path=str(files["file"])),
        "dir as file": host.get_fact(File, path=str(files["dir"])),
        "missing file": host.get_fact(File, path=str(files["missing"])),
        "dir": host.get_fact(Directory, path=str(files["dir"])),
        "file as dir": host.get_fact(Directory, path=str(files["file"])),
        "missing dir": host.get_fact(Directory, path=str(files["missing"])),
        "sha256": host.get_fact(Sha256File, path=str(files["a"])),
        "sha256 missing": host.get_fact(Sha256File, path=str(files["gone"])),
        "sha256 files": host.get_fact(Sha256Files, paths=(str(files["a"]), str(files["b"]), str(files["gone"]))),
        "users": host.get_fact(Users),
        "hostname": host.get_fact(Hostname),
    }


def test_facts_through_the_patched_path_equal_pyinfras_own(files, tmp_path, monkeypatch) -> None:
    from pyinfra.connectors.local import LocalConnector

    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path / "records")
    monkeypatch.setattr(fact_batch.atexit, "register", lambda *_: None)  # records are written below
    commands: list[str] = []
    run = LocalConnector.run_shell_command
    monkeypatch.setattr(LocalConnector, "run_shell_command",
                        lambda self, command, **kw: commands.append(str(command)) or run(self, command, **kw))

    own = fact_values(local_host(), files)  # pyinfra's own _get_fact: one command per fact
    assert len(commands) == len(own)
    assert own["file"]["size"] == 2 and own["missing file"] is None and own["dir as file"] is False
    assert own["dir"] and own["file as dir"] is False and own["missing dir"] is None
    assert set(own["sha256 files"]) == {str(files["a"]), str(files["b"])}
    assert own["sha256 files"][str(files["a"])] == own["sha256"]
    assert "root" in own["users"]

    pyinfra_ext.install()
    first = local_host()
    commands.clear()
    assert fact_values(first, files) == own  # a first run: each fact fetched on its own, then recorded
    assert len(commands) == len(own)
    assert fact_values(first, files) == own and len(commands) == len(own)  # asked again: from the cache
    fact_batch._write_records(first.state)
    assert fact_batch.record_file(first, "deploy.py").exists()

    second = local_host()
    commands.clear()
    assert fact_values(second, files) == own  # the next run: from the batch of what the first asked for
    # one batch command per sudo/user setting (here one) answers every fact; Users too where
    # host_users.py is sure of its answer here (else pyinfra's own loop runs after the batch)
    users_in_batch = subprocess.run([sys.executable, host_users.__file__], capture_output=True,
                                    check=False).returncode == 0
    assert len(commands) == (1 if users_in_batch else 2), commands
    entry = second.state._iac_fact_batch["@local"]
    assert set(entry.asked) <= set(entry.values)


def test_a_fact_value_from_the_cache_is_a_copy_an_operation_cannot_change(files, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path / "records")
    monkeypatch.setattr(fact_batch.atexit, "register", lambda *_: None)
    pyinfra_ext.install()
    host = local_host()
    host.get_fact(Sha256Files, paths=(str(files["a"]),))[str(files["a"])] = "changed"
    assert host.get_fact(Sha256Files, paths=(str(files["a"]),)) == local_own_sha256s(files)


def local_own_sha256s(files: dict[str, Path]) -> dict[str, str]:
    pyinfra_ext.uninstall()
    try:
        return local_host().get_fact(Sha256Files, paths=(str(files["a"]),))
    finally:
        pyinfra_ext.install()


# -- (e) operation order, hashes and arguments through the patched path equal pyinfra's own ----------


@operation()
def probe(path: str):
    """An operation that asks for a fact while it decides, as this repo's do."""
    if not host_now().get_fact(File, path=path):
        yield f"touch {path}"
    else:
        host_now().noop(f"{path} is there")


def host_now() -> Any:
    from pyinfra import host

    return host


@deploy("Probes")
def probes(paths: list[str]) -> None:
    for path in paths:
        probe(name=f"probe {path}", path=path)


def declare(paths: list[str]) -> None:
    """Operations declared at several depths, in a loop and inside an @deploy, with global arguments
    from the call, the deploy and the host's data layers."""
    server.shell(name="plain", commands=["true"])
    server.shell(name="with arguments", commands=["true"], _sudo=True, _retries=3, _env={"B": "2"}, _timeout=9)
    for index, path in enumerate(paths):
        server.shell(name=f"loop {index}", commands=[f"test -e {path}"], _ignore_errors=index % 2 == 0)
    nested(paths, 2)
    probes(paths, _sudo_user="deployer")
    probes(paths[:1])


def nested(paths: list[str], depth: int) -> None:
    if depth:
        nested(paths, depth - 1)
        return
    probe(name="nested probe", path=paths[0], _chdir="/tmp")


def declared_state(paths: list[str], layers: int) -> Any:
    """A CLI-mode pyinfra state after ``declare(paths)`` on its ``@local`` host, with data at
    host, group and all levels (the first ``layers`` of them)."""
    host_data = {"_sudo_user": "host level", "_retries": 2, "_env": {"H": "1"}}
    # (no _sudo from the data: the probes' facts run here, where there is no sudo)
    groups = {"web": (["@local"], {"_preserve_sudo_env": True, "_env": {"W": "1"}, "_timeout": 30}),
              "db": (["@local"], {"_sudo_user": "db group", "_success_exit_codes": [0, 3]})}
    all_data = {"_sudo_user": "all level", "_temp_dir": "/var/tmp"}
    inventory = Inventory(([("@local", host_data if layers > 0 else {})], all_data if layers > 2 else {}),
                          **(groups if layers > 1 else {}))
    state = State(inventory, Config())
    state.current_deploy_filename = __file__
    state.current_op_file_number = 4
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host("@local")
    state.activate_host(host)
    host.connect()
    with ctx_state.use(state), ctx_host.use(host):
        declare(paths)
    return state


def plan(paths: list[str], layers: int) -> list[tuple]:
    """What pyinfra's CLI would keep of these operations on the ``@local`` host with data at host,
    group and all levels (the first ``layers`` of them): its operation hashes in order, each
    operation's order, names and global arguments (``_if`` aside: callables), and whether it
    would change."""
    state = declared_state(paths, layers)
    host = state.inventory.get_host("@local")
    return [(op_hash, state.op_meta[op_hash].op_order, sorted(state.op_meta[op_hash].names),
             {k: v for k, v in state.get_op_data_for_host(host, op_hash).global_arguments.items() if k != "_if"},
             state.get_op_data_for_host(host, op_hash).operation_meta._maybe_is_change)
            for op_hash in host.op_hash_order]


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
def test_operation_order_hashes_and_arguments_through_the_patched_path_equal_pyinfras_own(layers, files, tmp_path,
                                                                                       monkeypatch) -> None:
    monkeypatch.setattr(pyinfra, "is_cli", True)  # operation order from the call stack, as in pyinfra's CLI
    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path / "records")
    monkeypatch.setattr(fact_batch.atexit, "register", lambda *_: None)
    paths = [str(files["file"]), str(files["missing"]), str(files["dir"])]
    runs = []
    for patched in (False, True):  # one call site: the order is the line numbers of the calls
        if patched:
            pyinfra_ext.install()
            assert set(pyinfra_ext.installed()) == RUN_TARGETS | SAFETY_TARGETS
        runs.append(plan(paths, layers))
    own, through_the_layer = runs
    assert len(own) == 10 and len({op[0] for op in own}) == 10
    assert [op[4] for op in own if op[2] == ["Probes | probe " + paths[1]]] == [True]
    assert [op[4] for op in own if op[2] == ["Probes | probe " + paths[0]]] == [False, False]
    assert through_the_layer == own


def test_the_plan_runners_report_names_each_operation_per_host_and_keeps_what_it_said(files, tmp_path,
                                                                                      monkeypatch) -> None:
    from pyinfra_cli import prints

    monkeypatch.setattr(pyinfra, "is_cli", True)
    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path / "records")
    monkeypatch.setattr(fact_batch.atexit, "register", lambda *_: None)
    monkeypatch.setattr(plan_report, "DETAILS", {})
    pyinfra_ext.install(report=True)
    paths = [str(files["file"]), str(files["missing"]), str(files["dir"])]
    entries = {entry["name"]: entry for entry in prints.build_plan_json(declared_state(paths, 1))}
    assert entries["with arguments"]["host_names"] == {"@local": "with arguments"}
    there = entries[f"Probes | probe {paths[0]}"]
    assert there["host_details"] == {"@local": [f"{paths[0]} is there"]} and there["hosts_with_change"] == []
    missing = entries[f"Probes | probe {paths[1]}"]
    assert missing["host_details"] == {} and missing["hosts_with_change"] == ["@local"]


def test_the_drift_gate_passes_the_layers_warning_on(capsys) -> None:
    """The plan runs in a pyinfra process whose log the drift gate keeps to itself: the warning
    that the layer is not in place reaches the gate's own stderr."""
    from cli.drift import finish_plan

    warning = f"pyinfra 3.11.0 {OUTSIDE}"
    script = f"import sys; print('{{}}'); print({warning!r}, file=sys.stderr); print('noise', file=sys.stderr)"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    code, data, _ = finish_plan(proc)
    assert (code, data) == (0, {})
    assert capsys.readouterr().err == f"warning: {warning}\n"
