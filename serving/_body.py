"""Request bodies: Content-Type checks and a size limit enforced before and while the body streams in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request

from serving._multipart import MAX_PARTS, FormPart, FormReader, MultipartError, boundary_of
from serving.errors import ApiError

__all__ = ["BODY_IDLE_TIMEOUT_S", "RAW_AUDIO_TYPES", "is_raw_audio", "media_type", "read_body", "read_form"]

# A client that stops sending mid-body for this long is refused (408): long enough for any real
# network hiccup, short enough that slow-body clients cannot pin the ingress's request slots.
BODY_IDLE_TIMEOUT_S = 30.0
RAW_AUDIO_TYPES = "audio/*, video/* or application/octet-stream"


def media_type(request: Request) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_raw_audio(media: str) -> bool:
    """Raw bytes the decoders may read: audio, a video container (its audio track is classified), or untyped."""
    return media.startswith(("audio/", "video/")) or media == "application/octet-stream"


async def read_body(request: Request, limit_bytes: int, idle_timeout_s: float = BODY_IDLE_TIMEOUT_S) -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit_bytes``.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked (or
    under-declared) body is counted as it streams and refused at the first chunk past the limit.

    Raises:
        ApiError: 413 ``body_too_large``; 400 ``bad_request`` for an unparsable Content-Length; 408
            ``body_timeout`` when no byte arrives for ``idle_timeout_s``.
    """
    body = bytearray()
    async for chunk in _limited_stream(request, limit_bytes, idle_timeout_s):
        body += chunk
    return bytes(body)


async def read_form(
    request: Request, limit_bytes: int, max_parts: int = MAX_PARTS, idle_timeout_s: float = BODY_IDLE_TIMEOUT_S
) -> list[FormPart]:
    """The parts of a ``multipart/form-data`` body, parsed while it streams in (python-multipart).

    Each part's bytes go to a bounded spool (memory, then a temporary file), never one growing buffer;
    the body limit holds exactly as in :func:`read_body`, and a malformed form is refused at its first
    bad byte without reading the rest.

    Raises:
        ApiError: 400 ``bad_multipart`` for a malformed form (or more than ``max_parts`` parts), and
            :func:`read_body`'s errors.
    """
    try:
        boundary = boundary_of(request.headers.get("content-type", ""))
    except MultipartError as e:
        raise ApiError(400, "bad_multipart", str(e)) from e
    reader = FormReader(boundary, max_parts)
    try:
        async for chunk in _limited_stream(request, limit_bytes, idle_timeout_s):
            reader.write(chunk)
        return reader.finish()
    except MultipartError as e:
        raise ApiError(400, "bad_multipart", str(e)) from e
    except BaseException:
        reader.close()
        raise


async def _limited_stream(
    request: Request, limit_bytes: int, idle_timeout_s: float = BODY_IDLE_TIMEOUT_S
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; 413 from the declared length or at the first chunk past the limit,
    408 when the client sends nothing for ``idle_timeout_s`` (a stalled or deliberately slow upload would
    otherwise hold its connection and its replica slot forever)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number") from None
        if declared_bytes > limit_bytes:
            raise _too_large(limit_bytes, f"Content-Length is {declared_bytes} bytes")
    received = 0
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), timeout=idle_timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise ApiError(
                408, "body_timeout", f"no body bytes arrived for {idle_timeout_s:g} s after {received} bytes"
            ) from None
        received += len(chunk)
        if received > limit_bytes:
            raise _too_large(limit_bytes, f"the body passed {limit_bytes} bytes while streaming")
        if chunk:
            yield chunk


def _too_large(limit_bytes: int, what: str) -> ApiError:
    limit_mb = limit_bytes / 2**20
    return ApiError(413, "body_too_large", f"{what}; the limit is {limit_mb:g} MiB ({limit_bytes} bytes)")
