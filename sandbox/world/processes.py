"""The machine-side processes a sandbox starts (stand-ins, host supervisors): recorded with their
start time, and ended by PID only while that PID is still the process that was started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from .common import wait_port


class Processes:
    """Starting recorded processes, telling whether they still run, and stopping them."""

    @staticmethod
    def _starttime(pid: int) -> str | None:
        """Start time of a live process (None when gone). A zombie counts as gone, and is reaped
        when it is this process's child (a long-running caller such as pytest started it)."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if fields[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return None
        return fields[19]

    def process_alive(self, entry: dict) -> bool:
        return self._starttime(entry["pid"]) == entry["starttime"]

    def find_process(self, label: str) -> dict | None:
        for r in self.load()["resources"]:
            if r["kind"] == "process" and r["label"] == label:
                return r
        return None

    def ensure_process(self, label: str, argv: list[str], env: dict | None = None,
                       ready: tuple[str, int] | None = None) -> None:
        old = self.find_process(label)
        if old and self.process_alive(old):
            return
        if old:
            self.forget(old)
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{label}.log", "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=self.dir,
            )
        time.sleep(0.05)
        starttime = self._starttime(proc.pid)
        self.record("process", label=label, pid=proc.pid, starttime=starttime, argv=argv)
        if ready:
            wait_port(*ready, timeout=60, what=label, proc=proc)

    def _stop_process(self, r: dict) -> None:
        if not self.process_alive(r):
            return
        os.kill(r["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process_alive(r):
            time.sleep(0.2)
        if self.process_alive(r):
            os.kill(r["pid"], signal.SIGKILL)
            while self.process_alive(r):
                time.sleep(0.1)
