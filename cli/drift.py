"""Drift gate: does any host differ from what deploy.py declares?

Exit codes: 0 in sync, 2 drift (each drifted operation and host is named, with what differs when
the operation can tell), 1 error (invalid configuration, unreachable host or git remote, pyinfra
failure; the reason is always on stderr). ``--format json`` prints a DriftReport (schema
``iac-drift/2``, ``docs/drift-report.schema.json``), ``--format markdown`` the same facts for a CI
job summary; ``--json-out FILE`` writes the JSON beside either.

It runs ``pyinfra INVENTORY deploy.py --dry --json`` and reads the plan. It never passes ``-y``
and removes PYINFRA_YES from the environment: with ``--dry`` plus ``-y`` pyinfra skips change
detection and would report every drifted host as in sync.

Operations guarded by ``_if=`` (reloads after a changed file) are listed as "conditional" in the
plan. They run only when an operation they depend on changes, so they are drift only together
with an unconditional change, which the gate already reports; alone they are ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cli import early  # standard library only
from iac import drift_record, piped  # standard library only
from iac.declared import BASELINE_OPERATION  # standard library only
from iac.repo import REPO  # pathlib only: cheap before the early start

IN_SYNC, ERROR, DRIFT = 0, 1, 2


def start_plan(inventory: str, deploy: str = "deploy.py", extra_args: list[str] | None = None) -> subprocess.Popen:
    """Start pyinfra's change detection (``finish_plan`` reads it): the caller works meanwhile."""
    env = {k: v for k, v in os.environ.items() if k != "PYINFRA_YES"}
    env["PYINFRA_PROGRESS"] = "off"
    cmd = [str(REPO / ".venv/bin/python"), "-m", "iac.pyinfra_ext.plan_runner", inventory, deploy, "--dry", "--diff",
           "--json",
           *(extra_args or [])]
    env, fds, started = piped.child_env(env)  # a secrets pipe is read once, the plan gets its own
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, pass_fds=fds)
    started()
    return proc


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """A usage error is an error (exit 1), never argparse's 2, which means "drift" here."""
        self.print_usage(sys.stderr)
        self.exit(ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cli.drift", description=__doc__.splitlines()[0])
    parser.add_argument("inventory", help="inventory file, e.g. sandbox/inventory.py")
    parser.add_argument("--limit", help="only these hosts or groups, comma-separated (pyinfra --limit)")
    parser.add_argument("--format", choices=["text", "json", "markdown"], default="text",
                        help="text (default), json (schema iac-drift/2, docs/drift.md) or markdown (a CI job summary)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON report to this file")
    return parser


def limit_list(limit: str | None) -> list[str]:
    return [part for part in (limit or "").split(",") if part]


def limit_args(limits: list[str]) -> list[str]:
    return [a for part in limits for a in ("--limit", part)]


def _early_start(argv: list[str] | None) -> tuple[argparse.Namespace, subprocess.Popen] | None:
    """Run from the command line (``python -m cli.drift``, or ``iac drift``/``iac plan``, which name
    their arguments in cli/early.py before importing this module), the plan starts here, before
    the report's models are imported below: pydantic takes about 0.15 s to load, on the check's
    critical path otherwise."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        return None  # --help or a usage error: main() says it
    return args, start_plan(args.inventory, extra_args=limit_args(limit_list(args.limit)))


_EARLY = (_early_start(None) if __name__ == "__main__"
          else _early_start(early.take("cli.drift")) if early.waiting("cli.drift") else None)

# the report's models (after the early start above: the order matters for speed only)
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from iac.pyinfra_ext import NOTICE  # noqa: E402
from iac.pyinfra_ext.fact_policy import WARNING_PREFIX  # noqa: E402

MAX_DETAILS = 40  # lines of what differs per operation and host (a new file's diff is all of it)
MAX_BASELINE_LINES = 4000  # the baseline's findings with their diffs (each at most 40 lines)


def redact(text: str, secret_values: list[str]) -> str:
    """``text`` with every whole occurrence of a secret replaced by ``**********``: where the value
    is not part of a longer word (a secret ``sr`` leaves ``/usr/lib`` alone), longest first (a
    secret holding another is hidden whole). The model makes secrets long enough (iac/values.py
    ``secret()``) that a whole-word match is never ordinary text."""
    for value in sorted({v for v in secret_values if v}, key=len, reverse=True):
        # a bound only where the value's own edge is a word character (``$(id)`` ends a word itself)
        before = r"(?<!\w)" if re.match(r"\w", value[0]) else ""
        after = r"(?!\w)" if re.match(r"\w", value[-1]) else ""
        text = re.sub(before + re.escape(value) + after, "**********", text)
    return text


def finish_plan(proc: subprocess.Popen, timeout: int = 900) -> tuple[int, dict | None, str]:
    """(exit code, parsed JSON or None, stderr) of a ``start_plan`` run."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr += f"\nthe plan did not finish within {timeout} s"
    try:
        data = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    # a fact record held something it did not run, or the pyinfra extension layer is not in place
    # (another pyinfra: iac/pyinfra_ext/__init__.py): say so here too
    for line in stderr.splitlines():
        if line.strip().startswith(WARNING_PREFIX) or NOTICE in line:
            print(f"warning: {line.strip()}", file=sys.stderr)
    return proc.returncode, data, stderr


def plan(inventory: str, deploy: str = "deploy.py", extra_args: list[str] | None = None,
         timeout: int = 900) -> tuple[int, dict | None, str]:
    """Run pyinfra's change detection; return (exit code, parsed JSON or None, stderr)."""
    return finish_plan(start_plan(inventory, deploy, extra_args), timeout)


class HostFinding(BaseModel):
    """One difference the baseline found between the host and Debian's packages plus the declaration."""

    model_config = ConfigDict(extra="forbid")
    mark: Literal["+", "~", "-"] = Field(description="+ present but not declared, ~ differs, - declared but missing")
    category: str = Field(description="where: systemd, units, packages, nginx, sshd, sudoers, accounts, keys, cron, "
                                      "apt, libraries, login, resolver, held, postgres, setuid, sockets, tls",
                          examples=["systemd"])
    path: str = Field(description="the file, unit, account, group, listener or name it is about",
                      examples=["/etc/systemd/system/broker_portal.service.d/override.conf"])
    what: str = Field(description="what differs, in one line (never a secret)")
    diff: list[str] = Field(default=[], description="a text file's difference, at most 40 lines (values that look "
                                                    "like secrets masked)")


# a baseline finding as the baseline operation says it (operations/baseline/deploy.py describe())
FINDING_LINE = re.compile(r"^([+~-]) ([a-z]+) (\S+): (.*)$")


def host_findings(details: list[str]) -> list[HostFinding]:
    """The baseline operation's details as findings (its lines ``<mark> <category> <path>: <what>``,
    each followed by its diff, indented four spaces)."""
    out: list[HostFinding] = []
    for line in details:
        if line.startswith("    ") and out:
            out[-1].diff.append(line[4:])
        elif match := FINDING_LINE.match(line):
            out.append(HostFinding(mark=match[1], category=match[2], path=match[3], what=match[4]))
    return out


class DriftItem(BaseModel):
    """One operation that would change one host."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(description="inventory name of the host, e.g. srv1178562")
    operation: str = Field(description="the operation as the host declared it, e.g. "
                                       "'chip_dashboard: release main live'")
    details: list[str] = Field(default=[], description="what differs, when the operation can tell "
                                                       "(secrets redacted as **********)")
    conditional: bool = Field(default=False, description="runs only because an operation above changes "
                                                         "(a reload after a changed file)")
    findings: list[HostFinding] = Field(default=[], description="the baseline's findings (its operation only): what "
                                        "the host holds beyond Debian's packages and the declaration")

    @property
    def action(self) -> Literal["create", "update", "delete"]:
        """Pulumi's + / ~ / -: what the operation would do, as far as its details tell."""
        if any(d.startswith("- delete") for d in self.details):
            return "delete"
        if any(d.startswith(("+ create", "Will create", "nothing live yet")) for d in self.details):
            return "create"
        return "update"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "delete": "-"}[self.action]


class PlanSummary(BaseModel):
    """``Plan: 2 to add, 1 to change, 1 to delete`` (orphans count one each)."""

    model_config = ConfigDict(extra="forbid")
    add: int = Field(ge=0)
    change: int = Field(ge=0)
    delete: int = Field(ge=0)

    def line(self) -> str:
        return f"Plan: {self.add} to add, {self.change} to change, {self.delete} to delete"


class DriftReport(BaseModel):
    """``make drift FORMAT=json``: the drift gate's result (schema ``iac-drift/2``, docs/drift.md)."""

    model_config = ConfigDict(extra="forbid")
    schema_: Literal["iac-drift/2"] = Field(default="iac-drift/2", alias="schema")
    inventory: str = Field(description="the inventory checked, e.g. inventory.py")
    status: Literal["in_sync", "drift", "error"]
    exit_code: Literal[0, 1, 2] = Field(description="0 in sync, 2 drift, 1 error (the exit code of the command)")
    checked_at: str = Field(description="UTC time of the check, ISO 8601")
    operations_checked: int = Field(ge=0, description="operations in the plan, all hosts")
    drift: list[DriftItem] = Field(default=[], description="every drifted operation per host, in plan order")
    error: str | None = Field(default=None, description="why the check could not tell (exit 1), redacted")
    summary: PlanSummary = Field(default=PlanSummary(add=0, change=0, delete=0),
                                 description="resources to add, change and delete (conditional operations not counted)")

    @property
    def hosts(self) -> list[str]:
        return sorted({item.host for item in self.drift if not item.conditional})

    def text(self) -> str:
        if self.status == "error":
            return f"drift: ERROR: {self.error}"
        changed = [i for i in self.drift if not i.conditional]
        if not changed:
            return f"drift: in sync ({self.operations_checked} operations checked, no change pending)"
        lines = [f"drift: DRIFT in {len(changed)} operation(s) of {self.operations_checked}:"]
        # grouped by host, in plan order within each
        for item in sorted(changed, key=lambda i: self.hosts.index(i.host)):
            lines.append(f"  {item.symbol} {item.host}: {item.operation}")
            lines.extend(f"      {d}" for d in item.details)
        conditional = [i for i in self.drift if i.conditional]
        if conditional:
            lines += ["then, depending on those:", *(f"  {i.host}: {i.operation}" for i in conditional)]
        return "\n".join([*lines, self.summary.line()])

    def markdown(self) -> str:
        """For a CI job summary: a heading with the verdict, then one table row per drifted operation."""
        def cell(text: str) -> str:
            return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")
                    .replace("<", "&lt;"))

        verdict = {"in_sync": "in sync", "drift": "DRIFT", "error": "ERROR"}[self.status]
        lines = [f"## Drift check: {verdict}", "",
                 f"`{self.inventory}`, {self.checked_at}, {self.operations_checked} operations checked, "
                 f"exit {self.exit_code}", ""]
        if self.status == "error":
            error = (self.error or "").replace("```", "'''")
            return "\n".join([*lines, "The check could not tell:", "", "```", error, "```", ""])
        if not self.drift:
            return "\n".join([*lines, "Every host is as declared.", ""])
        lines += [f"**{self.summary.line()}**", "", "| | host | operation | what differs |", "|---|---|---|---|"]
        for item in self.drift:
            what = ("the host holds what is not declared: see below" if item.findings else
                    "; ".join(item.details) or ("runs after a change above" if item.conditional else ""))
            sign = "" if item.conditional else item.symbol
            lines.append(f"| {sign} | {cell(item.host)} | {cell(item.operation)} | {cell(what)} |")
        found = [(item.host, f) for item in self.drift for f in item.findings]
        if found:
            lines += ["", "### The hosts beyond their declaration", "", "| | host | category | path | what differs |",
                      "|---|---|---|---|---|"]
            lines += [f"| {f.mark} | {cell(h)} | {f.category} | {cell(f.path)} | "
                      f"{cell(f.what + (': ' + ' / '.join(f.diff[:5]) if f.diff else ''))} |" for h, f in found]
        return "\n".join([*lines, ""])


def report(inventory: str, code: int, data: dict | None, stderr: str,
           secret_values: list[str] | None = None) -> DriftReport:
    """The drift report of one pyinfra plan run (``plan()``'s result)."""
    secrets = secret_values or []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if code != 0 or data is None or "plan" not in data:
        tail = "\n".join(redact(stderr, secrets).strip().splitlines()[-25:])
        return DriftReport(inventory=inventory, status="error", exit_code=ERROR, checked_at=now,
                           operations_checked=0, error=f"pyinfra exited {code} before a complete plan\n{tail}")
    items = []
    for op in data["plan"]:
        own = op.get("host_names", {})
        details = op.get("host_details", {})
        for host in op["hosts_with_change"]:
            said = [redact(d, secrets) for d in details.get(host, [])]
            name = redact(own.get(host, op["name"]), secrets)
            # the baseline names every finding (each diff is short already); any other operation's
            # difference is cut at MAX_DETAILS lines
            found = host_findings(said) if name == BASELINE_OPERATION else []
            limit = MAX_BASELINE_LINES if found else MAX_DETAILS
            if len(said) > limit:
                said = [*said[:limit], f"... {len(said) - limit} more line(s)"]
            items.append(DriftItem(host=host, operation=name, details=said, findings=found))
    for op in data["plan"]:
        own = op.get("host_names", {})
        for host in op["hosts_with_conditional_change"]:
            items.append(DriftItem(host=host, operation=redact(own.get(host, op["name"]), secrets),
                                   conditional=True))
    drifted = any(not i.conditional for i in items)
    real = [i for i in items if not i.conditional]
    summary = PlanSummary(add=sum(i.action == "create" for i in real),
                          change=sum(i.action == "update" for i in real),
                          delete=sum(sum(d.startswith("- delete") for d in i.details) for i in real))
    # conditional operations alone are not drift (module docstring)
    return DriftReport(inventory=inventory, status="drift" if drifted else "in_sync",
                       exit_code=DRIFT if drifted else IN_SYNC, checked_at=now,
                       operations_checked=len(data["plan"]), drift=items if drifted else [],
                       summary=summary if drifted else PlanSummary(add=0, change=0, delete=0))


def check(inventory: str, secret_values: list[str] | None = None,
          extra_args: list[str] | None = None) -> tuple[int, str]:
    """Return (exit code, report text)."""
    code, data, stderr = plan(inventory, extra_args=extra_args)
    result = report(inventory, code, data, stderr, secret_values)
    return result.exit_code, result.text()


def in_sync(code: int, data: dict | None) -> bool:
    """A complete plan in which no operation would change any host."""
    return code == 0 and data is not None and "plan" in data and not any(
        op["hosts_with_change"] or op["hosts_with_conditional_change"] for op in data["plan"])


def redacted_report(inventory: str, code: int, data: dict | None, stderr: str) -> DriftReport:
    """The report with every secret value of the stack redacted; or the configuration's error."""
    # the values to redact come from the stack itself, whichever it is (iac/ never imports sandbox/)
    from cli.validate import load_inventory  # noqa: PLC0415
    from iac.errors import ConfigError
    from stack.load import config_secret_values  # noqa: PLC0415 (only a drift or an error needs it)

    try:
        secret_values = [v for _group, hosts in load_inventory(Path(inventory)).items()
                         for _name, host_data in hosts for v in config_secret_values(host_data["config"])]
    except ConfigError as exc:
        return DriftReport(inventory=inventory, status="error", exit_code=ERROR,
                           checked_at=datetime.now(UTC).isoformat(timespec="seconds"), operations_checked=0,
                           error=f"invalid configuration: {exc}")
    return report(inventory, code, data, stderr, secret_values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limits = limit_list(args.limit)
    global _EARLY
    started, _EARLY = (_EARLY if _EARLY is not None and _EARLY[0] == args else None), None  # used once
    proc = started[1] if started else start_plan(args.inventory, extra_args=limit_args(limits))
    code, data, stderr = finish_plan(proc)
    if limits and code == 0 and data is not None and not data.get("plan"):
        # pyinfra runs nothing and exits 0 when --limit matches no host: that is not "in sync"
        result = DriftReport(inventory=args.inventory, status="error", exit_code=ERROR,
                             checked_at=datetime.now(UTC).isoformat(timespec="seconds"), operations_checked=0,
                             error=f"--limit {args.limit} matches no host or group of {args.inventory}: "
                                   "give host names or group names, comma-separated")
    elif in_sync(code, data):
        # nothing to show, so nothing to redact: the stack is not read a second time
        result = report(args.inventory, code, data, stderr, [])
    else:
        result = redacted_report(args.inventory, code, data, stderr)
    if args.json_out:
        args.json_out.write_text(result.model_dump_json(by_alias=True, indent=2) + "\n")
    drift_record.remember(args.inventory, result.model_dump_json(by_alias=True))  # `iac status` shows the last one
    if result.status == "error":
        print(result.text(), file=sys.stderr)  # the reason, always on stderr
    if args.format == "json":
        print(result.model_dump_json(by_alias=True, indent=2))
    elif args.format == "markdown":
        print(result.markdown())
    elif result.status != "error":
        print(result.text())
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
