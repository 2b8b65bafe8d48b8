"""JSON errors: every failure of the API answers ``{"error": {code, message}}``."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Stable codes for HTTP errors raised by the framework itself.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    """An answer other than success, raised from a handler."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str) -> Response:
    """The JSON error answer."""
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, content_type="application/json")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def parse_body(model: type[T]) -> T:
    """The request's JSON body as ``model``, or a 4xx :class:`ApiError` that says why."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.get_data(as_text=False)
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_request", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "bad_request", "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    try:
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "body"
            message = (
                "unknown field" if error["type"] == "unexpected_keyword_argument" else error["msg"]
            )
            problems.append(f"{where}: {message}")
        raise ApiError(400, "bad_request", "; ".join(problems)) from None


def install(app: Quart) -> None:
    """Make every error of ``app`` a JSON answer, never a traceback or an HTML page."""

    @app.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        response = error_response(error.status, error.code, error.message)
        response.headers.update(error.headers)
        return response

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = _HTTP_CODES.get(status, "error")
        message = {
            404: "no such resource",
            405: "method not allowed here",
            413: "the request body is too large",
        }.get(status, error.description or code)
        return error_response(status, code, message)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("request failed", extra={"path": request.path})
        return error_response(500, "internal_error", "something went wrong on our side")
