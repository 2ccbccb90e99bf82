"""A long pyinfra run, its stages shown as they start: on a terminal one live line, rewritten as each
operation starts; otherwise (CI, a pipe) one plain line per operation. The run's whole output is
kept and returned, as subprocess.run's would be (stdout and stderr together, in stdout)."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import IO, Any

STARTING = re.compile(r"^--> Starting operation: (.+?)\s*$")


def show(label: str, stage: str, out: IO[str], live: bool) -> None:
    if live:
        out.write(f"\r\033[K{label}: {stage[:150]}")
    else:
        out.write(f"{label}: {stage}\n")
    out.flush()


def run(argv: list[str], label: str, out: IO[str] | None = None, live: bool | None = None,
        **popen: Any) -> subprocess.CompletedProcess:
    """Run ``argv`` to its end, printing ``<label>: <operation>`` on ``out`` (stderr) as each
    operation starts. ``live``: rewrite one line (default: when ``out`` is a terminal)."""
    out = out or sys.stderr
    live = out.isatty() if live is None else live
    lines: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL, **popen) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if m := STARTING.match(line.strip()):
                show(label, m.group(1), out, live)
        code = proc.wait()
    if live:
        out.write("\r\033[K")
        out.flush()
    return subprocess.CompletedProcess(argv, code, "".join(lines), "")
