"""Errors as responses: JSON ``{error, message}`` for the API, a small page for people.

Only messages written for people ever reach a client: :class:`WebError` texts from this package,
:class:`~appliance.errors.ApplianceError` messages (the appliance raises those on purpose, with
text meant to be read), and fixed texts per HTTP status. Anything else is a bug: the client gets
a generic 500 and the log gets the exception's type and stack, never its message (which could
carry a file name or other customer text).
"""

from __future__ import annotations

import logging
import re
import traceback

from flask import Flask, Response, jsonify, render_template
from werkzeug.exceptions import HTTPException

from appliance.errors import (
    AcceleratorError,
    ApplianceError,
    FaceError,
    ImageError,
    ImageTooLargeError,
    ModelError,
    RuntimeUnavailableError,
    SubjectCutError,
)
from appliance.idphoto.specs import UnknownSpecError
from appliance.session.audit import AuditError
from appliance.session.state import (
    ItemNotFoundError,
    LinkInvalidError,
    SessionNotFoundError,
    SessionStateError,
)
from appliance.session.workspace import (
    BlobNotFoundError,
    WorkspaceAdmissionError,
    WorkspaceClosedError,
    WorkspaceFullError,
)
from appliance.web.security import wants_json
from appliance.web.services import DeviceUnavailableError
from appliance.web.users import CredentialError, SetupError

logger = logging.getLogger(__name__)

# First match wins, so subclasses come before their parents. WorkspaceFullError is 507
# Insufficient Storage: the request was fine, the appliance ran out of room (a session over
# its own budget is wiped, see SessionManager._store); 413 stays reserved for a body over the
# upload limit.
STATUS_BY_ERROR: tuple[tuple[type[BaseException], int], ...] = (
    (ImageTooLargeError, 413),
    (ImageError, 415),
    (FaceError, 422),
    (SubjectCutError, 422),
    (UnknownSpecError, 400),
    (SessionNotFoundError, 404),
    (ItemNotFoundError, 404),
    (BlobNotFoundError, 404),
    (WorkspaceClosedError, 404),
    (LinkInvalidError, 404),
    (SessionStateError, 409),
    (WorkspaceAdmissionError, 503),  # no room for a new session now: try again after a finish
    (WorkspaceFullError, 507),
    (DeviceUnavailableError, 503),
    (ModelError, 503),
    (RuntimeUnavailableError, 503),
    (AcceleratorError, 503),
    (AuditError, 503),
    (SetupError, 403),
    (CredentialError, 400),
)
GENERIC_MESSAGES = {
    400: "The request is not valid.",
    401: "Log in first.",
    403: "Not allowed.",
    404: "Not found (or no longer there: sessions are wiped when they end).",
    405: "This method is not allowed here.",
    413: "Too large: the upload is over the limit.",
    415: "Not a photo this appliance can read.",
    429: "Too many attempts: wait and try again.",
    500: "Something went wrong inside the appliance. It has been logged.",
    503: "Not available right now.",
}


# Errors whose text names what the caller sent (an id from the URL) or the appliance's insides
# (a path, an errno): the client gets a fixed text instead, the same for everyone.
FIXED_MESSAGES: tuple[tuple[type[BaseException], str], ...] = (
    (
        WorkspaceAdmissionError,
        "There is no room for another customer session now: finish one, then start again.",
    ),
    (WorkspaceFullError, "The photo workspace is full: finish other sessions, then try again."),
    (SessionNotFoundError, "No live session with that id (sessions are wiped when they end)."),
    (ItemNotFoundError, "Not in this session (or no longer: sessions are wiped when they end)."),
    (BlobNotFoundError, "Not in this session (or no longer: sessions are wiped when they end)."),
    (AuditError, "The audit log cannot be written: the appliance is refusing work until it can."),
)


class WebError(HTTPException):
    """A refusal from this package, with a message safe to show."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(description=message)
        self.code = status
        self.error = error


def _slug(name: str) -> str:
    name = name.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"


def error_response(status: int, error: str, message: str) -> Response:
    if wants_json():
        response = jsonify(error=error, message=message)
    else:
        page = render_template("error.html", status=status, message=message)
        response = Response(page, mimetype="text/html")
    response.status_code = status
    return response


def status_for(error: ApplianceError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    # Devices (printer, camera) raise ApplianceErrors that are also RuntimeError or OSError when
    # they fail, and ValueError when the request was wrong.
    return 503 if isinstance(error, RuntimeError | OSError) else 400


def public_message(error: ApplianceError) -> str:
    """The text a client may see for ``error``."""
    for kind, message in FIXED_MESSAGES:
        if isinstance(error, kind):
            return message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the "[Errno 28]" that str() puts in front
    return str(error)


def _appliance_error(error: ApplianceError) -> Response:
    return error_response(status_for(error), _slug(type(error).__name__), public_message(error))


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if isinstance(error, WebError):
        response = error_response(status, error.error, error.description or "")
    else:
        # Our own HTTPException subclasses (security.py) carry texts we wrote; werkzeug's and
        # anything built from request data get the fixed text for the status.
        own = type(error).__module__.startswith("appliance.")
        message = error.description if own and error.description else None
        fallback = GENERIC_MESSAGES.get(status, error.name)
        response = error_response(status, _slug(type(error).__name__), message or fallback)
    for name, value in error.get_headers():
        if name.lower() in ("www-authenticate", "allow", "retry-after"):
            response.headers[name] = value
    if status == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="appliance"')
    return response


def _unexpected(error: Exception) -> Response:
    stack = "".join(traceback.format_tb(error.__traceback__))
    logger.error("unhandled %s\n%s", type(error).__name__, stack)
    return error_response(500, "internal", GENERIC_MESSAGES[500])


def install(app: Flask) -> None:
    app.register_error_handler(ApplianceError, _appliance_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
