"""Request bodies: Content-Type checks and a size limit enforced before and while the body streams in."""

from __future__ import annotations

from starlette.requests import Request

from serving._multipart import FormPart, MultipartError, boundary_of, parse_form_data
from serving.errors import ApiError

__all__ = ["RAW_AUDIO_TYPES", "is_raw_audio", "media_type", "read_body", "read_form"]

RAW_AUDIO_TYPES = "audio/* or application/octet-stream"


def media_type(request: Request) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_raw_audio(media: str) -> bool:
    return media.startswith("audio/") or media == "application/octet-stream"


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit_bytes``.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked (or
    under-declared) body is counted as it streams and refused at the first chunk past the limit.

    Raises:
        ApiError: 413 ``body_too_large``; 400 ``bad_request`` for an unparsable Content-Length.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number") from None
        if declared_bytes > limit_bytes:
            raise _too_large(limit_bytes, f"Content-Length is {declared_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise _too_large(limit_bytes, f"the body passed {limit_bytes} bytes while streaming")
    return bytes(body)


async def read_form(request: Request, limit_bytes: int) -> list[FormPart]:
    """The parts of a ``multipart/form-data`` body read with :func:`read_body`.

    Raises:
        ApiError: 400 ``bad_multipart`` for a malformed form, and :func:`read_body`'s errors.
    """
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
    except MultipartError as e:
        raise ApiError(400, "bad_multipart", str(e)) from e
    body = await read_body(request, limit_bytes)
    try:
        return parse_form_data(body, boundary)
    except MultipartError as e:
        raise ApiError(400, "bad_multipart", str(e)) from e


def _too_large(limit_bytes: int, what: str) -> ApiError:
    limit_mb = limit_bytes / 2**20
    return ApiError(413, "body_too_large", f"{what}; the limit is {limit_mb:g} MiB ({limit_bytes} bytes)")
