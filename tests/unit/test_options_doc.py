"""The options reference (docs/options.md): up to date with the model, every option in it, types
in words, secrets marked and never shown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import AfterValidator, Field, SecretStr

from cli import options_doc
from cli.options_doc import CONCERNS, OUT, UnnamedType, options, render
from iac.values import Strict, type_name
from operations.host import HostConfig

HEADING = re.compile(r"^### `([^`]+)`$", re.M)


def _schema_paths(schema: dict[str, Any]) -> dict[str, bool]:
    """Every option path of a JSON schema -> whether it is a secret. Walked from pydantic's own
    schema of the model, not from the generator's walk: a path the generator skips is missed."""
    defs = schema.get("$defs", {})
    found: dict[str, bool] = {}

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def variants(node: dict[str, Any]) -> list[dict[str, Any]]:
        node = resolve(node)
        alternatives = node.get("anyOf") or node.get("oneOf")
        return [v for alt in alternatives for v in variants(alt)] if alternatives else [node]

    def secret(node: dict[str, Any]) -> bool:
        return any(v.get("format") == "password" or (isinstance(v.get("additionalProperties"), dict)
                                                      and secret(v["additionalProperties"]))
                   for v in variants(node))

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, prop in node.get("properties", {}).items():
            path = prefix + name
            found[path] = found.get(path, False) or secret(prop)
            for variant in variants(prop):
                walk(variant, f"{path}.")
                entries = variant.get("additionalProperties")
                if isinstance(entries, dict):
                    for entry in variants(entries):
                        walk(entry, f"{path}.<name>.")

    walk(resolve(schema), "")
    return found


def _entry(doc: str, path: str) -> str:
    """The section of option ``path`` in the document."""
    start = doc.index(f"### `{path}`\n")
    end = re.compile(r"^##", re.M).search(doc, start + 1)
    return doc[start:end.start() if end else None]


def test_the_options_reference_is_up_to_date() -> None:
    """Generated to memory and compared with the file in the repository."""
    assert OUT.read_text() == render(), "docs/options.md is stale: run `make options-doc` and commit it"


def test_every_option_path_of_the_model_has_its_section() -> None:
    doc = render()
    documented = HEADING.findall(doc)
    model = _schema_paths(HostConfig.model_json_schema())
    assert len(model) > 100
    assert {"apps.<name>.nginx.server_names", "backups.offsite.postgres.keep_hourly",
            "apps.<name>.processes.<name>.command", "apps.<name>.database.path"} <= set(model)
    assert sorted(set(model) - set(documented)) == [], "options missing from docs/options.md"
    assert sorted(set(documented) - set(model)) == [], "sections of docs/options.md that are no option"
    assert len(documented) == len(set(documented)), "an option documented twice"


def test_options_are_grouped_by_concern_in_the_declared_order() -> None:
    opts = options()
    assert {o.concern for o in opts} == set(CONCERNS), "a new concern: add it to CONCERNS in cli/options_doc.py"
    doc = render()
    assert re.findall(r"^## (\w+)$", doc, re.M) == ["Contents", *CONCERNS]
    by_path = {o.path: o for o in opts}
    assert by_path["host.hostname"].concern == "host" and by_path["app_env_dir"].concern == "host"
    assert by_path["ssh.port"].concern == "exposure"
    assert by_path["apps.<name>.nginx"].concern == "nginx" and by_path["apps.<name>.nginx.port"].concern == "nginx"
    assert by_path["apps.<name>.workers"].concern == "apps"
    within = [o.path for o in opts if o.concern == "backups"]
    assert within == sorted(within)


def test_each_section_gives_type_default_description_example_and_file() -> None:
    doc = render()
    server_names = _entry(doc, "apps.<name>.nginx.server_names")
    assert "- Type: non-empty list of nginx server names" in server_names
    assert '- Default: `["_"]`' in server_names
    assert "server_name values; the first is the canonical name" in server_names
    assert '- Example: `["pravoo.in"]`' in server_names
    assert "- Declared in: `operations/nginx/options.py` (NginxSite)" in server_names

    keep = _entry(doc, "backups.offsite.postgres.keep_hourly")
    assert "- Type: integer 0..10000" in keep and "- Default: `48`" in keep
    assert "- Declared in: `operations/backups/options.py` (ResticPostgres)" in keep
    assert "- Type: integer 1..336" in _entry(doc, "base.apt_cache_hours")
    assert "- Type: one of: debian, nodesource" in _entry(doc, "node.source")
    assert "- Type: path under /etc" in _entry(doc, "app_env_dir")
    assert "- Type: list of DNS names" in _entry(doc, "host.aliases")
    assert "- Type: manage.py command" in _entry(doc, "apps.<name>.processes.<name>.command")
    hostname = _entry(doc, "host.hostname")
    assert "- Default: required" in hostname and "- Declared in: `operations/base/options.py`" in hostname
    path = _entry(doc, "apps.<name>.database.path")
    assert "- Applies when: `apps.<name>.database.engine` is `\"sqlite\"`" in path
    assert "- Type: one of: postgresql, sqlite" in _entry(doc, "apps.<name>.database.engine")
    assert "- Declared in: `operations/host.py` (HostConfig)" in _entry(doc, "apps_group")
    for path in HEADING.findall(doc):
        entry = _entry(doc, path)
        assert "- Type: " in entry and "- Default:" in entry and "- Declared in: `operations/" in entry, path
        assert re.search(r"^- Examples?( \(the shape only\))?:", entry, re.M) or "- Type: section" in entry, path


def test_the_header_says_it_is_generated_and_where_to_edit() -> None:
    head = render()[:1200]
    assert "`make options-doc`" in head and "python -m cli.options_doc" in head
    assert "options.py" in head and "do not edit it by hand" in head


def test_every_secret_is_marked_and_shows_no_default() -> None:
    doc = render()
    secrets = {p for p, s in _schema_paths(HostConfig.model_json_schema()).items() if s}
    assert {"admin.password_hash", "apps.<name>.secret_key", "apps.<name>.secret_env",
            "backups.offsite.postgres.password"} <= secrets
    for path in HEADING.findall(doc):
        marked = "- **Secret**:" in _entry(doc, path)
        assert marked == (path in secrets), path
    assert "- Type: secret (from the secrets file), at least 32 characters\n" in _entry(doc, "apps.<name>.secret_key")


class _Hidden(Strict):
    token: SecretStr = Field(default=SecretStr("hunter2-default"), description="SECRET. A token.",
                             examples=["(a token)"])
    tokens: dict[str, SecretStr] = Field(default={"K": SecretStr("hunter2-map")}, description="SECRET. More.",
                                         examples=[{"K": "(a token)"}])


def test_a_secret_default_never_reaches_the_document() -> None:
    doc = render(options(_Hidden))
    assert "hunter2" not in doc and "**" + "*" * 8 not in doc
    assert doc.count("- **Secret**:") == 2
    assert "- Default: (not shown: a secret)" in _entry(doc, "token")


def test_a_type_without_a_name_stops_the_generator_naming_the_option() -> None:
    class Unnamed(Strict):
        code: Annotated[str, AfterValidator(lambda v: v)] = Field(default="x", description="A code.",
                                                                   examples=["x"])

    with pytest.raises(UnnamedType, match=r"option code .*has no name for people.*type_name"):
        options(Unnamed)

    class Named(Strict):
        code: Annotated[str, AfterValidator(type_name("shop code")(lambda v: v))] = Field(
            default="x", description="A code.", examples=["x"])
        codes: list[Annotated[str, AfterValidator(type_name("shop code")(lambda v: v))]] = Field(
            default=[], description="Codes.", examples=[["x"]])

    types = {o.path: o.type for o in options(Named)}
    assert types == {"code": "shop code", "codes": "list of shop codes"}


def test_descriptions_cannot_turn_into_markup() -> None:
    class Marked(Strict):
        a: int = Field(default=1, description="Goes to <script>x</script> and *all* _of_ apps.<name>.x.",
                       examples=[1])

    entry = _entry(render(options(Marked)), "a")
    outside_code = re.sub(r"`[^`]*`", "", entry)
    assert "<" not in outside_code and "&lt;/script>" in outside_code  # no HTML tag outside code spans
    assert "\\*all\\*" in entry and "\\_of\\_" in entry and "`apps.<name>.x`." in entry


def test_check_exits_1_when_stale_and_writing_makes_it_current(tmp_path: Path, monkeypatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "options.md"
    out.parent.mkdir()
    monkeypatch.setattr(options_doc, "OUT", out)
    out.write_text("old\n")
    assert options_doc.main(["--check"]) == 1
    assert f"{out} is stale: run `make options-doc`" in capsys.readouterr().err
    assert out.read_text() == "old\n"
    assert options_doc.main([]) == 0
    assert out.read_text() == render()
    assert options_doc.main(["--check"]) == 0


class _Disk(Strict):
    kind: Literal["disk"] = Field(description="A disk.", examples=["disk"])
    size: int = Field(default=1, ge=1, description="Size.", examples=[1])


class _Tape(Strict):
    kind: Literal["tape"] = Field(description="A tape.", examples=["tape"])
    label: str = Field(default="a", description="Label.", examples=["a"])


class _Store(Strict):
    stores: dict[str, Annotated[_Disk | _Tape, Field(discriminator="kind")]] = Field(
        default={}, description="Stores.", examples=[{}])


def test_variants_in_a_map_share_their_discriminator_and_say_when_the_rest_applies() -> None:
    by_path = {o.path: o for o in options(_Store)}
    assert sorted(by_path) == ["stores", "stores.<name>.kind", "stores.<name>.label", "stores.<name>.size"]
    assert by_path["stores"].type == "map from string to section whose `kind` is one of: disk, tape"
    assert by_path["stores.<name>.kind"].type == "one of: disk, tape"
    assert by_path["stores.<name>.size"].applies_when == '`stores.<name>.kind` is `"disk"`'
    assert by_path["stores.<name>.size"].type == "integer, at least 1"


def test_an_option_two_variants_give_two_meanings_stops_the_generator() -> None:
    class _Other(Strict):
        kind: Literal["other"] = Field(description="Other.", examples=["other"])
        size: str = Field(default="x", description="A size in words.", examples=["x"])

    class _Mixed(Strict):
        item: Annotated[_Disk | _Other, Field(discriminator="kind")] = Field(description="One.", examples=[None])

    with pytest.raises(ValueError, match=r"option item.size is declared by several variants"):
        options(_Mixed)
