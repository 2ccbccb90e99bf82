"""What every part of the sandbox uses: the repository's root, the error, running a command,
logging, and probing a TCP port."""

from __future__ import annotations

import ctypes
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

# appended to canary secrets: $( and a backtick (shell), & ; # (shell, env files), quotes, %
# (systemd specifiers), backslash, { } (nginx), spaces
HOSTILE = " $(touch /tmp/pwned)`id`&;#'\" %n\\x{}"


class WorldError(RuntimeError):
    pass


def run(cmd: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise WorldError(f"{what} exited with {proc.returncode}; see its log in .sandbox/")
        time.sleep(0.2)
    raise WorldError(f"{what} not reachable at {host}:{port} after {timeout}s")


# libc, for what Python has no call of its own for (prctl, setns, open_tree, move_mount)
_LIBC = ctypes.CDLL(None, use_errno=True)
