"""Fixtures and helpers for the service's end-to-end tests: one real Serve per test module, raw HTTP clients.

The ``service`` fixture runs the application on the untrained ``tiny`` test bundle with a 4 MiB body limit
on a free loopback port; a module changes its arguments by overriding ``service_args``.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from typing import Any

import pytest
from urllib3.filepost import encode_multipart_formdata

LIMIT_MB = 4.0
LIMIT_BYTES = int(LIMIT_MB * 2**20)
# The batch job's overrides, given to both the service and the job: online == batch must hold with them.
OVERRIDES = {"segments": 2, "top_k": 4, "review_threshold": 0.5}
_ERROR_KEYS = {"error", "detail"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_cpu(**extra: Any) -> dict[str, Any]:
    """Deployment options for tests: one replica that reserves no CPU, so the batch job can run beside it."""
    return {"num_replicas": 1, "autoscaling_config": None, "ray_actor_options": {"num_cpus": 0}, **extra}


@pytest.fixture(scope="module")
def service_args() -> dict[str, Any]:
    """Extra :class:`serving.config.AppArgs` for the module's ``service``; a test module overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def service(local_ray, tiny_bundle, service_args):
    """Serve on a free loopback port with the main application at ``/`` (the tiny test bundle, a 4 MiB body
    limit, :data:`OVERRIDES`, then the module's ``service_args``); yields the port."""
    from ray import serve

    from serving.app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "bundle_uri": tiny_bundle,
        **OVERRIDES,
        "max_body_mb": LIMIT_MB,
        "max_files_per_request": 6,
        "featurize_threads": 2,
        "max_batch_size": 8,
        "batch_wait_timeout_s": 0.005,
        "ingress_options": _no_cpu(max_ongoing_requests=32, max_queued_requests=64),
        "model_options": _no_cpu(max_ongoing_requests=16, max_queued_requests=64),
        **service_args,
    }
    serve.run(build_app(args), name="acousticsense", route_prefix="/")
    try:
        yield port
    finally:
        serve.shutdown()


# ------------------------------------------------------------------------------------------------- helpers


def connect(port: int, timeout_s: float = 60.0) -> socket.socket:
    """A TCP connection to the proxy, retried while it refuses (Serve restarts a proxy that misses health checks
    on an overloaded machine; a refused connection never reached the service, so retrying it is safe)."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns (status, lower-cased headers, parsed JSON or the raw text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.sock = connect(port)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        found = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    try:
        payload: Any = json.loads(raw)
    except ValueError:
        payload = raw.decode(errors="replace")
    return response.status, found, payload


def post_audio(port: int, data: bytes, content_type: str = "audio/wav", path: str = "/v1/classify"):
    return request(port, "POST", path, data, {"Content-Type": content_type})


def post_form(port: int, fields: dict[str, Any] | list[tuple[str, Any]], path: str):
    body, content_type = encode_multipart_formdata(fields)
    return request(port, "POST", path, body, {"Content-Type": content_type})


def assert_error(status: int, payload: Any, expected_status: int, code: str | None = None) -> None:
    assert status == expected_status, payload
    assert isinstance(payload, dict) and set(payload) == _ERROR_KEYS, payload
    if code is not None:
        assert payload["error"] == code, payload


def raw_exchange(port: int, head: bytes, chunks: list[bytes] | None = None, pause_s: float = 0.0) -> tuple[bytes, int]:
    """Send a request head, then chunks while no answer has arrived; returns (response bytes, body bytes sent)."""
    sock = connect(port, timeout_s=30)
    sent = 0
    try:
        sock.sendall(head)
        for chunk in chunks or []:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop uploading
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            time.sleep(pause_s)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer) < answer.index(b"\r\n\r\n") + 4 + _content_length(answer):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return answer, sent


def _content_length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def parse_raw(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)
