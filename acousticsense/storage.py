"""Local paths and fsspec URIs (``s3://…``, ``gs://…``, ``file://…``): listing, opening, joining.

S3 credentials and endpoint come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``), which s3fs/botocore read
themselves, or from explicit ``storage_options``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs

__all__ = [
    "filesystem",
    "list_files",
    "open_binary",
    "join_uri",
    "is_remote",
    "uri_exists",
    "check_writable",
    "access_denied",
]


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``uri`` and the path inside it."""
    return url_to_fs(uri, **dict(storage_options or {}))


def is_remote(uri: str) -> bool:
    """True for URIs with a non-local protocol (``s3://``, ``gs://``, ``memory://`` …)."""
    return "://" in uri and not uri.startswith("file://")


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with ``/``."""
    if "://" in base:
        protocol, rest = base.split("://", 1)
        return f"{protocol}://{posixpath.join(rest, *parts)}"
    return posixpath.join(base, *parts)


def uri_exists(uri: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    fs, path = filesystem(uri, storage_options)
    return fs.exists(path)


def list_files(
    uri: str,
    extensions: frozenset[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[str]:
    """Yield every file under ``uri`` (recursively), or ``uri`` itself when it is a file.

    Hidden files and folders (names starting with ``.``) are skipped. Each directory's entries are
    yielded in sorted order as the walk reaches them, so a large prefix streams rather than being
    held whole.

    Args:
        uri: a local folder/file or an fsspec URI.
        extensions: lower-case extensions without the dot (``{"wav", "mp3"}``); ``None`` keeps all.

    Raises:
        FileNotFoundError: ``uri`` does not exist.
    """
    fs, root = filesystem(uri, storage_options)
    protocol = uri.split("://", 1)[0] if is_remote(uri) else None
    try:
        exists = fs.exists(root)
    except PermissionError as e:
        raise PermissionError(access_denied(uri, e)) from e
    if not exists:
        raise FileNotFoundError(f"input not found: {uri}")
    if fs.isfile(root):
        yield uri
        return
    for dirpath, dirnames, filenames in fs.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # prunes the walk
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if extensions is not None and posixpath.splitext(name)[1].lower().lstrip(".") not in extensions:
                continue
            path = posixpath.join(dirpath, name)
            yield f"{protocol}://{path}" if protocol else path


def access_denied(uri: str, error: Exception) -> str:
    """A message for a refused request that says what to check."""
    return (
        f"access denied to {uri} ({error or 'Forbidden'}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
        "(and AWS_ENDPOINT_URL for an S3-compatible store) or pass --storage-option key=... secret=..."
    )


def check_writable(uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Write and delete a small probe object under ``uri``, so that a missing bucket or a refused write
    fails before any work is done rather than when the first results are written.

    Raises:
        PermissionError / FileNotFoundError: with a message that names ``uri`` and what to check.
    """
    fs, root = filesystem(uri, storage_options)
    probe = join_uri(root, ".acousticsense-write-check")
    try:
        with fs.open(probe, "wb") as f:
            f.write(b"ok")
        fs.rm(probe)
    except PermissionError as e:
        raise PermissionError(access_denied(uri, e)) from e
    except FileNotFoundError as e:
        raise FileNotFoundError(f"cannot write to {uri}: {e} (does the bucket exist?)") from e
    except OSError as e:
        raise OSError(f"cannot write to {uri}: {e}") from e


def open_binary(uri: str, storage_options: Mapping[str, Any] | None = None) -> BinaryIO:
    """Open ``uri`` for seekable binary reading; remote files fetch only the byte ranges read."""
    fs, path = filesystem(uri, storage_options)
    return fs.open(path, "rb")
