"""Hostile input over real HTTP: the bad-file zoo, a seeded fuzz corpus, malformed forms, odd requests.

One real Serve for the module (``tests/serving/conftest.py``) with every CPU-stage option on (``rules``,
``enhance both``, ``segments 3``), the tiny test bundle and a 4 MiB body limit. The contract: bad input is
a 4xx with the JSON body ``{"error", "detail"}``, never a 5xx; valid audio is a 200; the ingress's memory
stays bounded; and the service answers normally afterwards.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf

from acousticsense import GENRES
from tests.badfiles import ZOO, mutations, tone, valid_seeds
from tests.serving.conftest import (
    LIMIT_BYTES,
    assert_error,
    connect,
    parse_raw,
    post_audio,
    post_form,
    raw_exchange,
    request,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MUTANTS = 200
_CLIENTS = 4


@pytest.fixture(scope="module")
def service_args() -> dict[str, Any]:
    return {"rules": True, "enhance": "both", "segments": 3}


def _ingress_peak_rss_mb() -> float | None:
    """The ingress replica's peak resident memory (Linux VmHWM), found by its process title; None elsewhere."""
    psutil = pytest.importorskip("psutil")
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "ClassifierIngress" not in " ".join(process.info["cmdline"] or []):
                continue
            status = Path(f"/proc/{process.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def _multipart(parts: list[bytes], boundary: str = "b0undary") -> tuple[bytes, dict[str, str]]:
    """A body from raw part texts (headers, blank line, data), so tests can write any malformed part."""
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _wav_bytes() -> bytes:
    return valid_seeds()["seed.wav"]


def _assert_service_still_answers(port: int) -> None:
    status, _, out = request(port, "GET", "/v1/health")
    assert status == 200 and out["status"] == "ok", out
    status, _, out = post_audio(port, _wav_bytes(), "audio/wav")
    assert status == 200 and out["top_genre"] in GENRES, out


# --------------------------------------------------------------------------------------------------- tests


def test_every_zoo_file_is_a_200_or_a_json_4xx_that_names_the_problem(service):
    before = _ingress_peak_rss_mb()

    def one(case):
        return case, post_audio(service, case.data, case.content_type)

    with ThreadPoolExecutor(max_workers=_CLIENTS) as pool:
        outcomes = list(pool.map(one, ZOO))
    wrong = []
    for case, (status, _, out) in outcomes:
        if case.expected == "ok":
            if status != 200:
                wrong.append((case.name, status, out))
                continue
            assert out["top_genre"] in GENRES and 1 <= len(out["segment_genres"]) <= 3, out
        else:
            if status != 400:
                wrong.append((case.name, status, out))
                continue
            assert_error(status, out, 400)
            assert any(word in out["detail"].lower() for word in case.problem), (case.name, out)
            assert "0x" not in out["detail"].replace("codec 0x", ""), out  # no object addresses leak
    assert not wrong, wrong
    after = _ingress_peak_rss_mb()
    print(f"\nzoo over HTTP: {len(ZOO)} files, ingress peak RSS {before} -> {after} MB")
    # the same zoo as one batch request per 6 files: one result per file, the right status for each
    for start in range(0, len(ZOO), 6):
        chunk = ZOO[start : start + 6]
        fields = [("files", (case.name, case.data, case.content_type)) for case in chunk]
        status, _, out = post_form(service, fields, "/v1/classify/batch")
        assert status == 200, out
        assert [r["filename"] for r in out["results"]] == [case.name for case in chunk]
        assert [r["status"] for r in out["results"]] == [case.expected for case in chunk], out["results"]


def test_a_seeded_mutation_corpus_never_gets_a_5xx_and_memory_stays_bounded(service):
    corpus = list(mutations(MUTANTS, seed=7))
    before = _ingress_peak_rss_mb()
    with ThreadPoolExecutor(max_workers=_CLIENTS) as pool:
        outcomes = list(pool.map(lambda item: post_audio(service, item[1], "application/octet-stream"), corpus))
    statuses = Counter(status for status, _, _ in outcomes)
    after = _ingress_peak_rss_mb()
    print(f"\nfuzz over HTTP: {dict(statuses)} of {MUTANTS}; ingress peak RSS {before} -> {after} MB")
    assert set(statuses) <= {200, 400}, statuses
    assert statuses[200] > 0 and statuses[400] > 0
    for status, _, out in outcomes:
        if status == 400:
            assert_error(status, out, 400)
    if before is not None and after is not None:
        assert after - before < 512, (before, after)
    _assert_service_still_answers(service)


def test_malformed_multipart_is_a_json_400(service):
    file_part = b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + _wav_bytes()
    cases = {
        "no boundary parameter": (b"--x\r\n\r\n", {"Content-Type": "multipart/form-data"}),
        "boundary over 70 characters": (b"", {"Content-Type": "multipart/form-data; boundary=" + "b" * 71}),
        "no boundary in the body": (b"just text, no parts at all", {"Content-Type": "multipart/form-data; boundary=q"}),
        "no closing boundary": (b'--q\r\nContent-Disposition: form-data; name="file"\r\n\r\nRIFF',
                                {"Content-Type": "multipart/form-data; boundary=q"}),
        "header line without a colon": _multipart([b"this is no header\r\n\r\ndata"]),
        "no Content-Disposition": _multipart([b"Content-Type: audio/wav\r\n\r\n" + _wav_bytes()]),
        "a part without a name": _multipart([b'Content-Disposition: form-data; filename="a.wav"\r\n\r\nRIFF']),
        "an empty name": _multipart([b'Content-Disposition: form-data; name=""\r\n\r\nx']),
        "a huge part header": _multipart([b"X-Pad: " + b"a" * 64_000 + b"\r\n" + file_part]),
        "too many part headers": _multipart([b"".join(b"X-H%d: 1\r\n" % i for i in range(50)) + file_part]),
        "thousands of parts": _multipart([b'Content-Disposition: form-data; name="n"\r\n\r\nx'] * 5000 + [file_part]),
    }  # fmt: skip
    for path in ("/v1/classify", "/v1/classify/batch"):
        for what, (body, headers) in cases.items():
            status, _, out = request(service, "POST", path, body, headers)
            assert_error(status, out, 400, "bad_multipart")
            assert out["detail"], (what, out)
    # thousands of file parts on the batch route: refused before any of them is decoded
    many = [("files", (f"{i}.wav", b"RIFF", "audio/wav")) for i in range(3000)]
    status, _, out = post_form(service, many, "/v1/classify/batch")
    assert_error(status, out, 400, "bad_multipart")
    assert "parts" in out["detail"]
    # a preamble before the first delimiter is valid (RFC 2046) and parts arrive intact
    body, headers = _multipart([file_part])
    status, _, out = request(service, "POST", "/v1/classify", b"preamble\r\n" + body, headers)
    assert status == 200 and out["top_genre"] in GENRES, out


def test_top_k_out_of_range_or_not_a_number_is_a_json_422(service):
    data = _wav_bytes()
    for bad in ("0", "-1", "abc", "1.5", "", "1e2", "nan", "99999999999999999999999", str(len(GENRES) + 1), "%00"):
        for path in ("/v1/classify", "/v1/classify/batch"):
            if path.endswith("batch"):
                status, _, out = post_form(service, [("files", ("a.wav", data, "audio/wav"))], f"{path}?top_k={bad}")
            else:
                status, _, out = post_audio(service, data, "audio/wav", f"{path}?top_k={bad}")
            assert_error(status, out, 422, "invalid_parameter")
            assert "top_k" in out["detail"], (bad, out)
    status, _, out = post_audio(service, data, "audio/wav", "/v1/classify?top_k=2&top_k=3")  # the last one wins
    assert status == 200 and len(out["top_k"]) == 3, out


def test_odd_request_framing_is_a_4xx(service):
    """Bad Content-Length values and oversized request headers: refused with a 4xx, never a 5xx."""
    for length in ("abc", "-1", "1e3"):
        head = (
            f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        answer, _ = raw_exchange(service, head)
        status = int(answer.split(b" ", 2)[1]) if answer else None
        assert status is None or 400 <= status < 500, (length, answer[:200])  # the proxy may just close
        print(f"\nContent-Length: {length} -> {status or 'connection closed'}")
    # 64 KiB of request headers (uvicorn admits them): a JSON 431 before the body is read
    data = _wav_bytes()
    for headers in ({"X-Pad": "p" * 65536}, {f"X-H{i}": "v" * 100 for i in range(400)}):
        answer, _ = raw_exchange(service, _head_with(headers, len(data)), [data])
        if answer:  # a proxy may also just close the connection; it must never answer 5xx
            status, out = parse_raw(answer)
            assert_error(status, out, 431, "headers_too_large")
    answer, _ = raw_exchange(service, _head_with({"X-Pad": "p" * 8000}, len(data)), [data])
    assert parse_raw(answer)[0] == 200  # ordinary large headers still pass
    _assert_service_still_answers(service)


def _head_with(headers: dict[str, str], content_length: int) -> bytes:
    head = "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return f"{head}Content-Length: {content_length}\r\n\r\n".encode()


def test_a_slow_body_does_not_stall_other_requests_and_still_gets_its_answer(service):
    """A body trickling in over ~3 s (chunked, 30 pieces) gets its 200; meanwhile other requests are served,
    and an upload abandoned half-way leaves the service answering."""
    data = _wav_bytes()
    pieces = [data[i : i + len(data) // 30 + 1] for i in range(0, len(data), len(data) // 30 + 1)]
    chunks = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
    head = (
        b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    result: dict[str, Any] = {}
    slow = threading.Thread(target=lambda: result.update(answer=raw_exchange(service, head, chunks, pause_s=0.1)[0]))
    started = time.monotonic()
    slow.start()
    time.sleep(0.3)  # let the slow upload begin (ordering only; the assertions below do not depend on it)
    latencies = []
    while slow.is_alive() and len(latencies) < 3:
        t0 = time.monotonic()
        status, _, out = request(service, "GET", "/v1/health")
        latencies.append(time.monotonic() - t0)
        assert status == 200, out
    slow.join(timeout=120)
    assert not slow.is_alive()
    status, out = parse_raw(result["answer"])
    assert status == 200 and out["top_genre"] in GENRES, out
    assert latencies and time.monotonic() - started > 2.0  # it really was slow, and others were served meanwhile
    print(f"\nslow body: {time.monotonic() - started:.1f} s; health during it: {[round(x, 2) for x in latencies]} s")
    # abandoned half-way: the client hangs up; the server must not stay wedged
    sock = connect(service, timeout_s=10)
    sock.sendall(head + b"".join(chunks[:10]))
    sock.close()
    _assert_service_still_answers(service)


def test_openapi_shows_the_request_bodies(service):
    status, _, spec = request(service, "GET", "/openapi.json")
    assert status == 200
    single = spec["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"audio/*", "application/octet-stream", "multipart/form-data"} <= set(single)
    assert single["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    batch = spec["paths"]["/v1/classify/batch"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in batch


def test_a_large_upload_streams_through_the_multipart_spool(service):
    """A ~3.9 MiB form (just under the 4 MiB limit) spools past memory and still classifies; 1 byte more is 413."""
    clip = tone(130.0, 16000)
    buffer = io.BytesIO()
    sf.write(buffer, clip[: (LIMIT_BYTES - 200_000) // 2], 16000, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    boundary = uuid.uuid4().hex
    body, headers = _multipart(
        [b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n' + data], boundary
    )
    assert len(body) <= LIMIT_BYTES
    status, _, out = request(service, "POST", "/v1/classify", body, headers)
    assert status == 200 and out["top_genre"] in GENRES, out
    padded, headers = _multipart(
        [b'Content-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n' + data + b"\0" * LIMIT_BYTES],
        boundary,
    )
    status, _, out = request(service, "POST", "/v1/classify", padded, headers)
    assert_error(status, out, 413, "body_too_large")
