"""A bounded HTTP load test of the online service: throughput, latency percentiles, status codes, replicas.

    python -m benchmarks.load_test --url http://127.0.0.1:8000 --file song.wav --concurrency 1,4,16 --requests 200

For each concurrency level it sends ``--requests`` POSTs of the same file from that many concurrent
clients (asyncio + aiohttp), then prints requests/s, p50/p95/p99 latency of the 200 responses, the
status-code counts, and the mean number of files that shared a model batch. With ``--watch-replicas``
it also polls ``serve.status()`` (``ray.init(address=...)``) once a second and prints the replica
count of every deployment, to show autoscaling under load. It always stops by itself, and only
targets loopback addresses unless ``--allow-remote`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import mimetypes
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

__all__ = ["LevelResult", "run_level", "main"]

_CONTENT_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}


@dataclass
class LevelResult:
    """What one concurrency level measured. Latencies are of the 200 responses, in milliseconds."""

    concurrency: int
    requests: int
    wall_s: float
    requests_per_s: float
    ok_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]
    retry_after_missing: int
    mean_batch_files: float | None
    samples_ms: list[float] = field(default_factory=list, repr=False)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def run_level(
    session: aiohttp.ClientSession,
    url: str,
    payload: bytes,
    content_type: str,
    concurrency: int,
    requests: int,
    timeout_s: float,
) -> LevelResult:
    """Send ``requests`` POSTs from ``concurrency`` workers; every request ends with a status or an error name."""
    remaining = iter(range(requests))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    batch_files: list[int] = []
    retry_after_missing = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker() -> None:
        nonlocal retry_after_missing
        for _ in remaining:
            sent = time.perf_counter()
            try:
                async with session.post(
                    url, data=payload, headers={"Content-Type": content_type}, timeout=timeout
                ) as response:
                    body = await response.read()
                    elapsed_ms = 1e3 * (time.perf_counter() - sent)
                    statuses[str(response.status)] += 1
                    if response.status == 200:
                        latencies.append(elapsed_ms)
                        batch = json.loads(body).get("batch") or {}
                        if "files" in batch:
                            batch_files.append(int(batch["files"]))
                    elif response.status == 503 and "Retry-After" not in response.headers:
                        retry_after_missing += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                statuses[type(e).__name__] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall_s = time.perf_counter() - started
    return LevelResult(
        concurrency=concurrency,
        requests=requests,
        wall_s=wall_s,
        requests_per_s=requests / wall_s,
        ok_per_s=len(latencies) / wall_s,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        statuses=dict(sorted(statuses.items())),
        retry_after_missing=retry_after_missing,
        mean_batch_files=statistics.fmean(batch_files) if batch_files else None,
        samples_ms=latencies,
    )


def format_table(results: Sequence[LevelResult]) -> str:
    """A Markdown table of the levels."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    lines = [
        "| concurrency | requests | req/s | p50 ms | p95 ms | p99 ms | files/batch | status codes |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        codes = ", ".join(f"{code}: {n}" for code, n in r.statuses.items())
        batch = "-" if r.mean_batch_files is None else f"{r.mean_batch_files:.1f}"
        lines.append(
            f"| {r.concurrency} | {r.requests} | {r.requests_per_s:.1f} | {ms(r.p50_ms)} | {ms(r.p95_ms)} | "
            f"{ms(r.p99_ms)} | {batch} | {codes} |"
        )
    return "\n".join(lines)


class ReplicaWatcher:
    """Polls ``serve.status()`` on a thread and prints ``time  deployment=running/total`` when counts change."""

    def __init__(self, ray_address: str, interval_s: float = 1.0) -> None:
        import ray

        ray.init(address=ray_address, logging_level="ERROR", log_to_driver=False)
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-watcher", daemon=True)
        self._started = time.perf_counter()

    def __enter__(self) -> ReplicaWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def snapshot(self) -> dict[str, str]:
        from ray import serve

        counts: dict[str, str] = {}
        for app_name, app in serve.status().applications.items():
            for name, deployment in app.deployments.items():
                states = {str(getattr(s, "value", s)): n for s, n in deployment.replica_states.items()}
                running = states.get("RUNNING", 0)
                counts[f"{app_name}/{name}"] = f"{running}/{sum(states.values())}"
        return counts

    def _run(self) -> None:
        last: dict[str, str] | None = None
        while not self._stop.is_set():
            try:
                counts = self.snapshot()
            except Exception as e:  # noqa: BLE001 - a failed poll must not end the load test
                counts = {"error": type(e).__name__}
            elapsed = time.perf_counter() - self._started
            self.samples.append((elapsed, counts))
            if counts != last:
                shown = "  ".join(f"{k}={v}" for k, v in sorted(counts.items()))
                print(f"[replicas t={elapsed:6.1f}s] {shown}  (running/total)", flush=True)
                last = counts
            self._stop.wait(self.interval_s)


def check_target(url: str, allow_remote: bool) -> None:
    """Refuse anything but loopback unless ``allow_remote``; a load test is not for someone else's server."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"--url must be http(s)://host:port, got {url!r}")
    if allow_remote:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except socket.gaierror as e:
        raise SystemExit(f"cannot resolve {parts.hostname!r}: {e}") from e
    if not all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses):
        raise SystemExit(f"{parts.hostname} is not a loopback address; pass --allow-remote to load-test it")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_test", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="service base URL (default %(default)s)")
    p.add_argument("--route", default="/v1/classify", help="route to POST to (default %(default)s)")
    p.add_argument("--file", required=True, type=Path, help="audio file sent as the body of every request")
    p.add_argument("--content-type", help="Content-Type of the body (default: from the file extension)")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts (default %(default)s)")
    p.add_argument("--requests", type=int, default=200, help="requests per concurrency level (default 200)")
    p.add_argument("--warmup", type=int, default=4, help="unmeasured requests before the first level (default 4)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="per-request timeout (default 60)")
    p.add_argument("--watch-replicas", action="store_true", help="poll serve.status() and print replica counts")
    p.add_argument("--ray-address", default="auto", help="Ray cluster for --watch-replicas (default auto)")
    p.add_argument("--cooldown-s", type=float, default=0.0, help="keep watching replicas this long after the load")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    return p


async def _run(args: argparse.Namespace, levels: list[int], payload: bytes, content_type: str) -> list[LevelResult]:
    url = args.url.rstrip("/") + args.route
    connector = aiohttp.TCPConnector(limit=max(levels))
    async with aiohttp.ClientSession(connector=connector) as session:
        if args.warmup:
            await run_level(session, url, payload, content_type, 1, args.warmup, args.timeout_s)
        results = []
        for concurrency in levels:
            result = await run_level(session, url, payload, content_type, concurrency, args.requests, args.timeout_s)
            print(
                f"concurrency {concurrency:>3}: {result.requests_per_s:6.1f} req/s, "
                f"p50 {result.p50_ms or 0:.0f} ms, p99 {result.p99_ms or 0:.0f} ms, {result.statuses}",
                flush=True,
            )
            results.append(result)
        return results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--concurrency wants integers like 1,4,16, got {args.concurrency!r}") from None
    if not levels or min(levels) < 1 or args.requests < 1:
        raise SystemExit("--concurrency levels and --requests must be >= 1")
    check_target(args.url, args.allow_remote)
    payload = args.file.read_bytes()
    content_type = args.content_type or _CONTENT_TYPES.get(args.file.suffix.lower())
    content_type = content_type or mimetypes.guess_type(args.file.name)[0] or "application/octet-stream"
    print(f"{args.url}{args.route}: {args.file.name} ({len(payload)} bytes, {content_type}), levels {levels}")
    watcher = None
    if args.watch_replicas:
        try:
            watcher = ReplicaWatcher(args.ray_address)
        except Exception as e:  # noqa: BLE001 - the load test is still worth running without the watcher
            print(
                f"warning: cannot watch replicas, no Ray at {args.ray_address!r} ({type(e).__name__}: {e}); "
                "pass --ray-address HOST:PORT (the GCS address of the cluster serving the app). "
                "Running the load test without --watch-replicas.",
                file=sys.stderr,
            )
    if watcher is not None:
        with watcher:
            results = asyncio.run(_run(args, levels, payload, content_type))
            time.sleep(max(0.0, args.cooldown_s))
    else:
        results = asyncio.run(_run(args, levels, payload, content_type))
    print()
    print(format_table(results))
    if args.json:
        report: dict[str, Any] = {"url": args.url + args.route, "file": str(args.file), "levels": []}
        for r in results:
            level = asdict(r)
            level.pop("samples_ms")
            report["levels"].append(level)
        if watcher is not None:
            report["replicas"] = [{"t_s": round(t, 2), **counts} for t, counts in watcher.samples]
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
