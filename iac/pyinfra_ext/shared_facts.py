"""Facts of one kind answered together, inside a fact batch, by one command instead of one each.

A converged LAN host asks for about 70 file stats, 50 file hashes and 20 unit states. In a batch
(iac/pyinfra_ext/fact_batch.py) each fact's own command runs as a background job: three forks and an exec
apiece, 2 ms of host CPU, most of the batch's CPU after ``git ls-remote``. Here each kind is
answered by one process (``stat`` of every path, ``sha1sum`` of every file, ``systemctl show`` of
every unit), and its output is cut into what each fact's own command would have printed, so each
fact's own ``process()`` reads exactly the lines it reads from pyinfra's command.

A fact is answered this way only when its own command is, text for text, the one the shared
command was written against (pyinfra's, checked per call), and its argument needs no quoting.
Output that cannot be cut that way (a line nobody asked for, a unit block missing) is not used
at all, and a fact whose part is missing is fetched the normal way: the shared command only saves
time, it never decides a value pyinfra's own command would not.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pyinfra.api.command import StringCommand

if TYPE_CHECKING:
    from iac.pyinfra_ext.fact_calls import FactCall

# an argument that the shell reads as itself: pyinfra leaves it unquoted, and it holds no space,
# newline or quote, so it can be told apart in the shared output
SAFE_PATH = re.compile(r"/[A-Za-z0-9._/@+,:=-]*")


class Shared(Protocol):
    """One kind of fact answered by one shared command."""

    name: str

    def keys(self, call: FactCall, own: str | None) -> list[str] | None:
        """What the fact asks about (units, paths), when the shared command can answer it (``own``:
        the text of the fact's own command, None when it could not be made)."""

    def command(self, keys: list[str]) -> StringCommand:
        """One command for every key asked about (in this order, each once)."""

    def split(self, lines: list[str], keys: list[str]) -> dict[str, list[str]] | None:
        """Each key's part of the output; None when the output cannot be trusted whole."""

    def lines(self, call: FactCall, keys: list[str], parts: dict[str, list[str]]) -> list[str] | None:
        """What the fact's own command prints, or None when the parts do not tell."""


# -- systemd: one `systemctl show` of every named unit ---------------------------------------------

SYSTEMD_FACTS = {"pyinfra.facts.systemd:SystemdStatus": "SubState",
                 "pyinfra.facts.systemd:SystemdEnabled": "UnitFileState"}
UNIT_RE = re.compile(r"[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|target|path|mount|automount|swap|slice|scope)")


class SystemdUnits:
    """pyinfra runs one ``systemctl show`` per unit fact; here one shows every plain one's units
    (system manager, units named with their suffix) with both facts' properties."""

    name = "systemd units"

    def keys(self, call: FactCall, own: str | None) -> list[str] | None:
        kw = call.kwargs
        if call.fact not in SYSTEMD_FACTS or kw.get("user_mode") or kw.get("machine") or kw.get("user_name"):
            return None
        services = kw.get("services")
        services = [services] if isinstance(services, str) else services
        if not services or not all(isinstance(u, str) and UNIT_RE.fullmatch(u) for u in services):
            return None  # every unit ("*") or a pattern: pyinfra's own command
        return list(services)

    def command(self, keys: list[str]) -> StringCommand:
        properties = [a for key in ("Id", *SYSTEMD_FACTS.values()) for a in ("--property", key)]
        return StringCommand("if", "command", "-v", "systemctl", ">/dev/null", "2>&1;", "then", "systemctl", "show",
                             "--all", *properties, *[shlex.quote(u) for u in keys], ";", "else", "exit", "1;", "fi")

    def split(self, lines: list[str], keys: list[str]) -> dict[str, list[str]] | None:
        """A block per unit, in order; None unless there is exactly one per unit, as asked."""
        blocks: list[list[str]] = [[]]
        for line in lines:
            if line.strip():
                blocks[-1].append(line)
            elif blocks[-1]:
                blocks.append([])
        blocks = [b for b in blocks if b]
        wanted = {"Id", *SYSTEMD_FACTS.values()}
        if len(blocks) != len(keys) or any(sorted(line.split("=", 1)[0] for line in b) != sorted(wanted)
                                           for b in blocks):
            return None
        return dict(zip(keys, blocks, strict=True))

    def lines(self, call: FactCall, keys: list[str], parts: dict[str, list[str]]) -> list[str]:
        """What ``systemctl show --property Id --property <key> UNITS`` prints for this fact."""
        keep = ("Id", SYSTEMD_FACTS[call.fact])
        out: list[str] = []
        for index, unit in enumerate(keys):
            out += ([""] if index else []) + [line for line in parts[unit] if line.split("=", 1)[0] in keep]
        return out


# -- files: one `stat` of every path ---------------------------------------------------------------

STAT_FORMAT = "user=%U group=%G mode=%A atime=%X mtime=%Y ctime=%Z size=%s %N"
# pyinfra 3's command for File, Link, Directory and Socket (pyinfra/facts/files.py), {0} the path
FILE_COMMAND = ("! (test -e {0} || test -L {0} ) || ( stat -c '" + STAT_FORMAT + "' {0} 2> /dev/null || "
                "stat -f 'user=%Su group=%Sg mode=%Sp atime=%a mtime=%m ctime=%c size=%z %N%SY' {0} || ls -ld {0} )")
FILE_FACTS = {f"pyinfra.facts.files:{name}" for name in ("File", "Link", "Directory", "Socket")}


@dataclass(frozen=True)
class FileStats:
    """Every path's ``stat`` line in one GNU ``stat``; paths that exist neither as a file nor as a
    link are listed by the shell's own ``test`` (a builtin: no process), so that "absent" is told,
    not guessed from a missing line."""

    name: str = "file stats"

    def keys(self, call: FactCall, own: str | None) -> list[str] | None:
        path = call.kwargs.get("path")
        if call.fact not in FILE_FACTS or set(call.kwargs) != {"path"} or not isinstance(path, str) \
                or not SAFE_PATH.fullmatch(path) or own != FILE_COMMAND.format(path):
            return None
        return [path]

    def command(self, keys: list[str]) -> StringCommand:
        # "+<path> <what pyinfra's stat prints>" for each path stat can read, "-<path>" for each absent one
        return StringCommand("stat", "-c", shlex.quote(f"+%n {STAT_FORMAT}"), "--", *keys, "2>/dev/null;",
                             "for", "p", "in", *keys, ";", "do", "test", "-e", '"$p"', "||", "test", "-L", '"$p"',
                             "||", "echo", '"-$p";', "done")

    def split(self, lines: list[str], keys: list[str]) -> dict[str, list[str]] | None:
        asked, parts = set(keys), {}
        for line in lines:
            sign, body = line[:1], line[1:]
            path, _, rest = body.partition(" ") if sign == "+" else (body, "", "")
            if sign not in "+-" or not sign or path not in asked or path in parts:
                return None  # a line nobody asked for, or a path both present and absent
            parts[path] = [rest] if sign == "+" else []
        return parts

    def lines(self, call: FactCall, keys: list[str], parts: dict[str, list[str]]) -> list[str] | None:
        # a path neither listed by stat nor absent (stat failed on it): its own command decides
        return parts.get(keys[0])


# -- file hashes: one `sha1sum` (`sha256sum`) of every path ---------------------------------------

HASH_PROGRAMS = {"pyinfra.facts.files:Sha1File": ("sha1sum", "shasum", "sha1"),
                 "pyinfra.facts.files:Sha256File": ("sha256sum", "shasum -a 256", "sha256")}


def _hash_command(programs: tuple[str, ...], path: str) -> str:
    """pyinfra 3's HashFileFactBase command (pyinfra/facts/files.py)."""
    tries = " || ".join(f"{program} {path} 2> /dev/null" for program in programs)
    return f"test -e {path} && ( {tries} ) || true"


@dataclass(frozen=True)
class FileHashes:
    """Every file's hash in one ``sha1sum`` (or ``sha256sum``), which prints ``<hash>  <path>``
    for each file, the line pyinfra's own command prints; absent paths are listed by the shell's
    ``test`` (pyinfra's command prints nothing for them). A path with neither (a directory, an
    unreadable file: each of pyinfra's programs would be tried) is fetched by its own command, and
    where the program is missing the shared command fails, so every fact runs its own."""

    fact: str
    name: str

    def keys(self, call: FactCall, own: str | None) -> list[str] | None:
        path = call.kwargs.get("path")
        if call.fact != self.fact or set(call.kwargs) != {"path"} or not isinstance(path, str) \
                or not SAFE_PATH.fullmatch(path) or own != _hash_command(HASH_PROGRAMS[self.fact], path):
            return None
        return [path]

    def command(self, keys: list[str]) -> StringCommand:
        program = HASH_PROGRAMS[self.fact][0]
        return StringCommand("command", "-v", program, ">/dev/null", "||", "exit", "1;", program, "--", *keys,
                             "2>/dev/null;", "for", "p", "in", *keys, ";", "do", "test", "-e", '"$p"', "||", "echo",
                             '"-$p";', "done;", "exit", "0")

    def split(self, lines: list[str], keys: list[str]) -> dict[str, list[str]] | None:
        asked, parts = set(keys), {}
        for line in lines:
            if line.startswith("-"):
                path, part = line[1:], []
            else:
                digest, sep, path = line.partition("  ")
                part = [line]
                if not sep or not digest:
                    return None
            if path not in asked or path in parts:
                return None  # a line nobody asked for, or a path both hashed and absent
            parts[path] = part
        return parts

    def lines(self, call: FactCall, keys: list[str], parts: dict[str, list[str]]) -> list[str] | None:
        return parts.get(keys[0])


# -- the host engines' read-only commands: one python3 for all of them ------------------------------


@dataclass(frozen=True)
class EngineCall:
    """A fact answered by a host engine's read-only command (``python3 ENGINE ARGV``), when the
    programs and files it needs are there, else by ``otherwise``. The fact's own command is
    ``shell()``; in a batch, ``EngineCalls`` runs every such fact in one python3 instead."""

    engine: str
    argv: list[str]
    files: list[str] = field(default_factory=list)  # each must be a file (the engine is added)
    programs: list[str] = field(default_factory=list)  # each must be on PATH
    otherwise: str = ""  # printed instead when one is missing
    tolerate_failure: bool = False  # a failing engine prints what it printed (else the fact fails)
    # the longest check: its own python3, side by side with the others in the batch (not after them)
    alone: bool = False

    def shell(self) -> str:
        tests = [f"command -v {shlex.quote(p)} >/dev/null" for p in self.programs]
        tests += [f"test -f {shlex.quote(f)}" for f in [*self.files, self.engine]]
        run = " ".join(["python3", *map(shlex.quote, [self.engine, *self.argv])])
        if self.tolerate_failure:
            run += " 2>/dev/null || true"
        return (f"if {' && '.join(tests)}; then {run}; "
                f"else printf '%s' {shlex.quote(self.otherwise)}; fi")

    def as_json(self) -> dict:
        return {"engine": self.engine, "argv": self.argv, "files": self.files, "programs": self.programs,
                "otherwise": self.otherwise}


# Runs each call as ``python3 ENGINE ARGV`` (or ``python3 -c SOURCE``) would, in this one process:
# the engine is loaded once (as a module, its ``main(argv)`` called), stdout and stderr are the
# call's own at the descriptor level (what the engine's children print is caught too), and the
# exit status is main's return value or SystemExit's code (1 for an exception, as python3 exits).
# One line per call: "<index> <status> <base64 of stdout>".
ENGINE_RUNNER = r"""import binascii, importlib.util, json, os, shutil, sys
calls, engines = json.loads(sys.argv[1]), {}
devnull = os.open(os.devnull, os.O_WRONLY)
b64 = lambda data: binascii.b2a_base64(data, newline=False).decode()
for index, call in enumerate(calls):
    if "source" not in call and not (all(shutil.which(p) for p in call["programs"])
                                     and all(os.path.isfile(f) for f in [*call["files"], call["engine"]])):
        print(index, 0, b64(call["otherwise"].encode()), flush=True)
        continue
    with open(os.memfd_create("out"), "w+b") as out:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(devnull, 2)
        try:
            if "source" in call:  # a script, run as `python3 -c SOURCE` runs it
                sys.argv = ["-c"]
                exec(compile(call["source"], "<string>", "exec"), {"__name__": "__main__"})
                raise SystemExit(0)
            module = engines.get(call["engine"])
            if module is None:
                name = f"iac_engine_{len(engines)}"
                spec = importlib.util.spec_from_file_location(name, call["engine"])
                module = sys.modules[name] = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                engines[call["engine"]] = module
            status = module.main(list(call["argv"]))
        except SystemExit as e:
            status = e.code
        except BaseException:
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        # as python3 exits: None is 0, a number is taken modulo 256 (True is 1), anything else is 1
        status = 0 if status is None else int(status) % 256 if isinstance(status, int) else 1
        out.seek(0)
        print(index, status, b64(out.read()), flush=True)
"""


# pyinfra facts whose slow command a python script prints the same bytes as, where it is sure (it
# exits 0; else 3, and the fact's own command runs): run by the engine runner too
SOURCES = {"pyinfra.facts.server:Users": "host_users.py"}


@functools.cache
def _source(fact: str) -> str:
    return (Path(__file__).parent / SOURCES[fact]).read_text()


@dataclass(frozen=True)
class EngineCalls:
    """Facts whose class says how an engine answers them (``engine_call(**kwargs)``), each with its
    own command exactly ``EngineCall.shell()``: one python3 runs them all, loading each engine
    once, instead of one python3 each (50-90 ms of host CPU apiece, mostly starting up)."""

    name: str = "engine calls"

    def keys(self, call: FactCall, own: str | None) -> list[str] | None:
        from iac.pyinfra_ext.fact_calls import fact_class

        if call.fact in SOURCES and not call.kwargs:
            return [json.dumps([{"source": call.fact}, False])]
        try:
            engine_call = getattr(fact_class(call.fact), "engine_call", None)
            found = engine_call(**call.kwargs) if engine_call else None
        except Exception:  # noqa: BLE001 (its own command, in the batch)
            return None
        if not isinstance(found, EngineCall) or own != found.shell() or found.alone:
            return None
        return [json.dumps([found.as_json(), found.tolerate_failure], sort_keys=True)]

    def command(self, keys: list[str]) -> StringCommand:
        calls = [json.loads(key)[0] for key in keys]
        calls = [{"source": _source(call["source"])} if "source" in call else call for call in calls]
        # -I -S: the engines and scripts use the standard library only (no site directories to scan)
        return StringCommand("command", "-v", "python3", ">/dev/null", "||", "exit", "1;", "python3", "-I", "-S", "-c",
                             shlex.quote(ENGINE_RUNNER), shlex.quote(json.dumps(calls)))

    def split(self, lines: list[str], keys: list[str]) -> dict[str, list[str]] | None:
        from iac.pyinfra_ext.fact_calls import split_lines

        parts: dict[str, list[str]] = {}
        answered: set[int] = set()
        for line in lines:
            fields = line.split(" ")
            try:
                index, status = int(fields[0]), int(fields[1])
                raw = base64.b64decode(fields[2], validate=True)
            except (ValueError, IndexError, binascii.Error):
                return None
            if len(fields) != 3 or not 0 <= index < len(keys) or index in answered:
                return None
            answered.add(index)
            # a failing engine whose fact does not tolerate it is left out: its own command then
            # fails and reports it
            if status == 0 or json.loads(keys[index])[1]:
                parts[keys[index]] = split_lines(raw)
        return parts

    def lines(self, call: FactCall, keys: list[str], parts: dict[str, list[str]]) -> list[str] | None:
        return parts.get(keys[0])


SHARED: tuple[Shared, ...] = (SystemdUnits(), FileStats(), EngineCalls(),
                              FileHashes("pyinfra.facts.files:Sha1File", "sha1 hashes"),
                              FileHashes("pyinfra.facts.files:Sha256File", "sha256 hashes"))


def shared_for(call: FactCall, own: str | None) -> tuple[Shared, list[str]] | None:
    """The shared command that can answer this fact (``own``: the text of its own command), and
    what it asks about."""
    for shared in SHARED:
        if (keys := shared.keys(call, own)) is not None:
            return shared, keys
    return None
