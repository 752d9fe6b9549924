"""``multipart/form-data`` through ``python-multipart``'s streaming parser (the one Starlette/FastAPI use).

The body is fed to the parser chunk by chunk as it arrives (see :func:`serving._body.read_form`), so the
size limit is checked while it streams and a malformed form is refused at the first bad byte. Each part's
bytes go to its own spool: memory up to :data:`SPOOL_MEMORY_BYTES`, a temporary file past that; with the
body limit on top, neither RAM nor disk can be filled by one request. Hostile forms are bounded too: at
most ``max_parts`` parts, ``max_header_count`` headers of ``max_header_size`` bytes each per part
(python-multipart's own limits), and every part must carry ``Content-Disposition: form-data; name=...``.
"""

from __future__ import annotations

import tempfile
from email.message import Message

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

__all__ = [
    "FormPart",
    "FormReader",
    "MultipartError",
    "boundary_of",
    "parse_form_data",
    "MAX_PARTS",
    "SPOOL_MEMORY_BYTES",
]

MAX_PARTS = 256  # the batch route's file limit is far below; thousands of empty parts are an attack
SPOOL_MEMORY_BYTES = 1 << 20  # a part larger than this spools to a temporary file
_MAX_HEADER_COUNT = 8
_MAX_HEADER_BYTES = 4096


class MultipartError(ValueError):
    """The body is not well-formed ``multipart/form-data`` (or passes the form's limits)."""


class FormPart:
    """One part of a form: its field ``name``, the client's ``filename`` (None for plain fields), its bytes.

    The bytes stay in the part's spool until :attr:`data` is read, so fields nobody asks for are never
    copied.
    """

    def __init__(
        self, name: str, filename: str | None, content_type: str | None, spool: tempfile.SpooledTemporaryFile
    ) -> None:
        self.name = name
        self.filename = filename
        self.content_type = content_type
        self._spool = spool

    @property
    def data(self) -> bytes:
        self._spool.seek(0)
        return self._spool.read()

    def close(self) -> None:
        self._spool.close()

    def __repr__(self) -> str:
        return f"FormPart(name={self.name!r}, filename={self.filename!r}, content_type={self.content_type!r})"


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
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise MultipartError("the multipart boundary must be ASCII") from None


class FormReader:
    """Feed a form's body with :meth:`write` as it arrives; :meth:`finish` returns its parts in order.

    Raises (from both methods):
        MultipartError: malformed form, a part without a field name, over ``max_parts`` parts, headers
            over python-multipart's limits, or (at :meth:`finish`) no closing boundary.
    """

    def __init__(self, boundary: bytes, max_parts: int = MAX_PARTS) -> None:
        self.max_parts = max_parts
        self.parts: list[FormPart] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = b""
        self._value = b""
        self._spool: tempfile.SpooledTemporaryFile | None = None
        self._ended = False
        # python-multipart wants the first delimiter at byte 0; RFC 2046 allows a preamble before it.
        self._delimiter = b"--" + boundary
        self._preamble: bytes | None = b""  # None once the first delimiter was found
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_end": self._end,
            },
            max_header_count=_MAX_HEADER_COUNT,
            max_header_size=_MAX_HEADER_BYTES,
        )

    def write(self, chunk: bytes) -> None:
        if self._preamble is not None:
            chunk = self._skip_preamble(chunk)
            if not chunk:
                return
        try:
            self._parser.write(chunk)
        except MultipartParseError as e:
            self.close()
            raise MultipartError(f"malformed multipart body: {e}") from None
        except MultipartError:
            self.close()
            raise

    def _skip_preamble(self, chunk: bytes) -> bytes:
        """Drop what precedes the first delimiter, keeping only enough bytes to find one split across chunks."""
        pending = self._preamble + chunk  # type: ignore[operator]
        start = pending.find(self._delimiter)
        if start < 0:
            self._preamble = pending[-(len(self._delimiter) - 1) :]
            return b""
        self._preamble = None
        return pending[start:]

    def finish(self) -> list[FormPart]:
        if self._preamble is not None:
            raise MultipartError("multipart body does not contain its boundary")
        try:
            self._parser.finalize()
        except MultipartParseError as e:
            self.close()
            raise MultipartError(f"malformed multipart body: {e}") from None
        if not self._ended:
            self.close()
            raise MultipartError("multipart body has no closing boundary (truncated upload?)")
        return self.parts

    def close(self) -> None:
        """Release every spool (temporary files included)."""
        for part in self.parts:
            part.close()
        if self._spool is not None:
            self._spool.close()

    # ------------------------------------------------------------------------------------------ callbacks

    def _part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise MultipartError(f"more than {self.max_parts} parts in one form")
        self._headers = []
        self._spool = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((self._field, self._value))
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        try:
            name, filename, content_type = _disposition(self._headers)
        except (LookupError, TypeError, UnicodeError) as e:  # the email package on hostile header bytes
            raise MultipartError(f"unreadable multipart part headers: {type(e).__name__}") from None
        # Closed by FormPart.close / FormReader.close; parts outlive this call, so no `with`.
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self.parts.append(FormPart(name, filename, content_type, self._spool))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._spool is not None:
            self._spool.write(data[start:end])

    def _end(self) -> None:
        self._ended = True


def _disposition(headers: list[tuple[bytes, bytes]]) -> tuple[str, str | None, str | None]:
    """``(name, filename, content type)`` of a part from its raw headers."""
    message = Message()
    for field, value in headers:
        message[field.decode("latin-1").strip()] = value.decode("utf-8", "replace").strip()
    if message.get_content_disposition() != "form-data":
        raise MultipartError("each multipart part needs 'Content-Disposition: form-data; name=...'")
    name = message.get_param("name", header="content-disposition")
    if not isinstance(name, str) or not name:
        raise MultipartError("a multipart part has no field name")
    filename = message.get_filename()
    return name, filename if isinstance(filename, str) else None, message.get("content-type")


def parse_form_data(body: bytes, boundary: bytes, max_parts: int = MAX_PARTS) -> list[FormPart]:
    """Split a whole ``body`` into its parts, in order (:class:`FormReader` in one write).

    Raises:
        MultipartError: see :class:`FormReader`.
    """
    reader = FormReader(boundary, max_parts)
    reader.write(body)
    return reader.finish()
