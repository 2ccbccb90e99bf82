"""Facts this repo adds to pyinfra's: what is live on a host, read without changing it."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from pyinfra.api import FactBase

from iac.pyinfra_ext.shared_facts import EngineCall

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class JsonFile(FactBase):
    """The JSON document in the file at ``path`` (a record a converge or the release engine wrote),
    or ``None`` when the file is missing or not JSON."""

    def command(self, path: str) -> str:
        return f"cat {shlex.quote(path)} 2>/dev/null || true"

    def process(self, output: list[str]) -> Any:
        text = "\n".join(output).strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return None


class DeployedRelease(JsonFile):
    """
    The release an app last made live (the engine's record at ``path``, ``AppPaths.deployed``),
    or ``None``.
    """


class ReleaseDamage(FactBase):
    """
    What differs in an app's live release from what went live, as the release engine's
    ``verify`` reports it: files against the manifest of hashes recorded then, the virtualenv's
    distributions against those installed when it was built, both as root recorded them where no
    app can write. ``[]`` when intact or when nothing is live. A verify that cannot read those
    records fails the fact (the drift check then says it cannot tell): never "intact".
    """

    @staticmethod
    def engine_call(engine: str, app: str) -> EngineCall:
        """Also how a fact batch answers it, with the other engine calls in one python3."""
        return EngineCall(engine, ["verify", app])

    def command(self, engine: str, app: str) -> str:
        return self.engine_call(engine, app).shell()

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class GitRemoteCommit(FactBase):
    """
    The commit a revision (tag, branch) names on the app's git remote, asked as the app user
    with its deploy key and pinned known_hosts: ``{"asked": bool, "commit": id or None, "error":
    text or None}``.

    ``asked`` is False when it cannot be asked yet (the user or its key does not exist: a first
    run makes them); ``error`` says why the remote did not answer (unreachable, key not
    registered, unknown host key), so that a drift check reports an error, not drift; ``commit``
    is None when the remote has no such tag or branch.

    The SSH key exchange prefers curve25519 over OpenSSH 9.2's default, the post-quantum hybrid
    sntrup761x25519 (still allowed, after it): that one costs about 60 ms of CPU on each side, and
    every drift check asks once per app. What this session carries is the list of refs and their
    commit ids, nothing a recorded session could give away later; fetching the code (the release
    engine) keeps OpenSSH's default. Authentication (the deploy key, the pinned host key) is the same.
    """

    def command(self, url: str, revision: str, user: str, key: str, known_hosts: str) -> str:
        ssh = (f"ssh -i {key} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o KexAlgorithms=^curve25519-sha256 "
               f"-o UserKnownHostsFile={known_hosts}")
        refs = " ".join(shlex.quote(r) for r in (
            f"refs/tags/{revision}", f"refs/tags/{revision}^{{}}", f"refs/heads/{revision}"))
        return (f"if ! id -u {shlex.quote(user)} >/dev/null 2>&1 || ! test -f {shlex.quote(key)}; "
                "then echo IAC-NO-KEY; exit 0; fi; "
                f"out=$(runuser -u {shlex.quote(user)} -- env HOME=/home/{user} GIT_SSH_COMMAND={shlex.quote(ssh)} "
                f"git ls-remote {shlex.quote(url)} {refs} 2>&1) && printf '%s\\n' \"$out\" || "
                "{ echo IAC-UNREACHABLE; printf '%s\\n' \"$out\" | head -n 20; }")

    def process(self, output: list[str]) -> dict:
        if "IAC-NO-KEY" in output:
            return {"asked": False, "commit": None, "error": None}
        if "IAC-UNREACHABLE" in output:
            lines = [line.strip() for line in output[output.index("IAC-UNREACHABLE") + 1:] if line.strip()]
            # ssh's and git's own reasons first ("No route to host", "Permission denied (publickey)")
            key = [line for line in lines if line.startswith(("ssh:", "fatal:", "ERROR", "Host key", "git@"))
                   or "denied" in line]
            why = " ".join((key or lines)[:3])
            return {"asked": True, "commit": None, "error": why or "git ls-remote failed"}
        found: dict[str, str] = {}
        for line in output:
            parts = line.split()
            if len(parts) == 2 and COMMIT_RE.match(parts[0]):
                found[parts[1]] = parts[0]
        for ref, commit in found.items():
            if ref.endswith("^{}"):
                return {"asked": True, "commit": commit, "error": None}  # an annotated tag, peeled to its commit
        tags = [c for r, c in found.items() if r.startswith("refs/tags/")]
        heads = [c for r, c in found.items() if r.startswith("refs/heads/")]
        return {"asked": True, "commit": (tags or heads or [None])[0], "error": None}


class TlsCertificate(FactBase):
    """
    Whether certbot holds a certificate lineage for a domain, and how it renews it, read from
    its renewal configuration: ``{"live": bool, "server": url, "authenticator": str,
    "webroot": path, "deploy_hook": path}`` (certbot stores ``--deploy-hook`` as ``renew_hook``).
    """

    def command(self, domain: str) -> str:
        d = shlex.quote(domain)
        return (f"if test -s /etc/letsencrypt/live/{d}/fullchain.pem; then echo live; fi; "
                f"cat /etc/letsencrypt/renewal/{d}.conf 2>/dev/null || true")

    @staticmethod
    def default() -> dict:
        return {"live": False, "server": None, "authenticator": None, "webroot": None, "deploy_hook": None}

    def process(self, output: list[str]) -> dict:
        found = self.default()
        found["live"] = "live" in output
        section, webroot_map = "", {}
        for line in output:
            line = line.strip()
            if line.startswith("["):
                section = line
                continue
            if "=" not in line or line.startswith("#"):
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if section == "[[webroot_map]]":
                webroot_map[key] = value
            elif key == "server":
                found["server"] = value
            elif key == "authenticator":
                found["authenticator"] = value
            elif key == "renew_hook":
                found["deploy_hook"] = value
            elif key == "webroot_path":
                found["webroot"] = value.split(",")[0].strip() or None
        if len(set(webroot_map.values())) == 1:
            found["webroot"] = next(iter(webroot_map.values()))
        return found


def http_check_command(url: str, host_header: str, port: int, tls: bool, attempts: int = 10) -> str:
    """Shell that asks ``url`` on this host as users would (Host and SNI ``host_header``, through
    127.0.0.1) up to ``attempts`` times a second apart, until it answers 2xx/3xx; prints the
    last HTTP status (000: no answer). curl's own --retry cannot write to /dev/null."""
    scheme = "https" if tls else "http"
    target = shlex.quote(f"{scheme}://{host_header}:{port}{url}")
    resolve = shlex.quote(f"{host_header}:{port}:127.0.0.1")
    return (f"for attempt in $(seq {attempts}); do "
            f"code=$(curl -s -k -o /dev/null -w '%{{http_code}}' --max-time 10 --resolve {resolve} {target}); "
            "case $code in 2??|3??) break;; esac; [ $attempt = {attempts} ] || sleep 1; done; "
            "echo \"${code:-000}\"")


class HttpStatus(FactBase):
    """
    The HTTP status a site on the host answers with, asked through nginx as users ask (Host and
    SNI set, via 127.0.0.1), retried for up to 10 s while it does not answer 2xx/3xx.
    """

    def command(self, url: str, host_header: str, port: int, tls: bool) -> str:
        return http_check_command(url, host_header, port, tls)

    def process(self, output: list[str]) -> str:
        return output[-1].strip() if output else "000"
