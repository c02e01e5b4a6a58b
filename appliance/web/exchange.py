"""One connection's requests, one after another (HTTP/1.1 keep-alive), on the event loop.

Headers and body are read under the connection's deadlines into a buffer the exchange owns;
only a complete request goes to a worker thread, and the response comes back in batches that
are written here, so neither a slow sender nor a slow reader holds a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import h11

from appliance.web.httpd_limits import (
    BUSY_ANSWER,
    TIMEOUT_ANSWER,
    TOO_LARGE_ANSWER,
    simple_answer,
)
from appliance.web.wsgi_bridge import (
    AppResponse,
    BadTarget,
    build_environ,
    call_app,
    log_app_failure,
    pull_more,
)

if TYPE_CHECKING:
    from appliance.web.httpd import HttpServer

READ_BYTES = 64 * 1024
LINGER_S = 2.0
LINGER_IDLE_S = 0.25
BAD_REQUEST_ANSWER = simple_answer(400, "Bad Request", "Not a valid HTTP/1.1 request.")
HEAD_TOO_LARGE_ANSWER = simple_answer(
    431, "Request Header Fields Too Large", "The request's headers are too large."
)


def _head_size(request: h11.Request) -> int:
    return len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers)


class Exchange:
    """The requests of one connection, one after another (HTTP/1.1 keep-alive)."""

    def __init__(
        self,
        server: HttpServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: str,
        first_deadline: float,
    ) -> None:
        self.server = server
        self.first_deadline = first_deadline
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.client = client
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes
        )
        self.port = int(writer.get_extra_info("sockname")[1])
        self.reserved = 0  # body bytes of the current request counted in the server's budget

    async def serve(self) -> None:
        first = True
        while True:
            request = await self._request(first)
            if request is None:
                return
            body = bytearray()
            self.reserved = 0
            try:
                if not await self._body(request, body):  # h11 needs a body-less one's end too
                    return
                keep = await self._respond(request, body if self._has_body(request) else None)
            finally:
                body[:] = bytes(len(body))  # the upload's plaintext: gone before release
                self.server.release_body(self.reserved)
            if not keep or self.h11.our_state is not h11.DONE:
                return
            if self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()
            first = False

    async def _receive(self) -> None:
        data = await self.reader.read(READ_BYTES)
        self.h11.receive_data(data)  # b"" tells h11 the client closed its side

    async def _request(self, first: bool) -> h11.Request | None:
        """The next request's head. The first must be complete by the connection's deadline;
        a later one may idle for ``keepalive_s``, then has ``header_timeout_s`` from its first
        byte."""
        loop = asyncio.get_running_loop()
        idle_until = self.first_deadline if first else loop.time() + self.limits.keepalive_s
        try:
            event = self.h11.next_event()  # a pipelined request may be here already
            if event is h11.NEED_DATA:  # idle: wait for the first byte of the next request
                try:
                    async with asyncio.timeout_at(idle_until):
                        await self._receive()
                except TimeoutError:
                    return None  # an idle connection: closed without a word
                event = self.h11.next_event()
            head_until = (
                self.first_deadline if first else loop.time() + self.limits.header_timeout_s
            )
            async with asyncio.timeout_at(head_until):
                while event is h11.NEED_DATA:
                    await self._receive()
                    event = self.h11.next_event()
            if not isinstance(event, h11.Request):
                return None  # ConnectionClosed
            if _head_size(event) > self.limits.max_header_bytes:
                # h11 bounds only a head still incomplete in its buffer; one read can bring
                # a whole oversized head at once.
                self.server.stats.note("bad_request")
                await self._answer(HEAD_TOO_LARGE_ANSWER)
                return None
            return event
        except TimeoutError:
            self.server.stats.note("timeout_headers")
            await self._answer(TIMEOUT_ANSWER)
        except h11.RemoteProtocolError as error:
            status = error.error_status_hint
            self.server.stats.note("bad_request")
            if status == 431:
                await self._answer(HEAD_TOO_LARGE_ANSWER)
            else:
                await self._answer(BAD_REQUEST_ANSWER)
        return None

    def _has_body(self, request: h11.Request) -> bool:
        names = {name for name, _ in request.headers}
        return b"content-length" in names or b"transfer-encoding" in names

    def _declared_length(self, request: h11.Request) -> int | None:
        for name, value in request.headers:
            if name == b"content-length":
                return int(value)
        return None  # chunked

    async def _body(self, request: h11.Request, body: bytearray) -> bool:
        """Read the whole body into ``body``; False when refused (and answered) or cut off."""
        declared = self._declared_length(request)
        if declared is not None and declared > self.limits.max_body_bytes:
            self.server.stats.note("too_large")
            await self._answer(TOO_LARGE_ANSWER)  # from the header, before a byte is read
            return False
        if self.h11.client_is_waiting_for_100_continue:
            self.writer.write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        if not self._has_body(request):
            expected = 0
        else:
            expected = declared if declared is not None else self.limits.max_body_bytes
        answer: bytes | None = None
        try:
            async with asyncio.timeout(
                self.limits.body_grace_s + expected / self.limits.body_min_rate
            ):
                while True:
                    event = self.h11.next_event()
                    if event is h11.NEED_DATA:
                        await self._receive()
                    elif isinstance(event, h11.Data):
                        if len(body) + len(event.data) > self.limits.max_body_bytes:
                            self.server.stats.note("too_large")
                            answer = TOO_LARGE_ANSWER
                            break
                        if not self.server.reserve_body(len(event.data)):
                            self.server.stats.note("busy_body_budget")
                            answer = BUSY_ANSWER
                            break
                        self.reserved += len(event.data)
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        return True
                    else:
                        break  # the client closed mid-body
        except TimeoutError:
            self.server.stats.note("timeout_body")
            answer = TIMEOUT_ANSWER
        except h11.RemoteProtocolError:
            self.server.stats.note("bad_request")
            answer = simple_answer(400, "Bad Request", "The request body is not valid.")
        if answer is not None:
            await self._answer(answer)
        return False

    async def _answer(self, raw: bytes) -> None:
        """A refusal from the server itself, then the connection closes.

        What the client is still sending is read and dropped for a moment first (a "lingering
        close"): closing on unread bytes sends a reset, which can destroy the answer before
        the client has read it."""
        with contextlib.suppress(OSError, TimeoutError):
            self.writer.write(raw)
            await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)
            async with asyncio.timeout(LINGER_S):  # while it keeps sending, up to this long
                while await asyncio.wait_for(self.reader.read(READ_BYTES), LINGER_IDLE_S):
                    pass

    async def _write(self, *events: Any) -> None:
        self.writer.write(b"".join(self.h11.send(event) or b"" for event in events))
        await asyncio.wait_for(self.writer.drain(), self.limits.write_timeout_s)

    async def _respond(self, request: h11.Request, body: bytearray | None) -> bool:
        """Run the app on a worker and send what it answers; False to close the connection."""
        scheme = "https" if self.server.tls is not None else "http"
        try:
            environ = build_environ(
                request, body, scheme=scheme, server_port=self.port, client=self.client
            )
        except (BadTarget, UnicodeError):
            await self._answer(
                simple_answer(400, "Bad Request", "The request target is not valid.")
            )
            return False
        try:
            response: AppResponse = await self.server.in_worker(call_app, self.server.app, environ)
        except Exception as error:
            log_app_failure(error)
            await self._answer(simple_answer(500, "Internal Server Error", "Something went wrong."))
            return False
        finished = response.rest is None
        try:
            # One write per batch (head, body and end together when they fit): fewer TLS
            # records and segments than one write per event.
            events: list[Any] = [
                h11.Response(
                    status_code=response.status, headers=response.headers, reason=response.reason
                )
            ]
            chunks = response.chunks
            while True:
                if request.method != b"HEAD":
                    events += [h11.Data(data=chunk) for chunk in chunks]
                if finished:
                    events.append(h11.EndOfMessage())
                await self._write(*events)
                if finished:
                    break
                chunks, finished = await self.server.in_worker(pull_more, response)
                events = []
            return True
        except (OSError, TimeoutError, h11.LocalProtocolError):
            return False  # the client stopped reading, or left
        except Exception as error:  # a streamed body failed half-way: the client sees a cut
            log_app_failure(error)
            return False
        finally:
            await self.server.in_worker(response.close)  # releases a camera stream, say
