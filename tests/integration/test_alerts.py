"""An app that crash-loops sends exactly one alert to the host's webhook (OnFailure= of its units,
the alert unit the backups install), and comes back when its cause is gone.

The LAN host's shop_scheduler is made to exit at once (a runtime drop-in, gone at the end): systemd
restarts it 5 times in 2 minutes, gives up, and the unit's OnFailure= posts one message naming the
host and the unit. Nothing more is posted while it stays failed.
"""

from __future__ import annotations

import time

from tests.integration.conftest import Run, Sandbox

UNIT = "gunicorn-shop_scheduler.service"
SOCKET = "gunicorn-shop_scheduler.socket"
DROP_IN = f"/run/systemd/system/{UNIT}.d/iac-test-crash.conf"


def test_a_crash_looping_app_sends_one_alert_and_recovers(sandbox: Sandbox, converged: Run) -> None:
    before = len(sandbox.webhook_messages())
    sandbox.ssh("lan", f"mkdir -p {DROP_IN.rsplit('/', 1)[0]} && printf '[Service]\\nExecStart=\\n"
                       f"ExecStart=/bin/false\\n' > {DROP_IN} && systemctl daemon-reload && "
                       f"systemctl restart {UNIT} || true")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = sandbox.ssh("lan", f"systemctl is-failed {UNIT}", check=False).stdout.strip()
            if state == "failed" and len(sandbox.webhook_messages()) > before:
                break
            time.sleep(1)
        time.sleep(10)  # anything more would have come by now
        new = sandbox.webhook_messages()[before:]
        assert state == "failed", state
        assert len(new) == 1, new
        assert new[0].startswith(f"Unit FAILED (gave up restarting) on gts-server: {UNIT}."), new
    finally:
        sandbox.ssh("lan", f"rm -f {DROP_IN} && systemctl daemon-reload && systemctl reset-failed {UNIT} {SOCKET}; "
                           f"systemctl start {SOCKET} {UNIT}")
    code = sandbox.ssh("lan", "curl -s -o /dev/null -w '%{http_code}' --retry 10 --retry-all-errors "
                              "--retry-delay 1 http://127.0.0.1:8002/").stdout.strip()
    assert code == "200", code
