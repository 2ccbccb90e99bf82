"""The drift report without a host: from a pyinfra plan (as iac.pyinfra_ext.plan_runner prints it) to text,
JSON (checked against the committed schema docs/drift-report.schema.json with a JSON Schema
validator) and Markdown (the same facts, for a CI job summary); secrets never printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cli.drift import DRIFT, ERROR, IN_SYNC, DriftReport, main, report

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs/drift-report.schema.json").read_text())
SECRET = "CANARY-secret_key-abc123 $(touch /tmp/x)`id`|<b>"


def _op(name: str, changed: list[str], conditional: list[str] | None = None, details: dict | None = None,
        names: dict | None = None) -> dict:
    return {"name": name, "op_hash": name, "hosts_with_change": changed,
            "hosts_with_conditional_change": conditional or [], "host_names": names or {},
            "host_details": details or {}}


PLAN = {"plan": [
    _op("nginx site django (staged)", ["srv1178562"]),
    _op("env file", ["gts-server"], names={"gts-server": "shop_scheduler: env file (secrets)"},
        details={"gts-server": [f"SECRET_KEY differs: was {SECRET}"]}),
    _op("reload nginx", [], conditional=["srv1178562"]),
    _op("Host name", [], names={"srv1178562": "Host name srv1178562"}),
]}


def test_the_schema_file_is_the_models_schema() -> None:
    """docs/drift-report.schema.json is what consumers read: it must be the model's own."""
    assert DriftReport.model_json_schema(by_alias=True) == SCHEMA, \
        "regenerate docs/drift-report.schema.json from cli.drift.DriftReport"


def test_a_drifted_plan_names_host_operation_and_difference_and_redacts_secrets() -> None:
    result = report("sandbox/inventory.py", 0, PLAN, "", [SECRET])
    assert (result.status, result.exit_code, result.operations_checked) == ("drift", DRIFT, 4)
    assert result.hosts == ["gts-server", "srv1178562"]
    text = result.text()
    assert "drift: DRIFT in 2 operation(s) of 4:" in text
    assert "  ~ gts-server: shop_scheduler: env file (secrets)\n      SECRET_KEY differs: was **********" in text
    # grouped by host (gts-server first), then Pulumi's summary line
    assert text.index("gts-server: shop") < text.index("srv1178562: nginx site")
    assert text.endswith("Plan: 0 to add, 2 to change, 0 to delete")
    assert "then, depending on those:\n  srv1178562: reload nginx" in text
    as_json = result.model_dump_json(by_alias=True)
    jsonschema.validate(json.loads(as_json), SCHEMA)
    markdown = result.markdown()
    for out in (text, as_json, markdown):
        assert "CANARY" not in out and "touch /tmp/x" not in out
    # Markdown: the same facts, one row each, nothing that breaks the table
    assert "## Drift check: DRIFT" in markdown
    assert "**Plan: 0 to add, 2 to change, 0 to delete**" in markdown
    assert "| ~ | gts-server | shop_scheduler: env file (secrets) | SECRET_KEY differs: was ********** |" in markdown
    assert "| ~ | srv1178562 | nginx site django (staged) |  |" in markdown
    assert "|  | srv1178562 | reload nginx | runs after a change above |" in markdown


def test_markdown_cells_cannot_break_the_table_or_inject_html() -> None:
    plan = {"plan": [_op("x", ["h"], details={"h": ["a | b <script>`c`\nd"]})]}
    row = report("i", 0, plan, "").markdown().splitlines()[-1]
    assert row == "| ~ | h | x | a \\| b &lt;script>'c' d |"


def test_only_conditional_operations_are_in_sync() -> None:
    result = report("i", 0, {"plan": [_op("reload nginx", [], conditional=["h"])]}, "")
    assert (result.status, result.exit_code, result.drift) == ("in_sync", IN_SYNC, [])
    assert result.text() == "drift: in sync (1 operations checked, no change pending)"
    assert "Every host is as declared." in result.markdown()
    jsonschema.validate(json.loads(result.model_dump_json(by_alias=True)), SCHEMA)


def test_a_failed_plan_is_an_error_with_the_reason_redacted() -> None:
    stderr = f"--> Connecting to hosts...\n[gts-server] Could not connect ({SECRET})\n"
    result = report("inventory.py", 1, None, stderr, [SECRET])
    assert (result.status, result.exit_code) == ("error", ERROR)
    assert "Could not connect" in result.error and "CANARY" not in result.error
    assert result.text().startswith("drift: ERROR: pyinfra exited 1")
    assert "## Drift check: ERROR" in result.markdown() and "Could not connect" in result.markdown()
    jsonschema.validate(json.loads(result.model_dump_json(by_alias=True)), SCHEMA)


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_invalid_configuration_exits_1_with_the_reason_on_stderr_in_every_format(
        tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture) -> None:
    inventory = tmp_path / "inventory.py"
    inventory.write_text("from iac.errors import ConfigError\nraise ConfigError('apps.x.workers: must be >= 1')\n")
    out = tmp_path / "drift.json"
    assert main([str(inventory), "--format", fmt, "--json-out", str(out)]) == ERROR
    captured = capsys.readouterr()
    assert "invalid configuration: apps.x.workers: must be >= 1" in captured.err
    saved = json.loads(out.read_text())
    jsonschema.validate(saved, SCHEMA)
    assert saved["status"] == "error" and saved["exit_code"] == 1
    if fmt == "json":
        assert json.loads(captured.out) == saved


def test_the_drift_message_names_hosts_and_operations_and_fits_discord() -> None:
    from cli.drift_notify import LIMIT, message, run_url

    result = report("inventory.py", 0, PLAN, "", [SECRET])
    url = run_url({"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "7"})
    text = message(result, url)
    assert text.startswith("**Drift** in `inventory.py`") and "2 operation(s) on gts-server, srv1178562" in text
    assert "- gts-server: shop_scheduler: env file (secrets): SECRET_KEY differs: was **********" in text
    assert "reload nginx" not in text  # follows from a change above: not news
    assert text.endswith("Details: https://github.com/o/r/actions/runs/7") and "CANARY" not in text
    many = {"plan": [_op(f"operation {i} " + "x" * 80, ["h"]) for i in range(60)]}
    long = message(report("inventory.py", 0, many, ""), url)
    assert len(long) <= LIMIT and "more" in long and long.endswith("/runs/7")


def test_the_drift_message_can_never_ping_anyone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that reaches the message (an app, a path: "@everyone") stays text: the webhook body
    tells Discord to parse no mention at all."""
    from cli import drift_notify

    hostile = {"plan": [_op("app @everyone <@&123> @here", ["srv1178562"])]}
    (tmp_path / "drift.json").write_text(report("inventory.py", 0, hostile, "").model_dump_json(by_alias=True))
    sent = []

    class Response:
        def __enter__(self) -> Response:
            return self

        def __exit__(self, *_: object) -> None:
            pass

        def read(self) -> bytes:
            return b""

    def urlopen(request, timeout):  # noqa: ANN001, ANN202
        sent.append((request.full_url, request.get_header("Content-type"), json.loads(request.data)))
        return Response()

    import urllib.request
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("DRIFT_WEBHOOK_URL", "https://discord.example/api/webhooks/1/t")
    assert drift_notify.main([str(tmp_path / "drift.json")]) == 0
    [(url, content_type, body)] = sent
    assert url == "https://discord.example/api/webhooks/1/t" and content_type == "application/json"
    assert body["allowed_mentions"] == {"parse": []} and set(body) == {"content", "allowed_mentions"}
    assert "app @everyone <@&123> @here" in body["content"]


def test_each_resource_is_created_updated_or_deleted_and_the_plan_line_counts_them() -> None:
    plan = {"plan": [
        _op("Manifest", ["h"], details={"h": ["Will create /etc/iac/managed.json", "+ {"]}),
        _op("env", ["h"], details={"h": ["+ create /etc/x.env (content not shown: it holds secrets)"]}),
        _op("Orphans removed", ["h"], details={"h": ["- delete unit a.service (app a)", "- delete user a (app a)",
                                                     "retained directory /srv/releases/a (app a): ..."]}),
        _op("Local names in /etc/hosts", ["h"], details={"h": ["@@ -1 +1 @@", "- 127.0.1.1 x", "+ 127.0.1.1 h"]}),
    ]}
    result = report("i", 0, plan, "")
    assert [i.symbol for i in result.drift] == ["+", "+", "-", "~"]
    assert result.summary.line() == "Plan: 2 to add, 1 to change, 2 to delete"
    assert result.text().splitlines()[1:4] == ["  + h: Manifest", "      Will create /etc/iac/managed.json",
                                               "      + {"]


def test_a_usage_error_exits_1_not_argparses_2_which_means_drift() -> None:
    for argv in (["--format", "bad", "sandbox/inventory.py"], []):
        run = subprocess.run([sys.executable, "-m", "cli.drift", *argv], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[2], check=False)
        assert run.returncode == 1, (argv, run.returncode, run.stderr)
        assert "error:" in run.stderr and run.stderr.count("usage:") == 1


def test_redaction_hides_whole_values_longest_first_never_inside_words() -> None:
    from cli.drift import redact

    long_secret = "CANARY-app.secret_key-0123456789abcdef$(id)"
    word = "CANARY-restic.password-0123456789"
    shown = redact(f"path /usr/lib/python3/iac; key={long_secret}; again '{long_secret}'\n"
                   f"{long_secret}tail, {word}, {word}x and sr", [long_secret, word, "sr", "", long_secret[:20]])
    assert shown == ("path /usr/lib/python3/iac; key=**********; again '**********'\n"
                     f"**********tail, **********, {word}x and **********")
