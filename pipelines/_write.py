"""Shard writing: one Parquet shard per batch of prediction rows, committed whole.

The driver calls :func:`write_shard` itself while the CPU pool has at most 16 actors; larger pools add
:class:`WriteShards` actors. Kept apart from ``_stages`` so neither the driver nor a writer actor's
process imports torch for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from acousticsense import filesystem, is_remote, join_uri, reaching
from pipelines._metrics import observe_stages

__all__ = ["WriteShards", "write_shard"]

SUMMARY_COLUMNS = ("path", "status", "error_stage", "top_genre", "needs_review", "duration_s", "windows")
SUMMARY_TAGS = 3  # each file's best tags that the end-of-job summary counts


class WriteShards:
    """Writer actors for large pools: one Parquet shard per ``--files-per-shard`` rows; returns their summary columns
    plus ``write_s``.

    Long-lived actors rather than tasks: a task with ``num_cpus=0`` gets a fresh worker process
    whenever Ray has reaped the idle one, and each new worker used to import torch again (measured:
    nine worker starts, ~23 CPU-seconds, in a 200-file job on 2 cores).
    """

    def __init__(self, output_uri: str, storage_options: Mapping[str, Any]) -> None:
        self.output_uri = output_uri
        self.storage_options = dict(storage_options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return write_shard(batch, self.output_uri, self.storage_options)


def _write_local(batch: pa.Table, root: str, name: str) -> None:
    """Write ``name`` under a hidden temporary and rename it; on failure (a full disk) remove the temporary.

    Only a complete shard ever carries a ``part-*`` name (``--resume`` trusts those), and a failed write leaves
    no hidden remains to fill the disk further. The error names the shard's path and the cause.
    """
    temporary = join_uri(root, f".{name}.inprogress")
    final = join_uri(root, name)
    try:
        pq.write_table(batch, temporary, compression="zstd")
        os.replace(temporary, final)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        message = f"cannot write shard {final}: {e}"
        raise (OSError(e.errno, message) if e.errno else OSError(message)) from e


def write_shard(batch: pa.Table, output_uri: str, storage_options: Mapping[str, Any]) -> pa.Table:
    """Write one Parquet shard under ``output_uri`` and return its summary columns plus ``write_s``.

    Local shards are written under a temporary name and renamed, so a half-written file is never
    mistaken for a complete one; an S3 object only appears once its upload completes.
    """
    t0 = time.perf_counter()
    fs, root = filesystem(output_uri, storage_options)
    # Named by content: a retried task rewrites the same shard instead of adding a duplicate one, while
    # the same files under another model version or feature config get shards of their own.
    first = batch.slice(0, 1).to_pylist()[0] if batch.num_rows else {}
    key = [first.get("model_version") or "", first.get("feature_hash") or "", *batch.column("path").to_pylist()]
    name = f"part-{hashlib.sha256(chr(0).join(key).encode()).hexdigest()[:24]}.parquet"
    final = join_uri(root, name)
    if is_remote(output_uri):
        with reaching(join_uri(output_uri, name)), fs.open(final, "wb") as f:  # an error naming the shard's URI
            pq.write_table(batch, f, compression="zstd")
    else:
        _write_local(batch, root, name)
    write_s = time.perf_counter() - t0
    summary = batch.select(list(SUMMARY_COLUMNS) + ["read_s", "decode_s", "resample_s", "features_s", "inference_s"])
    per_file = write_s / max(1, batch.num_rows)
    observe_stages({"write": per_file})
    summary = summary.append_column("top_tags", pc.list_slice(batch.column("tags"), 0, SUMMARY_TAGS))
    return summary.append_column("write_s", pa.array([per_file] * batch.num_rows, pa.float32()))
