"""TLS as users see it (baseline_engine/tls.py, issue 21): real certificates made with the openssl
CLI (a root, an intermediate as an ACME CA has, leaves good and bad), each served by a small TLS
server on 127.0.0.1, checked through the same handshakes and openssl commands a host runs."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baseline_engine import tls
from baseline_engine.findings import Finding

NAME = "pravoo.in"
DAY = 86400


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


class Pki:
    """Everything made once in a directory: ``key(n)`` a private key, ``ca(n)`` a self-signed CA,
    ``issue(...)`` a certificate signed by a CA; paths returned."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.serial = 1

    def key(self, n: str) -> Path:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{n}.key", cwd=self.d)
        return self.d / f"{n}.key"

    def _ext(self, n: str, lines: list[str]) -> Path:
        (self.d / f"{n}.ext").write_text("\n".join(lines) + "\n")
        return self.d / f"{n}.ext"

    def ca(self, n: str, days: int = 3650) -> Path:
        key = self.key(n)
        ext = self._ext(n, ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                            "subjectKeyIdentifier=hash"])
        openssl("req", "-new", "-key", key, "-subj", f"/CN=Test {n}", "-out", f"{n}.csr", cwd=self.d)
        openssl("x509", "-req", "-in", f"{n}.csr", "-signkey", key, "-days", days, "-extfile", ext,
                "-out", f"{n}.pem", cwd=self.d)
        return self.d / f"{n}.pem"

    def issue(self, n: str, key: Path, issuer: str | None, san: list[str] | None, days: int = 90,
              ca: bool = False, cn: str = NAME) -> Path:
        """A certificate for ``key`` signed by CA ``issuer`` (None: self-signed), with these SAN
        lines (None: no SAN at all)."""
        lines = ["basicConstraints=critical,CA:TRUE" if ca else "basicConstraints=CA:FALSE"]
        lines += ["keyUsage=critical,keyCertSign,cRLSign"] if ca else ["extendedKeyUsage=serverAuth"]
        if san is not None:
            lines += ["subjectAltName=@alt", "[alt]", *(f"DNS.{i} = {s}" for i, s in enumerate(san, 1))]
        ext = self._ext(n, lines)
        openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", f"{n}.csr", cwd=self.d)
        signer = (["-signkey", key] if issuer is None
                  else ["-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key"])
        self.serial += 1
        openssl("x509", "-req", "-in", f"{n}.csr", *signer, "-set_serial", self.serial, "-days", days,
                "-extfile", ext, "-out", f"{n}.pem", cwd=self.d)
        return self.d / f"{n}.pem"

    def chain(self, n: str, *pems: Path) -> Path:
        (self.d / f"{n}.chain.pem").write_text("".join(p.read_text() for p in pems))
        return self.d / f"{n}.chain.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """root -> intermediate -> leaf for pravoo.in (as pebble and Let's Encrypt issue), and the
    bad ones: self-signed, expiring, for another name, CN only, a forged SAN, another CA's."""
    d = tmp_path_factory.mktemp("pki")
    p = Pki(d)
    out: dict[str, Path] = {"root": p.ca("root"), "other_root": p.ca("other_root")}
    p.issue("inter", p.key("inter"), "root", None, days=3650, ca=True)
    p.issue("old_inter", p.key("old_inter"), "root", None, days=30, ca=True)
    p.issue("other_inter", p.key("other_inter"), "other_root", None, days=3650, ca=True)
    out["key"] = p.key("site")
    out["second_key"] = p.key("second")
    leaf = p.issue("good", out["key"], "inter", [NAME])
    out["good"] = p.chain("good", leaf, d / "inter.pem")
    out["leaf_only"] = p.chain("leaf_only", leaf)
    out["self_signed"] = p.chain("self_signed", p.issue("self_signed", out["key"], None, [NAME]))
    out["expiring"] = p.chain("expiring", p.issue("expiring", out["key"], "inter", [NAME], days=5), d / "inter.pem")
    out["other_name"] = p.chain("other_name", p.issue("other_name", out["key"], "inter", ["other.example"]),
                                d / "inter.pem")
    out["cn_only"] = p.chain("cn_only", p.issue("cn_only", out["key"], "inter", None), d / "inter.pem")
    # one SAN entry whose text reads "DNS:evil.example, DNS:pravoo.in" when openssl prints it
    out["forged_san"] = p.chain("forged_san", p.issue("forged_san", out["key"], "inter",
                                                       [f"evil.example, DNS:{NAME}"]), d / "inter.pem")
    out["other_ca"] = p.chain("other_ca", p.issue("other_ca", out["key"], "other_inter", [NAME]),
                              d / "other_inter.pem")
    out["old_chain"] = p.chain("old_chain", p.issue("old_chain", out["key"], "old_inter", [NAME], days=365),
                               d / "old_inter.pem")
    out["wildcard"] = p.chain("wildcard", p.issue("wildcard", out["key"], "inter", [f"*.{NAME}"]),
                              d / "inter.pem")
    out["second"] = p.chain("second", p.issue("second", out["second_key"], "inter", [NAME]), d / "inter.pem")
    out["other_ca_dir"] = d / "other_ca_dir"
    out["other_ca_dir"].mkdir()
    (out["other_ca_dir"] / "other_root.pem").write_text(out["other_root"].read_text())
    openssl("rehash", out["other_ca_dir"], cwd=d)
    return out


class Server:
    """A TLS server on 127.0.0.1 serving one chain and key, one connection at a time."""

    def __init__(self, chain: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as s:
                    s.recv(1)  # until the client leaves
            except OSError:
                conn.close()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() (a bare close does not, on Linux)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def serve(pki: dict[str, Path]) -> Iterator:
    servers: list[Server] = []

    def start(chain: str, key: str = "key") -> int:
        servers.append(Server(pki[chain], pki[key]))
        return servers[-1].port

    yield start
    for s in servers:
        s.close()


def site(pki: dict[str, Path], port: int, key: str = "key", name: str = NAME) -> tls.Site:
    return tls.Site(name=name, port=port, ca_bundle=str(pki["root"]), key_path=str(pki[key]))


def whats(findings: list[Finding]) -> list[str]:
    assert all(f.category == "tls" for f in findings)
    return [f.what for f in findings]


def test_the_certificate_from_the_declared_ca_for_the_name_and_its_key_is_in_order(pki, serve) -> None:
    assert tls.check([site(pki, serve("good"))], 20) == []


def test_a_self_signed_certificate_is_named(pki, serve) -> None:
    findings = tls.check([site(pki, serve("self_signed"))], 20)
    assert findings == [Finding(category="tls", path=NAME, mark="~", repair="renew",
                                what="served certificate is self-signed, not from the declared CA")]


def test_a_certificate_from_another_ca_does_not_chain_even_if_the_system_trusts_that_ca(
        pki, serve, monkeypatch) -> None:
    # openssl's default store (here: the other CA) must not stand in for the declared bundle
    monkeypatch.setenv("SSL_CERT_DIR", str(pki["other_ca_dir"]))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki["other_root"]))
    [finding] = tls.check([site(pki, serve("other_ca"))], 20)
    assert finding.what.startswith("served certificate does not chain to the declared CA")
    assert (finding.path, finding.mark, finding.repair) == (NAME, "~", "renew")


def test_the_intermediate_comes_from_the_server_and_a_server_that_omits_it_fails(pki, serve) -> None:
    [finding] = tls.check([site(pki, serve("leaf_only"))], 20)
    assert finding.what == ("served certificate does not chain to the declared CA "
                            "(unable to get local issuer certificate)")


def test_an_expiring_certificate_says_its_days(pki, serve) -> None:
    port = serve("expiring")
    assert whats(tls.check([site(pki, port)], 20)) == ["expires in 4 days (under 20)"]
    assert tls.check([site(pki, port)], 4) == []  # 4 days and some hours: more than 4 days left


def test_the_clock_can_be_shifted_and_an_expired_leaf_still_has_its_chain_judged(pki, serve) -> None:
    port = serve("good")
    assert whats(tls.check([site(pki, port)], 20, now=time.time() + 75 * DAY)) == ["expires in 14 days (under 20)"]
    # expired: told in days, and nothing else (the chain is the declared CA's)
    assert whats(tls.check([site(pki, port)], 20, now=time.time() + 100 * DAY)) == ["expired 10 days ago"]
    # an expired self-signed leaf is still named as self-signed
    port = serve("self_signed")
    assert whats(tls.check([site(pki, port)], 20, now=time.time() + 100 * DAY)) == [
        "served certificate is self-signed, not from the declared CA", "expired 10 days ago"]


def test_an_expired_intermediate_is_named(pki, serve) -> None:
    port = serve("old_chain")
    assert tls.check([site(pki, port)], 20) == []
    assert whats(tls.check([site(pki, port)], 20, now=time.time() + 40 * DAY)) == [
        "a CA certificate in the served chain has expired (depth 1)"]


def test_a_certificate_for_another_name_does_not_cover_the_name(pki, serve) -> None:
    assert whats(tls.check([site(pki, serve("other_name"))], 20)) == [f"does not cover {NAME}"]


def test_the_subject_cn_alone_does_not_cover_the_name(pki, serve) -> None:
    assert whats(tls.check([site(pki, serve("cn_only"))], 20)) == [f"does not cover {NAME}"]


def test_a_san_entry_that_prints_like_the_name_does_not_cover_it(pki, serve) -> None:
    printed = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", pki["forged_san"]],
                             capture_output=True, text=True, check=True).stdout
    assert f"DNS:{NAME}" in printed  # what a text parser would have believed
    assert whats(tls.check([site(pki, serve("forged_san"))], 20)) == [f"does not cover {NAME}"]


def test_a_wildcard_covers_one_label_below(pki, serve) -> None:
    port = serve("wildcard")
    assert tls.check([site(pki, port, name=f"www.{NAME}")], 20) == []
    assert whats(tls.check([site(pki, port)], 20)) == [f"does not cover {NAME}"]


@pytest.mark.parametrize(("entries", "name", "covered"), [
    ((NAME,), NAME, True),
    (("PRAVOO.IN.",), NAME, True),
    ((f"*.{NAME}",), f"a.{NAME}", True),
    ((f"*.{NAME}",), f"a.b.{NAME}", False),
    ((f"*.{NAME}",), NAME, False),
    (("*.in",), NAME, False),
    ((f"w*.{NAME}",), f"www.{NAME}", False),
    (("*",), NAME, False),
    ((), NAME, False),
])
def test_covers(entries: tuple[str, ...], name: str, covered: bool) -> None:
    assert tls.covers(entries, name) is covered


def test_a_certificate_for_another_key_does_not_match_the_key_on_disk(pki, serve) -> None:
    findings = tls.check([site(pki, serve("second", key="second_key"))], 20)
    assert findings == [Finding(category="tls", path=NAME, mark="~", repair="renew",
                                what=f"does not match the key on disk ({pki['key']})")]
    # the same served certificate held against its own key is in order
    assert tls.check([site(pki, serve("second", key="second_key"), key="second_key")], 20) == []


def test_a_missing_key_on_disk_is_named(pki, serve, tmp_path) -> None:
    s = tls.Site(name=NAME, port=serve("good"), ca_bundle=str(pki["root"]), key_path=str(tmp_path / "nokey.pem"))
    findings = tls.check([s], 20)
    assert [(f.mark, f.what) for f in findings] == [
        ("-", f"the key on disk ({tmp_path / 'nokey.pem'}) is missing or unreadable")]


def test_a_missing_ca_bundle_is_reported_not_renewed(pki, serve, tmp_path) -> None:
    s = tls.Site(name=NAME, port=serve("good"), ca_bundle=str(tmp_path / "none.pem"), key_path=str(pki["key"]))
    assert tls.check([s], 20) == [Finding(category="tls", path=NAME, mark="-", repair="report",
                                          what=f"the declared CA bundle {tmp_path / 'none.pem'} is missing")]


def test_nothing_answering_and_something_not_tls_are_no_tls_answer(pki) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(1)
    plain_port = plain.getsockname()[1]

    def answer() -> None:
        conn, _ = plain.accept()
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        findings = tls.check([site(pki, closed), site(pki, plain_port)], 20)
    finally:
        plain.close()
    assert [(f.mark, f.what, f.repair) for f in findings] == [
        ("-", f"no TLS answer on {closed} for {NAME}", "renew"),
        ("-", f"no TLS answer on {plain_port} for {NAME}", "renew")]


def test_several_sites_each_their_own_findings(pki, serve) -> None:
    good, bad = serve("good"), serve("other_name")
    findings = tls.check([site(pki, good), site(pki, bad)], 20)
    assert [(f.path, f.what) for f in findings] == [(NAME, f"does not cover {NAME}")]


def test_several_failures_of_one_certificate_are_each_named(pki, serve) -> None:
    findings = tls.check([site(pki, serve("self_signed"), key="second_key")], 20, now=time.time() + 80 * DAY)
    assert whats(findings) == ["served certificate is self-signed, not from the declared CA",
                               f"does not match the key on disk ({pki['second_key']})",
                               "expires in 9 days (under 20)"]


def test_the_sni_name_chooses_the_certificate(pki) -> None:
    """The check asks for the declared name: a server with another certificate for other names
    (nginx's default server) must not be what is judged."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["self_signed"], pki["key"])
    by_name = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    by_name.load_cert_chain(pki["good"], pki["key"])
    seen: list[str | None] = []

    def pick(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)
        if name == NAME:
            sock.context = by_name

    ctx.sni_callback = pick
    server = Server(pki["self_signed"], pki["key"])
    server.ctx = ctx
    try:
        assert tls.check([site(pki, server.port)], 20) == []
    finally:
        server.close()
    assert seen and set(seen) == {NAME}


def test_a_served_certificate_that_is_not_x509_is_named() -> None:
    with pytest.raises(ValueError):
        tls.read_leaf(b"\x30\x03\x02\x01\x01")
    with pytest.raises(ValueError):
        tls.read_leaf(b"\x30\x84\xff\xff\xff\xff")
    with pytest.raises(ValueError):
        tls.read_leaf(b"")


def test_read_leaf_reads_what_openssl_reads(pki) -> None:
    der = ssl.PEM_cert_to_DER_cert(pki["good"].read_text().split("-----END CERTIFICATE-----")[0]
                                   + "-----END CERTIFICATE-----\n")
    leaf = tls.read_leaf(der)
    assert leaf.dns_names == (NAME,)
    end = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", pki["good"]],
                         capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    assert leaf.not_after == ssl.cert_time_to_seconds(end)


@pytest.mark.parametrize("bad", [
    {"name": "-servername"}, {"name": "a b"}, {"name": "Pravoo.in"}, {"port": 0}, {"port": True},
    {"ca_bundle": "relative.pem"}, {"key_path": "/x\n/y"},
])
def test_site_refuses_what_cannot_be_a_declared_site(bad: dict) -> None:
    args = {"name": NAME, "port": 443, "ca_bundle": "/etc/ssl/certs/ca-certificates.crt", "key_path": "/k.pem"}
    with pytest.raises(ValueError):
        tls.Site(**{**args, **bad})


def test_site_as_certbot_keeps_it() -> None:
    s = tls.Site.certbot(NAME)
    assert (s.port, s.ca_bundle, s.key_path) == (443, "/etc/ssl/certs/ca-certificates.crt",
                                                 f"/etc/letsencrypt/live/{NAME}/privkey.pem")


def test_no_private_key_material_reaches_a_finding(pki, serve) -> None:
    findings = tls.check([site(pki, serve("second", key="second_key"))], 20, now=time.time() + 88 * DAY)
    key_text = pki["key"].read_text()
    body = "".join(key_text.splitlines()[1:-1])
    for f in findings:
        for value in f.to_dict().values():
            assert body[:16] not in value and "PRIVATE KEY" not in value


# --- the renewal timer (systemd is not PID 1 here: systemctl answers are faked) -------------------

class FakeSystemctl:
    def __init__(self, enabled: str = "enabled", active: str = "active",
                 show: str = "LoadState=loaded\nResult=success\nExecMainStatus=0\n") -> None:
        self.answers = {"is-enabled": enabled, "is-active": active, "show": show}
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        assert cmd[0] == "systemctl" and kw.get("timeout")
        self.calls.append(cmd)
        out = self.answers[cmd[1]]
        if isinstance(out, BaseException):
            raise out
        good = {"is-enabled": "enabled", "is-active": "active"}.get(cmd[1])
        rc = 0 if good is None or out.strip() == good else (3 if cmd[1] == "is-active" else 1)
        return subprocess.CompletedProcess(cmd, rc, out + "\n" if good else out, "")


@pytest.fixture
def systemctl(monkeypatch: pytest.MonkeyPatch):
    def install(**answers) -> FakeSystemctl:
        fake = FakeSystemctl(**answers)
        monkeypatch.setattr(tls.subprocess, "run", fake)
        return fake
    return install


def test_an_enabled_active_timer_whose_last_run_succeeded_is_in_order(systemctl) -> None:
    fake = systemctl()
    assert tls.timer_check() == []
    assert fake.calls == [["systemctl", "is-enabled", "certbot.timer"], ["systemctl", "is-active", "certbot.timer"],
                          ["systemctl", "show", "-p", "LoadState,Result,ExecMainStatus", "certbot.service"]]


def test_a_service_that_never_ran_is_in_order(systemctl) -> None:
    systemctl(show="LoadState=loaded\nResult=success\nExecMainStatus=0\n")
    assert tls.timer_check() == []


@pytest.mark.parametrize(("answers", "what"), [
    ({"enabled": "disabled"}, "certbot.timer is disabled, not enabled"),
    ({"enabled": "masked"}, "certbot.timer is masked, not enabled"),
    ({"active": "inactive"}, "certbot.timer is inactive, not active"),
    ({"show": "LoadState=loaded\nResult=exit-code\nExecMainStatus=1\n"},
     "last run of certbot.service failed: exit-code (status 1)"),
    ({"show": "LoadState=not-found\nResult=success\nExecMainStatus=0\n"}, "certbot.service is not-found, not loaded"),
    ({"show": ""}, "cannot read certbot.service's last run from systemd"),
    ({"show": "LoadState=loaded\nResult=\x1b[31mfail\x07\nExecMainStatus=2\n"},
     "last run of certbot.service failed: ?[31mfail? (status 2)"),
])
def test_each_renewal_failure_is_one_finding(systemctl, answers: dict, what: str) -> None:
    systemctl(**answers)
    assert tls.timer_check() == [Finding(category="tls", path="certbot.timer", mark="~", what=what, repair="renew")]


def test_no_systemctl_is_a_finding_not_a_crash(systemctl) -> None:
    systemctl(enabled=FileNotFoundError("systemctl"), active=FileNotFoundError("systemctl"),
              show=FileNotFoundError("systemctl"))
    assert whats(tls.timer_check()) == ["systemd cannot be asked about certbot.timer (FileNotFoundError)"]


def test_unit_names_that_could_be_options_are_refused(systemctl) -> None:
    fake = systemctl()
    with pytest.raises(ValueError):
        tls.timer_check(timer="--now")
    with pytest.raises(ValueError):
        tls.timer_check(service="x.socket")
    assert fake.calls == []


def test_a_good_verdict_is_kept_for_the_day_and_judged_again_when_anything_it_stands_on_moves(
        pki, serve, tmp_path, monkeypatch) -> None:
    memo = tmp_path / "state" / "tls-verdicts.json"
    good = site(pki, serve("good"))
    assert tls.check([good], 20, memo=memo) == [] and memo.exists()
    judged = []
    real_chain, real_key = tls.chain_problem, tls.key_problem
    monkeypatch.setattr(tls, "chain_problem", lambda *a: judged.append("chain") or real_chain(*a))
    monkeypatch.setattr(tls, "key_problem", lambda *a: judged.append("key") or real_key(*a))
    assert tls.check([good], 20, memo=memo) == [] and judged == []  # the same bytes, key file and day
    assert tls.check([good], 20, now=time.time() + 2 * DAY, memo=memo) == [] and judged == ["chain", "key"]
    judged.clear()
    Path(good.key_path).write_bytes(Path(good.key_path).read_bytes())  # rewritten: its ctime moves
    assert tls.check([good], 20, memo=memo) == [] and judged == ["chain", "key"]
    judged.clear()
    # another certificate served: judged (and a failing verdict is never kept)
    bad = site(pki, serve("self_signed"))
    for _ in range(2):
        assert whats(tls.check([bad], 20, memo=memo)) == ["served certificate is self-signed, not from the declared CA"]
    assert judged.count("chain") == 2
    # expiry and names are checked every time, whatever the memo holds
    assert whats(tls.check([good], 20, now=time.time() + 75 * DAY, memo=memo)) == ["expires in 14 days (under 20)"]
