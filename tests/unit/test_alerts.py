"""The one alert client (files/usr/local/lib/iac/engine_common/alerts.py), against a webhook stand-in
that answers 429 and 500 before it takes the message: every alert of the repository (a failed
release, a failed backup unit, the CI drift job's report) gets through a rate limit or a passing
server error, and no failure ever shows the URL (a secret)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from engine_common import alerts


class Hook(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, dict, bytes]] = []
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        code, headers, payload = Hook.answers.pop(0) if Hook.answers else (204, {}, b"")
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.answers, Hook.received = [], []
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/webhooks/1/secret-token"
    server.shutdown()
    server.server_close()


def test_a_rate_limit_and_a_server_error_are_waited_out(hook: str) -> None:
    Hook.answers = [(429, {"Retry-After": "0.2"}, b'{"retry_after": 0.2}'), (500, {}, b""), (502, {}, b"")]
    waits: list[float] = []
    assert alerts.post(hook, "Release FAILED on srv1: @everyone", sleep=waits.append) == 4
    assert waits == [0.2, 2.0, 4.0]  # what the server asked, then exponential backoff
    assert len(Hook.received) == 4
    assert Hook.received[-1] == {"content": "Release FAILED on srv1: @everyone", "allowed_mentions": {"parse": []}}


def test_the_rate_limit_is_read_from_the_json_body_and_capped(hook: str) -> None:
    Hook.answers = [(429, {}, b'{"retry_after": 3600}')]
    waits: list[float] = []
    alerts.post(hook, "x", sleep=waits.append)
    assert waits == [alerts.MAX_WAIT]


def test_a_refused_message_is_final_and_no_failure_shows_the_url(hook: str) -> None:
    Hook.answers = [(400, {}, b"")]
    with pytest.raises(alerts.AlertFailed, match="refused the message") as refused:
        alerts.post(hook, "x", sleep=lambda _: None)
    assert len(Hook.received) == 1 and "secret-token" not in str(refused.value)
    Hook.answers = [(500, {}, b"")] * 5
    with pytest.raises(alerts.AlertFailed, match="after 5 attempts: server error") as failed:
        alerts.post(hook, "x", sleep=lambda _: None)
    assert "secret-token" not in str(failed.value)
    with pytest.raises(alerts.AlertFailed) as unreachable:
        alerts.post("http://127.0.0.1:9/api/webhooks/1/secret-token", "x", attempts=2, sleep=lambda _: None)
    assert "secret-token" not in str(unreachable.value)


def test_a_long_message_is_cut_to_what_the_webhook_takes(hook: str) -> None:
    alerts.post(hook, "x" * 5000, sleep=lambda _: None)
    assert len(Hook.received[0]["content"]) == 2000
