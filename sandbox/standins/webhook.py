"""Discord stand-in: records every request as one JSON line, answers 204 like Discord does.

Managed by the iac sandbox; tests read the log file to count and inspect messages.
"""

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            entry = {"time": time.time(), "method": self.command, "path": self.path,
                     "content_type": self.headers.get("Content-Type"), "body": body}
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
            self.send_response(204)
            self.end_headers()

        do_POST = _record
        do_PUT = _record

        def do_GET(self) -> None:  # health check
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"webhook stand-in\n")

        def log_message(self, fmt: str, *a: object) -> None:  # keep URLs (tokens) out of logs
            pass

    ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
