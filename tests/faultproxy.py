"""An HTTP proxy on 127.0.0.1 that forwards to a real server, or fails on purpose.

Put in front of an object store (as ``AWS_ENDPOINT_URL``) or a mirror (as ``--mirror-url``),
its ``rule(method, path)`` decides for every request:

- ``"pass"``: forward it and relay the answer, Host header untouched (SigV4 signs it);
- ``"503"``: answer 503 SlowDown, as S3 does under load;
- ``"429"``: answer 429 Too Many Requests with ``Retry-After: 2``, as a site that rations us;
- ``"drop"``: close the connection without an answer;
- ``"hold"``: signal ``held`` and keep the request open until ``release`` is set (then drop),
  so a test can act (kill the client, stop the server) at a known point of a run;
- ``"unconditional"``: forward it without its ``If-None-Match`` header, signed again with
  ``credentials`` (SigV4 signs that header): a store that ignores conditional writes.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        rule: Callable[[str, str], str] | None = None,
        credentials: tuple[str, str, str] | None = None,  # access key, secret key, region
    ):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.rule = rule or (lambda method, path: "pass")
        self.credentials = credentials
        self.held = threading.Event()
        self.release = threading.Event()
        self.seen: list[tuple[str, str, str]] = []  # (method, path, action)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="fault-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decide(self, method: str, path: str) -> str:
        with self._lock:
            action = self.rule(method, path)
            self.seen.append((method, path, action))
        return action

    def _unconditional(self, method: str, path: str, headers: dict, body: bytes | None) -> dict:
        """``headers`` without If-None-Match, signed again as the client would have signed them."""
        kept = {
            k: v
            for k, v in headers.items()
            if k.lower() not in ("if-none-match", "authorization", "x-amz-date")
        }
        request = AWSRequest(method, f"http://{headers['Host']}{path}", headers=kept, data=body or b"")
        access_key, secret_key, region = self.credentials
        S3SigV4Auth(Credentials(access_key, secret_key), "s3", region).add_auth(request)
        return dict(request.headers.items())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" (botocore waits 1 s for it)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                action = proxy._decide(self.command, self.path)
                if action == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                if action == "429":
                    self.send_response(429)
                    self.send_header("Retry-After", "2")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action == "hold":
                    proxy.held.set()
                    proxy.release.wait()
                if action in ("hold", "drop"):
                    self.close_connection = True
                    self.connection.close()
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                    if action == "unconditional":
                        headers = proxy._unconditional(self.command, self.path, headers, body)
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header(
                    "Content-Length",
                    answer.getheader("Content-Length", str(len(data)))
                    if self.command == "HEAD"
                    else str(len(data)),
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
