"""TLS as users see it (issue 21): for each declared name, what a client connecting to this host
with that name is served, held against the declaration: the certificate chains to the declared
ACME CA, matches the key on disk, covers the name and has more than ``min_days`` days left; and
the renewal timer is enabled, active, and its service's last run succeeded.

How, and why this way:
- the leaf is fetched with the standard library (a handshake that verifies nothing, with SNI =
  the name), so "nothing answers" is told apart from "something answers badly";
- the chain beyond the leaf comes from ``openssl s_client -showcerts``: Python 3.11 (Debian 12)
  cannot give the certificates a server sent besides the leaf (``get_unverified_chain`` is 3.13);
- the chain is judged by ``openssl verify`` against the declared CA bundle only (``-no-CApath
  -no-CAstore``: the system store must not rescue a certificate from another CA), with the served
  intermediates as untrusted, at the given time (``-attime``) and for a TLS server
  (``-purpose sslserver``). A second, verifying handshake would be shorter, but it stops at the
  first error and at the real clock: an expired leaf would hide "not from the declared CA";
  ``openssl verify`` goes on after an expired or self-signed leaf and says at which depth;
- the name and the expiry are read from the leaf's DER by the small reader below: the name from
  the subjectAltName's DNS entries only (as browsers do; never the subject's CN), matched exactly
  or by a whole left-most ``*`` label; text printed by ``openssl x509`` could be forged by a
  certificate (a SAN entry holding ``", DNS:pravoo.in"``), the DER cannot;
- the key: the public key of the leaf (``openssl x509 -pubkey``) and of the key on disk
  (``openssl pkey -pubout``), both written by OpenSSL, compared as bytes. The private key is only
  ever read by openssl; nothing of it reaches this process beyond its public half.

Everything read here (the served certificates, systemctl's answers) is treated as hostile: it is
parsed with bounds, never echoed beyond a short sanitized word, and never decides a path."""

from __future__ import annotations

import base64
import calendar
import contextlib
import hashlib
import os
import re
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from engine_common.safefs import UnsafePath, read_record, write_record

from .findings import Finding

OPENSSL = "openssl"
SYSTEMCTL = "systemctl"
TIMEOUT = 15  # seconds, every command and connection
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's store (Let's Encrypt's roots among them)
CERTBOT_LIVE = "/etc/letsencrypt/live"
DAY = 86400

# a DNS name as the model declares it (lower case, dots, no leading dash: safe as an argument)
NAME_RE = re.compile(r"^(?=.{1,253}$)((?!-)[a-z0-9-]{1,63}(?<!-)\.)*(?!-)[a-z0-9-]{1,63}(?<!-)$")
UNIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@_.:-]{0,200}\.(timer|service)$")
PEM_RE = re.compile(r"^-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END CERTIFICATE-----$",
                    re.MULTILINE)
VERIFY_ERROR_RE = re.compile(r"^(?:\[CRL path\] )?error (\d{1,4}) at (\d{1,3}) depth lookup: (.{0,200})$",
                             re.MULTILINE)

# openssl's X509_V_ERR_* codes this module names
ERR_UNABLE_TO_GET_ISSUER_CERT = 2
ERR_CERT_NOT_YET_VALID = 9
ERR_CERT_HAS_EXPIRED = 10
ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
NOT_FROM_CA = (ERR_UNABLE_TO_GET_ISSUER_CERT, ERR_SELF_SIGNED_CERT_IN_CHAIN,
               ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE)


@dataclass(frozen=True, kw_only=True)
class Site:
    """One declared name: ``name`` the DNS name clients ask for (SNI), ``port`` where the host
    serves it (on 127.0.0.1), ``ca_bundle`` the PEM file of the declared ACME CA's roots on the
    host, ``key_path`` the private key the served certificate must belong to."""

    name: str
    port: int = 443
    ca_bundle: str
    key_path: str

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"not a DNS name: {self.name!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ValueError(f"port {self.port!r}")
        for path in (self.ca_bundle, self.key_path):
            if not path.startswith("/") or "\0" in path or "\n" in path:
                raise ValueError(f"not an absolute path: {path!r}")

    @classmethod
    def certbot(cls, name: str, ca_bundle: str = SYSTEM_CA_BUNDLE, port: int = 443) -> Site:
        """The site as this repository declares it: certbot's lineage named after the domain
        (``/etc/letsencrypt/live/<name>/privkey.pem``; nginx reads it through /etc/iac/tls/<name>/,
        so a link pointed elsewhere shows as a key mismatch)."""
        return cls(name=name, port=port, ca_bundle=ca_bundle, key_path=f"{CERTBOT_LIVE}/{name}/privkey.pem")


# --- what the host serves ---------------------------------------------------------------------

def served_leaf(name: str, port: int, timeout: float = TIMEOUT) -> bytes | None:
    """The DER of the certificate 127.0.0.1:``port`` serves for SNI ``name``; None when nothing
    completes a TLS handshake there (closed port, not TLS, handshake refused, timeout)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock, \
                ctx.wrap_socket(sock, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)
    except (OSError, ValueError):  # ssl.SSLError and socket.timeout are OSErrors
        return None


def served_chain(name: str, port: int) -> list[bytes]:
    """Every certificate the server sends for ``name``, leaf first, as DER (``s_client -showcerts``:
    the standard library of Python 3.11 gives the leaf only). Empty when it cannot be read."""
    try:
        done = subprocess.run([OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
                               "-showcerts"], stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = done.stdout.decode("ascii", "replace")
    chain = []
    for body in PEM_RE.findall(out)[:10]:
        try:
            chain.append(base64.b64decode("".join(body.split()), validate=True))
        except ValueError:
            return []
    return chain


# --- reading a certificate's DER ---------------------------------------------------------------

def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The element at ``pos``: (tag, start of its content, end of its content), within ``end``."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tag")
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise ValueError("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos, end)
        yield tag, s, e
        pos = e


def _time(data: bytes, tag: int, start: int, end: int) -> float:
    text = data[start:end].decode("ascii")
    if tag == 0x17 and re.fullmatch(r"\d{12}Z", text):  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif not (tag == 0x18 and re.fullmatch(r"\d{14}Z", text)):  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("bad time")
    return float(calendar.timegm(time.strptime(text, "%Y%m%d%H%M%SZ")))


SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17 subjectAltName


@dataclass(frozen=True)
class Leaf:
    not_after: float  # seconds since the epoch
    dns_names: tuple[str, ...]  # the subjectAltName's DNS entries, as written


def read_leaf(der: bytes) -> Leaf:
    """The expiry and the DNS names of an X.509 certificate; ValueError if it is not one."""
    try:
        tag, s, e = _tlv(der, 0, len(der))
        if tag != 0x30 or e != len(der):
            raise ValueError("not a certificate")
        tag, s, e = _tlv(der, s, e)  # tbsCertificate
        if tag != 0x30:
            raise ValueError("not a certificate")
        fields = list(_children(der, s, e))
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        if len(fields) < 6 or fields[3][0] != 0x30:
            raise ValueError("not a certificate")
        validity = list(_children(der, fields[3][1], fields[3][2]))
        if len(validity) != 2:
            raise ValueError("bad validity")
        not_after = _time(der, *validity[1])
        names: list[str] = []
        for tag, s, e in fields[6:]:
            if tag != 0xA3:  # [3] extensions
                continue
            seq_tag, ss, se = _tlv(der, s, e)
            for ext_tag, xs, xe in _children(der, ss, se):
                if seq_tag != 0x30 or ext_tag != 0x30:
                    raise ValueError("bad extensions")
                parts = list(_children(der, xs, xe))
                if not parts or parts[0][0] != 0x06 or der[parts[0][1]:parts[0][2]] != SAN_OID:
                    continue
                value = parts[-1]
                if value[0] != 0x04:
                    raise ValueError("bad subjectAltName")
                gtag, gs, ge = _tlv(der, value[1], value[2])
                for ntag, ns, ne in _children(der, gs, ge):
                    if ntag == 0x82:  # [2] dNSName, an IA5String
                        names.append(der[ns:ne].decode("ascii"))
        return Leaf(not_after=not_after, dns_names=tuple(names))
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None


def covers(dns_names: tuple[str, ...], name: str) -> bool:
    """Whether a certificate with these SAN DNS entries is valid for ``name``: the same name (case
    aside), or ``*.<rest>`` for a name of exactly one more label (RFC 6125, as browsers do)."""
    name = name.lower().rstrip(".")
    for entry in dns_names:
        entry = entry.lower().rstrip(".")
        if entry == name:
            return True
        if entry.startswith("*.") and "*" not in entry[2:] and entry.count(".") >= 2:
            head, _, rest = name.partition(".")
            if head and rest == entry[2:]:
                return True
    return False


# --- the checks -------------------------------------------------------------------------------

def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def chain_problem(leaf: bytes, intermediates: list[bytes], ca_bundle: str, at: float) -> str | None:
    """What is wrong with the served chain judged against ``ca_bundle`` alone, at time ``at``;
    None when it verifies. The leaf's own expiry is left to the expiry check (it counts days)."""
    with tempfile.TemporaryDirectory(prefix="iac-tls-") as tmp:
        leaf_path = os.path.join(tmp, "leaf.pem")
        with open(leaf_path, "w", encoding="ascii") as f:
            f.write(_pem(leaf))
        cmd = [OPENSSL, "verify", "-no-CApath", "-no-CAstore", "-CAfile", ca_bundle, "-purpose", "sslserver",
               "-attime", str(int(at))]
        if intermediates:
            chain_path = os.path.join(tmp, "chain.pem")
            with open(chain_path, "w", encoding="ascii") as f:
                f.write("".join(_pem(c) for c in intermediates))
            cmd += ["-untrusted", chain_path]
        try:
            done = subprocess.run([*cmd, leaf_path], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "served chain could not be verified (openssl verify did not run)"
    if done.returncode == 0:
        return None
    errors = [(int(c), int(d), _word(m, 80)) for c, d, m in VERIFY_ERROR_RE.findall(done.stderr)]
    if not errors:
        return f"served chain could not be verified against {ca_bundle}"
    real = [e for e in errors if (e[0], e[1]) != (ERR_CERT_HAS_EXPIRED, 0)]
    if not real:
        return None
    code, depth, message = real[0]
    if code == ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return "served certificate is self-signed, not from the declared CA"
    if code in NOT_FROM_CA:
        return f"served certificate does not chain to the declared CA ({message})"
    if code == ERR_CERT_HAS_EXPIRED:
        return f"a CA certificate in the served chain has expired (depth {depth})"
    if code == ERR_CERT_NOT_YET_VALID and depth == 0:
        return "served certificate is not valid yet"
    return f"served chain does not verify against the declared CA: {message} (depth {depth})"


def _public_key(cmd: list[str], data: bytes | None = None) -> bytes | None:
    """The DER of the public key ``cmd`` prints as PEM; None if it fails."""
    try:
        feed = {"input": data} if data is not None else {"stdin": subprocess.DEVNULL}  # never both
        done = subprocess.run(cmd, **feed, capture_output=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(rb"-----BEGIN PUBLIC KEY-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END PUBLIC KEY-----", done.stdout)
    if done.returncode != 0 or not m:
        return None
    try:
        return base64.b64decode(b"".join(m.group(1).split()), validate=True)
    except ValueError:
        return None


def key_problem(leaf: bytes, key_path: str) -> tuple[str, str] | None:
    """(mark, what) when the leaf's public key is not the one of the private key at ``key_path``."""
    served = _public_key([OPENSSL, "x509", "-inform", "DER", "-noout", "-pubkey"], leaf)
    # -passin: an encrypted key fails instead of prompting on a terminal
    on_disk = _public_key([OPENSSL, "pkey", "-in", key_path, "-pubout", "-passin", "pass:"])
    if on_disk is None:
        return "-", f"the key on disk ({key_path}) is missing or unreadable"
    if served is None:
        return "~", "the served certificate's public key cannot be read"
    if served != on_disk:
        return "~", f"does not match the key on disk ({key_path})"
    return None


def _verdict_key(leaf: bytes, chain: list[bytes], site: Site, at: float) -> str | None:
    """What a good verdict on chain and key stands on: the served bytes, the CA bundle's, the key
    file's ``lstat`` (its ctime moves on any write) and the day. None when a part cannot be read."""
    try:
        with open(site.ca_bundle, "rb") as f:
            bundle = f.read()
        st = os.lstat(site.key_path)
    except OSError:
        return None
    digest = hashlib.sha256()
    for part in (leaf, *chain, bundle, site.key_path.encode(), site.name.encode()):
        digest.update(hashlib.sha256(part).digest())
    digest.update(f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {int(at // DAY)}".encode())
    return digest.hexdigest()


def _good_verdicts(memo: Path | None) -> list[str]:
    if memo is None:
        return []
    try:
        data = read_record(memo)
    except (OSError, ValueError, UnsafePath):
        return []
    good = data.get("good") if data else None
    return [k for k in good if isinstance(k, str)] if isinstance(good, list) else []


def check(sites: list[Site], min_days: int, now: float | None = None, memo: Path | None = None) -> list[Finding]:
    """One finding per failure per site (category tls, path the name); none when every site is
    served as declared. ``now`` (seconds since the epoch) shifts the clock, for tests and previews.

    ``memo`` (root's record) keeps today's good verdicts on chain and key: the same served bytes,
    CA bundle and key file are not judged again by three openssl runs the same day (the served
    certificate and chain are fetched each time; expiry and names are always checked)."""
    at = time.time() if now is None else now
    findings: list[Finding] = []
    good, seen = _good_verdicts(memo), []
    for site in sites:
        def found(what: str, mark: str = "~", repair: str = "renew", site: Site = site) -> None:
            findings.append(Finding(category="tls", path=site.name, mark=mark, what=what, repair=repair))

        leaf = served_leaf(site.name, site.port)
        if leaf is None:
            found(f"no TLS answer on {site.port} for {site.name}", mark="-")
            continue
        try:
            facts = read_leaf(leaf)
        except ValueError:
            found("served certificate cannot be read as X.509")
            continue
        verdict, problem, stands = None, None, False
        if not os.path.isfile(site.ca_bundle):
            found(f"the declared CA bundle {site.ca_bundle} is missing", mark="-", repair="report")
        else:
            chain = served_chain(site.name, site.port)
            verdict = _verdict_key(leaf, chain, site, at)
            stands = verdict is not None and verdict in good  # judged good today on the same bytes
            problem = None if stands else chain_problem(leaf, chain[1:], site.ca_bundle, at)
            if problem:
                found(problem)
        key = None if stands else key_problem(leaf, site.key_path)
        if key:
            found(key[1], mark=key[0])
        if verdict is not None and not problem and not key:
            seen.append(verdict)
        if not covers(facts.dns_names, site.name):
            found(f"does not cover {site.name}")
        left = facts.not_after - at
        if left <= 0:
            found(f"expired {int(-left // DAY)} days ago")
        elif left <= min_days * DAY:
            found(f"expires in {int(left // DAY)} days (under {min_days})")
    if memo is not None and sorted(seen) != sorted(good):
        with contextlib.suppress(OSError, ValueError, UnsafePath):
            write_record(memo, {"good": seen})
    return findings


# --- renewal ----------------------------------------------------------------------------------

def _word(text: str, limit: int = 40) -> str:
    """A host's answer made safe for a one-line report."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text.strip())
    return text[:limit] + ("..." if len(text) > limit else "")


def _systemctl(*args: str) -> tuple[int, str]:
    """systemctl's exit code and output; OSError (or TimeoutExpired) when it cannot be asked."""
    done = subprocess.run([SYSTEMCTL, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=TIMEOUT, check=False)
    return done.returncode, done.stdout


def _first_word(out: str) -> str:
    return _word(out.splitlines()[0] if out.strip() else "") or "unknown"


def timer_check(timer: str = "certbot.timer", service: str = "certbot.service") -> list[Finding]:
    """The renewal timer is enabled and active, and the last run of its service succeeded (or it
    has not run yet): else a finding each (category tls, path the timer, repair renew: the
    converge renews every certificate, enables and starts the timer, and clears the failure)."""
    for unit in (timer, service):
        if not UNIT_RE.match(unit):
            raise ValueError(f"unit name {unit!r}")
    findings: list[Finding] = []

    def found(what: str) -> None:
        findings.append(Finding(category="tls", path=timer, mark="~", what=what, repair="renew"))

    try:
        rc, out = _systemctl("is-enabled", timer)
        if rc != 0 or _first_word(out) != "enabled":
            found(f"{timer} is {_first_word(out)}, not enabled")
        rc, out = _systemctl("is-active", timer)
        if rc != 0 or _first_word(out) != "active":
            found(f"{timer} is {_first_word(out)}, not active")
        rc, out = _systemctl("show", "-p", "LoadState,Result,ExecMainStatus", service)
    except (OSError, subprocess.TimeoutExpired) as exc:
        found(f"systemd cannot be asked about {timer} ({type(exc).__name__})")
        return findings
    props = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
    if rc != 0 or not props:
        found(f"cannot read {service}'s last run from systemd")
    elif props.get("LoadState") != "loaded":
        found(f"{service} is {_word(props.get('LoadState', '') or 'unknown')}, not loaded")
    elif props.get("Result") != "success":
        found(f"last run of {service} failed: {_word(props.get('Result', '') or 'unknown')} "
              f"(status {_word(props.get('ExecMainStatus', '') or '?', 10)})")
    return findings
