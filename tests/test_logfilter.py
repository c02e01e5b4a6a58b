"""The journal gets no client address and no raw traceback (issue 15, failure 4)."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator

import pytest

from appliance.daemon import LogFormat
from appliance.logfilter import ClientAddressFilter, route_uncaught_exceptions


@pytest.fixture
def journal() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogFormat())
    handler.addFilter(ClientAddressFilter())
    logger = logging.getLogger("test.journal")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def test_library_lines_lose_their_client_addresses(
    journal: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = journal
    logger.error("Client ('127.0.0.31', 53160) lost — peer dropped the TLS connection")
    logger.error("Fatal error: <_SSLProtocolTransport raddr=('::1', 40000, 0, 0)> closed")
    logger.error("peer %s", ("fe80::1%eth0", 8443))
    logger.info("web: https on 8443, CA page on http 8080")  # the appliance's own: untouched
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4
    for line in lines[:3]:
        assert "<client>" in line and "127.0.0.31" not in line and "::1" not in line, line
        assert "fe80" not in line
    assert lines[3].endswith("msg='web: https on 8443, CA page on http 8080'")


def test_uncaught_exceptions_are_one_record_without_their_message(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    saved = sys.excepthook, threading.excepthook
    try:
        route_uncaught_exceptions()

        secret = "-".join(["customer text from", "127.0.0.44"])  # not in any source line

        def boom() -> None:
            raise ValueError(secret)

        with caplog.at_level(logging.ERROR, logger="appliance.crash"):
            thread = threading.Thread(target=boom, name="boom")
            thread.start()
            thread.join(5)
    finally:
        sys.excepthook, threading.excepthook = saved
    records = [r for r in caplog.records if r.name == "appliance.crash"]
    assert len(records) == 1
    text = records[0].getMessage()
    assert "uncaught ValueError in thread boom" in text and "in boom" in text
    assert secret not in text and "127.0.0.44" not in text
    assert "Traceback" not in capfd.readouterr().err  # nothing raw on stderr
