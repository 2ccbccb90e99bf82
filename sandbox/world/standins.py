"""The stand-ins on the machine side: pebble with pebble-challtestsrv (ACME and its DNS), moto (S3)
and the webhook receiver (the Discord stand-in)."""

from __future__ import annotations

import json
import ssl
import sys
import urllib.request

from .common import REPO, run


class StandIns:
    """Starting the stand-ins (each a recorded process), unless they run already."""

    def ensure_pebble(self) -> None:
        d = self.dir / "pebble"
        d.mkdir(parents=True, exist_ok=True)
        if not (d / "listener.pem").exists():
            # pebble's own test certificate names only localhost; issue one for our address
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-days", "3650", "-subj", f"/CN=sandbox {self.name} listener CA",
                 "-keyout", str(d / "listener-ca.key"), "-out", str(d / "listener-ca.pem")])
            run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-subj", f"/CN={self.svc_ip}", "-keyout", str(d / "listener.key"),
                 "-out", str(d / "listener.csr")])
            ext = d / "ext.cnf"
            ext.write_text(f"subjectAltName=IP:{self.svc_ip}\n")
            run(["openssl", "x509", "-req", "-in", str(d / "listener.csr"), "-days", "3650",
                 "-CA", str(d / "listener-ca.pem"), "-CAkey", str(d / "listener-ca.key"),
                 "-CAcreateserial", "-extfile", str(ext), "-out", str(d / "listener.pem")])
        (d / "config.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"{self.svc_ip}:14000",
            "managementListenAddress": f"{self.svc_ip}:15000",
            "certificate": str(d / "listener.pem"), "privateKey": str(d / "listener.key"),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}, indent=2))
        self.ensure_process(
            "challtestsrv",
            ["pebble-challtestsrv", "-defaultIPv4", self.host_ip("public"), "-defaultIPv6", "",
             "-dns01", f"{self.svc_ip}:8053", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"{self.svc_ip}:8055"],
            ready=(self.svc_ip, 8055),
        )
        self.ensure_process(
            "pebble",
            ["pebble", "-config", str(d / "config.json"), "-dnsserver", f"{self.svc_ip}:8053"],
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
            ready=(self.svc_ip, 14000),
        )
        self.save_pebble_root()

    def save_pebble_root(self) -> None:
        """pebble makes a new root CA each time it starts: the one it issues under now, which the
        sandbox declares as tls.issuer_ca_bundle (what a served certificate must chain to)."""
        context = ssl.create_default_context(cafile=str(self.acme_ca_file))
        with urllib.request.urlopen(f"https://{self.svc_ip}:15000/roots/0", context=context, timeout=10) as answer:
            pem = answer.read().decode()
        if "BEGIN CERTIFICATE" not in pem:
            raise RuntimeError("pebble's /roots/0 gave no certificate")
        if not self.acme_issuer_file.exists() or self.acme_issuer_file.read_text() != pem:
            self.acme_issuer_file.write_text(pem)

    def ensure_s3(self) -> None:
        self.ensure_process(
            "s3", [str(REPO / ".venv/bin/moto_server"), "-H", self.s3_ip, "-p", "9000"],
            ready=(self.s3_ip, 9000),
        )
        # the operator makes the bucket at the provider, before any repository is made in it (restic
        # 0.17 and later retry a missing bucket for 15 minutes instead of creating it as 0.14 did);
        # moto keeps it in memory, so this runs after every start (PUT of an existing bucket: 200)
        request = urllib.request.Request(f"{self.s3_endpoint}/{self.s3_bucket}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def ensure_webhook(self) -> None:
        self.webhook_log.parent.mkdir(parents=True, exist_ok=True)
        self.ensure_process(
            "webhook",
            [sys.executable, str(REPO / "sandbox/standins/webhook.py"), "--bind", self.svc_ip,
             "--port", "8099", "--log", str(self.webhook_log)],
            ready=(self.svc_ip, 8099),
        )
