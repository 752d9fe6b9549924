"""A ``ray start --head`` of our own on this machine, for the ``ray job submit`` benchmark and tests.

It runs on free ports with its own ``--temp-dir`` (so no other ``ray.init()`` on this machine attaches to it)
and token authentication with a token of its own, which its CLI calls share. It is stopped by PID: the
processes ``ray start`` left in its process group plus their descendants (the workers). Never ``ray stop``,
which stops every Ray of this user on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
# Ray's working_dir upload also skips what .gitignore lists; these are named in case it does not.
EXCLUDES = [".venv", ".git", "data", "out", ".stack", ".pytest_cache", ".ruff_cache", "__pycache__"]
_PORTS = ("gcs", "dashboard", "metrics", "client", "agent_http", "agent_grpc", "runtime_env_agent",
          "node_manager", "object_manager")  # fmt: skip


def free_ports(n: int) -> list[int]:
    """Distinct free ports from the ephemeral range, which is outside Ray's worker ports (10002-19999)."""
    held = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class RayHead:
    """One local head: :meth:`start`, the ``ray`` CLI and the Jobs API against it, :meth:`stop`.

    Args:
        num_cpus: the head's ``--num-cpus``.
        env: extra environment for the head and its CLI calls (e.g. ``RAY_metrics_report_interval_ms``).
    """

    def __init__(self, num_cpus: int, env: Mapping[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        self.ports = dict(zip(_PORTS, free_ports(len(_PORTS))))
        # Short: Ray's Unix socket paths (under <temp-dir>/session_*/sockets/) must stay below 108 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        inherited = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        self.env = inherited | {
            "PATH": f"{VENV_BIN}{os.pathsep}{inherited.get('PATH', '')}",  # the jobs' `python` is this one
            "RAY_AUTH_MODE": "token",  # the CLI and the head agree, with a token of this head's own
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
            **(env or {}),
        }
        self.pgid: int | None = None
        self.startup_s = 0.0
        self.start_output = ""

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def start(self, timeout_s: float = 180) -> None:
        """Raises: RuntimeError with ``ray start``'s output if it fails (the head is then stopped)."""
        p = self.ports
        cmd = [RAY, "start", "--head", f"--port={p['gcs']}", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={p['dashboard']}", f"--metrics-export-port={p['metrics']}",
               f"--ray-client-server-port={p['client']}", f"--dashboard-agent-listen-port={p['agent_http']}",
               f"--dashboard-agent-grpc-port={p['agent_grpc']}", f"--runtime-env-agent-port={p['runtime_env_agent']}",
               f"--node-manager-port={p['node_manager']}", f"--object-manager-port={p['object_manager']}",
               f"--num-cpus={self.num_cpus}", "--disable-usage-stats", f"--temp-dir={self.temp_dir}"]  # fmt: skip
        t0 = time.perf_counter()
        # A session of its own: every daemon `ray start` leaves behind is in the process group `pgid`.
        process = subprocess.Popen(
            cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.pgid = process.pid
        try:
            self.start_output, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            self.start_output, _ = process.communicate()
        self.startup_s = time.perf_counter() - t0
        if process.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({process.returncode}):\n{self.start_output[-4000:]}")

    def processes(self) -> list[Any]:
        """This head's processes (``psutil.Process``): its process group's members and all their descendants."""
        import psutil

        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            with contextlib.suppress(ProcessLookupError, psutil.Error):
                if os.getpgid(proc.pid) == self.pgid:
                    found[proc.pid] = proc
        for proc in list(found.values()):
            with contextlib.suppress(psutil.Error):
                found.update({child.pid: child for child in proc.children(recursive=True)})
        return list(found.values())

    def stop(self, grace_s: float = 5.0) -> None:
        import psutil

        if self.pgid is None:
            return
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for proc in alive:  # gcs_server and raylet drain slowly on SIGTERM
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        self.pgid = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def ray(self, *args: str, timeout: float | None = 300) -> subprocess.CompletedProcess[str]:
        """Run a ``ray`` CLI command (``job submit`` …) against this head."""
        return subprocess.run(
            [RAY, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )

    def submit(
        self, *job_args: str, wait: bool = True, submission_id: str | None = None, timeout: float | None = 300
    ) -> subprocess.CompletedProcess[str]:
        """``ray job submit --working-dir <repo> -- python -m pipelines.classify <job_args> --no-progress``."""
        runtime_env = {
            "excludes": EXCLUDES,
            "env_vars": {"PYTHONUNBUFFERED": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"},
        }
        args = ["job", "submit", "--address", self.dashboard_url, "--working-dir", str(ROOT)]
        args += ["--runtime-env-json", json.dumps(runtime_env)]
        if submission_id:
            args += ["--submission-id", submission_id]
        if not wait:
            args.append("--no-wait")
        return self.ray(*args, "--", "python", "-m", "pipelines.classify", *job_args, "--no-progress", timeout=timeout)

    def api(self, method: str, path: str, timeout: float = 30) -> dict:
        """The Jobs REST API that ``ray job`` wraps (no CLI start-up: that takes seconds on a busy machine)."""
        request = urllib.request.Request(
            self.dashboard_url + path, method=method, headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else {}

    def job(self, submission_id: str) -> dict:
        return self.api("GET", f"/api/jobs/{submission_id}")

    def job_logs(self, submission_id: str) -> str:
        return self.api("GET", f"/api/jobs/{submission_id}/logs").get("logs", "")[-6000:]
