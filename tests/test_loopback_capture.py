"""The capture the browser test relies on can fail: plaintext on the port is found."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from pathlib import Path

import pytest
from loopback_capture import LoopbackCapture, capture_unavailable, samples
from web_helpers import jpeg_of

pytestmark = pytest.mark.skipif(bool(capture_unavailable()), reason=capture_unavailable())


def test_a_plain_jpeg_on_the_port_is_found(sample_dir: Path, tmp_path: Path) -> None:
    jpeg = jpeg_of(sample_dir / "astronaut.png")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        url = f"http://127.0.0.1:{port}/photo.jpg"
        with (
            LoopbackCapture(port, tmp_path / "plain.pcap") as capture,
            urllib.request.urlopen(url, timeout=10) as response,
        ):
            assert response.read() == jpeg
    finally:
        server.shutdown()
    crossed = b"".join(capture.flows().values())
    assert all(block in crossed for block in samples(jpeg))
