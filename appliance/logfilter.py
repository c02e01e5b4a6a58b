"""The daemon's log hygiene: no client address and no raw traceback reaches the journal.

The appliance's own messages never name a client (invariant 4), but libraries do: a socket's
peer is printed as ``('192.168.1.20', 53160)``, asyncio names ``raddr=`` / ``peername=`` in its
transport reprs. :class:`ClientAddressFilter` blanks those on the journal's handler as a last
line of defence. Uncaught exceptions (in any thread) are logged through ``appliance.crash`` as
one record: their type and stack, never their message, which may carry data.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from types import TracebackType

# ('1.2.3.4', 80) / ('fe80::1', 80, 0, 2), and key=value forms from asyncio's reprs.
_PEER = re.compile(
    r"\(\s*'[0-9A-Fa-f.:%\w-]*[.:][0-9A-Fa-f.:%\w-]*'\s*,\s*\d+(?:\s*,\s*\d+){0,2}\s*\)"
    r"|\b(?:raddr|peername|peer|remote_addr)=\S+"
)
REDACTED = "<client>"

crash_logger = logging.getLogger("appliance.crash")


class ClientAddressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _PEER.sub(REDACTED, message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _log_uncaught(
    kind: type[BaseException], error: BaseException | None, stack: TracebackType | None, where: str
) -> None:
    frames = "".join(traceback.format_tb(stack))
    crash_logger.error("uncaught %s in %s\n%s", kind.__name__, where, frames)


def route_uncaught_exceptions() -> None:
    """Uncaught exceptions of the main thread and of every other thread go to the log."""

    def main_hook(
        kind: type[BaseException], error: BaseException, stack: TracebackType | None
    ) -> None:
        _log_uncaught(kind, error, stack, "the main thread")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback, f"thread {name}")

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
