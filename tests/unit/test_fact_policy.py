"""The fact-record policy (iac/pyinfra_ext/fact_policy.py) against the fact classes it names, without a host."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from pyinfra.api import FactBase

import iac
import operations
from iac.pyinfra_ext import fact_calls, fact_policy
from iac.pyinfra_ext.fact_policy import (
    ALLOWED_FACTS,
    EXECUTOR,
    GIT_URL,
    HOSTNAME,
    NAME,
    PATH,
    TEXT,
    UNIT,
    URL_PATH,
    refusal,
)


def repo_fact_classes() -> dict[str, type[FactBase]]:
    """Every fact class defined in operations/ and the library (by import path)."""
    found = {}
    for module_info in [*pkgutil.walk_packages(operations.__path__, "operations."),
                        *pkgutil.walk_packages(iac.__path__, "iac.")]:
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, FactBase) and cls.__module__ == module.__name__:
                found[fact_calls.fact_path(cls)] = cls
    return found


def test_every_fact_class_of_the_repo_is_allowed_or_said_why_not() -> None:
    classes = repo_fact_classes()
    assert len(classes) >= 14
    missing = set(classes) - set(ALLOWED_FACTS) - set(fact_policy.NEVER_RECORDED)
    assert not missing, f"add to iac/pyinfra_ext/fact_policy.py ALLOWED_FACTS with the kind of each argument: {missing}"


@pytest.mark.parametrize("path", sorted(ALLOWED_FACTS))
def test_each_allowed_fact_exists_and_its_arguments_are_its_commands(path: str) -> None:
    cls = fact_calls.fact_class(path)
    parameters = [p for p in inspect.signature(cls.command).parameters if p != "self"]
    assert sorted(parameters) == sorted(ALLOWED_FACTS[path]), path


def test_the_executor_settings_are_pyinfras_without_environment_stdin_or_password() -> None:
    from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS

    assert set(EXECUTOR) <= set(CONNECTOR_ARGUMENT_KEYS)
    assert not {"_env", "_stdin", "_sudo_password", "_su_password", "_su_shell", "_retry_until"} & set(EXECUTOR)


@pytest.mark.parametrize(("kind", "good", "bad"), [
    (PATH, ["/etc/hosts", "/etc/systemd/system/iac-backup-alert@.service", "/srv/a_b/c-d.e", "/"],
     ["etc/hosts", "/x y", "/x;id", "/x$(id)", "/x`id`", "/a/../etc/shadow", "/x\n", "/x'", None, 1, ["/x"]]),
    (NAME, ["gts", "rental_scheduler_user", "eno1", "useradd", "postgres"],
     ["-rf", "a b", "a;b", "", "a'b", "a$b", True, 5]),
    (HOSTNAME, ["pravoo.in", "gts-server.lan"], ["-x.in", "a b", "a/b", "a;b", ""]),
    (URL_PATH, ["/", "/health/?x=1"], ["", "x", "/a b", "/a'b", "/$(id)"]),
    (GIT_URL, ["git@github.com:pravoo/Chips_dashboard.git", "ssh://git@10.224.3.2/srv/git/chip_dashboard.git",
               "ssh://git@git.example.com:2222/owner/repo.git"],
     ["-oProxyCommand=id", "git@h:o/r.git; id", "git@h:$(id)", "git@h:o r"]),
    (UNIT, ["nginx.service", "iac-backup-alert@.service"], ["-x", "a b", "a;b", "a\\x"]),
    (TEXT, ["^127.0.1.1\tgts-server.lan gts-server$", "^.*ssh-ed25519 AAAA+/= sandbox.*$"], ["a\nb", "a\x1b[2J", 3]),
])
def test_kinds_accept_the_repos_values_and_refuse_others(kind, good, bad) -> None:
    for value in good:
        assert kind.accepts(value), (kind.name, value)
    for value in bad:
        assert not kind.accepts(value), (kind.name, value)


def test_refusal_names_the_reason() -> None:
    sudo = {"_sudo": True, "_sudo_user": "postgres"}
    assert refusal("pyinfra.facts.files:File", {"path": "/etc/hosts"}, sudo) is None
    assert refusal("pyinfra.facts.server:Command", {"command": "id"}, {}) == "not a fact class of this repository"
    assert refusal(["pyinfra.facts.files:File"], {}, {}) == "not a fact class of this repository"
    assert refusal("pyinfra.facts.files:File", {"path": "/x y"}, {}) == "argument 'path' is not a path"
    assert refusal("pyinfra.facts.files:File", [], {}) == "its arguments are not a mapping"
    assert refusal("pyinfra.facts.server:Hostname", {}, {"_env": {}}) == "unknown executor setting '_env'"
    assert refusal("operations.app.facts:HttpStatus", {"port": True}, {}) == "argument 'port' is not a int 1..65535"
    assert refusal("pyinfra.facts.server:Hostname", {}, {"_success_exit_codes": [0, "1"]}) is not None

