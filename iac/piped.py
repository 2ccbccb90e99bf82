"""A secrets file that is a pipe, read once and handed down (standard library only).

``IAC_SECRETS_FILE=<(pass show iac/production) iac apply`` gives every process the same pipe, and
a pipe gives its bytes to one reader; but a command that starts pyinfra reads the secrets in two
or three processes (``iac drift``: itself, to redact, and the plan; ``iac apply``: itself, the
plan, the run). So the first reader in a process keeps the bytes in memory (``read``), and each
child it starts gets a new pipe of its own holding them (``child_env``: ``/dev/fd/N``, inherited,
written by a thread): never a file, a command-line argument or an environment value.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable

VARIABLE = "IAC_SECRETS_FILE"
_KEPT: dict[str, bytes] = {}


def is_pipe(path: str) -> bool:
    """Whether ``path`` is something other than a regular file (a pipe, /dev/fd/N, a socket)."""
    return not stat.S_ISREG(os.stat(path).st_mode)


def read(path: str) -> bytes:
    """The file's bytes; a pipe's are read once per process and kept, so reading it again works."""
    if path in _KEPT:
        return _KEPT[path]
    with open(path, "rb") as f:
        data = f.read()
    if is_pipe(path):
        _KEPT[path] = data
    return data


def child_env(env: dict[str, str]) -> tuple[dict[str, str], tuple[int, ...], Callable[[], None]]:
    """(the child's environment, the descriptors it inherits, what to call once it started).

    When ``env`` names a secrets file that is a pipe, the child gets a new pipe of its own with the
    same bytes (read here first, once); otherwise everything is as given."""
    path = env.get(VARIABLE)
    if not path or not os.path.exists(path) or not is_pipe(path):
        return env, (), lambda: None
    data = read(path)
    reader, writer = os.pipe()

    def started() -> None:
        os.close(reader)  # the child has its own copy

        def feed() -> None:
            try:
                _write_all(writer, data)
            except BrokenPipeError:
                pass  # the child ended without reading (a usage error): nothing to hand over
            finally:
                os.close(writer)

        threading.Thread(target=feed, name="secrets-pipe", daemon=True).start()

    return {**env, VARIABLE: f"/dev/fd/{reader}"}, (reader,), started


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
