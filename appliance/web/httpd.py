"""The appliance's HTTP/1.1 server: an asyncio front for the network, worker threads for Flask.

A connection costs a coroutine, not a thread, until a whole request has arrived: the TLS
handshake, the headers and the body are read on the event loop under deadlines, and only then
does a worker thread run the app (see docs/web-server.md for why this and not cheroot).

Limits, all enforced here (:class:`ServerLimits`):

- connections per client address and in total; the excess is reset at once, before any TLS;
- a whole-request deadline: the handshake and headers within ``header_timeout_s`` of the
  connection (or of the next request's first byte), the body within ``body_grace_s`` plus its
  size at ``body_min_rate``; trickling a byte at a time does not extend either;
- idle keep-alive connections are closed after ``keepalive_s``;
- header and body sizes (a chunked body is cut off with 413 at the limit, not read on);
- the bytes of all request bodies being received at once (503 beyond it);
- a response must be taken by the client within ``write_timeout_s`` per batch.

The log never carries a client address (invariant 4): refusals are counted per kind and summed
up at most once a minute, and asyncio's own error reports are reduced to their type.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from appliance.web.exchange import Exchange
from appliance.web.httpd_limits import (
    PLAIN_HTTP_ANSWER,
    ConnectionGate,
    ServerLimits,
    ServerStats,
)
from appliance.web.wsgi_bridge import WsgiApp

__all__ = ["HttpServer", "ServerLimits"]

logger = logging.getLogger("appliance.web.httpd")

MiB = 1024 * 1024
TLS_HANDSHAKE = 0x16  # the first byte of every TLS connection (a handshake record)


def _client_of(address: Any) -> str:
    host = str(address[0]) if isinstance(address, tuple) else "unix"
    return host.removeprefix("::ffff:")  # an IPv4 client on a dual-stack socket


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reset(sock: socket.socket) -> None:
    """Close with RST at once: a refused connection gets no FIN handshake and no TLS."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class HttpServer:
    """One listening socket, its event loop thread and its worker pool."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        bind: str,
        port: int,
        limits: ServerLimits,
        tls: ssl.SSLContext | None,
        name: str,
    ) -> None:
        self.app = app
        self.limits = limits
        self.tls = tls
        self.name = name
        self.stats = ServerStats(name)
        self.gate = ConnectionGate(limits.max_connections, limits.max_per_client)
        self._body_bytes = 0
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self._listener = socket.create_server(
            (bind, port),
            family=family,
            backlog=128,
            dualstack_ipv6=family == socket.AF_INET6 and bind == "::",
        )
        self._listener.setblocking(False)
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix=f"web-{name}")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_error)
        self._stopping: asyncio.Event | None = None
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"web-{name}", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        self._thread.start()
        self._listening.wait(10)

    def stop(self, timeout: float = 5.0) -> None:
        stopping = self._stopping
        if stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._listener.close()

    # --- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()
        accepting = asyncio.create_task(self._accept(tasks))
        self._listening.set()
        await self._stopping.wait()
        accepting.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(accepting, *tasks, return_exceptions=True)

    async def _accept(self, tasks: set[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(self._listener)
            except OSError as error:  # out of file descriptors, say: breathe, then go on
                logger.error("web %s: accept failed (%s)", self.name, type(error).__name__)
                await asyncio.sleep(0.5)
                continue
            client = _client_of(address)
            refused = self.gate.admit(client)
            if refused:
                self.stats.note(refused)
                _reset(sock)
                continue
            # asyncio sets this only on sockets whose proto is IPPROTO_TCP; accepted ones say 0.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = asyncio.create_task(self._connection(sock, client))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # asyncio's default report includes the transport's repr, with the peer's address.
        error = context.get("exception")
        kind = type(error).__name__ if error is not None else "no exception"
        message = str(context.get("message", "error"))[:120]
        logger.error("web %s: event loop: %s (%s)", self.name, message, kind)

    # --- one connection --------------------------------------------------------------------

    async def _connection(self, sock: socket.socket, client: str) -> None:
        loop = asyncio.get_running_loop()
        first_deadline = loop.time() + self.limits.header_timeout_s
        writer: asyncio.StreamWriter | None = None
        try:
            opened = await self._open(sock)
            if opened is not None:
                reader, writer = opened
                await Exchange(self, reader, writer, client, first_deadline).serve()
        except (OSError, EOFError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to tell anyone
        finally:
            if writer is None:
                sock.close()
            else:
                writer.close()  # the transport owns the socket now
                try:
                    await asyncio.wait_for(writer.wait_closed(), 2.0)
                except (Exception, asyncio.CancelledError):
                    writer.transport.abort()
            self.gate.release(client)

    async def _open(
        self, sock: socket.socket
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The handshake (and a word for plain HTTP on the TLS port), within the header time."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.limits.header_timeout_s):
                if self.tls is not None:
                    first = await self._first_byte(sock)
                    if first is None:
                        return None
                    if first != TLS_HANDSHAKE:
                        self.stats.note("plain_http_on_tls")
                        await self._refuse_plain_http(sock)
                        return None
                reader = asyncio.StreamReader(limit=self.limits.max_header_bytes, loop=loop)
                protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol,
                    sock,
                    ssl=self.tls,
                    ssl_handshake_timeout=self.limits.header_timeout_s if self.tls else None,
                )
        except TimeoutError:
            self.stats.note("timeout_handshake")
            return None
        except ssl.SSLError:
            self.stats.note("tls_refused")
            return None
        transport.set_write_buffer_limits(high=256 * 1024)  # per connection, while it reads
        return reader, asyncio.StreamWriter(transport, protocol, reader, loop)

    async def _first_byte(self, sock: socket.socket) -> int | None:
        loop = asyncio.get_running_loop()
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(sock.fileno(), _resolve, ready)
            try:
                await ready
            finally:
                loop.remove_reader(sock.fileno())
            try:
                peeked = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            return peeked[0] if peeked else None

    async def _refuse_plain_http(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(BlockingIOError):
            sock.recv(self.limits.max_header_bytes)  # unread bytes would turn close into RST
        await loop.sock_sendall(sock, PLAIN_HTTP_ANSWER)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    # --- the body budget (event loop only) ---------------------------------------------------

    def reserve_body(self, size: int) -> bool:
        if self._body_bytes + size > self.limits.body_budget_bytes:
            return False
        self._body_bytes += size
        return True

    def release_body(self, size: int) -> None:
        self._body_bytes -= size

    # --- handing work to the pool ------------------------------------------------------------

    async def in_worker(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
