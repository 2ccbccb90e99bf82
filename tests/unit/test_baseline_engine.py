"""The baseline engine's checks and repairs on trees of a test's own (accounts and keys, held
installer files, ucf's files, the places, systemd's directories, listeners, the quarantine, the
command line). The package check and TLS have their own files; the whole engine on real hosts is
tests/integration/test_baseline.py."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from baseline_engine import accounts, cli, held, places, sockets, systemd, ucf
from baseline_engine.findings import Finding
from baseline_engine.quarantine import Quarantine
from baseline_engine.settings import Account, Allowed, BaselineSettings, Unit, settings_from
from engine_common import contract

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyAKeyAKeyAKeyAKeyAKeyAKeyAKeyAKeyAKey ops@laptop"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyBKeyBKeyBKeyBKeyBKeyBKeyBKeyBKeyBKey intruder"


def _settings(tmp_path: Path, **over) -> BaselineSettings:
    values = dict(host="h", files=[], directories=[], units=[], enabled=[], accounts=[], privileged_groups={},
                  ports=[], allowed=[], tls=[], tls_min_days=20, quarantine=str(tmp_path / "q"),
                  state=str(tmp_path / "state"))
    values.update(over)
    return BaselineSettings(**values)


def _account(name: str, uid: int, home: Path, shell: str = "/usr/sbin/nologin"):
    return SimpleNamespace(pw_name=name, pw_uid=uid, pw_dir=str(home), pw_shell=shell)


@pytest.fixture
def people(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """root, a declared admin, an app user and whoever a test adds, with homes under tmp_path."""
    accounts_list = [_account("root", 0, tmp_path / "root", "/bin/bash"),
                     _account("ops", 1000, tmp_path / "ops", "/bin/bash"),
                     _account("app", 998, tmp_path / "app")]
    groups = {"sudo": ["ops"]}
    monkeypatch.setattr(accounts.pwd, "getpwall", lambda: accounts_list)
    monkeypatch.setattr(accounts.grp, "getgrnam",
                        lambda g: SimpleNamespace(gr_mem=groups[g]) if g in groups else (_ for _ in ()).throw(KeyError))
    return SimpleNamespace(list=accounts_list, groups=groups, home=lambda n: tmp_path / n)


def _keys(home: Path, *lines: str, name: str = "authorized_keys") -> Path:
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    path = home / ".ssh" / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _declared_accounts(tmp_path: Path) -> list[Account]:
    return [Account("root", str(tmp_path / "root"), [KEY_A]), Account("ops", str(tmp_path / "ops"), [KEY_A]),
            Account("app", str(tmp_path / "app"), [])]


def test_declared_keys_and_members_are_no_finding(tmp_path: Path, people) -> None:
    _keys(people.home("root"), "# a comment", KEY_A)
    _keys(people.home("ops"), f'from="10.0.0.1" {KEY_A}')  # options kept: the key is what counts
    settings = _settings(tmp_path, accounts=_declared_accounts(tmp_path), privileged_groups={"sudo": ["ops"]})
    assert accounts.check(settings) == []


def test_every_door_is_a_finding_with_its_repair(tmp_path: Path, people) -> None:
    people.list += [_account("toor", 0, tmp_path / "toor", "/bin/bash"),
                    _account("mallory", 1001, tmp_path / "mallory", "/bin/bash"),
                    _account("daemon", 1, tmp_path / "daemon")]
    people.groups["sudo"].append("app")
    _keys(people.home("root"), KEY_A, KEY_B)
    _keys(people.home("app"), KEY_B)
    _keys(people.home("ops"), KEY_A, name="authorized_keys2")
    _keys(people.home("daemon"), KEY_B)  # an account nobody declared: any key is a door
    settings = _settings(tmp_path, accounts=_declared_accounts(tmp_path), privileged_groups={"sudo": ["ops"]})
    found = {(f.category, f.path, f.repair) for f in accounts.check(settings)}
    assert found == {
        ("accounts", "toor", "remove-account"),
        ("accounts", "mallory", "lock-account"),
        ("accounts", "group sudo", "leave-group"),
        ("keys", str(people.home("root") / ".ssh/authorized_keys"), "remove-keys"),
        ("keys", str(people.home("app") / ".ssh/authorized_keys"), "remove-keys"),
        ("keys", str(people.home("ops") / ".ssh/authorized_keys2"), "remove-keys"),
        ("keys", str(people.home("daemon") / ".ssh/authorized_keys"), "remove-keys"),
    }
    root_keys = next(f for f in accounts.check(settings) if f.path.endswith("root/.ssh/authorized_keys"))
    assert "intruder" in root_keys.what and json.loads(root_keys.argument)["keep"] == [accounts.key_of(KEY_A)]


def test_keys_not_declared_yet_are_reported_naming_the_option_and_never_removed(tmp_path: Path, people) -> None:
    _keys(people.home("root"), KEY_A, KEY_B)
    _keys(people.home("ops"), KEY_A)
    declared = [Account("root", str(tmp_path / "root"), None, "ssh.root_authorized_keys"),
                Account("ops", str(tmp_path / "ops"), [], "admin.ssh_authorized_keys")]
    found = [f for f in accounts.check(_settings(tmp_path, accounts=declared)) if f.category == "keys"]
    by_path = {Path(f.path).parent.parent.name: f for f in found}
    assert by_path["root"].repair == "report"  # unset: an operator declares them, nothing is removed
    assert "2 key(s) while ssh.root_authorized_keys is not declared" in by_path["root"].what
    assert "declare them in ssh.root_authorized_keys" in by_path["root"].what
    assert by_path["ops"].repair == "remove-keys"  # []: no key at all
    assert json.loads(by_path["ops"].argument)["keep"] == []


def test_a_linked_authorized_keys_is_never_read_through(tmp_path: Path, people) -> None:
    (people.home("app") / ".ssh").mkdir(parents=True)
    secret = tmp_path / "shadow"
    secret.write_text(KEY_A + "\n")
    (people.home("app") / ".ssh/authorized_keys").symlink_to(secret)
    found = accounts.check(_settings(tmp_path, accounts=_declared_accounts(tmp_path)))
    assert [(f.what, f.repair) for f in found if f.category == "keys"] == [
        ("not a regular file: a link or something else: an operator must look", "report")]


def test_removing_keys_keeps_the_file_and_a_revert_puts_it_back(tmp_path: Path, people) -> None:
    path = _keys(people.home("root"), f"no-pty {KEY_A}", KEY_B)
    before = path.read_text()
    settings = _settings(tmp_path, accounts=_declared_accounts(tmp_path))
    (finding,) = [f for f in accounts.check(settings) if f.category == "keys"]
    finding = Finding(finding.category, finding.path, finding.mark, finding.what, finding.repair,
                      json.dumps({"user": pwd.getpwuid(os.getuid()).pw_name, "keep": [accounts.key_of(KEY_A)]}))
    quarantine, pending = Quarantine(str(tmp_path / "q")), tmp_path / "state" / "keys-pending.json"
    accounts.keep_keys(finding, quarantine, pending)
    assert path.read_text() == f"no-pty {KEY_A}\n"  # the declared line with its options
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert (quarantine.dir / str(path).lstrip("/")).read_text() == before
    assert accounts.revert_keys(pending) == [str(path)]
    assert path.read_text() == before and not pending.exists()


# -- held installer files ---------------------------------------------------------------------------

@pytest.fixture
def installer_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "resolv.conf").write_text("nameserver 10.0.0.1\n")
    monkeypatch.setattr(held, "CANDIDATES", (str(etc / "resolv.conf"), str(etc / "absent")))
    monkeypatch.setattr(held, "owned", lambda p: False)
    monkeypatch.setattr(ucf, "registry", lambda root=None: {})
    return etc


def test_a_held_file_is_held_on_first_sight_then_a_change_is_drift_and_repaired(tmp_path: Path,
                                                                                 installer_files: Path) -> None:
    settings = _settings(tmp_path)
    resolv = installer_files / "resolv.conf"
    assert [(f.mark, f.repair) for f in held.check(settings)] == [("-", "restore")]
    assert held.record_missing(settings) == [str(resolv)]
    assert held.check(settings) == []
    resolv.write_text("nameserver 10.0.0.1\nnameserver 10.9.9.9\nDB_PASSWORD=hunter2\n")
    (finding,) = held.check(settings)
    assert (finding.mark, finding.what) == ("~", "changed since the converge that held it")
    assert "+nameserver 10.9.9.9" in finding.diff and "hunter2" not in finding.diff
    assert held.restore(settings, str(resolv)) and resolv.read_text() == "nameserver 10.0.0.1\n"
    assert stat.S_IMODE(resolv.stat().st_mode) == 0o644  # as it was held, never the root-only copy's 0600


def test_a_held_files_mode_is_held_too(tmp_path: Path, installer_files: Path) -> None:
    """A resolver everyone must read made root-only (apt's _apt cannot resolve), or a file made
    writable by all: drift, and put back with the held mode."""
    settings = _settings(tmp_path)
    resolv = installer_files / "resolv.conf"
    resolv.chmod(0o644)
    held.record_missing(settings)
    for mode in (0o600, 0o666):
        resolv.chmod(mode)
        (finding,) = held.check(settings)
        assert (finding.mark, finding.what, finding.diff) == ("~", f"mode {mode:04o}, held 0644", "")
        held.restore(settings, str(resolv))
        assert stat.S_IMODE(resolv.stat().st_mode) == 0o644 and held.check(settings) == []


def test_a_copy_held_before_modes_were_gets_its_mode_held_by_the_next_converge(tmp_path: Path,
                                                                              installer_files: Path) -> None:
    settings = _settings(tmp_path)
    resolv = installer_files / "resolv.conf"
    held.record_missing(settings)
    meta = held.record_of(settings, str(resolv)).with_name("resolv.conf.iac-stat")
    meta.unlink()
    (finding,) = held.check(settings)
    assert (finding.mark, finding.repair) == ("-", "restore") and "not held yet" in finding.what
    assert held.restore(settings, str(resolv)) is False  # nothing put back: held as it is
    assert held.check(settings) == []
    resolv.chmod(0o600)
    assert [f.what for f in held.check(settings)] == ["mode 0600, held 0644"]


def test_a_held_file_a_maintainer_script_rewrote_is_the_hosts_own_life(tmp_path: Path, installer_files: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """pam-auth-update in a package's postinst, pg_updateaptconfig on a new PostgreSQL: the file
    changes inside a dpkg run that began after it was held. Not drift; the next converge holds it
    anew. The same edit outside any dpkg run is drift."""
    settings = _settings(tmp_path)
    resolv = installer_files / "resolv.conf"
    held.record_missing(settings)
    time.sleep(1.1)  # dpkg logs whole seconds
    log = tmp_path / "dpkg.log"
    monkeypatch.setattr(held, "DPKG_LOGS", (tmp_path / "dpkg.log.1", log))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    resolv.write_text("nameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    log.write_text(f"{started} startup packages configure\n{time.strftime('%Y-%m-%d %H:%M:%S')} status installed "
                   "libnss-x:amd64 1.0\n")
    held.dpkg_runs.cache_clear()
    assert held.check(settings) == []  # and the check holds what the package wrote
    assert held.record_of(settings, str(resolv)).read_text() == resolv.read_text()
    log.write_text("2020-01-01 00:00:00 startup packages configure\n")  # no run covers what follows
    held.dpkg_runs.cache_clear()
    assert held.check(settings) == []
    time.sleep(1.1)
    resolv.write_text("nameserver 10.9.9.9\n")
    (finding,) = held.check(settings)
    assert finding.what == "changed since the converge that held it"
    held.restore(settings, str(resolv))
    assert resolv.read_text() == "nameserver 10.0.0.1\nnameserver 10.0.0.2\n"


def test_a_held_file_replaced_by_a_link_is_drift(tmp_path: Path, installer_files: Path) -> None:
    settings = _settings(tmp_path)
    held.record_missing(settings)
    resolv = installer_files / "resolv.conf"
    resolv.unlink()
    resolv.symlink_to("/tmp/elsewhere")
    (finding,) = held.check(settings)
    assert finding.what.startswith("replaced by a link to /tmp/elsewhere")
    held.restore(settings, str(resolv))
    assert not resolv.is_symlink() and resolv.read_text() == "nameserver 10.0.0.1\n"


# -- ucf --------------------------------------------------------------------------------------------

def test_a_ucf_file_is_checked_against_ucfs_md5_and_restored_from_its_cache(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root, conf = tmp_path / "ucf", tmp_path / "sshd_config"
    (root / "cache").mkdir(parents=True)
    shipped = b"PermitRootLogin prohibit-password\n"
    conf.write_bytes(shipped)
    ucf.cached(str(conf), root).write_bytes(shipped)
    (root / "registry").write_text(f"openssh-server \t {conf}\n")
    (root / "hashfile").write_text(f"{hashlib.md5(shipped).hexdigest()}  {conf}\n")  # noqa: S324
    monkeypatch.setattr(ucf, "UCF", root)
    ucf.registry.cache_clear()
    ucf.hashes.cache_clear()
    assert ucf.check(set()) == []
    conf.write_bytes(shipped + b"PermitEmptyPasswords yes\n")
    (finding,) = ucf.check(set())
    assert (finding.mark, finding.repair, finding.argument) == ("~", "restore", "ucf")
    assert ucf.check({str(conf)}) == []  # a file this repository writes is its own operation's
    ucf.restore(str(conf))
    assert conf.read_bytes() == shipped
    ucf.cached(str(conf), root).write_bytes(b"tampered\n")
    with pytest.raises(RuntimeError, match="not the version ucf recorded"):
        ucf.restore(str(conf))
    ucf.registry.cache_clear()
    ucf.hashes.cache_clear()


# -- the places and systemd's directories -------------------------------------------------------------

def test_a_place_holds_only_declared_allowed_or_packaged_files(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "sudoers.d"
    d.mkdir()
    for name in ("README", "ours", "allowed", "evil"):
        (d / name).write_text("x\n")
    monkeypatch.setattr(places, "PLACES", {"sudoers": ((str(d),), ())})
    monkeypatch.setattr(places, "owned", lambda p: p.endswith("README"))
    monkeypatch.setattr(places.ucf, "registry", lambda root=None: {})
    settings = _settings(tmp_path, files=[str(d / "ours")], allowed=[Allowed(str(d / "allowed"), "why")])
    assert [(f.category, f.path, f.mark, f.repair) for f in places.check(settings)] == [
        ("sudoers", str(d / "evil"), "+", "quarantine")]


def test_unit_files_drop_ins_and_links_nobody_declared(tmp_path: Path, monkeypatch) -> None:
    top = tmp_path / "system"
    (top / "app.service.d").mkdir(parents=True)
    (top / "multi-user.target.wants").mkdir()
    (top / "app.service").write_text("[Service]\n")
    (top / "app.service.d/ours.conf").write_text("[Service]\n")
    (top / "app.service.d/override.conf").write_text("[Service]\nUser=root\n")
    (top / "evil.service").write_text("[Service]\n")
    (top / "multi-user.target.wants/app.service").symlink_to(top / "app.service")
    (top / "multi-user.target.wants/evil.service").symlink_to(top / "evil.service")
    (top / "multi-user.target.wants/ssh.service").symlink_to("/lib/systemd/system/ssh.service")
    monkeypatch.setattr(systemd, "UNIT_DIRS", (str(top),))
    monkeypatch.setattr(systemd, "owned", lambda p: False)
    monkeypatch.setattr(systemd, "package_enabled", lambda: frozenset({"multi-user.target.wants/ssh.service"}))
    monkeypatch.setattr(systemd, "postinst_enabled", lambda: frozenset())
    settings = _settings(tmp_path, files=[str(top / "app.service"), str(top / "app.service.d/ours.conf")],
                         units=[Unit("app.service", "app", "app", [str(top / "app.service.d/ours.conf")])],
                         enabled=["app.service"])
    found = {(f.category, f.path.removeprefix(str(top) + "/"), f.repair) for f in systemd.files(settings)}
    assert found == {("systemd", "app.service.d/override.conf", "quarantine"),
                     ("systemd", "evil.service", "quarantine"),
                     ("units", "multi-user.target.wants/evil.service", "quarantine")}
    assert systemd.unit_of_drop_in(str(top / "app.service.d/override.conf")) == "app.service"


def test_listeners_are_read_from_proc(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (net / "tcp").write_text(header + "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 "
                             "00000000     0        0 1111 1 0 100 0 0 10 0\n"
                             "   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 "
                             "00000000   102        0 2222 1 0 100 0 0 10 0\n"
                             "   2: 0100007F:1538 0100007F:9C40 01 00000000:00000000 00:00000000 "
                             "00000000   102        0 3333 1 0 100 0 0 10 0\n")
    assert sockets.listening(str(net)) == [("tcp", "*", 22, "1111"), ("tcp", "127.0.0.1", 5432, "2222")]


# -- the quarantine, the settings, the command line -------------------------------------------------

def test_the_quarantine_keeps_links_as_links_and_writes_a_manifest(tmp_path: Path) -> None:
    link = tmp_path / "enabled"
    link.symlink_to("/etc/passwd")
    quarantine = Quarantine(str(tmp_path / "q"))
    kept = quarantine.keep(Finding("units", str(link), "+", "enabled by hand", "quarantine"))
    assert kept.is_symlink() and os.readlink(kept) == "/etc/passwd" and not link.exists()
    quarantine.note(Finding("accounts", "toor", "+", "has UID 0", "remove-account", "toor"), "toor:x:0:0", secret=True)
    manifest = json.loads(quarantine.write_manifest().read_text())
    assert [e["path"] for e in manifest["moved"]] == [str(link), "toor"]
    assert "toor:x:0:0" not in json.dumps(manifest)  # a shadow line is kept in a file of its own
    assert oct(quarantine.dir.stat().st_mode & 0o777) == "0o700"


def test_settings_refuse_an_unknown_key_and_the_command_line_says_how_to_call_it(tmp_path: Path, capsys) -> None:
    good = contract.dump(_settings(tmp_path))
    assert settings_from(json.dumps(good)) == _settings(tmp_path)
    assert cli.main(["check", json.dumps({**good, "extra": 1})]) == 2
    assert "unknown key(s) extra" in capsys.readouterr().err
    assert cli.main(["check"]) == 2 and "Usage: iac_baseline.py" in capsys.readouterr().err


def test_a_finding_refuses_an_unknown_mark_or_repair() -> None:
    with pytest.raises(ValueError):
        Finding("systemd", "/x", "?", "what")
    with pytest.raises(ValueError):
        Finding("systemd", "/x", "+", "what", "delete")


# -- set-ID files -----------------------------------------------------------------------------------

def test_the_set_id_walk_reads_again_only_what_moved_and_is_not_fooled_by_a_chmod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from baseline_engine import setuid

    root = tmp_path / "usr"
    (root / "bin").mkdir(parents=True)
    (root / "skip").mkdir()
    (root / "bin/tool").write_text("#!/bin/sh\n")
    (root / "bin/packaged").write_text("binary\n")
    (root / "skip/rootsh").write_text("x")
    (root / "skip/rootsh").chmod(0o4755)
    owned = {str(root / "bin/packaged")}
    monkeypatch.setattr(setuid, "owned", lambda p: p in owned)
    record = tmp_path / "state" / "setuid-walk.json"
    walk = lambda: setuid.candidates(record, roots=(str(root),), skip=frozenset({str(root / "skip")}))  # noqa: E731
    assert walk() == [] and record.exists()  # a skipped tree is never read
    reads = []
    real_read = setuid._read
    monkeypatch.setattr(setuid, "_read", lambda d, s: reads.append(d) or real_read(d, s))
    assert walk() == [] and reads == []  # warm: no directory read again
    (root / "bin/tool").chmod(0o4755)  # moves the file's ctime only, never its directory's
    assert walk() == [str(root / "bin/tool")] and reads == []
    (root / "bin/new").write_text("x")
    (root / "bin/new").chmod(0o2755)
    assert sorted(walk()) == [str(root / "bin/new"), str(root / "bin/tool")] and reads == [str(root / "bin")]
    (root / "bin/packaged").chmod(0o4755)  # a package's own file: the package check's (dpkg's checksums)
    assert str(root / "bin/packaged") not in walk()
