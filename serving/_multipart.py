"""A small, strict ``multipart/form-data`` parser over a body already read (and size-checked) in memory.

Starlette's ``request.form()`` needs the ``python-multipart`` package, which this environment does not
ship; the body is bounded by ``max_body_mb`` and held in memory for decoding anyway, so parsing it
with ``bytes.find`` is simple and exact (no line-ending rewriting, no temporary files).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

__all__ = ["FormPart", "MultipartError", "boundary_of", "parse_form_data"]

_CRLF = b"\r\n"


class MultipartError(ValueError):
    """The body is not well-formed ``multipart/form-data``."""


@dataclass(frozen=True)
class FormPart:
    """One part of a form: its field ``name``, the client's ``filename`` (None for plain fields), its bytes."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def boundary_of(content_type: str) -> bytes:
    """The ``boundary`` parameter of a ``multipart/form-data`` Content-Type header.

    Raises:
        MultipartError: no boundary, or one that RFC 2046 does not allow (over 70 characters).
    """
    message = Message()
    message["content-type"] = content_type
    boundary = message.get_param("boundary")
    if not isinstance(boundary, str) or not 0 < len(boundary) <= 70:
        raise MultipartError("the Content-Type multipart/form-data lacks a valid boundary parameter")
    return boundary.encode("latin-1")


def parse_form_data(body: bytes, boundary: bytes) -> list[FormPart]:
    """Split ``body`` into its parts, in order.

    Raises:
        MultipartError: no opening delimiter, a part without headers end, or no closing delimiter.
    """
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start < 0:
        raise MultipartError("multipart body does not contain its boundary")
    parts: list[FormPart] = []
    position = start + len(delimiter)
    while not body.startswith(b"--", position):  # "--boundary--" closes the body
        line_end = body.find(_CRLF, position)
        if line_end < 0:
            raise MultipartError("multipart body ends after a boundary (truncated upload?)")
        headers_start = line_end + 2
        if body.startswith(_CRLF, headers_start):
            headers, content_start = b"", headers_start + 2
        else:
            headers_end = body.find(_CRLF + _CRLF, headers_start)
            if headers_end < 0:
                raise MultipartError("a multipart part has no end of headers (truncated upload?)")
            headers, content_start = body[headers_start:headers_end], headers_end + 4
        content_end = body.find(_CRLF + delimiter, content_start)
        if content_end < 0:
            raise MultipartError("multipart body has no closing boundary (truncated upload?)")
        parts.append(_part(headers, body[content_start:content_end]))
        position = content_end + 2 + len(delimiter)
    return parts


def _part(raw_headers: bytes, data: bytes) -> FormPart:
    message = Message()
    for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed multipart header line {line[:80]!r}")
        message[name.strip()] = value.strip()
    if message.get_content_disposition() != "form-data":
        raise MultipartError("each multipart part needs 'Content-Disposition: form-data; name=...'")
    name = message.get_param("name", header="content-disposition")
    if not isinstance(name, str):
        raise MultipartError("a multipart part has no field name")
    return FormPart(
        name=name,
        filename=message.get_filename(),
        content_type=message.get("content-type"),
        data=data,
    )
