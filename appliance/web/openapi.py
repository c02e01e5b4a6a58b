"""The REST API's route table, its request bodies, and the OpenAPI 3 document built from them.

``api.py`` registers its views from :data:`ROUTES`, so the document and the routes cannot drift:
a view without a row here is not reachable, and a row without a view fails at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
VARIANTS = ("digital", "sheet", "preview")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionBody(_Body):
    desk: str = Field(
        default="booth",
        pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="the desk whose customer screen shows this session (a paired kiosk's desk)",
    )


class ProductBody(_Body):
    spec: str | None = Field(default=None, description="document spec id, e.g. icao-35x45")
    background: str | None = Field(
        default=None, pattern=r"^(#[0-9A-Fa-f]{6}|blur)$", description="#RRGGBB or blur"
    )
    sheet: str | None = Field(
        default=None, pattern=r"^(4x6|5x7|a6|a4)$", description="paper for the print sheet"
    )
    portrait: Literal["4:5", "2:3", "1:1"] | None = Field(
        default=None, description="a portrait in this aspect instead of an ID photo"
    )
    religious_covering: bool = Field(
        default=False,
        description="the head covering is worn for religious reasons (the face from chin to "
        "forehead must then show)",
    )


class PrintBody(_Body):
    product_id: str = Field(min_length=1, max_length=64)
    copies: int = Field(default=1, ge=1, le=20)


class LinkBody(_Body):
    product_id: str = Field(min_length=1, max_length=64)


class ButtonBody(_Body):
    hold_s: float = Field(default=0.1, ge=0.0, le=5.0, description="how long to hold it down")


class FinishBody(_Body):
    wipe: bool = Field(
        default=False,
        description="wipe now even if the customer's download link is still live",
    )


_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/tiff", "image/heic")


@dataclass(frozen=True)
class ApiRoute:
    method: Literal["GET", "POST"]
    path: str  # OpenAPI form, relative to API_PREFIX: /sessions/{session_id}
    endpoint: str  # view function name in api.py
    summary: str
    body: type[BaseModel] | None = None
    upload: bool = False  # takes an image body (image/* or multipart field "photo")
    produces: str = "application/json"
    ok: int = 200
    errors: tuple[int, ...] = ()
    role: str = "operator"
    params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def flask_rule(self) -> str:
        def convert(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "variant":
                return "<any(" + ", ".join(VARIANTS) + "):variant>"
            return f"<{name}>"

        return API_PREFIX + re.sub(r"\{(\w+)\}", convert, self.path)


_S = "/sessions/{session_id}"
ROUTES: tuple[ApiRoute, ...] = (
    ApiRoute(
        "POST",
        "/sessions",
        "create_session",
        "Start a customer session",
        body=SessionBody,
        ok=201,
        errors=(400, 503),
    ),
    ApiRoute("GET", _S, "get_session", "A session's state and contents", errors=(404,)),
    ApiRoute(
        "POST", f"{_S}/consent", "consent", "Record the customer's consent", errors=(404, 409)
    ),
    ApiRoute(
        "POST",
        f"{_S}/capture",
        "capture",
        "Take a photo with the studio camera",
        ok=201,
        errors=(404, 409, 503, 507),
    ),
    ApiRoute(
        "POST",
        f"{_S}/photos",
        "upload_photo",
        "Upload a photo (image/* body, or multipart field 'photo')",
        upload=True,
        ok=201,
        errors=(400, 404, 409, 413, 415, 507),
    ),
    ApiRoute(
        "POST",
        f"{_S}/photos/{{photo_id}}/products",
        "make_product",
        "Make an ID photo or portrait from a photo",
        body=ProductBody,
        ok=201,
        errors=(400, 404, 409, 413, 415, 422, 507),
    ),
    ApiRoute(
        "GET",
        f"{_S}/products/{{product_id}}",
        "product_report",
        "A product's compliance report",
        errors=(404,),
    ),
    ApiRoute(
        "GET",
        f"{_S}/products/{{product_id}}/{{variant}}",
        "product_file",
        "A product's digital file, print sheet or guide-line preview (JPEG, never cached)",
        produces="image/jpeg",
        errors=(404,),
        params={"variant": {"type": "string", "enum": list(VARIANTS)}},
    ),
    ApiRoute(
        "POST",
        f"{_S}/print",
        "print_product",
        "Print a product's sheet",
        body=PrintBody,
        ok=201,
        errors=(400, 404, 409, 503),
    ),
    ApiRoute("GET", "/print-jobs/{job_id}", "print_job", "A print job's state", errors=(404, 503)),
    ApiRoute(
        "POST",
        f"{_S}/download-link",
        "download_link",
        "A one-time download link (and its QR code) for the customer",
        body=LinkBody,
        ok=201,
        errors=(400, 404, 409),
    ),
    ApiRoute(
        "POST",
        f"{_S}/finish",
        "finish",
        "Finish the session: wiped now, or once the customer's link is used or expires",
        body=FinishBody,
        errors=(404, 409),
    ),
    ApiRoute(
        "POST",
        "/buttons/{button}",
        "press_button",
        "Press a booth button: capture, print or finish (held to wipe); demo pins only",
        body=ButtonBody,
        ok=202,
        errors=(400, 503),
        params={"button": {"type": "string", "enum": ["capture", "print", "finish"]}},
    ),
    ApiRoute("GET", "/status", "status", "Camera, accelerator, printer queue, workspace use"),
    ApiRoute("GET", "/specs", "specs", "The document specs this appliance knows"),
    ApiRoute("GET", "/openapi.json", "openapi", "This document"),
)

_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted: the action runs now",
    400: "Bad input",
    401: "Not logged in and no valid API token",
    403: "Not allowed (role, or CSRF token missing)",
    404: "No such session, item, job or link",
    409: "Not allowed in the session's current state",
    413: "Too large",
    415: "Not an image this appliance can read",
    422: "No face, several faces, face too small or cut off",
    503: "Device unavailable, or no room for another session (finish one)",
    507: "The workspace is full: the write is refused (a session over its own budget is wiped)",
}


def _operation(route: ApiRoute) -> dict[str, Any]:
    ok_content = {route.produces: {"schema": {"type": "object"}}}
    if route.produces != "application/json":
        ok_content = {route.produces: {"schema": {"type": "string", "format": "binary"}}}
    responses: dict[str, Any] = {
        str(route.ok): {"description": _STATUS_TEXT[route.ok], "content": ok_content}
    }
    for status in (401, 403, *route.errors):
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    operation: dict[str, Any] = {
        "operationId": route.endpoint,
        "summary": route.summary,
        "responses": responses,
    }
    names = re.findall(r"\{(\w+)\}", route.path)
    if names:
        operation["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": route.params.get(name, {"type": "string"}),
            }
            for name in names
        ]
    if route.body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": route.body.model_json_schema()}},
        }
    elif route.upload:
        binary = {"schema": {"type": "string", "format": "binary"}}
        content: dict[str, Any] = {kind: binary for kind in _IMAGE_TYPES}
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "properties": {"photo": {"type": "string", "format": "binary"}},
                "required": ["photo"],
            }
        }
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def openapi_document(server_url: str = API_PREFIX) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Studio appliance API",
            "version": "1",
            "description": "ID photos on the studio LAN. Photos are never kept: every session "
            "ends in a wipe. State-changing calls from a browser need the X-CSRF-Token header; "
            "API tokens (Authorization: Bearer) do not.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"cookie": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "__Host-studio-login"},
            },
            "schemas": {"Error": _ERROR},
        },
        "paths": paths,
    }
