"""Drift that cannot lie: the host's effective state, not only our own files, held against the
declaration (issue 21).

A catalogue of host mutations an intruder or a hurried admin makes, across every category the
baseline checks. All are made at once on the converged sandbox (one scenario: one drift check
before, one converge, one drift check after), then, for each:

* the drift check exits 2 and names the host, the path and what differs;
* the converge repairs it and the quarantine holds the original;
* the drift check exits 0 afterwards, and the behaviour is the declared one again (the public app
  runs as its own user, not root; the site serves a certificate from the declared CA; no extra
  nginx site answers; the undeclared listener is gone; the second root and the key are gone).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace

import pytest

from iac.debian import release
from sandbox.world import World
from tests.integration.conftest import TIMINGS, Sandbox, failure_excerpt

HOSTS = {"public": "srv1178562", "lan": "gts-server"}


@dataclass(frozen=True)
class Mutation:
    """One change made on a host behind the repository's back."""

    role: str
    path: str  # what the report must name
    what: str  # a regular expression the report's line must match after the path
    command: str  # made as root on the host (set -e)
    kept: bool = True  # the quarantine's manifest names the path after the converge

    def on(self, world: World) -> Mutation:
        """This mutation on the sandbox's host: ``{pg}`` is the major of the PostgreSQL its
        Debian release has (iac/debian.py)."""
        pg = str(release(world.debian(self.role)).postgres)
        return replace(self, path=self.path.replace("{pg}", pg), command=self.command.replace("{pg}", pg))


MUTATIONS = [
    # -- systemd: drop-ins, unit files, enablement, set-property
    Mutation("public", "/etc/systemd/system/broker_portal.service.d/override.conf", r"drop-in for broker_portal",
             "mkdir -p /etc/systemd/system/broker_portal.service.d && printf '[Service]\\nUser=root\\nGroup=root\\n'"
             " > /etc/systemd/system/broker_portal.service.d/override.conf && systemctl daemon-reload"
             " && systemctl restart broker_portal.service"),
    Mutation("public", "broker_portal.service", r"runs as User root, declared chip_dashboard", "true", kept=False),
    Mutation("lan", "/run/systemd/system/gunicorn-shop_scheduler.service.d/env.conf", r"drop-in for gunicorn-shop",
             "mkdir -p /run/systemd/system/gunicorn-shop_scheduler.service.d && printf '[Service]\\n"
             "Environment=PYTHONINSPECT=1\\n' > /run/systemd/system/gunicorn-shop_scheduler.service.d/env.conf"
             " && systemctl daemon-reload"),
    Mutation("public", "/etc/systemd/system/iac-test-evil.service", r"unit file not declared",
             "printf '[Unit]\\nDescription=x\\n[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\n"
             "WantedBy=multi-user.target\\n' > /etc/systemd/system/iac-test-evil.service"
             " && systemctl daemon-reload && systemctl enable --now iac-test-evil.service"),
    Mutation("public", "/etc/systemd/system/multi-user.target.wants/iac-test-evil.service", r"enabled by hand",
             "true"),
    Mutation("lan", "/usr/local/lib/systemd/system/iac-test-evil.timer", r"unit file not declared",
             "mkdir -p /usr/local/lib/systemd/system && printf '[Timer]\\nOnCalendar=hourly\\n[Install]\\n"
             "WantedBy=timers.target\\n' > /usr/local/lib/systemd/system/iac-test-evil.timer"
             " && printf '[Service]\\nExecStart=/bin/true\\n' > /usr/local/lib/systemd/system/iac-test-evil.service"
             " && systemctl daemon-reload && systemctl enable iac-test-evil.timer"),
    Mutation("lan", "/etc/systemd/system/timers.target.wants/iac-test-evil.timer", r"enabled by hand", "true"),
    Mutation("lan", "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service", r"enabled by hand",
             "systemctl enable systemd-networkd.service 2>/dev/null"),
    Mutation("public", "/etc/systemd/system.control/nginx.service.d/50-CPUWeight.conf", r"drop-in for nginx",
             "systemctl set-property nginx.service CPUWeight=50"),
    # -- package files: a same-size edit with the time put back, a changed conffile, a missing one, ucf's
    Mutation("public", "/usr/bin/which.debianutils", r"differs from package debianutils",
             # the same size, and its times put back: only its checksum can tell
             "python3 -c \"import os; p='/usr/bin/which.debianutils'; st=os.stat(p); d=open(p,'rb').read(); "
             "open(p,'r+b').write(d.replace(b'set -ef', b'set -eu', 1)); "
             "os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns)); assert os.stat(p).st_size == st.st_size\""),
    # same bytes, another mode: find(1) set-user-ID is a root shell for anyone (GTFOBins)
    Mutation("lan", "/usr/bin/find", r"mode 0755 -> 4755 since it was last checked \(package findutils",
             "chmod u+s /usr/bin/find", kept=False),
    Mutation("lan", "/etc/logrotate.d/nginx", r"differs from package nginx",
             "echo '# rotated by hand' >> /etc/logrotate.d/nginx"),
    Mutation("public", "/etc/logrotate.d/apt", r"missing \(package apt", "rm /etc/logrotate.d/apt", kept=False),
    Mutation("lan", "/etc/apt/apt.conf.d/50unattended-upgrades", r"differs from package unattended-upgrades's \(ucf",
             "echo '// by hand' >> /etc/apt/apt.conf.d/50unattended-upgrades"),
    # -- nginx: a site enabled by hand, a conf.d file, the main file
    Mutation("lan", "/etc/nginx/sites-enabled/iac-test-extra", r"loaded by nginx",
             "printf 'server { listen 8090; return 200 extra; }\\n' > /etc/nginx/sites-available/iac-test-extra"
             " && ln -sfn /etc/nginx/sites-available/iac-test-extra /etc/nginx/sites-enabled/iac-test-extra"
             " && systemctl reload nginx"),
    Mutation("public", "/etc/nginx/conf.d/iac-test.conf", r"loaded by nginx",
             "echo 'server_tokens on;' > /etc/nginx/conf.d/iac-test.conf && systemctl reload nginx"),
    Mutation("public", "/etc/nginx/nginx.conf", r"differs from package nginx",
             "echo '# by hand' >> /etc/nginx/nginx.conf"),
    # -- sshd and sudo
    Mutation("public", "/etc/ssh/sshd_config.d/10-iac-test.conf", r"not declared",
             "echo 'AuthorizedKeysFile /tmp/%u.keys' > /etc/ssh/sshd_config.d/10-iac-test.conf"),
    Mutation("lan", "/etc/ssh/sshd_config", r"differs from package openssh-server's \(ucf",
             "echo '# by hand' >> /etc/ssh/sshd_config"),
    Mutation("lan", "/etc/sudoers.d/iac-test", r"not declared",
             "echo 'shop_scheduler ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/iac-test"
             " && chmod 440 /etc/sudoers.d/iac-test"),
    Mutation("public", "/etc/sudoers", r"differs from package sudo", "echo '# by hand' >> /etc/sudoers"),
    # -- accounts and keys
    Mutation("lan", "iac-test-root", r"has UID 0", "useradd -o -u 0 -g 0 -M -s /bin/bash iac-test-root"),
    Mutation("public", "iac-test-login", r"a login account not declared",
             "(id -u iac-test-login >/dev/null 2>&1 || useradd -m iac-test-login)"
             " && usermod -s /bin/bash iac-test-login"),
    Mutation("public", "group sudo", r"member chip_dashboard not declared",
             "gpasswd -a chip_dashboard sudo >/dev/null"),
    Mutation("public", "/root/.ssh/authorized_keys", r"1 key\(s\) not declared",
             "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBaselineTestKeyBaselineTestKeyBaselineTe intruder' "
             ">> /root/.ssh/authorized_keys"),
    Mutation("lan", "/home/shop_scheduler/.ssh/authorized_keys", r"1 key\(s\) not declared",
             "runuser -u shop_scheduler -- sh -c 'mkdir -p ~/.ssh && echo \"ssh-ed25519 "
             "AAAAC3NzaC1lZDI1NTE5AAAAIAppUserKeyAppUserKeyAppUserKeyAppUserKeyAp app\" >> ~/.ssh/authorized_keys'"),
    # -- scheduled execution
    Mutation("public", "/etc/cron.d/iac-test", r"not declared",
             "echo '* * * * * root /bin/true' > /etc/cron.d/iac-test"),
    Mutation("lan", "/var/spool/cron/crontabs/rental_scheduler", r"not declared",
             "mkdir -p /var/spool/cron/crontabs"
             " && echo '@reboot /bin/true' > /var/spool/cron/crontabs/rental_scheduler"),
    Mutation("public", "/etc/cron.daily/iac-test", r"not declared",
             "printf '#!/bin/sh\\ntrue\\n' > /etc/cron.daily/iac-test && chmod 755 /etc/cron.daily/iac-test"),
    Mutation("lan", "/etc/crontab", r"not declared", "echo '* * * * * root /bin/true' > /etc/crontab"),
    # -- apt
    Mutation("public", "/etc/apt/sources.list.d/iac-test.list", r"not declared",
             "echo 'deb http://127.0.0.1/debian bookworm main' > /etc/apt/sources.list.d/iac-test.list"),
    Mutation("lan", "/etc/apt/trusted.gpg.d/iac-test.asc", r"not declared",
             "echo 'not a key' > /etc/apt/trusted.gpg.d/iac-test.asc"),
    # -- resolver, libraries, login
    Mutation("lan", "/etc/nsswitch.conf", r"replaced by a link to /tmp/nsswitch.conf",
             "cp /etc/nsswitch.conf /tmp/nsswitch.conf && ln -sfn /tmp/nsswitch.conf /etc/nsswitch.conf"),
    Mutation("public", "/etc/resolv.conf", r"changed since the converge that held it",
             "cp --remove-destination /etc/resolv.conf /tmp/resolv.conf.orig && "
             "cat /tmp/resolv.conf.orig > /etc/resolv.conf.new && echo 'nameserver 10.9.9.9' >> /etc/resolv.conf.new"
             " && mv /etc/resolv.conf.new /etc/resolv.conf"),
    Mutation("lan", "/etc/pam.d/common-session", r"mode 0666, held 0644", "chmod 0666 /etc/pam.d/common-session",
             kept=False),
    Mutation("public", "/etc/ld.so.preload", r"not declared", "touch /etc/ld.so.preload"),
    Mutation("lan", "/etc/ld.so.conf.d/iac-test.conf", r"not declared",
             "echo /tmp > /etc/ld.so.conf.d/iac-test.conf"),
    Mutation("lan", "/etc/profile.d/iac-test.sh", r"not declared", "echo 'umask 000' > /etc/profile.d/iac-test.sh"),
    Mutation("public", "/etc/pam.d/common-auth", r"changed since the converge that held it",
             "echo '# by hand' >> /etc/pam.d/common-auth"),
    # -- PostgreSQL
    Mutation("lan", "/etc/postgresql/{pg}/main/conf.d/iac-test.conf", r"not declared",
             "echo \"log_min_duration_statement = 0\" > /etc/postgresql/{pg}/main/conf.d/iac-test.conf"),
    Mutation("lan", "/var/lib/postgresql/{pg}/main/postgresql.auto.conf", r"ALTER SYSTEM settings: log_statement",
             "runuser -u postgres -- psql -Xqc \"ALTER SYSTEM SET log_statement = 'all'\""),
    # -- set-user-ID, listeners
    Mutation("public", "/usr/local/bin/iac-test-rootsh", r"set-user-ID file no package owns",
             "cp /bin/dash /usr/local/bin/iac-test-rootsh && chmod 4755 /usr/local/bin/iac-test-rootsh"),
    Mutation("lan", "tcp/8088", r"listening on .*not declared .*unit iac-test-listener.service",
             "systemd-run --quiet --unit=iac-test-listener python3 -m http.server 8088 --bind 0.0.0.0 && sleep 2",
             kept=True),
    # -- TLS as users see it: a self-signed certificate served for pravoo.in, the renewal timer off
    Mutation("public", "pravoo.in", r"not from the declared CA",
             "f=$(readlink -f /etc/letsencrypt/live/pravoo.in/fullchain.pem) && "
             "cat /etc/ssl/certs/ssl-cert-snakeoil.pem > $f && "
             "k=$(readlink -f /etc/letsencrypt/live/pravoo.in/privkey.pem) && "
             "cat /etc/ssl/private/ssl-cert-snakeoil.key > $k && systemctl reload nginx", kept=False),
    Mutation("public", "certbot.timer", r"not enabled", "systemctl disable --now certbot.timer 2>/dev/null",
             kept=False),
]


def _baseline_lines(report: dict, host: str) -> list[str]:
    return [d for item in report["drift"] if item["host"] == host and item["operation"].startswith("Baseline")
            for d in item["details"]]


def _manifests(sandbox: Sandbox, role: str) -> list[dict]:
    out = sandbox.ssh(role, "cat /var/lib/iac/quarantine/*/MANIFEST.json 2>/dev/null | python3 -c "
                            "'import json,sys; d=sys.stdin.read().replace(\"}\\n{\", \"}\\0{\"); "
                            "[print(json.dumps(e)) for part in d.split(\"\\0\") if part.strip() "
                            "for e in json.loads(part)[\"moved\"]]'").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mutated(sandbox: Sandbox, converged) -> dict:
    """Every mutation made on the converged sandbox, and the drift report that followed."""
    assert sandbox.converge("baseline-before").returncode == 0
    for role in HOSTS:
        script = "set -e\n" + "\n".join(m.on(sandbox.world).command for m in MUTATIONS if m.role == role) + "\n"
        done = sandbox.world.ssh(role, "bash -s", input=script, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    run = sandbox.drift("baseline-mutated", "--format", "json")
    return {"code": run.returncode, "report": json.loads(run.stdout) if run.stdout.strip() else {},
            "output": run.output}


@pytest.fixture(scope="module")
def repaired(sandbox: Sandbox, mutated: dict) -> dict:
    run = sandbox.converge("baseline-repair")
    TIMINGS["baseline: converge repairing 40 mutations"] = run.seconds
    assert run.returncode == 0, failure_excerpt(run)
    after = sandbox.drift("baseline-repaired")
    return {"converge": run, "drift": after}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m.role}:{m.path}")
def test_drift_names_each_mutation(sandbox: Sandbox, mutated: dict, mutation: Mutation) -> None:
    assert mutated["code"] == 2, mutated["output"][-3000:]
    mutation = mutation.on(sandbox.world)
    lines = _baseline_lines(mutated["report"], HOSTS[mutation.role])
    pattern = re.compile(rf"^[+~-] \w+ {re.escape(mutation.path)}: .*{mutation.what}")
    assert any(pattern.search(line) for line in lines), "\n".join(lines)


def test_the_catalogue_covers_every_category(mutated: dict) -> None:
    lines = [line for host in HOSTS.values() for line in _baseline_lines(mutated["report"], host)]
    categories = {line.split()[1] for line in lines if line[:2] in ("+ ", "~ ", "- ")}
    assert {"systemd", "units", "packages", "nginx", "sshd", "sudoers", "accounts", "keys", "cron", "apt",
            "resolver", "libraries", "login", "postgres", "setuid", "sockets", "tls"} <= categories
    assert len(MUTATIONS) >= 30


def test_a_converge_repairs_everything_and_keeps_what_it_took(sandbox: Sandbox, repaired: dict) -> None:
    assert repaired["drift"].returncode == 0, repaired["drift"].output[-3000:]
    for role in HOSTS:
        kept = {entry["path"] for entry in _manifests(sandbox, role)}
        missing = [m.on(sandbox.world).path for m in MUTATIONS
                   if m.role == role and m.kept and m.on(sandbox.world).path not in kept]
        assert not missing, f"{role}: not in the quarantine's manifests: {missing}"


def test_the_app_runs_as_its_own_user_again(sandbox: Sandbox, repaired: dict) -> None:
    users = sandbox.ssh("public", "pid=$(systemctl show -p MainPID --value broker_portal.service); "
                                  "ps -o user= -p $pid; ps -o user= --ppid $pid | sort -u").stdout.split()
    assert users and set(users) == {"chip_dashboard"}, users


def test_what_the_intruder_left_no_longer_works(sandbox: Sandbox, repaired: dict, pebble_root) -> None:
    world = sandbox.world
    # the extra site and the listener are gone; the second root and the login account cannot log in
    assert sandbox.ssh("lan", "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8090/", check=False) \
        .stdout in ("000", "")
    assert sandbox.ssh("lan", "ss -Hltn 'sport = :8088'").stdout.strip() == ""
    assert sandbox.ssh("lan", "getent passwd iac-test-root", check=False).returncode != 0
    assert sandbox.ssh("public", "getent passwd iac-test-login | cut -d: -f7").stdout.strip() == "/usr/sbin/nologin"
    assert "intruder" not in sandbox.ssh("public", "cat /root/.ssh/authorized_keys").stdout
    assert "chip_dashboard" not in sandbox.ssh("public", "getent group sudo").stdout
    # held files are back as they were held, mode included: an unprivileged user resolves names again
    resolv_mode = int(sandbox.ssh("public", "stat -c %a /etc/resolv.conf").stdout.strip(), 8)
    assert resolv_mode & 0o004 and not resolv_mode & 0o022, oct(resolv_mode)  # everyone reads it, root writes it
    assert sandbox.ssh("lan", "stat -c %a /etc/pam.d/common-session").stdout.strip() == "644"
    assert sandbox.ssh("lan", "stat -c %a /usr/bin/find").stdout.strip() == "755"  # put back by its package
    assert sandbox.ssh("public", "runuser -u nobody -- getent ahosts deb.debian.org", check=False).returncode == 0
    # the site serves a certificate from the declared CA again
    served = sandbox.command("baseline-tls", ["sh", "-c",
                             f"openssl s_client -connect {world.host_ip('public')}:443 -servername pravoo.in "
                             f"-showcerts </dev/null 2>/dev/null | openssl x509 -noout -issuer"])
    assert "Pebble" in served.stdout, served.output
