"""The baseline's package files check (files/usr/local/lib/iac/baseline_engine/packages.py) on a
small fake dpkg tree: an info directory with md5sums, a status file with conffiles, diversions, and
real files under a root of the test's own. What it must find (a same-size edit hidden behind the
old mtime, a missing file, a changed conffile, a file replaced by a link), what it must not (docs,
managed and allowed paths, packages that are not installed, an upgrade, even one in the middle of
a check), and that its cache makes a second run read nothing while staying root's own."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from baseline_engine import packages
from engine_common.safefs import UnsafePath

FILES = {  # package key -> {path: content}
    "tool": {"/usr/bin/tool": "#!/bin/sh\necho tool\n", "/usr/lib/tool/helper.py": "print('help')\n",
             "/usr/share/doc/tool/README": "docs\n", "/usr/share/man/man1/tool.1.gz": "man\n",
             "/usr/share/locale/de/LC_MESSAGES/tool.mo": "mo\n", "/usr/bin/pg_config": "#!/bin/sh\nwrapper\n"},
    "libx:amd64": {"/usr/lib/x86_64-linux-gnu/libx.so.1": "ELF libx\n", "/usr/bin/pg_config": "#!/bin/sh\nreal\n"},
    "extra": {"/usr/bin/extra": "extra\n", "/usr/bin/extra-local": "local\n"},
}
CONFFILES = {"tool": {"/etc/tool.conf": "setting = 1\n", "/etc/managed.conf": "managed = 1\n"}}
ON_DISK = {  # what is not where dpkg names it: libx's pg_config is diverted by tool
    "/usr/bin/pg_config.libx": FILES["libx:amd64"]["/usr/bin/pg_config"],
}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass
class Tree:
    """A host in a directory: ``root`` (the files), ``info`` and ``status`` (dpkg's database)."""

    base: Path
    files: dict[str, dict[str, str]] = field(default_factory=lambda: {k: dict(v) for k, v in FILES.items()})
    conffiles: dict[str, dict[str, str]] = field(default_factory=lambda: {k: dict(v) for k, v in CONFFILES.items()})

    def __post_init__(self) -> None:
        self.root, self.info, self.status = self.base / "root", self.base / "info", self.base / "status"
        self.cache = self.base / "state" / "packages.json"
        self.info.mkdir()
        for pkg, files in self.files.items():
            for path, text in files.items():
                if path != "/usr/bin/pg_config" or pkg == "tool":
                    self.put(path, text)
            self.write_md5sums(pkg)
            paths = [*self.files[pkg], *self.conffiles.get(pkg, {})]
            (self.info / f"{pkg}.list").write_text("".join(f"{p}\n" for p in ["/usr", "/usr/bin", *paths]))
        for pkg in self.conffiles:
            for path, text in self.conffiles[pkg].items():
                self.put(path, text)
        for path, text in ON_DISK.items():
            self.put(path, text)
        (self.base / "diversions").write_text("/usr/bin/pg_config\n/usr/bin/pg_config.libx\ntool\n")
        self.write_status()

    def put(self, path: str, text: str) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def write_md5sums(self, pkg: str) -> None:
        lines = "".join(f"{_md5(text)}  {path.lstrip('/')}\n" for path, text in self.files[pkg].items())
        tmp = self.info / f".{pkg}.md5sums.new"  # as dpkg does: a new file renamed into place
        tmp.write_text(lines)
        tmp.rename(self.info / f"{pkg}.md5sums")

    def write_status(self) -> None:
        conf = "".join(f" {path} {_md5(text)}\n" for path, text in self.conffiles["tool"].items())
        self.status.write_text(
            "Package: tool\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n"
            f"Conffiles:\n{conf} /etc/tool.d/old.conf 0123456789abcdef0123456789abcdef obsolete\n"
            " /etc/tool.d/new.conf newconffile\nDescription: a tool\n multi-line description\n\n"
            "Package: libx\nStatus: hold ok installed\nMulti-Arch: same\nArchitecture: amd64\nVersion: 2\n\n"
            "Package: extra\nStatus: install ok installed\nArchitecture: all\n\n"
            "Package: gone\nStatus: deinstall ok config-files\nArchitecture: all\n"
            "Conffiles:\n /etc/gone.conf 0123456789abcdef0123456789abcdef\n\n")

    def edit_same_size(self, path: str) -> None:
        """An edit an intruder hides: same size, mtime put back (ctime moves on regardless). The
        pause lets the coarse kernel clock tick, as it does between a check and a real edit."""
        target = self.root / path.lstrip("/")
        before = os.lstat(target)
        time.sleep(0.02)
        text = target.read_text()
        target.write_text(text[:-2] + ("X" if text[-2] != "X" else "Y") + text[-1])
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.lstat(target)
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        assert after.st_ctime_ns != before.st_ctime_ns

    def check(self, managed: set[str] | None = None, allowed: set[str] | None = None) -> tuple[list, dict]:
        stats: dict[str, int] = {}
        found = packages.check(managed or set(), allowed or set(), self.cache, self.info, self.status,
                               root=self.root, stats=stats)
        return found, stats

    def lines(self, **kw: set[str]) -> list[str]:
        return [f.line() for f in self.check(**kw)[0]]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tree:
    """The fake host, checked as if a while after its files were written (the racy-ctime guard
    would otherwise, rightly, distrust every file the test just made)."""
    monkeypatch.setattr(packages, "_now_ns", lambda: time.time_ns() + 10 * packages.RACY_NS)
    return Tree(tmp_path)


def test_a_clean_host_has_no_findings_and_a_warm_run_reads_nothing(tree: Tree) -> None:
    found, cold = tree.check()
    assert found == []
    # docs (/usr/share/doc, man, locale) are not checked; every other file and conffile is
    assert cold == {"packages": 3, "parsed": 3, "checked": 9, "hashed": 9}
    before = os.lstat(tree.cache)
    found, warm = tree.check()
    assert found == []
    assert warm == {"packages": 3, "parsed": 0, "checked": 9, "hashed": 0}
    assert os.lstat(tree.cache).st_ino == before.st_ino  # nothing changed: the cache is not rewritten


def test_a_same_size_edit_behind_the_old_mtime_is_found_with_a_warm_cache(tree: Tree) -> None:
    tree.check()
    tree.check()
    tree.edit_same_size("/usr/bin/tool")
    found, stats = tree.check()
    assert [(f.category, f.path, f.mark, f.what, f.repair, f.argument) for f in found] == [
        ("packages", "/usr/bin/tool", "~", "differs from package tool's (md5)", "reinstall", "tool")]
    assert stats["hashed"] == 1
    # known now: not read again, still reported
    found, stats = tree.check()
    assert [f.path for f in found] == ["/usr/bin/tool"] and stats["hashed"] == 0


def test_a_package_file_made_set_id_or_given_away_is_drift_until_the_package_puts_it_back(tree: Tree) -> None:
    """Same bytes, another mode or owner: chmod u+s on a package's binary is a door to root that
    dpkg's checksums cannot see. Held as first seen, reported on every check until it is back."""
    tree.check()
    tool = tree.root / "usr/bin/tool"
    mode = stat.S_IMODE(tool.stat().st_mode)
    time.sleep(0.02)
    tool.chmod(mode | stat.S_ISUID)
    for _ in range(2):  # not trusted from the cache once seen
        found, _stats = tree.check()
        assert [(f.path, f.what, f.repair, f.argument) for f in found] == [
            ("/usr/bin/tool", f"mode {mode:04o} -> {mode | stat.S_ISUID:04o} since it was last checked (package tool)",
             "reinstall", "tool")]
    os.chown(tool, 1234, 1234)
    (finding,) = tree.check()[0]
    assert "owner 0:0 -> 1234:1234" in finding.what
    os.chown(tool, 0, 0)
    tool.chmod(mode)  # as the package's reinstall puts it
    assert tree.check()[0] == [] and tree.check()[0] == []


def test_a_file_changed_right_after_its_check_is_not_trusted_from_the_cache(tmp_path: Path) -> None:
    """The racy case: with the real clock every file here is younger than RACY_NS, so the cache
    never vouches for it and each run hashes it (an edit in the same clock tick cannot hide)."""
    tree = Tree(tmp_path)
    assert tree.check()[0] == []
    assert tree.check()[1]["hashed"] == 9
    target = tree.root / "usr/bin/tool"
    st = os.lstat(target)
    target.write_text(target.read_text().replace("tool", "evil"))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tree.lines() == ["~ packages /usr/bin/tool: differs from package tool's (md5)"]


def test_a_missing_file_is_reported_for_its_package(tree: Tree) -> None:
    tree.check()
    (tree.root / "usr/lib/x86_64-linux-gnu/libx.so.1").unlink()
    (found,), _ = tree.check()
    assert (found.path, found.mark, found.what, found.repair, found.argument) == (
        "/usr/lib/x86_64-linux-gnu/libx.so.1", "-", "missing (package libx:amd64)", "reinstall", "libx:amd64")


def test_a_changed_conffile_is_drift(tree: Tree) -> None:
    tree.check()
    tree.edit_same_size("/etc/tool.conf")
    assert tree.lines() == ["~ packages /etc/tool.conf: differs from package tool's (md5)"]
    (tree.root / "etc/tool.conf").unlink()
    assert tree.lines() == ["- packages /etc/tool.conf: missing (package tool)"]


def test_managed_and_allowed_paths_are_left_to_their_owners(tree: Tree) -> None:
    tree.check()
    tree.edit_same_size("/etc/managed.conf")
    tree.edit_same_size("/usr/bin/extra-local")
    assert tree.lines() == ["~ packages /etc/managed.conf: differs from package tool's (md5)",
                            "~ packages /usr/bin/extra-local: differs from package extra's (md5)"]
    assert tree.lines(managed={"/etc/managed.conf"}, allowed={"/usr/bin/extra-local"}) == []
    # merged /usr: /bin/extra-local and /usr/bin/extra-local are one file
    assert tree.lines(managed={"/etc/managed.conf"}, allowed={"/bin/extra-local"}) == []
    found, stats = tree.check(managed={"/etc/managed.conf"}, allowed={"/usr/bin/extra-local"})
    assert stats["checked"] == 7


def test_documentation_is_not_checked(tree: Tree) -> None:
    tree.check()
    (tree.root / "usr/share/doc/tool/README").write_text("rewritten docs\n")
    (tree.root / "usr/share/man/man1/tool.1.gz").unlink()
    (tree.root / "usr/share/locale/de/LC_MESSAGES/tool.mo").write_text("other\n")
    assert tree.lines() == []


def test_only_installed_packages_and_current_conffiles_count(tree: Tree) -> None:
    """gone is removed (its conffile /etc/gone.conf missing), /etc/tool.d/old.conf is obsolete,
    /etc/tool.d/new.conf has no md5 yet: none of them is a finding though none exists."""
    for name in ("gone.conf", "tool.d/old.conf", "tool.d/new.conf"):
        assert not (tree.root / "etc" / name).exists()
    (tree.info / "gone.md5sums").write_text(f"{_md5('x')}  usr/bin/gone\n")  # left behind: not installed
    assert tree.lines() == []


def test_a_diverted_file_is_checked_where_dpkg_put_it(tree: Tree) -> None:
    """tool diverts /usr/bin/pg_config: libx's copy lives at /usr/bin/pg_config.libx, tool's own
    at /usr/bin/pg_config; each is held against its own package."""
    assert tree.lines() == []
    tree.edit_same_size("/usr/bin/pg_config.libx")
    tree.edit_same_size("/usr/bin/pg_config")
    assert tree.lines() == ["~ packages /usr/bin/pg_config: differs from package tool's (md5)",
                            "~ packages /usr/bin/pg_config.libx: differs from package libx:amd64's (md5)"]


def test_a_file_replaced_by_a_link_is_drift_and_never_followed(tree: Tree) -> None:
    """The link points at a file with the very content the package ships: still drift."""
    tree.check()
    target = tree.root / "usr/bin/extra"
    (tree.root / "tmp").mkdir()
    (tree.root / "tmp/copy").write_text(FILES["extra"]["/usr/bin/extra"])
    target.unlink()
    target.symlink_to(tree.root / "tmp/copy")
    assert tree.lines() == ["~ packages /usr/bin/extra: differs from package extra's (not a regular file)"]


def test_an_upgrade_is_not_drift_and_a_stale_expectation_is_not_trusted(tree: Tree) -> None:
    tree.check()
    tree.check()
    # unattended-upgrades: a new file and the md5sums that go with it, a new conffile in the status
    time.sleep(0.02)
    tree.files["tool"]["/usr/bin/tool"] = "#!/bin/sh\necho tool 1.1\n"
    tree.put("/usr/bin/tool", tree.files["tool"]["/usr/bin/tool"])
    tree.write_md5sums("tool")
    tree.conffiles["tool"]["/etc/tool.conf"] = "setting = 2\n"
    tree.put("/etc/tool.conf", "setting = 2\n")
    tree.write_status()
    found, stats = tree.check()
    assert found == [] and stats["parsed"] == 1
    # a package whose expected md5 changed while the file did not: the cache does not vouch for it
    tree.files["extra"]["/usr/bin/extra"] = "extra 2\n"
    tree.write_md5sums("extra")
    found, stats = tree.check()
    assert [f.line() for f in found] == ["~ packages /usr/bin/extra: differs from package extra's (md5)"]
    assert stats["hashed"] == 1


def test_an_upgrade_during_the_check_is_checked_again_not_reported(tree: Tree,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """dpkg replaces a file and its md5sums while the check reads the old md5sums: the database
    changed under the check, so the check runs again on the new one."""
    tree.check()
    real = packages._md5
    upgraded = []

    def upgrade_then_hash(path: str, seen: os.stat_result) -> tuple[str, os.stat_result | None]:
        if not upgraded:  # extra is hashed first; tool, whose md5sums was read already, is upgraded now
            upgraded.append(path)
            tree.files["tool"]["/usr/bin/tool"] = "#!/bin/sh\necho tool 1.2\n"
            tree.put("/usr/bin/tool", tree.files["tool"]["/usr/bin/tool"])
            tree.write_md5sums("tool")
        return real(path, seen)

    monkeypatch.setattr(packages, "_md5", upgrade_then_hash)
    tree.edit_same_size("/usr/bin/extra")
    assert tree.lines() == ["~ packages /usr/bin/extra: differs from package extra's (md5)"]
    assert upgraded == [str(tree.root / "usr/bin/extra")]


def test_a_file_two_packages_list_belongs_to_the_one_whose_file_list_holds_it(tree: Tree) -> None:
    """extra took /usr/bin/tool over from tool (Replaces): dpkg dropped it from tool's .list, not
    from tool's md5sums."""
    tree.files["extra"]["/usr/bin/tool"] = "taken over\n"
    tree.put("/usr/bin/tool", "taken over\n")
    tree.write_md5sums("extra")
    (tree.info / "tool.list").write_text("/usr\n/usr/bin\n/usr/lib/tool/helper.py\n")
    (tree.info / "extra.list").write_text("/usr/bin/extra\n/usr/bin/extra-local\n/usr/bin/tool\n")
    assert tree.lines() == []
    tree.edit_same_size("/usr/bin/tool")
    assert tree.lines() == ["~ packages /usr/bin/tool: differs from package extra's (md5)"]


def test_the_cache_is_root_only_and_refused_when_planted(tree: Tree) -> None:
    tree.check()
    st = os.lstat(tree.cache)
    assert st.st_uid == 0 and (st.st_mode & 0o777) == 0o600
    assert (os.lstat(tree.cache.parent).st_mode & 0o777) == 0o700
    assert json.loads(tree.cache.read_text())["version"] == packages.CACHE_VERSION
    os.chown(tree.cache, 1000, 1000)
    with pytest.raises(UnsafePath, match="not root's"):
        tree.check()
    os.chown(tree.cache, 0, 0)
    os.chmod(tree.cache, 0o644)
    with pytest.raises(UnsafePath, match="others"):
        tree.check()
    real = tree.base / "elsewhere.json"
    tree.cache.rename(real)
    tree.cache.symlink_to(real)
    with pytest.raises(UnsafePath, match="link"):
        tree.check()


def test_a_cache_that_cannot_be_understood_is_a_cold_run(tree: Tree) -> None:
    tree.check()
    tree.edit_same_size("/usr/bin/tool")
    for broken in ("{not json", json.dumps({"version": packages.CACHE_VERSION, "packages": {
            "tool": [[1, 2], [["/usr/bin/tool"], "short", "!!", {}]]}, "conffiles": {"tool": 7}})):
        tree.cache.write_text(broken)
        found, stats = tree.check()
        assert [f.path for f in found] == ["/usr/bin/tool"] and stats["hashed"] == 9


def test_reinstall_command_shape() -> None:
    plain = packages.reinstall_command(["tool", "libx:amd64", "tool"], [])
    assert plain[:5] == ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "--reinstall"]
    assert plain[-2:] == ["libx:amd64", "tool"]
    assert "Dpkg::Options::=--force-confold" in plain and "Dpkg::Options::=--force-confmiss" not in plain
    conf = packages.reinstall_command(["tool"], ["/etc/tool.conf"])
    i = conf.index("Dpkg::Options::=--force-confmiss")
    assert conf[i - 1] == "-o" and conf[-1] == "tool"
    assert "/etc/tool.conf" not in conf  # dpkg restores it because it is missing, not because it is named
    assert packages.reinstall_command([], []) == []
    for bad in ("-oAPT::Get::Whatever=1", "tool; rm -rf /", "Tool", ""):
        with pytest.raises(ValueError):
            packages.reinstall_command([bad], [])
    with pytest.raises(ValueError):
        packages.reinstall_command(["tool"], ["etc/tool.conf"])
