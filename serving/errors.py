"""HTTP errors of the service: one JSON shape, ``{"error": code, "detail": message}``, for every failure.

Bad input maps to a 4xx with a code a client can branch on; only genuine server faults are 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from acousticsense import StageError

__all__ = [
    "ApiError",
    "install_error_handlers",
    "stage_error",
    "CatchAllMiddleware",
    "HeaderLimitMiddleware",
    "error_body",
]

logger = logging.getLogger("ray.serve")


class ApiError(Exception):
    """An error response: ``status`` with ``{"error": error, "detail": detail}`` and optional headers."""

    def __init__(self, status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.error, self.detail), status_code=self.status, headers=self.headers)


def error_body(error: str, detail: str) -> dict[str, str]:
    return {"error": error, "detail": detail}


# Decoders name an in-memory upload by its repr; that address means nothing to a client.
_FILE_OBJECT = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")

# StageError messages from the core start with (or contain) these; the first match names the error.
_DECODE_KINDS = (
    ("empty", "empty_audio"),
    ("too short", "too_short"),
    ("truncated", "truncated_audio"),
    ("unsupported or not audio", "undecodable"),
)


def stage_error(error: StageError) -> ApiError:
    """A 400 for audio the core refused (undecodable, empty, too short, truncated, unusable samples)."""
    message = _FILE_OBJECT.sub("the upload", str(error))
    code = "undecodable" if error.stage == "decode" else "unusable_audio"
    for needle, kind in _DECODE_KINDS:
        if needle in message:
            code = kind
            break
    return ApiError(400, code, message)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()
    )
    return JSONResponse(error_body("invalid_parameter", problems or "invalid request"), status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _client_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
    # Nobody reads this response; it keeps a dropped upload from being logged as a server fault.
    return JSONResponse(error_body("client_disconnected", "the client closed the connection"), status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    """Route every expected failure to its JSON response, and anything else to :class:`CatchAllMiddleware`;
    refuse oversized request headers first (:class:`HeaderLimitMiddleware`)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_middleware(CatchAllMiddleware)
    app.add_middleware(HeaderLimitMiddleware)  # added last: runs first


# The proxy's HTTP parser (uvicorn + httptools) admits request headers far larger than any client needs;
# 32 KiB in all is 4x nginx's default line buffers and what Node allows.
MAX_HEADER_BYTES = 32 * 1024


class HeaderLimitMiddleware:
    """Answer 431 with the JSON error body when a request's headers (names and values) pass
    :data:`MAX_HEADER_BYTES`, before any route reads the body."""

    def __init__(self, app: ASGIApp, limit_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))
            if size > self.limit_bytes:
                detail = f"the request headers take {size} bytes; the limit is {self.limit_bytes}"
                response = JSONResponse(error_body("headers_too_large", detail), status_code=431)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class CatchAllMiddleware:
    """Turn an unexpected exception into a logged JSON 500, unless the response has already started.

    A pure ASGI middleware rather than an ``Exception`` handler: Starlette re-raises after running such a
    handler, which would make Serve log the same fault twice.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSONResponse(
                error_body("internal", "internal server error; the service log has the traceback"), status_code=500
            )
            await response(scope, receive, send)
