"""A bounded load generator for the zero-downtime tests: ``clients`` threads ask one URL through
nginx on a sandbox host, a new connection per request, at most ``rate`` requests a second each,
until stopped. An answer that is not 2xx/3xx and a connection error are failures; the longest time
between two answers (of any client) is the gap a user would have seen."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    longest_gap: float = 0.0

    def summary(self) -> str:
        return (f"{self.answered} answered, {len(self.failures)} failed, longest gap {self.longest_gap:.2f} s"
                + (f"; first failures: {self.failures[:5]}" if self.failures else ""))


class Load:
    """``with Load(ip, 443, "pravoo.in", tls=True) as load: ...`` then ``load.result``."""

    def __init__(self, ip: str, port: int, host: str, path: str = "/", tls: bool = False, clients: int = 2,
                 rate: float = 20.0, timeout: float = 70.0) -> None:
        self.ip, self.port, self.host, self.path, self.tls = ip, port, host, path, tls
        self.clients, self.pause, self.timeout = clients, 1.0 / rate, timeout
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last = 0.0
        self._threads: list[threading.Thread] = []

    def _connection(self) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection(self.ip, self.port, timeout=self.timeout)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the sandbox's ACME CA: the chain is tested elsewhere
        return http.client.HTTPSConnection(self.ip, self.port, timeout=self.timeout, context=context)

    def _client(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            failure = None
            try:
                conn = self._connection()
                conn.request("GET", self.path, headers={"Host": self.host, "Connection": "close"})
                status = conn.getresponse().status
                conn.close()
                if not 200 <= status < 400:
                    failure = f"HTTP {status}"
            except (OSError, http.client.HTTPException) as e:
                failure = f"{type(e).__name__}: {e}"
            now = time.monotonic()
            with self._lock:
                if failure:
                    self.result.failures.append(f"{now - self._t0:.2f}s {failure}")
                else:
                    self.result.answered += 1
                    self.result.longest_gap = max(self.result.longest_gap, now - self._last)
                    self._last = now
            self._stop.wait(max(0.0, self.pause - (time.monotonic() - started)))

    def __enter__(self) -> Load:
        self._t0 = self._last = time.monotonic()
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
