"""One alert client: a message to a Discord-style webhook, delivered despite a rate limit or a
passing server error (managed by this repo: files/usr/local/lib/iac/engine_common/alerts.py).

Every alert of the repository goes through ``post``: the release engine's failed release, the
backup engine's failed unit, the CI drift job's report (cli/drift_notify.py). A 429 waits what
the server asks (``Retry-After`` or the JSON ``retry_after``, capped), a 5xx or a network error
backs off exponentially; a 4xx other than 429 is final (the message or the URL is wrong). The
URL is a secret: no error, log line or exception ever carries it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

MAX_WAIT = 30.0  # seconds: a longer rate limit would hold a release's alert too long


class AlertFailed(Exception):
    """Not delivered; the message says why without the URL."""


def body(content: str) -> bytes:
    """The JSON a webhook gets: the text (Discord's 2000-character limit kept) and no mention that
    could ping anyone (an app, host or unit name reaching a message stays text)."""
    return json.dumps({"content": content[:2000], "allowed_mentions": {"parse": []}}).encode()


def _retry_after(headers: object, payload: bytes) -> float | None:
    value = getattr(headers, "get", lambda _k: None)("Retry-After")
    try:
        if value is not None:
            return float(value)
        return float(json.loads(payload or b"{}").get("retry_after"))
    except (TypeError, ValueError, AttributeError):
        return None


def post(url: str, content: str, *, user_agent: str = "iac", attempts: int = 5, timeout: float = 15.0,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Deliver ``content`` to ``url``; returns the number of attempts it took. Raises AlertFailed."""
    import urllib.error  # only alerts need urllib: not imported on every engine start
    import urllib.request

    data = body(content)
    why = "not tried"
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                                  "User-Agent": user_agent})
        wait = min(2.0 ** (attempt - 1), MAX_WAIT)
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return attempt
        except urllib.error.HTTPError as e:
            payload = e.read() if hasattr(e, "read") else b""
            if e.code == 429:
                asked = _retry_after(e.headers, payload)
                wait = min(asked, MAX_WAIT) if asked is not None else wait
                why = "rate limited (429)"
            elif 500 <= e.code < 600:
                why = f"server error ({e.code})"
            else:
                raise AlertFailed(f"the webhook refused the message ({e.code})") from None
        except OSError as e:  # connection refused, timeout, DNS: the URL is not shown
            why = f"{type(e).__name__}"
        if attempt < attempts:
            sleep(wait)
    raise AlertFailed(f"not delivered after {attempts} attempts: {why}")
