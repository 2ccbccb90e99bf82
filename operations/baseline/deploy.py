"""The baseline: the whole host held against Debian's packages plus everything this repository
declares, so that "in sync" means the host runs as declared, not only that our own files are ours.

Last of a whole run. What every concern declared on the host (``iac.declared``: each file,
directory and enabled unit its operations wrote) and what the model says about units, accounts,
keys, groups, listeners and certificates become the baseline engine's settings
(files/usr/local/lib/iac/baseline_engine/); the engine's ``check`` is one fact, answered in the
fact batch's one python3 with the other engines. Each finding is a line of the drift report
(``+`` present but not declared, ``~`` differs, ``-`` declared but missing: category, path, what).

A converge repairs, and loses nothing: the engine's ``repair`` moves what is not declared to the
quarantine (``/var/lib/iac/quarantine/<utc>/<path>`` with MANIFEST.json), puts package files back,
restarts units that ran as a removed drop-in made them; undeclared keys go commit-confirm (a revert
armed on the host, then a second login from this machine; a failed login puts the keys back); a
certificate that fails the check is issued again. What nothing may safely repair fails the run,
named. Deliberate local additions are declared in ``baseline.allow`` with a reason.
"""

from __future__ import annotations

import json
import shlex

from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, StringCommand, operation

from iac import declared
from iac.declared import BASELINE_OPERATION
from iac.engines import BaselineSettings, contract
from iac.ops import files
from iac.paths import HOST
from iac.pyinfra_ext.shared_facts import EngineCall
from iac.repo import FILES
from operations.app.options import PostgresDatabase
from operations.exposure.confirmed import SCRIPT, _confirm, second_login
from operations.host import HostConfig
from operations.tls.deploy import CA_BUNDLE, HOOK, WEBROOT, certificates_deferred, tls_domains

ENGINE = HOST.baseline_engine
# printed by the fact when the engine is not on the host yet (a first run): the repair then runs
# unconditionally at the end of the run, with the engine the run shipped
NOT_THERE = "{\"engine\": \"absent\"}"
REVERT_SECONDS = 45


class BaselineFindings(FactBase):
    """
    Every finding of the baseline engine's ``check`` on the host (dicts: category, path, mark,
    what, repair, argument, diff), or ``None`` when the engine is not there yet.
    """

    @staticmethod
    def engine_call(settings: str) -> EngineCall:
        """Also how a fact batch answers it, with the other engine calls in one python3."""
        # alone: the whole host's check is the batch's longest job; the other engines' calls run beside it
        return EngineCall(ENGINE, ["check", settings], otherwise=NOT_THERE, alone=True)

    def command(self, settings: str) -> str:
        return self.engine_call(settings).shell()

    @staticmethod
    def default() -> list[dict]:
        return []  # the engine printed nothing: no finding (pyinfra gives ``default`` for no output)

    def process(self, output: list[str]) -> list[dict] | None:
        found = []
        for line in output:
            if not line.strip():
                continue
            item = json.loads(line)
            if item == {"engine": "absent"}:
                return None
            found.append(item)
        return found


def ports(config: HostConfig) -> list[dict]:
    """The listeners the model accounts for (the baseline's ``ports``)."""
    out = [{"port": p, "address": "*", "owner": "sshd" if p == config.ssh.port else "nginx"}
           for p in config.open_tcp_ports()]
    if config.postgres is not None:
        out += [{"port": 5432, "address": a, "owner": "postgres"} for a in ("127.0.0.1", "::1")]
    if config.tailscale is not None and config.tailscale.enabled:
        out.append({"port": 41641, "address": "*", "owner": "tailscaled"})
    return out


def units(config: HostConfig, record: declared.Declared) -> list[dict]:
    """Every unit whose file this repository writes, with the user and group the model gives it
    (its apps') and its own drop-ins (the files it writes in ``<unit>.d/``)."""
    users: dict[str, str] = {}
    for name, app in config.apps.items():
        p = config.app_paths(name)
        for unit in (f"{app.unit}.service", *(f"{u}.service" for u in p.process_units.values())):
            users[unit] = app.user
    drop_ins: dict[str, list[str]] = {}
    for path in record.files:
        parent = path.rsplit("/", 2)
        if len(parent) == 3 and parent[0] == "/etc/systemd/system" and parent[1].endswith(".d"):
            drop_ins.setdefault(parent[1][:-2], []).append(path)
    names = {path.rsplit("/", 1)[1] for path in record.files if path.startswith("/etc/systemd/system/")
             and path.count("/") == 4 and path.endswith((".service", ".socket", ".timer"))}
    names |= set(users) | set(drop_ins)
    return [{"name": n, "user": users.get(n, ""), "group": users.get(n, ""), "drop_ins": sorted(drop_ins.get(n, []))}
            for n in sorted(names) if "@." not in n]


def accounts(config: HostConfig) -> list[dict]:
    """The accounts whose keys the model declares: root, the admin, every app user (none)."""
    def keys(declared: list[str] | None) -> list[str] | None:
        return None if declared is None else list(declared)  # None: not declared yet (reported, kept)

    out = [{"name": "root", "home": "/root", "keys": keys(config.ssh.root_authorized_keys),
            "option": "ssh.root_authorized_keys"},
           {"name": config.admin.name, "home": f"/home/{config.admin.name}",
            "keys": keys(config.admin.ssh_authorized_keys), "option": "admin.ssh_authorized_keys"}]
    out += [{"name": app.user, "home": f"/home/{app.user}", "keys": [], "option": f"apps.{name}"}
            for name, app in config.apps.items()]
    return out


def tls_sites(config: HostConfig, deferred: bool = False) -> list[dict]:
    """The certificates the host must serve, valid and chaining to the issuers (none while their
    issuance waits for the switch of an upgrade: ``deferred``, operations/tls/deploy.py)."""
    return [{"name": domain, "port": 443, "ca_bundle": HOST.tls_issuers,
             "key_path": f"/etc/letsencrypt/live/{domain}/privkey.pem"}
            for domain in ([] if deferred else tls_domains(config))]


def baseline_settings(config: HostConfig, record: declared.Declared, host_name: str,
                      certificates_deferred: bool = False) -> BaselineSettings:
    """The engine's settings: the whole declaration of this host (no secrets)."""
    groups = {"sudo": [config.admin.name] if config.admin.sudo else []}
    uses_postgres = any(isinstance(db, PostgresDatabase) for app in config.apps.values()
                        for db in [app.database, *app.extra_databases.values()])
    if uses_postgres and "postgres" in config.admin.groups:
        groups["postgres"] = [config.admin.name]
    data = {
        "host": host_name,
        "files": sorted(record.files - record.absent),
        "directories": sorted(record.directories),
        "units": units(config, record),
        "enabled": sorted(record.enabled),
        "accounts": accounts(config),
        "privileged_groups": groups,
        "ports": ports(config),
        "allowed": [{"path": a.path, "reason": a.reason} for a in config.baseline.allow],
        "tls": tls_sites(config, certificates_deferred),
        "tls_min_days": config.baseline.tls_min_days,
        "quarantine": HOST.quarantine,
        "state": HOST.baseline_state,
    }
    return contract.load(BaselineSettings, data)


def _renew(domain: str, config: HostConfig) -> str:
    """certbot issues the certificate again (the lineage kept, its renewal settings as declared)."""
    tls = config.tls
    assert tls is not None
    env = f"REQUESTS_CA_BUNDLE={CA_BUNDLE} " if tls.acme_ca_bundle else ""
    return (f"{env}certbot certonly --non-interactive --agree-tos --email {shlex.quote(tls.email)} "
            f"--server {shlex.quote(tls.acme_directory)} --webroot -w {WEBROOT} -d {shlex.quote(domain)} "
            f"--cert-name {shlex.quote(domain)} --deploy-hook {HOOK} --force-renewal")


def describe(finding: dict) -> list[str]:
    """The finding's lines in the drift report: ``<mark> <category> <path>: <what>`` and its diff."""
    lines = [f"{finding['mark']} {finding['category']} {finding['path']}: {finding['what']}"]
    lines += [f"    {line}" for line in finding.get("diff", "").splitlines()[:40]]
    return lines


@operation()
def host_matches_baseline(settings: str, renew: dict[str, str], login: list[str]):
    """
    Ensure the host holds nothing in the places that decide how it runs or who gets in beyond
    Debian's packages, this repository's declaration and the declared allowances.

    + settings: the baseline engine's settings (``baseline_settings``), as JSON
    + renew: domain -> the command that issues its certificate again
    + login: argv of a second SSH connection (``second_login``): commits a key removal

    **Example:**

    .. code:: python

        host_matches_baseline(name="Baseline", settings=json.dumps(contract.dump(s)), renew={}, login=login)
    """
    found = host.get_fact(BaselineFindings, settings=settings)
    engine = shlex.quote(ENGINE)
    argument = shlex.quote(settings)
    if found is None:  # a first run: the engine arrives with this run; it repairs what it finds then
        host.noop("the baseline engine arrives with this run: checked and repaired after everything else")
        yield StringCommand(f"python3 {engine} repair {argument} >/dev/null")
        return
    allowed = json.loads(settings)["allowed"]
    if not found:
        return
    for item in allowed:  # shown with what the baseline finds: the exceptions it was told to make
        host.noop(f"allowed {item['path']}: {item['reason']}")
    for finding in found:
        for line in describe(finding):
            host.noop(line)
    kinds = {f["repair"] for f in found}
    if kinds - {"remove-keys", "renew"}:
        # the engine repairs, then checks again: what is still there and nothing may safely
        # repair (a second root it could not delete, a package's service listening) fails the run
        yield StringCommand(f"python3 {engine} repair {argument} >/dev/null")
    if "remove-keys" in kinds:
        state = shlex.quote(HOST.baseline_state)
        # commit-confirm: a revert is armed on the host before any key goes; only a new SSH
        # connection from this machine commits, else the keys are back within REVERT_SECONDS
        yield StringCommand(
            f"systemctl stop iac-revert-keys.timer 2>/dev/null || true; "
            f"systemctl reset-failed iac-revert-keys.service 2>/dev/null || true; "
            f"systemd-run --quiet --unit=iac-revert-keys --on-active={REVERT_SECONDS}s "
            f"--timer-property=AccuracySec=1s {SCRIPT} revert keys {state}")
        yield StringCommand(f"python3 {engine} repair-keys {argument} >/dev/null")
        yield FunctionCommand(_confirm, ("keys", HOST.baseline_state, login), {})
        yield StringCommand(f"{SCRIPT} commit keys {state}")
    renewing = {f["path"] for f in found if f["repair"] == "renew"}
    timer = bool(renewing - set(renew))  # the renewal timer itself: every certificate, then the timer
    for domain in sorted(renew if timer else renewing & set(renew)):
        yield StringCommand(renew[domain])
    if timer:
        yield StringCommand("systemctl enable --now certbot.timer && systemctl reset-failed certbot.service")


def baseline(config: HostConfig) -> None:
    """Last of a whole run: everything the concerns above declared is known by now."""
    if config.tls is not None and tls_domains(config):
        pem = config.tls.issuer_ca_bundle or (FILES / "etc/iac/letsencrypt-roots.pem").read_text()
        files.put(name=f"Roots a served certificate must chain to ({HOST.tls_issuers})",
                  src=_text(pem), dest=HOST.tls_issuers, mode="644")
    deferred = certificates_deferred()
    settings = baseline_settings(config, declared.current(), host.name, deferred)
    text = json.dumps(contract.dump(settings), sort_keys=True, separators=(",", ":"))
    renew = {} if deferred else {domain: _renew(domain, config) for domain in tls_domains(config)}
    host_matches_baseline(name=BASELINE_OPERATION, settings=text,
                          renew=renew, login=second_login(config.ssh.port))


def _text(pem: str):
    from iac.render import text_file

    return text_file(pem if pem.endswith("\n") else pem + "\n")
