"""Local paths and fsspec URIs (``s3://…``, ``gs://…``, ``file://…``): listing, opening, joining.

S3 credentials and endpoint come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``), which s3fs/botocore read
themselves, or from explicit ``storage_options``.

S3 clients get retries with backoff and bounded waits unless told otherwise (:data:`S3_CLIENT_DEFAULTS`,
botocore's ``Config`` through s3fs's ``config_kwargs``): a throttled or reset request is retried instead of
becoming a file's read error, and an endpoint that is gone fails the call in seconds instead of hanging it.
Override any key, e.g. ``--storage-option 'config_kwargs={"retries": {"max_attempts": 10, "mode": "adaptive"}}'``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs

__all__ = [
    "S3_CLIENT_DEFAULTS",
    "filesystem",
    "with_client_defaults",
    "list_files",
    "open_binary",
    "join_uri",
    "is_remote",
    "uri_exists",
    "check_writable",
    "access_denied",
    "is_transport_error",
    "reaching",
]


# botocore Config defaults for s3:// (keys of the caller's ``config_kwargs`` win). 5 attempts in "standard" mode
# retry 503 SlowDown, 500s, throttling and connection errors with jittered exponential backoff (at most
# 1+2+4+8 s): 5 % of requests failing leaves a request failing all 5 about once in 3 million. The timeouts
# bound a silent endpoint: 5 s to connect, 30 s without a byte (botocore's own are 60 s each).
S3_CLIENT_DEFAULTS: dict[str, Any] = {
    "retries": {"max_attempts": 5, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 30,
}
_S3_PROTOCOLS = ("s3", "s3a")


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``uri`` and the path inside it (S3 with :data:`S3_CLIENT_DEFAULTS` filled in)."""
    return url_to_fs(uri, **with_client_defaults(uri, storage_options))


def with_client_defaults(uri: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``storage_options`` plus the S3 retry/timeout defaults for an ``s3://`` URI; other URIs get them unchanged."""
    options = dict(storage_options or {})
    if uri.split("://", 1)[0] in _S3_PROTOCOLS and "://" in uri:
        options["config_kwargs"] = S3_CLIENT_DEFAULTS | dict(options.get("config_kwargs") or {})
    return options


def is_remote(uri: str) -> bool:
    """True for URIs with a non-local protocol (``s3://``, ``gs://``, ``memory://`` …)."""
    return "://" in uri and not uri.startswith("file://")


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with ``/``."""
    if "://" in base:
        protocol, rest = base.split("://", 1)
        return f"{protocol}://{posixpath.join(rest, *parts)}"
    return posixpath.join(base, *parts)


def is_transport_error(error: BaseException) -> bool:
    """True for a failure to reach the store (refused or reset connection, timeout) rather than an answer.

    botocore's and aiohttp's exceptions are not OSErrors; they are recognised by module so that a core that
    reads only local files never imports either.
    """
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__module__.split(".")[0] in ("botocore", "aiohttp") for cls in type(error).__mro__) and any(
        word in cls.__name__ for cls in type(error).__mro__ for word in ("Connection", "Timeout", "HTTPClient")
    )


@contextmanager
def reaching(uri: str) -> Iterator[None]:
    """Turn a transport failure inside the block into a ``ConnectionError`` (an ``OSError``) that names ``uri``,
    and a refused request into a ``PermissionError`` that names it and what to check.

    Retries have already run by then (:data:`S3_CLIENT_DEFAULTS`): the store is unreachable, and the job must
    say which one instead of ending in a botocore traceback.
    """
    try:
        yield
    except PermissionError as e:
        if uri in str(e):
            raise
        raise PermissionError(access_denied(uri, e)) from e
    except Exception as e:
        if not isinstance(e, ConnectionError) and is_transport_error(e):
            raise ConnectionError(f"cannot reach {uri}: {type(e).__name__}: {e}") from e
        raise


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
    with reaching(uri):
        yield from _walk(uri, extensions, storage_options)


def _walk(uri: str, extensions: frozenset[str] | None, storage_options: Mapping[str, Any] | None) -> Iterator[str]:
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
    except Exception as e:
        if is_transport_error(e):
            raise ConnectionError(f"cannot reach {uri}: {type(e).__name__}: {e}") from e
        raise


def open_binary(uri: str, storage_options: Mapping[str, Any] | None = None) -> BinaryIO:
    """Open ``uri`` for seekable binary reading; remote files fetch only the byte ranges read."""
    fs, path = filesystem(uri, storage_options)
    return fs.open(path, "rb")
