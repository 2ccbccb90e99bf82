"""Batched facts (iac/pyinfra_ext/fact_batch.py) and the cheap pyinfra helpers
(iac/pyinfra_ext/fast_prepare.py), without a host; installing them: tests/unit/test_pyinfra_ext.py.

The batch's framing is checked by running it in a real ``sh`` here: every fact command must come
back with exactly the lines and exit status it gives when run on its own, whatever it prints.
"""

from __future__ import annotations

import json
import logging
import subprocess
import types
from pathlib import Path

import pytest
from pyinfra.api import FactBase, arguments
from pyinfra.api import util as pyinfra_util
from pyinfra.api.command import MaskString, StringCommand
from pyinfra.facts.files import File
from pyinfra.facts.server import Hostname

from iac.pyinfra_ext import fact_batch, fact_calls, fast_prepare
from iac.pyinfra_ext.fact_batch import FactCall, batch_script, parse_batch, split_lines
from iac.pyinfra_ext.shared_facts import SystemdUnits

SYSTEMD = SystemdUnits()

HOSTILE_COMMANDS = [
    "printf 'a\\nb\\n'",                      # ordinary lines
    "printf 'no final newline'",               # a last line without newline
    "true",                                    # no output at all
    "printf '\\n\\nx\\n\\n'",                  # blank lines around
    "echo partial; exit 3",                    # a failing fact keeps its status
    "echo '@@0000 0 QUJD'; echo '@@ 1 x'",     # output that looks like a frame
    "printf 'caf\\303\\251 \\342\\234\\223\\n'",  # UTF-8
    "echo to-stderr >&2; echo out",            # stderr is not output
    "exit 0; echo never",                      # exit inside the fact's own subshell
    "cat",                                     # reads stdin: gets nothing, does not hang
    "seq 1 20000",                             # a large output (like dpkg -l)
]


def alone(command: str) -> tuple[int, list[str]]:
    """A command run on its own, its stdout split into lines the way pyinfra reads them."""
    proc = subprocess.run(["sh", "-c", command], capture_output=True, stdin=subprocess.DEVNULL, check=False)
    return proc.returncode, split_lines(proc.stdout)


@pytest.mark.parametrize("encoder", ["python3", "shell loop (a bare host)"])
def test_each_fact_comes_back_from_the_batch_exactly_as_when_run_alone(encoder: str) -> None:
    nonce = "0123456789abcdef"
    script = batch_script(HOSTILE_COMMANDS, nonce).get_raw_value()
    if encoder != "python3":
        script = script.replace("command -v python3", "command -v no-such-python3-here")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, stdin=subprocess.DEVNULL, check=True)
    results = parse_batch(split_lines(proc.stdout), nonce, len(HOSTILE_COMMANDS))
    assert sorted(results) == list(range(len(HOSTILE_COMMANDS)))
    for index, command in enumerate(HOSTILE_COMMANDS):
        assert results[index] == alone(command), command


def test_the_batch_cleans_up_its_temporary_directory(tmp_path) -> None:
    script = batch_script(["echo $d > " + str(tmp_path / "where")], "n").get_raw_value()
    subprocess.run(["sh", "-c", script], capture_output=True, check=True)
    used = (tmp_path / "where").read_text().strip()
    assert used.startswith("/tmp/") and not Path(used).exists()


def test_frames_of_another_run_or_damaged_frames_are_ignored() -> None:
    lines = ["@@other 0 YQoww", "@@mine 0 not-base64!", "@@mine 7 YQow", "@@mine 1 YQow", "noise"]
    assert parse_batch(lines, "mine", 2) == {1: (0, ["a"])}  # base64 "a\n0": line "a", status 0


def test_a_call_is_keyed_by_fact_arguments_and_how_it_runs() -> None:
    plain = FactCall.describe(File, {"self": object(), "path": "/etc/hosts"}, {"_sudo": True})
    assert plain is not None and plain.fact == "pyinfra.facts.files:File"
    assert plain.kwargs == {"path": "/etc/hosts"} and plain.executor == {"_sudo": True}
    assert plain.key != FactCall.describe(File, {"path": "/etc/hosts"}, {}).key  # sudo or not differ
    # a tuple and a list key alike (a record is JSON)
    assert (FactCall.describe(File, {"path": ("a", "b")}, {}).key
            == FactCall.describe(File, {"path": ["a", "b"]}, {}).key)
    assert fact_calls.fact_class(plain.fact) is File


@pytest.mark.parametrize(("kwargs", "executor"), [
    ({"path": MaskString("hidden")}, {}),          # a masked (secret) argument
    ({"path": "/x"}, {"_sudo_password": "pw"}),     # a sudo password
    ({"path": "/x"}, {"_env": {"TOKEN": "t"}}),     # an environment
    ({"path": object()}, {}),                       # not JSON
])
def test_calls_that_could_carry_a_secret_or_cannot_be_keyed_are_fetched_as_pyinfra_does(kwargs, executor) -> None:
    assert FactCall.describe(File, kwargs, executor) is None


def test_secret_named_arguments_are_never_recorded() -> None:
    assert not FactCall("m:F", {"path": "/x", "salt": "s3cr3t"}, {}).recordable
    assert not FactCall("m:F", {"psql_password": "pw"}, {}).recordable
    assert FactCall("m:F", {"psql_password": None, "psql_user": None}, {}).recordable


def test_records_round_trip_age_out_and_a_damaged_record_is_empty(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path)
    host = types.SimpleNamespace(name="web1", data={"ssh_hostname": "10.0.0.5", "ssh_port": 2222})
    hosts_file = FactCall("pyinfra.facts.files:File", {"path": "/etc/hosts"}, {})
    secret = FactCall("m:F", {"salt": "never-stored"}, {})
    fact_batch.write_record(host, "deploy.py", [hosts_file, secret], {})
    assert fact_batch.record_file(host, "deploy.py").name == "web1@10.0.0.5:2222.deploy.json"
    assert fact_batch.read_record(host, "deploy.py") == {hosts_file.key: (hosts_file, 0)}
    assert "never-stored" not in fact_batch.record_file(host, "deploy.py").read_text()
    # another deploy file has its own record
    assert fact_batch.read_record(host, "deploy_keys.py") == {}
    # a run that asks for less keeps the rest for STALE_AFTER runs, then drops it
    other = FactCall("pyinfra.facts.files:File", {"path": "/etc/motd"}, {})
    for run in range(1, fact_batch.STALE_AFTER + 1):
        fact_batch.write_record(host, "deploy.py", [other], fact_batch.read_record(host, "deploy.py"))
        kept = fact_batch.read_record(host, "deploy.py")
        assert (hosts_file.key in kept) == (run < fact_batch.STALE_AFTER), run
        assert kept[other.key] == (other, 0)
    # a failed or cut-short run (age=False) ages nothing: what it did not reach is kept as it was
    fact_batch.write_record(host, "deploy.py", [hosts_file], {other.key: (other, 1)}, age=False)
    assert fact_batch.read_record(host, "deploy.py")[other.key] == (other, 1)
    fact_batch.record_file(host, "deploy.py").write_text("{not json")
    assert fact_batch.read_record(host, "deploy.py") == {}


def test_a_cached_value_is_a_fresh_copy_each_time() -> None:
    values = {"k": {"nginx": ["1.22"]}}
    first = fact_batch.fresh_copy(values, "k")
    first["nginx"].append("changed by an operation")
    assert fact_batch.fresh_copy(values, "k") == {"nginx": ["1.22"]}


def test_gather_skips_a_record_entry_whose_fact_no_longer_exists() -> None:
    class Host:
        name = "h"

        def run_shell_command(self, command: StringCommand, **_: object):
            proc = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, check=False)
            return True, types.SimpleNamespace(stdout_lines=split_lines(proc.stdout))

    calls = [FactCall("iac.gone:Fact", {}, {}), FactCall("pyinfra.facts.server:Hostname", {}, {})]
    values = fact_batch.gather(None, Host(), calls)
    hostname = subprocess.run(["uname", "-n"], capture_output=True, text=True, check=True).stdout.strip()
    assert values == {calls[1].key: Hostname().process([hostname])}


def test_operation_order_is_the_same_as_pyinfra_computes() -> None:
    state = types.SimpleNamespace(current_deploy_filename=__file__, current_op_file_number=3)
    original = pyinfra_util.get_operation_order_from_stack

    def nested(depth: int) -> tuple[list[int], list[int]]:
        if depth:
            return nested(depth - 1)
        return fast_prepare.operation_order_from_stack(state), original(state)

    fast, slow = nested(3)
    assert fast == slow and len(fast) >= 4


def test_global_arguments_are_the_same_as_pyinfra_computes() -> None:
    assert fast_prepare.all_global_arguments() == fast_prepare._all_global_arguments()
    assert fast_prepare.all_global_arguments() == list(arguments.get_type_hints(arguments.AllArguments).items())


def test_a_command_or_upload_forgets_the_hosts_cached_facts_but_a_fact_read_does_not() -> None:
    ran = []

    def run_shell_command(host, command):  # noqa: ANN001, ANN202
        ran.append(command)
        return True

    entry = fact_batch.HostFacts(values={"k": 1})
    state = types.SimpleNamespace(_iac_fact_batch={"web1": entry})
    host = types.SimpleNamespace(name="web1", state=state)
    wrapped = fact_batch._changes_host(run_shell_command)

    entry.reading = 1  # a fact's own command: the cache stays
    assert wrapped(host, "stat /etc/hosts") and entry.values == {"k": 1}
    entry.reading = 0  # an operation's command: the host may have changed
    assert wrapped(host, "systemctl restart nginx") and entry.values == {}
    assert ran == ["stat /etc/hosts", "systemctl restart nginx"]


def test_making_the_staging_directory_keeps_the_hosts_cached_facts() -> None:
    """sudo_staging.prepare's mkdir changes nothing a fact reads: inside not_a_change the cache and
    a finished prefetch stay (without it, a host reached through sudo fetched every fact on its own
    whenever the batch finished first: drift 15 s instead of 2 s, at random)."""
    entry = fact_batch.HostFacts(values={"k": 1})
    state = types.SimpleNamespace(_iac_fact_batch={"gts": entry})
    host = types.SimpleNamespace(name="gts", state=state)
    wrapped = fact_batch._changes_host(lambda host, command: True)
    with fact_batch.not_a_change(host):
        assert wrapped(host, "mkdir -p ~/.cache/iac-staging") and entry.values == {"k": 1}
    assert entry.reading == 0
    with fact_batch.not_a_change(types.SimpleNamespace(name="x")):  # no batch state: nothing to keep
        pass


def test_a_batch_that_fails_only_costs_time() -> None:
    import gevent

    def broken() -> dict:
        raise RuntimeError("connection lost")

    entry = fact_batch.HostFacts(prefetch=gevent.spawn(broken))
    assert fact_batch.prefetched(entry) == {} and entry.prefetch is None


# -- systemd unit facts answered from one shared `systemctl show` -----------------------------------

def _systemd_call(fact: str, services, **extra) -> fact_calls.FactCall:
    return fact_calls.FactCall(f"pyinfra.facts.systemd:{fact}", {"services": services, **extra}, {})


SHARED_OUTPUT = ["Id=nginx.service", "SubState=running", "UnitFileState=enabled", "",
                 "Id=nosuch.timer", "SubState=dead", "UnitFileState=", "",
                 "Id=certbot.timer", "SubState=waiting", "UnitFileState=enabled"]


def test_only_plain_named_units_share_one_systemctl() -> None:
    assert SYSTEMD.keys(_systemd_call("SystemdStatus", ["nginx.service"]), None) == ["nginx.service"]
    assert SYSTEMD.keys(_systemd_call("SystemdEnabled", "certbot.timer"), None) == ["certbot.timer"]
    for call in (_systemd_call("SystemdStatus", None), _systemd_call("SystemdStatus", ["*"]),
                 _systemd_call("SystemdStatus", ["nginx"]),  # no suffix: pyinfra's own command
                 _systemd_call("SystemdStatus", ["nginx.service"], user_mode=True),
                 _systemd_call("SystemdStatus", ["nginx.service"], machine="other"),
                 fact_calls.FactCall("pyinfra.facts.server:Users", {}, {})):
        assert SYSTEMD.keys(call, None) is None, call


def test_each_fact_gets_what_its_own_systemctl_would_print_and_the_same_value() -> None:
    from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
    units = ["nginx.service", "nosuch.timer", "certbot.timer"]
    blocks = SYSTEMD.split(SHARED_OUTPUT, units)
    assert blocks is not None
    status = _systemd_call("SystemdStatus", ["nginx.service"])
    enabled = _systemd_call("SystemdEnabled", ["certbot.timer", "nosuch.timer"])
    status_lines = SYSTEMD.lines(status, SYSTEMD.keys(status, None), blocks)
    enabled_lines = SYSTEMD.lines(enabled, SYSTEMD.keys(enabled, None), blocks)
    assert status_lines == ["Id=nginx.service", "SubState=running"]
    assert enabled_lines == ["Id=certbot.timer", "UnitFileState=enabled", "", "Id=nosuch.timer", "UnitFileState="]
    assert SystemdStatus().process(status_lines) == {"nginx.service": True}
    assert SystemdEnabled().process(enabled_lines) == {
        "certbot.timer": True, "nosuch.timer": False}


def test_output_that_is_not_one_whole_block_per_unit_is_not_used() -> None:
    units = ["nginx.service", "nosuch.timer", "certbot.timer"]
    assert SYSTEMD.split(SHARED_OUTPUT[:-1], units) is None  # a property missing
    assert SYSTEMD.split(SHARED_OUTPUT, units[:2]) is None  # a block more than asked
    assert SYSTEMD.split(["Failed to connect to bus"], units[:1]) is None


def test_the_shared_command_quotes_every_unit() -> None:
    raw = SYSTEMD.command(["a.service", "b@x\\x2d1.service"]).get_raw_value()
    assert "systemctl show --all --property Id --property SubState --property UnitFileState" in raw
    assert "'b@x\\x2d1.service'" in raw


def test_global_arguments_popped_are_the_same_as_pyinfra_pops() -> None:
    """fast_prepare.pop_global_arguments reads the host's data layers once per call: the same
    arguments, found keys and remaining kwargs as pyinfra's, with data at host, group and all
    levels, an @deploy's kwargs, and a bad type refused alike."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.exceptions import ArgumentTypeError

    inventory = Inventory((["h1", ("h2", {"_retries": 2, "name": "from host data", "_sudo_user": "host level"})],
                           {"_sudo_user": "u"}),
                          web=(["h1"], {"_sudo": True, "_env": {"A": "1"}}),
                          db=(["h1"], {"_env": {"B": "2"}, "_sudo_user": "db group"}))
    state = State(inventory, Config())
    for host in inventory:
        for kwargs in ({}, {"_sudo": False, "path": "/x", "_if": None}, {"_retries": 3, "name": "op"}):
            mine, theirs = dict(kwargs), dict(kwargs)
            assert fast_prepare.pop_global_arguments(state, host, mine) == \
                fast_prepare._pop_global_arguments(state, host, theirs)
            assert mine == theirs
        # a value taken from the host's data is a copy: changing it changes nothing for the next call
        popped = fast_prepare.pop_global_arguments(state, host, {})[0]
        if popped["_env"]:
            popped["_env"]["C"] = "3"
            assert "C" not in fast_prepare.pop_global_arguments(state, host, {})[0]["_env"]
        host.current_deploy_kwargs = {"_sudo_user": "deployer"}
        assert fast_prepare.pop_global_arguments(state, host, {})[0]["_sudo_user"] == "deployer"
        host.current_deploy_kwargs = None
        with pytest.raises(ArgumentTypeError):
            fast_prepare.pop_global_arguments(state, host, {"_retries": "many"})
        with pytest.raises(ArgumentTypeError):
            fast_prepare._pop_global_arguments(state, host, {"_retries": "many"})


KERNEL = {"name": "Linux"}


class KernelDependentFact(FactBase):
    """Like some of pyinfra's facts (server.Ports, KernelModules): command() asks the host (test only)."""

    def command(self) -> str:
        return f"echo {KERNEL['name']}"


def test_a_fact_is_prepared_per_host_unless_a_shared_command_answers_it() -> None:
    own = FactCall(fact_calls.fact_path(KernelDependentFact), {}, {})
    assert fact_batch.prepare("linux-host", own).command == "echo Linux"
    KERNEL["name"] = "FreeBSD"
    try:
        assert fact_batch.prepare("other-host", own).command == "echo FreeBSD"
    finally:
        KERNEL["name"] = "Linux"
    # a file stat has one command text for every host: prepared once
    stat = FactCall("pyinfra.facts.files:File", {"path": "/etc/hostname"}, {})
    assert fact_batch.prepare("a", stat) is fact_batch.prepare("b", stat)


# -- a fact record is hostile input: only this repo's facts, with typed arguments -------------------

GOOD_ENTRY = {"fact": "pyinfra.facts.files:File", "kwargs": {"path": "/etc/hostname"},
              "executor": {"_shell_executable": "sh", "_success_exit_codes": [0], "_retry_delay": 5}, "unused": 0}
POISONED_ENTRIES = {
    "an unknown class": {"fact": "subprocess:Popen", "kwargs": {"args": "touch {marker}"}, "executor": {}},
    "pyinfra's own Command fact": {"fact": "pyinfra.facts.server:Command", "kwargs": {"command": "touch {marker}"},
                                   "executor": {}},
    "an argument the command does not quote": {"fact": "operations.app.facts:GitRemoteCommit",
                                               "kwargs": {"url": "git@h:o/r.git", "revision": "main",
                                                          "user": "x; touch {marker}; #"}, "executor": {}},
    "a path of a hostile shape": {"fact": "pyinfra.facts.files:File", "kwargs": {"path": "/x$(touch {marker})"},
                                  "executor": {}},
    "a path with ..": {"fact": "pyinfra.facts.files:File", "kwargs": {"path": "/etc/../{marker}"}, "executor": {}},
    "an argument of another type": {"fact": "operations.app.facts:HttpStatus",
                                    "kwargs": {"url": "/", "host_header": "a.example", "port": "443; touch {marker}",
                                               "tls": True}, "executor": {}},
    "an argument the class does not have": {"fact": "pyinfra.facts.files:File",
                                            "kwargs": {"path": "/etc/hosts", "command": "touch {marker}"},
                                            "executor": {}},
    "interpolated variables": {"fact": "pyinfra.facts.files:FindInFile",
                               "kwargs": {"path": "/etc/hosts", "pattern": "$(touch {marker})",
                                          "interpolate_variables": True}, "executor": {}},
    "a hostile shell": {"fact": "pyinfra.facts.server:Hostname", "kwargs": {},
                        "executor": {"_shell_executable": "sh -c 'touch {marker}' #"}},
    "an environment": {"fact": "pyinfra.facts.server:Hostname", "kwargs": {},
                       "executor": {"_env": {"LD_PRELOAD": "{marker}"}}},
    "a sudo user of a hostile shape": {"fact": "pyinfra.facts.server:Hostname", "kwargs": {},
                                       "executor": {"_sudo": True, "_sudo_user": "root -- touch {marker}"}},
    "a bool given as a string": {"fact": "pyinfra.facts.systemd:SystemdStatus",
                                 "kwargs": {"services": ["nginx.service"], "user_mode": "false"}, "executor": {}},
    "not an entry": ["pyinfra.facts.files:File", "{marker}"],
    "an age that is not an int": {**GOOD_ENTRY, "kwargs": {"path": "/etc/motd"}, "unused": "{marker}"},
}


class RecordingHost:
    """A connected host that runs each command here, in sh, and keeps what it ran."""

    def __init__(self, name: str) -> None:
        self.name, self.connected, self.ran = name, True, []
        self.data = {"ssh_hostname": "10.9.9.9"}

    def run_shell_command(self, command: StringCommand, **_: object):  # noqa: ANN201
        self.ran.append(command.get_raw_value())
        proc = subprocess.run(["sh", "-c", command.get_raw_value()], capture_output=True, check=False)
        return True, types.SimpleNamespace(stdout_lines=split_lines(proc.stdout))


def run_from_record(monkeypatch, tmp_path: Path, record: str) -> tuple[RecordingHost, dict, list[str]]:
    """A run's start (_host_facts) with this record text: the host, what the batch gathered, and the
    modules it imported."""
    import gevent

    records = tmp_path / "facts"
    records.mkdir()
    monkeypatch.setattr(fact_batch, "RECORD_DIR", records)
    monkeypatch.setattr(fact_batch, "_WARNED", set())
    monkeypatch.setattr(fact_batch.atexit, "register", lambda *_: None)
    imported: list[str] = []
    real_import = fact_calls.importlib.import_module
    monkeypatch.setattr(fact_calls.importlib, "import_module", lambda name: imported.append(name) or real_import(name))
    host = RecordingHost("web1")
    fact_batch.record_file(host, "deploy.py").write_text(record)
    state = types.SimpleNamespace(current_deploy_filename="deploy.py",
                                  inventory=types.SimpleNamespace(get_active_hosts=lambda: [host]))
    entry = fact_batch._host_facts(state, host)
    gathered = entry.prefetch.get() if entry.prefetch is not None else {}
    gevent.sleep(0)
    return host, gathered, imported


@pytest.mark.parametrize("case", sorted(POISONED_ENTRIES))
def test_a_poisoned_record_entry_is_refused_with_one_warning_and_never_runs(case, monkeypatch, tmp_path,
                                                                            caplog) -> None:
    marker = tmp_path / "ran"
    poisoned = json.loads(json.dumps(POISONED_ENTRIES[case]).replace("{marker}", str(marker)))
    record = json.dumps([poisoned, GOOD_ENTRY, poisoned])
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        host, gathered, imported = run_from_record(monkeypatch, tmp_path, record)
        fact_batch.read_record(host, "deploy.py")  # read again: still said once
    assert not marker.exists()
    assert not any(str(marker) in command for command in host.ran)
    assert not {"subprocess", "pyinfra.facts.server"} & {m for m in imported if m != "pyinfra.facts.files"}
    # the good entry is still batched
    good = FactCall(GOOD_ENTRY["fact"], GOOD_ENTRY["kwargs"], GOOD_ENTRY["executor"])
    assert list(gathered) == [good.key] and len(host.ran) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "web1@10.9.9.9.deploy.json" in warnings[0] and "ignored, never run" in warnings[0]
    assert "and 1 more" in warnings[0]
    shown = json.dumps(poisoned, sort_keys=True)[:100]
    assert shown in warnings[0], (shown, warnings[0])


@pytest.mark.parametrize("text", ["{not json", '{"fact": "pyinfra.facts.server:Command"}', "null"])
def test_a_record_that_is_not_a_list_of_entries_is_refused_with_a_warning(text, monkeypatch, tmp_path,
                                                                         caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        host, gathered, _ = run_from_record(monkeypatch, tmp_path, text)
    assert gathered == {} and host.ran == []
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "web1@10.9.9.9.deploy.json: not read: not" in warning


def test_a_missing_record_says_nothing(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path)
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        assert fact_batch.read_record(RecordingHost("web1"), "deploy.py") == {}
    assert not caplog.records


def test_a_good_record_batches_without_a_warning(monkeypatch, tmp_path, caplog) -> None:
    entries = [GOOD_ENTRY,
               {"fact": "pyinfra.facts.server:Hostname", "kwargs": {}, "executor": GOOD_ENTRY["executor"], "unused": 2},
               {"fact": "pyinfra.facts.files:FindInFile", "executor": GOOD_ENTRY["executor"],
                "kwargs": {"path": "/etc/hosts", "pattern": "^127.0.1.1\\tname it$", "interpolate_variables": False,
                           "extended_regex": False}},
               {"fact": "iac.guarded:Sha256Files", "kwargs": {"paths": ["/etc/hostname", "/etc/hosts"]},
                "executor": GOOD_ENTRY["executor"]}]
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        host, gathered, _ = run_from_record(monkeypatch, tmp_path, json.dumps(entries))
    assert not caplog.records
    assert len(gathered) == 4 and len(host.ran) == 1  # one command for all four


def test_what_a_run_records_the_next_run_accepts_and_a_refused_entry_is_not_written_back(monkeypatch,
                                                                                         tmp_path) -> None:
    monkeypatch.setattr(fact_batch, "RECORD_DIR", tmp_path)
    host = RecordingHost("web1")
    spaced = FactCall("pyinfra.facts.files:File", {"path": "/srv/with space"}, {})  # fetched on its own
    plain = FactCall("pyinfra.facts.files:File", {"path": "/etc/hosts"}, {})
    poisoned = FactCall("pyinfra.facts.server:Command", {"command": "id"}, {})
    fact_batch.write_record(host, "deploy.py", [spaced, plain], {poisoned.key: (poisoned, 0)})
    written = json.loads(fact_batch.record_file(host, "deploy.py").read_text())
    assert [e["kwargs"] for e in written] == [{"path": "/etc/hosts"}]
