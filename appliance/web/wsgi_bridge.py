"""From a complete HTTP request to a WSGI call and back (runs on the server's worker threads).

The server hands over a request only once its headers and whole body have arrived, so the app
never waits on a client: ``wsgi.input`` reads from the body buffer the server owns (and zeroes
when the request is done), and the response is pulled from the app in batches that the event
loop writes out, so a slow reader does not hold a worker while it reads.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import h11

logger = logging.getLogger("appliance.web.httpd")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
PULL_BYTES = 256 * 1024  # how much of a response one worker call gathers before handing it on
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"}


class BadTarget(ValueError):
    """The request target is not a path (or an absolute URL)."""


class BodyReader(io.RawIOBase):
    """``wsgi.input`` over the server's body buffer: reads copy out, nothing else keeps it."""

    def __init__(self, body: bytearray) -> None:
        super().__init__()
        self._view = memoryview(body)
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        size = min(len(target), len(self._view) - self._at)
        target[:size] = self._view[self._at : self._at + size]
        self._at += size
        return size

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(self._at + size, len(self._view))
        data = bytes(self._view[self._at : end])
        self._at = end
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = (
            len(self._view) if size is None or size < 0 else min(self._at + size, len(self._view))
        )
        end = self._at
        while end < limit and self._view[end] != 0x0A:
            end += 1
        return self.read(min(end + 1, limit) - self._at)

    def close(self) -> None:
        self._view.release()
        super().close()


class ErrorStream(io.TextIOBase):
    """``wsgi.errors``: whatever an app writes there goes to the log, one record a line."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                logger.error("app: %s", line[:500])
        return len(text)


def _path_and_query(target: bytes) -> tuple[str, str]:
    text = target.decode("latin-1")
    if text.startswith("/"):
        path, _, query = text.partition("?")
    elif text.lower().startswith(("http://", "https://")):
        parts = urlsplit(text)
        path, query = parts.path or "/", parts.query
    else:
        raise BadTarget("request target must be a path")
    return unquote_to_bytes(path).decode("latin-1"), query


def build_environ(
    request: h11.Request,
    body: bytearray | None,
    *,
    scheme: str,
    server_port: int,
    client: str,
) -> dict[str, Any]:
    path, query = _path_and_query(request.target)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "appliance",
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii"),
        "REMOTE_ADDR": client,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": BodyReader(body if body is not None else bytearray()),
        "wsgi.errors": ErrorStream(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    if body is not None:
        environ["CONTENT_LENGTH"] = str(len(body))  # the bytes received, chunked or not
    for raw_name, raw_value in request.headers:
        name = raw_name.decode("latin-1")
        if "_" in name:  # "X_Forwarded" would pose as "X-Forwarded" in the environ
            continue
        value = raw_value.decode("latin-1")
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            continue
        if key == "CONTENT_TYPE":
            environ[key] = value
            continue
        key = "HTTP_" + key
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            environ[key] = value
    return environ


@dataclass
class AppResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    rest: Iterator[bytes] | None  # more to pull (a stream); None when everything is in chunks
    close: Callable[[], None] = field(default=lambda: None)


def _pull(iterator: Iterator[bytes]) -> tuple[list[bytes], bool]:
    chunks: list[bytes] = []
    size = 0
    for chunk in iterator:
        if chunk:
            chunks.append(bytes(chunk))
            size += len(chunk)
            if size >= PULL_BYTES:
                return chunks, False
    return chunks, True


def pull_more(response: AppResponse) -> tuple[list[bytes], bool]:
    """The next batch of a streamed response (a worker call); True when the stream ended."""
    assert response.rest is not None
    return _pull(response.rest)


def call_app(app: WsgiApp, environ: dict[str, Any]) -> AppResponse:
    """Run the app and gather the start of its response (a worker call)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return _no_write

    result = app(environ, start_response)
    iterator = iter(result)
    closer = getattr(result, "close", None)
    try:
        chunks, finished = _pull(iterator)
    except BaseException:
        if callable(closer):
            closer()
        raise
    if not started:
        raise RuntimeError("the app returned without calling start_response")
    status_line, app_headers = started
    code, _, reason = status_line.partition(" ")
    headers = [
        (name.encode("latin-1").lower(), value.encode("latin-1"))
        for name, value in app_headers
        if name.encode("latin-1").lower() not in _HOP_BY_HOP
    ]
    response = AppResponse(
        int(code), reason.encode("latin-1"), headers, chunks, None if finished else iterator
    )
    if callable(closer):
        response.close = closer
    return response


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable is not supported: return an iterable instead")


def log_app_failure(error: BaseException) -> None:
    """An exception escaped the app: its type and stack, never its message (it may hold data)."""
    stack = "".join(traceback.format_tb(error.__traceback__))
    logger.error("web: the app failed (%s)\n%s", type(error).__name__, stack)
