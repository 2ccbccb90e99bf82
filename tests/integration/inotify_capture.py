"""Copies every file written under some directories while it runs (stdlib only; runs ON a sandbox host as root).

Usage: python3 - OUT_DIR DIR... < inotify_capture.py   (SIGTERM: read what is still open, write
OUT_DIR/index.jsonl, exit). OUT_DIR/ready appears once every directory is watched.

Why inotify through ctypes and not inotifywait (inotify-tools): a watcher that is only told a
file's name loses the race against the writer removing it (pyinfra ``rm -f``s its temporary copy
a few milliseconds after ``sudo cp``). This one opens each file the moment it is created and
reads it through that descriptor when it is closed, moved in or deleted: an unlinked file's
content stays readable through an open descriptor. It also needs nothing installed on the host.

Each capture is OUT_DIR/<n> (the first CAP bytes) with a line of index.jsonl: path, event,
owner, mode, size. Directories created under a watched one are watched too. A file created and
removed before it could be opened is listed as ``missed``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import stat
import struct
import sys

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x8, 0x80, 0x100, 0x200
IN_Q_OVERFLOW, IN_ISDIR = 0x4000, 0x40000000
MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE
CAP = 1 << 20
EVENT = struct.Struct("iIII")


class Capture:
    def __init__(self, out: str) -> None:
        self.out, self.count, self.index = out, 0, []
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.dirs: dict[int, str] = {}
        self.open: dict[str, int] = {}  # path -> descriptor opened at IN_CREATE
        self.seen: dict[str, bytes] = {}  # path -> last content captured
        self.unlinked: list[tuple[str, int]] = []  # removed while open: read again at the end

    def watch(self, path: str) -> None:
        wd = self.libc.inotify_add_watch(self.fd, path.encode(), MASK)
        if wd < 0:
            self.note(path, "unwatchable", None)
            return
        self.dirs[wd] = path
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:  # what was made before the watch: read it now
            if entry.is_dir(follow_symlinks=False):
                self.watch(entry.path)
            else:
                self.grab(entry.path, "present")

    def hold(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self.note(path, "missed" if exc.errno == errno.ENOENT else f"unreadable ({exc.strerror})", None)
            return
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return
        old = self.open.pop(path, None)
        if old is not None:
            os.close(old)
        self.open[path] = fd

    def grab(self, path: str, event: str, keep: bool = False) -> None:
        """Capture the file's content now (if it changed); ``keep``: it was unlinked, its
        descriptor stays open to be read again at the end (it can still be written)."""
        fd = self.open.pop(path, None)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                data = os.pread(fd, CAP, 0)
                if self.seen.get(path) != data:
                    self.seen[path] = data
                    self.note(path, event, st, data)
        finally:
            if keep:
                self.unlinked.append((path, fd))
            else:
                os.close(fd)

    def note(self, path: str, event: str, st: os.stat_result | None, data: bytes | None = None) -> None:
        entry: dict = {"path": path, "event": event}
        if st is not None:
            entry.update(uid=st.st_uid, mode=oct(stat.S_IMODE(st.st_mode)), size=st.st_size)
        if data is not None:
            self.count += 1
            entry["n"] = self.count
            with open(os.path.join(self.out, str(self.count)), "wb") as f:
                f.write(data)
        self.index.append(entry)

    def events(self) -> None:
        buf = os.read(self.fd, 1 << 16)
        offset = 0
        while offset < len(buf):
            wd, mask, _cookie, size = EVENT.unpack_from(buf, offset)
            name = buf[offset + EVENT.size:offset + EVENT.size + size].rstrip(b"\0").decode(errors="replace")
            offset += EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self.note("", "overflow", None)
            if wd not in self.dirs or not name:
                continue
            path = os.path.join(self.dirs[wd], name)
            if mask & IN_ISDIR:
                if mask & (IN_CREATE | IN_MOVED_TO):
                    self.watch(path)
            elif mask & IN_CREATE:
                self.hold(path)
            elif mask & IN_CLOSE_WRITE:
                self.grab(path, "closed")
            elif mask & IN_MOVED_TO:
                self.grab(path, "moved in")
            elif mask & IN_DELETE and path in self.open:
                self.grab(path, "deleted", keep=True)

    def finish(self) -> None:
        for path in list(self.open):
            self.grab(path, "still open")
        for path, fd in self.unlinked:
            self.open[path] = fd
            self.grab(path, "written after its removal")
        with open(os.path.join(self.out, "index.jsonl"), "w") as f:
            f.writelines(json.dumps(e) + "\n" for e in self.index)


def main() -> None:
    out, dirs = sys.argv[1], sys.argv[2:]
    os.makedirs(out, mode=0o700, exist_ok=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    capture = Capture(out)
    for d in dirs:
        capture.watch(d)
    open(os.path.join(out, "ready"), "w").close()
    while not stop:
        try:
            if select.select([capture.fd], [], [], 0.2)[0]:
                capture.events()
        except InterruptedError:
            continue
    while select.select([capture.fd], [], [], 0.3)[0]:  # what arrived before the stop
        capture.events()
    capture.finish()
    open(os.path.join(out, "done"), "w").close()


if __name__ == "__main__":
    main()
