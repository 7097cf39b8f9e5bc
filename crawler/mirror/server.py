"""A loopback HTTP server for the mirrors: ``GET /<host>/<path>`` answers that host's page, with an
ETag, and 304 to a request whose If-None-Match names it."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from crawler.mirror.sites import Mirror, build_mirror


class MirrorServer:
    """Serves a :class:`Mirror` on 127.0.0.1 from a background thread; records what was asked."""

    def __init__(self, mirror: Mirror | None = None, port: int = 0):
        self.mirror = mirror or build_mirror()
        self.requested: list[str] = []  # "host/path" of every request, in order
        self.not_modified: list[str] = []  # ... of those answered 304 (If-None-Match matched)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mirror", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MirrorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host, _, rest = self.path.lstrip("/").partition("/")
                target = urlsplit("/" + rest)
                path = target.path + (f"?{target.query}" if target.query else "")
                with server._lock:
                    server.requested.append(host + path)
                page = server.mirror.page(host, path)
                if page is None:
                    self.send_error(404, "not in the mirror")
                    return
                etag = f'"{hashlib.sha256(page.body).hexdigest()[:16]}"'
                if page.status == 200 and self.headers.get("If-None-Match") == etag:
                    with server._lock:
                        server.not_modified.append(host + path)
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(page.status)
                self.send_header("ETag", etag)
                self.send_header("Content-Type", page.content_type)
                self.send_header("Content-Length", str(len(page.body)))
                for name, value in page.headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(page.body)

            def log_message(self, format: str, *args: object) -> None:  # quiet: the crawl logs
                pass

        return Handler
