"""Package files held against dpkg's own checksums, read at check time.

What is checked: every file of an installed package (dpkg's ``Status`` ends in ``ok installed``:
``install``, ``hold`` and ``deinstall`` selections alike, for the files are on disk) that its
``/var/lib/dpkg/info/<package>.md5sums`` lists, and every conffile of those packages from the
``Conffiles:`` field of ``/var/lib/dpkg/status`` (a conffile the admin changed is drift too: the
reference is the package's own copy). Left out:

- documentation that never runs: anything under /usr/share/doc, /usr/share/man, /usr/share/info,
  /usr/share/locale and /usr/share/lintian (``DOCS``);
- conffiles dpkg marks ``obsolete`` and those whose md5 is ``newconffile`` (dpkg has not recorded
  one yet);
- the paths in ``managed`` (this repository writes them; their declared content is the reference
  and is checked where the repository's own resources are) and in ``allowed`` (the model's
  allow-list). A path under /bin, /sbin or /lib* and its /usr twin (merged /usr) are one path here;
- a file listed by two installed packages is checked only for those whose file list
  (``<package>.list``) still holds it: a package that took a file over (``Replaces:``) removes it
  from the other's list, never from the other's md5sums.

Diversions (``dpkg-divert``, /var/lib/dpkg/diversions) are followed: a package's file that is
diverted away from it (by another package, or locally) is checked at the diverted location, where
dpkg put it; the diverting package's own file is checked at the original path.

Findings: ``~`` the file's md5 differs from the package's (or it is no longer a regular file),
``-`` it is missing; both repaired by reinstalling the package (``reinstall_command``).

Speed without being fooled (a warm run reads no package file and no md5sums file):

- ``cache`` (root's own file, 0600, written atomically) holds, for each package, the ``lstat`` of
  its md5sums file when it was parsed and what it listed (the parse is reused while that ``lstat``
  is unchanged), and for each of its files the ``(st_dev, st_ino, st_size, st_mtime_ns,
  st_ctime_ns)`` it had when it was hashed (packed) and, where it was not the package's, the md5 it
  had. A warm run ``lstat``s every file and compares each package's tuples with the cached ones
  in one go; only a file whose tuple differs is hashed. When a package's expected md5 of a file
  changes (an upgrade), what was known of that file is dropped.
- A mode or owner change (``chmod u+s``, ``chown`` to an app user: a door to root through a file
  whose bytes are still the package's) moves the ctime too: the file is hashed, and a mode or owner
  other than the one it had when last checked is a finding until the package is reinstalled (the
  first check holds what it finds; an upgrade that changes the file starts again from it).
- A same-size edit cannot hide: every write, ``utime``, ``chmod``, rename or link count change sets
  the inode's ctime to the current time and no system call sets it back (``utime`` sets only atime
  and mtime), so the tuple changes and the file is hashed again. A file swapped for another has
  another inode or device. What can defeat it: setting the system clock back to the very
  nanosecond of the old ctime around the edit, writing the block device under the filesystem, or
  rewriting this cache or dpkg's database (each needs root, which could also rewrite this code).
- Racy timestamps: the kernel stamps ctime from a coarse clock (a jiffy), so an edit in the same
  tick as the change before it could keep the same ctime. A file whose ctime is less than
  ``RACY_NS`` before the check (or in the future) is hashed but its tuple is not trusted next time.
- Paths are never followed: ``os.lstat`` decides (a package's own symlinks are not in md5sums; a
  file replaced by a link is a finding), and a file is hashed through a descriptor opened with
  ``O_NOFOLLOW`` that must be the inode ``lstat`` saw.
- An upgrade is never drift: dpkg's database is read at check time, and when it changed while the
  check ran (unattended-upgrades installing), the check is run again on the new database.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import stat
import struct
import time
from collections import Counter
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from baseline_engine.findings import Finding
from engine_common.safefs import UnsafePath, root_dir

CATEGORY = "packages"
DOCS = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/", "/usr/share/lintian/")
_DOCS_REL = tuple(p[1:] for p in DOCS)  # as md5sums spells them (relative to /)
RACY_NS = 2_000_000_000
CACHE_VERSION = 3
_MERGED = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
_MD5 = re.compile(r"[0-9a-f]{32}")
_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9][a-z0-9-]*)?")
_READ = 1 << 20
_ATTEMPTS = 3

# (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns, st_mode, st_uid, st_gid) of a file, packed;
# _UNTRUSTED never equals an lstat's
_TUPLE = attrgetter("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns", "st_mode", "st_uid", "st_gid")
_PACK = struct.Struct("<QQqqqIII")
_UNTRUSTED = (0, 0, -1, 0, 0, 0, 0, 0)
_ACCESS = slice(5, 8)  # mode, owner, group


def _now_ns() -> int:
    return time.time_ns()


def check(managed: set[str], allowed: set[str], cache: Path, dpkg_info: Path = Path("/var/lib/dpkg/info"),
          status: Path = Path("/var/lib/dpkg/status"), *, diversions: Path | None = None, root: Path = Path("/"),
          stats: dict[str, int] | None = None) -> list[Finding]:
    """Every installed package's files against dpkg's checksums (see the module): the findings,
    sorted by path. ``diversions`` defaults to the file beside ``status``; ``root`` is where the
    paths dpkg names are read (a test's tree; findings always name the host path). ``stats``, when
    given, is filled with counts: packages, parsed (md5sums files read), checked (files), hashed.

    Raises UnsafePath when ``cache`` (or its directory) is not root's own: a link, another owner,
    open to others. A cache that cannot be understood is treated as empty (a cold run)."""
    diversions = diversions or status.parent / "diversions"
    prefix = "" if str(root) == "/" else str(root).rstrip("/")
    skip = _aliases(managed) | _aliases(allowed)
    old = _load(cache)
    changed = False
    for _ in range(_ATTEMPTS):
        before = _db_stamp(dpkg_info, status, diversions)
        run = _Run(skip, prefix, _now_ns())
        new = run.check(old, dpkg_info, status, diversions)
        changed = changed or run.dirty
        if _db_stamp(dpkg_info, status, diversions) == before:
            break
        old = new  # dpkg changed its database while we read it: again, on the new one (what was hashed stays)
    if changed:
        _save(cache, new)
    if stats is not None:
        stats.update(run.counts)
    return sorted(run.findings, key=lambda f: (f.path, f.argument))


def conffile_paths(status: Path = Path("/var/lib/dpkg/status")) -> set[str]:
    """Every conffile of the installed packages (a changed one is moved, not copied, before a
    reinstall: dpkg puts back only a conffile that is missing)."""
    return {path for _name, conffiles in _installed(status).values() for path, _md5 in conffiles}


def reinstall_command(pkgs: list[str], conffiles: list[str]) -> list[str]:
    """The command that puts package files back as the packages ship them: an ``apt-get install
    --reinstall`` of ``pkgs`` (names as dpkg spells them, ``libc6:amd64`` included), run without a
    question (``--force-confold``: a conffile present on disk is never replaced nor asked about),
    and with ``--force-confmiss`` when ``conffiles`` names conffiles to restore: dpkg puts back only
    a conffile that is MISSING, never over one the admin changed. [] when there is nothing to do.

    The caller must first, for every file it is about to repair, copy it into the quarantine (a
    reinstall overwrites a changed package file: the original is kept there), and MOVE every changed
    conffile in ``conffiles`` into the quarantine, so that it is missing and dpkg reinstalls it.
    A reinstall fetches the installed version; when the archive no longer offers it, apt installs
    the candidate version instead (an upgrade) or fails: the next check tells which.

    Raises ValueError for a name that is not a Debian package name or a conffile path that is not
    absolute (hostile values never reach apt as options)."""
    names = sorted(set(pkgs))
    for name in names:
        if not _PACKAGE.fullmatch(name):
            raise ValueError(f"not a package name: {name!r}")
    for path in conffiles:
        if not path.startswith("/") or "\n" in path:
            raise ValueError(f"not an absolute path: {path!r}")
    if not names:
        return []
    command = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "--reinstall", "--yes", "--quiet",
               "--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef", "-o",
               "Dpkg::Options::=--force-confold"]
    if conffiles:
        command += ["-o", "Dpkg::Options::=--force-confmiss"]
    return command + names


# -- dpkg's database ---------------------------------------------------------------------------------------------


def _installed(status: Path) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Installed packages from the status file: key (``name`` or ``name:arch`` as dpkg names its
    info files for Multi-Arch: same) -> (name, [(conffile, md5)]), conffiles dpkg checks only."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    text = status.read_bytes().decode("utf-8", "surrogateescape")
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        conffiles: list[str] = []
        current = ""
        for line in block.split("\n"):
            if line[:1] in (" ", "\t"):
                if current == "Conffiles":
                    conffiles.append(line.strip())
                continue
            name, sep, value = line.partition(":")
            if sep:
                current = name
                fields[name] = value.strip()
        words = fields.get("Status", "").split()
        if len(words) != 3 or words[1:] != ["ok", "installed"] or not fields.get("Package"):
            continue
        name = fields["Package"]
        key = f"{name}:{fields['Architecture']}" if fields.get("Multi-Arch") == "same" and fields.get(
            "Architecture") else name
        files = []
        for line in conffiles:
            if line.endswith(" obsolete"):
                continue
            line = line.removesuffix(" remove-on-upgrade")
            path, _, md5 = line.rpartition(" ")
            if path.startswith("/") and _MD5.fullmatch(md5):  # "newconffile": no md5 recorded yet
                files.append((path, md5))
        out[key] = (name, files)
    return out


def _diversions(path: Path) -> dict[str, tuple[str, str]]:
    """dpkg's diversions: original path -> (diverted path, package holding it; ':' is local)."""
    try:
        lines = path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
    except FileNotFoundError:
        return {}
    out = {}
    for i in range(0, len(lines) - 2, 3):
        out[lines[i]] = (lines[i + 1], lines[i + 2])
    return out


def _parse_md5sums(path: str, conffiles: set[str]) -> list[tuple[str, str]]:
    """A package's md5sums: (absolute path, md5) of each file, documentation left out, and its
    conffiles too (some packages list one in both: the status file's md5 is the one dpkg keeps up
    to date)."""
    out = []
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "surrogateescape")
    for line in text.split("\n"):
        md5, sep, rel = line[:32].lower(), line[32:34], line[34:]
        if sep != "  " or not rel or rel.startswith(_DOCS_REL) or not _MD5.fullmatch(md5):
            continue
        file = "/" + rel.removeprefix("./").lstrip("/")
        if file not in conffiles:
            out.append((file, md5))
    return out


def _stamp(path: Path | str) -> list[int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _db_stamp(dpkg_info: Path, status: Path, diversions: Path) -> list:
    return [_stamp(dpkg_info), _stamp(status), _stamp(diversions), _stamp(status.parent / "updates")]


def _aliases(paths: set[str]) -> set[str]:
    """Each path and its merged-/usr twin (/bin/x and /usr/bin/x name one file on Debian 12)."""
    out = set(paths)
    for p in paths:
        if p.startswith(_MERGED):
            out.add("/usr" + p)
        elif p.startswith("/usr/") and p[4:].startswith(_MERGED):
            out.add(p[4:])
    return out


# -- the check ---------------------------------------------------------------------------------------------------


@dataclass
class _Files:
    """One package's files (its md5sums, or its conffiles) as the cache keeps them: the paths dpkg
    names; the md5 the package expects of each (32 hex digits each, concatenated); the packed
    (dev, ino, size, mtime_ns, ctime_ns, mode, uid, gid) each had when it was hashed (_UNTRUSTED: hash it next
    time); the md5 a file had where it was not the expected one ("": not a regular file)."""

    paths: list[str]
    md5s: str
    stats: bytes
    had: dict[str, str]

    @classmethod
    def fresh(cls, pairs: list[tuple[str, str]], was: _Files | None) -> _Files:
        """New expectations; what was known of a file is kept only while the package expects the
        same md5 of it (an upgrade that changes the file invalidates it)."""
        known: dict[str, tuple[str, tuple[int, ...], str | None]] = {}
        if was is not None:
            for i, (path, tup) in enumerate(zip(was.paths, _PACK.iter_unpack(was.stats), strict=True)):
                known[path] = (was.md5s[32 * i:32 * i + 32], tup, was.had.get(path))
        stats, had = [], {}
        for path, md5 in pairs:
            expected, tup, got = known.get(path, ("", _UNTRUSTED, None))
            if expected != md5:
                tup, got = _UNTRUSTED, None
            stats.append(_PACK.pack(*tup))
            if got is not None:
                had[path] = got
        return cls([p for p, _ in pairs], "".join(m for _, m in pairs), b"".join(stats), had)

    def to_json(self) -> list:
        return [self.paths, self.md5s, base64.b64encode(self.stats).decode(), self.had]

    @classmethod
    def from_json(cls, value: object) -> _Files | None:
        """None for anything that is not what to_json wrote."""
        if not (isinstance(value, list) and len(value) == 4 and isinstance(value[0], list)
                and isinstance(value[1], str) and isinstance(value[2], str) and isinstance(value[3], dict)):
            return None
        paths, md5s, packed, had = value
        try:
            stats = base64.b64decode(packed, validate=True)
        except ValueError:
            return None
        if (len(md5s) != 32 * len(paths) or len(stats) != _PACK.size * len(paths)
                or not all(type(p) is str for p in paths)
                or not all(type(k) is str and type(v) is str for k, v in had.items())):
            return None
        return cls(paths, md5s, stats, had)


class _Run:
    """One pass over dpkg's database: ``check`` fills ``findings`` and ``counts`` and returns the
    cache to keep; ``dirty`` when that cache differs from the one it was given."""

    def __init__(self, skip: set[str], prefix: str, now: int) -> None:
        self.skip, self.prefix, self.now = skip, prefix, now
        self.findings: list[Finding] = []
        self.counts = {"packages": 0, "parsed": 0, "checked": 0, "hashed": 0}
        self.dirty = False

    def check(self, old: dict, dpkg_info: Path, status: Path, diversions: Path) -> dict:
        installed = _installed(status)
        self.diverted = _diversions(diversions)
        old_packages, old_conffiles = old.get("packages", {}), old.get("conffiles", {})
        new: dict = {"version": CACHE_VERSION, "packages": {}, "conffiles": {}}
        records: list[tuple[str, str, _Files]] = []  # (key, package name, its files)
        info = str(dpkg_info)
        for key in sorted(installed):
            name, conffiles = installed[key]
            self.counts["packages"] += 1
            md5sums = f"{info}/{key}.md5sums"
            stamp = _stamp(md5sums)
            if stamp is None and key != name:  # an arch-qualified package dpkg files without its arch
                md5sums = f"{info}/{name}.md5sums"
                stamp = _stamp(md5sums)
            cached = old_packages.get(key)
            if stamp is None:
                files = _Files([], "", b"", {})
            elif cached is not None and cached[0] == stamp:
                files = cached[1]
            else:
                files = _Files.fresh(_parse_md5sums(md5sums, {p for p, _ in conffiles}), cached[1] if cached else None)
                self.counts["parsed"] += 1
                self.dirty = True
            new["packages"][key] = (stamp, files)
            records.append((key, name, files))
            if conffiles:
                was = old_conffiles.get(key)
                if was is None or was.paths != [p for p, _ in conffiles] or was.md5s != "".join(
                        m for _, m in conffiles):
                    was = _Files.fresh(conffiles, was)
                    self.dirty = True
                new["conffiles"][key] = was
                records.append((key, name, was))
        not_theirs = _not_theirs(records, dpkg_info)
        diverted = set(self.diverted)
        for key, name, files in records:
            exclude = not_theirs.get(key, set())
            if not exclude and self.skip.isdisjoint(files.paths) and diverted.isdisjoint(files.paths) and (
                    self._unchanged(files)):
                self.counts["checked"] += len(files.paths)
                for path, had in files.had.items():
                    self.findings.append(_differs(path, key, had))
            else:
                self._verify(key, name, files, exclude)
        return new

    def _unchanged(self, files: _Files) -> bool:
        """Whether every file still has the tuple it had when it was hashed (one pass in C)."""
        paths = files.paths if not self.prefix else [self.prefix + p for p in files.paths]
        try:
            now = list(map(_TUPLE, map(os.lstat, paths)))
        except OSError:
            return False
        return now == list(_PACK.iter_unpack(files.stats))

    def _verify(self, key: str, name: str, files: _Files, exclude: set[str]) -> None:
        """File by file: lstat, hash what changed, findings; ``files`` updated in place."""
        old = list(_PACK.iter_unpack(files.stats))
        stats, had = [], {}
        for i, path in enumerate(files.paths):
            expected = files.md5s[32 * i:32 * i + 32]
            where = path
            divert = self.diverted.get(path)
            if divert is not None and divert[1] != name:
                where = divert[0]
            if where in self.skip or path in exclude:
                stats.append(old[i])
                if path in files.had:
                    had[path] = files.had[path]
                continue
            self.counts["checked"] += 1
            try:
                st = os.lstat(self.prefix + where)
            except (FileNotFoundError, NotADirectoryError):
                self.findings.append(Finding(CATEGORY, where, "-", f"missing (package {key})", "reinstall", key))
                stats.append(_UNTRUSTED)
                continue
            tup = _TUPLE(st)
            if tup == old[i] and tup != _UNTRUSTED:
                got = files.had.get(path, expected)
            elif not stat.S_ISREG(st.st_mode):
                got, tup = "", _UNTRUSTED
            else:
                self.counts["hashed"] += 1
                got, after = _md5(self.prefix + where, st)
                trusted = after is not None and self.now - after.st_ctime_ns > RACY_NS
                if old[i] != _UNTRUSTED and got == expected and tup[_ACCESS] != old[i][_ACCESS]:
                    # same bytes, another mode or owner (a chmod u+s, a chown to an app user): held
                    # as first seen, reported until the package puts them back
                    self.findings.append(_access_differs(where, key, old[i], tup))
                    tup = old[i]
                else:
                    tup = _TUPLE(after) if trusted else _UNTRUSTED
            stats.append(tup)
            if got != expected:
                had[path] = got
                self.findings.append(_differs(where, key, got))
        packed = b"".join(_PACK.pack(*t) for t in stats)
        if packed != files.stats or had != files.had:
            files.stats, files.had = packed, had
            self.dirty = True


def _access_differs(path: str, key: str, was: tuple, now: tuple) -> Finding:
    parts = []
    if was[5] != now[5]:
        parts.append(f"mode {stat.S_IMODE(was[5]):04o} -> {stat.S_IMODE(now[5]):04o}")
    if was[6:8] != now[6:8]:
        parts.append(f"owner {was[6]}:{was[7]} -> {now[6]}:{now[7]}")
    return Finding(CATEGORY, path, "~", f"{', '.join(parts)} since it was last checked (package {key})",
                   "reinstall", key)


def _differs(path: str, key: str, got: str) -> Finding:
    why = "md5" if got else "not a regular file"
    return Finding(CATEGORY, path, "~", f"differs from package {key}'s ({why})", "reinstall", key)


def _not_theirs(records: list[tuple[str, str, _Files]], dpkg_info: Path) -> dict[str, set[str]]:
    """Paths more than one package lists (a diverted file and its diverter's, a file another package
    took over), for each package whose file list (``.list``) no longer holds them: key -> those
    paths. dpkg's file lists name a diverted file by its original path."""
    total = sum(len(files.paths) for _, _, files in records)
    if len(set().union(*(files.paths for _, _, files in records))) == total:
        return {}
    counted = Counter(p for _, _, files in records for p in files.paths)
    shared = {p for p, n in counted.items() if n > 1}
    out: dict[str, set[str]] = {}
    for key, name, files in records:
        mine = shared.intersection(files.paths)
        if not mine:
            continue
        listed: set[str] | None = None
        for candidate in (key, name):
            with contextlib.suppress(FileNotFoundError):
                listed = set((dpkg_info / f"{candidate}.list").read_bytes().decode(
                    "utf-8", "surrogateescape").split("\n"))
                break
        if listed is None:  # no file list: dpkg's database is damaged; better a finding than a blind spot
            continue
        if mine - listed:
            out.setdefault(key, set()).update(mine - listed)
    return out


def _md5(path: str, seen: os.stat_result) -> tuple[str, os.stat_result | None]:
    """The md5 of the regular file at ``path`` read through a descriptor that follows no link and
    is the inode ``lstat`` saw, with its stat after reading (None when it changed while read: the
    md5 is still what was read, but not to be trusted next time)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return "", None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISREG(st.st_mode):
            return "", None
        h = hashlib.md5(usedforsecurity=False)
        while chunk := os.read(fd, _READ):
            h.update(chunk)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    same = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return h.hexdigest(), after if same else None


# -- the cache ---------------------------------------------------------------------------------------------------


def _load(cache: Path) -> dict:
    """The cache root wrote, as {"packages": {key: (md5sums stamp, _Files)}, "conffiles": {key:
    _Files}}: {} when there is none or it cannot be understood (a cold run); a package's record
    that cannot be understood is left out (that package is read again).
    Refused (UnsafePath) when it is a link or not a regular file of root's own, 0600 at most."""
    root_dir(cache.parent)
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UnsafePath(cache, f"cannot be opened without following a link ({e.strerror})") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(cache, "not a regular file")
        if st.st_uid != 0:
            raise UnsafePath(cache, "not root's")
        if st.st_mode & 0o077:
            raise UnsafePath(cache, "readable or writable by others than root")
        try:
            data = json.loads(f.read())
        except ValueError:
            return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(
            data.get("packages"), dict) or not isinstance(data.get("conffiles"), dict):
        return {}
    packages, conffiles = {}, {}
    for key, value in data["packages"].items():
        if isinstance(value, list) and len(value) == 2 and (files := _Files.from_json(value[1])) is not None:
            packages[key] = (value[0], files)
    for key, value in data["conffiles"].items():
        if (files := _Files.from_json(value)) is not None:
            conffiles[key] = files
    return {"packages": packages, "conffiles": conffiles}


def _save(cache: Path, data: dict) -> None:
    """What ``_Run.check`` returned, atomically: an exclusive temporary file (0600, root's)
    renamed over the cache (a rename replaces a link planted there instead of following it)."""
    root_dir(cache.parent)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.new")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({
                "version": data["version"],
                "packages": {key: [stamp, files.to_json()] for key, (stamp, files) in data["packages"].items()},
                "conffiles": {key: files.to_json() for key, files in data["conffiles"].items()},
            }, separators=(",", ":")))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cache)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
