"""Real network peers on localhost for tests: a Slack webhook endpoint, a flaky one and a StatsD agent."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class SlackStandIn:
    """An HTTP server that answers like Slack's incoming webhooks and keeps what it receives.

    `status` is what it answers (200 "ok", or e.g. 500 to stand in for an outage).
    """

    def __init__(self, status: int = 200):
        self.status = status
        self.received: list[dict] = []
        self.hits = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stand_in.hits += 1
                if stand_in.status == 200:
                    stand_in.received.append({"path": self.path, "body": json.loads(body)})
                payload = b"ok" if stand_in.status == 200 else b"internal_error"
                self.send_response(stand_in.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/test-token"

    def connection_env(self, conn_id: str) -> dict[str, str]:
        """AIRFLOW_CONN_<ID> for a Slack incoming-webhook connection pointing here."""
        conn = {"conn_type": "slackwebhook", "password": self.url}
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}

    def texts(self) -> list[str]:
        return [r["body"]["text"] for r in self.received]

    def __enter__(self) -> SlackStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class FlakyWebhook:
    """A raw HTTP endpoint on 127.0.0.1 (a random port): its first connection is dropped without
    an answer, every later request gets a 500 whose body quotes the requested path."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests: list[dict] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    path, body = self._read(conn)
                except (OSError, ValueError):
                    continue
                self.requests.append({"path": path, "body": body})
                if len(self.requests) == 1:
                    continue  # dropped: closed without a byte of answer
                text = f"no_service: {path}".encode()
                conn.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
                    + text
                )

    @staticmethod
    def _read(conn: socket.socket) -> tuple[str, str]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                raise ValueError("closed before the headers ended")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (line.partition(":") for line in lines[1:]) if k.lower() == "content-length")
        while len(body) < length:
            body += conn.recv(65536)
        return lines[0].split(" ")[1], body.decode()

    def __enter__(self) -> FlakyWebhook:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


class StatsdListener:
    """A UDP socket on localhost collecting DogStatsD lines: name:value|type|#tag:v,…"""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.lines: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._receive, daemon=True)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines += [line for line in data.decode(errors="replace").splitlines() if line]

    def metrics(self) -> list[dict]:
        """Parsed lines: {"name", "value", "type", "tags": {k: v}}."""
        parsed = []
        for line in self.lines:
            head, _, rest = line.partition("|")
            name, _, value = head.rpartition(":")
            fields = rest.split("|")
            tags = {}
            for part in fields[1:]:
                if part.startswith("#"):
                    for tag in part[1:].split(","):
                        k, _, v = tag.partition(":")
                        tags[k] = v
            parsed.append({"name": name, "value": float(value) if value else None, "type": fields[0], "tags": tags})
        return parsed

    def __enter__(self) -> StatsdListener:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close()
